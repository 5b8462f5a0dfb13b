// The node:diagnostics_channel hooks (src/data-plane/diagnostics.ts) on the real binary, the way
// an operator subscribes: a CommonJS module preloaded into every worker thread with
// NODE_OPTIONS=--require, here printing each message as a JSON line. A request's start and end,
// its sticky decision, a backend that refuses connections (the failure's code, source and
// retryability), and a request Tether answers itself (a refused session's 403) all arrive with
// their fields.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue } from '../helpers/client.js';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { backendFlag, tempDir } from '../helpers/sticky.js';

const HOOKS = `
const dc = require('node:diagnostics_channel');
const { isMainThread } = require('node:worker_threads');
const plain = (f) => f && { code: f.code, source: f.source, retryable: f.retryable, status: f.status, message: f.message };
for (const name of ['tether:request:start', 'tether:request:end', 'tether:sticky:decision', 'tether:upstream:failure']) {
  dc.subscribe(name, (m) => process.stderr.write(JSON.stringify({ dc: name, ...m, failure: plain(m.failure) }) + '\\n'));
}
if (!isMainThread) process.stderr.write(JSON.stringify({ dc: 'hooks-loaded' }) + '\\n');
`;

/** A port nothing listens on: bound, then closed. */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('diagnostics channels, subscribed in every worker by a preloaded module', () => {
  const tmp = tempDir();
  let app1: TestBackend;
  let tether: TetherProcess;

  beforeAll(async () => {
    const hooks = tmp.file('hooks.cjs', HOOKS);
    app1 = await startBackend('app1');
    tether = await startTether(
      [
        ...backendFlag(app1),
        '--backend', `dead/gone=127.0.0.1:${await deadPort()}`, '--route', 'dead.test=dead', '--sticky', 'dead/none',
        ...backendFlag(app1, 'bound'), '--route', 'bound.test=bound', '--bind', 'bound/ip',
      ],
      { workers: 1, env: { NODE_OPTIONS: `--require ${hooks}` } },
    );
    await tether.waitForLog((e) => e.dc === 'hooks-loaded');
  });

  afterAll(async () => {
    await tether?.stop();
    await app1?.close();
    tmp.cleanup();
  });

  it("publishes a request's start, its sticky decision and its end", async () => {
    const first = await request({ port: tether.port, path: '/a?b=1' });
    expect(first.status).toBe(200);
    const token = setCookieValue(first, 'TETHER')!;
    const start = await tether.waitForLog((e) => e.dc === 'tether:request:start' && e.target === '/a?b=1');
    expect(start).toMatchObject({ worker: 0, method: 'GET', pool: 'default', client: '127.0.0.1' });
    const end = await tether.waitForLog((e) => e.dc === 'tether:request:end' && e.target === '/a?b=1');
    expect(end).toMatchObject({ status: 200, backend: 'app1', pool: 'default', failure: null });
    expect(typeof end.durationMs === 'number' && end.durationMs >= 0).toBe(true);
    await tether.waitForLog((e) => e.dc === 'tether:sticky:decision' && e.outcome === 'miss' && e.pool === 'default');

    const again = await request({ port: tether.port, path: '/hit', headers: { cookie: `TETHER=${token}` } });
    expect(again.body).toBe('app1');
    const hit = await tether.waitForLog((e) => e.dc === 'tether:sticky:decision' && e.outcome === 'hit');
    expect(hit).toMatchObject({ pool: 'default', sessionBackend: 'app1' });
  });

  it('publishes an upstream failure with its stable code, source and retryability, and the 502 that ended the request', async () => {
    const reply = await request({ port: tether.port, path: '/down', headers: { host: 'dead.test' } });
    expect(reply.status).toBe(502);
    const failure = await tether.waitForLog((e) => e.dc === 'tether:upstream:failure' && e.pool === 'dead');
    expect(failure).toMatchObject({
      protocol: 'http',
      backend: 'gone',
      attempt: 1,
      failure: { code: 'TETHER_ERR_UPSTREAM_CONNECT', source: 'upstream', retryable: true, status: 502 },
    });
    const end = await tether.waitForLog((e) => e.dc === 'tether:request:end' && e.target === '/down');
    expect(end).toMatchObject({ status: 502, backend: 'gone', failure: { code: 'TETHER_ERR_UPSTREAM_CONNECT', source: 'upstream' } });
    expect(reply.body).toBe(`tether: ${(end.failure as { message: string }).message}\n`);
  });

  it("publishes the end of a request Tether refused itself, with the downstream failure's code", async () => {
    // A session bound to 127.0.0.1, presented from 127.0.0.2: answered 403 by the binding phase.
    const issued = await request({ port: tether.port, headers: { host: 'bound.test' } });
    const token = setCookieValue(issued, 'TETHER')!;
    const replay = await request({ port: tether.port, path: '/replayed', localAddress: '127.0.0.2', headers: { host: 'bound.test', cookie: `TETHER=${token}` } });
    expect(replay.status).toBe(403);
    const end = await tether.waitForLog((e) => e.dc === 'tether:request:end' && e.target === '/replayed');
    expect(end).toMatchObject({ status: 403, pool: 'bound', client: '127.0.0.2', backend: '', failure: { code: 'TETHER_ERR_SESSION_REFUSED', source: 'downstream', retryable: false } });
  });
});
