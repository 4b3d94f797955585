// Node `ws` as a client against a Switchboard WebSocket echo server.
// usage: node ws_client.mjs URL [CA_PEM]
// Runs the interop matrix and exits non-zero if any check fails.
// INTEROP_DEFLATE=1 turns permessage-deflate on and checks that it was negotiated.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

const [url, caPath] = process.argv.slice(2);
const deflate = process.env.INTEROP_DEFLATE === '1';
const opts = { perMessageDeflate: deflate ? { threshold: 0 } : false, maxPayload: 64 * 1024 * 1024 };
if (caPath) opts.ca = readFileSync(caPath);
const SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024];
const CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
const results = [];
const check = (name, ok) => { results.push([name, ok]); if (!ok) console.log(`FAIL ${name}`); };

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts);
    const queue = [];
    let waiter = null;
    ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      if (waiter) { const w = waiter; waiter = null; w(m); } else queue.push(m);
    });
    ws.recv = () => new Promise((res) => { if (queue.length) res(queue.shift()); else waiter = res; });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

const ws = await open();
check(deflate ? 'permessage-deflate negotiated' : 'no extension', ws.extensions.includes('permessage-deflate') === deflate);
for (const n of SIZES) {
  const text = 'é'.repeat(Math.floor(n / 2)) + 'a'.repeat(n % 2);
  ws.send(text);
  let m = await ws.recv();
  check(`text ${n} B`, !m.isBinary && m.data.toString('utf8') === text);
  const bin = randomBytes(n);
  ws.send(bin);
  m = await ws.recv();
  check(`binary ${n} B`, m.isBinary && Buffer.compare(m.data, bin) === 0);
}
ws.send('frag', { fin: false });
ws.send('mented ', { fin: false });
ws.send('tëxt', { fin: true });
let m = await ws.recv();
check('fragmented text', !m.isBinary && m.data.toString() === 'fragmented tëxt');
ws.send(Buffer.from([0, 1]), { binary: true, fin: false });
ws.send(Buffer.alloc(70000, 2), { binary: true, fin: true });
m = await ws.recv();
check('fragmented binary', m.isBinary && m.data.length === 70002 && m.data[0] === 0 && m.data[70001] === 2);
const pong = new Promise((res) => ws.once('pong', res));
ws.ping(Buffer.from('node-ping'));
check('ping/pong', (await pong).toString() === 'node-ping');
ws.close(1000);
await new Promise((res) => ws.once('close', res));
for (const code of CODES) {
  const c = await open();
  const closed = new Promise((res) => c.once('close', (rc) => res(rc)));
  c.close(code, 'bye');
  check(`close ${code} echoed`, (await closed) === code);
}
const failed = results.filter(([, ok]) => !ok).length;
console.log(`node ws client matrix: ${results.length - failed} ok, ${failed} failed`);
process.exit(failed ? 1 : 0);
