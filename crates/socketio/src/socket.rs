//! A socket: one client connected to one namespace. Emitting, acknowledgements, rooms,
//! disconnecting.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use switchboard_engineio::{Frame, SendError, Session, Sid};
use tokio::sync::oneshot;

use crate::adapter::Room;
use crate::conn::{Conn, ConnInfo};
use crate::operators::BroadcastOperator;
use crate::packet::{Packet, PacketType};
use crate::Namespace;

/// Why a socket left its namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client left the namespace (`socket.disconnect()` on the client).
    ClientNamespaceDisconnect,
    /// The server disconnected the socket ([`Socket::disconnect`]).
    ServerNamespaceDisconnect,
    /// The client closed the connection.
    TransportClose,
    /// The connection failed.
    TransportError,
    /// The client did not answer pings.
    PingTimeout,
    /// The client sent an invalid packet (security: E10–E14, E17).
    ParseError,
    /// The server closed the connection.
    ForcedClose,
    /// The client did not read fast enough: its outbound queue filled up.
    QueueFull,
    /// The server is shutting down.
    ServerShutdown,
    /// The client sent events faster than their handlers finished
    /// ([`SocketIoConfig::max_waiting_handlers`](crate::SocketIoConfig::max_waiting_handlers)).
    Overloaded,
}

impl DisconnectReason {
    /// The reason as Socket.IO names it.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::QueueFull => "outbound queue full",
            DisconnectReason::ServerShutdown => "server shutting down",
            DisconnectReason::Overloaded => "too many pending requests",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an emit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The socket is disconnected.
    #[error("socket disconnected")]
    Disconnected,
    /// The data does not serialize to JSON.
    #[error("data is not serializable: {0}")]
    Serialize(String),
    /// A reserved event name (`connect`, `disconnect`, …) (security: E12).
    #[error("reserved event name")]
    ReservedEvent,
    /// The outbound queue was full and the socket was disconnected (not for volatile emits,
    /// which are dropped instead).
    #[error("outbound queue full; socket disconnected")]
    QueueFull,
    /// The adapter failed.
    #[error(transparent)]
    Adapter(#[from] crate::adapter::AdapterError),
}

/// Why an acknowledgement did not come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// No answer within the timeout.
    #[error("acknowledgement timed out")]
    Timeout,
    /// The socket disconnected first.
    #[error("socket disconnected before acknowledging")]
    Disconnected,
}

/// The arguments of an acknowledgement.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AckResponse {
    /// The JSON arguments (binary ones as placeholders `{"_placeholder":true,"num":N}`).
    pub args: Vec<Value>,
    /// The binary attachments, in placeholder order.
    pub binary: Vec<Bytes>,
}

impl AckResponse {
    /// Argument `i` as `T` (binary placeholders fill `Bytes` fields, [`crate::payload`]).
    pub fn arg<T: DeserializeOwned>(&self, i: usize) -> Result<T, serde_json::Error> {
        crate::payload::from_payload(self.args.get(i).unwrap_or(&Value::Null), &self.binary)
    }
}

/// An encoded packet, ready for many sockets: its frames are cloned per recipient, sharing
/// the bytes (encode once, send many).
#[derive(Debug)]
pub struct Encoded {
    pub(crate) frames: Vec<Frame>,
    /// The ack id the packet carries, if any.
    pub ack_id: Option<u64>,
    /// The broadcast it encodes, for external sockets ([`SocketSink`]).
    pub(crate) source: Option<Arc<crate::adapter::BroadcastPacket>>,
    /// Scratch space shared by the external sockets it reaches.
    pub(crate) cache: SinkCache,
    /// Its place in the namespace's recovery log (connection state recovery): the packet
    /// carries the offset as its last argument.
    pub(crate) seq: Option<u64>,
    /// The frames without the offset, for sockets whose clients do not take offsets (made
    /// when the first such socket needs them).
    pub(crate) plain: std::sync::OnceLock<Vec<Frame>>,
}

impl Encoded {
    /// A copy sharing the frames' bytes, with a scratch space of its own.
    pub(crate) fn duplicate(&self) -> Encoded {
        Encoded {
            frames: self.frames.clone(),
            ack_id: self.ack_id,
            source: self.source.clone(),
            cache: SinkCache::default(),
            seq: self.seq,
            plain: self.plain.clone(),
        }
    }

    /// Encodes a packet and its attachments.
    pub fn new(packet: &Packet) -> Encoded {
        let mut frames = Vec::with_capacity(1 + packet.attachments.len());
        frames.push(Frame::message(&packet.encode()));
        frames.extend(packet.attachments.iter().cloned().map(Frame::Binary));
        Encoded {
            frames,
            ack_id: packet.id,
            source: None,
            cache: SinkCache::default(),
            seq: None,
            plain: Default::default(),
        }
    }

    /// Its frames for a client of namespace `nsp` that does not take offsets: a logged event
    /// without its last argument (encoded once, when first needed).
    pub(crate) fn plain_frames(&self, nsp: &str) -> &[Frame] {
        let (Some(_), Some(src)) = (self.seq, &self.source) else { return &self.frames };
        self.plain.get_or_init(|| {
            let mut p = (**src).clone();
            if let Value::Array(a) = &mut p.data {
                a.pop();
            }
            p.into_encoded(nsp, self.ack_id).frames
        })
    }

