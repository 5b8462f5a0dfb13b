// Sessions in the shared table, end to end through the CLI with 2 worker threads and real
// backends that issue their own JSESSIONID: learn mode across workers and client addresses
// 127.0.0.2-9; session ↔ terminal binding under ip, subnet, none and header:x-device-id (for
// learned sessions, route tokens and prefix-mode cookies); revocation from the admin API; and
// the cookie shapes that must not crash the balancer or slip past the check.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type Handler, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue, type Reply } from '../helpers/client.js';
import { adminToken, startTether, type TetherProcess } from '../helpers/tether.js';

const ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7', '127.0.0.8', '127.0.0.9'];

/** An application server: /login sets a fresh JSESSIONID, /logout expires it, anything else answers its name. */
const appHandler: Handler = (req, res, name) => {
  req.resume();
  req.on('end', () => {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain', 'x-backend': name };
    if (req.url === '/login') headers['set-cookie'] = `JSESSIONID=${name}.${randomBytes(12).toString('hex')}; Path=/; HttpOnly`;
    if (req.url === '/logout') headers['set-cookie'] = 'JSESSIONID=; Path=/; Max-Age=0';
    res.writeHead(200, headers);
    res.end(name);
  });
};

let a: TestBackend;
let b: TestBackend;
let t: TetherProcess;

/** Pools by Host: each with both backends and its own sticky mode and binding policy. */
const POOLS: Record<string, { sticky: string; bind: string }> = {
  learn: { sticky: 'learn:JSESSIONID', bind: 'none' },
  ip: { sticky: 'learn:JSESSIONID', bind: 'ip' },
  subnet: { sticky: 'learn:JSESSIONID', bind: 'subnet' },
  device: { sticky: 'learn:JSESSIONID', bind: 'header:X-Device-Id' },
  tok: { sticky: 'cookie', bind: 'ip' },
  pre: { sticky: 'prefix:JSESSIONID', bind: 'ip' },
};

const admin = adminToken();

beforeAll(async () => {
  a = await startBackend('app1', appHandler);
  b = await startBackend('app2', appHandler);
  const args: string[] = [];
  for (const [pool, p] of Object.entries(POOLS)) {
    args.push('--backend', `${pool}/app1=127.0.0.1:${a.port}`, '--backend', `${pool}/app2=127.0.0.1:${b.port}`);
    args.push('--sticky', `${pool}/${p.sticky}`, '--bind', `${pool}/${p.bind}`, '--route', `${pool}.test=${pool}`);
  }
  t = await startTether([...args, '--admin-token-file', admin.file], { workers: 2 });
}, 60_000);

afterAll(async () => {
  await t?.stop();
  await Promise.all([a?.close(), b?.close()]);
});

function get(pool: string, path: string, from: string, headers: http.OutgoingHttpHeaders = {}): Promise<Reply> {
  return request({ port: t.port, path, localAddress: from, headers: { host: `${pool}.test`, ...headers } });
}

/** Logs in from `from`; returns the session cookie value and the backend that issued it. */
async function login(pool: string, from: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ session: string; backend: string; reply: Reply }> {
  const reply = await get(pool, '/login', from, headers);
  expect(reply.status).toBe(200);
  const session = setCookieValue(reply, 'JSESSIONID');
  expect(session, 'the backend set its session cookie').toBeTruthy();
  return { session: session!, backend: reply.body, reply };
}

function revoke(body: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const data = typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port: t.adminPort, path: '/api/v1/sessions/revoke', method: 'POST', headers: { 'content-type': 'application/json', authorization: admin.header } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: text }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('revoke timed out')));
    req.on('error', reject);
    req.end(data);
  });
}

const refusals = (reason: string) => t.metric(`tether_session_refusals_total{reason="${reason}"}`);

