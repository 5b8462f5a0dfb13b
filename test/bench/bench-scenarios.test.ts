// The large-body and many-idle load-bench scenarios and what they need: the bench backend's
// /large and /upload routes (a real backend.js child process), the scenarios' own clients run
// against that backend as the "peer" with small sizes, their failure accounting against tiny
// misbehaving servers, and the HAProxy/nginx peers started for real with the many-idle
// connection hint (skipped when the binaries are not installed).
// The bench is plain JS, so its modules are imported by URL and typed here by hand.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processes, startReadyProcess, type Handle } from '../helpers/bench.js';

interface Transfer {
  ok: boolean;
  kind: string;
  error?: string;
  bytes: number;
}
interface LoadRecord {
  requests: number;
  durationS: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: Record<string, number>;
  errorCount: number;
  extra: { downloadMiBps: number; uploadMiBps: number; downloads: number; uploads: number };
}
interface Peer {
  start(o: { backends: { name: string; port: number }[]; workers: number; connections: number; port: number; dir: string }): {
    handle: Handle;
    url: string;
    waitReady(deadlineMs: number): Promise<unknown>;
  };
  config(o: { backends: { name: string; port: number }[]; workers: number; port: number; connections: number; prefix?: string }): string;
}
interface Held {
  opened: number;
  failed: number;
  sockets: net.Socket[];
  closedByPeer(): number;
  stillOpen(): number;
  close(): Promise<void>;
}
type Checks = Record<string, unknown>;

const load = async <T>(relative: string): Promise<T> =>
  (await import(new URL(`../../bench/${relative}`, import.meta.url).href)) as T;

const largeBody = await load<{
  BODY_BYTES: number;
  download(base: string, bytes: number, o?: { deadlineMs?: number }): Promise<Transfer>;
  upload(base: string, bytes: number, o?: { deadlineMs?: number; chunked?: boolean }): Promise<Transfer>;
  prepare(o: { url: string; peer: { name: string }; bytes?: number }): Promise<{ cookies: string[]; checks: Checks }>;
  measure(o: {
    url: string;
    durationS: number;
    bytes?: number;
    downloads?: number;
    uploads?: number;
    transferDeadlineMs?: number;
  }): Promise<LoadRecord>;
}>('load/scenarios/large-body.js');
const manyIdle = await load<{
  idleConnections: number;
  openIdleConnections(o: { url: string; count: number; concurrency?: number; deadlineMs?: number }): Promise<Held>;
  prepare(o: { url: string; peer: { name: string }; idle?: number; concurrency?: number; deadlineMs?: number }): Promise<{
    cookies: string[];
    checks: Checks;
    cleanup(): Promise<void>;
  }>;
}>('load/scenarios/many-idle.js');
const scenarioIndex = await load<{ scenarios: { name: string }[] }>('load/scenarios/index.js');

const MiB = 1024 * 1024;
const backendPath = fileURLToPath(new URL('../../bench/load/backend.js', import.meta.url));

/** The bench backend as bench/run.js starts it. */
async function startBenchBackend(name: string): Promise<{ handle: Handle; port: number; url: string }> {
  const { handle, port } = await startReadyProcess(`backend ${name}`, [backendPath, name]);
  return { handle, port, url: `http://127.0.0.1:${port}/` };
}

/** One request on a fresh connection; resolves status, headers, byte count and sha256 of the body. */
function fetchBody(
  url: string,
  { method = 'GET', body, chunked = false }: { method?: string; body?: Buffer; chunked?: boolean } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: number; sha256: string; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (body && !chunked) headers['content-length'] = String(body.length);
    const req = http.request(url, { method, agent: false, headers, timeout: 20_000 }, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      let text = '';
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        hash.update(chunk);
        if (text.length < 256) text += chunk.toString('latin1');
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, sha256: hash.digest('hex'), text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    if (body && chunked) {
      // Several writes without Content-Length: Node sends Transfer-Encoding: chunked.
      for (let at = 0; at < body.length; at += 256 * 1024) req.write(body.subarray(at, at + 256 * 1024));
    } else if (body) {
      req.write(body);
    }
    req.end();
  });
}

