//! Typed errors. Each protocol error knows its close code; each handshake error its HTTP status.

use crate::close::CloseCode;

/// A violation by the peer of RFC 6455 or of our limits, found while reading frames.
///
/// Every variant maps to the close code sent to the peer ([`ProtocolError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reserved opcode (0x3–0x7, 0xB–0xF). 1002.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// An RSV bit that no negotiated extension owns, or set where the extension forbids it. 1002.
    #[error("reserved bits {0:#x} set without an extension that defines them")]
    ReservedBits(u8),
    /// A client frame without a mask (server side). 1002.
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A server frame with a mask (client side). 1002.
    #[error("server frame is masked")]
    MaskedFrame,
    /// A control frame with FIN = 0. 1002.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A control frame whose payload exceeds 125 bytes. 1002.
    #[error("control frame payload longer than 125 bytes")]
    ControlFrameTooLong,
    /// A 64-bit length with its most significant bit set. 1002.
    #[error("64-bit payload length with the most significant bit set")]
    LengthMsbSet,
    /// A length not in its shortest encoding. 1002.
    #[error("payload length not minimally encoded")]
    NonMinimalLength,
    /// A continuation frame with no message open. 1002.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is open. 1002.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A Close frame with a 1-byte payload. 1002.
    #[error("close frame payload of 1 byte")]
    InvalidClosePayload,
    /// A Close frame with a code that may not appear on the wire. 1002.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// Text (or a close reason) that is not valid UTF-8. 1007.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A frame above `max_frame_size`. 1009.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// Declared size.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message above `max_message_size` (after decompression). 1009.
    #[error("message exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A message split into more frames than its bytes pay for: more than
    /// `max_fragments + bytes / min_fragment_average`. 1008.
    #[error("message split into too many fragments ({frames} frames for {bytes} bytes)")]
    TooManyFragments {
        /// Frames of the message, the refused one included.
        frames: usize,
        /// Payload bytes received for the message, the refused frame's included.
        bytes: usize,
    },
    /// A fragmented message not finished within `message_timeout`. 1008.
    #[error("fragmented message not completed in time")]
    MessageTimeout,
    /// The peer did not answer our keepalive ping in time. 1011.
    #[error("keepalive ping timeout")]
    PingTimeout,
    /// The extension failed to decode a message (e.g. a corrupt deflate stream). 1007.
    #[error("extension failed to decode: {0}")]
    Extension(String),
}

impl ProtocolError {
    /// The close code to send the peer for this error.
    pub fn close_code(&self) -> CloseCode {
        use ProtocolError::*;
        match self {
            InvalidUtf8 | Extension(_) => CloseCode::INVALID_DATA,
            FrameTooLarge { .. } | MessageTooLarge { .. } => CloseCode::TOO_BIG,
            TooManyFragments { .. } | MessageTimeout => CloseCode::POLICY,
            PingTimeout => CloseCode::INTERNAL_ERROR,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the close frame (fits in 123 bytes).
    pub fn close_reason(&self) -> &'static str {
        use ProtocolError::*;
        match self {
            InvalidUtf8 => "invalid UTF-8",
            Extension(_) => "invalid compressed data",
            FrameTooLarge { .. } => "frame too large",
            MessageTooLarge { .. } => "message too large",
            TooManyFragments { .. } => "too many fragments",
            MessageTimeout => "message timeout",
            PingTimeout => "keepalive ping timeout",
            _ => "protocol error",
        }
    }
}

/// Local misuse when sending: the data is not sent, nothing is corrupted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closing or closed: nothing may follow a Close frame.
    #[error("the connection is closing or closed")]
    Closed,
    /// A close code that may not be sent (1004–1006, 1015, < 1000, 1016–2999, ≥ 5000).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A close reason above 123 bytes.
    #[error("close reason of {0} bytes exceeds 123")]
    CloseReasonTooLong(usize),
    /// A ping or pong payload above 125 bytes.
    #[error("control payload of {0} bytes exceeds 125")]
    ControlPayloadTooLong(usize),
    /// The extension failed to encode the message.
    #[error("extension failed to encode: {0}")]
    Extension(String),
}
