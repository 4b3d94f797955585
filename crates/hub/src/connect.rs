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

/// A Socket.IO URL (`http(s)://host[/namespace]`): the WebSocket URL and the namespace.
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

/// Where `connect` goes: a plain WebSocket URL, or a Socket.IO server and namespace.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Ws(String),
    Sio { ws_url: String, nsp: String },
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        if let Some((ws_url, nsp)) = sio_url(url) {
            return Ok(Target::Sio { ws_url, nsp });
        }
        if url.starts_with("ws://") || url.starts_with("wss://") {
            return Ok(Target::Ws(url.to_owned()));
        }
        let host = url.split("://").last().unwrap_or(url).trim_end_matches('/');
        Err(format!(
            "{url:?} has no scheme this client speaks: use http://{host}/ or https://… for Socket.IO, \
             ws://{host}/ws or wss://… for a plain WebSocket (the hub's is /ws)"
        ))
    }
}

/// A connection error, with a hint when the likely cause is the URL.
fn explain(e: &switchboard_ws::Error, target: &Target) -> String {
    use switchboard_ws::proto::HandshakeError;
    match (e, target) {
        (
            switchboard_ws::Error::Handshake(HandshakeError::UnexpectedStatus { status: 200 | 404, .. }),
            Target::Ws(url),
        ) => {
            format!(
                "{e}: the server at {url} does not accept WebSocket connections on this path; \
                 is the path right? The hub's WebSocket endpoint is /ws (ws://host:port/ws); for \
                 Socket.IO use http://host:port/"
            )
        }
        _ => e.to_string(),
    }
}

/// A typed line as a Socket.IO event packet asking for ack `id`: a JSON array
/// `["event", args…]`, `event JSON`, or any other text as a `message` event. A line that
/// looks like JSON but does not parse is an error, never sent as text by accident.
fn sio_packet(nsp: &str, line: &str, id: u64) -> Result<SioPacket, String> {
    let t = line.trim();
    if t.starts_with('[') || t.starts_with('{') {
        return match serde_json::from_str::<Value>(t) {
            Ok(Value::Array(mut a)) => match a.first().cloned() {
                Some(Value::String(name)) => {
                    a.remove(0);
                    Ok(SioPacket::event(nsp, &name, a, Some(id)))
                }
                _ => Err("a JSON array line must start with the event name: [\"event\", args…]".into()),
            },
            Ok(_) => Err("a JSON object needs an event name first: `event {…}`".into()),
            Err(e) => Err(format!("not valid JSON: {e}")),
        };
    }
    if let Some((ev, rest)) = t.split_once(' ') {
        let rest = rest.trim();
        if !ev.is_empty() && (rest.starts_with(['{', '[', '"']) || serde_json::from_str::<Value>(rest).is_ok()) {
            return match serde_json::from_str::<Value>(rest) {
                Ok(v) => Ok(SioPacket::event(nsp, ev, vec![v], Some(id))),
                Err(e) => Err(format!("the argument of `{ev}` is not valid JSON: {e}")),
            };
        }
    }
    Ok(SioPacket::event(nsp, "message", vec![Value::String(line.to_owned())], Some(id)))
}

