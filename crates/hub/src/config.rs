//! The hub's configuration: an embedded default, then a TOML file, then `SWITCHBOARD_*`
//! environment variables, then flags. Every field has a safe default; `validate` names the
//! field at fault.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The embedded default configuration (also printed by `switchboard serve --print-config`).
pub const DEFAULT_TOML: &str = include_str!("../assets/default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listening, TLS, limits.
    pub server: Server,
    /// Client authentication.
    pub auth: Auth,
    /// What clients may join and publish to.
    pub rooms: Rooms,
    /// The backend HTTP API.
    pub api: Api,
    /// Data collection.
    pub collect: Collect,
    /// Backend hooks: client events, connects and subscriptions sent to your backend.
    pub hooks: Hooks,
    /// Logging.
    pub log: Log,
    /// Several hubs as one (`docs/cluster.md`).
    pub cluster: ClusterCfg,
    /// Connection state recovery for Socket.IO clients (`docs/recovery.md`).
    pub recovery: RecoveryCfg,
}

/// `[recovery]`: Socket.IO clients that lose their connection get their session and the
/// events they missed back, or are told they cannot (the `switchboard:gap` event).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryCfg {
    /// On by default.
    pub enabled: bool,
    /// python-socketio clients (no recovery support; they would pass the offset on to their
    /// handlers as one more argument) get no offsets and no session.
    pub skip_python_clients: bool,
    /// How long a lost connection's session is kept, in milliseconds.
    pub max_disconnection_ms: u64,
    /// Most events kept for replay (per namespace, per node).
    pub max_events: usize,
    /// Most bytes of events kept for replay.
    pub max_bytes: usize,
    /// Most sessions kept.
    pub max_sessions: usize,
    /// With `cluster.adapter = "redis"`: the Redis stream that logs the events for every node
    /// (Node's `@socket.io/redis-streams-adapter` `streamName`).
    pub redis_stream: String,
    /// About how many entries the stream keeps (`XADD MAXLEN ~`).
    pub redis_stream_max_len: usize,
    /// The prefix of the session keys in Redis (Node's `sessionKeyPrefix`).
    pub redis_session_prefix: String,
    /// With `cluster.adapter = "nats"`: the JetStream stream that logs the events (the
    /// sessions go to `<name>_SESSIONS`).
    pub nats_stream: String,
    /// Most events the JetStream stream keeps.
    pub nats_stream_max_len: usize,
    /// Per-room history rules for `/ws` `subscribe` with `since` and `GET /api/history`: the
    /// first rule whose pattern matches the room applies; a room no rule matches keeps what the
    /// log keeps.
    #[serde(default)]
    pub history: Vec<HistoryRule>,
}

/// `[[recovery.history]]`: how much of a room's history is served.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRule {
    /// The rooms: a name, or a prefix ending with `*`.
    pub rooms: String,
    /// Most events served (the newest); a client further behind gets `recovered: false`.
    pub max_events: usize,
    /// How old an event may be and still be served, in milliseconds (0: no limit).
    #[serde(default)]
    pub max_age_ms: u64,
}

impl HistoryRule {
    /// Whether the rule covers `room`.
    pub fn matches(&self, room: &str) -> bool {
        match self.rooms.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => room == self.rooms,
        }
    }
}

