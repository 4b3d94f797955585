// The hub's demo page in headless Chromium, beyond the chat: its own origin under an Origin
// allowlist, the push hint and the favicon, the token help on a JWT hub, and the native
// WebSocket view reconnecting after a hub restart.
// usage: node hub_chromium_ops.mjs HUB_URL MODE   MODE: page | token | restart
//   restart: prints READY once connected and DOWN once the page saw the hub go, then waits
//   for a line on stdin (the hub is back) and checks that both views reconnect.
import { chromium } from 'playwright-core';
import readline from 'node:readline';

const [base, mode] = process.argv.slice(2);
let passed = 0, failed = 0;
const check = (name, ok, detail = '') => { if (ok) { passed++; console.log(`ok   ${name}`); } else { failed++; console.log(`FAIL ${name} ${detail}`); } };
const text = (p, id) => p.evaluate((id) => document.getElementById(id).textContent, id);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update', '--no-first-run', '--disable-sync'],
});
const connected = (p, timeout = 10000) => p.waitForFunction(() => document.getElementById('sio-status').textContent.startsWith('connected')
  && document.getElementById('ws-status').textContent.startsWith('connected'), null, { timeout });
try {
  const p = await browser.newPage();
  await p.goto(`${base}/?name=carol`);
  if (mode === 'page') {
    await connected(p);
    check('both views connect although the allowlist names another origin', true);
    const hint = await text(p, 'curl-hint');
    check('the push hint names this hub', hint.includes(`${new URL(base).origin}/api/emit`), hint);
    const icon = await fetch(`${base}/favicon.ico`);
    check('favicon', icon.status === 200 && (icon.headers.get('content-type') || '').startsWith('image/'), `${icon.status}`);
    check('page parameters documented on the page', (await text(p, 'token-help') !== null) && (await p.content()).includes('?name='));
  } else if (mode === 'token') {
    await p.waitForFunction(() => document.getElementById('token-help').style.display === 'block', null, { timeout: 10000 });
    const help = await text(p, 'token-example');
    check('a hub that needs a token says how to pass one', help.includes('token='), help);
    const st = await text(p, 'sio-status');
    check('the refusal names its reason', st.includes('token_missing'), st);
  } else if (mode === 'restart') {
    await connected(p);
    console.log('READY');
    await p.waitForFunction(() => /retrying|reconnecting/.test(document.getElementById('ws-status').textContent), null, { timeout: 15000 });
    await p.fill('#ws-input', 'while down');
    await p.click('#ws-send');
    const log = await text(p, 'ws-log');
    check('Send while the hub is down says so', log.includes('not connected'), log);
    console.log('DOWN');
    const rl = readline.createInterface({ input: process.stdin });
    await new Promise((r) => rl.once('line', r));
    rl.close();
    await connected(p, 20000);
    check('both views reconnect after the restart', true);
    await p.fill('#ws-input', 'back again');
    await p.click('#ws-send');
    await p.waitForFunction(() => document.getElementById('sio-log').textContent.includes('back again'), null, { timeout: 5000 });
    check('the reconnected WebSocket view chats again (its message reaches the Socket.IO view)', true);
  }
} catch (e) {
  check(`chromium ${mode}`, false, e.stack || e);
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
