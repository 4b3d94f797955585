//! Long-polling without sticky sessions: an Engine.IO request for a session another node owns
//! (its id carries the owner's tag) is forwarded to that node over node-to-node HTTP, and a
//! WebSocket upgrade of such a session is proxied as bytes after the `101`.
//!
//! Bounded: at most [`MAX_FORWARDS`] forwarded requests at once (then `503`), each with a
//! deadline (a parked poll may wait up to the ping interval). A forwarded request carries
//! `x-switchboard-forwarded`, and a node never forwards such a request again, so a stale
//! routing view cannot loop. When the owner is unknown or unreachable the client gets what
//! Engine.IO answers for an unknown session (`400 {"code":1}`), and reconnects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderValue, Request, StatusCode};
use hyper_util::rt::TokioIo;
use switchboard_socketio::engineio::Sid;
use tokio::sync::Semaphore;

use crate::hub::Hub;

/// The header that marks a forwarded request.
pub const FORWARDED: &str = "x-switchboard-forwarded";

/// Forwarded requests in flight at once, per node.
pub const MAX_FORWARDS: usize = 4096;

/// Forwarding state: the in-flight cap.
#[derive(Debug)]
pub struct Forwarder {
    permits: Arc<Semaphore>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Forwarder { permits: Arc::new(Semaphore::new(MAX_FORWARDS)) }
    }
}

/// Where a request must go.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Here.
    Local,
    /// To the owner node at this address.
    Owner(SocketAddr),
    /// The owner is not a live node.
    Gone,
}

fn query_sid(q: &str) -> Option<&str> {
    q.split('&').find_map(|kv| kv.strip_prefix("sid="))
}

/// Whether `req` is for a session another node owns.
pub fn route<B>(hub: &Hub, req: &Request<B>) -> Route {
    let Some(cluster) = &hub.cluster else { return Route::Local };
    if !req.uri().path().starts_with("/socket.io/") || req.headers().contains_key(FORWARDED) {
        return Route::Local;
    }
    let Some(sid) = req.uri().query().and_then(query_sid).and_then(Sid::parse) else { return Route::Local };
    if sid.tag() == Sid::local_tag() {
        return Route::Local;
    }
    let owner = cluster.peers().into_iter().find(|p| switchboard_cluster::tag_of(&p.uid) == sid.tag());
    let addr = owner
        .as_ref()
        .and_then(|p| p.info.get("info")?.get("advertise")?.as_str().map(str::to_owned))
        .and_then(|a| a.strip_prefix("http://").and_then(|h| h.trim_end_matches('/').parse::<SocketAddr>().ok()));
    match addr {
        Some(a) => Route::Owner(a),
        None => Route::Gone,
    }
}

/// Engine.IO's answer for an unknown session.
pub fn unknown_session() -> Response {
    let mut r = Response::new(Body::from(r#"{"code":1,"message":"Session ID unknown"}"#));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn busy() -> Response {
    let mut r =
        Response::new(Body::from(r#"{"ok":false,"error":"too many forwarded requests","code":"forward_busy"}"#));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

const HOP_BY_HOP: [&str; 6] =
    ["keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer"];

/// Forwards `req` to the owner at `to` and answers with what it answers.
pub async fn forward(
    hub: Arc<Hub>,
    mut req: Request<hyper::body::Incoming>,
    to: SocketAddr,
    client: SocketAddr,
) -> Response {
    let Ok(permit) = hub.forwarder.permits.clone().try_acquire_owned() else {
        hub.metrics.handshake_failure("forward_busy");
        return busy();
    };
    hub.metrics.forwarded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let s = &hub.config.server;
    let deadline = Duration::from_millis(s.ping_interval_ms + s.ping_timeout_ms + 5_000);
    let upgrade = req.headers().get(header::UPGRADE).is_some();
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    if !upgrade {
        parts.headers.remove(header::CONNECTION);
    }
    parts.headers.insert(FORWARDED, HeaderValue::from_static("1"));
    if let Ok(v) = HeaderValue::from_str(&client.ip().to_string()) {
        parts.headers.insert("x-forwarded-for", v);
    }
    let out = Request::from_parts(parts, body);
    let sent = tokio::time::timeout(deadline, async move {
        let tcp = tokio::net::TcpStream::connect(to).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        sender.send_request(out).await.map_err(|e| e.to_string())
    })
    .await;
    let resp = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(owner = %to, error = e, "forwarding to the session's node failed");
            return unknown_session();
        }
        Err(_) => {
            tracing::warn!(owner = %to, "forwarding to the session's node timed out");
            let mut r = unknown_session();
            *r.status_mut() = StatusCode::GATEWAY_TIMEOUT;
            return r;
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_up) = client_upgrade {
            let (parts, body) = resp.into_parts();
            let owner_resp = Response::from_parts(parts.clone(), body);
            tokio::spawn(async move {
                let _permit = permit;
                let (Ok(owner_up), Ok(client_up)) = (hyper::upgrade::on(owner_resp).await, client_up.await) else {
                    return;
                };
                let (mut a, mut b) = (TokioIo::new(owner_up), TokioIo::new(client_up));
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            });
            let mut r = Response::new(Body::empty());
            *r.status_mut() = parts.status;
            *r.headers_mut() = parts.headers;
            return r;
        }
    }
    let (parts, body) = resp.into_parts();
    // The permit is held while the body streams.
    let body = Body::new(http_body_util::BodyExt::map_err(body, move |e| {
        let _ = &permit;
        axum::Error::new(e)
    }));
    Response::from_parts(parts, body)
}
