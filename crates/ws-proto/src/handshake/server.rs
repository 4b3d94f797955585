//! Server side of the handshake: validating the request, the Origin policy, the responses.

use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Version};

use super::tokens::{list_contains, parse_extensions, parse_token_list};
use super::{accept_key, HandshakeError};
use crate::extension::ExtensionOffer;

/// What a valid upgrade request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The `Sec-WebSocket-Key` (24 base64 characters).
    pub key: String,
    /// Subprotocols offered, in the client's order of preference.
    pub protocols: Vec<String>,
    /// Extensions offered; empty when the header was absent or malformed (declined).
    pub extensions: Vec<ExtensionOffer>,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
}

fn single<'a>(h: &'a HeaderMap, name: &header::HeaderName) -> Result<Option<&'a HeaderValue>, ()> {
    let mut it = h.get_all(name).iter();
    let first = it.next();
    if it.next().is_some() {
        return Err(());
    }
    Ok(first)
}

/// Validates an upgrade request (RFC 6455 §4.2.1), checking the Origin against `origins`.
///
/// The order of checks fixes which status a request with several faults gets: method (405),
/// HTTP version (400), Host (400), Upgrade (426 when absent, 400 when wrong), Connection (400),
/// version (426), key (400), subprotocols (400), Origin (403).
pub fn validate_request<B>(req: &Request<B>, origins: &OriginPolicy) -> Result<UpgradeRequest, HandshakeError> {
    if req.method() != Method::GET {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version() < Version::HTTP_11 {
        return Err(HandshakeError::Malformed("HTTP/1.1 or later required"));
    }
    let h = req.headers();
    match single(h, &header::HOST) {
        Ok(Some(v)) if !v.is_empty() => {}
        _ => return Err(HandshakeError::BadHost),
    }
    if !h.contains_key(header::UPGRADE) {
        return Err(HandshakeError::UpgradeRequired);
    }
    if !list_contains(h.get_all(header::UPGRADE).iter().map(|v| v.as_bytes()), "websocket") {
        return Err(HandshakeError::BadUpgrade);
    }
    if !list_contains(h.get_all(header::CONNECTION).iter().map(|v| v.as_bytes()), "upgrade") {
        return Err(HandshakeError::BadConnection);
    }
    match single(h, &header::SEC_WEBSOCKET_VERSION) {
        Ok(Some(v)) if v.as_bytes().trim_ascii() == b"13" => {}
        _ => return Err(HandshakeError::UnsupportedVersion),
    }
    let key = match single(h, &header::SEC_WEBSOCKET_KEY) {
        Ok(Some(v)) => v.to_str().map_err(|_| HandshakeError::BadKey)?.trim(),
        _ => return Err(HandshakeError::BadKey),
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(key).map_err(|_| HandshakeError::BadKey)?;
    if decoded.len() != 16 {
        return Err(HandshakeError::BadKey);
    }
    let protocols = parse_token_list(h.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().map(|v| v.as_bytes()))
        .ok_or(HandshakeError::BadSubprotocol)?;
    for (i, p) in protocols.iter().enumerate() {
        if protocols[..i].contains(p) {
            return Err(HandshakeError::BadSubprotocol);
        }
    }
    let extensions =
        parse_extensions(h.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().map(|v| v.as_bytes())).unwrap_or_default();
    let origin = match single(h, &header::ORIGIN) {
        Ok(v) => v.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        Err(()) => return Err(HandshakeError::ForbiddenOrigin),
    };
    if !origins.allows(origin.as_deref()) {
        return Err(HandshakeError::ForbiddenOrigin);
    }
    Ok(UpgradeRequest {
        key: key.to_owned(),
        protocols: protocols.into_iter().map(str::to_owned).collect(),
        extensions,
        origin,
    })
}

/// Which `Origin` headers a server accepts (Cross-Site WebSocket Hijacking defence) (security: H9).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginPolicy {
    /// Any origin, or none. The default of the library (non-browser clients send none); a
    /// server that browsers reach with cookies should use an allowlist.
    #[default]
    Any,
    /// Only these exact origins (scheme, host and port; `https://a.com` equals
    /// `https://A.com:443`). The literal `null` matches only if listed.
    AllowList {
        /// Allowed origins, normalized.
        origins: Vec<String>,
        /// Whether a request without `Origin` (not from a browser) is accepted.
        allow_missing: bool,
    },
}

impl OriginPolicy {
    /// An allowlist; requests without `Origin` are accepted (browsers always send one).
    pub fn allow_list<I: IntoIterator<Item = S>, S: AsRef<str>>(origins: I) -> Self {
        OriginPolicy::AllowList {
            origins: origins.into_iter().filter_map(|o| normalize_origin(o.as_ref())).collect(),
            allow_missing: true,
        }
    }

    /// Whether `origin` passes.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::AllowList { origins, allow_missing } => match origin {
                None => *allow_missing,
                Some(o) => normalize_origin(o).is_some_and(|n| origins.contains(&n)),
            },
        }
    }
}

