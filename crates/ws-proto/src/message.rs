//! Messages as the application sees them.

use bytes::Bytes;

use crate::close::CloseFrame;
use crate::utf8::Utf8Bytes;

/// A complete message, or a control frame, received from the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message: validated UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping (already answered: the pong is queued by the connection).
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer's Close frame; `None` when it carried no status (1005).
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Message {
        Message::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Message {
        Message::Binary(b.into())
    }

    /// Whether this is a text or binary message.
    pub fn is_data(&self) -> bool {
        matches!(self, Message::Text(_) | Message::Binary(_))
    }

    /// The payload bytes (for Close, the reason).
    pub fn as_payload(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b,
            Message::Close(Some(c)) => c.reason.as_bytes(),
            Message::Close(None) => &[],
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(v: Vec<u8>) -> Self {
        Message::Binary(v.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

/// A whole unmasked data frame (FIN set, no RSV bits), encoded once and written as is to many
/// server connections: a broadcast pays for the header and the copy of the payload once.
///
/// A connection that cannot send it as is (a client, which must mask; a connection with a
/// negotiated extension, which may transform the payload) encodes the payload normally
/// instead; see [`Connection::prepared_ok`](crate::Connection::prepared_ok).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedFrame {
    bytes: bytes::Bytes,
    header_len: usize,
    text: bool,
}

impl PreparedFrame {
    /// A text frame.
    pub fn text(s: &str) -> Self {
        Self::new(crate::OpCode::Text, s.as_bytes())
    }

    /// A binary frame.
    pub fn binary(b: &[u8]) -> Self {
        Self::new(crate::OpCode::Binary, b)
    }

    fn new(opcode: crate::OpCode, payload: &[u8]) -> Self {
        let h = crate::frame::FrameHeader { fin: true, rsv: 0, opcode, mask: None, payload_len: payload.len() as u64 };
        let mut hb = [0u8; crate::frame::MAX_HEADER_LEN];
        let n = h.encode(&mut hb);
        let mut v = Vec::with_capacity(n + payload.len());
        v.extend_from_slice(&hb[..n]);
        v.extend_from_slice(payload);
        PreparedFrame { bytes: bytes::Bytes::from(v), header_len: n, text: opcode == crate::OpCode::Text }
    }

    /// The whole frame, header included.
    pub fn frame_bytes(&self) -> &bytes::Bytes {
        &self.bytes
    }

    /// The payload alone (a slice of the frame, no copy).
    pub fn payload(&self) -> bytes::Bytes {
        self.bytes.slice(self.header_len..)
    }

    /// Whether it is a text frame.
    pub fn is_text(&self) -> bool {
        self.text
    }

    /// The same content as a [`Message`], for a connection that cannot take the frame as is.
    pub fn to_message(&self) -> Message {
        if self.text {
            // The payload was a `&str`.
            match Utf8Bytes::try_from(self.payload()) {
                Ok(t) => Message::Text(t),
                Err(_) => Message::Binary(self.payload()),
            }
        } else {
            Message::Binary(self.payload())
        }
    }
}
