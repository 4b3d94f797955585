//! A process's membership in the cluster: its uid, the namespaces it serves, the other nodes it
//! knows, the requests it waits on, and the adapter each namespace gets.
//!
//! One owner per kind of thing: rooms in each namespace's [`LocalAdapter`] (local members
//! only), nodes in the node registry, pending requests in the request table, the broker behind
//! the [`Transport`]. Every operation is "apply locally, publish once"; what other nodes
//! publish is applied to local members by the dispatcher task, which is the only reader of the
//! transport's bounded queue.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use switchboard_socketio::adapter::gather_local_acks;
use switchboard_socketio::engineio::Sid;
use switchboard_socketio::{
    AckResponse, Adapter, AdapterError, AdapterFuture, BroadcastAcks, BroadcastOptions, BroadcastPacket,
    BroadcastReport, LocalAdapter, Namespace, NodeId, Room, ServerAcks, SocketInfo,
};
use tokio::sync::{broadcast, mpsc};

use crate::protocol::{EmitterMessage, Envelope, Message, Selector};
use crate::transport::{BusError, Incoming, Target, Transport};

/// Settings of a cluster node.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// A name for logs and listings (the uid is random per process). Default: empty.
    pub node_name: String,
    /// What this node tells the others of itself in heartbeats (its internal HTTP address,
    /// say). Default `null`.
    pub node_info: Value,
    /// Largest bus message decoded; larger ones are dropped and counted (security: C5).
    /// Default 1 MiB.
    pub max_message_bytes: usize,
    /// How often this node says it is alive. Default 5 s.
    pub heartbeat_interval: Duration,
    /// A node not heard from for this long is gone. Default 10 s.
    pub heartbeat_timeout: Duration,
    /// Default wait for other nodes' answers (fetch sockets, server-side emit). Default 5 s.
    pub request_timeout: Duration,
    /// Most requests waiting for answers at once; more fail at once with a bus error. Default
    /// 1,024.
    pub max_pending_requests: usize,
    /// Most answers queued per request (a broadcast with acks gets one per socket); more are
    /// dropped and counted. Default 65,536.
    pub max_answers_per_request: usize,
    /// Subscribe each local socket's own channel (`{p}#{N}#{socket id}#`), where a Node.js
    /// server on the sharded adapter (`dynamic` mode) sends `io.to(<socket id>)`: needed when
    /// Node servers share the cluster, at the cost of one subscription per socket. Default
    /// off (Switchboard nodes send to socket ids on the main channel).
    pub socket_channels: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_name: String::new(),
            node_info: Value::Null,
            max_message_bytes: 1 << 20,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            max_pending_requests: 1024,
            max_answers_per_request: 65_536,
            socket_channels: false,
        }
    }
}

impl ClusterConfig {
    /// Sets [`node_name`](Self::node_name).
    pub fn with_node_name(mut self, n: impl Into<String>) -> Self {
        self.node_name = n.into();
        self
    }

    /// Sets [`node_info`](Self::node_info).
    pub fn with_node_info(mut self, v: Value) -> Self {
        self.node_info = v;
        self
    }

    /// Sets the heartbeat interval and timeout.
    pub fn with_heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn with_request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Sets [`socket_channels`](Self::socket_channels).
    pub fn with_socket_channels(mut self, on: bool) -> Self {
        self.socket_channels = on;
        self
    }

    /// Sets [`max_message_bytes`](Self::max_message_bytes).
    pub fn with_max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }
}

/// Counters of the bus, for metrics.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Messages received and decoded.
    pub messages_in: AtomicU64,
    /// Messages published.
    pub messages_out: AtomicU64,
    /// Publishes that failed.
    pub publish_errors: AtomicU64,
    /// Messages dropped: undecodable, too large, wrong namespace.
    pub dropped: AtomicU64,
    /// Messages lost by the transport (its receive queue overflowed).
    pub lost: AtomicU64,
    /// Requests that ended with nodes missing.
    pub request_timeouts: AtomicU64,
    /// Reconnections to the broker.
    pub reconnects: AtomicU64,
    /// Connections to the broker lost (or broker errors reported by its client).
    pub disconnects: AtomicU64,
    /// Requests answered by this node.
    pub requests_served: AtomicU64,
}

/// Another node, as heard from.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerInfo {
    /// Its uid.
    pub uid: NodeId,
    /// What it says of itself (`{"name": …, …}`).
    pub info: Value,
    /// How long ago it was last heard from.
    pub last_seen: Duration,
}

struct Peer {
    info: Value,
    last_seen: Instant,
    /// The namespaces it heartbeats on (what a broker without subscriber counts counts).
    namespaces: HashSet<String>,
}

/// The local state of one namespace, shared by its adapter and the dispatcher.
struct NsShared {
    nsp: String,
    local: LocalAdapter,
    ns: OnceLock<Weak<Namespace>>,
}

type Answer = (NodeId, Message);

pub(crate) struct Inner {
    uid: NodeId,
    config: ClusterConfig,
    transport: Arc<dyn Transport>,
    namespaces: RwLock<HashMap<String, Arc<NsShared>>>,
    peers: Mutex<HashMap<NodeId, Peer>>,
    pending: Mutex<HashMap<String, mpsc::Sender<Answer>>>,
    deaths: broadcast::Sender<NodeId>,
    stats: BusStats,
    /// When this node last received its own heartbeat back: the end-to-end probe.
    last_echo: Mutex<Option<Instant>>,
    /// When the transport last reported lost messages.
    last_loss: Mutex<Option<Instant>>,
}

/// This process as a node of the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("uid", &self.0.uid).field("name", &self.0.config.node_name).finish()
    }
}

