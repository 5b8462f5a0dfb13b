// Issue #17 (5): a client's X-Forwarded-For was appended to and X-Real-IP / Forwarded passed
// through, so any client could tell the backends (and anything reading those headers) it was
// someone else. Now Tether replaces them with what it saw unless the peer is in
// --trusted-proxies; a trusted proxy's chain is kept and appended to, and the client it vouches
// for is the one binding and the access log see. Also: a backend's own Set-Cookie for Tether's
// cookie name is dropped (and counted), not passed on beside Tether's.
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { startBackend, type Handler, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue } from '../helpers/client.js';
import { forwardedAddress, parseCidr, realClient, TrustedProxies, type Cidr } from '../../src/data-plane/forwarding.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(args: string[], handler?: Handler): Promise<{ backend: TestBackend; t: TetherProcess }> {
  const backend = await startBackend('b', handler);
  cleanups.push(() => backend.close());
  const t = await startTether(['--no-demo', '--backend', `b=127.0.0.1:${backend.port}`, ...args], { workers: 2 });
  cleanups.push(() => t.stop());
  return { backend, t };
}

const SPOOF = {
  'x-forwarded-for': '203.0.113.7',
  'x-real-ip': '203.0.113.7',
  forwarded: 'for=203.0.113.7;proto=https',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'evil.example',
};

describe('forwarding headers from an untrusted client', () => {
  it('are replaced with what Tether saw: X-Forwarded-*, X-Real-IP and Forwarded', async () => {
    const { backend, t } = await setup(['--sticky', 'none']);
    await request({ port: t.port, localAddress: '127.0.0.5', headers: { host: 'shop.example', ...SPOOF } });
    const h = backend.received[0]!.headers;
    expect(h['x-forwarded-for']).toBe('127.0.0.5');
    expect(h['x-real-ip']).toBe('127.0.0.5');
    expect(h.forwarded).toBe('for=127.0.0.5;host=shop.example;proto=http');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toBe('shop.example');
    const raw = backend.received[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    for (const name of Object.keys(SPOOF)) expect(raw.filter((n) => n === name), name).toHaveLength(1);
  });

  it('cannot move a session bound to its address (--bind ip) by claiming another one', async () => {
    const { t } = await setup(['--sticky', 'cookie', '--bind', 'ip']);
    const first = await request({ port: t.port, localAddress: '127.0.0.6' });
    const token = setCookieValue(first, 'TETHER')!;
    expect(token).toBeTruthy();
    const replay = await request({ port: t.port, localAddress: '127.0.0.7', headers: { cookie: `TETHER=${token}`, 'x-forwarded-for': '127.0.0.6', 'x-real-ip': '127.0.0.6' } });
    expect(replay.status).toBe(403);
  });
});

describe('--trusted-proxies', () => {
  it('keeps and appends to a trusted peer\'s chain; the client it vouches for is bound and logged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-fwd-'));
    const log = join(dir, 'access.log');
    const { backend, t } = await setup(['--sticky', 'cookie', '--bind', 'ip', '--trusted-proxies', '127.0.0.8,127.0.0.9/32', '--access-log', log]);
    // The proxy at .8 says the client is 198.51.100.4 (and that it came over https).
    const viaProxy = { 'x-forwarded-for': '198.51.100.4', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example', forwarded: 'for=198.51.100.4;proto=https' };
    const first = await request({ port: t.port, localAddress: '127.0.0.8', headers: { host: 'inner', ...viaProxy } });
    const h = backend.received[0]!.headers;
    expect(h['x-forwarded-for']).toBe('198.51.100.4, 127.0.0.8');
    expect(h['x-real-ip']).toBe('198.51.100.4');
    expect(h['x-forwarded-proto']).toBe('https');
    expect(h['x-forwarded-host']).toBe('shop.example');
    expect(h.forwarded).toBe('for=198.51.100.4;proto=https, for=127.0.0.8;host=inner;proto=http');
    const token = setCookieValue(first, 'TETHER')!;
    // The same client through the other trusted proxy keeps its session ...
    const moved = await request({ port: t.port, localAddress: '127.0.0.9', headers: { cookie: `TETHER=${token}`, 'x-forwarded-for': '198.51.100.4' } });
    expect(moved.status).toBe(200);
    // ... another client through a trusted proxy does not ...
    const other = await request({ port: t.port, localAddress: '127.0.0.8', headers: { cookie: `TETHER=${token}`, 'x-forwarded-for': '198.51.100.5' } });
    expect(other.status).toBe(403);
    // ... and an untrusted peer claiming to be the client is not believed.
    const spoof = await request({ port: t.port, localAddress: '127.0.0.10', headers: { cookie: `TETHER=${token}`, 'x-forwarded-for': '198.51.100.4' } });
    expect(spoof.status).toBe(403);
    expect(await t.stop()).toBe(0);
    const clients = readFileSync(log, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { client: string }).client);
    expect(clients[0]).toBe('198.51.100.4');
  });

  it('a bad CIDR is refused at start with the value named', async () => {
    const t = startTether(['--no-demo', '--backend', 'b=127.0.0.1:1', '--trusted-proxies', '10.0.0.0/33']);
    await expect(t).rejects.toThrow(/prefix length 0-32 in '10.0.0.0\/33'/);
  });
});

