//! HTTP: the router (demo page, `/ws`, `/api/*`, `/metrics`, `/healthz`, Socket.IO under
//! `/socket.io/`), the accept loop (per-IP and global caps, TLS with a deadline), graceful
//! shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_socketio::engineio::RemoteAddr;
use switchboard_ws::proto::handshake::server::{normalize_origin, OriginPolicy};
use switchboard_ws::{Acceptor, CloseCode, Message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tower::ServiceExt;

use crate::auth::{secret_eq, Identity};
use crate::hub::{watch_expiry, Hub};
use crate::limits::PerIp;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const SOCKET_IO_JS: &str = include_str!("../assets/vendor/socket.io-client/socket.io.min.js");
const OPENAPI: &str = include_str!("../assets/openapi.json");
/// The demo page's icon: a small SVG (browsers take SVG at `/favicon.ico`).
const FAVICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1d2330"/><path d="M4 5h8M4 8h5M4 11h7" stroke="#3a5bd9" stroke-width="2" stroke-linecap="round"/></svg>"##;

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, Json(v)).into_response()
}

/// The one error shape of the HTTP API, whatever refused the request (a handler, a body that
/// does not parse, an unknown field, a size limit, an unknown path or method):
/// `{"ok": false, "error": "<what is wrong>"}` with the status.
fn api_error(status: StatusCode, error: impl Into<String>) -> Response {
    json_response(status, json!({"ok": false, "error": error.into()}))
}

/// Largest API request body, in bytes (413 above it).
pub const API_BODY_LIMIT: usize = 1 << 20;

/// A JSON request body whose rejections (not JSON, wrong content type, too large, a missing
/// or unknown field, a wrong type) answer in the API's error shape; 422 names the field.
struct ApiJson<T>(T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(api_error(e.status(), e.body_text())),
        }
    }
}

/// The router.
pub fn router(hub: Arc<Hub>) -> Router {
    let api = Router::new()
        .route("/api/emit", post(api_emit))
        .route("/api/call", post(api_call))
        .route("/api/sockets", get(api_sockets))
        .route("/api/disconnect", post(api_disconnect))
        .route("/api/join", post(api_join))
        .route("/api/leave", post(api_leave))
        .route("/api/stats", get(api_stats))
        .route("/api/nodes", get(api_nodes))
        .route("/api/history", get(api_history))
        .route_layer(axum::middleware::from_fn_with_state(hub.clone(), require_key));
    Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML) }))
        .route(
            "/assets/socket.io.min.js",
            get(|| async { ([(header::CONTENT_TYPE, "application/javascript; charset=utf-8")], SOCKET_IO_JS) }),
        )
        .route(
            "/favicon.ico",
            get(|| async {
                ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "max-age=86400")], FAVICON)
            }),
        )
        .route("/ws", get(ws_endpoint))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .merge(api)
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "no such path") })
        .method_not_allowed_fallback(|| async {
            api_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this path")
        })
        .layer(axum::extract::DefaultBodyLimit::max(API_BODY_LIMIT))
        .with_state(hub.clone())
        .layer(hub.io.layer())
}

async fn healthz(State(hub): State<Arc<Hub>>) -> Response {
    if hub.draining.load(Ordering::SeqCst) {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"status": "draining"}));
    }
    json_response(StatusCode::OK, json!({"status": "ok"}))
}

async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    hub.metrics.clients.store(hub.slots.total() as i64, Ordering::Relaxed);
    let extra = crate::metrics::Extra {
        collected: hub.collect.written.load(Ordering::Relaxed),
        hooks: hub.hooks.stats.counts(),
        hook_seconds: hub.hooks.stats.seconds(),
        cluster: hub.cluster.as_ref(),
    };
    let text = hub.metrics.render(&extra);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// Bearer API key, compared in constant time (security: A4). No keys: open (loopback only,
