// socket.io-client against the hub (recovery on by default), one fault per run:
// Usage: node hub_recovery_faults.mjs PHASE CLIENT_URL API_URL TOKEN API_KEY
//   blackhole - CLIENT_URL is a proxy the test freezes when this prints "freeze" (the path goes
//               dead without a FIN; the test answers "frozen"); the client notices first and
//               reconnects while the hub still holds the old connection: recovered, every push
//               once, in order.
//   cut       - as blackhole, but the proxy closes every connection (a FIN from the server's
//               side, as when a proxy or load balancer restarts) when this prints "cut".
//   expired   - the client stays away longer than the hub's max_disconnection_ms:
//               recovered === false and the gap event {reason: "expired"}.
//   trimmed   - more is pushed while it is away than the hub's log keeps: recovered === false
//               and the gap event {reason: "trimmed", lost: n}.
// Prints one line per check and "N passed, M failed"; exits 1 if any failed.
import { io } from "socket.io-client";
import { check, finish, once, sleep } from "./checks.mjs";
import { createInterface } from "node:readline";

const [phase, url, api, token, apiKey] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const push = (i) => fetch(`${api}/api/emit`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
  body: JSON.stringify({ event: "n", users: ["a"], data: i }),
}).then((r) => r.status);

try {
  const away = phase === "expired" ? 2500 : phase === "trimmed" ? 600 : 100;
  const s = io(url, {
    transports: ["websocket"], forceNew: true, auth: { token }, timeout: 3000,
    reconnectionDelay: away, reconnectionDelayMax: away, randomizationFactor: 0,
  });
  const got = [];
  const gaps = [];
  s.on("n", (i) => got.push(i));
  s.on("switchboard:gap", (g) => gaps.push(g));
  await once(s, "connect");
  const firstId = s.id;
  await push(0);
  await sleep(200);
  check("the first push came, with an offset", got[0] === 0 && typeof s._lastOffset === "string", `${got} ${s._lastOffset}`);
  const reconnected = once(s, "connect", 15000);
  const N = phase === "trimmed" ? 20 : 30;
  if (phase === "blackhole") {
    console.log("freeze");
    await lines.next();
    // The client learns the path is dead first (as a phone that switched networks does).
    s.io.engine.close();
  } else if (phase === "cut") {
    console.log("cut");
    await lines.next();
  } else {
    s.io.engine.close();
  }
  for (let i = 1; i <= N; i++) {
    check(`push ${i} accepted`, (await push(i)) === 200);
    await sleep(phase === "trimmed" ? 5 : 20);
  }
  await reconnected;
  await sleep(800);
  if (phase === "blackhole" || phase === "cut") {
    check("recovered === true", s.recovered === true, String(s.recovered));
    check("same id", s.id === firstId, `${firstId} → ${s.id}`);
    check("every push once, in order", JSON.stringify(got) === JSON.stringify([...Array(N + 1).keys()]), JSON.stringify(got));
    check("no gap event", gaps.length === 0, JSON.stringify(gaps));
  } else {
    check("recovered === false", s.recovered === false, String(s.recovered));
    check("a new id", s.id !== firstId);
    check(`the gap event says ${phase}`, gaps.length === 1 && gaps[0].reason === phase, JSON.stringify(gaps));
    if (phase === "trimmed") {
      check("with how many were dropped", typeof gaps[0]?.lost === "number" && gaps[0].lost >= N - 5, JSON.stringify(gaps));
    }
  }
  s.close();
} catch (e) {
  check("no error", false, e.stack || String(e));
}
finish();
