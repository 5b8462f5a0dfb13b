// The route-token format upgrade (v1 → v2) on the real binary, with live clients: a client that
// holds a v1 token from before the upgrade keeps its backend and receives a v2 token in the same
// response, through keep-alive connections and through curl's cookie jar; v1 stops opening once
// the key grace that started with the process is over (here: a grace of 0), and the metrics
// count what happened. The v1 tokens are minted by the fixture implementation
// (test/fixtures/token-format.mjs), the same one whose output the old sealer matched.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue } from '../helpers/client.js';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { backendFlag, decodeToken, sticky, tempDir } from '../helpers/sticky.js';
import { aadFor, rawToken } from '../fixtures/token-format.mjs';

const run = promisify(execFile);
const KEY_ID = 3;
const KEY = randomBytes(32);
const CLIENTS = 24;

/** A v1 route token for `backendId`, as a v1 balancer sealed it: payload v1, issued `ageSec` ago. */
function v1Token(backendId: string, mode: 'cookie' | 'header', ageSec = 60, keyId = KEY_ID, key = KEY): string {
  const id = Buffer.from(backendId);
  const payload = Buffer.alloc(14 + id.length);
  payload[0] = 0; // flags
  payload.writeUInt32BE(Math.floor(Date.now() / 1000) - ageSec, 1);
  // bytes 5..12: binding tag, all zero = unbound
  payload[13] = id.length;
  id.copy(payload, 14);
  return rawToken(keyId, key, randomBytes(12), payload, aadFor('default', mode)).toString('base64url');
}

const versionOf = (token: string | undefined): number | undefined => (token ? decodeToken(token)?.[0] : undefined);

