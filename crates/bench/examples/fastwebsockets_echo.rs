#![allow(missing_docs, clippy::unwrap_used)]
//! Peer for the benchmarks: an idiomatic fastwebsockets echo server (hyper upgrade,
//! `FragmentCollector`, auto pong and close).
//!
//! `cargo run --release -p switchboard-bench --example fastwebsockets_echo -- 127.0.0.1:9003`

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn handle(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn upgrade_service(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (resp, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = handle(fut).await;
    });
    Ok(resp)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9003".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("fastwebsockets echo on ws://{addr}");
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let conn =
                http1::Builder::new().serve_connection(TokioIo::new(tcp), service_fn(upgrade_service)).with_upgrades();
            let _ = conn.await;
        });
    }
}
