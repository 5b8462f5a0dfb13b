// node-http-proxy peer: bench/load/peers/http-proxy-server.js under node:cluster with
// --workers processes (Node proxies on one thread per process; see that file).

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { startProcess } from '../processes.js';
import { readyLine } from './common.js';

export const name = 'http-proxy';
export const cookieName = 'SRV';
export const describe =
  'node-http-proxy 1.x: node:cluster with W worker processes, keep-alive agent, SRV cookie stickiness in the handler';

const serverPath = fileURLToPath(new URL('./http-proxy-server.js', import.meta.url));

export function available() {
  try {
    const require = createRequire(import.meta.url);
    const { version } = require('http-proxy/package.json');
    return { ok: true, version: `http-proxy ${version} on node ${process.version}` };
  } catch {
    return { ok: false, reason: 'npm package http-proxy not installed', install: 'npm install (http-proxy is a devDependency)' };
  }
}

export function start({ backends, workers, port }) {
  const args = [serverPath, String(port), String(workers), ...backends.map((b) => `${b.name}=127.0.0.1:${b.port}`)];
  const ready = readyLine('http-proxy');
  const handle = startProcess('http-proxy', process.execPath, args, { onStdoutLine: ready.onStdoutLine });
  const url = `http://127.0.0.1:${port}/`;
  const waitReady = ready.waitFor(handle, url);
  return { handle, url, waitReady, setup: { command: `node ${args.join(' ')}` } };
}
