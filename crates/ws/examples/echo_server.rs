//! Echo server: every text or binary message goes straight back.
//!
//! `cargo run --release -p switchboard-ws --example echo_server -- 127.0.0.1:9001`
//!
//! Also the target for load tests and conformance tools (limits raised to 64 MiB messages).
//! Replies to a burst of messages are batched into one write (`try_recv` + `try_send` +
//! `flush`). Environment: `DEFLATE=1` enables permessage-deflate (`DEFLATE=lean`: the server
//! resets its compression context per message, which saves most of its memory); `REUSEPORT=1` binds with
//! `SO_REUSEPORT` so several processes can share the port.

use std::error::Error;

use switchboard_ws::proto::deflate::DeflateConfig;
use switchboard_ws::{Accept, Acceptor, Config, Message, WebSocket};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn listen(addr: &str) -> Result<TcpListener, Box<dyn Error>> {
    let addr: std::net::SocketAddr = addr.parse()?;
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if std::env::var("REUSEPORT").is_ok_and(|v| v == "1") {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    Ok(socket.listen(4096)?)
}

/// Echoes until the connection ends. A protocol error does not end the loop at once: the
/// echoes of the messages before it and the Close the error queued still go out, and the next
/// `recv` closes the connection and returns `None`; the first error is returned then.
async fn echo(mut ws: WebSocket<TcpStream>) -> Result<(), switchboard_ws::Error> {
    let mut failed = None;
    while let Some(msg) = ws.recv().await {
        let mut next = Some(msg);
        while let Some(m) = next.take() {
            match m {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if let Err(switchboard_ws::Error::WriteBufferFull(m)) = ws.try_send(m) {
                        ws.send(*m).await?;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                    break;
                }
            }
            next = ws.try_recv();
        }
        ws.flush().await?;
    }
    failed.map_or(Ok(()), Err)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = listen(&addr)?;
    // A load-test target: load generators open many handshakes at once from one address, so the
    // per-IP cap on handshakes in progress is raised from its default of 64.
    let config = Config::default()
        .with_max_message_size(64 << 20)
        .with_max_frame_size(64 << 20)
        .with_max_handshakes_per_ip(1024);
    let mut acceptor = Acceptor::new().config(config);
    match std::env::var("DEFLATE").as_deref() {
        Ok("1") => acceptor = acceptor.deflate(DeflateConfig::default()),
        Ok("lean") => {
            let mut d = DeflateConfig::default();
            d.server_no_context_takeover = true;
            acceptor = acceptor.deflate(d);
        }
        _ => {}
    }
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
            match acceptor.accept_from(tcp, Some(peer.ip()), |_| Ok(Accept::new())).await {
                Ok(ws) => {
                    if let Err(e) = echo(ws).await {
                        eprintln!("{peer}: {e}");
                    }
                }
                Err(e) => eprintln!("{peer}: handshake failed: {e}"),
            }
        });
    }
}
