// socket.io-client (polling, then the upgrade to WebSocket) as a chat member of a clustered hub,
// driven over stdin/stdout like interop/py/cluster_chat.py.
// Usage: node cluster_chat.mjs URL TOKEN NAME
import { io } from "socket.io-client";
import readline from "node:readline";

const [url, token, name] = process.argv.slice(2);
const s = io(url, { transports: ["polling", "websocket"], auth: { token }, reconnection: false, forceNew: true });
s.on("my reply", (m) => console.log(`got ${m?.data?.name} ${m?.data?.text}`));
s.on("notification", (d) => console.log(`notification ${JSON.stringify(d)}`));
s.on("whoami", (d, cb) => { console.log(`call ${JSON.stringify(d)}`); cb({ name, asked: d }); });
s.on("connect_error", (e) => { console.log(`connect_error ${e.message}`); process.exit(1); });
s.on("connect", async () => {
  const r = await s.timeout(10000).emitWithAck("subscribe", { room: "chat:users" });
  if (!r?.ok) { console.log(`subscribe failed ${JSON.stringify(r)}`); process.exit(1); }
  // Wait for the upgrade so the chat runs over WebSocket (through another node, maybe).
  const t0 = Date.now();
  while (s.io.engine.transport.name !== "websocket" && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
  console.log(`ready ${s.id} ${s.io.engine.transport.name}`);
});
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  if (line.startsWith("say ")) {
    const r = await s.timeout(10000).emitWithAck("publish", { room: "chat:users", event: "my reply", data: { name, text: line.slice(4) } });
    console.log(`published ${JSON.stringify(r)}`);
  } else if (line === "quit") {
    console.log(`transport ${s.io.engine.transport.name}`);
    s.disconnect();
    process.exit(0);
  }
});
