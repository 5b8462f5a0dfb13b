// The `tls-floor` peer: ./tls-floor-server.js, the least a proxy that terminates TLS the way
// Tether does can do (worker threads on SO_REUSEPORT listeners, node:tls TLSSocket, keep-alive
// net.Socket upstreams, a plain FLOOR=<name> cookie, no logic). It runs in the HTTPS scenarios
// only, beside Tether and HAProxy in the same rounds, so a run shows how much of Tether's gap to
// HAProxy over HTTPS is the runtime (tls-floor ÷ HAProxy) and how much is Tether's own path
// (Tether ÷ tls-floor). The uws-floor is its plain-HTTP sibling.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess } from '../processes.js';
import { readyLine } from './common.js';

export const name = 'tls-floor';
export const cookieName = 'FLOOR';
export const scenarios = ['https-sticky-hit', 'https-handshakes'];
export const describe =
  'node:tls floor: W worker threads (SO_REUSEPORT through Tether\'s addon), TLSSocket per connection on Tether\'s TLS terms, keep-alive upstreams, FLOOR=<backend> cookie, X-Forwarded-*, nothing else (bench/load/peers/tls-floor-server.js)';

const serverPath = fileURLToPath(new URL('./tls-floor-server.js', import.meta.url));

export function available({ repoRoot }) {
  // The listeners come from Tether's addon, through its built facade.
  if (!existsSync(join(repoRoot, 'dist', 'native', 'index.js')) || !existsSync(join(repoRoot, 'build', 'Release', 'tether_native.node'))) {
    return { ok: false, reason: 'not built: dist/native/index.js or build/Release/tether_native.node missing', install: 'npm run build' };
  }
  return { ok: true, version: `tls-floor on node ${process.version} (OpenSSL ${process.versions.openssl})` };
}

/** HTTPS only (see ./common.js): the run's certificate, W worker threads. */
export function startHttps({ backends, workers, port, https }) {
  if (!https) throw new Error('tls-floor.startHttps: expected options.https ({ pemFile, ca, serverName })');
  const args = ['--single-threaded-gc', serverPath, String(port), String(workers), https.pemFile, ...backends.map((b) => `${b.name}=127.0.0.1:${b.port}`)];
  const ready = readyLine('tls-floor');
  const handle = startProcess('tls-floor', process.execPath, args, { onStdoutLine: ready.onStdoutLine });
  const url = `https://127.0.0.1:${port}/`;
  return { handle, url, waitReady: ready.waitFor(handle, url, https), setup: { command: `node ${args.join(' ')}` } };
}
