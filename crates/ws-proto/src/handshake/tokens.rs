//! Header value grammars: comma-separated token lists and `Sec-WebSocket-Extensions`.
//! All parsers are single-pass over the input, so hostile values cost linear time (security: H7, H8).

use crate::extension::ExtensionOffer;

/// Whether `b` is an RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a non-empty RFC 9110 token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Splits comma-separated token lists across header values, trimming optional white space and
/// skipping empty elements (RFC 9110 §5.6.1). `None` if an element is not a token.
pub fn parse_token_list<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<&'a str>> {
    let mut out = Vec::new();
    for v in values {
        let s = std::str::from_utf8(v).ok()?;
        for item in s.split(',') {
            let t = item.trim_matches(|c| c == ' ' || c == '\t');
            if t.is_empty() {
                continue;
            }
            if !is_token(t) {
                return None;
            }
            out.push(t);
        }
    }
    Some(out)
}

/// Whether a token list contains `want` (ASCII case-insensitive), tolerating invalid elements.
pub(crate) fn list_contains<'a>(values: impl IntoIterator<Item = &'a [u8]>, want: &str) -> bool {
    values
        .into_iter()
        .any(|v| v.split(|&b| b == b',').any(|item| item.trim_ascii().eq_ignore_ascii_case(want.as_bytes())))
}

/// Most extensions, and parameters per extension, accepted in one header.
const MAX_EXTENSIONS: usize = 16;
const MAX_PARAMS: usize = 16;

/// Parses `Sec-WebSocket-Extensions` values (RFC 6455 §9.1): `name; param; param=value` items
/// separated by commas, where a value is a token or a quoted string. `None` when malformed
/// (unclosed quote, bad token, too many items): the caller then declines every extension.
pub fn parse_extensions<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<ExtensionOffer>> {
    let mut out = Vec::new();
    for v in values {
        let mut p = Parser { s: v, i: 0 };
        loop {
            p.ows();
            if p.eof() {
                break;
            }
            if p.peek() == Some(b',') {
                p.i += 1;
                continue;
            }
            let name = p.token()?;
            let mut params = Vec::new();
            loop {
                p.ows();
                match p.peek() {
                    Some(b';') => {
                        p.i += 1;
                        p.ows();
                        let k = p.token()?;
                        p.ows();
                        let val = if p.peek() == Some(b'=') {
                            p.i += 1;
                            p.ows();
                            Some(if p.peek() == Some(b'"') { p.quoted()? } else { p.token()? })
                        } else {
                            None
                        };
                        params.push((k, val));
                        if params.len() > MAX_PARAMS {
                            return None;
                        }
                    }
                    Some(b',') | None => break,
                    Some(_) => return None,
                }
            }
            out.push(ExtensionOffer { name, params });
            if out.len() > MAX_EXTENSIONS {
                return None;
            }
        }
    }
    Some(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    /// A quoted string; its unescaped content must itself be a token (RFC 6455 §9.1).
    fn quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut v = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    break;
                }
                b'\\' => {
                    self.i += 1;
                    v.push(self.peek()?);
                    self.i += 1;
                }
                c => {
                    v.push(c);
                    self.i += 1;
                }
            }
        }
        let s = String::from_utf8(v).ok()?;
        is_token(&s).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lists() {
        assert_eq!(parse_token_list([&b"chat, superchat"[..]]), Some(vec!["chat", "superchat"]));
        assert_eq!(parse_token_list([&b" a ,, b\t"[..], b"c"]), Some(vec!["a", "b", "c"]));
        assert_eq!(parse_token_list([&b"a b"[..]]), None);
        assert_eq!(parse_token_list([&b"a\x01"[..]]), None);
    }

    #[test]
    fn h4_case_insensitive_comma_lists() {
        assert!(list_contains([&b"keep-alive, Upgrade"[..]], "upgrade"));
        assert!(list_contains([&b"UPGRADE"[..]], "upgrade"));
        assert!(!list_contains([&b"keep-alive"[..]], "upgrade"));
        assert!(!list_contains([&b"websocketx"[..]], "websocket"));
    }

    #[test]
    fn h7_pathological_subprotocol_is_linear_and_rejected() {
        let mut v = b"b".to_vec();
        v.extend(std::iter::repeat_n(b' ', 32_000));
        v.push(b'x');
        let t = std::time::Instant::now();
        assert_eq!(parse_token_list([&v[..]]), None);
        // Generous bound; a quadratic parse of 32k spaces takes far longer.
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
    }

    #[test]
    fn extensions_parse() {
        let e = parse_extensions([
            &b"permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=\"10\""[..],
        ]);
        let e = e.unwrap_or_default();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].params, vec![("client_max_window_bits".into(), None)]);
        assert_eq!(e[1].params, vec![("server_max_window_bits".into(), Some("10".into()))]);
    }

    #[test]
    fn h8_extension_header_abuse_declines() {
        let mut unclosed = b"a; b=\"".to_vec();
        unclosed.extend(std::iter::repeat_n(b"\\c", 20_000).flatten());
        assert_eq!(parse_extensions([&unclosed[..]]), None);
        assert_eq!(parse_extensions([&b"a; b=\"x y\""[..]]), None);
        assert_eq!(parse_extensions([&b"a b"[..]]), None);
        assert_eq!(parse_extensions([&b";"[..]]), None);
        // Odd names are just names; the negotiator decides whether it knows them.
        let e = parse_extensions([&b"__proto__, constructor; x=1"[..]]).unwrap_or_default();
        assert_eq!(e.len(), 2);
    }
}
