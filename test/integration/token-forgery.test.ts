// Route-token forgery through the real balancer: 10,000 distinct mutations of one valid token
// (bit flips, substitutions, truncations, extensions, non-canonical spellings, edited header
// bytes, splices) plus genuine tokens sealed for another pool, another mode, or under another
// key with the same id. None may route: each is answered with a fresh token, and the metrics
// count every one as invalid while hits move only for the interleaved genuine requests.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue, type Reply } from '../helpers/client.js';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { backendFlag, below, decodeToken, invalidTotal, keyLine, prng, sticky, tempDir, tokenKeyId } from '../helpers/sticky.js';

const MUTATIONS = 10_000;
const CONCURRENCY = 32;
const VALID_EVERY = 250;
const SEED = 0x7e74e2;
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** Characters outside base64url that still travel in a cookie value unchanged. */
const EXTRA = '+/=.~!*%$&\'()[]:<>?@^`{|}';
const SUBSTITUTES = B64URL + EXTRA;
const FOREIGN_PER_KIND = 100;
/** Format v2: version | keyId | 16-byte salt, then ciphertext and tag. */
const SALT_END = 18;

/** Requests a new token from `t` until one is for backend `want`. */
async function tokenFor(t: TetherProcess, want: string, mode: 'cookie' | 'header' = 'cookie', host?: string): Promise<string> {
  for (let i = 0; i < 20; i++) {
    const reply = await request({ port: t.port, headers: host ? { host } : {} });
    expect(reply.status).toBe(200);
    const token = mode === 'cookie' ? setCookieValue(reply, 'TETHER') : (reply.headers['x-tether-route'] as string | undefined);
    expect(token).toBeTruthy();
    if (reply.body === want) return token!;
  }
  throw new Error(`no token for ${want} in 20 requests`);
}

async function collectTokens(t: TetherProcess, n: number, mode: 'cookie' | 'header'): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const reply = await request({ port: t.port });
    const token = mode === 'cookie' ? setCookieValue(reply, 'TETHER') : (reply.headers['x-tether-route'] as string | undefined);
    expect(token).toBeTruthy();
    out.push(token!);
  }
  return out;
}