describe('learn mode', () => {
  it('routes a learned session to its backend from 8 client addresses, over fresh connections to both workers, adding no cookie', async () => {
    const hitsBefore = await t.metric('tether_learn_total{outcome="hit"}');
    const perWorker = async () => [await t.metric('tether_worker_requests_total{worker="0"}'), await t.metric('tether_worker_requests_total{worker="1"}')];
    const workersBefore = await perWorker();
    const sessions = [];
    for (let i = 0; i < 6; i++) sessions.push(await login('learn', ADDRESSES[i % ADDRESSES.length]!));
    expect(new Set(sessions.map((s) => s.backend))).toEqual(new Set(['app1', 'app2']));
    for (const s of sessions) expect(s.reply.headers['set-cookie']).toEqual([`JSESSIONID=${s.session}; Path=/; HttpOnly`]);
    let requests = 0;
    for (const s of sessions) {
      for (const from of ADDRESSES) {
        const r = await get('learn', '/', from, { cookie: `theme=dark; JSESSIONID=${s.session}` });
        expect(r.body, `session from ${s.backend} presented from ${from}`).toBe(s.backend);
        expect(r.headers['set-cookie'], 'nothing added').toBeUndefined();
        requests++;
      }
    }
    // The backend saw the application's cookie exactly as the client sent it.
    const last = (sessions.at(-1)!.backend === 'app1' ? a : b).received.at(-1)!;
    expect(last.headers.cookie).toBe(`theme=dark; JSESSIONID=${sessions.at(-1)!.session}`);
    expect(await t.metric('tether_learn_total{outcome="hit"}')).toBe(hitsBefore + requests);
    // 54 fresh connections: the kernel spread them over both workers, and every one was a hit.
    const workersAfter = await perWorker();
    expect(workersAfter[0]! - workersBefore[0]!, 'worker 0 served some').toBeGreaterThan(0);
    expect(workersAfter[1]! - workersBefore[1]!, 'worker 1 served some').toBeGreaterThan(0);
    expect(await t.metric('tether_sessions_learned_total')).toBeGreaterThanOrEqual(6);
    // Learned by whichever worker answered the login, read by whichever answers each request.
    expect(await t.metric('tether_session_table_entries')).toBeGreaterThanOrEqual(6);
  });

  it('forgets a session when the backend expires its cookie', async () => {
    const s = await login('learn', '127.0.0.2');
    const forgotten = await t.metric('tether_sessions_forgotten_total');
    const logout = await get('learn', '/logout', '127.0.0.3', { cookie: `JSESSIONID=${s.session}` });
    expect(logout.body).toBe(s.backend);
    expect(await t.metric('tether_sessions_forgotten_total')).toBe(forgotten + 1);
    const misses = await t.metric('tether_learn_total{outcome="miss"}');
    await get('learn', '/', '127.0.0.4', { cookie: `JSESSIONID=${s.session}` });
    expect(await t.metric('tether_learn_total{outcome="miss"}')).toBe(misses + 1);
  });
});

