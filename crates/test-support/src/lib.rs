//! Helpers shared by the integration tests of several crates.

#![allow(clippy::panic)]

use std::path::{Path, PathBuf};

mod nats;
pub use nats::{start_nats, start_nats_cluster, start_nats_jetstream, wait_routes, NatsCluster, Proxy};

/// The `interop/` folder: the real peers' manifests and scripts.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

/// Whether a peer is installed (`program args…` succeeds in `interop/`). When it is not: with
/// `SWITCHBOARD_REQUIRE_PEERS=1` (as in CI) this panics, failing the test; otherwise it prints
/// why the test skips.
pub fn peer_available(name: &str, program: &str, args: &[&str]) -> bool {
    let ok = std::process::Command::new(program)
        .args(args)
        .current_dir(interop_dir())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let why = format!(
            "{name} is not installed (bash .ci/run installs it: pip install -r interop/requirements.txt; npm ci --prefix interop; apt-get install chromium nginx)"
        );
        if std::env::var("SWITCHBOARD_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
    }
    ok
}

/// Whether a service answers at `addr` (a TCP connect within 1 s). When it does not: with
/// `SWITCHBOARD_REQUIRE_PEERS=1` (as in CI) this panics, failing the test; otherwise it prints
/// why the test skips.
pub fn service_available(name: &str, addr: &str) -> bool {
    let ok = addr
        .parse()
        .ok()
        .and_then(|a| std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(1)).ok())
        .is_some();
    if !ok {
        let why = format!("{name} is not running at {addr} (bash .ci/run starts it)");
        if std::env::var("SWITCHBOARD_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
    }
    ok
}

/// Whether a program is on the PATH (`program --version` runs), with the same skip rule.
pub fn program_available(name: &str, program: &str) -> bool {
    let ok = std::process::Command::new(program).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        let why = format!("{name} ({program}) is not installed (bash .ci/run installs it)");
        if std::env::var("SWITCHBOARD_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
            panic!("{why}");
        }
        eprintln!("SKIPPED: {why}");
    }
    ok
}

/// A port that is free now (and, for Redis Cluster's bus, so is the port 10,000 above it).
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let p: u16 = 20_000 + (rand_u16() % 20_000);
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(p) && free(p + 10_000) {
            return p;
        }
    }
    panic!("no free port pair found");
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    u16::try_from(h.finish() & 0xffff).unwrap_or(0)
}

/// A broker process a test started (Redis, NATS): stopped when dropped, and stopped by a
/// watchdog if the test process dies first.
#[derive(Debug)]
pub struct ServerProcess {
    child: Option<std::process::Child>,
    /// Its port.
    pub port: u16,
    /// The program and arguments, to start it again after [`stop`](Self::stop).
    cmd: (String, Vec<String>),
}

impl ServerProcess {
    /// Starts `program args…` and waits until `port` accepts connections (10 s at most).
    pub fn start(program: &str, args: &[String], port: u16) -> ServerProcess {
        let mut p = ServerProcess { child: None, port, cmd: (program.to_owned(), args.to_vec()) };
        p.restart();
        p
    }

    /// Starts it again (after [`stop`](Self::stop) or [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        let child = std::process::Command::new(&self.cmd.0)
            .args(&self.cmd.1)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.cmd.0));
        // The watchdog: when this test process is gone, so is the server.
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {} 2>/dev/null",
                std::process::id(),
                child.id()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if std::time::Instant::now() > deadline {
                panic!("{} did not listen on {} within 10 s", self.cmd.0, self.port);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Same as [`kill`](Self::kill).
    pub fn stop(&mut self) {
        self.kill();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a throwaway `redis-server` on a free port (no persistence), or `None` (with the
/// skip rule of [`program_available`]) when it is not installed.
pub fn start_redis() -> Option<ServerProcess> {
    if !program_available("Redis", "redis-server") {
        return None;
    }
    let port = free_port_pair();
    let args: Vec<String> = ["--port", &port.to_string(), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    Some(ServerProcess::start("redis-server", &args, port))
}

/// A Redis Cluster of `masters` masters (no replicas) started for a test.
#[derive(Debug)]
pub struct RedisCluster {
    /// The servers.
    pub servers: Vec<ServerProcess>,
    _dir: PathBuf,
}

impl RedisCluster {
    /// A `redis-cluster://` URL naming every node.
    pub fn url(&self) -> String {
        let mut ports = self.servers.iter().map(|s| s.port);
        let first = ports.next().unwrap_or(0);
        let rest: Vec<String> = ports.map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-cluster://127.0.0.1:{first}?{}", rest.join("&"))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.kill();
        }
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// Starts a Redis Cluster of `masters` masters on free ports (`redis-server` in cluster mode,
/// joined with `redis-cli --cluster create`), or `None` when Redis is not installed.
pub fn start_redis_cluster(masters: usize) -> Option<RedisCluster> {
    if !program_available("Redis", "redis-server") || !program_available("redis-cli", "redis-cli") {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("sb-redis-cluster-{}-{}", std::process::id(), rand_u16()));
    let mut servers = Vec::new();
    for i in 0..masters {
        let port = free_port_pair();
        let d = dir.join(i.to_string());
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        let args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &d.join("nodes.conf").to_string_lossy(),
            "--dir",
            &d.to_string_lossy(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        servers.push(ServerProcess::start("redis-server", &args, port));
    }
    let mut create = std::process::Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for s in &servers {
        create.arg(format!("127.0.0.1:{}", s.port));
    }
    create.args(["--cluster-replicas", "0", "--cluster-yes"]);
    let out = create.output().unwrap_or_else(|e| panic!("redis-cli: {e}"));
    assert!(out.status.success(), "redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
    // Wait until every node says the cluster is ok (and knows every other node).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for s in &servers {
        loop {
            let info = std::process::Command::new("redis-cli")
                .args(["-p", &s.port.to_string(), "cluster", "info"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            if info.contains("cluster_state:ok") && info.contains(&format!("cluster_known_nodes:{masters}")) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the Redis Cluster did not become ok: {info}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Some(RedisCluster { servers, _dir: dir })
}
