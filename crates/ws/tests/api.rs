//! The I/O layer against a real loopback socket: handshake rows of the security table (docs/security.md), client
//! response validation, split halves, back-pressure, hyper upgrade, keepalive, TLS, cancel safety.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use support::*;
use switchboard_ws::proto::handshake::server::OriginPolicy;
use switchboard_ws::proto::HandshakeError;
use switchboard_ws::{tls, Accept, Acceptor, ClientBuilder, CloseCode, Config, Error, Message, ReadyState, Reject};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

async fn status_of(addr: std::net::SocketAddr, request: &[u8]) -> (String, Raw) {
    let mut r = Raw::connect(addr).await;
    r.send(request).await;
    (r.read_head().await, r)
}

fn req(extra: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n")
}

#[tokio::test]
async fn handshake_rows_against_the_server() {
    let acceptor =
        Acceptor::new().origins(OriginPolicy::allow_list(["https://app.example.com"])).protocols(["v2", "v1"]);
    let addr = echo_server(acceptor).await;
    // H1: a 20 MB header line is cut at the cap.
    let mut giant = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    giant.extend(std::iter::repeat_n(b'a', 100_000));
    let (head, _) = status_of(addr, &giant).await;
    assert!(head.starts_with("HTTP/1.1 431"), "H1: {head}");
    let mut line = b"GET /".to_vec();
    line.extend(std::iter::repeat_n(b'a', 10_000));
    let (head, _) = status_of(addr, &line).await;
    assert!(head.starts_with("HTTP/1.1 414"), "H1: {head}");
    // H2: header-count flood.
    let mut flood = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..2000 {
        flood.push_str(&format!("X-{i}: v\r\n"));
    }
    flood.push_str(&format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ));
    let (head, _) = status_of(addr, flood.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 431"), "H2: {head}");
    // H4: method, plain GET, bad tokens; mixed case passes.
    let post = req("").replacen("GET", "POST", 1);
    assert!(status_of(addr, post.as_bytes()).await.0.starts_with("HTTP/1.1 405"), "H4 POST");
    assert!(status_of(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await.0.starts_with("HTTP/1.1 426"), "H4 plain GET");
    let bad_up = req("").replace("Upgrade: websocket", "Upgrade: websocketx");
    assert!(status_of(addr, bad_up.as_bytes()).await.0.starts_with("HTTP/1.1 400"));
    let ok_case = req("")
        .replace("Upgrade: websocket", "upgrade: WebSocket")
        .replace("Connection: Upgrade", "connection: keep-alive, Upgrade");
    assert!(status_of(addr, ok_case.as_bytes()).await.0.starts_with("HTTP/1.1 101"), "H4 mixed case");
    // H5: keys.
    for k in ["AAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA=", "not base64!", ""] {
        let r = req("").replace(KEY, k);
        assert!(status_of(addr, r.as_bytes()).await.0.starts_with("HTTP/1.1 400"), "H5 {k}");
    }
    // H6: version → 426 with the version we speak.
    let r = req("").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let (head, _) = status_of(addr, r.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 426") && head.contains("Sec-WebSocket-Version: 13"), "H6: {head}");
    // H7: only an offered subprotocol is echoed; server preference wins.
    let (head, _) = status_of(addr, req("Sec-WebSocket-Protocol: v1, v2\r\n").as_bytes()).await;
    assert!(head.contains("Sec-WebSocket-Protocol: v2\r\n"), "H7: {head}");
    let (head, _) = status_of(addr, req("Sec-WebSocket-Protocol: other\r\n").as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 101") && !head.contains("Sec-WebSocket-Protocol"), "H7: {head}");
    // H8: a hostile extension header is declined, not fatal.
    let (head, _) = status_of(
        addr,
        req("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7, a; b=\"\\c\\c\r\n").as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101") && !head.contains("Sec-WebSocket-Extensions"), "H8: {head}");
    // H9: Origin.
    for o in [
        "https://evil.tld",
        "null",
        "https://evil-app.example.com",
        "http://app.example.com",
        "https://app.example.com:444",
    ] {
        let (head, _) = status_of(addr, req(&format!("Origin: {o}\r\n")).as_bytes()).await;
        assert!(head.starts_with("HTTP/1.1 403"), "H9 {o}: {head}");
    }
    let (head, _) = status_of(addr, req("Origin: https://app.example.com\r\n").as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 101"), "H9 allowed: {head}");
    // H10: a rejected upgrade with a pipelined request: one response, then the connection closes.
    let smuggle = format!("{}GET /admin HTTP/1.1\r\nHost: t\r\n\r\n", req("Origin: https://evil.tld\r\n"));
    let (head, mut raw) = status_of(addr, smuggle.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 403") && head.contains("Connection: close"), "H10: {head}");
    let body_and_rest = {
        let _ = raw.sees_eof(Duration::from_secs(3)).await;
        String::from_utf8_lossy(&raw.buf).into_owned()
    };
    assert!(!body_and_rest.contains("HTTP/1.1"), "H10: a second response was sent: {body_and_rest}");
}

#[tokio::test]
async fn h3_slowloris_is_cut_at_the_deadline() {
    let cfg = Config::default().with_handshake_timeout(Duration::from_millis(500));
    let addr = echo_server(Acceptor::new().config(cfg)).await;
    let mut raw = Raw::connect(addr).await;
    raw.send(b"GET / HT").await;
    let t = Instant::now();
    assert!(raw.sees_eof(Duration::from_secs(5)).await, "H3: the server must drop a stalled handshake");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn h11_callback_rejects_while_draining_and_sees_the_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = draining.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let d = d2.clone();
            tokio::spawn(async move {
                let r = Acceptor::new()
                    .accept_with(tcp, |req| {
                        if d.load(std::sync::atomic::Ordering::SeqCst) {
                            return Err(Reject::new(StatusCode::SERVICE_UNAVAILABLE).body("draining"));
                        }
                        if req.uri().path() != "/chat" {
                            return Err(Reject::new(StatusCode::NOT_FOUND));
                        }
                        if req.headers().get("authorization").is_none_or(|v| v != "Bearer ok") {
                            return Err(Reject::new(StatusCode::UNAUTHORIZED));
                        }
                        Ok(Accept::new().header(
                            http::header::HeaderName::from_static("x-hello"),
                            http::HeaderValue::from_static("1"),
                        ))
                    })
                    .await;
                if let Ok(mut ws) = r {
                    while let Some(Ok(m)) = ws.recv().await {
                        if m.is_data() {
                            let _ = ws.send(m).await;
                        }
                    }
                }
            });
        }
    });
    let url = format!("ws://{addr}/chat");
    let e = ClientBuilder::new(format!("ws://{addr}/other")).connect().await.unwrap_err();
    assert!(matches!(e, Error::Handshake(HandshakeError::UnexpectedStatus { status: 404, .. })), "{e}");
    let e = ClientBuilder::new(url.clone()).connect().await.unwrap_err();
    assert!(matches!(e, Error::Handshake(HandshakeError::UnexpectedStatus { status: 401, .. })), "{e}");
    let mut ws = ClientBuilder::new(url.clone()).header("Authorization", "Bearer ok").connect().await.unwrap();
    ws.send("hi").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("hi"));
    draining.store(true, std::sync::atomic::Ordering::SeqCst);
    let e = ClientBuilder::new(url).header("Authorization", "Bearer ok").connect().await.unwrap_err();
    assert!(matches!(e, Error::Handshake(HandshakeError::UnexpectedStatus { status: 503, .. })), "H11: {e}");
}

/// A server that answers the handshake with `response` (with `{accept}` replaced).
async fn fake_server(response: &'static str) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let mut r = Raw { tcp, buf: Vec::new() };
            let head = r.read_head().await;
            let key = head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap_or("").trim().to_owned();
            let accept = switchboard_ws::proto::handshake::accept_key(key.as_bytes());
            let _ = r.tcp.write_all(response.replace("{accept}", &accept).as_bytes()).await;
            let _ = r.sees_eof(Duration::from_secs(1)).await;
        }
    });
    addr
}