/// A typed line for a plain WebSocket: sent as it is, but a line that looks like JSON must
/// parse; a JSON object's `id` (a number) is returned, to wait for its reply.
fn ws_line(line: &str) -> Result<Option<u64>, String> {
    let t = line.trim();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(t).map_err(|e| format!("not valid JSON: {e}"))?;
    Ok(v.get("id").and_then(Value::as_u64))
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

/// What one message from the server means for the session.
enum Step {
    Continue,
    /// The namespace is joined: send the lines held so far.
    Ready,
    /// The server ended the session (its reason was printed); the exit status depends on
    /// whether the script was done.
    Ended,
    Exit(ExitCode),
}

/// The script's progress: replies it waits for, events from others it has seen.
#[derive(Default)]
struct Progress {
    /// Ack ids (Socket.IO) or request ids (`/ws`) sent and not answered yet.
    pending: std::collections::HashSet<u64>,
    /// Events from others (not the hub's `welcome`, not replies to our own requests).
    got: usize,
}

/// Shows a Socket.IO packet for our namespace, answers calls with `--ack`, tracks replies.
async fn on_sio_packet(
    ws: &mut WebSocket<switchboard_ws::MaybeTlsStream>,
    a: &ConnectArgs,
    nsp: &str,
    p: SioPacket,
    progress: &mut Progress,
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
            show(a.json, "connect_error", data.clone());
            eprintln!("switchboard connect: refused by the server: {data}");
            Step::Exit(ExitCode::FAILURE)
        }
        PacketType::Event | PacketType::BinaryEvent => {
            // The hub's own greeting is not an event from others.
            if p.event_parts().is_none_or(|(name, _)| name != "welcome") {
                progress.got += 1;
            }
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
            if let Some(id) = p.id {
                progress.pending.remove(&id);
            }
            show(a.json, "ack", data);
            Step::Continue
        }
        PacketType::Disconnect => {
            show(a.json, "disconnect", Value::Null);
            eprintln!("switchboard connect: disconnected by the server");
            Step::Ended
        }
    }
}

/// Shows a text message from a plain WebSocket server, tracking replies to our requests.
fn on_ws_text(a: &ConnectArgs, t: &str, progress: &mut Progress) {
    let v: Value = serde_json::from_str(t).unwrap_or(Value::String(t.to_owned()));
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "reply" | "pong" => {
            if let Some(id) = v.get("id").and_then(Value::as_u64) {
                progress.pending.remove(&id);
            }
        }
        "welcome" => {}
        _ => progress.got += 1,
    }
    show(a.json, "message", v);
}

