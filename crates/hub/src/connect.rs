//! `switchboard connect URL`: an interactive client for `ws://`, `wss://` and Socket.IO
//! (`http://`, `https://`) URLs, and a scriptable one (`-x` lines to send, `-w` messages to
//! wait for, exit status 1 when they do not come in time).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard_socketio::engineio::packet::{Data, Packet as EioPacket};
use switchboard_socketio::{Decoder, Limits, Packet as SioPacket, PacketType};
use switchboard_ws::{ClientBuilder, CloseCode, Message, WebSocket};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Flags of `connect`.
#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    /// `ws://` or `wss://` (plain WebSocket), `http://` or `https://` (Socket.IO; the path
    /// names the namespace).
    url: String,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// WebSocket subprotocol to offer.
    #[arg(long)]
    protocol: Option<String>,
    /// Token: Socket.IO `auth.token`, or `Authorization: Bearer` for WebSocket URLs.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print each incoming message as one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Send these lines, then stop reading stdin (repeatable). Socket.IO lines are
    /// `event JSON` or a JSON array `["event", args…]`; plain text emits `message`.
    #[arg(short = 'x', long = "execute")]
    execute: Vec<String>,
    /// Exit after this many incoming messages (exit status 1 if the timeout comes first).
    #[arg(short = 'w', long)]
    wait: Option<usize>,
    /// Seconds to wait in non-interactive mode.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Answer server calls (Socket.IO events that ask for an ack) with this JSON.
    #[arg(long)]
    ack: Option<String>,
    /// Extra CA certificate (PEM) to trust for wss:// and https://.
    #[arg(long)]
    ca: Option<PathBuf>,
}

enum Line {
    Text(String),
}

fn sio_url(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        ("ws", r)
    } else if let Some(r) = url.strip_prefix("https://") {
        ("wss", r)
    } else {
        return None;
    };
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let nsp = if path == "/" || path.starts_with("/socket.io") {
        "/".to_owned()
    } else {
        path.trim_end_matches('/').to_owned()
    };
    Some((format!("{scheme}://{host}/socket.io/?EIO=4&transport=websocket"), nsp))
}

/// A typed line as a Socket.IO event packet asking for ack `id`: a JSON array
/// `["event", args…]`, `event JSON`, or any other text as a `message` event.
fn sio_packet(nsp: &str, line: &str, id: u64) -> SioPacket {
    if let Ok(Value::Array(mut a)) = serde_json::from_str::<Value>(line) {
        if let Some(Value::String(name)) = a.first().cloned() {
            a.remove(0);
            return SioPacket::event(nsp, &name, a, Some(id));
        }
    }
    if let Some((ev, rest)) = line.split_once(' ') {
        if let (false, Ok(v)) = (ev.is_empty(), serde_json::from_str::<Value>(rest)) {
            return SioPacket::event(nsp, ev, vec![v], Some(id));
        }
    }
    SioPacket::event(nsp, "message", vec![Value::String(line.to_owned())], Some(id))
}

/// The WebSocket frames of one Socket.IO packet: an Engine.IO message with its text, then
/// one binary frame per attachment.
fn sio_frames(p: &SioPacket) -> Vec<Message> {
    let mut frames = Vec::with_capacity(1 + p.attachments.len());
    frames.push(Message::text(EioPacket::Message(Data::Text(p.encode().into())).encode_text()));
    frames.extend(p.attachments.iter().cloned().map(Message::Binary));
    frames
}

async fn send_sio(
    ws: &mut WebSocket<switchboard_ws::MaybeTlsStream>,
    p: &SioPacket,
) -> Result<(), switchboard_ws::Error> {
    for m in sio_frames(p) {
        ws.send(m).await?;
    }
    Ok(())
}

/// What one Socket.IO packet from the server means for the session.
enum Step {
    Continue,
    /// The namespace is joined: send the lines held so far.
    Ready,
    Exit(ExitCode),
}

