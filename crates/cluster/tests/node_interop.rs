//! A mixed cluster on one Redis: a Node.js socket.io server with `@socket.io/redis-adapter`'s
//! sharded adapter and two Switchboard nodes. Broadcasts both ways, `fetchSockets`,
//! `socketsJoin`, `serverSideEmit` and broadcasts with acks from Node reach our sockets and
//! back, and `@socket.io/redis-emitter` reaches our clients.

#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use switchboard_adapter_tests::{handlers, wait_until, Client};
use switchboard_cluster::{redis, ClusterConfig};
use switchboard_socketio::SocketIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

struct NodeServer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    next: u64,
    port: u16,
}

impl NodeServer {
    async fn start(prefix: &str) -> NodeServer {
        let port = switchboard_test_support::free_port_pair();
        let script = switchboard_test_support::interop_dir().join("node/sio_redis_node.mjs");
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .args(["redis://127.0.0.1:6379", prefix, &port.to_string()])
            .current_dir(switchboard_test_support::interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        assert!(first.contains("ready"), "{first}");
        NodeServer { child, stdin, lines, next: 0, port }
    }

    async fn cmd(&mut self, mut c: Value) -> Value {
        self.next += 1;
        c["id"] = json!(self.next);
        self.stdin.write_all(format!("{c}\n").as_bytes()).await.unwrap();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(15), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("node did not answer {c}"))
                .unwrap()
                .unwrap();
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["id"] == json!(self.next) {
                if let Some(e) = v.get("error") {
                    panic!("node failed {c}: {e}");
                }
                return v["ok"].clone();
            }
        }
    }
}

