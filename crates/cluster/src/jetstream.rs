//! Connection state recovery across nodes on NATS: the event log and the sessions in
//! JetStream, spoken through its JSON API over core NATS (`$JS.API.*`).
//!
//! | item | stream | subjects | contents |
//! |---|---|---|---|
//! | log | `{stream}` (default `SWITCHBOARD_LOG`) | `{p}.log.{N}` | one message per event: headers `Sb-Uid`, `Sb-Type`, `Sb-Seq`, payload the message's `data` (as in the Redis stream); at most `max_len` messages (oldest dropped) |
//! | sessions | `{stream}_SESSIONS` | `{p}.session.{pid}` | the last record per pid (`max_msgs_per_subject` 1): JSON `{sid, rooms, data, owner, lost_at_ms, taken}`; records older than the session time to live plus a quarter are dropped |
//!
//! `{p}` is the cluster's subject prefix and `{N}` the namespace as one escaped token. An
//! offset is `{epoch}-{seq}`: the stream sequence (contiguous, so the size of a trimmed gap is
//! known) and the stream's generation (a hash of its creation time: a stream that NATS lost and
//! made anew has another epoch, and old offsets fail with [`GapReason::EpochChanged`]).
//!
//! As on Redis: every node delivers what it reads from the log (its own events too), in the
//! log's order, through one push consumer; sessions are kept as they change, owned by the node
//! that serves them (compare-and-set on the subject's last sequence), taken once; an event the
//! log could not keep is delivered here only, and a gap marker (`Sb-Type: sb-gap`) follows it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::{HeaderMap, Subject};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use serde_json::{json, Value};
use switchboard_socketio::engineio::Sid;
use switchboard_socketio::{
    AdapterError, BroadcastOptions, BroadcastPacket, Gap, GapReason, LoggedEvent, Position, RecoveryBackend,
    RecoveryFuture, Room, SessionState,
};
use tokio::sync::mpsc;

use crate::nats::escape_token;
use crate::protocol::{decode_stream_entry, encode_stream_data, Message};
use crate::transport::{BusError, Incoming, SharedLog};

const GAP_TYPE: &str = "sb-gap";
const H_UID: &str = "Sb-Uid";
const H_TYPE: &str = "Sb-Type";
const H_SEQ: &str = "Sb-Seq";
const H_NSP: &str = "Sb-Nsp";
const EXPECT_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";

/// Settings of the shared log on JetStream.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JetStreamConfig {
    /// The log stream's name; the sessions' stream is this plus `_SESSIONS`. Default
    /// `SWITCHBOARD_LOG`.
    pub stream: String,
    /// The subjects' prefix (the cluster's). Default `switchboard`.
    pub subject_prefix: String,
    /// Most messages the log keeps (oldest dropped). Default 10,000.
    pub max_len: usize,
    /// How long a lost connection's session is kept. Default 2 minutes.
    pub session_ttl: Duration,
    /// Most events one replay may hold. Default 10,000.
    pub max_replay: usize,
    /// Events that may wait for their acknowledgement; past it an append fails. Default 16,384.
    pub append_queue: usize,
    /// How long a JetStream API call or acknowledgement may take. Default 2 s.
    pub timeout: Duration,
    /// Largest message accepted from the log. Default 1 MiB.
    pub max_entry_bytes: usize,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            stream: "SWITCHBOARD_LOG".into(),
            subject_prefix: "switchboard".into(),
            max_len: 10_000,
            session_ttl: Duration::from_secs(120),
            max_replay: 10_000,
            append_queue: 16_384,
            timeout: Duration::from_secs(2),
            max_entry_bytes: 1 << 20,
        }
    }
}

impl JetStreamConfig {
    /// Sets [`stream`](Self::stream) and [`max_len`](Self::max_len).
    pub fn with_stream(mut self, stream: impl Into<String>, max_len: usize) -> Self {
        self.stream = stream.into();
        self.max_len = max_len;
        self
    }

    /// Sets [`subject_prefix`](Self::subject_prefix).
    pub fn with_subject_prefix(mut self, p: impl Into<String>) -> Self {
        self.subject_prefix = p.into();
        self
    }

    /// Sets [`session_ttl`](Self::session_ttl) and [`max_replay`](Self::max_replay).
    pub fn with_recovery(mut self, max_disconnection: Duration, max_replay: usize) -> Self {
        self.session_ttl = max_disconnection;
        self.max_replay = max_replay;
        self
    }
}

