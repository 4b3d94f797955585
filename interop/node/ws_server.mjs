// Node `ws` echo server for Switchboard's client interop tests.
// usage: node ws_server.mjs [CERT_PEM KEY_PEM]   (prints the port, then serves)
// INTEROP_DEFLATE=1 turns permessage-deflate on; PORT fixes the port (default: any free one).
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { WebSocketServer } from 'ws';

const [cert, key] = process.argv.slice(2);
const deflate = process.env.INTEROP_DEFLATE === '1';
const opts = { perMessageDeflate: deflate ? { threshold: 0 } : false, maxPayload: 64 * 1024 * 1024 };
let wss;
if (cert) {
  const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) });
  wss = new WebSocketServer({ ...opts, server });
  server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => console.log(server.address().port));
} else {
  wss = new WebSocketServer({ ...opts, host: '127.0.0.1', port: Number(process.env.PORT || 0) });
  wss.on('listening', () => console.log(wss.address().port));
}
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
