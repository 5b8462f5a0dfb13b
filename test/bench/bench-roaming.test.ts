// The roaming bench's own machinery against real loopback servers started here: the raw
// HTTP/1.1 client of the Node load generator (bodies, every Set-Cookie, keep-alive, source
// address, errors and deadlines), its histogram and cookie jar, and roaming clients run
// through the piscina pool against a cookie-sticky server (keeps 100 %) and an address-hash
// server (does not). Client loops are bounded by a request count here, never by time.
// The bench is plain JS, so its modules are imported by URL and typed here by hand.

import { afterAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';

interface RawResponse {
  status: number;
  headers: Record<string, string | string[]>;
  setCookies: string[];
  body: Buffer;
  keepAlive: boolean;
}
interface RawConnection {
  localAddress: string;
  reusable: boolean;
  request(o?: { method?: string; path?: string; headers?: Record<string, string>; timeoutMs?: number }): Promise<RawResponse>;
  close(): void;
}
interface Histogram {
  total: number;
}
interface RoamingResult {
  requests: number;
  errorCount: number;
  errors: Record<string, number>;
  counters: Record<string, number>;
  keptPct: number | null;
  addresses: number;
  reissued: number;
  threads: number;
  threadsLeft: number;
  overran: number;
  p50Ms: number | null;
  firstCrash: string | null;
}
interface RoamingOptions {
  host: string;
  port: number;
  cookieName: string | null;
  backendNames: string[];
  threads: number;
  clients: number;
  durationS: number;
  rotateEvery: number;
  firstOctet: number;
  lastOctet: number;
  maxRequestsPerClient: number;
  responseTimeoutMs?: number;
}
interface Backend {
  name: string;
  port: number;
}

const load = async <T>(relative: string): Promise<T> =>
  (await import(new URL(`../../bench/${relative}`, import.meta.url).href)) as T;

const client = await load<{
  openConnection(o: { host: string; port: number; localAddress?: string; timeoutMs?: number }): Promise<RawConnection>;
}>('load/node-load/http-client.js');
const histograms = await load<{
  createHistogram(): Histogram;
  recordMicros(h: Histogram, micros: number): void;
  mergeHistogram(into: Histogram, from: Histogram): Histogram;
  percentileMicros(h: Histogram, p: number): number | null;
}>('load/node-load/histogram.js');
const jars = await load<{
  CookieJar: new () => { store(lines: string[]): string[]; header(): string; size: number };
}>('load/node-load/cookie-jar.js');
const nodeLoad = await load<{ splitClients(total: number, threads: number): { firstClient: number; clients: number }[] }>(
  'load/node-load/index.js',
);
const roaming = await load<{ runRoaming(o: RoamingOptions): Promise<RoamingResult> }>('load/scenarios/roaming.js');
const haproxySource = await load<{ config(o: { backends: Backend[]; workers: number; port: number; connections: number }): string }>(
  'load/peers/haproxy-source.js',
);
const nginxHash = await load<{ config(o: { backends: Backend[]; workers: number; port: number; prefix: string }): string }>(
  'load/peers/nginx-hash.js',
);

const BACKENDS = ['app1', 'app2'];
const cleanups: (() => void)[] = [];
afterAll(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

/** A node:http server run by `handler`; records every client address and port it saw. */
async function httpServer(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const addresses = new Set<string>();
  const ports: number[] = [];
  const server = http.createServer((req, res) => {
    addresses.add(req.socket.remoteAddress ?? '?');
    ports.push(req.socket.remotePort ?? 0);
    handler(req, res);
  });
  const port = await listen(server);
  cleanups.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return { port, addresses, ports };
}

/** A raw TCP server: `onRequest(socket)` runs on the first bytes of each connection. */
async function rawServer(onRequest: (socket: net.Socket) => void) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.once('data', () => onRequest(socket));
  });
  const port = await listen(server);
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return port;
}

