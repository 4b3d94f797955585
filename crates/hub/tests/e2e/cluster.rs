//! Three `switchboard serve` processes behind a real nginx (plain round-robin, no sticky
//! sessions), on Redis and on NATS (one scenario, run once per broker): python-socketio
//! (polling and websocket), socket.io-client (polling, then the upgrade) and `/ws` clients
//! spread over the nodes run the seeds' chat across nodes; the backend pushes to a user through
//! a node that holds none of their clients, calls a client on another node, and lists everyone.
//! Then a node is `kill -9`ed, and the broker goes away and comes back.

use super::*;

/// The broker under the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bus {
    Redis,
    Nats,
}

impl Bus {
    /// Whether the machine's broker answers (Redis at 6379, NATS at 4222), with the skip rule.
    fn available(self) -> bool {
        match self {
            Bus::Redis => switchboard_test_support::service_available("Redis", "127.0.0.1:6379"),
            Bus::Nats => switchboard_test_support::service_available("NATS", "127.0.0.1:4222"),
        }
    }

    /// `serve` flags that put a hub on this bus at `port` (the machine's broker: `None`), under
    /// `prefix`.
    fn args(self, port: Option<u16>, prefix: &str) -> Vec<String> {
        let v: Vec<String> = match self {
            Bus::Redis => vec![
                "--cluster-adapter".into(),
                "redis".into(),
                "--redis-url".into(),
                format!("redis://127.0.0.1:{}", port.unwrap_or(6379)),
                "--channel-prefix".into(),
                prefix.into(),
            ],
            Bus::Nats => vec![
                "--cluster-adapter".into(),
                "nats".into(),
                "--nats-url".into(),
                format!("nats://127.0.0.1:{}", port.unwrap_or(4222)),
                "--nats-subject-prefix".into(),
                prefix.into(),
            ],
        };
        v
    }

    /// A prefix no other test uses.
    fn fresh_prefix(self, what: &str) -> String {
        match self {
            Bus::Redis => format!("sb{what}-{}", rand::random::<u64>()),
            Bus::Nats => format!("sb{what}.p{}", rand::random::<u64>()),
        }
    }

    /// A broker of this kind of the test's own, for tests that stop it.
    fn start_own(self) -> Option<switchboard_test_support::ServerProcess> {
        match self {
            Bus::Redis => switchboard_test_support::start_redis(),
            Bus::Nats => switchboard_test_support::start_nats(),
        }
    }
}

/// One test per broker of a scenario `async fn(Bus)`.
macro_rules! per_bus {
    ($scenario:ident: $redis:ident, $nats:ident) => {
        #[tokio::test]
        async fn $redis() {
            $scenario(Bus::Redis).await;
        }

        #[tokio::test]
        async fn $nats() {
            $scenario(Bus::Nats).await;
        }
    };
}

/// Hub flags: `bus` args, then `extra`.
fn hub_args<'a>(bus: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    bus.iter().map(String::as_str).chain(extra.iter().copied()).collect()
}

/// Three hubs on one broker (a fresh prefix), fast heartbeats.
async fn three_hubs(bus: Bus) -> Vec<Hub> {
    let bus_args = bus.args(None, &bus.fresh_prefix("e2e"));
    let mut hubs = Vec::new();
    for i in 0..3 {
        let name = format!("n{i}");
        let args = hub_args(&bus_args, &["--node-name", name.as_str()]);
        let cfg = "[cluster]\nheartbeat_interval_ms = 500\nheartbeat_timeout_ms = 2000\nrequest_timeout_ms = 6000\n";
        hubs.push(Hub::start(&args, cfg).await);
    }
    // Every node sees the others.
    for h in &hubs {
        let mut ok = false;
        for _ in 0..100 {
            let (_, r) = h.api("GET", "/api/nodes", Value::Null).await;
            if r["nodes"].as_array().is_some_and(|n| n.len() == 3) && r["healthy"] == json!(true) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "the nodes did not find each other");
    }
    hubs
}

/// A chat member driven over stdin/stdout (interop/py/cluster_chat.py, interop/node/cluster_chat.mjs).
struct Member {
    name: String,
    _child: Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    log: Vec<String>,
}

