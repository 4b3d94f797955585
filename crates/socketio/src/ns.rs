//! Namespaces and their handlers.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::Value;
use switchboard_engineio::Sid;

use crate::adapter::{Adapter, Room};
use crate::operators::BroadcastOperator;
use crate::socket::{DisconnectReason, Event, Socket};

/// A boxed handler future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// A boxed middleware future.
pub type MiddlewareFuture = Pin<Box<dyn Future<Output = Result<(), ConnectError>> + Send>>;

pub(crate) type ConnectFn = Arc<dyn Fn(Socket) -> HandlerFuture + Send + Sync>;
pub(crate) type MiddlewareFn = Arc<dyn Fn(Socket) -> MiddlewareFuture + Send + Sync>;
pub(crate) type EventFn = Arc<dyn Fn(Socket, Event) -> HandlerFuture + Send + Sync>;
pub(crate) type DisconnectFn = Arc<dyn Fn(Socket, DisconnectReason) -> HandlerFuture + Send + Sync>;
pub(crate) type ServerEventFn = Arc<dyn Fn(ServerEvent) -> HandlerFuture + Send + Sync>;

/// Answers a server-side event (see [`ServerEvent::ack`]).
pub type ServerAckFn = Box<dyn FnOnce(Value) + Send>;

/// An event another node of the cluster sent to this one with
/// [`Namespace::server_side_emit`] (Node's `io.serverSideEmit`).
pub struct ServerEvent {
    /// The event name.
    pub name: String,
    /// The arguments.
    pub args: Vec<Value>,
    /// The sending node, when known.
    pub from: Option<crate::adapter::NodeId>,
    ack: Option<ServerAckFn>,
}

impl fmt::Debug for ServerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerEvent")
            .field("name", &self.name)
            .field("args", &self.args)
            .field("from", &self.from)
            .field("wants_ack", &self.ack.is_some())
            .finish()
    }
}

impl ServerEvent {
    /// Whether the sender waits for an answer.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Answers the sender (once; a no-op if it asked for none).
    pub fn ack(&mut self, value: Value) {
        if let Some(a) = self.ack.take() {
            a(value);
        }
    }
}

/// A refusal from a middleware: the client gets `CONNECT_ERROR {message, data}` (its
/// `connect_error` event).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectError {
    /// The message.
    pub message: String,
    /// Extra data (`null` for none).
    pub data: Value,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        ConnectError { message: message.into(), data: Value::Null }
    }

    /// With data.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    pub(crate) fn to_json(&self) -> Value {
        if self.data.is_null() {
            serde_json::json!({ "message": self.message })
        } else {
            serde_json::json!({ "message": self.message, "data": self.data })
        }
    }
}

/// What a namespace does: middleware, connect and disconnect handlers, event handlers.
///
/// Handlers are async closures; each runs on its own task, started in the order the packets
/// arrived. An event with no handler goes to the catch-all (if any), else it is dropped.
#[derive(Clone, Default)]
pub struct Handlers {
    pub(crate) middleware: Vec<MiddlewareFn>,
    pub(crate) connect: Option<ConnectFn>,
    pub(crate) events: HashMap<String, EventFn>,
    pub(crate) any: Option<EventFn>,
    pub(crate) disconnect: Option<DisconnectFn>,
    pub(crate) server_events: HashMap<String, ServerEventFn>,
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers")
            .field("middleware", &self.middleware.len())
            .field("events", &self.events.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Handlers {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a middleware: it sees the socket (with [`Socket::auth`]) before it connects and
    /// may refuse it. Middleware runs in the order added; the first refusal wins.
    pub fn middleware<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.middleware.push(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    /// Runs when a socket has connected (its CONNECT reply is already queued, so anything
    /// emitted here reaches the client after it).
    pub fn on_connect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.connect = Some(Arc::new(move |s| Box::pin(f(s))));
        self
    }

    /// Handles the event `name`.
    pub fn on<F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Socket, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.events.insert(name.into(), Arc::new(move |s, e| Box::pin(f(s, e))));
        self
    }

    /// Handles every event that has no handler of its own.
    pub fn on_any<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Socket, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.any = Some(Arc::new(move |s, e| Box::pin(f(s, e))));
        self
    }

