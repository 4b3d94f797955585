//! The test server: one Socket.IO server with every feature the client matrix exercises, a
//! log of what its handlers saw, and raw HTTP helpers for the security rows.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use switchboard_socketio::engineio::EngineConfig;
use switchboard_socketio::{ConnectError, Handlers, SocketIo, SocketIoConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server's handlers saw, in order.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }
    /// Waits until a line contains `needle`.
    pub async fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let end = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < end {
            if self.contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub io: SocketIo,
    pub log: Log,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The handlers of the main namespace.
fn main_handlers(log: Log) -> Handlers {
    let l1 = log.clone();
    let l2 = log.clone();
    let l3 = log.clone();
    let l4 = log.clone();
    Handlers::new()
        .middleware(|socket| async move {
            if socket.auth().get("token").and_then(Value::as_str) == Some("bad") {
                return Err(ConnectError::new("not authorized").with_data(json!({"code": 401})));
            }
            Ok(())
        })
        .on_connect(move |socket| {
            let log = l1.clone();
            async move {
                log.push(format!("connect / {} auth={}", socket.id(), socket.auth()));
                let _ = socket.emit("welcome", &json!({"sid": socket.id().to_string()}));
            }
        })
        .on_disconnect(move |socket, reason| {
            let log = l2.clone();
            async move {
                // The socket's rooms are already left.
                let rooms = socket.rooms().await.map(|r| r.len()).unwrap_or(99);
                log.push(format!("disconnect / {} {reason} rooms={rooms}", socket.id()));
            }
        })
        .on("echo", |socket, mut ev| async move {
            // What was received, sent on unchanged: the attachments stay where they were.
            let args = ev.args.clone();
            let bin = ev.binary.clone();
            if let Some(ack) = ev.take_ack() {
                let _ = ack.send_with(args, bin);
            } else {
                let _ = socket.emit_with("echo", args, bin);
            }
        })
        .on("nested", |socket, mut ev| async move {
            // Binary nested in objects and between arguments, read into typed fields, then
            // sent back in other places: (upload, n, tail) → ack(reply, first part).
            #[derive(serde::Deserialize)]
            struct Meta {
                parts: (Bytes, String),
            }
            #[derive(serde::Deserialize)]
            struct Upload {
                file: Bytes,
                meta: Meta,
            }
            #[derive(serde::Serialize)]
            struct Swapped {
                a: Bytes,
                b: (u32, Bytes),
            }
            #[derive(serde::Serialize)]
            struct Reply {
                sizes: [usize; 3],
                swapped: Swapped,
                text: String,
            }
            let Some(ack) = ev.take_ack() else { return };
            match ev.args_as::<(Upload, u32, Bytes)>() {
                Ok((up, n, tail)) => {
                    // The raw arguments too, as an event, unchanged.
                    let _ = socket.emit_with("nested-raw", ev.args.clone(), ev.binary.clone());
                    let reply = Reply {
                        sizes: [up.file.len(), up.meta.parts.0.len(), tail.len()],
                        swapped: Swapped { a: tail, b: (n, up.file) },
                        text: up.meta.parts.1,
                    };
                    let _ = ack.send_args(&(reply, up.meta.parts.0));
                }
                Err(e) => {
                    let _ = ack.send(&format!("error: {e}"));
                }
            }
        })
        .on("join", |socket, mut ev| async move {
            let room: String = ev.data().unwrap_or_default();
            let ok = socket.join(room).await.is_ok();
            let _ = ev.ack(&ok);
        })
        .on("leave", |socket, mut ev| async move {
            let room: String = ev.data().unwrap_or_default();
            let ok = socket.leave(room).await.is_ok();
            let _ = ev.ack(&ok);
        })
        .on("rooms", |socket, mut ev| async move {
            let rooms: Vec<String> = socket.rooms().await.unwrap_or_default().iter().map(|r| r.to_string()).collect();
            let _ = ev.ack(&rooms);
        })
        .on("to_room", |socket, mut ev| async move {
            // {room, event, data, except?}: to the room without the sender, or with `except`
            // (a sid) when given.
            let v: Value = ev.data().unwrap_or_default();
            let room = v["room"].as_str().unwrap_or("").to_owned();
            let event = v["event"].as_str().unwrap_or("news").to_owned();
            let op = match v["except"].as_str() {
                Some(sid) => socket.ns().broadcast().to(room).except(sid),
                None => socket.to(room),
            };
            let ok = op.emit(&event, &v["data"]).await.is_ok();
            let _ = ev.ack(&ok);
        })
        .on("ask", |socket, _ev| async move {
            // Server → client ack, then the answer back as an event.
            let answer = match socket.emit_with_ack("question", &json!({"q": "life"})) {
                Ok(w) => match w.timeout(Duration::from_secs(5)).await {
                    Ok(r) => json!({"ok": r.args}),
                    Err(e) => json!({"err": e.to_string()}),
                },
                Err(e) => json!({"err": e.to_string()}),
            };
            let _ = socket.emit("answer", &answer);
        })
        .on("ask_room", |socket, mut ev| async move {
            // A broadcast with ack to a room; reports how many answered.
            let room: String = ev.data().unwrap_or_default();
            let r = socket
                .ns()
                .broadcast()
                .to(room)
                .timeout(Duration::from_secs(2))
                .emit_with_ack("question", &json!({"q": "all"}))
                .await;
            let n = r.map(|a| a.responses.len()).unwrap_or(0);
            let _ = ev.ack(&n);
        })
        .on("server_disconnect", |socket, _ev| async move {
            socket.disconnect();
        })
        .on("message", |socket, ev| async move {
            let data: Value = ev.data().unwrap_or_default();
            let _ = socket.send(&data);
        })
        .on_any(move |socket, ev| {
            let log = l3.clone();
            async move {
                log.push(format!("any {} {} {}", socket.id(), ev.name, Value::Array(ev.args.clone())));
            }
        })
        .on("log", move |socket, ev| {
            let log = l4.clone();
            async move {
                log.push(format!("log {} {}", socket.id(), Value::Array(ev.args.clone())));
            }
        })
}

/// Starts the test server on an ephemeral port.
pub async fn start(engine: EngineConfig, tweak: impl FnOnce(SocketIoConfig) -> SocketIoConfig) -> TestServer {
    let log = Log::default();
    let la = log.clone();
    let ld = log.clone();
    let config = tweak(SocketIoConfig::default().with_engine(engine.with_path("/socket.io/")));
    let io = SocketIo::builder()
        .config(config)
        .ns("/", main_handlers(log.clone()))
        .ns(
            "/admin",
            Handlers::new()
                .middleware(|socket| async move {
                    if socket.auth().get("role").and_then(Value::as_str) == Some("admin") {
                        Ok(())
                    } else {
                        Err(ConnectError::new("not admin"))
                    }
                })
                .on_connect(move |socket| {
                    let log = la.clone();
                    async move {
                        log.push(format!("connect /admin {}", socket.id()));
                        let _ = socket.emit("admin-welcome", &"hello admin");
                    }
                }),
        )
        .dynamic_ns(
            |name| name.starts_with("/dyn-"),
            Handlers::new().on_connect(move |socket| {
                let log = ld.clone();
                async move {
                    log.push(format!("connect {} {}", socket.ns().name(), socket.id()));
                    let _ = socket.emit("dyn-welcome", &socket.ns().name());
                }
            }),
        )
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = io.clone();
    tokio::spawn(async move { srv.serve(listener, std::future::pending()).await });
    TestServer { addr, io, log }
}

/// A default test server (ping every 1 s, 2 s to answer) and a fast-heartbeat one.
pub async fn default_server() -> TestServer {
    start(
        EngineConfig::default()
            .with_ping_interval(Duration::from_millis(1000))
            .with_ping_timeout(Duration::from_millis(2000)),
        |c| c,
    )
    .await
}

pub async fn heartbeat_server() -> TestServer {
    start(
        EngineConfig::default()
            .with_ping_interval(Duration::from_millis(300))
            .with_ping_timeout(Duration::from_millis(300)),
        |c| c,
    )
    .await
}

/// A raw HTTP/1.1 exchange (one request, `Connection: close`): status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (status, _, body) = http_full(addr, method, target, headers, body).await;
    (status, body)
}

/// [`http`], with the response head (lowercased) too.
pub async fn http_full(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !chunked && (method == "POST" || !body.is_empty()) {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(req.as_bytes()).await.unwrap();
    if chunked {
        // In 64 KiB chunks, stopping quietly if the server has answered and closed.
        for c in body.chunks(64 << 10) {
            if tcp.write_all(format!("{:x}\r\n", c.len()).as_bytes()).await.is_err()
                || tcp.write_all(c).await.is_err()
                || tcp.write_all(b"\r\n").await.is_err()
            {
                break;
            }
        }
        let _ = tcp.write_all(b"0\r\n\r\n").await;
    } else {
        let _ = tcp.write_all(body).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    let head = text.split_once("\r\n\r\n").map(|(h, _)| h.to_ascii_lowercase()).unwrap_or_default();
    let body = if head.contains("transfer-encoding: chunked") { dechunk(&body) } else { body };
    (status, head, body)
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((len, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else { break };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Opens a polling session: the sid and the open packet's JSON.
pub async fn open_polling(addr: SocketAddr) -> (String, Value) {
    let (status, body) = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], b"").await;
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(body.strip_prefix('0').unwrap()).unwrap();
    (json["sid"].as_str().unwrap().to_owned(), json)
}

/// A polling GET on a session.
pub async fn poll(addr: SocketAddr, sid: &str) -> (u16, String) {
    http(addr, "GET", &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"), &[], b"").await
}

/// A polling POST on a session.
pub async fn post(addr: SocketAddr, sid: &str, body: &str) -> (u16, String) {
    http(
        addr,
        "POST",
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        &[("Content-Type", "text/plain;charset=UTF-8")],
        body.as_bytes(),
    )
    .await
}

/// A polling session connected to the main namespace: (engine sid, socket id).
pub async fn connected_polling(addr: SocketAddr) -> (String, String) {
    let (sid, _) = open_polling(addr).await;
    assert_eq!(post(addr, &sid, "40").await.0, 200);
    let (status, body) = poll(addr, &sid).await;
    assert_eq!(status, 200);
    let connect = body.split('\x1e').find(|p| p.starts_with("40")).unwrap_or_else(|| panic!("no CONNECT in {body:?}"));
    let v: Value = serde_json::from_str(&connect[2..]).unwrap();
    (sid, v["sid"].as_str().unwrap().to_owned())
}

#[allow(unused_imports)]
pub use switchboard_test_support::{interop_dir, peer_available};
