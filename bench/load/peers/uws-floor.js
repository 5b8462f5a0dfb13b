// The `uws-floor` peer: ./uws-floor-server.js, the least a proxy built as Tether is built can do
// (uWS worker threads, net.Socket keep-alive upstreams, a plain FLOOR=<name> cookie, no logic).
// It runs in sticky-hit and first-visit only, beside Tether and HAProxy in the same rounds, so a
// run shows how much of Tether's gap to HAProxy is the runtime (floor ÷ HAProxy) and how much
// is Tether's own request path (Tether ÷ floor).

import { fileURLToPath } from 'node:url';
import { startProcess } from '../processes.js';
import { readyLine } from './common.js';

export const name = 'uws-floor';
export const cookieName = 'FLOOR';
export const scenarios = ['sticky-hit', 'first-visit'];
export const describe =
  'uWS + net.Socket floor: W worker threads, keep-alive upstreams, FLOOR=<backend> cookie, X-Forwarded-*, nothing else (bench/load/peers/uws-floor-server.js)';

const serverPath = fileURLToPath(new URL('./uws-floor-server.js', import.meta.url));

export function available() {
  return { ok: true, version: `uws-floor on node ${process.version}` };
}

export function start({ backends, workers, port }) {
  const args = ['--single-threaded-gc', serverPath, String(port), String(workers), ...backends.map((b) => `${b.name}=127.0.0.1:${b.port}`)];
  const ready = readyLine('uws-floor');
  const handle = startProcess('uws-floor', process.execPath, args, { onStdoutLine: ready.onStdoutLine });
  const url = `http://127.0.0.1:${port}/`;
  const waitReady = ready.waitFor(handle, url);
  return { handle, url, waitReady, setup: { command: `node ${args.join(' ')}` } };
}
