//! Connection state recovery across nodes on Redis: the event log in a Redis stream and the
//! sessions in Redis keys, in the layout of Node's `@socket.io/redis-streams-adapter`, so that a
//! client can move between Node and Switchboard nodes that share them.
//!
//! | item | key | contents |
//! |---|---|---|
//! | log | `{stream}` (default `socket.io`, every namespace) | `XADD {stream} MAXLEN ~ {max_len} * uid U nsp N type T data D`: `D` is the message's `data` as JSON, or base64 of its MessagePack when it has binary; the entry ID is the offset clients see |
//! | session | `{prefix}{pid}` (default `sio:session:`) | base64 of the MessagePack of `{sid, pid, rooms, data}` |
//! | session owner | `{{prefix}{pid}}:owner` | the uid of the node that serves the session (same hash slot as the session) |
//!
//! What goes beyond Node's adapter:
//! - **Every node delivers in the log's order**, its own events too (read back from the stream,
//!   not delivered when written), so that a client's last offset means it has everything
//!   before it.
//! - **Sessions are kept as they change** (on connect, join, leave, data), with a time to live
//!   of the maximum disconnection duration plus a quarter, refreshed while the socket is
//!   connected: the clients of a node killed with `kill -9` recover on another node. A session
//!   is owned by the node serving it; a node that lost it (the client moved) cannot overwrite
//!   or delete it.
//! - **Loss is never hidden**: an event the log could not take (Redis down) is delivered to
//!   this node's sockets without an offset, counted, and a gap marker (`type` `sb-gap`, `data`
//!   the count) is logged as soon as Redis answers again, so that a replay across it fails with
//!   [`GapReason::LogFailed`] instead of silently missing it.
//!
//! Writes (log entries and session changes) go through one bounded queue, in order, pipelined;
//! a full queue fails the append at once ([`StreamsConfig::append_queue`]).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use parking_lot::Mutex;
use serde_json::{json, Value as Json};
use switchboard_socketio::engineio::Sid;
use switchboard_socketio::{
    AdapterError, BroadcastOptions, BroadcastPacket, Gap, GapReason, LoggedEvent, Position, RecoveryBackend,
    RecoveryFuture, SessionState,
};
use tokio::sync::mpsc;

use crate::protocol::{decode_stream_entry, encode_stream_data, Message};
use crate::transport::{BusError, Incoming, SharedLog};

/// The `type` of a gap marker entry.
const GAP_TYPE: &str = "sb-gap";

/// Settings of the shared log on Redis.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamsConfig {
    /// The stream's key (Node's `streamName`). Default `socket.io`.
    pub stream: String,
    /// About how many entries the stream keeps (`MAXLEN ~`, Node's `maxLen`). Default 10,000.
    pub max_len: usize,
    /// The session keys' prefix (Node's `sessionKeyPrefix`). Default `sio:session:`.
    pub session_prefix: String,
    /// How long a lost connection's session is kept (the recovery's maximum disconnection
    /// duration). Default 2 minutes.
    pub session_ttl: Duration,
    /// Most events one replay may hold; more is a gap ([`GapReason::TooFarBehind`]). Default
    /// 10,000.
    pub max_replay: usize,
    /// Entries read per `XREAD`/`XRANGE` call. Default 500.
    pub read_count: usize,
    /// Writes (entries and session changes) that may wait for Redis; past it an append fails.
    /// Default 16,384.
    pub append_queue: usize,
    /// Largest `data` field accepted from the stream. Default 1 MiB.
    pub max_entry_bytes: usize,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            stream: "socket.io".into(),
            max_len: 10_000,
            session_prefix: "sio:session:".into(),
            session_ttl: Duration::from_secs(120),
            max_replay: 10_000,
            read_count: 500,
            append_queue: 16_384,
            max_entry_bytes: 1 << 20,
        }
    }
}

impl StreamsConfig {
    /// Sets [`session_ttl`](Self::session_ttl) and [`max_replay`](Self::max_replay) from the
    /// recovery's settings.
    pub fn with_recovery(mut self, max_disconnection: Duration, max_replay: usize) -> Self {
        self.session_ttl = max_disconnection;
        self.max_replay = max_replay;
        self
    }

    /// Sets [`stream`](Self::stream) and [`max_len`](Self::max_len).
    pub fn with_stream(mut self, stream: impl Into<String>, max_len: usize) -> Self {
        self.stream = stream.into();
        self.max_len = max_len;
        self
    }

