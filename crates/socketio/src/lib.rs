//! # switchboard-socketio
//!
//! A Socket.IO v5 server on [`switchboard_engineio`], wire-compatible with the official
//! clients (`socket.io-client`, `python-socketio`), with the model python-socketio users know:
//! connect and disconnect handlers, custom events, emit to everyone, to a room or to one
//! socket while skipping another, rooms, `send`.
//!
//! ```no_run
//! use switchboard_socketio::{Handlers, SocketIo};
//!
//! # async fn run() -> std::io::Result<()> {
//! let io = SocketIo::builder()
//!     .ns("/", Handlers::new()
//!         .on_connect(|socket| async move { println!("connect {}", socket.id()) })
//!         .on("chat", |socket, _ev| async move { let _ = socket.join("chat_users").await; })
//!         .on("my message", |socket, ev| async move {
//!             let data: serde_json::Value = ev.data().unwrap_or_default();
//!             let _ = socket.to("chat_users").emit("my reply", &data).await;
//!         }))
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! io.serve(listener, std::future::pending()).await
//! # }
//! ```
//!
//! ## Pieces
//! - [`packet`]: the sans-IO codec, with caps on attachments (count, bytes, assembly time)
//!   and the payload rules (security: E10–E14, E17).
//! - [`SocketIo`]: the server handle; [`Handlers`] per namespace (static, or dynamic by a
//!   predicate); [`Socket`] per client and namespace; [`BroadcastOperator`] for
//!   `to`/`except`/`local`/`volatile`/`timeout` + emit.
//! - [`Adapter`]: rooms and broadcast go through it; [`LocalAdapter`] is in memory. The trait
//!   is async and fallible, ready for cluster adapters.
//!
//! ## Binary data
//! Binary goes anywhere in the arguments, both ways, as in Node and Python: a `bytes::Bytes`
//! field (or `serde_bytes`) in anything you emit is sent as an attachment in its place, and
//! `Event::data`/`Event::arg` fill `Bytes` (or `Vec<u8>`) fields from the attachments the
//! client sent, wherever they are ([`payload`]). `Event::args` keeps the placeholders, so a
//! handler can send what it received on unchanged with `emit_with(name, ev.args, ev.binary)`.
//!
//! ## Outbound queue policy
//! Every connection has one bounded queue (Engine.IO's `max_queued_packets` /
//! `max_queued_bytes`). When a packet does not fit, a volatile one is dropped; any other
//! closes the connection with [`DisconnectReason::QueueFull`] ("outbound queue full"): a
//! client that cannot keep up is cut off rather than buffered without bound.

pub mod adapter;
mod conn;
mod ns;
mod operators;
pub mod packet;
pub mod payload;
pub mod recovery;
mod socket;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::Serialize;
use switchboard_engineio::{Engine, EngineConfig, EngineLayer, Sid};

pub use adapter::{
    Adapter, AdapterError, AdapterFuture, BroadcastAcks, BroadcastOptions, BroadcastPacket, BroadcastReport,
    LocalAdapter, NodeId, Room, ServerAcks, SocketInfo,
};
pub use conn::{Conn, ConnInfo, IoHandler};
pub use ns::{ConnectError, HandlerFuture, Handlers, MiddlewareFuture, Namespace, ServerAckFn, ServerEvent};
pub use operators::{BroadcastOperator, RemoteSocket};
pub use packet::{is_reserved_event, DecodeError, Decoder, Limits, Packet, PacketType};
pub use payload::{from_payload, to_payload};
pub use recovery::{
    Gap, GapReason, LoggedEvent, Position, Recovery, RecoveryBackend, RecoveryConfig, RecoveryFuture, SessionState,
    GAP_EVENT,
};
pub use socket::{
    AckError, AckResponse, AckSender, AckWait, DisconnectReason, EmitError, Encoded, Event, Outgoing, SinkCache,
    Socket, SocketSink,
};
pub use switchboard_engineio as engineio;

