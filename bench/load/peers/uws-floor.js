// The `uws-floor` peer: ./uws-floor-server.js, the least a proxy built as Tether is built can do
// (uWS worker threads, net.Socket keep-alive upstreams, a plain FLOOR=<name> cookie, no logic).
// It runs in sticky-hit and first-visit only, beside Tether and HAProxy in the same rounds, so a
// run shows how much of Tether's gap to HAProxy is the runtime (floor ÷ HAProxy) and how much
// is Tether's own request path (Tether ÷ floor).

import { fileURLToPath } from 'node:url';
import { startProcess, waitUntilAnswers } from '../processes.js';

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
  let announceReady;
  const ready = new Promise((resolve) => {
    announceReady = resolve;
  });
  const args = ['--single-threaded-gc', serverPath, String(port), String(workers), ...backends.map((b) => `${b.name}=127.0.0.1:${b.port}`)];
  const handle = startProcess('uws-floor', process.execPath, args, {
    onStdoutLine: (line) => {
      if (line.includes('"ready":true')) announceReady();
    },
  });
  const url = `http://127.0.0.1:${port}/`;
  // Ready = every worker thread listens (the main thread says so) AND the port answers.
  const waitReady = async (deadlineMs) => {
    const started = Date.now();
    let timer;
    const deadline = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`uws-floor workers not listening within ${deadlineMs} ms\n${handle.output()}`)), deadlineMs);
    });
    try {
      await Promise.race([ready, deadline, handle.exited.then(() => Promise.reject(new Error(`uws-floor exited\n${handle.output()}`)))]);
    } finally {
      clearTimeout(timer);
    }
    return waitUntilAnswers(url, handle, { deadlineMs: Math.max(1000, deadlineMs - (Date.now() - started)) });
  };
  return { handle, url, waitReady, setup: { command: `node ${args.join(' ')}` } };
}