    /// The bytes of its frames (as polling sends them).
    pub(crate) fn byte_len(&self) -> usize {
        self.frames.iter().map(Frame::len).sum()
    }

    /// Encodes a packet for a broadcast: the WebSocket frames are encoded here too, once for
    /// all recipients.
    pub fn for_broadcast(packet: &Packet) -> Encoded {
        let mut e = Encoded::new(packet);
        e.frames = e.frames.into_iter().map(Frame::prepare).collect();
        e
    }

    /// A broadcast's frames from its text form and attachments, prepared once for all
    /// recipients.
    pub(crate) fn from_parts(text: &str, source: Arc<crate::adapter::BroadcastPacket>, ack_id: Option<u64>) -> Encoded {
        let mut frames = Vec::with_capacity(1 + source.binary.len());
        frames.push(Frame::message(text).prepare());
        frames.extend(source.binary.iter().cloned().map(|b| Frame::Binary(b).prepare()));
        Encoded {
            frames,
            ack_id,
            source: Some(source),
            cache: SinkCache::default(),
            seq: None,
            plain: Default::default(),
        }
    }
}

/// A live event held during a replay, with the room it came through.
pub(crate) type Held = (Encoded, Option<crate::adapter::Room>);

/// Builds an event packet. The attachments go where the arguments' placeholders say, or,
/// when there are none, after the JSON arguments (see [`crate::payload`]).
pub(crate) fn event_packet(
    nsp: &str,
    name: &str,
    mut args: Vec<Value>,
    binary: Vec<Bytes>,
    id: Option<u64>,
) -> Result<Packet, EmitError> {
    crate::payload::place_attachments(&mut args, binary.len()).map_err(EmitError::Serialize)?;
    let mut data = Vec::with_capacity(1 + args.len());
    data.push(Value::String(name.to_owned()));
    data.append(&mut args);
    Ok(Packet {
        kind: if binary.is_empty() { PacketType::Event } else { PacketType::BinaryEvent },
        nsp: nsp.to_owned(),
        id,
        data: Some(Value::Array(data)),
        attachments: binary,
    })
}

/// One argument, its byte strings moved into attachments.
pub(crate) fn to_args<T: Serialize + ?Sized>(data: &T) -> Result<(Vec<Value>, Vec<Bytes>), EmitError> {
    let (v, bins) = crate::payload::to_payload(data).map_err(|e| EmitError::Serialize(e.to_string()))?;
    Ok((vec![v], bins))
}

/// Several arguments: `data` must serialize to a sequence (a tuple, an array, a `Vec`), each
/// element one argument.
pub(crate) fn to_arg_list<T: Serialize + ?Sized>(data: &T) -> Result<(Vec<Value>, Vec<Bytes>), EmitError> {
    match crate::payload::to_payload(data).map_err(|e| EmitError::Serialize(e.to_string()))? {
        (Value::Array(args), bins) => Ok((args, bins)),
        _ => {
            Err(EmitError::Serialize("the arguments must serialize to a sequence (a tuple, an array or a Vec)".into()))
        }
    }
}

/// What an external socket's sink is given to deliver ([`SocketSink`]).
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The packet type: an event or binary event (with `ack_id`: the server waits for an
    /// ack), an ack or binary ack of the client's request, or a disconnect.
    pub kind: PacketType,
    /// The payload: `[event, arg…]` for events, `[arg…]` for acks (binary as placeholders).
    pub data: Option<&'a Value>,
    /// The attachments the placeholders name.
    pub binary: &'a [Bytes],
    /// The ack id the server waits for (events), or the id being answered (acks).
    pub ack_id: Option<u64>,
    /// For a broadcast to rooms: the first of the broadcast's rooms this socket is in.
    pub via: Option<&'a Room>,
    /// Whether the packet may be dropped rather than failing when the sink is full.
    pub volatile: bool,
    /// Shared by every recipient of one broadcast on this node, so that a sink can encode
    /// once for all of them (keyed as the sink likes, e.g. by `via`).
    pub cache: Option<&'a SinkCache>,
    /// With connection state recovery on: the event's offset, which is also the last element
    /// of `data` (where Socket.IO clients read it). A sink that speaks another protocol drops
    /// that element and may pass the offset its own way.
    pub offset: Option<&'a str>,
}

/// Per-broadcast scratch space for [`SocketSink`]s: encoded forms, keyed by the room the
/// recipients were reached through.
#[derive(Default)]
pub struct SinkCache(Mutex<Vec<CacheEntry>>);

type CacheEntry = (Option<Room>, Box<dyn std::any::Any + Send + Sync>);

impl fmt::Debug for SinkCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkCache").field("entries", &self.0.lock().len()).finish()
    }
}

