// The admin listener (default 127.0.0.1:9090), on the main thread: /healthz (the process
// answers), /readyz (every worker is listening), /metrics (Prometheus text).
import type { us_listen_socket } from '@trufflesuite/uws-js-unofficial';
import { loadUws } from '../data-plane/uws.js';
import { TetherError } from '../errors.js';

export interface AdminServer {
  readonly port: number;
  close(): void;
}

export interface AdminHandlers {
  ready(): boolean;
  metrics(): Promise<string>;
  contentType: string;
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
  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').writeHeader('content-type', 'text/plain').end('not found: try /healthz, /readyz or /metrics\n');
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