/// enforced by the config).
///
/// Every call is logged (info): method, path, status, latency and which key was used (its
/// position in `api.keys`, `key=1` for the first; never the key itself).
async fn require_key(State(hub): State<Arc<Hub>>, req: Request, next: axum::middleware::Next) -> Response {
    let t0 = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let keys = &hub.config.api.keys;
    let mut key_id = 0usize;
    if !keys.is_empty() {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Every key is compared, so the time does not tell which one nearly matched.
        for (i, k) in keys.iter().enumerate() {
            if secret_eq(k, given) {
                key_id = i + 1;
            }
        }
        if key_id == 0 {
            hub.metrics.handshake_failure("api_key");
            let peer = req.extensions().get::<RemoteAddr>().map(|r| r.0.ip());
            tracing::warn!(%method, path, status = 401, peer = ?peer, "api call refused: missing or wrong API key");
            return api_error(StatusCode::UNAUTHORIZED, "missing or wrong API key");
        }
    }
    let resp = next.run(req).await;
    let key = if keys.is_empty() { "open".to_owned() } else { key_id.to_string() };
    tracing::info!(
        %method,
        path,
        status = resp.status().as_u16(),
        latency_ms = t0.elapsed().as_secs_f64() * 1e3,
        key,
        "api call"
    );
    resp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitReq {
    event: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
    /// Ask every recipient for an acknowledgement and gather them (across nodes).
    #[serde(default)]
    ack: bool,
    /// How long to wait for acknowledgements (capped by `api.max_call_timeout_ms`).
    timeout_ms: Option<u64>,
}

async fn api_emit(State(hub): State<Arc<Hub>>, ApiJson(r): ApiJson<EmitReq>) -> Response {
    if switchboard_socketio::is_reserved_event(&r.event) || r.event.is_empty() {
        return api_error(StatusCode::BAD_REQUEST, "bad event name");
    }
    let mut rooms = r.rooms;
    rooms.extend(r.users.iter().map(|u| format!("user:{u}")));
    let (data, bins) = match crate::hub::binary_from_json(&r.data) {
        Ok(x) => x,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e),
    };
    if r.ack {
        let timeout = Duration::from_millis(r.timeout_ms.unwrap_or(5000).min(hub.config.api.max_call_timeout_ms));
        return match hub.publish_with_acks(&rooms, &r.event, &data, &bins, &r.except, timeout).await {
            Ok(a) => json_response(
                StatusCode::OK,
                json!({"ok": a.complete, "delivered": a.expected, "acks": a.acks, "missing": a.missing, "missing_nodes": a.missing_nodes}),
            ),
            Err(e) => hub_error(e),
        };
    }
    match hub.publish(&rooms, &r.event, &data, &bins, &r.except).await {
        Ok(d) => {
            let nodes: serde_json::Map<String, Value> = d.nodes.iter().map(|(n, c)| (n.clone(), json!(c))).collect();
            json_response(
                StatusCode::OK,
                json!({"ok": d.missing_nodes.is_empty(), "delivered": d.delivered, "nodes": nodes, "missing_nodes": d.missing_nodes}),
            )
        }
        Err(e) => hub_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallReq {
    to: Option<String>,
    user: Option<String>,
    event: String,
    #[serde(default)]
    data: Value,
    timeout_ms: Option<u64>,
}

async fn api_call(State(hub): State<Arc<Hub>>, ApiJson(r): ApiJson<CallReq>) -> Response {
    let max = hub.config.api.max_call_timeout_ms;
    let timeout = Duration::from_millis(r.timeout_ms.unwrap_or(5000).min(max));
    let (target, user) = match (r.to, r.user) {
        (Some(t), _) => (t, false),
        (None, Some(u)) => (u, true),
        (None, None) => return api_error(StatusCode::BAD_REQUEST, "give `to` or `user`"),
    };
    match hub.call(&target, user, &r.event, &r.data, timeout).await {
        Ok(data) => json_response(StatusCode::OK, json!({"ok": true, "data": data})),
        Err(e) => hub_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomQuery {
    room: Option<String>,
}

async fn api_sockets(State(hub): State<Arc<Hub>>, q: Result<Query<RoomQuery>, QueryRejection>) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return api_error(e.status(), e.body_text()),
    };
    match hub.list(q.room.as_deref()).await {
        Ok(clients) => json_response(StatusCode::OK, json!({"clients": clients})),
        Err(e) => hub_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    room: String,
    since: Option<String>,
    limit: Option<usize>,
}

/// A room's history: 200 `{ok, room, events: [{event, data, offset, at_ms}]}`; a `since` the
/// history no longer reaches is 410 `{ok: false, reason, lost}` (reload instead), a malformed one
/// 400, no history (recovery off) 404.
async fn api_history(State(hub): State<Arc<Hub>>, q: Result<Query<HistoryQuery>, QueryRejection>) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return api_error(e.status(), e.body_text()),
    };
    if let Err(e) = hub.policy.check_name(&q.room) {
        return api_error(StatusCode::BAD_REQUEST, e);
    }
    if q.since.as_ref().is_some_and(|s| s.len() > 256) {
        return api_error(StatusCode::BAD_REQUEST, "`since` is an event's offset (at most 256 bytes)");
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1_000);
    match hub.history(&q.room, q.since.as_deref(), limit).await {
        Ok(events) => json_response(StatusCode::OK, json!({"ok": true, "room": q.room, "events": events})),
        Err(g) => {
            use switchboard_socketio::GapReason;
            let status = match g.reason {
                GapReason::BadOffset => StatusCode::BAD_REQUEST,
                GapReason::NoHistory => StatusCode::NOT_FOUND,
                _ => StatusCode::GONE,
            };
            json_response(status, json!({"ok": false, "reason": g.reason.as_str(), "lost": g.lost}))
        }
    }
}

/// A hub error as an API answer: 404 for an unknown client, 504 for a timeout or nodes that
/// did not answer (named), 502 when the cluster bus failed, 409 for a refusal.
fn hub_error(e: crate::hub::HubError) -> Response {
    use crate::hub::HubError;
    let status = match &e {
        HubError::NoSuchClient => StatusCode::NOT_FOUND,
        HubError::Timeout | HubError::NodesMissing(_) => StatusCode::GATEWAY_TIMEOUT,
        HubError::Disconnected => StatusCode::GONE,
        HubError::Bus(_) => StatusCode::BAD_GATEWAY,
        HubError::Refused(_) => StatusCode::CONFLICT,
    };
    let mut body = json!({"ok": false, "error": e.to_string()});
    if let HubError::NodesMissing(n) = &e {
        body["missing_nodes"] = json!(n);
    }
    json_response(status, body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdsReq {
    #[serde(default)]
    ids: Vec<String>,
    room: Option<String>,
}

async fn api_disconnect(State(hub): State<Arc<Hub>>, ApiJson(r): ApiJson<IdsReq>) -> Response {
    let mut ids = r.ids;
    if let Some(room) = &r.room {
        match hub.list(Some(room)).await {
            Ok(list) => ids.extend(list.iter().filter_map(|c| c["id"].as_str().map(str::to_owned))),
            Err(e) => return hub_error(e),
        }
    }
    let mut n = 0;
    for id in &ids {
        match hub.disconnect(id).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => return hub_error(e),
        }
    }
    json_response(StatusCode::OK, json!({"ok": true, "disconnected": n}))
}

async fn api_join(State(hub): State<Arc<Hub>>, ApiJson(r): ApiJson<IdsReq>) -> Response {
    let Some(room) = r.room else {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, "missing field `room`");
    };
    let mut joined = 0;
    let mut errors = Vec::new();
    for id in &r.ids {
        match hub.join(id, &room, None).await {
            Ok(()) => joined += 1,
            Err(e @ (crate::hub::HubError::Bus(_) | crate::hub::HubError::NodesMissing(_))) => return hub_error(e),
            Err(e) => errors.push(json!({"id": id, "error": e.to_string()})),
        }
    }
    json_response(StatusCode::OK, json!({"ok": errors.is_empty(), "joined": joined, "errors": errors}))
}

async fn api_leave(State(hub): State<Arc<Hub>>, ApiJson(r): ApiJson<IdsReq>) -> Response {
    let Some(room) = r.room else {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, "missing field `room`");
    };
    for id in &r.ids {
        if let Err(e) = hub.leave(id, &room).await {
            return hub_error(e);
        }
    }
    json_response(StatusCode::OK, json!({"ok": true}))
}

