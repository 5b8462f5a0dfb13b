// The backend registry through the admin API, as an operator uses it: list, add, drain,
// remove, address conflicts, events, the admin token; and health: active checks (fall/rise)
// and passive 5xx ejection, seen by traffic through real workers.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type Handler, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue, type Reply } from '../helpers/client.js';
import { pollUntil } from '../helpers/sticky.js';
import { adminToken, startTether, type TetherProcess } from '../helpers/tether.js';

interface Json {
  status: number;
  body: Record<string, unknown>;
}

function api(t: TetherProcess, method: string, path: string, body?: unknown, auth?: string): Promise<Json> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { host: '127.0.0.1', port: t.adminPort, path, method, agent: false, headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...(auth ? { authorization: auth } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

type BackendView = { pool: string; id: string; address: string; port: number; state: string; source: string; health: { up: boolean; check: { up: boolean; detail: string } | null } };

async function backends(t: TetherProcess): Promise<BackendView[]> {
  const r = await api(t, 'GET', '/api/v1/backends');
  expect(r.status).toBe(200);
  return r.body.backends as BackendView[];
}

/** Distinct backends that answered `n` fresh clients (no token). */
async function spread(t: TetherProcess, n: number, host = 'web.test'): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const r = await request({ port: t.port, headers: { host } });
    seen.set(r.body, (seen.get(r.body) ?? 0) + 1);
  }
  return seen;
}