/// Shows a packet for our namespace and answers calls with `--ack`.
async fn on_sio_packet(
    ws: &mut WebSocket<switchboard_ws::MaybeTlsStream>,
    a: &ConnectArgs,
    nsp: &str,
    p: SioPacket,
    got: &mut usize,
) -> Step {
    if p.nsp != nsp {
        return Step::Continue;
    }
    let data = p.data.clone().unwrap_or(Value::Null);
    match p.kind {
        PacketType::Connect => {
            show(a.json, "connect", data);
            Step::Ready
        }
        PacketType::ConnectError => {
            show(a.json, "connect_error", data);
            Step::Exit(ExitCode::FAILURE)
        }
        PacketType::Event | PacketType::BinaryEvent => {
            *got += 1;
            if !p.attachments.is_empty() {
                show(a.json, "binary", json!(p.attachments.iter().map(|b| b.len()).collect::<Vec<_>>()));
            }
            show(a.json, "event", data);
            if let (Some(id), Some(ack)) = (p.id, &a.ack) {
                let v: Value = serde_json::from_str(ack).unwrap_or(Value::String(ack.clone()));
                let _ = send_sio(ws, &SioPacket::ack(nsp, id, vec![v])).await;
            }
            Step::Continue
        }
        PacketType::Ack | PacketType::BinaryAck => {
            *got += 1;
            show(a.json, "ack", data);
            Step::Continue
        }
        PacketType::Disconnect => {
            show(a.json, "disconnect", Value::Null);
            Step::Exit(ExitCode::SUCCESS)
        }
    }
}

fn show(json_out: bool, kind: &str, v: Value) {
    if json_out {
        println!("{}", json!({"type": kind, "data": v}));
    } else {
        match v {
            Value::String(s) => println!("< {s}"),
            v => println!("< {kind} {v}"),
        }
    }
}

