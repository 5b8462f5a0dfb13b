// What operators change on a running balancer beyond backends (hot reload's other half):
// - log rotation: rename the access log away, SIGUSR1, and every line lands in exactly one of
//   the two files, none lost, none doubled, from both workers;
// - a reload moves the access log to another path, refuses a path it cannot open (listing why),
//   and turns the log off;
// - a reload re-points and adds TLS passthrough routes on the listening port, and each route's
//   counters stay with that route;
// - a reload shortens the drain timeout, and SIGTERM then honours the new one;
// - tether_http_connections counts the client connections open on the HTTP listener.
import net from 'node:net';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { pollMetric, tempDir } from '../helpers/sticky.js';
import { captureClientHello } from '../helpers/tls.js';
import { adminToken, reloadVia, startTether, type TetherProcess } from '../helpers/tether.js';

const dir = tempDir('tether-reload-ops-');
const admin = adminToken();
let app: TestBackend;

beforeAll(async () => {
  app = await startBackend('app1');
});

afterAll(async () => {
  await app?.close();
  dir.cleanup();
});

const reload = (t: TetherProcess) => reloadVia(t, admin.header);

const paths = (file: string): string[] =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { path: string }).path)
    : [];

/** `n` requests, each on its own connection (so both workers take some). */
async function send(t: TetherProcess, prefix: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) expect((await request({ port: t.port, path: `/${prefix}/${i}` })).status).toBe(200);
}