/// Settings of a Socket.IO server.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SocketIoConfig {
    /// The Engine.IO settings; the path defaults to `/socket.io/`.
    pub engine: EngineConfig,
    /// How long a connection may stay without joining a namespace before it is closed.
    /// Default 45 s (as socket.io) (security: E15).
    pub connect_timeout: Duration,
    /// Most namespaces one connection may join (or be joining). Above it the CONNECT gets
    /// `CONNECT_ERROR {"message":"Too many namespaces"}`. Default 32 (security: E15).
    pub max_namespaces_per_connection: usize,
    /// Most dynamic namespaces created (each stays once created). Default 1,024
    /// (security: E15).
    pub max_dynamic_namespaces: usize,
    /// Default wait for acknowledgements. Default 10 s.
    pub ack_timeout: Duration,
    /// Most handlers of one connection that may be waiting at once (an event handler or a
    /// connect step that awaits something). A client that sends events faster than they
    /// finish is disconnected with "too many pending requests" instead of piling up tasks.
    /// Default 256.
    pub max_waiting_handlers: usize,
    /// Decoder caps: attachments per packet (10), their bytes (1 MB), assembly time (10 s),
    /// namespace name length (256) (security: E14).
    pub limits: Limits,
    /// Connection state recovery ([`recovery`]); off (`None`) by default.
    pub recovery: Option<RecoveryConfig>,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            engine: EngineConfig::default().with_path("/socket.io/"),
            connect_timeout: Duration::from_secs(45),
            max_namespaces_per_connection: 32,
            max_dynamic_namespaces: 1024,
            ack_timeout: Duration::from_secs(10),
            max_waiting_handlers: 256,
            limits: Limits::default(),
            recovery: None,
        }
    }
}

impl SocketIoConfig {
    /// Sets the Engine.IO settings.
    pub fn with_engine(mut self, engine: EngineConfig) -> Self {
        self.engine = engine;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Sets [`max_namespaces_per_connection`](Self::max_namespaces_per_connection).
    pub fn with_max_namespaces_per_connection(mut self, n: usize) -> Self {
        self.max_namespaces_per_connection = n;
        self
    }

    /// Sets [`ack_timeout`](Self::ack_timeout).
    pub fn with_ack_timeout(mut self, d: Duration) -> Self {
        self.ack_timeout = d;
        self
    }

    /// Sets [`max_waiting_handlers`](Self::max_waiting_handlers).
    pub fn with_max_waiting_handlers(mut self, n: usize) -> Self {
        self.max_waiting_handlers = n;
        self
    }

    /// Sets the decoder [`limits`](Self::limits).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// Room names: a `&str`, a `String`, a socket id, or a list of them.
pub trait IntoRooms {
    /// The rooms.
    fn into_rooms(self) -> Vec<Room>;
}

impl IntoRooms for &str {
    fn into_rooms(self) -> Vec<Room> {
        vec![Arc::from(self)]
    }
}
impl IntoRooms for String {
    fn into_rooms(self) -> Vec<Room> {
        vec![Arc::from(self)]
    }
}
impl IntoRooms for Room {
    fn into_rooms(self) -> Vec<Room> {
        vec![self]
    }
}
impl IntoRooms for Sid {
    fn into_rooms(self) -> Vec<Room> {
        vec![Arc::from(self.to_string())]
    }
}
impl<T: IntoRooms> IntoRooms for Vec<T> {
    fn into_rooms(self) -> Vec<Room> {
        self.into_iter().flat_map(IntoRooms::into_rooms).collect()
    }
}
impl<T: IntoRooms + Clone> IntoRooms for &[T] {
    fn into_rooms(self) -> Vec<Room> {
        self.iter().cloned().flat_map(IntoRooms::into_rooms).collect()
    }
}

type Predicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;
type AdapterFactory = Arc<dyn Fn(&str) -> Box<dyn Adapter> + Send + Sync>;

pub(crate) struct IoInner {
    pub(crate) config: SocketIoConfig,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    dynamic: Vec<(Predicate, Arc<Handlers>)>,
    dynamic_count: parking_lot::Mutex<usize>,
    adapter: AdapterFactory,
    pub(crate) allow_request: Option<AllowRequest>,
}

impl fmt::Debug for IoInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoInner").field("config", &self.config).finish_non_exhaustive()
    }
}

impl IoInner {
    /// A namespace by name: a static one, or a dynamic one created on first use.
    pub(crate) fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        if let Some(ns) = self.namespaces.read().get(name) {
            return Some(ns.clone());
        }
        let (_, handlers) = self.dynamic.iter().find(|(p, _)| p(name))?;
        let mut count = self.dynamic_count.lock();
        let mut map = self.namespaces.write();
        if let Some(ns) = map.get(name) {
            return Some(ns.clone());
        }
        if *count >= self.config.max_dynamic_namespaces {
            return None;
        }
        *count += 1;
        let ns = Arc::new(Namespace::new(
            name,
            handlers.clone(),
            (self.adapter)(name),
            self.config.ack_timeout,
            self.config.recovery.clone(),
        ));
        ns.adapter().init(&ns);
        map.insert(name.to_owned(), ns.clone());
        Some(ns)
    }
}