impl SinkCache {
    /// The entry for `key`, made by `make` the first time (any cheaply cloned type: `Bytes`,
    /// an `Arc`, …).
    pub fn get_or_insert<T: Clone + Send + Sync + 'static>(&self, key: Option<&Room>, make: impl FnOnce() -> T) -> T {
        let mut g = self.0.lock();
        if let Some(v) = g.iter().find(|(k, _)| k.as_ref() == key).and_then(|(_, v)| v.downcast_ref::<T>()) {
            return v.clone();
        }
        let v = make();
        g.push((key.cloned(), Box::new(v.clone())));
        v
    }
}

/// Where an external socket's packets go: a socket that is not an Engine.IO connection (the
/// hub's plain-WebSocket clients) but a member of the namespace like any other, so rooms,
/// broadcasts, acks and cluster operations reach it the same way.
pub trait SocketSink: Send + Sync + 'static {
    /// Delivers a packet. `Ok(true)`: queued; `Ok(false)`: a volatile packet dropped; `Err`:
    /// the socket cannot take it (the sink closes it).
    fn send(&self, out: Outgoing<'_>) -> Result<bool, EmitError>;
    /// The server disconnects the socket.
    fn close(&self);
}

pub(crate) enum Transport {
    Engine(Weak<Session<Conn>>),
    External(Arc<dyn SocketSink>, ConnInfo),
}

/// A client connected to a namespace. Cheap to clone.
#[derive(Clone)]
pub struct Socket(pub(crate) Arc<SocketInner>);

pub(crate) struct SocketInner {
    pub(crate) id: Sid,
    pub(crate) ns: Arc<Namespace>,
    pub(crate) transport: Transport,
    pub(crate) acks: Mutex<HashMap<u64, oneshot::Sender<AckResponse>>>,
    pub(crate) connected: AtomicBool,
    pub(crate) auth: Value,
    /// The application's data ([`Socket::set_data`]).
    data: Mutex<Value>,
    /// When it connected, in milliseconds since the Unix epoch.
    issued: u64,
    /// Its connection state recovery session secret (`pid`), when recovery is on.
    pub(crate) pid: Mutex<Option<String>>,
    /// What became of its recovery request.
    pub(crate) recovery: Mutex<crate::recovery::Recovery>,
    /// Logged events up to this sequence number were replayed to it (or are about to be):
    /// their live copies are dropped.
    pub(crate) replayed_until: std::sync::atomic::AtomicU64,
    /// While the recovery replay is being read (`replayed_until` is `u64::MAX`): the logged
    /// events that arrived live meanwhile, sent after the replay, those it did not hold.
    pub(crate) replay_buffer: Mutex<Option<Vec<Held>>>,
    /// Its client does not take offsets (connection state recovery is off for it): logged
    /// events go to it without their offset.
    pub(crate) plain: std::sync::atomic::AtomicBool,
    /// After a room replay ([`Socket::join_since`]): the keys it sent, until a live event past
    /// the last of them shows that no live copy of them can come any more.
    pub(crate) room_replayed: Mutex<Option<(u64, std::collections::HashSet<u64>)>>,
    /// Whether `room_replayed` holds a set (so that deliveries skip its lock otherwise).
    pub(crate) room_replay_set: std::sync::atomic::AtomicBool,
    /// Set once its disconnect finished (rooms left, handler run, session kept or forgotten).
    pub(crate) gone: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("id", &self.0.id).field("ns", &self.0.ns.name()).finish()
    }
}

impl PartialEq for Socket {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Socket {
    /// An external socket (see [`SocketSink`]) in namespace `ns`: connected and in the
    /// namespace at once (no middleware, no connect handler: the embedder admitted it).
    pub fn connect_external(ns: &Arc<Namespace>, sink: Arc<dyn SocketSink>, auth: Value, info: ConnInfo) -> Socket {
        let s = Socket::with_transport(ns.clone(), Transport::External(sink, info), auth);
        s.0.connected.store(true, Ordering::Release);
        ns.insert_socket(s.clone());
        s
    }

    /// Whether this is an external socket ([`Socket::connect_external`]).
    pub fn is_external(&self) -> bool {
        matches!(self.0.transport, Transport::External(..))
    }

    fn session(&self) -> Option<Arc<Session<Conn>>> {
        match &self.0.transport {
            Transport::Engine(w) => w.upgrade(),
            Transport::External(..) => None,
        }
    }

    pub(crate) fn new(ns: Arc<Namespace>, session: &Arc<Session<Conn>>, auth: Value) -> Socket {
        Socket::with_transport(ns, Transport::Engine(Arc::downgrade(session)), auth)
    }

