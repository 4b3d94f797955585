//! The server: the session table, long-polling, the WebSocket transport and the upgrade.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use parking_lot::RwLock;
use switchboard_ws::{Acceptor, CloseCode, Message, UpgradedSocket};
use switchboard_ws_proto::handshake::server::normalize_origin;
use switchboard_ws_proto::handshake::server::OriginPolicy;

use crate::config::{Cors, EngineConfig};
use crate::handshake::{open_json, ErrorCode, Query, Sid, Transport};
use crate::packet::{decode_payload, Data, Packet};
use crate::session::{encode_frames, CloseReason, Frame, Mode, Session};

/// The body of every Engine.IO response.
pub type Body = Full<Bytes>;

/// The peer's address, as a request extension. The standalone [`serve`](crate::serve) helper
/// inserts it; behind another server, insert it yourself to have it in
/// [`Handshake::remote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// What the opening request of a session showed.
#[derive(Debug)]
pub struct Handshake<'a> {
    /// The request (method, URI with its query, headers).
    pub request: &'a http::request::Parts,
    /// The transport of the first request.
    pub transport: Transport,
    /// The peer's address, if known (see [`RemoteAddr`]).
    pub remote: Option<SocketAddr>,
}

/// What the layer above Engine.IO (Socket.IO, or an application) does with sessions.
///
/// The callbacks run on the task of the request or connection that caused them: they must not
/// block. Spawn work that waits.
pub trait Handler: Send + Sync + 'static {
    /// What is kept per session.
    type Data: Send + Sync + 'static;

    /// A handshake arrived: returns the session's data, or refuses with `403 Forbidden`.
    fn on_handshake(&self, hs: &Handshake<'_>) -> Result<Self::Data, ErrorCode>;

    /// The session is open (its `open` packet is queued).
    fn on_open(&self, session: &Arc<Session<Self::Data>>);

    /// A message arrived. Messages of one session arrive in order.
    fn on_message(&self, session: &Arc<Session<Self::Data>>, data: Data);

    /// The session ended; runs once.
    fn on_close(&self, session: &Arc<Session<Self::Data>>, reason: CloseReason);

    /// The deadline set with [`Session::set_deadline`] passed.
    fn on_deadline(&self, session: &Arc<Session<Self::Data>>) {
        let _ = session;
    }
}

pub(crate) struct EngineInner<H: Handler> {
    pub(crate) config: Arc<EngineConfig>,
    handler: H,
    sessions: RwLock<HashMap<Sid, Arc<Session<H::Data>>>>,
    acceptor: Acceptor,
}

/// An Engine.IO server: a `tower::Service` for HTTP requests (polling and WebSocket upgrades)
/// under [`EngineConfig::path`]. Cheap to clone.
pub struct Engine<H: Handler> {
    inner: Arc<EngineInner<H>>,
}

impl<H: Handler> Clone for Engine<H> {
    fn clone(&self) -> Self {
        Engine { inner: self.inner.clone() }
    }
}

impl<H: Handler> std::fmt::Debug for Engine<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("path", &self.inner.config.path).finish_non_exhaustive()
    }
}

fn error_response(code: ErrorCode, cors: Option<&CorsHeaders>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(code.body())));
    *r.status_mut() = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    add_cors(&mut r, cors);
    r
}

fn status_response(status: StatusCode, body: &'static str, cors: Option<&CorsHeaders>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"));
    add_cors(&mut r, cors);
    r
}

/// The CORS headers of one request's responses.
#[derive(Clone, Debug)]
struct CorsHeaders {
    /// `Access-Control-Allow-Origin`: the request's origin, or `*`.
    origin: HeaderValue,
    credentials: bool,
}

