//! Interop with real peers, both directions: Python `websockets` (pip) and Node `ws` (npm) as
//! clients of our server and as servers for our client, over ws:// and wss:// (test CA).
//! Matrix: 0 B, 125/126/65535/65536 B and 16 MiB messages, text and binary, fragmented
//! messages, ping/pong, every valid close code. Then the same with permessage-deflate on, and
//! headless Chromium's native WebSocket (which offers it) driven by playwright-core.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;
use switchboard_ws::proto::deflate::DeflateConfig;
use switchboard_ws::{Acceptor, ClientBuilder, CloseCode, CloseFrame, Config, Message, OpCode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 16 << 20];
const CODES: [u16; 16] =
    [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];

fn big() -> Config {
    Config::default().with_max_message_size(64 << 20).with_max_frame_size(64 << 20)
}

fn python() -> bool {
    peer_available("python websockets", "python3", &["-c", "import websockets"])
}

fn node() -> bool {
    peer_available("node ws", "node", &["-e", "require('ws')"])
}

/// Runs a peer client script against `url`; it exits 0 when its whole matrix passed.
async fn run_peer_client(program: &str, script: &str, url: &str, ca: Option<&std::path::Path>, deflate: bool) {
    let mut cmd = Command::new(program);
    cmd.arg(interop_dir().join(script)).arg(url).current_dir(interop_dir()).kill_on_drop(true);
    cmd.env("INTEROP_DEFLATE", if deflate { "1" } else { "0" });
    if let Some(ca) = ca {
        cmd.arg(ca);
    }
    let out =
        tokio::time::timeout(Duration::from_secs(180), cmd.output()).await.expect("peer client timed out").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{script} {url}: {}", stdout.trim());
    assert!(out.status.success(), "{script} against {url} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// Starts a peer echo server; returns the child (killed on drop) and its port.
async fn start_peer_server(
    program: &str,
    script: &str,
    tls: Option<(&std::path::Path, &std::path::Path)>,
    deflate: bool,
) -> (tokio::process::Child, u16) {
    let mut cmd = Command::new(program);
    cmd.arg(interop_dir().join(script)).current_dir(interop_dir()).stdout(Stdio::piped()).kill_on_drop(true);
    cmd.env("INTEROP_DEFLATE", if deflate { "1" } else { "0" });
    if let Some((c, k)) = tls {
        cmd.arg(c).arg(k);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("peer server did not start")
        .unwrap()
        .unwrap();
    (child, line.trim().parse().unwrap())
}

/// Our client through the whole matrix against an echo server at `url`.
async fn client_matrix(url: &str, ca_pem: Option<&str>, deflate: bool) {
    let mut builder = ClientBuilder::new(url).config(big());
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificates_pem(pem.as_bytes()).unwrap();
    }
    if deflate {
        builder = builder.deflate(DeflateConfig::default());
    }
    let mut ws = builder.clone().connect().await.unwrap();
    assert_eq!(
        ws.extensions().is_some_and(|e| e.contains("permessage-deflate")),
        deflate,
        "{url}: extensions {:?}",
        ws.extensions()
    );
    if deflate {
        let text = "switchboard compresses well ".repeat(5000);
        ws.send(text.as_str()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text), "{url}: compressible text");
    }
    for n in SIZES {
        let text = "é".repeat(n / 2) + &"a".repeat(n % 2);
        ws.send(text.as_str()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text(text), "{url}: text {n}");
        let bin: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
        ws.send(bin.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(bin), "{url}: binary {n}");
    }
    ws.send_fragmented(OpCode::Text, &["frag".as_bytes(), b"", "mented tëxt".as_bytes()]).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("fragmented tëxt"));
    let tail = vec![2u8; 70_000];
    ws.send_fragmented(OpCode::Binary, &[&[0, 1], &tail]).await.unwrap();
    let m = ws.recv().await.unwrap().unwrap();
    assert_eq!(m.as_payload().len(), 70_002);
    ws.send(Message::Ping(bytes::Bytes::from_static(b"rs-ping"))).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::Pong(bytes::Bytes::from_static(b"rs-ping")));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    for code in CODES {
        let mut ws = builder.clone().connect().await.unwrap();
        ws.send(Message::Close(Some(CloseFrame::new(CloseCode(code), "bye").unwrap()))).await.unwrap();
        let echoed = loop {
            match ws.recv().await {
                Some(Ok(Message::Close(f))) => break f.map(|f| f.code.0),
                Some(Ok(_)) => continue,
                other => panic!("{url}: close {code}: {other:?}"),
            }
        };
        assert_eq!(echoed, Some(code), "{url}: close {code} echoed");
        // The server then closes TCP and our client ends cleanly.
        assert!(ws.recv().await.is_none(), "{url}: close {code}: stream must end");
    }
}

/// A peer client's matrix against our server: ws, wss (test CA) and ws with permessage-deflate.
async fn peer_client_against_our_server(program: &str, script: &str) {
    let addr = echo_server(Acceptor::new().config(big())).await;
    run_peer_client(program, script, &format!("ws://{addr}/"), None, false).await;
    let (addr, pki) = tls_echo_server(Acceptor::new().config(big())).await;
    let dir = tempdir();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    run_peer_client(program, script, &format!("wss://localhost:{}/", addr.port()), Some(&ca), false).await;
    let addr = echo_server(Acceptor::new().config(big()).deflate(DeflateConfig::default())).await;
    run_peer_client(program, script, &format!("ws://{addr}/"), None, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_against_our_server() {
    if python() {
        peer_client_against_our_server("python3", "py/ws_client.py").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_client_against_our_server() {
    if node() {
        peer_client_against_our_server("node", "node/ws_client.mjs").await;
    }
}

async fn our_client_against(program: &str, script: &str) {
    let (_child, port) = start_peer_server(program, script, None, false).await;
    client_matrix(&format!("ws://127.0.0.1:{port}/"), None, false).await;
    let (_child, port) = start_peer_server(program, script, None, true).await;
    client_matrix(&format!("ws://127.0.0.1:{port}/"), None, true).await;
    let pki = certs::make_pki(&["localhost", "127.0.0.1"]).unwrap();
    let dir = tempdir();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, &pki.cert_pem).unwrap();
    std::fs::write(&k, &pki.key_pem).unwrap();
    let (_child, port) = start_peer_server(program, script, Some((&c, &k)), false).await;
    client_matrix(&format!("wss://localhost:{port}/"), Some(&pki.ca_pem), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_python_websockets_server() {
    if python() {
        our_client_against("python3", "py/ws_server.py").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_node_ws_server() {
    if node() {
        our_client_against("node", "node/ws_server.mjs").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_native_websocket_with_deflate_against_our_server() {
    if !(peer_available("chromium", "chromium", &["--version"])
        && peer_available("playwright-core", "node", &["-e", "require('playwright-core')"]))
    {
        return;
    }
    let addr = echo_server(Acceptor::new().config(big()).deflate(DeflateConfig::default())).await;
    run_peer_client("node", "node/chromium_ws.mjs", &format!("ws://{addr}/"), None, true).await;
}

/// A fresh directory under the system temp dir, removed when dropped (no extra dependency).
struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    let d = std::env::temp_dir().join(format!("switchboard-interop-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0),
    );
    h.finish()
}