/// Whether a JetStream stream name is usable (letters, digits, `-`, `_`).
fn valid_stream_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a pid can name a subject token (what this server hands out, and no more).
fn valid_pid(p: &str) -> bool {
    !p.is_empty() && p.len() <= 64 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// FNV-1a, for a short epoch from the stream's creation time.
fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h >> 32)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// An event waiting for its acknowledgement.
struct Pending {
    nsp: String,
    kind: String,
    data: String,
    uid: String,
}

/// A session operation, run in order.
enum SessionOp {
    Write {
        pid: String,
        record: Value,
        owned: bool,
    },
    Forget {
        pid: String,
    },
    /// Rewrites a connected session's last record as it is (its age starts again).
    Refresh {
        pid: String,
    },
}

/// The shared log and session store on JetStream (see the module docs).
pub struct NatsLog {
    config: JetStreamConfig,
    client: async_nats::Client,
    uid: OnceLock<String>,
    /// The log stream's generation.
    epoch: Mutex<String>,
    seq: Mutex<u64>,
    /// Acknowledgement subjects → what they acknowledge.
    pending: Arc<Mutex<HashMap<u64, (Pending, tokio::time::Instant)>>>,
    ack_inbox: String,
    owed: Mutex<HashMap<String, u64>>,
    sessions: mpsc::Sender<SessionOp>,
    /// Connected sessions' pids (refreshed while connected).
    live: Mutex<std::collections::HashSet<String>>,
    incoming: mpsc::Sender<Incoming>,
}

impl std::fmt::Debug for NatsLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLog").field("config", &self.config).finish_non_exhaustive()
    }
}

fn broker(e: impl std::fmt::Display) -> BusError {
    BusError::Broker(e.to_string())
}

/// A JetStream API call: the JSON answer, or its error.
async fn api(client: &async_nats::Client, subject: String, body: Value, timeout: Duration) -> Result<Value, BusError> {
    let m = tokio::time::timeout(timeout, client.request(subject, Bytes::from(body.to_string())))
        .await
        .map_err(|_| BusError::Broker("JetStream API timed out".into()))?
        .map_err(broker)?;
    let v: Value = serde_json::from_slice(&m.payload).map_err(broker)?;
    if let Some(e) = v.get("error") {
        return Err(BusError::Broker(format!(
            "JetStream: {}",
            e.get("description").and_then(Value::as_str).unwrap_or("error")
        )));
    }
    Ok(v)
}

/// The time (nanoseconds since the Unix epoch) in a push-consumer message's reply subject.
fn ack_time(reply: &str) -> u64 {
    let t: Vec<&str> = reply.split('.').collect();
    let ts = match t.len() {
        9 => t[7],
        n if n >= 11 => t[9],
        _ => "0",
    };
    ts.parse().unwrap_or(0)
}

/// The stream sequence, consumer sequence and pending count of a push-consumer message, from
/// its reply subject (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, or
/// the longer form with domain and account).
fn ack_info(reply: &str) -> Option<(u64, u64, u64)> {
    let t: Vec<&str> = reply.split('.').collect();
    let (s, c, p) = match t.len() {
        9 => (t[5], t[6], t[8]),
        n if n >= 11 => (t[7], t[8], t[10]),
        _ => return None,
    };
    Some((s.parse().ok()?, c.parse().ok()?, p.parse().ok()?))
}

impl NatsLog {
    /// Starts the log on `client`'s server: creates (or finds) the streams, then a reader that
    /// hands every entry to `incoming` in order.
    pub async fn start(
        client: async_nats::Client,
        config: JetStreamConfig,
        incoming: mpsc::Sender<Incoming>,
    ) -> Result<Arc<NatsLog>, BusError> {
        if !valid_stream_name(&config.stream) {
            return Err(BusError::Connect(format!(
                "JetStream stream name {:?} is not letters, digits, '-' and '_'",
                config.stream
            )));
        }
        let (epoch, last) = ensure_streams(&client, &config).await?;
        let ack_inbox = client.new_inbox();
        let (stx, srx) = mpsc::channel(config.append_queue.max(16));
        let log = Arc::new(NatsLog {
            epoch: Mutex::new(epoch),
            seq: Mutex::new(0),
            pending: Arc::new(Mutex::new(HashMap::new())),
            ack_inbox: ack_inbox.clone(),
            owed: Mutex::new(HashMap::new()),
            sessions: stx,
            live: Mutex::new(std::collections::HashSet::new()),
            incoming: incoming.clone(),
            uid: OnceLock::new(),
            client: client.clone(),
            config,
        });
        let acks = client.subscribe(format!("{ack_inbox}.*")).await.map_err(broker)?;
        tokio::spawn(ack_loop(Arc::downgrade(&log), acks));
        tokio::spawn(read_loop(Arc::downgrade(&log), last));
        tokio::spawn(session_loop(Arc::downgrade(&log), srx));
        tokio::spawn(tick_loop(Arc::downgrade(&log)));
        Ok(log)
    }