    /// Sets [`session_prefix`](Self::session_prefix).
    pub fn with_session_prefix(mut self, p: impl Into<String>) -> Self {
        self.session_prefix = p.into();
        self
    }
}

/// One ordered write.
enum Write {
    Entry {
        nsp: String,
        kind: u8,
        data: String,
        uid: String,
        seq: u64,
    },
    /// A session change: an `EVAL` of one of the scripts.
    Session {
        script: &'static str,
        key: String,
        args: Vec<String>,
    },
    /// Nothing but a wake-up: gap markers are owed.
    Nudge,
}

/// Sets the session if this node owns it (or nobody does): KEYS session, owner; ARGV value,
/// ttl in ms, uid.
const SET_OWNED: &str = "local o = redis.call('GET', KEYS[2]) \
if o and o ~= ARGV[3] then return 0 end \
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2]) return 1";

/// Deletes the session if this node owns it: KEYS session, owner; ARGV uid.
const DEL_OWNED: &str = "local o = redis.call('GET', KEYS[2]) \
if o and o ~= ARGV[1] then return 0 end \
redis.call('DEL', KEYS[1], KEYS[2]) return 1";

/// Takes the session (once) and makes this node its owner: KEYS session, owner; ARGV uid, ttl.
const TAKE: &str = "local v = redis.call('GET', KEYS[1]) \
redis.call('DEL', KEYS[1]) \
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) return v";

/// Refreshes a connected session's time to live (claiming it if nobody owns it): KEYS session,
/// owner; ARGV ttl, uid.
const REFRESH: &str = "local o = redis.call('GET', KEYS[2]) \
if o and o ~= ARGV[2] then return 0 end \
redis.call('PEXPIRE', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1]) return 1";

/// Puts a session back without an owner (the node that serves it claims it again): KEYS
/// session, owner; ARGV value, ttl.
const PUT_BACK: &str = "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) redis.call('DEL', KEYS[2]) return 1";

/// The shared log and session store on Redis (see the module docs).
pub struct RedisLog {
    config: StreamsConfig,
    client: Client,
    uid: OnceLock<String>,
    writes: mpsc::Sender<Write>,
    /// Connected sessions' keys (refreshed while connected).
    live: Mutex<HashMap<String, ()>>,
    /// Events that could not be logged, per namespace: a gap marker is owed for them.
    owed: Mutex<HashMap<String, u64>>,
    /// The last sequence number given to an entry of this node (field `sbseq`), by which
    /// readers notice entries trimmed before they read them.
    seq: Mutex<u64>,
}

impl std::fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLog").field("config", &self.config).finish_non_exhaustive()
    }
}

fn cmd(name: &'static str, hash: ClusterHash, blocking: bool) -> CustomCommand {
    CustomCommand::new(name, hash, blocking)
}

/// A stream entry ID `ms-seq` as a key that orders like it (`ms` shifted by 20 bits; a
/// sequence number past 2^20 within one millisecond is clamped, which Redis cannot reach).
pub fn entry_key(id: &str) -> Option<u64> {
    let (ms, seq) = id.split_once('-')?;
    if ms.is_empty() || seq.is_empty() || !ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: u64 = ms.parse().ok()?;
    let seq: u64 = seq.parse().ok()?;
    if ms >= 1 << 43 {
        return None;
    }
    Some(ms << 20 | seq.min((1 << 20) - 1))
}

/// A value as text (bulk strings as Redis returns them).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string()),
        Value::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// One entry: its ID and its fields.
struct Entry {
    id: String,
    fields: HashMap<String, String>,
}

/// Parses `[[id, [field, value, …]], …]` (or the map forms of RESP3).
fn entries(v: Value) -> Vec<Entry> {
    let items: Vec<(Value, Value)> = match v {
        Value::Array(a) => a
            .into_iter()
            .filter_map(|e| match e {
                Value::Array(mut pair) if pair.len() == 2 => {
                    let f = pair.pop()?;
                    let id = pair.pop()?;
                    Some((id, f))
                }
                _ => None,
            })
            .collect(),
        Value::Map(m) => m.inner().into_iter().map(|(k, v)| (Value::from(k), v)).collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|(id, f)| {
            let id = text(&id)?;
            let mut fields = HashMap::new();
            match f {
                Value::Array(kv) => {
                    for pair in kv.chunks(2) {
                        if let [k, v] = pair {
                            if let (Some(k), Some(v)) = (text(k), text(v)) {
                                fields.insert(k, v);
                            }
                        }
                    }
                }
                Value::Map(m) => {
                    for (k, v) in m.inner() {
                        if let (Some(k), Some(v)) = (k.as_str().map(|s| s.to_string()), text(&v)) {
                            fields.insert(k, v);
                        }
                    }
                }
                _ => {}
            }
            Some(Entry { id, fields })
        })
        .collect()
}

