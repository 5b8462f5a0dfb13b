// Issue #17 (1): one admin request with a malformed percent-escape (`/api/v1/backends/%ZZ/drain`)
// threw URIError outside any try/catch on the main thread and ended the process, and all traffic
// with it. Malformed input is now a 400 naming the parameter; a handler that throws is a 500 for
// that request alone; and 10,000 random admin requests while a load runs through the data plane
// leave the process up and fail no data-plane request.
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminToken, runToExit, startTether, type TetherProcess } from '../helpers/tether.js';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { prng } from '../helpers/sticky.js';
import { startAdmin, type AdminHandlers } from '../../src/orchestrator/admin.js';

/** One raw request on its own connection: the whole response as text ('' if closed without one). */
function rawRequest(port: number, bytes: Buffer | string, ms = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer or close within ${ms} ms to ${JSON.stringify(bytes.toString().slice(0, 80))}`));
    }, ms);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined); // a reset is an answer too: the request was refused
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    s.end(bytes);
  });
}

function statusOf(text: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return m ? Number(m[1]) : 0;
}

describe('admin listener under hostile input', () => {
  let backend: TestBackend;
  let t: TetherProcess;
  const auth = adminToken();

  beforeAll(async () => {
    backend = await startBackend('app1');
    t = await startTether(['--no-demo', '--backend', `app1=127.0.0.1:${backend.port}`, '--admin-token-file', auth.file]);
  });
  afterAll(async () => {
    expect(await t.stop()).toBe(0);
    await backend.close();
  });

  it.each([
    ['POST', '/api/v1/backends/%ZZ/drain'],
    ['POST', '/api/v1/backends/%ZZ/undrain'],
    ['DELETE', '/api/v1/backends/%E0%A4%A'],
    ['DELETE', '/api/v1/backends/%'],
  ])('%s %s: 400 naming the parameter, and the process serves on', async (method, path) => {
    const text = await rawRequest(t.adminPort, `${method} ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth.header}\r\nContent-Length: 0\r\n\r\n`);
    expect(statusOf(text), text).toBe(400);
    expect(text).toContain('path parameter id is not valid percent-encoded UTF-8');
    // Without the token the same request is refused for that reason, and nothing breaks either.
    const anon = await rawRequest(t.adminPort, `${method} ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
    expect(statusOf(anon), anon).toBe(401);
    expect(t.proc.exitCode).toBeNull();
    const res = await fetch(t.url('/'), { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('app1');
  });

  it('10,000 random admin requests during data-plane load: the process stays up, no data-plane request fails', async () => {
    let stop = false;
    const plane = { ok: 0, failed: [] as string[] };
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const lane = async () => {
      while (!stop) {
        const outcome = await new Promise<string>((resolve) => {
          const req = http.get({ host: '127.0.0.1', port: t.port, path: '/load', agent }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve(res.statusCode === 200 && Buffer.concat(chunks).toString() === 'app1' ? 'ok' : `status ${res.statusCode}`));
            res.on('error', (err) => resolve(`response error ${err.message}`));
          });
          req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
          req.on('error', (err) => resolve(`error ${err.message}`));
        });
        if (outcome === 'ok') plane.ok++;
        else plane.failed.push(outcome);
      }
    };
    const lanes = [lane(), lane(), lane(), lane()];

    const rng = prng(0x17a);
    const answered = new Map<number, number>();
    let next = 0;
    const TOTAL = 10_000;
    const fuzzLane = async () => {
      while (next < TOTAL) {
        next++;
        const bytes = randomAdminRequest(rng, auth.header);
        const text = await rawRequest(t.adminPort, bytes, 10_000);
        const status = statusOf(text);
        answered.set(status, (answered.get(status) ?? 0) + 1);
        // A 500 would mean a handler failed on input it should have refused as a 4xx.
        if (status === 500) throw new Error(`500 for ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}:\n${text}`);
      }
    };
    try {
      await Promise.all(Array.from({ length: 16 }, fuzzLane));
    } finally {
      stop = true;
      await Promise.all(lanes);
      agent.destroy();
    }
    expect(t.proc.exitCode).toBeNull();
    expect(plane.failed).toEqual([]);
    expect(plane.ok).toBeGreaterThan(100);
    // The fuzz reached the handlers, not only uWS's parser: answers of several kinds came back.
    for (const s of [200, 400, 401, 404]) expect(answered.get(s) ?? 0, `${s} answers: ${JSON.stringify([...answered])}`).toBeGreaterThan(0);
    // And the admin listener still answers as before.
    const health = await fetch(`http://127.0.0.1:${t.adminPort}/healthz`, { signal: AbortSignal.timeout(5_000) });
    expect(health.status).toBe(200);
    expect(t.lines.some((l) => l.includes('admin_request_failed'))).toBe(false);
  }, 120_000);
});