#[tokio::test]
async fn h12_client_validates_the_response() {
    let base = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n";
    type Check = fn(&Error) -> bool;
    let cases: Vec<(&'static str, Check)> = vec![
        ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", |e| matches!(e, Error::Handshake(HandshakeError::UnexpectedStatus { status: 200, .. }))),
        ("HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:1/\r\n\r\n", |e| matches!(e, Error::Handshake(HandshakeError::UnexpectedStatus { status: 302, location: Some(_), .. }))),
        ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n", |e| matches!(e, Error::Handshake(HandshakeError::BadAccept))),
        (Box::leak(format!("{base}Sec-WebSocket-Protocol: evil\r\n\r\n").into_boxed_str()), |e| matches!(e, Error::Handshake(HandshakeError::UnrequestedProtocol(_)))),
        (Box::leak(format!("{base}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n").into_boxed_str()), |e| matches!(e, Error::Handshake(HandshakeError::UnrequestedExtension(_)))),
        ("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n", |e| matches!(e, Error::Handshake(HandshakeError::BadUpgrade))),
    ];
    for (resp, check) in cases {
        let addr = fake_server(resp).await;
        let e = ClientBuilder::new(format!("ws://{addr}/")).protocol("chat").connect().await.unwrap_err();
        assert!(check(&e), "H12 {resp:?}: {e}");
    }
    // The good one works and reports the protocol.
    let addr = fake_server(Box::leak(format!("{base}Sec-WebSocket-Protocol: chat\r\n\r\n").into_boxed_str())).await;
    let ws = ClientBuilder::new(format!("ws://{addr}/")).protocol("chat").connect().await.unwrap();
    assert_eq!(ws.protocol(), Some("chat"));
    assert_eq!(ws.url(), Some(format!("ws://{addr}/").as_str()));
}