describe('binding', () => {
  it('refuses a session issued to 127.0.0.2 when replayed from 127.0.0.3 under ip, with a 403, an alert and a counter; the backend never sees it', async () => {
    const s = await login('ip', '127.0.0.2');
    expect((await get('ip', '/', '127.0.0.2', { cookie: `JSESSIONID=${s.session}` })).body).toBe(s.backend);
    const before = await refusals('terminal_mismatch');
    const seen = a.received.length + b.received.length;
    const alert = t.waitForLog((e) => e.alert === 'binding_mismatch' && e.presentedFrom === '127.0.0.3', 10_000);
    const r = await get('ip', '/', '127.0.0.3', { cookie: `JSESSIONID=${s.session}` });
    expect(r.status).toBe(403);
    expect(r.headers['content-type']).toBe('application/json');
    expect(JSON.parse(r.body)).toEqual({ error: 'terminal_mismatch', message: 'this session was issued to another terminal' });
    const entry = await alert;
    expect(entry).toMatchObject({ pool: 'ip', policy: 'ip', issuedTo: '127.0.0.2', presentedFrom: '127.0.0.3' });
    expect(String(entry.session)).toMatch(/^session [0-9a-f]{24}$/);
    expect(JSON.stringify(entry)).not.toContain(s.session);
    expect(await refusals('terminal_mismatch')).toBe(before + 1);
    expect(a.received.length + b.received.length, 'refused before the backend').toBe(seen);
  });

  it('allows the same replay under subnet (same /24) and none', async () => {
    for (const pool of ['subnet', 'learn']) {
      const s = await login(pool, '127.0.0.2');
      const r = await get(pool, '/', '127.0.0.3', { cookie: `JSESSIONID=${s.session}` });
      expect(r.status, pool).toBe(200);
      expect(r.body, pool).toBe(s.backend);
    }
  });

  it('under header:x-device-id refuses another device id whatever the address, and allows the same device anywhere', async () => {
    const s = await login('device', '127.0.0.2', { 'x-device-id': 'phone-A' });
    const before = await refusals('terminal_mismatch');
    expect((await get('device', '/', '127.0.0.6', { cookie: `JSESSIONID=${s.session}`, 'x-device-id': 'phone-A' })).body).toBe(s.backend);
    expect((await get('device', '/', '127.0.0.2', { cookie: `JSESSIONID=${s.session}`, 'x-device-id': 'phone-B' })).status).toBe(403);
    expect((await get('device', '/', '127.0.0.2', { cookie: `JSESSIONID=${s.session}` })).status, 'no device id is another device').toBe(403);
    expect(await refusals('terminal_mismatch')).toBe(before + 2);
  });

  it('binds route tokens too: the token travels sealed with its terminal', async () => {
    const first = await get('tok', '/', '127.0.0.2');
    const token = setCookieValue(first, 'TETHER');
    expect(token).toBeTruthy();
    expect((await get('tok', '/', '127.0.0.2', { cookie: `TETHER=${token}` })).body).toBe(first.body);
    const alert = t.waitForLog((e) => e.alert === 'binding_mismatch' && e.pool === 'tok', 10_000);
    const r = await get('tok', '/', '127.0.0.7', { cookie: `TETHER=${token}` });
    expect(r.status).toBe(403);
    expect(await alert).toMatchObject({ issuedTo: '127.0.0.2', presentedFrom: '127.0.0.7' });
  });

  it('binds prefix-mode sessions, so stripping the token from the cookie does not get past the check', async () => {
    const s = await login('pre', '127.0.0.2');
    const [token, appValue] = [s.session.slice(0, s.session.indexOf('~')), s.session.slice(s.session.indexOf('~') + 1)];
    expect(token.length).toBeGreaterThan(20);
    expect((await get('pre', '/', '127.0.0.2', { cookie: `JSESSIONID=${s.session}` })).body).toBe(s.backend);
    expect((await get('pre', '/', '127.0.0.3', { cookie: `JSESSIONID=${s.session}` })).status, 'whole cookie').toBe(403);
    expect((await get('pre', '/', '127.0.0.3', { cookie: `JSESSIONID=${appValue}` })).status, 'token stripped').toBe(403);
    expect((await get('pre', '/', '127.0.0.2', { cookie: `JSESSIONID=${appValue}` })).status, 'stripped, right terminal').toBe(200);
  });

  it('checks every copy of a duplicated session cookie: a second copy cannot smuggle a foreign session in', async () => {
    const victim = await login('ip', '127.0.0.2');
    const attacker = await login('ip', '127.0.0.3');
    for (const cookie of [`JSESSIONID=${attacker.session}; JSESSIONID=${victim.session}`, `JSESSIONID=${victim.session}; JSESSIONID=${attacker.session}`]) {
      const r = await get('ip', '/', '127.0.0.3', { cookie });
      expect(r.status, cookie).toBe(403);
    }
    // The first copy routes: the attacker's own session alone still works.
    expect((await get('ip', '/', '127.0.0.3', { cookie: `JSESSIONID=${attacker.session}` })).body).toBe(attacker.backend);
  });
});