    fn uid(&self) -> &str {
        self.uid.get().map_or("", String::as_str)
    }

    fn sessions_stream(&self) -> String {
        format!("{}_SESSIONS", self.config.stream)
    }

    fn log_subject(&self, nsp: &str) -> String {
        format!("{}.log.{}", self.config.subject_prefix, escape_token(nsp))
    }

    fn session_subject(&self, pid: &str) -> String {
        format!("{}.session.{pid}", self.config.subject_prefix)
    }

    fn connected(&self) -> bool {
        matches!(self.client.connection_state(), async_nats::connection::State::Connected)
    }

    fn owe(&self, nsp: &str) {
        *self.owed.lock().entry(nsp.to_owned()).or_default() += 1;
    }

    /// Publishes an entry to the log, its acknowledgement awaited by the ack loop.
    async fn publish_entry(
        &self,
        nsp: &str,
        kind: &str,
        data: String,
        uid: &str,
        seq: Option<u64>,
    ) -> Result<(), BusError> {
        let mut h = HeaderMap::new();
        h.insert(H_UID, uid);
        h.insert(H_TYPE, kind);
        h.insert(H_NSP, nsp);
        if let Some(n) = seq {
            h.insert(H_SEQ, n.to_string().as_str());
        }
        let id = rand::random::<u64>() >> 1;
        let reply = format!("{}.{id}", self.ack_inbox);
        self.pending.lock().insert(
            id,
            (
                Pending { nsp: nsp.to_owned(), kind: kind.to_owned(), data: data.clone(), uid: uid.to_owned() },
                tokio::time::Instant::now() + self.config.timeout,
            ),
        );
        let r = self
            .client
            .publish_with_reply_and_headers(self.log_subject(nsp), reply, h, Bytes::from(data))
            .await
            .map_err(broker);
        if r.is_err() {
            self.pending.lock().remove(&id);
        }
        r
    }

    async fn last_session(&self, pid: &str) -> Result<Option<(u64, Value)>, BusError> {
        let subject = format!("$JS.API.STREAM.MSG.GET.{}", self.sessions_stream());
        let body = json!({ "last_by_subj": self.session_subject(pid) });
        let m = tokio::time::timeout(self.config.timeout, self.client.request(subject, Bytes::from(body.to_string())))
            .await
            .map_err(|_| BusError::Broker("JetStream API timed out".into()))?
            .map_err(broker)?;
        let v: Value = serde_json::from_slice(&m.payload).map_err(broker)?;
        if v.get("error").is_some() {
            // 10037: no message for the subject.
            return if v["error"]["err_code"] == json!(10037) {
                Ok(None)
            } else {
                Err(BusError::Broker(v["error"].to_string()))
            };
        }
        let seq = v["message"]["seq"].as_u64().unwrap_or(0);
        let raw = v["message"]["data"].as_str().unwrap_or("");
        let bytes = base64::engine::general_purpose::STANDARD.decode(raw).map_err(broker)?;
        let record: Value = serde_json::from_slice(&bytes).map_err(broker)?;
        Ok(Some((seq, record)))
    }

    /// Publishes a session record if the subject's last sequence is still `last`.
    async fn put_session(&self, pid: &str, record: &Value, last: u64) -> Result<bool, BusError> {
        let mut h = HeaderMap::new();
        h.insert(EXPECT_LAST_SUBJECT_SEQ, last.to_string().as_str());
        let fut = self.client.request_with_headers(self.session_subject(pid), h, Bytes::from(record.to_string()));
        let m = tokio::time::timeout(self.config.timeout, fut)
            .await
            .map_err(|_| BusError::Broker("JetStream publish timed out".into()))?
            .map_err(broker)?;
        let v: Value = serde_json::from_slice(&m.payload).map_err(broker)?;
        Ok(v.get("error").is_none())
    }

