//! End to end against the built `switchboard` binary: real clients (python-socketio, headless
//! Chromium on the demo page, our WebSocket client, raw Socket.IO), the backend API, nginx in
//! front with the seeds' configuration, graceful shutdown, and the hub's security rows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use switchboard_test_support::{interop_dir, peer_available};
use switchboard_ws::{ClientBuilder, Message};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const SECRET: &str = "e2e-secret-0123456789abcdef";
const API_KEY: &str = "e2e-api-key-0123456789";

struct Hub {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let d = std::env::temp_dir().join(format!("sb-hub-{}-{}", std::process::id(), rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// Whether something accepts TCP connections on `addr` within 5 s.
async fn listening(addr: SocketAddr) -> bool {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Hub {
    /// Starts the binary with a JWT secret and an API key, plus `extra` flags and a config
    /// file body.
    async fn start(extra: &[&str], config: &str) -> Hub {
        Self::start_with(extra, config, None).await
    }

    /// [`start`](Self::start) with the hub's stderr (its log, at the default level) written
    /// to `log` instead of passed through.
    async fn start_with(extra: &[&str], config: &str, log: Option<&std::path::Path>) -> Hub {
        Self::start_on(free_port(), extra, config, log).await
    }

    /// [`start_with`](Self::start_with) on a given port (to restart a hub where it was).
    async fn start_on(port: u16, extra: &[&str], config: &str, log: Option<&std::path::Path>) -> Hub {
        let dir = temp_dir();
        let cfg = dir.0.join("hub.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--config")
            .arg(&cfg)
            .arg("--jwt-secret")
            .arg(SECRET)
            .arg("--api-key")
            .arg(API_KEY)
            .arg("--collect-file")
            .arg(dir.0.join("collect.jsonl"))
            .args(extra)
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match log {
            Some(path) => {
                cmd.env_remove("RUST_LOG").stderr(std::fs::File::create(path).unwrap());
            }
            None => {
                cmd.env("RUST_LOG", "warn");
            }
        }
        let child = cmd.spawn().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(listening(addr).await, "the hub did not start");
        Hub { child, addr, _dir: dir }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn collect_file(&self) -> std::path::PathBuf {
        self._dir.0.join("collect.jsonl")
    }

    async fn api(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let (s, b) = http(self.addr, method, path, &[("Authorization", &format!("Bearer {API_KEY}"))], &body).await;
        (s, serde_json::from_str(&b).unwrap_or(Value::String(b)))
    }
}

async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, String) {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    (status, body)
}

/// `POST /api/call` in the background (it waits for the client the test then answers).
fn spawn_call(addr: SocketAddr, body: Value) -> tokio::task::JoinHandle<(u16, String)> {
    tokio::spawn(async move {
        http(addr, "POST", "/api/call", &[("Authorization", &format!("Bearer {API_KEY}"))], &body).await
    })
}

fn token(sub: &str, exp_in: i64, rooms: &[&str]) -> String {
    let exp =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + exp_in) as u64;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp, "rooms": rooms}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

type Ws = switchboard_ws::WebSocket<switchboard_ws::MaybeTlsStream>;

/// A raw Socket.IO client over WebSocket; returns it once connected, and the CONNECT reply.
async fn sio(addr: SocketAddr, token: Option<&str>) -> (Ws, String) {
    let mut ws =
        ClientBuilder::new(format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")).connect().await.unwrap();
    let auth = token.map(|t| json!({"token": t}).to_string()).unwrap_or_default();
    ws.send(Message::text(format!("40{auth}"))).await.unwrap();
    loop {
        let t = next_text(&mut ws).await.expect("closed before CONNECT");
        if t.starts_with("40") || t.starts_with("44") {
            return (ws, t);
        }
    }
}

/// The next text frame, answering Engine.IO pings.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.recv()).await.ok()?? {
            Ok(Message::Text(t)) if &*t == "2" => ws.send(Message::text("3")).await.ok()?,
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(f)) => return Some(format!("close {}", f.map(|f| f.code.0).unwrap_or(1005))),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Reads until a frame contains `needle`.
async fn until(ws: &mut Ws, needle: &str) -> String {
    loop {
        let t = next_text(ws).await.unwrap_or_else(|| panic!("closed while waiting for {needle}"));
        if t.contains(needle) {
            return t;
        }
    }
}

async fn ws_client(addr: SocketAddr, token: &str) -> Ws {
    let mut ws = ClientBuilder::new(format!("ws://{addr}/ws?token={token}")).connect().await.unwrap();
    until(&mut ws, "\"welcome\"").await;
    ws
}

/// Runs `py/hub_client.py` as user `alice` against `url` (the hub, or a proxy in front of it):
/// once it is connected, pushes a notification to `user:alice` and calls it, then checks what
/// the client saw and that it used `transport`.
async fn python_push_and_call(hub: &Hub, url: &str, transport: &str, title: &str) {
    let mut py = Command::new("python3")
        .arg(interop_dir().join("py/hub_client.py"))
        .arg(url)
        .arg(token("alice", 600, &[]))
        .arg(transport)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(15), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(ready.starts_with("ready "), "{ready}");
    let (s, r) = hub
        .api("POST", "/api/emit", json!({"event": "notification", "users": ["alice"], "data": {"title": title}}))
        .await;
    assert_eq!((s, &r["delivered"]), (200, &json!(1)), "{r}");
    let (s, r) = hub
        .api("POST", "/api/call", json!({"user": "alice", "event": "whoami", "data": {"q": 1}, "timeout_ms": 5000}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["data"], json!({"user": "alice", "asked": {"q": 1}}));
    let status = tokio::time::timeout(Duration::from_secs(20), py.wait()).await.unwrap().unwrap();
    let mut rest = String::new();
    while let Ok(Some(l)) = lines.next_line().await {
        rest.push_str(&l);
        rest.push('\n');
    }
    assert!(status.success(), "{transport}: {rest}");
    assert!(rest.contains(&format!("notification {{'title': '{title}'}}")), "{rest}");
    assert!(rest.contains(&format!("transport {transport}")), "{rest}");
}

#[tokio::test]
async fn python_client_with_a_jwt_gets_a_pushed_notification_and_answers_a_call() {
    if !peer_available("python-socketio (pip)", "python3", &["-c", "import socketio, requests, websocket"]) {
        return;
    }
    let hub = Hub::start(&["--anonymous", "false"], "").await;
    for transport in ["websocket", "polling"] {
        python_push_and_call(&hub, &hub.url(), transport, "hi alice").await;
    }
    // Without a token: refused (anonymous is off).
    let (_, reply) = sio(hub.addr, None).await;
    assert!(
        reply.starts_with(
            "44{\"data\":{\"code\":\"token_missing\",\"message\":\"a token is required\"},\"message\":\"unauthorized\"}"
        ),
        "{reply}"
    );
}

#[tokio::test]
async fn api_call_round_trip_emit_to_rooms_and_users_and_management() {
    let hub = Hub::start(&[], "").await;
    let (mut a, reply) = sio(hub.addr, Some(&token("alice", 600, &["team:1"]))).await;
    let sid: Value = serde_json::from_str(&reply[2..]).unwrap();
    let sid = sid["sid"].as_str().unwrap().to_owned();
    let mut b = ws_client(hub.addr, &token("bob", 600, &["team:1"])).await;
    // Emit to a room both are in (the token granted it): one Socket.IO and one /ws delivery.
    let (s, r) = hub.api("POST", "/api/emit", json!({"event": "news", "rooms": ["team:1"], "data": 1})).await;
    assert_eq!((s, r["delivered"].as_u64()), (200, Some(2)));
    // Recovery is on by default: the event's offset comes as its last argument.
    assert!(until(&mut a, "news").await.contains("42[\"news\",1,\""));
    assert!(until(&mut b, "news").await.contains("\"room\":\"team:1\""));
    // Except the Socket.IO socket.
    let (_, r) =
        hub.api("POST", "/api/emit", json!({"event": "news", "rooms": ["team:1"], "data": 2, "except": [sid]})).await;
    assert_eq!(r["delivered"], 1);
    // Call the Socket.IO client by id: it answers the ack.
    let call = spawn_call(hub.addr, json!({"to": sid, "event": "confirm", "data": {"n": 7}, "timeout_ms": 5000}));
    let ask = until(&mut a, "confirm").await;
    let id: String = ask[2..].chars().take_while(char::is_ascii_digit).collect();
    a.send(Message::text(format!("43{id}[{{\"confirmed\":true}}]"))).await.unwrap();
    let (s, body) = call.await.unwrap();
    assert_eq!(s, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["data"], json!({"confirmed": true}));
    // Call the /ws client by user.
    let call = spawn_call(hub.addr, json!({"user": "bob", "event": "confirm", "timeout_ms": 5000}));
    let ask: Value = serde_json::from_str(&until(&mut b, "\"call\"").await).unwrap();
    b.send(Message::text(json!({"type": "ack", "id": ask["id"], "data": "yes"}).to_string())).await.unwrap();
    let (s, body) = call.await.unwrap();
    assert_eq!((s, serde_json::from_str::<Value>(&body).unwrap()["data"].clone()), (200, json!("yes")));
    // A call nobody answers: 504, in time.
    let (s, r) = hub.api("POST", "/api/call", json!({"user": "bob", "event": "confirm", "timeout_ms": 300})).await;
    assert_eq!(s, 504, "{r}");
    // Unknown client: 404.
    let (s, _) = hub.api("POST", "/api/call", json!({"user": "nobody", "event": "x"})).await;
    assert_eq!(s, 404);
    // List, join, leave, disconnect, stats.
    let (_, r) = hub.api("GET", "/api/sockets?room=team:1", Value::Null).await;
    assert_eq!(r["clients"].as_array().unwrap().len(), 2, "{r}");
    let (_, r) = hub.api("POST", "/api/join", json!({"ids": [sid], "room": "ops"})).await;
    assert_eq!(r["joined"], 1);
    let (_, r) = hub.api("GET", "/api/sockets?room=ops", Value::Null).await;
    assert_eq!(r["clients"][0]["user"], "alice");
    let (_, r) = hub.api("GET", "/api/stats", Value::Null).await;
    assert_eq!(r["connections"]["ws"], 1);
    let (_, r) = hub.api("POST", "/api/disconnect", json!({"ids": [sid]})).await;
    assert_eq!(r["disconnected"], 1);
    assert!(until(&mut a, "41").await.starts_with("41"));
    // The API wants the key (A4: compared in constant time; here: wrong or missing → 401).
    let (s, _) =
        http(hub.addr, "GET", "/api/stats", &[("Authorization", "Bearer wrong-key-0123456789")], &Value::Null).await;
    assert_eq!(s, 401);
    let (s, _) = http(hub.addr, "GET", "/api/stats", &[], &Value::Null).await;
    assert_eq!(s, 401);
    let (s, doc) = http(hub.addr, "GET", "/api/openapi.json", &[], &Value::Null).await;
    assert_eq!(s, 200);
    assert!(serde_json::from_str::<Value>(&doc).unwrap()["paths"]["/api/call"].is_object());
    let (s, m) = http(hub.addr, "GET", "/metrics", &[], &Value::Null).await;
    assert_eq!(s, 200);
    assert!(m.contains("switchboard_call_seconds_count 4"), "{m}");
    assert!(m.contains("switchboard_handshake_failures_total{reason=\"api_key\"} 2"), "{m}");
}

#[tokio::test]
async fn ws_publish_subscribe_shares_rooms_with_socket_io_and_a5_scopes() {
    let hub = Hub::start(&[], "").await;
    let mut a = ws_client(hub.addr, &token("alice", 600, &[])).await;
    let mut b = ws_client(hub.addr, &token("bob", 600, &[])).await;
    let (mut c, _) = sio(hub.addr, Some(&token("carol", 600, &[]))).await;
    for ws in [&mut a, &mut b] {
        ws.send(Message::text(r#"{"type":"subscribe","room":"chat:x","id":1}"#)).await.unwrap();
        assert!(until(ws, "\"reply\"").await.contains("\"ok\":true"));
    }
    c.send(Message::text(r#"421["subscribe","chat:x"]"#)).await.unwrap();
    assert!(until(&mut c, "431").await.contains("\"ok\":true"));
    a.send(Message::text(r#"{"type":"publish","room":"chat:x","event":"chat","data":{"text":"hey"},"id":2}"#))
        .await
        .unwrap();
    let r: Value = serde_json::from_str(&until(&mut a, "\"reply\"").await).unwrap();
    assert_eq!(r["delivered"], 2, "{r}");
    let got: Value = serde_json::from_str(&until(&mut b, "\"event\"").await).unwrap();
    assert_eq!(got["data"], json!({"from": "alice", "room": "chat:x", "data": {"text": "hey"}}));
    assert!(until(&mut c, "chat").await.starts_with("42[\"chat\",{\"data\":{\"text\":\"hey\"}"));
    // A5: a denied room and another user's room give an error, and the connection stays.
    a.send(Message::text(r#"{"type":"subscribe","room":"user:bob","id":3}"#)).await.unwrap();
    assert!(until(&mut a, "\"reply\"").await.contains("permission denied"));
    a.send(Message::text(r#"{"type":"publish","room":"news","data":1,"id":4}"#)).await.unwrap();
    assert!(until(&mut a, "\"reply\"").await.contains("permission denied"));
    c.send(Message::text(r#"422["publish",{"room":"user:bob","data":1}]"#)).await.unwrap();
    assert!(until(&mut c, "432").await.contains("permission denied"));
    a.send(Message::text("not json")).await.unwrap();
    assert!(until(&mut a, "\"error\"").await.contains("bad request"));
    let long = format!(r#"{{"type":"subscribe","room":"chat:{}","id":5}}"#, "x".repeat(300));
    a.send(Message::text(long)).await.unwrap();
    assert!(until(&mut a, "\"reply\"").await.contains("longer than"));
    a.send(Message::text(r#"{"type":"ping","id":6}"#)).await.unwrap();
    assert!(until(&mut a, "pong").await.contains("\"id\":6"));
    // Data collection: to the JSON-lines file.
    a.send(Message::text(r#"{"type":"telemetry","data":{"cpu":0.5},"id":7}"#)).await.unwrap();
    assert!(until(&mut a, "\"reply\"").await.contains("\"ok\":true"));
    c.send(Message::text(r#"423["log",{"line":"boot"}]"#)).await.unwrap();
    assert!(until(&mut c, "433").await.contains("\"ok\":true"));
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(hub.collect_file()).unwrap_or_default();
        if text.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines.iter().any(|l| l["user"] == "alice" && l["channel"] == "telemetry" && l["data"]["cpu"] == 0.5));
    assert!(lines.iter().any(|l| l["user"] == "carol" && l["channel"] == "log"));
}

#[tokio::test]
async fn a1_a2_tokens_are_checked_and_expiry_disconnects_unless_refreshed() {
    let hub = Hub::start(&["--anonymous", "false"], "[auth]\nleeway_s = 0\n").await;
    // A1: unsigned, wrong algorithm, wrong key, expired.
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"sub":"mallory","exp":9999999999}"#));
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &json!({"sub": "m", "exp": 9999999999u64}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let other = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "m", "exp": 9999999999u64}),
        &EncodingKey::from_secret(b"another-secret-0123456789"),
    )
    .unwrap();
    for t in [none.as_str(), &hs384, &other, &token("m", -5, &[])] {
        let (_, reply) = sio(hub.addr, Some(t)).await;
        assert!(reply.starts_with("44"), "{reply}");
        let r = ClientBuilder::new(format!("ws://{}/ws?token={t}", hub.addr)).connect().await;
        assert!(r.is_err(), "{t}");
    }
    // A2: a token 2 s from expiry is cut at expiry…
    let t0 = std::time::Instant::now();
    let (mut s1, _) = sio(hub.addr, Some(&token("dave", 2, &[]))).await;
    let mut w1 = ws_client(hub.addr, &token("dave", 2, &[])).await;
    assert!(until(&mut s1, "auth_expired").await.contains("token expired"));
    assert!(until(&mut s1, "41").await.starts_with("41"));
    assert_eq!(until(&mut w1, "close").await, "close 1008");
    assert!(t0.elapsed() >= Duration::from_millis(900) && t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    // …unless refreshed in band.
    let (mut s2, _) = sio(hub.addr, Some(&token("erin", 2, &[]))).await;
    let mut w2 = ws_client(hub.addr, &token("erin", 2, &[])).await;
    s2.send(Message::text(format!("421[\"refresh\",{{\"token\":\"{}\"}}]", token("erin", 600, &[])))).await.unwrap();
    assert!(until(&mut s2, "431").await.contains("\"ok\":true"));
    w2.send(Message::text(json!({"type": "refresh", "token": token("erin", 600, &[]), "id": 1}).to_string()))
        .await
        .unwrap();
    assert!(until(&mut w2, "\"reply\"").await.contains("\"ok\":true"));
    // A refresh for another user is refused.
    w2.send(Message::text(json!({"type": "refresh", "token": token("mallory", 600, &[]), "id": 2}).to_string()))
        .await
        .unwrap();
    assert!(until(&mut w2, "\"reply\"").await.contains("another user"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    s2.send(Message::text(r#"424["subscribe","chat:still"]"#)).await.unwrap();
    assert!(until(&mut s2, "434").await.contains("\"ok\":true"));
    w2.send(Message::text(r#"{"type":"ping","id":9}"#)).await.unwrap();
    assert!(until(&mut w2, "pong").await.contains("\"id\":9"));
}

#[tokio::test]
async fn graceful_shutdown_sends_1001_to_every_client() {
    let mut hub = Hub::start(&[], "").await;
    let mut w = ws_client(hub.addr, &token("a", 600, &[])).await;
    let (mut s, _) = sio(hub.addr, Some(&token("b", 600, &[]))).await;
    // A keep-alive HTTP connection that will try a new handshake while the hub drains.
    let mut keep = TcpStream::connect(hub.addr).await.unwrap();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = keep.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A connection whose request is under way when the drain starts.
    let mut busy = TcpStream::connect(hub.addr).await.unwrap();
    busy.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = hub.child.id().unwrap();
    let t0 = std::time::Instant::now();
    std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert_eq!(until(&mut w, "close").await, "close 1001");
    assert_eq!(until(&mut s, "close").await, "close 1001");
    // The idle keep-alive connection is closed at once rather than waited for.
    let n = tokio::time::timeout(Duration::from_secs(2), keep.read(&mut buf)).await.expect("idle connection left open");
    assert_eq!(n.unwrap_or(0), 0);
    // The handshake under way gets 503 (R7), then its connection closes.
    busy.write_all(b"Host: x\r\n\r\n").await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), busy.read_to_string(&mut out)).await;
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    // No connection is left: the hub exits long before its 10 s grace period.
    let status = tokio::time::timeout(Duration::from_secs(15), hub.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(4), "the drain waited {:?}", t0.elapsed());
}

#[tokio::test]
async fn r1_slow_consumer_is_cut_and_others_keep_receiving() {
    let hub = Hub::start(&[], "[server]\nmax_queued_messages = 64\n").await;
    let mut slow = ws_client(hub.addr, &token("slow", 600, &[])).await;
    let mut fast = ws_client(hub.addr, &token("fast", 600, &[])).await;
    for ws in [&mut slow, &mut fast] {
        ws.send(Message::text(r#"{"type":"subscribe","room":"chat:flood","id":1}"#)).await.unwrap();
        until(ws, "\"reply\"").await;
    }
    // `slow` stops reading; 2,000 messages of 8 KB go to the room (16 MB: more than the
    // kernel's socket buffers hold on loopback).
    let data = "x".repeat(8 << 10);
    for i in 0..2000 {
        let (s, _) = hub
            .api("POST", "/api/emit", json!({"event": "flood", "rooms": ["chat:flood"], "data": {"i": i, "d": data}}))
            .await;
        assert_eq!(s, 200);
        if i % 100 == 0 {
            // `fast` keeps up.
            while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(1), fast.recv()).await {}
        }
    }
    let mut last = 0;
    while let Some(t) = next_text(&mut fast).await {
        if let Ok(v) = serde_json::from_str::<Value>(&t) {
            last = v["data"]["i"].as_u64().unwrap_or(last);
            if last == 1999 {
                break;
            }
        }
    }
    assert_eq!(last, 1999, "the healthy member got everything");
    // The slow one was closed with 1008 "slow consumer" once its queue filled.
    let (_, r) = hub.api("GET", "/api/sockets?room=chat:flood", Value::Null).await;
    assert_eq!(r["clients"].as_array().unwrap().len(), 1, "{r}");
    let (_, m) = http(hub.addr, "GET", "/metrics", &[], &Value::Null).await;
    assert!(!m.contains("switchboard_drops_total 0\n"), "{m}");
    drop(slow);
}

#[tokio::test]
async fn r4_r5_connect_timeout_and_per_ip_cap() {
    let hub = Hub::start(&[], "[server]\nconnect_timeout_ms = 500\nmax_connections_per_ip = 20\n").await;
    // R4: an Engine.IO session that never joins a namespace is closed.
    let mut ws =
        ClientBuilder::new(format!("ws://{}/socket.io/?EIO=4&transport=websocket", hub.addr)).connect().await.unwrap();
    let t0 = std::time::Instant::now();
    loop {
        match next_text(&mut ws).await {
            Some(t) if t.starts_with("close") || t == "1" => break,
            Some(_) => {}
            None => break,
        }
    }
    assert!(t0.elapsed() >= Duration::from_millis(400) && t0.elapsed() < Duration::from_secs(5));
    // R5: 20 clients per IP, so 2 × 20 + 16 = 56 TCP connections; the 57th is closed at
    // once, and the first 56 still work.
    let mut held = Vec::new();
    for _ in 0..56 {
        held.push(TcpStream::connect(hub.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(hub.addr).await.unwrap();
    extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.ok();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "the connection over the cap is closed");
    let first = &mut held[0];
    first.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    first.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s, m) = http(hub.addr, "GET", "/metrics", &[], &Value::Null).await;
    assert_eq!(s, 200);
    assert!(m.contains("reason=\"connection_limit\"} 1"), "{m}");
}

#[tokio::test]
async fn t1_t2_t3_tls() {
    let dir = temp_dir();
    let ca = rcgen_cert(&dir.0);
    let hub = Hub::start(
        &["--tls-cert", ca.0.to_str().unwrap(), "--tls-key", ca.1.to_str().unwrap()],
        "[server]\nhandshake_timeout_ms = 700\n",
    )
    .await;
    // T1: TCP, then nothing: closed by the handshake deadline.
    let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t0.elapsed() >= Duration::from_millis(500), "{:?}", t0.elapsed());
    // T2: a ClientHello-looking record then an alert: closed, no spin.
    let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00]).await.unwrap();
    tcp.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00]).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut Vec::new())).await.unwrap().unwrap_or(0);
    assert!(n < 64);
    // T3: the client verifies the certificate: without the CA it fails; with it, it works.
    let url = format!("wss://localhost:{}/ws?token={}", hub.addr.port(), token("t", 600, &[]));
    let bin = env!("CARGO_BIN_EXE_switchboard");
    let out = Command::new(bin).args(["connect", &url, "-w", "1", "--timeout", "5"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).to_lowercase().contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin)
        .args(["connect", &url, "-x", r#"{"type":"ping","id":1}"#, "--timeout", "5", "--ca", ca.2.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("welcome") && stdout.contains("pong"), "{stdout}");
}

/// A test CA and a `localhost` certificate: (cert chain, key, CA) files.
fn rcgen_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let (c, k, a) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    std::fs::write(&c, format!("{}{}", cert.pem(), ca.pem())).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::write(&a, ca.pem()).unwrap();
    std::mem::forget(TempDir(dir.to_path_buf()));
    (c, k, a)
}

#[tokio::test]
async fn two_chromium_pages_chat_on_the_demo_page_and_get_a_notification() {
    if !(peer_available("chromium", "chromium", &["--version"])
        && peer_available("playwright-core (npm)", "node", &["-e", "require('playwright-core')"]))
    {
        return;
    }
    let hub = Hub::start(&[], "").await;
    node_checks("node/hub_chromium.mjs", &[&hub.url()], Duration::from_secs(90)).await;
}

/// Runs an `interop/` Node script (with `API_KEY` in its environment) that prints a line per
/// check and "N passed, M failed"; fails the test unless it exits 0 with none failed.
async fn node_checks(script: &str, args: &[&str], limit: Duration) {
    let out = tokio::time::timeout(
        limit,
        Command::new("node")
            .arg(interop_dir().join(script))
            .args(args)
            .env("API_KEY", API_KEY)
            .current_dir(interop_dir())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

/// nginx in front of `upstreams` with the seeds' location block (HTTP/1.1, the Upgrade and
/// Connection headers passed on, X-Forwarded-For; docs/hub.md), plain round-robin (no
/// `ip_hash`). Stopped when the returned guard drops.
async fn nginx(upstreams: &[SocketAddr]) -> ((Child, TempDir), SocketAddr) {
    let dir = temp_dir();
    let port = free_port();
    let servers: String = upstreams.iter().map(|a| format!("        server {a};\n")).collect();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream hubs {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://hubs;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 120s;
        }}
    }}
}}
"#,
        d = dir.0.display(),
    );
    let conf_path = dir.0.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(listening(front).await, "nginx did not start");
    ((child, dir), front)
}

#[tokio::test]
async fn behind_nginx_with_the_seeds_configuration() {
    if !peer_available("nginx", "nginx", &["-v"])
        || !peer_available("python-socketio (pip)", "python3", &["-c", "import socketio"])
    {
        return;
    }
    // nginx is trusted to name the client: the per-address cap applies to each client behind it.
    let hub = Hub::start(&[], "[server]\nmax_connections_per_ip = 2\ntrusted_proxies = [\"127.0.0.1\"]\n").await;
    let (_nginx, front) = nginx(&[hub.addr]).await;
    // python-socketio through nginx over WebSocket and over polling; the backend pushes to it.
    for transport in ["websocket", "polling"] {
        python_push_and_call(&hub, &format!("http://{front}"), transport, "via nginx").await;
    }
    // The plain WebSocket endpoint through nginx.
    let mut ws =
        ClientBuilder::new(format!("ws://{front}/ws?token={}", token("bob", 600, &[]))).connect().await.unwrap();
    assert!(until(&mut ws, "welcome").await.contains("\"user\":\"bob\""));
    // Behind nginx each client has its own address: three clients from three addresses all
    // get in although nginx is one peer with a cap of 2; a third from one address does not.
    let mut held = Vec::new();
    for local in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.5"] {
        held.push(ws_from(front, local, &[]).await.unwrap_or_else(|e| panic!("{local}: {e}")));
    }
    assert!(ws_from(front, "127.0.0.5", &[]).await.is_err());
}

#[tokio::test]
async fn r3_half_open_clients_are_detected_by_protocol_pings() {
    let hub = Hub::start(&[], "[server]\nping_interval_ms = 300\nping_timeout_ms = 300\n").await;
    // `/ws`: a client that completes the handshake, then never answers (reads but sends nothing,
    // like a peer behind a blackhole). The server's pings go unanswered: closed.
    let mut tcp = TcpStream::connect(hub.addr).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        hub.addr
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let t0 = std::time::Instant::now();
    let mut all = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut all)).await;
    assert!(r.is_ok(), "the server did not close a silent client");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // Pings (opcode 0x9) came first, then a Close 1011 after interval + timeout.
    let body = &all[text.find("\r\n\r\n").unwrap() + 4..];
    assert!(body.windows(2).any(|w| w[0] == 0x89 && w[1] <= 125), "no ping seen");
    assert!(body.windows(4).any(|w| w[0] == 0x88 && w[2] == 0x03 && w[3] == 0xf3), "no close 1011: {body:?}");
    assert!(t0.elapsed() >= Duration::from_millis(500), "{:?}", t0.elapsed());
    // Socket.IO: a client that stops answering Engine.IO pings is closed the same way.
    let (mut s, _) = sio(hub.addr, None).await;
    let t0 = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.recv().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {} // pings read, never answered
            }
        }
    })
    .await;
    assert!(closed.is_ok() && t0.elapsed() >= Duration::from_millis(500));
}

/// One raw HTTP/1.1 request (`Connection: close`): status and body.
async fn raw_http(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Value) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
    tcp.write_all(req.as_bytes()).await.unwrap();
    let _ = tcp.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())))
}

/// Whether nothing but pings arrives on `ws` for `ms`.
async fn quiet(ws: &mut Ws, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), async {
        loop {
            match ws.recv().await {
                Some(Ok(Message::Text(t))) if &*t == "2" => {
                    let _ = ws.send(Message::text("3")).await;
                }
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(_)) => {}
                _ => return "closed".to_owned(),
            }
        }
    })
    .await
    .is_err()
}

#[tokio::test]
async fn api_bodies_are_strict_and_every_error_has_one_json_shape() {
    let hub = Hub::start(&[], "").await;
    let (mut a, _) = sio(hub.addr, Some(&token("alice", 600, &["chat:lobby"]))).await;
    until(&mut a, "welcome").await;
    let is_error = |v: &Value| v["ok"] == json!(false) && v["error"].as_str().is_some_and(|e| !e.is_empty());
    // A typo (`room` for `rooms`) is refused, naming the field, and nothing is delivered.
    let (s, r) = hub.api("POST", "/api/emit", json!({"event": "x", "data": 1, "room": "chat:lobby"})).await;
    assert_eq!(s, 422, "{r}");
    assert!(is_error(&r) && r["error"].as_str().unwrap().contains("`room`"), "{r}");
    assert!(quiet(&mut a, 300).await, "a refused emit was delivered");
    // The same on every body: call, join, leave, disconnect.
    for (path, body) in [
        ("/api/call", json!({"to": "x", "event": "e", "timeout": 5})),
        ("/api/join", json!({"ids": [], "room": "r", "id": "x"})),
        ("/api/leave", json!({"ids": [], "rooms": ["r"]})),
        ("/api/disconnect", json!({"id": "x"})),
    ] {
        let (s, r) = hub.api("POST", path, body).await;
        assert_eq!(s, 422, "{path}: {r}");
        assert!(is_error(&r), "{path}: {r}");
    }
    // A missing field, a wrong type: 422 naming it.
    let (s, r) = hub.api("POST", "/api/emit", json!({"data": 1})).await;
    assert!(s == 422 && r["error"].as_str().unwrap().contains("`event`"), "{s} {r}");
    let (s, r) = hub.api("POST", "/api/emit", json!({"event": 5})).await;
    assert!(s == 422 && is_error(&r), "{s} {r}");
    let auth = format!("Authorization: Bearer {API_KEY}");
    // Not JSON, no JSON content type, too large: 400, 415, 413, all in the same shape.
    let (s, r) =
        raw_http(hub.addr, &format!("POST /api/emit HTTP/1.1\r\n{auth}\r\nContent-Type: application/json"), b"{nope")
            .await;
    assert!(s == 400 && is_error(&r), "{s} {r}");
    let (s, r) =
        raw_http(hub.addr, &format!("POST /api/emit HTTP/1.1\r\n{auth}\r\nContent-Type: text/plain"), b"{}").await;
    assert!(s == 415 && is_error(&r), "{s} {r}");
    let big = format!("{{\"event\":\"x\",\"data\":\"{}\"}}", "a".repeat(1 << 20));
    let (s, r) = raw_http(
        hub.addr,
        &format!("POST /api/emit HTTP/1.1\r\n{auth}\r\nContent-Type: application/json"),
        big.as_bytes(),
    )
    .await;
    assert!(s == 413 && is_error(&r), "{s} {r}");
    // Unknown paths and methods, a bad query.
    let (s, r) = hub.api("GET", "/api/nope", Value::Null).await;
    assert!(s == 404 && is_error(&r), "{s} {r}");
    let (s, r) = hub.api("DELETE", "/api/emit", Value::Null).await;
    assert!(s == 405 && is_error(&r), "{s} {r}");
    let (s, r) = hub.api("GET", "/api/sockets?rooom=x", Value::Null).await;
    assert!(s == 400 && is_error(&r), "{s} {r}");
    // The OpenAPI document says so: strict bodies, the one error shape.
    let (_, doc) = http(hub.addr, "GET", "/api/openapi.json", &[], &Value::Null).await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let emit = &doc["paths"]["/api/emit"]["post"];
    assert_eq!(emit["requestBody"]["content"]["application/json"]["schema"]["additionalProperties"], json!(false));
    assert_eq!(emit["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error");
    // A correct body still works.
    let (s, r) = hub.api("POST", "/api/emit", json!({"event": "x", "data": 1, "rooms": ["chat:lobby"]})).await;
    assert_eq!((s, r["delivered"].as_u64()), (200, Some(1)), "{r}");
}

#[tokio::test]
async fn expired_tokens_are_refused_at_the_handshake_with_stable_reason_codes() {
    // The default leeway (30 s) applies; a token 5 s past `exp` must not be welcomed and then
    // kicked: it is refused at once, on both endpoints, with a code and a short message.
    let hub = Hub::start(&["--anonymous", "false"], "").await;
    let cases = [
        (token("late", -5, &[]), "token_expired"),
        ("abc.def.ghi".to_owned(), "token_malformed"),
        (
            encode(
                &Header::new(Algorithm::HS256),
                &json!({"sub": 42, "exp": 9999999999u64}),
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap(),
            "token_malformed",
        ),
        (
            encode(&Header::new(Algorithm::HS256), &json!({"sub": "x"}), &EncodingKey::from_secret(SECRET.as_bytes()))
                .unwrap(),
            "token_claims",
        ),
    ];
    for (t, code) in &cases {
        let (_, reply) = sio(hub.addr, Some(t)).await;
        let v: Value = serde_json::from_str(reply.strip_prefix("44").unwrap_or_else(|| panic!("{reply}"))).unwrap();
        assert_eq!(v["data"]["code"], *code, "{reply}");
        let msg = v["data"]["message"].as_str().unwrap();
        assert!(msg.len() < 60 && !msg.contains("JSON") && !msg.contains("invalid type"), "{msg}");
        // /ws: 401 with the same code, in the API's JSON shape.
        let (s, body) = http(
            hub.addr,
            "GET",
            &format!("/ws?token={t}"),
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            &Value::Null,
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{s} {body}"));
        assert_eq!((s, &v["code"], &v["ok"]), (401, &json!(code), &json!(false)), "{body}");
    }
    // A valid token is welcomed and stays.
    let (mut s, reply) = sio(hub.addr, Some(&token("ok", 600, &[]))).await;
    assert!(reply.starts_with("40"), "{reply}");
    until(&mut s, "welcome").await;
}

/// The next binary frame on `ws` (text frames and pings are skipped).
async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.recv()).await.expect("no binary frame") {
            Some(Ok(Message::Binary(b))) => return b.to_vec(),
            Some(Ok(Message::Text(t))) if &*t == "2" => ws.send(Message::text("3")).await.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("closed while waiting for binary: {other:?}"),
        }
    }
}

#[tokio::test]
async fn publish_forwards_binary_and_refuses_the_hubs_own_event_names() {
    let hub = Hub::start(&[], "").await;
    let lobby = ["chat:lobby"];
    let (mut a, _) = sio(hub.addr, Some(&token("alice", 600, &lobby))).await;
    until(&mut a, "welcome").await;
    let (mut b, _) = sio(hub.addr, Some(&token("bob", 600, &lobby))).await;
    until(&mut b, "welcome").await;
    let mut c = ws_client(hub.addr, &token("carol", 600, &lobby)).await;
    // Socket.IO → Socket.IO (binary in place) and /ws (`$binary`, base64, in place).
    a.send(Message::text(
        r#"451-1["publish",{"room":"chat:lobby","event":"file","data":{"name":"a","blob":{"_placeholder":true,"num":0}}}]"#,
    ))
    .await
    .unwrap();
    a.send(Message::binary(vec![1u8, 2, 3, 255])).await.unwrap();
    let ack = until(&mut a, "431").await;
    assert!(ack.contains("\"ok\":true") && ack.contains("\"delivered\":2"), "{ack}");
    let head = until(&mut b, "file").await;
    assert!(head.starts_with("451-[\"file\""), "{head}");
    let v: Value = serde_json::from_str(&head[4..]).unwrap();
    assert_eq!(v[1]["data"]["blob"], json!({"_placeholder": true, "num": 0}), "{head}");
    assert_eq!(v[1]["from"], "alice");
    assert_eq!(next_binary(&mut b).await, vec![1u8, 2, 3, 255]);
    let ev: Value = serde_json::from_str(&until(&mut c, "\"file\"").await).unwrap();
    assert_eq!(ev["data"]["data"], json!({"name": "a", "blob": {"$binary": "AQID/w=="}}), "{ev}");
    // /ws → Socket.IO: a `$binary` object becomes binary.
    c.send(Message::text(
        json!({"type": "publish", "room": "chat:lobby", "event": "file2", "data": {"blob": {"$binary": "CQg="}}, "id": 1})
            .to_string(),
    ))
    .await
    .unwrap();
    assert!(until(&mut c, "\"reply\"").await.contains("\"ok\":true"));
    assert!(until(&mut b, "file2").await.starts_with("451-[\"file2\""));
    assert_eq!(next_binary(&mut b).await, vec![9u8, 8]);
    // Bad base64 is refused, not forwarded as is.
    c.send(Message::text(
        json!({"type": "publish", "room": "chat:lobby", "event": "x", "data": {"$binary": "%%%"}, "id": 2}).to_string(),
    ))
    .await
    .unwrap();
    assert!(until(&mut c, "\"reply\"").await.contains("base64"));
    // The hub's own names, Socket.IO's reserved ones and the empty name are refused on both
    // endpoints; nobody receives anything.
    until(&mut a, "file2").await;
    for (i, name) in ["welcome", "auth_expired", "notification", "subscribe", "", "disconnect"].iter().enumerate() {
        a.send(Message::text(format!(r#"42{}["publish",{{"room":"chat:lobby","event":"{name}","data":1}}]"#, 10 + i)))
            .await
            .unwrap();
        let reply = until(&mut a, &format!("43{}", 10 + i)).await;
        assert!(reply.contains("\"ok\":false") && (reply.contains("reserved") || reply.contains("empty")), "{reply}");
        c.send(Message::text(
            json!({"type": "publish", "room": "chat:lobby", "event": name, "data": 1, "id": 20 + i}).to_string(),
        ))
        .await
        .unwrap();
        let reply = until(&mut c, "\"reply\"").await;
        assert!(reply.contains("\"ok\":false"), "{name}: {reply}");
    }
    assert!(quiet(&mut b, 300).await, "a refused publish reached a member");
    // The backend API may still send notifications.
    let (s, _) = hub.api("POST", "/api/emit", json!({"event": "notification", "data": {"$binary": "AA=="}})).await;
    assert_eq!(s, 200);
    assert!(until(&mut b, "notification").await.starts_with("451-"));
    assert_eq!(next_binary(&mut b).await, vec![0u8]);
}

/// A `/ws` client from `local` (a loopback address) with extra headers; `Err` with the
/// status when refused.
async fn ws_from(addr: SocketAddr, local: &str, headers: &[(&str, &str)]) -> Result<Ws, String> {
    let mut b = ClientBuilder::new(format!("ws://{addr}/ws?token={}", token("u", 600, &[])))
        .local_address(local.parse().unwrap());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut ws = b.connect().await.map_err(|e| e.to_string())?;
    until(&mut ws, "\"welcome\"").await;
    Ok(ws)
}

#[tokio::test]
async fn client_caps_hold_on_every_transport_for_the_clients_whole_life() {
    let hub = Hub::start(&[], "[server]\nmax_connections_per_ip = 3\nmax_connections = 4\n").await;
    // /ws: three from one address; the fourth is refused, with the reason.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(ws_from(hub.addr, "127.0.0.1", &[]).await.unwrap());
    }
    let err = ws_from(hub.addr, "127.0.0.1", &[]).await.err().unwrap();
    assert!(err.contains("503"), "{err}");
    // Socket.IO over WebSocket from the same address: refused too (Engine.IO 403, code 4).
    let r = ClientBuilder::new(format!("ws://{}/socket.io/?EIO=4&transport=websocket", hub.addr)).connect().await;
    assert!(r.is_err());
    // Another address gets the last slot; then the total is reached.
    held.push(ws_from(hub.addr, "127.0.0.2", &[]).await.unwrap());
    assert!(ws_from(hub.addr, "127.0.0.2", &[]).await.is_err());
    let (_, m) = http(hub.addr, "GET", "/metrics", &[], &Value::Null).await;
    assert!(m.contains("switchboard_clients 4") && m.contains("switchboard_connections{transport=\"ws\"} 4"), "{m}");
    // Slots come back when clients go.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, m) = http(hub.addr, "GET", "/metrics", &[], &Value::Null).await;
    assert!(m.contains("switchboard_clients 0"), "{m}");
    // Long-polling clients are counted as clients, not TCP connections: three sessions, each
    // with a GET parked and a POST at the same time, all work; a fourth session is refused.
    let mut sids = Vec::new();
    for _ in 0..3 {
        let (s, body) = http(hub.addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], &Value::Null).await;
        assert_eq!(s, 200, "{body}");
        let open: Value = serde_json::from_str(&body[1..]).unwrap();
        sids.push(open["sid"].as_str().unwrap().to_owned());
    }
    let polls: Vec<_> = sids
        .iter()
        .map(|sid| {
            let (addr, sid) = (hub.addr, sid.clone());
            tokio::spawn(async move {
                http(addr, "GET", &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"), &[], &Value::Null).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for sid in &sids {
        let (s, _) = raw_http(
            hub.addr,
            &format!("POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nContent-Type: text/plain"),
            format!("40{{\"token\":\"{}\"}}", token("p", 600, &[])).as_bytes(),
        )
        .await;
        assert_eq!(s, 200);
    }
    for p in polls {
        let (s, body) = p.await.unwrap();
        assert!(s == 200 && body.starts_with("40"), "{s} {body}");
    }
    let (s, body) = http(hub.addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], &Value::Null).await;
    assert_eq!(s, 403, "{body}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let hub = Hub::start(&[], "[server]\nmax_connections_per_ip = 2\ntrusted_proxies = [\"127.0.0.9\"]\n").await;
    let xff = |ip: &'static str| [("X-Forwarded-For", ip)];
    // From the proxy, clients are counted by the address it forwards.
    let _a1 = ws_from(hub.addr, "127.0.0.9", &xff("198.51.100.1")).await.unwrap();
    let _a2 = ws_from(hub.addr, "127.0.0.9", &xff("198.51.100.1")).await.unwrap();
    assert!(ws_from(hub.addr, "127.0.0.9", &xff("198.51.100.1")).await.is_err());
    let _b1 = ws_from(hub.addr, "127.0.0.9", &xff("198.51.100.2")).await.unwrap();
    let _b2 = ws_from(hub.addr, "127.0.0.9", &[("Forwarded", "for=198.51.100.3")]).await.unwrap();
    // Anyone else's forwarding headers are ignored: these all count as 127.0.0.1.
    let _c1 = ws_from(hub.addr, "127.0.0.1", &xff("198.51.100.4")).await.unwrap();
    let _c2 = ws_from(hub.addr, "127.0.0.1", &xff("198.51.100.5")).await.unwrap();
    assert!(ws_from(hub.addr, "127.0.0.1", &xff("198.51.100.6")).await.is_err());
    let (_, r) = hub.api("GET", "/api/stats", Value::Null).await;
    assert_eq!(r["connections"]["ws"], 6, "{r}");
}

#[tokio::test]
async fn the_hub_logs_connections_refusals_and_api_calls_without_secrets_or_colours() {
    let dir = temp_dir();
    let log = dir.0.join("hub.log");
    let hub = Hub::start_with(
        &["--anonymous", "false"],
        "[server]\nmax_connections_per_ip = 2\norigins = [\"http://good.example\"]\n",
        Some(&log),
    )
    .await;
    // A /ws client comes and goes; a Socket.IO client comes and goes.
    let mut w = ws_client(hub.addr, &token("walter", 600, &[])).await;
    w.close(switchboard_ws::CloseCode::NORMAL, "bye").await.unwrap();
    let (mut s, _) = sio(hub.addr, Some(&token("sally", 600, &[]))).await;
    until(&mut s, "welcome").await;
    s.send(Message::text("41")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    // Refusals: authentication on both endpoints, a foreign origin, the per-address cap.
    let _ = sio(hub.addr, Some("not-a-token")).await;
    assert!(ClientBuilder::new(format!("ws://{}/ws?token=expired", hub.addr)).connect().await.is_err());
    let _ = http(
        hub.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[("Origin", "http://evil.example")],
        &Value::Null,
    )
    .await;
    // Every client so far is gone (their slots come back once their connections close).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _k1 = ws_client(hub.addr, &token("k1", 600, &[])).await;
    let _k2 = ws_client(hub.addr, &token("k2", 600, &[])).await;
    assert!(ClientBuilder::new(format!("ws://{}/ws?token={}", hub.addr, token("k3", 600, &[])))
        .connect()
        .await
        .is_err());
    // An API call, with the key.
    let (st, _) = hub.api("GET", "/api/stats", Value::Null).await;
    assert_eq!(st, 200);
    let (st, _) =
        http(hub.addr, "GET", "/api/stats", &[("Authorization", "Bearer wrong-key-0123456789")], &Value::Null).await;
    assert_eq!(st, 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    for needle in [
        "ws client connected",
        "user=\"walter\"",
        "ws client disconnected",
        "socket.io client connected",
        "user=\"sally\"",
        "socket.io client disconnected",
        "client namespace disconnect",
        "socket.io client refused: authentication",
        "code=\"token_malformed\"",
        "ws client refused: authentication",
        "socket.io client refused: origin",
        "ws client refused: connection limit",
        "api call",
        "path=\"/api/stats\"",
        "status=200",
        "key=\"1\"",
        "api call refused",
    ] {
        assert!(text.contains(needle), "no {needle:?} in the log:\n{text}");
    }
    assert!(!text.contains(API_KEY) && !text.contains(SECRET), "a secret in the log:\n{text}");
    assert!(!text.contains('\x1b'), "colour codes in a log that is not a terminal:\n{text}");
}

/// Runs `switchboard serve` with `args` and `env` until it exits (or 5 s): exit code, stdout,
/// stderr.
async fn serve_once(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.arg("serve").args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(5), cmd.output()).await.expect("serve did not exit").unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test]
async fn configuration_says_everything_at_once_and_accepts_the_usual_spellings() {
    // Beyond loopback without the requirements: all three named in one start.
    let (code, _, err) = serve_once(&["--listen", "0.0.0.0:0"], &[]).await;
    assert_eq!(code, Some(2), "{err}");
    for f in ["auth.anonymous", "auth.jwt_keys", "api.keys"] {
        assert!(err.contains(f), "{err}");
    }
    // No anonymous clients and no key: refused, not a hub nobody can join.
    let (code, _, err) = serve_once(&["--anonymous", "false"], &[]).await;
    assert!(code == Some(2) && err.contains("auth.jwt_keys"), "{code:?} {err}");
    let (code, _, err) = serve_once(&[], &[("SWITCHBOARD_ANONYMOUS", "no")]).await;
    assert!(code == Some(2) && err.contains("auth.jwt_keys"), "{code:?} {err}");
    // --print-config prints the effective configuration: the file, the variables, the flags,
    // with secrets redacted.
    let dir = temp_dir();
    let file = dir.0.join("hub.toml");
    std::fs::write(&file, "[server]\nping_interval_ms = 1234\n").unwrap();
    let (code, out, err) = serve_once(
        &["--print-config", "--config", file.to_str().unwrap(), "--listen", "localhost:8765", "--api-key", API_KEY],
        &[
            ("SWITCHBOARD_LOG_JSON", "1"),
            ("SWITCHBOARD_NATS_URL", "nats://sb:url-secret@127.0.0.1:4222"),
            ("SWITCHBOARD_NATS_TOKEN", "token-secret"),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    for needle in [
        "ping_interval_ms = 1234",
        "format = \"json\"",
        "listen = \"127.0.0.1:8765\"",
        "<redacted>",
        "nats_url = \"nats://sb:<redacted>@127.0.0.1:4222\"",
        "nats_token = \"<redacted>\"",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
    for secret in [API_KEY, "url-secret", "token-secret"] {
        assert!(!out.contains(secret), "{out}");
    }
    // A host name works for --listen; boolean variables take the usual spellings.
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", &format!("localhost:{port}")])
        .env("SWITCHBOARD_LOG_JSON", "yes")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(listening(addr).await, "the hub did not listen on localhost:{port}");
    let (s, _) = http(addr, "GET", "/healthz", &[], &Value::Null).await;
    assert_eq!(s, 200);
    let _ = child.start_kill();
    let out = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.lines().next().is_some_and(|l| l.starts_with('{')), "not JSON logs: {log}");
}

/// Runs `switchboard connect` with `args`, feeding `stdin` (then closing it); exit code,
/// stdout, stderr, and how long it took.
async fn connect_cli(args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.arg("connect").args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let t0 = std::time::Instant::now();
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(text.as_bytes()).await.unwrap();
        drop(w);
    }
    let out =
        tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.expect("connect hung").unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
        t0.elapsed(),
    )
}

/// `switchboard connect` with `args`, running in the background (stdin closed, output piped).
fn spawn_connect(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("connect")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until the hub lists `n` clients.
async fn clients_become(hub: &Hub, n: usize) {
    for _ in 0..200 {
        let (_, r) = hub.api("GET", "/api/sockets", Value::Null).await;
        if r["clients"].as_array().is_some_and(|c| c.len() == n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the hub never had {n} clients");
}

#[tokio::test]
async fn connect_scripts_end_when_done_and_say_why_when_not() {
    let hub = Hub::start(&[], "").await;
    let url = hub.url();
    let ws = format!("ws://{}/ws", hub.addr);
    // -x without -w: exits 0 as soon as its request is answered, not at the timeout.
    let (code, out, err, took) = connect_cli(&[&url, "-x", r#"subscribe "chat:lobby""#, "--timeout", "10"], None).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("ack") && out.contains("chat:lobby") && took < Duration::from_secs(5), "{out} {took:?}");
    // The same on /ws, with a request id.
    let (code, out, err, _) = connect_cli(&[&ws, "-x", r#"{"type":"ping","id":3}"#, "--timeout", "10"], None).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("pong"), "{out}");
    // -w 0: connects, then exits.
    let (code, out, _, _) = connect_cli(&[&url, "-w", "0"], None).await;
    assert!(code == Some(0) && out.contains("connect"), "{out}");
    // -w 1 counts events from others only: the welcome does not end it, a push does.
    let waiting = spawn_connect(&[&url, "-w", "1", "--timeout", "10"]);
    clients_become(&hub, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, _) = hub.api("POST", "/api/emit", json!({"event": "notification", "data": {"n": 1}})).await;
    assert_eq!(s, 200);
    let out = tokio::time::timeout(Duration::from_secs(10), waiting.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("\"n\":1"), "{stdout}");
    // Piped stdin with -w: the lines are sent, and it waits for their acks at the end of input.
    let (code, out, err, _) =
        connect_cli(&[&url, "--timeout", "10"], Some("subscribe \"chat:lobby\"\nunsubscribe \"chat:lobby\"\n")).await;
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(out.matches("< ack").count(), 2, "{out}");
    // A mistyped JSON line is refused locally, not sent as a `message`.
    let (code, _, err, _) = connect_cli(&[&url, "-x", r#"publish {"room":"chat:lobby""#], None).await;
    assert!(code == Some(2) && err.contains("not valid JSON"), "{code:?} {err}");
    // Rooms: what is wrong with the name, not "permission denied".
    let long = format!("subscribe \"{}\"", "r".repeat(300));
    let (_, out, _, _) = connect_cli(&[&url, "-x", "subscribe \"\"", "-x", &long], None).await;
    assert!(out.contains("no room given") && out.contains("longer than"), "{out}");
    // A timeout says what it was waiting for.
    let (code, _, err, _) = connect_cli(&[&url, "-w", "5", "--timeout", "1"], None).await;
    assert!(code == Some(1) && err.contains("0 of 5"), "{code:?} {err}");
}

#[tokio::test]
async fn connect_explains_refusals_and_wrong_urls() {
    let hub = Hub::start(&["--anonymous", "false"], "").await;
    // Socket.IO refusal: exit 1 with the server's reason.
    let (code, _, err, _) = connect_cli(&[&hub.url(), "-w", "1"], None).await;
    assert!(code == Some(1) && err.contains("refused") && err.contains("token_missing"), "{code:?} {err}");
    // /ws refusal: the 401 body (its code) is shown.
    let (code, _, err, _) = connect_cli(&[&format!("ws://{}/ws", hub.addr), "--token", "abc", "-w", "1"], None).await;
    assert!(code == Some(1) && err.contains("401") && err.contains("token_malformed"), "{code:?} {err}");
    // ws:// without /ws: the path is suggested.
    let (code, _, err, _) = connect_cli(&[&format!("ws://{}/", hub.addr), "-w", "1"], None).await;
    assert!(code == Some(1) && err.contains("/ws"), "{code:?} {err}");
    // No scheme: the schemes that work are named.
    let (code, _, err, _) = connect_cli(&[&hub.addr.to_string(), "-w", "1"], None).await;
    assert!(code == Some(2) && err.contains(&format!("http://{}/", hub.addr)), "{code:?} {err}");
    // The server ends the session: non-zero, with the reason.
    let t = token("zed", 600, &[]);
    let mut child = spawn_connect(&[&hub.url(), "--token", &t, "-w", "5", "--timeout", "15"]);
    clients_become(&hub, 1).await;
    let (_, r) = hub.api("GET", "/api/sockets", Value::Null).await;
    let id = r["clients"][0]["id"].as_str().unwrap().to_owned();
    hub.api("POST", "/api/disconnect", json!({"ids": [id]})).await;
    let status =
        tokio::time::timeout(Duration::from_secs(5), child.wait()).await.expect("connect did not exit").unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).await.unwrap();
    assert!(!status.success() && err.contains("disconnected by the server"), "{status:?} {err}");
}

/// Runs `interop/node/hub_chromium_ops.mjs` against `url` in `mode`; the child, for `restart`.
fn chromium_ops(url: &str, mode: &str) -> Child {
    Command::new("node")
        .arg(interop_dir().join("node/hub_chromium_ops.mjs"))
        .args([url, mode])
        .current_dir(interop_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn chromium_ops_pass(child: Child) {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success() && stdout.contains(" 0 failed"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn demo_page_own_origin_token_help_and_reconnect_after_a_restart() {
    if !(peer_available("chromium", "chromium", &["--version"])
        && peer_available("playwright-core (npm)", "node", &["-e", "require('playwright-core')"]))
    {
        return;
    }
    // An Origin allowlist that does not list the hub: its own page still works.
    let hub = Hub::start(&["--origins", "https://app.example"], "").await;
    chromium_ops_pass(chromium_ops(&hub.url(), "page")).await;
    // A hub that needs tokens: the page says how to pass one.
    let hub = Hub::start(&["--anonymous", "false"], "").await;
    chromium_ops_pass(chromium_ops(&hub.url(), "token")).await;
    // The hub restarts: the page notices, refuses to pretend it sent, and reconnects.
    let port = free_port();
    let mut hub = Hub::start_on(port, &[], "", None).await;
    let mut child = chromium_ops(&hub.url(), "restart");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let mut wait_for = async |what: &str| {
        while let Some(l) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap() {
            seen.push_str(&l);
            seen.push('\n');
            if l == what {
                return;
            }
        }
        panic!("no {what}: {seen}");
    };
    wait_for("READY").await;
    let pid = hub.child.id().unwrap();
    std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    let _ = hub.child.wait().await;
    wait_for("DOWN").await;
    let _hub = Hub::start_on(port, &[], "", None).await;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"back\n").await.unwrap();
    let mut rest = String::new();
    while let Some(l) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap().unwrap() {
        rest.push_str(&l);
        rest.push('\n');
    }
    let status = child.wait().await.unwrap();
    assert!(status.success() && rest.contains(" 0 failed"), "{seen}{rest}");
}

/// Starts `docs/examples/chat_backend.py` on a free port; returns it and its base URL.
async fn chat_backend() -> (Child, String) {
    let port = free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/chat_backend.py");
    let child = Command::new("python3").arg(script).arg(port.to_string()).kill_on_drop(true).spawn().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(listening(addr).await, "the example backend did not start");
    (child, format!("http://{addr}"))
}

#[tokio::test]
async fn backend_hooks_run_the_seeds_chat_with_skip_sid() {
    if !peer_available("python3", "python3", &["--version"]) {
        return;
    }
    let (_backend, b) = chat_backend().await;
    let config = format!(
        "[hooks]\nconnect_url = \"{b}/connect\"\nsubscribe_url = \"{b}/subscribe\"\ntimeout_ms = 500\n[[hooks.events]]\npattern = \"*\"\nurl = \"{b}/event\"\n"
    );
    let hub = Hub::start(&[], &config).await;
    // Three Socket.IO clients and one /ws client; the connect hook puts them in `lobby`.
    let (mut a, _) = sio(hub.addr, Some(&token("ann", 600, &[]))).await;
    until(&mut a, "welcome").await;
    let (mut bo, _) = sio(hub.addr, Some(&token("bob", 600, &[]))).await;
    until(&mut bo, "welcome").await;
    let (mut cy, _) = sio(hub.addr, Some(&token("cy", 600, &[]))).await;
    until(&mut cy, "welcome").await;
    let mut w = ws_client(hub.addr, &token("wes", 600, &[])).await;
    let (_, r) = hub.api("GET", "/api/sockets?room=lobby", Value::Null).await;
    assert_eq!(r["clients"].as_array().unwrap().len(), 4, "{r}");
    // `chat` joins `chat_users` (three of them; cy stays out); the backend's reply is the ack.
    a.send(Message::text(r#"421["chat"]"#)).await.unwrap();
    assert!(until(&mut a, "431").await.contains(r#""room":"chat_users""#));
    bo.send(Message::text(r#"421["chat"]"#)).await.unwrap();
    until(&mut bo, "431").await;
    w.send(Message::text(r#"{"type":"chat","id":1}"#)).await.unwrap();
    assert!(until(&mut w, "\"reply\"").await.contains("chat_users"));
    // `my message` → `my reply` to the room, skipping the sender.
    a.send(Message::text(r#"422["my message",{"text":"hi all"}]"#)).await.unwrap();
    assert!(until(&mut a, "432").await.contains(r#""ok":true"#));
    assert!(until(&mut bo, "my reply").await.contains(r#"42["my reply",{"text":"hi all"},""#));
    let ev: Value = serde_json::from_str(&until(&mut w, "my reply").await).unwrap();
    assert_eq!(ev["data"], json!({"text": "hi all"}), "{ev}");
    assert!(quiet(&mut a, 300).await, "the sender got its own message");
    assert!(quiet(&mut cy, 100).await, "a client outside the room got the message");
    // The connect hook refuses a user, on both endpoints, with its reason.
    let (_, reply) = sio(hub.addr, Some(&token("banned", 600, &[]))).await;
    assert!(reply.starts_with("44") && reply.contains("hook_denied") && reply.contains("banned"), "{reply}");
    let (s, body) = http(hub.addr, "GET", &format!("/ws?token={}", token("banned", 600, &[])), &[], &Value::Null).await;
    assert!(s == 403 && body.contains("this user is banned"), "{s} {body}");
    // The subscribe hook decides rooms.
    a.send(Message::text(r#"423["subscribe","admin:ops"]"#)).await.unwrap();
    assert!(until(&mut a, "433").await.contains("admin rooms are for admins"));
    a.send(Message::text(r#"424["subscribe","chat:any"]"#)).await.unwrap();
    assert!(until(&mut a, "434").await.contains(r#""ok":true"#));
    // A slow backend: the client gets hook_timeout in time; an action can disconnect.
    let t0 = std::time::Instant::now();
    cy.send(Message::text(r#"425["slow",2]"#)).await.unwrap();
    assert!(until(&mut cy, "435").await.contains("hook_timeout"));
    assert!(t0.elapsed() < Duration::from_millis(1500), "{:?}", t0.elapsed());
    cy.send(Message::text(r#"426["bye"]"#)).await.unwrap();
    assert!(until(&mut cy, "436").await.contains(r#""bye""#));
    assert!(until(&mut cy, "41").await.starts_with("41"));
    // Metrics per hook.
    let (_, m) = http(hub.addr, "GET", "/metrics", &[], &Value::Null).await;
    assert!(m.contains(r#"switchboard_hook_calls_total{hook="event:*",outcome="ok"}"#), "{m}");
    assert!(m.contains(r#"switchboard_hook_calls_total{hook="event:*",outcome="hook_timeout"} 1"#), "{m}");
    assert!(m.contains(r#"switchboard_hook_calls_total{hook="connect",outcome="ok"}"#), "{m}");
}

#[tokio::test]
async fn a_backend_that_is_down_gets_the_documented_failure_reply() {
    let port = free_port();
    let config = format!(
        "[hooks]\ntimeout_ms = 1000\n[[hooks.events]]\npattern = \"my *\"\nurl = \"http://127.0.0.1:{port}/event\"\n"
    );
    let hub = Hub::start(&[], &config).await;
    let (mut a, _) = sio(hub.addr, Some(&token("ann", 600, &[]))).await;
    until(&mut a, "welcome").await;
    a.send(Message::text(r#"421["my message",1]"#)).await.unwrap();
    let ack = until(&mut a, "431").await;
    assert!(ack.contains(r#""ok":false"#) && ack.contains("hook_failed"), "{ack}");
    // Events no hook takes are unknown requests, as before.
    a.send(Message::text(r#"422["other",1]"#)).await.unwrap();
    assert!(until(&mut a, "432").await.contains("unknown request"));
}

#[tokio::test]
async fn connect_in_interactive_mode_exits_when_the_server_ends_the_session() {
    // A terminal on stdin (util-linux `script` gives `connect` a pseudo-terminal), no script.
    if !peer_available("script (util-linux)", "script", &["--version"]) {
        return;
    }
    let hub = Hub::start(&["--anonymous", "false"], "").await;
    let bin = env!("CARGO_BIN_EXE_switchboard");
    let interactive = |args: String| {
        Command::new("script")
            .args(["-qefc", &format!("{bin} connect {args}"), "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    // Refused (no token): exits 1 with the reason instead of sitting at the prompt.
    // The terminal stays open (stdin held) until the process ends: an end of input would be
    // another reason to exit.
    let mut child = interactive(hub.url());
    let stdin = child.stdin.take();
    let out =
        tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("still running").unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("refused") && text.contains("token_missing"),
        "{:?} {text}",
        out.status
    );
    // Disconnected by the server: exits 1 with the reason.
    let mut child = interactive(format!("{} --token {}", hub.url(), token("ivy", 600, &[])));
    let stdin = child.stdin.take();
    clients_become(&hub, 1).await;
    let (_, r) = hub.api("GET", "/api/sockets", Value::Null).await;
    let id = r["clients"][0]["id"].as_str().unwrap().to_owned();
    hub.api("POST", "/api/disconnect", json!({"ids": [id]})).await;
    let out =
        tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("still running").unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("disconnected by the server"), "{:?} {text}", out.status);
}

#[path = "e2e/cluster.rs"]
mod cluster;

/// `[recovery]` on: socket.io-client recovers a dropped transport with every push it missed,
/// once and in order; another user cannot take its session (security: A3); a used-up session
/// gives the gap event.
#[tokio::test]
async fn socket_io_recovery_through_the_hub() {
    if !peer_available("socket.io-client (npm)", "node", &["-e", "require('socket.io-client')"]) {
        return;
    }
    // On by default: a newcomer's hub recovers socket.io-client reconnects.
    let hub = Hub::start(&[], "").await;
    let args = [hub.url(), token("a", 600, &[]), token("b", 600, &[]), API_KEY.to_owned()];
    node_checks("node/hub_recovery.mjs", &args.iter().map(String::as_str).collect::<Vec<_>>(), Duration::from_secs(60))
        .await;
}

// Socket.IO recovery through the hub under faults (issue "Recovery"): a path that goes dead
// without a FIN (a frozen proxy) while the hub still holds the old connection, connections
// closed from the server's side (the proxy cuts them) mid-stream, a client away
// longer than the window, a client that missed more than the log keeps.
#[tokio::test]
async fn socket_io_recovery_faults_through_the_hub() {
    if !peer_available("socket.io-client (npm)", "node", &["-e", "require('socket.io-client')"]) {
        return;
    }
    let hub = Hub::start(&[], "").await;
    let proxy = switchboard_test_support::Proxy::start(hub.addr.port());
    let tok = token("a", 600, &[]);
    for phase in ["blackhole", "cut"] {
        let mut child = Command::new("node")
            .arg(interop_dir().join("node/hub_recovery_faults.mjs"))
            .args([phase, &format!("http://127.0.0.1:{}", proxy.port), &hub.url(), &tok, API_KEY])
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut log = Vec::new();
        while let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap() {
            match l.as_str() {
                "freeze" => proxy.freeze(),
                "cut" => {
                    // Every connection closed (a FIN from the server's side), then open again.
                    proxy.cut();
                    proxy.open();
                }
                _ => {}
            }
            if l == "freeze" || l == "cut" {
                stdin.write_all(b"done\n").await.unwrap();
            }
            log.push(l);
        }
        println!("{}", log.join("\n"));
        assert!(
            log.iter().any(|l| l.ends_with(" 0 failed")) && !log.iter().any(|l| l.starts_with("FAIL")),
            "{phase}: {log:?}"
        );
    }

    let small = Hub::start(&[], "[recovery]\nmax_disconnection_ms = 1500\nmax_events = 5\n").await;
    for phase in ["expired", "trimmed"] {
        let args = [phase, &small.url(), &small.url(), &tok, API_KEY];
        node_checks("node/hub_recovery_faults.mjs", &args, Duration::from_secs(60)).await;
    }
}

/// The `tick` events a `/ws` client reads within `d` (or until `stop` of them): (data, offset).
async fn ticks(ws: &mut Ws, d: Duration, stop: usize, out: &mut Vec<(u64, String)>, other: &mut Vec<Value>) {
    let end = tokio::time::Instant::now() + d;
    while out.len() < stop {
        let Ok(Some(t)) = tokio::time::timeout_at(end, next_text(ws)).await else { return };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "event" && v["event"] == "tick" {
            out.push((v["data"]["data"].as_u64().unwrap(), v["offset"].as_str().unwrap_or("").to_owned()));
        } else {
            other.push(v);
        }
    }
}

// `/ws` positions (issue "Recovery"): every logged event carries its offset; a client that
// comes back subscribes with `since` and gets what it missed, merged with the live events
// under a ~1 kHz publisher, with no gap and no duplicate; a `since` of another epoch or
// malformed gets `recovered: false` with the reason; GET /api/history serves the same
// history, and a history rule's limit turns an old `since` into 410 with the count.
#[tokio::test]
async fn ws_subscribe_since_merges_the_replay_with_live_traffic() {
    let hub = Hub::start(&[], WS_SINCE_CFG).await;
    ws_since_scenario(&hub).await;
}

/// The history rule [`ws_since_scenario`] expects.
const WS_SINCE_CFG: &str = "[[recovery.history]]\nrooms = \"chat:short\"\nmax_events = 5\n";

/// The `/ws` positions scenario against `hub` (started with [`WS_SINCE_CFG`]).
async fn ws_since_scenario(hub: &Hub) {
    let mut publisher = ws_client(hub.addr, &token("pub", 600, &[])).await;
    let total = 1_500u64;
    let feed = tokio::spawn(async move {
        for i in 0..total {
            let m = json!({"type": "publish", "room": "chat:feed", "event": "tick", "data": i, "id": i});
            publisher.send(Message::text(m.to_string())).await.unwrap();
            until(&mut publisher, "\"reply\"").await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        publisher
    });
    // A first client follows the feed for a while, then goes away.
    let mut a = ws_client(hub.addr, &token("reader", 600, &[])).await;
    a.send(Message::text(json!({"type": "subscribe", "room": "chat:feed", "id": 1}).to_string())).await.unwrap();
    let (mut first, mut other) = (Vec::new(), Vec::new());
    ticks(&mut a, Duration::from_secs(10), 200, &mut first, &mut other).await;
    assert_eq!(first.len(), 200, "{other:?}");
    drop(a);
    let (last, offset) = first.last().cloned().unwrap();
    assert!(!offset.is_empty(), "events carry their offset");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // It comes back with `since`: the replay, then the live events, merged.
    let mut b = ws_client(hub.addr, &token("reader", 600, &[])).await;
    let sub = json!({"type": "subscribe", "room": "chat:feed", "since": {"offset": offset}, "id": 2});
    b.send(Message::text(sub.to_string())).await.unwrap();
    let mut second = Vec::new();
    let mut replies = Vec::new();
    let _publisher = feed.await.unwrap();
    ticks(&mut b, Duration::from_secs(5), usize::MAX, &mut second, &mut replies).await;
    let reply = replies.iter().find(|r| r["type"] == "reply" && r["id"] == 2).expect("the subscribe reply");
    assert_eq!(reply["recovered"], json!(true), "{reply}");
    assert!(reply["replayed"].as_u64().unwrap() > 0, "{reply}");
    let got: Vec<u64> = second.iter().map(|x| x.0).collect();
    let want: Vec<u64> = (last + 1..total).collect();
    assert_eq!(got, want, "every event after the offset once, in order");
    let offsets: std::collections::HashSet<&String> = second.iter().map(|x| &x.1).collect();
    assert_eq!(offsets.len(), second.len(), "offsets are unique");

    // Another epoch, a malformed offset: not recovered, and why.
    // ("1-0": from long before this log began, whatever the log.)
    for (since, reason) in [("1-0", "epoch_changed"), ("garbage", "bad_offset")] {
        let m = json!({"type": "subscribe", "room": "chat:feed", "since": since, "id": 3});
        b.send(Message::text(m.to_string())).await.unwrap();
        let r: Value = serde_json::from_str(&until(&mut b, "\"reply\"").await).unwrap();
        assert_eq!((&r["ok"], &r["recovered"], &r["reason"]), (&json!(true), &json!(false), &json!(reason)), "{r}");
    }
    // A room the rules do not let the client join gets nothing.
    let m = json!({"type": "subscribe", "room": "secret", "since": offset, "id": 4});
    b.send(Message::text(m.to_string())).await.unwrap();
    let r = until(&mut b, "\"reply\"").await;
    assert!(r.contains("\"ok\":false") && !r.contains("tick"), "{r}");

    // The backend's view.
    let (s, h) = hub.api("GET", &format!("/api/history?room=chat:feed&since={offset}&limit=1000"), Value::Null).await;
    assert_eq!(s, 200, "{h}");
    let data: Vec<u64> = h["events"].as_array().unwrap().iter().map(|e| e["data"]["data"].as_u64().unwrap()).collect();
    assert_eq!(data, want.iter().copied().take(1000).collect::<Vec<_>>());
    let (s, h) = hub.api("GET", "/api/history?room=chat:feed&limit=10", Value::Null).await;
    assert_eq!(s, 200, "{h}");
    let data: Vec<u64> = h["events"].as_array().unwrap().iter().map(|e| e["data"]["data"].as_u64().unwrap()).collect();
    assert_eq!(data, (total - 10..total).collect::<Vec<_>>(), "without since: the newest");
    let (s, h) = hub.api("GET", "/api/history?room=chat:feed&since=garbage", Value::Null).await;
    assert_eq!((s, &h["reason"]), (400, &json!("bad_offset")), "{h}");
    let long = "r".repeat(10_000);
    for q in ["room=", &format!("room={long}")] {
        let (s, h) = hub.api("GET", &format!("/api/history?{q}"), Value::Null).await;
        assert_eq!(s, 400, "{h}");
    }
    // A room whose rule keeps 5 events: 10 behind is a gap of 5.
    let mut p = ws_client(hub.addr, &token("pub", 600, &[])).await;
    let mut offsets = Vec::new();
    let mut r = ws_client(hub.addr, &token("reader", 600, &[])).await;
    r.send(Message::text(json!({"type": "subscribe", "room": "chat:short", "id": 1}).to_string())).await.unwrap();
    until(&mut r, "\"reply\"").await;
    for i in 0..11u64 {
        let m = json!({"type": "publish", "room": "chat:short", "event": "tick", "data": i, "id": i});
        p.send(Message::text(m.to_string())).await.unwrap();
        until(&mut p, "\"reply\"").await;
    }
    let mut other = Vec::new();
    ticks(&mut r, Duration::from_secs(5), 11, &mut offsets, &mut other).await;
    let (s, h) = hub.api("GET", &format!("/api/history?room=chat:short&since={}", offsets[0].1), Value::Null).await;
    assert_eq!((s, &h["reason"], &h["lost"]), (410, &json!("trimmed"), &json!(5)), "{h}");
    let (s, h) = hub.api("GET", &format!("/api/history?room=chat:short&since={}", offsets[5].1), Value::Null).await;
    assert_eq!((s, h["events"].as_array().map(Vec::len)), (200, Some(5)), "{h}");
}
