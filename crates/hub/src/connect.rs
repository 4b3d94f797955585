//! `switchboard connect URL`: an interactive client for `ws://`, `wss://` and Socket.IO
//! (`http://`, `https://`) URLs, and a scriptable one (`-x` lines to send, `-w` messages to
//! wait for, exit status 1 when they do not come in time).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
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

/// Encodes a typed line as a Socket.IO event packet asking for ack `id`.
fn sio_packet(nsp: &str, line: &str, id: u64) -> String {
    let prefix = if nsp == "/" { String::new() } else { format!("{nsp},") };
    let args: Value = match serde_json::from_str::<Value>(line) {
        Ok(Value::Array(a)) if a.first().is_some_and(Value::is_string) => Value::Array(a),
        _ => match line.split_once(' ') {
            Some((ev, rest)) if !ev.is_empty() && serde_json::from_str::<Value>(rest).is_ok() => {
                json!([ev, serde_json::from_str::<Value>(rest).unwrap_or(Value::Null)])
            }
            _ => json!(["message", line]),
        },
    };
    format!("42{prefix}{id}{args}")
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
        let prefix = if nsp == "/" { String::new() } else { format!("{nsp},") };
        let auth = a.token.as_ref().map(|t| json!({"token": t}).to_string()).unwrap_or_default();
        if ws.send(Message::text(format!("40{prefix}{auth}"))).await.is_err() {
            eprintln!("switchboard connect: connection closed");
            return ExitCode::FAILURE;
        }
    }
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
                Some(Ok(Message::Text(t))) => {
                    match &nsp {
                        None => {
                            got += 1;
                            show(a.json, "message", serde_json::from_str(&t).unwrap_or(Value::String(t.to_string())));
                        }
                        Some(n) => {
                            let prefix = if n == "/" { String::new() } else { format!("{n},") };
                            if &*t == "2" {
                                let _ = ws.send(Message::text("3")).await;
                            } else if let Some(rest) = t.strip_prefix(&format!("40{prefix}")) {
                                ready = true;
                                show(a.json, "connect", serde_json::from_str(rest).unwrap_or(Value::Null));
                                for l in std::mem::take(&mut held) {
                                    if send_line(&mut ws, nsp.as_deref(), &l).await.is_err() {
                                        break;
                                    }
                                }
                            } else if let Some(rest) = t.strip_prefix(&format!("44{prefix}")) {
                                show(a.json, "connect_error", serde_json::from_str(rest).unwrap_or(Value::Null));
                                break ExitCode::FAILURE;
                            } else if let Some(rest) = t.strip_prefix(&format!("42{prefix}")) {
                                got += 1;
                                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                                let body = &rest[digits.len()..];
                                show(a.json, "event", serde_json::from_str(body).unwrap_or(Value::Null));
                                if let (false, Some(ack)) = (digits.is_empty(), &a.ack) {
                                    let v: Value = serde_json::from_str(ack).unwrap_or(Value::String(ack.clone()));
                                    let _ = ws.send(Message::text(format!("43{prefix}{digits}{}", json!([v])))).await;
                                }
                            } else if let Some(rest) = t.strip_prefix(&format!("43{prefix}")) {
                                got += 1;
                                let body = rest.trim_start_matches(|c: char| c.is_ascii_digit());
                                show(a.json, "ack", serde_json::from_str(body).unwrap_or(Value::Null));
                            } else if t.starts_with(&format!("41{prefix}")) {
                                show(a.json, "disconnect", Value::Null);
                                break ExitCode::SUCCESS;
                            } else if &*t == "1" {
                                show(a.json, "close", Value::Null);
                                break ExitCode::SUCCESS;
                            }
                        }
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    got += 1;
                    show(a.json, "binary", json!(b.len()));
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
            ws.send(Message::text(sio_packet(n, line, id))).await
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
        assert_eq!(sio_packet("/", "hello", 1), r#"421["message","hello"]"#);
        assert_eq!(sio_packet("/", r#"publish {"room":"chat:x"}"#, 2), r#"422["publish",{"room":"chat:x"}]"#);
        assert_eq!(sio_packet("/a", r#"["e",1,2]"#, 3), r#"42/a,3["e",1,2]"#);
    }
}
