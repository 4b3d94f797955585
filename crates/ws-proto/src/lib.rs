//! # switchboard-ws-proto
//!
//! The sans-IO core of Switchboard's WebSocket implementation (RFC 6455): no sockets, no async
//! runtime, no clock of its own. It checks and builds opening handshakes, parses and encodes
//! frames, masks and unmasks, reassembles fragmented messages while validating UTF-8, answers
//! pings, runs the closing handshake as a state machine, and enforces the limits in [`Config`].
//!
//! ```text
//!            bytes from the socket                        bytes to the socket
//!                     │                                            ▲
//!                     ▼                                            │
//!   handshake::HeadScanner ─► parse_request ─► validate_request ─► accept_response
//!                     │
//!                     ▼
//!   Connection::read(&mut buf, now) ─► Message (Text/Binary/Ping/Pong/Close)
//!   Connection::send_*(…, &mut out) ───────────────────────────────► out
//!   Connection::poll_transmit(&mut out)  (owed pong, keepalive ping, Close) ─► out
//!   Connection::poll_timeout() / handle_timeout(now)
//! ```
//!
//! ## Using it
//! 1. Server: feed request bytes to a [`handshake::HeadScanner`] until it reports the end of
//!    the head; [`handshake::parse_request`] it, [`handshake::server::validate_request`] it,
//!    then write [`handshake::server::accept_response`] (or an error response). Bytes after
//!    the head are the first WebSocket bytes.
//!    Client: write [`handshake::client::ClientRequest::encode`], scan and
//!    [`handshake::parse_response`] the answer, and [`handshake::client::ClientRequest::validate_response`].
//! 2. Create a [`Connection`] with the [`Role`].
//! 3. Loop: append received bytes to a buffer and call [`Connection::read`] until it returns
//!    `Ok(None)`; call [`Connection::poll_transmit`] and write out what it and the send calls
//!    produced; sleep until [`Connection::poll_timeout`] and call
//!    [`Connection::handle_timeout`]. Once [`Connection::should_close_transport`] is true,
//!    flush and close the transport.
//!
//! ## Guarantees
//! - Bad peer input never panics: every violation is a [`ProtocolError`] with its close code.
//! - Declared lengths are checked before payload is buffered and are never pre-allocated.
//! - The crate has no `unsafe` code.
//!
//! ```
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use switchboard_ws_proto::{CloseCode, Config, Connection, Message, ReadyState, Role};
//!
//! let now = Instant::now();
//! let mut server = Connection::new(Role::Server, Config::default(), now);
//! // A masked ping from a client, then a masked Close 1000.
//! let mut input = BytesMut::from(&[0x89, 0x80, 1, 2, 3, 4, 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8][..]);
//! assert!(matches!(server.read(&mut input, now), Ok(Some(Message::Ping(_)))));
//! assert!(matches!(server.read(&mut input, now), Ok(Some(Message::Close(Some(f)))) if f.code == CloseCode::NORMAL));
//! let mut out = BytesMut::new();
//! server.poll_transmit(&mut out); // the owed pong, then the Close echo
//! assert_eq!(&out[..], &[0x8A, 0x00, 0x88, 0x02, 0x03, 0xe8]);
//! assert_eq!(server.ready_state(), ReadyState::Closed);
//! ```

pub mod close;
pub mod config;
pub mod conn;
pub mod deflate;
pub mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::Config;
pub use conn::{Connection, ReadyState, Role};
pub use error::{ProtocolError, SendError};
pub use extension::{Extension, ExtensionOffer};
pub use frame::OpCode;
pub use handshake::HandshakeError;
pub use message::{Message, PreparedFrame};
pub use utf8::Utf8Bytes;
