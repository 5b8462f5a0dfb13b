// Header rewriting through the balancer, checked against what the backend received and what the
// client got: X-Forwarded-*, hop-by-hop fields both ways (RFC 9110 §7.6.1), framing headers
// that must be rebuilt rather than copied, repeated Set-Cookie, and large values.
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { startBackend, type Handler, type TestBackend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(handler?: Handler): Promise<{ backend: TestBackend; t: TetherProcess }> {
  const backend = await startBackend('b', handler);
  cleanups.push(() => backend.close());
  const t = await startTether(['--backend', `b=127.0.0.1:${backend.port}`, '--sticky', 'none'], { workers: 2 });
  cleanups.push(() => t.stop());
  return { backend, t };
}

/**
 * Sends raw request bytes and resolves with the response text once a Content-Length-framed
 * or chunked response is complete, the connection closes, or 10 s pass. For header lists node:http will
 * not produce (repeated Connection fields, exact casing).
 */
function rawRequest(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, 10_000);
    s.on('data', (d) => {
      out += d.toString('latin1');
      const end = out.indexOf('\r\n\r\n');
      if (end < 0) return;
      const m = /\r\ncontent-length: *(\d+)/i.exec(out.slice(0, end));
      if (m ? out.length - end - 4 >= Number(m[1]) : out.endsWith('\r\n0\r\n\r\n')) done();
    });
    s.on('error', () => {});
    s.on('close', done);
    s.write(bytes, 'latin1');
  });
}

function headerNames(rawHeaders: string[]): string[] {
  return rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
}

