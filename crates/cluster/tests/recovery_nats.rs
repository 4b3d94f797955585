//! The shared recovery log on JetStream ([`switchboard_cluster::jetstream`]), against a real
//! NATS with JetStream: entries come back in order with their offsets; sessions survive their
//! node, are taken once, and belong to the node that serves them; every failure has its reason
//! (a trimmed log with the count, a forged, malformed or huge offset or pid, too much to
//! replay, a stream that NATS lost, events the log could not keep while NATS was away).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard_cluster::jetstream::{JetStreamConfig, NatsLog};
use switchboard_cluster::{Incoming, SharedLog};
use switchboard_socketio::engineio::Sid;
use switchboard_socketio::{
    BroadcastOptions, BroadcastPacket, GapReason, Position, RecoveryBackend, Room, SessionState,
};
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

fn packet(i: u64) -> BroadcastPacket {
    BroadcastPacket { data: json!(["ev", i]), binary: Vec::new() }
}

/// The next `n` logged entries: (offset, data).
async fn entries(rx: &mut mpsc::Receiver<Incoming>, n: usize) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("an entry in time") {
            Some(Incoming::Logged { data, position, .. }) => out.push((position.map(|p| p.0), data)),
            Some(_) => {}
            None => panic!("closed"),
        }
    }
    out
}

fn session(sid: Sid, pid: &str, rooms: &[&str], data: Value) -> SessionState {
    let mut r: Vec<Room> = vec![Room::from(sid.to_string().as_str())];
    r.extend(rooms.iter().map(|x| Room::from(*x)));
    SessionState { sid, pid: pid.to_owned(), rooms: r, data }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
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
    for i in 0..50 {
        a.append("/", packet(i), &BroadcastOptions::default()).unwrap();
    }
    let seen_a = entries(&mut rx_a, 50).await;
    let seen_b = entries(&mut rx_b, 50).await;
    assert_eq!(seen_a, seen_b);
    let ids: Vec<String> = seen_a.iter().map(|e| e.0.clone().unwrap()).collect();
    // Contiguous sequences.
    assert!(ids.windows(2).all(|w| key(&w[1]) == key(&w[0]) + 1), "{ids:?}");

    let sid = Sid::generate();
    a.update("/", &session(sid, "pid-1", &["news"], json!({"user": "u1"})));
    a.update("/", &session(sid, "pid-1", &["news", "sports"], json!({"user": "u1"})));
    settle().await;
    let (got, pos) = b.take("/", "pid-1", &ids[9]).await.expect("taken on another node");
    assert_eq!(got.sid, sid);
    assert!(got.rooms.iter().any(|r| &**r == "sports"), "{:?}", got.rooms);
    assert_eq!(b.take("/", "pid-1", &ids[9]).await.map(|_| ()).map_err(|g| g.reason), Err(GapReason::UnknownSession));
    let events = b.read_after("/", &pos).await.expect("replay");
    let nums: Vec<u64> = events.iter().map(|e| e.packet.data[1].as_u64().unwrap()).collect();
    assert_eq!(nums, (10..50).collect::<Vec<_>>());
    assert_eq!(events[0].offset, ids[10]);

    // Node B owns it now: node A can neither overwrite nor forget it.
    b.update("/", &session(sid, "pid-1", &["news", "b-room"], json!({"user": "u1"})));
    settle().await;
    a.persist("/", session(sid, "pid-1", &["stale"], json!({"user": "u1"})));
    a.forget("/", "pid-1");
    settle().await;
    let (got, _) = a.take("/", "pid-1", &ids[9]).await.expect("still there");
    assert!(got.rooms.iter().any(|r| &**r == "b-room"), "{:?}", got.rooms);
    a.put_back("/", got);
    settle().await;
    b.update("/", &session(sid, "pid-1", &["after"], json!({"user": "u1"})));
    settle().await;
    let (got, _) = a.take("/", "pid-1", &ids[9]).await.expect("put back");
    assert!(got.rooms.iter().any(|r| &**r == "after"), "{:?}", got.rooms);
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
    b.append("/", packet(0), &BroadcastOptions::default()).unwrap();
    let from = entries(&mut rx, 1).await[0].0.clone().unwrap();
    for i in 1..=6 {
        b.append("/", packet(i), &BroadcastOptions::default()).unwrap();
    }
    let _ = entries(&mut rx, 6).await;
    let pos = Position { key: key(&from), offset: from.clone() };
    assert_eq!(b.read_after("/", &pos).await.map(|_| ()).map_err(|g| g.reason), Err(GapReason::TooFarBehind));
    assert_eq!(b.read_after("/other", &pos).await.map(|v| v.len()).map_err(|g| g.reason), Ok(0));
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