    fn record(&self, s: &SessionState, lost: bool, owner: &str) -> Value {
        let rooms: Vec<&str> = s.rooms.iter().map(|r| &**r).collect();
        json!({
            "sid": s.sid.to_string(),
            "rooms": rooms,
            "data": s.data,
            "owner": owner,
            "lost_at_ms": if lost { Some(now_ms()) } else { None },
        })
    }

    async fn take_inner(&self, pid: &str, offset: &str) -> Result<(SessionState, Position), Gap> {
        let unknown = || Gap::new(GapReason::UnknownSession);
        if !valid_pid(pid) {
            return Err(unknown());
        }
        // A malformed offset costs the client nothing (the session is not taken).
        if offset.rsplit_once('-').is_none_or(|(_, n)| n.parse::<u64>().is_err()) {
            return Err(Gap::new(GapReason::BadOffset));
        }
        let Some((last, record)) = self.last_session(pid).await.map_err(|_| unknown())? else { return Err(unknown()) };
        if record.get("taken").is_some() {
            return Err(unknown());
        }
        let tomb = json!({ "taken": true, "owner": self.uid() });
        if !self.put_session(pid, &tomb, last).await.map_err(|_| unknown())? {
            // Someone else took it first.
            return Err(unknown());
        }
        if let Some(at) = record["lost_at_ms"].as_u64() {
            let ttl = u64::try_from(self.config.session_ttl.as_millis()).unwrap_or(u64::MAX);
            if now_ms().saturating_sub(at) > ttl {
                return Err(Gap::new(GapReason::Expired));
            }
        }
        let sid = record["sid"].as_str().and_then(Sid::parse).ok_or_else(unknown)?;
        let rooms = record["rooms"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(Room::from).collect())
            .unwrap_or_default();
        let state =
            SessionState { sid, pid: pid.to_owned(), rooms, data: record.get("data").cloned().unwrap_or(Value::Null) };
        let pos = self.locate_inner(Some(offset)).await?;
        Ok((state, pos))
    }

    async fn locate_inner(&self, offset: Option<&str>) -> Result<Position, Gap> {
        let epoch = self.epoch.lock().clone();
        let info =
            api(&self.client, format!("$JS.API.STREAM.INFO.{}", self.config.stream), json!({}), self.config.timeout)
                .await
                .map_err(|_| Gap::new(GapReason::LogFailed))?;
        let first = info["state"]["first_seq"].as_u64().unwrap_or(0);
        let top = info["state"]["last_seq"].as_u64().unwrap_or(0);
        let Some(offset) = offset else {
            let start = first.saturating_sub(1);
            return Ok(Position { offset: format!("{epoch}-{start}"), key: start });
        };
        let Some((e, seq)) = offset.rsplit_once('-') else { return Err(Gap::new(GapReason::BadOffset)) };
        let Ok(seq) = seq.parse::<u64>() else { return Err(Gap::new(GapReason::BadOffset)) };
        if e != epoch {
            return Err(Gap::new(GapReason::EpochChanged));
        }
        if seq > top {
            return Err(Gap::new(GapReason::BadOffset));
        }
        if first > seq + 1 {
            return Err(Gap { reason: GapReason::Trimmed, lost: Some(first - seq - 1) });
        }
        Ok(Position { offset: offset.to_owned(), key: seq })
    }

