// Backend failures as a client sees them through the balancer: refused connections (502, or a
// retry on another backend), silence (504), stalls and resets mid-response (a cut, never a hang),
// malformed responses (502), and the metrics that count each. Every wait has a deadline.
import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { startBackend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { pollMetric } from '../helpers/sticky.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function tether(args: string[]): Promise<TetherProcess> {
  const t = await startTether(['--sticky', 'none', ...args], { workers: 2 });
  cleanups.push(() => t.stop());
  return t;
}

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A raw TCP backend: `onRequest` runs once a request head has arrived. */
async function rawBackend(onRequest: (socket: net.Socket, head: string) => void): Promise<{ port: number; requests: () => number }> {
  let requests = 0;
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end);
      buf = buf.slice(end + 4);
      requests++;
      onRequest(socket, head);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => {
    for (const s of open) s.destroy();
    server.close(() => r());
  }));
  return { port: (server.address() as AddressInfo).port, requests: () => requests };
}

interface Outcome {
  status: number;
  body: string;
  /** The response ended normally. */
  complete: boolean;
  /** How the exchange ended otherwise: 'aborted', an error code, or 'deadline'. */
  failure?: string;
}

/** GET with a hard deadline that reports truncation instead of throwing. */
function get(port: number, deadlineMs = 10_000, path = '/'): Promise<Outcome> {
  return new Promise((resolve) => {
    let status = 0;
    let body = '';
    let done = false;
    const finish = (o: Omit<Outcome, 'status' | 'body'>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ status, body, ...o });
    };
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      status = res.statusCode!;
      res.on('data', (c: Buffer) => (body += c.toString('latin1')));
      res.on('end', () => finish({ complete: res.complete, failure: res.complete ? undefined : 'incomplete' }));
      res.on('aborted', () => finish({ complete: false, failure: 'aborted' }));
      res.on('error', (e: NodeJS.ErrnoException) => finish({ complete: false, failure: e.code ?? e.message }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => finish({ complete: false, failure: e.code ?? e.message }));
    const timer = setTimeout(() => {
      finish({ complete: false, failure: 'deadline' });
      req.destroy();
    }, deadlineMs);
  });
}

/**
 * The value of a metric sample once it has reached `atLeast` (a worker may count a failure just
 * after the client has its answer); fails naming the sample if it has not within `ms`.
 */
function metricReaches(t: TetherProcess, sample: string, atLeast: number, ms = 5_000): Promise<number> {
  return pollMetric(t, sample, (v) => v >= atLeast, ms);
}

const FIVE_XX = 'tether_responses_total{class="5xx"}';

