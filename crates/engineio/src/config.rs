//! Server settings. Every limit has a safe default; the docs of each field say what it guards.

use std::time::Duration;

use switchboard_ws_proto::handshake::server::OriginPolicy;

use crate::handshake::Timing;

/// CORS for long-polling from pages of other origins, when any origin is accepted
/// ([`EngineConfig::origins`] is [`OriginPolicy::Any`]). An allowlist always reflects the
/// allowed origin with credentials.
///
/// Browsers refuse `Access-Control-Allow-Origin: *` on a request made with credentials
/// (cookies), so [`Cors::Any`] suits clients with `withCredentials: false` (the default of
/// socket.io-client), and [`Cors::Reflect`] with `credentials: true` suits the others. Neither is
/// a defence: any page may then talk to the server, so keep cookies out of authentication or
/// use an allowlist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cors {
    /// No CORS headers (the default).
    #[default]
    Off,
    /// `Access-Control-Allow-Origin: *`, without credentials (Node's `cors: { origin: "*" }`).
    Any,
    /// The request's `Origin` reflected, with `Vary: Origin`, and
    /// `Access-Control-Allow-Credentials: true` when `credentials` is set (Node's
    /// `cors: { origin: true, credentials }`).
    Reflect {
        /// Whether credentialed requests (cookies, `withCredentials: true`) are allowed.
        credentials: bool,
    },
}

/// Settings of an Engine.IO server.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineConfig {
    /// The path the endpoint answers under (requests are matched on `path` and `path/`).
    /// Default `/engine.io/`; Socket.IO uses `/socket.io/`.
    pub path: String,
    /// Heartbeat and payload size, announced in the handshake. `max_payload` is also the
    /// largest polling POST body and WebSocket message accepted: above it a POST gets 413 and
    /// the session is closed (security: E1). Defaults 25 s / 20 s / 1,000,000 bytes.
    pub timing: Timing,
    /// How long a WebSocket upgrade may take from the probe to the `upgrade` packet before the
    /// WebSocket is closed and the session stays on polling. Default 10 s (security: E6).
    pub upgrade_timeout: Duration,
    /// Which `Origin`s are accepted, on polling and on WebSocket requests alike. A refused
    /// origin gets `403 {"code":4,"message":"Forbidden"}`. With an allowlist, polling responses
    /// carry CORS headers for the allowed origin (reflected, with credentials), whatever
    /// [`cors`](Self::cors) says. Default: any origin.
    pub origins: OriginPolicy,
    /// The CORS headers polling responses carry when [`origins`](Self::origins) is `Any`
    /// (pages of another origin need them to long-poll; WebSocket needs none). Default
    /// [`Cors::Off`]: same-origin pages and non-browser clients only.
    pub cors: Cors,
    /// Largest number of packets waiting in a session's outbound queue. Above it
    /// [`Session::send`](crate::Session::send) fails with
    /// [`SendError::Full`](crate::SendError::Full) and the caller decides (Socket.IO drops
    /// volatile packets and closes the session otherwise). Default 4,096.
    pub max_queued_packets: usize,
    /// Largest number of bytes waiting in a session's outbound queue (same policy). Default
    /// 16 MiB.
    pub max_queued_bytes: usize,
    /// Most sessions at once; a handshake above it gets `403 Forbidden`. Default 1,000,000.
    pub max_sessions: usize,
    /// Whether the WebSocket transport is offered and accepted. Default `true`.
    pub websocket: bool,
    /// Whether HTTP long-polling is accepted. Default `true`.
    pub polling: bool,
    /// Settings of the WebSocket transport (frame and message caps, handshake timeout).
    /// Its `max_message_size` is raised to at least `timing.max_payload`.
    pub ws: switchboard_ws_proto::Config,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/engine.io/".into(),
            timing: Timing::default(),
            upgrade_timeout: Duration::from_secs(10),
            origins: OriginPolicy::Any,
            cors: Cors::Off,
            max_queued_packets: 4096,
            max_queued_bytes: 16 << 20,
            max_sessions: 1_000_000,
            websocket: true,
            polling: true,
            ws: switchboard_ws_proto::Config::default()
                .with_ping_interval(None)
                .with_max_message_size(1_000_000)
                .with_max_frame_size(1_000_000),
        }
    }
}

impl EngineConfig {
    /// Sets [`path`](Self::path) (a trailing `/` is added if missing).
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        let mut p: String = path.into();
        if !p.starts_with('/') {
            p.insert(0, '/');
        }
        if !p.ends_with('/') {
            p.push('/');
        }
        self.path = p;
        self
    }

    /// Sets the ping interval.
    pub fn with_ping_interval(mut self, d: Duration) -> Self {
        self.timing.ping_interval = d;
        self
    }

    /// Sets the ping timeout.
    pub fn with_ping_timeout(mut self, d: Duration) -> Self {
        self.timing.ping_timeout = d;
        self
    }

    /// Sets `maxHttpBufferSize` (also the WebSocket message cap).
    pub fn with_max_payload(mut self, bytes: usize) -> Self {
        self.timing.max_payload = bytes;
        self.ws = self.ws.with_max_message_size(bytes).with_max_frame_size(bytes);
        self
    }

    /// Sets [`upgrade_timeout`](Self::upgrade_timeout).
    pub fn with_upgrade_timeout(mut self, d: Duration) -> Self {
        self.upgrade_timeout = d;
        self
    }

    /// Sets the [`origins`](Self::origins) policy.
    pub fn with_origins(mut self, origins: OriginPolicy) -> Self {
        self.origins = origins;
        self
    }

    /// Sets the [`cors`](Self::cors) policy.
    pub fn with_cors(mut self, cors: Cors) -> Self {
        self.cors = cors;
        self
    }

    /// Sets both outbound queue caps.
    pub fn with_queue_limits(mut self, packets: usize, bytes: usize) -> Self {
        self.max_queued_packets = packets;
        self.max_queued_bytes = bytes;
        self
    }

    /// Sets [`max_sessions`](Self::max_sessions).
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }

    /// Enables or disables the transports.
    pub fn with_transports(mut self, polling: bool, websocket: bool) -> Self {
        self.polling = polling;
        self.websocket = websocket;
        self
    }

    /// Sets the WebSocket transport's settings.
    pub fn with_ws(mut self, ws: switchboard_ws_proto::Config) -> Self {
        self.ws = ws;
        self
    }
}