fn new_uid() -> NodeId {
    let mut b: [u8; 8] = rand::random();
    if b[..4] == [0, 0, 0, 0] {
        b[0] = 1;
    }
    let mut s = String::with_capacity(16);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    NodeId::from(s)
}

fn new_request_id() -> String {
    new_uid().to_string()
}

impl Cluster {
    /// Starts a node on `transport`, reading what it receives from `incoming`.
    pub fn start(transport: Arc<dyn Transport>, incoming: mpsc::Receiver<Incoming>, config: ClusterConfig) -> Cluster {
        let (deaths, _) = broadcast::channel(64);
        let inner = Arc::new(Inner {
            uid: new_uid(),
            config,
            transport,
            namespaces: RwLock::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            deaths,
            stats: BusStats::default(),
            last_echo: Mutex::new(None),
            last_loss: Mutex::new(None),
        });
        if let Some(log) = inner.transport.shared_log() {
            log.attach(&inner.uid);
        }
        tokio::spawn(dispatch(Arc::downgrade(&inner), incoming));
        tokio::spawn(heartbeat(Arc::downgrade(&inner)));
        Cluster(inner)
    }

    /// This node's uid.
    pub fn uid(&self) -> &NodeId {
        &self.0.uid
    }

    /// This node's tag ([`tag_of`](crate::tag_of) its uid).
    pub fn tag(&self) -> u32 {
        crate::tag_of(&self.0.uid)
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.0.config
    }

    /// The bus counters.
    pub fn stats(&self) -> &BusStats {
        &self.0.stats
    }

    /// The other nodes that sent heartbeats and are not gone.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        self.0
            .peers
            .lock()
            .iter()
            .map(|(uid, p)| PeerInfo { uid: uid.clone(), info: p.info.clone(), last_seen: now - p.last_seen })
            .collect()
    }

    /// Whether the bus works end to end: this node's last heartbeat went through the broker
    /// and came back within two heartbeat intervals (plus a second), which proves the
    /// connection, the publish path and the subscriptions at once.
    pub fn healthy(&self) -> bool {
        let limit = self.0.config.heartbeat_interval * 2 + Duration::from_secs(1);
        self.0.last_echo.lock().is_some_and(|t| t.elapsed() < limit)
    }

    /// How long ago this node last lost bus messages (see [`BusStats::lost`]), if ever: a node
    /// that lost messages says so instead of pretending it delivered them.
    pub fn last_loss(&self) -> Option<Duration> {
        self.0.last_loss.lock().map(|t| t.elapsed())
    }

    /// The adapter factory for [`SocketIoBuilder::adapter`](switchboard_socketio::SocketIoBuilder::adapter).
    pub fn adapter_factory(&self) -> impl Fn(&str) -> Box<dyn Adapter> + Send + Sync + 'static {
        let inner = self.0.clone();
        move |nsp| Box::new(ClusterAdapter::new(inner.clone(), nsp))
    }

    /// Says goodbye on every namespace (ADAPTER_CLOSE), so other nodes stop waiting for this
    /// one at once.
    pub async fn close(&self) {
        let names: Vec<String> = self.0.namespaces.read().keys().cloned().collect();
        for nsp in names {
            let _ = self.0.publish(&nsp, Target::Main, Message::AdapterClose).await;
        }
    }
}

impl Inner {
    async fn publish(&self, nsp: &str, to: Target<'_>, msg: Message) -> Result<(), AdapterError> {
        self.publish_ref(nsp, to, &msg).await
    }

    /// [`publish`](Self::publish) of a message the caller keeps (a broadcast's packet, which
    /// it then delivers locally without a copy).
    async fn publish_ref(&self, nsp: &str, to: Target<'_>, msg: &Message) -> Result<(), AdapterError> {
        let bytes = crate::protocol::encode_message(&self.uid, nsp, msg);
        if bytes.len() > self.config.max_message_bytes {
            self.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
            return Err(AdapterError::Bus(BusError::TooLarge(bytes.len()).to_string()));
        }
        match self.transport.publish(nsp, to, bytes).await {
            Ok(()) => {
                self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(nsp, error = %e, "cluster publish failed");
                Err(AdapterError::Bus(e.to_string()))
            }
        }
    }

    fn ns(&self, nsp: &str) -> Option<(Arc<NsShared>, Arc<Namespace>)> {
        let shared = self.namespaces.read().get(nsp).cloned()?;
        let ns = shared.ns.get()?.upgrade()?;
        Some((shared, ns))
    }

    fn heard_from(&self, uid: &str, nsp: &str, heartbeat: Option<Value>) {
        if uid.is_empty() || uid == "emitter" || uid == &*self.uid {
            return;
        }
        let mut peers = self.peers.lock();
        match peers.get_mut(uid) {
            Some(p) => {
                p.last_seen = Instant::now();
                if let Some(info) = heartbeat {
                    p.info = info;
                    if !p.namespaces.contains(nsp) {
                        p.namespaces.insert(nsp.to_owned());
                    }
                }
            }
            // Only nodes that send heartbeats are tracked (Node's sharded adapter sends none,
            // so its nodes are counted by the broker instead).
            None => {
                if let Some(info) = heartbeat {
                    let namespaces = HashSet::from([nsp.to_owned()]);
                    peers.insert(NodeId::from(uid), Peer { info, last_seen: Instant::now(), namespaces });
                }
            }
        }
    }

