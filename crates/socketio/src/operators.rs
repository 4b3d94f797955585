//! Broadcast operators: `to`/`in`, `except`, `local`, `volatile`, `timeout`, then an action.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use switchboard_engineio::Sid;

use crate::adapter::{BroadcastAcks, BroadcastOptions, BroadcastPacket, SocketInfo};
use crate::socket::{to_arg_list, to_args, EmitError};
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

    /// An operator with these options already set.
    pub fn with_options(ns: Arc<Namespace>, opts: BroadcastOptions) -> Self {
        BroadcastOperator { ns, opts, timeout: None }
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

    /// Not sockets in these rooms, nor these socket ids (python-socketio's `skip_sid`). A name
    /// that is a socket id names that socket.
    pub fn except(mut self, rooms: impl IntoRooms) -> Self {
        self.opts.except_names(rooms.into_rooms());
        self
    }

    /// Not this socket.
    pub fn skip_sid(mut self, sid: Sid) -> Self {
        self.opts.except_sids.push(sid);
        self
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
    /// for (other nodes' deliveries are not counted: see
    /// [`emit_with_ack`](Self::emit_with_ack) for a cluster-wide count).
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
        self.emit_packet(BroadcastPacket::event(event, args, binary)?).await
    }

    /// Emits a prepared packet (what another node sent on, say).
    pub async fn emit_packet(&self, packet: BroadcastPacket) -> Result<usize, EmitError> {
        Ok(self.ns.adapter().broadcast(&self.ns, packet, &self.opts).await?)
    }

    /// Emits `event` (JSON arguments and attachments, as [`emit_with`](Self::emit_with)) and
    /// gathers how many sockets each node reached (within the timeout).
    pub async fn emit_counted(
        &self,
        event: &str,
        args: Vec<Value>,
        binary: Vec<Bytes>,
    ) -> Result<crate::adapter::BroadcastReport, EmitError> {
        if crate::packet::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent);
        }
        let packet = BroadcastPacket::event(event, args, binary)?;
        let t = self.timeout.unwrap_or(self.ns.ack_timeout());
        Ok(self.ns.adapter().broadcast_counted(&self.ns, packet, &self.opts, t).await?)
    }

    /// Sends a `message` event.
    pub async fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<usize, EmitError> {
        self.emit("message", data).await
    }

    /// Emits with an ack request to every selected socket, on every node, and gathers the
    /// answers that come within the timeout (each node first reports how many sockets it sent
    /// to; [`BroadcastAcks::complete`] tells whether everyone answered).
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<BroadcastAcks, EmitError> {
        let (args, bins) = to_args(data)?;
        self.emit_with_ack_args(event, args, bins).await
    }

    /// [`emit_with_ack`](Self::emit_with_ack) with JSON arguments and attachments.
    pub async fn emit_with_ack_args(
        &self,
        event: &str,
        args: Vec<Value>,
        binary: Vec<Bytes>,
    ) -> Result<BroadcastAcks, EmitError> {
        if crate::packet::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent);
        }
        let packet = BroadcastPacket::event(event, args, binary)?;
        let t = self.timeout.unwrap_or(self.ns.ack_timeout());
        Ok(self.ns.adapter().broadcast_with_ack(&self.ns, packet, &self.opts, t).await?)
    }

    /// This node's selected sockets' ids.
    pub async fn sockets(&self) -> Result<Vec<Sid>, EmitError> {
        Ok(self.ns.adapter().sockets(&self.ns, &self.opts).await?)
    }

    /// The selected sockets on every node, with handles that act on them wherever they are
    /// (Node's `fetchSockets()`).
    pub async fn fetch_sockets(&self) -> Result<Vec<RemoteSocket>, EmitError> {
        let t = self.timeout.unwrap_or(self.ns.ack_timeout());
        let infos = self.ns.adapter().fetch_sockets(&self.ns, &self.opts, t).await?;
        Ok(infos.into_iter().map(|info| RemoteSocket { info, ns: self.ns.clone() }).collect())
    }

    /// Makes the selected sockets join `rooms`, on every node.
    pub async fn join(&self, rooms: impl IntoRooms) -> Result<(), EmitError> {
        Ok(self.ns.adapter().add_sockets(&self.ns, &self.opts, rooms.into_rooms()).await?)
    }

    /// Makes the selected sockets leave `rooms`, on every node.
    pub async fn leave(&self, rooms: impl IntoRooms) -> Result<(), EmitError> {
        Ok(self.ns.adapter().del_sockets(&self.ns, &self.opts, rooms.into_rooms()).await?)
    }

    /// Disconnects the selected sockets from the namespace, on every node.
    pub async fn disconnect(&self) -> Result<(), EmitError> {
        Ok(self.ns.adapter().disconnect_sockets(&self.ns, &self.opts, false).await?)
    }

    /// Closes the selected sockets' whole connections, on every node.
    pub async fn close(&self) -> Result<(), EmitError> {
        Ok(self.ns.adapter().disconnect_sockets(&self.ns, &self.opts, true).await?)
    }
}

/// A socket on any node of the cluster, from [`BroadcastOperator::fetch_sockets`]: what its
/// node said of it, and actions that reach it wherever it is.
#[derive(Clone, Debug)]
pub struct RemoteSocket {
    /// Its id, handshake, rooms and data.
    pub info: SocketInfo,
    ns: Arc<Namespace>,
}

impl RemoteSocket {
    /// The socket id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    fn op(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.ns.clone()).to(self.info.id.as_str())
    }

    /// Emits `event` with one argument to this socket.
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.op().emit(event, data).await.map(|_| ())
    }

    /// Emits and waits up to `timeout` for this socket's acknowledgement.
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
        timeout: Duration,
    ) -> Result<Option<crate::AckResponse>, EmitError> {
        let acks = self.op().timeout(timeout).emit_with_ack(event, data).await?;
        Ok(acks.responses.into_iter().next().map(|(_, r)| r))
    }

    /// Makes this socket join `rooms`.
    pub async fn join(&self, rooms: impl IntoRooms) -> Result<(), EmitError> {
        self.op().join(rooms).await
    }

    /// Makes this socket leave `rooms`.
    pub async fn leave(&self, rooms: impl IntoRooms) -> Result<(), EmitError> {
        self.op().leave(rooms).await
    }

    /// Disconnects this socket (`close`: its whole connection).
    pub async fn disconnect(&self, close: bool) -> Result<(), EmitError> {
        if close {
            self.op().close().await
        } else {
            self.op().disconnect().await
        }
    }
}
