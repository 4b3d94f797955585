//! Connection state recovery, as the official Socket.IO clients expect it (≥ 4.6), plus an
//! explicit gap signal when it cannot be done.
//!
//! With recovery on ([`SocketIoBuilder::connection_state_recovery`](crate::SocketIoBuilder::connection_state_recovery)):
//! - the CONNECT reply carries a `pid` (a 120-bit random session secret) beside the `sid`;
//! - every event sent to sockets without an ack request and not volatile (broadcasts and
//!   [`Socket::emit`](crate::Socket::emit)) gets an offset, `"<epoch>-<seq>"`, appended as its
//!   last argument, and is kept in the namespace's log (bounded by count, bytes and age);
//! - when a connection is lost (transport close or error, ping timeout, forced close, server
//!   shutdown; not when the client or the server leaves the namespace on purpose) the socket's
//!   session is kept: its id, rooms and data, for
//!   [`max_disconnection_duration`](RecoveryConfig::max_disconnection_duration);
//! - a client that reconnects with `{pid, offset}` in its CONNECT auth gets its session back
//!   (same id, rooms and data; middlewares skipped unless configured otherwise), every event it
//!   missed after `offset` that was meant for it, in order, once, before the CONNECT reply, and
//!   [`Socket::recovered`](crate::Socket::recovered) is true;
//! - when it cannot be done the socket is a new one, [`Socket::recovery`](crate::Socket::recovery)
//!   says why ([`Gap`]), and the client gets the event [`GAP_EVENT`] with
//!   `{"reason": …, "lost": n | null}` right after the CONNECT reply, so the application reloads
//!   its state instead of silently missing messages. A partial history is never replayed as if
//!   it were complete.
//!
//! With the in-memory adapter the log and the sessions live in memory, per namespace and per
//! process: a client recovers on the node that served it. Memory: at most
//! [`max_bytes`](RecoveryConfig::max_bytes) of encoded packets (shared with the live delivery,
//! not copied) plus [`max_sessions`](RecoveryConfig::max_sessions) sessions per namespace.
//!
//! An adapter with a shared log (a cluster adapter on Redis Streams, say) offers a
//! [`RecoveryBackend`] ([`Adapter::recovery_backend`](crate::Adapter::recovery_backend)): the
//! log's offsets are then the cluster's, events reach sockets in the log's order on every node,
//! and sessions are kept by the backend as they change, so that a client recovers on any node,
//! also after the node that served it crashed.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;
use switchboard_engineio::Sid;

use crate::adapter::{AdapterError, BroadcastOptions, BroadcastPacket, Room};
use crate::socket::Encoded;

/// A boxed future of a [`RecoveryBackend`] call.
pub type RecoveryFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What recovery needs of a socket's session: the id it had, its secret, its rooms (its own id
/// room included) and its data.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionState {
    /// The socket id, which a recovered socket keeps.
    pub sid: Sid,
    /// The session secret the client presents (`pid`).
    pub pid: String,
    /// Its rooms.
    pub rooms: Vec<Room>,
    /// Its data ([`Socket::data`](crate::Socket::data)).
    pub data: Value,
}

/// An event of a shared log, as read back for a replay.
#[derive(Clone, Debug)]
pub struct LoggedEvent {
    /// The event, without its offset.
    pub packet: BroadcastPacket,
    /// Who it was for.
    pub opts: BroadcastOptions,
    /// Its offset, as clients see it (appended as the event's last argument).
    pub offset: String,
    /// Its place in the log: later events have larger keys.
    pub key: u64,
    /// When it was logged, in milliseconds since the Unix epoch (0: unknown).
    pub at_ms: u64,
}

/// A position in a shared log that a client presented: the offset string and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The offset as the client sent it.
    pub offset: String,
    /// Its place in the log ([`LoggedEvent::key`]).
    pub key: u64,
}