    /// How many nodes serve namespace `nsp`, this one included: the broker's count of the
    /// main channel's subscribers, or, on a broker that has none (NATS), the nodes that
    /// heartbeat on it.
    async fn server_count(&self, nsp: &str) -> Result<usize, AdapterError> {
        if self.transport.counts_subscribers() {
            return self.transport.server_count(nsp).await.map_err(|e| AdapterError::Bus(e.to_string()));
        }
        Ok(1 + self.peers.lock().values().filter(|p| p.namespaces.contains(nsp)).count())
    }

    fn node_gone(&self, uid: &str) {
        if let Some((uid, _)) = self.peers.lock().remove_entry(uid) {
            tracing::warn!(node = %uid, "cluster node gone");
            let _ = self.deaths.send(uid);
        }
    }

    fn register(&self) -> Result<(String, mpsc::Receiver<Answer>), AdapterError> {
        let mut pending = self.pending.lock();
        if pending.len() >= self.config.max_pending_requests {
            return Err(AdapterError::Bus("too many cluster requests pending".into()));
        }
        let id = new_request_id();
        let (tx, rx) = mpsc::channel(self.config.max_answers_per_request.max(1));
        pending.insert(id.clone(), tx);
        Ok((id, rx))
    }

    fn unregister(&self, id: &str) {
        self.pending.lock().remove(id);
    }

    async fn others(&self, nsp: &str) -> Result<usize, AdapterError> {
        Ok(self.server_count(nsp).await?.saturating_sub(1))
    }

    /// The nodes not among `answered`, as far as known: heartbeat peers first, then
    /// `unknown` for each further node the broker counted.
    fn missing(&self, answered: &HashSet<NodeId>, expected: usize) -> Vec<NodeId> {
        let short = expected.saturating_sub(answered.len());
        let mut out: Vec<NodeId> =
            self.peers.lock().keys().filter(|u| !answered.contains(*u)).take(short).cloned().collect();
        while out.len() < short {
            out.push(NodeId::from("unknown"));
        }
        out
    }
}