/// Runs `connect`.
pub async fn run(a: ConnectArgs) -> ExitCode {
    let sio = sio_url(&a.url);
    let ws_url = sio.as_ref().map(|(u, _)| u.clone()).unwrap_or_else(|| a.url.clone());
    let mut b = ClientBuilder::new(ws_url).connect_timeout(Duration::from_secs(a.timeout.max(1)));
    for h in &a.headers {
        match h.split_once(':') {
            Some((k, v)) => b = b.header(k.trim(), v.trim()),
            None => {
                eprintln!("switchboard connect: header {h:?} is not `Name: value`");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(p) = &a.protocol {
        b = b.protocol(p.clone());
    }
    if let (Some(t), None) = (&a.token, &sio) {
        b = b.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(ca) = &a.ca {
        let pem = match std::fs::read(ca) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("switchboard connect: {}: {e}", ca.display());
                return ExitCode::from(2);
            }
        };
        b = match b.add_root_certificates_pem(&pem) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("switchboard connect: {}: {e}", ca.display());
                return ExitCode::from(2);
            }
        };
    }
    let mut ws = match b.connect().await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("switchboard connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scripted = !a.execute.is_empty() || a.wait.is_some();
    let nsp = sio.as_ref().map(|(_, n)| n.clone());
    if let Some(nsp) = &nsp {
        let auth = a.token.as_ref().map(|t| json!({"token": t}));
        if send_sio(&mut ws, &SioPacket::connect(nsp, auth)).await.is_err() {
            eprintln!("switchboard connect: connection closed");
            return ExitCode::FAILURE;
        }
    }
    // What the server sends, decoded as a client does (attachments reassembled, caps on).
    let mut decoder = Decoder::client_side(Limits::default().with_max_attachment_bytes(64 << 20));
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<Line>(64);
    let pre = a.execute.clone();
    let read_stdin = !scripted;
    tokio::spawn(async move {
        for l in pre {
            if line_tx.send(Line::Text(l)).await.is_err() {
                return;
            }
        }
        if read_stdin {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if line_tx.send(Line::Text(l)).await.is_err() {
                    return;
                }
            }
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    let mut got = 0usize;
    // Socket.IO: lines wait until the namespace is joined.
    let mut ready = nsp.is_none();
    let mut held: Vec<String> = Vec::new();
    let mut stdin_open = true;
    let code = loop {
        if a.wait.is_some_and(|w| got >= w) {
            break ExitCode::SUCCESS;
        }
        let sleep = tokio::time::sleep_until(deadline);
        tokio::select! {
            l = line_rx.recv(), if stdin_open => match l {
                Some(Line::Text(l)) => {
                    if !ready {
                        held.push(l);
                        continue;
                    }
                    if send_line(&mut ws, nsp.as_deref(), &l).await.is_err() {
                        break ExitCode::FAILURE;
                    }
                }
                None => {
                    stdin_open = false;
                    if !scripted {
                        let _ = ws.close(CloseCode::NORMAL, "").await;
                        break ExitCode::SUCCESS;
                    }
                }
            },
            m = ws.recv() => match m {
                Some(Ok(Message::Text(t))) if nsp.is_none() => {
                    got += 1;
                    show(a.json, "message", serde_json::from_str(&t).unwrap_or(Value::String(t.to_string())));
                }
                Some(Ok(Message::Binary(b))) if nsp.is_none() => {
                    got += 1;
                    show(a.json, "binary", json!(b.len()));
                }
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    let n = nsp.as_deref().unwrap_or("/");
                    let now = std::time::Instant::now();
                    let decoded = match m {
                        Message::Text(t) => match EioPacket::decode_text(t) {
                            Ok(EioPacket::Ping(p)) => {
                                let _ = ws.send(Message::text(EioPacket::Pong(p).encode_text())).await;
                                continue;
                            }
                            Ok(EioPacket::Close) => {
                                show(a.json, "close", Value::Null);
                                break ExitCode::SUCCESS;
                            }
                            Ok(EioPacket::Message(Data::Text(s))) => decoder.text(&s, now).map_err(|e| e.to_string()),
                            Ok(_) => continue,
                            Err(e) => Err(e.to_string()),
                        },
                        Message::Binary(b) => decoder.binary(b, now).map_err(|e| e.to_string()),
                        _ => continue,
                    };
                    let p = match decoded {
                        Ok(Some(p)) => p,
                        Ok(None) => continue,
                        Err(e) => {
                            eprintln!("switchboard connect: bad packet from the server: {e}");
                            break ExitCode::FAILURE;
                        }
                    };
                    match on_sio_packet(&mut ws, &a, n, p, &mut got).await {
                        Step::Continue => {}
                        Step::Ready => {
                            ready = true;
                            for l in std::mem::take(&mut held) {
                                if send_line(&mut ws, nsp.as_deref(), &l).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Step::Exit(code) => break code,
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    let (code, reason) = f.map(|f| (f.code.0, f.reason.to_string())).unwrap_or((1005, String::new()));
                    show(a.json, "close", json!({"code": code, "reason": reason}));
                    break if a.wait.is_some_and(|w| got < w) { ExitCode::FAILURE } else { ExitCode::SUCCESS };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    eprintln!("switchboard connect: {e}");
                    break ExitCode::FAILURE;
                }
                None => break if a.wait.is_some_and(|w| got < w) { ExitCode::FAILURE } else { ExitCode::SUCCESS },
            },
            _ = sleep, if scripted => {
                eprintln!("switchboard connect: timed out after {} s ({got} messages)", a.timeout);
                break ExitCode::FAILURE;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(CloseCode::NORMAL, "")).await;
    code
}

async fn send_line(
    ws: &mut WebSocket<switchboard_ws::MaybeTlsStream>,
    nsp: Option<&str>,
    line: &str,
) -> Result<(), switchboard_ws::Error> {
    match nsp {
        Some(n) => {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            send_sio(ws, &sio_packet(n, line, id)).await
        }
        None => ws.send(Message::text(line.to_owned())).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_lines() {
        assert_eq!(
            sio_url("http://127.0.0.1:8080"),
            Some(("ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket".into(), "/".into()))
        );
        assert_eq!(sio_url("https://h/admin").map(|x| x.1), Some("/admin".into()));
        assert_eq!(sio_url("ws://h/"), None);
        let frame = |p: &SioPacket| match sio_frames(p).remove(0) {
            Message::Text(t) => t.to_string(),
            m => panic!("{m:?}"),
        };
        assert_eq!(frame(&sio_packet("/", "hello", 1)), r#"421["message","hello"]"#);
        assert_eq!(frame(&sio_packet("/", r#"publish {"room":"chat:x"}"#, 2)), r#"422["publish",{"room":"chat:x"}]"#);
        assert_eq!(frame(&sio_packet("/a", r#"["e",1,2]"#, 3)), r#"42/a,3["e",1,2]"#);
        assert_eq!(frame(&sio_packet("/", "not json {", 4)), r#"424["message","not json {"]"#);
        assert_eq!(frame(&SioPacket::connect("/a", Some(json!({"token": "t"})))), r#"40/a,{"token":"t"}"#);
    }
}