/// Waits until `n` connections subscribe shard channel `channel` (`PUBSUB SHARDNUMSUB`).
async fn wait_subscribers(channel: &str, n: i64) {
    use fred::prelude::*;
    let client = Builder::from_config(Config::from_url("redis://127.0.0.1:6379").unwrap()).build().unwrap();
    client.init().await.unwrap();
    wait_until(&format!("{n} nodes subscribe {channel}"), || async {
        let v: Vec<Value> = client.pubsub_shardnumsub(channel).await.unwrap();
        v.get(1).and_then(Value::as_i64) == Some(n)
    })
    .await;
    let _ = client.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_switchboard_form_one_cluster() {
    if !switchboard_test_support::service_available("Redis", "127.0.0.1:6379")
        || !switchboard_test_support::peer_available(
            "@socket.io/redis-adapter (npm)",
            "node",
            &["-e", "require('@socket.io/redis-adapter'); require('@socket.io/redis-emitter'); require('redis')"],
        )
    {
        return;
    }
    let prefix = format!("sbmixed-{}", rand::random::<u64>());
    let mut node = NodeServer::start(&prefix).await;
    let mut ours = Vec::new();
    for i in 0..2 {
        let cfg = redis::RedisConfig::new("redis://127.0.0.1:6379")
            .with_channel_prefix(prefix.clone())
            .with_emitter_key(prefix.clone());
        // Node servers share this cluster: subscribe each socket's own channel too.
        let cluster = redis::connect(cfg, ClusterConfig::default().with_socket_channels(true)).await.unwrap();
        let io = SocketIo::builder().adapter(cluster.adapter_factory()).ns("/", handlers(i)).build();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let srv = io.clone();
        tokio::spawn(async move { srv.serve(l, std::future::pending()).await });
        ours.push((io, addr));
    }
    // Everyone counts three servers.
    wait_until("Switchboard nodes count 3 servers", || async {
        let ns = ours[0].0.of("/").unwrap();
        ns.adapter().server_count(&ns).await.ok() == Some(3)
    })
    .await;
    assert_eq!(node.cmd(json!({"cmd": "count"})).await, json!(3));

    let node_addr: std::net::SocketAddr = format!("127.0.0.1:{}", node.port).parse().unwrap();
    let mut a = Client::connect(ours[0].1, "/", "a").await;
    let mut b = Client::connect(ours[1].1, "/", "b").await;
    let mut n = Client::connect(node_addr, "/", "n").await;
    for c in [&mut a, &mut b, &mut n] {
        assert_eq!(c.call("join", json!("room")).await, vec![json!("joined")]);
    }
    // Node's adapter subscribes a room's channel after its join returns: wait for all three
    // nodes' subscriptions before broadcasting to the room.
    wait_subscribers(&format!("{prefix}#/#room#"), 3).await;

    // Switchboard → everyone, through the room channel.
    ours[0].0.to("room").emit("from-sb", &1).await.unwrap();
    for c in [&mut a, &mut b, &mut n] {
        assert_eq!(c.expect("from-sb").await.1, vec![json!(1)]);
    }
    // Node → everyone: to the room (room channel) and to all (main channel).
    node.cmd(json!({"cmd": "emit", "room": "room", "event": "from-node", "args": ["x", {"y": 2}]})).await;
    node.cmd(json!({"cmd": "emit", "event": "to-all", "args": []})).await;
    for c in [&mut a, &mut b, &mut n] {
        assert_eq!(c.expect("from-node").await.1, vec![json!("x"), json!({"y": 2})]);
        c.expect("to-all").await;
    }
    // Node → one of our sockets by id: Node's dynamic mode sends it on that socket's channel.
    node.cmd(json!({"cmd": "emit", "room": a.sid, "event": "direct", "args": ["to a"]})).await;
    assert_eq!(a.expect("direct").await.1, vec![json!("to a")]);
    b.expect_nothing().await;

    // Binary both ways.
    node.cmd(json!({"cmd": "emit", "event": "bin", "args": [{"$buffer": [1, 2, 3]}]})).await;
    for c in [&mut a, &mut b] {
        let (_, args, bins) = c.expect("bin").await;
        assert_eq!(args, vec![json!({"_placeholder": true, "num": 0})]);
        assert_eq!(bins, vec![Bytes::from_static(&[1, 2, 3])]);
    }
    n.expect("bin").await;
    ours[1].0.emit("bin2", &Bytes::from_static(&[9, 8])).await.unwrap();
    let (_, _, bins) = n.expect("bin2").await;
    assert_eq!(bins, vec![Bytes::from_static(&[9, 8])]);
    a.expect("bin2").await;
    b.expect("bin2").await;

    // Node's fetchSockets sees our sockets with their data.
    let fetched = node.cmd(json!({"cmd": "fetch"})).await;
    let names: Vec<&str> = fetched.as_array().unwrap().iter().filter_map(|s| s["data"]["name"].as_str()).collect();
    assert!(names.contains(&"a") && names.contains(&"b") && names.contains(&"n"), "{fetched}");
    let sa = fetched.as_array().unwrap().iter().find(|s| s["data"]["name"] == "a").unwrap();
    assert!(sa["rooms"].as_array().unwrap().contains(&json!("room")), "{sa}");
    // And ours sees Node's.
    let ours_view = ours[1].0.broadcast().fetch_sockets().await.unwrap();
    assert_eq!(ours_view.len(), 3);
    assert!(ours_view.iter().any(|s| s.info.data["name"] == "n" && s.info.node.is_some()));

    // Node's socketsJoin reaches our sockets.
    node.cmd(json!({"cmd": "socketsJoin", "room": "vip"})).await;
    wait_until("our sockets are in vip", || async {
        let ns = ours[0].0.of("/").unwrap();
        ns.adapter()
            .sockets(&ns, &switchboard_socketio::BroadcastOptions { rooms: vec!["vip".into()], ..Default::default() })
            .await
            .unwrap()
            .len()
            == 1
    })
    .await;
    wait_subscribers(&format!("{prefix}#/#vip#"), 3).await;
    ours[1].0.to("vip").emit("vip", &true).await.unwrap();
    for c in [&mut a, &mut b, &mut n] {
        c.expect("vip").await;
    }

    // serverSideEmit with acks, both ways.
    let r = node.cmd(json!({"cmd": "serverSideEmit", "event": "whoami", "args": ["q"]})).await;
    assert_eq!(r["err"], Value::Null, "{r}");
    assert_eq!(r["responses"].as_array().unwrap().len(), 2, "{r}");
    let ns0 = ours[0].0.of("/").unwrap();
    let acks = ns0.server_side_emit_with_ack("whoami", vec![json!(1)], Duration::from_secs(4)).await.unwrap();
    assert!(acks.missing_nodes.is_empty(), "{acks:?}");
    assert_eq!(acks.responses.len(), 2);
    assert!(acks.responses.iter().any(|v| v["node"] == "node"));

    // Broadcast with acks from Node: our clients answer through our nodes.
    let r = node.cmd(json!({"cmd": "emitWithAck", "room": "room", "event": "question", "args": ["?"]})).await;
    assert_eq!(r["err"], Value::Null, "{r}");
    assert_eq!(r["responses"], json!(["ack", "ack", "ack"]), "{r}");
    for c in [&mut a, &mut b, &mut n] {
        c.expect("question").await;
    }
    // And from ours: Node counts its client, then forwards the ack.
    let acks = ours[0].0.to("room").timeout(Duration::from_secs(4)).emit_with_ack("q2", &0).await.unwrap();
    assert_eq!(acks.expected, 3, "{acks:?}");
    assert!(acks.complete(), "{acks:?}");
    for c in [&mut a, &mut b, &mut n] {
        c.expect("q2").await;
    }

    // @socket.io/redis-emitter on the classic channels reaches our clients.
    node.cmd(json!({"cmd": "emitter", "room": "room", "event": "from-emitter", "args": [7]})).await;
    node.cmd(json!({"cmd": "emitter", "event": "emitter-all", "args": []})).await;
    // (Node's sharded adapter does not listen to the classic channels; ours do.)
    for c in [&mut a, &mut b] {
        assert_eq!(c.expect("from-emitter").await.1, vec![json!(7)]);
        c.expect("emitter-all").await;
    }
    node.cmd(json!({"cmd": "emitterJoin", "room": "room", "join": "emitted"})).await;
    wait_until("the emitter's socketsJoin reached our nodes", || async {
        let ns = ours[1].0.of("/").unwrap();
        ns.adapter()
            .sockets(
                &ns,
                &switchboard_socketio::BroadcastOptions { rooms: vec!["emitted".into()], ..Default::default() },
            )
            .await
            .unwrap()
            .len()
            == 1
    })
    .await;
    for c in [&mut a, &mut b, &mut n] {
        c.expect_nothing().await;
    }

    // A request pending on a node that dies finishes early: the Node server never answers
    // "sbonly"; once it is killed its broker connection closes, the count of nodes falls,
    // and the request stops waiting for it (well before its 8 s timeout).
    let ns0 = ours[0].0.of("/").unwrap();
    let pending = tokio::spawn(async move {
        let t0 = std::time::Instant::now();
        let r = ns0.server_side_emit_with_ack("sbonly", vec![], Duration::from_secs(8)).await;
        (r, t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = node.child.kill().await;
    let (r, took) = pending.await.unwrap();
    let acks = r.unwrap();
    assert_eq!(acks.responses.len(), 1, "{acks:?}");
    assert!(acks.missing_nodes.is_empty(), "the dead node is not awaited: {acks:?}");
    assert!(took < Duration::from_secs(4), "finished early: {took:?}");
}
