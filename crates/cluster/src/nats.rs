//! The NATS transport: the node protocol of [`crate::protocol`] over NATS core subjects.
//! Socket.IO has no NATS adapter, so no Node peer constrains the names; the message model and
//! envelope are the ones the Redis transport carries, byte for byte.
//!
//! Subjects, with `{p}` the subject prefix (default `switchboard`), `{N}` the namespace and
//! `{R}` a room, both [escaped](escape_token) into one subject token each:
//!
//! | subject | carries | subscribed by |
//! |---|---|---|
//! | `{p}.{N}.all` | every node's messages for the namespace (broadcasts, requests, heartbeats) | every node |
//! | `{p}.{N}.node.{uid}` | answers to node `uid`'s requests | that node |
//! | `{p}.{N}.room.{R}` | broadcasts to one room without acks | the nodes with members in `R` |
//!
//! NATS routes by interest, so a room broadcast travels only to the servers and nodes that
//! subscribed its subject: room subjects pay off on NATS even more than room channels on
//! Redis. Answers go to the requester's own subject rather than through NATS request/reply,
//! because one request gathers answers from every node (a reply inbox takes one).
//!
//! ## Failure semantics
//! At most once, like Redis. A publish while the client is disconnected fails at once (the
//! client would otherwise queue it and deliver it late). The client reconnects by itself,
//! re-subscribes every subject and reports it ([`Incoming::Reconnected`]), after which the node
//! proves the path with its heartbeat's echo. Losses are reported, never hidden
//! ([`Incoming::Lost`]): messages the client dropped because a subscription's buffer was full
//! (a slow consumer), messages that overflowed the node's receive queue, and messages missing
//! from another node's sequence on a namespace's `all` subject (each publish there carries the
//! headers `Sb-Origin` and `Sb-Seq`), which is how an outage or a partition between NATS
//! servers shows up once it heals.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{ConnectOptions, Event, HeaderMap, ServerAddr};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::transport::{BusError, BusFuture, Forwarder, Incoming, Target, Transport};

const ORIGIN: &str = "Sb-Origin";
const SEQ: &str = "Sb-Seq";

/// How a node proves who it is to NATS.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum NatsAuth {
    /// None, or what the server URLs carry (`nats://user:pass@host`).
    #[default]
    None,
    /// A user and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
    /// An NKey seed (`SU…`).
    Nkey(String),
    /// A credentials file (a user JWT and its NKey seed, as `nsc` writes them).
    CredsFile(PathBuf),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user}, <redacted>)"),
            NatsAuth::Token(_) => f.write_str("Token(<redacted>)"),
            NatsAuth::Nkey(_) => f.write_str("Nkey(<redacted>)"),
            NatsAuth::CredsFile(p) => write!(f, "CredsFile({})", p.display()),
        }
    }
}

/// TLS towards NATS (a `tls://` URL turns it on as well).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct NatsTls {
    /// Refuse a server that does not offer TLS.
    pub required: bool,
    /// PEM file of the CAs to trust (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Where and how to reach NATS.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URLs (`nats://host:4222`, `tls://host:4222`); the client picks one and fails over
    /// to the others (and to those the cluster advertises).
    pub servers: Vec<String>,
    /// The first tokens of every subject: dot-separated tokens of letters, digits, `-` and `_`.
    /// Default `switchboard`. Clusters that must not hear each other use different prefixes.
    pub subject_prefix: String,
    /// Credentials.
    pub auth: NatsAuth,
    /// TLS.
    pub tls: NatsTls,
    /// How long a publish, subscribe or flush may take. Default 2 s.
    pub command_timeout: Duration,
    /// How many received messages may wait for the node to take them; more are lost (and
    /// counted). Default 16,384.
    pub receive_buffer: usize,
    /// How many messages each subscription may buffer in the client before the client drops
    /// them as a slow consumer (and reports it). Default 8,192.
    pub subscription_capacity: usize,
    /// Largest reconnection delay (the backoff starts at 100 ms). Default 5 s.
    pub max_reconnect_delay: Duration,
    /// The shared event log and sessions in JetStream, for connection state recovery across
    /// nodes ([`crate::jetstream`]; its subject prefix is set to this one's). Default: none.
    pub jetstream: Option<crate::jetstream::JetStreamConfig>,
}

