//! The Socket.IO benchmark server on socketioxide (same protocol as
//! `sio_switchboard_server`).
//!
//! `cargo run --release -p switchboard-bench --example sio_socketioxide_server -- 127.0.0.1:7002 [REDIS_URL]`
//! With a Redis URL the server is a node of a cluster (socketioxide-redis).

use serde_json::Value;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::SocketIo;

/// The handlers, for one adapter type (socketioxide's handler types are per adapter).
macro_rules! handlers {
    ($io:expr, $A:ty) => {
        $io.ns("/", async |s: SocketRef<$A>| {
            s.on("join", async |s: SocketRef<$A>, ack: AckSender<$A>| {
                s.join("bench");
                let _ = ack.send(&true);
            });
            s.on("echo", async |Data::<Value>(v), ack: AckSender<$A>| {
                let _ = ack.send(&v);
            });
            s.on("blast", async |s: SocketRef<$A>, Data::<Value>(v), ack: AckSender<$A>| {
                let count = v["count"].as_u64().unwrap_or(0);
                let payload = "x".repeat(v["size"].as_u64().unwrap_or(100) as usize);
                for _ in 0..count {
                    let _ = s.within("bench").emit("tick", &payload).await;
                }
                let _ = ack.send(&true);
            });
        })
    };
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7002".into());
    let redis = args.next();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("{}", listener.local_addr()?.port());
    match redis {
        Some(url) => {
            let url = format!("{url}?protocol=resp3");
            let client = redis::Client::open(url).map_err(std::io::Error::other)?;
            let adapter =
                socketioxide_redis::RedisAdapterCtr::new_with_redis(&client).await.map_err(std::io::Error::other)?;
            type A = socketioxide_redis::RedisAdapter<socketioxide::adapter::Emitter>;
            let (layer, io) = SocketIo::builder().with_adapter::<A>(adapter).build_layer();
            // The remote adapter subscribes when the namespace is created.
            handlers!(io, A).await.map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            axum::serve(listener, axum::Router::<()>::new().layer(layer)).await
        }
        None => {
            let (layer, io) = SocketIo::new_layer();
            #[allow(clippy::let_unit_value)]
            let () = handlers!(io, socketioxide::adapter::LocalAdapter);
            axum::serve(listener, axum::Router::<()>::new().layer(layer)).await
        }
    }
}
