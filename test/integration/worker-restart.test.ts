// A worker thread that fails (an uncaught exception, as a bug would throw) is replaced and
// counted, the process and the other workers keep serving, and the replacement joins the same
// port. TETHER_FAULT_INJECTION=1 lets a request header trigger the failure.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { pollUntil } from '../helpers/sticky.js';

let backend: TestBackend;
let t: TetherProcess;

beforeAll(async () => {
  backend = await startBackend('app1');
  t = await startTether(['--backend', `app1=127.0.0.1:${backend.port}`], { workers: 2, env: { TETHER_FAULT_INJECTION: '1' } });
});
afterAll(async () => {
  await t?.stop();
  await backend?.close();
});

it('a worker that throws is restarted and counted; the balancer keeps serving on the same port', async () => {
  expect(await t.metric('tether_workers_running')).toBe(2);
  const crashed = await request({ port: t.port, headers: { 'x-tether-fault': 'crash-worker' }, timeoutMs: 5_000 }).catch((err: Error) => err);
  // The failing worker closes its connections as it goes: the client sees the connection end.
  expect(crashed).toBeInstanceOf(Error);

  await pollUntil('the restart to be counted', async () => ((await t.metric('tether_worker_restarts_total')) === 1 ? true : undefined), 15_000);
  await pollUntil('both workers listening again', async () => ((await t.metric('tether_workers_running')) === 2 ? true : undefined), 15_000);
  await t.waitForLog((e) => typeof e.msg === 'string' && e.msg.includes('failed: uncaught exception') && String(e.err).includes('injected fault'));
  await t.waitForLog((e) => e.msg === 'worker exited; restarting' && e.code === 70);

  // New connections spread over both workers again (the replacement included): all succeed.
  for (let i = 0; i < 40; i++) {
    const r = await request({ port: t.port, path: `/after/${i}` });
    expect(r.status).toBe(200);
    expect(r.body).toBe('app1');
  }
  expect(t.proc.exitCode).toBeNull();
  expect(await t.stop()).toBe(0);
});