fn add_cors(r: &mut Response<Body>, cors: Option<&CorsHeaders>) {
    if let Some(c) = cors {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, c.origin.clone());
        if c.credentials {
            h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        if c.origin != "*" {
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

/// Clears the session's "a poll (or post) is in progress" flag when the request ends, even if
/// the client goes away and hyper drops the request's future.
struct ActiveGuard<'a, D> {
    session: &'a Session<D>,
    get: bool,
}

impl<D> Drop for ActiveGuard<'_, D> {
    fn drop(&mut self) {
        let mut st = self.session.state.lock();
        if self.get {
            st.get_active = false;
        } else {
            st.post_active = false;
        }
    }
}

impl<H: Handler> Engine<H> {
    /// A server with these settings, calling `handler`.
    pub fn new(config: EngineConfig, handler: H) -> Self {
        let mut ws = config.ws.clone();
        if ws.max_message_size < config.timing.max_payload {
            ws = ws.with_max_message_size(config.timing.max_payload);
        }
        let acceptor = Acceptor::new().config(ws);
        Engine {
            inner: Arc::new(EngineInner {
                config: Arc::new(config),
                handler,
                sessions: RwLock::new(HashMap::new()),
                acceptor,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.inner.handler
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.read().len()
    }

    /// One session, by id.
    pub fn session(&self, sid: Sid) -> Option<Arc<Session<H::Data>>> {
        self.inner.sessions.read().get(&sid).cloned()
    }

    /// Closes every session with `reason` (for a graceful shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        let all: Vec<_> = self.inner.sessions.read().values().cloned().collect();
        for s in all {
            s.close(reason);
        }
    }

    /// Whether `path` is under this endpoint.
    pub fn matches(&self, path: &str) -> bool {
        let p = &self.inner.config.path;
        path == p.as_str() || path == p.trim_end_matches('/')
    }

    /// Answers one HTTP request (which must be under [`EngineConfig::path`]; others get 404).
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        self.inner.clone().handle(req).await
    }
}

impl<H: Handler> EngineInner<H> {
    /// Checks the Origin; `Ok(Some(_))` are the CORS headers of the responses.
    fn check_origin(&self, h: &http::HeaderMap) -> Result<Option<CorsHeaders>, ErrorCode> {
        let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if h.get(header::ORIGIN).is_some() && origin.is_none() {
            return Err(ErrorCode::Forbidden);
        }
        if !self.config.origins.allows(origin) {
            return Err(ErrorCode::Forbidden);
        }
        let Some(o) = origin.filter(|o| normalize_origin(o).is_some()) else {
            return Ok(None);
        };
        let reflect = |credentials| HeaderValue::from_str(o).ok().map(|origin| CorsHeaders { origin, credentials });
        Ok(match (&self.config.origins, self.config.cors) {
            (OriginPolicy::AllowList { .. }, _) => reflect(true),
            (_, Cors::Off) => None,
            (_, Cors::Any) => Some(CorsHeaders { origin: HeaderValue::from_static("*"), credentials: false }),
            (_, Cors::Reflect { credentials }) => reflect(credentials),
        })
    }

    async fn handle<B>(self: Arc<Self>, mut req: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = req.uri().path();
        let p = &self.config.path;
        if path != p.as_str() && path != p.trim_end_matches('/') {
            return status_response(StatusCode::NOT_FOUND, "Not Found", None);
        }
        let cors = match self.check_origin(req.headers()) {
            Ok(c) => c,
            Err(code) => return error_response(code, None),
        };
        if req.method() == Method::OPTIONS {
            let mut r = status_response(StatusCode::NO_CONTENT, "", cors.as_ref());
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
            // The headers the page asks for (socket.io-client's `extraHeaders`), or the one
            // a polling POST uses.
            let asked = req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .filter(|v| cors.is_some() && v.len() <= 1024)
                .cloned()
                .unwrap_or(HeaderValue::from_static("content-type"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
            return r;
        }
        let is_get = req.method() == Method::GET;
        if !is_get && req.method() != Method::POST {
            return error_response(ErrorCode::BadHandshakeMethod, cors.as_ref());
        }
        let query = match Query::parse(req.uri().query().unwrap_or(""), is_get) {
            Ok(q) => q,
            Err(code) => return error_response(code, cors.as_ref()),
        };
        let wants_ws = req.headers().get(header::UPGRADE).is_some();
        match (query.transport, query.sid) {
            (Transport::WebSocket, _) if !self.config.websocket => {
                error_response(ErrorCode::TransportUnknown, cors.as_ref())
            }
            (Transport::Polling, _) if !self.config.polling => {
                error_response(ErrorCode::TransportUnknown, cors.as_ref())
            }
            (Transport::WebSocket, sid) => {
                if !is_get || !wants_ws {
                    return error_response(ErrorCode::BadRequest, cors.as_ref());
                }
                self.websocket(&mut req, sid)
            }
            (Transport::Polling, None) => {
                let (parts, _body) = req.into_parts();
                self.open_polling(&parts, cors)
            }
            (Transport::Polling, Some(sid)) => {
                let Some(session) = self.sessions.read().get(&sid).cloned() else {
                    return error_response(ErrorCode::SessionIdUnknown, cors.as_ref());
                };
                if is_get {
                    self.poll(&session, cors).await
                } else {
                    self.post(&session, req, cors).await
                }
            }
        }
    }

    fn create_session(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        transport: Transport,
    ) -> Result<Arc<Session<H::Data>>, ErrorCode> {
        if self.sessions.read().len() >= self.config.max_sessions {
            return Err(ErrorCode::Forbidden);
        }
        let remote = parts.extensions.get::<RemoteAddr>().map(|r| r.0);
        let data = self.handler.on_handshake(&Handshake { request: parts, transport, remote })?;
        let sid = Sid::generate();
        let session = Arc::new(Session::new(sid, transport, self.config.clone(), data, Instant::now()));
        self.sessions.write().insert(sid, session.clone());
        Ok(session)
    }

    fn open_polling(self: &Arc<Self>, parts: &http::request::Parts, cors: Option<CorsHeaders>) -> Response<Body> {
        let session = match self.create_session(parts, Transport::Polling) {
            Ok(s) => s,
            Err(code) => return error_response(code, cors.as_ref()),
        };
        let open = Packet::Open(open_json(session.sid(), Transport::Polling, &self.config.timing).into());
        self.handler.on_open(&session);
        // The open packet goes first, ahead of anything `on_open` queued.
        let mut packets = vec![Frame::from_packet(&open)];
        session.drain(&mut packets);
        tokio::spawn(self.clone().drive_polling(session));
        let mut r = Response::new(Full::new(Bytes::from(encode_frames(&packets))));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"));
        add_cors(&mut r, cors.as_ref());
        r
    }

    /// Removes a closed session and tells the handler, once.
    fn finish(&self, session: &Arc<Session<H::Data>>) {
        let reason = session.close_reason().unwrap_or(CloseReason::TransportClose);
        let removed = self.sessions.write().remove(&session.sid()).is_some();
        if removed {
            self.handler.on_close(session, reason);
        }
    }

    /// The heartbeat of a polling session; hands over to the WebSocket task after an upgrade.
    async fn drive_polling(self: Arc<Self>, session: Arc<Session<H::Data>>) {
        loop {
            let notified = session.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if session.state.lock().mode == Mode::WebSocket {
                return;
            }
            let (at, due) = session.tick(Instant::now());
            if due {
                self.handler.on_deadline(&session);
            }
            let Some(at) = at else {
                self.finish(&session);
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = notified => {}
            }
        }
    }

    /// A long-polling GET: parks until packets are queued (E4: one at a time).
    async fn poll(&self, session: &Arc<Session<H::Data>>, cors: Option<CorsHeaders>) -> Response<Body> {
        if session.closed_at(Instant::now()) == Some(CloseReason::PingTimeout) {
            return error_response(ErrorCode::SessionIdUnknown, cors.as_ref());
        }
        {
            let mut st = session.state.lock();
            if st.mode == Mode::WebSocket {
                return error_response(ErrorCode::BadRequest, cors.as_ref());
            }
            if st.get_active {
                drop(st);
                session.close(CloseReason::TransportError);
                return error_response(ErrorCode::BadRequest, cors.as_ref());
            }
            st.get_active = true;
        }
        let _guard = ActiveGuard { session, get: true };
        let mut packets = Vec::new();
        loop {
            let notified = session.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = session.state.lock();
                if !st.outbox.is_empty() {
                    packets.extend(st.outbox.drain(..));
                    st.queued_bytes = 0;
                    break;
                }
                if st.noop {
                    // Owed after the upgrade's probe, or after the client's own `close`.
                    st.noop = false;
                    packets.push(Frame::from_packet(&Packet::Noop));
                    break;
                }
                if st.closed.is_some() {
                    if !st.close_sent {
                        st.close_sent = true;
                        packets.push(Frame::from_packet(&Packet::Close));
                        break;
                    }
                    return error_response(ErrorCode::SessionIdUnknown, cors.as_ref());
                }
                if st.mode == Mode::WebSocket {
                    // A poll after the upgrade completed (its noop went to an earlier poll).
                    return error_response(ErrorCode::BadRequest, cors.as_ref());
                }
            }
            notified.await;
        }
        let mut r = Response::new(Full::new(Bytes::from(encode_frames(&packets))));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"));
        add_cors(&mut r, cors.as_ref());
        r
    }

    /// A long-polling POST: the client's packets (E1 size cap, E3 content type, E5 payloads).
    async fn post<B>(
        &self,
        session: &Arc<Session<H::Data>>,
        req: Request<B>,
        cors: Option<CorsHeaders>,
    ) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if session.closed_at(Instant::now()) == Some(CloseReason::PingTimeout) {
            return error_response(ErrorCode::SessionIdUnknown, cors.as_ref());
        }
        {
            let mut st = session.state.lock();
            if st.mode == Mode::WebSocket {
                return error_response(ErrorCode::BadRequest, cors.as_ref());
            }
            if st.post_active {
                drop(st);
                session.close(CloseReason::TransportError);
                return error_response(ErrorCode::BadRequest, cors.as_ref());
            }
            st.post_active = true;
        }
        let _guard = ActiveGuard { session, get: false };
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if ct.trim_start().to_ascii_lowercase().starts_with("application/octet-stream") {
            session.close(CloseReason::TransportError);
            return error_response(ErrorCode::BadRequest, cors.as_ref());
        }
        let max = self.config.timing.max_payload;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            session.close(CloseReason::TransportError);
            return status_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large", cors.as_ref());
        }
        let body = match Limited::new(req.into_body(), max).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                session.close(CloseReason::TransportError);
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    return status_response(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large", cors.as_ref());
                }
                return error_response(ErrorCode::BadRequest, cors.as_ref());
            }
        };
        let packets = match decode_payload(&body) {
            Ok(p) => p,
            Err(_) => {
                session.close(CloseReason::ParseError);
                return error_response(ErrorCode::BadRequest, cors.as_ref());
            }
        };
        for p in packets {
            if !self.on_packet(session, p, Instant::now()) {
                break;
            }
        }
        status_response(StatusCode::OK, "ok", cors.as_ref())
    }

    /// One packet from the client, on either transport. `false`: the session is over.
    fn on_packet(&self, session: &Arc<Session<H::Data>>, p: Packet, now: Instant) -> bool {
        if session.closed_at(now).is_some() {
            return false;
        }
        match p {
            Packet::Message(d) => self.handler.on_message(session, d),
            Packet::Pong(_) => session.on_pong(now),
            Packet::Ping(t) => session.push_control(Packet::Pong(t)),
            Packet::Close => {
                session.client_close();
                return false;
            }
            Packet::Noop => {}
            Packet::Open(_) | Packet::Upgrade => {
                session.close(CloseReason::ParseError);
                return false;
            }
        }
        true
    }

    /// A WebSocket request: a new session, or the upgrade of a polling one (E6).
    fn websocket<B>(self: &Arc<Self>, req: &mut Request<B>, sid: Option<Sid>) -> Response<Body> {
        let upgrading = match sid {
            None => None,
            Some(sid) => {
                let Some(session) = self.sessions.read().get(&sid).cloned() else {
                    return error_response(ErrorCode::SessionIdUnknown, None);
                };
                let duplicate = {
                    let mut st = session.state.lock();
                    let duplicate = st.mode != Mode::Polling || st.closed.is_some();
                    if !duplicate {
                        st.mode = Mode::Upgrading;
                    }
                    duplicate
                };
                if duplicate {
                    // One WebSocket per session: the protocol has the server complete this
                    // second one and close it at once, leaving the session as it is.
                    return self.refuse_websocket(req);
                }
                Some(session)
            }
        };
        let (resp, fut) = match self.acceptor.upgrade::<B, Body>(req) {
            Ok(x) => x,
            Err(e) => {
                if let Some(s) = &upgrading {
                    s.state.lock().mode = Mode::Polling;
                }
                let mut r = error_response(ErrorCode::BadRequest, None);
                *r.status_mut() = e.status();
                return r;
            }
        };
        let this = self.clone();
        match upgrading {
            Some(session) => {
                tokio::spawn(async move {
                    match fut.await {
                        Ok(ws) => this.run_upgrade(session, ws).await,
                        Err(_) => session.state.lock().mode = Mode::Polling,
                    }
                });
            }
            None => {
                let (parts, ()) = {
                    let mut r = Request::new(());
                    *r.method_mut() = req.method().clone();
                    *r.uri_mut() = req.uri().clone();
                    *r.headers_mut() = req.headers().clone();
                    if let Some(a) = req.extensions().get::<RemoteAddr>() {
                        r.extensions_mut().insert(*a);
                    }
                    r.into_parts()
                };
                let session = match self.create_session(&parts, Transport::WebSocket) {
                    Ok(s) => s,
                    Err(code) => return error_response(code, None),
                };
                tokio::spawn(async move {
                    match fut.await {
                        Ok(mut ws) => {
                            let open = open_json(session.sid(), Transport::WebSocket, &this.config.timing);
                            let mut t = String::with_capacity(open.len() + 1);
                            t.push('0');
                            t.push_str(&open);
                            if ws.try_send(Message::text(t)).is_err() {
                                session.close(CloseReason::TransportError);
                                this.finish(&session);
                                return;
                            }
                            this.handler.on_open(&session);
                            // A task of its own for the connection's life: this one (with the
                            // upgrade future's state) ends here and frees its memory.
                            tokio::spawn(this.run_ws(session, ws));
                        }
                        Err(_) => {
                            session.close(CloseReason::TransportError);
                            this.finish(&session);
                        }
                    }
                });
            }
        }
        resp
    }

    /// Completes a WebSocket handshake only to close the connection at once (a second
    /// WebSocket for a session that has one, or is getting one).
    fn refuse_websocket<B>(&self, req: &mut Request<B>) -> Response<Body> {
        match self.acceptor.upgrade::<B, Body>(req) {
            Ok((resp, fut)) => {
                tokio::spawn(async move {
                    if let Ok(mut ws) = fut.await {
                        let close = ws.close(CloseCode::POLICY, "session already has a WebSocket");
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), close).await;
                    }
                });
                resp
            }
            Err(e) => {
                let mut r = error_response(ErrorCode::BadRequest, None);
                *r.status_mut() = e.status();
                r
            }
        }
    }

    /// The upgrade: `2probe` → `3probe`, a noop to the pending poll, then `5` (E6). On any
    /// deviation or after `upgrade_timeout` the WebSocket is closed and polling goes on.
    async fn run_upgrade(self: Arc<Self>, session: Arc<Session<H::Data>>, mut ws: UpgradedSocket) {
        let probe = async {
            match ws.recv().await {
                Some(Ok(Message::Text(t))) if &*t == "2probe" => {}
                _ => return false,
            }
            if ws.send(Message::text("3probe")).await.is_err() {
                return false;
            }
            {
                session.state.lock().noop = true;
            }
            session.wake.notify_waiters();
            loop {
                match ws.recv().await {
                    Some(Ok(Message::Text(t))) if &*t == "5" => return true,
                    // A client may ping the probe again; nothing else belongs here.
                    Some(Ok(Message::Text(t))) if &*t == "2probe" => {
                        if ws.send(Message::text("3probe")).await.is_err() {
                            return false;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    _ => return false,
                }
            }
        };
        let ok = matches!(tokio::time::timeout(self.config.upgrade_timeout, probe).await, Ok(true));
        let upgraded = {
            let mut st = session.state.lock();
            st.noop = false;
            if ok && st.closed.is_none() {
                st.mode = Mode::WebSocket;
                true
            } else {
                st.mode = Mode::Polling;
                false
            }
        };
        if !upgraded {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), ws.close(CloseCode::POLICY, "upgrade failed"))
                    .await;
            return;
        }
        session.wake.notify_waiters();
        // The connection's own task from here on (the probe's state is freed).
        tokio::spawn(self.run_ws(session, ws));
    }

    /// Runs the heartbeat and the application deadline.
    fn tick(&self, session: &Arc<Session<H::Data>>) -> Option<Instant> {
        let (at, due) = session.tick(Instant::now());
        if due {
            self.handler.on_deadline(session);
        }
        at
    }

    /// The WebSocket transport: reads packets, writes the queue, runs the heartbeat.
    async fn run_ws(self: Arc<Self>, session: Arc<Session<H::Data>>, mut ws: UpgradedSocket) {
        const HIGH_WATER: usize = 256 << 10;
        let mut batch = Vec::new();
        let mut at = self.tick(&session);
        // One timer for the connection's life, moved only when the deadline changes.
        let mut armed = at.unwrap_or_else(Instant::now);
        let sleep = tokio::time::sleep_until(armed.into());
        tokio::pin!(sleep);
        loop {
            let notified = session.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Queue what is waiting, as far as the socket's buffer allows.
            if ws.buffered_amount() < HIGH_WATER {
                session.drain(&mut batch);
                let mut rest = batch.drain(..);
                let mut failed = false;
                for f in rest.by_ref() {
                    let sent = match &f {
                        Frame::Text(t) => ws.try_send(Message::Text(t.clone())),
                        Frame::Binary(b) => ws.try_send(Message::Binary(b.clone())),
                        Frame::Prepared(p) => ws.try_send_prepared(&p.ws),
                    };
                    match sent {
                        Ok(()) => {}
                        Err(switchboard_ws::Error::WriteBufferFull(_)) => {
                            let mut left = vec![f];
                            left.extend(rest.by_ref());
                            session.requeue_front(left);
                            break;
                        }
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                drop(rest);
                if failed {
                    session.close(CloseReason::TransportError);
                }
            }
            let closed = session.state.lock().closed;
            if let Some(reason) = closed {
                self.finish(&session);
                let code = match reason {
                    CloseReason::TransportClose | CloseReason::TransportError => None,
                    CloseReason::ServerShutdown => Some(CloseCode::GOING_AWAY),
                    _ => Some(CloseCode::NORMAL),
                };
                if let Some(code) = code {
                    let _ = ws.try_send(Message::text("1"));
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), ws.close(code, "")).await;
                }
                return;
            }
            if ws.buffered_amount() >= HIGH_WATER {
                // A slow reader: push the buffer out before taking more from the queue. Reads
                // wait meanwhile; the heartbeat still bounds how long.
                let deadline = at.unwrap_or_else(Instant::now);
                match tokio::time::timeout_at(deadline.into(), ws.flush()).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => session.close(CloseReason::TransportError),
                    Err(_) => at = self.tick(&session),
                }
                continue;
            }
            let sleep_at = at.unwrap_or_else(Instant::now);
            if sleep_at != armed {
                armed = sleep_at;
                sleep.as_mut().reset(armed.into());
            }
            tokio::select! {
                m = ws.recv() => {
                    let now = Instant::now();
                    match m {
                        Some(Ok(Message::Text(t))) => match Packet::decode_text(t) {
                            Ok(p) => { self.on_packet(&session, p, now); }
                            Err(_) => session.close(CloseReason::ParseError),
                        },
                        Some(Ok(Message::Binary(b))) => {
                            self.on_packet(&session, Packet::Message(Data::Binary(b)), now);
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => session.close(CloseReason::TransportClose),
                        Some(Err(_)) => session.close(CloseReason::TransportError),
                    }
                    // A pong moves the next ping.
                    at = self.tick(&session);
                }
                _ = notified => at = self.tick(&session),
                _ = &mut sleep => at = self.tick(&session),
            }
        }
    }
}

impl<H: Handler, B> tower_service::Service<Request<B>> for Engine<H>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(inner.handle(req).await) })
    }
}