describe('admin API: backends, drain, conflicts, events', () => {
  const admin = adminToken();
  let a: TestBackend;
  let b: TestBackend;
  let c: TestBackend;
  let t: TetherProcess;

  beforeAll(async () => {
    [a, b, c] = await Promise.all([startBackend('app1'), startBackend('app2'), startBackend('app3')]);
    t = await startTether(['--backend', `web/app1=127.0.0.1:${a.port}`, '--backend', `web/app2=127.0.0.1:${b.port}`, '--route', 'web.test=web', '--admin-token-file', admin.file]);
  });
  afterAll(async () => {
    await t?.stop();
    await Promise.all([a?.close(), b?.close(), c?.close()]);
  });

  it('lists the configured backends with their state', async () => {
    const list = await backends(t);
    expect(list.map((x) => [x.pool, x.id, x.port, x.state, x.source])).toEqual([
      ['web', 'app1', a.port, 'up', 'config'],
      ['web', 'app2', b.port, 'up', 'config'],
    ]);
  });

  it('refuses changes without the token, or with a wrong one', async () => {
    const body = { pool: 'web', id: 'app3', address: '127.0.0.1', port: c.port };
    const none = await api(t, 'POST', '/api/v1/backends', body);
    expect(none.status).toBe(401);
    const wrong = await api(t, 'POST', '/api/v1/backends', body, 'Bearer not-the-token-at-all');
    expect(wrong.status).toBe(401);
    expect((await api(t, 'DELETE', '/api/v1/backends/app1', undefined, 'Bearer nope')).status).toBe(401);
    expect((await backends(t)).map((x) => x.id)).toEqual(['app1', 'app2']);
  });

  it('adds a backend: every worker sends it traffic as soon as the call returns', async () => {
    const r = await api(t, 'POST', '/api/v1/backends', { pool: 'web', id: 'app3', address: '127.0.0.1', port: c.port }, admin.header);
    expect(r.status).toBe(201);
    expect(r.body.result).toBe('added');
    const seen = await spread(t, 30);
    expect([...seen.keys()].sort()).toEqual(['app1', 'app2', 'app3']);
  });

  it('refuses bad input with a specific reason', async () => {
    const cases: [unknown, number, RegExp][] = [
      [{ pool: 'web', id: 'bad id', address: '127.0.0.1', port: 1 }, 400, /backend id/],
      [{ pool: 'web', id: 'x', address: 'not an address!', port: 1 }, 400, /address/],
      [{ pool: 'web', id: 'x', address: '127.0.0.1', port: 70000 }, 400, /port/],
      [{ pool: 'nope', id: 'x', address: '127.0.0.1', port: 1 }, 404, /no pool 'nope'/],
      [{ pool: 'web', id: 'app1', address: '127.0.0.1', port: 1 }, 409, /exists/],
      [{ pool: 'web', id: 'x', address: '127.0.0.1', port: 1, colour: 'red' }, 400, /unknown field/],
    ];
    for (const [body, status, message] of cases) {
      const r = await api(t, 'POST', '/api/v1/backends', body, admin.header);
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(String(r.body.message)).toMatch(message);
    }
    const notJson = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: t.adminPort, path: '/api/v1/backends', method: 'POST', agent: false, headers: { authorization: admin.header } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end('{nope');
    });
    expect(notJson).toBe(400);
  });

  it('refuses a second ID at an address another live backend holds: alert in log, metric and events', async () => {
    const before = await t.metric('tether_address_conflicts_total');
    const r = await api(t, 'POST', '/api/v1/backends', { pool: 'web', id: 'intruder', address: '127.0.0.1', port: a.port }, admin.header);
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('address_conflict');
    expect(String(r.body.message)).toContain('web/app1');
    const line = await t.waitForLog((e) => e.event === 'address_conflict' && e.id === 'intruder');
    expect(line.holderId).toBe('app1');
    expect(line.level).toBe(50); // pino error
    expect(await t.metric('tether_address_conflicts_total')).toBe(before + 1);
    const ev = await api(t, 'GET', '/api/v1/events');
    const conflict = (ev.body.events as { type: string; fields: Record<string, unknown> }[]).find((e) => e.type === 'address_conflict' && e.fields.id === 'intruder');
    expect(conflict?.fields.holderId).toBe('app1');
    expect((await backends(t)).map((x) => x.id)).not.toContain('intruder');
    // ?since= gives only what is newer.
    const since = await api(t, 'GET', `/api/v1/events?since=${ev.body.lastSeq as number}`);
    expect(since.body.events).toEqual([]);
  });

  it('drain: sticky sessions keep their backend, new sessions never get it; a deadline ends that', async () => {
    // A client pinned to app2 by its route token.
    let cookie = '';
    for (let i = 0; i < 20 && !cookie; i++) {
      const r = await request({ port: t.port, headers: { host: 'web.test' } });
      if (r.body === 'app2') cookie = `TETHER=${setCookieValue(r, 'TETHER')}`;
    }
    expect(cookie).not.toBe('');
    const d = await api(t, 'POST', '/api/v1/backends/app2/drain', { deadlineSec: null }, admin.header);
    expect(d.status).toBe(200);
    expect((d.body.backend as BackendView).state).toBe('draining');
    for (let i = 0; i < 10; i++) {
      const r = await request({ port: t.port, headers: { host: 'web.test', cookie } });
      expect(r.body).toBe('app2');
    }
    const fresh = await spread(t, 30);
    expect(fresh.has('app2')).toBe(false);
    // Deadline 0: the drain is over for sticky sessions too; they fail over and get a new token.
    expect((await api(t, 'POST', '/api/v1/backends/app2/drain?pool=web', { deadlineSec: 0 }, admin.header)).status).toBe(200);
    const moved: Reply = await request({ port: t.port, headers: { host: 'web.test', cookie } });
    expect(moved.body).not.toBe('app2');
    expect(setCookieValue(moved, 'TETHER')).toBeTruthy();
    expect((await api(t, 'POST', '/api/v1/backends/app2/undrain', undefined, admin.header)).status).toBe(200);
    expect((await spread(t, 30)).has('app2')).toBe(true);
  });

  it('drain deadline must be whole seconds or null', async () => {
    const r = await api(t, 'POST', '/api/v1/backends/app2/drain', { deadlineSec: 'soon' }, admin.header);
    expect(r.status).toBe(400);
    expect(String(r.body.message)).toMatch(/deadlineSec/);
    expect((await api(t, 'POST', '/api/v1/backends/ghost/drain', {}, admin.header)).status).toBe(404);
  });

  it('removes a backend: no request reaches it once the call returns, and its ID is free again', async () => {
    const r = await api(t, 'DELETE', '/api/v1/backends/app3', undefined, admin.header);
    expect(r.status).toBe(200);
    const before = c.received.length;
    const seen = await spread(t, 30);
    expect(seen.has('app3')).toBe(false);
    expect(c.received.length).toBe(before);
    expect((await api(t, 'DELETE', '/api/v1/backends/app3', undefined, admin.header)).status).toBe(404);
    const again = await api(t, 'POST', '/api/v1/backends', { pool: 'web', id: 'app3', address: '127.0.0.1', port: c.port }, admin.header);
    expect(again.status).toBe(201);
  });
});

