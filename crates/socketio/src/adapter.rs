//! The [`Adapter`]: where room membership lives and through which every operation on more than
//! one socket goes: broadcasts (with or without acknowledgements), fetching sockets, making
//! sockets join, leave or disconnect by selector, server-to-server events.
//!
//! The contract is written for clusters. What travels between nodes is public and
//! serialisable ([`BroadcastPacket`], [`BroadcastOptions`], [`SocketInfo`]); each node encodes
//! a broadcast once for all its recipients ([`LocalAdapter::deliver`]); acknowledgement ids are
//! allocated per namespace and node ([`Namespace::next_ack_id`]). [`LocalAdapter`] is the
//! in-memory adapter and also the local half of a cluster adapter: every method a cluster
//! adapter needs to apply a remote node's request to this node's sockets is public and
//! synchronous here.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_engineio::Sid;

use crate::packet::PacketType;
use crate::socket::{AckResponse, AckWait, Encoded, Socket};
use crate::Namespace;

/// A room name. Every socket is also in the room named by its id (without it being stored).
pub type Room = Arc<str>;

/// A node of a cluster, by its uid (16 hex characters for Switchboard and Node's cluster
/// adapters).
pub type NodeId = Arc<str>;

/// A boxed future returned by adapter methods.
pub type AdapterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send + 'a>>;

/// Why an adapter operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// Some nodes did not answer before the deadline (their uids).
    #[error("timed out waiting for {} node(s): {}", missing.len(), missing.join(", "))]
    Timeout {
        /// The nodes that did not answer.
        missing: Vec<NodeId>,
    },
    /// The cluster bus failed (the broker is down, a publish failed): the operation reached
    /// this node's sockets only.
    #[error("cluster bus: {0}")]
    Bus(String),
}

/// Who an operation is for: the selectors of Socket.IO's `to`/`except`, typed, and its flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Sockets in any of these rooms (a socket id names that socket); all sockets of the
    /// namespace when empty.
    pub rooms: Vec<Room>,
    /// Minus sockets in any of these rooms.
    pub except_rooms: Vec<Room>,
    /// Minus these sockets.
    pub except_sids: Vec<Sid>,
    /// Only this node's sockets.
    pub local: bool,
    /// Drop the packet for sockets whose outbound queue is full instead of disconnecting
    /// them.
    pub volatile: bool,
}

impl BroadcastOptions {
    /// Adds exclusions by name: a name that is a socket id goes to
    /// [`except_sids`](Self::except_sids) (parsed once, here), any other to
    /// [`except_rooms`](Self::except_rooms).
    pub fn except_names<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<Room>,
    {
        for n in names {
            let n: Room = n.into();
            match Sid::parse(&n) {
                Some(sid) => self.except_sids.push(sid),
                None => self.except_rooms.push(n),
            }
        }
    }

    /// Selects one socket.
    pub fn socket(sid: Sid) -> Self {
        BroadcastOptions { rooms: vec![Arc::from(sid.to_string())], ..Default::default() }
    }
}

/// An event broadcast, as it travels between nodes: the event name and arguments (binary
/// arguments as placeholders `{"_placeholder":true,"num":N}`) and the attachments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BroadcastPacket {
    /// `[event, arg…]`: always a JSON array whose first element is the event name.
    pub data: Value,
    /// The binary attachments, in placeholder order.
    #[serde(default)]
    pub binary: Vec<Bytes>,
}

impl BroadcastPacket {
    /// An event packet: `args` after the name; the attachments go where the arguments'
    /// placeholders say, or, without placeholders, after the arguments.
    pub fn event(event: &str, mut args: Vec<Value>, binary: Vec<Bytes>) -> Result<Self, crate::EmitError> {
        crate::payload::place_attachments(&mut args, binary.len()).map_err(crate::EmitError::Serialize)?;
        let mut data = Vec::with_capacity(1 + args.len());
        data.push(Value::String(event.to_owned()));
        data.append(&mut args);
        Ok(BroadcastPacket { data: Value::Array(data), binary })
    }

