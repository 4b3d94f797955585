//! The hub's counters and latency histograms, exposed on `/metrics` in the OpenMetrics text
//! format through the `prometheus-client` crate.
//!
//! Counters and gauges are atomics updated on the hot paths; each scrape builds a registry
//! from their current values (and the hooks' and the cluster bus's counters) and encodes it.
//! Latencies are `prometheus-client` histograms.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram as PromHistogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// A latency histogram.
#[derive(Debug, Clone)]
pub struct Histogram(PromHistogram);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(PromHistogram::new(BUCKETS))
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
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
    /// Requests of other nodes' sessions forwarded to them (long-polling without sticky
    /// sessions), and upgrades proxied.
    pub forwarded: AtomicU64,
    /// Handshake failures by reason.
    failures: parking_lot::Mutex<BTreeMap<&'static str, u64>>,
    /// `/api/call` latency.
    pub call_latency: Histogram,
    /// Publish latency (`/api/emit`, client publishes): until every node reported.
    pub emit_latency: Histogram,
    /// Cluster request round trips (listings, counted publishes).
    pub bus_latency: Histogram,
}

/// What else a scrape shows besides [`Metrics`].
#[derive(Debug, Default)]
pub struct Extra<'a> {
    /// Records written by the collection sink.
    pub collected: u64,
    /// Hook calls by (hook, outcome), and the time spent in them.
    pub hooks: Vec<((String, &'static str), u64)>,
    /// Seconds spent in hook calls.
    pub hook_seconds: f64,
    /// The cluster bus, when clustered.
    pub cluster: Option<&'a switchboard_cluster::Cluster>,
}

fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    r.register(name, help, ConstCounter::new(v));
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    r.register(name, help, ConstGauge::new(v));
}

impl Metrics {
    /// Counts a refused handshake.
    pub fn handshake_failure(&self, reason: &'static str) {
        *self.failures.lock().entry(reason).or_default() += 1;
    }

    /// The OpenMetrics text of every series.
    pub fn render(&self, extra: &Extra<'_>) -> String {
        let mut r = Registry::default();
        let l = |x: &AtomicU64| x.load(Ordering::Relaxed);
        let conns = Family::<Vec<(String, String)>, Gauge>::default();
        conns
            .get_or_create(&vec![("transport".into(), "socket.io".into())])
            .set(self.sio_connections.load(Ordering::Relaxed));
        conns.get_or_create(&vec![("transport".into(), "ws".into())]).set(self.ws_connections.load(Ordering::Relaxed));
        r.register("switchboard_connections", "Clients connected, by transport.", conns);
        gauge(
            &mut r,
            "switchboard_clients",
            "Clients holding a connection slot (/ws and Socket.IO, every transport).",
            self.clients.load(Ordering::Relaxed),
        );
        gauge(
            &mut r,
            "switchboard_tcp_connections",
            "TCP connections open.",
            self.tcp_connections.load(Ordering::Relaxed),
        );
        counter(&mut r, "switchboard_messages_in", "Client messages received.", l(&self.messages_in));
        counter(
            &mut r,
            "switchboard_messages_out",
            "Messages delivered to this node's clients.",
            l(&self.messages_out),
        );
        counter(&mut r, "switchboard_ws_bytes_in", "Bytes received on /ws.", l(&self.bytes_in));
        counter(&mut r, "switchboard_ws_bytes_out", "Bytes sent on /ws.", l(&self.bytes_out));
        counter(&mut r, "switchboard_drops", "Messages dropped for slow consumers.", l(&self.drops));
        counter(&mut r, "switchboard_collected", "Records written to the collection sink.", extra.collected);
        counter(
            &mut r,
            "switchboard_forwarded_requests",
            "Engine.IO requests of other nodes' sessions forwarded to their owner.",
            l(&self.forwarded),
        );
        let failures = Family::<Vec<(String, String)>, ConstCounterU64>::new_with_constructor(ConstCounterU64::default);
        for (reason, n) in self.failures.lock().iter() {
            failures.get_or_create(&vec![("reason".into(), (*reason).into())]).set(*n);
        }
        r.register("switchboard_handshake_failures", "Refused handshakes, by reason.", failures);
        r.register("switchboard_call_seconds", "Latency of /api/call.", self.call_latency.0.clone());
        r.register(
            "switchboard_emit_seconds",
            "Latency of publishes (/api/emit, client publishes), until every node reported.",
            self.emit_latency.0.clone(),
        );
        let hooks = Family::<Vec<(String, String)>, ConstCounterU64>::new_with_constructor(ConstCounterU64::default);
        for ((hook, outcome), n) in &extra.hooks {
            hooks.get_or_create(&vec![("hook".into(), hook.clone()), ("outcome".into(), (*outcome).into())]).set(*n);
        }
        r.register("switchboard_hook_calls", "Backend hook calls, by hook and outcome.", hooks);
        r.register(
            "switchboard_hook_seconds",
            "Time spent in backend hook calls.",
            ConstCounter::new(extra.hook_seconds),
        );
        if let Some(c) = extra.cluster {
            let s = c.stats();
            counter(
                &mut r,
                "switchboard_bus_messages_in",
                "Cluster bus messages received from other nodes.",
                l(&s.messages_in),
            );
            counter(&mut r, "switchboard_bus_messages_out", "Cluster bus messages published.", l(&s.messages_out));
            counter(
                &mut r,
                "switchboard_bus_publish_errors",
                "Cluster bus publishes that failed.",
                l(&s.publish_errors),
            );
            counter(
                &mut r,
                "switchboard_bus_dropped",
                "Cluster bus messages dropped: undecodable, too large, wrong namespace.",
                l(&s.dropped),
            );
            counter(
                &mut r,
                "switchboard_bus_lost",
                "Cluster bus messages other nodes sent that this node lost: its receive queue overflowed, the broker client dropped them (slow consumer), or another node's sequence showed a gap (NATS: outage, partition).",
                l(&s.lost),
            );
            counter(
                &mut r,
                "switchboard_bus_request_timeouts",
                "Cluster requests that ended with nodes missing.",
                l(&s.request_timeouts),
            );
            counter(&mut r, "switchboard_bus_reconnects", "Reconnections to the cluster broker.", l(&s.reconnects));
            counter(
                &mut r,
                "switchboard_bus_disconnects",
                "Connections to the cluster broker lost, or errors its client reported.",
                l(&s.disconnects),
            );
            gauge(
                &mut r,
                "switchboard_bus_nodes",
                "Live nodes of the cluster (heartbeats), this one included.",
                c.peers().len() as i64 + 1,
            );
            gauge(
                &mut r,
                "switchboard_bus_healthy",
                "1 when the bus works end to end (this node's heartbeat came back).",
                i64::from(c.healthy()),
            );
            r.register(
                "switchboard_bus_request_seconds",
                "Round trips of cluster requests (listings, counted publishes).",
                self.bus_latency.0.clone(),
            );
        }
        let mut out = String::new();
        if encode(&mut out, &r).is_err() {
            out = "# the metrics could not be encoded\n".into();
        }
        out
    }
}

/// A counter whose value is set at scrape time (for labelled families).
#[derive(Debug, Default)]
pub struct ConstCounterU64(AtomicU64);

impl ConstCounterU64 {
    fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

impl prometheus_client::metrics::TypedMetric for ConstCounterU64 {
    const TYPE: prometheus_client::metrics::MetricType = prometheus_client::metrics::MetricType::Counter;
}

impl prometheus_client::encoding::EncodeMetric for ConstCounterU64 {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&self.0.load(Ordering::Relaxed), None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Counter
    }
}
