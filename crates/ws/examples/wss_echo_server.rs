//! Echo server over `wss://`.
//!
//! `cargo run --release -p switchboard-ws --example wss_echo_server -- 127.0.0.1:9443 [CERT.pem KEY.pem]`
//!
//! Without a certificate it makes a throw-away test CA and a certificate for localhost,
//! 127.0.0.1 and ::1, and writes the CA to `./switchboard-test-ca.pem` for clients:
//! `SWITCHBOARD_CA=switchboard-test-ca.pem cargo run --example echo_client -- wss://localhost:9443/`

use std::error::Error;
use std::time::Duration;

use switchboard_ws::{tls, Acceptor};
use tokio::net::TcpListener;

#[path = "../tests/support/certs.rs"]
mod certs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:9443".into());
    let (cert, key) = match (args.get(2), args.get(3)) {
        (Some(c), Some(k)) => (std::fs::read(c)?, std::fs::read(k)?),
        _ => {
            let pki = certs::make_pki(&["localhost", "127.0.0.1", "::1"])?;
            std::fs::write("switchboard-test-ca.pem", &pki.ca_pem)?;
            println!("test CA written to switchboard-test-ca.pem");
            (pki.cert_pem.into_bytes(), pki.key_pem.into_bytes())
        }
    };
    let tls_acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config_from_pem(&cert, &key)?);
    let listener = TcpListener::bind(&addr).await?;
    println!("wss echo server listening on wss://{}", listener.local_addr()?);
    let acceptor = Acceptor::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (tls_acceptor, acceptor) = (tls_acceptor.clone(), acceptor.clone());
        tokio::spawn(async move {
            // TLS stalls are cut at the handshake deadline [T1].
            let deadline = acceptor.get_config().handshake_timeout;
            let Ok(Ok(stream)) = tokio::time::timeout(deadline, tls::accept_tls(&tls_acceptor, tcp)).await else {
                return;
            };
            let Ok(mut ws) = acceptor.accept(stream).await else { return };
            while let Some(Ok(m)) = ws.recv().await {
                if m.is_data() && ws.send(m).await.is_err() {
                    break;
                }
            }
        });
        tokio::time::sleep(Duration::ZERO).await;
    }
}