describe('log rotation and reload of logs, routes and timeouts', () => {
  it('SIGUSR1 reopens the access log: lines before the rename stay in the old file, later ones go to the new', async () => {
    const file = `${dir.dir}/rotate.log`;
    const t = await startTether(['--backend', `app1=127.0.0.1:${app.port}`, '--access-log', file], { workers: 2 });
    try {
      await send(t, 'before', 20);
      renameSync(file, `${file}.1`);
      t.proc.kill('SIGUSR1');
      // Logged once every worker has reopened.
      await t.waitForLog((e) => e.event === 'access_log_reopened' && e.by === 'SIGUSR1');
      await send(t, 'after', 20);
    } finally {
      expect(await t.stop()).toBe(0);
    }
    const old = paths(`${file}.1`);
    const now = paths(file);
    expect(old.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `/before/${i}`).sort());
    expect(now.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `/after/${i}`).sort());
  });

  it('a reload moves the access log, refuses a path it cannot open, and turns the log off', async () => {
    const first = `${dir.dir}/first.log`;
    const second = `${dir.dir}/second.log`;
    const config = dir.file('log.yaml', `accessLog: ${first}\n`);
    const t = await startTether(['--config', config, '--backend', `app1=127.0.0.1:${app.port}`, '--admin-token-file', admin.file], { workers: 2 });
    try {
      await send(t, 'one', 6);
      writeFileSync(config, `accessLog: ${second}\n`);
      expect((await reload(t)).status).toBe(200);
      await send(t, 'two', 6);
      writeFileSync(config, `accessLog: ${dir.dir}/no/such/dir/x.log\n`);
      const refused = await reload(t);
      expect(refused.status).toBe(400);
      expect((refused.body.problems as string[]).join('\n')).toMatch(/accessLog: cannot open --access-log .*no\/such\/dir.*ENOENT/);
      await send(t, 'three', 6);
      writeFileSync(config, '{}\n');
      expect((await reload(t)).status).toBe(200);
      await send(t, 'four', 6);
    } finally {
      expect(await t.stop()).toBe(0);
    }
    expect(paths(first).sort()).toEqual(Array.from({ length: 6 }, (_, i) => `/one/${i}`).sort());
    // The refused reload changed nothing: "three" went where "two" did; after "off", nothing.
    expect(paths(second).sort()).toEqual([...Array.from({ length: 6 }, (_, i) => `/two/${i}`), ...Array.from({ length: 6 }, (_, i) => `/three/${i}`)].sort());
  });

  it('a reload re-points a passthrough name to another pool and adds a route; counters stay with their route', async () => {
    // Plain TCP backends: each answers its name to the first bytes (the ClientHello) and closes.
    const servers = await Promise.all(
      ['alpha', 'beta'].map(
        (name) =>
          new Promise<net.Server>((resolve) => {
            const s = net.createServer((c) => {
              c.on('error', () => {});
              c.once('data', () => c.end(name));
            });
            s.listen(0, '127.0.0.1', () => resolve(s));
          }),
      ),
    );
    const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;
    const routes = (lines: string[], port = 0) => `passthrough:\n  listen: [{ host: 127.0.0.1, port: ${port} }]\n  routes:\n${lines.map((l) => `    - ${l}`).join('\n')}\n`;
    const config = dir.file('routes.yaml', routes(['{ sni: a.test, pool: alpha }']));
    const t = await startTether(
      [
        '--config', config,
        '--backend', `alpha/a1=127.0.0.1:${portOf(servers[0]!)}`, '--sticky', 'alpha/none',
        '--backend', `beta/b1=127.0.0.1:${portOf(servers[1]!)}`, '--sticky', 'beta/none',
        '--admin-token-file', admin.file,
      ],
      { workers: 2 },
    );
    const hellos = { a: await captureClientHello('a.test'), b: await captureClientHello('b.test') };
    const through = (hello: Buffer) =>
      new Promise<string>((resolve, reject) => {
        const s = net.connect(t.passthroughPorts[0]!, '127.0.0.1', () => s.write(hello));
        let got = '';
        s.on('data', (d: Buffer) => (got += d.toString('latin1')));
        s.on('close', () => resolve(got));
        s.on('error', reject);
        s.setTimeout(10_000, () => s.destroy(new Error('passthrough answer timed out')));
      });
    const routed = (sni: string, pool: string) => t.metric(`tether_passthrough_route_connections_total{sni="${sni}",pool="${pool}"}`);
    try {
      expect(await through(hellos.a)).toBe('alpha');
      expect(await through(hellos.a)).toBe('alpha');
      // No route for b.test yet: a TLS unrecognized_name alert (0x15 … 112), from Tether.
      expect(Buffer.from(await through(hellos.b), 'latin1').subarray(0, 7)).toEqual(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]));
      await pollMetric(t, 'tether_passthrough_route_connections_total{sni="a.test",pool="alpha"}', (v) => v === 2);

      writeFileSync(config, routes(['{ sni: b.test, pool: alpha }', '{ sni: a.test, pool: beta }']));
      expect((await reload(t)).status).toBe(200);
      expect(await through(hellos.a)).toBe('beta');
      expect(await through(hellos.b)).toBe('alpha');
      expect(await through(hellos.b)).toBe('alpha');
      await pollMetric(t, 'tether_passthrough_route_connections_total{sni="b.test",pool="alpha"}', (v) => v === 2);
      expect(await routed('a.test', 'beta')).toBe(1);
      // The first route is gone from the config, so from /metrics; back again, it resumes its count.
      expect(await routed('a.test', 'alpha')).toBe(0);
      writeFileSync(config, routes(['{ sni: a.test, pool: alpha }']));
      expect((await reload(t)).status).toBe(200);
      expect(await through(hellos.a)).toBe('alpha');
      await pollMetric(t, 'tether_passthrough_route_connections_total{sni="a.test",pool="alpha"}', (v) => v === 3);
      // Changing where the passthrough listens needs a restart: refused, with the reason.
      writeFileSync(config, routes(['{ sni: a.test, pool: alpha }'], 1));
      const refused = await reload(t);
      expect(refused.status).toBe(400);
      expect((refused.body.problems as string[]).join('\n')).toMatch(/passthrough\.listen: cannot change while running/);
    } finally {
      expect(await t.stop()).toBe(0);
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    }
  });

  it('a reload changes the drain timeout that SIGTERM then uses; the HTTP connection gauge counts open clients', async () => {
    // A backend that never answers /hang: only the drain timeout can end that request.
    const stuck = await startBackend('stuck', (req, res) => {
      req.resume();
      if (req.url !== '/hang') res.writeHead(200).end('ok');
    });
    const config = dir.file('drain.yaml', 'drainTimeoutMs: 600000\n');
    const t = await startTether(['--config', config, '--backend', `s1=127.0.0.1:${stuck.port}`, '--admin-token-file', admin.file], { workers: 1 });
    const clients: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const c = net.connect(t.port, '127.0.0.1');
        await new Promise<void>((r, j) => c.once('connect', r).once('error', j));
        clients.push(c);
      }
      // Three idle clients, and the admin scrape's own connection is on another port.
      expect(await t.metric('tether_http_connections')).toBe(3);
      for (const c of clients.splice(0)) c.destroy();
      await pollMetric(t, 'tether_http_connections', (v) => v === 0);

      writeFileSync(config, 'drainTimeoutMs: 300\n');
      expect((await reload(t)).status).toBe(200);
      const hanging = request({ port: t.port, path: '/hang', timeoutMs: 30_000 }).catch((err: Error) => err);
      await pollMetric(t, 'tether_active_requests', (v) => v === 1);
      // With the first drain timeout this would wait ten minutes (and the test time out).
      expect(await t.stop(20_000)).toBe(0);
      expect(await hanging).toBeInstanceOf(Error);
    } finally {
      for (const c of clients) c.destroy();
      await t.stop();
      await stuck.close();
    }
  });
});