/** A balancer stand-in with cookie stickiness: SRV names the backend; without it, round robin + Set-Cookie. */
async function cookieStickyServer() {
  let next = 0;
  return httpServer((req, res) => {
    const pinned = /(?:^|;\s*)SRV=(app[12])(?:;|$)/.exec(req.headers.cookie ?? '')?.[1];
    const name = pinned ?? BACKENDS[next++ % BACKENDS.length]!;
    if (!pinned) res.setHeader('Set-Cookie', [`SRV=${name}; Path=/`, 'theme=dark; Path=/']);
    res.end(name);
  });
}

/** A balancer stand-in with stickiness by client address (last octet's parity), no cookie. */
async function addressHashServer() {
  return httpServer((req, res) => {
    const octet = Number((req.socket.remoteAddress ?? '').split('.').pop());
    res.end(BACKENDS[octet % 2]);
  });
}

const roamingOptions = (port: number, over: Partial<RoamingOptions> = {}): RoamingOptions => ({
  host: '127.0.0.1',
  port,
  cookieName: 'SRV',
  backendNames: BACKENDS,
  threads: 2,
  clients: 4,
  // Generous: the request bound below ends every client long before.
  durationS: 30,
  rotateEvery: 3,
  firstOctet: 2,
  lastOctet: 6,
  maxRequestsPerClient: 15,
  ...over,
});

