//! # switchboard-engineio
//!
//! Engine.IO protocol v4, the transport layer under Socket.IO. This crate has the sans-IO
//! codec and request checks so far: [`Packet`] for one packet (a WebSocket frame, or one segment of an HTTP
//! long-polling body) and [`decode_payload`] / [`encode_payload`] for long-polling bodies (packets
//! separated by `\x1e`, binary as `b` + base64).
//!
//! [`Query::parse`] checks the query of every Engine.IO request and maps faults to the
//! protocol's error codes (security: E2); [`Sid`] is a 128-bit session id from a CSPRNG (security: E8).
//!
//! The server (sessions, long-polling, the WebSocket transport, heartbeat, upgrade) is built on
//! this next.
//!
//! Decoding never panics and runs in linear time. Every malformed input is a [`DecodeError`],
//! which the server answers with 400 and closes the session (security: E5).

pub mod handshake;
pub mod packet;

pub use handshake::{ErrorCode, Query, Sid, Timing, Transport};
pub use packet::{decode_payload, encode_payload, Data, DecodeError, Packet};
