// Route-token key rotation by SIGHUP on the real binary: the new first key seals, a removed key
// keeps opening tokens for --key-grace and then stops, and a bad key file leaves the running
// keys in place (with an error in the log) instead of breaking routing.
import { unlinkSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue } from '../helpers/client.js';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { backendFlag, keyLine, pollMetric, pollUntil, sticky, tempDir, tokenKeyId } from '../helpers/sticky.js';

const RELOADS = 'tether_key_reloads_total';

describe('route-token key rotation (SIGHUP)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let keyFile: string;
  let app1: TestBackend;
  let app2: TestBackend;
  let tether: TetherProcess | undefined;

  beforeEach(async () => {
    tmp = tempDir();
    keyFile = tmp.file('keys', `# seals\n${keyLine(1)}\n`);
    app1 = await startBackend('app1');
    app2 = await startBackend('app2');
  });

  afterEach(async () => {
    await tether?.stop();
    tether = undefined;
    await Promise.all([app1.close(), app2.close()]);
    tmp.cleanup();
  });

  const start = async (extra: string[] = []) => {
    tether = await startTether([...backendFlag(app1), ...backendFlag(app2), '--key-file', keyFile, ...extra], { workers: 2 });
    return tether;
  };

  /** A fresh token (and the backend it names) from a token-less request. */
  const freshToken = async (t: TetherProcess) => {
    const reply = await request({ port: t.port });
    expect(reply.status).toBe(200);
    const token = setCookieValue(reply, 'TETHER');
    expect(token).toBeTruthy();
    return { token: token!, backend: reply.body };
  };

  /** Sends `token` on n new connections (both workers); returns the bodies and issued tokens. */
  const present = async (t: TetherProcess, token: string, n: number) => {
    const out: { body: string; issued: string | undefined }[] = [];
    for (let i = 0; i < n; i++) {
      const reply = await request({ port: t.port, agent: false, headers: { cookie: `TETHER=${token}` } });
      expect(reply.status).toBe(200);
      out.push({ body: reply.body, issued: setCookieValue(reply, 'TETHER') });
    }
    return out;
  };

  const expectRoutes = async (t: TetherProcess, token: string, backend: string, n = 10) => {
    for (const r of await present(t, token, n)) {
      expect(r.body).toBe(backend);
      expect(r.issued, 'a token that routes is not re-issued').toBeUndefined();
    }
  };

  const reloadedLog = (t: TetherProcess) => t.waitForLog((e) => e.msg === 'route-token keys reloaded', 10_000);

  it('after rotation the old token still routes and new tokens are sealed with the new key', async () => {
    const t = await start();
    const old = await freshToken(t);
    expect(tokenKeyId(old.token)).toBe(1);
    await expectRoutes(t, old.token, old.backend, 4);

    tmp.file('keys', `${keyLine(2)}\n`);
    t.proc.kill('SIGHUP');
    expect(await pollMetric(t, RELOADS, (v) => v >= 1)).toBe(1);
    const logged = await reloadedLog(t);
    expect(logged.sealKeyId).toBe(2);
    const ids = (logged.keys as { id: number; retireAt?: string }[]).map((k) => k.id).sort();
    expect(ids).toEqual([1, 2]);
    expect(await t.metric('tether_key_ring_keys')).toBe(2);

    await expectRoutes(t, old.token, old.backend);
    // Fresh connections reach both workers: every one of them must seal with key 2 now.
    for (let i = 0; i < 10; i++) {
      const reply = await request({ port: t.port, agent: false });
      const token = setCookieValue(reply, 'TETHER');
      expect(token).toBeTruthy();
      expect(tokenKeyId(token!), `token ${i} after rotation`).toBe(2);
      const again = await request({ port: t.port, agent: false, headers: { cookie: `TETHER=${token}` } });
      expect(again.body).toBe(reply.body);
      expect(setCookieValue(again, 'TETHER')).toBeUndefined();
    }
    expect(await t.metric(sticky('invalid_unknown_key'))).toBe(0);
  });

  it('with --key-grace 2 the removed key stops opening tokens after its grace period', async () => {
    const t = await start(['--key-grace', '2']);
    const old = await freshToken(t);
    expect(tokenKeyId(old.token)).toBe(1);

    tmp.file('keys', `${keyLine(2)}\n`);
    const signalledAt = Date.now();
    t.proc.kill('SIGHUP');
    await pollMetric(t, RELOADS, (v) => v === 1);
    const logged = await reloadedLog(t);
    const loggedAt = Date.now();
    const retiring = (logged.keys as { id: number; retireAt?: string }[]).find((k) => k.id === 1);
    expect(retiring?.retireAt, 'key 1 retires').toBeTruthy();
    const retireAt = Date.parse(retiring!.retireAt!);
    expect(retireAt).toBeGreaterThanOrEqual(signalledAt + 2_000);
    expect(retireAt).toBeLessThanOrEqual(loggedAt + 2_000);

    const unknownBefore = await t.metric(sticky('invalid_unknown_key'));
    const reissued = await pollUntil(
      'the old token to stop routing',
      async () => {
        const reply = await request({ port: t.port, headers: { cookie: `TETHER=${old.token}` } });
        expect(reply.status).toBe(200);
        return setCookieValue(reply, 'TETHER');
      },
      15_000,
    );
    // Whatever the workers' clocks, nothing may refuse the key before its logged retireAt.
    expect(Date.now()).toBeGreaterThanOrEqual(retireAt);
    expect(tokenKeyId(reissued)).toBe(2);
    expect(await t.metric(sticky('invalid_unknown_key'))).toBeGreaterThan(unknownBefore);

    // Retired on every worker, for good: each request with it gets a new key-2 token.
    const afterRetire = await t.metric(sticky('invalid_unknown_key'));
    for (const r of await present(t, old.token, 10)) {
      expect(r.issued, 'the retired token is re-issued').toBeTruthy();
      expect(tokenKeyId(r.issued!)).toBe(2);
    }
    expect(await t.metric(sticky('invalid_unknown_key'))).toBe(afterRetire + 10);
    // And the replacement routes.
    const replacement = await request({ port: t.port, headers: { cookie: `TETHER=${reissued}` } });
    await expectRoutes(t, reissued, replacement.body);
  });

  it('a bad key file on SIGHUP keeps the running keys and logs an error; a good one then loads', async () => {
    const t = await start();
    const old = await freshToken(t);

    tmp.file('keys', 'this is not a key file\n1 00ff\n');
    t.proc.kill('SIGHUP');
    const err = await t.waitForLog((e) => e.level === 50 && /key file/i.test(String(e.msg)), 10_000);
    expect(String(err.err)).toContain(keyFile);
    expect(String(err.err)).toMatch(/:1: .*:2: /s);
    expect(await t.metric(RELOADS)).toBe(0);
    await expectRoutes(t, old.token, old.backend);
    const still = await freshToken(t);
    expect(tokenKeyId(still.token), 'the running seal key stays').toBe(1);

    // A missing file is rejected the same way.
    unlinkSync(keyFile);
    const errorsBefore = t.lines.filter((l) => l.includes('"level":50')).length;
    t.proc.kill('SIGHUP');
    await pollUntil('a second error line', async () => (t.lines.filter((l) => l.includes('"level":50')).length > errorsBefore ? true : undefined));
    expect(t.lines.filter((l) => l.includes('"level":50')).at(-1)).toContain('cannot read key file');
    await expectRoutes(t, old.token, old.backend, 4);

    // The running process is intact: a good file loads, and both old and new tokens route.
    tmp.file('keys', `${keyLine(3)}\n`);
    t.proc.kill('SIGHUP');
    await pollMetric(t, RELOADS, (v) => v === 1);
    await expectRoutes(t, old.token, old.backend);
    const fresh = await freshToken(t);
    expect(tokenKeyId(fresh.token)).toBe(3);
  });
});
