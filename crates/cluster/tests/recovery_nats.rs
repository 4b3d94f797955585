//! The shared recovery log on JetStream ([`switchboard_cluster::jetstream`]), against a real
//! NATS with JetStream: entries come back in order with their offsets; sessions survive their
//! node, are taken once, and belong to the node that serves them; every failure has its reason
//! (a trimmed log with the count, a forged, malformed or huge offset or pid, too much to
//! replay, a stream that NATS lost, events the log could not keep while NATS was away).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod recovery_support;

use std::sync::Arc;
use std::time::Duration;

use recovery_support::*;
use serde_json::json;
use switchboard_cluster::jetstream::{JetStreamConfig, NatsLog};
use switchboard_cluster::{Incoming, SharedLog};
use switchboard_socketio::engineio::Sid;
use switchboard_socketio::{BroadcastOptions, GapReason, Position, RecoveryBackend, SessionState};
use tokio::sync::mpsc;

fn nats_up() -> bool {
    switchboard_test_support::service_available("NATS", "127.0.0.1:4222")
}

fn config(max_len: usize) -> JetStreamConfig {
    let p = rand::random::<u64>();
    JetStreamConfig::default().with_stream(format!("SBTEST_{p}"), max_len).with_subject_prefix(format!("sbtest{p}"))
}

async fn node(url: &str, cfg: &JetStreamConfig, uid: &str) -> (Arc<NatsLog>, mpsc::Receiver<Incoming>) {
    let (tx, rx) = mpsc::channel(10_000);
    let opts = async_nats::ConnectOptions::new().retry_on_initial_connect();
    let client = opts.connect(url).await.expect("NATS");
    let log = NatsLog::start(client, cfg.clone(), tx).await.expect("JetStream");
    log.attach(uid);
    (log, rx)
}

/// Deletes a test's streams from the shared NATS.
async fn cleanup(url: &str, cfg: &JetStreamConfig) {
    if let Ok(c) = async_nats::connect(url).await {
        for name in [cfg.stream.clone(), format!("{}_SESSIONS", cfg.stream)] {
            let _ = c.request(format!("$JS.API.STREAM.DELETE.{name}"), bytes::Bytes::from_static(b"{}")).await;
        }
    }
}

fn key(offset: &str) -> u64 {
    offset.rsplit_once('-').and_then(|(_, s)| s.parse().ok()).unwrap()
}

#[tokio::test]
async fn entries_come_back_in_order_and_a_session_moves_between_nodes() {
    if !nats_up() {
        return;
    }
    let url = "nats://127.0.0.1:4222";
    let cfg = config(10_000);
    let (a, mut rx_a) = node(url, &cfg, "node-a").await;
    let (b, mut rx_b) = node(url, &cfg, "node-b").await;
    let ids = both_nodes_read_the_same_log(&*a, &mut rx_a, &mut rx_b).await;
    // Contiguous sequences.
    assert!(ids.windows(2).all(|w| key(&w[1]) == key(&w[0]) + 1), "{ids:?}");
    a_session_moves_between_nodes(&*a, &*b, &ids).await;
    cleanup(url, &cfg).await;
}

#[tokio::test]
async fn every_failure_has_its_reason_and_hostile_input_gets_nothing() {
    if !nats_up() {
        return;
    }
    let url = "nats://127.0.0.1:4222";
    let cfg = config(10);
    let (a, mut rx) = node(url, &cfg, "node-a").await;
    a.append("/", packet(0), &BroadcastOptions::default()).unwrap();
    let first = entries(&mut rx, 1).await[0].0.clone().unwrap();
    let sid = Sid::generate();
    for pid in ["p-bad", "p-ahead", "p-huge", "p-epoch", "p-trim"] {
        a.persist("/", session(sid, pid, &[], json!({"user": "u"})));
    }
    settle().await;
    let reason = |r: Result<(SessionState, Position), switchboard_socketio::Gap>| r.map(|_| ()).map_err(|g| g.reason);
    assert_eq!(reason(a.take("/", "no-such-pid", &first).await), Err(GapReason::UnknownSession));
    assert_eq!(reason(a.take("/", "a.b.>", &first).await), Err(GapReason::UnknownSession));
    assert_eq!(reason(a.take("/", &"x".repeat(100_000), &first).await), Err(GapReason::UnknownSession));
    assert_eq!(reason(a.take("/", "p-bad", "garbage").await), Err(GapReason::BadOffset));
    let (epoch, _) = first.rsplit_once('-').unwrap();
    assert_eq!(reason(a.take("/", "p-ahead", &format!("{epoch}-999999")).await), Err(GapReason::BadOffset));
    assert_eq!(
        reason(a.take("/", "p-huge", &format!("{epoch}-{}", "9".repeat(10_000))).await),
        Err(GapReason::BadOffset)
    );
    assert_eq!(reason(a.take("/", "p-epoch", "deadbeef-1").await), Err(GapReason::EpochChanged));
    for i in 1..=20 {
        a.append("/", packet(i), &BroadcastOptions::default()).unwrap();
    }
    // The reader may fall behind the limit: what it missed is counted as lost.
    let (mut got, mut lost) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while got + lost < 20 {
        match tokio::time::timeout_at(deadline, rx.recv()).await.expect("entries or losses in time") {
            Some(Incoming::Logged { .. }) => got += 1,
            Some(Incoming::Lost(n)) => lost += n,
            _ => {}
        }
    }
    assert_eq!(got + lost, 20);
    // The log keeps 10: the client's offset (1) is 10 events behind the first kept (12).
    let g = a.take("/", "p-trim", &first).await.map(|_| ()).expect_err("trimmed");
    assert_eq!((g.reason, g.lost), (GapReason::Trimmed, Some(10)));

    let cfg = config(10_000).with_recovery(Duration::from_secs(60), 5);
    let (b, mut rx) = node(url, &cfg, "node-b").await;
    replays_are_bounded(&*b, &mut rx).await;
    cleanup(url, &cfg).await;
}

