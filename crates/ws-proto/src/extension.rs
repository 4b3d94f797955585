//! The extension seam (RFC 6455 §9): extensions own RSV bits and transform whole messages.
//!
//! An extension is negotiated in the handshake (the [`ExtensionOffer`] list parsed from
//! `Sec-WebSocket-Extensions`) and then plugged into the [`Connection`](crate::Connection),
//! which hands it the payload of every data message whose first frame carries one of its RSV
//! bits. permessage-deflate (RFC 7692) is built on this seam.

use bytes::BytesMut;

use crate::frame::OpCode;

/// One extension offered in (or answered to) a `Sec-WebSocket-Extensions` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Its parameters in order, with values unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// Per-message transform of an extension. One instance per connection.
pub trait Extension: Send + std::fmt::Debug {
    /// The RSV bits this extension defines (a mask of [`RSV1`](crate::frame::RSV1) etc.).
    /// They are allowed on the first frame of a data message only; anywhere else is 1002.
    fn rsv_bits(&self) -> u8;

    /// Decodes a chunk of a transformed message, appending the output to `out`.
    ///
    /// Called once per frame of a message whose first frame had RSV bits of this extension,
    /// `fin` on the last. Must not let `out` grow beyond `limit` bytes in total: return
    /// [`DecodeError::TooLarge`] as soon as more output would exceed it (inflate bombs).
    fn decode(&mut self, input: &[u8], fin: bool, out: &mut BytesMut, limit: usize) -> Result<(), DecodeError>;

    /// Encodes an outgoing data message. Returns the RSV bits to set on its first frame, or
    /// `None` to send it untransformed (then `out` is left untouched).
    fn encode(&mut self, opcode: OpCode, payload: &[u8], out: &mut BytesMut) -> Result<Option<u8>, String>;
}

/// Why an extension could not decode a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The output would exceed the message size limit (close 1009).
    #[error("decoded message exceeds the limit")]
    TooLarge,
    /// The input is corrupt (close 1007).
    #[error("{0}")]
    Corrupt(String),
}