/// Normalizes an origin to `scheme://host:port` with lowercase scheme and host and the port
/// made explicit; `null` stays `null`. `None` if it is not an origin.
pub fn normalize_origin(o: &str) -> Option<String> {
    let o = o.trim();
    if o == "null" {
        return Some("null".into());
    }
    let (scheme, rest) = o.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return None,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (format!("[{}]", h.to_ascii_lowercase()), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), p.parse::<u16>().ok()?),
            None => (rest.to_ascii_lowercase(), default_port),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{host}:{port}"))
}

/// The `101 Switching Protocols` response for a validated request.
///
/// `protocol` must be one the client offered and `extensions` the negotiated response value;
/// `extra` headers are appended (validated `http` types, so no CR/LF injection).
pub fn accept_response(
    req: &UpgradeRequest,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra: &HeaderMap,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(req.key.as_bytes()).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(e) = extensions {
        out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        out.extend_from_slice(e.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    write_headers(&mut out, extra);
    out.extend_from_slice(b"\r\n");
    out
}

fn write_headers(out: &mut Vec<u8>, h: &HeaderMap) {
    for (k, v) in h {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// A refusal: `status` with a short text body and `Connection: close` (the connection is then
/// closed, never reused: pipelined bytes are not parsed (security: H10)). Adds `Sec-WebSocket-Version:
/// 13` and `Upgrade: websocket` to a 426, and `Allow: GET` to a 405.
pub fn reject_response(status: StatusCode, extra: &HeaderMap, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    let reason = status.canonical_reason().unwrap_or("Error");
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", status.as_u16(), reason).as_bytes());
    if status == StatusCode::UPGRADE_REQUIRED {
        out.extend_from_slice(b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        out.extend_from_slice(b"Allow: GET\r\n");
    }
    write_headers(&mut out, extra);
    out.extend_from_slice(
        format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
    out
}

/// The refusal for a handshake error, with its status and message.
pub fn error_response(e: &HandshakeError) -> Vec<u8> {
    reject_response(e.status(), &HeaderMap::new(), &format!("{e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_request;
    use crate::Config;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn req(lines: &[&str]) -> Request<()> {
        let mut s = String::new();
        for l in lines {
            s.push_str(l);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        parse_request(s.as_bytes(), &Config::default()).unwrap_or_default()
    }

    fn base(extra: &[&'static str]) -> Vec<&'static str> {
        let mut v = vec![
            "GET /chat HTTP/1.1",
            "Host: server.example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ];
        v.extend_from_slice(extra);
        v
    }

    fn replace(lines: &[&'static str], prefix: &str, with: Option<&'static str>) -> Vec<&'static str> {
        let mut v: Vec<_> = lines.iter().copied().filter(|l| !l.starts_with(prefix)).collect();
        if let Some(w) = with {
            v.push(w);
        }
        v
    }

    fn status(lines: &[&str]) -> u16 {
        match validate_request(&req(lines), &OriginPolicy::Any) {
            Ok(_) => 101,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn valid_request_and_accept() {
        let r = validate_request(&req(&base(&["Sec-WebSocket-Protocol: chat, superchat"])), &OriginPolicy::Any);
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.key, KEY);
        assert_eq!(r.protocols, vec!["chat", "superchat"]);
        let resp = String::from_utf8(accept_response(&r, Some("chat"), None, &HeaderMap::new())).unwrap_or_default();
        assert!(resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(resp.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(resp.ends_with("\r\n\r\n"));
    }

    #[test]
    fn h4_method_and_upgrade_tokens() {
        let b = base(&[]);
        let mut post = b.clone();
        post[0] = "POST /chat HTTP/1.1";
        assert_eq!(status(&post), 405);
        assert_eq!(status(&replace(&b, "Upgrade:", Some("Upgrade: websocketx"))), 400);
        assert_eq!(status(&replace(&b, "Connection:", Some("Connection: keep-alive"))), 400);
        assert_eq!(status(&replace(&b, "Connection:", None)), 400);
        // Plain GET to a WebSocket route.
        assert_eq!(status(&["GET /chat HTTP/1.1", "Host: a"]), 426);
        // Mixed case and comma lists are fine.
        assert_eq!(
            status(&replace(
                &replace(&b, "Upgrade:", Some("upgrade: WebSocket")),
                "Connection:",
                Some("connection: keep-alive, Upgrade")
            )),
            101
        );
        assert_eq!(status(&replace(&b, "Connection:", Some("Connection: keep-alive,UPGRADE"))), 101);
        let mut v10 = b.clone();
        v10[0] = "GET /chat HTTP/1.0";
        assert_eq!(status(&v10), 400);
        assert_eq!(status(&replace(&b, "Host:", None)), 400);
    }

    #[test]
    fn h5_bad_keys() {
        let b = base(&[]);
        for k in [
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA",
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=",
            "Sec-WebSocket-Key: !!!notbase64!!!!!!!!!!==",
            "Sec-WebSocket-Key: ",
        ] {
            // 15 bytes, 17 bytes, not base64, empty
            assert_eq!(status(&replace(&b, "Sec-WebSocket-Key:", Some(k))), 400, "{k}");
        }
        // 17 decoded bytes
        assert_eq!(status(&replace(&b, "Sec-WebSocket-Key:", Some("AAAAAAAAAAAAAAAAAAAAAAA="))), 400);
        assert_eq!(status(&replace(&b, "Sec-WebSocket-Key:", None)), 400);
        let mut dup = b.clone();
        dup.push("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(status(&dup), 400);
    }

    #[test]
    fn h6_versions() {
        let b = base(&[]);
        for v in [
            "Sec-WebSocket-Version: 8",
            "Sec-WebSocket-Version: 12",
            "Sec-WebSocket-Version: 14",
            "Sec-WebSocket-Version: 13, 13",
        ] {
            assert_eq!(status(&replace(&b, "Sec-WebSocket-Version:", Some(v))), 426, "{v}");
        }
        assert_eq!(status(&replace(&b, "Sec-WebSocket-Version:", None)), 426);
        let resp = String::from_utf8(error_response(&HandshakeError::UnsupportedVersion)).unwrap_or_default();
        assert!(resp.starts_with("HTTP/1.1 426 "));
        assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(resp.contains("Connection: close\r\n"));
    }

    #[test]
    fn h7_subprotocol_tokens() {
        assert_eq!(status(&base(&["Sec-WebSocket-Protocol: a b"])), 400);
        assert_eq!(status(&base(&["Sec-WebSocket-Protocol: chat, chat"])), 400);
        assert_eq!(status(&base(&["Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: chat"])), 400);
        assert_eq!(status(&base(&["Sec-WebSocket-Protocol: chat,\tv2"])), 101);
    }

    #[test]
    fn h8_malformed_extensions_are_declined_not_fatal() {
        let r = validate_request(&req(&base(&["Sec-WebSocket-Extensions: a; b=\"\\c\\c\\c"])), &OriginPolicy::Any);
        assert_eq!(r.map(|r| r.extensions.len()), Ok(0));
    }

    #[test]
    fn h9_origin_allowlist() {
        let p = OriginPolicy::allow_list(["https://app.example.com", "http://localhost:8080"]);
        let cases: &[(Option<&str>, bool)] = &[
            (Some("https://app.example.com"), true),
            (Some("HTTPS://APP.example.com:443"), true),
            (Some("https://app.example.com/"), true),
            (Some("https://evil.tld"), false),
            (Some("null"), false),
            (Some("https://evil-app.example.com"), false),
            (Some("https://app.example.com.evil.tld"), false),
            (Some("http://app.example.com"), false),
            (Some("https://app.example.com:8443"), false),
            (Some("http://localhost:8080"), true),
            (Some("http://localhost"), false),
            (Some("garbage"), false),
            (None, true),
        ];
        for (o, ok) in cases {
            assert_eq!(p.allows(*o), *ok, "{o:?}");
        }
        let mut lines = base(&["Origin: https://evil.tld"]);
        assert_eq!(validate_request(&req(&lines), &p).err().map(|e| e.status().as_u16()), Some(403));
        lines.pop();
        lines.push("Origin: https://app.example.com");
        assert!(validate_request(&req(&lines), &p).is_ok());
        let strict = OriginPolicy::AllowList { origins: vec!["null".into()], allow_missing: false };
        assert!(!strict.allows(None));
        assert!(strict.allows(Some("null")));
    }

    #[test]
    fn h10_reject_response_closes() {
        let r = String::from_utf8(reject_response(StatusCode::FORBIDDEN, &HeaderMap::new(), "no")).unwrap_or_default();
        assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\nno"));
    }
}
