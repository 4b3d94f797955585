// socket.io-client against hubs behind nginx (round-robin, no sticky sessions), [recovery] on,
// driven by the test over stdin/stdout:
//   script → test: "on <sid>"            after every (re)connection and its checks
//   test → script: "push <node-url>"     push N events to user "a" through that node; the
//                                          transport is dropped after the 5th (a lost connection)
//   test → script: "crash <node-url>"    push N events through that node while the test
//                                          kill -9s the node the client is on
//   test → script: "end"
// After each reconnection: recovered === true, the same id, every push once and in order, no
// gap event. At the end, a client with B's token presenting A's pid is refused.
// Prints one line per check and "N passed, M failed"; exits 1 if any failed.
import { io } from "socket.io-client";
import { check, finish, once, sleep } from "./checks.mjs";
import { createInterface } from "node:readline";

const [url, tokenA, tokenB, apiKey] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await lines.next()).value ?? "end";
const push = (node, i) => fetch(`${node}/api/emit`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
  body: JSON.stringify({ event: "n", users: ["a"], data: i }),
}).then((r) => r.status).catch((e) => String(e));

try {
  const s = io(url, {
    transports: ["websocket"], forceNew: true, auth: { token: tokenA },
    reconnectionDelay: 200, reconnectionDelayMax: 200, randomizationFactor: 0,
  });
  let got = [];
  const gaps = [];
  s.on("n", (i) => got.push(i));
  s.on("switchboard:gap", (g) => gaps.push(g));
  await once(s, "connect");
  const firstId = s.id;
  console.log(`on ${s.id}`);
  const N = 40;
  let base = 0;
  for (;;) {
    const [cmd, node] = (await next()).split(" ");
    if (cmd !== "push" && cmd !== "crash") break;
    got = [];
    const reconnected = once(s, "connect", 20000);
    const statuses = [];
    for (let i = 0; i < N; i++) {
      if (cmd === "push" && i === 5) s.io.engine.close(); // the transport drops
      statuses.push(await push(node, base + i));
      await sleep(25);
    }
    await reconnected;
    await sleep(800);
    const want = [...Array(N).keys()].map((i) => base + i);
    check(`${cmd}: every push was accepted`, statuses.every((x) => x === 200), JSON.stringify(statuses));
    check(`${cmd}: recovered === true`, s.recovered === true, String(s.recovered));
    check(`${cmd}: same id`, s.id === firstId, `${firstId} → ${s.id}`);
    check(`${cmd}: every push once, in order`, JSON.stringify(got) === JSON.stringify(want), JSON.stringify(got));
    check(`${cmd}: no gap event`, gaps.length === 0, JSON.stringify(gaps));
    base += N;
    console.log(`on ${s.id}`);
  }
  const pid = s._pid, offset = s._lastOffset;
  const b = io(url, { transports: ["websocket"], forceNew: true, reconnection: false, auth: { token: tokenB, pid, offset } });
  const [err] = await once(b, "connect_error");
  check("B cannot take A's session on another node", err && err.data && err.data.code === "session_mismatch", JSON.stringify(err && err.data));
  b.close();
  s.close();
} catch (e) {
  check("no error", false, e.stack || String(e));
}
finish();