#[tokio::test]
async fn h13_header_injection_is_refused_before_connecting() {
    // Port 9 on loopback: nothing listens; an error other than Handshake(InvalidInput) would
    // mean we tried to connect.
    for b in [
        ClientBuilder::new("ws://127.0.0.1:9/").protocol("x\r\nEvil: 1"),
        ClientBuilder::new("ws://127.0.0.1:9/").header("X-A", "x\r\nEvil: 1"),
        ClientBuilder::new("ws://127.0.0.1:9/").origin("http://a\nb"),
    ] {
        let e = b.connect().await.unwrap_err();
        assert!(matches!(e, Error::Handshake(HandshakeError::InvalidInput(_))), "H13: {e}");
    }
}

#[tokio::test]
async fn close_handshake_from_the_client_and_f20() {
    let addr = echo_server(Acceptor::new()).await;
    let mut ws = switchboard_ws::connect(&format!("ws://{addr}/")).await.unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Open);
    assert!(matches!(ws.close(CloseCode::NORMAL, &"x".repeat(124)).await, Err(Error::Send(_))), "F20");
    assert!(matches!(ws.close(CloseCode(1005), "").await, Err(Error::Send(_))), "F20");
    ws.close(CloseCode(4001), "done").await.unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(ws.send("late").await.is_err(), "nothing after Close");
}

#[tokio::test]
async fn split_halves_in_two_tasks() {
    let addr = echo_server(Acceptor::new()).await;
    let ws = switchboard_ws::connect(&format!("ws://{addr}/")).await.unwrap();
    let (mut rd, mut wr) = ws.split();
    let n = 2000usize;
    let writer = tokio::spawn(async move {
        for i in 0..n {
            wr.send(Message::binary(vec![(i % 256) as u8; 1000])).await.unwrap();
        }
        wr.close(CloseCode::NORMAL, "").await.unwrap();
        wr
    });
    let mut got = 0usize;
    let mut closed = false;
    while let Some(m) = rd.next().await {
        match m.unwrap() {
            Message::Binary(b) => {
                assert_eq!(b[0], (got % 256) as u8);
                got += 1;
            }
            Message::Close(f) => {
                assert_eq!(f.map(|f| f.code), Some(CloseCode::NORMAL));
                closed = true;
            }
            _ => {}
        }
    }
    assert_eq!(got, n);
    assert!(closed);
    let wr = writer.await.unwrap();
    assert_eq!(wr.ready_state(), ReadyState::Closed);
}

#[tokio::test]
async fn backpressure_returns_the_message_and_never_drops() {
    // A peer that completes the handshake and then never reads.
    let (addr, server) = raw_server("").await;
    let cfg = Config::default().with_max_write_buffer(64 << 10);
    let mut ws = ClientBuilder::new(format!("ws://{addr}/")).config(cfg).connect().await.unwrap();
    let _raw = server.await.unwrap();
    let msg = Message::binary(vec![0u8; 16 << 10]);
    let mut sent = 0usize;
    let full = loop {
        match ws.try_send(msg.clone()) {
            Ok(()) => sent += 1,
            Err(Error::WriteBufferFull(m)) => break m,
            Err(e) => panic!("{e}"),
        }
        if sent > 10_000 {
            panic!("the write buffer is unbounded");
        }
    };
    assert_eq!(*full, msg, "the refused message is handed back intact");
    assert!(ws.buffered_amount() >= 64 << 10);
    assert!(ws.buffered_amount() < (64 << 10) + (17 << 10), "bounded by the high-water mark plus one message");
    // `send` waits rather than dropping: it does not complete while nobody reads.
    let r = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            ws.send(msg.clone()).await.unwrap();
        }
    })
    .await;
    assert!(r.is_err(), "send must wait for the peer");
}

