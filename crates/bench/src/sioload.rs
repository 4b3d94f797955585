//! `switchboard-sioload`: a Socket.IO load generator over the WebSocket transport, for the
//! side-by-side benchmarks of Socket.IO servers (ours, socketioxide, Node socket.io). It
//! builds and reads packets with the project's own codecs (Engine.IO and Socket.IO, the
//! client-side decoder), and measures the *server's* RSS and CPU time through `/proc/PID`.
//!
//! Modes (the server protocol is in `examples/sio_switchboard_server.rs`):
//! - `idle`: N sockets connected to `/`; reports RSS growth per socket.
//! - `broadcast`: N sockets join room `bench`; one more socket asks for `count` broadcasts of
//!   a `size`-byte event; reports deliveries per server-CPU-second and checks none is lost.
//! - `ack`: C sockets each keep one `echo` with ack in flight for `secs`; reports round trips
//!   per server-CPU-second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use switchboard_socketio::engineio::packet::{Data, Packet as EioPacket};
use switchboard_socketio::{Decoder, Limits, Packet as SioPacket, PacketType};
use switchboard_ws::{ClientBuilder, Config, Message, WebSocket};
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
struct Args {
    /// `idle`, `broadcast` or `ack`.
    #[arg(long)]
    mode: String,
    /// Server address (host:port).
    #[arg(long)]
    addr: String,
    /// The server's process id (RSS and CPU time are read from /proc).
    #[arg(long)]
    pid: u32,
    /// Sockets.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Broadcasts (broadcast mode).
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// Event payload bytes (broadcast mode).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Duration in seconds (ack mode).
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Idle: seconds to settle before reading RSS.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// Source addresses to spread connections over (127.0.0.1 … 127.0.0.N).
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// Cluster mode: the nodes that hold the sockets (comma separated; sockets split evenly).
    #[arg(long, default_value = "")]
    addrs: String,
    /// Cluster mode: the node the broadcasts are published on (it holds no socket).
    #[arg(long, default_value = "")]
    control: String,
    /// Cluster mode: every process whose CPU counts (the nodes and the broker), comma
    /// separated.
    #[arg(long, default_value = "")]
    pids: String,
    /// Cluster mode: single broadcasts timed from publish to last delivery.
    #[arg(long, default_value_t = 50)]
    rounds: u32,
}

type Ws = WebSocket<switchboard_ws::MaybeTlsStream>;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of the whole process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// One Socket.IO client over WebSocket: the socket and the decoder of what the server sends.
struct Client {
    ws: Ws,
    dec: Decoder,
}

impl Client {
    /// Sends a packet (text only: the load generator sends no binary).
    async fn send(&mut self, p: &SioPacket) -> Result<(), String> {
        let text = EioPacket::Message(Data::Text(p.encode().into())).encode_text();
        self.ws.send(Message::text(text)).await.map_err(|e| e.to_string())
    }

    /// The next Socket.IO packet, answering pings on the way; `None` when the connection
    /// ends or sends something undecodable.
    async fn next(&mut self) -> Option<SioPacket> {
        loop {
            let now = std::time::Instant::now();
            let decoded = match self.ws.recv().await?.ok()? {
                Message::Text(t) => match EioPacket::decode_text(t).ok()? {
                    EioPacket::Ping(p) => {
                        self.ws.send(Message::text(EioPacket::Pong(p).encode_text())).await.ok()?;
                        continue;
                    }
                    EioPacket::Message(Data::Text(s)) => self.dec.text(&s, now),
                    EioPacket::Close => return None,
                    _ => continue,
                },
                Message::Binary(b) => self.dec.binary(b, now),
                _ => continue,
            };
            match decoded {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(_) => return None,
            }
        }
    }
}

/// Connects one socket to `/` over WebSocket; returns it once the CONNECT reply is in.
async fn connect(addr: &str, source: u8) -> Result<Client, String> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, source));
    let ws = ClientBuilder::new(url)
        .local_address(ip)
        .config(Config::default().with_max_message_size(16 << 20))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut c = Client { ws, dec: Decoder::client_side(Limits::default()) };
    c.send(&SioPacket::connect("/", None)).await?;
    loop {
        match c.next().await {
            Some(p) if p.kind == PacketType::Connect => return Ok(c),
            Some(p) if p.kind == PacketType::ConnectError => return Err(format!("refused: {:?}", p.data)),
            Some(_) => {}
            None => return Err("closed during connect".into()),
        }
    }
}