    /// Handles the server-side event `name` that another node sent
    /// ([`Namespace::server_side_emit`]).
    pub fn on_server_event<F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(ServerEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.server_events.insert(name.into(), Arc::new(move |e| Box::pin(f(e))));
        self
    }

    /// Runs when a socket has left (its rooms are already left).
    pub fn on_disconnect<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Socket, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.disconnect = Some(Arc::new(move |s, r| Box::pin(f(s, r))));
        self
    }
}

/// A namespace: its sockets, its handlers and its adapter.
pub struct Namespace {
    name: Room,
    handlers: Arc<Handlers>,
    sockets: RwLock<HashMap<Sid, Socket>>,
    adapter: Box<dyn Adapter>,
    ack_timeout: Duration,
    next_ack: AtomicU64,
    /// The log and kept sessions of connection state recovery, when it is on.
    recovery: Option<crate::recovery::SessionStore>,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Namespace {
    pub(crate) fn new(
        name: &str,
        handlers: Arc<Handlers>,
        adapter: Box<dyn Adapter>,
        ack_timeout: Duration,
        recovery: Option<crate::recovery::RecoveryConfig>,
    ) -> Self {
        Namespace {
            name: Arc::from(name),
            handlers,
            sockets: RwLock::new(HashMap::new()),
            ack_timeout,
            next_ack: AtomicU64::new(0),
            recovery: recovery.map(|c| {
                let backend = adapter.recovery_backend();
                crate::recovery::SessionStore::new(c, backend)
            }),
            adapter,
        }
    }

    /// The recovery log and sessions, when connection state recovery is on.
    pub(crate) fn recovery_store(&self) -> Option<&crate::recovery::SessionStore> {
        self.recovery.as_ref()
    }

    /// Whether connection state recovery is on.
    pub fn recovery_enabled(&self) -> bool {
        self.recovery.is_some()
    }

    /// A fresh acknowledgement id of this namespace on this node. One encoded broadcast
    /// carries the same id to each of its recipients, and each socket keeps its own table, so
    /// ids need only be unique per namespace and node.
    pub fn next_ack_id(&self) -> u64 {
        self.next_ack.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs this node's handler for a server-side event `[name, arg…]` that another node sent;
    /// `ack` answers it. Returns whether a handler took it.
    pub fn dispatch_server_event(
        &self,
        data: Vec<Value>,
        from: Option<crate::adapter::NodeId>,
        ack: Option<ServerAckFn>,
    ) -> bool {
        let mut it = data.into_iter();
        let Some(Value::String(name)) = it.next() else { return false };
        let Some(h) = self.handlers.server_events.get(&name).cloned() else { return false };
        let ev = ServerEvent { name, args: it.collect(), from, ack };
        tokio::spawn(h(ev));
        true
    }

    /// Sends an event to the other nodes' server-event handlers (Node's
    /// `io.serverSideEmit`); a no-op on a single node.
    pub async fn server_side_emit(&self, event: &str, args: Vec<Value>) -> Result<(), crate::EmitError> {
        let mut data = vec![Value::String(event.to_owned())];
        data.extend(args);
        self.adapter.server_side_emit(self, data, None).await?;
        Ok(())
    }

    /// Sends an event to the other nodes' server-event handlers and waits up to `timeout` for
    /// each node's answer.
    pub async fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<crate::adapter::ServerAcks, crate::EmitError> {
        let mut data = vec![Value::String(event.to_owned())];
        data.extend(args);
        Ok(self.adapter.server_side_emit(self, data, Some(timeout)).await?)
    }

    /// The name (`/` for the main namespace).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The adapter.
    pub fn adapter(&self) -> &dyn Adapter {
        &*self.adapter
    }

    pub(crate) fn handlers(&self) -> &Handlers {
        &self.handlers
    }

    /// The default wait for acknowledgements.
    pub fn ack_timeout(&self) -> Duration {
        self.ack_timeout
    }

    /// Ids of this node's sockets.
    pub fn socket_ids(&self) -> Vec<Sid> {
        self.sockets.read().keys().copied().collect()
    }

    /// Number of this node's sockets.
    pub fn len(&self) -> usize {
        self.sockets.read().len()
    }

    /// Whether no socket is connected here.
    pub fn is_empty(&self) -> bool {
        self.sockets.read().is_empty()
    }

    /// Whether `sid` is connected here.
    pub fn has_socket(&self, sid: Sid) -> bool {
        self.sockets.read().contains_key(&sid)
    }

    /// A socket of this node, by id.
    pub fn get_socket(&self, sid: Sid) -> Option<Socket> {
        self.sockets.read().get(&sid).cloned()
    }

    /// Calls `f` with each of these sockets that is here, under one read lock of the table.
    pub fn for_each_socket(&self, sids: &[Sid], mut f: impl FnMut(&Socket)) {
        let map = self.sockets.read();
        for sid in sids {
            if let Some(s) = map.get(sid) {
                f(s);
            }
        }
    }

    /// Socket `sid`'s rooms are now `rooms` (or its data changed): a shared recovery backend
    /// keeps its session as it changes.
    pub(crate) fn session_changed(&self, sid: Sid, rooms: Vec<crate::adapter::Room>) {
        let Some(backend) = self.recovery.as_ref().and_then(|s| s.backend.as_ref()) else { return };
        let Some(socket) = self.sockets.read().get(&sid).cloned() else { return };
        if let Some(state) = socket.session_state(rooms) {
            backend.update(&self.name, &state);
        }
    }

    /// Room `room`'s history: the logged events addressed to it (by `to(room)`, not to
    /// everyone) after offset `since` (`None`: all the log holds), in order, each with its
    /// offset. A gap when the log no longer reaches back to `since` (or recovery is off:
    /// [`GapReason::NoHistory`](crate::GapReason::NoHistory)).
    pub async fn history(&self, room: &str, since: Option<&str>) -> Result<Vec<crate::LoggedEvent>, crate::Gap> {
        let Some(store) = self.recovery.as_ref() else { return Err(crate::Gap::new(crate::GapReason::NoHistory)) };
        let events = store.read_log(&self.name, since).await?;
        Ok(events
            .into_iter()
            .filter(|e| e.opts.rooms.iter().any(|r| &**r == room) && !e.opts.except_rooms.iter().any(|r| &**r == room))
            .collect())
    }

    /// [`session_changed`](Self::session_changed) after a membership change through the
    /// adapter (which knows the rooms).
    pub(crate) async fn rooms_changed(&self, sid: Sid) {
        if self.recovery.as_ref().is_some_and(|s| s.backend.is_some()) {
            if let Ok(rooms) = self.adapter.socket_rooms(self, sid).await {
                self.session_changed(sid, rooms);
            }
        }
    }

    /// The connected socket whose recovery secret is `pid`, if any.
    pub(crate) fn socket_with_pid(&self, pid: &str) -> Option<Socket> {
        let sid = self.recovery.as_ref()?.live_sid(pid)?;
        self.sockets.read().get(&sid).cloned()
    }

    pub(crate) fn insert_socket(&self, s: Socket) {
        self.sockets.write().insert(s.id(), s);
    }

    pub(crate) fn remove_socket(&self, sid: Sid) {
        self.sockets.write().remove(&sid);
    }

    /// A broadcast to every socket of the namespace (narrow it with `to`, `except`, …).
    pub fn broadcast(self: &Arc<Self>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone())
    }
}
