// Hot reload: POST /api/v1/reload (and SIGHUP) apply a rewritten config file — backends added
// and removed, policies changed, keys rotated — while a client keeps sending: no request fails,
// no connection is reset. A bad config is refused whole, with every problem, and nothing changes.
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { setCookieValue } from '../helpers/client.js';
import { pollUntil, tempDir } from '../helpers/sticky.js';
import { adminToken, reloadVia, startTether, type TetherProcess } from '../helpers/tether.js';

const dir = tempDir('tether-reload-');
const admin = adminToken();
const keyLine = (id: number) => `${id} ${randomBytes(32).toString('hex')}`;
let backends: TestBackend[];
let t: TetherProcess;
let configFile: string;
let keyFile: string;

function yaml(o: { names: string[]; balance?: string; sticky?: string }): string {
  const list = o.names.map((n) => `      - { id: ${n}, address: 127.0.0.1, port: ${backends.find((b) => b.name === n)!.port} }`).join('\n');
  return `pools:\n  web:\n    sticky: ${o.sticky ?? '{ mode: cookie, name: TETHER }'}\n    balance: { algorithm: ${o.balance ?? 'round-robin'} }\n    backends:\n${list}\n`;
}

const reload = () => reloadVia(t, admin.header);

beforeAll(async () => {
  backends = await Promise.all(['app1', 'app2', 'app3', 'app4'].map((n) => startBackend(n)));
  configFile = dir.file('tether.yaml', yaml({ names: ['app1', 'app2'] }));
  keyFile = dir.file('keys', `${keyLine(1)}\n`);
  t = await startTether(['--config', configFile, '--key-file', keyFile, '--admin-token-file', admin.file], { workers: 2 });
});

afterAll(async () => {
  await t?.stop();
  await Promise.all(backends.map((b) => b.close()));
  dir.cleanup();
});

describe('hot reload', () => {
  it('20 reloads under load (backends added and removed, keys rotated): zero failed requests, zero resets', async () => {
    // Keep-alive clients, so a reload that closed listeners or connections would show as resets.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    let stop = false;
    let sent = 0;
    const failures: string[] = [];
    const seen = new Set<string>();
    let cookie = '';
    const client = async () => {
      while (!stop && sent < 20_000) {
        sent++;
        try {
          const r = await new Promise<{ status: number; body: string; setCookie?: string }>((resolve, reject) => {
            const req = http.request({ host: '127.0.0.1', port: t.port, path: `/r${sent}`, agent, headers: cookie ? { cookie } : {} }, (res) => {
              let body = '';
              res.on('data', (d: Buffer) => (body += d));
              res.on('end', () => resolve({ status: res.statusCode!, body, setCookie: setCookieValue({ status: 0, headers: res.headers, rawHeaders: [], body: '' }, 'TETHER') }));
              res.on('error', reject);
            });
            req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
            req.on('error', reject);
            req.end();
          });
          if (r.status !== 200) failures.push(`${r.status} ${r.body}`);
          seen.add(r.body);
          if (r.setCookie && sent % 7 === 0) cookie = `TETHER=${r.setCookie}`;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const clients = [client(), client(), client()];
    await pollUntil('traffic', async () => (sent > 20 ? true : undefined));
    const shapes = [['app1', 'app2', 'app3'], ['app2', 'app3'], ['app3', 'app4'], ['app1', 'app4'], ['app1', 'app2']];
    for (let i = 0; i < 20; i++) {
      const names = shapes[i % shapes.length]!;
      writeFileSync(configFile, yaml({ names, balance: i % 2 === 0 ? 'round-robin' : 'least-connections' }));
      // Every fourth reload rotates the route-token key (the old one keeps opening tokens).
      if (i % 4 === 3) writeFileSync(keyFile, `${keyLine(10 + i)}\n${keyLine(1)}\n`);
      const r = await reload();
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const before = sent;
      await pollUntil('requests after the reload', async () => (sent > before + 10 ? true : undefined));
    }
    stop = true;
    await Promise.all(clients);
    agent.destroy();
    expect(failures).toEqual([]);
    expect(sent).toBeGreaterThan(200);
    expect([...seen].sort()).toEqual(['app1', 'app2', 'app3', 'app4']);
    const list = (await (await fetch(`http://127.0.0.1:${t.adminPort}/api/v1/backends`)).json()) as { backends: { id: string }[] };
    expect(list.backends.map((b) => b.id)).toEqual(['app1', 'app2']);
  });

  it('a bad config is refused whole, every problem listed, and the running one stays', async () => {
    writeFileSync(configFile, `${yaml({ names: ['app3'] })}    frobnicate: true\ntableSize: 2048\n`);
    const r = await reload();
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_config');
    const problems = (r.body.problems as string[]).join('\n');
    expect(problems).toMatch(/frobnicate/);
    // Valid, but the shared table is sized at start: refused, and app3 is not added either.
    // So is the allocator's trim threshold (set once, before the workers start).
    writeFileSync(configFile, `${yaml({ names: ['app3'] })}tableSize: 2048\nlimits: { mallocTrimThresholdBytes: 1048576 }\n`);
    const fixed = await reload();
    expect(fixed.status).toBe(400);
    expect((fixed.body.problems as string[]).join('\n')).toMatch(/tableSize: cannot change while running/);
    expect((fixed.body.problems as string[]).join('\n')).toMatch(/limits\.mallocTrimThresholdBytes: cannot change while running/);
    const list = (await (await fetch(`http://127.0.0.1:${t.adminPort}/api/v1/backends`)).json()) as { backends: { id: string }[] };
    expect(list.backends.map((b) => b.id)).toEqual(['app1', 'app2']);
    await t.waitForLog((e) => e.event === 'reload_refused');
  });

  it('SIGHUP reloads too', async () => {
    writeFileSync(configFile, yaml({ names: ['app4'] }));
    t.proc.kill('SIGHUP');
    await t.waitForLog((e) => e.event === 'config_reloaded' && e.by === 'SIGHUP');
    const list = (await (await fetch(`http://127.0.0.1:${t.adminPort}/api/v1/backends`)).json()) as { backends: { id: string }[] };
    expect(list.backends.map((b) => b.id)).toEqual(['app4']);
  });
});