    async fn read_inner(&self, nsp: &str, from: &Position) -> Result<Vec<LoggedEvent>, Gap> {
        let inbox = self.client.new_inbox();
        let mut sub = self.client.subscribe(inbox.clone()).await.map_err(|_| Gap::new(GapReason::LogFailed))?;
        let cfg = json!({
            "stream_name": self.config.stream,
            "config": {
                "deliver_subject": inbox,
                "deliver_policy": "by_start_sequence",
                "opt_start_seq": from.key + 1,
                "ack_policy": "none",
                "replay_policy": "instant",
                "filter_subject": self.log_subject(nsp),
                "mem_storage": true,
                "inactive_threshold": nanos(Duration::from_secs(10)),
            }
        });
        let created =
            api(&self.client, format!("$JS.API.CONSUMER.CREATE.{}", self.config.stream), cfg, self.config.timeout)
                .await
                .map_err(|_| Gap::new(GapReason::LogFailed))?;
        let name = created["name"].as_str().unwrap_or("").to_owned();
        let mut want = created["num_pending"].as_u64().unwrap_or(0);
        let epoch = self.epoch.lock().clone();
        let mut out = Vec::new();
        let mut result = Ok(());
        while want > 0 {
            let m = match tokio::time::timeout(self.config.timeout, sub.next()).await {
                Ok(Some(m)) => m,
                _ => {
                    result = Err(Gap::new(GapReason::LogFailed));
                    break;
                }
            };
            let Some((sseq, _, pending)) = m.reply.as_deref().and_then(ack_info) else { continue };
            want = pending;
            let h = m.headers.as_ref();
            let get = |k: &str| h.and_then(|h| h.get(k)).map(|v| v.as_str().to_owned()).unwrap_or_default();
            let kind = get(H_TYPE);
            if kind == GAP_TYPE {
                let lost = std::str::from_utf8(&m.payload).ok().and_then(|s| s.parse().ok());
                result = Err(Gap { reason: GapReason::LogFailed, lost });
                break;
            }
            if kind != "3" {
                continue;
            }
            let Ok(data) = std::str::from_utf8(&m.payload) else { continue };
            let Ok(env) = decode_stream_entry(&get(H_UID), nsp, &kind, data, self.config.max_entry_bytes) else {
                continue;
            };
            if let Message::Broadcast { packet, sel, request_id: None, .. } = env.msg {
                if sel.opts.volatile {
                    continue;
                }
                let at_ms = m.reply.as_deref().map_or(0, ack_time) / 1_000_000;
                out.push(LoggedEvent { packet, opts: sel.opts, offset: format!("{epoch}-{sseq}"), key: sseq, at_ms });
                if out.len() > self.config.max_replay {
                    result = Err(Gap::new(GapReason::TooFarBehind));
                    break;
                }
            }
        }
        if !name.is_empty() {
            let del = format!("$JS.API.CONSUMER.DELETE.{}.{name}", self.config.stream);
            let _ = api(&self.client, del, json!({}), self.config.timeout).await;
        }
        result.map(|()| out)
    }
}

/// Creates the streams if needed; returns the log's epoch and last sequence.
async fn ensure_streams(client: &async_nats::Client, c: &JetStreamConfig) -> Result<(String, u64), BusError> {
    let log = json!({
        "name": c.stream,
        "subjects": [format!("{}.log.*", c.subject_prefix)],
        "retention": "limits",
        "max_msgs": i64::try_from(c.max_len).unwrap_or(i64::MAX),
        "discard": "old",
        "storage": "file",
        "num_replicas": 1,
    });
    let ttl = c.session_ttl + c.session_ttl / 4;
    let sessions = json!({
        "name": format!("{}_SESSIONS", c.stream),
        "subjects": [format!("{}.session.*", c.subject_prefix)],
        "retention": "limits",
        "max_msgs_per_subject": 1,
        "max_age": nanos(ttl),
        "discard": "old",
        "storage": "file",
        "num_replicas": 1,
    });
    let mut info = Value::Null;
    for (cfg, is_log) in [(log, true), (sessions, false)] {
        let name = cfg["name"].as_str().unwrap_or("").to_owned();
        let ours = cfg["subjects"][0].clone();
        let v = match api(client, format!("$JS.API.STREAM.INFO.{name}"), json!({}), c.timeout).await {
            Ok(v) => {
                // A stream shared by clusters with other prefixes: add this one's subjects.
                let subjects = v["config"]["subjects"].as_array().cloned().unwrap_or_default();
                if subjects.contains(&ours) {
                    v
                } else {
                    let mut conf = v["config"].clone();
                    let mut all = subjects;
                    all.push(ours);
                    conf["subjects"] = Value::Array(all);
                    api(client, format!("$JS.API.STREAM.UPDATE.{name}"), conf, c.timeout).await.map_err(|e| {
                        BusError::Connect(format!("cannot add this cluster's subjects to JetStream stream {name}: {e}"))
                    })?
                }
            }
            Err(_) => api(client, format!("$JS.API.STREAM.CREATE.{name}"), cfg, c.timeout)
                .await
                .map_err(|e| BusError::Connect(format!("cannot create JetStream stream {name}: {e}")))?,
        };
        if is_log {
            info = v;
        }
    }
    let created = info["created"].as_str().unwrap_or("");
    Ok((fnv(created), info["state"]["last_seq"].as_u64().unwrap_or(0)))
}

