//! The rows E1–E17 of docs/security.md against a running server, from the outside: raw HTTP
//! requests, raw Engine.IO/Socket.IO packets over polling and over WebSocket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;
use switchboard_socketio::engineio::EngineConfig;
use switchboard_socketio::Limits;
use switchboard_ws::{ClientBuilder, Message};

/// Waits until requests on `sid` get 400 "Session ID unknown" (the session is gone); a
/// pending close packet may come first.
async fn session_gone(addr: std::net::SocketAddr, sid: &str) -> bool {
    for _ in 0..50 {
        let (status, body) = poll(addr, sid).await;
        if status == 400 && body.contains("\"code\":1") {
            return true;
        }
        assert!(status == 200 && body.contains('1') || status == 400, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn ws_url(addr: std::net::SocketAddr, sid: Option<&str>) -> String {
    match sid {
        Some(s) => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={s}"),
        None => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
    }
}

#[tokio::test]
async fn e1_oversized_polling_post_gets_413_and_closes() {
    let srv = default_server().await;
    let addr = srv.addr;
    let big = vec![b'4'; 1_000_001];
    let (sid, _) = open_polling(addr).await;
    let (status, _) = http(
        addr,
        "POST",
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        &[("Content-Type", "text/plain")],
        &big,
    )
    .await;
    assert_eq!(status, 413);
    assert!(session_gone(addr, &sid).await);
    // Chunked, no Content-Length: the server stops reading once over the cap.
    let (sid, _) = open_polling(addr).await;
    let huge = vec![b'4'; 8 << 20];
    let (status, _) = http(
        addr,
        "POST",
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        &[("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")],
        &huge,
    )
    .await;
    assert_eq!(status, 413);
    assert!(session_gone(addr, &sid).await);
    // At the cap is fine.
    let (sid, _) = open_polling(addr).await;
    let mut ok = b"4".to_vec();
    ok.resize(1_000_000, b'x');
    assert_eq!(post(addr, &sid, std::str::from_utf8(&ok).unwrap()).await.0, 200);
}

#[tokio::test]
async fn e2_bad_query_parameters_get_json_errors() {
    let srv = default_server().await;
    let addr = srv.addr;
    let cases: &[(&str, &str, u16, u8)] = &[
        ("GET", "/socket.io/?transport=polling", 400, 5),
        ("GET", "/socket.io/?EIO=abc&transport=polling", 400, 5),
        ("GET", "/socket.io/?EIO=3&transport=polling", 400, 5),
        ("GET", "/socket.io/?EIO=4&transport=abc", 400, 0),
        ("GET", "/socket.io/?EIO=4&transport=__proto__", 400, 0),
        ("GET", "/socket.io/?EIO=4&transport=constructor", 400, 0),
        ("GET", "/socket.io/?EIO=4&transport=polling&sid=unknown", 400, 1),
        ("GET", "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAAAA", 400, 1),
        ("POST", "/socket.io/?EIO=4&transport=polling", 400, 2),
        ("PUT", "/socket.io/?EIO=4&transport=polling", 400, 2),
        ("GET", "/socket.io/?EIO=4&EIO=4&transport=polling", 400, 3),
    ];
    for (method, target, status, code) in cases {
        let (s, body) = http(addr, method, target, &[], b"").await;
        assert_eq!(s, *status, "{method} {target}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{target}: {body}"));
        assert_eq!(v["code"], *code, "{target}: {body}");
        assert!(v["message"].is_string());
    }
    // Outside the path: 404, the server keeps serving.
    assert_eq!(http(addr, "GET", "/other", &[], b"").await.0, 404);
    // An Origin allowlist guards polling and WebSocket alike (code 4, 403).
    let guarded = start(
        EngineConfig::default()
            .with_origins(switchboard_ws::proto::handshake::server::OriginPolicy::allow_list(["https://good.example"])),
        |c| c,
    )
    .await;
    let (s, body) =
        http(guarded.addr, "GET", "/socket.io/?EIO=4&transport=polling", &[("Origin", "https://evil.example")], b"")
            .await;
    assert_eq!((s, body.as_str()), (403, r#"{"code":4,"message":"Forbidden"}"#));
    let (s, head, _) = http_full(
        guarded.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[("Origin", "https://good.example")],
        b"",
    )
    .await;
    assert_eq!(s, 200);
    // CORS for the allowed origin, with credentials; and the preflight.
    assert!(head.contains("access-control-allow-origin: https://good.example"), "{head}");
    assert!(head.contains("access-control-allow-credentials: true"), "{head}");
    let (s, head, _) = http_full(
        guarded.addr,
        "OPTIONS",
        "/socket.io/?EIO=4&transport=polling",
        &[("Origin", "https://good.example"), ("Access-Control-Request-Method", "POST")],
        b"",
    )
    .await;
    assert_eq!(s, 204);
    assert!(head.contains("access-control-allow-methods: get, post, options"), "{head}");
    let ws = ClientBuilder::new(ws_url(guarded.addr, None)).origin("https://evil.example").connect().await;
    assert!(ws.is_err());
    let ws = ClientBuilder::new(ws_url(guarded.addr, None)).origin("https://good.example").connect().await;
    assert!(ws.is_ok());
}

#[tokio::test]
async fn e3_wrong_content_type_ends_the_session() {
    let srv = default_server().await;
    let (sid, _) = open_polling(srv.addr).await;
    let (status, _) = http(
        srv.addr,
        "POST",
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        &[("Content-Type", "application/octet-stream")],
        b"40",
    )
    .await;
    assert_eq!(status, 400);
    assert!(session_gone(srv.addr, &sid).await);
}

#[tokio::test]
async fn e4_overlapping_polls_close_the_session() {
    let srv = default_server().await;
    let addr = srv.addr;
    let (sid, _) = open_polling(addr).await;
    let s2 = sid.clone();
    let first = tokio::spawn(async move { poll(addr, &s2).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = poll(addr, &sid).await;
    assert_eq!(status, 400, "{body}");
    // The parked poll ends (with the close packet), and later polls get 400.
    let (s1, b1) = tokio::time::timeout(Duration::from_secs(5), first).await.unwrap().unwrap();
    assert_eq!((s1, b1.as_str()), (200, "1"));
    assert!(session_gone(addr, &sid).await);
}

#[tokio::test]
async fn e5_malformed_payloads_close_the_session() {
    let srv = default_server().await;
    for body in ["abc", "99999991:", "7", "1x", "b!!!", &"9".repeat(100_000)] {
        let (sid, _) = open_polling(srv.addr).await;
        let (status, _) = post(srv.addr, &sid, body).await;
        assert_eq!(status, 400, "{body:.20}");
        assert!(session_gone(srv.addr, &sid).await, "{body:.20}");
    }
    // Raw bytes ≥ 0x80 that are not UTF-8.
    let (sid, _) = open_polling(srv.addr).await;
    let (status, _) = http(
        srv.addr,
        "POST",
        &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        &[("Content-Type", "text/plain")],
        &[b'4', 0xff, 0x80],
    )
    .await;
    assert_eq!(status, 400);
    assert!(session_gone(srv.addr, &sid).await);
}

#[tokio::test]
async fn e6_upgrade_rules() {
    let srv = start(EngineConfig::default().with_upgrade_timeout(Duration::from_millis(500)), |c| c).await;
    let addr = srv.addr;
    let (sid, socket) = connected_polling(addr).await;
    // A WebSocket with the sid but no probe: closed after the upgrade timeout; polling goes on.
    let mut ws = ClientBuilder::new(ws_url(addr, Some(&sid))).connect().await.unwrap();
    let t0 = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.recv().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(end.is_ok() && t0.elapsed() >= Duration::from_millis(400));
    assert_eq!(post(addr, &sid, "42[\"log\",\"still polling\"]").await.0, 200);
    assert!(srv.log.wait_for("still polling", Duration::from_secs(2)).await);
    // A proper upgrade: the parked poll gets a noop once the probe is answered.
    let s2 = sid.clone();
    let parked = tokio::spawn(async move { poll(addr, &s2).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ws = ClientBuilder::new(ws_url(addr, Some(&sid))).connect().await.unwrap();
    // A second WebSocket on the same sid while the first upgrades: the handshake completes
    // and the server closes it at once; the upgrade in progress is not disturbed.
    assert!(second_websocket_is_closed(addr, &sid).await);
    ws.send("2probe").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("3probe"));
    let (s, b) = tokio::time::timeout(Duration::from_secs(5), parked).await.unwrap().unwrap();
    assert_eq!((s, b.as_str()), (200, "6"));
    ws.send("5").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // HTTP on the sid after the upgrade: 400, and the session lives on over WebSocket.
    assert_eq!(poll(addr, &sid).await.0, 400);
    assert_eq!(post(addr, &sid, "42[\"log\",\"x\"]").await.0, 400);
    let s = srv.io.get_socket(switchboard_socketio::engineio::Sid::parse(&socket).unwrap()).unwrap();
    s.emit("over-ws", &1).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::text("42[\"over-ws\",1]"));
    // A WebSocket on a sid that is already on WebSocket: opened, then closed by the server;
    // the session lives on over the first one.
    assert!(second_websocket_is_closed(addr, &sid).await);
    ws.send("42[\"log\",\"first ws still works\"]").await.unwrap();
    assert!(srv.log.wait_for("first ws still works", Duration::from_secs(2)).await);
    s.emit("over-ws", &2).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::text("42[\"over-ws\",2]"));
}

/// Opens a WebSocket on `sid` and reports whether the server completed the handshake and then
/// closed the connection on its own (a Close frame, nothing else first) within 3 s.
async fn second_websocket_is_closed(addr: std::net::SocketAddr, sid: &str) -> bool {
    let Ok(mut ws) = ClientBuilder::new(ws_url(addr, Some(sid))).connect().await else {
        return false;
    };
    matches!(tokio::time::timeout(Duration::from_secs(3), ws.recv()).await, Ok(Some(Ok(Message::Close(Some(_))))))
}

#[tokio::test]
async fn e6_client_close_during_a_parked_poll_answers_it_with_a_noop() {
    let srv = default_server().await;
    let addr = srv.addr;
    let (sid, _) = connected_polling(addr).await;
    let s2 = sid.clone();
    let parked = tokio::spawn(async move { poll(addr, &s2).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(post(addr, &sid, "1").await.0, 200);
    let (s, b) = tokio::time::timeout(Duration::from_secs(5), parked).await.unwrap().unwrap();
    assert_eq!((s, b.as_str()), (200, "6"));
    // The session is gone: the next poll is refused.
    assert_eq!(poll(addr, &sid).await.0, 400);
    // A server-initiated close still answers the parked poll with `1`.
    let (sid, socket) = connected_polling(addr).await;
    let s2 = sid.clone();
    let parked = tokio::spawn(async move { poll(addr, &s2).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.io.get_socket(switchboard_socketio::engineio::Sid::parse(&socket).unwrap()).unwrap().disconnect();
    let (s, b) = tokio::time::timeout(Duration::from_secs(5), parked).await.unwrap().unwrap();
    assert_eq!(s, 200);
    assert!(b.ends_with('1'), "{b}");
}

#[tokio::test]
async fn e6_polls_after_the_ping_timeout_are_refused_even_before_the_timer_fires() {
    // Ping every 200 ms, 300 ms to answer: a client that never answers is past its deadline
    // 500 ms in; every later request must find the session closed, however the timers run.
    let srv = start(
        EngineConfig::default()
            .with_ping_interval(Duration::from_millis(200))
            .with_ping_timeout(Duration::from_millis(300)),
        |c| c,
    )
    .await;
    let addr = srv.addr;
    let (sid, _) = connected_polling(addr).await;
    let t0 = std::time::Instant::now();
    // Take the ping without answering it.
    let (s, b) = poll(addr, &sid).await;
    assert_eq!((s, b.as_str()), (200, "2"));
    let deadline = t0 + Duration::from_millis(500);
    tokio::time::sleep_until((deadline + Duration::from_millis(5)).into()).await;
    // A pong after the deadline does not revive it, and a poll is refused.
    let (s, _) = post(addr, &sid, "3").await;
    assert!(s == 200 || s == 400, "{s}");
    let (s, b) = poll(addr, &sid).await;
    assert_eq!(s, 400, "{b}");
    assert!(srv.log.wait_for("ping timeout", Duration::from_secs(2)).await);
}

#[tokio::test]
async fn e7_socket_errors_on_the_upgrade_path_are_contained() {
    use tokio::io::AsyncWriteExt;
    let srv = default_server().await;
    let addr = srv.addr;
    for _ in 0..20 {
        let (sid, _) = connected_polling(addr).await;
        // An upgrade request, then a reset mid-way.
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        tcp.write_all(&[0x81, 0x85, 1, 2]).await.unwrap();
        tcp.set_zero_linger().unwrap();
        drop(tcp);
        // HTTP/2 cleartext upgrade: not an Engine.IO transport; answered, not crashed.
        let (s, _) = http(
            addr,
            "GET",
            "/socket.io/?EIO=4&transport=websocket",
            &[("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")],
            b"",
        )
        .await;
        assert_eq!(s, 400);
        // The session stays usable on polling.
        assert_eq!(post(addr, &sid, "42[\"log\",\"alive\"]").await.0, 200);
    }
    assert!(srv.log.wait_for("alive", Duration::from_secs(2)).await);
    assert_eq!(open_polling(addr).await.1["upgrades"][0], "websocket");
}

#[tokio::test]
async fn e8_session_ids_are_strong_and_socket_ids_separate() {
    let srv = default_server().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..500 {
        let (sid, _) = open_polling(srv.addr).await;
        assert_eq!(sid.len(), 27, "a node tag and 128 random bits, base64url");
        assert!(sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(seen.insert(sid));
    }
    let (engine_sid, socket_id) = connected_polling(srv.addr).await;
    assert_ne!(engine_sid, socket_id, "the public socket id is not the session id");
}

async fn heartbeat_case(ws_transport: bool) {
    let srv = heartbeat_server().await;
    let addr = srv.addr;
    let t0 = std::time::Instant::now();
    let socket_id = if ws_transport {
        let mut ws = ClientBuilder::new(ws_url(addr, None)).connect().await.unwrap();
        let _open = ws.recv().await.unwrap().unwrap();
        ws.send("40").await.unwrap();
        let connect = loop {
            if let Message::Text(t) = ws.recv().await.unwrap().unwrap() {
                if t.starts_with("40") {
                    break t;
                }
            }
        };
        let v: Value = serde_json::from_str(&connect[2..]).unwrap();
        ws.send("42[\"join\",\"hb-room\"]").await.unwrap();
        // Read and never answer pings; the server closes the WebSocket.
        tokio::spawn(async move { while let Some(Ok(_)) = ws.recv().await {} });
        v["sid"].as_str().unwrap().to_owned()
    } else {
        let (sid, socket) = connected_polling(addr).await;
        assert_eq!(post(addr, &sid, "42[\"join\",\"hb-room\"]").await.0, 200);
        socket
    };
    assert!(srv.log.wait_for(&format!("disconnect / {socket_id} ping timeout rooms=1"), Duration::from_secs(5)).await);
    // Not before ping interval + ping timeout (300 + 300 ms).
    assert!(t0.elapsed() >= Duration::from_millis(550), "{:?}", t0.elapsed());
    let ns = srv.io.of("/").unwrap();
    assert!(ns.broadcast().to("hb-room").sockets().await.unwrap().is_empty(), "room membership released");
}

#[tokio::test]
async fn e9_heartbeat_timeout_on_polling() {
    heartbeat_case(false).await;
}

#[tokio::test]
async fn e9_heartbeat_timeout_on_websocket() {
    heartbeat_case(true).await;
}

/// Sends Socket.IO packets on a fresh connected polling session; expects a parse-error
/// disconnect, and another socket unaffected.
async fn expect_parse_error(srv: &TestServer, packets: &[&str]) {
    let (other_sid, _) = connected_polling(srv.addr).await;
    let (sid, socket) = connected_polling(srv.addr).await;
    let body: Vec<String> =
        packets.iter().map(|p| if p.starts_with('b') { p.to_string() } else { format!("4{p}") }).collect();
    let (status, _) = post(srv.addr, &sid, &body.join("\x1e")).await;
    assert_eq!(status, 200, "{packets:?}");
    assert!(
        srv.log.wait_for(&format!("disconnect / {socket} parse error"), Duration::from_secs(3)).await,
        "{packets:?}: {:?}",
        srv.log.lines()
    );
    assert!(session_gone(srv.addr, &sid).await, "{packets:?}");
    let marker = format!("unaffected-{}", packets.len() * 1000 + packets[0].len());
    assert_eq!(post(srv.addr, &other_sid, &format!("42[\"log\",\"{marker}\"]")).await.0, 200);
    assert!(srv.log.wait_for(&marker, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn e10_invalid_socketio_packets_disconnect() {
    let srv = default_server().await;
    for p in ["4abc", "9", "42{}", "42abc[\"x\"]", "2/admin,\"x", "0\"not an object\"", "3[]", "1{}", "2[\"e\""] {
        expect_parse_error(&srv, &[p]).await;
    }
}

#[tokio::test]
async fn e11_event_name_type_confusion_disconnects() {
    let srv = default_server().await;
    for p in ["2[{\"toString\":\"x\"}]", "2[true]", "2[null]", "2[]", "2[1]", "2[[\"a\"]]"] {
        expect_parse_error(&srv, &[p]).await;
    }
}

#[tokio::test]
async fn e12_reserved_event_names_are_refused() {
    let srv = default_server().await;
    for name in ["error", "disconnect", "disconnecting", "connect", "connect_error", "newListener", "removeListener"] {
        expect_parse_error(&srv, &[&format!("2[\"{name}\",\"x\"]")]).await;
    }
    // No handler ever saw them.
    for l in srv.log.lines() {
        assert!(!l.starts_with("any ") && !l.contains("\"x\""), "{l}");
    }
    // And the server may not emit them either.
    let (_, socket) = connected_polling(srv.addr).await;
    let s = srv.io.get_socket(switchboard_socketio::engineio::Sid::parse(&socket).unwrap()).unwrap();
    assert!(s.emit("disconnect", &1).is_err());
}

#[tokio::test]
async fn e13_placeholder_abuse_disconnects() {
    let srv = default_server().await;
    let att = "bAQID"; // one binary attachment [1,2,3]
    for p in [
        "51-[\"e\",{\"_placeholder\":true,\"num\":\"splice\"}]",
        "51-[\"e\",{\"_placeholder\":true,\"num\":-1}]",
        "51-[\"e\",{\"_placeholder\":true,\"num\":99}]",
        "51-[\"e\",{\"_placeholder\":true,\"num\":0.5}]",
        "51-[\"e\",{\"_placeholder\":true,\"num\":0,\"x\":1}]",
        "51-[\"e\",\"no placeholder\"]",
    ] {
        expect_parse_error(&srv, &[p, att]).await;
    }
    expect_parse_error(
        &srv,
        &["52-[\"e\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":0}]", att, att],
    )
    .await;
    expect_parse_error(&srv, &["2[\"e\",{\"_placeholder\":true,\"num\":0}]"]).await;
    // A valid one is delivered with the received bytes.
    let (sid, _) = connected_polling(srv.addr).await;
    post(srv.addr, &sid, &format!("451-[\"log\",{{\"_placeholder\":true,\"num\":0}}]\x1e{att}")).await;
    assert!(srv.log.wait_for("log", Duration::from_secs(2)).await);
}

#[tokio::test]
async fn e14_attachment_caps() {
    let limits = Limits::default().with_assembly_timeout(Duration::from_millis(500));
    let srv = start(EngineConfig::default().with_max_payload(4 << 20), move |c| c.with_limits(limits)).await;
    expect_parse_error(&srv, &["59999999-[\"e\"]"]).await;
    expect_parse_error(&srv, &["511-[\"e\"]"]).await;
    expect_parse_error(&srv, &["50-[\"e\"]"]).await;
    expect_parse_error(&srv, &["5-[\"e\"]"]).await;
    // Ten declared, then more than 1 MB of attachments in all.
    let chunk = format!("b{}", "A".repeat(400_000));
    let mut packets = vec!["510-[\"e\"]".to_string()];
    packets.extend(std::iter::repeat_n(chunk, 4));
    let refs: Vec<&str> = packets.iter().map(String::as_str).collect();
    expect_parse_error(&srv, &refs).await;
    // Declared two, sent one: closed once the assembly time is up.
    let (sid, socket) = connected_polling(srv.addr).await;
    post(srv.addr, &sid, "452-[\"e\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]\x1ebAQID")
        .await;
    assert!(srv.log.wait_for(&format!("disconnect / {socket} parse error"), Duration::from_secs(3)).await);
}

#[tokio::test]
async fn e15_namespace_and_connect_abuse() {
    let srv = start(EngineConfig::default(), |c| c.with_connect_timeout(Duration::from_millis(500))).await;
    let addr = srv.addr;
    // Never CONNECT: closed after connect_timeout.
    let (sid, _) = open_polling(addr).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(session_gone(addr, &sid).await);
    // Unknown namespace: CONNECT_ERROR.
    let (sid, _) = connected_polling(addr).await;
    post(addr, &sid, "40/nope,").await;
    let (_, body) = poll(addr, &sid).await;
    assert!(body.contains("44/nope,{\"message\":\"Invalid namespace\"}"), "{body}");
    // Many dynamic namespaces over one connection: capped per connection (32 with "/").
    let many: Vec<String> = (0..40).map(|i| format!("40/dyn-{i},")).collect();
    post(addr, &sid, &many.join("\x1e")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, body) = poll(addr, &sid).await;
    let ok = body.split('\x1e').filter(|p| p.starts_with("40/dyn-")).count();
    let refused = body.split('\x1e').filter(|p| p.contains("Too many namespaces")).count();
    assert_eq!((ok, refused), (31, 9), "{body}");
}

#[tokio::test]
async fn e16_ack_state_is_freed_by_timeouts() {
    let srv = default_server().await;
    let (_, socket) = connected_polling(srv.addr).await;
    let s = srv.io.get_socket(switchboard_socketio::engineio::Sid::parse(&socket).unwrap()).unwrap();
    // The client never acks.
    let mut waits = Vec::new();
    for _ in 0..50 {
        waits.push(s.emit_with_ack("q", &1).unwrap().timeout(Duration::from_millis(200)));
    }
    assert_eq!(s.pending_acks(), 50);
    let handles: Vec<_> = waits.into_iter().map(|w| tokio::spawn(w.wait())).collect();
    for h in handles {
        assert_eq!(h.await.unwrap(), Err(switchboard_socketio::AckError::Timeout));
    }
    assert_eq!(s.pending_acks(), 0);
    // Dropped without waiting: freed too.
    drop(s.emit_with_ack("q", &1).unwrap());
    assert_eq!(s.pending_acks(), 0);
    // A broadcast with timeout.
    let acks = srv.io.to(s.id()).timeout(Duration::from_millis(200)).emit_with_ack("q", &1).await.unwrap();
    assert_eq!((acks.responses.len(), acks.missing(), acks.complete()), (0, 1, false));
    assert_eq!(s.pending_acks(), 0);
}

#[tokio::test]
async fn e17_json_bombs_are_rejected_cleanly() {
    let srv = start(EngineConfig::default().with_max_payload(12 << 20), |c| c).await;
    let deep = format!("2[\"e\",{}]", "[".repeat(100_000));
    expect_parse_error(&srv, &[&deep]).await;
    let closed_deep = format!("2[\"e\",{}{}]", "[".repeat(10_000), "]".repeat(10_000));
    expect_parse_error(&srv, &[&closed_deep]).await;
    let huge_number = format!("2[\"e\",{}]", "9".repeat(10 << 20));
    expect_parse_error(&srv, &[&huge_number]).await;
    // Duplicate keys: parsed deterministically (last wins), the server keeps working.
    let (sid, _) = connected_polling(srv.addr).await;
    post(srv.addr, &sid, "42[\"log\",{\"k\":1,\"k\":2}]").await;
    assert!(srv.log.wait_for("{\"k\":2}", Duration::from_secs(2)).await, "{:?}", srv.log.lines());
}

#[tokio::test]
async fn waiting_handlers_are_capped_per_connection() {
    let srv = start(EngineConfig::default(), |c| c.with_max_waiting_handlers(5)).await;
    let (sid, socket) = connected_polling(srv.addr).await;
    // Each `ask` waits for an ack the client never sends: the sixth is refused and the
    // connection closed, instead of tasks piling up.
    let body: Vec<&str> = std::iter::repeat_n("42[\"ask\"]", 10).collect();
    assert_eq!(post(srv.addr, &sid, &body.join("\x1e")).await.0, 200);
    assert!(
        srv.log.wait_for(&format!("disconnect / {socket} too many pending requests"), Duration::from_secs(3)).await,
        "{:?}",
        srv.log.lines()
    );
    // Under the cap, nothing happens.
    let (sid, socket) = connected_polling(srv.addr).await;
    let body: Vec<&str> = std::iter::repeat_n("42[\"ask\"]", 5).collect();
    assert_eq!(post(srv.addr, &sid, &body.join("\x1e")).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!srv.log.contains(&format!("disconnect / {socket}")));
}
