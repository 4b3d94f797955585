// The Socket.IO benchmark server on Node socket.io 4.8 (same protocol as
// crates/bench/examples/sio_switchboard_server.rs). Usage: node sio_node_server.js PORT [REDIS_URL PREFIX]
// With a Redis URL the server is a node of a cluster (@socket.io/redis-adapter, sharded; with
// SB_RECOVERY=1, @socket.io/redis-streams-adapter with connection state recovery).
const path = require("path");
const nm = path.join(__dirname, "../interop/node_modules");
const { Server } = require(path.join(nm, "socket.io"));
const port = Number(process.argv[2] || 7003);
const redisUrl = process.argv[3];
const prefix = process.argv[4] || "socket.io";

function handlers(io) {
  io.on("connection", (s) => {
    s.on("join", (ack) => { s.join("bench"); ack(true); });
    s.on("echo", (v, ack) => ack(v));
    s.on("blast", ({ count, size }, ack) => {
      const payload = "x".repeat(size);
      for (let i = 0; i < count; i++) io.to("bench").emit("tick", payload);
      if (typeof ack === "function") ack(true);
    });
  });
}

(async () => {
  let opts = { transports: ["websocket", "polling"] };
  // SB_RECOVERY=1: connection state recovery (the in-memory SessionAwareAdapter).
  if (process.env.SB_RECOVERY === "1") opts.connectionStateRecovery = {};
  if (redisUrl && process.env.SB_RECOVERY === "1") {
    // With recovery in a cluster: @socket.io/redis-streams-adapter (the only Redis adapter
    // with connection state recovery).
    const { createClient } = require(path.join(nm, "redis"));
    const { createAdapter } = require(path.join(nm, "@socket.io/redis-streams-adapter"));
    const client = createClient({ url: redisUrl });
    await client.connect();
    opts.adapter = createAdapter(client, { channelPrefix: prefix });
  } else if (redisUrl) {
    const { createClient } = require(path.join(nm, "redis"));
    const { createShardedAdapter } = require(path.join(nm, "@socket.io/redis-adapter"));
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    opts.adapter = createShardedAdapter(pub, sub, { channelPrefix: prefix });
  }
  const io = new Server(port, opts);
  handlers(io);
  console.log(port);
})();