/// A log and session store shared by the nodes of a cluster (see the module docs). Offsets
/// come from the log; the adapter delivers each logged event to this node's sockets with
/// [`LocalAdapter::deliver_logged`](crate::LocalAdapter::deliver_logged), in the log's order.
pub trait RecoveryBackend: Send + Sync + 'static {
    /// Appends an event for the sockets `opts` selects (on every node) to namespace `nsp`'s
    /// log. Events appended by one caller are logged, and delivered, in the order of the calls.
    /// Fails at once when the backend cannot take it (its queue is full, the broker is down).
    fn append(&self, nsp: &str, packet: BroadcastPacket, opts: &BroadcastOptions) -> Result<(), AdapterError>;
    /// Takes session `pid` (once) if it exists, has not expired and the log still holds the
    /// event at `offset`; returns it with the offset's position.
    fn take<'a>(
        &'a self,
        nsp: &'a str,
        pid: &'a str,
        offset: &'a str,
    ) -> RecoveryFuture<'a, Result<(SessionState, Position), Gap>>;
    /// Where `offset` stands in namespace `nsp`'s log (`None`: before its first event), if
    /// the log still holds every event after it: a gap otherwise (trimmed, another epoch,
    /// malformed or ahead of the log).
    fn locate<'a>(&'a self, nsp: &'a str, offset: Option<&'a str>) -> RecoveryFuture<'a, Result<Position, Gap>>;
    /// Every event of namespace `nsp`'s log after `from`, in order (at most
    /// [`max_packets`](RecoveryConfig::max_packets) of them; more is a gap).
    fn read_after<'a>(&'a self, nsp: &'a str, from: &'a Position) -> RecoveryFuture<'a, Result<Vec<LoggedEvent>, Gap>>;
    /// A connected socket's session changed (it connected, joined or left a room, its data
    /// changed): keep it, so that it can be recovered even if this node dies.
    fn update(&self, nsp: &str, session: &SessionState);
    /// A socket lost its connection: keep its session for
    /// [`max_disconnection_duration`](RecoveryConfig::max_disconnection_duration).
    fn persist(&self, nsp: &str, session: SessionState);
    /// A socket left on purpose: its session cannot be recovered.
    fn forget(&self, nsp: &str, pid: &str);
    /// A session [`take`](Self::take)n for a client that was then refused (another user's
    /// token, say): keep it as it was, for its owner. Default: [`persist`](Self::persist).
    fn put_back(&self, nsp: &str, session: SessionState) {
        self.persist(nsp, session);
    }
}

/// The event a client gets when the recovery it asked for could not be done:
/// `socket.on("switchboard:gap", ({reason, lost}) => reload())`.
pub const GAP_EVENT: &str = "switchboard:gap";

/// Settings of connection state recovery. Every limit is per namespace.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RecoveryConfig {
    /// How long a lost connection's session is kept, and how far back the log reaches.
    /// Default 2 minutes (Socket.IO's).
    pub max_disconnection_duration: Duration,
    /// Whether a recovered socket skips the namespace's middlewares (it passed them when it
    /// first connected). Default `true` (Socket.IO's).
    pub skip_middlewares: bool,
    /// Most events kept in the log; older ones are dropped (a client that missed one of them
    /// gets the gap signal). Default 10,000.
    pub max_packets: usize,
    /// Most bytes of encoded events kept in the log. Default 16 MiB.
    pub max_bytes: usize,
    /// Most sessions kept; past it the oldest is dropped. Default 100,000.
    pub max_sessions: usize,
    /// Leave out clients that cannot recover and would be hurt by offsets: python-socketio
    /// (5.x has no recovery and passes the offset to handlers as one more argument, so a
    /// handler `def on_x(data)` fails). They are recognised by python-engineio's handshake
    /// (its query starts `transport=`, where the JavaScript client's starts `EIO=`); such a
    /// client gets no `pid`, no session is kept for it, and logged events reach it without
    /// their offset. Any client can leave itself out with `{"recovery": false}` in its CONNECT
    /// auth. Default `false` (every client gets offsets, as with Node's server).
    pub skip_python_clients: bool,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
            max_packets: 10_000,
            max_bytes: 16 << 20,
            max_sessions: 100_000,
            skip_python_clients: false,
        }
    }
}

impl RecoveryConfig {
    /// Sets [`max_disconnection_duration`](Self::max_disconnection_duration).
    pub fn with_max_disconnection_duration(mut self, d: Duration) -> Self {
        self.max_disconnection_duration = d;
        self
    }

