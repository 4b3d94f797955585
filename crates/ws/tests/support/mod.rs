//! Helpers for the integration tests: an in-process echo server, and raw TCP peers that
//! speak scripted bytes so every protocol rule can be exercised from the outside.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

pub mod certs;

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_ws::proto::handshake::accept_key;
use switchboard_ws::{Acceptor, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts an echo server with `acceptor` on an ephemeral loopback port.
pub async fn echo_server(acceptor: Acceptor) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = acceptor.accept(tcp).await else { return };
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_data() && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A frame as the raw peers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Encodes a frame; masked with a fixed key when `masked`.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut v = vec![(if fin { 0x80 } else { 0 }) | rsv | opcode];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => v.push(m | n as u8),
        n if n <= 0xFFFF => {
            v.push(m | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(m | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    if masked {
        v.extend_from_slice(&key);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        v.extend_from_slice(payload);
    }
    v
}

/// A client frame (masked).
pub fn cf(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, 0, opcode, payload, true)
}

/// A server frame (unmasked).
pub fn sf(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, 0, opcode, payload, false)
}

/// A close payload.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason);
    v
}

/// A raw TCP peer.
pub struct Raw {
    pub tcp: TcpStream,
    pub buf: Vec<u8>,
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw { tcp: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
    }

    /// Sends a valid upgrade request (plus `extra` header lines) and reads the response head.
    pub async fn handshake(addr: SocketAddr, extra: &str) -> (Raw, String) {
        let mut r = Raw::connect(addr).await;
        let req = format!("GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n");
        r.send(req.as_bytes()).await;
        let head = r.read_head().await;
        (r, head)
    }

    /// Upgrades and asserts a 101.
    pub async fn open(addr: SocketAddr) -> Raw {
        let (r, head) = Raw::handshake(addr, "").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        r
    }

    pub async fn send(&mut self, b: &[u8]) {
        self.tcp.write_all(b).await.unwrap();
    }

    async fn fill(&mut self, t: Duration) -> bool {
        let mut chunk = vec![0u8; 65536];
        match tokio::time::timeout(t, self.tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads an HTTP head (the response); the body, if any, is left in the buffer.
    pub async fn read_head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            if !self.fill(Duration::from_secs(5)).await {
                return String::from_utf8_lossy(&self.buf).into_owned();
            }
        }
    }

    /// Reads the next frame, or `None` on EOF or after `t` without one.
    pub async fn read_frame(&mut self, t: Duration) -> Option<RawFrame> {
        loop {
            if let Some((f, n)) = parse_frame(&self.buf) {
                self.buf.drain(..n);
                return Some(f);
            }
            if !self.fill(t).await {
                return None;
            }
        }
    }

    /// Reads frames until a Close (included) or EOF/timeout.
    pub async fn frames_until_close(&mut self) -> Vec<RawFrame> {
        let mut v = Vec::new();
        while let Some(f) = self.read_frame(Duration::from_secs(5)).await {
            let close = f.opcode == 8;
            v.push(f);
            if close {
                break;
            }
        }
        v
    }

    /// Whether the peer closes the TCP connection within `t` (reading and dropping data).
    pub async fn sees_eof(&mut self, t: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + t;
        let mut chunk = vec![0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

pub fn parse_frame(b: &[u8]) -> Option<(RawFrame, usize)> {
    if b.len() < 2 {
        return None;
    }
    let masked = b[1] & 0x80 != 0;
    let (len, mut off) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let key = if masked {
        let k: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
        off += 4;
        Some(k)
    } else {
        None
    };
    let mut payload = b.get(off..off + len)?.to_vec();
    if let Some(k) = key {
        for (i, x) in payload.iter_mut().enumerate() {
            *x ^= k[i % 4];
        }
    }
    Some((RawFrame { fin: b[0] & 0x80 != 0, rsv: b[0] & 0x70, opcode: b[0] & 0x0f, masked, payload }, off + len))
}

/// A raw server for one connection: accepts, answers the client's handshake with a valid
/// 101 (plus `extra` header lines), and hands over the socket.
pub async fn raw_server(extra: &'static str) -> (SocketAddr, tokio::task::JoinHandle<Raw>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut r = Raw { tcp, buf: Vec::new() };
        let head = r.read_head().await;
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .map(|k| k.trim().to_owned())
            .unwrap_or_default();
        let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n", accept_key(key.as_bytes()));
        r.send(resp.as_bytes()).await;
        r
    });
    (addr, h)
}

/// Runs our client as an echo client (like the `echo_client` example) and returns what it saw.
pub async fn run_echo_client(
    mut ws: switchboard_ws::WebSocket<switchboard_ws::MaybeTlsStream>,
) -> (Vec<Message>, Option<String>) {
    let mut seen = Vec::new();
    while let Some(m) = ws.recv().await {
        match m {
            Ok(m) => {
                if m.is_data() {
                    let _ = ws.send(m.clone()).await;
                }
                seen.push(m);
            }
            Err(e) => return (seen, Some(e.to_string())),
        }
    }
    (seen, None)
}

/// Starts a `wss` echo server with a fresh test PKI; returns its address and the PKI.
pub async fn tls_echo_server(acceptor: Acceptor) -> (SocketAddr, certs::TestPki) {
    let pki = certs::make_pki(&["localhost", "127.0.0.1"]).unwrap();
    let cfg = switchboard_ws::tls::server_config_from_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tls, acceptor) = (tls.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(s) = switchboard_ws::tls::accept_tls(&tls, tcp).await else { return };
                let Ok(mut ws) = acceptor.accept(s).await else { return };
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_data() && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, pki)
}

#[allow(unused_imports)]
pub use switchboard_test_support::{interop_dir, peer_available};