impl Member {
    async fn spawn(mut cmd: Command, name: &str) -> Member {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut m = Member { name: name.to_owned(), _child: child, stdin, lines, log: Vec::new() };
        let ready = m.line_starting("ready ").await;
        m.log.push(ready);
        m
    }

    async fn python(url: &str, transport: &str, name: &str) -> Member {
        let mut cmd = Command::new("python3");
        cmd.arg(interop_dir().join("py/cluster_chat.py")).args([url, &token(name, 600, &[]), transport, name]);
        Member::spawn(cmd, name).await
    }

    async fn node(url: &str, name: &str) -> Member {
        let mut cmd = Command::new("node");
        cmd.arg(interop_dir().join("node/cluster_chat.mjs"))
            .args([url, &token(name, 600, &[]), name])
            .current_dir(interop_dir());
        Member::spawn(cmd, name).await
    }

    async fn line_starting(&mut self, prefix: &str) -> String {
        loop {
            let l = tokio::time::timeout(Duration::from_secs(15), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("{}: no line starting with {prefix:?}; so far {:?}", self.name, self.log))
                .unwrap()
                .unwrap_or_else(|| panic!("{}: ended; so far {:?}", self.name, self.log));
            if l.starts_with(prefix) {
                return l;
            }
            self.log.push(l);
        }
    }

    async fn send(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }

    /// Reads for `d` and keeps what came.
    async fn drain(&mut self, d: Duration) {
        let end = tokio::time::Instant::now() + d;
        while let Ok(Ok(Some(l))) = tokio::time::timeout_at(end, self.lines.next_line()).await {
            self.log.push(l);
        }
    }

    fn got(&self) -> Vec<String> {
        self.log.iter().filter(|l| l.starts_with("got ")).cloned().collect()
    }
}

/// A `/ws` chat member.
struct WsMember {
    name: String,
    ws: Ws,
    got: Vec<String>,
    id: String,
}

impl WsMember {
    async fn connect(addr: SocketAddr, name: &str) -> WsMember {
        let mut ws =
            ClientBuilder::new(format!("ws://{addr}/ws?token={}", token(name, 600, &[]))).connect().await.unwrap();
        let welcome: Value = serde_json::from_str(&until(&mut ws, "\"welcome\"").await).unwrap();
        ws.send(Message::text(json!({"type": "subscribe", "room": "chat:users", "id": 1}).to_string())).await.unwrap();
        let r = until(&mut ws, "\"reply\"").await;
        assert!(r.contains("\"ok\":true"), "{r}");
        WsMember { name: name.to_owned(), ws, got: Vec::new(), id: welcome["id"].as_str().unwrap().to_owned() }
    }

    async fn say(&mut self, text: &str) {
        let m = json!({"type": "publish", "room": "chat:users", "event": "my reply", "data": {"name": self.name, "text": text}, "id": 2});
        self.ws.send(Message::text(m.to_string())).await.unwrap();
    }

    /// Reads for `d`: chat lines kept, calls answered.
    async fn drain(&mut self, d: Duration) {
        let end = tokio::time::Instant::now() + d;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end, self.ws.recv()).await {
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
            match v["type"].as_str() {
                Some("event") if v["event"] == "my reply" => {
                    let d = &v["data"]["data"];
                    self.got.push(format!(
                        "got {} {}",
                        d["name"].as_str().unwrap_or(""),
                        d["text"].as_str().unwrap_or("")
                    ));
                }
                Some("call") => {
                    let a = json!({"type": "ack", "id": v["id"], "data": {"name": self.name, "asked": v["data"]}});
                    self.ws.send(Message::text(a.to_string())).await.unwrap();
                }
                _ => {}
            }
        }
    }
}

per_bus!(one_hub_behind_nginx: three_hubs_on_redis_behind_round_robin_nginx_are_one_hub, three_hubs_on_nats_behind_round_robin_nginx_are_one_hub);

