//! The hub's state: the Socket.IO server, the `/ws` clients, identities, rooms across both,
//! publishing, calls, metrics, data collection, draining.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use switchboard_cluster::Cluster;
use switchboard_socketio::engineio::{EngineConfig, ErrorCode, Sid};
use switchboard_socketio::packet::PacketType;
use switchboard_socketio::{
    AckResponse, AdapterError, BroadcastOperator, ConnInfo, ConnectError, EmitError, Gap, GapReason, Handlers,
    LoggedEvent, Outgoing, RecoveryConfig, Socket, SocketIo, SocketIoConfig, SocketSink,
};
use switchboard_ws::proto::handshake::server::OriginPolicy;
use tokio::sync::{mpsc, RwLock};

use crate::auth::{now_s, Identity, RoomAction, RoomPolicy, Verifier};
use crate::collect::Collector;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::limits::{ClientSlots, TrustedProxies};
use crate::metrics::Metrics;

/// A message for a `/ws` client's writer task: a JSON text frame (clones share the bytes, so a
/// publish encodes once for all members reached through the same room).
pub type WsOut = switchboard_ws::Utf8Bytes;

/// The sending half of a `/ws` client: what the Socket.IO namespace delivers to it (it is an
/// external socket of the namespace, a member like any other) becomes the `/ws` JSON protocol
/// on the client's bounded queue.
#[derive(Debug)]
pub struct WsSink {
    tx: mpsc::Sender<WsOut>,
    /// Set to close the client (code, reason); its task wakes on `kill`.
    pub closing: parking_lot::Mutex<Option<(u16, &'static str)>>,
    /// Wakes the client's task to close.
    pub kill: tokio::sync::Notify,
    hub: Weak<Hub>,
}

impl WsSink {
    /// Closes the client with `code` and `reason` (the first close wins).
    pub fn close_with(&self, code: u16, reason: &'static str) {
        self.closing.lock().get_or_insert((code, reason));
        self.kill.notify_one();
    }

    /// Queues a frame; a full queue closes the client with 1008 "slow consumer" (security:
    /// R1), or drops a volatile frame.
    fn push(&self, text: WsOut, volatile: bool) -> Result<bool, EmitError> {
        match self.tx.try_send(text) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => {
                if let Some(h) = self.hub.upgrade() {
                    h.metrics.drops.fetch_add(1, Ordering::Relaxed);
                }
                if volatile {
                    return Ok(false);
                }
                self.close_with(1008, "slow consumer");
                Err(EmitError::QueueFull)
            }
            Err(_) => Err(EmitError::Disconnected),
        }
    }
}

/// The `/ws` form of an event's first argument (binary as `{"$binary": …}`).
fn ws_data(data: Option<&Value>, bins: &[Bytes]) -> (String, Value) {
    let arr = data.and_then(Value::as_array);
    let event = arr.and_then(|a| a.first()).and_then(Value::as_str).unwrap_or("message").to_owned();
    let arg = arr.and_then(|a| a.get(1)).cloned().unwrap_or(Value::Null);
    (event, binary_to_json(&arg, bins))
}

impl SocketSink for WsSink {
    fn send(&self, out: Outgoing<'_>) -> Result<bool, EmitError> {
        let text: WsOut = match (out.kind, out.ack_id) {
            (PacketType::Event | PacketType::BinaryEvent, None) => {
                let make = || -> WsOut {
                    let (event, data) = ws_data(out.data, out.binary);
                    let mut v = json!({"type": "event", "room": out.via.map(|r| &**r), "event": event, "data": data});
                    // Its position in the log: `subscribe` with `since` resumes after it.
                    if let Some(o) = out.offset {
                        v["offset"] = json!(o);
                    }
                    v.to_string().into()
                };
                match out.cache {
                    Some(c) => c.get_or_insert(out.via, make),
                    None => make(),
                }
            }
            (PacketType::Event | PacketType::BinaryEvent, Some(id)) => {
                let (event, data) = ws_data(out.data, out.binary);
                json!({"type": "call", "id": id, "event": event, "data": data}).to_string().into()
            }
            // Acks and disconnects have no `/ws` form (a disconnect closes the connection).
            _ => return Ok(true),
        };
        self.push(text, out.volatile)
    }

    fn close(&self) {
        self.close_with(1000, "disconnected by the server");
    }
}

/// A client of the plain WebSocket endpoint: a socket of the main namespace whose packets go
/// to its task's queue.
#[derive(Debug)]
pub struct WsClient {
    /// Its socket (its id is the client's id).
    pub socket: Socket,
    /// Its queue and close signal.
    pub sink: Arc<WsSink>,
}

impl WsClient {
    /// Its id.
    pub fn id(&self) -> Sid {
        self.socket.id()
    }
}

/// The hub.
#[derive(Debug)]
pub struct Hub {
    /// The configuration.
    pub config: Config,
    /// The Socket.IO server.
    pub io: SocketIo,
    /// Token checks.
    pub verifier: Verifier,
    /// Room rules.
    pub policy: RoomPolicy,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The collection sink.
    pub collect: Collector,
    /// Set when shutting down: new handshakes get 503.
    pub draining: AtomicBool,
    /// Client slots, per address and in total, held for each client's life.
    pub slots: Arc<ClientSlots>,
    /// The proxies whose forwarding headers are believed.
    pub proxies: TrustedProxies,
    /// Backend hooks.
    pub hooks: Hooks,
    /// This node's membership in a cluster (`[cluster] adapter = "redis"`).
    pub cluster: Option<Cluster>,
    /// Forwarding of other nodes' sessions' requests.
    pub forwarder: crate::forward::Forwarder,
    weak: Weak<Hub>,
    /// Identities of this node's clients (Socket.IO sockets and `/ws` clients alike).
    idents: parking_lot::RwLock<HashMap<Sid, Identity>>,
    /// This node's `/ws` connections (their rooms are the namespace's, like everyone's).
    pub ws_clients: parking_lot::RwLock<HashMap<Sid, Arc<WsClient>>>,
    /// Serializes room changes of one client against the room cap.
    room_lock: RwLock<()>,
}

