//! The seeds' python-socketio chat server, in Rust.
//!
//! ```text
//! cargo run --release -p switchboard-socketio --example seed_server -- 127.0.0.1:8000
//! ```
//!
//! - `connect` / `disconnect` are logged;
//! - `chat` puts the sender in room `chat_users`, `exit_chat` takes it out;
//! - `my message` sends `my reply` with the same data to `chat_users`, skipping the sender;
//! - `my custom event` is handled (and acknowledged if the client asked);
//! - `message` (the client's `send`) is answered with `send`.

use serde_json::Value;
use switchboard_socketio::{Handlers, SocketIo};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8000".into());
    let handlers = Handlers::new()
        .on_connect(|socket| async move {
            println!("connect {}", socket.id());
        })
        .on_disconnect(|socket, reason| async move {
            println!("disconnect {} ({reason})", socket.id());
        })
        .on("chat", |socket, _ev| async move {
            if socket.join("chat_users").await.is_ok() {
                println!("{} entered chat_users", socket.id());
            }
        })
        .on("exit_chat", |socket, _ev| async move {
            if socket.leave("chat_users").await.is_ok() {
                println!("{} left chat_users", socket.id());
            }
        })
        .on("my message", |socket, ev| async move {
            let data: Value = ev.data().unwrap_or_default();
            let io_room = socket.ns().broadcast().to("chat_users").skip_sid(socket.id());
            if let Err(e) = io_room.emit("my reply", &data).await {
                eprintln!("my reply: {e}");
            }
        })
        .on("my custom event", |socket, mut ev| async move {
            let data: Value = ev.data().unwrap_or_default();
            println!("my custom event from {}: {data}", socket.id());
            let _ = ev.ack(&serde_json::json!({ "received": data }));
        })
        .on("message", |socket, ev| async move {
            let data: Value = ev.data().unwrap_or_default();
            let _ = socket.send(&data);
        });
    let io = SocketIo::builder().ns("/", handlers).build();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("Socket.IO seed server on http://{}/socket.io/", listener.local_addr()?);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    io.serve(listener, shutdown).await
}
