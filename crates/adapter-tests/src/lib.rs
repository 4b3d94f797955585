//! # The adapter conformance suite
//!
//! One set of scenarios that every Socket.IO [`Adapter`] must pass, written once and
//! instantiated per adapter by [`adapter_conformance!`]: the in-memory adapter (one node), the
//! Redis adapter on a single Redis and on a Redis Cluster (three nodes each), NATS later. Every
//! scenario starts real Socket.IO servers on loopback, one per node, each with its own adapter,
//! connects real WebSocket clients to each of them, and checks what the clients receive.
//! Brokers are real; nothing is mocked.
//!
//! ```ignore
//! switchboard_adapter_tests::adapter_conformance!(async {
//!     Some(switchboard_adapter_tests::Setup::new(1, |_node, _nsp| Box::new(LocalAdapter::new())))
//! });
//! ```
//!
//! The setup block runs once per scenario (so each can take a fresh channel prefix) and
//! returns `None`, after printing why, when the broker is not there: the scenario is then
//! skipped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use switchboard_socketio::{Adapter, Handlers, SocketIo};
use switchboard_ws::Message;
use tokio::sync::mpsc;

/// The default wait for something that should arrive.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long to listen for something that should not arrive.
pub const QUIET: Duration = Duration::from_millis(300);

type AdapterFn = Arc<dyn Fn(usize, &str) -> Box<dyn Adapter> + Send + Sync>;

/// How to build the nodes of one scenario.
#[derive(Clone)]
pub struct Setup {
    /// How many nodes (Socket.IO servers) to start.
    pub nodes: usize,
    adapter: AdapterFn,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup").field("nodes", &self.nodes).finish_non_exhaustive()
    }
}

impl Setup {
    /// `nodes` servers; `adapter(node, namespace)` makes each namespace's adapter of a node.
    pub fn new<F>(nodes: usize, adapter: F) -> Self
    where
        F: Fn(usize, &str) -> Box<dyn Adapter> + Send + Sync + 'static,
    {
        Setup { nodes, adapter: Arc::new(adapter) }
    }
}

/// One running node.
#[derive(Debug)]
pub struct Node {
    /// Its server.
    pub io: SocketIo,
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The running nodes of a scenario; dropped at its end (servers stopped).
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, in order.
    pub nodes: Vec<Node>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(tx) = n.shutdown.take() {
                let _ = tx.send(());
            }
        }
    }
}

/// The handlers every node of a scenario runs: on connect, `data = {node, name}` (the name
/// from `auth`); `join` (ack `"joined"`), `to` `{room, event, data}` (to the room without the
/// sender, ack `"sent"`); server events `whoami` (answers `{node, args}`) and `sbonly` (answers
/// `{node}`; Node.js servers in a mixed cluster have no handler for it).
pub fn handlers(node: usize) -> Handlers {
    Handlers::new()
        .on_connect(move |s| async move {
            let name = s.auth().get("name").cloned().unwrap_or(Value::Null);
            s.set_data(json!({ "node": node, "name": name }));
        })
        .on("join", |s, mut ev| async move {
            let room: String = ev.data().unwrap_or_default();
            let _ = s.join(room.as_str()).await;
            let _ = ev.ack(&"joined");
        })
        .on("to", |s, mut ev| async move {
            // {"room": r, "event": e, "data": d}: to the room, without the sender.
            let v: Value = ev.data().unwrap_or_default();
            let room = v["room"].as_str().unwrap_or("").to_owned();
            let event = v["event"].as_str().unwrap_or("x").to_owned();
            let _ = s.to(room.as_str()).emit(&event, &v["data"]).await;
            let _ = ev.ack(&"sent");
        })
        .on_server_event("whoami", move |mut ev| async move {
            ev.ack(json!({ "node": node, "args": ev.args }));
        })
        .on_server_event("sbonly", move |mut ev| async move {
            ev.ack(json!({ "node": node }));
        })
}