describe('backend failures', () => {
  it('answers 502 naming the backend when its port refuses connections', async () => {
    const port = await closedPort();
    const t = await tether(['--backend', `deadone=127.0.0.1:${port}`]);
    const r = await request({ port: t.port, path: '/x' });
    expect(r.status).toBe(502);
    expect(r.body).toContain('deadone');
    expect(r.body).toContain(String(port));
    // One request, one backend: one connect attempt (no other backend to retry on).
    expect(await metricReaches(t, 'tether_upstream_connect_errors_total', 1)).toBe(1);
    expect(await metricReaches(t, FIVE_XX, 1)).toBe(1);
  });

  it('retries a refused connection on the other backend: every request succeeds', async () => {
    const alive = await startBackend('alive');
    cleanups.push(() => alive.close());
    const port = await closedPort();
    const t = await tether(['--backend', `dead=127.0.0.1:${port}`, '--backend', `alive=127.0.0.1:${alive.port}`]);
    for (let i = 0; i < 8; i++) {
      const method = i % 4 === 3 ? 'POST' : 'GET';
      const r = await request({ port: t.port, path: `/${i}`, method, body: method === 'POST' ? 'payload' : undefined });
      expect(r.status, `request ${i} (${method})`).toBe(200);
      expect(r.body).toBe('alive');
    }
    expect(alive.received.map((r) => r.url)).toEqual(Array.from({ length: 8 }, (_, i) => `/${i}`));
    expect(await t.metric(FIVE_XX)).toBe(0);
    // How often the balancer tried the dead one is its business; that it did, and counted it, is ours.
    await metricReaches(t, 'tether_upstream_connect_errors_total', 1);
  });

  it('answers 504 when the backend accepts but never answers (--response-timeout 500)', async () => {
    const silent = await rawBackend(() => {}); // reads the request, says nothing
    const t = await tether(['--backend', `silent=127.0.0.1:${silent.port}`, '--response-timeout', '500']);
    const r = await get(t.port, 15_000);
    expect(r.failure).toBeUndefined();
    expect(r.status).toBe(504);
    expect(r.body).toContain('silent');
    expect(silent.requests()).toBe(1);
    expect(await metricReaches(t, 'tether_upstream_timeouts_total', 1)).toBe(1);
    expect(await metricReaches(t, FIVE_XX, 1)).toBe(1);
  });

  for (const framing of ['length', 'chunked'] as const) {
    it(`cuts the client off when the backend stalls mid-body (${framing}, --idle-timeout 500)`, async () => {
      const staller = await rawBackend((socket) => {
        socket.write(
          framing === 'length'
            ? 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789'
            : 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n',
        );
        // ...and nothing more, with the connection left open.
      });
      const t = await tether(['--backend', `staller=127.0.0.1:${staller.port}`, '--idle-timeout', '500']);
      const r = await get(t.port, 15_000);
      expect(r.status).toBe(200);
      expect(r.complete).toBe(false);
      expect(r.failure).not.toBe('deadline');
      expect(r.body).toBe('0123456789');
      expect(await metricReaches(t, 'tether_upstream_timeouts_total', 1)).toBe(1);
    });
  }

  it('answers 502 to a malformed status line', async () => {
    const bad = await rawBackend((socket) => socket.write('HTTP/1.1 2OO OK\r\ncontent-length: 2\r\n\r\nok'));
    const t = await tether(['--backend', `garbled=127.0.0.1:${bad.port}`]);
    const r = await get(t.port);
    expect(r.failure).toBeUndefined();
    expect(r.status).toBe(502);
    expect(r.body).toContain('garbled');
    expect(await metricReaches(t, 'tether_upstream_protocol_errors_total', 1)).toBe(1);
    expect(await metricReaches(t, FIVE_XX, 1)).toBe(1);
  });

  for (const [what, line] of [
    ['whitespace before the colon', 'x-bad : value'],
    ['a control character in a value', 'x-bad: va\x01lue'],
    ['obs-fold', 'x-bad: a\r\n  folded'],
    ['conflicting Content-Length', 'content-length: 2\r\ncontent-length: 3'],
  ] as const) {
    it(`answers 502 to a response header with ${what}`, async () => {
      const bad = await rawBackend((socket) => socket.write(`HTTP/1.1 200 OK\r\n${line}\r\ncontent-length: 2\r\n\r\nok`));
      const t = await tether(['--backend', `b=127.0.0.1:${bad.port}`]);
      const r = await get(t.port);
      expect(r.failure).toBeUndefined();
      expect(r.status).toBe(502);
      expect(await metricReaches(t, 'tether_upstream_protocol_errors_total', 1)).toBe(1);
    });
  }

  it('answers 502 when the backend closes before the status line', async () => {
    const closer = await rawBackend((socket) => socket.end());
    const t = await tether(['--backend', `closer=127.0.0.1:${closer.port}`]);
    const r = await get(t.port);
    expect(r.status).toBe(502);
    expect(r.body).toContain('closer');
  });

  it('closes the client connection when the backend resets mid-response, without hanging', async () => {
    const resetter = await rawBackend((socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n' + 'x'.repeat(5_000), () => socket.resetAndDestroy());
    });
    const t = await tether(['--backend', `resetter=127.0.0.1:${resetter.port}`]);
    const r = await get(t.port, 10_000);
    expect(r.status).toBe(200);
    expect(r.complete).toBe(false);
    expect(r.failure).not.toBe('deadline');
    expect(r.body.length).toBeLessThan(1_000_000);
    expect(await metricReaches(t, 'tether_upstream_protocol_errors_total', 1)).toBe(1);
    // The balancer is still serving: the next exchange gets a fresh, working upstream connection.
    const again = await get(t.port, 10_000);
    expect(again.failure).not.toBe('deadline');
  });

  it('closes the client connection when the backend sends fewer body bytes than declared, then FIN', async () => {
    const short = await rawBackend((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nonly-twenty-bytes!!!'));
    const t = await tether(['--backend', `short=127.0.0.1:${short.port}`]);
    const r = await get(t.port, 10_000);
    expect(r.status).toBe(200);
    expect(r.complete).toBe(false);
    expect(r.failure).not.toBe('deadline');
    expect(r.body).toBe('only-twenty-bytes!!!');
  });
});