async fn connect_many(args: &Args, n: usize) -> Vec<Client> {
    connect_many_to(args, &args.addr, n).await
}

async fn connect_many_to(args: &Args, addr: &str, n: usize) -> Vec<Client> {
    let sem = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let sem = sem.clone();
        let addr = addr.to_owned();
        let source = 1 + (i % usize::from(args.sources.max(1))) as u8;
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await;
            connect(&addr, source).await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        match t.await {
            Ok(Ok(ws)) => out.push(ws),
            Ok(Err(e)) => eprintln!("connect failed: {e}"),
            Err(e) => eprintln!("task failed: {e}"),
        }
    }
    out
}

async fn idle(args: &Args) {
    let before = rss_kib(args.pid);
    let socks = connect_many(args, args.conns).await;
    let n = socks.len();
    // Keep answering pings while settling.
    let mut keep = Vec::new();
    for mut ws in socks {
        keep.push(tokio::spawn(async move { while ws.next().await.is_some() {} }));
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let after = rss_kib(args.pid);
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n.max(1) as f64;
    println!("idle sockets={n} rss_before_kib={before} rss_after_kib={after} bytes_per_socket={per:.0}");
    for k in keep {
        k.abort();
    }
}

async fn broadcast(args: &Args) {
    let socks = connect_many(args, args.conns).await;
    let n = socks.len();
    // Join, then count ticks.
    let received = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let total = n as u64 * args.count;
    let mut tasks = Vec::new();
    for mut ws in socks {
        let (received, ready, done) = (received.clone(), ready.clone(), done.clone());
        let count = args.count;
        tasks.push(tokio::spawn(async move {
            if ws.send(&SioPacket::event("/", "join", vec![], Some(0))).await.is_err() {
                return 0;
            }
            let mut got = 0u64;
            while let Some(p) = ws.next().await {
                if p.kind == PacketType::Ack && p.id == Some(0) {
                    ready.fetch_add(1, Ordering::Relaxed);
                } else if p.event_parts().is_some_and(|(name, _)| name == "tick") {
                    got += 1;
                    if received.fetch_add(1, Ordering::Relaxed) + 1 == total {
                        done.notify_one();
                    }
                    if got == count {
                        break;
                    }
                }
            }
            got
        }));
    }
    while ready.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut control = match connect(&args.addr, 200).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("control: {e}");
            return;
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = cpu_secs(args.pid);
    let t0 = Instant::now();
    let blast = SioPacket::event("/", "blast", vec![json!({"count": args.count, "size": args.size})], None);
    let _ = control.send(&blast).await;
    let finished = tokio::time::timeout(Duration::from_secs(120), done.notified()).await.is_ok();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(args.pid) - cpu0;
    let got = received.load(Ordering::Relaxed);
    println!(
        "broadcast sockets={n} count={} size={} delivered={got}/{total} lost={} wall_s={wall:.3} server_cpu_s={cpu:.2} deliveries_per_cpu_s={:.0} complete={finished}",
        args.count,
        args.size,
        total - got.min(total),
        got as f64 / cpu.max(0.01)
    );
    for t in tasks {
        t.abort();
    }
}

/// CPU seconds of several processes together.
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().map(|p| cpu_secs(*p)).sum()
}

