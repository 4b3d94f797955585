//! The opening handshake (RFC 6455 §4): parsing the HTTP head with caps, validating the
//! request (server) and the response (client), and building both.
//!
//! Everything here works on byte slices and `http` types; nothing reads a socket.

pub mod client;
mod head;
pub mod server;
mod tokens;

use http::StatusCode;

pub use head::{parse_request, parse_response, HeadScanner};
pub use tokens::{is_token, parse_extensions, parse_token_list};

/// The GUID of RFC 6455 §1.3, appended to the key to compute `Sec-WebSocket-Accept`.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Why a handshake failed. Server-side variants know the HTTP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request line is longer than `max_request_line` (414) (security: H1).
    #[error("request line too long")]
    RequestLineTooLong,
    /// A header line or the whole head is over its cap (431) (security: H1).
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// More headers than `max_headers` (431) (security: H2).
    #[error("too many header fields")]
    TooManyHeaders,
    /// The head is not valid HTTP/1.1 (400).
    #[error("malformed HTTP: {0}")]
    Malformed(&'static str),
    /// Not a GET (405) (security: H4).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No `Upgrade` header: a plain HTTP request to a WebSocket endpoint (426) (security: H4).
    #[error("upgrade required")]
    UpgradeRequired,
    /// `Upgrade` does not name `websocket` (400) (security: H4).
    #[error("Upgrade header does not contain websocket")]
    BadUpgrade,
    /// `Connection` does not contain `upgrade` (400) (security: H4).
    #[error("Connection header does not contain upgrade")]
    BadConnection,
    /// `Sec-WebSocket-Version` missing or not exactly 13 (426 with `Sec-WebSocket-Version: 13`) (security: H6).
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing, duplicated, or not base64 of 16 bytes (400) (security: H5).
    #[error("invalid Sec-WebSocket-Key")]
    BadKey,
    /// `Host` missing or duplicated (400).
    #[error("missing or duplicate Host header")]
    BadHost,
    /// `Sec-WebSocket-Protocol` with an invalid or duplicated token (400) (security: H7).
    #[error("invalid Sec-WebSocket-Protocol")]
    BadSubprotocol,
    /// The Origin is not allowed (403) (security: H9).
    #[error("origin not allowed")]
    ForbiddenOrigin,
    /// The server is draining (503) (security: H11).
    #[error("server shutting down")]
    ShuttingDown,
    /// The application refused the request with this status.
    #[error("rejected with status {0}")]
    Rejected(u16),
    /// Client: the server answered with another status than 101 (security: H12). Redirects are not
    /// followed (their `Location` is reported) so credentials never leak to another origin.
    #[error("unexpected HTTP status {status}{}", body.as_deref().map(|b| format!(": {b}")).unwrap_or_default())]
    UnexpectedStatus {
        /// The status code.
        status: u16,
        /// The `Location` header of a redirect.
        location: Option<String>,
        /// The start of the response body (at most 512 characters, control characters
        /// removed), when the I/O layer read it: the server's reason for refusing.
        body: Option<String>,
    },
    /// Client: `Sec-WebSocket-Accept` missing or wrong (security: H12).
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
    /// Client: the server chose a subprotocol we did not offer (security: H12).
    #[error("server selected subprotocol {0:?} that was not offered")]
    UnrequestedProtocol(String),
    /// Client: the server answered with an extension we did not offer (security: H12).
    #[error("server selected extension {0:?} that was not offered")]
    UnrequestedExtension(String),
    /// Client: the server's extension parameters are not acceptable (security: D5).
    #[error("unacceptable extension response: {0}")]
    BadExtensionResponse(String),
    /// Client API misuse: a header name or value, or a subprotocol, that is not valid
    /// (CR/LF injection and the like), rejected at construction (security: H13).
    #[error("invalid {0}")]
    InvalidInput(&'static str),
}

impl HandshakeError {
    /// The HTTP status a server answers with.
    pub fn status(&self) -> StatusCode {
        use HandshakeError::*;
        match self {
            RequestLineTooLong => StatusCode::URI_TOO_LONG,
            HeadersTooLarge | TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            UpgradeRequired | UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            ForbiddenOrigin => StatusCode::FORBIDDEN,
            ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Rejected(s) => StatusCode::from_u16(*s).unwrap_or(StatusCode::BAD_REQUEST),
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_example() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
