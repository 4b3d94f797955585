// Headless Chromium's native WebSocket (which offers permessage-deflate) against a Switchboard
// echo server, driven by playwright-core with Debian's chromium.
// usage: node chromium_ws.mjs WS_URL   (CHROMIUM_PATH overrides /usr/bin/chromium)
import { chromium } from 'playwright-core';

const [url] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--no-first-run', '--disable-sync'],
});
let results;
try {
  const page = await browser.newPage();
  results = await page.evaluate(async (url) => {
    const results = [];
    const check = (name, ok) => results.push([name, !!ok]);
    const open = () => new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      const queue = [];
      let waiter = null;
      ws.onmessage = (e) => { if (waiter) { const w = waiter; waiter = null; w(e.data); } else queue.push(e.data); };
      ws.recv = () => new Promise((r) => { if (queue.length) r(queue.shift()); else waiter = r; });
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error('websocket error'));
    });
    const ws = await open();
    check('permessage-deflate negotiated', ws.extensions.includes('permessage-deflate'));
    for (const n of [0, 125, 126, 65535, 65536, 1 << 20]) {
      const text = 'é'.repeat(n >> 1) + 'a'.repeat(n & 1);
      ws.send(text);
      check(`text ${n} B`, (await ws.recv()) === text);
      const bin = new Uint8Array(n);
      for (let i = 0; i < n; i++) bin[i] = (i * 31) % 251;
      ws.send(bin);
      const got = new Uint8Array(await ws.recv());
      check(`binary ${n} B`, got.length === n && got.every((v, i) => v === bin[i]));
    }
    const rep = 'switchboard '.repeat(10000);
    ws.send(rep);
    check('compressible text', (await ws.recv()) === rep);
    const closed = new Promise((r) => { ws.onclose = (e) => r(e); });
    ws.close(4000, 'bye');
    const ev = await closed;
    check('close 4000 echoed, clean', ev.code === 4000 && ev.wasClean);
    return results;
  }, url);
} finally {
  await browser.close();
}
const failed = results.filter(([, ok]) => !ok);
for (const [name] of failed) console.log(`FAIL ${name}`);
console.log(`chromium ${browser.version()} matrix: ${results.length - failed.length} ok, ${failed.length} failed`);
process.exit(failed.length ? 1 : 0);