    fn with_transport(ns: Arc<Namespace>, transport: Transport, auth: Value) -> Socket {
        Socket(Arc::new(SocketInner {
            id: Sid::generate(),
            ns,
            transport,
            acks: Mutex::new(HashMap::new()),
            connected: AtomicBool::new(false),
            auth,
            data: Mutex::new(Value::Null),
            issued: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            pid: Mutex::new(None),
            recovery: Mutex::new(crate::recovery::Recovery::Fresh),
            replayed_until: std::sync::atomic::AtomicU64::new(0),
            replay_buffer: Mutex::new(None),
            gone: std::sync::atomic::AtomicBool::new(false),
            room_replayed: Mutex::new(None),
            room_replay_set: std::sync::atomic::AtomicBool::new(false),
            plain: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// A socket that takes over a recovered session's id.
    pub(crate) fn with_id(mut self, id: Sid) -> Socket {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.id = id;
        }
        self
    }

    /// Whether the connection state was recovered: the same id, rooms and data as before the
    /// connection was lost, and the events missed meanwhile delivered (Node's
    /// `socket.recovered`).
    pub fn recovered(&self) -> bool {
        matches!(*self.0.recovery.lock(), crate::recovery::Recovery::Recovered { .. })
    }

    /// What became of the socket's connection state: fresh, recovered, or a failed recovery
    /// and why ([`crate::recovery`]).
    pub fn recovery(&self) -> crate::recovery::Recovery {
        self.0.recovery.lock().clone()
    }

    /// The socket id (distinct from the Engine.IO session id; sent to the client on connect).
    pub fn id(&self) -> Sid {
        self.0.id
    }

    /// The namespace.
    pub fn ns(&self) -> &Arc<Namespace> {
        &self.0.ns
    }

    /// The `auth` payload of the client's CONNECT: always an object (`{}` when the client sent
    /// none; a CONNECT payload that is not an object is refused as a parse error).
    pub fn auth(&self) -> &Value {
        &self.0.auth
    }

    /// What the connection's first request showed (query, remote address).
    pub fn handshake(&self) -> Option<crate::conn::ConnInfo> {
        match &self.0.transport {
            Transport::Engine(w) => w.upgrade().map(|s| s.data().info.clone()),
            Transport::External(_, info) => Some(info.clone()),
        }
    }

    /// The Engine.IO session id of the connection under this socket.
    pub fn engine_sid(&self) -> Option<Sid> {
        self.session().map(|s| s.sid())
    }

    /// The application's data attached to this socket (Node's `socket.data`): `null` until
    /// set. Other nodes see it in [`fetch_sockets`](crate::BroadcastOperator::fetch_sockets).
    pub fn data(&self) -> Value {
        self.0.data.lock().clone()
    }

    /// Attaches data to this socket (replacing what was there).
    pub fn set_data(&self, data: Value) {
        *self.0.data.lock() = data;
        if self.connected() && self.0.ns.recovery_store().is_some_and(|s| s.backend.is_some()) {
            let ns = self.0.ns.clone();
            let sid = self.id();
            tokio::spawn(async move { ns.rooms_changed(sid).await });
        }
    }

    /// Its recovery session as a shared backend keeps it, with these rooms (`None` without
    /// recovery).
    pub(crate) fn session_state(&self, rooms: Vec<crate::adapter::Room>) -> Option<crate::recovery::SessionState> {
        let pid = self.0.pid.lock().clone()?;
        Some(crate::recovery::SessionState { sid: self.id(), pid, rooms, data: self.data() })
    }

    /// This socket as other nodes see it, with its rooms.
    pub(crate) fn info(&self, rooms: Vec<Room>) -> crate::adapter::SocketInfo {
        let (query, address) = match self.handshake() {
            Some(info) => (info.query.to_string(), info.remote.map(|a| a.ip().to_string())),
            None => (String::new(), None),
        };
        let query: serde_json::Map<String, Value> = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), Value::String(v.to_owned()))
            })
            .collect();
        crate::adapter::SocketInfo {
            id: self.id().to_string(),
            handshake: serde_json::json!({
                "address": address,
                "query": query,
                "auth": self.0.auth,
                "issued": self.0.issued,
                "time": self.0.issued.to_string(),
                "url": self.0.ns.name(),
                "headers": {},
            }),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            data: self.data(),
            node: None,
        }
    }

    /// Closes the whole connection under this socket (every namespace of it).
    pub fn close_connection(&self) {
        match &self.0.transport {
            Transport::Engine(w) => match w.upgrade() {
                Some(s) => s.close(switchboard_engineio::CloseReason::ForcedClose),
                None => self.on_disconnect(DisconnectReason::ForcedClose),
            },
            Transport::External(sink, _) => {
                sink.close();
                self.on_disconnect(DisconnectReason::ForcedClose);
            }
        }
    }

    /// Whether the socket is connected.
    pub fn connected(&self) -> bool {
        self.0.connected.load(Ordering::Acquire)
    }

    /// Number of acknowledgements this server waits for from this socket.
    pub fn pending_acks(&self) -> usize {
        self.0.acks.lock().len()
    }

    /// Queues an encoded packet. When the queue is full a volatile packet is dropped
    /// (`Ok(false)`); otherwise the connection is closed with [`DisconnectReason::QueueFull`].
    pub(crate) fn send_encoded(&self, e: &Encoded, volatile: bool) -> Result<bool, EmitError> {
        self.send_encoded_via(e, volatile, None)
    }

    /// [`send_encoded`](Self::send_encoded), saying which room reached the socket (for
    /// external sockets).
    pub(crate) fn send_encoded_via(&self, e: &Encoded, volatile: bool, via: Option<&Room>) -> Result<bool, EmitError> {
        self.send_inner(e, volatile, via, false)
    }