/// A cluster: sockets spread over `--addrs`, broadcasts published on `--control`; deliveries
/// per CPU-second of every listed process (nodes and broker), and publish → last delivery
/// latency of single broadcasts.
async fn cluster(args: &Args) {
    let addrs: Vec<&str> = args.addrs.split(',').filter(|a| !a.is_empty()).collect();
    let pids: Vec<u32> = args.pids.split(',').filter_map(|p| p.parse().ok()).collect();
    let per = args.conns / addrs.len().max(1);
    let mut socks = Vec::new();
    for a in &addrs {
        socks.extend(connect_many_to(args, a, per).await);
    }
    let n = socks.len() as u64;
    let received = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for mut ws in socks {
        let (received, ready, target, done) = (received.clone(), ready.clone(), target.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            if ws.send(&SioPacket::event("/", "join", vec![], Some(0))).await.is_err() {
                return;
            }
            while let Some(p) = ws.next().await {
                if p.kind == PacketType::Ack && p.id == Some(0) {
                    ready.fetch_add(1, Ordering::Relaxed);
                } else if p.event_parts().is_some_and(|(name, _)| name == "tick") {
                    let now = received.fetch_add(1, Ordering::AcqRel) + 1;
                    if now >= target.load(Ordering::Acquire) {
                        done.notify_one();
                    }
                }
            }
        }));
    }
    while ready.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut control = match connect(&args.control, 200).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("control: {e}");
            return;
        }
    };
    // Let every node see every join (room subscriptions) before publishing.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let wait = |want: u64, id: u64, count: u64| {
        target.store(want, Ordering::Release);
        let blast = SioPacket::event("/", "blast", vec![json!({"count": count, "size": args.size})], Some(id));
        (blast, want)
    };
    // Latency: single broadcasts, one at a time.
    let mut lat = Vec::new();
    for r in 0..u64::from(args.rounds) {
        let (blast, want) = wait(received.load(Ordering::Acquire) + n, 1000 + r, 1);
        let t0 = Instant::now();
        let _ = control.send(&blast).await;
        loop {
            if received.load(Ordering::Acquire) >= want {
                break;
            }
            if tokio::time::timeout(Duration::from_secs(10), done.notified()).await.is_err() {
                break;
            }
        }
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    // Throughput: `count` broadcasts back to back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = received.load(Ordering::Acquire);
    let total = n * args.count;
    let (blast, want) = wait(base + total, 1, args.count);
    let cpu0 = cpu_of(&pids);
    let t0 = Instant::now();
    let _ = control.send(&blast).await;
    let mut finished = true;
    while received.load(Ordering::Acquire) < want {
        if tokio::time::timeout(Duration::from_secs(60), done.notified()).await.is_err() {
            finished = false;
            break;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    // Let the processes go idle so their CPU time is complete.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = cpu_of(&pids) - cpu0;
    let got = received.load(Ordering::Acquire) - base;
    println!(
        "cluster sockets={n} count={} size={} delivered={got}/{total} lost={} wall_s={wall:.3} total_cpu_s={cpu:.2} deliveries_per_cpu_s={:.0} p50_ms={:.2} p99_ms={:.2} complete={finished}",
        args.count,
        args.size,
        total - got.min(total),
        got as f64 / cpu.max(0.01),
        pct(0.5),
        pct(0.99)
    );
    for t in tasks {
        t.abort();
    }
}

async fn ack(args: &Args) {
    let socks = connect_many(args, args.conns).await;
    let n = socks.len();
    let rtts = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(args.secs) + Duration::from_millis(300);
    let start_at = Instant::now() + Duration::from_millis(300);
    let cpu_at_start = Arc::new(std::sync::Mutex::new(None::<f64>));
    let mut tasks = Vec::new();
    for mut ws in socks {
        let rtts = rtts.clone();
        tasks.push(tokio::spawn(async move {
            let mut id: u64 = 0;
            tokio::time::sleep_until(start_at.into()).await;
            while Instant::now() < stop {
                id += 1;
                if ws.send(&SioPacket::event("/", "echo", vec![json!({"n": id})], Some(id))).await.is_err() {
                    return;
                }
                loop {
                    match ws.next().await {
                        Some(p) if p.kind == PacketType::Ack && p.id == Some(id) => break,
                        Some(_) => {}
                        None => return,
                    }
                }
                rtts.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep_until(start_at.into()).await;
    let cpu0 = cpu_secs(args.pid);
    *cpu_at_start.lock().unwrap_or_else(|p| p.into_inner()) = Some(cpu0);
    let base = rtts.load(Ordering::Relaxed);
    tokio::time::sleep_until(stop.into()).await;
    let cpu = cpu_secs(args.pid) - cpu0;
    let count = rtts.load(Ordering::Relaxed) - base;
    for t in tasks {
        t.abort();
    }
    println!(
        "ack clients={n} secs={} round_trips={count} server_cpu_s={cpu:.2} rtt_per_cpu_s={:.0} rtt_per_s={:.0}",
        args.secs,
        count as f64 / cpu.max(0.01),
        count as f64 / args.secs as f64
    );
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match args.mode.as_str() {
        "cluster" => cluster(&args).await,
        "idle" => idle(&args).await,
        "broadcast" => broadcast(&args).await,
        "ack" => ack(&args).await,
        m => {
            eprintln!("unknown mode {m}");
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
