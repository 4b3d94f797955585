//! `switchboard`: the real-time hub (`serve`) and an interactive client (`connect`).

// A binary: `pub` marks what a module offers the rest of the program.
#![allow(unreachable_pub)]

mod auth;
mod cluster;
mod collect;
mod config;
mod connect;
mod forward;
mod hooks;
mod hub;
mod limits;
mod metrics;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "switchboard", version, about = "A real-time messaging hub and client")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs the hub (embedded defaults: 127.0.0.1:8080, anonymous clients, open API on loopback).
    Serve(Box<ServeArgs>),
    /// Connects to a ws://, wss:// or Socket.IO (http://, https://) URL: prints what arrives,
    /// sends the lines you type.
    Connect(connect::ConnectArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// A TOML file overriding the embedded defaults.
    #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// `server.listen`.
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<String>,
    /// Adds a bearer key for /api/*.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Adds an HS256 key for client tokens.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// `auth.anonymous` (true/false, yes/no, on/off, 1/0).
    #[arg(long, env = "SWITCHBOARD_ANONYMOUS", value_parser = clap::builder::BoolishValueParser::new())]
    anonymous: Option<bool>,
    /// `server.tls_cert`.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT")]
    tls_cert: Option<String>,
    /// `server.tls_key`.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY")]
    tls_key: Option<String>,
    /// `server.origins`, comma separated.
    #[arg(long, env = "SWITCHBOARD_ORIGINS")]
    origins: Option<String>,
    /// `collect.file`.
    #[arg(long, env = "SWITCHBOARD_COLLECT_FILE")]
    collect_file: Option<String>,
    /// JSON logs (`--log-json`, or `--log-json=false`; the variable takes true/false,
    /// yes/no, on/off, 1/0).
    #[arg(
        long,
        env = "SWITCHBOARD_LOG_JSON",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    log_json: bool,
    /// `cluster.adapter`: memory | redis | nats.
    #[arg(long, env = "SWITCHBOARD_CLUSTER_ADAPTER")]
    cluster_adapter: Option<String>,
    /// `cluster.redis_url`.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    redis_url: Option<String>,
    /// `cluster.nats_url` (comma-separated).
    #[arg(long, env = "SWITCHBOARD_NATS_URL")]
    nats_url: Option<String>,
    /// `cluster.nats_subject_prefix`.
    #[arg(long, env = "SWITCHBOARD_NATS_SUBJECT_PREFIX")]
    nats_subject_prefix: Option<String>,
    /// `cluster.nats_user`.
    #[arg(long, env = "SWITCHBOARD_NATS_USER")]
    nats_user: Option<String>,
    /// `cluster.nats_password` (prefer the variable: a flag shows in `ps`).
    #[arg(long, env = "SWITCHBOARD_NATS_PASSWORD", hide_env_values = true)]
    nats_password: Option<String>,
    /// `cluster.nats_token` (prefer the variable: a flag shows in `ps`).
    #[arg(long, env = "SWITCHBOARD_NATS_TOKEN", hide_env_values = true)]
    nats_token: Option<String>,
    /// `cluster.nats_creds_file`.
    #[arg(long, env = "SWITCHBOARD_NATS_CREDS_FILE")]
    nats_creds_file: Option<String>,
    /// `cluster.channel_prefix`.
    #[arg(long, env = "SWITCHBOARD_CHANNEL_PREFIX")]
    channel_prefix: Option<String>,
    /// `cluster.node_name`.
    #[arg(long, env = "SWITCHBOARD_NODE_NAME")]
    node_name: Option<String>,
    /// `cluster.advertise`.
    #[arg(long, env = "SWITCHBOARD_ADVERTISE")]
    advertise: Option<String>,
    /// `recovery.enabled` (true/false, yes/no, on/off, 1/0).
    #[arg(long, env = "SWITCHBOARD_RECOVERY", value_parser = clap::builder::BoolishValueParser::new())]
    recovery: Option<bool>,
    /// `server.reuse_port` (true/false, yes/no, on/off, 1/0).
    #[arg(long, env = "SWITCHBOARD_REUSE_PORT", value_parser = clap::builder::BoolishValueParser::new())]
    reuse_port: Option<bool>,
    /// Prints the effective configuration (defaults, then --config, variables and flags; secrets
    /// redacted) and exits.
    #[arg(long)]
    print_config: bool,
}

