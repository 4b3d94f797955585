#![allow(missing_docs, clippy::unwrap_used)]
//! Peer for the benchmarks: an idiomatic tokio-tungstenite echo server (split halves,
//! `forward`, which batches writes while input is ready).
//!
//! `cargo run --release -p switchboard-bench --example tungstenite_echo -- 127.0.0.1:9002`

use futures_util::{StreamExt, TryStreamExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9002".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("tokio-tungstenite echo on ws://{addr}");
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
            let (write, read) = ws.split();
            let _ = read.try_filter(|m| std::future::ready(m.is_text() || m.is_binary())).forward(write).await;
        });
    }
}