/** sha256 of the first `n` bytes of what /large sends: its 1 MiB pattern, repeated. */
function expectedLargeSha(n: number): string {
  const unit = Buffer.alloc(MiB, 'tether-bench-');
  const hash = createHash('sha256');
  for (let at = 0; at < n; at += unit.length) hash.update(unit.subarray(0, Math.min(unit.length, n - at)));
  return hash.digest('hex');
}

/** A loopback TCP server whose connections `onConnection` handles; closes every socket on close(). */
async function rawServer(onConnection: (socket: net.Socket) => void): Promise<{ url: string; sockets: net.Socket[]; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    sockets,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Calls `onRequest(socket, head)` once per complete request head (bodies are ignored). */
function onRequestHeads(socket: net.Socket, onRequest: (head: string) => void): void {
  let pending = '';
  socket.on('data', (chunk: Buffer) => {
    pending += chunk.toString('latin1');
    let end;
    while ((end = pending.indexOf('\r\n\r\n')) >= 0) {
      onRequest(pending.slice(0, end));
      pending = pending.slice(end + 4);
    }
  });
}

let backend: { handle: Handle; port: number; url: string };

beforeAll(async () => {
  backend = await startBenchBackend('bsc');
});

afterAll(async () => {
  await backend?.handle.kill(2000);
});

describe('bench backend /large and /upload', () => {
  it.each([0, 1, 5, 3 * MiB + 7])('GET /large?bytes=%i sends exactly that many bytes, with Content-Length', async (n) => {
    const r = await fetchBody(new URL(`/large?bytes=${n}`, backend.url).href);
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(n));
    expect(r.bytes).toBe(n);
    expect(r.sha256).toBe(expectedLargeSha(n));
  });

  it('resumes at the right offset after backpressure (several 16 MiB downloads at once)', async () => {
    const n = 16 * MiB + 12_345;
    const results = await Promise.all(Array.from({ length: 3 }, () => fetchBody(new URL(`/large?bytes=${n}`, backend.url).href)));
    const expected = expectedLargeSha(n);
    for (const r of results) {
      expect(r.bytes).toBe(n);
      expect(r.sha256).toBe(expected);
    }
  });

  it('refuses a missing or malformed byte count with 400', async () => {
    for (const query of ['', '?bytes=', '?bytes=x', '?bytes=-1', '?bytes=1e6']) {
      const r = await fetchBody(new URL(`/large${query}`, backend.url).href);
      expect(r.status, query).toBe(400);
    }
  });

  it('POST /upload answers the byte count it received, with Content-Length and chunked', async () => {
    const body = Buffer.alloc(5 * MiB + 3, 'u');
    const sized = await fetchBody(new URL('/upload', backend.url).href, { method: 'POST', body });
    expect(sized.status).toBe(200);
    expect(sized.text).toBe(String(body.length));
    const chunked = await fetchBody(new URL('/upload', backend.url).href, { method: 'POST', body, chunked: true });
    expect(chunked.status).toBe(200);
    expect(chunked.text).toBe(String(body.length));
    const empty = await fetchBody(new URL('/upload', backend.url).href, { method: 'POST', body: Buffer.alloc(0) });
    expect(empty.text).toBe('0');
  });

  it('still answers its name on every other path and method', async () => {
    expect((await fetchBody(backend.url)).text).toBe('bsc');
    expect((await fetchBody(new URL('/large/x', backend.url).href)).text).toBe('bsc');
    expect((await fetchBody(new URL('/large?bytes=3', backend.url).href, { method: 'POST', body: Buffer.from('hi') })).text).toBe('bsc');
    expect((await fetchBody(new URL('/upload', backend.url).href)).text).toBe('bsc');
  });
});