/** 10,000 distinct forgeries of `valid`, deterministic for a seed. */
function mutations(valid: string, foreign: readonly string[], seed: number): string[] {
  const rand = prng(seed);
  const raw = decodeToken(valid)!;
  const out = new Set<string>();
  const add = (m: string) => {
    // Never the token itself, never empty (an empty cookie is "no token", not an invalid one),
    // never a character a cookie value cannot carry or that a parser trims.
    if (m === valid || m.length === 0 || /[\s;,"\\]/.test(m)) return;
    if (out.size < MUTATIONS) out.add(m);
  };
  const pick = (s: string) => s[below(rand, s.length)]!;

  // Every other version byte and every other key id, in the clear header.
  for (let v = 0; v < 256; v++) {
    const r = Buffer.from(raw);
    r[0] = v;
    add(r.toString('base64url'));
  }
  for (let id = 0; id < 256; id++) {
    const r = Buffer.from(raw);
    r[1] = id;
    add(r.toString('base64url'));
  }
  // Non-canonical spellings of the very same bytes: padding, the standard alphabet.
  add(`${valid}=`);
  add(`${valid}==`);
  add(raw.toString('base64'));
  add(valid.replace(/-/g, '+').replace(/_/g, '/'));
  for (let i = 0; i < valid.length; i++) {
    if (valid[i] === '-') add(valid.slice(0, i) + '+' + valid.slice(i + 1));
    if (valid[i] === '_') add(valid.slice(0, i) + '/' + valid.slice(i + 1));
  }
  // Every truncation, and every single-character deletion.
  for (let n = 1; n < valid.length; n++) add(valid.slice(0, n));
  for (let i = 0; i < valid.length; i++) add(valid.slice(0, i) + valid.slice(i + 1));
  // Genuine tokens minted elsewhere, and splices of ours with them.
  for (const f of foreign) add(f);
  for (const f of foreign.slice(0, 150)) {
    const cut = 1 + below(rand, Math.min(valid.length, f.length) - 1);
    add(valid.slice(0, cut) + f.slice(cut));
    add(f.slice(0, cut) + valid.slice(cut));
  }
  // Our header and salt in front of another token's ciphertext and tag, and the reverse, bytewise.
  for (const f of foreign.slice(0, 100)) {
    const fr = decodeToken(f)!;
    add(Buffer.concat([raw.subarray(0, SALT_END), fr.subarray(SALT_END)]).toString('base64url'));
    add(Buffer.concat([fr.subarray(0, SALT_END), raw.subarray(SALT_END)]).toString('base64url'));
  }

  const kinds: (() => string)[] = [
    // 1-3 random bit flips in the decoded bytes, re-encoded canonically.
    () => {
      const r = Buffer.from(raw);
      const flips = 1 + below(rand, 3);
      for (let k = 0; k < flips; k++) r[below(rand, r.length)]! ^= 1 << below(rand, 8);
      return r.toString('base64url');
    },
    // One flipped bit in the tag or ciphertext specifically (the bytes an attacker would try).
    () => {
      const r = Buffer.from(raw);
      const at = SALT_END + below(rand, r.length - SALT_END);
      r[at]! ^= 1 << below(rand, 8);
      return r.toString('base64url');
    },
    // One flipped bit in the salt (v2 derives the token's key from it).
    () => {
      const r = Buffer.from(raw);
      r[2 + below(rand, 16)]! ^= 1 << below(rand, 8);
      return r.toString('base64url');
    },
    // 1-2 character substitutions, mostly from the base64url alphabet.
    () => {
      const c = valid.split('');
      const n = 1 + below(rand, 2);
      for (let k = 0; k < n; k++) c[below(rand, c.length)] = rand() < 0.8 ? pick(B64URL) : pick(SUBSTITUTES);
      return c.join('');
    },
    // Extensions: 1-8 characters appended, prepended or inserted.
    () => {
      let s = '';
      const n = 1 + below(rand, 8);
      for (let k = 0; k < n; k++) s += rand() < 0.9 ? pick(B64URL) : pick(SUBSTITUTES);
      const where = below(rand, 3);
      if (where === 0) return valid + s;
      if (where === 1) return s + valid;
      const at = below(rand, valid.length + 1);
      return valid.slice(0, at) + s + valid.slice(at);
    },
    // Random-length truncation plus random tail (length-preserving or not).
    () => {
      const cut = 1 + below(rand, valid.length - 1);
      let s = valid.slice(0, cut);
      const n = below(rand, valid.length - cut + 4);
      for (let k = 0; k < n; k++) s += pick(B64URL);
      return s;
    },
    // Whole-token case swap of one letter (base64url is case-sensitive).
    () => {
      const i = below(rand, valid.length);
      const ch = valid[i]!;
      const swapped = ch === ch.toUpperCase() ? ch.toLowerCase() : ch.toUpperCase();
      return valid.slice(0, i) + swapped + valid.slice(i + 1);
    },
  ];
  let guard = 0;
  while (out.size < MUTATIONS) {
    if (++guard > MUTATIONS * 50) throw new Error(`only ${out.size} distinct mutations`);
    add(kinds[below(rand, kinds.length)]!());
  }
  return [...out];
}

describe('route-token forgery through the balancer', () => {
  const tmp = tempDir();
  let app1: TestBackend;
  let app2: TestBackend;
  let trail: TestBackend;
  let tether: TetherProcess;
  let valid = '';
  const foreign: string[] = [];

  beforeAll(async () => {
    app1 = await startBackend('app1');
    app2 = await startBackend('app2');
    // A backend whose 8-byte ID makes a 75-character token, whose last character has 2 unused bits.
    trail = await startBackend('app-1234');
    const keys = tmp.file('keys', `${keyLine(1)}\n${keyLine(2)}\n`);
    const otherKeys = tmp.file('other-keys', `${keyLine(1)}\n`);
    const backends = [...backendFlag(app1), ...backendFlag(app2)];
    tether = await startTether(
      [...backends, ...backendFlag(trail, 'trail'), '--route', 'trail.test=trail', '--key-file', keys, '--sticky', 'cookie'],
      { workers: 2 },
    );
    valid = await tokenFor(tether, 'app1');
    expect(decodeToken(valid)![0], 'the balancer seals format v2').toBe(2);

    // Genuine tokens from the same key ring, for another pool name and for another mode;
    // and from a ring whose key 1 has other bytes.
    const sources: [string[], 'cookie' | 'header'][] = [
      [['--backend', `other/app1=127.0.0.1:${app1.port}`, '--backend', `other/app2=127.0.0.1:${app2.port}`, '--key-file', keys], 'cookie'],
      [[...backends, '--key-file', keys, '--sticky', 'header'], 'header'],
      [[...backends, '--key-file', otherKeys], 'cookie'],
    ];
    for (const [args, mode] of sources) {
      const t = await startTether(args, { workers: 1 });
      try {
        foreign.push(...(await collectTokens(t, FOREIGN_PER_KIND, mode)));
      } finally {
        expect(await t.stop()).toBe(0);
      }
    }
  }, 120_000);

  afterAll(async () => {
    await tether?.stop();
    await Promise.all([app1?.close(), app2?.close(), trail?.close()]);
    tmp.cleanup();
  });

  it('the genuine token routes to app1 without a new token', async () => {
    expect(tokenKeyId(valid)).toBe(1);
    const reply = await request({ port: tether.port, headers: { cookie: `TETHER=${valid}` } });
    expect(reply.body).toBe('app1');
    expect(setCookieValue(reply, 'TETHER')).toBeUndefined();
  });

  it('10,000 forged tokens never route; each is counted invalid and answered with a fresh token', async () => {
    const forged = mutations(valid, foreign, SEED);
    expect(new Set(forged).size).toBe(MUTATIONS);
    expect(forged).not.toContain(valid);

    const before = {
      hits: await tether.metric(sticky('hit')),
      misses: await tether.metric(sticky('miss')),
      invalid: await invalidTotal(tether),
    };
    // Work list: every forgery once, a genuine request every VALID_EVERY.
    const work: { token: string; genuine: boolean }[] = [];
    forged.forEach((token, i) => {
      if (i % VALID_EVERY === 0) work.push({ token: valid, genuine: true });
      work.push({ token, genuine: false });
    });
    const genuineCount = work.filter((w) => w.genuine).length;

    const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const accepted: string[] = [];
    const genuineMisses: string[] = [];
    const failures: string[] = [];
    const deadline = Date.now() + 150_000;
    let next = 0;
    const runOne = async (w: { token: string; genuine: boolean }) => {
      let reply: Reply;
      try {
        reply = await request({ port: tether.port, agent, headers: { cookie: `TETHER=${w.token}` }, timeoutMs: 15_000 });
      } catch (err) {
        failures.push(`${w.token}: ${(err as Error).message}`);
        return;
      }
      const issued = setCookieValue(reply, 'TETHER');
      if (reply.status !== 200) failures.push(`${w.token}: status ${reply.status} ${reply.body}`);
      if (w.genuine) {
        if (reply.body !== 'app1' || issued !== undefined) genuineMisses.push(`body ${reply.body}, set-cookie ${issued}`);
      } else if (issued === undefined || issued === w.token || tokenKeyId(issued) !== 1) {
        // Served without a new token ⇒ the forgery was accepted as a route token.
        accepted.push(`${JSON.stringify(w.token)} → ${reply.body}, set-cookie ${String(issued)}`);
      }
    };
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < work.length) {
          if (Date.now() > deadline) throw new Error(`deadline passed with ${work.length - next} requests unsent`);
          await runOne(work[next++]!);
        }
      }),
    );
    agent.destroy();

    expect(failures.slice(0, 10), `${failures.length} requests failed`).toEqual([]);
    expect(accepted.slice(0, 20), `${accepted.length} forged tokens were accepted`).toEqual([]);
    expect(genuineMisses, 'genuine requests interleaved with the forgeries').toEqual([]);
    expect(await tether.metric(sticky('hit'))).toBe(before.hits + genuineCount);
    expect(await invalidTotal(tether)).toBe(before.invalid + MUTATIONS);
    expect(await tether.metric(sticky('miss'))).toBe(before.misses + MUTATIONS);
    expect(await tether.metric(sticky('backend_unknown'))).toBe(0);
  }, 240_000);

  it('tokens from a pool with a 75-character token: non-canonical trailing bits and the wrong pool are refused', async () => {
    const token = await tokenFor(tether, 'app-1234', 'cookie', 'trail.test');
    expect(token).toHaveLength(75);
    const ok = await request({ port: tether.port, headers: { host: 'trail.test', cookie: `TETHER=${token}` } });
    expect(ok.body).toBe('app-1234');
    expect(setCookieValue(ok, 'TETHER')).toBeUndefined();

    // 56 raw bytes (34 + a 22-byte payload): the last character carries 4 data bits and 2
    // unused ones. The same bytes spelt with non-zero unused bits must not open (one spelling per token).
    const last = B64URL.indexOf(token.at(-1)!);
    expect(last & 0b11).toBe(0);
    const before = await tether.metric(sticky('invalid_malformed'));
    for (let bits = 1; bits < 4; bits++) {
      const alias = token.slice(0, -1) + B64URL[last | bits]!;
      expect(Buffer.from(alias, 'base64url').equals(Buffer.from(token, 'base64url'))).toBe(true);
      const reply = await request({ port: tether.port, headers: { host: 'trail.test', cookie: `TETHER=${alias}` } });
      expect(reply.body).toBe('app-1234');
      expect(setCookieValue(reply, 'TETHER'), `alias ${alias} must not be accepted`).toBeTruthy();
    }
    expect(await tether.metric(sticky('invalid_malformed'))).toBe(before + 3);

    // A genuine token of pool "trail" is a forgery in pool "default", and vice versa.
    const forgedBefore = await tether.metric(sticky('invalid_forged'));
    const cross = await request({ port: tether.port, headers: { cookie: `TETHER=${token}` } });
    expect(setCookieValue(cross, 'TETHER')).toBeTruthy();
    const back = await request({ port: tether.port, headers: { host: 'trail.test', cookie: `TETHER=${valid}` } });
    expect(setCookieValue(back, 'TETHER')).toBeTruthy();
    expect(await tether.metric(sticky('invalid_forged'))).toBe(forgedBefore + 2);
  });
});