/// What an admission check keeps for a connection's whole life (dropped when it ends): a
/// connection slot, a permit, or nothing.
pub type Admission = Option<Box<dyn std::any::Any + Send + Sync>>;

/// Decides whether a new Engine.IO connection may open (Node's `allowRequest`), from its first
/// request; see [`SocketIoBuilder::allow_request`].
pub type AllowRequest = Arc<
    dyn Fn(&switchboard_engineio::Handshake<'_>) -> Result<Admission, switchboard_engineio::ErrorCode> + Send + Sync,
>;

/// Builds a [`SocketIo`].
#[must_use]
pub struct SocketIoBuilder {
    config: SocketIoConfig,
    namespaces: Vec<(String, Handlers)>,
    dynamic: Vec<(Predicate, Arc<Handlers>)>,
    adapter: AdapterFactory,
    allow_request: Option<AllowRequest>,
}

impl fmt::Debug for SocketIoBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketIoBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl SocketIoBuilder {
    /// Sets the configuration.
    pub fn config(mut self, config: SocketIoConfig) -> Self {
        self.config = config;
        self
    }

    /// Turns connection state recovery on ([`recovery`]): clients that lose their connection
    /// and come back within [`RecoveryConfig::max_disconnection_duration`] get their id, rooms,
    /// data and the events they missed; those that cannot are told so.
    pub fn connection_state_recovery(mut self, config: RecoveryConfig) -> Self {
        self.config.recovery = Some(config);
        self
    }

    /// Adds a namespace (`/` is the main one; a name without a leading `/` gets one).
    pub fn ns(mut self, name: impl Into<String>, handlers: Handlers) -> Self {
        let mut name = name.into();
        if !name.starts_with('/') {
            name.insert(0, '/');
        }
        self.namespaces.push((name, handlers));
        self
    }

    /// Adds dynamic namespaces: any name `matches` accepts is created on first connect, with
    /// these handlers (capped by [`SocketIoConfig::max_dynamic_namespaces`]).
    pub fn dynamic_ns<F>(mut self, matches: F, handlers: Handlers) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        self.dynamic.push((Arc::new(matches), Arc::new(handlers)));
        self
    }

    /// Sets the adapter each namespace gets (default: [`LocalAdapter`]).
    pub fn adapter<F>(mut self, factory: F) -> Self
    where
        F: Fn(&str) -> Box<dyn Adapter> + Send + Sync + 'static,
    {
        self.adapter = Arc::new(factory);
        self
    }

    /// Admission control for new connections (Node's `allowRequest`): `check` sees the first
    /// request (headers, query, the peer's address) before the session exists. `Err(code)`
    /// refuses it with that Engine.IO error (`ErrorCode::Forbidden`: 403 `{"code":4}`); `Ok`
    /// admits it, and what it returns (a connection slot, say) is kept until the connection
    /// ends, on every transport, then dropped.
    pub fn allow_request<F>(mut self, check: F) -> Self
    where
        F: Fn(&switchboard_engineio::Handshake<'_>) -> Result<Admission, switchboard_engineio::ErrorCode>
            + Send
            + Sync
            + 'static,
    {
        self.allow_request = Some(Arc::new(check));
        self
    }

    /// Builds the server. The main namespace `/` exists even without handlers.
    pub fn build(self) -> SocketIo {
        let mut map = HashMap::new();
        let ack = self.config.ack_timeout;
        let rec = self.config.recovery.clone();
        for (name, h) in self.namespaces {
            let ns = Arc::new(Namespace::new(&name, Arc::new(h), (self.adapter)(&name), ack, rec.clone()));
            map.insert(name, ns);
        }
        map.entry("/".to_owned())
            .or_insert_with(|| Arc::new(Namespace::new("/", Arc::new(Handlers::new()), (self.adapter)("/"), ack, rec)));
        for ns in map.values() {
            ns.adapter().init(ns);
        }
        let inner = Arc::new(IoInner {
            config: self.config.clone(),
            namespaces: RwLock::new(map),
            dynamic: self.dynamic,
            dynamic_count: parking_lot::Mutex::new(0),
            adapter: self.adapter,
            allow_request: self.allow_request,
        });
        let engine = Engine::new(self.config.engine, IoHandler(inner.clone()));
        SocketIo { inner, engine }
    }
}

/// A Socket.IO server. Cheap to clone; every clone is the same server.
#[derive(Clone)]
pub struct SocketIo {
    inner: Arc<IoInner>,
    engine: Engine<IoHandler>,
}

impl fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketIo").field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl SocketIo {
    /// A builder with default settings and the in-memory adapter.
    pub fn builder() -> SocketIoBuilder {
        SocketIoBuilder {
            config: SocketIoConfig::default(),
            namespaces: Vec::new(),
            dynamic: Vec::new(),
            adapter: Arc::new(|_| Box::new(LocalAdapter::new())),
            allow_request: None,
        }
    }

    /// The Engine.IO server under it: a `tower::Service` for the requests under the path.
    pub fn engine(&self) -> &Engine<IoHandler> {
        &self.engine
    }

    /// A `tower::Layer` that serves Socket.IO under its path in front of another service
    /// (an axum `Router`).
    pub fn layer(&self) -> EngineLayer<IoHandler> {
        EngineLayer::new(self.engine.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then closes every connection.
    pub async fn serve<F: Future<Output = ()>>(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: F,
    ) -> std::io::Result<()> {
        let r = switchboard_engineio::serve(listener, self.engine.clone(), shutdown).await;
        self.engine.close_all(switchboard_engineio::CloseReason::ServerShutdown);
        r
    }

    /// A namespace, if it exists.
    pub fn of(&self, name: &str) -> Option<Arc<Namespace>> {
        self.inner.namespaces.read().get(name).cloned()
    }

    fn main_ns(&self) -> Arc<Namespace> {
        match self.of("/") {
            Some(ns) => ns,
            // `build` always creates "/"; this only keeps the type total.
            None => Arc::new(Namespace::new(
                "/",
                Arc::new(Handlers::new()),
                Box::new(LocalAdapter::new()),
                self.inner.config.ack_timeout,
                None,
            )),
        }
    }

    /// A broadcast on the main namespace to `rooms`.
    pub fn to(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.main_ns().broadcast().to(rooms)
    }

    /// A broadcast on the main namespace to every socket but those in `rooms`.
    pub fn except(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.main_ns().broadcast().except(rooms)
    }

    /// A broadcast on the main namespace.
    pub fn broadcast(&self) -> BroadcastOperator {
        self.main_ns().broadcast()
    }

    /// Emits to every socket of the main namespace.
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<usize, EmitError> {
        self.broadcast().emit(event, data).await
    }

    /// Sends a `message` event to every socket of the main namespace.
    pub async fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<usize, EmitError> {
        self.broadcast().send(data).await
    }

    /// A socket of the main namespace, by id.
    pub fn get_socket(&self, sid: Sid) -> Option<Socket> {
        self.main_ns().get_socket(sid)
    }

    /// Puts socket `sid` of namespace `nsp` into `room` (python-socketio's `enter_room`).
    pub async fn enter_room(&self, sid: Sid, room: &str, nsp: &str) -> Result<(), EmitError> {
        let ns = self.of(nsp).ok_or(EmitError::Disconnected)?;
        ns.adapter().add_all(&ns, sid, room.into_rooms()).await?;
        ns.rooms_changed(sid).await;
        Ok(())
    }

    /// Takes socket `sid` of namespace `nsp` out of `room` (python-socketio's `leave_room`).
    pub async fn leave_room(&self, sid: Sid, room: &str, nsp: &str) -> Result<(), EmitError> {
        let ns = self.of(nsp).ok_or(EmitError::Disconnected)?;
        ns.adapter().del(&ns, sid, room.into_rooms()).await?;
        ns.rooms_changed(sid).await;
        Ok(())
    }

    /// The rooms of socket `sid` in namespace `nsp`.
    pub async fn rooms(&self, sid: Sid, nsp: &str) -> Result<Vec<Room>, EmitError> {
        let ns = self.of(nsp).ok_or(EmitError::Disconnected)?;
        Ok(ns.adapter().socket_rooms(&ns, sid).await?)
    }

    /// Closes every connection (reason "server shutting down").
    pub fn close(&self) {
        self.engine.close_all(switchboard_engineio::CloseReason::ServerShutdown);
    }

    /// Every namespace that exists now.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.inner.namespaces.read().values().cloned().collect()
    }

    /// Closes every connection and tells the adapters (a cluster adapter says goodbye to the
    /// other nodes, so they stop waiting for this one at once).
    pub async fn shutdown(&self) {
        self.close();
        for ns in self.namespaces() {
            let _ = ns.adapter().close(&ns).await;
        }
    }
}