    fn send_inner(&self, e: &Encoded, volatile: bool, via: Option<&Room>, replay: bool) -> Result<bool, EmitError> {
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        if let (false, Some(seq)) = (replay, e.seq) {
            if self.0.replayed_until.load(Ordering::Acquire) == u64::MAX {
                // The replay is being read: hold the event until it is out.
                let mut buf = self.0.replay_buffer.lock();
                if let Some(b) = buf.as_mut() {
                    let cap = self.0.ns.recovery_store().map_or(0, |s| s.config.max_packets);
                    if b.len() >= cap {
                        drop(buf);
                        self.close_connection();
                        return Err(EmitError::QueueFull);
                    }
                    b.push((e.duplicate(), via.cloned()));
                    return Ok(true);
                }
            }
            // An event that the recovery replay sent already.
            if seq <= self.0.replayed_until.load(Ordering::Acquire) {
                return Ok(true);
            }
            // One that a room replay sent already (the lock only while such a set is kept).
            if self.0.room_replay_set.load(Ordering::Acquire) {
                let mut rr = self.0.room_replayed.lock();
                if let Some((seen, keys)) = rr.as_ref() {
                    if seq > *seen {
                        *rr = None;
                        self.0.room_replay_set.store(false, Ordering::Release);
                    } else if keys.contains(&seq) {
                        return Ok(true);
                    }
                }
            }
        }
        let session = match &self.0.transport {
            Transport::Engine(w) => w.upgrade().ok_or(EmitError::Disconnected)?,
            Transport::External(sink, _) => {
                let Some(src) = &e.source else { return Err(EmitError::Disconnected) };
                let offset = match (e.seq, &src.data) {
                    (Some(_), Value::Array(a)) => a.last().and_then(Value::as_str),
                    _ => None,
                };
                return sink.send(Outgoing {
                    kind: src.kind(),
                    data: Some(&src.data),
                    binary: &src.binary,
                    ack_id: e.ack_id,
                    via,
                    volatile,
                    cache: Some(&e.cache),
                    offset,
                });
            }
        };
        let frames = if self.0.plain.load(Ordering::Relaxed) { e.plain_frames(self.0.ns.name()) } else { &e.frames };
        match session.send_frames(frames) {
            Ok(()) => Ok(true),
            Err(SendError::Full) if volatile => Ok(false),
            Err(SendError::Full) => {
                session.close(switchboard_engineio::CloseReason::QueueFull);
                Err(EmitError::QueueFull)
            }
            Err(_) => Err(EmitError::Disconnected),
        }
    }

    /// Starts a recovery replay: logged events that arrive live are held until
    /// [`end_replay`](Self::end_replay).
    pub(crate) fn begin_replay(&self) {
        *self.0.replay_buffer.lock() = Some(Vec::new());
        self.0.replayed_until.store(u64::MAX, Ordering::Release);
    }

    /// Ends a recovery replay that sent the events up to `seen`: the events held meanwhile
    /// that come after it are sent now, in order, before any later one.
    pub(crate) fn end_replay(&self, seen: u64) {
        // Under the lock: a live event that comes meanwhile waits, then goes after these.
        let mut buf = self.0.replay_buffer.lock();
        let held = buf.as_mut().map(std::mem::take).unwrap_or_default();
        for (e, via) in held.iter().filter(|(e, _)| e.seq.is_some_and(|s| s > seen)) {
            let _ = self.send_inner(e, false, via.as_ref(), true);
        }
        self.0.replayed_until.store(seen, Ordering::Release);
        *buf = None;
    }

    /// Joins `room` and sends its history after offset `since` (see
    /// [`Namespace::history`](crate::Namespace::history)), merged with the live events: each
    /// event once, in the log's order, the replayed ones before any live one that comes after
    /// them. `check` may refuse the history (a per-room retention policy, say) with a gap.
    /// Returns how many were replayed, or the gap (nothing is replayed then, and the socket
    /// has joined all the same: it gets the live events).
    pub async fn join_since(
        &self,
        room: &str,
        since: Option<&str>,
        check: impl FnOnce(&[crate::LoggedEvent]) -> Result<(), crate::Gap> + Send,
    ) -> Result<Result<usize, crate::Gap>, EmitError> {
        let ns = self.0.ns.clone();
        let before = self.0.replayed_until.load(Ordering::Acquire);
        let via: crate::adapter::Room = Arc::from(room);
        self.begin_replay();
        if let Err(e) = self.join(room).await {
            self.end_room_replay(before, 0, Vec::new(), &via);
            return Err(e);
        }
        match ns.history(room, since).await.and_then(|events| check(&events).map(|()| events)) {
            Ok(events) => {
                let n = events.len();
                let seen = events.last().map_or(0, |e| e.key);
                let sent = events
                    .into_iter()
                    .map(|e| crate::recovery::encode_logged(ns.name(), e.packet, &e.offset, e.key))
                    .collect();
                self.end_room_replay(before, seen, sent, &via);
                Ok(Ok(n))
            }
            Err(g) => {
                self.end_room_replay(before, 0, Vec::new(), &via);
                Ok(Err(g))
            }
        }
    }