/// Why a client's request was refused (sent back, the connection stays: security A5).
pub fn refusal(msg: &str) -> Value {
    json!({"ok": false, "error": msg})
}

/// A subscribe's `since`: absent (no replay), an offset string, `{"offset": …}`, or `null`
/// (everything the room keeps).
fn since_of(v: &Value) -> Result<Option<Option<String>>, String> {
    match v.get("since") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.len() <= 256 => Ok(Some(Some(s.clone()))),
        Some(Value::Object(o)) => match o.get("offset") {
            Some(Value::String(s)) if s.len() <= 256 => Ok(Some(Some(s.clone()))),
            _ => Err("`since.offset` must be a string (an event's `offset`)".into()),
        },
        Some(_) => Err("`since` must be an event's `offset` (a string, or {\"offset\": …}) or null".into()),
    }
}

/// Room history served under `rules` (the first that matches `room`): a gap when the client
/// is further behind than the rule keeps.
pub fn history_check(rules: &[crate::config::HistoryRule], room: &str, events: &[LoggedEvent]) -> Result<(), Gap> {
    let Some(rule) = rules.iter().find(|r| r.matches(room)) else { return Ok(()) };
    if events.len() > rule.max_events {
        return Err(Gap { reason: GapReason::Trimmed, lost: Some((events.len() - rule.max_events) as u64) });
    }
    if rule.max_age_ms > 0 {
        let oldest = switchboard_socketio::recovery::unix_ms().saturating_sub(rule.max_age_ms);
        let old = events.iter().filter(|e| e.at_ms != 0 && e.at_ms < oldest).count();
        if old > 0 {
            return Err(Gap { reason: GapReason::Trimmed, lost: Some(old as u64) });
        }
    }
    Ok(())
}

fn room_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.get("room").and_then(Value::as_str).unwrap_or("").to_owned(),
    }
}

/// What a publish reached, on every node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    /// Deliveries on every node that reported.
    pub delivered: usize,
    /// Per node: (node name or uid, deliveries); this node first.
    pub nodes: Vec<(String, usize)>,
    /// Nodes that did not report (their deliveries are not counted).
    pub missing_nodes: Vec<String>,
}

/// The answers to a publish with acknowledgements, gathered on every node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Acks {
    /// How many clients it was sent to (on the nodes that reported).
    pub expected: usize,
    /// Their answers (each client's acknowledgement value).
    pub acks: Vec<Value>,
    /// Clients that did not answer in time.
    pub missing: usize,
    /// Nodes that did not report.
    pub missing_nodes: Vec<String>,
    /// Every node reported and every client answered.
    pub complete: bool,
}

/// Why a publish, a call or a cluster query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HubError {
    /// No such client on any node.
    #[error("no such client")]
    NoSuchClient,
    /// The client did not answer in time.
    #[error("acknowledgement timed out")]
    Timeout,
    /// The client went away first.
    #[error("client disconnected")]
    Disconnected,
    /// The cluster bus failed: the operation reached this node's clients only.
    #[error("cluster bus failed ({0}); only this node's clients were reached")]
    Bus(String),
    /// Some nodes did not answer.
    #[error("nodes did not answer in time: {}", .0.join(", "))]
    NodesMissing(Vec<String>),
    /// Refused (room rules, limits).
    #[error("{0}")]
    Refused(String),
}

impl From<AdapterError> for HubError {
    fn from(e: AdapterError) -> Self {
        match e {
            AdapterError::Timeout { missing } => {
                HubError::NodesMissing(missing.iter().map(|m| m.to_string()).collect())
            }
            AdapterError::Bus(b) => HubError::Bus(b),
            other => HubError::Bus(other.to_string()),
        }
    }
}

impl From<EmitError> for HubError {
    fn from(e: EmitError) -> Self {
        match e {
            EmitError::Adapter(a) => a.into(),
            EmitError::Disconnected => HubError::Disconnected,
            other => HubError::Refused(other.to_string()),
        }
    }
}

impl Hub {
    /// Builds the hub and its Socket.IO server (on the cluster's adapter when given).
    pub fn new(
        config: Config,
        collect: Collector,
        cluster: Option<Cluster>,
    ) -> Result<Arc<Hub>, crate::config::ConfigError> {
        let verifier = Verifier::new(&config.auth)?;
        let policy = RoomPolicy::new(&config.rooms);
        let proxies = TrustedProxies::new(&config.server.trusted_proxies)?;
        let slots = ClientSlots::new(config.server.max_connections_per_ip, config.server.max_connections);
        let hooks = Hooks::new(&config.hooks);
        Ok(Arc::new_cyclic(|weak: &Weak<Hub>| {
            let io = build_io(&config, weak.clone(), cluster.as_ref());
            Hub {
                config,
                io,
                verifier,
                policy,
                metrics: Metrics::default(),
                collect,
                draining: AtomicBool::new(false),
                slots,
                proxies,
                hooks,
                cluster,
                forwarder: crate::forward::Forwarder::default(),
                weak: weak.clone(),
                idents: parking_lot::RwLock::new(HashMap::new()),
                ws_clients: parking_lot::RwLock::new(HashMap::new()),
                room_lock: RwLock::new(()),
            }
        }))
    }

    /// The identity of one of this node's clients.
    pub fn ident(&self, sid: Sid) -> Option<Identity> {
        self.idents.read().get(&sid).cloned()
    }

    /// Replaces a client's identity (an in-band token refresh).
    pub fn set_ident(&self, sid: Sid, id: Identity) {
        self.idents.write().insert(sid, id);
    }

    fn main_ns(&self) -> Option<Arc<switchboard_socketio::Namespace>> {
        self.io.of("/")
    }