async fn api_nodes(State(hub): State<Arc<Hub>>) -> Response {
    json_response(StatusCode::OK, hub.nodes())
}

async fn api_stats(State(hub): State<Arc<Hub>>) -> Response {
    let m = &hub.metrics;
    json_response(
        StatusCode::OK,
        json!({
            "connections": {
                "socket.io": m.sio_connections.load(Ordering::Relaxed),
                "ws": m.ws_connections.load(Ordering::Relaxed),
                "tcp": m.tcp_connections.load(Ordering::Relaxed),
            },
            "sessions": hub.io.engine().session_count(),
            "messages_in": m.messages_in.load(Ordering::Relaxed),
            "messages_out": m.messages_out.load(Ordering::Relaxed),
            "drops": m.drops.load(Ordering::Relaxed),
            "collected": hub.collect.written.load(Ordering::Relaxed),
            "draining": hub.draining.load(Ordering::SeqCst),
        }),
    )
}

/// Bytes a `/ws` client may have waiting in its socket buffer before it counts as a slow
/// consumer (with `server.max_queued_messages` queued behind it).
const WS_WRITE_BUFFER: usize = 256 << 10;

fn bearer_or_query_token(req: &Request) -> Option<String> {
    if let Some(t) =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.to_owned());
    }
    req.uri().query().and_then(|q| {
        q.split('&').find_map(|kv| kv.strip_prefix("token=")).map(|t| t.replace("%2E", ".").replace("%2e", "."))
    })
}