    /// Sets [`skip_middlewares`](Self::skip_middlewares).
    pub fn with_skip_middlewares(mut self, skip: bool) -> Self {
        self.skip_middlewares = skip;
        self
    }

    /// Sets [`skip_python_clients`](Self::skip_python_clients).
    pub fn with_skip_python_clients(mut self, skip: bool) -> Self {
        self.skip_python_clients = skip;
        self
    }

    /// Sets [`max_sessions`](Self::max_sessions).
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }

    /// Sets [`max_packets`](Self::max_packets) and [`max_bytes`](Self::max_bytes).
    pub fn with_log_limits(mut self, max_packets: usize, max_bytes: usize) -> Self {
        self.max_packets = max_packets;
        self.max_bytes = max_bytes;
        self
    }
}

/// What became of a socket's connection state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// The client did not ask to recover (a first connection, or recovery is off).
    Fresh,
    /// The session was restored: the same id, rooms and data; `replayed` missed events were
    /// sent before the CONNECT reply.
    Recovered {
        /// How many missed events were sent.
        replayed: usize,
    },
    /// The client asked to recover and could not: this is a new session, and what it missed
    /// is gone.
    Failed(Gap),
}

/// Why a recovery failed, and what is known of the loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Why.
    pub reason: GapReason,
    /// How many events of the namespace were lost, when known (at most that many were meant
    /// for the client).
    pub lost: Option<u64>,
}

/// Why a recovery failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GapReason {
    /// No such session: never stored, already recovered once, or evicted.
    UnknownSession,
    /// The session was kept, but the client came back after
    /// [`max_disconnection_duration`](RecoveryConfig::max_disconnection_duration).
    Expired,
    /// The log no longer reaches back to the client's offset (trimmed by its limits).
    Trimmed,
    /// The offset belongs to another generation of the log (the server restarted).
    EpochChanged,
    /// The offset is malformed, or ahead of the log.
    BadOffset,
    /// More events were missed than a replay may hold
    /// ([`max_packets`](RecoveryConfig::max_packets)).
    TooFarBehind,
    /// The log could not keep some events (the broker was unreachable when they were sent).
    LogFailed,
    /// There is no history to recover from (recovery is off, or the room keeps none).
    NoHistory,
}

impl GapReason {
    /// The reason as the gap event names it.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::UnknownSession => "unknown_session",
            GapReason::Expired => "expired",
            GapReason::Trimmed => "trimmed",
            GapReason::EpochChanged => "epoch_changed",
            GapReason::BadOffset => "bad_offset",
            GapReason::TooFarBehind => "too_far_behind",
            GapReason::LogFailed => "log_failed",
            GapReason::NoHistory => "no_history",
        }
    }
}

impl Gap {
    /// A gap whose size is unknown.
    pub fn new(reason: GapReason) -> Gap {
        Gap { reason, lost: None }
    }

    /// The gap event's argument: `{"reason": …, "lost": n | null}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "reason": self.reason.as_str(), "lost": self.lost })
    }
}

/// A session kept after its connection was lost.
#[derive(Clone, Debug)]
pub(crate) struct Persisted {
    pub(crate) sid: Sid,
    pub(crate) rooms: Vec<Room>,
    pub(crate) data: Value,
    at: Instant,
}

struct Entry {
    seq: u64,
    at: Instant,
    at_ms: u64,
    encoded: Arc<Encoded>,
    opts: BroadcastOptions,
    bytes: usize,
}

struct Inner {
    /// The last sequence number given out.
    seq: u64,
    log: VecDeque<Entry>,
    bytes: usize,
    sessions: HashMap<String, Persisted>,
    /// Sessions in the order they were kept (for eviction; entries of restored sessions are
    /// skipped when met).
    order: VecDeque<(String, Instant)>,
    /// The connected sockets' secrets (one entry per connected socket), for a client that comes
    /// back while its old connection still looks alive.
    live: HashMap<String, Sid>,
}

/// A namespace's log of events and its kept sessions.
pub(crate) struct SessionStore {
    pub(crate) config: RecoveryConfig,
    epoch: String,
    inner: Mutex<Inner>,
    /// The adapter's shared log and sessions, when it has them (then the local log is unused).
    pub(crate) backend: Option<Arc<dyn RecoveryBackend>>,
}

