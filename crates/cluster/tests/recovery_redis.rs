//! The shared recovery log on Redis Streams ([`switchboard_cluster::streams`]), against a real
//! Redis: entries come back in order with their offsets; sessions survive their node, are
//! taken once, and belong to the node that serves them; every failure has its reason (a
//! trimmed log, a forged, malformed or huge offset, an unknown pid, too much to replay, events
//! the log could not keep while Redis was away).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod recovery_support;

use std::sync::Arc;
use std::time::Duration;

use recovery_support::*;
use serde_json::json;
use switchboard_cluster::streams::{RedisLog, StreamsConfig};
use switchboard_cluster::{Incoming, SharedLog};
use switchboard_socketio::engineio::Sid;
use switchboard_socketio::{BroadcastOptions, GapReason, Position, RecoveryBackend, SessionState};
use tokio::sync::mpsc;

fn redis_up() -> bool {
    switchboard_test_support::service_available("Redis", "127.0.0.1:6379")
}

fn config(max_len: usize) -> StreamsConfig {
    let p = format!("sbtest-{}", rand::random::<u64>());
    StreamsConfig::default().with_stream(format!("{p}-stream"), max_len).with_session_prefix(format!("{p}:s:"))
}

async fn node(url: &str, cfg: &StreamsConfig, uid: &str) -> (Arc<RedisLog>, mpsc::Receiver<Incoming>) {
    let (tx, rx) = mpsc::channel(10_000);
    let log = RedisLog::connect(url, cfg.clone(), tx).await.expect("connected");
    log.attach(uid);
    (log, rx)
}

#[tokio::test]
async fn entries_come_back_in_order_and_a_session_moves_between_nodes() {
    if !redis_up() {
        return;
    }
    let url = "redis://127.0.0.1:6379";
    let cfg = config(10_000);
    let (a, mut rx_a) = node(url, &cfg, "node-a").await;
    let (b, mut rx_b) = node(url, &cfg, "node-b").await;
    let ids = both_nodes_read_the_same_log(&*a, &mut rx_a, &mut rx_b).await;
    let keys: Vec<u64> = ids.iter().map(|i| switchboard_cluster::streams::entry_key(i).unwrap()).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    a_session_moves_between_nodes(&*a, &*b, &ids).await;
}

#[tokio::test]
async fn every_failure_has_its_reason_and_hostile_input_gets_nothing() {
    if !redis_up() {
        return;
    }
    let url = "redis://127.0.0.1:6379";
    // A small log: `MAXLEN ~ 10` trims in whole blocks, so 1,000 entries trim the first ones.
    let cfg = config(10);
    let (a, mut rx) = node(url, &cfg, "node-a").await;
    a.append("/", packet(0), &BroadcastOptions::default()).unwrap();
    let first = entries(&mut rx, 1).await[0].0.clone().unwrap();
    let sid = Sid::generate();
    let keep = |pid: &str| a.persist("/", session(sid, pid, &[], json!({"user": "u"})));
    for pid in ["p-bad", "p-ahead", "p-huge", "p-trim"] {
        keep(pid);
    }
    settle().await;
    let reason = |r: Result<(SessionState, Position), switchboard_socketio::Gap>| r.map(|_| ()).map_err(|g| g.reason);
    // Forged and malformed.
    assert_eq!(reason(a.take("/", "no-such-pid", &first).await), Err(GapReason::UnknownSession));
    assert_eq!(reason(a.take("/", "p-bad", "'); DROP--").await), Err(GapReason::BadOffset));
    assert_eq!(reason(a.take("/", "p-ahead", "99999999999999-0").await), Err(GapReason::BadOffset));
    let huge = "9".repeat(10_000);
    assert_eq!(reason(a.take("/", "p-huge", &format!("{huge}-{huge}")).await), Err(GapReason::BadOffset));
    assert_eq!(reason(a.take("/", &"x".repeat(100_000), &first).await), Err(GapReason::UnknownSession));
    // Trimmed.
    for i in 1..1_000 {
        a.append("/", packet(i), &BroadcastOptions::default()).unwrap();
    }
    // (The reader falls behind the trimming: what it missed is counted as lost.)
    let mut lost = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match m {
            Incoming::Logged { data, .. } if data.contains("999") => break,
            Incoming::Lost(n) => lost += n,
            _ => {}
        }
    }
    assert!(lost > 0, "the entries trimmed before the reader got to them are counted");
    assert_eq!(reason(a.take("/", "p-trim", &first).await), Err(GapReason::Trimmed));

    // Too much to replay.
    let cfg = config(10_000).with_recovery(Duration::from_secs(60), 5);
    let (b, mut rx) = node(url, &cfg, "node-b").await;
    replays_are_bounded(&*b, &mut rx).await;
}

#[tokio::test]
async fn events_the_log_could_not_keep_make_a_replay_across_them_fail() {
    let Some(mut redis) = switchboard_test_support::start_redis() else { return };
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let cfg = config(10_000);
    let (a, mut rx) = node(&url, &cfg, "node-a").await;
    a.append("/", packet(0), &BroadcastOptions::default()).unwrap();
    let before = entries(&mut rx, 1).await[0].0.clone().unwrap();
    redis.stop();
    // While Redis is away the append fails at once (the caller delivers locally and reports).
    let mut failed = 0;
    for i in 1..=3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if a.append("/", packet(i), &BroadcastOptions::default()).is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "appends failed while Redis was down");
    let _redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    // Redis came back empty (no persistence): the marker is the first entry of the new log.
    // A replay from before the outage sees it and fails, with the count.
    let mut marker = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pos = Position { key: switchboard_cluster::streams::entry_key(&before).unwrap(), offset: before.clone() };
        match a.read_after("/", &pos).await {
            Err(g) if g.reason == GapReason::LogFailed => {
                marker = Some(g);
                break;
            }
            _ => {}
        }
    }
    let g = marker.expect("a gap marker was logged once Redis was back");
    assert!(g.lost.is_some_and(|n| n >= failed), "{g:?}");
}

#[tokio::test]
async fn connected_sessions_outlive_their_time_to_live() {
    if !redis_up() {
        return;
    }
    let url = "redis://127.0.0.1:6379";
    let cfg = config(10_000).with_recovery(Duration::from_secs(1), 100);
    let (a, mut rx) = node(url, &cfg, "node-a").await;
    let (b, _rx) = node(url, &cfg, "node-b").await;
    a.append("/", packet(0), &BroadcastOptions::default()).unwrap();
    let offset = entries(&mut rx, 1).await[0].0.clone().unwrap();
    connected_sessions_are_refreshed(&*a, &*b, &offset).await;
}
