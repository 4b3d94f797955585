//! Faults of the bus (security: C1–C3, C5, C7): a broker restart mid-traffic (Redis and NATS,
//! one scenario), garbage and huge messages on the bus, a partition between NATS servers that
//! heals, a deliberately slow subscriber. Each test that breaks a broker starts its own.

#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use switchboard_adapter_tests::{start, wait_until, Client, Setup};
use switchboard_cluster::{nats, redis, Cluster, ClusterConfig, Incoming, Transport};
use switchboard_socketio::AdapterError;
use switchboard_test_support::ServerProcess;

#[derive(Clone, Copy, Debug)]
enum Broker {
    Redis,
    Nats,
}

impl Broker {
    fn start(self) -> Option<ServerProcess> {
        match self {
            Broker::Redis => switchboard_test_support::start_redis(),
            Broker::Nats => switchboard_test_support::start_nats(),
        }
    }

    async fn node(self, port: u16, cfg: ClusterConfig) -> Cluster {
        match self {
            Broker::Redis => {
                let r = redis::RedisConfig::new(format!("redis://127.0.0.1:{port}")).with_channel_prefix("faults");
                redis::connect(r, cfg).await.unwrap()
            }
            Broker::Nats => {
                let n = nats::NatsConfig::new(format!("nats://127.0.0.1:{port}")).with_subject_prefix("faults");
                nats::connect(n, cfg).await.unwrap()
            }
        }
    }
}

fn setup_of(clusters: &[Cluster]) -> Setup {
    let cs = clusters.to_vec();
    Setup::new(cs.len(), move |i, nsp| cs[i].adapter_factory()(nsp))
}