/// Collects one answer per other node until all came, the deadline passed, or the nodes that
/// did not answer are gone.
async fn collect_per_node(
    inner: &Inner,
    nsp: &str,
    rx: &mut mpsc::Receiver<Answer>,
    mut expected: usize,
    deadline: tokio::time::Instant,
    mut on_answer: impl FnMut(NodeId, Message),
) -> Vec<NodeId> {
    let mut answered: HashSet<NodeId> = HashSet::new();
    let mut deaths = inner.deaths.subscribe();
    let mut recount = tokio::time::interval(Duration::from_millis(250));
    recount.tick().await;
    while answered.len() < expected {
        tokio::select! {
            a = rx.recv() => match a {
                Some((uid, m)) => {
                    if answered.insert(uid.clone()) {
                        on_answer(uid, m);
                    }
                }
                None => break,
            },
            d = deaths.recv() => {
                if let Ok(uid) = d {
                    if !answered.contains(&uid) {
                        expected = expected.saturating_sub(1);
                    }
                }
            }
            _ = recount.tick() => {
                // A node killed mid-request drops its broker connection at once: the count
                // falls, and the request stops waiting for it.
                if let Ok(n) = inner.others(nsp).await {
                    expected = expected.min(n).max(answered.len());
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    if answered.len() < expected {
        inner.stats.request_timeouts.fetch_add(1, Ordering::Relaxed);
        inner.missing(&answered, expected)
    } else {
        Vec::new()
    }
}

/// The adapter of one namespace on a cluster node.
pub struct ClusterAdapter {
    inner: Arc<Inner>,
    shared: Arc<NsShared>,
}

impl std::fmt::Debug for ClusterAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAdapter").field("nsp", &self.shared.nsp).field("uid", &self.inner.uid).finish()
    }
}

fn is_socket_room(room: &str) -> bool {
    // Switchboard's socket ids, and Node's (20 characters).
    Sid::parse(room).is_some() || room.len() == 20
}

impl ClusterAdapter {
    fn new(inner: Arc<Inner>, nsp: &str) -> Self {
        let shared = Arc::new(NsShared { nsp: nsp.to_owned(), local: LocalAdapter::new(), ns: OnceLock::new() });
        inner.namespaces.write().insert(nsp.to_owned(), shared.clone());
        ClusterAdapter { inner, shared }
    }

    fn nsp(&self) -> &str {
        &self.shared.nsp
    }

    async fn rooms_deleted(&self, rooms: Vec<Room>) {
        rooms_deleted(&self.inner, self.nsp(), rooms).await;
    }

    fn sel(opts: &BroadcastOptions) -> Selector {
        Selector { opts: opts.clone(), timeout_ms: None }
    }

    /// Publishes `msg` to every node of the namespace, unless the operation is `local`.
    /// The shared log, when this namespace's broadcasts go through it (recovery on, and the
    /// transport has one).
    fn log_for(&self, ns: &Namespace, opts: &BroadcastOptions) -> Option<Arc<dyn crate::transport::SharedLog>> {
        if opts.local || opts.volatile || !ns.recovery_enabled() {
            return None;
        }
        self.inner.transport.shared_log()
    }

    async fn publish_unless_local(&self, opts: &BroadcastOptions, msg: Message) -> Result<(), AdapterError> {
        if opts.local {
            return Ok(());
        }
        self.inner.publish(self.nsp(), Target::Main, msg).await
    }
}

async fn rooms_deleted(inner: &Inner, nsp: &str, rooms: Vec<Room>) {
    if !inner.transport.has_room_channels() {
        return;
    }
    for r in rooms.iter().filter(|r| !is_socket_room(r)) {
        if let Err(e) = inner.transport.unsubscribe_room(nsp, r).await {
            tracing::warn!(room = %r, error = %e, "cluster room unsubscription failed");
        }
        // A member joined while we unsubscribed: subscribe again.
        let back = inner.namespaces.read().get(nsp).is_some_and(|s| s.local.has_room(r));
        if back {
            let _ = inner.transport.subscribe_room(nsp, r).await;
        }
    }
}

/// Subscribes the room channels that joining `rooms` will create, before the join, so that a
/// broadcast sent once the join is visible cannot miss this node.
async fn before_join(inner: &Inner, shared: &NsShared, rooms: &[Room]) {
    if !inner.transport.has_room_channels() {
        return;
    }
    for r in rooms.iter().filter(|r| !is_socket_room(r) && !shared.local.has_room(r)) {
        if let Err(e) = inner.transport.subscribe_room(&shared.nsp, r).await {
            tracing::warn!(room = %r, error = %e, "cluster room subscription failed");
        }
    }
}

/// The longest another node may make this one wait for its sockets' acks (60 s).
const MAX_REMOTE_ACK_WAIT_MS: u64 = 60_000;

/// The packet of a broadcast message (what `publish_ref` left with the caller).
fn into_packet(msg: Message) -> BroadcastPacket {
    match msg {
        Message::Broadcast { packet, .. } => packet,
        // Only ever called on the broadcast the caller built.
        _ => BroadcastPacket { data: Value::Array(Vec::new()), binary: Vec::new() },
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Adapter for ClusterAdapter {
    fn recovery_backend(&self) -> Option<Arc<dyn switchboard_socketio::RecoveryBackend>> {
        self.inner.transport.shared_log().map(|l| l as Arc<dyn switchboard_socketio::RecoveryBackend>)
    }

    fn init(&self, ns: &Arc<Namespace>) {
        let _ = self.shared.ns.set(Arc::downgrade(ns));
        let inner = self.inner.clone();
        let nsp = self.nsp().to_owned();
        tokio::spawn(async move {
            if let Err(e) = inner.transport.add_namespace(&nsp, &inner.uid).await {
                tracing::error!(nsp, error = %e, "cluster subscription failed");
            }
            let _ = inner.publish(&nsp, Target::Main, Message::InitialHeartbeat).await;
            let info = heartbeat_info(&inner);
            let _ = inner.publish(&nsp, Target::Main, Message::Heartbeat(Some(info))).await;
        });
    }

    fn close<'a>(&'a self, _ns: &'a Namespace) -> AdapterFuture<'a, ()> {
        Box::pin(async move { self.inner.publish(self.nsp(), Target::Main, Message::AdapterClose).await })
    }

    fn socket_connected<'a>(&'a self, _ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            if self.inner.config.socket_channels && self.inner.transport.has_room_channels() {
                let ch = sid.to_string();
                if let Err(e) = self.inner.transport.subscribe_room(self.nsp(), &ch).await {
                    tracing::warn!(error = %e, "cluster socket channel subscription failed");
                }
            }
            Ok(())
        })
    }

    fn add_all<'a>(&'a self, _ns: &'a Namespace, sid: Sid, rooms: Vec<Room>) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            before_join(&self.inner, &self.shared, &rooms).await;
            self.shared.local.join(sid, rooms);
            Ok(())
        })
    }

    fn del<'a>(&'a self, _ns: &'a Namespace, sid: Sid, rooms: Vec<Room>) -> AdapterFuture<'a, ()> {
        let deleted = self.shared.local.leave(sid, &rooms);
        Box::pin(async move {
            self.rooms_deleted(deleted).await;
            Ok(())
        })
    }

    fn del_all<'a>(&'a self, _ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, ()> {
        let deleted = self.shared.local.leave_all(sid);
        Box::pin(async move {
            self.rooms_deleted(deleted).await;
            if self.inner.config.socket_channels && self.inner.transport.has_room_channels() {
                let _ = self.inner.transport.unsubscribe_room(self.nsp(), &sid.to_string()).await;
            }
            Ok(())
        })
    }

    fn socket_rooms<'a>(&'a self, _ns: &'a Namespace, sid: Sid) -> AdapterFuture<'a, Vec<Room>> {
        let r = self.shared.local.rooms_of(sid);
        Box::pin(async move { Ok(r) })
    }

    fn sockets<'a>(&'a self, ns: &'a Namespace, opts: &'a BroadcastOptions) -> AdapterFuture<'a, Vec<Sid>> {
        let r = self.shared.local.select(ns, opts);
        Box::pin(async move { Ok(r) })
    }

    fn all_rooms<'a>(&'a self, ns: &'a Namespace) -> AdapterFuture<'a, Vec<Room>> {
        // The protocol has no all-rooms request: the rooms of every node's sockets are it.
        Box::pin(async move {
            let all = self.fetch_sockets(ns, &BroadcastOptions::default(), self.inner.config.request_timeout).await?;
            let mut set: HashSet<Room> = self.shared.local.local_rooms(ns).into_iter().collect();
            for s in all {
                set.extend(s.rooms.into_iter().map(Room::from));
            }
            Ok(set.into_iter().collect())
        })
    }

    fn server_count<'a>(&'a self, _ns: &'a Namespace) -> AdapterFuture<'a, usize> {
        Box::pin(async move { self.inner.server_count(self.nsp()).await })
    }

    fn broadcast<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: BroadcastPacket,
        opts: &'a BroadcastOptions,
    ) -> AdapterFuture<'a, usize> {
        Box::pin(async move {
            if let Some(log) = self.log_for(ns, opts) {
                // Through the shared log: every node (this one too) delivers it when it reads
                // it back, in the log's order, with its offset.
                let msg = Message::Broadcast { packet, sel: Self::sel(opts), request_id: None, count_request: None };
                return match log.append_message(self.nsp(), &msg) {
                    Ok(()) => Ok(0),
                    Err(e) => {
                        self.inner.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                        // The local delivery happens whatever the bus did (security: C3).
                        self.shared.local.deliver_packet(ns, into_packet(msg), opts);
                        Err(AdapterError::Bus(e.to_string()))
                    }
                };
            }
            let (packet, published) = if opts.local {
                (packet, Ok(()))
            } else {
                let to = match opts.rooms.as_slice() {
                    [room] if !is_socket_room(room) => Target::Room(room),
                    _ => Target::Main,
                };
                let msg = Message::Broadcast { packet, sel: Self::sel(opts), request_id: None, count_request: None };
                let r = self.inner.publish_ref(self.nsp(), to, &msg).await;
                (into_packet(msg), r)
            };
            // The local delivery happens whatever the bus did (security: C3).
            let n = self.shared.local.deliver_packet(ns, packet, opts);
            published.map(|()| n)
        })
    }

    fn broadcast_counted<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: BroadcastPacket,
        opts: &'a BroadcastOptions,
        timeout: Duration,
    ) -> AdapterFuture<'a, BroadcastReport> {
        Box::pin(async move {
            if opts.local {
                return Ok(BroadcastReport {
                    local: self.shared.local.deliver_packet(ns, packet, opts),
                    ..Default::default()
                });
            }
            // Only Switchboard nodes (those that send heartbeats) report counts.
            let mut peers: HashSet<NodeId> = self.inner.peers.lock().keys().cloned().collect();
            let (id, mut rx) = self.inner.register()?;
            let msg =
                Message::Broadcast { packet, sel: Self::sel(opts), request_id: None, count_request: Some(id.clone()) };
            let log = self.log_for(ns, opts);
            let local = if let Some(log) = log {
                // Through the shared log; this node counts its own delivery when it reads it back.
                if let Err(e) = log.append_message(self.nsp(), &msg) {
                    self.inner.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
                    self.inner.unregister(&id);
                    self.shared.local.deliver_packet(ns, into_packet(msg), opts);
                    return Err(AdapterError::Bus(e.to_string()));
                }
                peers.insert(self.inner.uid.clone());
                0
            } else {
                // On the main channel, so that every node answers (0 when it has no member).
                let published = self.inner.publish_ref(self.nsp(), Target::Main, &msg).await;
                let local = self.shared.local.deliver_packet(ns, into_packet(msg), opts);
                if let Err(e) = published {
                    self.inner.unregister(&id);
                    return Err(e);
                }
                local
            };
            let mut report = BroadcastReport { local, ..Default::default() };
            let deadline = tokio::time::Instant::now() + timeout.min(self.inner.config.request_timeout);
            let mut waiting = peers;
            let mut deaths = self.inner.deaths.subscribe();
            while !waiting.is_empty() {
                tokio::select! {
                    a = rx.recv() => match a {
                        Some((uid, Message::BroadcastClientCount { count, .. })) => {
                            if waiting.remove(&uid) {
                                if uid == self.inner.uid {
                                    report.local = count;
                                } else {
                                    report.remote.push((uid, count));
                                }
                            }
                        }
                        Some(_) => {}
                        None => break,
                    },
                    d = deaths.recv() => {
                        if let Ok(uid) = d {
                            waiting.remove(&uid);
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            self.inner.unregister(&id);
            if !waiting.is_empty() {
                self.inner.stats.request_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            report.missing_nodes = waiting.into_iter().collect();
            Ok(report)
        })
    }

    fn broadcast_with_ack<'a>(
        &'a self,
        ns: &'a Namespace,
        packet: BroadcastPacket,
        opts: &'a BroadcastOptions,
        timeout: Duration,
    ) -> AdapterFuture<'a, BroadcastAcks> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut acks = BroadcastAcks::default();
            let remote = if opts.local {
                None
            } else {
                let others = self.inner.others(self.nsp()).await?;
                let (id, rx) = self.inner.register()?;
                let sel = Selector { opts: opts.clone(), timeout_ms: Some(ms(timeout)) };
                let msg = Message::Broadcast {
                    packet: packet.clone(),
                    sel,
                    request_id: Some(id.clone()),
                    count_request: None,
                };
                if let Err(e) = self.inner.publish(self.nsp(), Target::Main, msg).await {
                    self.inner.unregister(&id);
                    return Err(e);
                }
                Some((id, rx, others))
            };
            let waits = self.shared.local.deliver_with_ack(ns, &packet, opts, timeout);
            let local = async {
                let mut a = BroadcastAcks::default();
                gather_local_acks(waits, &mut a).await;
                a
            };
            let remote_part = async {
                let Some((id, mut rx, others)) = remote else { return (Vec::new(), 0, Vec::new()) };
                let r = collect_acks(&self.inner, self.nsp(), &mut rx, others, deadline).await;
                self.inner.unregister(&id);
                r
            };
            let (l, (responses, expected, missing_nodes)) = tokio::join!(local, remote_part);
            acks.responses = l.responses;
            acks.expected = l.expected + expected;
            acks.responses.extend(responses);
            acks.missing_nodes = missing_nodes;
            Ok(acks)
        })
    }

    fn fetch_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        timeout: Duration,
    ) -> AdapterFuture<'a, Vec<SocketInfo>> {
        Box::pin(async move {
            let mut out = self.shared.local.socket_infos(ns, opts);
            if opts.local {
                return Ok(out);
            }
            let others = self.inner.others(self.nsp()).await?;
            if others == 0 {
                return Ok(out);
            }
            let (id, mut rx) = self.inner.register()?;
            let msg = Message::FetchSockets { sel: Self::sel(opts), request_id: id.clone() };
            if let Err(e) = self.inner.publish(self.nsp(), Target::Main, msg).await {
                self.inner.unregister(&id);
                return Err(e);
            }
            let deadline = tokio::time::Instant::now() + timeout;
            let missing = collect_per_node(&self.inner, self.nsp(), &mut rx, others, deadline, |uid, m| {
                if let Message::FetchSocketsResponse { sockets, .. } = m {
                    out.extend(sockets.into_iter().map(|mut s| {
                        s.node = Some(uid.clone());
                        s
                    }));
                }
            })
            .await;
            self.inner.unregister(&id);
            if missing.is_empty() {
                Ok(out)
            } else {
                Err(AdapterError::Timeout { missing })
            }
        })
    }

    fn add_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        rooms: Vec<Room>,
    ) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            if !self.shared.local.select(ns, opts).is_empty() {
                before_join(&self.inner, &self.shared, &rooms).await;
            }
            self.shared.local.add_selected(ns, opts, &rooms);
            self.publish_unless_local(opts, Message::SocketsJoin { sel: Self::sel(opts), rooms }).await
        })
    }

    fn del_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        rooms: Vec<Room>,
    ) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            let deleted = self.shared.local.del_selected(ns, opts, &rooms);
            self.rooms_deleted(deleted).await;
            self.publish_unless_local(opts, Message::SocketsLeave { sel: Self::sel(opts), rooms }).await
        })
    }

    fn disconnect_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        opts: &'a BroadcastOptions,
        close: bool,
    ) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            self.shared.local.disconnect_selected(ns, opts, close);
            self.publish_unless_local(opts, Message::DisconnectSockets { sel: Self::sel(opts), close }).await
        })
    }

    fn server_side_emit<'a>(
        &'a self,
        _ns: &'a Namespace,
        data: Vec<Value>,
        ack: Option<Duration>,
    ) -> AdapterFuture<'a, ServerAcks> {
        Box::pin(async move {
            let Some(timeout) = ack else {
                let msg = Message::ServerSideEmit { packet: data, request_id: None };
                self.inner.publish(self.nsp(), Target::Main, msg).await?;
                return Ok(ServerAcks::default());
            };
            let others = self.inner.others(self.nsp()).await?;
            let mut acks = ServerAcks::default();
            if others == 0 {
                return Ok(acks);
            }
            let (id, mut rx) = self.inner.register()?;
            let msg = Message::ServerSideEmit { packet: data, request_id: Some(id.clone()) };
            if let Err(e) = self.inner.publish(self.nsp(), Target::Main, msg).await {
                self.inner.unregister(&id);
                return Err(e);
            }
            let deadline = tokio::time::Instant::now() + timeout;
            acks.missing_nodes = collect_per_node(&self.inner, self.nsp(), &mut rx, others, deadline, |_, m| {
                if let Message::ServerSideEmitResponse { packet, .. } = m {
                    acks.responses.push(packet);
                }
            })
            .await;
            self.inner.unregister(&id);
            Ok(acks)
        })
    }
}