impl NatsConfig {
    /// The defaults, with these server URLs (comma-separated, or one).
    pub fn new(servers: impl AsRef<str>) -> Self {
        NatsConfig {
            servers: servers.as_ref().split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
            subject_prefix: "switchboard".into(),
            auth: NatsAuth::None,
            tls: NatsTls::default(),
            command_timeout: Duration::from_secs(2),
            receive_buffer: 16_384,
            subscription_capacity: 8_192,
            max_reconnect_delay: Duration::from_secs(5),
            jetstream: None,
        }
    }

    /// Sets [`jetstream`](Self::jetstream): recovery across nodes.
    pub fn with_jetstream(mut self, j: crate::jetstream::JetStreamConfig) -> Self {
        self.jetstream = Some(j);
        self
    }

    /// Sets [`subject_prefix`](Self::subject_prefix).
    pub fn with_subject_prefix(mut self, p: impl Into<String>) -> Self {
        self.subject_prefix = p.into();
        self
    }

    /// Sets [`auth`](Self::auth).
    pub fn with_auth(mut self, auth: NatsAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets [`tls`](Self::tls).
    pub fn with_tls(mut self, tls: NatsTls) -> Self {
        self.tls = tls;
        self
    }

    /// Sets [`receive_buffer`](Self::receive_buffer) and
    /// [`subscription_capacity`](Self::subscription_capacity).
    pub fn with_buffers(mut self, receive_buffer: usize, subscription_capacity: usize) -> Self {
        self.receive_buffer = receive_buffer;
        self.subscription_capacity = subscription_capacity;
        self
    }
}

/// Connects to NATS (see [`NatsConfig`]) and starts a cluster node on it.
pub async fn connect(nats: NatsConfig, config: crate::ClusterConfig) -> Result<crate::Cluster, BusError> {
    let (tx, rx) = mpsc::channel(nats.receive_buffer.max(64));
    let t = NatsTransport::connect(nats, tx).await?;
    Ok(crate::Cluster::start(Arc::new(t), rx, config))
}

/// Escapes a name into one NATS subject token: ASCII letters, digits and `-` stay; every other
/// byte becomes `_` and two hex digits; the empty name is `_`. The mapping is one-to-one, and
/// no escaped name holds `.`, `*`, `>` or whitespace, so a room named `a.>` cannot widen a
/// subscription or reach another room's subject.
pub fn escape_token(name: &str) -> String {
    if name.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// Whether `p` can be a [`NatsConfig::subject_prefix`]: dot-separated, non-empty tokens of
/// ASCII letters, digits, `-` and `_`.
pub fn valid_subject_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.split('.').all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

struct Subscription {
    task: AbortHandle,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The task owns the client's subscriber; aborting drops it, which unsubscribes.
        self.task.abort();
    }
}

/// The last sequence number seen from each other process on one `all` subject (each
/// subscription keeps its own).
#[derive(Default)]
struct Sequences {
    seen: HashMap<String, (u64, Instant)>,
}

impl Sequences {
    /// Records `seq` from `origin`; returns how many of its messages before it went unseen.
    fn record(&mut self, origin: &str, seq: u64) -> u64 {
        let now = Instant::now();
        match self.seen.get_mut(origin) {
            Some((last, t)) => {
                let gap = seq.saturating_sub(last.saturating_add(1));
                if seq > *last {
                    *last = seq;
                }
                *t = now;
                gap
            }
            None => {
                if self.seen.len() >= 1024 {
                    // Processes long gone: forget them (bounded memory).
                    self.seen.retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(600));
                }
                if self.seen.len() < 4096 {
                    self.seen.insert(origin.to_owned(), (seq, now));
                }
                0
            }
        }
    }
}

