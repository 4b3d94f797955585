//! Socket.IO mounted in an axum app through its tower `Layer`: the app's routes and the
//! Socket.IO endpoint (polling and WebSocket) share one listener.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;
use switchboard_socketio::{Handlers, SocketIo};
use switchboard_ws::{ClientBuilder, Message};

#[tokio::test]
async fn mounts_under_an_axum_router() {
    let io = SocketIo::builder()
        .ns(
            "/",
            Handlers::new().on("ping", |socket, _ev| async move {
                let _ = socket.emit("pong", &"from axum");
            }),
        )
        .build();
    let app =
        axum::Router::new().route("/hello", axum::routing::get(|| async { "hello from the app" })).layer(io.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, body) = http(addr, "GET", "/hello", &[], b"").await;
    assert_eq!((status, body.as_str()), (200, "hello from the app"));
    // Polling.
    let (sid, _) = connected_polling(addr).await;
    assert_eq!(post(addr, &sid, "42[\"ping\"]").await.0, 200);
    let (_, body) = poll(addr, &sid).await;
    assert_eq!(body, "42[\"pong\",\"from axum\"]");
    // WebSocket, through axum's upgrade support.
    let mut ws =
        ClientBuilder::new(format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")).connect().await.unwrap();
    let open = ws.recv().await.unwrap().unwrap();
    assert!(matches!(&open, Message::Text(t) if t.starts_with("0{\"sid\"")), "{open:?}");
    ws.send("40").await.unwrap();
    ws.send("42[\"ping\"]").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.recv()).await.unwrap().unwrap().unwrap();
        if let Message::Text(t) = m {
            got.push(t.to_string());
        }
    }
    assert!(got[0].starts_with("40{\"sid\""), "{got:?}");
    assert_eq!(got[1], "42[\"pong\",\"from axum\"]");
    // Other paths still reach the app (404 from axum's router).
    assert_eq!(http(addr, "GET", "/nothing", &[], b"").await.0, 404);
}
