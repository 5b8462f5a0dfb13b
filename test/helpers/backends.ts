// Real HTTP backends on loopback port 0 that answer with their own name, and record what
// they received, so tests can see exactly what the balancer forwarded.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  remoteAddress: string;
}

export interface TestBackend {
  name: string;
  port: number;
  server: http.Server;
  received: Received[];
  close(): Promise<void>;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, name: string) => void;

const defaultHandler: Handler = (req, res, name) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
    res.end(name);
  });
};

/** `port` 0 (default) picks a free one; a fixed port lets a test restart a backend where it was. */
export async function startBackend(name: string, handler: Handler = defaultHandler, host = '127.0.0.1', port = 0): Promise<TestBackend> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    received.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, remoteAddress: req.socket.remoteAddress! });
    handler(req, res, name);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    name,
    port: (server.address() as AddressInfo).port,
    server,
    received,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