/// C1–C3: the broker goes away under two nodes and comes back empty.
async fn broker_restart_mid_traffic(broker: Broker) {
    let Some(mut proc) = tokio::task::spawn_blocking(move || broker.start()).await.unwrap() else {
        return;
    };
    let cfg = ClusterConfig::default().with_heartbeat(Duration::from_millis(300), Duration::from_secs(3));
    let clusters = vec![broker.node(proc.port, cfg.clone()).await, broker.node(proc.port, cfg).await];
    let c = start(&setup_of(&clusters)).await;
    let mut a = Client::connect(c.nodes[0].addr, "/", "a").await;
    let mut b = Client::connect(c.nodes[1].addr, "/", "b").await;
    wait_until("both nodes count each other", || async {
        let ns = c.nodes[0].io.of("/").unwrap();
        ns.adapter().server_count(&ns).await.ok() == Some(2)
    })
    .await;
    c.nodes[0].io.emit("before", &1).await.unwrap();
    a.expect("before").await;
    b.expect("before").await;
    wait_until("the bus probe passes", || async { clusters[0].healthy() }).await;
    b.call("join", json!("r")).await;

    // The broker goes away. A broker client may take a moment to notice (NATS: until then a
    // publish is accepted into its buffer and sent after the reconnect); broadcast until a
    // publish fails, numbering them.
    proc.kill();
    let mut failed = 0u64;
    for i in 1..=100u64 {
        match c.nodes[0].io.emit("during", &i).await {
            Err(switchboard_socketio::EmitError::Adapter(AdapterError::Bus(_))) => {
                failed = i;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(failed > 0, "no publish failed while the broker was down");
    // C3: every one was delivered locally, the failed one too; C1: the other node's client did
    // not get the failed one, and the failure is counted.
    for i in 1..=failed {
        assert_eq!(a.expect("during").await.1, vec![json!(i)]);
    }
    b.expect_nothing().await;
    assert!(clusters[0].stats().publish_errors.load(Ordering::Relaxed) >= 1);
    // Cross-node requests fail loudly instead of pretending (on NATS, the other node stays
    // counted until its heartbeat times out, so the request fails on publishing).
    let f = c.nodes[0].io.broadcast().fetch_sockets().await;
    assert!(f.is_err(), "{f:?}");
    wait_until("the probe notices", || async { !clusters[0].healthy() }).await;
    // A room created during the outage: its channel cannot be subscribed now.
    b.call("join", json!("r2")).await;

    // The broker comes back (empty: it keeps nothing): resubscribed, probe passes, traffic flows.
    let _proc = tokio::task::spawn_blocking(move || {
        proc.restart();
        proc
    })
    .await
    .unwrap();
    wait_until("both nodes reconnect and their probes pass", || async { clusters.iter().all(|c| c.healthy()) }).await;
    // What the broker client had accepted before it noticed may arrive now, late; the publish
    // that failed never does.
    while let Some((event, args, _)) = b.next(Duration::from_millis(300)).await {
        assert_eq!(event, "during");
        assert!(args.first().and_then(serde_json::Value::as_u64).is_some_and(|i| i < failed), "{args:?}");
    }
    assert!(clusters.iter().all(|c| c.stats().reconnects.load(Ordering::Relaxed) >= 1));
    assert!(clusters.iter().all(|c| c.stats().disconnects.load(Ordering::Relaxed) >= 1));
    // The end-to-end probe passed, so the first broadcast after it crosses.
    c.nodes[0].io.emit("after", &3).await.unwrap();
    a.expect("after").await;
    b.expect("after").await;
    // Room channels, old and new, are subscribed again.
    c.nodes[0].io.to("r").emit("room-after", &4).await.unwrap();
    b.expect("room-after").await;
    c.nodes[0].io.to("r2").emit("room2-after", &5).await.unwrap();
    b.expect("room2-after").await;
    wait_until("both nodes count each other again", || async {
        let ns = c.nodes[1].io.of("/").unwrap();
        ns.adapter().server_count(&ns).await.ok() == Some(2)
    })
    .await;
    let all = c.nodes[1].io.broadcast().fetch_sockets().await.unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_c2_c3_redis_restart_mid_traffic() {
    broker_restart_mid_traffic(Broker::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_c2_c3_nats_restart_mid_traffic() {
    broker_restart_mid_traffic(Broker::Nats).await;
}

/// C7: a partition between NATS servers. Node A on the first server, node C on the last; the
/// last server is cut off from the others and joined again. During the partition each node
/// drops the other after the heartbeat timeout and A's broadcasts do not reach C; once it
/// heals they find each other again, C says it lost A's messages (a gap in A's sequence), and
/// broadcasts cross again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c7_nats_partition_heals_and_the_loss_is_reported() {
    let Some(nc) = tokio::task::spawn_blocking(|| switchboard_test_support::start_nats_cluster(3)).await.unwrap()
    else {
        return;
    };
    let cfg = ClusterConfig::default().with_heartbeat(Duration::from_millis(200), Duration::from_millis(1200));
    let mut clusters = Vec::new();
    for i in [0, 2] {
        let n = nats::NatsConfig::new(nc.url(i)).with_subject_prefix("partition");
        clusters.push(nats::connect(n, cfg.clone()).await.unwrap());
    }
    let c = start(&setup_of(&clusters)).await;
    let count = |i: usize| {
        let io = c.nodes[i].io.clone();
        async move {
            let ns = io.of("/").unwrap();
            ns.adapter().server_count(&ns).await.ok()
        }
    };
    let mut a = Client::connect(c.nodes[0].addr, "/", "a").await;
    let mut cc = Client::connect(c.nodes[1].addr, "/", "c").await;
    wait_until("the nodes find each other", || async { count(0).await == Some(2) && count(1).await == Some(2) }).await;
    c.nodes[0].io.emit("before", &1).await.unwrap();
    a.expect("before").await;
    cc.expect("before").await;
    assert_eq!(clusters[1].stats().lost.load(Ordering::Relaxed), 0);

    let nc = tokio::task::spawn_blocking(move || {
        nc.partition();
        nc
    })
    .await
    .unwrap();
    // Both sides stay connected to their own server: publishing works, nothing crosses.
    for i in 0..5 {
        c.nodes[0].io.emit("during", &i).await.unwrap();
    }
    for i in 0..5 {
        assert_eq!(a.expect("during").await.1, vec![json!(i)]);
    }
    cc.expect_nothing().await;
    wait_until("each side drops the other", || async { count(0).await == Some(1) && count(1).await == Some(1) }).await;
    assert!(clusters.iter().all(Cluster::healthy), "each node's own probe still passes");

    let _nc = tokio::task::spawn_blocking(move || {
        nc.heal();
        nc
    })
    .await
    .unwrap();
    wait_until("the nodes find each other again", || async { count(0).await == Some(2) && count(1).await == Some(2) })
        .await;
    // C did not pretend: the broadcasts and heartbeats it missed are counted and dated.
    wait_until("the loss is reported", || async { clusters[1].stats().lost.load(Ordering::Relaxed) >= 5 }).await;
    assert!(clusters[1].last_loss().is_some());
    c.nodes[0].io.emit("after", &2).await.unwrap();
    a.expect("after").await;
    assert_eq!(cc.expect("after").await.1, vec![json!(2)]);
}

/// C7: a subscriber slower than the traffic. The node's receive queue (64) fills while nobody
/// reads it; every message that did not fit is counted, exactly, and the subscription goes on
/// working afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c7_nats_slow_subscriber_losses_are_counted_exactly() {
    if !switchboard_test_support::service_available("NATS", "127.0.0.1:4222") {
        return;
    }
    let prefix = format!("sbslow.c{}", rand::random::<u64>());
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let cfg =
        nats::NatsConfig::new("nats://127.0.0.1:4222").with_subject_prefix(prefix.clone()).with_buffers(64, 8_192);
    let slow = nats::NatsTransport::connect(cfg, tx).await.unwrap();
    slow.add_namespace("/", "slow").await.unwrap();
    let publisher = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
    let subject = format!("{prefix}._2F.all");
    const SENT: u64 = 5_000;
    for i in 0..SENT {
        publisher.publish(subject.clone(), format!("m{i}").into()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    // Now the node reads: what it got plus what it was told it lost is what was sent.
    let (mut got, mut lost) = (0u64, 0u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got + lost < SENT && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(Some(Incoming::Node { .. })) => got += 1,
            Ok(Some(Incoming::Lost(n))) => lost += n,
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => break,
        }
    }
    assert_eq!(got + lost, SENT, "got {got}, told of {lost} lost");
    assert!(lost > 0 && got >= 64, "got {got}, lost {lost}");
    // The subscription works on.
    publisher.publish(subject.clone(), "later".into()).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert!(matches!(&next, Incoming::Node { payload, .. } if payload.as_ref() == b"later"), "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c5_garbage_truncated_and_huge_bus_messages_are_dropped() {
    if !switchboard_test_support::service_available("Redis", "127.0.0.1:6379") {
        return;
    }
    let prefix = format!("sbgarbage-{}", rand::random::<u64>());
    let mut clusters = Vec::new();
    for _ in 0..2 {
        let r = redis::RedisConfig::new("redis://127.0.0.1:6379").with_channel_prefix(prefix.clone());
        clusters.push(redis::connect(r, ClusterConfig::default().with_max_message_bytes(64 * 1024)).await.unwrap());
    }
    let c = start(&setup_of(&clusters)).await;
    let mut a = Client::connect(c.nodes[0].addr, "/", "a").await;
    let mut b = Client::connect(c.nodes[1].addr, "/", "b").await;
    b.call("join", json!("r")).await;

    // Raw publishes on the main and room channels, as a hostile or broken node would.
    let main = format!("{prefix}#/#");
    let room = format!("{prefix}#/#r#");
    let garbage: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        b"{}".to_vec(),
        br#"{"uid":"x","nsp":"/","type":3,"data":{"packet":{"type":2,"data":[]}}}"#.to_vec(),
        br#"{"uid":"x","nsp":"/other","type":3,"data":{"packet":{"type":2,"data":["leak"]}}}"#.to_vec(),
        vec![0x85, 0xa3, b'u'],
        vec![0x91; 50_000],
        vec![0xc1; 10],
        {
            let mut huge = br#"{"uid":"x","nsp":"/","type":3,"data":{"packet":{"type":2,"data":["huge",""#.to_vec();
            huge.extend(std::iter::repeat_n(b'a', 200_000));
            huge.extend(br#""]}}}"#);
            huge
        },
    ];
    let out = std::process::Command::new("redis-cli").arg("--version").output();
    assert!(out.is_ok(), "redis-cli is needed");
    for g in &garbage {
        for ch in [&main, &room] {
            let mut p = std::process::Command::new("redis-cli")
                .args(["-p", "6379", "-x", "SPUBLISH", ch])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            p.stdin.take().unwrap().write_all(g).unwrap();
            p.wait().unwrap();
        }
    }
    wait_until("every bad message is counted as dropped", || async {
        clusters.iter().map(|c| c.stats().dropped.load(Ordering::Relaxed)).sum::<u64>() >= 2 * 7
    })
    .await;
    a.expect_nothing().await;
    b.expect_nothing().await;
    // Still up and serving.
    c.nodes[0].io.to("r").emit("fine", &1).await.unwrap();
    b.expect("fine").await;
}
