//! The Socket.IO benchmark server on socketioxide (same protocol as
//! `sio_switchboard_server`).
//!
//! `cargo run --release -p switchboard-bench --example sio_socketioxide_server -- 127.0.0.1:7002`

use serde_json::Value;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::SocketIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7002".into());
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |s: SocketRef| {
        s.on("join", async |s: SocketRef, ack: AckSender| {
            s.join("bench");
            let _ = ack.send(&true);
        });
        s.on("echo", async |Data::<Value>(v), ack: AckSender| {
            let _ = ack.send(&v);
        });
        s.on("blast", async |s: SocketRef, Data::<Value>(v)| {
            let count = v["count"].as_u64().unwrap_or(0);
            let payload = "x".repeat(v["size"].as_u64().unwrap_or(100) as usize);
            for _ in 0..count {
                let _ = s.within("bench").emit("tick", &payload).await;
            }
        });
    });
    let app = axum::Router::<()>::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("{}", listener.local_addr()?.port());
    axum::serve(listener, app).await
}
