//! Throwaway NATS servers for the tests that break NATS: one server, or a cluster whose last
//! server can be cut off from the others (a partition) and joined again.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{free_port_pair, program_available, ServerProcess};

fn nats_args(port: u16, name: &str) -> Vec<String> {
    ["-a", "127.0.0.1", "-p", &port.to_string(), "-n", name].iter().map(|s| s.to_string()).collect()
}

/// Starts a throwaway `nats-server` on a free port, or `None` (with the skip rule of
/// [`program_available`]) when it is not installed.
pub fn start_nats() -> Option<ServerProcess> {
    if !program_available("NATS", "nats-server") {
        return None;
    }
    let port = free_port_pair();
    Some(ServerProcess::start("nats-server", &nats_args(port, &format!("sb-test-{port}")), port))
}

/// Starts a throwaway `nats-server` with JetStream on a free port, its store in `store` (a
/// restart keeps the data; removing the folder first loses it), or `None` when it is not
/// installed.
pub fn start_nats_jetstream(store: &std::path::Path) -> Option<ServerProcess> {
    if !program_available("NATS", "nats-server") {
        return None;
    }
    let port = free_port_pair();
    let mut args = nats_args(port, &format!("sb-test-{port}"));
    args.extend(["-js".to_owned(), "-sd".to_owned(), store.display().to_string()]);
    Some(ServerProcess::start("nats-server", &args, port))
}

/// A TCP proxy on loopback that a test can cut (every connection through it closed, new ones
/// refused) and open again. Its threads end with the test process.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// The port it listens on.
    pub port: u16,
    open: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    /// Connections accepted before this generation forward nothing (see [`freeze`](Self::freeze)).
    frozen_below: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
}