/// The NATS transport.
pub struct NatsTransport {
    config: NatsConfig,
    client: async_nats::Client,
    incoming: mpsc::Sender<Incoming>,
    /// Subject → its receiving task.
    subscriptions: Mutex<HashMap<String, Subscription>>,
    /// This process's id in `Sb-Origin` (not the node uid: the transport does not know it).
    origin: String,
    /// Last sequence number per `all` subject this process published on; the lock is held
    /// from numbering to handing the message to the client, so numbers go out in order.
    next_seq: tokio::sync::Mutex<HashMap<String, u64>>,
    log: Option<Arc<crate::jetstream::NatsLog>>,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport").field("config", &self.config).finish_non_exhaustive()
    }
}

fn broker(e: impl std::fmt::Display) -> BusError {
    BusError::Broker(e.to_string())
}

impl NatsTransport {
    /// Connects (or an error) and starts delivering what arrives to `incoming`.
    pub async fn connect(config: NatsConfig, incoming: mpsc::Sender<Incoming>) -> Result<NatsTransport, BusError> {
        if !valid_subject_prefix(&config.subject_prefix) {
            return Err(BusError::Connect(format!(
                "subject prefix {:?} is not dot-separated tokens of letters, digits, '-' and '_'",
                config.subject_prefix
            )));
        }
        let mut servers = Vec::new();
        for s in &config.servers {
            servers.push(s.parse::<ServerAddr>().map_err(|e| BusError::Connect(format!("bad NATS URL: {e}")))?);
        }
        if servers.is_empty() {
            return Err(BusError::Connect("no NATS server URL".into()));
        }
        let mut opts = match &config.auth {
            NatsAuth::None => ConnectOptions::new(),
            NatsAuth::UserPassword { user, password } => {
                ConnectOptions::new().user_and_password(user.clone(), password.clone())
            }
            NatsAuth::Token(t) => ConnectOptions::new().token(t.clone()),
            NatsAuth::Nkey(seed) => ConnectOptions::new().nkey(seed.clone()),
            NatsAuth::CredsFile(p) => ConnectOptions::with_credentials_file(p)
                .await
                .map_err(|e| BusError::Connect(format!("credentials file {}: {e}", p.display())))?,
        };
        if config.tls.required {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &config.tls.ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &config.tls.client_cert {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        let events = incoming.clone();
        let connected_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let max_delay = config.max_reconnect_delay.max(Duration::from_millis(100));
        opts = opts
            .name("switchboard")
            .connection_timeout(Duration::from_secs(5))
            .subscription_capacity(config.subscription_capacity.max(16))
            .reconnect_delay_callback(move |attempts| {
                let exp = u32::try_from(attempts.min(16)).unwrap_or(16);
                Duration::from_millis(100).saturating_mul(2u32.saturating_pow(exp)).min(max_delay)
            })
            .event_callback(move |event| {
                let events = events.clone();
                let connected_once = connected_once.clone();
                async move {
                    let inc = match event {
                        Event::Connected => {
                            if !connected_once.swap(true, Ordering::Relaxed) {
                                return;
                            }
                            Incoming::Reconnected
                        }
                        Event::Disconnected => Incoming::Disconnected("disconnected from NATS".into()),
                        // The client dropped a message for a subscription whose buffer was full.
                        Event::SlowConsumer(sid) => {
                            tracing::warn!(sid, "NATS slow consumer: the client dropped a message");
                            Incoming::Lost(1)
                        }
                        Event::ServerError(e) => Incoming::Disconnected(format!("NATS server error: {e}")),
                        Event::ClientError(e) => Incoming::Disconnected(format!("NATS client error: {e}")),
                        Event::LameDuckMode => {
                            tracing::warn!("NATS server entered lame duck mode; the client will move");
                            return;
                        }
                        Event::Draining | Event::Closed => return,
                    };
                    // Lost counts must not vanish: wait for room (bounded by the node's pace).
                    let _ = events.send(inc).await;
                }
            });
        let client = tokio::time::timeout(Duration::from_secs(10), opts.connect(servers))
            .await
            .map_err(|_| BusError::Connect("timed out connecting to NATS".into()))?
            .map_err(|e| BusError::Connect(e.to_string()))?;
        let log = match &config.jetstream {
            Some(j) => {
                let j = j.clone().with_subject_prefix(config.subject_prefix.clone());
                match crate::jetstream::NatsLog::start(client.clone(), j, incoming.clone()).await {
                    Ok(l) => Some(l),
                    Err(e) => {
                        // A NATS without JetStream: recovery stays per node (a client that comes
                        // back through another node gets the gap signal), said loudly.
                        tracing::warn!(
                            error = %e,
                            "JetStream is not available on the NATS server: connection state recovery works per node only; run nats-server with -js for recovery across nodes"
                        );
                        None
                    }
                }
            }
            None => None,
        };
        Ok(NatsTransport {
            log,
            config,
            client,
            incoming,
            subscriptions: Mutex::new(HashMap::new()),
            origin: format!("{:016x}", rand::random::<u64>()),
            next_seq: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The client (for tests and tools that want to look at the bus).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    fn ns_subject(&self, nsp: &str) -> String {
        format!("{}.{}", self.config.subject_prefix, escape_token(nsp))
    }

    fn subject(&self, nsp: &str, to: Target<'_>) -> String {
        let ns = self.ns_subject(nsp);
        match to {
            Target::Main => format!("{ns}.all"),
            Target::Node(uid) => format!("{ns}.node.{}", escape_token(uid)),
            Target::Room(room) => format!("{ns}.room.{}", escape_token(room)),
        }
    }

    async fn timed<T, E: std::fmt::Display>(
        &self,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, BusError> {
        match tokio::time::timeout(self.config.command_timeout, f).await {
            Ok(r) => r.map_err(broker),
            Err(_) => Err(BusError::Broker("timed out".into())),
        }
    }

    fn connected(&self) -> Result<(), BusError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            _ => Err(BusError::Broker("not connected to NATS".into())),
        }
    }

    /// Subscribes `subject` and forwards what arrives as `nsp`'s node messages; `sequenced`:
    /// the subject carries `Sb-Seq` headers to check for gaps.
    async fn subscribe(&self, subject: String, nsp: &str, sequenced: bool) -> Result<(), BusError> {
        let mut sub = self.timed(self.client.subscribe(subject.clone())).await?;
        let tx = self.incoming.clone();
        let nsp = nsp.to_owned();
        let own = self.origin.clone();
        let subj = subject.clone();
        let task = tokio::spawn(async move {
            let mut sequences = Sequences::default();
            let mut out = Forwarder::new(tx);
            while let Some(m) = out.wait(sub.next()).await {
                if sequenced {
                    let origin = m.headers.as_ref().and_then(|h| h.get(ORIGIN)).map(|v| v.as_str());
                    let seq = m.headers.as_ref().and_then(|h| h.get(SEQ)).and_then(|v| v.as_str().parse::<u64>().ok());
                    if let (Some(origin), Some(seq)) = (origin, seq) {
                        if origin != own {
                            let gap = sequences.record(origin, seq);
                            if gap > 0 {
                                tracing::warn!(subject = subj, gap, "messages missing from another node's sequence");
                                out.lost(gap);
                            }
                        }
                    }
                }
                out.forward(Incoming::Node { nsp: nsp.clone(), payload: m.payload });
            }
        });
        self.subscriptions.lock().insert(subject, Subscription { task: task.abort_handle() });
        // The server has the interest once it answered the flush: a publish that follows
        // reaches this subscription. (While disconnected the flush fails, and the client
        // subscribes when it reconnects.)
        self.timed(self.client.flush()).await
    }
}

impl Transport for NatsTransport {
    fn add_namespace<'a>(&'a self, nsp: &'a str, uid: &'a str) -> BusFuture<'a, ()> {
        Box::pin(async move {
            self.subscribe(self.subject(nsp, Target::Main), nsp, true).await?;
            self.subscribe(self.subject(nsp, Target::Node(uid)), nsp, false).await
        })
    }

    fn publish<'a>(&'a self, nsp: &'a str, to: Target<'a>, payload: Bytes) -> BusFuture<'a, ()> {
        Box::pin(async move {
            self.connected()?;
            let subject = self.subject(nsp, to);
            if to == Target::Main {
                let mut seqs = self.next_seq.lock().await;
                let seq = seqs.entry(subject.clone()).or_default();
                *seq += 1;
                let mut h = HeaderMap::new();
                h.insert(ORIGIN, self.origin.as_str());
                h.insert(SEQ, seq.to_string().as_str());
                self.timed(self.client.publish_with_headers(subject, h, payload)).await
            } else {
                self.timed(self.client.publish(subject, payload)).await
            }
        })
    }

