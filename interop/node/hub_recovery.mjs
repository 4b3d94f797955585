// socket.io-client against the hub with [recovery] on.
// Usage: node hub_recovery.mjs URL TOKEN_A TOKEN_B API_KEY
// 1. Client A gets a stream of pushes (the backend's /api/emit to user A); its transport drops
//    mid-stream and it reconnects: same id, recovered === true, every push once and in order.
// 2. Someone with B's token presents A's session (pid, offset): refused ("session_mismatch").
// 3. A comes back with that pid afterwards: B's refused attempt did not use the session up,
//    so A recovers; once A leaves on purpose, the pid is a gap (unknown_session).
// Prints one line per check and "N passed, M failed"; exits 1 if any failed.
import { io } from "socket.io-client";
import { check, finish, once, sleep } from "./checks.mjs";

const [url, tokenA, tokenB, apiKey] = process.argv.slice(2);
const push = (i) => fetch(`${url}/api/emit`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
  body: JSON.stringify({ event: "n", users: ["a"], data: i }),
});

try {
  const s = io(url, {
    transports: ["websocket"], forceNew: true, auth: { token: tokenA },
    reconnectionDelay: 300, reconnectionDelayMax: 300, randomizationFactor: 0,
  });
  const got = [];
  const gaps = [];
  s.on("n", (i) => got.push(i));
  s.on("switchboard:gap", (g) => gaps.push(g));
  await once(s, "connect");
  const firstId = s.id;
  const reconnected = once(s, "connect", 15000);
  const N = 30;
  for (let i = 0; i < N; i++) {
    if (i === 5) s.io.engine.close(); // the transport drops; the manager reconnects
    await push(i);
    await sleep(20);
  }
  await reconnected;
  await sleep(500);
  check("recovered === true", s.recovered === true, String(s.recovered));
  check("same id", s.id === firstId, `${firstId} → ${s.id}`);
  check("every push once, in order", JSON.stringify(got) === JSON.stringify([...Array(N).keys()]), JSON.stringify(got));
  check("no gap event", gaps.length === 0, JSON.stringify(gaps));

  // Take A's session credentials, then drop A without reconnecting (the session is kept).
  const pid = s._pid, offset = s._lastOffset;
  check("the client holds a pid and an offset", typeof pid === "string" && typeof offset === "string", `${pid} ${offset}`);
  s.io.reconnection(false);
  s.io.engine.close();
  await sleep(200);
  const b = io(url, { transports: ["websocket"], forceNew: true, reconnection: false, auth: { token: tokenB, pid, offset } });
  const [err] = await once(b, "connect_error");
  check("B cannot take A's session", err && err.data && err.data.code === "session_mismatch", JSON.stringify(err && err.data));
  b.close();
  // B's refused attempt did not use A's session up: A recovers it.
  const a2 = io(url, { transports: ["websocket"], forceNew: true, reconnection: false, auth: { token: tokenA, pid, offset } });
  await once(a2, "connect");
  // (A fresh client instance does not know the pid it passed by hand, so its `recovered` stays
  // false; the restored id says the session came back.)
  check("A's session survived B's attempt", a2.id === firstId, `${firstId} → ${a2.id}`);
  // A leaves on purpose: the session is gone, and presenting it again is a gap, said so.
  a2.disconnect();
  await sleep(200);
  const a3 = io(url, { transports: ["websocket"], forceNew: true, reconnection: false, auth: { token: tokenA, pid, offset } });
  const gap = once(a3, "switchboard:gap");
  await once(a3, "connect");
  const [g] = await gap;
  check("a session left on purpose is a gap, said so", g && g.reason === "unknown_session", JSON.stringify(g));
  check("a new id", a3.id !== firstId);
  a3.close();
  s.close();
} catch (e) {
  check("no error", false, e.stack || String(e));
}
finish();