/// Prints one incoming message (a line of JSON with `--json`).
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
    let target = match Target::parse(&a.url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("switchboard connect: {e}");
            return ExitCode::from(2);
        }
    };
    let (ws_url, nsp) = match &target {
        Target::Ws(u) => (u.clone(), None),
        Target::Sio { ws_url, nsp } => (ws_url.clone(), Some(nsp.clone())),
    };
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
    if let (Some(t), None) = (&a.token, &nsp) {
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
            eprintln!("switchboard connect: {}", explain(&e, &target));
            return ExitCode::FAILURE;
        }
    };
    // Interactive: a terminal on stdin and no script. Otherwise (lines from -x or a pipe, or
    // -w) the session ends by itself once everything is sent, every request is answered and
    // the events waited for have come, or fails at --timeout.
    let stdin_tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let interactive = stdin_tty && a.execute.is_empty() && a.wait.is_none();
    let read_stdin = !stdin_tty || interactive;
    if let Some(nsp) = &nsp {
        let auth = a.token.as_ref().map(|t| json!({"token": t}));
        if send_sio(&mut ws, &SioPacket::connect(nsp, auth)).await.is_err() {
            eprintln!("switchboard connect: connection closed");
            return ExitCode::FAILURE;
        }
    }
    // What the server sends, decoded as a client does (attachments reassembled, caps on).
    let mut decoder = Decoder::client_side(Limits::default().with_max_attachment_bytes(64 << 20));
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<String>(64);
    let pre = a.execute.clone();
    tokio::spawn(async move {
        for l in pre {
            if line_tx.send(l).await.is_err() {
                return;
            }
        }
        if read_stdin {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if line_tx.send(l).await.is_err() {
                    return;
                }
            }
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.timeout);
    let mut progress = Progress::default();
    // Socket.IO: lines wait until the namespace is joined.
    let mut ready = nsp.is_none();
    let mut held: Vec<String> = Vec::new();
    let mut input_open = true;
    let mut next_id: u64 = 1;
    let code = loop {
        let done = ready
            && !input_open
            && held.is_empty()
            && progress.pending.is_empty()
            && a.wait.is_none_or(|w| progress.got >= w);
        if done && !interactive {
            break ExitCode::SUCCESS;
        }
        let sleep = tokio::time::sleep_until(deadline);
        tokio::select! {
            l = line_rx.recv(), if input_open => match l {
                Some(l) => {
                    if l.trim().is_empty() {
                        continue;
                    }
                    if !ready {
                        held.push(l);
                        continue;
                    }
                    match send_line(&mut ws, nsp.as_deref(), &l, &mut next_id, &mut progress).await {
                        Ok(()) => {}
                        Err(LineError::Bad(e)) if interactive => eprintln!("switchboard connect: not sent: {e}"),
                        Err(LineError::Bad(e)) => {
                            eprintln!("switchboard connect: not sent: {e}: {l}");
                            break ExitCode::from(2);
                        }
                        Err(LineError::Closed(e)) => {
                            eprintln!("switchboard connect: {e}");
                            break ExitCode::FAILURE;
                        }
                    }
                }
                None => {
                    input_open = false;
                    if interactive {
                        let _ = ws.close(CloseCode::NORMAL, "").await;
                        break ExitCode::SUCCESS;
                    }
                }
            },
            m = ws.recv() => {
                let step = match m {
                    Some(Ok(Message::Text(t))) if nsp.is_none() => {
                        on_ws_text(&a, &t, &mut progress);
                        Step::Continue
                    }
                    Some(Ok(Message::Binary(b))) if nsp.is_none() => {
                        progress.got += 1;
                        show(a.json, "binary", json!(b.len()));
                        Step::Continue
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
                                Ok(EioPacket::Close) => None,
                                Ok(EioPacket::Message(Data::Text(s))) => Some(decoder.text(&s, now).map_err(|e| e.to_string())),
                                Ok(_) => continue,
                                Err(e) => Some(Err(e.to_string())),
                            },
                            Message::Binary(b) => Some(decoder.binary(b, now).map_err(|e| e.to_string())),
                            _ => continue,
                        };
                        // `None`: the Engine.IO session was closed by the server.
                        match decoded {
                            Some(Ok(Some(p))) => on_sio_packet(&mut ws, &a, n, p, &mut progress).await,
                            Some(Ok(None)) => Step::Continue,
                            Some(Err(e)) => {
                                eprintln!("switchboard connect: bad packet from the server: {e}");
                                Step::Exit(ExitCode::FAILURE)
                            }
                            None => {
                                show(a.json, "close", Value::Null);
                                eprintln!("switchboard connect: the server closed the session");
                                Step::Ended
                            }
                        }
                    }
                    Some(Ok(Message::Close(f))) => {
                        let (code, reason) = f.map(|f| (f.code.0, f.reason.to_string())).unwrap_or((1005, String::new()));
                        show(a.json, "close", json!({"code": code, "reason": reason}));
                        eprintln!("switchboard connect: closed by the server: {code} {reason}");
                        Step::Ended
                    }
                    Some(Ok(_)) => Step::Continue,
                    Some(Err(e)) => {
                        eprintln!("switchboard connect: {e}");
                        Step::Exit(ExitCode::FAILURE)
                    }
                    None => {
                        eprintln!("switchboard connect: the connection was closed");
                        Step::Ended
                    }
                };
                match step {
                    Step::Continue => {}
                    Step::Ready => {
                        ready = true;
                        let mut failed = None;
                        for l in std::mem::take(&mut held) {
                            match send_line(&mut ws, nsp.as_deref(), &l, &mut next_id, &mut progress).await {
                                Ok(()) => {}
                                Err(LineError::Bad(e)) if interactive => eprintln!("switchboard connect: not sent: {e}"),
                                Err(LineError::Bad(e)) => {
                                    eprintln!("switchboard connect: not sent: {e}: {l}");
                                    failed = Some(ExitCode::from(2));
                                    break;
                                }
                                Err(LineError::Closed(e)) => {
                                    eprintln!("switchboard connect: {e}");
                                    failed = Some(ExitCode::FAILURE);
                                    break;
                                }
                            }
                        }
                        if let Some(c) = failed {
                            break c;
                        }
                    }
                    Step::Ended => {
                        // The server ended it: fine only if the script had nothing left to do.
                        let finished = !input_open && held.is_empty() && progress.pending.is_empty()
                            && a.wait.is_none_or(|w| progress.got >= w);
                        break if finished && !interactive { ExitCode::SUCCESS } else { ExitCode::FAILURE };
                    }
                    Step::Exit(c) => break c,
                }
            },
            _ = sleep, if !interactive => {
                let mut missing = Vec::new();
                if !ready {
                    missing.push("the namespace to be joined".to_owned());
                }
                if !progress.pending.is_empty() {
                    missing.push(format!("{} repl{}", progress.pending.len(), if progress.pending.len() == 1 { "y" } else { "ies" }));
                }
                if let Some(w) = a.wait.filter(|w| progress.got < *w) {
                    missing.push(format!("{} more event(s) ({} of {w})", w - progress.got, progress.got));
                }
                if input_open {
                    missing.push("the end of the input".to_owned());
                }
                eprintln!("switchboard connect: timed out after {} s, waiting for {}", a.timeout, missing.join(", "));
                break ExitCode::FAILURE;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(CloseCode::NORMAL, "")).await;
    code
}

