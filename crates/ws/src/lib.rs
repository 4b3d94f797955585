//! # switchboard-ws
//!
//! WebSocket client and server for tokio, over `ws://` and `wss://` (rustls), built on the
//! sans-IO core [`switchboard_ws_proto`] (re-exported as [`proto`]).
//!
//! - [`WebSocket<S>`] over any `AsyncRead + AsyncWrite`: [`recv`](WebSocket::recv) /
//!   [`send`](WebSocket::send), `Stream` + `Sink`, [`split`](WebSocket::split) into halves
//!   for two tasks, automatic pong, keepalive pings, the closing handshake, a bounded write
//!   buffer with [`buffered_amount`](WebSocket::buffered_amount).
//! - Server: [`accept`] / [`Acceptor`] (handshake deadline, Origin policy, subprotocols, a
//!   callback that accepts or rejects with a status), and [`Acceptor::upgrade`] for hyper 1.x.
//! - Client: [`connect`] / [`ClientBuilder`] (TLS with hostname verification, custom roots,
//!   timeouts).
//!
//! The names follow the browser's `WebSocket` API where it fits: [`ReadyState`],
//! [`WebSocket::url`], [`WebSocket::protocol`], [`WebSocket::buffered_amount`].
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard_ws::Error> {
//! use switchboard_ws::{connect, CloseCode, Message};
//!
//! let mut ws = connect("ws://127.0.0.1:9001/").await?;
//! ws.send("hello").await?;
//! if let Some(Ok(Message::Text(reply))) = ws.recv().await {
//!     println!("got {reply}");
//! }
//! ws.close(CloseCode::NORMAL, "bye").await?;
//! # Ok(()) }
//! ```
//!
//! ## Cancel safety
//! `recv` and `Stream::poll_next` keep all partial state in the connection: a `recv` future
//! dropped in a `select!` loses nothing. See [`WebSocket`].

mod client;
mod error;
mod server;
mod socket;
mod stream;
pub mod tls;
mod wqueue;

pub use switchboard_ws_proto as proto;
pub use switchboard_ws_proto::{
    CloseCode, CloseFrame, Config, Message, OpCode, PreparedFrame, ReadyState, Role, Utf8Bytes,
};

pub use client::{client_handshake, connect, ClientBuilder};
pub use error::Error;
pub use server::{accept, Accept, Acceptor, Reject, UpgradeFut, UpgradedSocket};
pub use socket::{WebSocket, WsReader, WsWriter};
pub use stream::MaybeTlsStream;