describe('raw HTTP/1.1 client', () => {
  it('reads Content-Length and chunked bodies and every Set-Cookie, keep-alive, from the bound address', async () => {
    const server = await httpServer((req, res) => {
      if (req.url === '/chunked') {
        res.write('ap');
        res.end('p2');
        return;
      }
      res.setHeader('Set-Cookie', ['SRV=app1; Path=/', 'b=2; HttpOnly']);
      res.setHeader('X-Twice', ['one', 'two']);
      res.end('app1');
    });
    const connection = await client.openConnection({ host: '127.0.0.1', port: server.port, localAddress: '127.0.0.2' });
    try {
      expect(connection.localAddress).toBe('127.0.0.2');
      const plain = await connection.request();
      expect(plain.status).toBe(200);
      expect(plain.body.toString()).toBe('app1');
      expect(plain.setCookies).toEqual(['SRV=app1; Path=/', 'b=2; HttpOnly']);
      expect(plain.headers['set-cookie']).toEqual(plain.setCookies);
      expect(plain.headers['x-twice']).toBe('one, two');
      expect(plain.keepAlive).toBe(true);
      expect(connection.reusable).toBe(true);
      const chunked = await connection.request({ path: '/chunked' });
      expect(chunked.headers['transfer-encoding']).toBe('chunked');
      expect(chunked.body.toString()).toBe('app2');
      expect(chunked.setCookies).toEqual([]);
    } finally {
      connection.close();
    }
    const other = await client.openConnection({ host: '127.0.0.1', port: server.port, localAddress: '127.0.0.3' });
    try {
      await other.request();
    } finally {
      other.close();
    }
    expect([...server.addresses].sort()).toEqual(['127.0.0.2', '127.0.0.3']);
    // Both requests of the first connection arrived on one socket.
    expect(server.ports[0]).toBe(server.ports[1]);
    expect(server.ports[2]).not.toBe(server.ports[0]);
  });

  it('skips an interim 100 head and reads chunk extensions and trailers, however the bytes arrive', async () => {
    const wire =
      'HTTP/1.1 100 Continue\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: SRV=app1\r\n\r\n' +
      '3;ext=1\r\napp\r\n1\r\n1\r\n0\r\nX-Trailer: t\r\n\r\n';
    // One write per byte: the reader must not depend on how TCP groups them.
    const port = await rawServer((socket) => {
      for (const byte of Buffer.from(wire)) socket.write(Buffer.of(byte));
    });
    const connection = await client.openConnection({ host: '127.0.0.1', port });
    try {
      const response = await connection.request();
      expect(response.status).toBe(200);
      expect(response.body.toString()).toBe('app1');
      expect(response.setCookies).toEqual(['SRV=app1']);
      expect(connection.reusable).toBe(true);
    } finally {
      connection.close();
    }
  });

  it('reads a body delimited by the connection closing, and does not reuse that connection', async () => {
    const port = await rawServer((socket) => socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end'));
    const connection = await client.openConnection({ host: '127.0.0.1', port });
    const response = await connection.request();
    expect(response.body.toString()).toBe('to the end');
    expect(response.keepAlive).toBe(false);
    expect(connection.reusable).toBe(false);
    await expect(connection.request()).rejects.toMatchObject({ kind: 'closed' });
  });

  it('rejects with kind closed when the server closes mid-response', async () => {
    const port = await rawServer((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\napp'));
    const connection = await client.openConnection({ host: '127.0.0.1', port });
    await expect(connection.request()).rejects.toMatchObject({ kind: 'closed' });
    expect(connection.reusable).toBe(false);
  });

  it('rejects with kind parse on a response that is not HTTP', async () => {
    const port = await rawServer((socket) => socket.write('SSH-2.0-OpenSSH\r\n\r\n'));
    const connection = await client.openConnection({ host: '127.0.0.1', port });
    await expect(connection.request()).rejects.toMatchObject({ kind: 'parse' });
  });

  it('rejects with kind timeout when the server never answers, and closes the connection', async () => {
    const port = await rawServer(() => {
      // read the request, say nothing
    });
    const connection = await client.openConnection({ host: '127.0.0.1', port });
    await expect(connection.request({ timeoutMs: 100 })).rejects.toMatchObject({ kind: 'timeout' });
    expect(connection.reusable).toBe(false);
  });

  it('rejects with kind connect when nothing listens', async () => {
    const server = net.createServer();
    const port = await listen(server);
    await new Promise((resolve) => server.close(resolve)); // the port is now free
    await expect(client.openConnection({ host: '127.0.0.1', port, timeoutMs: 1000 })).rejects.toMatchObject({ kind: 'connect' });
  });
});

describe('histogram and cookie jar', () => {
  it('merges per-thread histograms and reads percentiles from the merge', () => {
    const a = histograms.createHistogram();
    const b = histograms.createHistogram();
    for (const v of [10, 20, 30]) histograms.recordMicros(a, v);
    for (const v of [40, 50]) histograms.recordMicros(b, v);
    const merged = histograms.mergeHistogram(histograms.createHistogram(), a);
    histograms.mergeHistogram(merged, b);
    expect(merged.total).toBe(5);
    expect(histograms.percentileMicros(merged, 50)).toBe(30);
    expect(histograms.percentileMicros(merged, 99)).toBe(50);
    const big = histograms.createHistogram();
    histograms.recordMicros(big, 1_000_000);
    histograms.recordMicros(big, 2_000_000);
    const p50 = histograms.percentileMicros(big, 50) ?? 0;
    expect(Math.abs(p50 - 1_000_000) / 1_000_000).toBeLessThan(0.033);
    expect(histograms.percentileMicros(histograms.createHistogram(), 50)).toBeNull();
  });

  it('keeps, replaces and deletes cookies as a browser would', () => {
    const jar = new jars.CookieJar();
    expect(jar.store(['SRV=app1; Path=/', 'theme=dark'])).toEqual(['SRV', 'theme']);
    expect(jar.header()).toBe('SRV=app1; theme=dark');
    jar.store(['SRV=app2', 'theme=; Max-Age=0']);
    expect(jar.header()).toBe('SRV=app2');
    jar.store(['SRV=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT']);
    expect(jar.size).toBe(0);
  });

  it('splits clients over threads as evenly as possible', () => {
    expect(nodeLoad.splitClients(5, 2)).toEqual([
      { firstClient: 0, clients: 3 },
      { firstClient: 3, clients: 2 },
    ]);
    expect(nodeLoad.splitClients(1, 4)).toEqual([{ firstClient: 0, clients: 1 }]);
  });
});

describe('roaming clients through the piscina pool', () => {
  it('keep 100 % on their first backend behind cookie stickiness while rotating source addresses', async () => {
    const server = await cookieStickyServer();
    const r = await roaming.runRoaming(roamingOptions(server.port));
    expect(r.firstCrash).toBeNull();
    expect(r.errorCount).toBe(0);
    expect(r.requests).toBe(4 * 15);
    expect(r.keptPct).toBe(100);
    expect(r.reissued).toBe(0);
    expect(r.counters.routeCookieOnFirst).toBe(4);
    expect(r.counters.withCookie).toBe(4 * 14);
    // 4 clients starting at .2–.5, 5 addresses each over 15 requests (rotating every 3): all of .2–.6.
    expect(r.addresses).toBe(5);
    expect([...server.addresses].sort()).toEqual(['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']);
    expect(r.p50Ms).not.toBeNull();
    expect(r.threads).toBe(2);
    expect(r.threadsLeft).toBe(0);
    expect(r.overran).toBe(0);
  });

  it('lose their backend behind stickiness by address, and their jar stays empty without a route cookie', async () => {
    const server = await addressHashServer();
    for (const cookieName of [null, 'SRV']) {
      const r = await roaming.runRoaming(roamingOptions(server.port, { cookieName, rotateEvery: 2, maxRequestsPerClient: 12 }));
      expect(r.errorCount).toBe(0);
      expect(r.requests).toBe(4 * 12);
      expect(r.keptPct).toBeGreaterThan(0);
      expect(r.keptPct).toBeLessThan(100);
      expect(r.counters.withCookie ?? 0).toBe(0);
      expect(r.counters.routeCookieOnFirst ?? 0).toBe(0);
      expect(r.reissued).toBe(0);
      expect(r.threadsLeft).toBe(0);
    }
    expect(server.addresses.size).toBe(5);
  });

  it('count an error and go on when the server closes mid-response', async () => {
    const port = await rawServer((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\napp'));
    const r = await roaming.runRoaming(roamingOptions(port, { clients: 2, maxRequestsPerClient: 5 }));
    expect(r.requests).toBe(0);
    expect(r.errors).toEqual({ closed: 10 });
    expect(r.keptPct).toBeNull();
    expect(r.threadsLeft).toBe(0);
  });

  it('count a timeout per request when the server never answers, and end', async () => {
    const port = await rawServer(() => {
      // read the request, say nothing
    });
    const r = await roaming.runRoaming(roamingOptions(port, { clients: 2, maxRequestsPerClient: 3, responseTimeoutMs: 100 }));
    expect(r.errors).toEqual({ timeout: 6 });
    expect(r.overran).toBe(0);
    expect(r.threadsLeft).toBe(0);
  });
});

const has = (binary: string) => spawnSync('sh', ['-c', `command -v ${binary} || test -x /usr/sbin/${binary}`]).status === 0;
const configBackends = [
  { name: 'app1', port: 40001 },
  { name: 'app2', port: 40002 },
];
const sbinEnv = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin` };

describe('source-address peer variants', () => {
  it.skipIf(!has('haproxy'))('haproxy -c accepts haproxy-source (balance source, consistent, no cookie)', () => {
    const text = haproxySource.config({ backends: configBackends, workers: 2, port: 40000, connections: 50 });
    expect(text).toMatch(/^\s+balance source$/m);
    expect(text).toMatch(/^\s+hash-type consistent$/m);
    expect(text).not.toMatch(/cookie/);
    const dir = mkdtempSync(join(os.tmpdir(), 'bench-cfg-'));
    try {
      const path = join(dir, 'haproxy.cfg');
      writeFileSync(path, text);
      const check = spawnSync('haproxy', ['-c', '-f', path], { encoding: 'utf8', env: sbinEnv });
      expect(check.status, check.stderr + check.stdout).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!has('nginx'))('nginx -t accepts nginx-hash (hash $remote_addr consistent, not ip_hash)', () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'bench-cfg-'));
    try {
      mkdirSync(join(dir, 'tmp'));
      const text = nginxHash.config({ backends: configBackends, workers: 2, port: 40000, prefix: dir });
      expect(text).toMatch(/hash \$remote_addr consistent;/);
      expect(text).not.toMatch(/ip_hash/);
      const path = join(dir, 'nginx.conf');
      writeFileSync(path, text);
      const check = spawnSync('nginx', ['-t', '-p', dir, '-c', path], { encoding: 'utf8', env: sbinEnv });
      expect(check.status, check.stderr).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
