//! The hub's state: the Socket.IO server, the `/ws` clients, identities, rooms across both,
//! publishing, calls, metrics, data collection, draining.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use switchboard_socketio::engineio::{EngineConfig, ErrorCode, Sid};
use switchboard_socketio::{ConnectError, Handlers, Socket, SocketIo, SocketIoConfig};
use switchboard_ws::proto::handshake::server::OriginPolicy;
use tokio::sync::{mpsc, oneshot, RwLock};

use crate::auth::{now_s, Identity, RoomAction, RoomPolicy, Verifier};
use crate::collect::Collector;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::limits::{ClientSlots, TrustedProxies};
use crate::metrics::Metrics;

/// A message for a `/ws` client's writer task: a JSON text frame (clones share the bytes, so a
/// publish encodes once for all members).
pub type WsOut = switchboard_ws::Utf8Bytes;

/// A client of the plain WebSocket endpoint.
#[derive(Debug)]
pub struct WsClient {
    /// Its id (`ws-<n>`).
    pub id: String,
    /// Who it is (replaced by an in-band refresh).
    pub ident: parking_lot::RwLock<Identity>,
    /// Its outbound queue (bounded: a client that lets it fill is closed, security R1).
    pub tx: mpsc::Sender<WsOut>,
    /// Its rooms.
    pub rooms: parking_lot::Mutex<HashSet<String>>,
    /// Calls waiting for its ack.
    pub calls: parking_lot::Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    /// Set to close the client (code, reason); its task wakes on `kill`.
    pub closing: parking_lot::Mutex<Option<(u16, &'static str)>>,
    /// Wakes the client's task to close.
    pub kill: tokio::sync::Notify,
}

impl WsClient {
    /// Queues a frame; a full queue closes the client with 1008 "slow consumer" (security:
    /// R1).
    pub fn push(&self, text: WsOut, metrics: &Metrics) -> bool {
        match self.tx.try_send(text) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.drops.fetch_add(1, Ordering::Relaxed);
                self.close(1008, "slow consumer");
                false
            }
            Err(_) => false,
        }
    }

    /// Closes the client with `code` and `reason` (the first close wins).
    pub fn close(&self, code: u16, reason: &'static str) {
        self.closing.lock().get_or_insert((code, reason));
        self.kill.notify_one();
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
    weak: Weak<Hub>,
    /// Identities of Socket.IO sockets.
    idents: parking_lot::RwLock<HashMap<Sid, Identity>>,
    /// `/ws` clients by id.
    pub ws_clients: parking_lot::RwLock<HashMap<String, Arc<WsClient>>>,
    /// `/ws` room membership.
    ws_rooms: parking_lot::RwLock<HashMap<String, HashSet<String>>>,
    next_ws: AtomicU64,
    next_call: AtomicU64,
    /// Serializes room changes of one client against the room cap.
    room_lock: RwLock<()>,
}

/// Why a client's request was refused (sent back, the connection stays: security A5).
pub fn refusal(msg: &str) -> Value {
    json!({"ok": false, "error": msg})
}

fn room_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.get("room").and_then(Value::as_str).unwrap_or("").to_owned(),
    }
}