describe('alerts under a replay flood', () => {
  it('logs at most 20 alerts per worker and second, then one summary, while counting every refusal', async () => {
    const s = await login('ip', '127.0.0.2');
    const before = await refusals('terminal_mismatch');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4, localAddress: '127.0.0.9' });
    const summary = t.waitForLog((e) => e.alert === 'alerts_suppressed', 10_000);
    const N = 300;
    try {
      for (let i = 0; i < N; i += 4) {
        const replies = await Promise.all(
          [0, 1, 2, 3].map(() => request({ port: t.port, path: '/', agent, headers: { host: 'ip.test', cookie: `JSESSIONID=${s.session}` } })),
        );
        for (const r of replies) expect(r.status).toBe(403);
      }
    } finally {
      agent.destroy();
    }
    expect(await refusals('terminal_mismatch')).toBe(before + N);
    const logged = t.lines.filter((l) => l.includes('"binding_mismatch"') && l.includes('"presentedFrom":"127.0.0.9"')).length;
    expect(logged).toBeGreaterThan(0);
    expect(logged).toBeLessThan(N);
    const entry = await summary;
    expect(entry.count).toBeGreaterThan(0);
    expect(entry.perSecond).toBe(20);
  });
});

describe('revocation', () => {
  it('revokes an application session everywhere: every worker refuses it, even from its own terminal', async () => {
    const s = await login('learn', '127.0.0.2');
    const r = await revoke({ pool: 'learn', session: s.session });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ revoked: true, pool: 'learn', kind: 'session', known: true });
    const before = await refusals('revoked');
    for (let i = 0; i < 8; i++) {
      const reply = await get('learn', '/', ADDRESSES[i]!, { cookie: `JSESSIONID=${s.session}` });
      expect(reply.status).toBe(403);
      expect(JSON.parse(reply.body).error).toBe('revoked');
    }
    expect(await refusals('revoked')).toBe(before + 8);
    // A backend setting the same id again does not bring it back (it stays refused), and
    // other sessions are untouched.
    const other = await login('learn', '127.0.0.2');
    expect((await get('learn', '/', '127.0.0.2', { cookie: `JSESSIONID=${other.session}` })).status).toBe(200);
  });

  it('revokes a route token', async () => {
    const first = await get('tok', '/', '127.0.0.4');
    const token = setCookieValue(first, 'TETHER')!;
    expect((await revoke({ pool: 'tok', token })).status).toBe(200);
    const r = await get('tok', '/', '127.0.0.4', { cookie: `TETHER=${token}` });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body).error).toBe('revoked');
  });

  it('explains a bad revocation request', async () => {
    const cases: [unknown, RegExp][] = [
      ['not json', /not JSON/],
      [[1, 2], /expected a JSON object/],
      [{ pool: 'nope', session: 'x' }, /no pool named "nope"/],
      [{ pool: 'learn' }, /exactly one of "session"/],
      [{ pool: 'learn', session: 'x', token: 'y' }, /exactly one of "session"/],
      [{ pool: 'learn', session: '' }, /non-empty string/],
      [{ pool: 'tok', session: 'x' }, /keeps no application sessions/],
      [{ pool: 'learn', token: 'x' }, /issues no route tokens/],
      [{ pool: 'learn', session: 'x', extra: 1 }, /unknown field "extra"/],
    ];
    for (const [body, message] of cases) {
      const r = await revoke(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(JSON.parse(r.body).message).toMatch(message);
    }
    const big = await revoke({ pool: 'learn', session: 'x'.repeat(20_000) });
    expect(big.status).toBe(413);
  });
});

describe('hostile cookies', () => {
  it('survives absurd, numerous and malformed cookies, deterministically', async () => {
    const s = await login('ip', '127.0.0.2');
    const shapes = [
      `JSESSIONID=${'x'.repeat(3000)}`,
      Array.from({ length: 300 }, (_, i) => `c${i}=${i}`).join('; ') + `; JSESSIONID=${s.session}`,
      'JSESSIONID',
      'JSESSIONID==; ;;; =x; JSESSIONID',
      `JSESSIONID="${s.session}"`,
      `jsessionid=${s.session}`,
    ];
    for (const cookie of shapes) {
      const r = await get('ip', '/', '127.0.0.3', { cookie });
      // Only the real session presented from the wrong terminal is refused; the rest are no session.
      expect(r.status, cookie.slice(0, 60)).toBe(cookie.includes(`JSESSIONID=${s.session}`) ? 403 : 200);
    }
    // Still serving, and the session still works from its own terminal.
    expect((await get('ip', '/', '127.0.0.2', { cookie: `JSESSIONID=${s.session}` })).body).toBe(s.backend);
  });
});
