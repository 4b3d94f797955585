// socket.io-client in headless Chromium, on a page of another origin, over long-polling only:
// the cross-origin requests need the server's CORS headers.
// usage: node sio_cors_chromium.mjs SOCKET_IO_URL EXPECT
//   EXPECT: any (Access-Control-Allow-Origin: *), credentials (reflected origin, withCredentials),
//           blocked (no CORS headers: the browser must refuse)
// Prints one line per check and "N passed, M failed"; exits 1 if any failed.
import http from "node:http";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [sioUrl, expect] = process.argv.slice(2);
// The browser bundle as published (not in the package's "exports", so read by path).
const bundle = readFileSync(fileURLToPath(new URL("../node_modules/socket.io-client/dist/socket.io.min.js", import.meta.url)));
const page = `<!doctype html><meta charset="utf-8"><title>cors</title><script src="/socket.io.min.js"></script>`;
// The page's own server: same host, another port, so another origin.
const server = http.createServer((req, res) => {
  if (req.url === "/socket.io.min.js") { res.writeHead(200, { "content-type": "text/javascript" }); res.end(bundle); }
  else { res.writeHead(200, { "content-type": "text/html" }); res.end(page); }
});
await new Promise(r => server.listen(0, "127.0.0.1", r));
const pageUrl = `http://127.0.0.1:${server.address().port}/`;

let passed = 0, failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) { passed++; console.log(`ok   ${name}`); } else { failed++; console.log(`FAIL ${name} ${detail}`); }
};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update", "--no-first-run", "--disable-sync"],
});
try {
  const p = await browser.newPage();
  await p.goto(pageUrl);
  const r = await p.evaluate(async ({ url, withCredentials }) => {
    const s = io(url, { transports: ["polling"], withCredentials, reconnection: false, timeout: 4000, forceNew: true });
    const out = { origin: location.origin };
    try {
      await new Promise((res, rej) => { s.once("connect", res); s.once("connect_error", (e) => rej(e)); });
      out.connected = true;
      out.transport = s.io.engine.transport.name;
      out.echo = await s.timeout(4000).emitWithAck("echo", { x: 1 });
      const got = new Promise((res) => s.once("echo", (...a) => res(a)));
      s.emit("echo", "from", "another origin");
      out.event = await got;
    } catch (e) {
      out.error = String(e && e.message || e);
    }
    s.close();
    return out;
  }, { url: sioUrl, withCredentials: expect === "credentials" });
  check("page is on another origin", r.origin !== new URL(sioUrl).origin, r.origin);
  if (expect === "blocked") {
    check("without CORS headers the browser refuses to connect", !r.connected && !!r.error, JSON.stringify(r));
  } else {
    check(`connects over polling (${expect})`, r.connected && r.transport === "polling", JSON.stringify(r));
    check("ack round trip", r.echo && r.echo.x === 1, JSON.stringify(r));
    check("server → client event", JSON.stringify(r.event) === JSON.stringify(["from", "another origin"]), JSON.stringify(r));
  }
} finally {
  await browser.close();
  server.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
