//! Echo client: connects, sends back every message it receives until the peer closes, and
//! exits 0 on a normal close (1000, or a Close without status), 1 otherwise.
//!
//! `cargo run --release -p switchboard-ws --example echo_client -- [--deflate] ws://127.0.0.1:9001/`
//!
//! `--deflate` offers permessage-deflate (RFC 7692) with the default [`DeflateConfig`]; the
//! server may accept or decline it. `SWITCHBOARD_CA=ca.pem` adds a root certificate for
//! `wss://` test servers.

use std::process::ExitCode;

use switchboard_ws::proto::deflate::DeflateConfig;
use switchboard_ws::{ClientBuilder, CloseCode, Config, Message};

#[tokio::main]
async fn main() -> ExitCode {
    let mut deflate = false;
    let mut url = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--deflate" => deflate = true,
            _ if url.is_none() && !arg.starts_with('-') => url = Some(arg),
            _ => url = None,
        }
    }
    let Some(url) = url else {
        eprintln!("usage: echo_client [--deflate] ws://host:port/path");
        return ExitCode::from(2);
    };
    let mut builder = ClientBuilder::new(url.clone())
        .config(Config::default().with_max_message_size(64 << 20).with_max_frame_size(64 << 20));
    if deflate {
        builder = builder.deflate(DeflateConfig::default());
    }
    if let Ok(path) = std::env::var("SWITCHBOARD_CA") {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|pem| builder.clone().add_root_certificates_pem(&pem).map_err(|e| e.to_string()))
        {
            Ok(b) => builder = b,
            Err(e) => {
                eprintln!("{path}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut ws = match builder.connect().await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("{url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut close_code = None;
    let mut failed = false;
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if let Err(e) = ws.send(m).await {
                    eprintln!("send: {e}");
                    return ExitCode::FAILURE;
                }
            }
            Ok(Message::Close(frame)) => close_code = Some(frame.map_or(CloseCode::NO_STATUS, |f| f.code)),
            Ok(_) => {}
            Err(e) => {
                // Keep receiving: the next `recv` sends the Close this error calls for and
                // ends the connection.
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    match close_code {
        Some(CloseCode::NORMAL | CloseCode::NO_STATUS) => ExitCode::SUCCESS,
        Some(c) => {
            eprintln!("closed with {c}");
            ExitCode::FAILURE
        }
        None => ExitCode::FAILURE,
    }
}
