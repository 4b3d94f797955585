//! Faults of the bus (security: C1–C3, C5): a Redis restart mid-traffic, garbage and huge
//! messages on the bus. Each test starts its own `redis-server` on a free port.

#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use switchboard_adapter_tests::{start, wait_until, Client, Setup};
use switchboard_cluster::{redis, Cluster, ClusterConfig};
use switchboard_socketio::AdapterError;

async fn nodes(url: &str, n: usize, cfg: ClusterConfig) -> Vec<Cluster> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = redis::RedisConfig::new(url).with_channel_prefix("faults");
        out.push(redis::connect(r, cfg.clone()).await.unwrap());
    }
    out
}

fn setup_of(clusters: &[Cluster]) -> Setup {
    let cs = clusters.to_vec();
    Setup::new(cs.len(), move |i, nsp| cs[i].adapter_factory()(nsp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_c2_c3_redis_restart_mid_traffic() {
    let Some(mut redis_proc) = tokio::task::spawn_blocking(switchboard_test_support::start_redis).await.unwrap() else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}", redis_proc.port);
    let cfg = ClusterConfig::default().with_heartbeat(Duration::from_millis(300), Duration::from_secs(3));
    let clusters = nodes(&url, 2, cfg).await;
    let c = start(&setup_of(&clusters)).await;
    let mut a = Client::connect(c.nodes[0].addr, "/", "a").await;
    let mut b = Client::connect(c.nodes[1].addr, "/", "b").await;
    c.nodes[0].io.emit("before", &1).await.unwrap();
    a.expect("before").await;
    b.expect("before").await;
    wait_until("the bus probe passes", || async { clusters[0].healthy() }).await;
    b.call("join", json!("r")).await;

    // Redis goes away.
    redis_proc.kill();
    let r = c.nodes[0].io.emit("during", &2).await;
    assert!(matches!(r, Err(switchboard_socketio::EmitError::Adapter(AdapterError::Bus(_)))), "{r:?}");
    // C3: the local delivery still happened; C1: the other node's client did not get it, and
    // the failure is counted.
    a.expect("during").await;
    b.expect_nothing().await;
    assert!(clusters[0].stats().publish_errors.load(Ordering::Relaxed) >= 1);
    // Cross-node requests fail loudly instead of pretending.
    let f = c.nodes[0].io.broadcast().fetch_sockets().await;
    assert!(f.is_err(), "{f:?}");
    wait_until("the probe notices", || async { !clusters[0].healthy() }).await;
    // A room created during the outage: its channel cannot be subscribed now.
    b.call("join", json!("r2")).await;

    // Redis comes back (empty: it keeps nothing): resubscribed, probe passes, traffic flows.
    let _redis_proc = tokio::task::spawn_blocking(move || {
        redis_proc.restart();
        redis_proc
    })
    .await
    .unwrap();
    wait_until("both nodes reconnect and their probes pass", || async { clusters.iter().all(|c| c.healthy()) }).await;
    assert!(clusters.iter().all(|c| c.stats().reconnects.load(Ordering::Relaxed) >= 1));
    // The end-to-end probe passed, so the first broadcast after it crosses.
    c.nodes[0].io.emit("after", &3).await.unwrap();
    a.expect("after").await;
    b.expect("after").await;
    // Room channels, old and new, are subscribed again.
    c.nodes[0].io.to("r").emit("room-after", &4).await.unwrap();
    b.expect("room-after").await;
    c.nodes[0].io.to("r2").emit("room2-after", &5).await.unwrap();
    b.expect("room2-after").await;
    let all = c.nodes[1].io.broadcast().fetch_sockets().await.unwrap();
    assert_eq!(all.len(), 2);
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