describe('an admin handler that throws', () => {
  it('is a 500 for that request, logged with its stack; the listener answers the next request', async () => {
    const failures: { err: unknown; where: string }[] = [];
    const boom = () => {
      throw new Error('handler bug');
    };
    const handlers: AdminHandlers = {
      ready: () => true,
      metrics: () => Promise.reject(new Error('metrics bug')),
      contentType: 'text/plain',
      adminToken: null,
      revoke: boom,
      listBackends: boom,
      addBackend: () => Promise.reject(new Error('async handler bug')),
      drainBackend: boom,
      undrainBackend: boom,
      removeBackend: boom,
      events: () => ({ status: 200, body: { circular: (() => { const o: Record<string, unknown> = {}; o.self = o; return o; })() } }),
      reload: boom,
      certificates: boom,
      mountDashboard: (app) => {
        app.get('/dashboard', () => {
          throw new Error('mounted handler bug');
        });
      },
      failed: (err, where) => failures.push({ err, where }),
    };
    const admin = await startAdmin({ host: '127.0.0.1', port: 0 }, handlers);
    try {
      const list = await rawRequest(admin.port, 'GET /api/v1/backends HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(statusOf(list), list).toBe(500);
      expect(list).toContain('"error":"internal"');
      expect(list).not.toContain('handler bug'); // the client is not told the internals
      const dash = await rawRequest(admin.port, 'GET /dashboard HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(statusOf(dash), dash).toBe(500);
      const events = await rawRequest(admin.port, 'GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(statusOf(events), events).toBe(500);
      const health = await rawRequest(admin.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(statusOf(health), health).toBe(200);
      expect(failures.map((f) => f.where)).toEqual(['GET /api/v1/backends', 'GET /dashboard', 'GET /api/v1/events: answer not serialisable']);
      expect((failures[0]!.err as Error).stack).toContain('handler bug');
    } finally {
      admin.close();
    }
  });
});

describe('a held admin port', () => {
  it('is refused with TETHER_ERR_LISTEN, not shared with the running Tether', async () => {
    // An explicit port, as the default 9090 is: uWS sets SO_REUSEPORT only on explicit ports, so
    // port 0 would not show the sharing.
    const free = net.createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', () => resolve()));
    const port = (free.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => free.close(() => resolve()));
    const first = await startTether(['--no-demo', '--backend', 'a=127.0.0.1:1'], { workers: 1, admin: `127.0.0.1:${port}` });
    try {
      const second = await runToExit(['--listen', '127.0.0.1:0', '--admin', `127.0.0.1:${first.adminPort}`, '--workers', '1', '--no-demo', '--backend', 'a=127.0.0.1:1']);
      expect(second.code, second.out).toBe(1);
      expect(second.out).toContain('TETHER_ERR_LISTEN');
      expect(second.out).toContain(`127.0.0.1:${first.adminPort}`);
      expect(second.out).toContain('already in use by another process');
      expect(first.proc.exitCode).toBeNull();
      // Every admin answer still comes from the first process.
      for (let i = 0; i < 8; i++) {
        const res = await fetch(`http://127.0.0.1:${first.adminPort}/healthz`, { signal: AbortSignal.timeout(5_000) });
        expect(res.status).toBe(200);
      }
    } finally {
      expect(await first.stop()).toBe(0);
    }
  });
});

const METHODS = ['GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS', 'HEAD', 'get', 'FOO', 'POST '];
const ROUTES = [
  '/api/v1/backends',
  '/api/v1/backends/:id/drain',
  '/api/v1/backends/:id/undrain',
  '/api/v1/backends/:id',
  '/api/v1/events',
  '/api/v1/sessions/revoke',
  '/api/v1/reload',
  '/healthz',
  '/readyz',
  '/metrics',
  '/dashboard',
  '/nowhere/:id',
];

function pick<T>(rng: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rng() * xs.length)]!;
}

/** A random path segment: plain text, valid escapes, broken escapes, bytes a URL must not hold. */
function segment(rng: () => number): string {
  let s = 'x'; // never the live backend's id, so the fuzz cannot drain the data plane's backend
  const n = Math.floor(rng() * 8);
  for (let i = 0; i < n; i++) {
    const r = rng();
    if (r < 0.3) s += String.fromCharCode(97 + Math.floor(rng() * 26));
    else if (r < 0.5) s += `%${Math.floor(rng() * 256).toString(16).padStart(2, '0').toUpperCase()}`;
    else if (r < 0.65) s += pick(rng, ['%', '%Z', '%ZZ', '%E0%A4%A', '%C3', '%F0%9F', '%FF%FE', '%00', '%2F']);
    else if (r < 0.8) s += pick(rng, ['..', '/', '//', '?', '#', ';', '=', '&']);
    else s += String.fromCharCode(33 + Math.floor(rng() * 94));
  }
  return s;
}

function body(rng: () => number): string {
  const r = rng();
  if (r < 0.3) return '';
  if (r < 0.5) {
    // A JSON object shaped like a real one, never for the data plane's pool ('default').
    const o: Record<string, unknown> = { pool: `p${Math.floor(rng() * 5)}` };
    if (rng() < 0.7) o.id = segment(rng);
    if (rng() < 0.7) o.address = pick(rng, ['127.0.0.1', '::1', 'not an address', 1234, null]);
    if (rng() < 0.7) o.port = pick(rng, [1, 0, 65536, -1, 'x', 1.5]);
    if (rng() < 0.3) o.weight = pick(rng, [0, 1, 1e9, 'heavy']);
    if (rng() < 0.3) o.deadlineSec = pick(rng, [0, null, -1, 'soon', 604_801]);
    if (rng() < 0.2) o.token = segment(rng);
    if (rng() < 0.1) o.extra = [1, 2];
    return JSON.stringify(o);
  }
  if (r < 0.7) return pick(rng, ['{', '[]', 'null', '"x"', '{"session":', '{"token":"abc"}', '{"session":"x","pool":"default"}']);
  let s = '';
  const n = Math.floor(rng() * 300);
  for (let i = 0; i < n; i++) s += String.fromCharCode(Math.floor(rng() * 256));
  return s;
}

function randomAdminRequest(rng: () => number, authHeader: string): Buffer {
  const method = pick(rng, METHODS);
  let path = pick(rng, ROUTES).replace(':id', () => segment(rng));
  if (rng() < 0.3) path += `?${pick(rng, ['pool', 'since', 'x'])}=${segment(rng)}`;
  const b = body(rng);
  const headers: string[] = ['Host: admin'];
  const ra = rng();
  if (ra < 0.5) headers.push(`Authorization: ${authHeader}`);
  else if (ra < 0.7) headers.push(`Authorization: ${pick(rng, ['Bearer', 'Bearer x', 'Basic abc', 'bearer  ', ''])}`);
  if (rng() < 0.2) headers.push(`X-${segment(rng).replace(/[^A-Za-z]/g, '') || 'Y'}: ${segment(rng)}`);
  const length = Buffer.byteLength(b, 'latin1');
  let framed = b;
  if (rng() < 0.1) {
    headers.push('Transfer-Encoding: chunked');
    framed = `${length > 0 ? `${length.toString(16)}\r\n${b}\r\n` : ''}0\r\n\r\n`;
  } else headers.push(`Content-Length: ${length}`);
  return Buffer.from(`${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\nConnection: close\r\n\r\n${framed}`, 'latin1');
}