async fn one_hub_behind_nginx(bus: Bus) {
    if !bus.available()
        || !peer_available("nginx", "nginx", &["-v"])
        || !peer_available("python-socketio (pip)", "python3", &["-c", "import socketio, requests, websocket"])
        || !peer_available("socket.io-client (npm)", "node", &["-e", "require('socket.io-client')"])
    {
        return;
    }
    let hubs = three_hubs(bus).await;
    let (_nginx, front) = nginx(&hubs.iter().map(|h| h.addr).collect::<Vec<_>>()).await;
    let url = format!("http://{front}");
    // Through nginx, whichever node each request lands on: polling without sticky sessions.
    let mut members = [
        Member::python(&url, "polling", "bob").await,
        Member::python(&url, "polling", "carol").await,
        Member::python(&url, "websocket", "dave").await,
        Member::node(&url, "erin").await,
    ];
    assert!(members[3].log[0].ends_with(" websocket"), "socket.io-client upgraded: {:?}", members[3].log);
    // alice straight on node 0; frank through nginx.
    let mut ws = vec![WsMember::connect(hubs[0].addr, "alice").await, WsMember::connect(front, "frank").await];

    // Everyone is listed, on every node, with their node; they are spread over the nodes.
    let (s, list) = hubs[1].api("GET", "/api/sockets", Value::Null).await;
    assert_eq!(s, 200, "{list}");
    let clients = list["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 6, "{list}");
    let nodes: std::collections::HashSet<&str> = clients.iter().filter_map(|c| c["node"].as_str()).collect();
    assert!(nodes.len() >= 2, "round-robin spreads the clients: {list}");
    let alice = clients.iter().find(|c| c["user"] == "alice").unwrap();
    assert_eq!((alice["node"].as_str(), alice["transport"].as_str()), (Some("n0"), Some("ws")), "{alice}");
    assert!(alice["rooms"].as_array().unwrap().contains(&json!("chat:users")), "{alice}");

    // The seeds' chat: each says one line; everyone else gets it once.
    for (i, m) in members.iter_mut().enumerate() {
        m.send(&format!("say hello from {i}")).await;
        let p = m.line_starting("published ").await;
        assert!(p.contains("\"ok\": true") || p.contains("\"ok\":true"), "{}: {p}", m.name);
    }
    for w in ws.iter_mut() {
        let name = w.name.clone();
        w.say(&format!("hello from {name}")).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for m in members.iter_mut() {
        m.drain(Duration::from_millis(700)).await;
    }
    for w in ws.iter_mut() {
        w.drain(Duration::from_millis(700)).await;
    }
    let mut said: Vec<String> = (0..4).map(|i| format!("hello from {i}")).collect();
    said.push("hello from alice".into());
    said.push("hello from frank".into());
    let names = ["bob", "carol", "dave", "erin"];
    let check = |who: &str, own: &str, got: Vec<String>| {
        let mut texts: Vec<String> = got.iter().map(|g| g.splitn(3, ' ').nth(2).unwrap_or("").to_owned()).collect();
        texts.sort();
        let mut want: Vec<String> = said.iter().filter(|t| t.as_str() != own).cloned().collect();
        want.sort();
        assert_eq!(texts, want, "{who}: nothing lost, nothing duplicated, not its own: {got:?}");
    };
    for (i, m) in members.iter().enumerate() {
        check(names[i], &format!("hello from {i}"), m.got());
    }
    for w in &ws {
        check(&w.name, &format!("hello from {}", w.name), w.got.clone());
    }

    // A push to user:alice through a node that holds none of alice's clients.
    let (s, r) =
        hubs[1].api("POST", "/api/emit", json!({"event": "notification", "users": ["alice"], "data": {"n": 1}})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["delivered"], json!(1), "{r}");
    assert_eq!(r["nodes"]["n0"], json!(1), "{r}");
    assert_eq!(r["missing_nodes"], json!([]), "{r}");
    let n = until(&mut ws[0].ws, "notification").await;
    assert!(n.contains("\"n\":1"), "{n}");
    // A room push counted on every node.
    let (s, r) = hubs[2]
        .api("POST", "/api/emit", json!({"event": "notification", "rooms": ["chat:users"], "data": {"n": 2}}))
        .await;
    assert_eq!((s, &r["delivered"]), (200, &json!(6)), "{r}");

    // Calls to clients on other nodes: a python client (by user) and alice's /ws client (by id).
    let (s, r) = hubs[2]
        .api("POST", "/api/call", json!({"user": "bob", "event": "whoami", "data": {"q": 1}, "timeout_ms": 5000}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["data"], json!({"name": "bob", "asked": {"q": 1}}), "{r}");
    let call =
        spawn_call(hubs[1].addr, json!({"to": ws[0].id, "event": "whoami", "data": {"q": 2}, "timeout_ms": 5000}));
    ws[0].drain(Duration::from_millis(1500)).await;
    let (s, body) = call.await.unwrap();
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"name\":\"alice\""), "{body}");
    // A publish with acks gathered across nodes: every member answers whoami.
    let ack_call = tokio::spawn({
        let addr = hubs[2].addr;
        async move {
            http(
                addr,
                "POST",
                "/api/emit",
                &[("Authorization", &format!("Bearer {API_KEY}"))],
                &json!({"event": "whoami", "rooms": ["chat:users"], "data": {"q": 3}, "ack": true, "timeout_ms": 5000}),
            )
            .await
        }
    });
    for w in ws.iter_mut() {
        w.drain(Duration::from_millis(1500)).await;
    }
    let (s, body) = ack_call.await.unwrap();
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s, 200, "{r}");
    assert_eq!((&r["ok"], &r["delivered"], &r["missing"]), (&json!(true), &json!(6), &json!(0)), "{r}");
    let mut names: Vec<&str> = r["acks"].as_array().unwrap().iter().filter_map(|a| a["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bob", "carol", "dave", "erin", "frank"], "{r}");

    // Join, leave and disconnect by id, wherever the client is.
    let dave = clients.iter().find(|c| c["user"] == "dave").unwrap()["id"].as_str().unwrap().to_owned();
    let (s, r) = hubs[0].api("POST", "/api/join", json!({"ids": [dave], "room": "news"})).await;
    assert_eq!((s, &r["joined"]), (200, &json!(1)), "{r}");
    // The join travels to dave's node on the bus, unordered with the listing another node
    // sends (as Node's socketsJoin): it shows within moments.
    let mut r = Value::Null;
    for _ in 0..50 {
        r = hubs[2].api("GET", "/api/sockets?room=news", Value::Null).await.1;
        if r["clients"].as_array().map(Vec::len) == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(r["clients"].as_array().map(Vec::len), Some(1), "{r}");
    let (s, r) = hubs[1].api("POST", "/api/disconnect", json!({"ids": [dave]})).await;
    assert_eq!((s, &r["disconnected"]), (200, &json!(1)), "{r}");
    let d = members[2].line_starting("disconnected").await;
    assert!(d.contains("server"), "dave is told the server disconnected it: {d}");

    // Polling requests and the upgrade that landed on other nodes were forwarded to the owner.
    let mut forwarded = 0u64;
    for h in &hubs {
        let m = http(h.addr, "GET", "/metrics", &[], &Value::Null).await.1;
        forwarded += m
            .lines()
            .find_map(|l| l.strip_prefix("switchboard_forwarded_requests_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    assert!(forwarded > 0, "no request was forwarded: round-robin did not exercise the owner forwarding");

    // Everyone else leaves cleanly, on the transport they ended on.
    for (i, m) in members.iter_mut().enumerate() {
        if i == 2 {
            continue;
        }
        m.send("quit").await;
        let t = m.line_starting("transport ").await;
        let want = if i < 2 { "polling" } else { "websocket" };
        assert!(t.ends_with(want), "{}: {t}", m.name);
    }
}

// Two processes share one port (`server.reuse_port`), each a node: a polling client through
// the shared port works whichever process each request reaches (forwarded to the owner on
// its own advertised address), gets a push and answers a call.
per_bus!(reuse_port_nodes: processes_sharing_a_port_with_reuse_port_are_nodes_of_one_hub_on_redis, processes_sharing_a_port_with_reuse_port_are_nodes_of_one_hub_on_nats);

async fn reuse_port_nodes(bus: Bus) {
    if !bus.available()
        || !peer_available("python-socketio (pip)", "python3", &["-c", "import socketio, requests, websocket"])
    {
        return;
    }
    let bus_args = bus.args(None, &bus.fresh_prefix("reuse"));
    let port = free_port();
    let mut hubs = Vec::new();
    for i in 0..2 {
        let name = format!("r{i}");
        let args = hub_args(&bus_args, &["--reuse-port", "true", "--node-name", name.as_str()]);
        hubs.push(
            Hub::start_on(port, &args, "[cluster]\nheartbeat_interval_ms = 500\nheartbeat_timeout_ms = 2000\n", None)
                .await,
        );
    }
    let mut both = false;
    for _ in 0..100 {
        let (_, r) = hubs[0].api("GET", "/api/nodes", Value::Null).await;
        if r["nodes"].as_array().is_some_and(|n| n.len() == 2) {
            both = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(both, "the two processes on one port did not become one cluster");
    for title in ["one", "two", "three"] {
        python_push_and_call(&hubs[0], &hubs[0].url(), "polling", title).await;
    }
}

per_bus!(killed_node: a_killed_node_leaves_the_redis_cluster_and_requests_stop_waiting_for_it, a_killed_node_leaves_the_nats_cluster_and_requests_stop_waiting_for_it);

async fn killed_node(bus: Bus) {
    if !bus.available() {
        return;
    }
    let mut hubs = three_hubs(bus).await;
    let _a = WsMember::connect(hubs[0].addr, "a").await;
    let _c = WsMember::connect(hubs[2].addr, "c").await;
    let (_, r) = hubs[0].api("GET", "/api/sockets", Value::Null).await;
    assert_eq!(r["clients"].as_array().map(Vec::len), Some(2), "{r}");
    // kill -9: no goodbye.
    hubs[2].child.start_kill().unwrap();
    let _ = hubs[2].child.wait().await;
    // Redis counts subscribers, so the node is gone from the count at once; NATS does not, so
    // a listing waits for it until its heartbeat times out (2 s here), not until the request
    // timeout (6 s). Either way the listing does not show its client.
    let t0 = std::time::Instant::now();
    let (s, r) = hubs[0].api("GET", "/api/sockets", Value::Null).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["clients"].as_array().map(Vec::len), Some(1), "{r}");
    let limit = if bus == Bus::Redis { Duration::from_secs(2) } else { Duration::from_secs(5) };
    assert!(t0.elapsed() < limit, "the listing waited {:?}", t0.elapsed());
    // Removed from the node list after the heartbeat timeout (2 s here).
    let mut gone = false;
    for _ in 0..60 {
        let (_, r) = hubs[1].api("GET", "/api/nodes", Value::Null).await;
        if r["nodes"].as_array().is_some_and(|n| n.len() == 2) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the killed node is still listed");
    // Publishes go on, counted on the live nodes, none missing.
    let (s, r) = hubs[1].api("POST", "/api/emit", json!({"event": "notification", "data": 1})).await;
    assert_eq!((s, &r["delivered"], &r["missing_nodes"]), (200, &json!(1), &json!([])), "{r}");
    let m = http(hubs[0].addr, "GET", "/metrics", &[], &Value::Null).await.1;
    assert!(m.contains("switchboard_bus_nodes 2"), "{m}");
}

// The broker goes away under two hubs and comes back (security: C1–C3): local delivery goes
// on, cross-node operations answer 502 instead of pretending, the metrics and `/api/nodes`
// say so; once the broker is back the nodes resubscribe, the probe passes, and everything
// works again.
per_bus!(broker_outage: redis_outage_fails_loudly_and_heals, nats_outage_fails_loudly_and_heals);

async fn broker_outage(bus: Bus) {
    let Some(broker) = tokio::task::spawn_blocking(move || bus.start_own()).await.unwrap() else {
        return;
    };
    let bus_args = bus.args(Some(broker.port), &bus.fresh_prefix("outage"));
    let mut hubs = Vec::new();
    for i in 0..2 {
        let name = format!("o{i}");
        let args = hub_args(&bus_args, &["--node-name", name.as_str()]);
        let cfg = "[cluster]\nheartbeat_interval_ms = 300\nheartbeat_timeout_ms = 5000\nrequest_timeout_ms = 2000\n";
        hubs.push(Hub::start(&args, cfg).await);
    }
    let healthy = |h: &Hub| {
        let addr = h.addr;
        async move {
            let (_, b) =
                http(addr, "GET", "/api/nodes", &[("Authorization", &format!("Bearer {API_KEY}"))], &Value::Null).await;
            serde_json::from_str::<Value>(&b)
                .map(|v| (v["healthy"] == json!(true), v["nodes"].as_array().map_or(0, Vec::len)))
                .unwrap_or((false, 0))
        }
    };
    for _ in 0..100 {
        if healthy(&hubs[0]).await == (true, 2) && healthy(&hubs[1]).await == (true, 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut a = ws_client(hubs[0].addr, &token("a", 600, &[])).await;
    let mut b = ws_client(hubs[1].addr, &token("b", 600, &[])).await;
    let (s, r) = hubs[0].api("POST", "/api/emit", json!({"event": "notification", "data": 1})).await;
    assert_eq!((s, &r["delivered"]), (200, &json!(2)), "{r}");
    until(&mut a, "notification").await;
    until(&mut b, "notification").await;

    let mut broker = broker;
    broker = tokio::task::spawn_blocking(move || {
        broker.kill();
        broker
    })
    .await
    .unwrap();
    // (The client may take a moment to see the connection gone.)
    let mut answer = (0, Value::Null);
    for _ in 0..50 {
        answer = hubs[0].api("POST", "/api/emit", json!({"event": "notification", "data": 2})).await;
        if answer.0 == 502 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, r) = answer;
    assert_eq!(s, 502, "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains("only this node's clients"), "{r}");
    // The local client still got it (C3).
    assert!(until(&mut a, "notification").await.contains("\"data\":2"));
    let (s, r) = hubs[1].api("GET", "/api/sockets", Value::Null).await;
    assert_eq!(s, 502, "{r}");
    let mut noticed = false;
    for _ in 0..50 {
        if !healthy(&hubs[0]).await.0 {
            noticed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(noticed, "/api/nodes still says healthy");
    let m = http(hubs[0].addr, "GET", "/metrics", &[], &Value::Null).await.1;
    assert!(m.contains("switchboard_bus_healthy 0"), "{m}");
    assert!(!m.contains("switchboard_bus_publish_errors_total 0\n"), "{m}");

    let _broker = tokio::task::spawn_blocking(move || {
        let mut broker = broker;
        broker.restart();
        broker
    })
    .await
    .unwrap();
    let mut back = false;
    for _ in 0..150 {
        if healthy(&hubs[0]).await.0 && healthy(&hubs[1]).await.0 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the nodes did not recover");
    let (s, r) = hubs[1].api("POST", "/api/emit", json!({"event": "notification", "data": 3})).await;
    assert_eq!((s, &r["delivered"], &r["missing_nodes"]), (200, &json!(2), &json!([])), "{r}");
    // Before it: a's other local copies of the outage's publishes, and (NATS) what the broker
    // client had accepted before it noticed the outage, delivered late.
    for ws in [&mut a, &mut b] {
        loop {
            let m = until(ws, "notification").await;
            if m.contains("\"data\":3") {
                break;
            }
            assert!(m.contains("\"data\":2"), "{m}");
        }
    }
    let m = http(hubs[1].addr, "GET", "/metrics", &[], &Value::Null).await.1;
    assert!(!m.contains("switchboard_bus_reconnects_total 0\n"), "{m}");
    assert!(!m.contains("switchboard_bus_disconnects_total 0\n"), "{m}");
    // /api/nodes says what happened to the bus.
    let (_, r) = hubs[1].api("GET", "/api/nodes", Value::Null).await;
    assert!(r["bus"]["disconnects"].as_u64().unwrap_or(0) >= 1, "{r}");
    assert!(r["bus"]["reconnects"].as_u64().unwrap_or(0) >= 1, "{r}");
    assert!(r["bus"].get("last_loss_ms_ago").is_some(), "{r}");
}

/// `serve` on a free port with the given flags, expected to exit: (exit code, stderr).
async fn serve_fails(args: &[&str]) -> (Option<i32>, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut all = vec!["--listen", listen.as_str()];
    all.extend_from_slice(args);
    let (code, _, err) = tokio::time::timeout(Duration::from_secs(20), serve_once(&all, &[("RUST_LOG", "off")]))
        .await
        .expect("serve did not exit");
    (code, err)
}

/// A NATS server that wants TLS (a CA of the test's) and a user and password: two hubs join it
/// with `nats_tls_ca_file` and the credentials and are one hub; a wrong password, or no CA,
/// stops `serve` at start-up with an error that names the setting and the cause (and never
/// the password).
#[tokio::test]
async fn nats_credentials_and_tls() {
    if !switchboard_test_support::program_available("NATS", "nats-server") {
        return;
    }
    let dir = temp_dir();
    let (cert, key, ca) = rcgen_cert(&dir.0);
    let port = switchboard_test_support::free_port_pair();
    let args: Vec<String> = [
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--user",
        "sb",
        "--pass",
        "s3cret-pw",
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _nats =
        tokio::task::spawn_blocking(move || switchboard_test_support::ServerProcess::start("nats-server", &args, port))
            .await
            .unwrap();
    let url = format!("tls://localhost:{port}");
    let config = format!(
        "[cluster]\nnats_tls_ca_file = {:?}\nheartbeat_interval_ms = 300\nheartbeat_timeout_ms = 2000\n",
        ca.to_str().unwrap()
    );
    // The NATS flags with a password.
    let with_password = |pw: &'static str| {
        let mut v = vec!["--cluster-adapter", "nats", "--nats-url", url.as_str(), "--nats-user", "sb"];
        v.extend(["--nats-password", pw]);
        v
    };
    let mut hubs = Vec::new();
    for i in 0..2 {
        let name = format!("t{i}");
        let mut extra = with_password("s3cret-pw");
        extra.extend(["--node-name", name.as_str()]);
        hubs.push(Hub::start(&extra, &config).await);
    }
    let mut joined = false;
    for _ in 0..100 {
        let (_, r) = hubs[0].api("GET", "/api/nodes", Value::Null).await;
        if r["nodes"].as_array().is_some_and(|n| n.len() == 2) && r["healthy"] == json!(true) {
            assert_eq!(r["adapter"], json!("nats"), "{r}");
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(joined, "the hubs did not become one cluster over TLS");
    let mut b = ws_client(hubs[1].addr, &token("b", 600, &[])).await;
    let (s, r) = hubs[0].api("POST", "/api/emit", json!({"event": "notification", "users": ["b"], "data": 1})).await;
    assert_eq!((s, &r["delivered"]), (200, &json!(1)), "{r}");
    until(&mut b, "notification").await;

    // A wrong password: refused at start-up, the password not printed.
    let ca_file = format!("[cluster]\nnats_tls_ca_file = {:?}\n", ca.to_str().unwrap());
    let cfg_path = dir.0.join("bad.toml");
    std::fs::write(&cfg_path, &ca_file).unwrap();
    let mut bad = with_password("wrong-pw");
    bad.extend(["--config", cfg_path.to_str().unwrap()]);
    let (code, err) = serve_fails(&bad).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cluster.nats_url") && err.to_lowercase().contains("author"), "{err}");
    assert!(!err.contains("wrong-pw"), "{err}");
    // No CA for the server's certificate: refused, and it says why.
    let (code, err) = serve_fails(&with_password("s3cret-pw")).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cluster.nats_url"), "{err}");
    // Two credentials at once: a configuration error naming the fields.
    let (code, err) =
        serve_fails(&["--cluster-adapter", "nats", "--nats-user", "sb", "--nats-password", "x", "--nats-token", "t"])
            .await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("one NATS credential"), "{err}");
    let (code, err) = serve_fails(&["--cluster-adapter", "nats", "--nats-subject-prefix", "a.>"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cluster.nats_subject_prefix"), "{err}");
}

/// The node (name) that holds user `user`'s Socket.IO client, asked of `hub`.
async fn node_of(hub: &Hub, user: &str) -> Option<String> {
    let (_, r) = hub.api("GET", "/api/sockets", Value::Null).await;
    let clients = r["clients"].as_array()?;
    let c = clients.iter().find(|c| c["user"] == user && c["transport"] != "ws")?;
    c["node"].as_str().map(str::to_owned)
}

// Connection state recovery across nodes (issue "Recovery"; security: C6, A3), on Redis
// (Streams) and on NATS (JetStream): two hubs behind round-robin nginx with recovery on (the
// default); socket.io-client loses its connection on one node and comes back through nginx on
// the other, then its node is kill -9ed mid-stream: both times it gets its id and every push
// once and in order, and another user cannot take its session.
per_bus!(recovery_across_nodes: socket_io_clients_recover_across_redis_nodes_and_after_kill_9, socket_io_clients_recover_across_nats_nodes_and_after_kill_9);

async fn recovery_across_nodes(bus: Bus) {
    if !bus.available()
        || !peer_available("nginx", "nginx", &["-v"])
        || !peer_available("socket.io-client (npm)", "node", &["-e", "require('socket.io-client')"])
    {
        return;
    }
    let prefix = bus.fresh_prefix("rec");
    let bus_args = bus.args(None, &prefix);
    let stream = format!("SBE2E_{}", rand::random::<u64>());
    let cfg = format!(
        "[cluster]\nheartbeat_interval_ms = 500\nheartbeat_timeout_ms = 2000\nrequest_timeout_ms = 3000\n\
         [recovery]\nredis_stream = \"{prefix}-stream\"\nredis_session_prefix = \"{prefix}:session:\"\n\
         nats_stream = \"{stream}\"\n"
    );
    let mut hubs = Vec::new();
    for name in ["n0", "n1"] {
        hubs.push(Hub::start(&hub_args(&bus_args, &["--node-name", name]), &cfg).await);
    }
    let (_nginx, front) = nginx(&hubs.iter().map(|h| h.addr).collect::<Vec<_>>()).await;
    let url = format!("http://{front}");
    let mut cmd = Command::new("node");
    cmd.arg(interop_dir().join("node/hub_recovery_cluster.mjs"))
        .args([url.as_str(), &token("a", 600, &[]), &token("b", 600, &[]), API_KEY])
        .current_dir(interop_dir());
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut m = Member { name: "a".into(), _child: child, stdin, lines, log: Vec::new() };
    let node_url = |i: usize| format!("http://{}", hubs[i].addr);
    let index = |name: &str| usize::from(name == "n1");

    // 1. The transport drops; the reconnection goes through nginx to the other node.
    m.line_starting("on ").await;
    let first = node_of(&hubs[0], "a").await.expect("the client is listed");
    let other = 1 - index(&first);
    m.send(&format!("push {}", node_url(other))).await;
    m.line_starting("on ").await;
    let second = node_of(&hubs[0], "a").await.expect("the client is listed again");
    assert_ne!(first, second, "round-robin nginx moved the client to the other node; log {:?}", m.log);

    // 2. Its node is killed (no goodbye, no session saved at disconnect) while pushes go on
    //    through the other node.
    let victim = index(&second);
    let survivor = 1 - victim;
    m.send(&format!("crash {}", node_url(survivor))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    hubs[victim].child.start_kill().unwrap();
    let _ = hubs[victim].child.wait().await;
    m.line_starting("on ").await;
    assert_eq!(node_of(&hubs[survivor], "a").await.as_deref(), Some(["n0", "n1"][survivor]));
    m.send("end").await;
    m.drain(Duration::from_secs(10)).await;
    println!("{}", m.log.join("\n"));
    assert!(m.log.iter().any(|l| l.ends_with(" 0 failed")), "{:?}", m.log);
    assert!(!m.log.iter().any(|l| l.starts_with("FAIL")), "{:?}", m.log);
}

// `/ws` positions on a hub whose log is in the broker (Redis Streams, JetStream): the replay is
// read over the network while the live events keep coming, so the merge is exercised.
per_bus!(ws_since_on_bus: ws_subscribe_since_merges_with_live_traffic_on_redis, ws_subscribe_since_merges_with_live_traffic_on_nats);

async fn ws_since_on_bus(bus: Bus) {
    if !bus.available() {
        return;
    }
    let prefix = bus.fresh_prefix("wss");
    let bus_args = bus.args(None, &prefix);
    let cfg = format!(
        "{WS_SINCE_CFG}[recovery]\nredis_stream = \"{prefix}-stream\"\nnats_stream = \"SBWS_{}\"\n",
        rand::random::<u64>()
    );
    let hub = Hub::start(&hub_args(&bus_args, &[]), &cfg).await;
    ws_since_scenario(&hub).await;
}
