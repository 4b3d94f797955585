//! Counters and a latency histogram, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; 10],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The hub's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Socket.IO sockets connected.
    pub sio_connections: AtomicI64,
    /// `/ws` clients connected.
    pub ws_connections: AtomicI64,
    /// TCP connections open.
    pub tcp_connections: AtomicI64,
    /// Clients holding a slot (set from the slots when rendered).
    pub clients: AtomicI64,
    /// Client requests and messages received.
    pub messages_in: AtomicU64,
    /// Messages delivered to clients.
    pub messages_out: AtomicU64,
    /// Bytes received on `/ws`.
    pub bytes_in: AtomicU64,
    /// Bytes sent on `/ws`.
    pub bytes_out: AtomicU64,
    /// Messages dropped (a full client queue).
    pub drops: AtomicU64,
    /// Handshake failures by reason.
    failures: parking_lot::Mutex<BTreeMap<&'static str, u64>>,
    /// `/api/call` latency.
    pub call_latency: Histogram,
}

impl Metrics {
    /// Counts a refused handshake.
    pub fn handshake_failure(&self, reason: &'static str) {
        *self.failures.lock().entry(reason).or_default() += 1;
    }

    /// The Prometheus text.
    pub fn render(&self, collected: u64) -> String {
        let mut o = String::new();
        let g = |o: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        let _ = writeln!(
            o,
            "# HELP switchboard_connections Clients connected, by transport.\n# TYPE switchboard_connections gauge"
        );
        let _ = writeln!(
            o,
            "switchboard_connections{{transport=\"socket.io\"}} {}",
            self.sio_connections.load(Ordering::Relaxed)
        );
        let _ =
            writeln!(o, "switchboard_connections{{transport=\"ws\"}} {}", self.ws_connections.load(Ordering::Relaxed));
        g(
            &mut o,
            "switchboard_clients",
            "Clients holding a connection slot (/ws and Socket.IO, every transport).",
            "gauge",
            self.clients.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut o,
            "switchboard_tcp_connections",
            "TCP connections open.",
            "gauge",
            self.tcp_connections.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut o,
            "switchboard_messages_in_total",
            "Client messages received.",
            "counter",
            self.messages_in.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut o,
            "switchboard_messages_out_total",
            "Messages delivered to clients.",
            "counter",
            self.messages_out.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut o,
            "switchboard_ws_bytes_in_total",
            "Bytes received on /ws.",
            "counter",
            self.bytes_in.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut o,
            "switchboard_ws_bytes_out_total",
            "Bytes sent on /ws.",
            "counter",
            self.bytes_out.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut o,
            "switchboard_drops_total",
            "Messages dropped for slow consumers.",
            "counter",
            self.drops.load(Ordering::Relaxed).to_string(),
        );
        g(
            &mut o,
            "switchboard_collected_total",
            "Records written to the collection sink.",
            "counter",
            collected.to_string(),
        );
        let _ = writeln!(o, "# HELP switchboard_handshake_failures_total Refused handshakes, by reason.\n# TYPE switchboard_handshake_failures_total counter");
        for (r, n) in self.failures.lock().iter() {
            let _ = writeln!(o, "switchboard_handshake_failures_total{{reason=\"{r}\"}} {n}");
        }
        let h = &self.call_latency;
        let _ = writeln!(
            o,
            "# HELP switchboard_call_seconds Latency of /api/call.\n# TYPE switchboard_call_seconds histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ =
                writeln!(o, "switchboard_call_seconds_bucket{{le=\"{b}\"}} {}", h.counts[i].load(Ordering::Relaxed));
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(o, "switchboard_call_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(o, "switchboard_call_seconds_sum {}", h.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(o, "switchboard_call_seconds_count {count}");
        o
    }
}
