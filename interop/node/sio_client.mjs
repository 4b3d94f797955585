// socket.io-client (the official JS client) against our Socket.IO server.
// Usage: node sio_client.mjs URL HEARTBEAT_URL MODE   (MODE: polling | websocket | upgrade)
// Prints one line per check and "N passed, M failed"; exits 1 if any failed.
import { io } from "socket.io-client";

const [url, hbUrl, mode] = process.argv.slice(2);
const transports = { polling: ["polling"], websocket: ["websocket"], upgrade: ["polling", "websocket"] }[mode];
let passed = 0, failed = 0;
const opts = (extra = {}) => ({ transports, forceNew: true, reconnection: false, timeout: 5000, ...extra });

function check(name, cond, detail = "") {
  if (cond) { passed++; console.log(`ok   ${name}`); }
  else { failed++; console.log(`FAIL ${name} ${detail}`); }
}
const once = (s, ev, ms = 5000) => new Promise((res, rej) => {
  const t = setTimeout(() => rej(new Error(`timeout waiting for ${ev}`)), ms);
  s.once(ev, (...a) => { clearTimeout(t); res(a); });
});
const none = (s, ev, ms = 400) => new Promise((res) => {
  let got = false; s.once(ev, () => { got = true; });
  setTimeout(() => res(!got), ms);
});
async function connect(path = "", extra = {}) {
  const s = io(url + path, opts(extra));
  const welcome = once(s, "welcome").catch(() => null);
  await once(s, "connect");
  return { s, welcome };
}
async function step(name, f) {
  try { await f(); } catch (e) { check(name, false, e.stack || e); }
}

await step("connect + welcome after CONNECT", async () => {
  const { s, welcome } = await connect();
  const [w] = await welcome;
  check("connect + welcome after CONNECT", w && w.sid === s.id, JSON.stringify(w));
  if (mode === "upgrade") {
    await new Promise(r => s.io.engine.transport.name === "websocket" ? r() : s.io.engine.once("upgrade", r));
    check("upgraded to websocket", s.io.engine.transport.name === "websocket");
  } else {
    check(`transport is ${transports[0]}`, s.io.engine.transport.name === transports[0]);
  }
  s.close();
});

await step("events and acks both ways", async () => {
  const { s } = await connect();
  const echoed = once(s, "echo");
  s.emit("echo", { a: 1 }, "two", 3);
  const args = await echoed;
  check("event client→server→client", JSON.stringify(args) === JSON.stringify([{ a: 1 }, "two", 3]), JSON.stringify(args));
  const ack = await s.timeout(5000).emitWithAck("echo", { b: 2 });
  check("client→server ack", JSON.stringify(ack) === JSON.stringify({ b: 2 }), JSON.stringify(ack));
  s.on("question", (q, cb) => cb({ answer: 42, q }));
  const answer = once(s, "answer");
  s.emit("ask");
  const [a] = await answer;
  check("server→client ack", JSON.stringify(a) === JSON.stringify({ ok: [{ answer: 42, q: { q: "life" } }] }), JSON.stringify(a));
  const msg = once(s, "message");
  s.send("hello");
  check("send / message", (await msg)[0] === "hello");
  // Many events in one burst: all processed, in order.
  const got = [];
  s.on("echo", (n) => got.push(n));
  for (let i = 0; i < 200; i++) s.emit("echo", i);
  await new Promise(r => { const t = setInterval(() => { if (got.length >= 200) { clearInterval(t); r(); } }, 20); setTimeout(() => { clearInterval(t); r(); }, 5000); });
  check("200 events in a burst, in order", got.length === 200 && got.every((v, i) => v === i), `${got.length}`);
  s.close();
});

await step("binary", async () => {
  const { s } = await connect();
  const buf = Buffer.from([0, 1, 2, 250, 255]);
  const echoed = once(s, "echo");
  s.emit("echo", { name: "file" }, buf);
  const [meta, bin] = await echoed;
  check("binary event round trip", meta.name === "file" && Buffer.isBuffer(bin) && bin.equals(buf), JSON.stringify([meta, bin]));
  const big = Buffer.alloc(200000, 7);
  const ack = await s.timeout(5000).emitWithAck("echo", big);
  check("binary ack (200 kB)", Buffer.isBuffer(ack) && ack.equals(big));
  // Binary between JSON arguments comes back in the same place.
  const mid = once(s, "echo");
  s.emit("echo", 1, buf, { a: 2 });
  const m = await mid;
  check("binary between arguments keeps its place", m[0] === 1 && Buffer.isBuffer(m[1]) && m[1].equals(buf) && m[2].a === 2, JSON.stringify(m));
  s.close();
});

