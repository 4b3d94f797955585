//! The Socket.IO benchmark server on switchboard-socketio. The same protocol as
//! `sio_socketioxide_server` and `bench/sio_node_server.js`:
//! - `join` (ack): joins room `bench`, acks `true`;
//! - `echo` (ack): acks with its argument;
//! - `blast` `{count, size}`: `count` broadcasts of event `tick` with a `size`-byte string to
//!   room `bench`, back to back, then acks (when asked) once they are all published.
//!
//! `cargo run --release -p switchboard-bench --example sio_switchboard_server -- 127.0.0.1:7001 [BROKER_URL PREFIX]`
//! With a broker URL the server is a node of a cluster (switchboard-cluster): `redis://…` on
//! Redis (sharded pub/sub), `nats://…` on NATS.

use serde_json::Value;
use switchboard_socketio::{Handlers, SocketIo};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7001".into());
    let redis = args.next();
    let prefix = args.next().unwrap_or_else(|| "socket.io".into());
    let handlers = Handlers::new()
        .on("join", |socket, mut ev| async move {
            let ok = socket.join("bench").await.is_ok();
            let _ = ev.ack(&ok);
        })
        .on("echo", |_socket, mut ev| async move {
            let v = ev.args.first().cloned().unwrap_or(Value::Null);
            let _ = ev.ack(&v);
        })
        .on("blast", |socket, mut ev| async move {
            let v: Value = ev.data().unwrap_or_default();
            let count = v["count"].as_u64().unwrap_or(0);
            let payload = "x".repeat(v["size"].as_u64().unwrap_or(100) as usize);
            let op = socket.ns().broadcast().to("bench");
            for _ in 0..count {
                let _ = op.emit("tick", &payload).await;
            }
            let _ = ev.ack(&true);
        });
    let mut builder = SocketIo::builder();
    // SB_RECOVERY=1: connection state recovery on (the in-memory log; in a cluster, the log in
    // Redis Streams or JetStream).
    let recovery = std::env::var("SB_RECOVERY").is_ok_and(|v| v == "1");
    if recovery {
        builder = builder.connection_state_recovery(switchboard_socketio::RecoveryConfig::default());
    }
    if let Some(url) = redis {
        let node = switchboard_cluster::ClusterConfig::default();
        let cluster = if url.starts_with("nats://") {
            let mut cfg = switchboard_cluster::nats::NatsConfig::new(url).with_subject_prefix(prefix);
            if recovery {
                cfg = cfg.with_jetstream(switchboard_cluster::jetstream::JetStreamConfig::default());
            }
            switchboard_cluster::nats::connect(cfg, node).await
        } else {
            let mut cfg = switchboard_cluster::redis::RedisConfig::new(url).with_channel_prefix(prefix);
            if recovery {
                cfg = cfg.with_streams(switchboard_cluster::streams::StreamsConfig::default());
            }
            switchboard_cluster::redis::connect(cfg, node).await
        }
        .map_err(std::io::Error::other)?;
        builder = builder.adapter(cluster.adapter_factory());
    }
    let io = builder.ns("/", handlers).build();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("{}", listener.local_addr()?.port());
    io.serve(listener, std::future::pending()).await
}