it('without --admin-token-file the admin API is read-only and says how to enable changes', async () => {
  const a = await startBackend('app1');
  const t = await startTether(['--backend', `app1=127.0.0.1:${a.port}`], { workers: 1 });
  try {
    const r = await api(t, 'POST', '/api/v1/backends', { id: 'x', address: '127.0.0.1', port: 1 }, 'Bearer whatever-it-is');
    expect(r.status).toBe(403);
    expect(String(r.body.message)).toContain('--admin-token-file');
    expect((await backends(t)).length).toBe(1);
    await t.waitForLog((e) => typeof e.msg === 'string' && e.msg.includes('admin API is read-only'));
  } finally {
    await t.stop();
    await a.close();
  }
});

describe('health', () => {
  let healthy = true;
  let failing = false;
  let checksSeen = 0;
  const app2: Handler = (req, res, name) => {
    req.resume();
    if (req.url === '/health') {
      checksSeen++;
      res.writeHead(healthy ? 200 : 503).end();
      return;
    }
    res.writeHead(failing ? 500 : 200, { 'content-type': 'text/plain' }).end(name);
  };
  let a: TestBackend;
  let b: TestBackend;
  let t: TetherProcess;

  beforeAll(async () => {
    a = await startBackend('app1', (req, res, name) => {
      req.resume();
      res.writeHead(200).end(name);
    });
    b = await startBackend('app2', app2);
    t = await startTether([
      '--backend', `web/app1=127.0.0.1:${a.port}`, '--backend', `web/app2=127.0.0.1:${b.port}`, '--route', 'web.test=web',
      '--sticky', 'web/none',
      '--health-check', 'web/http:/health,expect=200,interval=50,timeout=500,rise=2,fall=3',
      '--eject-5xx', 'web/4',
    ]);
  });
  afterAll(async () => {
    await t?.stop();
    await Promise.all([a?.close(), b?.close()]);
  });

  it('a backend failing its check is taken out after `fall` failures and back after `rise` passes', async () => {
    await pollUntil('first checks', async () => (checksSeen >= 2 ? true : undefined));
    expect((await spread(t, 10)).has('app2')).toBe(true);
    healthy = false;
    const failedFrom = checksSeen;
    const down = await t.waitForLog((e) => e.event === 'backend_check_down' && e.id === 'app2');
    expect(down.detail).toContain('503');
    // Down after exactly `fall` failed checks (one more may already be in flight).
    expect(checksSeen - failedFrom).toBeGreaterThanOrEqual(3);
    expect(checksSeen - failedFrom).toBeLessThanOrEqual(4);
    expect((await spread(t, 20)).has('app2')).toBe(false);
    const view = (await backends(t)).find((x) => x.id === 'app2')!;
    expect(view.state).toBe('down');
    expect(view.health.check?.up).toBe(false);
    expect(await t.metric('tether_backend_up{pool="web",backend="app2"}')).toBe(0);
    expect(await t.metric('tether_backend_health{pool="web",backend="app2",cause="check"}')).toBe(1);
    healthy = true;
    const passFrom = checksSeen;
    await t.waitForLog((e) => e.event === 'backend_check_up' && e.id === 'app2');
    expect(checksSeen - passFrom).toBeGreaterThanOrEqual(2);
    expect(checksSeen - passFrom).toBeLessThanOrEqual(3);
    expect((await spread(t, 20)).has('app2')).toBe(true);
    expect(await t.metric('tether_backend_up{pool="web",backend="app2"}')).toBe(1);
  });

  it('passive: consecutive 5xx eject a backend for a backoff; it comes back', async () => {
    failing = true;
    // app2 answers 500 until ejected: exactly 4 of them (--eject-5xx 4) reach clients, then
    // none. (Each worker balances on its own, so they need not alternate strictly.)
    const before = await t.metric('tether_backend_ejections_5xx_total');
    let errors = 0;
    for (let i = 0; i < 40 && errors < 4; i++) if ((await request({ port: t.port, headers: { host: 'web.test' } })).status === 500) errors++;
    expect(errors).toBe(4);
    await t.waitForLog((e) => e.event === 'backend_ejected' && e.backend === 'app2');
    expect(await t.metric('tether_backend_ejections_5xx_total')).toBe(before + 1);
    // Ejected: everything goes to app1 now.
    const after = await spread(t, 20);
    expect([...after.keys()]).toEqual(['app1']);
    failing = false;
    // The backoff (1 s) ends; on probation, a good answer readmits it fully.
    await pollUntil('app2 readmitted', async () => ((await spread(t, 4)).has('app2') ? true : undefined), 10_000);
  });
});
