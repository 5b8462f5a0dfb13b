// Header sticky mode: every copy of the route header is the balancer's and is removed before
// forwarding; the first copy is the one read.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';

let app1: TestBackend;
let app2: TestBackend;
let t: TetherProcess;

beforeAll(async () => {
  app1 = await startBackend('app1');
  app2 = await startBackend('app2');
  t = await startTether(['--backend', `app1=127.0.0.1:${app1.port}`, '--backend', `app2=127.0.0.1:${app2.port}`, '--sticky', 'header'], { workers: 1 });
});
afterAll(async () => {
  await t?.stop();
  await app1?.close();
  await app2?.close();
});

it('reads the first X-Tether-Route, strips every copy before the backend sees the request', async () => {
  const first = await request({ port: t.port });
  const token = first.headers['x-tether-route'] as string;
  expect(token).toMatch(/^[A-Za-z0-9_-]{40,}$/);
  const home = first.body;
  const r = await request({ port: t.port, headers: { 'x-tether-route': [token, 'second-copy', 'third-copy'] } });
  expect(r.body).toBe(home);
  expect(r.headers['x-tether-route'], 'a valid token is not re-issued').toBeUndefined();
  const seen = (home === 'app1' ? app1 : app2).received.at(-1)!;
  expect(seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())).not.toContain('x-tether-route');
});