describe('large-body scenario', () => {
  it('is registered, after sticky-hit and first-visit', () => {
    const names = scenarioIndex.scenarios.map((s) => s.name);
    expect(names.slice(0, 2)).toEqual(['sticky-hit', 'first-visit']);
    expect(names).toContain('large-body');
    expect(names).toContain('many-idle');
    expect(largeBody.BODY_BYTES).toBe(100 * MiB);
  });

  it('prepare() verifies one download and one upload through the peer', async () => {
    const prepared = await largeBody.prepare({ url: backend.url, peer: { name: 'backend' }, bytes: 2 * MiB });
    expect(prepared.cookies).toEqual([]);
    expect(prepared.checks).toMatchObject({ downloadVerified: true, uploadVerified: true });
  });

  it('measure() runs every lane, verifies every transfer and reports throughput', async () => {
    const r = await largeBody.measure({ url: backend.url, durationS: 0.3, bytes: 2 * MiB, downloads: 2, uploads: 2 });
    expect(r.errorCount).toBe(0);
    // Every lane starts at least one transfer before the duration ends.
    expect(r.extra.downloads).toBeGreaterThanOrEqual(2);
    expect(r.extra.uploads).toBeGreaterThanOrEqual(2);
    expect(r.requests).toBe(r.extra.downloads + r.extra.uploads);
    expect(r.extra.downloadMiBps).toBeGreaterThan(0);
    expect(r.extra.uploadMiBps).toBeGreaterThan(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
  });

  it('counts a refused peer as errors and stops, without spinning or hanging', async () => {
    const port = await processes.freePort();
    const r = await largeBody.measure({ url: `http://127.0.0.1:${port}/`, durationS: 30, bytes: MiB, downloads: 1, uploads: 1 });
    expect(r.requests).toBe(0);
    expect(r.errors.socket).toBe(r.errorCount);
    // Each lane gives up after a few consecutive failures instead of looping for 30 s.
    expect(r.errorCount).toBeLessThanOrEqual(6);
    expect(r.errorCount).toBeGreaterThan(0);
  });

  it('flags a short download, a wrong upload count and a silent peer', async () => {
    // Announces 1000 bytes, sends 10, closes.
    const short = await rawServer((socket) =>
      onRequestHeads(socket, () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789')),
    );
    // Acknowledges a byte count that is not what was sent.
    const liar = await rawServer((socket) => onRequestHeads(socket, () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n7')));
    // Accepts and never answers.
    const silent = await rawServer(() => {});
    try {
      expect((await largeBody.download(short.url, 1000)).error).toBe('short');
      expect((await largeBody.upload(liar.url, 1000)).error).toBe('mismatch');
      const timedOut = await largeBody.download(silent.url, 1000, { deadlineMs: 200 });
      expect(timedOut).toMatchObject({ ok: false, error: 'timeout' });
    } finally {
      await Promise.all([short.close(), liar.close(), silent.close()]);
    }
  });
});

describe('many-idle scenario', () => {
  it('announces its idle connections to the harness', () => {
    expect(manyIdle.idleConnections).toBe(10_000);
  });

  it('prepare() opens and holds idle keep-alive connections; cleanup() closes them and records the counts', async () => {
    const prepared = await manyIdle.prepare({ url: backend.url, peer: { name: 'backend' }, idle: 300, concurrency: 40 });
    expect(prepared.cookies).toEqual([]);
    expect(prepared.checks).toMatchObject({ idleRequested: 300, idleOpened: 300, idleFailed: 0, idleOpenBeforeRun: 300 });
    // The backend still serves others while they are held.
    expect((await fetchBody(backend.url)).text).toBe('bsc');
    await prepared.cleanup();
    expect(prepared.checks).toMatchObject({ idleClosedByPeer: 0, idleOpenAfterRun: 300 });
  });

  it('counts connections the peer closes after they were opened', async () => {
    const server = await rawServer((socket) =>
      onRequestHeads(socket, () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')),
    );
    try {
      const held = await manyIdle.openIdleConnections({ url: server.url, count: 10, concurrency: 4 });
      expect(held.opened).toBe(10);
      const closed = held.sockets.slice(0, 4).map((s) => new Promise((resolve) => s.once('close', resolve)));
      for (const s of server.sockets.slice(0, 4)) s.destroy();
      await Promise.all(closed);
      expect(held.closedByPeer()).toBe(4);
      expect(held.stillOpen()).toBe(6);
      await held.close();
      expect(held.closedByPeer()).toBe(4);
      expect(held.stillOpen()).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('fails prepare(), naming why, when the peer will not keep connections open', async () => {
    const closer = await rawServer((socket) =>
      onRequestHeads(socket, () => socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok')),
    );
    try {
      await expect(manyIdle.prepare({ url: closer.url, peer: { name: 'closer' }, idle: 5 })).rejects.toThrow(
        /closer: only 0 of 5 idle connections.*Connection: close/,
      );
    } finally {
      await closer.close();
    }
    const port = await processes.freePort();
    await expect(manyIdle.prepare({ url: `http://127.0.0.1:${port}/`, peer: { name: 'nobody' }, idle: 3 })).rejects.toThrow(/ECONNREFUSED/);
  });
});

const has = (binary: string) => spawnSync('sh', ['-c', `command -v ${binary} || test -x /usr/sbin/${binary}`]).status === 0;
const fdHardLimit = Number(/^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? Infinity);

const haproxy = await load<Peer>('load/peers/haproxy.js');
const nginx = await load<Peer>('load/peers/nginx.js');

describe('peers under the new scenarios', () => {
  const manyIdleHint = 50 + manyIdle.idleConnections;

  it('nginx sizes worker_connections by the hint within the fd limit, and streams bodies', () => {
    const text = nginx.config({ backends: [{ name: 'app1', port: 40001 }], workers: 2, port: 40000, connections: manyIdleHint, prefix: '/tmp/x' });
    const workerConnections = Number(/worker_connections (\d+);/.exec(text)?.[1]);
    const rlimit = Number(/worker_rlimit_nofile (\d+);/.exec(text)?.[1]);
    expect(workerConnections).toBeGreaterThan(manyIdleHint);
    expect(rlimit).toBeGreaterThan(workerConnections);
    expect(rlimit).toBeLessThanOrEqual(fdHardLimit);
    expect(text).toMatch(/client_max_body_size 0;/);
    expect(text).toMatch(/proxy_request_buffering off;/);
    expect(text).toMatch(/proxy_buffering off;/);
    // The small-load default is unchanged.
    expect(nginx.config({ backends: [{ name: 'app1', port: 40001 }], workers: 2, port: 40000, connections: 50, prefix: '/tmp/x' })).toMatch(
      /worker_connections 4096;/,
    );
  });

  // Each peer started for real with the many-idle hint (HAProxy used to refuse to start: its
  // fd reservation exceeded the limit), then an 8 MiB upload and download through it.
  for (const [peerName, peer] of [
    ['haproxy', haproxy],
    ['nginx', nginx],
  ] as const) {
    it.skipIf(!has(peerName))(`${peerName} starts with the many-idle connection hint and streams 8 MiB both ways`, async () => {
      const dir = mkdtempSync(join(os.tmpdir(), 'bench-scn-'));
      const port = await processes.freePort();
      const started = peer.start({ backends: [{ name: 'app1', port: backend.port }], workers: 1, connections: manyIdleHint, port, dir });
      try {
        await started.waitReady(10_000);
        const prepared = await largeBody.prepare({ url: started.url, peer: { name: peerName } });
        expect(prepared.checks).toMatchObject({ downloadVerified: true, uploadVerified: true });
      } finally {
        await started.handle.kill(2000);
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
