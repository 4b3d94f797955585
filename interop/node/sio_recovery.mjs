// socket.io-client against our server with connection state recovery on.
// Usage: node sio_recovery.mjs URL MODE CASE
//   MODE: polling | websocket
//   CASE: recover  - the server cuts the connection while it sends a stream of events to the
//                    client's room and to the client itself; after the automatic reconnect
//                    the client has the same id, recovered === true, every event once, in order
//         trimmed  - the client stays away while more events go out than the server's log
//                    keeps: recovered === false and the gap event {reason: "trimmed", lost}
//         blackhole - as recover, but the path goes dead without a FIN (a proxy the server
//                    freezes) and the client reconnects before the server noticed: the old
//                    connection is closed for it and its session taken over
//         expired  - the client stays away longer than the server keeps sessions:
//                    recovered === false and the gap event {reason: "expired"}
// Prints one line per check and "N passed, M failed"; exits 1 if any failed.
import { io } from "socket.io-client";

const [url, mode, which] = process.argv.slice(2);
let passed = 0, failed = 0;
function check(name, cond, detail = "") {
  if (cond) { passed++; console.log(`ok   ${name}`); }
  else { failed++; console.log(`FAIL ${name} ${detail}`); }
}
const once = (s, ev, ms = 8000) => new Promise((res, rej) => {
  const t = setTimeout(() => rej(new Error(`timeout waiting for ${ev}`)), ms);
  s.once(ev, (...a) => { clearTimeout(t); res(a); });
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const recovers = which === "recover" || which === "blackhole";
const delay = recovers ? 100 : 1500;
const s = io(url, {
  transports: [mode], forceNew: true, timeout: 5000,
  reconnection: true, reconnectionDelay: delay, reconnectionDelayMax: delay, randomizationFactor: 0,
  auth: { name: "rita" },
});
const ticks = [];
const direct = [];
const gaps = [];
s.on("tick", (i, offset) => ticks.push([i, offset]));
s.on("direct", (i, offset) => direct.push([i, offset]));
s.on("switchboard:gap", (g) => gaps.push(g));

try {
  await once(s, "connect");
  const firstId = s.id;
  check("first connection is not a recovery", s.recovered === false);
  // The server joined us to "news" on connect; ask for a stream of N events to the room and
  // N to us alone, one every 10 ms, starting now.
  const n = recovers ? 40 : 60;
  const reconnected = once(s, "connect", 15000);
  await s.timeout(5000).emitWithAck("stream", { n, every_ms: 10 });
  await sleep(60);
  if (which === "recover") {
    // The server closes the transport mid-stream ("forced close"); the client reconnects.
    s.emit("cut");
  } else if (which === "blackhole") {
    // The path goes dead without a FIN. The client learns it first (as a phone that switched
    // networks does) and reconnects at once; the server still holds the old connection.
    s.emit("freeze");
    await sleep(50);
    s.io.engine.close();
  } else {
    // The client drops its transport and stays away for `delay` ms.
    s.io.engine.close();
  }
  await reconnected;
  // Wait for the stream to end (n × 10 ms from its start, plus margin).
  await sleep(n * 10 + 800);
  if (recovers) {
    check("recovered === true", s.recovered === true, String(s.recovered));
    check("same socket id", s.id === firstId, `${firstId} → ${s.id}`);
    const is = ticks.map(([i]) => i);
    check("every room event once, in order", JSON.stringify(is) === JSON.stringify([...Array(n).keys()]), JSON.stringify(is));
    const ds = direct.map(([i]) => i);
    check("every direct event once, in order", JSON.stringify(ds) === JSON.stringify([...Array(n).keys()]), JSON.stringify(ds));
    check("offsets are strings", ticks.every(([, o]) => typeof o === "string"), JSON.stringify(ticks.slice(0, 3)));
    check("no gap event", gaps.length === 0, JSON.stringify(gaps));
    const who = await s.timeout(5000).emitWithAck("whoami");
    check("rooms and data restored", who.rooms.includes("news") && who.data && who.data.name === "rita", JSON.stringify(who));
    check("server says recovered", who.recovered === true, JSON.stringify(who));
    // The cut fell inside the stream: some events were replayed, not all came live.
    check("missed events were replayed", who.recovery && who.recovery.replayed > 0, JSON.stringify(who));
  } else {
    check("recovered === false", s.recovered === false, String(s.recovered));
    check("a new socket id", s.id !== firstId);
    check("one gap event", gaps.length === 1, JSON.stringify(gaps));
    const g = gaps[0] || {};
    check(`gap reason is ${which}`, g.reason === which, JSON.stringify(g));
    if (which === "trimmed") {
      check("gap says how many were lost", Number.isInteger(g.lost) && g.lost > 0, JSON.stringify(g));
    }
    const who = await s.timeout(5000).emitWithAck("whoami");
    check("server says why", who.recovery && who.recovery.reason === which, JSON.stringify(who));
  }
} catch (e) {
  check("no error", false, e.stack || String(e));
}
s.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
