//! Connection state recovery with the official client (`socket.io-client` on Node), over
//! long-polling and WebSocket: a connection cut mid-stream recovers (same id, rooms, data,
//! every missed event once and in order, before the CONNECT reply); a client that stays away
//! too long, or misses more than the log keeps, gets `recovered === false` and the gap event
//! with its reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use switchboard_socketio::engineio::EngineConfig;
use switchboard_socketio::{Handlers, Recovery, RecoveryConfig, SocketIo, SocketIoConfig};
use switchboard_test_support::Proxy;
use tokio::net::TcpListener;
use tokio::process::Command;

async fn server(recovery: RecoveryConfig) -> (SocketIo, String) {
    server_with(recovery, EngineConfig::default(), None).await
}

/// The test server on an ephemeral port.
async fn server_with(recovery: RecoveryConfig, engine: EngineConfig, proxy: Option<Proxy>) -> (SocketIo, String) {
    server_on(recovery, engine, proxy, 0).await
}

/// The test server on `port`; `proxy`: a proxy in front of it that the event `freeze` turns
/// into a black hole.
async fn server_on(
    recovery: RecoveryConfig,
    engine: EngineConfig,
    proxy: Option<Proxy>,
    port: u16,
) -> (SocketIo, String) {
    let handlers = Handlers::new()
        .on_connect(|socket| async move {
            if !socket.recovered() {
                let _ = socket.join("news").await;
                let name = socket.auth().get("name").cloned().unwrap_or(Value::Null);
                socket.set_data(json!({ "name": name }));
            }
        })
        .on("stream", |socket, mut ev| async move {
            // {n, every_ms}: n events to the room "news" and n to this socket by its id, one of
            // each every `every_ms`, whether or not the socket is connected at the time.
            let v: Value = ev.data().unwrap_or_default();
            let n = v["n"].as_u64().unwrap_or(0);
            let every = Duration::from_millis(v["every_ms"].as_u64().unwrap_or(10));
            let _ = ev.ack(&true);
            let ns = socket.ns().clone();
            let sid = socket.id().to_string();
            tokio::spawn(async move {
                for i in 0..n {
                    let _ = ns.broadcast().to("news").emit("tick", &i).await;
                    let _ = ns.broadcast().to(sid.as_str()).emit("direct", &i).await;
                    tokio::time::sleep(every).await;
                }
            });
        })
        .on("cut", |socket, _ev| async move {
            socket.close_connection();
        })
        .on("freeze", move |_socket, _ev| {
            let proxy = proxy.clone();
            async move {
                if let Some(p) = proxy {
                    p.freeze();
                }
            }
        })
        .on("whoami", |socket, mut ev| async move {
            let rooms: Vec<String> = socket.rooms().await.unwrap_or_default().iter().map(|r| r.to_string()).collect();
            let recovery = match socket.recovery() {
                Recovery::Failed(g) => g.to_json(),
                Recovery::Recovered { replayed } => json!({ "replayed": replayed }),
                other => json!(format!("{other:?}")),
            };
            let _ = ev.ack(&json!({
                "rooms": rooms,
                "data": socket.data(),
                "recovered": socket.recovered(),
                "recovery": recovery,
            }));
        });
    let io = SocketIo::builder()
        .config(SocketIoConfig::default().with_engine(engine.with_path("/socket.io/")))
        .connection_state_recovery(recovery)
        .ns("/", handlers)
        .build();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let srv = io.clone();
    tokio::spawn(async move { srv.serve(listener, std::future::pending()).await });
    (io, url)
}

async fn run(url: &str, mode: &str, case: &str) {
    let mut cmd = Command::new("node");
    cmd.arg(interop_dir().join("node/sio_recovery.mjs"))
        .args([url, mode, case])
        .current_dir(interop_dir())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("client timed out").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("sio_recovery {mode} {case}:\n{stdout}");
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

fn node_client() -> bool {
    peer_available("socket.io-client (npm)", "node", &["-e", "require('socket.io-client')"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_recovers_every_missed_event_once_in_order() {
    if !node_client() {
        return;
    }
    for mode in ["polling", "websocket"] {
        let (_io, url) = server(RecoveryConfig::default()).await;
        run(&url, mode, "recover").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_missed_more_than_the_log_keeps_is_told() {
    if !node_client() {
        return;
    }
    for mode in ["polling", "websocket"] {
        let (_io, url) = server(RecoveryConfig::default().with_log_limits(10, 1 << 20)).await;
        run(&url, mode, "trimmed").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stayed_away_too_long_is_told() {
    if !node_client() {
        return;
    }
    for mode in ["polling", "websocket"] {
        let (_io, url) =
            server(RecoveryConfig::default().with_max_disconnection_duration(Duration::from_millis(500))).await;
        run(&url, mode, "expired").await;
    }
}

/// The network path dies without a FIN (a proxy turns the connection into a black hole) and the
/// client reconnects before the server noticed (its heartbeat is slow here): the old connection
/// is closed for it and its session taken over. Everything missed arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_path_without_fin_recovers_too() {
    if !node_client() {
        return;
    }
    for mode in ["polling", "websocket"] {
        let engine = EngineConfig::default()
            .with_ping_interval(Duration::from_millis(3000))
            .with_ping_timeout(Duration::from_millis(3000));
        // The server's address, behind a proxy the server can freeze.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = l.local_addr().unwrap().port();
        drop(l);
        let proxy = tokio::task::spawn_blocking(move || Proxy::start(target)).await.unwrap();
        let (_io, _) = server_on(RecoveryConfig::default(), engine, Some(proxy.clone()), target).await;
        run(&format!("http://127.0.0.1:{}", proxy.port), mode, "blackhole").await;
    }
}