/// The count-then-acks of a broadcast with acks: each other node first says how many sockets
/// it sent to, then each socket's ack follows.
async fn collect_acks(
    inner: &Inner,
    nsp: &str,
    rx: &mut mpsc::Receiver<Answer>,
    mut expected_nodes: usize,
    deadline: tokio::time::Instant,
) -> (Vec<(Option<Sid>, AckResponse)>, usize, Vec<NodeId>) {
    let mut counted: HashSet<NodeId> = HashSet::new();
    let mut expected_acks = 0usize;
    let mut responses = Vec::new();
    let mut deaths = inner.deaths.subscribe();
    let mut recount = tokio::time::interval(Duration::from_millis(250));
    recount.tick().await;
    while counted.len() < expected_nodes || responses.len() < expected_acks {
        tokio::select! {
            a = rx.recv() => match a {
                Some((uid, Message::BroadcastClientCount { count, .. })) => {
                    if counted.insert(uid) {
                        expected_acks += count;
                    }
                }
                Some((_, Message::BroadcastAck { args, binary, sid, .. })) => {
                    let sid = sid.as_deref().and_then(Sid::parse);
                    responses.push((sid, AckResponse { args, binary }));
                }
                Some(_) => {}
                None => break,
            },
            d = deaths.recv() => {
                if let Ok(uid) = d {
                    if !counted.contains(&uid) {
                        expected_nodes = expected_nodes.saturating_sub(1);
                    }
                }
            }
            _ = recount.tick(), if counted.len() < expected_nodes => {
                if let Ok(n) = inner.others(nsp).await {
                    expected_nodes = expected_nodes.min(n).max(counted.len());
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let missing = if counted.len() < expected_nodes {
        inner.stats.request_timeouts.fetch_add(1, Ordering::Relaxed);
        inner.missing(&counted, expected_nodes)
    } else {
        Vec::new()
    };
    (responses, expected_acks, missing)
}

fn heartbeat_info(inner: &Inner) -> Value {
    json!({ "name": inner.config.node_name, "info": inner.config.node_info })
}

async fn heartbeat(inner: Weak<Inner>) {
    let Some(period) = inner.upgrade().map(|i| i.config.heartbeat_interval) else { return };
    let mut tick = tokio::time::interval(period.min(Duration::from_secs(1)).max(Duration::from_millis(50)));
    let mut last_beat = Instant::now();
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        // Sweep: nodes not heard from within the timeout are gone.
        let timeout = inner.config.heartbeat_timeout;
        let gone: Vec<NodeId> = inner
            .peers
            .lock()
            .iter()
            .filter(|(_, p)| p.last_seen.elapsed() > timeout)
            .map(|(u, _)| u.clone())
            .collect();
        for uid in gone {
            inner.node_gone(&uid);
        }
        if last_beat.elapsed() >= inner.config.heartbeat_interval {
            last_beat = Instant::now();
            let names: Vec<String> = inner.namespaces.read().keys().cloned().collect();
            let info = heartbeat_info(&inner);
            for nsp in names {
                let _ = inner.publish(&nsp, Target::Main, Message::Heartbeat(Some(info.clone()))).await;
            }
        }
    }
}

async fn dispatch(weak: Weak<Inner>, mut incoming: mpsc::Receiver<Incoming>) {
    while let Some(inc) = incoming.recv().await {
        let Some(inner) = weak.upgrade() else { return };
        match inc {
            Incoming::Node { nsp, payload } => on_node_message(&inner, &nsp, &payload).await,
            Incoming::EmitterBroadcast { nsp, room, payload } => on_emitter_broadcast(&inner, &nsp, room, &payload),
            Incoming::EmitterRequest { nsp, payload } => on_emitter_request(&inner, &nsp, &payload).await,
            Incoming::Logged { nsp, uid, kind, data, position } => {
                on_logged(&inner, &nsp, &uid, &kind, &data, position)
            }
            Incoming::Lost(n) => {
                inner.stats.lost.fetch_add(n, Ordering::Relaxed);
                *inner.last_loss.lock() = Some(Instant::now());
                tracing::warn!(
                    lost = n,
                    "cluster bus messages lost: other nodes' broadcasts and requests did not reach this node"
                );
            }
            Incoming::Reconnected => {
                inner.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!("cluster bus reconnected; subscriptions restored");
                // Probe at once: the heartbeat's echo proves the path works again.
                let names: Vec<String> = inner.namespaces.read().keys().cloned().collect();
                let i = inner.clone();
                tokio::spawn(async move {
                    let info = heartbeat_info(&i);
                    for nsp in names {
                        let _ = i.publish(&nsp, Target::Main, Message::Heartbeat(Some(info.clone()))).await;
                    }
                });
            }
            Incoming::Disconnected(e) => {
                inner.stats.disconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cluster bus connection error");
            }
        }
    }
}

/// An entry of the shared log (or this node's own that could not be logged: no position).
fn on_logged(inner: &Arc<Inner>, nsp: &str, uid: &str, kind: &str, data: &str, position: Option<(String, u64)>) {
    let Some((shared, ns)) = inner.ns(nsp) else { return };
    // Gap markers and Node's other entry types (joins, leaves, disconnects travel on the bus).
    if kind != "3" {
        return;
    }
    let env = match crate::protocol::decode_stream_entry(uid, nsp, kind, data, inner.config.max_message_bytes) {
        Ok(e) => e,
        Err(e) => {
            inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(nsp, error = %e, "recovery log entry dropped");
            return;
        }
    };
    let Message::Broadcast { packet, sel, request_id: None, count_request } = env.msg else { return };
    let n = match &position {
        Some((offset, key)) if !sel.opts.volatile => shared.local.deliver_logged(&ns, packet, &sel.opts, offset, *key),
        _ => shared.local.deliver_packet(&ns, packet, &sel.opts),
    };
    if position.is_none() {
        // Not logged: no other node has it, and its count request fails by timeout.
        inner.stats.publish_errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Some(id) = count_request else { return };
    let answer = Message::BroadcastClientCount { request_id: id.clone(), count: n };
    if uid == inner.uid.as_ref() {
        let tx = inner.pending.lock().get(&id).cloned();
        if let Some(tx) = tx {
            let _ = tx.try_send((inner.uid.clone(), answer));
        }
    } else {
        let i = inner.clone();
        let (nsp, from) = (nsp.to_owned(), uid.to_owned());
        tokio::spawn(async move {
            let _ = i.publish(&nsp, Target::Node(&from), answer).await;
        });
    }
}

async fn on_node_message(inner: &Arc<Inner>, nsp: &str, payload: &Bytes) {
    let env = match Envelope::decode(payload, inner.config.max_message_bytes) {
        Ok(e) => e,
        Err(e) => {
            inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(nsp, error = %e, "cluster message dropped");
            return;
        }
    };
    if env.nsp != nsp {
        inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if env.uid == *inner.uid {
        if matches!(env.msg, Message::Heartbeat(_)) {
            *inner.last_echo.lock() = Some(Instant::now());
        }
        return;
    }
    inner.stats.messages_in.fetch_add(1, Ordering::Relaxed);
    let hb = match &env.msg {
        Message::Heartbeat(info) => Some(info.clone().unwrap_or(Value::Null)),
        _ => None,
    };
    inner.heard_from(&env.uid, nsp, hb);
    let from: NodeId = NodeId::from(env.uid.as_str());
    if env.msg.is_response() {
        let id = match &env.msg {
            Message::FetchSocketsResponse { request_id, .. }
            | Message::ServerSideEmitResponse { request_id, .. }
            | Message::BroadcastClientCount { request_id, .. }
            | Message::BroadcastAck { request_id, .. } => request_id.clone(),
            _ => return,
        };
        let tx = inner.pending.lock().get(&id).cloned();
        if let Some(tx) = tx {
            if tx.try_send((from, env.msg)).is_err() {
                inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        return;
    }
    let Some((shared, ns)) = inner.ns(nsp) else { return };
    apply(inner, &shared, &ns, from, env.msg).await;
}

async fn apply(inner: &Arc<Inner>, shared: &Arc<NsShared>, ns: &Arc<Namespace>, from: NodeId, msg: Message) {
    let nsp = shared.nsp.clone();
    match msg {
        Message::InitialHeartbeat => {
            let i = inner.clone();
            tokio::spawn(async move {
                let info = heartbeat_info(&i);
                let _ = i.publish(&nsp, Target::Main, Message::Heartbeat(Some(info))).await;
            });
        }
        Message::Heartbeat(_) => {}
        Message::AdapterClose => inner.node_gone(&from),
        Message::Broadcast { packet, sel, request_id: None, count_request } => {
            let n = shared.local.deliver_packet(ns, packet, &sel.opts);
            if let Some(id) = count_request {
                let i = inner.clone();
                tokio::spawn(async move {
                    let m = Message::BroadcastClientCount { request_id: id, count: n };
                    let _ = i.publish(&nsp, Target::Node(&from), m).await;
                });
            }
        }
        Message::Broadcast { packet, sel, request_id: Some(id), .. } => {
            // Another node's timeout, capped: a flood of requests cannot park acks for long.
            let timeout = Duration::from_millis(sel.timeout_ms.unwrap_or(5000).min(MAX_REMOTE_ACK_WAIT_MS));
            let waits = shared.local.deliver_with_ack(ns, &packet, &sel.opts, timeout);
            inner.stats.requests_served.fetch_add(1, Ordering::Relaxed);
            let i = inner.clone();
            tokio::spawn(async move {
                let to = Target::Node(&from);
                let count = Message::BroadcastClientCount { request_id: id.clone(), count: waits.len() };
                if i.publish(&nsp, to, count).await.is_err() {
                    return;
                }
                let answers = waits.into_iter().map(|(sid, w)| async move { (sid, w.wait().await) });
                let mut stream: futures_util::stream::FuturesUnordered<_> = answers.collect();
                use futures_util::StreamExt as _;
                while let Some((sid, r)) = stream.next().await {
                    if let Ok(r) = r {
                        let m = Message::BroadcastAck {
                            request_id: id.clone(),
                            args: r.args,
                            binary: r.binary,
                            sid: Some(sid.to_string()),
                        };
                        let _ = i.publish(&nsp, Target::Node(&from), m).await;
                    }
                }
            });
        }
        Message::SocketsJoin { sel, rooms } => {
            // In the dispatcher's order: a leave that follows cannot overtake this join.
            if !shared.local.select(ns, &sel.opts).is_empty() {
                before_join(inner, shared, &rooms).await;
            }
            shared.local.add_selected(ns, &sel.opts, &rooms);
        }
        Message::SocketsLeave { sel, rooms } => {
            let deleted = shared.local.del_selected(ns, &sel.opts, &rooms);
            rooms_deleted(inner, &nsp, deleted).await;
        }
        Message::DisconnectSockets { sel, close } => shared.local.disconnect_selected(ns, &sel.opts, close),
        Message::FetchSockets { sel, request_id } => {
            let sockets = shared.local.socket_infos(ns, &sel.opts);
            inner.stats.requests_served.fetch_add(1, Ordering::Relaxed);
            let i = inner.clone();
            tokio::spawn(async move {
                let m = Message::FetchSocketsResponse { request_id, sockets };
                let _ = i.publish(&nsp, Target::Node(&from), m).await;
            });
        }
        Message::ServerSideEmit { packet, request_id } => {
            let ack: Option<switchboard_socketio::ServerAckFn> = request_id.map(|id| {
                let i = inner.clone();
                let from = from.clone();
                let nsp = nsp.clone();
                Box::new(move |v: Value| {
                    tokio::spawn(async move {
                        let m = Message::ServerSideEmitResponse { request_id: id, packet: v };
                        let _ = i.publish(&nsp, Target::Node(&from), m).await;
                    });
                }) as switchboard_socketio::ServerAckFn
            });
            ns.dispatch_server_event(packet, Some(from), ack);
        }
        Message::FetchSocketsResponse { .. }
        | Message::ServerSideEmitResponse { .. }
        | Message::BroadcastClientCount { .. }
        | Message::BroadcastAck { .. } => {}
    }
}

fn on_emitter_broadcast(inner: &Arc<Inner>, nsp: &str, room: Option<String>, payload: &Bytes) {
    let Some((shared, ns)) = inner.ns(nsp) else { return };
    // A room channel for a room without local members: nothing to do, not even decoding.
    if let Some(r) = &room {
        let wanted = shared.local.has_room(r) || Sid::parse(r).is_some_and(|s| ns.has_socket(s));
        if !wanted {
            return;
        }
    }
    match EmitterMessage::decode_broadcast(payload, inner.config.max_message_bytes) {
        Ok(EmitterMessage::Broadcast { nsp: pnsp, packet, sel }) if pnsp == nsp => {
            inner.stats.messages_in.fetch_add(1, Ordering::Relaxed);
            shared.local.deliver_packet(&ns, packet, &sel.opts);
        }
        _ => {
            inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn on_emitter_request(inner: &Arc<Inner>, nsp: &str, payload: &Bytes) {
    let Some((shared, ns)) = inner.ns(nsp) else { return };
    let m = match EmitterMessage::decode_request(payload, inner.config.max_message_bytes) {
        Ok(m) => m,
        Err(_) => {
            inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    inner.stats.messages_in.fetch_add(1, Ordering::Relaxed);
    if let EmitterMessage::Request(msg) = m {
        apply(inner, &shared, &ns, NodeId::from("emitter"), msg).await;
    }
}
