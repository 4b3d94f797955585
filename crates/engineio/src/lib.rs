//! # switchboard-engineio
//!
//! Engine.IO protocol v4, the transport layer under Socket.IO: sessions over HTTP
//! long-polling and WebSocket (on [`switchboard_ws`]), the upgrade from one to the other, and
//! the server's heartbeat.
//!
//! - Sans-IO codec: [`Packet`], [`decode_payload`] / [`encode_payload`] (packets separated by
//!   `\x1e`, binary as `b` + base64). Decoding never panics and runs in linear time; a
//!   malformed input is a [`DecodeError`], answered with 400 and the session closed
//!   (security: E5).
//! - Request checks: [`Query::parse`] maps faults to the protocol's error codes (E2); [`Sid`]
//!   is 128 bits from a CSPRNG (E8).
//! - The server: [`Engine`] is a `tower::Service` for HTTP requests under
//!   [`EngineConfig::path`]; [`EngineLayer`] mounts it in front of another service (an axum
//!   `Router`); [`serve`] runs it standalone on a `TcpListener`. The layer above implements
//!   [`Handler`] and gets a [`Session`] per client, which it writes to with
//!   [`Session::send`] (a bounded queue, see [`EngineConfig::max_queued_packets`]).
//!
//! ## Transports
//! - Long-polling: a GET parks until packets are queued or a ping is due; a POST delivers the
//!   client's packets, all of them, in order. One GET and one POST at a time per session: an
//!   overlapping request gets 400 and closes the session (E4). A POST above `max_payload`
//!   gets 413 (E1); `application/octet-stream` gets 400 (E3).
//! - WebSocket: one text frame per packet, binary messages as binary frames.
//! - Upgrade: the client opens a WebSocket with its `sid` and sends `2probe`; the server
//!   answers `3probe` and sends `noop` to the pending poll; the client sends `5` and the
//!   WebSocket carries everything from then on. One queue feeds both transports, so no packet
//!   is lost or reordered. A stuck upgrade is abandoned after `upgrade_timeout` (E6).
//! - Heartbeat: the server pings every `ping_interval` and closes the session with
//!   [`CloseReason::PingTimeout`] when no pong comes within `ping_timeout` (E9).

pub mod config;
pub mod handshake;
pub mod layer;
pub mod packet;
pub mod server;
pub mod session;

use std::future::Future;

pub use config::{Cors, EngineConfig};
pub use handshake::{ErrorCode, Query, Sid, Timing, Transport};
pub use layer::{EngineLayer, EngineService};
pub use packet::{decode_payload, encode_payload, Data, DecodeError, Packet};
pub use server::{Body, Engine, Handler, Handshake, RemoteAddr};
pub use session::{CloseReason, Frame, Prepared, SendError, Session};

/// Serves `engine` on `listener` (HTTP/1.1 with upgrades) until `shutdown` resolves; requests
/// outside the Engine.IO path get 404. Each connection runs on its own task; the peer address
/// reaches the handler as [`RemoteAddr`].
pub async fn serve<H, F>(listener: tokio::net::TcpListener, engine: Engine<H>, shutdown: F) -> std::io::Result<()>
where
    H: Handler,
    F: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                // Out of file descriptors or similar: back off briefly and go on.
                Err(_) => { tokio::time::sleep(std::time::Duration::from_millis(10)).await; continue; }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let engine = engine.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(RemoteAddr(peer));
                let engine = engine.clone();
                async move { Ok::<_, std::convert::Infallible>(engine.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .with_upgrades()
                .await;
        });
    }
}
