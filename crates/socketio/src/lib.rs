//! # switchboard-socketio
//!
//! Socket.IO protocol v5 on top of Engine.IO. This crate has the sans-IO codec so far:
//! [`Packet`] encoding and decoding, and a [`Decoder`] that reassembles binary packets
//! (a text header, then its attachments as binary messages) under caps on the attachment
//! count, their bytes and the assembly time.
//!
//! The server (namespaces, events, acks, rooms, broadcast, adapters) is built on this next.
//!
//! Decoding never panics. Every invalid packet is a [`DecodeError`], after which the server
//! closes the connection (security: E10, E11, E12, E13, E14, E17).

pub mod packet;

pub use packet::{is_reserved_event, DecodeError, Decoder, Limits, Packet, PacketType};
