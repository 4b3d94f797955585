//! Echo server: every text or binary message goes straight back.
//!
//! `cargo run --release -p switchboard-ws --example echo_server -- 127.0.0.1:9001`
//!
//! Also the target for load tests and conformance tools (limits raised to 64 MiB messages).

use std::error::Error;

use switchboard_ws::{Acceptor, Config, Message};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr).await?;
    let config = Config::default().with_max_message_size(64 << 20).with_max_frame_size(64 << 20);
    let acceptor = Acceptor::new().config(config);
    println!("echo server listening on ws://{}", listener.local_addr()?);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, keep serving the rest.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut ws = match acceptor.accept(tcp).await {
                Ok(ws) => ws,
                Err(e) => {
                    eprintln!("{peer}: handshake failed: {e}");
                    return;
                }
            };
            while let Some(msg) = ws.recv().await {
                match msg {
                    Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("{peer}: {e}");
                        break;
                    }
                }
            }
        });
    }
}