async fn ack_loop(log: std::sync::Weak<NatsLog>, mut acks: async_nats::Subscriber) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        let m = tokio::select! {
            m = acks.next() => match m { Some(m) => Some(m), None => return },
            _ = tick.tick() => None,
        };
        let Some(l) = log.upgrade() else { return };
        let mut failed = Vec::new();
        if let Some(m) = m {
            let id = m.subject.rsplit('.').next().and_then(|s| s.parse::<u64>().ok());
            let ok = serde_json::from_slice::<Value>(&m.payload)
                .is_ok_and(|v| v.get("error").is_none() && v.get("seq").is_some());
            if let Some((p, _)) = id.and_then(|id| l.pending.lock().remove(&id)) {
                if !ok {
                    failed.push(p);
                }
            }
        } else {
            let now = tokio::time::Instant::now();
            let mut g = l.pending.lock();
            let late: Vec<u64> = g.iter().filter(|(_, (_, at))| *at < now).map(|(k, _)| *k).collect();
            for k in late {
                if let Some((p, _)) = g.remove(&k) {
                    failed.push(p);
                }
            }
        }
        for p in failed {
            if p.kind == GAP_TYPE {
                // A marker that did not make it: still owed.
                let n: u64 = p.data.parse().unwrap_or(1);
                *l.owed.lock().entry(p.nsp.clone()).or_default() += n;
                continue;
            }
            tracing::warn!(
                nsp = p.nsp,
                "recovery log: an event was not acknowledged by JetStream (delivered here only)"
            );
            l.owe(&p.nsp);
            let _ = l
                .incoming
                .send(Incoming::Logged { nsp: p.nsp, uid: p.uid, kind: p.kind, data: p.data, position: None })
                .await;
        }
    }
}

/// Reads the whole log through one push consumer, in order, from `last + 1`; makes a new
/// consumer after a reconnection, a gap in the consumer's sequence or silence.
async fn read_loop(log: std::sync::Weak<NatsLog>, mut last: u64) {
    let mut backoff = Duration::from_millis(100);
    // The last `Sb-Seq` seen per node.
    let mut seen: HashMap<String, u64> = HashMap::new();
    loop {
        let Some(l) = log.upgrade() else { return };
        let inbox = l.client.new_inbox();
        let sub = l.client.subscribe(inbox.clone()).await;
        let cfg = json!({
            "stream_name": l.config.stream,
            "config": {
                "deliver_subject": inbox,
                "deliver_policy": "by_start_sequence",
                "opt_start_seq": last + 1,
                "ack_policy": "none",
                "replay_policy": "instant",
                "idle_heartbeat": nanos(Duration::from_secs(1)),
                "filter_subject": format!("{}.log.*", l.config.subject_prefix),
                "mem_storage": true,
                "inactive_threshold": nanos(Duration::from_secs(10)),
            }
        });
        let created = match sub {
            Ok(s) => api(&l.client, format!("$JS.API.CONSUMER.CREATE.{}", l.config.stream), cfg, l.config.timeout)
                .await
                .map(|v| (s, v)),
            Err(e) => Err(broker(e)),
        };
        let (mut sub, created) = match created {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "recovery log: cannot read JetStream; retrying");
                drop(l);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // A stream made anew (NATS lost it): another epoch, read from its start.
        if let Ok(info) =
            api(&l.client, format!("$JS.API.STREAM.INFO.{}", l.config.stream), json!({}), l.config.timeout).await
        {
            let epoch = fnv(info["created"].as_str().unwrap_or(""));
            let first = info["state"]["first_seq"].as_u64().unwrap_or(0);
            let changed = *l.epoch.lock() != epoch;
            if changed {
                *l.epoch.lock() = epoch;
                last = first.saturating_sub(1);
                continue;
            }
        }
        let name = created["name"].as_str().unwrap_or("").to_owned();
        let incoming = l.incoming.clone();
        let epoch = l.epoch.lock().clone();
        drop(l);
        let mut cseq_seen = 0u64;
        loop {
            let m = match tokio::time::timeout(Duration::from_secs(4), sub.next()).await {
                Ok(Some(m)) => m,
                // Silence (no heartbeat): the consumer or the connection is gone.
                _ => break,
            };
            let Some(reply) = m.reply.as_deref() else { continue };
            let Some((sseq, cseq, _)) = ack_info(reply) else { continue };
            if cseq != cseq_seen + 1 {
                // The client dropped some (a slow consumer): start again after the last one.
                break;
            }
            cseq_seen = cseq;
            last = sseq;
            let h = m.headers.as_ref();
            let get = |k: &str| h.and_then(|h| h.get(k)).map(|v| v.as_str().to_owned()).unwrap_or_default();
            // Another node's messages numbered past the next one were dropped from the stream
            // (its limit) before this reader got to them.
            if let Ok(n) = get(H_SEQ).parse::<u64>() {
                let uid = get(H_UID);
                if seen.len() > 4_096 && !seen.contains_key(&uid) {
                    seen.clear();
                }
                if let Some(p) = seen.insert(uid, n).filter(|p| n > p + 1) {
                    if incoming.send(Incoming::Lost(n - p - 1)).await.is_err() {
                        return;
                    }
                }
            }
            let inc = Incoming::Logged {
                nsp: get(H_NSP),
                uid: get(H_UID),
                kind: get(H_TYPE),
                data: String::from_utf8_lossy(&m.payload).into_owned(),
                position: Some((format!("{epoch}-{sseq}"), sseq)),
            };
            if incoming.send(inc).await.is_err() {
                return;
            }
        }
        if let Some(l) = log.upgrade() {
            let del = format!("$JS.API.CONSUMER.DELETE.{}.{name}", l.config.stream);
            let _ = api(&l.client, del, json!({}), l.config.timeout).await;
        }
    }
}

