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