describe('the route cookie is Tether\'s', () => {
  it('a backend\'s own Set-Cookie for TETHER is dropped and counted; Tether\'s token is the only one', async () => {
    const { t } = await setup(['--sticky', 'cookie'], (req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('set-cookie', ['TETHER=from-the-backend; Path=/', 'app=1; Path=/']);
        res.end('ok');
      });
    });
    const reply = await request({ port: t.port });
    const cookies = (reply.headers['set-cookie'] ?? []).map((c) => c.slice(0, c.indexOf('=')));
    expect(cookies.filter((n) => n === 'TETHER')).toHaveLength(1);
    expect(cookies).toContain('app');
    expect(setCookieValue(reply, 'TETHER')).not.toBe('from-the-backend');
    expect(await t.metric('tether_backend_route_cookie_dropped_total')).toBe(1);
  });
});

describe('forwarding.ts', () => {
  const trusted = (...c: string[]) => new TrustedProxies(c.map((x) => parseCidr(x) as Cidr));
  it('walks the chain from the right past trusted proxies', () => {
    const tp = trusted('10.0.0.0/8', '2001:db8::/32');
    expect(realClient('192.0.2.1', '1.1.1.1', tp)).toBe('192.0.2.1'); // untrusted peer
    expect(realClient('10.0.0.1', '', tp)).toBe('10.0.0.1');
    expect(realClient('10.0.0.1', '1.1.1.1, 2.2.2.2, 10.9.9.9', tp)).toBe('2.2.2.2');
    expect(realClient('10.0.0.1', '10.1.1.1, 10.2.2.2', tp)).toBe('10.1.1.1');
    expect(realClient('10.0.0.1', '1.1.1.1, junk, 10.2.2.2', tp)).toBe('10.2.2.2');
    expect(realClient('::ffff:10.0.0.1', '[2001:db8::5]:443, 3.3.3.3:8080', tp)).toBe('3.3.3.3');
    expect(realClient('2001:db8::1', '2001:db9::7', tp)).toBe('2001:db9::7');
  });
  it('parses CIDRs and refuses what is not one', () => {
    expect(parseCidr('10.1.2.3/8')).toMatchObject({ bits: 8, bytes: Uint8Array.from([10, 0, 0, 0]) });
    expect(parseCidr('::1')).toMatchObject({ bits: 128 });
    for (const bad of ['10.0.0.0/33', '::/129', 'example.com', '10.0.0.0/', '10.0.0/8', '1.2.3.4/-1', '']) expect(typeof parseCidr(bad), bad).toBe('string');
    expect(forwardedAddress(' [::1]:80 ')).toBe('::1');
    expect(forwardedAddress('unknown')).toBe('');
  });
});