impl Hub {
    /// Builds the hub and its Socket.IO server.
    pub fn new(config: Config, collect: Collector) -> Result<Arc<Hub>, crate::config::ConfigError> {
        let verifier = Verifier::new(&config.auth)?;
        let policy = RoomPolicy::new(&config.rooms);
        let proxies = TrustedProxies::new(&config.server.trusted_proxies)?;
        let slots = ClientSlots::new(config.server.max_connections_per_ip, config.server.max_connections);
        let hooks = Hooks::new(&config.hooks);
        Ok(Arc::new_cyclic(|weak: &Weak<Hub>| {
            let io = build_io(&config, weak.clone());
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
                weak: weak.clone(),
                idents: parking_lot::RwLock::new(HashMap::new()),
                ws_clients: parking_lot::RwLock::new(HashMap::new()),
                ws_rooms: parking_lot::RwLock::new(HashMap::new()),
                next_ws: AtomicU64::new(1),
                next_call: AtomicU64::new(1),
                room_lock: RwLock::new(()),
            }
        }))
    }

    /// The identity of a Socket.IO socket.
    pub fn ident(&self, sid: Sid) -> Option<Identity> {
        self.idents.read().get(&sid).cloned()
    }

    /// Sends `event` with `data` to everyone in `rooms` (all clients when empty) on both
    /// endpoints, except the Socket.IO sockets or `/ws` clients named in `except` and the
    /// members of rooms named there. Returns the number of local deliveries.
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
    ) -> usize {
        let mut op = self.io.broadcast();
        if !rooms.is_empty() {
            op = op.to(rooms.to_vec());
        }
        if !except.is_empty() {
            op = op.except(except.to_vec());
        }
        let mut delivered = op.emit_with(event, vec![data.clone()], bins.to_vec()).await.unwrap_or(0);
        // `/ws` members get binary as `$binary` objects; without binary, `data` as it is.
        let converted;
        let data = if bins.is_empty() {
            data
        } else {
            converted = binary_to_json(data, bins);
            &converted
        };
        // `/ws` clients, with the room they are reached through.
        let targets: Vec<(Arc<WsClient>, Option<&String>)> = {
            let clients = self.ws_clients.read();
            let wr = self.ws_rooms.read();
            let mut excluded: HashSet<&str> = except.iter().map(String::as_str).collect();
            for e in except {
                if let Some(m) = wr.get(e) {
                    excluded.extend(m.iter().map(String::as_str));
                }
            }
            let mut seen = HashSet::new();
            let ids: Vec<(&String, Option<&String>)> = if rooms.is_empty() {
                clients.keys().map(|id| (id, None)).collect()
            } else {
                rooms
                    .iter()
                    .filter_map(|r| wr.get(r).map(|m| (r, m)))
                    .flat_map(|(r, m)| m.iter().map(move |id| (id, Some(r))))
                    .filter(|(id, _)| seen.insert(*id))
                    .collect()
            };
            ids.into_iter()
                .filter(|(id, _)| !excluded.contains(id.as_str()))
                .filter_map(|(id, r)| clients.get(id).map(|c| (c.clone(), r)))
                .collect()
        };
        // One encoding per room for all `/ws` recipients.
        let mut frames: HashMap<Option<&String>, WsOut> = HashMap::new();
        for (c, room) in targets {
            let text = frames
                .entry(room)
                .or_insert_with(|| {
                    json!({"type": "event", "room": room, "event": event, "data": data}).to_string().into()
                })
                .clone();
            if c.push(text, &self.metrics) {
                delivered += 1;
            }
        }
        self.metrics.messages_out.fetch_add(delivered as u64, Ordering::Relaxed);
        delivered
    }

    /// Calls one client (a Socket.IO socket id, a `/ws` client id, or the first client of
    /// `user:<sub>`) and waits for its ack.
    pub async fn call(
        &self,
        target: &str,
        user: bool,
        event: &str,
        data: &Value,
        timeout: Duration,
    ) -> Result<Value, String> {
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
    ) -> Result<Value, String> {
        let sio_target: Option<Socket> = if user {
            let room = format!("user:{target}");
            let sids = self.io.to(room.as_str()).sockets().await.unwrap_or_default();
            sids.first().and_then(|s| self.io.get_socket(*s))
        } else {
            Sid::parse(target).and_then(|s| self.io.get_socket(s))
        };
        if let Some(s) = sio_target {
            let wait = s.emit_with_ack(event, data).map_err(|e| e.to_string())?;
            return match wait.timeout(timeout).await {
                Ok(r) => Ok(match r.args.len() {
                    0 => Value::Null,
                    1 => r.args.into_iter().next().unwrap_or(Value::Null),
                    _ => Value::Array(r.args),
                }),
                Err(e) => Err(e.to_string()),
            };
        }
        let ws = if user {
            let room = format!("user:{target}");
            let first = self.ws_rooms.read().get(&room).and_then(|m| m.iter().next().cloned());
            first.and_then(|id| self.ws_clients.read().get(&id).cloned())
        } else {
            self.ws_clients.read().get(target).cloned()
        };
        let Some(c) = ws else { return Err("no such client".into()) };
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        c.calls.lock().insert(id, tx);
        c.push(json!({"type": "call", "id": id, "event": event, "data": data}).to_string().into(), &self.metrics);
        let r = tokio::time::timeout(timeout, rx).await;
        c.calls.lock().remove(&id);
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err("client disconnected".into()),
            Err(_) => Err("acknowledgement timed out".into()),
        }
    }

    /// Joins a client (Socket.IO sid or `/ws` id) to a room, checking the policy when
    /// `check` (a client asking) and the per-client cap.
    pub async fn join(&self, who: &str, room: &str, check: Option<&Identity>) -> Result<(), String> {
        self.policy.check_name(room)?;
        if let Some(id) = check {
            if !self.policy.allows(id, room, RoomAction::Join) {
                return Err(format!("permission denied: the room rules do not let you join {room:?}"));
            }
        }
        let _g = self.room_lock.write().await;
        if let Some(sid) = Sid::parse(who) {
            let ns = self.io.of("/").ok_or("no namespace")?;
            if ns.get_socket(sid).is_some() {
                let rooms = self.io.rooms(sid, "/").await.map_err(|_| "adapter error")?;
                if rooms.len() > self.policy.max_rooms && !rooms.iter().any(|r| &**r == room) {
                    return Err(self.room_limit());
                }
                return self.io.enter_room(sid, room, "/").await.map_err(|_| "adapter error".to_owned());
            }
        }
        let c = self.ws_clients.read().get(who).cloned().ok_or("no such client")?;
        {
            let mut rooms = c.rooms.lock();
            if rooms.len() >= self.policy.max_rooms && !rooms.contains(room) {
                return Err(self.room_limit());
            }
            rooms.insert(room.to_owned());
        }
        self.ws_rooms.write().entry(room.to_owned()).or_default().insert(who.to_owned());
        Ok(())
    }

    fn room_limit(&self) -> String {
        format!("room limit exceeded: at most {} rooms per client (rooms.max_rooms_per_client)", self.policy.max_rooms)
    }

    /// Takes a client out of a room.
    pub async fn leave(&self, who: &str, room: &str) {
        if let Some(sid) = Sid::parse(who) {
            let _ = self.io.leave_room(sid, room, "/").await;
            return;
        }
        if let Some(c) = self.ws_clients.read().get(who).cloned() {
            c.rooms.lock().remove(room);
        }
        let mut wr = self.ws_rooms.write();
        if let Some(m) = wr.get_mut(room) {
            m.remove(who);
            if m.is_empty() {
                wr.remove(room);
            }
        }
    }

    /// Registers a `/ws` client.
    pub fn add_ws(&self, ident: Identity, tx: mpsc::Sender<WsOut>) -> Arc<WsClient> {
        let id = format!("ws-{}", self.next_ws.fetch_add(1, Ordering::Relaxed));
        let c = Arc::new(WsClient {
            id: id.clone(),
            ident: parking_lot::RwLock::new(ident),
            tx,
            rooms: parking_lot::Mutex::new(HashSet::new()),
            calls: parking_lot::Mutex::new(HashMap::new()),
            closing: parking_lot::Mutex::new(None),
            kill: tokio::sync::Notify::new(),
        });
        self.ws_clients.write().insert(id, c.clone());
        self.metrics.ws_connections.fetch_add(1, Ordering::Relaxed);
        c
    }

    /// Removes a `/ws` client and its rooms.
    pub fn remove_ws(&self, c: &WsClient) {
        self.ws_clients.write().remove(&c.id);
        let rooms: Vec<String> = c.rooms.lock().drain().collect();
        let mut wr = self.ws_rooms.write();
        for r in rooms {
            if let Some(m) = wr.get_mut(&r) {
                m.remove(&c.id);
                if m.is_empty() {
                    wr.remove(&r);
                }
            }
        }
        self.metrics.ws_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Every client, optionally only those in `room`: (id, user, transport, rooms).
    pub async fn list(&self, room: Option<&str>) -> Vec<Value> {
        let mut out = Vec::new();
        let op = match room {
            Some(r) => self.io.to(r),
            None => self.io.broadcast(),
        };
        for sid in op.sockets().await.unwrap_or_default() {
            let rooms: Vec<String> =
                self.io.rooms(sid, "/").await.unwrap_or_default().iter().map(|r| r.to_string()).collect();
            let sub = self.ident(sid).map(|i| i.sub).unwrap_or_default();
            out.push(json!({"id": sid.to_string(), "user": sub, "transport": "socket.io", "rooms": rooms}));
        }
        let clients: Vec<Arc<WsClient>> = self.ws_clients.read().values().cloned().collect();
        for c in clients {
            let rooms: Vec<String> = c.rooms.lock().iter().cloned().collect();
            if room.is_some_and(|r| !rooms.iter().any(|x| x == r)) {
                continue;
            }
            out.push(json!({"id": c.id, "user": c.ident.read().sub, "transport": "ws", "rooms": rooms}));
        }
        out
    }

    /// A client as hooks see it: id, user, transport and rooms.
    pub async fn client_json(&self, who: &str, ident: &Identity) -> Value {
        let (transport, rooms): (&str, Vec<String>) = match Sid::parse(who) {
            Some(sid) => {
                ("socket.io", self.io.rooms(sid, "/").await.unwrap_or_default().iter().map(|r| r.to_string()).collect())
            }
            None => {
                let rooms = self.ws_clients.read().get(who).map(|c| c.rooms.lock().iter().cloned().collect());
                ("ws", rooms.unwrap_or_default())
            }
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
                    h.disconnect(&who);
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
            self.publish(&rooms, event, &data, &bins, &except).await;
            return Ok(());
        }
        if let Some(room) = action.get("join").and_then(Value::as_str) {
            return self.join(who, room, None).await;
        }
        if let Some(room) = action.get("leave").and_then(Value::as_str) {
            self.leave(who, room).await;
            return Ok(());
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

    /// Disconnects one client.
    pub fn disconnect(&self, who: &str) -> bool {
        if let Some(s) = Sid::parse(who).and_then(|sid| self.io.get_socket(sid)) {
            s.disconnect();
            return true;
        }
        if let Some(c) = self.ws_clients.read().get(who).cloned() {
            c.close(1000, "disconnected by the server");
            return true;
        }
        false
    }

    /// Starts draining: new handshakes get 503; every client is closed with 1001 / "server
    /// shutting down".
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.io.close();
        let clients: Vec<Arc<WsClient>> = self.ws_clients.read().values().cloned().collect();
        for c in clients {
            c.close(1001, "server shutting down");
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
                    Ok(Some(a)) if a.get("allow").and_then(Value::as_bool).unwrap_or(false) => {
                        match self.join(who, &room, None).await {
                            Ok(()) => json!({"ok": true, "room": room}),
                            Err(e) => refusal(&e),
                        }
                    }
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
                match self.join(who, &room, Some(ident)).await {
                    Ok(()) => json!({"ok": true, "room": room}),
                    Err(e) => refusal(&e),
                }
            }
            "unsubscribe" => {
                let room = room_of(v);
                self.leave(who, &room).await;
                json!({"ok": true, "room": room})
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
                let n = self.publish(&[room], event, &payload, &bins, &[who.to_owned()]).await;
                json!({"ok": true, "delivered": n})
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

fn build_io(config: &Config, hub: Weak<Hub>) -> SocketIo {
    let s = &config.server;
    let origins = if s.origins.is_empty() { OriginPolicy::Any } else { OriginPolicy::allow_list(&s.origins) };
    let engine = EngineConfig::default()
        .with_ping_interval(Duration::from_millis(s.ping_interval_ms))
        .with_ping_timeout(Duration::from_millis(s.ping_timeout_ms))
        .with_max_payload(s.max_message_bytes)
        .with_origins(origins)
        .with_max_sessions(s.max_connections)
        .with_queue_limits(s.max_queued_messages, s.max_queued_messages.saturating_mul(64 << 10));
    let sio = SocketIoConfig::default()
        .with_engine(engine.with_path("/socket.io/"))
        .with_connect_timeout(Duration::from_millis(s.connect_timeout_ms));
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
    SocketIo::builder()
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
