// The admin listener (default 127.0.0.1:9090), on the main thread: /healthz (the process
// answers), /readyz (every worker is listening), /metrics (Prometheus text),
// POST /api/v1/sessions/revoke (./sessions-api.ts). It has no authentication of its own:
// keep it on loopback or a management network.
import type { us_listen_socket } from '@trufflesuite/uws-js-unofficial';
import { loadUws } from '../data-plane/uws.js';
import { TetherError } from '../errors.js';
import { MAX_REVOKE_BODY, type ApiAnswer } from './sessions-api.js';

/** How long a client may take to send an API request body. */
const BODY_DEADLINE_MS = 10_000;

export interface AdminServer {
  readonly port: number;
  close(): void;
}

export interface AdminHandlers {
  ready(): boolean;
  metrics(): Promise<string>;
  contentType: string;
  revoke(body: string): ApiAnswer;
}

export function startAdmin(address: { host: string; port: number }, h: AdminHandlers): Promise<AdminServer> {
  const uws = loadUws();
  const app = uws.App();
  app.get('/healthz', (res) => {
    res.writeHeader('content-type', 'text/plain').end('ok\n');
  });
  app.get('/readyz', (res) => {
    if (h.ready()) res.writeHeader('content-type', 'text/plain').end('ready\n');
    else res.writeStatus('503 Service Unavailable').writeHeader('content-type', 'text/plain').end('not ready\n');
  });
  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => (aborted = true));
    h.metrics().then(
      (text) => {
        if (!aborted) res.cork(() => res.writeHeader('content-type', h.contentType).end(text));
      },
      (err: Error) => {
        if (!aborted) res.cork(() => res.writeStatus('500 Internal Server Error').end(`metrics failed: ${err.message}\n`));
      },
    );
  });
  app.post('/api/v1/sessions/revoke', (res) => {
    let aborted = false;
    let done = false;
    const chunks: Buffer[] = [];
    let size = 0;
    const answer = (a: ApiAnswer, close = false) => {
      if (aborted || done) return;
      done = true;
      clearTimeout(deadline);
      res.cork(() => {
        res.writeStatus(a.status === 200 ? '200 OK' : a.status === 413 ? '413 Content Too Large' : a.status === 408 ? '408 Request Timeout' : '400 Bad Request');
        res.writeHeader('content-type', 'application/json');
        res.end(`${JSON.stringify(a.body)}\n`, close);
      });
    };
    const deadline = setTimeout(() => answer({ status: 408, body: { error: 'timeout', message: `request body not received within ${BODY_DEADLINE_MS} ms` } }, true), BODY_DEADLINE_MS);
    res.onAborted(() => {
      aborted = true;
      clearTimeout(deadline);
    });
    res.onData((chunk, isLast) => {
      if (done) return;
      size += chunk.byteLength;
      if (size > MAX_REVOKE_BODY) {
        answer({ status: 413, body: { error: 'too_large', message: `request body over ${MAX_REVOKE_BODY} bytes` } }, true);
        return;
      }
      chunks.push(Buffer.from(chunk.slice(0)));
      if (isLast) answer(h.revoke(Buffer.concat(chunks).toString('utf8')));
    });
  });
  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').writeHeader('content-type', 'text/plain').end('not found: try /healthz, /readyz, /metrics or POST /api/v1/sessions/revoke\n');
  });
  return new Promise((resolve, reject) => {
    app.listen(address.host, address.port, (ls: us_listen_socket | false) => {
      if (!ls) {
        reject(new TetherError('TETHER_ERR_LISTEN', `cannot listen on admin address ${address.host}:${address.port} (in use?)`));
        return;
      }
      resolve({
        port: uws.us_socket_local_port(ls as never),
        close: () => uws.us_listen_socket_close(ls),
      });
    });
  });
}