async fn session_loop(log: std::sync::Weak<NatsLog>, mut rx: mpsc::Receiver<SessionOp>) {
    let mut batch = Vec::new();
    // A batch at a time: each pid's operations in order, different pids at once (a burst of
    // connections does not queue up behind one round trip per session).
    while rx.recv_many(&mut batch, 256).await > 0 {
        let Some(l) = log.upgrade() else { return };
        let mut by_pid: HashMap<String, Vec<SessionOp>> = HashMap::new();
        for op in batch.drain(..) {
            let pid = match &op {
                SessionOp::Write { pid, .. } | SessionOp::Forget { pid } | SessionOp::Refresh { pid } => pid.clone(),
            };
            by_pid.entry(pid).or_default().push(op);
        }
        let runs = by_pid.into_values().map(|ops| {
            let l = l.clone();
            async move {
                for op in ops {
                    session_op(&l, op).await;
                }
            }
        });
        futures_util::future::join_all(runs).await;
    }
}

/// One session operation: compare-and-set against the subject's last record.
async fn session_op(l: &NatsLog, op: SessionOp) {
    let (pid, record, owned, refresh) = match op {
        SessionOp::Write { pid, record, owned } => (pid, Some(record), owned, false),
        SessionOp::Forget { pid } => (pid, None, true, false),
        SessionOp::Refresh { pid } => (pid, None, true, true),
    };
    // Up to two tries: the compare-and-set fails when someone wrote meanwhile.
    for _ in 0..2 {
        let current = match l.last_session(&pid).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "recovery session not kept: JetStream did not answer");
                return;
            }
        };
        let last = current.as_ref().map_or(0, |c| c.0);
        if owned {
            let owner = current.as_ref().and_then(|c| c.1["owner"].as_str()).unwrap_or("");
            if !owner.is_empty() && owner != l.uid() {
                return;
            }
        }
        let r = match &record {
            Some(r) => l.put_session(&pid, r, last).await,
            // A connected session's record, written again (not one taken or lost meanwhile).
            None if refresh => match &current {
                Some((_, rec)) if rec.get("taken").is_none() && rec["lost_at_ms"].is_null() => {
                    l.put_session(&pid, rec, last).await
                }
                _ => Ok(true),
            },
            None if current.is_some() => l.put_session(&pid, &json!({ "taken": true, "owner": "" }), last).await,
            None => Ok(true),
        };
        if matches!(r, Ok(true)) {
            return;
        }
    }
}

/// Refreshes connected sessions, and writes owed gap markers once NATS answers again.
async fn tick_loop(log: std::sync::Weak<NatsLog>) {
    let mut since_refresh = Duration::ZERO;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(l) = log.upgrade() else { return };
        since_refresh += Duration::from_millis(200);
        if since_refresh >= (l.config.session_ttl / 4).max(Duration::from_millis(250)) {
            since_refresh = Duration::ZERO;
            let live: Vec<String> = l.live.lock().iter().cloned().collect();
            for pid in live {
                if l.sessions.try_send(SessionOp::Refresh { pid }).is_err() {
                    break;
                }
            }
        }
        if l.connected() && !l.owed.lock().is_empty() {
            let owed: Vec<(String, u64)> = l.owed.lock().drain().collect();
            let uid = l.uid().to_owned();
            for (nsp, n) in owed {
                if l.publish_entry(&nsp, GAP_TYPE, n.to_string(), &uid, None).await.is_err() {
                    *l.owed.lock().entry(nsp).or_default() += n;
                }
            }
        }
    }
}