    /// Ends a room replay: sends `replayed` (in order, through `via`), then the live events
    /// held meanwhile that are not among them; `before`: the recovery cutoff to restore.
    fn end_room_replay(&self, before: u64, seen: u64, replayed: Vec<Encoded>, via: &crate::adapter::Room) {
        // Under the lock: a live event that comes meanwhile waits, then goes after these.
        let mut buf = self.0.replay_buffer.lock();
        let held = buf.as_mut().map(std::mem::take).unwrap_or_default();
        let keys: std::collections::HashSet<u64> = replayed.iter().filter_map(|e| e.seq).collect();
        for e in &replayed {
            let _ = self.send_inner(e, false, Some(via), true);
        }
        for (e, v) in held.iter().filter(|(e, _)| e.seq.is_some_and(|s| !keys.contains(&s))) {
            let _ = self.send_inner(e, false, v.as_ref(), true);
        }
        if !keys.is_empty() {
            *self.0.room_replayed.lock() = Some((seen, keys));
            self.0.room_replay_set.store(true, Ordering::Release);
        }
        self.0.replayed_until.store(before, Ordering::Release);
        *buf = None;
    }

    /// Sends a logged event again (the recovery replay), past the filter that drops its live
    /// copies.
    pub(crate) fn send_replayed(&self, e: &Encoded) -> Result<bool, EmitError> {
        self.send_inner(e, false, None, true)
    }

    /// Emits an event that is not logged for recovery (the gap signal itself).
    pub(crate) fn emit_control(&self, event: &str, arg: Value) -> Result<bool, EmitError> {
        self.send_packet(&event_packet(self.0.ns.name(), event, vec![arg], Vec::new(), None)?)
    }

    pub(crate) fn send_packet(&self, p: &Packet) -> Result<bool, EmitError> {
        if let Transport::External(sink, _) = &self.0.transport {
            if !self.connected() {
                return Err(EmitError::Disconnected);
            }
            return sink.send(Outgoing {
                kind: p.kind,
                data: p.data.as_ref(),
                binary: &p.attachments,
                ack_id: p.id,
                via: None,
                volatile: false,
                cache: None,
                offset: None,
            });
        }
        self.send_encoded(&Encoded::new(p), false)
    }

    /// Waits for the ack with this id (forgotten again when the wait is dropped).
    fn register_ack(&self, id: u64) -> AckWait {
        let (tx, rx) = oneshot::channel();
        self.0.acks.lock().insert(id, tx);
        AckWait { rx, socket: Arc::downgrade(&self.0), id, timeout: self.0.ns.ack_timeout() }
    }

    /// Sends and registers for the ack whose id the packet carries.
    pub(crate) fn send_encoded_with_ack(&self, e: &Encoded, volatile: bool) -> Option<AckWait> {
        let wait = self.register_ack(e.ack_id?);
        match self.send_encoded(e, volatile) {
            Ok(true) => Some(wait),
            _ => None,
        }
    }