/// The plain WebSocket endpoint (`/ws`): a token in `?token=` or `Authorization: Bearer`, then
/// the JSON protocol of `docs/hub.md`.
async fn ws_endpoint(State(hub): State<Arc<Hub>>, mut req: Request) -> Response {
    if hub.draining.load(Ordering::SeqCst) {
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "server shutting down");
    }
    // The client's slot, held until its connection ends (security: R5).
    let ip = req.extensions().get::<RemoteAddr>().map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |r| r.0.ip());
    let slot = match hub.slots.try_acquire(ip) {
        Ok(s) => s,
        Err(e) => {
            hub.metrics.handshake_failure("connection_limit");
            tracing::info!(%ip, reason = e.message(), "ws client refused: connection limit");
            let body = json!({"ok": false, "error": e.message(), "code": "connection_limit"});
            return json_response(StatusCode::SERVICE_UNAVAILABLE, body);
        }
    };
    let mut ident = match hub.verifier.identify(bearer_or_query_token(&req).as_deref()) {
        Ok(i) => i,
        Err(e) => {
            hub.metrics.handshake_failure("auth");
            tracing::info!(%ip, code = e.code(), "ws client refused: authentication");
            let mut body = e.to_json();
            body["ok"] = json!(false);
            body["error"] = json!(e.to_string());
            return json_response(StatusCode::UNAUTHORIZED, body);
        }
    };
    // The backend's say, when a connect hook is configured (the client has no id yet).
    // The query without the token (the hub checked it; the backend gets the identity).
    let query: Vec<&str> =
        req.uri().query().unwrap_or("").split('&').filter(|kv| !kv.is_empty() && !kv.starts_with("token=")).collect();
    let query_for_info = query.join("&");
    let extra = json!({"address": ip.to_string(), "query": query_for_info});
    match hub.connect_hook("", &ident, "ws", extra).await {
        Ok(rooms) => ident.rooms.extend(rooms),
        Err(reply) => {
            hub.metrics.handshake_failure("hook");
            tracing::info!(%ip, code = ?reply["code"], "ws client refused by the connect hook");
            let status =
                if reply["code"] == "hook_denied" { StatusCode::FORBIDDEN } else { StatusCode::SERVICE_UNAVAILABLE };
            return json_response(status, reply);
        }
    }
    let s = &hub.config.server;
    let origins = if s.origins.is_empty() { OriginPolicy::Any } else { OriginPolicy::allow_list(&s.origins) };
    let cfg = switchboard_ws::Config::default()
        .with_max_message_size(s.max_message_bytes)
        .with_max_frame_size(s.max_message_bytes)
        .with_ping_interval(Some(Duration::from_millis(s.ping_interval_ms)))
        .with_pong_timeout(Duration::from_millis(s.ping_timeout_ms))
        // The outbound cap in bytes on top of the message queue (security: R1).
        .with_max_write_buffer(WS_WRITE_BUFFER);
    let acceptor = Acceptor::new().config(cfg).origins(origins);
    match acceptor.upgrade::<Body, Body>(&mut req) {
        Ok((resp, fut)) => {
            tokio::spawn(async move {
                if let Ok(ws) = fut.await {
                    let _slot = slot;
                    run_ws_client(hub, ident, ws, ip, query_for_info).await;
                }
            });
            resp
        }
        Err(e) => {
            let origin = e.status() == StatusCode::FORBIDDEN;
            hub.metrics.handshake_failure(if origin { "origin" } else { "bad_handshake" });
            tracing::info!(%ip, status = e.status().as_u16(), error = %e, "ws client refused: {}", if origin { "origin" } else { "bad handshake" });
            (e.status(), e.to_string()).into_response()
        }
    }
}