#[tokio::test]
async fn an_outage_owes_a_marker_and_a_lost_stream_changes_the_epoch() {
    let dir = std::env::temp_dir().join(format!("sb-js-{}", rand::random::<u64>()));
    let Some(mut nats) = switchboard_test_support::start_nats_jetstream(&dir) else { return };
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let cfg = config(10_000);
    let (a, mut rx) = node(&url, &cfg, "node-a").await;
    a.append("/", packet(0), &BroadcastOptions::default()).unwrap();
    let before = entries(&mut rx, 1).await[0].0.clone().unwrap();
    let sid = Sid::generate();
    a.persist("/", session(sid, "p-keep", &[], json!({"user": "u"})));
    settle().await;
    nats.stop();
    let mut failed = 0;
    for i in 1..=3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if a.append("/", packet(i), &BroadcastOptions::default()).is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "appends failed while NATS was down");
    // Same store: the log survives, and the marker follows the events it lost.
    let mut nats = tokio::task::spawn_blocking(move || {
        nats.restart();
        nats
    })
    .await
    .unwrap();
    let pos = Position { key: key(&before), offset: before.clone() };
    let mut marker = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Err(g) = a.read_after("/", &pos).await {
            if g.reason == GapReason::LogFailed && g.lost.is_some() {
                marker = Some(g);
                break;
            }
        }
    }
    let g = marker.expect("a gap marker was logged once NATS was back");
    assert!(g.lost.is_some_and(|n| n >= failed), "{g:?}");

    // NATS loses its store: the stream is made anew, with another epoch.
    nats.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let _nats = tokio::task::spawn_blocking(move || {
        nats.restart();
        nats
    })
    .await
    .unwrap();
    let (b, _rx) = node(&url, &cfg, "node-b").await;
    b.persist("/", session(sid, "p-new", &[], json!({"user": "u"})));
    settle().await;
    let r = b.take("/", "p-new", &before).await.map(|_| ()).map_err(|g| g.reason);
    assert_eq!(r, Err(GapReason::EpochChanged));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn clusters_with_other_prefixes_share_a_stream_without_seeing_each_other() {
    if !nats_up() {
        return;
    }
    let url = "nats://127.0.0.1:4222";
    let one = config(10_000);
    let other = one.clone().with_subject_prefix(format!("sbother{}", rand::random::<u64>()));
    let (a, mut rx_a) = node(url, &one, "node-a").await;
    let (b, mut rx_b) = node(url, &other, "node-b").await;
    a.append("/", packet(1), &BroadcastOptions::default()).unwrap();
    b.append("/", packet(2), &BroadcastOptions::default()).unwrap();
    let got_a = entries(&mut rx_a, 1).await;
    let got_b = entries(&mut rx_b, 1).await;
    assert!(got_a[0].1.contains(",1]") && got_b[0].1.contains(",2]"), "{got_a:?} {got_b:?}");
    // Nothing else arrives.
    let more = tokio::time::timeout(Duration::from_millis(500), rx_a.recv()).await;
    assert!(!matches!(more, Ok(Some(Incoming::Logged { .. }))), "{more:?}");
    cleanup(url, &one).await;
}

#[tokio::test]
async fn connected_sessions_outlive_their_time_to_live() {
    if !nats_up() {
        return;
    }
    let url = "nats://127.0.0.1:4222";
    let cfg = config(10_000).with_recovery(Duration::from_secs(1), 100);
    let (a, mut rx) = node(url, &cfg, "node-a").await;
    let (b, _rx) = node(url, &cfg, "node-b").await;
    a.append("/", packet(0), &BroadcastOptions::default()).unwrap();
    let offset = entries(&mut rx, 1).await[0].0.clone().unwrap();
    connected_sessions_are_refreshed(&*a, &*b, &offset).await;
    cleanup(url, &cfg).await;
}