    /// Sends `event` with `data` to everyone in `rooms` (all clients when empty), on every
    /// node and both endpoints, except the clients named in `except` and the members of rooms
    /// named there. Returns the deliveries, counted on every node that reported.
    ///
    /// `data` may carry binary: Socket.IO placeholders naming `bins` (from a Socket.IO client
    /// or [`binary_from_json`]). Socket.IO members get the bytes as binary in place, `/ws`
    /// members a `{"$binary": "<base64>"}` object in place.
    pub async fn publish(
        &self,
        rooms: &[String],
        event: &str,
        data: &Value,
        bins: &[Bytes],
        except: &[String],
    ) -> Result<Delivery, HubError> {
        let t0 = std::time::Instant::now();
        let timeout = self.cluster.as_ref().map_or(Duration::from_secs(5), |c| c.config().request_timeout);
        let r = self.operator(rooms, except, timeout).emit_counted(event, vec![data.clone()], bins.to_vec()).await;
        self.metrics.emit_latency.observe(t0.elapsed());
        match r {
            Ok(rep) => {
                self.metrics.messages_out.fetch_add(rep.local as u64, Ordering::Relaxed);
                let mut nodes = vec![(self.node_name(), rep.local)];
                nodes.extend(rep.remote.iter().map(|(n, c)| (self.peer_name(n), *c)));
                Ok(Delivery {
                    delivered: nodes.iter().map(|(_, c)| c).sum(),
                    nodes,
                    missing_nodes: rep.missing_nodes.iter().map(|n| self.peer_name(n)).collect(),
                })
            }
            Err(e) => {
                tracing::warn!(event, error = %e, "publish reached this node only");
                Err(e.into())
            }
        }
    }

    /// Every node: this one first, then the others that sent heartbeats (name, uid, what
    /// they advertise, when last heard from), and whether the bus works end to end.
    pub fn nodes(&self) -> Value {
        let Some(c) = &self.cluster else {
            return json!({"adapter": "memory", "healthy": true, "nodes": [{"name": "local", "self": true}]});
        };
        let mut nodes = vec![json!({
            "name": self.node_name(),
            "uid": c.uid().to_string(),
            "self": true,
            "info": c.config().node_info,
            "clients": self.io.of("/").map_or(0, |ns| ns.len()),
        })];
        let mut peers = c.peers();
        peers.sort_by(|a, b| a.uid.cmp(&b.uid));
        for p in peers {
            nodes.push(json!({
                "name": p.info.get("name").cloned().unwrap_or(Value::Null),
                "uid": p.uid.to_string(),
                "self": false,
                "info": p.info.get("info").cloned().unwrap_or(Value::Null),
                "last_seen_ms": u64::try_from(p.last_seen.as_millis()).unwrap_or(u64::MAX),
            }));
        }
        let s = c.stats();
        json!({
            "adapter": self.config.cluster.adapter,
            "healthy": c.healthy(),
            "nodes": nodes,
            "bus": {
                "messages_in": s.messages_in.load(Ordering::Relaxed),
                "messages_out": s.messages_out.load(Ordering::Relaxed),
                "publish_errors": s.publish_errors.load(Ordering::Relaxed),
                "dropped": s.dropped.load(Ordering::Relaxed),
                "lost": s.lost.load(Ordering::Relaxed),
                "request_timeouts": s.request_timeouts.load(Ordering::Relaxed),
                "reconnects": s.reconnects.load(Ordering::Relaxed),
                "disconnects": s.disconnects.load(Ordering::Relaxed),
                "last_loss_ms_ago": c.last_loss().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            },
        })
    }

    /// [`publish`](Self::publish), asking every recipient for an acknowledgement: each node
    /// reports how many clients it sent to, then their answers come, until `timeout`.
    pub async fn publish_with_acks(
        &self,
        rooms: &[String],
        event: &str,
        data: &Value,
        bins: &[Bytes],
        except: &[String],
        timeout: Duration,
    ) -> Result<Acks, HubError> {
        let t0 = std::time::Instant::now();
        let r =
            self.operator(rooms, except, timeout).emit_with_ack_args(event, vec![data.clone()], bins.to_vec()).await;
        self.metrics.emit_latency.observe(t0.elapsed());
        let a = r?;
        Ok(Acks {
            expected: a.expected,
            missing: a.missing(),
            complete: a.complete(),
            missing_nodes: a.missing_nodes.iter().map(|n| self.peer_name(n)).collect(),
            acks: a.responses.into_iter().map(|(_, r)| ack_value(r)).collect(),
        })
    }

    /// A broadcast on the main namespace to `rooms` (everyone when empty) minus `except`.
    fn operator(&self, rooms: &[String], except: &[String], timeout: Duration) -> BroadcastOperator {
        let mut op = self.io.broadcast().timeout(timeout);
        if !rooms.is_empty() {
            op = op.to(rooms.to_vec());
        }
        if !except.is_empty() {
            op = op.except(except.to_vec());
        }
        op
    }

    /// This node's name for listings.
    pub fn node_name(&self) -> String {
        match &self.cluster {
            Some(c) if !c.config().node_name.is_empty() => c.config().node_name.clone(),
            Some(c) => c.uid().to_string(),
            None => "local".to_owned(),
        }
    }

