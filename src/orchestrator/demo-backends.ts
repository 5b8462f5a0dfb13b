// Two small built-in backends for the embedded default: when no backend is configured,
// `tether` starts these on loopback so that `curl` works at once and shows stickiness.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface DemoBackend {
  id: string;
  port: number;
  close(): Promise<void>;
}

export async function startDemoBackends(count = 2): Promise<DemoBackend[]> {
  const out: DemoBackend[] = [];
  for (let i = 1; i <= count; i++) {
    const id = `demo-${i}`;
    let served = 0;
    const server = http.createServer((req, res) => {
      served++;
      req.resume();
      const body = `Hello from ${id} (request #${served} on this backend, ${req.method} ${req.url}).\n` +
        'Send the TETHER cookie back (curl -b jar -c jar) and you will keep landing here, from any address.\n';
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-backend': id, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    out.push({
      id,
      port: (server.address() as AddressInfo).port,
      close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
    });
  }
  return out;
}
