//! Close codes and close frames (RFC 6455 §5.5.1, §7.4).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::utf8::Utf8Bytes;

/// A WebSocket close status code (RFC 6455 §7.4).
///
/// The associated constants name the codes the RFC and the IANA registry define. Use
/// [`CloseCode::is_sendable`] to know whether a code may appear in a Close frame on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a Close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: invalid payload data, such as non-UTF-8 text.
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: policy violation (too many fragments, flood, revoked authorization).
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message or frame is too big.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (overload).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: bad gateway.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: TLS handshake failure (never sent on the wire).
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether this code may be carried by a Close frame on the wire.
    ///
    /// Valid: 1000–1003, 1007–1014 (1012–1014 are IANA-registered and accepted by browsers and
    /// Node `ws`), and 3000–4999 (registered and private use). Everything else — 0–999,
    /// 1004–1006, 1015, the unassigned 1016–2999 and ≥ 5000 — is a protocol error (1002).
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl std::fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u16> for CloseCode {
    fn from(v: u16) -> Self {
        CloseCode(v)
    }
}

/// The largest close reason that fits a control frame: 125 bytes minus the 2-byte code.
pub const MAX_CLOSE_REASON: usize = 123;

/// The code and reason of a Close frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, valid UTF-8 of at most [`MAX_CLOSE_REASON`] bytes.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A close frame to send, validated: the code must be [sendable](CloseCode::is_sendable)
    /// and the reason at most [`MAX_CLOSE_REASON`] bytes (security: F20).
    pub fn new(code: CloseCode, reason: &str) -> Result<Self, crate::error::SendError> {
        if !code.is_sendable() {
            return Err(crate::error::SendError::InvalidCloseCode(code.0));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(crate::error::SendError::CloseReasonTooLong(reason.len()));
        }
        Ok(CloseFrame { code, reason: Utf8Bytes::from(reason.to_owned()) })
    }

    /// Parses the payload of a received Close frame (RFC 6455 §5.5.1).
    ///
    /// `Ok(None)` for an empty payload (status 1005 to the application). A 1-byte payload or an
    /// invalid code is 1002; a reason that is not UTF-8 is 1007 (security: F17).
    pub fn parse(payload: &Bytes) -> Result<Option<CloseFrame>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::InvalidClosePayload),
            _ => {
                let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = Utf8Bytes::try_from(payload.slice(2..)).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(CloseFrame { code, reason }))
            }
        }
    }

    /// Appends the wire payload (code then reason) to `out`.
    pub(crate) fn encode_payload(&self, out: &mut BytesMut) {
        out.put_u16(self.code.0);
        out.extend_from_slice(self.reason.as_bytes());
    }

    /// Length of the wire payload.
    pub(crate) fn payload_len(&self) -> usize {
        2 + self.reason.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f17_close_code_validity_table() {
        // (code, valid on the wire)
        let table: &[(u16, bool)] = &[
            (0, false),
            (999, false),
            (1000, true),
            (1001, true),
            (1002, true),
            (1003, true),
            (1004, false),
            (1005, false),
            (1006, false),
            (1007, true),
            (1008, true),
            (1009, true),
            (1010, true),
            (1011, true),
            (1012, true),
            (1013, true),
            (1014, true),
            (1015, false),
            (1016, false),
            (1100, false),
            (2000, false),
            (2999, false),
            (3000, true),
            (3999, true),
            (4000, true),
            (4999, true),
            (5000, false),
            (65535, false),
        ];
        for &(code, valid) in table {
            assert_eq!(CloseCode(code).is_sendable(), valid, "code {code}");
            let mut p = BytesMut::new();
            p.put_u16(code);
            let parsed = CloseFrame::parse(&p.freeze());
            assert_eq!(parsed.is_ok(), valid, "parse code {code}");
        }
    }

    #[test]
    fn f17_close_payload_shapes() {
        assert_eq!(CloseFrame::parse(&Bytes::new()), Ok(None));
        assert_eq!(CloseFrame::parse(&Bytes::from_static(&[3])), Err(ProtocolError::InvalidClosePayload));
        let bad_reason = Bytes::from_static(&[
            0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
        ]);
        assert_eq!(CloseFrame::parse(&bad_reason), Err(ProtocolError::InvalidUtf8));
        let ok = CloseFrame::parse(&Bytes::from_static(b"\x03\xe8bye")).unwrap_or(None);
        assert_eq!(ok.map(|f| (f.code, f.reason.to_string())), Some((CloseCode::NORMAL, "bye".into())));
    }

    #[test]
    fn f20_close_api_rejects_bad_input() {
        assert!(CloseFrame::new(CloseCode(1005), "").is_err());
        assert!(CloseFrame::new(CloseCode(999), "").is_err());
        assert!(CloseFrame::new(CloseCode::NORMAL, &"x".repeat(124)).is_err());
        assert!(CloseFrame::new(CloseCode::NORMAL, &"x".repeat(123)).is_ok());
        // A 2-byte character at the limit: 61 × 2 = 122 bytes ok, 62 × 2 = 124 rejected.
        assert!(CloseFrame::new(CloseCode::NORMAL, &"é".repeat(61)).is_ok());
        assert!(CloseFrame::new(CloseCode::NORMAL, &"é".repeat(62)).is_err());
    }
}