/// The events a restored session missed.
pub(crate) struct Missed {
    pub(crate) events: Vec<Arc<Encoded>>,
    /// The last sequence number given out when they were collected: events up to it that
    /// arrive live are duplicates of the replay.
    pub(crate) seen: u64,
}

fn random_token(bytes: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes * 4 / 3 + 1);
    for _ in 0..bytes * 4 / 3 {
        let i = usize::from(rand::random::<u8>() & 63);
        out.push(char::from(ALPHABET[i]));
    }
    out
}

/// A fresh session secret: 20 characters of a 64-letter alphabet (120 bits).
pub(crate) fn new_pid() -> String {
    random_token(15)
}

impl SessionStore {
    pub(crate) fn new(config: RecoveryConfig, backend: Option<Arc<dyn RecoveryBackend>>) -> SessionStore {
        SessionStore {
            backend,
            config,
            epoch: random_token(6),
            inner: Mutex::new(Inner {
                seq: 0,
                log: VecDeque::new(),
                bytes: 0,
                sessions: HashMap::new(),
                order: VecDeque::new(),
                live: HashMap::new(),
            }),
        }
    }

    /// Gives `packet` the next offset (appended as its last argument), encodes it, and keeps
    /// it in the log for the sockets `opts` selects. The caller delivers the returned frames
    /// (whose [`Encoded::seq`] says where they stand).
    pub(crate) fn stamp(&self, nsp: &str, mut packet: BroadcastPacket, opts: &BroadcastOptions) -> Arc<Encoded> {
        let mut g = self.inner.lock();
        g.seq += 1;
        let seq = g.seq;
        if let Value::Array(a) = &mut packet.data {
            a.push(Value::String(format!("{}-{seq}", self.epoch)));
        }
        let mut e = packet.into_encoded(nsp, None);
        e.seq = Some(seq);
        let encoded = Arc::new(e);
        let bytes = encoded.byte_len();
        let now = Instant::now();
        g.log.push_back(Entry {
            seq,
            at: now,
            at_ms: unix_ms(),
            encoded: encoded.clone(),
            opts: logged_opts(opts),
            bytes,
        });
        g.bytes += bytes;
        let max_age = self.config.max_disconnection_duration;
        while let Some(front) = g.log.front() {
            let over = g.log.len() > self.config.max_packets
                || g.bytes > self.config.max_bytes
                || now.duration_since(front.at) > max_age;
            if !over {
                break;
            }
            let b = front.bytes;
            g.log.pop_front();
            g.bytes -= b;
        }
        encoded
    }

    /// Takes session `pid` back (once) from the shared backend, or from this store.
    pub(crate) async fn take_session(&self, nsp: &str, pid: &str, offset: &str) -> Result<(Persisted, Position), Gap> {
        match &self.backend {
            Some(b) => {
                let (s, pos) = b.take(nsp, pid, offset).await?;
                Ok((Persisted { sid: s.sid, rooms: s.rooms, data: s.data, at: Instant::now() }, pos))
            }
            None => self.take(pid, offset).map(|(p, seq)| (p, Position { offset: offset.to_owned(), key: seq })),
        }
    }

    /// The logged events after `since` (`None`: all the log holds), from the shared backend
    /// or from this store, each with its offset and selectors.
    pub(crate) async fn read_log(&self, nsp: &str, since: Option<&str>) -> Result<Vec<LoggedEvent>, Gap> {
        if let Some(b) = &self.backend {
            let pos = b.locate(nsp, since).await?;
            return b.read_after(nsp, &pos).await;
        }
        let g = self.inner.lock();
        let seq = match since {
            None => 0,
            Some(o) => {
                let (epoch, seq) = o.rsplit_once('-').ok_or(Gap::new(GapReason::BadOffset))?;
                let seq: u64 = seq.parse().map_err(|_| Gap::new(GapReason::BadOffset))?;
                if epoch != self.epoch {
                    return Err(Gap::new(GapReason::EpochChanged));
                }
                if seq > g.seq {
                    return Err(Gap::new(GapReason::BadOffset));
                }
                reaches(&g, seq)?;
                seq
            }
        };
        let events = g
            .log
            .iter()
            .filter(|e| e.seq > seq)
            .filter_map(|e| {
                let src = e.encoded.source.as_ref()?;
                let mut packet = (**src).clone();
                let offset = match &mut packet.data {
                    Value::Array(a) => match a.pop() {
                        Some(Value::String(o)) => o,
                        _ => return None,
                    },
                    _ => return None,
                };
                Some(LoggedEvent { packet, opts: e.opts.clone(), offset, key: e.seq, at_ms: e.at_ms })
            })
            .collect();
        Ok(events)
    }