impl RecoveryBackend for NatsLog {
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
        if !valid_pid(&session.pid) {
            return;
        }
        self.live.lock().insert(session.pid.clone());
        let record = self.record(session, false, self.uid());
        if self.sessions.try_send(SessionOp::Write { pid: session.pid.clone(), record, owned: true }).is_err() {
            tracing::warn!("recovery session not kept: the session queue is full");
        }
    }

    fn persist(&self, _nsp: &str, session: SessionState) {
        if !valid_pid(&session.pid) {
            return;
        }
        self.live.lock().remove(&session.pid);
        let record = self.record(&session, true, self.uid());
        if self.sessions.try_send(SessionOp::Write { pid: session.pid, record, owned: true }).is_err() {
            tracing::warn!("recovery session not kept: the session queue is full");
        }
    }

    fn put_back(&self, _nsp: &str, session: SessionState) {
        if !valid_pid(&session.pid) {
            return;
        }
        let record = self.record(&session, false, "");
        let _ = self.sessions.try_send(SessionOp::Write { pid: session.pid, record, owned: false });
    }

    fn forget(&self, _nsp: &str, pid: &str) {
        if !valid_pid(pid) {
            return;
        }
        self.live.lock().remove(pid);
        let _ = self.sessions.try_send(SessionOp::Forget { pid: pid.to_owned() });
    }
}

impl SharedLog for NatsLog {
    fn attach(&self, uid: &str) {
        let _ = self.uid.set(uid.to_owned());
    }

    fn append_message(&self, nsp: &str, msg: &Message) -> Result<(), BusError> {
        if !self.connected() {
            self.owe(nsp);
            return Err(BusError::Broker("not connected to NATS".into()));
        }
        if self.pending.lock().len() >= self.config.append_queue {
            self.owe(nsp);
            return Err(BusError::Broker("the recovery log's acknowledgement queue is full".into()));
        }
        let data = encode_stream_data(nsp, msg);
        let mut h = HeaderMap::new();
        h.insert(H_UID, self.uid());
        h.insert(H_TYPE, msg.kind().to_string().as_str());
        h.insert(H_NSP, nsp);
        let id = rand::random::<u64>() >> 1;
        let reply = Subject::from(format!("{}.{id}", self.ack_inbox));
        // Numbered, registered and handed to the client under one lock: in order.
        let mut seq = self.seq.lock();
        *seq += 1;
        h.insert(H_SEQ, seq.to_string().as_str());
        self.pending.lock().insert(
            id,
            (
                Pending {
                    nsp: nsp.to_owned(),
                    kind: msg.kind().to_string(),
                    data: data.clone(),
                    uid: self.uid().to_owned(),
                },
                tokio::time::Instant::now() + self.config.timeout,
            ),
        );
        let client = self.client.clone();
        let subject = self.log_subject(nsp);
        // The client's publish only queues the message for its connection; `now_or_never`
        // keeps the order of the calls (it cannot wait here: the queue is bounded above).
        let fut = client.publish_with_reply_and_headers(subject, reply, h, Bytes::from(data));
        match futures_util::FutureExt::now_or_never(fut) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                self.pending.lock().remove(&id);
                self.owe(nsp);
                Err(broker(e))
            }
            None => {
                // The client's queue is full right now: the ack loop reports it as failed.
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_of_both_forms_give_the_sequences() {
        assert_eq!(ack_info("$JS.ACK.S.C.1.42.7.1700000000.3"), Some((42, 7, 3)));
        assert_eq!(ack_info("$JS.ACK.dom.acc.S.C.1.42.7.1700000000.3.tok"), Some((42, 7, 3)));
        assert_eq!(ack_info("$JS.ACK.S.C"), None);
        assert_eq!(ack_info("_INBOX.x"), None);
    }

    #[test]
    fn names_and_pids_cannot_widen_a_subject() {
        for bad in ["", "a.b", "a*", ">", "a b", &"x".repeat(65)] {
            assert!(!valid_pid(bad), "{bad}");
        }
        assert!(valid_pid("AbC-_09"));
        assert!(valid_stream_name("SWITCHBOARD_LOG") && !valid_stream_name("a.b") && !valid_stream_name(""));
        assert_eq!(fnv("x"), fnv("x"));
        assert_ne!(fnv("x"), fnv("y"));
    }
}