/// `[cluster]`: several hub processes, on one machine or many, as one logical hub.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterCfg {
    /// `memory` (one node, the default), `redis` or `nats`.
    pub adapter: String,
    /// The Redis URL: `redis://host:port` for one Redis (≥ 7), `redis-cluster://host:port?node=host:port`
    /// for a Redis Cluster, `rediss://` for TLS.
    pub redis_url: String,
    /// The prefix of the sharded channels (Node's `channelPrefix`; the same on every node,
    /// Node servers included).
    pub channel_prefix: String,
    /// The key `@socket.io/redis-emitter` publishers use; empty: emitters are ignored.
    pub emitter_key: String,
    /// This node's name in listings and logs; empty: `<hostname>:<port>`.
    pub node_name: String,
    /// This node's address for other nodes (`http://host:port`), which they forward
    /// long-polling requests of this node's sessions to; empty: `http://<server.listen>`.
    pub advertise: String,
    /// How long cross-node requests (listings, calls, counted publishes) wait for other
    /// nodes, in milliseconds.
    pub request_timeout_ms: u64,
    /// How often a node says it is alive, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// A node silent this long is gone, in milliseconds.
    pub heartbeat_timeout_ms: u64,
    /// Largest bus message decoded, in bytes; larger ones are dropped and counted.
    pub max_message_bytes: usize,
    /// Subscribe each client's own channel, where Node.js servers on the sharded adapter send
    /// `io.to(<socket id>)`: turn on when Node servers share the cluster (one subscription per
    /// client).
    pub socket_channels: bool,
    /// NATS server URLs, comma-separated (`nats://host:4222`, `tls://host:4222`); the client
    /// fails over between them.
    pub nats_url: String,
    /// The first tokens of every NATS subject (the same on every node).
    pub nats_subject_prefix: String,
    /// NATS user (with `nats_password`).
    pub nats_user: String,
    /// NATS password.
    pub nats_password: String,
    /// NATS token.
    pub nats_token: String,
    /// File holding an NKey seed (`SU…`).
    pub nats_nkey_file: String,
    /// NATS credentials file (user JWT and seed, as `nsc` writes them).
    pub nats_creds_file: String,
    /// Refuse a NATS server without TLS (a `tls://` URL also turns TLS on).
    pub nats_tls_required: bool,
    /// PEM file of the CAs that sign the NATS servers' certificates; empty: the system's roots.
    pub nats_tls_ca_file: String,
    /// PEM client certificate for NATS servers that verify clients (with `nats_tls_key_file`).
    pub nats_tls_cert_file: String,
    /// Its private key.
    pub nats_tls_key_file: String,
}

/// `[hooks]`: application logic in a backend, without writing Rust (see `docs/hub.md`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// `http://` URL asked whether a client may connect (and which rooms it joins). Unset:
    /// no hook, the token decides.
    pub connect_url: Option<String>,
    /// `http://` URL asked whether a client may subscribe to a room. Unset: the room rules
    /// decide; set: the backend decides.
    pub subscribe_url: Option<String>,
    /// Client events sent to the backend, by name pattern (`*` at the end matches a prefix).
    pub events: Vec<EventHook>,
    /// How long a hook call may take, in milliseconds; then the client gets
    /// `{ok:false, code:"hook_timeout"}`. Default 5,000.
    pub timeout_ms: u64,
    /// Calls in flight per hook; above it the client gets `{ok:false, code:"hook_busy"}` at
    /// once. Default 64.
    pub max_concurrency: usize,
    /// Retries after a connection error or a 5xx. Default 0 (a hook may not be idempotent).
    pub retries: u32,
    /// Largest response body read from the backend, in bytes. Default 1 MiB.
    pub max_response_bytes: usize,
}

/// `[[hooks.events]]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventHook {
    /// Event names this hook takes: exact, or a prefix ending in `*` (`"my *"`, `"*"`).
    pub pattern: String,
    /// The backend's `http://` URL.
    pub url: String,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, the hub serves HTTPS/WSS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Allowed `Origin`s (exact scheme://host:port). Empty: any origin.
    pub origins: Vec<String>,
    /// Clients (a `/ws` connection, a Socket.IO connection on any transport) open per client
    /// address, for their whole life; above it a new one is refused (`/ws`: 503, Socket.IO:
    /// 403 `{"code":4}`). The address is the peer's, or behind `trusted_proxies` the one they
    /// forward.
    pub max_connections_per_ip: usize,
    /// Clients open in all (same rule). TCP connections are capped too, at twice these
    /// numbers plus headroom (a long-polling client may hold two at once, the API and the
    /// page need some): 2 × per IP + 16 per address (none for trusted proxies), 2 × total + 64.
    pub max_connections: usize,
    /// Reverse proxies (addresses or CIDR blocks, e.g. `"127.0.0.1"`, `"10.0.0.0/8"`) whose
    /// `X-Forwarded-For` / `Forwarded` headers name the client. Those headers are ignored from
    /// anyone else. Empty (the default): the peer's address is the client's.
    pub trusted_proxies: Vec<String>,
    /// Deadline for the TLS and HTTP handshakes, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Server ping interval (Socket.IO and `/ws`), in milliseconds.
    pub ping_interval_ms: u64,
    /// How long a client may take to answer a ping, in milliseconds.
    pub ping_timeout_ms: u64,
    /// Largest message from a client, in bytes.
    pub max_message_bytes: usize,
    /// Per-connection outbound queue, in messages; a client that lets it fill is disconnected
    /// (volatile messages are dropped instead).
    pub max_queued_messages: usize,
    /// How long a graceful shutdown waits for clients to go, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// How long a client has to authenticate (join a namespace or send its first `/ws`
    /// frame), in milliseconds.
    pub connect_timeout_ms: u64,
    /// Share the listening port with other hub processes on this machine (`SO_REUSEPORT`):
    /// the kernel spreads connections over them, each a node of the cluster.
    pub reuse_port: bool,
}