    /// Another node's name (what its heartbeats say), or its uid.
    pub fn peer_name(&self, uid: &str) -> String {
        self.cluster
            .as_ref()
            .and_then(|c| c.peers().into_iter().find(|p| &*p.uid == uid))
            .and_then(|p| p.info.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_owned))
            .unwrap_or_else(|| uid.to_owned())
    }

    /// Calls one client (a client id, or the first client of `user:<sub>`), on any node, and
    /// waits for its ack.
    pub async fn call(
        &self,
        target: &str,
        user: bool,
        event: &str,
        data: &Value,
        timeout: Duration,
    ) -> Result<Value, HubError> {
        let t0 = std::time::Instant::now();
        let r = self.call_inner(target, user, event, data, timeout).await;
        self.metrics.call_latency.observe(t0.elapsed());
        r
    }

    async fn call_inner(
        &self,
        target: &str,
        user: bool,
        event: &str,
        data: &Value,
        timeout: Duration,
    ) -> Result<Value, HubError> {
        let id: String = if user {
            let room = format!("user:{target}");
            let found = self.io.to(room.as_str()).timeout(timeout).fetch_sockets().await?;
            found.first().map(|s| s.id().to_owned()).ok_or(HubError::NoSuchClient)?
        } else {
            target.to_owned()
        };
        // This node's client: straight to it.
        if let Some(s) = Sid::parse(&id).and_then(|sid| self.io.get_socket(sid)) {
            let wait = s.emit_with_ack(event, data)?;
            return match wait.timeout(timeout).await {
                Ok(r) => Ok(ack_value(r)),
                Err(switchboard_socketio::AckError::Timeout) => Err(HubError::Timeout),
                Err(_) => Err(HubError::Disconnected),
            };
        }
        if self.cluster.is_none() {
            return Err(HubError::NoSuchClient);
        }
        // Another node's: a broadcast with acks to its id room finds it wherever it is.
        let acks =
            self.io.to(id.as_str()).timeout(timeout).emit_with_ack_args(event, vec![data.clone()], vec![]).await?;
        match acks.responses.into_iter().next() {
            Some((_, r)) => Ok(ack_value(r)),
            None if acks.expected == 0 && acks.missing_nodes.is_empty() => Err(HubError::NoSuchClient),
            None if acks.expected == 0 => {
                Err(HubError::NodesMissing(acks.missing_nodes.iter().map(|n| self.peer_name(n)).collect()))
            }
            None => Err(HubError::Timeout),
        }
    }

    /// Joins a client (by id, on any node) to a room, checking the policy when `check` (a
    /// client asking) and the per-client cap.
    pub async fn join(&self, who: &str, room: &str, check: Option<&Identity>) -> Result<(), HubError> {
        self.policy.check_name(room).map_err(HubError::Refused)?;
        if let Some(id) = check {
            if !self.policy.allows(id, room, RoomAction::Join) {
                return Err(HubError::Refused(format!(
                    "permission denied: the room rules do not let you join {room:?}"
                )));
            }
        }
        let _g = self.room_lock.write().await;
        let sid = Sid::parse(who).ok_or(HubError::NoSuchClient)?;
        let rooms: Vec<String> = if self.io.get_socket(sid).is_some() {
            self.io.rooms(sid, "/").await?.iter().map(|r| r.to_string()).collect()
        } else {
            let found = self.io.to(who).fetch_sockets().await?;
            found.into_iter().next().ok_or(HubError::NoSuchClient)?.info.rooms
        };
        // The own id room does not count.
        if rooms.len() > self.policy.max_rooms && !rooms.iter().any(|r| r == room) {
            return Err(HubError::Refused(self.room_limit()));
        }
        self.io.to(who).join(room).await?;
        Ok(())
    }

    /// `subscribe` with `since`: joins (with the checks of [`join`](Self::join)) and replays
    /// the room's events after `since`, merged with the live ones; the reply says whether the
    /// client recovered. Only for a client of this node (the one asking).
    pub async fn subscribe_since(
        &self,
        who: &str,
        room: &str,
        check: Option<&Identity>,
        since: Option<String>,
    ) -> Value {
        if let Err(e) = self.policy.check_name(room) {
            return refusal(&e);
        }
        if let Some(id) = check {
            if !self.policy.allows(id, room, RoomAction::Join) {
                return refusal(&format!("permission denied: the room rules do not let you join {room:?}"));
            }
        }
        let Some(socket) = Sid::parse(who).and_then(|sid| self.io.get_socket(sid)) else {
            return refusal(&HubError::NoSuchClient.to_string());
        };
        let _g = self.room_lock.write().await;
        let rooms = self.io.rooms(socket.id(), "/").await.unwrap_or_default();
        if rooms.len() > self.policy.max_rooms && !rooms.iter().any(|r| &**r == room) {
            return refusal(&self.room_limit());
        }
        let rules = &self.config.recovery.history;
        match socket.join_since(room, since.as_deref(), |events| history_check(rules, room, events)).await {
            Ok(Ok(n)) => json!({"ok": true, "room": room, "recovered": true, "replayed": n}),
            Ok(Err(g)) => {
                json!({"ok": true, "room": room, "recovered": false, "reason": g.reason.as_str(), "lost": g.lost})
            }
            Err(e) => refusal(&e.to_string()),
        }
    }

    /// A room's history after `since` (`None`: all it keeps), the newest `limit` events at
    /// most, under the history rules.
    pub async fn history(&self, room: &str, since: Option<&str>, limit: usize) -> Result<Vec<Value>, Gap> {
        let Some(ns) = self.io.of("/") else { return Err(Gap::new(GapReason::NoHistory)) };
        let mut events = ns.history(room, since).await?;
        let rules = &self.config.recovery.history;
        if since.is_some() {
            history_check(rules, room, &events)?;
        } else if let Some(rule) = rules.iter().find(|r| r.matches(room)) {
            // From the start: what the rule keeps.
            let skip = events.len().saturating_sub(rule.max_events);
            events.drain(..skip);
            if rule.max_age_ms > 0 {
                let oldest = switchboard_socketio::recovery::unix_ms().saturating_sub(rule.max_age_ms);
                events.retain(|e| e.at_ms == 0 || e.at_ms >= oldest);
            }
        }
        if since.is_some() && events.len() > limit {
            // Not all of it fits: the caller asks again from the last one it got.
            events.truncate(limit);
        } else {
            let skip = events.len().saturating_sub(limit);
            events.drain(..skip);
        }
        Ok(events
            .into_iter()
            .map(|e| {
                let (event, data) = ws_data(Some(&e.packet.data), &e.packet.binary);
                json!({"event": event, "data": data, "offset": e.offset, "at_ms": e.at_ms})
            })
            .collect())
    }

    fn room_limit(&self) -> String {
        format!("room limit exceeded: at most {} rooms per client (rooms.max_rooms_per_client)", self.policy.max_rooms)
    }

    /// Takes a client (on any node) out of a room.
    pub async fn leave(&self, who: &str, room: &str) -> Result<(), HubError> {
        self.io.to(who).leave(room).await?;
        Ok(())
    }

    /// Registers a `/ws` client: a socket of the main namespace with its own sink.
    pub fn add_ws(&self, ident: Identity, tx: mpsc::Sender<WsOut>, info: ConnInfo) -> Option<Arc<WsClient>> {
        let ns = self.main_ns()?;
        let sink = Arc::new(WsSink {
            tx,
            closing: parking_lot::Mutex::new(None),
            kill: tokio::sync::Notify::new(),
            hub: self.weak.clone(),
        });
        let auth = json!({});
        let socket = Socket::connect_external(&ns, sink.clone(), auth, info);
        socket.set_data(json!({"user": ident.sub, "transport": "ws"}));
        self.idents.write().insert(socket.id(), ident);
        let c = Arc::new(WsClient { socket, sink });
        self.ws_clients.write().insert(c.id(), c.clone());
        self.metrics.ws_connections.fetch_add(1, Ordering::Relaxed);
        Some(c)
    }

    /// Removes a `/ws` client: out of the namespace and its rooms.
    pub fn remove_ws(&self, c: &WsClient) {
        self.ws_clients.write().remove(&c.id());
        self.idents.write().remove(&c.id());
        c.socket.external_closed();
        self.metrics.ws_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Every client on every node, optionally only those in `room`: id, user, transport,
    /// rooms and node. Fails, naming them, when nodes do not answer.
    pub async fn list(&self, room: Option<&str>) -> Result<Vec<Value>, HubError> {
        let op = match room {
            Some(r) => self.io.to(r),
            None => self.io.broadcast(),
        };
        let t0 = std::time::Instant::now();
        let found = op.fetch_sockets().await;
        if self.cluster.is_some() {
            self.metrics.bus_latency.observe(t0.elapsed());
        }
        let found = found?;
        let me = self.node_name();
        Ok(found
            .into_iter()
            .map(|s| {
                let node = s.info.node.as_deref().map_or_else(|| me.clone(), |n| self.peer_name(n));
                json!({
                    "id": s.info.id,
                    "user": s.info.data.get("user").cloned().unwrap_or(Value::Null),
                    "transport": s.info.data.get("transport").cloned().unwrap_or_else(|| json!("socket.io")),
                    "rooms": s.info.rooms.iter().filter(|r| **r != s.info.id).collect::<Vec<_>>(),
                    "node": node,
                })
            })
            .collect())
    }

    /// A client of this node as hooks see it: id, user, transport and rooms.
    pub async fn client_json(&self, who: &str, ident: &Identity) -> Value {
        let sid = Sid::parse(who);
        let socket = sid.and_then(|s| self.io.get_socket(s));
        let transport = if socket.as_ref().is_some_and(Socket::is_external) { "ws" } else { "socket.io" };
        let rooms: Vec<String> = match sid {
            Some(sid) => self
                .io
                .rooms(sid, "/")
                .await
                .unwrap_or_default()
                .iter()
                .filter(|r| ***r != *who)
                .map(|r| r.to_string())
                .collect(),
            None => Vec::new(),
        };
        json!({"id": who, "user": ident.sub, "anonymous": ident.anonymous, "transport": transport, "rooms": rooms})
    }

    /// A client event for a backend hook: POSTs it, carries out the answer's actions, and
    /// returns the answer's `reply` (the client's ack; `{ok:true}` when it has none).
    async fn event_hook(&self, who: &str, ident: &Identity, event: &str, data: &Value) -> Value {
        let body = json!({"hook": "event", "event": event, "data": data, "client": self.client_json(who, ident).await});
        let answer = match self.hooks.event(event, body).await {
            Ok(Some(a)) => a,
            Ok(None) => return refusal("unknown request"),
            Err(e) => return e.reply(),
        };
        let mut disconnect = false;
        for action in answer.get("actions").and_then(Value::as_array).into_iter().flatten() {
            if let Err(e) = self.hook_action(who, action, &mut disconnect).await {
                tracing::warn!(event, error = e, "backend hook action refused");
            }
        }
        let reply = answer.get("reply").cloned().unwrap_or_else(|| json!({"ok": true}));
        if disconnect {
            // After the reply has been queued.
            let (hub, who) = (self.self_weak(), who.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Some(h) = hub.upgrade() {
                    let _ = h.disconnect(&who).await;
                }
            });
        }
        reply
    }

    /// One action from a hook's answer: `{"publish": {rooms|room, event, data, skip_sender}}`,
    /// `{"join": room}`, `{"leave": room}`, `{"disconnect": true}`.
    async fn hook_action(&self, who: &str, action: &Value, disconnect: &mut bool) -> Result<(), String> {
        if let Some(p) = action.get("publish") {
            let event = p.get("event").and_then(Value::as_str).unwrap_or("message");
            if event.is_empty() || switchboard_socketio::is_reserved_event(event) {
                return Err(format!("bad event name {event:?}"));
            }
            let mut rooms: Vec<String> = p
                .get("rooms")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            if let Some(r) = p.get("room").and_then(Value::as_str) {
                rooms.push(r.to_owned());
            }
            let except = if p.get("skip_sender").and_then(Value::as_bool).unwrap_or(false) {
                vec![who.to_owned()]
            } else {
                Vec::new()
            };
            let (data, bins) = binary_from_json(p.get("data").unwrap_or(&Value::Null))?;
            self.publish(&rooms, event, &data, &bins, &except).await.map_err(|e| e.to_string())?;
            return Ok(());
        }
        if let Some(room) = action.get("join").and_then(Value::as_str) {
            return self.join(who, room, None).await.map_err(|e| e.to_string());
        }
        if let Some(room) = action.get("leave").and_then(Value::as_str) {
            return self.leave(who, room).await.map_err(|e| e.to_string());
        }
        if action.get("disconnect").is_some_and(|d| d != &Value::Bool(false)) {
            *disconnect = true;
            return Ok(());
        }
        Err(format!("unknown action {action}"))
    }

    /// Asks the connect hook about a client that passed authentication: `Ok(rooms)` to join
    /// as well, `Err(reply)` to refuse it with. No hook: `Ok([])`.
    pub async fn connect_hook(
        &self,
        id: &str,
        ident: &Identity,
        transport: &str,
        extra: Value,
    ) -> Result<Vec<String>, Value> {
        if !self.hooks.has_connect() {
            return Ok(Vec::new());
        }
        let client = json!({"id": id, "user": ident.sub, "anonymous": ident.anonymous, "transport": transport, "rooms": ident.rooms});
        let body = json!({"hook": "connect", "client": client, "request": extra});
        match self.hooks.connect(body).await {
            Ok(Some(a)) if a.get("allow").and_then(Value::as_bool).unwrap_or(false) => Ok(a
                .get("rooms")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()),
            Ok(Some(a)) => {
                let reason = a.get("reason").and_then(Value::as_str).unwrap_or("refused by the backend");
                Err(json!({"ok": false, "error": reason, "code": "hook_denied"}))
            }
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(e.reply()),
        }
    }

    fn self_weak(&self) -> Weak<Hub> {
        self.weak.clone()
    }

    /// Disconnects one client, on any node. `Ok(false)`: no such client.
    pub async fn disconnect(&self, who: &str) -> Result<bool, HubError> {
        if let Some(s) = Sid::parse(who).and_then(|sid| self.io.get_socket(sid)) {
            s.disconnect();
            return Ok(true);
        }
        if self.cluster.is_none() {
            return Ok(false);
        }
        let found = self.io.to(who).fetch_sockets().await?;
        if found.is_empty() {
            return Ok(false);
        }
        self.io.to(who).disconnect().await?;
        Ok(true)
    }

    /// Starts draining: new handshakes get 503; every client is closed with 1001 / "server
    /// shutting down".
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.io.close();
        let clients: Vec<Arc<WsClient>> = self.ws_clients.read().values().cloned().collect();
        for c in clients {
            c.sink.close_with(1001, "server shutting down");
        }
    }

    /// Connections open now (Socket.IO sessions and `/ws` clients).
    pub fn connections(&self) -> usize {
        self.io.engine().session_count() + self.ws_clients.read().len()
    }

    /// Handles a client's request common to both endpoints. `who`: its id; `ident`: its
    /// identity. Returns the reply.
    /// `bins`: the binary attachments a Socket.IO client sent with `v` (placeholders in `v`);
    /// a `/ws` client sends binary as `{"$binary": "<base64>"}` objects instead.
    pub async fn client_request(&self, who: &str, ident: &Identity, kind: &str, v: &Value, bins: &[Bytes]) -> Value {
        self.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
        match kind {
            "subscribe" if self.hooks.has_subscribe() => {
                let room = room_of(v);
                if let Err(e) = self.policy.check_name(&room) {
                    return refusal(&e);
                }
                let body = json!({"hook": "subscribe", "room": room, "client": self.client_json(who, ident).await});
                match self.hooks.subscribe(body).await {
                    Ok(Some(a)) if a.get("allow").and_then(Value::as_bool).unwrap_or(false) => match since_of(v) {
                        Ok(Some(since)) => self.subscribe_since(who, &room, None, since).await,
                        Ok(None) => match self.join(who, &room, None).await {
                            Ok(()) => json!({"ok": true, "room": room}),
                            Err(e) => refusal(&e.to_string()),
                        },
                        Err(e) => refusal(&e),
                    },
                    Ok(a) => {
                        let reason = a
                            .as_ref()
                            .and_then(|a| a.get("reason"))
                            .and_then(Value::as_str)
                            .unwrap_or("the backend did not allow this subscription");
                        json!({"ok": false, "error": reason, "code": "hook_denied"})
                    }
                    Err(e) => e.reply(),
                }
            }
            "subscribe" => {
                let room = room_of(v);
                match since_of(v) {
                    Ok(Some(since)) => self.subscribe_since(who, &room, Some(ident), since).await,
                    Ok(None) => match self.join(who, &room, Some(ident)).await {
                        Ok(()) => json!({"ok": true, "room": room}),
                        Err(e) => refusal(&e.to_string()),
                    },
                    Err(e) => refusal(&e),
                }
            }
            "unsubscribe" => {
                let room = room_of(v);
                match self.leave(who, &room).await {
                    Ok(()) => json!({"ok": true, "room": room}),
                    Err(e) => refusal(&e.to_string()),
                }
            }
            "publish" => {
                let room = room_of(v);
                if let Err(e) = self.policy.check_name(&room) {
                    return refusal(&e);
                }
                if !self.policy.allows(ident, &room, RoomAction::Publish) {
                    return refusal(&format!("permission denied: the room rules do not let you publish to {room:?}"));
                }
                let event = match v.get("event") {
                    None => "message",
                    Some(Value::String(e)) => e.as_str(),
                    Some(_) => return refusal("`event` must be a string"),
                };
                if let Err(e) = check_client_event(event) {
                    return refusal(&e);
                }
                let data = v.get("data").cloned().unwrap_or(Value::Null);
                let payload = json!({"from": ident.sub, "room": room, "data": data});
                // Binary from a `/ws` client comes as `$binary` objects; from Socket.IO, as
                // attachments already.
                let (payload, bins) = if bins.is_empty() {
                    match binary_from_json(&payload) {
                        Ok(x) => x,
                        Err(e) => return refusal(&e),
                    }
                } else {
                    (payload, bins.to_vec())
                };
                match self.publish(&[room], event, &payload, &bins, &[who.to_owned()]).await {
                    Ok(d) => json!({"ok": true, "delivered": d.delivered}),
                    Err(e) => refusal(&e.to_string()),
                }
            }
            channel if self.config.collect.channels.iter().any(|c| c == channel) => {
                let data = v.get("data").cloned().unwrap_or_else(|| v.clone());
                let record = json!({"ts": now_s(), "user": ident.sub, "client": who, "channel": channel, "data": data});
                match self.collect.push(record) {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => refusal(e),
                }
            }
            event if self.hooks.handles_event(event) => self.event_hook(who, ident, event, v).await,
            _ => refusal("unknown request"),
        }
    }
}