/// The entries of an `XREAD` reply for one stream.
fn xread_entries(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop().map(entries).unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(m) => m.inner().into_values().flat_map(entries).collect(),
        _ => Vec::new(),
    }
}

fn broker(e: Error) -> BusError {
    BusError::Broker(e.to_string())
}

impl RedisLog {
    /// Connects to Redis at `url` on its own and starts the log (a reader and a writer);
    /// a cluster node gets its log from [`crate::redis::RedisConfig::streams`] instead.
    pub async fn connect(
        url: &str,
        config: StreamsConfig,
        incoming: mpsc::Sender<Incoming>,
    ) -> Result<Arc<RedisLog>, BusError> {
        let cfg = Config::from_url(url).map_err(|e| BusError::Connect(e.to_string()))?;
        let mut builder = Builder::from_config(cfg);
        builder.set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
        Self::start(&builder, config, incoming).await
    }

    /// Starts the log on Redis `builder`'s server: a reader that hands every entry to
    /// `incoming` in order (waiting when the node is busy: the stream keeps them) and a writer.
    pub(crate) async fn start(
        builder: &Builder,
        config: StreamsConfig,
        incoming: mpsc::Sender<Incoming>,
    ) -> Result<Arc<RedisLog>, BusError> {
        let client = builder.build().map_err(|e| BusError::Connect(e.to_string()))?;
        client.init().await.map_err(|e| BusError::Connect(e.to_string()))?;
        let reader = builder.build().map_err(|e| BusError::Connect(e.to_string()))?;
        reader.init().await.map_err(|e| BusError::Connect(e.to_string()))?;
        // Where reading starts: after the last entry now (no replay of the past on start-up).
        let last: Value = client
            .custom(
                cmd("XREVRANGE", ClusterHash::FirstKey, false),
                vec![config.stream.clone(), "+".into(), "-".into(), "COUNT".into(), "1".into()],
            )
            .await
            .map_err(broker)?;
        let start = entries(last).into_iter().next().map_or_else(|| "0-0".to_owned(), |e| e.id);
        // This generation of the log begins now unless it began before.
        let gen_key = format!("{}:generation", config.stream);
        let now = switchboard_socketio::recovery::unix_ms().to_string();
        let _: Value = client
            .custom(cmd("SET", ClusterHash::FirstKey, false), vec![gen_key, now, "NX".into()])
            .await
            .map_err(broker)?;
        let (tx, rx) = mpsc::channel(config.append_queue.max(16));
        let log = Arc::new(RedisLog {
            config,
            client,
            uid: OnceLock::new(),
            writes: tx,
            live: Mutex::new(HashMap::new()),
            owed: Mutex::new(HashMap::new()),
            seq: Mutex::new(0),
        });
        tokio::spawn(read_loop(reader, log.config.clone(), start, incoming.clone()));
        tokio::spawn(write_loop(Arc::downgrade(&log), rx, incoming));
        tokio::spawn(refresh_loop(Arc::downgrade(&log)));
        tokio::spawn(marker_loop(Arc::downgrade(&log)));
        Ok(log)
    }

    fn uid(&self) -> &str {
        self.uid.get().map_or("", String::as_str)
    }

    fn session_key(&self, pid: &str) -> String {
        format!("{}{pid}", self.config.session_prefix)
    }

    fn queue(&self, w: Write) -> Result<(), BusError> {
        self.writes.try_send(w).map_err(|_| BusError::Broker("the recovery log's write queue is full".into()))
    }

    fn write_session(&self, s: &SessionState, ttl: Duration) {
        self.write_session_with(SET_OWNED, s, ttl);
    }

