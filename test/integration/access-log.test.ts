// --access-log: one JSON line per request, from every worker, into one file (or stdout), with
// exact counts for a deterministic run; a destination that cannot be opened stops start-up.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue } from '../helpers/client.js';
import { pollUntil, tempDir } from '../helpers/sticky.js';
import { CLI, startTether } from '../helpers/tether.js';

interface Line {
  time: string;
  worker: number;
  client: string;
  method: string;
  path: string;
  status: number;
  bytes: number;
  upstream: string;
  upstreamAddr: string;
  upstreamUs: number;
  totalUs: number;
  sticky: string;
}

const dir = tempDir('tether-access-');
let a: TestBackend;
let b: TestBackend;

beforeAll(async () => {
  const handler = (name: string) => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    req.resume();
    if (req.url === '/missing') res.writeHead(404, { 'content-type': 'text/plain' }).end('nope!');
    else res.writeHead(200, { 'content-type': 'text/plain' }).end(name);
  };
  [a, b] = await Promise.all([startBackend('app1', (req, res) => handler('app1')(req, res)), startBackend('app2', (req, res) => handler('app2')(req, res))]);
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
  dir.cleanup();
});

const backendArgs = () => ['--backend', `app1=127.0.0.1:${a.port}`, '--backend', `app2=127.0.0.1:${b.port}`];

describe('access log', () => {
  it('writes exactly one line per request, with its fields, from both workers into one file', async () => {
    const file = `${dir.dir}/access.log`;
    const t = await startTether([...backendArgs(), '--access-log', file], { workers: 2 });
    try {
      const first = await request({ port: t.port, path: '/a?x=1', localAddress: '127.0.0.2' });
      const cookie = `TETHER=${setCookieValue(first, 'TETHER')}`;
      await request({ port: t.port, path: '/a?x=2', localAddress: '127.0.0.2' });
      for (let i = 0; i < 5; i++) await request({ port: t.port, path: `/b/${i}`, headers: { cookie }, localAddress: '127.0.0.3' });
      await request({ port: t.port, path: '/c', headers: { cookie: 'TETHER=not-a-token' } });
      const missing = await request({ port: t.port, path: '/missing', headers: { cookie } });
      expect(missing.status).toBe(404);
      await request({ port: t.port, path: '/h', method: 'HEAD', headers: { cookie } });
    } finally {
      expect(await t.stop()).toBe(0);
    }
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Line);
    expect(lines).toHaveLength(10);
    const byPath = (p: string) => lines.filter((l) => l.path === p);
    expect(byPath('/a?x=1')[0]).toMatchObject({ method: 'GET', status: 200, bytes: 4, client: '127.0.0.2', sticky: 'miss' });
    const pinned = byPath('/a?x=1')[0]!.upstream;
    expect(['app1', 'app2']).toContain(pinned);
    for (let i = 0; i < 5; i++) expect(byPath(`/b/${i}`)[0]).toMatchObject({ status: 200, upstream: pinned, sticky: 'hit', client: '127.0.0.3', bytes: 4 });
    expect(byPath('/c')[0]).toMatchObject({ sticky: 'invalid', status: 200 });
    expect(byPath('/missing')[0]).toMatchObject({ status: 404, bytes: 5, upstream: pinned, sticky: 'hit' });
    expect(byPath('/h')[0]).toMatchObject({ method: 'HEAD', status: 200, bytes: 0 });
    for (const l of lines) {
      expect(Number.isNaN(Date.parse(l.time))).toBe(false);
      expect([0, 1]).toContain(l.worker);
      expect(l.upstreamAddr).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(Number.isInteger(l.upstreamUs) && l.upstreamUs >= 0).toBe(true);
      expect(l.totalUs).toBeGreaterThanOrEqual(l.upstreamUs);
    }
    expect(lines.filter((l) => l.sticky === 'miss')).toHaveLength(2);
  });

  it('- writes to standard output, whole lines beside the process log', async () => {
    const t = await startTether([...backendArgs(), '--access-log', '-'], { workers: 2 });
    try {
      for (let i = 0; i < 3; i++) await request({ port: t.port, path: `/stdout/${i}` });
      const access = await pollUntil('3 access lines', async () => {
        const found = t.lines.filter((l) => l.includes('"path":"/stdout/'));
        return found.length >= 3 ? found : undefined;
      });
      for (const l of access) expect((JSON.parse(l) as Line).status).toBe(200);
    } finally {
      await t.stop();
    }
  });

  it('a destination that cannot be opened stops start-up with the reason', async () => {
    const proc = spawn(process.execPath, [CLI, ...backendArgs(), '--listen', '127.0.0.1:0', '--admin', 'off', '--access-log', `${dir.dir}/no/such/dir/access.log`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d));
    proc.stderr!.on('data', (d: Buffer) => (out += d));
    const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
    expect(code).toBe(1);
    expect(out).toContain('cannot open --access-log');
    expect(out).toContain('ENOENT');
  });
});