    fn subscribe_room<'a>(&'a self, nsp: &'a str, room: &'a str) -> BusFuture<'a, ()> {
        Box::pin(async move { self.subscribe(self.subject(nsp, Target::Room(room)), nsp, false).await })
    }

    fn unsubscribe_room<'a>(&'a self, nsp: &'a str, room: &'a str) -> BusFuture<'a, ()> {
        Box::pin(async move {
            let subject = self.subject(nsp, Target::Room(room));
            drop(self.subscriptions.lock().remove(&subject));
            Ok(())
        })
    }

    fn server_count<'a>(&'a self, _nsp: &'a str) -> BusFuture<'a, usize> {
        Box::pin(async move { Err(BusError::Broker("NATS does not count subscribers".into())) })
    }

    fn shared_log(&self) -> Option<Arc<dyn crate::transport::SharedLog>> {
        self.log.clone().map(|l| l as Arc<dyn crate::transport::SharedLog>)
    }

    fn counts_subscribers(&self) -> bool {
        false
    }

    fn has_room_channels(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_single_literal_tokens() {
        assert_eq!(escape_token("/"), "_2F");
        assert_eq!(escape_token("/chat"), "_2Fchat");
        assert_eq!(escape_token("room-1"), "room-1");
        assert_eq!(escape_token(""), "_");
        // Wildcards, separators and whitespace never survive.
        for hostile in ["a.>", "*", ">", "a b", "a\tb", "x.*.y", "é", "_"] {
            let t = escape_token(hostile);
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{hostile} → {t}");
        }
        // One to one: an escaped name cannot equal another name's.
        assert_ne!(escape_token("_"), escape_token(""));
        assert_ne!(escape_token("_2F"), escape_token("/"));
        assert_eq!(escape_token("a.>"), "a_2E_3E");
    }

    #[test]
    fn prefixes_are_literal_tokens() {
        assert!(valid_subject_prefix("switchboard"));
        assert!(valid_subject_prefix("acme.prod-1.sb_x"));
        for bad in ["", ".", "a..b", "a.*", "a.>", "a b", "a."] {
            assert!(!valid_subject_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn sequence_gaps_are_counted_once() {
        let mut s = Sequences::default();
        assert_eq!(s.record("n1", 5), 0, "the first message is the baseline");
        assert_eq!(s.record("n1", 6), 0);
        assert_eq!(s.record("n1", 10), 3);
        assert_eq!(s.record("n1", 11), 0);
        assert_eq!(s.record("n2", 1), 0, "per origin");
        // A late (reordered) message is not a gap and does not move the mark back.
        assert_eq!(s.record("n1", 9), 0);
        assert_eq!(s.record("n1", 12), 0);
        assert_eq!(s.record("n1", u64::MAX), u64::MAX - 13);
        assert_eq!(s.record("n1", u64::MAX), 0, "no overflow");
    }

    #[test]
    fn the_origin_table_is_bounded() {
        let mut s = Sequences::default();
        for i in 0..10_000 {
            s.record(&format!("n{i}"), 1);
        }
        assert!(s.seen.len() <= 4096, "{}", s.seen.len());
    }
}