    fn write_session_with(&self, script: &'static str, s: &SessionState, ttl: Duration) {
        let rooms: Vec<&str> = s.rooms.iter().map(|r| &**r).collect();
        let v = json!({ "sid": s.sid.to_string(), "pid": s.pid, "rooms": rooms, "data": s.data });
        let mut raw = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut raw, &crate::msgpack::from_json(&v, &[]));
        let value = base64::engine::general_purpose::STANDARD.encode(raw);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut args = vec![value, ms.to_string()];
        if script == SET_OWNED {
            args.push(self.uid().to_owned());
        }
        let w = Write::Session { script, key: self.session_key(&s.pid), args };
        if self.queue(w).is_err() {
            tracing::warn!("recovery session not kept: the log's write queue is full");
        }
    }

    fn live_ttl(&self) -> Duration {
        self.config.session_ttl + self.config.session_ttl / 4
    }

    async fn range(&self, from: &str, to: &str, count: usize) -> Result<Vec<Entry>, Error> {
        let v: Value = self
            .client
            .custom(
                cmd("XRANGE", ClusterHash::FirstKey, false),
                vec![self.config.stream.clone(), from.to_owned(), to.to_owned(), "COUNT".into(), count.to_string()],
            )
            .await?;
        Ok(entries(v))
    }

    async fn take_inner(&self, pid: &str, offset: &str) -> Result<(SessionState, Position), Gap> {
        if entry_key(offset).is_none() {
            return Err(Gap::new(GapReason::BadOffset));
        }
        let skey = self.session_key(pid);
        let ms = u64::try_from(self.live_ttl().as_millis()).unwrap_or(u64::MAX);
        let raw: Option<String> = self
            .client
            .custom(
                cmd("EVAL", ClusterHash::Offset(2), false),
                vec![
                    TAKE.to_owned(),
                    "2".into(),
                    skey.clone(),
                    format!("{{{skey}}}:owner"),
                    self.uid().to_owned(),
                    ms.to_string(),
                ],
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "recovery: cannot read the session");
                Gap::new(GapReason::UnknownSession)
            })?;
        let Some(raw) = raw else { return Err(Gap::new(GapReason::UnknownSession)) };
        let state = decode_session(&raw, pid).ok_or(Gap::new(GapReason::UnknownSession))?;
        // The offset must still be in the log (it may have been trimmed).
        let pos = self.locate_inner(Some(offset)).await?;
        Ok((state, pos))
    }

    /// When this generation of the log began (ms since the Unix epoch): the key
    /// `{stream}:generation`, made when missing (a Redis that lost its data loses it too).
    async fn generation_ms(&self) -> Result<u64, Error> {
        let key = format!("{}:generation", self.config.stream);
        let now = switchboard_socketio::recovery::unix_ms();
        let _: Value = self
            .client
            .custom(cmd("SET", ClusterHash::FirstKey, false), vec![key.clone(), now.to_string(), "NX".into()])
            .await?;
        let v: Option<String> = self.client.custom(cmd("GET", ClusterHash::FirstKey, false), vec![key]).await?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(now))
    }

    /// Why `key` (not in the log) cannot be resumed from: older than this generation of the
    /// log (its epoch changed), trimmed, or not one of its offsets.
    async fn missing(&self, key: u64) -> Result<Gap, Error> {
        if self.generation_ms().await? > key >> 20 {
            return Ok(Gap::new(GapReason::EpochChanged));
        }
        let first = self.range("-", "+", 1).await?;
        Ok(match first.first().and_then(|e| entry_key(&e.id)) {
            Some(f) if f > key => Gap::new(GapReason::Trimmed),
            _ => Gap::new(GapReason::BadOffset),
        })
    }

    async fn locate_inner(&self, offset: Option<&str>) -> Result<Position, Gap> {
        let Some(offset) = offset else { return Ok(Position { offset: "0-0".into(), key: 0 }) };
        let Some(key) = entry_key(offset) else { return Err(Gap::new(GapReason::BadOffset)) };
        let failed = |_| Gap::new(GapReason::LogFailed);
        if !self.range(offset, offset, 1).await.map_err(failed)?.is_empty() {
            return Ok(Position { offset: offset.to_owned(), key });
        }
        Err(self.missing(key).await.map_err(failed)?)
    }

    async fn read_inner(&self, nsp: &str, from: &Position) -> Result<Vec<LoggedEvent>, Gap> {
        let mut out = Vec::new();
        let mut cursor = format!("({}", from.offset);
        // Bounded: the stream holds about max_len entries, plus what is added meanwhile.
        let mut scanned = 0usize;
        let bound = self.config.max_len.saturating_mul(2).max(1_000);
        loop {
            let batch = self.range(&cursor, "+", self.config.read_count.max(1)).await.map_err(|e| {
                tracing::warn!(error = %e, "recovery: cannot read the log");
                Gap::new(GapReason::LogFailed)
            })?;
            let n = batch.len();
            for e in batch {
                cursor = format!("({}", e.id);
                scanned += 1;
                if e.fields.get("nsp").map(String::as_str) != Some(nsp) {
                    continue;
                }
                let kind = e.fields.get("type").map_or("", String::as_str);
                if kind == GAP_TYPE {
                    let lost = e.fields.get("data").and_then(|d| d.parse().ok());
                    return Err(Gap { reason: GapReason::LogFailed, lost });
                }
                if kind != "3" {
                    continue;
                }
                let Some(key) = entry_key(&e.id) else { continue };
                let (uid, data) =
                    (e.fields.get("uid").map_or("", String::as_str), e.fields.get("data").map_or("", String::as_str));
                let Ok(env) = decode_stream_entry(uid, nsp, kind, data, self.config.max_entry_bytes) else { continue };
                if let Message::Broadcast { packet, sel, request_id: None, .. } = env.msg {
                    if sel.opts.volatile {
                        continue;
                    }
                    out.push(LoggedEvent { packet, opts: sel.opts, offset: e.id, key, at_ms: key >> 20 });
                    if out.len() > self.config.max_replay {
                        return Err(Gap::new(GapReason::TooFarBehind));
                    }
                }
            }
            if n < self.config.read_count.max(1) || scanned > bound {
                break;
            }
        }
        Ok(out)
    }
}

