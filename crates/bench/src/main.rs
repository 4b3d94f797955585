//! `switchboard-loadgen`: a WebSocket load generator for side-by-side benchmarks.
//!
//! Load mode: N connections (spread over several 127.0.0.x source addresses), each keeping K
//! messages of a given size in flight against an echo server, for a bounded time after a
//! warm-up. Reports messages per second, latency p50/p99, the server's CPU seconds (from
//! `/proc/PID/stat`), messages per server-CPU-second and the server's RSS, as one JSON line.
//!
//! Idle mode (`--idle`): opens N connections, lets them settle and reports the server's RSS
//! growth per connection; `--hold` keeps them open for an outside measurement.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use switchboard_ws::proto::deflate::DeflateConfig;
use switchboard_ws::{ClientBuilder, Config, Error, Message, OpCode, WebSocket};
use tokio::sync::Semaphore;

/// Command line.
#[derive(Parser, Debug, Clone)]
#[command(version, about = "WebSocket load generator (echo round trips or idle connections)")]
struct Args {
    /// Target URL.
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 20)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Send text instead of binary.
    #[arg(long)]
    text: bool,
    /// Split every message into this many frames.
    #[arg(long, default_value_t = 1)]
    fragments: usize,
    /// Offer permessage-deflate.
    #[arg(long)]
    deflate: bool,
    /// PIDs of the server processes to measure (CPU, RSS).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Number of source addresses (127.0.0.{first}..).
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// First source address's last octet.
    #[arg(long, default_value_t = 1)]
    first_source: u8,
    /// Idle mode: connect, settle, measure memory.
    #[arg(long)]
    idle: bool,
    /// Idle mode: each connection first exchanges one message of `--size` bytes (with
    /// `--deflate`, this makes both sides allocate their compression contexts).
    #[arg(long)]
    warm: bool,
    /// Idle mode: keep the connections this many seconds after reporting.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Label for the JSON line.
    #[arg(long, default_value = "")]
    label: String,
    /// Concurrent connection attempts.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
}

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: indexes 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::env::var("CLK_TCK").ok().and_then(|v| v.parse().ok()).unwrap_or(100.0)
}

/// Resident set size of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn total(pids: &[u32], f: impl Fn(u32) -> f64) -> f64 {
    pids.iter().map(|&p| f(p)).sum()
}

fn source(args: &Args, i: usize) -> IpAddr {
    let n = args.sources.max(1) as usize;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, args.first_source.wrapping_add((i % n) as u8)))
}

async fn connect_all(args: &Args) -> Result<Vec<WebSocket<switchboard_ws::MaybeTlsStream>>, Error> {
    let sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(args.conns);
    let config =
        Config::default().with_max_message_size(64 << 20).with_max_frame_size(64 << 20).with_ping_interval(None);
    for i in 0..args.conns {
        let mut b = ClientBuilder::new(args.url.clone()).config(config.clone()).local_address(source(args, i));
        if args.deflate {
            b = b.deflate(DeflateConfig::default());
        }
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            b.connect().await
        }));
    }
    let mut out = Vec::with_capacity(args.conns);
    for t in tasks {
        out.push(t.await.map_err(|e| Error::Io(std::io::Error::other(e)))??);
    }
    Ok(out)
}

struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    received: AtomicU64,
}

fn payload(args: &Args) -> Message {
    if args.text {
        Message::text("a".repeat(args.size))
    } else {
        Message::Binary(Bytes::from((0..args.size).map(|i| (i % 251) as u8).collect::<Vec<u8>>()))
    }
}

async fn send_one(
    ws: &mut WebSocket<switchboard_ws::MaybeTlsStream>,
    msg: &Message,
    fragments: usize,
) -> Result<(), Error> {
    if fragments <= 1 {
        return match ws.try_send(msg.clone()) {
            Err(Error::WriteBufferFull(m)) => ws.send(*m).await,
            r => r,
        };
    }
    let (op, data) = match msg {
        Message::Text(t) => (OpCode::Text, t.as_bytes().to_vec()),
        _ => (OpCode::Binary, msg.as_payload().to_vec()),
    };
    let step = data.len().div_ceil(fragments).max(1);
    let parts: Vec<&[u8]> = data.chunks(step).collect();
    ws.send_fragmented(op, &parts).await
}

