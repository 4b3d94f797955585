//! The Socket.IO benchmark server on switchboard-socketio. The same protocol as
//! `sio_socketioxide_server` and `bench/sio_node_server.js`:
//! - `join` (ack): joins room `bench`, acks `true`;
//! - `echo` (ack): acks with its argument;
//! - `blast` `{count, size}`: `count` broadcasts of event `tick` with a `size`-byte string to
//!   room `bench`, back to back.
//!
//! `cargo run --release -p switchboard-bench --example sio_switchboard_server -- 127.0.0.1:7001`

use serde_json::Value;
use switchboard_socketio::{Handlers, SocketIo};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7001".into());
    let handlers = Handlers::new()
        .on("join", |socket, mut ev| async move {
            let ok = socket.join("bench").await.is_ok();
            let _ = ev.ack(&ok);
        })
        .on("echo", |_socket, mut ev| async move {
            let v = ev.args.first().cloned().unwrap_or(Value::Null);
            let _ = ev.ack(&v);
        })
        .on("blast", |socket, ev| async move {
            let v: Value = ev.data().unwrap_or_default();
            let count = v["count"].as_u64().unwrap_or(0);
            let payload = "x".repeat(v["size"].as_u64().unwrap_or(100) as usize);
            let op = socket.ns().broadcast().to("bench");
            for _ in 0..count {
                let _ = op.emit("tick", &payload).await;
            }
        });
    let io = SocketIo::builder().ns("/", handlers).build();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("{}", listener.local_addr()?.port());
    io.serve(listener, std::future::pending()).await
}