    /// The events after `pos` meant for socket `sid` in `rooms`, from the shared backend or
    /// from this store.
    pub(crate) async fn collect_missed(
        &self,
        nsp: &str,
        pos: &Position,
        sid: Sid,
        rooms: &[Room],
    ) -> Result<Missed, Gap> {
        let Some(b) = &self.backend else { return self.collect(pos.key, sid, rooms) };
        let events = b.read_after(nsp, pos).await?;
        let seen = events.last().map_or(pos.key, |e| e.key);
        let events = events
            .into_iter()
            .filter(|e| selects(&e.opts, sid, rooms))
            .map(|e| Arc::new(encode_logged(nsp, e.packet, &e.offset, e.key)))
            .collect();
        Ok(Missed { events, seen })
    }

    /// Puts a taken session back (its recovery was refused).
    pub(crate) fn put_back(&self, nsp: &str, pid: String, kept: Persisted) {
        match &self.backend {
            Some(b) => b.put_back(nsp, SessionState { sid: kept.sid, pid, rooms: kept.rooms, data: kept.data }),
            None => {
                let mut g = self.inner.lock();
                g.order.push_back((pid.clone(), kept.at));
                g.sessions.insert(pid, kept);
            }
        }
    }

    /// Socket `sid`, connected, holds secret `pid`.
    pub(crate) fn set_live(&self, pid: &str, sid: Sid) {
        self.inner.lock().live.insert(pid.to_owned(), sid);
    }

    /// Socket `sid` (holding `pid`) is no longer connected.
    pub(crate) fn clear_live(&self, pid: &str, sid: Sid) {
        let mut g = self.inner.lock();
        if g.live.get(pid) == Some(&sid) {
            g.live.remove(pid);
        }
    }

    /// The connected socket holding `pid`, if any.
    pub(crate) fn live_sid(&self, pid: &str) -> Option<Sid> {
        self.inner.lock().live.get(pid).copied()
    }

    /// Keeps a session whose connection was lost.
    pub(crate) fn persist(&self, pid: String, sid: Sid, rooms: Vec<Room>, data: Value) {
        let now = Instant::now();
        let mut g = self.inner.lock();
        let max_age = self.config.max_disconnection_duration;
        // Forget expired and evicted sessions, oldest first.
        while let Some((p, at)) = g.order.front().cloned() {
            let expired = now.duration_since(at) > max_age;
            if !expired && g.sessions.len() < self.config.max_sessions {
                break;
            }
            g.order.pop_front();
            if g.sessions.get(&p).is_some_and(|s| s.at == at) {
                g.sessions.remove(&p);
            }
        }
        g.order.push_back((pid.clone(), now));
        g.sessions.insert(pid, Persisted { sid, rooms, data, at: now });
    }

    /// Takes session `pid` back (once), if the log still reaches back to `offset`; returns it
    /// with the offset's sequence number, for [`collect`](Self::collect).
    pub(crate) fn take(&self, pid: &str, offset: &str) -> Result<(Persisted, u64), Gap> {
        let now = Instant::now();
        let mut g = self.inner.lock();
        let Some(session) = g.sessions.remove(pid) else { return Err(Gap::new(GapReason::UnknownSession)) };
        if now.duration_since(session.at) > self.config.max_disconnection_duration {
            return Err(Gap::new(GapReason::Expired));
        }
        let Some((epoch, seq)) = offset.rsplit_once('-') else { return Err(Gap::new(GapReason::BadOffset)) };
        let Ok(seq) = seq.parse::<u64>() else { return Err(Gap::new(GapReason::BadOffset)) };
        if epoch != self.epoch {
            return Err(Gap::new(GapReason::EpochChanged));
        }
        if seq > g.seq {
            return Err(Gap::new(GapReason::BadOffset));
        }
        reaches(&g, seq)?;
        Ok((session, seq))
    }