/// One JWT verification key. The algorithm is pinned to the key.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// Key id: a token with a `kid` header must name one of the configured keys.
    pub kid: Option<String>,
    /// `HS256`, `RS256` or `ES256`.
    pub alg: String,
    /// The shared secret (HS256).
    pub secret: Option<String>,
    /// A PEM public key file (RS256, ES256).
    pub public_key_file: Option<PathBuf>,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Admit clients without a token (as `anonymous-<id>`). Only allowed on a loopback
    /// address.
    pub anonymous: bool,
    /// Verification keys.
    pub jwt_keys: Vec<JwtKey>,
    /// Required `aud` claim, if set.
    pub audience: Option<String>,
    /// Required `iss` claim, if set.
    pub issuer: Option<String>,
    /// Clock skew allowed on `nbf`, in seconds. A token already past its `exp` is refused at
    /// the handshake whatever the leeway (it would be disconnected at once otherwise).
    pub leeway_s: u64,
}

/// A room rule: `pattern` may contain `{sub}` (the client's user id) and end with `*`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRule {
    /// The room pattern.
    pub pattern: String,
    /// Clients may join (subscribe).
    #[serde(default)]
    pub join: bool,
    /// Clients may publish.
    #[serde(default)]
    pub publish: bool,
}

/// `[rooms]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rooms {
    /// Rules, first match wins; a room no rule matches is denied.
    pub rules: Vec<RoomRule>,
    /// Rooms one client may be in at once.
    pub max_rooms_per_client: usize,
    /// Longest room name, in bytes.
    pub max_room_name: usize,
}

/// `[api]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Bearer keys for `/api/*`. Empty: the API is open, which is only allowed on loopback.
    pub keys: Vec<String>,
    /// Longest wait `/api/call` accepts, in milliseconds.
    pub max_call_timeout_ms: u64,
}

/// `[collect]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Collect {
    /// Event names that are collected (appended to the sink) rather than broadcast.
    pub channels: Vec<String>,
    /// The JSON-lines file.
    pub file: PathBuf,
    /// Rotate when the file reaches this size, in bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept (`file.1` … `file.N`).
    pub keep_files: usize,
    /// Records waiting for the writer; when full, collection is refused with an error to the
    /// client (back-pressure, nothing buffered without bound).
    pub queue: usize,
    /// `fsync` after every batch (`true`), or leave flushing to the OS (`false`).
    pub fsync: bool,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter (`info`, `switchboard=debug`, …).
    pub level: String,
}