/// A session as Node's adapter and this one store it (base64 of MessagePack).
fn decode_session(raw: &str, pid: &str) -> Option<SessionState> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    let (v, _) = crate::msgpack::to_json(&bytes).ok()?;
    let sid = Sid::parse(v.get("sid")?.as_str()?)?;
    let rooms = v
        .get("rooms")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).map(switchboard_socketio::Room::from).collect())
        .unwrap_or_default();
    Some(SessionState { sid, pid: pid.to_owned(), rooms, data: v.get("data").cloned().unwrap_or(Json::Null) })
}

async fn read_loop(reader: Client, config: StreamsConfig, mut last: String, incoming: mpsc::Sender<Incoming>) {
    let mut backoff = Duration::from_millis(100);
    // The last `sbseq` seen per node.
    let mut seen: HashMap<String, u64> = HashMap::new();
    loop {
        let r: Result<Value, Error> = reader
            .custom(
                cmd("XREAD", ClusterHash::Offset(5), true),
                vec![
                    "COUNT".to_owned(),
                    config.read_count.max(1).to_string(),
                    "BLOCK".into(),
                    "2000".into(),
                    "STREAMS".into(),
                    config.stream.clone(),
                    last.clone(),
                ],
            )
            .await;
        let v = match r {
            Ok(v) => {
                backoff = Duration::from_millis(100);
                v
            }
            Err(e) => {
                if incoming.is_closed() {
                    return;
                }
                tracing::debug!(error = %e, "recovery log: read failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        for e in xread_entries(v) {
            last.clone_from(&e.id);
            let Some(key) = entry_key(&e.id) else { continue };
            let mut f = e.fields;
            // Another node's entries numbered past the next one were trimmed before this reader
            // got to them: counted as lost (live delivery; a replay sees the trim itself).
            if let (Some(uid), Some(n)) = (f.get("uid"), f.get("sbseq").and_then(|n| n.parse::<u64>().ok())) {
                if seen.len() > 4_096 && !seen.contains_key(uid) {
                    seen.clear();
                }
                let prev = seen.insert(uid.clone(), n);
                if let Some(p) = prev.filter(|p| n > p + 1) {
                    if incoming.send(Incoming::Lost(n - p - 1)).await.is_err() {
                        return;
                    }
                }
            }
            let (Some(nsp), Some(kind)) = (f.remove("nsp"), f.remove("type")) else { continue };
            let inc = Incoming::Logged {
                nsp,
                uid: f.remove("uid").unwrap_or_default(),
                kind,
                data: f.remove("data").unwrap_or_default(),
                position: Some((e.id, key)),
            };
            // Waits when the node is busy: the stream keeps the entries meanwhile.
            if incoming.send(inc).await.is_err() {
                return;
            }
        }
        if incoming.is_closed() {
            return;
        }
    }
}

async fn write_loop(log: std::sync::Weak<RedisLog>, mut rx: mpsc::Receiver<Write>, incoming: mpsc::Sender<Incoming>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let Some(log) = log.upgrade() else { return };
        let pipe = log.client.pipeline();
        let cfg = &log.config;
        let max_len = cfg.max_len.to_string();
        let xadd = |nsp: &str, uid: &str, kind: &str, data: &str, seq: Option<u64>| {
            let mut v = vec![
                cfg.stream.clone(),
                "MAXLEN".into(),
                "~".into(),
                max_len.clone(),
                "*".into(),
                "uid".into(),
                uid.to_owned(),
                "nsp".into(),
                nsp.to_owned(),
                "type".into(),
                kind.to_owned(),
                "data".into(),
                data.to_owned(),
            ];
            if let Some(n) = seq {
                v.push("sbseq".into());
                v.push(n.to_string());
            }
            v
        };
        // Gap markers first: they must come before anything logged after the failure.
        let owed: Vec<(String, u64)> = log.owed.lock().drain().collect();
        for (nsp, lost) in &owed {
            let args = xadd(nsp, log.uid(), GAP_TYPE, &lost.to_string(), None);
            let _: Result<(), Error> = pipe.custom(cmd("XADD", ClusterHash::FirstKey, false), args).await;
        }
        batch.retain(|w| !matches!(w, Write::Nudge));
        for w in &batch {
            let _: Result<(), Error> = match w {
                Write::Entry { nsp, kind, data, uid, seq } => {
                    let args = xadd(nsp, uid, &kind.to_string(), data, Some(*seq));
                    pipe.custom(cmd("XADD", ClusterHash::FirstKey, false), args).await
                }
                Write::Session { script, key, args } => {
                    let mut a = vec![(*script).to_owned(), "2".into(), key.clone(), format!("{{{key}}}:owner")];
                    a.extend(args.iter().cloned());
                    pipe.custom(cmd("EVAL", ClusterHash::Offset(2), false), a).await
                }
                Write::Nudge => Ok(()),
            };
        }
        let want = owed.len() + batch.len();
        if want == 0 {
            continue;
        }
        let mut results: Vec<Result<Value, Error>> = pipe.try_all().await;
        // A short answer: the missing ones failed.
        while results.len() < want {
            results.push(Err(Error::new(fred::error::ErrorKind::IO, "no answer")));
        }
        let (marks, rest) = results.split_at(owed.len());
        for ((nsp, lost), r) in owed.iter().zip(marks) {
            if r.is_err() {
                *log.owed.lock().entry(nsp.clone()).or_default() += lost;
            }
        }
        for (w, r) in batch.drain(..).zip(rest.iter()) {
            if let (Write::Entry { nsp, kind, data, uid, .. }, Err(e)) = (w, r) {
                tracing::warn!(error = %e, nsp, "recovery log: an event could not be logged (delivered here only)");
                *log.owed.lock().entry(nsp.clone()).or_default() += 1;
                let _ =
                    incoming.send(Incoming::Logged { nsp, uid, kind: kind.to_string(), data, position: None }).await;
            }
        }
    }
}

/// Writes owed gap markers as soon as Redis answers again, without waiting for the next event.
async fn marker_loop(log: std::sync::Weak<RedisLog>) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(l) = log.upgrade() else { return };
        if !l.owed.lock().is_empty() && l.client.is_connected() {
            let _ = l.writes.try_send(Write::Nudge);
        }
    }
}