    /// The packet type on the wire: an event, or a binary event when there are attachments.
    pub fn kind(&self) -> PacketType {
        if self.binary.is_empty() {
            PacketType::Event
        } else {
            PacketType::BinaryEvent
        }
    }

    /// The event name.
    pub fn event_name(&self) -> Option<&str> {
        self.data.as_array()?.first()?.as_str()
    }

    /// Encodes the packet for namespace `nsp` (with an ack id, for a broadcast with acks):
    /// the Engine.IO and WebSocket frames are built here, once for all recipients on this
    /// node.
    pub fn encode(&self, nsp: &str, ack_id: Option<u64>) -> Encoded {
        self.clone().into_encoded(nsp, ack_id)
    }

    /// [`encode`](Self::encode), keeping the packet itself (for external sockets) without a
    /// copy.
    pub fn into_encoded(self, nsp: &str, ack_id: Option<u64>) -> Encoded {
        let text = crate::packet::encode_parts(self.kind(), nsp, ack_id, Some(&self.data), self.binary.len());
        Encoded::from_parts(&text, Arc::new(self), ack_id)
    }
}

/// The answers to a broadcast with acknowledgements.
#[derive(Debug, Default)]
pub struct BroadcastAcks {
    /// The answers: the socket when known (this node's sockets; remote Node.js nodes do not
    /// name it) and its acknowledgement.
    pub responses: Vec<(Option<Sid>, AckResponse)>,
    /// How many sockets the packet was sent to, on the nodes that reported.
    pub expected: usize,
    /// Nodes that did not report how many sockets they sent to before the timeout.
    pub missing_nodes: Vec<NodeId>,
}

impl BroadcastAcks {
    /// Whether every node reported and every socket answered.
    pub fn complete(&self) -> bool {
        self.missing_nodes.is_empty() && self.responses.len() >= self.expected
    }

    /// How many sockets did not answer (on the nodes that reported).
    pub fn missing(&self) -> usize {
        self.expected.saturating_sub(self.responses.len())
    }
}

/// What a broadcast reached, counted on each node that reported
/// ([`Adapter::broadcast_counted`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BroadcastReport {
    /// This node's deliveries.
    pub local: usize,
    /// Each other node's deliveries, as it reported them.
    pub remote: Vec<(NodeId, usize)>,
    /// Nodes that did not report before the timeout (their deliveries are unknown).
    pub missing_nodes: Vec<NodeId>,
}

impl BroadcastReport {
    /// Deliveries on every node that reported.
    pub fn total(&self) -> usize {
        self.local + self.remote.iter().map(|(_, n)| n).sum::<usize>()
    }
}

/// A socket as another node sees it (Socket.IO's `fetchSockets()` entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SocketInfo {
    /// The socket id (a Node.js node's ids are not [`Sid`]s, hence text).
    pub id: String,
    /// What the connection's first request showed: `address`, `query`, `auth`, `time`,
    /// `issued`, `url`, `headers` (the fields Node's `socket.handshake` has).
    #[serde(default)]
    pub handshake: Value,
    /// Its rooms, its own id room included.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// The application's data attached to the socket ([`Socket::set_data`]).
    #[serde(default)]
    pub data: Value,
    /// The node that holds it; `None` on this node.
    #[serde(skip)]
    pub node: Option<NodeId>,
}

/// The answers to a server-side emit with acknowledgement: one per other node that
/// answered.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ServerAcks {
    /// The first argument of each node's acknowledgement.
    pub responses: Vec<Value>,
    /// The nodes that did not answer before the timeout.
    pub missing_nodes: Vec<NodeId>,
}