/// Event names clients may not publish: the hub's own events (what it sends, and the requests
/// clients make) and Socket.IO's reserved names, so that no member can be sent something that
/// looks like it came from the hub. The backend API may use `notification` (it is the hub's
/// notification channel); clients may not.
pub const HUB_RESERVED_EVENTS: [&str; 8] =
    ["welcome", "auth_expired", "notification", "subscribe", "unsubscribe", "publish", "refresh", "ping"];

/// Checks an event name a client wants to publish under; `Err` says what is wrong.
pub fn check_client_event(event: &str) -> Result<(), String> {
    if event.is_empty() {
        return Err("the event name is empty".into());
    }
    if event.len() > 128 {
        return Err("the event name is longer than 128 bytes".into());
    }
    if switchboard_socketio::is_reserved_event(event) || HUB_RESERVED_EVENTS.contains(&event) {
        return Err(format!("`{event}` is reserved for the hub"));
    }
    Ok(())
}

/// Binary in JSON, as `/ws` clients and the HTTP API write it: every object
/// `{"$binary": "<base64>"}` becomes a Socket.IO placeholder and its bytes an attachment.
/// `Err` for a `$binary` value that is not standard base64.
pub fn binary_from_json(v: &Value) -> Result<(Value, Vec<Bytes>), String> {
    fn walk(v: &Value, bins: &mut Vec<Bytes>) -> Result<Value, String> {
        Ok(match v {
            Value::Object(o) if o.len() == 1 && o.contains_key("$binary") => {
                let b64 = o.get("$binary").and_then(Value::as_str).ok_or("`$binary` must be a base64 string")?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| "`$binary` is not valid base64".to_owned())?;
                bins.push(Bytes::from(bytes));
                json!({"_placeholder": true, "num": bins.len() - 1})
            }
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, x)| Ok((k.clone(), walk(x, bins)?))).collect::<Result<_, String>>()?)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, bins)).collect::<Result<_, _>>()?),
            v => v.clone(),
        })
    }
    let mut bins = Vec::new();
    let out = walk(v, &mut bins)?;
    Ok((out, bins))
}