/// Why a line was not sent.
enum LineError {
    /// The line is malformed (nothing was sent).
    Bad(String),
    /// The connection is gone.
    Closed(String),
}

async fn send_line(
    ws: &mut WebSocket<switchboard_ws::MaybeTlsStream>,
    nsp: Option<&str>,
    line: &str,
    next_id: &mut u64,
    progress: &mut Progress,
) -> Result<(), LineError> {
    let sent = match nsp {
        Some(n) => {
            let id = *next_id;
            let p = sio_packet(n, line, id).map_err(LineError::Bad)?;
            *next_id += 1;
            progress.pending.insert(id);
            send_sio(ws, &p).await
        }
        None => {
            if let Some(id) = ws_line(line).map_err(LineError::Bad)? {
                progress.pending.insert(id);
            }
            ws.send(Message::text(line.to_owned())).await
        }
    };
    sent.map_err(|e| LineError::Closed(e.to_string()))
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
        let line = |nsp: &str, l: &str, id| sio_packet(nsp, l, id).unwrap();
        assert_eq!(frame(&line("/", "hello", 1)), r#"421["message","hello"]"#);
        assert_eq!(frame(&line("/", r#"publish {"room":"chat:x"}"#, 2)), r#"422["publish",{"room":"chat:x"}]"#);
        assert_eq!(frame(&line("/a", r#"["e",1,2]"#, 3)), r#"42/a,3["e",1,2]"#);
        assert_eq!(frame(&line("/", "hello world", 4)), r#"424["message","hello world"]"#);
        // Mistyped JSON is an error, not a `message`.
        for bad in [r#"publish {"room":"x""#, r#"["e",1"#, r#"{"a":1}"#, "[1,2]", r#"publish {room: 1}"#] {
            assert!(sio_packet("/", bad, 5).is_err(), "{bad}");
        }
        assert_eq!(ws_line(r#"{"type":"ping","id":7}"#), Ok(Some(7)));
        assert_eq!(ws_line("plain text"), Ok(None));
        assert!(ws_line(r#"{"type":"ping""#).is_err());
        assert!(Target::parse("127.0.0.1:8080").unwrap_err().contains("http://127.0.0.1:8080/"));
        assert_eq!(Target::parse("ws://h/ws"), Ok(Target::Ws("ws://h/ws".into())));
        assert_eq!(frame(&SioPacket::connect("/a", Some(json!({"token": "t"})))), r#"40/a,{"token":"t"}"#);
    }
}