/// Room membership and every multi-socket operation of one namespace.
///
/// Membership calls (`add_all`, `del`, `del_all`, `socket_rooms`) concern this node's sockets;
/// every other call concerns the whole cluster unless `opts.local` is set. An implementation
/// applies an operation to this node's sockets (through a [`LocalAdapter`]) and sends it to
/// the other nodes once.
pub trait Adapter: Send + Sync + 'static {
    /// Called once the namespace exists, before any socket joins it: a cluster adapter keeps
    /// a weak reference to apply other nodes' requests.
    fn init(&self, _ns: &Arc<Namespace>) {}

    /// A log and session store shared with the other nodes, for connection state recovery
    /// across nodes ([`crate::recovery`]). Default: none (the namespace keeps its own, in
    /// memory).
    fn recovery_backend(&self) -> Option<Arc<dyn crate::recovery::RecoveryBackend>> {
        None
    }

    /// Called when the server closes: a cluster adapter says goodbye to the other nodes.
    fn close<'a>(&'a self, _ns: &'a Namespace) -> AdapterFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// A socket of this node is connecting (called before it is visible and before its
    /// CONNECT reply). Default: nothing.
    fn socket_connected<'a>(&'a self, _ns: &'a Namespace, _sid: Sid) -> AdapterFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Adds `sid` to `rooms`.
    fn add_all<'a>(&'a self, ns: &'a Namespace, sid: Sid, rooms: Vec<Room>) -> AdapterFuture<'a, ()>;
    /// Removes `sid` from `rooms`.
    fn del<'a>(&'a self, ns: &'a Namespace, sid: Sid, rooms: Vec<Room>) -> AdapterFuture<'a, ()>;
    /// Removes `sid` from every room (on disconnect).
    fn del_all<'a>(&'a self, ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, ()>;
    /// The rooms of this node's socket `sid` (its own id room first).
    fn socket_rooms<'a>(&'a self, ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, Vec<Room>>;
    /// This node's sockets that `opts` selects.
    fn sockets<'a>(&'a self, ns: &'a Namespace, opts: &'a BroadcastOptions) -> AdapterFuture<'a, Vec<Sid>>;

    /// Every room with at least one member, on every node (socket id rooms included).
    fn all_rooms<'a>(&'a self, ns: &'a Namespace) -> AdapterFuture<'a, Vec<Room>>;
    /// How many nodes serve this namespace, this one included.
    fn server_count<'a>(&'a self, _ns: &'a Namespace) -> AdapterFuture<'a, usize> {
        Box::pin(std::future::ready(Ok(1)))
    }
    /// Sends `packet` to the sockets `opts` selects; returns how many of this node's sockets
    /// it was queued for.
    fn broadcast<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: BroadcastPacket,
        opts: &'a BroadcastOptions,
    ) -> AdapterFuture<'a, usize>;
    /// [`broadcast`](Self::broadcast), and each other node reports how many of its sockets it
    /// reached (waiting up to `timeout`). Nodes that cannot report (not Switchboard) are not
    /// waited for.
    fn broadcast_counted<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: BroadcastPacket,
        opts: &'a BroadcastOptions,
        _timeout: Duration,
    ) -> AdapterFuture<'a, BroadcastReport> {
        Box::pin(async move {
            let local = self.broadcast(ns, packet, opts).await?;
            Ok(BroadcastReport { local, ..Default::default() })
        })
    }
    /// Sends `packet` with an ack request and gathers the answers within `timeout`: each node
    /// first says how many sockets it sent to, then their acks follow.
    fn broadcast_with_ack<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: BroadcastPacket,
        opts: &'a BroadcastOptions,
        timeout: Duration,
    ) -> AdapterFuture<'a, BroadcastAcks>;
    /// The sockets `opts` selects, on every node.
    fn fetch_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        timeout: Duration,
    ) -> AdapterFuture<'a, Vec<SocketInfo>>;
    /// Makes the sockets `opts` selects join `rooms`, on every node.
    fn add_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        rooms: Vec<Room>,
    ) -> AdapterFuture<'a, ()>;
    /// Makes the sockets `opts` selects leave `rooms`, on every node.
    fn del_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        rooms: Vec<Room>,
    ) -> AdapterFuture<'a, ()>;
    /// Disconnects the sockets `opts` selects, on every node (`close`: their whole
    /// connection).
    fn disconnect_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        close: bool,
    ) -> AdapterFuture<'a, ()>;
    /// Sends a server-side event (`[event, arg…]`) to the other nodes' server-event handlers
    /// ([`Handlers::on_server_event`](crate::Handlers::on_server_event)); with `ack`, waits
    /// that long for one answer per other node.
    fn server_side_emit<'a>(
        &'a self,
        ns: &'a Namespace,
        data: Vec<Value>,
        ack: Option<Duration>,
    ) -> AdapterFuture<'a, ServerAcks>;
}

