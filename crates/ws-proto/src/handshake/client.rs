//! Client side of the handshake: building the request, validating the response.

use base64::Engine;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::tokens::{is_token, list_contains, parse_extensions};
use super::{accept_key, HandshakeError};
use crate::extension::ExtensionOffer;

/// A fresh `Sec-WebSocket-Key`: 16 bytes from the thread's CSPRNG, base64-encoded.
pub fn generate_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// An opening handshake request. Every input is validated when it is added, so nothing the
/// application passes can inject headers (security: H13).
#[derive(Clone, Debug)]
pub struct ClientRequest {
    host: HeaderValue,
    target: String,
    key: String,
    protocols: Vec<String>,
    extensions: Option<HeaderValue>,
    origin: Option<HeaderValue>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ClientRequest {
    /// A request for `target` (path and query, e.g. `/chat?x=1`) on `host` (the `Host`
    /// header: host, plus `:port` when not the default).
    pub fn new(host: &str, target: &str) -> Result<Self, HandshakeError> {
        let host = HeaderValue::from_str(host).map_err(|_| HandshakeError::InvalidInput("host"))?;
        if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(HandshakeError::InvalidInput("request target"));
        }
        Ok(ClientRequest {
            host,
            target: target.to_owned(),
            key: generate_key(),
            protocols: Vec::new(),
            extensions: None,
            origin: None,
            headers: Vec::new(),
        })
    }

    /// Offers a subprotocol (a token).
    pub fn protocol(mut self, p: &str) -> Result<Self, HandshakeError> {
        if !is_token(p) {
            return Err(HandshakeError::InvalidInput("subprotocol"));
        }
        self.protocols.push(p.to_owned());
        Ok(self)
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, o: &str) -> Result<Self, HandshakeError> {
        self.origin = Some(HeaderValue::from_str(o).map_err(|_| HandshakeError::InvalidInput("origin"))?);
        Ok(self)
    }

    /// Sets the `Sec-WebSocket-Extensions` offer.
    pub fn extensions(mut self, offer: &str) -> Result<Self, HandshakeError> {
        self.extensions =
            Some(HeaderValue::from_str(offer).map_err(|_| HandshakeError::InvalidInput("extension offer"))?);
        Ok(self)
    }