await step("binary nested in objects, both ways", async () => {
  const { s } = await connect();
  const file = Buffer.from("abc"), part = Buffer.from([1, 2]), tail = Buffer.from("tail");
  const raw = once(s, "nested-raw");
  // emitWithAck resolves with the first argument only: a callback sees them all.
  const [reply, first] = await new Promise((res, rej) => s.timeout(5000).emit("nested", { file, meta: { parts: [part, "x"] } }, 7, tail,
    (err, ...args) => err ? rej(err) : res(args)));
  check("server read nested binary into typed fields", JSON.stringify(reply.sizes) === "[3,2,4]", JSON.stringify(reply));
  check("server sent binary nested in an object", Buffer.isBuffer(reply.swapped.a) && reply.swapped.a.equals(tail));
  check("server sent binary nested in an array", reply.swapped.b[0] === 7 && Buffer.isBuffer(reply.swapped.b[1]) && reply.swapped.b[1].equals(file));
  check("binary as a later argument", Buffer.isBuffer(first) && first.equals(part) && reply.text === "x");
  const [r0, r1, r2] = await raw;
  check("received arguments sent on unchanged",
    Buffer.isBuffer(r0.file) && r0.file.equals(file) && Buffer.isBuffer(r0.meta.parts[0]) && r0.meta.parts[0].equals(part)
      && r0.meta.parts[1] === "x" && r1 === 7 && Buffer.isBuffer(r2) && r2.equals(tail));
  s.close();
});

await step("rooms and broadcast with except", async () => {
  const a = (await connect()).s, b = (await connect()).s, c = (await connect()).s;
  check("join", await a.timeout(5000).emitWithAck("join", "r1") === true);
  await b.timeout(5000).emitWithAck("join", "r1");
  const rooms = await a.timeout(5000).emitWithAck("rooms");
  check("rooms lists own id and r1", rooms.includes(a.id) && rooms.includes("r1"), JSON.stringify(rooms));
  const bGets = once(b, "news"), aNone = none(a, "news"), cNone = none(c, "news");
  await a.timeout(5000).emitWithAck("to_room", { room: "r1", event: "news", data: 1 });
  check("room member gets broadcast", (await bGets)[0] === 1);
  check("sender skipped", await aNone);
  check("non-member does not get it", await cNone);
  await c.timeout(5000).emitWithAck("join", "r1");
  const aGets = once(a, "news2"), cGets = once(c, "news2"), bNone = none(b, "news2");
  await a.timeout(5000).emitWithAck("to_room", { room: "r1", event: "news2", data: 2, except: b.id });
  check("except sid: others get it", (await aGets)[0] === 2 && (await cGets)[0] === 2);
  check("except sid: skipped one does not", await bNone);
  await a.timeout(5000).emitWithAck("leave", "r1");
  const aNone2 = none(a, "news3"), bGets3 = once(b, "news3");
  await c.timeout(5000).emitWithAck("to_room", { room: "r1", event: "news3", data: 3 });
  check("leave stops delivery", await aNone2 && (await bGets3)[0] === 3);
  for (const s of [b, c]) s.on("question", (q, cb) => cb("yes"));
  const n = await a.timeout(5000).emitWithAck("ask_room", "r1");
  check("broadcast with ack gathers answers", n === 2, `${n}`);
  a.close(); b.close(); c.close();
});

await step("namespaces and auth", async () => {
  const adm = io(url + "/admin", opts({ auth: { role: "admin" } }));
  const [w] = await once(adm, "admin-welcome");
  check("namespace /admin with auth", w === "hello admin");
  adm.close();
  const bad = io(url + "/admin", opts({ auth: { role: "guest" } }));
  const [err] = await once(bad, "connect_error");
  check("middleware refusal → connect_error", err.message === "not admin", err.message);
  bad.close();
  const refused = io(url, opts({ auth: { token: "bad" } }));
  const [e2] = await once(refused, "connect_error");
  check("auth refusal with data", e2.message === "not authorized" && e2.data && e2.data.code === 401, JSON.stringify(e2));
  refused.close();
  const dyn = io(url + "/dyn-42", opts());
  const [d] = await once(dyn, "dyn-welcome");
  check("dynamic namespace", d === "/dyn-42", d);
  dyn.close();
  const unknown = io(url + "/nope", opts());
  const [e3] = await once(unknown, "connect_error");
  check("unknown namespace → connect_error", e3.message === "Invalid namespace", e3.message);
  unknown.close();
  // Two namespaces over one connection (multiplexed).
  const m1 = io(url, opts({ forceNew: false })), m2 = io(url + "/admin", opts({ forceNew: false, auth: { role: "admin" } }));
  await Promise.all([once(m2, "admin-welcome"), once(m1, "welcome")]);
  check("two namespaces share one connection", m1.io === m2.io);
  m1.io.engine.close();
});

await step("disconnects", async () => {
  const { s } = await connect();
  const d = once(s, "disconnect");
  s.emit("server_disconnect");
  const [reason] = await d;
  check("server disconnect reason", reason === "io server disconnect", reason);
  const c2 = (await connect()).s;
  console.log(`client-disconnect-sid ${c2.id}`);
  c2.disconnect();
});

await step("heartbeat timeout", async () => {
  const s = io(hbUrl, opts());
  await once(s, "connect");
  console.log(`heartbeat-sid ${s.id}`);
  const engine = s.io.engine;
  const orig = engine._sendPacket.bind(engine);
  engine._sendPacket = (type, ...rest) => { if (type !== "pong") orig(type, ...rest); };
  const [reason] = await once(s, "disconnect", 8000);
  check("server closes a client that stops answering pings", ["transport close", "ping timeout", "io server disconnect", "transport error"].includes(reason), reason);
  s.close();
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