describe('X-Forwarded-*', () => {
  it('sets X-Forwarded-For to the client address, replacing what an untrusted client sent', async () => {
    const { backend, t } = await setup();
    await request({ port: t.port, path: '/plain', localAddress: '127.0.0.2' });
    await request({ port: t.port, path: '/chain', localAddress: '127.0.0.3', headers: { 'x-forwarded-for': '203.0.113.7, 198.51.100.1' } });
    expect(backend.received[0]!.headers['x-forwarded-for']).toBe('127.0.0.2');
    expect(backend.received[1]!.headers['x-forwarded-for']).toBe('127.0.0.3');
  });

  it('repeated X-Forwarded-For fields from an untrusted client: one field, the client address', async () => {
    const { backend, t } = await setup();
    await rawRequest(t.port, 'GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\n\r\n');
    const seen = backend.received[0]!;
    expect(seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'x-forwarded-for')).toHaveLength(1);
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('sets X-Forwarded-Proto http and X-Forwarded-Host from Host, replacing client-supplied values', async () => {
    const { backend, t } = await setup();
    await request({ port: t.port, headers: { host: 'shop.example:8080', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' } });
    const seen = backend.received[0]!;
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-forwarded-host']).toBe('shop.example:8080');
    expect(seen.headers.host).toBe('shop.example:8080');
    const names = headerNames(seen.rawHeaders);
    expect(names.filter((n) => n === 'x-forwarded-proto')).toHaveLength(1);
    expect(names.filter((n) => n === 'x-forwarded-host')).toHaveLength(1);
  });
});

describe('hop-by-hop request headers', () => {
  it('drops Connection, Keep-Alive, TE, Trailer, Upgrade, Proxy-Connection and the fields Connection names', async () => {
    const { backend, t } = await setup();
    const res = await rawRequest(
      t.port,
      'GET /hop HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade, X-Secret-Hop\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n' +
        'Trailer: X-Checksum\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\nX-Secret-Hop: 1\r\nX-End-To-End: kept\r\n\r\n',
    );
    expect(res).toMatch(/^HTTP\/1\.1 200 /);
    const seen = backend.received[0]!;
    const names = headerNames(seen.rawHeaders);
    for (const hop of ['keep-alive', 'te', 'trailer', 'upgrade', 'proxy-connection', 'x-secret-hop']) {
      expect(names, `${hop} must not be forwarded`).not.toContain(hop);
    }
    // Node's server reports its own default when Connection is absent; the raw list is the truth.
    expect(seen.rawHeaders.some((v, i) => i % 2 === 0 && v.toLowerCase() === 'connection' && /upgrade|x-secret-hop/i.test(seen.rawHeaders[i + 1]!))).toBe(false);
    expect(seen.headers['x-end-to-end']).toBe('kept');
  });

  it('drops the fields named by every Connection field, not just the last one', async () => {
    const { backend, t } = await setup();
    await rawRequest(t.port, 'GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Hop-A\r\nConnection: X-Hop-B\r\nX-Hop-A: a\r\nX-Hop-B: b\r\nX-Kept: k\r\n\r\n');
    const names = headerNames(backend.received[0]!.rawHeaders);
    expect(names).not.toContain('x-hop-b');
    expect(names, 'X-Hop-A is named by the first Connection field').not.toContain('x-hop-a');
    expect(names).toContain('x-kept');
  });

  it('rebuilds framing: a chunked client body reaches the backend chunked, without Content-Length', async () => {
    const { backend, t } = await setup((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(Buffer.concat(chunks)));
    });
    const res = await rawRequest(t.port, 'POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    expect(res).toMatch(/\r\n\r\nhello world$/);
    const seen = backend.received[0]!;
    expect(seen.headers['transfer-encoding']).toBe('chunked');
    expect(seen.headers['content-length']).toBeUndefined();
  });

  it('rewrites Content-Length from the parsed value rather than copying the client text', async () => {
    const { backend, t } = await setup((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(Buffer.concat(chunks)));
    });
    const res = await rawRequest(t.port, 'POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 0005\r\n\r\nhello');
    expect(res).toMatch(/\r\n\r\nhello$/);
    const seen = backend.received[0]!;
    expect(seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'content-length')).toHaveLength(1);
    expect(seen.headers['content-length']).toBe('5');
  });
});

describe('response headers', () => {
  async function rawBackendResponding(response: string): Promise<TetherProcess> {
    const open = new Set<net.Socket>();
    const server = net.createServer((s) => {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => {});
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString('latin1');
        while (buf.includes('\r\n\r\n')) {
          buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
          s.write(response, 'latin1');
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => {
      for (const s of open) s.destroy();
      server.close(() => r());
    }));
    const t = await startTether(['--backend', `raw=127.0.0.1:${(server.address() as AddressInfo).port}`, '--sticky', 'none'], { workers: 2 });
    cleanups.push(() => t.stop());
    return t;
  }

  it('does not pass the backend’s hop-by-hop headers, nor the fields its Connection names, to the client', async () => {
    const t = await rawBackendResponding(
      'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Backend-Hop\r\nKeep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\n' +
        'Trailer: X-Sum\r\nX-Backend-Hop: internal\r\nX-Visible: yes\r\nContent-Length: 2\r\n\r\nok',
    );
    const r = await request({ port: t.port });
    expect(r.status).toBe(200);
    expect(r.body).toBe('ok');
    expect(r.headers['x-visible']).toBe('yes');
    const names = headerNames(r.rawHeaders);
    for (const hop of ['keep-alive', 'proxy-connection', 'trailer']) expect(names, `${hop} must not reach the client`).not.toContain(hop);
    expect(r.headers.connection ?? '').not.toMatch(/x-backend-hop/i);
    expect(names, 'X-Backend-Hop is named by the backend’s Connection field').not.toContain('x-backend-hop');
  });

  it('passes response headers in order, byte for byte, including latin1 values', async () => {
    const t = await rawBackendResponding(
      'HTTP/1.1 200 OK\r\nX-First: 1\r\nX-Latin: caf\xe9 \xff\r\nX-Empty:\r\nX-Last: z\r\nContent-Length: 2\r\n\r\nok',
    );
    const r = await rawRequest(t.port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n');
    expect(r).toMatch(/^HTTP\/1\.1 200 /);
    // Read as latin1: each byte one character, so 0xE9 and 0xFF must arrive as single bytes.
    expect(r).toContain('\r\nX-First: 1\r\nX-Latin: caf\xe9 \xff\r\nX-Empty: \r\nX-Last: z\r\n');
    expect(r).toMatch(/\r\n\r\nok$/);
  });

  it('passes every Set-Cookie from the backend to the client', async () => {
    const cookies = ['a=1; Path=/', 'b=2; HttpOnly', 'c=3; Max-Age=60; SameSite=Lax', 'a=4; Path=/other'];
    const { t } = await setup((req, res) => {
      req.resume();
      res.setHeader('set-cookie', cookies);
      res.end('cookies');
    });
    const r = await request({ port: t.port });
    expect(r.headers['set-cookie']).toEqual(cookies);
  });

  it('passes a 16 KiB response header value through unchanged', async () => {
    const big = 'r'.repeat(16 * 1024);
    const { t } = await setup((req, res) => {
      req.resume();
      res.setHeader('x-big', big);
      res.end('big');
    });
    // Raw: node:http's client refuses heads over 16 KiB itself.
    const r = await rawRequest(t.port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n');
    expect(r).toMatch(/^HTTP\/1\.1 200 /);
    expect(r).toContain(`\r\nx-big: ${big}\r\n`);
  });

  it('passes a 15 KiB request header value through unchanged', async () => {
    // The client-facing uWS caps a request head at 16 KiB (test/regressions/uws-limits.test.ts).
    const big = 'q'.repeat(15 * 1024);
    const { backend, t } = await setup();
    const r = await request({ port: t.port, headers: { 'x-big': big } });
    expect(r.status).toBe(200);
    expect(backend.received[0]!.headers['x-big']).toBe(big);
  });
});