describe('route token upgrade: v1 tokens clients hold keep their backend and come back as v2', () => {
  const tmp = tempDir();
  let keyFile: string;
  let app1: TestBackend;
  let app2: TestBackend;
  let tether: TetherProcess;

  beforeAll(async () => {
    keyFile = tmp.file('keys', `${KEY_ID} ${KEY.toString('hex')}\n`);
    app1 = await startBackend('app1');
    app2 = await startBackend('app2');
    tether = await startTether([...backendFlag(app1), ...backendFlag(app2), '--key-file', keyFile, '--key-grace', '3600'], { workers: 2 });
  });

  afterAll(async () => {
    await tether?.stop();
    await Promise.all([app1?.close(), app2?.close()]);
    tmp.cleanup();
  });

  it(`${CLIENTS} keep-alive clients holding v1 tokens: each stays on its backend and is handed a v2 token once`, async () => {
    const sealedBefore = await tether.metric(`tether_tokens_sealed_total{key="${KEY_ID}"}`);
    const clients = Array.from({ length: CLIENTS }, (_, i) => ({
      backend: i % 2 === 0 ? 'app1' : 'app2',
      token: '',
      agent: new http.Agent({ keepAlive: true, maxSockets: 1 }),
    }));
    for (const c of clients) c.token = v1Token(c.backend, 'cookie');
    try {
      await Promise.all(
        clients.map(async (c) => {
          const first = await request({ port: tether.port, agent: c.agent, headers: { cookie: `TETHER=${c.token}` } });
          expect(first.status).toBe(200);
          expect(first.body, 'the v1 token routes').toBe(c.backend);
          const fresh = setCookieValue(first, 'TETHER');
          expect(versionOf(fresh), 'the response carries a v2 token').toBe(2);
          // The client now presents the v2 token on the same connection: same backend, and no
          // further token (it is neither old nor v1).
          for (let i = 0; i < 3; i++) {
            const next = await request({ port: tether.port, agent: c.agent, headers: { cookie: `TETHER=${fresh}` } });
            expect(next.body).toBe(c.backend);
            expect(setCookieValue(next, 'TETHER')).toBeUndefined();
          }
        }),
      );
    } finally {
      for (const c of clients) c.agent.destroy();
    }
    expect(await tether.metric('tether_tokens_v1_presented_total')).toBe(CLIENTS);
    expect(await tether.metric(`tether_tokens_sealed_total{key="${KEY_ID}"}`)).toBe(sealedBefore + CLIENTS);
    expect(await tether.metric(sticky('invalid_old_format'))).toBe(0);
  });

  it("a browser-like client (curl's cookie jar) moves from v1 to v2 without changing backend", async () => {
    const jar = tmp.file('jar', `# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tTETHER\t${v1Token('app2', 'cookie')}\n`);
    const url = `http://127.0.0.1:${tether.port}/`;
    const bodies: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { stdout } = await run('curl', ['-sS', '--max-time', '10', '-b', jar, '-c', jar, url]);
      bodies.push(stdout);
    }
    expect(bodies).toEqual(['app2', 'app2', 'app2']);
    const cookie = /\tTETHER\t(\S+)/.exec(readFileSync(jar, 'utf8'))?.[1];
    expect(versionOf(cookie)).toBe(2);
  });

  it('header mode: a v1 token in the route header is honoured and answered with a v2 header', async () => {
    // Header mode has its own AAD: a v1 cookie-mode token is not a header-mode token.
    const t = await startTether([...backendFlag(app1), ...backendFlag(app2), '--key-file', keyFile, '--sticky', 'header'], { workers: 1 });
    try {
      const reply = await request({ port: t.port, headers: { 'x-tether-route': v1Token('app2', 'header') } });
      expect(reply.body).toBe('app2');
      expect(versionOf(reply.headers['x-tether-route'] as string)).toBe(2);
      const wrongMode = await request({ port: t.port, headers: { 'x-tether-route': v1Token('app2', 'cookie') } });
      expect(versionOf(wrongMode.headers['x-tether-route'] as string)).toBe(2);
      expect(await t.metric(sticky('invalid_forged'))).toBe(1);
    } finally {
      await t.stop();
    }
  });

  it('after the grace (--key-grace 0) a v1 token no longer routes: counted, and a fresh v2 session starts', async () => {
    const t = await startTether([...backendFlag(app1), ...backendFlag(app2), '--key-file', keyFile, '--key-grace', '0'], { workers: 1 });
    try {
      const bodies = new Set<string>();
      for (let i = 0; i < 8; i++) {
        const reply = await request({ port: t.port, headers: { cookie: `TETHER=${v1Token('app2', 'cookie')}` } });
        expect(reply.status).toBe(200);
        bodies.add(reply.body);
        expect(versionOf(setCookieValue(reply, 'TETHER'))).toBe(2);
      }
      // Round robin over fresh sessions, not the token's app2 every time.
      expect([...bodies].sort()).toEqual(['app1', 'app2']);
      expect(await t.metric(sticky('invalid_old_format'))).toBe(8);
      expect(await t.metric('tether_tokens_v1_presented_total')).toBe(0);
      // A v2 token from this very process routes as usual.
      const fresh = await request({ port: t.port });
      const again = await request({ port: t.port, headers: { cookie: `TETHER=${setCookieValue(fresh, 'TETHER')}` } });
      expect(again.body).toBe(fresh.body);
    } finally {
      await t.stop();
    }
  });

  it('a v1 token under a key the ring does not have, or with other key bytes, is refused like any other', async () => {
    const before = { unknown: await tether.metric(sticky('invalid_unknown_key')), forged: await tether.metric(sticky('invalid_forged')) };
    const unknown = await request({ port: tether.port, headers: { cookie: `TETHER=${v1Token('app2', 'cookie', 60, 9)}` } });
    const forged = await request({ port: tether.port, headers: { cookie: `TETHER=${v1Token('app2', 'cookie', 60, KEY_ID, randomBytes(32))}` } });
    for (const r of [unknown, forged]) expect(versionOf(setCookieValue(r, 'TETHER'))).toBe(2);
    expect(await tether.metric(sticky('invalid_unknown_key'))).toBe(before.unknown + 1);
    expect(await tether.metric(sticky('invalid_forged'))).toBe(before.forged + 1);
  });
});