/// Why the configuration is unusable. The message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML does not parse or has a wrong field.
    #[error("config: {0}")]
    Parse(String),
    /// A field has a bad value.
    #[error("config field `{field}`: {why}")]
    Invalid {
        /// The field, as `section.name`.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Several fields together make an unsafe or unusable hub (the loopback rule): every one
    /// is named, so one start shows everything to fix.
    #[error("config: {}", .0.iter().map(|(f, w)| format!("\n  `{f}`: {w}")).collect::<String>())]
    Unsafe(Vec<(&'static str, String)>),
    /// A file named in the config could not be read.
    #[error("config field `{field}`: cannot read {path}: {err}")]
    File {
        /// The field.
        field: &'static str,
        /// The path.
        path: String,
        /// The error.
        err: String,
    },
}

/// `server.listen` may name a host (`localhost:8080`): resolved here to the first address it
/// has, so the rest of the hub sees an address.
fn resolve_listen(root: &mut toml::Value) -> Result<(), ConfigError> {
    use std::net::ToSocketAddrs;
    let Some(v) = root.get("server").and_then(|s| s.get("listen")).and_then(toml::Value::as_str) else {
        return Ok(());
    };
    if v.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = |why: String| ConfigError::Invalid { field: "server.listen", why };
    if !v.contains(':') {
        return Err(bad(format!("{v:?}: give host:port (e.g. 127.0.0.1:8080 or localhost:8080)")));
    }
    let addr = v
        .to_socket_addrs()
        .map_err(|e| bad(format!("{v:?}: {e}")))?
        .min_by_key(|a| a.is_ipv6())
        .ok_or_else(|| bad(format!("{v:?} resolves to no address")))?;
    set(root, "server", "listen", toml::Value::String(addr.to_string()));
    Ok(())
}

/// Merges `over` into `base` (tables recursively, other values replaced).
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(bv) => merge(bv, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn set(root: &mut toml::Value, section: &str, key: &str, v: toml::Value) {
    if let toml::Value::Table(t) = root {
        let s = t.entry(section.to_owned()).or_insert_with(|| toml::Value::Table(Default::default()));
        if let toml::Value::Table(s) = s {
            s.insert(key.to_owned(), v);
        }
    }
}

/// Overrides from flags or environment variables, applied after the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `server.listen`.
    pub listen: Option<String>,
    /// Adds an API key.
    pub api_key: Option<String>,
    /// Adds an HS256 key.
    pub jwt_secret: Option<String>,
    /// `auth.anonymous`.
    pub anonymous: Option<bool>,
    /// `log.format = "json"`.
    pub log_json: bool,
    /// `server.tls_cert`.
    pub tls_cert: Option<String>,
    /// `server.tls_key`.
    pub tls_key: Option<String>,
    /// `server.origins` (comma separated).
    pub origins: Option<String>,
    /// `collect.file`.
    pub collect_file: Option<String>,
    /// `cluster.adapter`.
    pub cluster_adapter: Option<String>,
    /// `cluster.redis_url`.
    pub redis_url: Option<String>,
    /// `cluster.nats_url`.
    pub nats_url: Option<String>,
    /// `cluster.nats_subject_prefix`.
    pub nats_subject_prefix: Option<String>,
    /// `cluster.nats_user`.
    pub nats_user: Option<String>,
    /// `cluster.nats_password`.
    pub nats_password: Option<String>,
    /// `cluster.nats_token`.
    pub nats_token: Option<String>,
    /// `cluster.nats_creds_file`.
    pub nats_creds_file: Option<String>,
    /// `cluster.channel_prefix`.
    pub channel_prefix: Option<String>,
    /// `cluster.node_name`.
    pub node_name: Option<String>,
    /// `cluster.advertise`.
    pub advertise: Option<String>,
    /// `server.reuse_port`.
    pub reuse_port: Option<bool>,
    /// `recovery.enabled`.
    pub recovery: Option<bool>,
}

impl Config {
    /// The effective configuration as TOML (what `serve --print-config` prints), with every
    /// secret (JWT secrets, API keys) replaced by `"<redacted>"`.
    pub fn to_toml_redacted(&self) -> String {
        let mut c = self.clone();
        for k in &mut c.auth.jwt_keys {
            if k.secret.is_some() {
                k.secret = Some("<redacted>".into());
            }
        }
        for k in &mut c.api.keys {
            *k = "<redacted>".into();
        }
        c.cluster.redis_url = crate::cluster::redact_url(&c.cluster.redis_url);
        c.cluster.nats_url = crate::cluster::redact_urls(&c.cluster.nats_url);
        for secret in [&mut c.cluster.nats_password, &mut c.cluster.nats_token] {
            if !secret.is_empty() {
                *secret = "<redacted>".into();
            }
        }
        match toml::to_string_pretty(&c) {
            Ok(t) => format!("# The effective configuration (defaults, then --config, then SWITCHBOARD_* and flags).\n# Secrets are redacted.\n\n{t}"),
            Err(e) => format!("# cannot print the configuration: {e}\n"),
        }
    }

    /// Loads: the embedded default, then `file`, then `ov`; then validates.
    pub fn load(file: Option<&std::path::Path>, ov: &Overrides) -> Result<Config, ConfigError> {
        let mut root: toml::Value = toml::from_str(DEFAULT_TOML).map_err(|e| ConfigError::Parse(e.to_string()))?;
        if let Some(f) = file {
            let text = std::fs::read_to_string(f).map_err(|e| ConfigError::File {
                field: "--config",
                path: f.display().to_string(),
                err: e.to_string(),
            })?;
            let over: toml::Value =
                toml::from_str(&text).map_err(|e| ConfigError::Parse(format!("{}: {e}", f.display())))?;
            merge(&mut root, over);
        }
        if let Some(v) = &ov.listen {
            set(&mut root, "server", "listen", toml::Value::String(v.clone()));
        }
        resolve_listen(&mut root)?;
        if let Some(v) = &ov.tls_cert {
            set(&mut root, "server", "tls_cert", toml::Value::String(v.clone()));
        }
        if let Some(v) = &ov.tls_key {
            set(&mut root, "server", "tls_key", toml::Value::String(v.clone()));
        }
        if let Some(v) = &ov.origins {
            let list =
                v.split(',').map(|s| toml::Value::String(s.trim().to_owned())).filter(|s| s.as_str() != Some(""));
            set(&mut root, "server", "origins", toml::Value::Array(list.collect()));
        }
        if let Some(v) = ov.anonymous {
            set(&mut root, "auth", "anonymous", toml::Value::Boolean(v));
        }
        if let Some(v) = &ov.collect_file {
            set(&mut root, "collect", "file", toml::Value::String(v.clone()));
        }
        if ov.log_json {
            set(&mut root, "log", "format", toml::Value::String("json".into()));
        }
        for (key, v) in [
            ("adapter", &ov.cluster_adapter),
            ("redis_url", &ov.redis_url),
            ("nats_url", &ov.nats_url),
            ("nats_subject_prefix", &ov.nats_subject_prefix),
            ("nats_user", &ov.nats_user),
            ("nats_password", &ov.nats_password),
            ("nats_token", &ov.nats_token),
            ("nats_creds_file", &ov.nats_creds_file),
            ("channel_prefix", &ov.channel_prefix),
            ("node_name", &ov.node_name),
            ("advertise", &ov.advertise),
        ] {
            if let Some(v) = v {
                set(&mut root, "cluster", key, toml::Value::String(v.clone()));
            }
        }
        if let Some(v) = ov.reuse_port {
            set(&mut root, "server", "reuse_port", toml::Value::Boolean(v));
        }
        if let Some(v) = ov.recovery {
            set(&mut root, "recovery", "enabled", toml::Value::Boolean(v));
        }
        let mut config: Config = root.try_into().map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        if let Some(k) = &ov.api_key {
            config.api.keys.push(k.clone());
        }
        if let Some(s) = &ov.jwt_secret {
            config.auth.jwt_keys.push(JwtKey {
                kid: None,
                alg: "HS256".into(),
                secret: Some(s.clone()),
                public_key_file: None,
            });
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks values and the loopback rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, why: &str| Err(ConfigError::Invalid { field, why: why.to_owned() });
        let c = &self.cluster;
        if !matches!(c.adapter.as_str(), "memory" | "redis" | "nats") {
            return bad("cluster.adapter", "must be \"memory\", \"redis\" or \"nats\"");
        }
        if c.adapter == "nats" {
            let urls: Vec<&str> = c.nats_url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
            if urls.is_empty() || !urls.iter().all(|u| u.starts_with("nats://") || u.starts_with("tls://")) {
                return bad("cluster.nats_url", "must be nats://host:port or tls://host:port URLs, comma-separated");
            }
            if !switchboard_cluster::nats::valid_subject_prefix(&c.nats_subject_prefix) {
                return bad(
                    "cluster.nats_subject_prefix",
                    "must be dot-separated tokens of letters, digits, '-' and '_'",
                );
            }
            let methods = [
                !c.nats_user.is_empty() || !c.nats_password.is_empty(),
                !c.nats_token.is_empty(),
                !c.nats_nkey_file.is_empty(),
                !c.nats_creds_file.is_empty(),
            ];
            if methods.iter().filter(|m| **m).count() > 1 {
                return bad(
                    "cluster.nats_user",
                    "set one NATS credential: nats_user/nats_password, nats_token, nats_nkey_file or nats_creds_file",
                );
            }
            if c.nats_user.is_empty() != c.nats_password.is_empty() {
                return bad("cluster.nats_password", "nats_user and nats_password go together");
            }
            if c.nats_tls_cert_file.is_empty() != c.nats_tls_key_file.is_empty() {
                return bad("cluster.nats_tls_key_file", "nats_tls_cert_file and nats_tls_key_file go together");
            }
        }
        if c.adapter == "redis"
            && !["redis://", "rediss://", "redis-cluster://", "rediss-cluster://"]
                .iter()
                .any(|p| c.redis_url.starts_with(p))
        {
            return bad(
                "cluster.redis_url",
                "must start with redis://, rediss://, redis-cluster:// or rediss-cluster://",
            );
        }
        if !c.advertise.is_empty() && !c.advertise.starts_with("http://") {
            return bad("cluster.advertise", "must be an http://host:port URL");
        }
        for (field, v) in [
            ("cluster.request_timeout_ms", c.request_timeout_ms),
            ("cluster.heartbeat_interval_ms", c.heartbeat_interval_ms),
            ("cluster.max_message_bytes", c.max_message_bytes as u64),
        ] {
            if v == 0 {
                return bad(field, "must be greater than 0");
            }
        }
        let r = &self.recovery;
        for (field, v) in [
            ("recovery.max_disconnection_ms", r.max_disconnection_ms),
            ("recovery.max_events", r.max_events as u64),
            ("recovery.max_bytes", r.max_bytes as u64),
            ("recovery.max_sessions", r.max_sessions as u64),
            ("recovery.redis_stream_max_len", r.redis_stream_max_len as u64),
            ("recovery.nats_stream_max_len", r.nats_stream_max_len as u64),
        ] {
            if r.enabled && v == 0 {
                return bad(field, "must be greater than 0 (or set recovery.enabled = false)");
            }
        }
        for h in &r.history {
            if h.rooms.is_empty() || h.rooms[..h.rooms.len() - 1].contains('*') {
                return bad("recovery.history.rooms", "not empty, `*` only at the end");
            }
            if h.max_events == 0 {
                return bad("recovery.history.max_events", "must be greater than 0");
            }
        }
        if c.heartbeat_timeout_ms <= c.heartbeat_interval_ms {
            return bad("cluster.heartbeat_timeout_ms", "must be greater than cluster.heartbeat_interval_ms");
        }
        let s = &self.server;
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return bad("server.tls_cert", "tls_cert and tls_key go together");
        }
        for (field, v) in [
            ("server.max_connections_per_ip", s.max_connections_per_ip as u64),
            ("server.max_connections", s.max_connections as u64),
            ("server.handshake_timeout_ms", s.handshake_timeout_ms),
            ("server.ping_interval_ms", s.ping_interval_ms),
            ("server.ping_timeout_ms", s.ping_timeout_ms),
            ("server.max_message_bytes", s.max_message_bytes as u64),
            ("server.max_queued_messages", s.max_queued_messages as u64),
            ("server.connect_timeout_ms", s.connect_timeout_ms),
            ("rooms.max_rooms_per_client", self.rooms.max_rooms_per_client as u64),
            ("rooms.max_room_name", self.rooms.max_room_name as u64),
            ("collect.max_file_bytes", self.collect.max_file_bytes),
            ("collect.queue", self.collect.queue as u64),
        ] {
            if v == 0 {
                return bad(field, "must be greater than 0");
            }
        }
        for o in &s.origins {
            if switchboard_ws::proto::handshake::server::normalize_origin(o).is_none() {
                return Err(ConfigError::Invalid { field: "server.origins", why: format!("{o:?} is not an origin") });
            }
        }
        for k in &self.auth.jwt_keys {
            match k.alg.as_str() {
                "HS256" if k.secret.as_deref().is_some_and(|s| s.len() >= 16) => {}
                "HS256" => return bad("auth.jwt_keys.secret", "HS256 needs a secret of at least 16 bytes"),
                "RS256" | "ES256" if k.public_key_file.is_some() => {}
                "RS256" | "ES256" => return bad("auth.jwt_keys.public_key_file", "RS256/ES256 need a public key file"),
                other => {
                    return Err(ConfigError::Invalid {
                        field: "auth.jwt_keys.alg",
                        why: format!("{other:?}: use HS256, RS256 or ES256"),
                    })
                }
            }
        }
        let h = &self.hooks;
        for (field, url) in
            [("hooks.connect_url", h.connect_url.as_deref()), ("hooks.subscribe_url", h.subscribe_url.as_deref())]
                .into_iter()
                .chain(h.events.iter().map(|e| ("hooks.events.url", Some(e.url.as_str()))))
        {
            if let Some(u) = url {
                if crate::hooks::HookUrl::parse(u).is_none() {
                    return Err(ConfigError::Invalid { field, why: format!("{u:?}: use http://host:port/path") });
                }
            }
        }
        for e in &h.events {
            if e.pattern.is_empty() || e.pattern[..e.pattern.len() - 1].contains('*') {
                return bad("hooks.events.pattern", "not empty, `*` only at the end");
            }
        }
        if h.timeout_ms == 0 || h.max_concurrency == 0 || h.max_response_bytes == 0 {
            return bad("hooks", "timeout_ms, max_concurrency and max_response_bytes must be greater than 0");
        }
        if self.log.format != "text" && self.log.format != "json" {
            return bad("log.format", "use \"text\" or \"json\"");
        }
        for r in &self.rooms.rules {
            if r.pattern.is_empty() || r.pattern[..r.pattern.len() - 1].contains('*') {
                return Err(ConfigError::Invalid {
                    field: "rooms.rules.pattern",
                    why: format!("{:?}: `*` only at the end", r.pattern),
                });
            }
        }
        if self.api.keys.iter().any(|k| k.len() < 16) {
            return bad("api.keys", "API keys must be at least 16 characters");
        }
        // What makes a hub unsafe or unusable, all at once.
        let loopback = s.listen.ip().is_loopback();
        let mut missing: Vec<(&'static str, String)> = Vec::new();
        let beyond = format!("the hub listens on {}, beyond loopback", s.listen);
        if !loopback && self.auth.anonymous {
            missing.push((
                "auth.anonymous",
                format!(
                    "{beyond}: anonymous clients are only allowed on loopback; set it to false (--anonymous false)"
                ),
            ));
        }
        if self.auth.jwt_keys.is_empty() && (!loopback || !self.auth.anonymous) {
            let why = if loopback {
                "anonymous clients are off and there is no JWT key: no client could connect; add one (--jwt-secret or [[auth.jwt_keys]])".to_owned()
            } else {
                format!("{beyond}: at least one JWT key is needed (--jwt-secret or [[auth.jwt_keys]])")
            };
            missing.push(("auth.jwt_keys", why));
        }
        if !loopback && self.api.keys.is_empty() {
            missing.push(("api.keys", format!("{beyond}: at least one API key is needed (--api-key, 16+ characters)")));
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Unsafe(missing))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_loopback() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert!(c.auth.anonymous && c.api.keys.is_empty());
    }

    #[test]
    fn beyond_loopback_without_keys_is_refused_naming_the_field() {
        let ov = Overrides { listen: Some("0.0.0.0:8080".into()), ..Default::default() };
        let e = Config::load(None, &ov).unwrap_err().to_string();
        // Everything that is missing, in one message.
        for f in ["auth.anonymous", "auth.jwt_keys", "api.keys"] {
            assert!(e.contains(f), "{e}");
        }
        // No anonymous clients and no JWT key: nobody could connect, even on loopback.
        let ov = Overrides { anonymous: Some(false), ..Default::default() };
        let e = Config::load(None, &ov).unwrap_err().to_string();
        assert!(e.contains("auth.jwt_keys") && e.contains("no client could connect"), "{e}");
        // A host name resolves.
        let ov = Overrides { listen: Some("localhost:8123".into()), ..Default::default() };
        let c = Config::load(None, &ov).unwrap();
        assert!(c.server.listen.ip().is_loopback() && c.server.listen.port() == 8123);
        let ov = Overrides { listen: Some("localhost".into()), ..Default::default() };
        assert!(Config::load(None, &ov).unwrap_err().to_string().contains("host:port"));
        let ov = Overrides {
            listen: Some("0.0.0.0:8080".into()),
            anonymous: Some(false),
            jwt_secret: Some("0123456789abcdef0123".into()),
            ..Default::default()
        };
        let e = Config::load(None, &ov).unwrap_err().to_string();
        assert!(e.contains("api.keys"), "{e}");
    }

    #[test]
    fn bad_fields_are_named() {
        let dir = std::env::temp_dir().join(format!("sb-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (text, field) in [
            ("[server]\nping_interval_ms = 0\n", "server.ping_interval_ms"),
            ("[server]\nlisten = \"nope\"\n", "server.listen"),
            ("[server]\nbogus = 1\n", "bogus"),
            ("[[auth.jwt_keys]]\nalg = \"none\"\nsecret = \"0123456789abcdef\"\n", "auth.jwt_keys.alg"),
            ("[[auth.jwt_keys]]\nalg = \"HS256\"\nsecret = \"short\"\n", "auth.jwt_keys.secret"),
            ("[log]\nformat = \"xml\"\n", "log.format"),
        ] {
            let f = dir.join("c.toml");
            std::fs::write(&f, text).unwrap();
            let e = Config::load(Some(&f), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
