//! Incremental scanning of an HTTP/1.1 head with caps, then one parse of the complete head.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};

use super::HandshakeError;
use crate::config::Config;

/// Finds the end of an HTTP head (`\r\n\r\n`) as bytes arrive, enforcing the caps on the first
/// line, each header line, the head's size and the number of lines.
///
/// It remembers where it stopped, so feeding a head one byte at a time costs the same total
/// work as feeding it at once: parsing is linear in the input whatever the segmentation (security: H1).
#[derive(Debug, Default, Clone)]
pub struct HeadScanner {
    pos: usize,
    line_start: usize,
    lines: usize,
}

impl HeadScanner {
    /// A scanner at the start of a head.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans the new bytes of `buf` (which must only grow between calls). `Ok(Some(n))` when
    /// the head is complete: it is `buf[..n]`, and what follows belongs to the next protocol.
    pub fn scan(&mut self, buf: &[u8], cfg: &Config) -> Result<Option<usize>, HandshakeError> {
        while self.pos < buf.len() {
            let Some(off) = buf[self.pos..].iter().position(|&b| b == b'\n') else {
                self.pos = buf.len();
                break;
            };
            self.pos += off + 1;
            let line_len = self.pos - self.line_start;
            self.check_line(line_len, cfg)?;
            if self.pos > cfg.max_header_bytes {
                return Err(HandshakeError::HeadersTooLarge);
            }
            let empty = line_len <= 2 && buf[self.line_start..self.pos].iter().all(|&b| b == b'\r' || b == b'\n');
            self.line_start = self.pos;
            if empty {
                if self.lines == 0 {
                    // Robustness (RFC 9112 §2.2): ignore empty lines before the request line.
                    continue;
                }
                return Ok(Some(self.pos));
            }
            self.lines += 1;
            if self.lines > cfg.max_headers.saturating_add(1) {
                return Err(HandshakeError::TooManyHeaders);
            }
        }
        self.check_line(self.pos - self.line_start, cfg)?;
        if self.pos > cfg.max_header_bytes {
            return Err(HandshakeError::HeadersTooLarge);
        }
        Ok(None)
    }

    fn check_line(&self, len: usize, cfg: &Config) -> Result<(), HandshakeError> {
        if self.lines == 0 && len > cfg.max_request_line {
            Err(HandshakeError::RequestLineTooLong)
        } else if self.lines > 0 && len > cfg.max_header_line {
            Err(HandshakeError::HeadersTooLarge)
        } else {
            Ok(())
        }
    }
}

fn headers_from(raw: &[httparse::Header<'_>]) -> Result<HeaderMap, HandshakeError> {
    let mut map = HeaderMap::with_capacity(raw.len());
    for h in raw {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| HandshakeError::Malformed("header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| HandshakeError::Malformed("header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn map_httparse(e: httparse::Error) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
        _ => HandshakeError::Malformed("head"),
    }
}

/// Parses a complete request head (as delimited by [`HeadScanner`]).
pub fn parse_request(head: &[u8], cfg: &Config) -> Result<Request<()>, HandshakeError> {
    let mut raw = vec![httparse::EMPTY_HEADER; cfg.max_headers];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(head).map_err(map_httparse)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => return Err(HandshakeError::Malformed("incomplete head")),
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| HandshakeError::Malformed("method"))?;
    let uri: Uri = req.path.unwrap_or_default().parse().map_err(|_| HandshakeError::Malformed("request target"))?;
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(HandshakeError::Malformed("version")),
    };
    let headers = headers_from(req.headers)?;
    let mut out = Request::new(());
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.version_mut() = version;
    *out.headers_mut() = headers;
    Ok(out)
}

/// Parses a complete response head (as delimited by [`HeadScanner`]).
pub fn parse_response(head: &[u8], cfg: &Config) -> Result<Response<()>, HandshakeError> {
    let mut raw = vec![httparse::EMPTY_HEADER; cfg.max_headers];
    let mut resp = httparse::Response::new(&mut raw);
    match resp.parse(head).map_err(map_httparse)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => return Err(HandshakeError::Malformed("incomplete head")),
    }
    let status = StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|_| HandshakeError::Malformed("status"))?;
    let headers = headers_from(resp.headers)?;
    let mut out = Response::new(());
    *out.status_mut() = status;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = headers;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\nTRAILING";

    #[test]
    fn scan_finds_end_whole_and_byte_by_byte() {
        let cfg = Config::default();
        let mut s = HeadScanner::new();
        let end = REQ.len() - "TRAILING".len();
        assert_eq!(s.scan(REQ, &cfg), Ok(Some(end)));
        let mut s = HeadScanner::new();
        let mut found = None;
        for i in 1..=REQ.len() {
            if let Some(n) = s.scan(&REQ[..i], &cfg).ok().flatten() {
                found = Some((i, n));
                break;
            }
        }
        assert_eq!(found, Some((end, end)));
        let req = parse_request(&REQ[..end], &cfg).ok();
        assert_eq!(req.map(|r| r.uri().path().to_owned()), Some("/chat".to_owned()));
    }

    #[test]
    fn h1_giant_request_line_is_414_before_the_end() {
        let cfg = Config::default();
        let mut s = HeadScanner::new();
        let mut line = b"GET /".to_vec();
        line.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(s.scan(&line, &cfg), Err(HandshakeError::RequestLineTooLong));
    }

    #[test]
    fn h1_giant_header_line_is_431() {
        let cfg = Config::default();
        let mut s = HeadScanner::new();
        let mut h = b"GET / HTTP/1.1\r\nX: ".to_vec();
        h.extend(std::iter::repeat_n(b'a', 20_000));
        assert_eq!(s.scan(&h, &cfg), Err(HandshakeError::HeadersTooLarge));
        assert_eq!(HandshakeError::HeadersTooLarge.status().as_u16(), 431);
        assert_eq!(HandshakeError::RequestLineTooLong.status().as_u16(), 414);
    }

    #[test]
    fn h1_total_head_cap_with_many_short_lines_dribbled() {
        let cfg = Config::default().with_max_headers(100_000);
        let mut s = HeadScanner::new();
        let mut h = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..10_000 {
            h.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        // Dribble in 7-byte pieces: the cap trips around 64 KiB, not at the end.
        let mut err = None;
        for end in (7..h.len()).step_by(7) {
            if let Err(e) = s.scan(&h[..end], &cfg) {
                err = Some((end, e));
                break;
            }
        }
        let (at, e) = err.unwrap_or((0, HandshakeError::BadKey));
        assert_eq!(e, HandshakeError::HeadersTooLarge);
        assert!(at <= cfg.max_header_bytes + 7 + 16, "tripped at {at}");
    }

    #[test]
    fn h2_header_count_flood_is_431() {
        let cfg = Config::default();
        let mut h = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..2000 {
            h.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        h.extend_from_slice(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
        let mut s = HeadScanner::new();
        assert_eq!(s.scan(&h, &cfg), Err(HandshakeError::TooManyHeaders));
        assert_eq!(HandshakeError::TooManyHeaders.status().as_u16(), 431);
        // And the parser itself refuses (never a truncated, "valid" request).
        let end = h.len();
        assert_eq!(parse_request(&h[..end], &cfg).map(|_| ()), Err(HandshakeError::TooManyHeaders));
    }

    #[test]
    fn malformed_heads_are_400() {
        let cfg = Config::default();
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"G\x00T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            let r = parse_request(bad, &cfg);
            assert!(r.is_err(), "{bad:?}");
            assert_eq!(r.err().map(|e| e.status().as_u16()), Some(400));
        }
    }
}