async fn run_ws_client(
    hub: Arc<Hub>,
    ident: Identity,
    mut ws: switchboard_ws::UpgradedSocket,
    ip: IpAddr,
    query: String,
) {
    let (tx, mut rx) = mpsc::channel(hub.config.server.max_queued_messages);
    let info = switchboard_socketio::ConnInfo { query: query.into(), remote: Some(SocketAddr::new(ip, 0)) };
    let Some(client) = hub.add_ws(ident.clone(), tx, info) else { return };
    let cid = client.id().to_string();
    let ns = client.socket.ns().clone();
    let _ = ns.adapter().socket_connected(&ns, client.id()).await;
    tracing::info!(client = cid, user = ident.sub, %ip, "ws client connected");
    let mut rooms = vec![format!("user:{}", ident.sub)];
    rooms.extend(ident.rooms.iter().cloned());
    let _ = client.socket.join(rooms).await;
    let welcome = json!({"type": "welcome", "id": cid, "user": ident.sub}).to_string();
    let _ = ws.send(Message::text(welcome)).await;
    let (exp_tx, mut exp_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(exp) = ident.exp {
        let (weak, hub2, sid) = (Arc::downgrade(&client), Arc::downgrade(&hub), client.id());
        tokio::spawn(watch_expiry(
            exp,
            move || {
                weak.upgrade()?;
                Some(hub2.upgrade()?.ident(sid).and_then(|i| i.exp))
            },
            move || {
                let _ = exp_tx.send(());
            },
        ));
    }
    // Why the connection ended, for the log (the close code we send, if any, is `close`).
    let mut why: &str = "closed by the client";
    let close: Option<(u16, &str)> = loop {
        tokio::select! {
            m = ws.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    hub.metrics.bytes_in.fetch_add(t.len() as u64, Ordering::Relaxed);
                    let reply = handle_ws_text(&hub, &client, &t).await;
                    if let Some(r) = reply {
                        hub.metrics.bytes_out.fetch_add(r.len() as u64, Ordering::Relaxed);
                        if ws.send(Message::text(r)).await.is_err() {
                            break None;
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let r = json!({"type": "error", "error": "binary frames are not part of the protocol"}).to_string();
                    if ws.send(Message::text(r)).await.is_err() {
                        break None;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Err(e)) => {
                    why = match e {
                        switchboard_ws::Error::Protocol(_) => "protocol error",
                        _ => "connection lost",
                    };
                    break None;
                }
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(s) => {
                    hub.metrics.bytes_out.fetch_add(s.len() as u64, Ordering::Relaxed);
                    // Written by the next read poll; a full buffer means a slow consumer.
                    match ws.try_send(Message::Text(s)) {
                        Ok(()) => {}
                        Err(switchboard_ws::Error::WriteBufferFull(_)) => {
                            hub.metrics.drops.fetch_add(1, Ordering::Relaxed);
                            break Some((1008, "slow consumer"));
                        }
                        Err(_) => break None,
                    }
                }
                None => break None,
            },
            _ = client.sink.kill.notified() => {
                if let Some(c) = *client.sink.closing.lock() {
                    break Some(c);
                }
            }
            _ = &mut exp_rx => break Some((1008, "token expired")),
        }
    };
    hub.remove_ws(&client);
    match close {
        Some((code, reason)) => tracing::info!(client = cid, user = ident.sub, code, reason, "ws client disconnected"),
        None => tracing::info!(client = cid, user = ident.sub, reason = why, "ws client disconnected"),
    }
    if let Some((code, reason)) = close {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(CloseCode(code), reason)).await;
    }
}

async fn handle_ws_text(hub: &Hub, client: &crate::hub::WsClient, text: &str) -> Option<String> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Some(json!({"type": "error", "error": "bad request: not JSON"}).to_string());
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    match kind {
        "ack" => {
            if let Some(n) = id.as_u64() {
                let data = v.get("data").cloned().unwrap_or(Value::Null);
                client
                    .socket
                    .receive_ack(n, switchboard_socketio::AckResponse { args: vec![data], binary: Vec::new() });
            }
            None
        }
        "refresh" => {
            let token = v.get("token").and_then(Value::as_str).unwrap_or("");
            let sub = hub.ident(client.id()).map(|i| i.sub).unwrap_or_default();
            let r = match hub.verifier.verify(token) {
                Ok(new) if new.sub == sub => {
                    let exp = new.exp;
                    hub.set_ident(client.id(), new);
                    json!({"ok": true, "exp": exp})
                }
                Ok(_) => json!({"ok": false, "error": "token is for another user"}),
                Err(e) => json!({"ok": false, "error": e.to_string(), "code": e.code()}),
            };
            Some(reply(id, r))
        }
        "ping" => Some(json!({"type": "pong", "id": id}).to_string()),
        _ => {
            let ident = hub.ident(client.id())?;
            let r = hub.client_request(&client.id().to_string(), &ident, kind, &v, &[]).await;
            Some(reply(id, r))
        }
    }
}

