// A Node.js socket.io server on @socket.io/redis-adapter's sharded adapter, as one node of a
// mixed cluster with Switchboard nodes, driven over stdin/stdout (one JSON command per line,
// one JSON answer per line: {"id": …, "ok": result} or {"id": …, "error": message}).
// Also holds a @socket.io/redis-emitter on the classic channels.
// Usage: node sio_redis_node.mjs REDIS_URL CHANNEL_PREFIX PORT
import { Server } from "socket.io";
import { createClient } from "redis";
import { createShardedAdapter } from "@socket.io/redis-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import readline from "node:readline";

const [redisUrl, prefix, port] = process.argv.slice(2);
const pub = createClient({ url: redisUrl });
const sub = pub.duplicate();
const emitterClient = pub.duplicate();
await Promise.all([pub.connect(), sub.connect(), emitterClient.connect()]);

const io = new Server({ adapter: createShardedAdapter(pub, sub, { channelPrefix: prefix }) });
const emitter = new Emitter(emitterClient, { key: prefix });

io.on("connection", (socket) => {
  socket.data = { node: "node", name: socket.handshake.auth?.name ?? null };
  socket.on("join", (room, cb) => { socket.join(room); if (cb) cb("joined"); });
});
// Server-side events from other nodes.
io.on("whoami", (...args) => {
  const cb = typeof args[args.length - 1] === "function" ? args.pop() : null;
  if (cb) cb({ node: "node", args });
});
io.listen(Number(port));

async function run(c) {
  switch (c.cmd) {
    case "count": return await io.of("/").adapter.serverCount();
    case "emit": {
      const target = c.room ? io.to(c.room) : io;
      const args = (c.args || []).map((a) => (a && a.$buffer ? Buffer.from(a.$buffer) : a));
      target.emit(c.event, ...args);
      return true;
    }
    case "fetch": {
      const sockets = await io.timeout(4000).fetchSockets();
      return sockets.map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data, auth: s.handshake.auth }));
    }
    case "socketsJoin": io.socketsJoin(c.room); return true;
    case "socketsLeave": io.socketsLeave(c.room); return true;
    case "disconnectSockets": io.in(c.room).disconnectSockets(true); return true;
    case "serverSideEmit": return await new Promise((resolve) => {
      io.serverSideEmit(c.event, ...(c.args || []), (err, responses) =>
        resolve({ err: err ? String(err.message || err) : null, responses }));
    });
    case "emitWithAck": return await new Promise((resolve) => {
      const target = c.room ? io.to(c.room) : io;
      target.timeout(4000).emit(c.event, ...(c.args || []), (err, responses) =>
        resolve({ err: err ? String(err.message || err) : null, responses }));
    });
    case "emitter": {
      const target = c.room ? emitter.to(c.room) : emitter;
      target.emit(c.event, ...(c.args || []));
      return true;
    }
    case "emitterJoin": emitter.in(c.room).socketsJoin(c.join); return true;
    case "localSockets": return [...io.of("/").sockets.keys()];
    default: throw new Error(`unknown command ${c.cmd}`);
  }
}

console.log(JSON.stringify({ ready: true }));
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  let c;
  try { c = JSON.parse(line); } catch { return; }
  try { console.log(JSON.stringify({ id: c.id, ok: await run(c) })); }
  catch (e) { console.log(JSON.stringify({ id: c.id, error: String(e.stack || e) })); }
});
rl.on("close", () => process.exit(0));
