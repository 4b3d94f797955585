// Two headless Chromium pages chat through the hub's demo page (Socket.IO view and native
// WebSocket view, same room) and receive a notification pushed with the backend API.
// usage: node hub_chromium.mjs HUB_URL   (CHROMIUM_PATH overrides /usr/bin/chromium)
import { chromium } from 'playwright-core';

const [base] = process.argv.slice(2);
let passed = 0, failed = 0;
const check = (name, ok, detail = '') => { if (ok) { passed++; console.log(`ok   ${name}`); } else { failed++; console.log(`FAIL ${name} ${detail}`); } };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--no-first-run', '--disable-sync'],
});
try {
  const a = await browser.newPage();
  const b = await browser.newPage();
  await a.goto(`${base}/?name=alice`);
  await b.goto(`${base}/?name=bob`);
  for (const [p, who] of [[a, 'alice'], [b, 'bob']]) {
    await p.waitForFunction(() => document.getElementById('sio-status').textContent.startsWith('connected')
      && document.getElementById('ws-status').textContent.startsWith('connected'), null, { timeout: 10000 });
    check(`${who}: both views connected`, true);
  }
  // The pages subscribe right after connecting; give the subscriptions a moment.
  await a.waitForTimeout(300);
  await a.fill('#sio-input', 'hello from alice');
  await a.click('#sio-send');
  await b.waitForFunction(() => document.getElementById('sio-log').textContent.includes('hello from alice'), null, { timeout: 5000 });
  check('Socket.IO chat reaches the other page', true);
  await b.waitForFunction(() => document.getElementById('ws-log').textContent.includes('hello from alice'), null, { timeout: 5000 });
  check('…and its native WebSocket view (same room)', true);
  await b.fill('#ws-input', 'hi from bob over ws');
  await b.click('#ws-send');
  await a.waitForFunction(() => document.getElementById('sio-log').textContent.includes('hi from bob over ws'), null, { timeout: 5000 });
  check('native WebSocket chat reaches the Socket.IO view', true);
  const r = await fetch(`${base}/api/emit`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(process.env.API_KEY ? { authorization: `Bearer ${process.env.API_KEY}` } : {}) },
    body: JSON.stringify({ event: 'notification', data: { title: 'Deploy finished' } }),
  });
  const body = await r.json();
  check('POST /api/emit counts the deliveries', r.status === 200 && body.delivered === 4, JSON.stringify(body));
  for (const [p, who] of [[a, 'alice'], [b, 'bob']]) {
    await p.waitForFunction(() => {
      const t = document.getElementById('notes').textContent;
      return t.includes('socket.io Deploy finished') && t.includes('websocket Deploy finished');
    }, null, { timeout: 5000 });
    check(`${who}: notification on both views`, true);
  }
} catch (e) {
  check('chromium scenario', false, e.stack || e);
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