fn reply(id: Value, mut r: Value) -> String {
    if let Value::Object(m) = &mut r {
        m.insert("type".into(), Value::String("reply".into()));
        m.insert("id".into(), id);
    }
    r.to_string()
}

/// A TCP connection's place in the per-address count; dropping it gives the place back.
struct SlotGuard {
    slots: Arc<PerIp>,
    ip: IpAddr,
    hub: Arc<Hub>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.release(self.ip);
        self.hub.metrics.tcp_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a request would start a new client (the handshakes draining refuses).
fn is_new_client(req: &http::Request<hyper::body::Incoming>) -> bool {
    let path = req.uri().path();
    let q = req.uri().query().unwrap_or("");
    (path.starts_with("/socket.io") && !q.contains("sid=")) || path == "/ws"
}

/// Whether `origin` is the hub's own: the scheme and `Host` this request was sent to (a page
/// the hub served itself). Such requests pass an `server.origins` allowlist.
fn is_own_origin(origin: &str, host: Option<&str>, tls: bool) -> bool {
    let Some(host) = host.filter(|h| !h.is_empty()) else { return false };
    let own = format!("{}://{host}", if tls { "https" } else { "http" });
    matches!(
        (normalize_origin(origin), normalize_origin(&own)),
        (Some(a), Some(b)) if a == b
    )
}

async fn serve_conn<I>(
    hub: Arc<Hub>,
    app: Router,
    io: I,
    peer: SocketAddr,
    tls: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let h2 = hub.clone();
    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        // Behind a trusted proxy, the address it forwards; otherwise the peer's.
        let client = h2.proxies.client_addr(peer, req.headers());
        req.extensions_mut().insert(RemoteAddr(client));
        let app = app.clone();
        let hub = h2.clone();
        async move {
            // The hub's own page is always allowed: a same-origin request drops its Origin
            // header before the allowlist sees it (it needs no CORS either).
            if !hub.config.server.origins.is_empty() {
                let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok());
                let own = req
                    .headers()
                    .get(header::ORIGIN)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|o| is_own_origin(o, host, tls));
                if own {
                    req.headers_mut().remove(header::ORIGIN);
                }
            }
            if req.uri().path().starts_with("/socket.io") && !hub.config.server.origins.is_empty() {
                let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
                if origin.is_some() && !OriginPolicy::allow_list(&hub.config.server.origins).allows(origin) {
                    tracing::info!(ip = %client.ip(), origin = ?origin, "socket.io client refused: origin");
                }
            }
            // A session of another node: to its owner (long-polling without sticky sessions).
            match crate::forward::route(&hub, &req) {
                crate::forward::Route::Local => {}
                crate::forward::Route::Owner(to) => return Ok(crate::forward::forward(hub, req, to, client).await),
                crate::forward::Route::Gone => return Ok(crate::forward::unknown_session()),
            }
            if hub.draining.load(Ordering::SeqCst) && is_new_client(&req) {
                let mut r = Response::new(Body::from("server shutting down"));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Ok::<_, std::convert::Infallible>(r);
            }
            app.oneshot(req.map(Body::new)).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(hub.config.server.handshake_timeout_ms))
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    // Shutting down: an idle keep-alive connection closes now; one with a request under way
    // finishes it (a new client's handshake gets 503) and then closes.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Accepts until `shutdown`, then drains: new handshakes get 503, every client is closed with
