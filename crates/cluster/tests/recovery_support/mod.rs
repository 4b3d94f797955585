//! What the shared-log tests (`recovery_redis.rs`, `recovery_nats.rs`) have in common: the
//! helpers and the scenarios every backend must pass alike.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard_cluster::{Incoming, SharedLog};
use switchboard_socketio::engineio::Sid;
use switchboard_socketio::{BroadcastOptions, BroadcastPacket, GapReason, Room, SessionState};
use tokio::sync::mpsc;

/// The event `["ev", i]`.
pub(crate) fn packet(i: u64) -> BroadcastPacket {
    BroadcastPacket { data: json!(["ev", i]), binary: Vec::new() }
}

/// The next `n` logged entries: (offset, data).
pub(crate) async fn entries(rx: &mut mpsc::Receiver<Incoming>, n: usize) -> Vec<(Option<String>, String)> {
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

/// A session with its own id room and `rooms`.
pub(crate) fn session(sid: Sid, pid: &str, rooms: &[&str], data: Value) -> SessionState {
    let mut r: Vec<Room> = vec![Room::from(sid.to_string().as_str())];
    r.extend(rooms.iter().map(|x| Room::from(*x)));
    SessionState { sid, pid: pid.to_owned(), rooms: r, data }
}

/// Time for the ordered session writes to reach the broker.
pub(crate) async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// 50 events appended on node A come back to both nodes alike, in order; returns their
/// offsets.
pub(crate) async fn both_nodes_read_the_same_log<L: SharedLog>(
    a: &L,
    rx_a: &mut mpsc::Receiver<Incoming>,
    rx_b: &mut mpsc::Receiver<Incoming>,
) -> Vec<String> {
    for i in 0..50 {
        a.append("/", packet(i), &BroadcastOptions::default()).unwrap();
    }
    let seen_a = entries(rx_a, 50).await;
    let seen_b = entries(rx_b, 50).await;
    assert_eq!(seen_a, seen_b);
    seen_a.iter().map(|e| e.0.clone().unwrap()).collect()
}

/// A session kept by node A is taken on node B (once) with its last change, the replay after
/// offset 10 is events 10..50, node B owns it then (node A can neither overwrite nor forget
/// it), and a refused recovery puts it back for whoever serves it.
pub(crate) async fn a_session_moves_between_nodes<L: SharedLog>(a: &L, b: &L, ids: &[String]) {
    let sid = Sid::generate();
    a.update("/", &session(sid, "pid-1", &["news"], json!({"user": "u1"})));
    a.update("/", &session(sid, "pid-1", &["news", "sports"], json!({"user": "u1"})));
    settle().await;
    let (got, pos) = b.take("/", "pid-1", &ids[9]).await.expect("taken on another node");
    assert_eq!(got.sid, sid);
    assert_eq!(got.data, json!({"user": "u1"}));
    assert!(got.rooms.iter().any(|r| &**r == "sports"), "the last change was kept: {:?}", got.rooms);
    assert_eq!(b.take("/", "pid-1", &ids[9]).await.map(|_| ()).map_err(|g| g.reason), Err(GapReason::UnknownSession));
    let events = b.read_after("/", &pos).await.expect("replay");
    let nums: Vec<u64> = events.iter().map(|e| e.packet.data[1].as_u64().unwrap()).collect();
    assert_eq!(nums, (10..50).collect::<Vec<_>>());
    assert_eq!(events[0].offset, ids[10]);

    b.update("/", &session(sid, "pid-1", &["news", "b-room"], json!({"user": "u1"})));
    settle().await;
    a.persist("/", session(sid, "pid-1", &["stale"], json!({"user": "u1"})));
    a.forget("/", "pid-1");
    settle().await;
    let (got, _) = a.take("/", "pid-1", &ids[9]).await.expect("still there");
    assert!(got.rooms.iter().any(|r| &**r == "b-room"), "B's version survived: {:?}", got.rooms);

    a.put_back("/", got);
    settle().await;
    b.update("/", &session(sid, "pid-1", &["after"], json!({"user": "u1"})));
    settle().await;
    let (got, _) = a.take("/", "pid-1", &ids[9]).await.expect("put back");
    assert!(got.rooms.iter().any(|r| &**r == "after"), "B's later change was kept: {:?}", got.rooms);
}

/// On a log whose replays hold at most 5 events: 6 behind is `too_far_behind`; another
/// namespace's events are not replayed.
pub(crate) async fn replays_are_bounded<L: SharedLog>(b: &L, rx: &mut mpsc::Receiver<Incoming>) {
    b.append("/", packet(0), &BroadcastOptions::default()).unwrap();
    let from = entries(rx, 1).await[0].0.clone().unwrap();
    for i in 1..=6 {
        b.append("/", packet(i), &BroadcastOptions::default()).unwrap();
    }
    let _ = entries(rx, 6).await;
    let pos = b.locate("/", Some(&from)).await.expect("located");
    assert_eq!(b.read_after("/", &pos).await.map(|_| ()).map_err(|g| g.reason), Err(GapReason::TooFarBehind));
    assert_eq!(b.read_after("/other", &pos).await.map(|v| v.len()).map_err(|g| g.reason), Ok(0));
}

/// On a log whose sessions live 1 s: a connected session is refreshed and outlives it; a lost
/// one does not.
pub(crate) async fn connected_sessions_are_refreshed<L: SharedLog>(a: &L, b: &L, offset: &str) {
    let sid = Sid::generate();
    a.update("/", &session(sid, "p-live", &[], json!({"user": "u"})));
    a.persist("/", session(Sid::generate(), "p-lost", &[], json!({"user": "u"})));
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let live = b.take("/", "p-live", offset).await.map(|(s, _)| s.sid).map_err(|g| g.reason);
    assert_eq!(live, Ok(sid), "a connected session outlives its time to live");
    let lost = b.take("/", "p-lost", offset).await.map(|_| ()).map_err(|g| g.reason);
    assert!(matches!(lost, Err(GapReason::UnknownSession | GapReason::Expired)), "{lost:?}");
}