/// One connection: keep `inflight` messages outstanding; record round-trip latency.
async fn drive(
    mut ws: WebSocket<switchboard_ws::MaybeTlsStream>,
    args: Arc<Args>,
    shared: Arc<Shared>,
) -> Result<Histogram<u64>, Error> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    let msg = payload(&args);
    let mut sent_at = std::collections::VecDeque::with_capacity(args.inflight);
    for _ in 0..args.inflight {
        send_one(&mut ws, &msg, args.fragments).await?;
        sent_at.push_back(Instant::now());
    }
    ws.flush().await?;
    while let Some(m) = ws.recv().await {
        let mut next = Some(m?);
        while let Some(m) = next.take() {
            if m.is_data() {
                let t0 = sent_at.pop_front().unwrap_or_else(Instant::now);
                if shared.measuring.load(Ordering::Relaxed) {
                    let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                    shared.received.fetch_add(1, Ordering::Relaxed);
                }
                if !shared.stop.load(Ordering::Relaxed) {
                    send_one(&mut ws, &msg, args.fragments).await?;
                    sent_at.push_back(Instant::now());
                }
            }
            next = ws.try_recv().transpose()?;
        }
        ws.flush().await?;
        if shared.stop.load(Ordering::Relaxed) && sent_at.is_empty() {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(switchboard_ws::CloseCode::NORMAL, "")).await;
    Ok(hist)
}

async fn run_load(args: Args) -> Result<String, Error> {
    let conns = connect_all(&args).await?;
    let args = Arc::new(args);
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        received: AtomicU64::new(0),
    });
    let tasks: Vec<_> = conns.into_iter().map(|ws| tokio::spawn(drive(ws, args.clone(), shared.clone()))).collect();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let cpu0 = total(&args.server_pid, cpu_seconds);
    let t0 = Instant::now();
    shared.measuring.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    shared.measuring.store(false, Ordering::SeqCst);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = total(&args.server_pid, cpu_seconds) - cpu0;
    let rss: f64 = total(&args.server_pid, |p| rss_kib(p) as f64);
    shared.stop.store(true, Ordering::SeqCst);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    for t in tasks {
        if let Ok(Ok(Ok(h))) = tokio::time::timeout(Duration::from_secs(10), t).await {
            let _ = hist.add(h);
        }
    }
    let n = shared.received.load(Ordering::SeqCst);
    let per_cpu = if cpu > 0.0 { n as f64 / cpu } else { 0.0 };
    Ok(format!(
        "{{\"label\":\"{}\",\"mode\":\"load\",\"conns\":{},\"size\":{},\"inflight\":{},\"fragments\":{},\"deflate\":{},\"msgs\":{},\"secs\":{:.3},\"msgs_per_sec\":{:.0},\"p50_us\":{},\"p99_us\":{},\"server_cpu_s\":{:.3},\"msgs_per_cpu_s\":{:.0},\"server_rss_kib\":{:.0}}}",
        args.label,
        args.conns,
        args.size,
        args.inflight,
        args.fragments,
        args.deflate,
        n,
        secs,
        n as f64 / secs,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        cpu,
        per_cpu,
        rss
    ))
}

async fn run_idle(args: Args) -> Result<String, Error> {
    let before: f64 = total(&args.server_pid, |p| rss_kib(p) as f64);
    let t0 = Instant::now();
    let mut conns = connect_all(&args).await?;
    let connect_secs = t0.elapsed().as_secs_f64();
    if args.warm {
        let msg = payload(&args);
        for ws in &mut conns {
            ws.send(msg.clone()).await?;
            match ws.recv().await {
                Some(Ok(m)) if m.is_data() => {}
                other => return Err(Error::Io(std::io::Error::other(format!("warm-up echo failed: {other:?}")))),
            }
        }
    }
    // Keep reading so pings are answered, as a live client would.
    let holders: Vec<_> = conns
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { while let Some(Ok(_)) = ws.recv().await {} }))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: f64 = total(&args.server_pid, |p| rss_kib(p) as f64);
    let per_conn = (after - before) * 1024.0 / args.conns.max(1) as f64;
    let line = format!(
        "{{\"label\":\"{}\",\"mode\":\"idle\",\"conns\":{},\"connect_secs\":{:.2},\"rss_before_kib\":{:.0},\"rss_after_kib\":{:.0},\"bytes_per_conn\":{:.0}}}",
        args.label, args.conns, connect_secs, before, after, per_conn
    );
    if args.hold > 0.0 {
        println!("{line}");
        println!("holding {} connections for {} s", args.conns, args.hold);
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    }
    drop(holders);
    Ok(line)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let r = if args.idle { run_idle(args.clone()).await } else { run_load(args.clone()).await };
    match r {
        Ok(line) => {
            if !(args.idle && args.hold > 0.0) {
                println!("{line}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