impl Proxy {
    /// Forwards a free port to `127.0.0.1:target`.
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap_or_else(|e| panic!("proxy bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let p = Proxy {
            port,
            open: Arc::new(AtomicBool::new(true)),
            live: Arc::new(Mutex::new(Vec::new())),
            frozen_below: Arc::new(AtomicU64::new(0)),
            generation: Arc::new(AtomicU64::new(0)),
        };
        let (open, live, frozen_below, generation) =
            (p.open.clone(), p.live.clone(), p.frozen_below.clone(), p.generation.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if !open.load(Ordering::SeqCst) {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                {
                    let mut l = live.lock().unwrap_or_else(|e| e.into_inner());
                    for s in [&inbound, &outbound] {
                        if let Ok(c) = s.try_clone() {
                            l.push(c);
                        }
                    }
                }
                for (mut from, mut to) in
                    [(inbound.try_clone(), outbound.try_clone()), (outbound.try_clone(), inbound.try_clone())]
                        .into_iter()
                        .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    let frozen_below = frozen_below.clone();
                    let gen = generation.load(Ordering::SeqCst);
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            // A frozen connection swallows what it reads: no data, no FIN.
                            if gen < frozen_below.load(Ordering::SeqCst) {
                                continue;
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        p
    }

    /// Turns every connection through it so far into a black hole (bytes are read and dropped,
    /// nothing is closed: what a dead network path looks like); new connections pass.
    pub fn freeze(&self) {
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.frozen_below.store(g, Ordering::SeqCst);
    }

    /// Closes every connection through it and refuses new ones until [`open`](Self::open).
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut l = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for s in l.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// A NATS cluster started for a test. Every route that touches its last server goes through
/// a [`Proxy`], so [`partition`](Self::partition) cuts that server off from the others while
/// the others, and every client connection, stay up.
#[derive(Debug)]
pub struct NatsCluster {
    /// The servers (their client ports are `servers[i].port`).
    pub servers: Vec<ServerProcess>,
    proxies: Vec<Proxy>,
}

impl NatsCluster {
    /// `nats://` URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.servers[i].port)
    }

    /// Cuts the last server off from the others.
    pub fn partition(&self) {
        for p in &self.proxies {
            p.cut();
        }
    }

    /// Lets the last server reach the others again (its routes reconnect within about a
    /// second).
    pub fn heal(&self) {
        for p in &self.proxies {
            p.open();
        }
    }
}

/// Starts a NATS cluster of `n` ≥ 2 servers on free ports, or `None` when `nats-server` is not
/// installed. The first `n - 1` servers route to each other directly; the last one reaches
/// them, and is reached, only through proxies (its own and theirs as it knows them), so that
/// nothing learns an address that bypasses them.
pub fn start_nats_cluster(n: usize) -> Option<NatsCluster> {
    if !program_available("NATS", "nats-server") || n < 2 {
        return None;
    }
    let ports: Vec<(u16, u16)> = (0..n)
        .map(|_| {
            let client = free_port_pair();
            let mut route = free_port_pair();
            while route == client {
                route = free_port_pair();
            }
            (client, route)
        })
        .collect();
    let last = n - 1;
    // Proxies to each server's route port, advertised by that server (what gossip spreads),
    // and one per first server for the last one's own routes.
    let advertised: Vec<Proxy> = ports.iter().map(|&(_, r)| Proxy::start(r)).collect();
    let from_last: Vec<Proxy> = ports[..last].iter().map(|&(_, r)| Proxy::start(r)).collect();
    let mut servers = Vec::new();
    for (i, &(client, route)) in ports.iter().enumerate() {
        let routes: Vec<String> = if i == last {
            from_last.iter().map(|p| format!("nats-route://127.0.0.1:{}", p.port)).collect()
        } else {
            (0..last).filter(|&j| j != i).map(|j| format!("nats-route://127.0.0.1:{}", ports[j].1)).collect()
        };
        let mut args = nats_args(client, &format!("sb-test-{i}-{client}"));
        args.extend([
            "--cluster_name".to_owned(),
            "sbtest".to_owned(),
            "--cluster".to_owned(),
            format!("nats://127.0.0.1:{route}"),
            "--cluster_advertise".to_owned(),
            format!("127.0.0.1:{}", advertised[i].port),
            "--no_advertise=true".to_owned(),
        ]);
        if !routes.is_empty() {
            args.push("--routes".to_owned());
            args.push(routes.join(","));
        }
        servers.push(ServerProcess::start("nats-server", &args, client));
    }
    let mut proxies = from_last;
    proxies.extend(advertised);
    let cluster = NatsCluster { servers, proxies };
    // Wait until every server has a route to every other one.
    wait_routes(&cluster, n - 1);
    Some(cluster)
}

/// Waits (20 s at most) until a message published on each server reaches a subscriber on every
/// other one: the routes are up and the interest has spread.
pub fn wait_routes(cluster: &NatsCluster, _peers: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let subject = format!("sb.probe.{}", crate::rand_u16());
    let mut subs: Vec<(TcpStream, std::io::BufReader<TcpStream>)> = Vec::new();
    for s in &cluster.servers {
        let c = raw_connect(s.port);
        raw_send(&c.0, &format!("SUB {subject} 1\r\nPING\r\n"));
        subs.push(c);
    }
    let mut pending: Vec<usize> = (0..cluster.servers.len()).collect();
    let mut n = 0u64;
    while !pending.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the NATS cluster's routes did not come up");
        n += 1;
        let mut still = Vec::new();
        for &i in &pending {
            // Publish on server i; every other server's subscriber must see it.
            let msg = format!("{i}-{n}");
            raw_send(&subs[i].0, &format!("PUB {subject} {}\r\n{msg}\r\n", msg.len()));
            let mut all = true;
            for (j, sub) in subs.iter_mut().enumerate() {
                if j != i && !raw_wait_for(sub, &msg, Duration::from_millis(300)) {
                    all = false;
                }
            }
            if !all {
                still.push(i);
            }
        }
        pending = still;
    }
}

fn raw_connect(port: u16) -> (TcpStream, std::io::BufReader<TcpStream>) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("nats connect: {e}"));
    let r = std::io::BufReader::new(s.try_clone().unwrap_or_else(|e| panic!("{e}")));
    raw_send(&s, "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n");
    (s, r)
}

fn raw_send(mut s: &TcpStream, what: &str) {
    use std::io::Write;
    let _ = s.write_all(what.as_bytes());
}

/// Reads lines until one equals `want` (a message body) or `limit` passes; answers PINGs.
fn raw_wait_for(c: &mut (TcpStream, std::io::BufReader<TcpStream>), want: &str, limit: Duration) -> bool {
    use std::io::BufRead;
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = c.0.set_read_timeout(Some(left));
        let mut line = String::new();
        match c.1.read_line(&mut line) {
            Ok(0) => return false,
            Ok(_) => {
                let l = line.trim_end();
                if l == "PING" {
                    raw_send(&c.0, "PONG\r\n");
                } else if l == want {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
}