/// The reverse of [`binary_from_json`], for `/ws` recipients: placeholders naming `bins`
/// become `{"$binary": "<base64>"}`.
pub fn binary_to_json(v: &Value, bins: &[Bytes]) -> Value {
    if bins.is_empty() {
        return v.clone();
    }
    match v {
        Value::Object(o) if o.len() == 2 && o.get("_placeholder") == Some(&Value::Bool(true)) => {
            match o.get("num").and_then(Value::as_u64).and_then(|n| bins.get(n as usize)) {
                Some(b) => json!({"$binary": base64::engine::general_purpose::STANDARD.encode(b)}),
                None => v.clone(),
            }
        }
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), binary_to_json(x, bins))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|x| binary_to_json(x, bins)).collect()),
        v => v.clone(),
    }
}

/// An acknowledgement's value: its one argument, `null` for none, an array for several.
pub fn ack_value(r: AckResponse) -> Value {
    match r.args.len() {
        0 => Value::Null,
        1 => r.args.into_iter().next().unwrap_or(Value::Null),
        _ => Value::Array(r.args),
    }
}

/// Expiry watch (security: A2): disconnects when the token expires, unless it was refreshed
/// in band. `still` returns the current expiry, `None` once the client is gone.
pub async fn watch_expiry<F, G>(mut exp: u64, still: F, expire: G)
where
    F: Fn() -> Option<Option<u64>>,
    G: FnOnce(),
{
    loop {
        let now = now_s();
        if exp > now {
            tokio::time::sleep(Duration::from_secs(exp - now)).await;
        }
        match still() {
            None => return,
            Some(Some(e)) if e > now_s() => exp = e,
            Some(_) => {
                expire();
                return;
            }
        }
    }
}