/// 1001 / "server shutting down", and it waits for them up to `shutdown_grace_ms`.
pub async fn run(
    hub: Arc<Hub>,
    listeners: Vec<tokio::net::TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let app = router(hub.clone());
    let slots = Arc::new(PerIp::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    let s = hub.config.server.clone();
    // One accept task per listener (the public one, and with reuse_port this process's own
    // address for other nodes); what they accept is served alike.
    let (acc_tx, mut accepted) = mpsc::channel::<(tokio::net::TcpStream, SocketAddr)>(64);
    let mut acceptors = Vec::new();
    for listener in listeners {
        let tx = acc_tx.clone();
        acceptors.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(x) => {
                        if tx.send(x).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off, keep serving (security: R5).
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    drop(acc_tx);
    loop {
        let (tcp, peer) = tokio::select! {
            r = accepted.recv() => match r {
                Some(x) => x,
                None => break,
            },
            _ = &mut shutdown => break,
        };
        {
            // TCP connections, beside the client slots: twice the client caps plus headroom
            // (a polling client may hold a GET and a POST; the API and the page need some);
            // a trusted proxy carries many clients, so only the total applies to it.
            let per_ip_cap = s.max_connections_per_ip.saturating_mul(2).saturating_add(16);
            let total_cap = s.max_connections.saturating_mul(2).saturating_add(64);
            let cap = (!hub.proxies.trusts(peer.ip())).then_some(per_ip_cap);
            let total_ok = || (hub.metrics.tcp_connections.load(Ordering::Relaxed) as usize) < total_cap;
            if !slots.acquire(peer.ip(), cap, total_ok) {
                hub.metrics.handshake_failure("connection_limit");
                drop(tcp);
                continue;
            }
        }
        hub.metrics.tcp_connections.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let guard = SlotGuard { slots: slots.clone(), ip: peer.ip(), hub: hub.clone() };
        let (hub, app, tls, stop) = (hub.clone(), app.clone(), tls.clone(), stop_rx.clone());
        let deadline = Duration::from_millis(s.handshake_timeout_ms);
        tokio::spawn(async move {
            let _guard = guard;
            match tls {
                Some(acc) => match tokio::time::timeout(deadline, acc.accept(tcp)).await {
                    Ok(Ok(stream)) => serve_conn(hub, app, stream, peer, true, stop).await,
                    // A stalled or failed TLS handshake is dropped (security: T1, T2).
                    _ => hub.metrics.handshake_failure("tls"),
                },
                None => serve_conn(hub, app, tcp, peer, false, stop).await,
            }
        });
    }
    for a in acceptors {
        a.abort();
    }
    drop(accepted);
    let t0 = Instant::now();
    tracing::info!(
        clients = hub.connections(),
        tcp = hub.metrics.tcp_connections.load(Ordering::Relaxed),
        "shutting down: draining clients"
    );
    hub.drain();
    let _ = stop_tx.send(true);
    let end = t0 + Duration::from_millis(s.shutdown_grace_ms);
    let busy = || hub.connections() > 0 || hub.metrics.tcp_connections.load(Ordering::Relaxed) > 0;
    while Instant::now() < end && busy() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (clients, tcp) = (hub.connections(), hub.metrics.tcp_connections.load(Ordering::Relaxed));
    let waited_ms = t0.elapsed().as_millis() as u64;
    if clients > 0 || tcp > 0 {
        tracing::warn!(clients, tcp, waited_ms, "stopped at the grace deadline with connections still open");
    } else {
        tracing::info!(waited_ms, "stopped: every connection closed");
    }
}
