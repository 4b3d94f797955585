//! Broadcast operators: `to`/`in`, `except`, `local`, `volatile`, `timeout`, then an action.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use switchboard_engineio::Sid;

use crate::adapter::{BroadcastAcks, BroadcastOptions};
use crate::socket::{event_packet, next_ack_id, to_arg_list, to_args, EmitError, Encoded};
use crate::{IntoRooms, Namespace};

/// Selects sockets of a namespace and acts on them. Every action goes through the
/// namespace's [`Adapter`](crate::Adapter); the packet is encoded once for all recipients.
#[derive(Clone, Debug)]
#[must_use = "an operator does nothing until an action (emit, join, …) is called"]
pub struct BroadcastOperator {
    ns: Arc<Namespace>,
    opts: BroadcastOptions,
    timeout: Option<Duration>,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Arc<Namespace>) -> Self {
        BroadcastOperator { ns, opts: BroadcastOptions::default(), timeout: None }
    }

    /// Only sockets in these rooms (adds to earlier `to`s; a socket id names one socket).
    pub fn to(mut self, rooms: impl IntoRooms) -> Self {
        self.opts.rooms.extend(rooms.into_rooms());
        self
    }

    /// Same as [`to`](Self::to).
    pub fn within(self, rooms: impl IntoRooms) -> Self {
        self.to(rooms)
    }

    /// Not sockets in these rooms, nor these socket ids (python-socketio's `skip_sid`).
    pub fn except(mut self, rooms: impl IntoRooms) -> Self {
        self.opts.except.extend(rooms.into_rooms());
        self
    }

    /// Same as [`except`](Self::except) for one socket id.
    pub fn skip_sid(self, sid: Sid) -> Self {
        self.except(sid)
    }

    /// Only this node's sockets (with a cluster adapter).
    pub fn local(mut self) -> Self {
        self.opts.local = true;
        self
    }

    /// Drop the packet for sockets whose outbound queue is full, instead of disconnecting
    /// them.
    pub fn volatile(mut self) -> Self {
        self.opts.volatile = true;
        self
    }

    /// How long [`emit_with_ack`](Self::emit_with_ack) waits for answers. Default: the
    /// namespace's ack timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// The selection.
    pub fn options(&self) -> &BroadcastOptions {
        &self.opts
    }

    /// Emits `event` with one argument. Returns how many of this node's sockets it was queued
    /// for.
    /// `bytes::Bytes` anywhere in `data` goes as binary in its place ([`crate::payload`]).
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<usize, EmitError> {
        let (args, bins) = to_args(data)?;
        self.emit_with(event, args, bins).await
    }

    /// Emits `event` with several arguments: a tuple, an array or a `Vec`, one argument per
    /// element (as [`Socket::emit_args`](crate::Socket::emit_args)).
    pub async fn emit_args<T: Serialize + ?Sized>(&self, event: &str, args: &T) -> Result<usize, EmitError> {
        let (args, bins) = to_arg_list(args)?;
        self.emit_with(event, args, bins).await
    }

    /// Emits `event` with JSON arguments and binary attachments, placed as in
    /// [`Socket::emit_with`](crate::Socket::emit_with).
    pub async fn emit_with(&self, event: &str, args: Vec<Value>, binary: Vec<Bytes>) -> Result<usize, EmitError> {
        if crate::packet::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent);
        }
        let e = Arc::new(Encoded::for_broadcast(&event_packet(self.ns.name(), event, args, binary, None)?));
        Ok(self.ns.adapter().broadcast(&self.ns, e, &self.opts).await?)
    }

    /// Sends a `message` event.
    pub async fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<usize, EmitError> {
        self.emit("message", data).await
    }

    /// Emits with an ack request to every selected socket and gathers the answers that come
    /// within the timeout.
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<BroadcastAcks, EmitError> {
        if crate::packet::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent);
        }
        let id = next_ack_id();
        let (args, bins) = to_args(data)?;
        let e = Arc::new(Encoded::for_broadcast(&event_packet(self.ns.name(), event, args, bins, Some(id))?));
        let t = self.timeout.unwrap_or(self.ns.ack_timeout());
        Ok(self.ns.adapter().broadcast_with_ack(&self.ns, e, &self.opts, t).await?)
    }

    /// The selected sockets' ids.
    pub async fn sockets(&self) -> Result<Vec<Sid>, EmitError> {
        Ok(self.ns.adapter().sockets(&self.ns, &self.opts).await?)
    }

    /// Makes the selected sockets join `rooms`.
    pub async fn join(&self, rooms: impl IntoRooms) -> Result<(), EmitError> {
        let rooms = rooms.into_rooms();
        for sid in self.sockets().await? {
            self.ns.adapter().add_all(&self.ns, sid, rooms.clone()).await?;
        }
        Ok(())
    }

    /// Makes the selected sockets leave `rooms`.
    pub async fn leave(&self, rooms: impl IntoRooms) -> Result<(), EmitError> {
        let rooms = rooms.into_rooms();
        for sid in self.sockets().await? {
            self.ns.adapter().del(&self.ns, sid, rooms.clone()).await?;
        }
        Ok(())
    }

    /// Disconnects the selected sockets.
    pub async fn disconnect(&self) -> Result<(), EmitError> {
        for sid in self.sockets().await? {
            if let Some(s) = self.ns.get_socket(sid) {
                s.disconnect();
            }
        }
        Ok(())
    }
}