/// Starts the nodes of `setup` and waits until each sees all the others (its adapter's
/// `server_count` on `/` and `/chat`).
pub async fn start(setup: &Setup) -> Cluster {
    let mut nodes = Vec::new();
    for i in 0..setup.nodes {
        let make = setup.adapter.clone();
        let io =
            SocketIo::builder().adapter(move |nsp| make(i, nsp)).ns("/", handlers(i)).ns("/chat", handlers(i)).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| fail(&e));
        let addr = listener.local_addr().unwrap_or_else(|e| fail(&e));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let srv = io.clone();
        tokio::spawn(async move {
            let _ = srv
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await;
            srv.shutdown().await;
        });
        nodes.push(Node { io, addr, shutdown: Some(tx) });
    }
    let c = Cluster { nodes };
    for nsp in ["/", "/chat"] {
        wait_until(&format!("every node sees {} nodes on {nsp}", setup.nodes), || async {
            for n in &c.nodes {
                let Some(ns) = n.io.of(nsp) else { return false };
                if ns.adapter().server_count(&ns).await.ok() != Some(setup.nodes) {
                    return false;
                }
            }
            true
        })
        .await;
    }
    c
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    #[allow(clippy::panic)]
    {
        panic!("conformance setup failed: {e}")
    }
}