async fn refresh_loop(log: std::sync::Weak<RedisLog>) {
    loop {
        let every = match log.upgrade() {
            Some(l) => (l.config.session_ttl / 4).max(Duration::from_millis(250)),
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(l) = log.upgrade() else { return };
        let keys: Vec<String> = l.live.lock().keys().cloned().collect();
        let ms = u64::try_from(l.live_ttl().as_millis()).unwrap_or(u64::MAX).to_string();
        for chunk in keys.chunks(512) {
            for key in chunk {
                let w =
                    Write::Session { script: REFRESH, key: key.clone(), args: vec![ms.clone(), l.uid().to_owned()] };
                if l.queue(w).is_err() {
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
    }
}

impl RecoveryBackend for RedisLog {
    fn append(&self, nsp: &str, packet: BroadcastPacket, opts: &BroadcastOptions) -> Result<(), AdapterError> {
        crate::transport::append_broadcast(self, nsp, packet, opts)
    }

    fn take<'a>(
        &'a self,
        _nsp: &'a str,
        pid: &'a str,
        offset: &'a str,
    ) -> RecoveryFuture<'a, Result<(SessionState, Position), Gap>> {
        Box::pin(self.take_inner(pid, offset))
    }

    fn locate<'a>(&'a self, _nsp: &'a str, offset: Option<&'a str>) -> RecoveryFuture<'a, Result<Position, Gap>> {
        Box::pin(self.locate_inner(offset))
    }

    fn read_after<'a>(&'a self, nsp: &'a str, from: &'a Position) -> RecoveryFuture<'a, Result<Vec<LoggedEvent>, Gap>> {
        Box::pin(self.read_inner(nsp, from))
    }

    fn update(&self, _nsp: &str, session: &SessionState) {
        self.live.lock().insert(self.session_key(&session.pid), ());
        self.write_session(session, self.live_ttl());
    }

    fn persist(&self, _nsp: &str, session: SessionState) {
        self.live.lock().remove(&self.session_key(&session.pid));
        self.write_session(&session, self.config.session_ttl);
    }

    fn put_back(&self, _nsp: &str, session: SessionState) {
        self.put_back_inner(&session);
    }

    fn forget(&self, _nsp: &str, pid: &str) {
        let key = self.session_key(pid);
        self.live.lock().remove(&key);
        let w = Write::Session { script: DEL_OWNED, key, args: vec![self.uid().to_owned()] };
        if self.queue(w).is_err() {
            tracing::warn!("recovery session not forgotten: the log's write queue is full");
        }
    }
}