#[tokio::test]
async fn keepalive_pings_and_fails_a_silent_peer_with_1011() {
    let (addr, server) = raw_server("").await;
    let cfg = Config::default()
        .with_ping_interval(Some(Duration::from_millis(100)))
        .with_pong_timeout(Duration::from_millis(200));
    let ws = ClientBuilder::new(format!("ws://{addr}/")).config(cfg).connect().await.unwrap();
    let client = tokio::spawn(run_echo_client(ws));
    let mut raw = server.await.unwrap();
    let ping = raw.read_frame(Duration::from_secs(2)).await.unwrap();
    assert_eq!(ping.opcode, 9, "a keepalive ping");
    // Answer it: the connection lives on and pings again.
    raw.send(&sf(true, 10, &ping.payload)).await;
    let ping2 = raw.read_frame(Duration::from_secs(2)).await.unwrap();
    assert_eq!(ping2.opcode, 9);
    // Now stay silent: 1011 and the client gives up (R3).
    let close = raw.read_frame(Duration::from_secs(2)).await.unwrap();
    assert_eq!(close.close_code(), Some(1011));
    let (_, err) = tokio::time::timeout(Duration::from_secs(2), client).await.unwrap().unwrap();
    assert!(err.unwrap_or_default().contains("keepalive"));
}

#[tokio::test]
async fn hyper_upgrade_with_bytes_read_past_the_headers() {
    use http_body_util::Empty;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let svc = service_fn(|mut req: hyper::Request<hyper::body::Incoming>| async move {
            let acceptor = Acceptor::new().protocols(["p1"]);
            match acceptor.upgrade::<_, Empty<Bytes>>(&mut req) {
                Ok((resp, fut)) => {
                    tokio::spawn(async move {
                        let mut ws = fut.await.unwrap();
                        assert_eq!(ws.url(), Some("/hyper"));
                        while let Some(Ok(m)) = ws.recv().await {
                            if m.is_data() {
                                ws.send(m).await.unwrap();
                            }
                        }
                    });
                    Ok::<_, std::convert::Infallible>(resp)
                }
                Err(e) => {
                    let mut r = hyper::Response::new(Empty::new());
                    *r.status_mut() = e.status();
                    Ok(r)
                }
            }
        });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), svc)
            .with_upgrades()
            .await
            .unwrap();
    });
    // The request and the first frame in one write.
    let mut raw = Raw::connect(addr).await;
    let mut bytes = req("Sec-WebSocket-Protocol: p1\r\n").replace("GET / ", "GET /hyper ").into_bytes();
    bytes.extend(cf(true, 1, b"early bird"));
    raw.send(&bytes).await;
    let head = raw.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101") && head.contains("sec-websocket-protocol: p1"), "{head}");
    let f = raw.read_frame(Duration::from_secs(3)).await.unwrap();
    assert_eq!((f.opcode, f.payload), (1, b"early bird".to_vec()));
}

#[tokio::test]
async fn wss_with_a_test_ca_and_t3_verification() {
    let pki = certs::make_pki(&["localhost", "127.0.0.1"]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(
        tls::server_config_from_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(s) = tls::accept_tls(&acceptor, tcp).await else { return };
                let Ok(mut ws) = switchboard_ws::accept(s).await else { return };
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_data() {
                        let _ = ws.send(m).await;
                    }
                }
            });
        }
    });
    let port = addr.port();
    let mut ws = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .add_root_certificates_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .connect()
        .await
        .unwrap();
    ws.send(Message::binary(vec![1u8; 70_000])).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_payload().len(), 70_000);
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    // T3: without the CA (self-signed chain) the connection fails by default…
    let e = ClientBuilder::new(format!("wss://localhost:{port}/")).connect().await.unwrap_err();
    assert!(matches!(e, Error::Io(_)), "T3 untrusted: {e}");
    // …and so does a valid certificate for another name.
    let other = certs::make_pki(&["other.example"]).unwrap();
    let acceptor2 = tokio_rustls::TlsAcceptor::from(
        tls::server_config_from_pem(other.cert_pem.as_bytes(), other.key_pem.as_bytes()).unwrap(),
    );
    let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p2 = l2.local_addr().unwrap().port();
    tokio::spawn(async move {
        if let Ok((tcp, _)) = l2.accept().await {
            let _ = tls::accept_tls(&acceptor2, tcp).await;
        }
    });
    let e = ClientBuilder::new(format!("wss://localhost:{p2}/"))
        .add_root_certificates_pem(other.ca_pem.as_bytes())
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate"), "T3 wrong host: {e}");
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    // A message dribbled in byte by byte while recv() futures keep getting cancelled.
    let (addr, server) = raw_server("").await;
    let mut ws = ClientBuilder::new(format!("ws://{addr}/")).connect().await.unwrap();
    let mut raw = server.await.unwrap();
    let payload: Vec<u8> = (0..5000u32).map(|i| (i % 200) as u8).collect();
    let mut bytes = sf(false, 2, &payload[..2500]);
    bytes.extend(sf(true, 0, &payload[2500..]));
    let feeder = tokio::spawn(async move {
        for chunk in bytes.chunks(97) {
            raw.send(chunk).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        raw
    });
    let mut cancelled = 0;
    let msg = loop {
        tokio::select! {
            m = ws.recv() => break m.unwrap().unwrap(),
            _ = tokio::time::sleep(Duration::from_micros(300)) => cancelled += 1,
        }
    };
    assert!(cancelled > 5, "the test must actually cancel recv ({cancelled})");
    assert_eq!(msg, Message::binary(payload));
    let _raw = feeder.await.unwrap();
}