    /// The events after sequence number `seq` meant for socket `sid` in `rooms`. The caller
    /// has already put the socket into its rooms, so every event numbered after this call
    /// reaches it live; the ones numbered before it are here.
    pub(crate) fn collect(&self, seq: u64, sid: Sid, rooms: &[Room]) -> Result<Missed, Gap> {
        let g = self.inner.lock();
        reaches(&g, seq)?;
        let events =
            g.log.iter().filter(|e| e.seq > seq && selects(&e.opts, sid, rooms)).map(|e| e.encoded.clone()).collect();
        Ok(Missed { events, seen: g.seq })
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether an Engine.IO handshake query is python-engineio's (`transport=…&EIO=4…`; the
/// JavaScript client writes `EIO=4&transport=…`).
pub(crate) fn is_python_engineio(query: &str) -> bool {
    query.starts_with("transport=")
}

/// Encodes an event of a shared log: `offset` appended as its last argument, `key` its place.
pub(crate) fn encode_logged(nsp: &str, mut packet: BroadcastPacket, offset: &str, key: u64) -> Encoded {
    if let Value::Array(a) = &mut packet.data {
        a.push(Value::String(offset.to_owned()));
    }
    let mut e = packet.into_encoded(nsp, None);
    e.seq = Some(key);
    e
}

/// Whether the log holds every event after `seq` (its first entry is `seq + 1` or earlier).
fn reaches(g: &Inner, seq: u64) -> Result<(), Gap> {
    let first = g.log.front().map_or(g.seq + 1, |e| e.seq);
    if first > seq + 1 {
        return Err(Gap { reason: GapReason::Trimmed, lost: Some(first - seq - 1) });
    }
    Ok(())
}

/// What the log keeps of a broadcast's options: the selectors.
fn logged_opts(opts: &BroadcastOptions) -> BroadcastOptions {
    BroadcastOptions {
        rooms: opts.rooms.clone(),
        except_rooms: opts.except_rooms.clone(),
        except_sids: opts.except_sids.clone(),
        local: false,
        volatile: false,
    }
}

/// Whether a broadcast with `opts` was meant for socket `sid`, a member of `rooms`.
pub fn selects(opts: &BroadcastOptions, sid: Sid, rooms: &[Room]) -> bool {
    let in_room = |r: &Room| rooms.contains(r) || Sid::parse(r) == Some(sid);
    if !opts.rooms.is_empty() && !opts.rooms.iter().any(in_room) {
        return false;
    }
    !(opts.except_sids.contains(&sid) || opts.except_rooms.iter().any(in_room))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(n: i64) -> BroadcastPacket {
        BroadcastPacket { data: serde_json::json!(["ev", n]), binary: Vec::new() }
    }

    fn offset_of(e: &Encoded) -> String {
        let src = e.source.as_ref().expect("source");
        src.data.as_array().and_then(|a| a.last()).and_then(Value::as_str).expect("offset").to_owned()
    }

    fn args(e: &Arc<Encoded>) -> Value {
        e.source.as_ref().expect("source").data.clone()
    }

    #[test]
    fn missed_events_for_the_session_come_back_in_order() {
        let s = SessionStore::new(RecoveryConfig::default(), None);
        let me = Sid::generate();
        let other = Sid::generate();
        let first = s.stamp("/", packet(0), &BroadcastOptions::default());
        let offset = offset_of(&first);
        s.persist("pid".into(), me, vec![Room::from("a")], serde_json::json!({"k": 1}));
        s.stamp("/", packet(1), &BroadcastOptions::default());
        s.stamp("/", packet(2), &BroadcastOptions { rooms: vec![Room::from("b")], ..Default::default() });
        s.stamp("/", packet(3), &BroadcastOptions { rooms: vec![Room::from("a")], ..Default::default() });
        s.stamp("/", packet(4), &BroadcastOptions::socket(me));
        s.stamp("/", packet(5), &BroadcastOptions::socket(other));
        let mut ex = BroadcastOptions::default();
        ex.except_sids.push(me);
        s.stamp("/", packet(6), &ex);
        s.stamp("/", packet(7), &BroadcastOptions { except_rooms: vec![Room::from("a")], ..Default::default() });
        let (session, seq) = s.take("pid", &offset).map_err(|g| g.reason).expect("taken");
        assert_eq!(session.sid, me);
        assert_eq!(session.data, serde_json::json!({"k": 1}));
        let m = s.collect(seq, session.sid, &session.rooms).map_err(|g| g.reason).expect("collected");
        let got: Vec<i64> = m.events.iter().map(|e| args(e)[1].as_i64().unwrap_or(-1)).collect();
        assert_eq!(got, vec![1, 3, 4]);
        assert_eq!(m.seen, 8);
        // Once only.
        assert_eq!(s.take("pid", &offset).map(|_| ()), Err(Gap::new(GapReason::UnknownSession)));
    }

    #[test]
    fn every_failure_has_its_reason() {
        let s = SessionStore::new(RecoveryConfig::default().with_log_limits(3, 1 << 20), None);
        let me = Sid::generate();
        let first = offset_of(&s.stamp("/", packet(0), &BroadcastOptions::default()));
        for (pid, offset, reason) in [
            ("nope", first.clone(), GapReason::UnknownSession),
            ("p1", "garbage".to_owned(), GapReason::BadOffset),
            ("p2", "x-1".to_owned(), GapReason::EpochChanged),
            ("p3", format!("{}-999", s.epoch), GapReason::BadOffset),
            ("p4", format!("{}-1x", s.epoch), GapReason::BadOffset),
        ] {
            if pid != "nope" {
                s.persist(pid.into(), me, Vec::new(), Value::Null);
            }
            assert_eq!(s.take(pid, &offset).map(|_| ()).map_err(|g| g.reason), Err(reason), "{pid} {offset}");
        }
        // Trimmed: the log keeps 3 events; the client's offset is 5 events back.
        s.persist("p5".into(), me, Vec::new(), Value::Null);
        for i in 1..=5 {
            s.stamp("/", packet(i), &BroadcastOptions::default());
        }
        let gap = s.take("p5", &first).map(|_| ()).expect_err("trimmed");
        assert_eq!(gap, Gap { reason: GapReason::Trimmed, lost: Some(2) });
        assert_eq!(gap.to_json(), serde_json::json!({"reason": "trimmed", "lost": 2}));
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = SessionStore::new(
            RecoveryConfig { max_sessions: 2, ..Default::default() }.with_max_disconnection_duration(Duration::ZERO),
            None,
        );
        let off = offset_of(&s.stamp("/", packet(0), &BroadcastOptions::default()));
        s.persist("a".into(), Sid::generate(), Vec::new(), Value::Null);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(s.take("a", &off).map(|_| ()).map_err(|g| g.reason), Err(GapReason::Expired));
        let s = SessionStore::new(RecoveryConfig { max_sessions: 2, ..Default::default() }, None);
        for p in ["a", "b", "c", "d"] {
            s.persist(p.into(), Sid::generate(), Vec::new(), Value::Null);
        }
        assert!(s.inner.lock().sessions.len() <= 2);
    }

    #[test]
    fn live_secrets_are_forgotten_only_by_their_own_socket() {
        let s = SessionStore::new(RecoveryConfig::default(), None);
        let (old, new) = (Sid::generate(), Sid::generate());
        s.set_live("p", old);
        s.set_live("p", new);
        s.clear_live("p", old);
        assert_eq!(s.live_sid("p"), Some(new), "the old socket's disconnect does not unlist the new one");
        s.clear_live("p", new);
        assert_eq!(s.live_sid("p"), None);
    }

    #[test]
    fn the_log_is_bounded_by_count_and_bytes() {
        let s = SessionStore::new(RecoveryConfig::default().with_log_limits(100, 2_000), None);
        for i in 0..1_000 {
            s.stamp("/", packet(i), &BroadcastOptions::default());
        }
        let g = s.inner.lock();
        assert!(g.log.len() <= 100 && g.bytes <= 2_000, "{} {}", g.log.len(), g.bytes);
        assert_eq!(g.log.back().map(|e| e.seq), Some(1_000));
    }

    #[test]
    fn pids_are_twenty_url_safe_characters() {
        let p = new_pid();
        assert_eq!(p.len(), 20);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(p, new_pid());
    }
}