impl RedisLog {
    fn put_back_inner(&self, session: &SessionState) {
        self.write_session_with(PUT_BACK, session, self.live_ttl());
    }
}

impl SharedLog for RedisLog {
    fn attach(&self, uid: &str) {
        let _ = self.uid.set(uid.to_owned());
    }

    fn append_message(&self, nsp: &str, msg: &Message) -> Result<(), BusError> {
        // Fails at once while Redis is away (the caller delivers here and reports it).
        if !self.client.is_connected() {
            *self.owed.lock().entry(nsp.to_owned()).or_default() += 1;
            return Err(BusError::Broker("Redis is not connected".into()));
        }
        let data = encode_stream_data(nsp, msg);
        // Numbered and queued under one lock, so that numbers follow the queue's order.
        let mut seq = self.seq.lock();
        let w = Write::Entry { nsp: nsp.to_owned(), kind: msg.kind(), data, uid: self.uid().to_owned(), seq: *seq + 1 };
        let r = self.queue(w);
        match r {
            Ok(()) => *seq += 1,
            Err(_) => *self.owed.lock().entry(nsp.to_owned()).or_default() += 1,
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_as_keys() {
        let a = entry_key("1718000000000-0").unwrap_or(0);
        let b = entry_key("1718000000000-1").unwrap_or(0);
        let c = entry_key("1718000000001-0").unwrap_or(0);
        assert!(a < b && b < c);
        for bad in ["", "1", "-1", "1-", "a-1", "1-1-1", "99999999999999999999-0", " 1-1"] {
            assert_eq!(entry_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn sessions_round_trip_in_nodes_layout() {
        let sid = Sid::generate();
        let v = json!({ "sid": sid.to_string(), "pid": "p", "rooms": [sid.to_string(), "a"], "data": {"user": "u"} });
        let mut raw = Vec::new();
        let _ = rmpv::encode::write_value(&mut raw, &crate::msgpack::from_json(&v, &[]));
        let s = decode_session(&base64::engine::general_purpose::STANDARD.encode(raw), "p");
        let s = s.unwrap_or_else(|| panic!("decoded"));
        assert_eq!(s.sid, sid);
        assert_eq!(s.rooms.len(), 2);
        assert_eq!(s.data, json!({"user": "u"}));
        assert!(decode_session("not base64!", "p").is_none());
        assert!(decode_session("", "p").is_none());
    }
}
