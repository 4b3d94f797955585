//! The error type of the I/O layer.

use std::io;

use switchboard_ws_proto::{HandshakeError, Message, ProtocolError, SendError};

/// Everything that can go wrong on a WebSocket connection, by who is at fault: the peer
/// ([`Protocol`](Error::Protocol), [`Handshake`](Error::Handshake),
/// [`AbnormalClosure`](Error::AbnormalClosure)), the local caller ([`Send`](Error::Send),
/// [`Url`](Error::Url)), or the transport ([`Io`](Error::Io), [`Tls`](Error::Tls), timeouts).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The peer violated the protocol or a limit; a Close with [`ProtocolError::close_code`]
    /// was sent.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed (on a server, the HTTP error response was sent).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The opening handshake did not finish within `Config::handshake_timeout`.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The TCP connection could not be established in time.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The message could not be sent (the connection is closing, or the input is invalid).
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    /// [`try_send`](crate::WebSocket::try_send) found the write buffer above its high-water
    /// mark. The message is handed back, unsent.
    #[error("write buffer full")]
    WriteBufferFull(Box<Message>),
    /// The transport closed without a closing handshake (the browser's 1006).
    #[error("connection closed without a closing handshake (1006)")]
    AbnormalClosure,
    /// The URL is not a valid `ws://` or `wss://` URL.
    #[error("invalid URL: {0}")]
    Url(String),
    /// TLS set-up failed (bad certificate file, invalid server name).
    #[error("TLS: {0}")]
    Tls(String),
}