    /// Emits `event` with one argument (any `Serialize`; a tuple or array is still one
    /// argument: use [`emit_args`](Self::emit_args) for several). `bytes::Bytes` anywhere in
    /// `data` is sent as binary in its place ([`crate::payload`]).
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        let (args, bins) = to_args(data)?;
        self.emit_with(event, args, bins)
    }

    /// Emits `event` with several arguments: `args` is a tuple, an array or a `Vec`, one
    /// argument per element, binary anywhere (`emit_args("file", &(meta, bytes, 1))` is Node's
    /// `emit("file", meta, buffer, 1)`).
    pub fn emit_args<T: Serialize + ?Sized>(&self, event: &str, args: &T) -> Result<(), EmitError> {
        let (args, bins) = to_arg_list(args)?;
        self.emit_with(event, args, bins)
    }

    /// Emits `event` with JSON arguments and binary attachments. Placeholders
    /// (`{"_placeholder":true,"num":N}`) in `args` put attachment `N` where they are (what
    /// [`Event::args`] and [`Event::binary`] hold, so a received event can be sent on
    /// unchanged); without placeholders the attachments follow the JSON arguments.
    pub fn emit_with(&self, event: &str, args: Vec<Value>, binary: Vec<Bytes>) -> Result<(), EmitError> {
        if crate::packet::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent);
        }
        let store = self.0.ns.recovery_store().filter(|_| !self.0.plain.load(Ordering::Relaxed));
        if let Some(store) = store {
            // Logged like a broadcast to this socket, so that it can be replayed.
            let packet = crate::adapter::BroadcastPacket::event(event, args, binary)?;
            if let Some(backend) = &store.backend {
                // Through the shared log, which delivers it in the log's order.
                if !self.connected() {
                    return Err(EmitError::Disconnected);
                }
                return Ok(backend.append(
                    self.0.ns.name(),
                    packet,
                    &crate::adapter::BroadcastOptions::socket(self.id()),
                )?);
            }
            let e = store.stamp(self.0.ns.name(), packet, &crate::adapter::BroadcastOptions::socket(self.id()));
            return self.send_encoded(&e, false).map(|_| ());
        }
        self.send_packet(&event_packet(self.0.ns.name(), event, args, binary, None)?).map(|_| ())
    }

    /// Emits and waits for the client's acknowledgement: `.await` the result (the namespace's
    /// default ack timeout applies; [`AckWait::timeout`] changes it).
    pub fn emit_with_ack<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<AckWait, EmitError> {
        let (args, bins) = to_args(data)?;
        self.emit_with_ack_args(event, args, bins)
    }

    /// [`emit_with_ack`](Self::emit_with_ack) with several arguments and attachments (placed
    /// as in [`emit_with`](Self::emit_with)).
    pub fn emit_with_ack_args(&self, event: &str, args: Vec<Value>, binary: Vec<Bytes>) -> Result<AckWait, EmitError> {
        if crate::packet::is_reserved_event(event) {
            return Err(EmitError::ReservedEvent);
        }
        let id = self.0.ns.next_ack_id();
        let p = event_packet(self.0.ns.name(), event, args, binary, Some(id))?;
        let wait = self.register_ack(id);
        self.send_packet(&p)?;
        Ok(wait)
    }

    /// Sends a `message` event (the seed's `send`).
    pub fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), EmitError> {
        self.emit("message", data)
    }

    /// Joins rooms.
    pub async fn join(&self, rooms: impl crate::IntoRooms) -> Result<(), EmitError> {
        let ns = &self.0.ns;
        ns.adapter().add_all(ns, self.id(), rooms.into_rooms()).await?;
        ns.rooms_changed(self.id()).await;
        Ok(())
    }

    /// Leaves rooms.
    pub async fn leave(&self, rooms: impl crate::IntoRooms) -> Result<(), EmitError> {
        let ns = &self.0.ns;
        ns.adapter().del(ns, self.id(), rooms.into_rooms()).await?;
        ns.rooms_changed(self.id()).await;
        Ok(())
    }

    /// The rooms this socket is in, its own id room first.
    pub async fn rooms(&self) -> Result<Vec<Room>, EmitError> {
        let ns = &self.0.ns;
        Ok(ns.adapter().socket_rooms(ns, self.id()).await?)
    }

    /// A broadcast to `rooms`, without this socket (`socket.to(room).emit(…)`).
    pub fn to(&self, rooms: impl crate::IntoRooms) -> BroadcastOperator {
        BroadcastOperator::new(self.0.ns.clone()).to(rooms).except(self.id())
    }

    /// A broadcast to every socket of the namespace but this one.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.0.ns.clone()).except(self.id())
    }

    /// Disconnects the socket from its namespace (the client gets a DISCONNECT packet and
    /// its reason is "io server disconnect").
    pub fn disconnect(&self) {
        let nsp = self.0.ns.name();
        let p =
            Packet { kind: PacketType::Disconnect, nsp: nsp.to_owned(), id: None, data: None, attachments: Vec::new() };
        let _ = self.send_packet(&p);
        if let Transport::External(sink, _) = &self.0.transport {
            sink.close();
        }
        self.on_disconnect(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// An external socket's connection ended (its sink's owner says so): out of the
    /// namespace and its rooms, pending acks failed.
    pub fn external_closed(&self) {
        self.on_disconnect(DisconnectReason::TransportClose);
    }

    /// An acknowledgement from an external socket's client.
    pub fn receive_ack(&self, id: u64, resp: AckResponse) {
        self.on_ack(id, resp);
    }

    /// Leaves the namespace: out of the socket table and every room, pending acks failed, the
    /// disconnect handler run. Once.
    pub(crate) fn on_disconnect(&self, reason: DisconnectReason) {
        if !self.0.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        self.0.acks.lock().clear();
        if let Some(session) = self.session() {
            session.data().remove_socket(self);
        }
        let ns = self.0.ns.clone();
        ns.remove_socket(self.id());
        if let (Some(store), Some(pid)) = (ns.recovery_store(), self.0.pid.lock().as_deref()) {
            store.clear_live(pid, self.id());
        }
        let socket = self.clone();
        let keep = matches!(
            reason,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::ForcedClose
                | DisconnectReason::ServerShutdown
        );
        tokio::spawn(async move {
            // A lost connection's session is kept for recovery (not one that left on purpose),
            // but only once the socket is out of its rooms and its disconnect handler ran, so
            // that a quick recovery under the same id cannot be undone by them.
            let pid = if keep { socket.0.pid.lock().clone() } else { None };
            let kept = match (ns.recovery_store(), pid) {
                (Some(_), Some(pid)) => {
                    Some((pid, ns.adapter().socket_rooms(&ns, socket.id()).await.unwrap_or_default()))
                }
                _ => None,
            };
            let _ = ns.adapter().del_all(&ns, socket.id()).await;
            // External sockets are their embedder's: the namespace's handler is not theirs.
            if !socket.is_external() {
                if let Some(h) = ns.handlers().disconnect.clone() {
                    h(socket.clone(), reason).await;
                }
            }
            match (ns.recovery_store(), kept) {
                (Some(store), Some((pid, rooms))) => match &store.backend {
                    Some(b) => b.persist(
                        ns.name(),
                        crate::recovery::SessionState { sid: socket.id(), pid, rooms, data: socket.data() },
                    ),
                    None => store.persist(pid, socket.id(), rooms, socket.data()),
                },
                (Some(store), None) => {
                    // Left on purpose: a shared backend forgets the session it kept.
                    if let (Some(b), Some(pid)) = (&store.backend, socket.0.pid.lock().clone()) {
                        b.forget(ns.name(), &pid);
                    }
                }
                _ => {}
            }
            socket.0.gone.store(true, Ordering::Release);
        });
    }

    /// An acknowledgement from the client.
    pub(crate) fn on_ack(&self, id: u64, resp: AckResponse) {
        if let Some(tx) = self.0.acks.lock().remove(&id) {
            let _ = tx.send(resp);
        }
    }
}

/// Waits for one acknowledgement. Dropping it (or its timing out) forgets the ack id, so the
/// socket's ack table does not grow (security: E16).
#[derive(Debug)]
pub struct AckWait {
    rx: oneshot::Receiver<AckResponse>,
    socket: Weak<SocketInner>,
    id: u64,
    timeout: Duration,
}

impl AckWait {
    /// Sets the timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Waits for the answer.
    pub async fn wait(mut self) -> Result<AckResponse, AckError> {
        match tokio::time::timeout(self.timeout, &mut self.rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => Err(AckError::Timeout),
        }
    }
}

impl Drop for AckWait {
    fn drop(&mut self) {
        if let Some(s) = self.socket.upgrade() {
            s.acks.lock().remove(&self.id);
        }
    }
}

impl IntoFuture for AckWait {
    type Output = Result<AckResponse, AckError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.wait())
    }
}

