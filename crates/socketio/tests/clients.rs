//! The official clients against our server: `socket.io-client` (npm, on Node) and
//! `python-socketio` (pip), over long-polling only, WebSocket only, and polling → upgrade.
//! Covers connect/disconnect, events and acks both ways, binary, rooms and broadcast with
//! except, namespaces (static, dynamic, multiplexed), auth refusal, the heartbeat timeout.
//! The server side of each check is read back from the test server's log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;
use tokio::process::Command;

const MODES: [&str; 3] = ["polling", "websocket", "upgrade"];

async fn run(program: &str, script: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.arg(interop_dir().join(script)).args(args).current_dir(interop_dir()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output()).await.expect("client timed out").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{script} {args:?}:\n{stdout}");
    assert!(out.status.success(), "{script} {args:?} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    stdout
}

fn sid_after(out: &str, tag: &str) -> String {
    out.lines().find_map(|l| l.strip_prefix(tag)).map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// What every client run must have left in the server's log.
/// `reasons`: how the client's own disconnect may show on the server (python-socketio may
/// close the transport before its DISCONNECT packet leaves).
async fn check_server_side(srv: &TestServer, hb: &TestServer, out: &str, reasons: &[&str]) {
    let c = sid_after(out, "client-disconnect-sid ");
    assert!(!c.is_empty(), "{out}");
    assert!(srv.log.wait_for(&format!("disconnect / {c} "), Duration::from_secs(5)).await, "{:?}", srv.log.lines());
    assert!(
        reasons.iter().any(|r| srv.log.contains(&format!("disconnect / {c} {r} rooms=1"))),
        "{:?}",
        srv.log.lines()
    );
    let h = sid_after(out, "heartbeat-sid ");
    assert!(
        hb.log.wait_for(&format!("disconnect / {h} ping timeout rooms=1"), Duration::from_secs(5)).await,
        "{:?}",
        hb.log.lines()
    );
    // Reserved names never reach the lifecycle handlers (E12): no "disconnect" event ran early.
    for l in srv.log.lines().iter().filter(|l| l.starts_with("any ")) {
        let name = l.split(' ').nth(2).unwrap_or("");
        assert!(!switchboard_socketio::is_reserved_event(name), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_socket_io_client_matrix() {
    if !peer_available("socket.io-client (npm)", "node", &["-e", "require('socket.io-client')"]) {
        return;
    }
    for mode in MODES {
        let srv = default_server().await;
        let hb = heartbeat_server().await;
        let out = run("node", "node/sio_client.mjs", &[&srv.url(), &hb.url(), mode]).await;
        check_server_side(&srv, &hb, &out, &["client namespace disconnect"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_client_matrix() {
    if !peer_available("python-socketio (pip)", "python3", &["-c", "import socketio, requests, websocket"]) {
        return;
    }
    for mode in MODES {
        let srv = default_server().await;
        let hb = heartbeat_server().await;
        let out = run("python3", "py/sio_client.py", &[&srv.url(), &hb.url(), mode]).await;
        // python-socketio's disconnect aborts its transport without waiting for the DISCONNECT
        // packet to leave; over long-polling the server may then only learn of it by the ping
        // timeout (seen in CI under load).
        check_server_side(&srv, &hb, &out, &["client namespace disconnect", "transport close", "ping timeout"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_socket_io_client_from_another_origin_over_polling() {
    use switchboard_socketio::engineio::{Cors, EngineConfig};
    if !(peer_available("chromium", "chromium", &["--version"])
        && peer_available("playwright-core (npm)", "node", &["-e", "require('playwright-core')"]))
    {
        return;
    }
    for (cors, expect) in [
        (Cors::Any, "any"),
        (Cors::Reflect { credentials: true }, "credentials"),
        // The default sends no CORS headers: the browser must refuse, or the other two prove
        // nothing.
        (Cors::Off, "blocked"),
    ] {
        let srv = start(EngineConfig::default().with_cors(cors), |c| c).await;
        let out = run("node", "node/sio_cors_chromium.mjs", &[&srv.url(), expect]).await;
        if expect != "blocked" {
            assert!(out.contains("ok   ack round trip"), "{out}");
        }
    }
}