/// The in-memory adapter: rooms of this process only. Its synchronous methods are the local
/// half of a cluster adapter.
#[derive(Debug, Default)]
pub struct LocalAdapter {
    rooms: RwLock<Rooms>,
}

#[derive(Debug, Default)]
struct Rooms {
    members: HashMap<Room, HashSet<Sid>>,
    of: HashMap<Sid, Vec<Room>>,
}

/// A room change, for a cluster adapter that subscribes per room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomChange {
    /// The room got its first member on this node.
    Created(Room),
    /// The room lost its last member on this node.
    Deleted(Room),
}

impl LocalAdapter {
    /// An empty adapter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sockets `opts` selects, on this node.
    pub fn select(&self, ns: &Namespace, opts: &BroadcastOptions) -> Vec<Sid> {
        let rooms = self.rooms.read();
        let mut excluded: HashSet<Sid> = opts.except_sids.iter().copied().collect();
        for r in &opts.except_rooms {
            if let Some(m) = rooms.members.get(r) {
                excluded.extend(m.iter().copied());
            }
        }
        if opts.rooms.is_empty() {
            return ns.socket_ids().into_iter().filter(|s| !excluded.contains(s)).collect();
        }
        // One room's members are distinct already; several rooms need a dedup set.
        let dedup = opts.rooms.len() > 1;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut take = |s: Sid, out: &mut Vec<Sid>| {
            if !excluded.contains(&s) && (!dedup || seen.insert(s)) {
                out.push(s);
            }
        };
        for r in &opts.rooms {
            match rooms.members.get(r) {
                Some(m) => m.iter().for_each(|s| take(*s, &mut out)),
                // A socket id names that socket (its own room is not stored).
                None => {
                    if let Some(sid) = Sid::parse(r).filter(|s| ns.has_socket(*s)) {
                        take(sid, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Encodes `packet` once and sends it to this node's selected sockets; with connection
    /// state recovery on (and not volatile), the event gets its offset and is logged first
    /// ([`crate::recovery`]). Returns how many sockets it was queued for.
    pub fn deliver_packet(&self, ns: &Namespace, packet: BroadcastPacket, opts: &BroadcastOptions) -> usize {
        match ns.recovery_store() {
            Some(store) if !opts.volatile && store.backend.is_none() => {
                self.deliver(ns, &store.stamp(ns.name(), packet, opts), opts)
            }
            _ => self.deliver(ns, &packet.into_encoded(ns.name(), None), opts),
        }
    }

    /// Delivers an event of a shared recovery log ([`crate::recovery::RecoveryBackend`]) to
    /// this node's selected sockets: `offset` is appended as its last argument, and `key`
    /// (its place in the log) lets a socket whose replay already sent it drop it. Returns how
    /// many sockets it was queued for.
    pub fn deliver_logged(
        &self,
        ns: &Namespace,
        packet: BroadcastPacket,
        opts: &BroadcastOptions,
        offset: &str,
        key: u64,
    ) -> usize {
        self.deliver(ns, &crate::recovery::encode_logged(ns.name(), packet, offset, key), opts)
    }

    /// Delivers an encoded packet to this node's selected sockets; returns how many it was
    /// queued for.
    pub fn deliver(&self, ns: &Namespace, packet: &Encoded, opts: &BroadcastOptions) -> usize {
        let sids = self.select(ns, opts);
        let mut n = 0;
        ns.for_each_socket(&sids, |s| {
            let via = if s.is_external() { self.via(s.id(), &opts.rooms) } else { None };
            if matches!(s.send_encoded_via(packet, opts.volatile, via.as_ref()), Ok(true)) {
                n += 1;
            }
        });
        n
    }

    /// The first of `rooms` that `sid` is in (a socket id room counts).
    fn via(&self, sid: Sid, rooms: &[Room]) -> Option<Room> {
        if rooms.is_empty() {
            return None;
        }
        let g = self.rooms.read();
        rooms.iter().find(|r| g.members.get(*r).is_some_and(|m| m.contains(&sid))).cloned()
    }

    /// Sends `packet` with a fresh ack id of the namespace to this node's selected sockets;
    /// returns a wait per socket it was queued for.
    pub fn deliver_with_ack(
        &self,
        ns: &Namespace,
        packet: &BroadcastPacket,
        opts: &BroadcastOptions,
        timeout: Duration,
    ) -> Vec<(Sid, AckWait)> {
        let id = ns.next_ack_id();
        let e = packet.encode(ns.name(), Some(id));
        let mut waits = Vec::new();
        ns.for_each_socket(&self.select(ns, opts), |s| {
            if let Some(w) = s.send_encoded_with_ack(&e, opts.volatile) {
                waits.push((s.id(), w.timeout(timeout)));
            }
        });
        waits
    }

    /// Adds `sid` to `rooms`; returns the rooms this created on this node.
    pub fn join(&self, sid: Sid, rooms: Vec<Room>) -> Vec<Room> {
        let mut g = self.rooms.write();
        let mut created = Vec::new();
        for r in rooms {
            let m = g.members.entry(r.clone()).or_default();
            let first = m.is_empty();
            if m.insert(sid) {
                if first {
                    created.push(r.clone());
                }
                g.of.entry(sid).or_default().push(r);
            }
        }
        created
    }

    /// Removes `sid` from `rooms`; returns the rooms this emptied.
    pub fn leave(&self, sid: Sid, rooms: &[Room]) -> Vec<Room> {
        let mut g = self.rooms.write();
        let mut deleted = Vec::new();
        for r in rooms {
            if let Some(m) = g.members.get_mut(r) {
                if m.remove(&sid) && m.is_empty() {
                    g.members.remove(r);
                    deleted.push(r.clone());
                }
            }
            if let Some(list) = g.of.get_mut(&sid) {
                list.retain(|x| x != r);
                if list.is_empty() {
                    g.of.remove(&sid);
                }
            }
        }
        deleted
    }

    /// Removes `sid` from every room; returns the rooms this emptied.
    pub fn leave_all(&self, sid: Sid) -> Vec<Room> {
        let mut g = self.rooms.write();
        let mut deleted = Vec::new();
        if let Some(list) = g.of.remove(&sid) {
            for r in list {
                if let Some(m) = g.members.get_mut(&r) {
                    m.remove(&sid);
                    if m.is_empty() {
                        g.members.remove(&r);
                        deleted.push(r);
                    }
                }
            }
        }
        deleted
    }

    /// The rooms of `sid`, its own id room first.
    pub fn rooms_of(&self, sid: Sid) -> Vec<Room> {
        let mut out: Vec<Room> = vec![Arc::from(sid.to_string())];
        if let Some(list) = self.rooms.read().of.get(&sid) {
            out.extend(list.iter().cloned());
        }
        out
    }

    /// Every room with a member on this node, socket id rooms included.
    pub fn local_rooms(&self, ns: &Namespace) -> Vec<Room> {
        let mut out: Vec<Room> = self.rooms.read().members.keys().cloned().collect();
        out.extend(ns.socket_ids().into_iter().map(|s| Arc::from(s.to_string())));
        out
    }

    /// Whether the room has a member on this node (not counting socket id rooms).
    pub fn has_room(&self, room: &str) -> bool {
        self.rooms.read().members.contains_key(room)
    }

    /// Makes this node's selected sockets join `rooms`; returns the rooms this created.
    pub fn add_selected(&self, ns: &Namespace, opts: &BroadcastOptions, rooms: &[Room]) -> Vec<Room> {
        let mut created = Vec::new();
        for sid in self.select(ns, opts) {
            created.extend(self.join(sid, rooms.to_vec()));
            ns.session_changed(sid, self.rooms_of(sid));
        }
        created
    }

    /// Makes this node's selected sockets leave `rooms`; returns the rooms this emptied.
    pub fn del_selected(&self, ns: &Namespace, opts: &BroadcastOptions, rooms: &[Room]) -> Vec<Room> {
        let mut deleted = Vec::new();
        for sid in self.select(ns, opts) {
            deleted.extend(self.leave(sid, rooms));
            ns.session_changed(sid, self.rooms_of(sid));
        }
        deleted
    }

    /// Disconnects this node's selected sockets (`close`: their whole connection).
    pub fn disconnect_selected(&self, ns: &Namespace, opts: &BroadcastOptions, close: bool) {
        let mut victims: Vec<Socket> = Vec::new();
        ns.for_each_socket(&self.select(ns, opts), |s| victims.push(s.clone()));
        for s in victims {
            if close {
                s.close_connection();
            } else {
                s.disconnect();
            }
        }
    }

    /// This node's selected sockets, described.
    pub fn socket_infos(&self, ns: &Namespace, opts: &BroadcastOptions) -> Vec<SocketInfo> {
        let mut out = Vec::new();
        ns.for_each_socket(&self.select(ns, opts), |s| out.push(s.info(self.rooms_of(s.id()))));
        out
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> AdapterFuture<'a, T> {
    Box::pin(std::future::ready(Ok(v)))
}

/// Waits for the acks of this node's sockets, until `deadline`, into `acks`.
pub async fn gather_local_acks(waits: Vec<(Sid, AckWait)>, acks: &mut BroadcastAcks) {
    acks.expected += waits.len();
    let answers = waits.into_iter().map(|(sid, w)| async move { (sid, w.wait().await) });
    for (sid, r) in futures_util::future::join_all(answers).await {
        if let Ok(r) = r {
            acks.responses.push((Some(sid), r));
        }
    }
}

impl Adapter for LocalAdapter {
    fn add_all<'a>(&'a self, _ns: &'a Namespace, sid: Sid, rooms: Vec<Room>) -> AdapterFuture<'a, ()> {
        self.join(sid, rooms);
        ready(())
    }

    fn del<'a>(&'a self, _ns: &'a Namespace, sid: Sid, rooms: Vec<Room>) -> AdapterFuture<'a, ()> {
        self.leave(sid, &rooms);
        ready(())
    }

    fn del_all<'a>(&'a self, _ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, ()> {
        self.leave_all(sid);
        ready(())
    }

    fn socket_rooms<'a>(&'a self, _ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, Vec<Room>> {
        ready(self.rooms_of(sid))
    }

    fn sockets<'a>(&'a self, ns: &'a Namespace, opts: &'a BroadcastOptions) -> AdapterFuture<'a, Vec<Sid>> {
        ready(self.select(ns, opts))
    }

    fn all_rooms<'a>(&'a self, ns: &'a Namespace) -> AdapterFuture<'a, Vec<Room>> {
        ready(self.local_rooms(ns))
    }

    fn broadcast<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: BroadcastPacket,
        opts: &'a BroadcastOptions,
    ) -> AdapterFuture<'a, usize> {
        ready(self.deliver_packet(ns, packet, opts))
    }

    fn broadcast_with_ack<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: BroadcastPacket,
        opts: &'a BroadcastOptions,
        timeout: Duration,
    ) -> AdapterFuture<'a, BroadcastAcks> {
        let waits = self.deliver_with_ack(ns, &packet, opts, timeout);
        Box::pin(async move {
            let mut acks = BroadcastAcks::default();
            gather_local_acks(waits, &mut acks).await;
            Ok(acks)
        })
    }

    fn fetch_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        _timeout: Duration,
    ) -> AdapterFuture<'a, Vec<SocketInfo>> {
        ready(self.socket_infos(ns, opts))
    }

    fn add_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        rooms: Vec<Room>,
    ) -> AdapterFuture<'a, ()> {
        self.add_selected(ns, opts, &rooms);
        ready(())
    }

    fn del_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        rooms: Vec<Room>,
    ) -> AdapterFuture<'a, ()> {
        self.del_selected(ns, opts, &rooms);
        ready(())
    }

    fn disconnect_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        close: bool,
    ) -> AdapterFuture<'a, ()> {
        self.disconnect_selected(ns, opts, close);
        ready(())
    }

    fn server_side_emit<'a>(
        &'a self,
        _ns: &'a Namespace,
        _data: Vec<Value>,
        _ack: Option<Duration>,
    ) -> AdapterFuture<'a, ServerAcks> {
        // One node: there is no other server to tell.
        ready(ServerAcks::default())
    }
}