fn build_io(config: &Config, hub: Weak<Hub>, cluster: Option<&Cluster>) -> SocketIo {
    let s = &config.server;
    let origins = if s.origins.is_empty() { OriginPolicy::Any } else { OriginPolicy::allow_list(&s.origins) };
    let engine = EngineConfig::default()
        .with_ping_interval(Duration::from_millis(s.ping_interval_ms))
        .with_ping_timeout(Duration::from_millis(s.ping_timeout_ms))
        .with_max_payload(s.max_message_bytes)
        .with_origins(origins)
        .with_max_sessions(s.max_connections)
        .with_queue_limits(s.max_queued_messages, s.max_queued_messages.saturating_mul(64 << 10));
    let mut sio = SocketIoConfig::default()
        .with_engine(engine.with_path("/socket.io/"))
        .with_connect_timeout(Duration::from_millis(s.connect_timeout_ms));
    let r = &config.recovery;
    if r.enabled {
        // The middleware runs on recovery too: the token is checked again, and the session
        // must be the same user's (security: A3).
        sio.recovery = Some(
            RecoveryConfig::default()
                .with_max_disconnection_duration(Duration::from_millis(r.max_disconnection_ms))
                .with_skip_middlewares(false)
                .with_log_limits(r.max_events, r.max_bytes)
                .with_max_sessions(r.max_sessions)
                .with_skip_python_clients(r.skip_python_clients),
        );
    }
    let (h1, h2, h3, h4, h5, h6) = (hub.clone(), hub.clone(), hub.clone(), hub.clone(), hub.clone(), hub);
    let handlers = Handlers::new()
        .middleware(move |socket| {
            let hub = h1.clone();
            async move {
                let Some(hub) = hub.upgrade() else { return Err(ConnectError::new("server shutting down")) };
                if hub.draining.load(Ordering::SeqCst) {
                    return Err(ConnectError::new("server shutting down"));
                }
                let token = socket.auth().get("token").and_then(Value::as_str);
                match hub.verifier.identify(token) {
                    Ok(id) if socket.data().get("user").is_some_and(|u| u.as_str() != Some(id.sub.as_str())) => {
                        // A recovered session (its data came back) of another user.
                        hub.metrics.handshake_failure("auth");
                        tracing::warn!(sid = %socket.id(), user = id.sub, "socket.io client refused: recovering another user's session");
                        Err(ConnectError::new("unauthorized")
                            .with_data(json!({"code": "session_mismatch", "message": "the session belongs to another user"})))
                    }
                    Ok(mut id) => {
                        // The backend's say, when a connect hook is configured: allow (with
                        // rooms to join) or refuse.
                        let ip = socket.handshake().and_then(|h| h.remote).map(|r| r.ip().to_string());
                        let mut auth = socket.auth().clone();
                        if let Some(o) = auth.as_object_mut() {
                            o.remove("token");
                        }
                        let extra = json!({"auth": auth, "address": ip});
                        match hub.connect_hook(&socket.id().to_string(), &id, "socket.io", extra).await {
                            Ok(rooms) => id.rooms.extend(rooms),
                            Err(reply) => {
                                hub.metrics.handshake_failure("hook");
                                tracing::info!(sid = %socket.id(), code = ?reply["code"], "socket.io client refused by the connect hook");
                                let data = json!({"code": reply["code"], "message": reply["error"]});
                                return Err(ConnectError::new("unauthorized").with_data(data));
                            }
                        }
                        socket.set_data(json!({"user": id.sub, "transport": "socket.io"}));
                        hub.idents.write().insert(socket.id(), id);
                        Ok(())
                    }
                    Err(e) => {
                        hub.metrics.handshake_failure("auth");
                        let ip = socket.handshake().and_then(|h| h.remote).map(|r| r.ip());
                        tracing::info!(sid = %socket.id(), ip = ?ip, code = e.code(), "socket.io client refused: authentication");
                        Err(ConnectError::new("unauthorized").with_data(e.to_json()))
                    }
                }
            }
        })
        .on_connect(move |socket| {
            let hub = h2.clone();
            async move {
                let Some(hub) = hub.upgrade() else { return };
                let Some(id) = hub.ident(socket.id()) else { return };
                hub.metrics.sio_connections.fetch_add(1, Ordering::Relaxed);
                let ip = socket.handshake().and_then(|h| h.remote).map(|r| r.ip());
                tracing::info!(sid = %socket.id(), user = id.sub, ip = ?ip, "socket.io client connected");
                let mut rooms = vec![format!("user:{}", id.sub)];
                rooms.extend(id.rooms.iter().cloned());
                let _ = socket.join(rooms).await;
                let _ = socket.emit("welcome", &json!({"id": socket.id().to_string(), "user": id.sub}));
                if let Some(exp) = id.exp {
                    let weak = Arc::downgrade(&hub);
                    let s2 = socket.clone();
                    tokio::spawn(watch_expiry(
                        exp,
                        move || {
                            let hub = weak.upgrade()?;
                            if !s2.connected() {
                                return None;
                            }
                            Some(hub.ident(s2.id()).and_then(|i| i.exp))
                        },
                        move || {
                            let _ = socket.emit("auth_expired", &json!({"reason": "token expired"}));
                            socket.disconnect();
                        },
                    ));
                }
            }
        })
        .on_disconnect(move |socket, reason| {
            let hub = h3.clone();
            async move {
                if let Some(hub) = hub.upgrade() {
                    if let Some(id) = hub.idents.write().remove(&socket.id()) {
                        hub.metrics.sio_connections.fetch_sub(1, Ordering::Relaxed);
                        tracing::info!(sid = %socket.id(), user = id.sub, %reason, "socket.io client disconnected");
                    }
                }
            }
        })
        .on("refresh", move |socket, mut ev| {
            let hub = h4.clone();
            async move {
                let Some(hub) = hub.upgrade() else { return };
                let token =
                    ev.args.first().and_then(|v| v.get("token").or(Some(v))).and_then(Value::as_str).unwrap_or("");
                let reply = match (hub.verifier.verify(token), hub.ident(socket.id())) {
                    (Ok(new), Some(old)) if new.sub == old.sub => {
                        let exp = new.exp;
                        hub.idents.write().insert(socket.id(), new);
                        json!({"ok": true, "exp": exp})
                    }
                    (Ok(_), _) => refusal("token is for another user"),
                    (Err(e), _) => json!({"ok": false, "error": e.to_string(), "code": e.code()}),
                };
                let _ = ev.ack(&reply);
            }
        })
        .on_any(move |socket, mut ev| {
            let hub = h5.clone();
            async move {
                let Some(hub) = hub.upgrade() else { return };
                let Some(id) = hub.ident(socket.id()) else { return };
                let arg = ev.args.first().cloned().unwrap_or(Value::Null);
                let bins = std::mem::take(&mut ev.binary);
                let reply = hub.client_request(&socket.id().to_string(), &id, &ev.name.clone(), &arg, &bins).await;
                let _ = ev.ack(&reply);
            }
        });
    let mut builder = SocketIo::builder();
    if let Some(c) = cluster {
        builder = builder.adapter(c.adapter_factory());
    }
    builder
        .config(sio)
        // A client slot for the connection's whole life, on every transport (security: R5).
        .allow_request(move |hs| {
            let Some(hub) = h6.upgrade() else { return Err(ErrorCode::Forbidden) };
            let ip = hs.remote.map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |r| r.ip());
            match hub.slots.try_acquire(ip) {
                Ok(slot) => Ok(Some(Box::new(slot))),
                Err(e) => {
                    hub.metrics.handshake_failure("connection_limit");
                    tracing::info!(%ip, reason = e.message(), "socket.io client refused: connection limit");
                    Err(ErrorCode::Forbidden)
                }
            }
        })
        .ns("/", handlers)
        .build()
}
