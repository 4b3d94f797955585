//! The server API as the official clients and the Node server define it, checked from the
//! wire: `auth` defaults, binary placement.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use support::*;

#[tokio::test]
async fn auth_is_an_empty_object_when_the_connect_has_no_payload() {
    let srv = default_server().await;
    let (_, socket) = connected_polling(srv.addr).await;
    assert!(
        srv.log.wait_for(&format!("connect / {socket} auth={{}}"), Duration::from_secs(2)).await,
        "{:?}",
        srv.log.lines()
    );
    // With a payload, it is the payload.
    let (sid, _) = open_polling(srv.addr).await;
    assert_eq!(post(srv.addr, &sid, r#"40{"token":"t"}"#).await.0, 200);
    assert!(srv.log.wait_for(r#"auth={"token":"t"}"#, Duration::from_secs(2)).await, "{:?}", srv.log.lines());
    // Not an object: refused as a parse error (as the Node server does).
    let (sid, _) = open_polling(srv.addr).await;
    assert_eq!(post(srv.addr, &sid, r#"40"token""#).await.0, 200);
    let (status, body) = poll(srv.addr, &sid).await;
    assert!(status == 400 || body.ends_with('1'), "{status} {body}");
}

#[tokio::test]
async fn emitted_binary_goes_where_it_is_in_the_arguments() {
    let srv = default_server().await;
    let (sid, socket) = connected_polling(srv.addr).await;
    let s = srv.io.get_socket(switchboard_socketio::engineio::Sid::parse(&socket).unwrap()).unwrap();
    #[derive(serde::Serialize)]
    struct File {
        name: &'static str,
        data: Bytes,
    }
    s.emit_args("f", &(1, File { name: "a", data: Bytes::from_static(b"\x01\x02") }, Bytes::from_static(b"z")))
        .unwrap();
    let (status, body) = poll(srv.addr, &sid).await;
    assert_eq!(status, 200);
    let mut parts = body.split('\x1e');
    let head = parts.next().unwrap();
    let (prefix, json_text) = head.split_at(head.find('[').unwrap());
    assert_eq!(prefix, "452-");
    let v: serde_json::Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(
        v,
        json!(["f", 1, {"name": "a", "data": {"_placeholder": true, "num": 0}}, {"_placeholder": true, "num": 1}])
    );
    assert_eq!(parts.collect::<Vec<_>>(), vec!["bAQI=", "beg=="]);
    // Placeholders that do not match the attachments are refused before anything is sent.
    let bad = s.emit_with("f", vec![json!({"_placeholder": true, "num": 3})], vec![Bytes::from_static(b"x")]);
    assert!(bad.is_err());
}

#[tokio::test]
async fn cors_modes_send_the_headers_browsers_accept() {
    use switchboard_socketio::engineio::{Cors, EngineConfig};
    let req = [("Origin", "http://page.example:3000")];
    let target = "/socket.io/?EIO=4&transport=polling";
    // Any: `*` and never credentials (browsers refuse the pair).
    let srv = start(EngineConfig::default().with_cors(Cors::Any), |c| c).await;
    let (s, head, _) = http_full(srv.addr, "GET", target, &req, b"").await;
    assert_eq!(s, 200);
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(!head.contains("access-control-allow-credentials"), "{head}");
    // Reflect with credentials: the origin itself, credentials, Vary.
    let srv = start(EngineConfig::default().with_cors(Cors::Reflect { credentials: true }), |c| c).await;
    let (_, head, _) = http_full(srv.addr, "GET", target, &req, b"").await;
    assert!(head.contains("access-control-allow-origin: http://page.example:3000"), "{head}");
    assert!(head.contains("access-control-allow-credentials: true"), "{head}");
    assert!(head.contains("vary: origin"), "{head}");
    // The preflight allows the headers the page asks for (socket.io-client's extraHeaders).
    let (s, head, _) = http_full(
        srv.addr,
        "OPTIONS",
        target,
        &[
            req[0],
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type, x-token"),
        ],
        b"",
    )
    .await;
    assert_eq!(s, 204);
    assert!(head.contains("access-control-allow-headers: content-type, x-token"), "{head}");
    // Off (the default): no CORS headers at all.
    let srv = default_server().await;
    let (_, head, _) = http_full(srv.addr, "GET", target, &req, b"").await;
    assert!(!head.contains("access-control-"), "{head}");
}

/// An external socket (the hub's `/ws` clients) is a member like any other: rooms,
/// broadcasts (with the room it was reached through, encoded once per broadcast), acks,
/// listings, disconnects.
#[tokio::test]
async fn external_sockets_are_members_like_any_other() {
    use switchboard_socketio::{ConnInfo, Outgoing, Socket, SocketSink};

    #[derive(Default)]
    struct Sink {
        #[allow(clippy::type_complexity)]
        got: std::sync::Mutex<Vec<(String, Option<u64>, Option<String>)>>,
        closed: std::sync::atomic::AtomicBool,
        encodings: std::sync::atomic::AtomicUsize,
    }
    impl SocketSink for Sink {
        fn send(&self, out: Outgoing<'_>) -> Result<bool, switchboard_socketio::EmitError> {
            if let Some(c) = out.cache {
                c.get_or_insert(out.via, || {
                    self.encodings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    bytes::Bytes::from(out.data.map(|d| d.to_string()).unwrap_or_default())
                });
            }
            self.got.lock().unwrap().push((
                out.data.map(|d| d.to_string()).unwrap_or_default(),
                out.ack_id,
                out.via.map(|r| r.to_string()),
            ));
            Ok(true)
        }
        fn close(&self) {
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    let io = switchboard_socketio::SocketIo::builder().build();
    let ns = io.of("/").unwrap();
    let (s1, s2) = (std::sync::Arc::new(Sink::default()), std::sync::Arc::new(Sink::default()));
    let a = Socket::connect_external(&ns, s1.clone(), serde_json::json!({}), ConnInfo::default());
    let b = Socket::connect_external(&ns, s2.clone(), serde_json::json!({}), ConnInfo::default());
    a.join("red").await.unwrap();
    b.join(vec!["red", "blue"]).await.unwrap();
    assert_eq!(io.to(vec!["blue", "red"]).emit("hi", &1).await.unwrap(), 2);
    assert_eq!(s1.got.lock().unwrap()[0], ("[\"hi\",1]".into(), None, Some("red".into())));
    assert_eq!(s2.got.lock().unwrap()[0], ("[\"hi\",1]".into(), None, Some("blue".into())));
    // Two rooms reached: two encodings, shared per room across recipients.
    assert_eq!(s1.encodings.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(s2.encodings.load(std::sync::atomic::Ordering::SeqCst), 1);
    io.to("red").emit("again", &2).await.unwrap();
    let total =
        s1.encodings.load(std::sync::atomic::Ordering::SeqCst) + s2.encodings.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(total, 3, "one encoding for both recipients of one room");
    // A call: the ack comes back through receive_ack.
    let wait = a.emit_with_ack("q", &"?").unwrap();
    let id = s1.got.lock().unwrap().last().unwrap().1.unwrap();
    a.receive_ack(id, switchboard_socketio::AckResponse { args: vec![serde_json::json!("yes")], binary: vec![] });
    assert_eq!(wait.await.unwrap().args, vec![serde_json::json!("yes")]);
    // Listed, then disconnected by selector.
    assert_eq!(io.broadcast().fetch_sockets().await.unwrap().len(), 2);
    io.to("blue").disconnect().await.unwrap();
    assert!(s2.closed.load(std::sync::atomic::Ordering::SeqCst));
    assert!(!b.connected());
    assert_eq!(ns.len(), 1);
    a.external_closed();
    assert_eq!(ns.len(), 0);
}