impl fmt::Debug for SocketInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketInner").field("id", &self.id).finish_non_exhaustive()
    }
}

/// An event from a client.
#[derive(Debug)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// The JSON arguments (binary ones as placeholders `{"_placeholder":true,"num":N}`).
    pub args: Vec<Value>,
    /// The binary attachments, in placeholder order.
    pub binary: Vec<Bytes>,
    ack: Option<AckSender>,
}

impl Event {
    pub(crate) fn new(name: String, args: Vec<Value>, binary: Vec<Bytes>, ack: Option<AckSender>) -> Self {
        Event { name, args, binary, ack }
    }

    /// Argument `i` as `T` (a missing argument is `null`). Binary the client sent anywhere in
    /// it fills the `Bytes` (or `Vec<u8>`) fields of `T` ([`crate::payload`]).
    pub fn arg<T: DeserializeOwned>(&self, i: usize) -> Result<T, serde_json::Error> {
        crate::payload::from_payload(self.args.get(i).unwrap_or(&Value::Null), &self.binary)
    }

    /// The first argument as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.arg(0)
    }

    /// All the arguments as `T`, a tuple or a `Vec` (binary resolved as in [`arg`](Self::arg)):
    /// `let (meta, file, n): (Meta, Bytes, u32) = ev.args_as()?`.
    pub fn args_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        crate::payload::from_payload(&Value::Array(self.args.clone()), &self.binary)
    }

    /// Whether the client asked for an acknowledgement.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Takes the acknowledgement to send later.
    pub fn take_ack(&mut self) -> Option<AckSender> {
        self.ack.take()
    }

    /// Acknowledges with one argument (no-op if the client asked for none).
    pub fn ack<T: Serialize + ?Sized>(&mut self, data: &T) -> Result<(), EmitError> {
        match self.ack.take() {
            Some(a) => a.send(data),
            None => Ok(()),
        }
    }
}

/// Sends the acknowledgement of one client event, once.
#[derive(Debug)]
pub struct AckSender {
    socket: Socket,
    id: u64,
}

impl AckSender {
    pub(crate) fn new(socket: Socket, id: u64) -> Self {
        AckSender { socket, id }
    }

    /// Acknowledges with one argument (binary anywhere, as in [`Socket::emit`]).
    pub fn send<T: Serialize + ?Sized>(self, data: &T) -> Result<(), EmitError> {
        let (args, bins) = to_args(data)?;
        self.send_with(args, bins)
    }

    /// Acknowledges with several arguments: a tuple, an array or a `Vec` (as in
    /// [`Socket::emit_args`]).
    pub fn send_args<T: Serialize + ?Sized>(self, args: &T) -> Result<(), EmitError> {
        let (args, bins) = to_arg_list(args)?;
        self.send_with(args, bins)
    }

    /// Acknowledges with JSON arguments and binary attachments, placed as in
    /// [`Socket::emit_with`].
    pub fn send_with(self, mut args: Vec<Value>, binary: Vec<Bytes>) -> Result<(), EmitError> {
        crate::payload::place_attachments(&mut args, binary.len()).map_err(EmitError::Serialize)?;
        let p = Packet {
            kind: if binary.is_empty() { PacketType::Ack } else { PacketType::BinaryAck },
            nsp: self.socket.0.ns.name().to_owned(),
            id: Some(self.id),
            data: Some(Value::Array(args)),
            attachments: binary,
        };
        self.socket.send_packet(&p).map(|_| ())
    }
}