#[tokio::test]
async fn sink_and_stream_interfaces() {
    let addr = echo_server(Acceptor::new()).await;
    let mut ws = switchboard_ws::connect(&format!("ws://{addr}/")).await.unwrap();
    ws.feed(Message::text("a")).await.unwrap();
    ws.feed(Message::Ping(Bytes::from_static(b"p"))).await.unwrap();
    ws.feed(Message::text("b")).await.unwrap();
    ws.flush().await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(ws.next().await.unwrap().unwrap());
    }
    assert_eq!(got, vec![Message::text("a"), Message::Pong(Bytes::from_static(b"p")), Message::text("b")]);
    SinkExt::close(&mut ws).await.unwrap();
    let rest: Vec<_> = ws.collect().await;
    assert!(matches!(rest.last(), Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::NORMAL), "{rest:?}");
}

/// An echo server whose accept loop passes the peer's IP to the handshake caps.
async fn capped_server(cfg: Config) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Acceptor::new().config(cfg);
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut ws) = acceptor.accept_from(tcp, Some(peer.ip()), |_| Ok(Accept::new())).await {
                    while let Some(Ok(m)) = ws.recv().await {
                        if m.is_data() {
                            let _ = ws.send(m).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn raw_from(src: &str, addr: std::net::SocketAddr) -> Raw {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    Raw { tcp: s.connect(addr).await.unwrap(), buf: Vec::new() }
}

#[tokio::test]
async fn h3_r5_handshakes_capped_per_ip_and_in_total() {
    let cfg = Config::default().with_max_handshakes_per_ip(4).with_handshake_timeout(Duration::from_millis(800));
    let addr = capped_server(cfg).await;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut r = raw_from("127.0.0.1", addr).await;
        r.send(b"GET / HT").await;
        stalled.push(r);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The fifth from the same IP is refused at once.
    let t = Instant::now();
    let mut fifth = raw_from("127.0.0.1", addr).await;
    let head = fifth.read_head().await;
    assert!(head.starts_with("HTTP/1.1 503"), "H3: {head}");
    assert!(t.elapsed() < Duration::from_millis(500));
    // Another IP is not affected.
    let mut other = raw_from("127.0.0.2", addr).await;
    other.send(req("").as_bytes()).await;
    assert!(other.read_head().await.starts_with("HTTP/1.1 101"));
    // Once the deadline cuts the stalled ones, their slots are free again.
    for r in &mut stalled {
        assert!(r.sees_eof(Duration::from_secs(3)).await);
    }
    let mut again = raw_from("127.0.0.1", addr).await;
    again.send(req("").as_bytes()).await;
    assert!(again.read_head().await.starts_with("HTTP/1.1 101"), "slots released");
    // The total cap.
    let cfg = Config::default().with_max_handshakes_total(2).with_handshake_timeout(Duration::from_secs(5));
    let addr = capped_server(cfg).await;
    let mut a = raw_from("127.0.0.3", addr).await;
    a.send(b"GET").await;
    let mut b = raw_from("127.0.0.4", addr).await;
    b.send(b"GET").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = raw_from("127.0.0.5", addr).await;
    assert!(c.read_head().await.starts_with("HTTP/1.1 503"), "R5 total cap");
}