    /// Adds a header. Names and values are checked: CR, LF and other control characters are
    /// refused, and so are the headers the handshake itself owns.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HandshakeError> {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| HandshakeError::InvalidInput("header name"))?;
        let reserved = [
            header::HOST,
            header::UPGRADE,
            header::CONNECTION,
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_VERSION,
        ];
        if reserved.contains(&n) {
            return Err(HandshakeError::InvalidInput("header name (owned by the handshake)"));
        }
        let v = HeaderValue::from_str(value).map_err(|_| HandshakeError::InvalidInput("header value"))?;
        self.headers.push((n, v));
        Ok(self)
    }

    /// The key sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subprotocols offered.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The request bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(
            b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
        );
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(b"\r\n");
        if !self.protocols.is_empty() {
            out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            out.extend_from_slice(self.protocols.join(", ").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let mut put = |k: &[u8], v: &HeaderValue| {
            out.extend_from_slice(k);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        if let Some(e) = &self.extensions {
            put(b"Sec-WebSocket-Extensions", e);
        }
        if let Some(o) = &self.origin {
            put(b"Origin", o);
        }
        for (k, v) in &self.headers {
            put(k.as_str().as_bytes(), v);
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Validates the server's response (RFC 6455 §4.1): status 101, `Upgrade: websocket`,
    /// `Connection: upgrade`, the exact `Sec-WebSocket-Accept`, and only a subprotocol and
    /// extensions that were offered (security: H12).
    pub fn validate_response(&self, resp: &Response<()>) -> Result<Negotiated, HandshakeError> {
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let location = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
            return Err(HandshakeError::UnexpectedStatus { status: resp.status().as_u16(), location, body: None });
        }
        let h = resp.headers();
        if !list_contains(h.get_all(header::UPGRADE).iter().map(|v| v.as_bytes()), "websocket") {
            return Err(HandshakeError::BadUpgrade);
        }
        if !list_contains(h.get_all(header::CONNECTION).iter().map(|v| v.as_bytes()), "upgrade") {
            return Err(HandshakeError::BadConnection);
        }
        let expected = accept_key(self.key.as_bytes());
        let mut accepts = h.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
        match (accepts.next(), accepts.next()) {
            (Some(v), None) if v.as_bytes().trim_ascii() == expected.as_bytes() => {}
            _ => return Err(HandshakeError::BadAccept),
        }
        let mut protos = h.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter();
        let protocol = match (protos.next(), protos.next()) {
            (None, _) => None,
            (Some(v), None) => {
                let p = String::from_utf8_lossy(v.as_bytes()).trim().to_owned();
                if !self.protocols.contains(&p) {
                    return Err(HandshakeError::UnrequestedProtocol(p));
                }
                Some(p)
            }
            (Some(v), Some(_)) => {
                return Err(HandshakeError::UnrequestedProtocol(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            }
        };
        let extensions = parse_extensions(h.get_all(header::SEC_WEBSOCKET_EXTENSIONS).iter().map(|v| v.as_bytes()))
            .ok_or_else(|| HandshakeError::UnrequestedExtension("(malformed header)".into()))?;
        let offered = self.extensions.as_ref().and_then(|v| parse_extensions([v.as_bytes()])).unwrap_or_default();
        for e in &extensions {
            if !offered.iter().any(|o| o.name == e.name) {
                return Err(HandshakeError::UnrequestedExtension(e.name.clone()));
            }
        }
        Ok(Negotiated { protocol, extensions })
    }
}

/// What the server agreed to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The subprotocol, if any.
    pub protocol: Option<String>,
    /// The extensions, as answered (the caller's extension factory validates parameters).
    pub extensions: Vec<ExtensionOffer>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_response;
    use crate::Config;

    fn resp(req: &ClientRequest, extra: &str, accept: Option<String>) -> Response<()> {
        let accept = accept.unwrap_or_else(|| accept_key(req.key().as_bytes()));
        let s = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n");
        parse_response(s.as_bytes(), &Config::default()).unwrap_or_default()
    }

    #[test]
    fn request_shape_and_key_entropy() {
        let r = ClientRequest::new("example.com:8080", "/chat?room=1")
            .and_then(|r| r.protocol("chat"))
            .and_then(|r| r.origin("http://example.com"));
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        let s = String::from_utf8(r.encode()).unwrap_or_default();
        assert!(s.starts_with("GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\n"));
        assert!(s.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(s.contains("Origin: http://example.com\r\n"));
        let k = base64::engine::general_purpose::STANDARD.decode(r.key()).unwrap_or_default();
        assert_eq!(k.len(), 16);
        let keys: std::collections::HashSet<String> = (0..1000).map(|_| generate_key()).collect();
        assert_eq!(keys.len(), 1000);
    }

    #[test]
    fn h13_header_injection_rejected_at_construction() {
        let r = ClientRequest::new("a", "/").unwrap_or_else(|e| panic!("{e}"));
        assert!(r.clone().protocol("x\r\nEvil: 1").is_err());
        assert!(r.clone().protocol("a b").is_err());
        assert!(r.clone().header("X-A", "x\r\nEvil: 1").is_err());
        assert!(r.clone().header("X-A", "x\nEvil: 1").is_err());
        assert!(r.clone().header("X\r\nA", "x").is_err());
        assert!(r.clone().header("Sec-WebSocket-Key", "x").is_err());
        assert!(r.clone().origin("http://a\r\nb").is_err());
        assert!(ClientRequest::new("a\r\nb", "/").is_err());
        assert!(ClientRequest::new("a", "/x y").is_err());
        assert!(ClientRequest::new("a", "x").is_err());
        assert!(r.header("X-Ok", "fine").is_ok());
    }

    #[test]
    fn h12_response_validation() {
        let r = ClientRequest::new("a", "/").and_then(|r| r.protocol("chat")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.validate_response(&resp(&r, "", None)).map(|n| n.protocol), Ok(None));
        assert_eq!(
            r.validate_response(&resp(&r, "Sec-WebSocket-Protocol: chat\r\n", None)).map(|n| n.protocol),
            Ok(Some("chat".into()))
        );
        assert_eq!(r.validate_response(&resp(&r, "", Some("wrong".into()))), Err(HandshakeError::BadAccept));
        assert!(matches!(
            r.validate_response(&resp(&r, "Sec-WebSocket-Protocol: other\r\n", None)),
            Err(HandshakeError::UnrequestedProtocol(_))
        ));
        assert!(matches!(
            r.validate_response(&resp(&r, "Sec-WebSocket-Extensions: permessage-deflate\r\n", None)),
            Err(HandshakeError::UnrequestedExtension(_))
        ));
        let s = b"HTTP/1.1 302 Found\r\nLocation: http://evil/\r\n\r\n";
        let red = parse_response(s, &Config::default()).unwrap_or_default();
        assert_eq!(
            r.validate_response(&red),
            Err(HandshakeError::UnexpectedStatus { status: 302, location: Some("http://evil/".into()), body: None })
        );
        let s = b"HTTP/1.1 200 OK\r\n\r\n";
        let ok = parse_response(s, &Config::default()).unwrap_or_default();
        assert!(matches!(r.validate_response(&ok), Err(HandshakeError::UnexpectedStatus { status: 200, .. })));
    }
}