fn init_logs(cfg: &config::Log) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.level));
    // Colours only for a person at a terminal, never in files, pipes or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if cfg.format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve(a: ServeArgs) -> ExitCode {
    let ov = config::Overrides {
        listen: a.listen,
        api_key: a.api_key,
        jwt_secret: a.jwt_secret,
        anonymous: a.anonymous,
        log_json: a.log_json,
        tls_cert: a.tls_cert,
        tls_key: a.tls_key,
        origins: a.origins,
        collect_file: a.collect_file,
        cluster_adapter: a.cluster_adapter,
        redis_url: a.redis_url,
        nats_url: a.nats_url,
        nats_subject_prefix: a.nats_subject_prefix,
        nats_user: a.nats_user,
        nats_password: a.nats_password,
        nats_token: a.nats_token,
        nats_creds_file: a.nats_creds_file,
        channel_prefix: a.channel_prefix,
        node_name: a.node_name,
        advertise: a.advertise,
        reuse_port: a.reuse_port,
        recovery: a.recovery,
    };
    let cfg = match config::Config::load(a.config.as_deref(), &ov) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    if a.print_config {
        print!("{}", cfg.to_toml_redacted());
        return ExitCode::SUCCESS;
    }
    init_logs(&cfg.log);
    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(c), Some(k)) => {
            let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            let made = read(c)
                .and_then(|c| read(k).map(|k| (c, k)))
                .and_then(|(c, k)| switchboard_ws::tls::server_config_from_pem(&c, &k).map_err(|e| e.to_string()));
            match made {
                Ok(sc) => Some(tokio_rustls::TlsAcceptor::from(sc)),
                Err(e) => {
                    eprintln!("switchboard: config field `server.tls_cert`/`server.tls_key`: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let listener = match bind(cfg.server.listen, cfg.server.reuse_port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("switchboard: cannot listen on {} (server.listen): {e}", cfg.server.listen);
            return ExitCode::from(1);
        }
    };
    let local = listener.local_addr().unwrap_or(cfg.server.listen);
    let mut listeners = vec![listener];
    // Processes sharing a port cannot be reached one by one through it: each also listens on
    // an address of its own, which it advertises to the other nodes (for forwarding).
    let mut cfg = cfg;
    if cfg.server.reuse_port && cfg.cluster.adapter != "memory" && cfg.cluster.advertise.is_empty() {
        match tokio::net::TcpListener::bind(std::net::SocketAddr::new(local.ip(), 0)).await {
            Ok(own) => {
                if let Ok(a) = own.local_addr() {
                    cfg.cluster.advertise = format!("http://{a}");
                }
                listeners.push(own);
            }
            Err(e) => {
                eprintln!("switchboard: cannot listen on a node address beside the shared port: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let cluster = match cluster::connect(&cfg, local).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(1);
        }
    };
    let collector = collect::Collector::start(&cfg.collect);
    let hub = match hub::Hub::new(cfg.clone(), collector, cluster) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = local.to_string();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, "switchboard listening: demo {scheme}://{addr}/, Socket.IO {scheme}://{addr}/socket.io/, WebSocket {}://{addr}/ws", if tls.is_some() { "wss" } else { "ws" });
    if cfg.auth.anonymous {
        tracing::warn!("anonymous clients are admitted (allowed because the hub listens on loopback only)");
    }
    if cfg.api.keys.is_empty() {
        tracing::warn!(
            "the backend API (/api/*) is open without a key (allowed because the hub listens on loopback only)"
        );
    }
    server::run(hub, listeners, tls, shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// The listening socket; with `reuse_port`, shared with the other hub processes of this
/// machine (`SO_REUSEPORT`).
fn bind(addr: std::net::SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    #[cfg(unix)]
    if reuse_port {
        sock.set_reuseport(true)?;
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    sock.bind(addr)?;
    sock.listen(1024)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve(a) => serve(*a).await,
            Cmd::Connect(a) => connect::run(a).await,
        }
    });
    // Do not wait for blocking tasks: `connect`'s terminal reader may be parked on a read that
    // only a new line would end.
    rt.shutdown_background();
    code
}