/// Polls `f` every 20 ms until it holds; fails the test after 10 s.
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        if tokio::time::Instant::now() > deadline {
            fail(&format!("timed out waiting until {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An event a test client received: name, arguments, attachments.
pub type Received = (String, Vec<Value>, Vec<Bytes>);

/// A Socket.IO client over WebSocket, enough for the suite: connect to a namespace, emit with
/// or without ack, receive events (answering acks with `["ack", <its name>]`), answer pings.
#[derive(Debug)]
pub struct Client {
    /// The socket id the server gave.
    pub sid: String,
    /// Its name (its `auth.name`).
    pub name: String,
    nsp: String,
    out: mpsc::UnboundedSender<Message>,
    events: mpsc::UnboundedReceiver<Received>,
    acks: mpsc::UnboundedReceiver<(u64, Vec<Value>)>,
    next_ack: u64,
    closed: tokio::sync::watch::Receiver<bool>,
}

fn prefix(nsp: &str) -> String {
    if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    }
}

impl Client {
    /// Connects to `nsp` on the node at `addr`, with `auth = {"name": name}`.
    pub async fn connect(addr: SocketAddr, nsp: &str, name: &str) -> Client {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let ws = switchboard_ws::connect(&url).await.unwrap_or_else(|e| fail(&e));
        let (mut rd, mut wr) = ws.split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let (sid_tx, sid_rx) = tokio::sync::oneshot::channel::<String>();
        let (closed_tx, closed_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if wr.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pfx = prefix(nsp);
        let me = name.to_owned();
        let out = out_tx.clone();
        let _ = out.send(Message::text(format!("40{pfx}{}", json!({ "name": name }))));
        tokio::spawn(async move {
            let mut sid_tx = Some(sid_tx);
            // A binary event waiting for its attachments.
            let mut pending: Option<(String, Vec<Value>, usize, Vec<Bytes>)> = None;
            while let Some(Ok(m)) = rd.recv().await {
                let text = match m {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(b) => {
                        if let Some(p) = pending.as_mut() {
                            p.3.push(b);
                            if p.3.len() == p.2 {
                                if let Some((name, args, _, bins)) = pending.take() {
                                    let _ = ev_tx.send((name, args, bins));
                                }
                            }
                        }
                        continue;
                    }
                    Message::Close(_) => break,
                    _ => continue,
                };
                if text == "2" {
                    let _ = out.send(Message::text("3"));
                    continue;
                }
                let Some(rest) = text.strip_prefix('4') else { continue };
                let kind = rest.chars().next().unwrap_or(' ');
                let mut body = &rest[kind.len_utf8()..];
                let mut attachments = 0usize;
                if kind == '5' || kind == '6' {
                    let Some((n, b)) = body.split_once('-') else { continue };
                    attachments = n.parse().unwrap_or(0);
                    body = b;
                }
                let Some(body) = body.strip_prefix(pfx.as_str()).or(if pfx.is_empty() { Some(body) } else { None })
                else {
                    continue;
                };
                let digits: String = body.chars().take_while(|c| c.is_ascii_digit()).collect();
                let id: Option<u64> = digits.parse().ok();
                let json: Value = serde_json::from_str(&body[digits.len()..]).unwrap_or(Value::Null);
                match kind {
                    '0' => {
                        if let Some(tx) = sid_tx.take() {
                            let _ = tx.send(json["sid"].as_str().unwrap_or("").to_owned());
                        }
                    }
                    '1' => break,
                    '2' | '5' => {
                        let mut args = json.as_array().cloned().unwrap_or_default();
                        if args.is_empty() {
                            continue;
                        }
                        let name = args.remove(0).as_str().unwrap_or("").to_owned();
                        if let Some(id) = id {
                            let _ = out.send(Message::text(format!("43{pfx}{id}{}", json!(["ack", me]))));
                        }
                        if kind == '5' {
                            pending = Some((name, args, attachments, Vec::new()));
                        } else {
                            let _ = ev_tx.send((name, args, Vec::new()));
                        }
                    }
                    '3' => {
                        if let Some(id) = id {
                            let _ = ack_tx.send((id, json.as_array().cloned().unwrap_or_default()));
                        }
                    }
                    _ => {}
                }
            }
            let _ = closed_tx.send(true);
        });
        let sid = tokio::time::timeout(WAIT, sid_rx).await.unwrap_or_else(|e| fail(&e)).unwrap_or_else(|e| fail(&e));
        Client {
            sid,
            name: name.to_owned(),
            nsp: nsp.to_owned(),
            out: out_tx,
            events: ev_rx,
            acks: ack_rx,
            next_ack: 0,
            closed: closed_rx,
        }
    }

    /// Emits `event` with `data` and waits for the server's acknowledgement.
    pub async fn call(&mut self, event: &str, data: Value) -> Vec<Value> {
        let id = self.next_ack;
        self.next_ack += 1;
        let _ = self.out.send(Message::text(format!("42{}{id}{}", prefix(&self.nsp), json!([event, data]))));
        loop {
            match tokio::time::timeout(WAIT, self.acks.recv()).await {
                Ok(Some((got, args))) if got == id => return args,
                Ok(Some(_)) => continue,
                _ => fail(&format!("{} got no ack for {event}", self.name)),
            }
        }
    }

    /// The next event, if one comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Received> {
        tokio::time::timeout(within, self.events.recv()).await.ok().flatten()
    }

    /// The next event; fails the test if none comes within [`WAIT`].
    pub async fn expect(&mut self, event: &str) -> Received {
        match self.next(WAIT).await {
            Some(e) if e.0 == event => e,
            Some(e) => fail(&format!("{} expected {event}, got {e:?}", self.name)),
            None => fail(&format!("{} expected {event}, got nothing", self.name)),
        }
    }

    /// Fails the test if an event arrives within [`QUIET`].
    pub async fn expect_nothing(&mut self) {
        if let Some(e) = self.next(QUIET).await {
            fail(&format!("{} expected nothing, got {e:?}", self.name));
        }
    }

    /// Waits until the server ends the namespace session or the connection.
    pub async fn expect_disconnected(&mut self) {
        let ok = tokio::time::timeout(WAIT, self.closed.wait_for(|c| *c)).await;
        if !matches!(ok, Ok(Ok(_))) {
            fail(&format!("{} was not disconnected", self.name));
        }
    }
}

/// Connects `per_node` clients to `nsp` on every node, named `n<node>c<i>`.
pub async fn clients(c: &Cluster, nsp: &str, per_node: usize) -> Vec<Vec<Client>> {
    let mut out = Vec::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let mut row = Vec::new();
        for k in 0..per_node {
            row.push(Client::connect(n.addr, nsp, &format!("n{i}c{k}")).await);
        }
        out.push(row);
    }
    out
}

fn check(ok: bool, what: &str) {
    if !ok {
        fail(&what);
    }
}

/// The scenarios. Each takes a fresh [`Setup`].
pub mod suite {
    use super::*;
    use switchboard_socketio::{BroadcastOptions, Room};

    fn ns(c: &Cluster, node: usize, nsp: &str) -> Arc<switchboard_socketio::Namespace> {
        match c.nodes[node].io.of(nsp) {
            Some(ns) => ns,
            None => fail(&format!("no namespace {nsp}")),
        }
    }

    /// A broadcast from any node reaches every socket of the namespace on every node, once,
    /// and no socket of another namespace.
    pub async fn broadcast_reaches_every_socket(setup: Setup) {
        let c = start(&setup).await;
        let mut all = clients(&c, "/", 2).await;
        let mut chat = clients(&c, "/chat", 1).await;
        for from in 0..c.nodes.len() {
            let n = c.nodes[from].io.emit("hello", &json!({ "from": from })).await.unwrap_or_else(|e| fail(&e));
            check(n == 2, "the emitting node counts its own deliveries");
            for row in all.iter_mut() {
                for cl in row.iter_mut() {
                    let (_, args, _) = cl.expect("hello").await;
                    check(args == vec![json!({ "from": from })], "the arguments arrive unchanged");
                }
            }
        }
        for row in all.iter_mut().chain(chat.iter_mut()) {
            for cl in row.iter_mut() {
                cl.expect_nothing().await;
            }
        }
    }

    /// Rooms, `except` rooms and skipped socket ids hold across nodes; `local` stays on the
    /// emitting node.
    pub async fn rooms_exclusions_and_local(setup: Setup) {
        let c = start(&setup).await;
        let mut all = clients(&c, "/", 2).await;
        // The first client of each node joins "red", the second "blue".
        for row in all.iter_mut() {
            row[0].call("join", json!("red")).await;
            row[1].call("join", json!("blue")).await;
        }
        let last = c.nodes.len() - 1;
        // Client to room, skipping the sender (socket.to(room).emit).
        let sent = all[last][0].call("to", json!({ "room": "red", "event": "chat", "data": "hi" })).await;
        check(sent == vec![json!("sent")], "the handler acked");
        for (i, row) in all.iter_mut().enumerate() {
            if i != last {
                check(row[0].expect("chat").await.1 == vec![json!("hi")], "room members elsewhere get it");
            }
            row[0].expect_nothing().await;
            row[1].expect_nothing().await;
        }
        // Server: to red and blue, except blue, except the first node's red member.
        let io = &c.nodes[0].io;
        let skip = all[0][0].sid.clone();
        io.to(vec!["red", "blue"])
            .except("blue")
            .except(skip.as_str())
            .emit("x", &1)
            .await
            .unwrap_or_else(|e| fail(&e));
        for (i, row) in all.iter_mut().enumerate() {
            if i != 0 {
                row[0].expect("x").await;
            }
            row[0].expect_nothing().await;
            row[1].expect_nothing().await;
        }
        // A socket id as a room reaches that socket wherever it is.
        let target = all[last][1].sid.clone();
        io.to(target.as_str()).emit("direct", &"you").await.unwrap_or_else(|e| fail(&e));
        all[last][1].expect("direct").await;
        // local: the emitting node's sockets only.
        c.nodes[last].io.broadcast().local().emit("mine", &0).await.unwrap_or_else(|e| fail(&e));
        for (i, row) in all.iter_mut().enumerate() {
            for cl in row.iter_mut() {
                if i == last {
                    cl.expect("mine").await;
                }
                cl.expect_nothing().await;
            }
        }
    }

    /// A broadcast with acks counts every node's sockets first and gathers every answer.
    pub async fn broadcast_with_acks(setup: Setup) {
        let c = start(&setup).await;
        let mut all = clients(&c, "/", 2).await;
        for row in all.iter_mut() {
            row[1].call("join", json!("acked")).await;
        }
        let nodes = c.nodes.len();
        let op = c.nodes[0].io.to("acked").timeout(Duration::from_secs(5));
        let acks = op.emit_with_ack("question", &"?").await.unwrap_or_else(|e| fail(&e));
        check(acks.expected == nodes, &format!("expected {nodes} sockets, counted {}", acks.expected));
        check(acks.complete(), &format!("every node and socket answered: {acks:?}"));
        let mut names: Vec<String> =
            acks.responses.iter().filter_map(|(_, r)| r.args.get(1)?.as_str().map(str::to_owned)).collect();
        names.sort();
        let mut want: Vec<String> = (0..nodes).map(|i| format!("n{i}c1")).collect();
        want.sort();
        check(names == want, &format!("one answer per member: {names:?}"));
        for row in all.iter_mut() {
            row[1].expect("question").await;
            row[0].expect_nothing().await;
        }
        // Nobody selected: done at once, complete, empty.
        let none = c.nodes[0].io.to("nobody").emit_with_ack("q", &0).await.unwrap_or_else(|e| fail(&e));
        check(none.expected == 0 && none.responses.is_empty() && none.complete(), "an empty selection");
    }

    /// fetch_sockets sees every node's sockets with rooms, handshake and data; the handles it
    /// returns emit, join, leave and disconnect wherever the socket is.
    pub async fn fetch_sockets_and_remote_handles(setup: Setup) {
        let c = start(&setup).await;
        let mut all = clients(&c, "/", 1).await;
        for row in all.iter_mut() {
            row[0].call("join", json!("lobby")).await;
        }
        let found = c.nodes[0].io.to("lobby").fetch_sockets().await.unwrap_or_else(|e| fail(&e));
        check(found.len() == c.nodes.len(), &format!("one socket per node: {found:?}"));
        let by_id: HashMap<String, _> = found.into_iter().map(|s| (s.id().to_owned(), s)).collect();
        let last = c.nodes.len() - 1;
        let remote = match by_id.get(&all[last][0].sid) {
            Some(r) => r.clone(),
            None => fail(&"the last node's socket is listed"),
        };
        check(remote.info.rooms.iter().any(|r| r == "lobby"), "its rooms");
        check(remote.info.rooms.iter().any(|r| *r == all[last][0].sid), "its own id room");
        check(remote.info.data["node"] == json!(last), &format!("its data: {:?}", remote.info.data));
        check(remote.info.handshake["auth"]["name"] == json!(format!("n{last}c0")), "its handshake auth");
        check((last == 0) == remote.info.node.is_none(), "its node is named when remote");
        remote.emit("poke", &"remote").await.unwrap_or_else(|e| fail(&e));
        check(all[last][0].expect("poke").await.1 == vec![json!("remote")], "a remote emit arrives");
        remote.join("vip").await.unwrap_or_else(|e| fail(&e));
        remote.leave("lobby").await.unwrap_or_else(|e| fail(&e));
        wait_until("the remote join and leave are applied", || async {
            let l = ns(&c, last, "/");
            let rooms = l.adapter().socket_rooms(&l, parse_sid(&all[last][0].sid)).await.unwrap_or_default();
            rooms.iter().any(|r| &**r == "vip") && !rooms.iter().any(|r| &**r == "lobby")
        })
        .await;
        let lobby = c.nodes[0].io.to("lobby").fetch_sockets().await.unwrap_or_else(|e| fail(&e));
        check(lobby.len() == c.nodes.len() - 1, "it left the lobby");
        remote.disconnect(false).await.unwrap_or_else(|e| fail(&e));
        wait_until("the remote socket is gone", || async { ns(&c, last, "/").is_empty() }).await;
    }

    fn parse_sid(s: &str) -> switchboard_socketio::engineio::Sid {
        switchboard_socketio::engineio::Sid::parse(s).unwrap_or_else(|| fail(&format!("not a sid: {s}")))
    }

    /// Sockets join, leave and disconnect by selector on every node.
    pub async fn sockets_join_leave_disconnect_by_selector(setup: Setup) {
        let c = start(&setup).await;
        let mut all = clients(&c, "/", 2).await;
        for row in all.iter_mut() {
            row[0].call("join", json!("a")).await;
        }
        let io = &c.nodes[0].io;
        io.to("a").join("b").await.unwrap_or_else(|e| fail(&e));
        let last = c.nodes.len() - 1;
        wait_until("every member of a is in b", || async {
            let l = ns(&c, last, "/");
            l.adapter().sockets(&l, &to_room("b")).await.map(|v| v.len()).unwrap_or(0) == 1
        })
        .await;
        io.to("b").emit("in-b", &1).await.unwrap_or_else(|e| fail(&e));
        for row in all.iter_mut() {
            row[0].expect("in-b").await;
            row[1].expect_nothing().await;
        }
        io.broadcast().leave("b").await.unwrap_or_else(|e| fail(&e));
        wait_until("nobody is in b", || async {
            let l = ns(&c, last, "/");
            l.adapter().sockets(&l, &to_room("b")).await.map(|v| v.len()).unwrap_or(1) == 0
        })
        .await;
        // Disconnect the members of "a" (the first client of each node), everywhere.
        io.to("a").disconnect().await.unwrap_or_else(|e| fail(&e));
        for row in all.iter_mut() {
            row[0].expect_disconnected().await;
        }
        wait_until("one socket left per node", || async {
            c.nodes.iter().all(|n| n.io.of("/").map(|ns| ns.len()) == Some(1))
        })
        .await;
        io.emit("still", &1).await.unwrap_or_else(|e| fail(&e));
        for row in all.iter_mut() {
            row[1].expect("still").await;
        }
    }

    fn to_room(r: &str) -> BroadcastOptions {
        BroadcastOptions { rooms: vec![Room::from(r)], ..Default::default() }
    }

    /// Server-side events reach every other node's handler; their answers are gathered.
    pub async fn server_side_emit(setup: Setup) {
        let c = start(&setup).await;
        let others = c.nodes.len() - 1;
        let ns0 = ns(&c, 0, "/");
        let acks = ns0
            .server_side_emit_with_ack("whoami", vec![json!("q")], Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| fail(&e));
        check(acks.missing_nodes.is_empty(), &format!("every node answered: {acks:?}"));
        check(acks.responses.len() == others, &format!("one answer per other node: {acks:?}"));
        let mut nodes: Vec<u64> = acks.responses.iter().filter_map(|v| v["node"].as_u64()).collect();
        nodes.sort_unstable();
        check(nodes == (1..=others as u64).collect::<Vec<_>>(), &format!("from each other node: {nodes:?}"));
        check(acks.responses.iter().all(|v| v["args"] == json!(["q"])), "with the arguments");
        ns0.server_side_emit("whoami", vec![]).await.unwrap_or_else(|e| fail(&e));
    }

    /// all_rooms spans the nodes; server_count counts them.
    pub async fn all_rooms_and_server_count(setup: Setup) {
        let c = start(&setup).await;
        let mut all = clients(&c, "/", 1).await;
        for (i, row) in all.iter_mut().enumerate() {
            row[0].call("join", json!(format!("room-{i}"))).await;
        }
        let ns0 = ns(&c, 0, "/");
        let rooms = ns0.adapter().all_rooms(&ns0).await.unwrap_or_else(|e| fail(&e));
        for (i, row) in all.iter().enumerate() {
            check(rooms.iter().any(|r| **r == *format!("room-{i}")), &format!("room-{i} is listed: {rooms:?}"));
            check(rooms.iter().any(|r| **r == *row[0].sid), "socket id rooms are listed");
        }
        let n = ns0.adapter().server_count(&ns0).await.unwrap_or_else(|e| fail(&e));
        check(n == c.nodes.len(), "server_count");
    }

    /// Binary arguments cross nodes intact, in their places.
    pub async fn binary_broadcast(setup: Setup) {
        let c = start(&setup).await;
        let mut all = clients(&c, "/", 1).await;
        let blob = Bytes::from((0u8..=255).collect::<Vec<u8>>());
        let last = c.nodes.len() - 1;
        c.nodes[last]
            .io
            .broadcast()
            .emit_args("file", &(json!({ "name": "f" }), blob.clone(), 7))
            .await
            .unwrap_or_else(|e| fail(&e));
        for row in all.iter_mut() {
            let (_, args, bins) = row[0].expect("file").await;
            check(args[0] == json!({ "name": "f" }), "the JSON argument");
            check(args[1] == json!({ "_placeholder": true, "num": 0 }), "the placeholder in its place");
            check(args[2] == json!(7), "the argument after it");
            check(bins == vec![blob.clone()], "the bytes");
        }
    }
}

/// Instantiates every scenario of [`suite`] as a `#[tokio::test]`, with `$setup` (an async
/// expression giving `Option<Setup>`; `None` skips) run afresh for each.
#[macro_export]
macro_rules! adapter_conformance {
    ($setup:expr) => {
        $crate::adapter_conformance!(@each $setup;
            broadcast_reaches_every_socket,
            rooms_exclusions_and_local,
            broadcast_with_acks,
            fetch_sockets_and_remote_handles,
            sockets_join_leave_disconnect_by_selector,
            server_side_emit,
            all_rooms_and_server_count,
            binary_broadcast
        );
    };
    (@each $setup:expr; $($name:ident),*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(setup) = $setup.await {
                    $crate::suite::$name(setup).await;
                }
            }
        )*
    };
}
