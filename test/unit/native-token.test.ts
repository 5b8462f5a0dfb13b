// Route token crypto: the native addon against the node:crypto reference and the generated
// known-answer vectors, in both directions, on real, random and mutated tokens of both formats
// (v2 sealed and opened; v1 only opened).
import { hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';

import {
  NativeTokenCrypto,
  TOKEN_MAX_CHARS,
  TokenStatus,
  createTokenCrypto,
  type KeyRingEntry,
  type TokenCrypto,
} from '../../src/native/index.js';
import { NATIVE_ADDON_PATH } from '../../src/native/loader.js';
import { ReferenceTokenCrypto, createReferenceTokenCrypto, decodeBase64UrlStrict, deriveV2Key } from '../../src/native/reference.js';
import { rawToken as sealV1 } from '../fixtures/token-format.mjs';
import { prng } from '../helpers/prng.js';

interface Vectors {
  ring: { id: number; key: string }[];
  sealKeyId: number;
  seal: { name: string; salt: string; payload: string; aad: string; token: string }[];
  open: { name: string; token: string; aad: string; status: number; keyId: number; version: number; payload: string | null }[];
}

const vectors = JSON.parse(
  readFileSync(new URL('../fixtures/token-vectors.json', import.meta.url), 'utf8'),
) as Vectors;
const hex = (s: string | null): Buffer => Buffer.from(s ?? '', 'hex');
const vectorRing: KeyRingEntry[] = vectors.ring.map(({ id, key }) => ({ id, key: hex(key) }));

type Impl = { name: string; make: () => NativeTokenCrypto | ReferenceTokenCrypto };
const impls: Impl[] = [
  { name: 'native', make: () => new NativeTokenCrypto() },
  { name: 'reference', make: () => new ReferenceTokenCrypto() },
];

function withRing<T extends TokenCrypto>(crypto: T, ring = vectorRing, sealKeyId = vectors.sealKeyId): T {
  crypto.setKeyRing(ring, sealKeyId);
  return crypto;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';


describe.each(impls)('$name: known-answer vectors', ({ make }) => {
  it('seals every vector to the expected token', () => {
    const crypto = withRing(make());
    for (const v of vectors.seal) {
      expect(crypto.sealWithSalt(hex(v.payload), hex(v.aad), hex(v.salt)), v.name).toBe(v.token);
    }
  });

  it('opens every vector (v1 and v2) with the expected status, key id, version and payload', () => {
    const crypto = withRing(make());
    const seen = new Set<string>();
    for (const v of vectors.open) {
      const r = crypto.open(v.token, hex(v.aad));
      expect({ status: r.status, keyId: r.keyId, version: r.version, payload: r.payload?.toString('hex') ?? null }, v.name).toEqual({
        status: v.status,
        keyId: v.keyId,
        version: v.version,
        payload: v.payload,
      });
      seen.add(`${r.version}:${r.status}`);
    }
    // Every status is exercised by the vectors, and every failure after the version byte in both formats.
    expect([...seen].sort()).toEqual(['0:1', '0:2', '1:0', '1:1', '1:3', '1:4', '2:0', '2:1', '2:3', '2:4']);
  });
});

describe('native ⇄ reference', () => {
  it('each opens what the other sealed, for random keys, payloads and AADs', () => {
    const ids = [3, 0, 200, 255];
    const ring = ids.map((id) => ({ id, key: randomBytes(32) }));
    const random = prng(1);
    for (const sealId of ids) {
      const native = withRing(createTokenCrypto(), ring, sealId);
      const reference = withRing(createReferenceTokenCrypto(), ring, sealId);
      for (let i = 0; i < 200; i++) {
        const payload = randomBytes(Math.floor(random() * 256));
        const aad = randomBytes(Math.floor(random() * 80));
        const fromNative = native.seal(payload, aad);
        const fromReference = reference.seal(payload, aad);
        for (const [token, opener] of [
          [fromNative, reference],
          [fromReference, native],
          [fromNative, native],
        ] as const) {
          const r = opener.open(token, aad);
          expect(r.status).toBe(TokenStatus.Ok);
          expect(r.keyId).toBe(sealId);
          expect(r.payload?.equals(payload)).toBe(true);
        }
        // Fresh random salt per seal, and always format v2.
        expect(native.seal(payload, aad)).not.toBe(fromNative);
        expect(Buffer.from(fromNative, 'base64url')[0]).toBe(2);
        expect(Buffer.from(fromReference, 'base64url')[0]).toBe(2);
      }
    }
  });

  it('the same salt gives the same token in both', () => {
    const native = withRing(new NativeTokenCrypto());
    const reference = withRing(new ReferenceTokenCrypto());
    for (let len = 0; len <= 255; len++) {
      const payload = randomBytes(len);
      const aad = randomBytes(len % 40);
      const salt = randomBytes(16);
      const token = native.sealWithSalt(payload, aad, salt);
      expect(reference.sealWithSalt(payload, aad, salt)).toBe(token);
      // 34 raw bytes of overhead, unpadded base64url.
      expect(token.length).toBe(Math.ceil(((34 + len) * 4) / 3));
    }
    // A pool name longer than node's hkdfSync takes as info (1024 bytes) still seals alike.
    const longAad = randomBytes(70_000);
    const salt = randomBytes(16);
    expect(reference.sealWithSalt(Buffer.from('x'), longAad, salt)).toBe(native.sealWithSalt(Buffer.from('x'), longAad, salt));
  });

  it("v2's per-token key is RFC 5869 HKDF-SHA256 over the ring key, bound to version, key id, salt and AAD", () => {
    const ringKey = randomBytes(32);
    const salt = randomBytes(16);
    const aad = Buffer.from('\u0000\u0003web\u0000\u0006cookie', 'latin1');
    const info = Buffer.concat([Buffer.from([2, 9]), salt, aad]);
    const expected = Buffer.from(hkdfSync('sha256', ringKey, 'tether route token v2', info, 32));
    expect(deriveV2Key(ringKey, 9, salt, aad).equals(expected)).toBe(true);
    // Every input changes the key.
    const variants = [
      deriveV2Key(randomBytes(32), 9, salt, aad),
      deriveV2Key(ringKey, 8, salt, aad),
      deriveV2Key(ringKey, 9, randomBytes(16), aad),
      deriveV2Key(ringKey, 9, salt, Buffer.concat([aad, Buffer.from([0])])),
    ];
    for (const v of variants) expect(v.equals(expected)).toBe(false);
  });

  const MUTATION_AAD = Buffer.from('\u0000\u0003web\u0000\u0006cookie', 'latin1');
  const MUTATION_PAYLOAD = Buffer.from('payload for mutation');
  const v1Key = hex(vectors.ring.find((k) => k.id === vectors.sealKeyId)!.key);
  it.each([
    ['v2 (sealed now)', () => withRing(createTokenCrypto()).seal(MUTATION_PAYLOAD, MUTATION_AAD)],
    ['v1 (still held by clients)', () => sealV1(vectors.sealKeyId, v1Key, randomBytes(12), MUTATION_PAYLOAD, MUTATION_AAD).toString('base64url')],
  ])('%s: both agree on the status of 10,000 random mutations of a valid token, none of which opens', (_name, mint) => {
    const native = withRing(createTokenCrypto());
    const reference = withRing(createReferenceTokenCrypto());
    const aad = MUTATION_AAD;
    const payload = MUTATION_PAYLOAD;
    const good = mint();
    expect(native.open(good, aad).status).toBe(TokenStatus.Ok);
    const random = prng(42);
    const pick = <T>(xs: ArrayLike<T>): T => xs[Math.floor(random() * xs.length)]!;
    const counts = new Map<TokenStatus, number>();
    for (let i = 0; i < 10_000; i++) {
      const chars = [...good];
      const edits = 1 + Math.floor(random() * 3);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(random() * chars.length);
        switch (Math.floor(random() * 6)) {
          case 0: chars[at] = pick(ALPHABET); break;
          case 1: chars.splice(at, 1); break;
          case 2: chars.splice(at, 0, pick(ALPHABET)); break;
          case 3: chars.length = at; break;
          case 4: chars[at] = pick(['=', '+', '/', ' ', '.', '\u0000', 'Ł', 'é', '\ud800', '😀']); break;
          default: chars.push(...pick(ALPHABET).repeat(Math.floor(random() * 600))); break;
        }
      }
      const token = chars.join('');
      const n = native.open(token, aad);
      const r = reference.open(token, aad);
      expect({ status: n.status, keyId: n.keyId, version: n.version }, token).toEqual({ status: r.status, keyId: r.keyId, version: r.version });
      if (token === good) {
        expect(n.payload?.equals(payload)).toBe(true);
      } else {
        // Canonical base64url: a different string never opens, even to the same payload.
        expect(n.status, token).not.toBe(TokenStatus.Ok);
      }
      counts.set(n.status, (counts.get(n.status) ?? 0) + 1);
    }
    // The mutations reach every failure the format has.
    for (const s of [TokenStatus.Malformed, TokenStatus.BadVersion, TokenStatus.UnknownKey, TokenStatus.AuthFailed]) {
      expect(counts.get(s) ?? 0, TokenStatus[s]).toBeGreaterThan(0);
    }
  });
});

describe.each(impls)('$name: canonical spelling and limits', ({ make }) => {
  const crypto = withRing(make());
  const aad = Buffer.from('aad');

  it('refuses non-canonical trailing bits, padding and the standard alphabet', () => {
    for (let len = 0; len < 6; len++) {
      const payload = randomBytes(len);
      const token = crypto.seal(payload, aad);
      expect(crypto.open(token, aad).status).toBe(TokenStatus.Ok);
      const spare = token.length % 4 === 2 ? 4 : token.length % 4 === 3 ? 2 : 0;
      const last = ALPHABET.indexOf(token.at(-1)!);
      for (let bits = 1; bits < 1 << spare; bits++) {
        const alt = token.slice(0, -1) + ALPHABET[last | bits];
        // Node's lenient decoder maps the alternative spelling to the very same bytes...
        expect(Buffer.from(alt, 'base64url').equals(Buffer.from(token, 'base64url'))).toBe(true);
        // ...which the strict one refuses, so a token has exactly one spelling.
        expect(decodeBase64UrlStrict(alt)).toBeNull();
        expect(crypto.open(alt, aad).status).toBe(TokenStatus.Malformed);
      }
      expect(crypto.open(`${token}=`, aad).status).toBe(TokenStatus.Malformed);
      expect(crypto.open(token.replace(/-/g, '+').replace(/_/g, '/') + (/[-_]/.test(token) ? '' : '+'), aad).status)
        .toBe(TokenStatus.Malformed);
    }
  });

  it('refuses characters that a lossy narrowing would fold onto the alphabet', () => {
    const token = crypto.seal(Buffer.from('x'), aad);
    // U+0141 is 0x41 ('A') in its low byte, U+FF2D is 'M' + 0xFF00.
    for (const ch of ['\u0141', '\uff21', '\u0100', '\u00c1', '\u0000', '\ud83d']) {
      const mutated = ch + token.slice(1);
      expect(crypto.open(mutated, aad).status).toBe(TokenStatus.Malformed);
    }
  });

  it('treats tokens over the length cap as malformed without decoding them', () => {
    expect(crypto.open('A'.repeat(TOKEN_MAX_CHARS), aad).status).toBe(TokenStatus.BadVersion);
    expect(crypto.open('A'.repeat(TOKEN_MAX_CHARS + 1), aad).status).toBe(TokenStatus.Malformed);
    expect(crypto.open('A'.repeat(100_000), aad).status).toBe(TokenStatus.Malformed);
    expect(crypto.open('', aad)).toEqual({ status: TokenStatus.Malformed, keyId: -1, version: 0, payload: null });
  });

  it('seals payloads of 0..255 bytes and refuses 256', () => {
    expect(crypto.open(crypto.seal(Buffer.alloc(0), aad), aad).payload).toEqual(Buffer.alloc(0));
    expect(crypto.open(crypto.seal(Buffer.alloc(255, 9), aad), aad).payload).toEqual(Buffer.alloc(255, 9));
    expect(() => crypto.seal(Buffer.alloc(256), aad)).toThrow(
      expect.objectContaining({ name: 'RangeError', code: 'TETHER_ERR_INVALID_ARG_VALUE', message: expect.stringMatching(/expected .* but received 256 bytes/) }),
    );
  });

  it('accepts Uint8Array views at an offset and hands back an independent payload', () => {
    const backing = randomBytes(64);
    const payload = new Uint8Array(backing.buffer, backing.byteOffset + 5, 20);
    const aadView = new Uint8Array(backing.buffer, backing.byteOffset + 30, 7);
    const token = crypto.seal(payload, aadView);
    const first = crypto.open(token, Buffer.from(aadView));
    expect(first.payload?.equals(payload)).toBe(true);
    const copy = Buffer.from(first.payload!);
    crypto.open(crypto.seal(Buffer.alloc(20, 0xee), aad), aad);
    expect(first.payload?.equals(copy)).toBe(true);
  });

  it('throws only on argument types, with "expected … but received …"', () => {
    expect(() => crypto.open(42 as unknown as string, aad)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'TETHER_ERR_INVALID_ARG_TYPE', message: 'expected a string for token but received number 42' }),
    );
    expect(() => crypto.open('abc', 'aad' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => crypto.seal([1, 2] as unknown as Uint8Array, aad)).toThrow(/expected a Uint8Array for payload but received an array/);
    expect(() => crypto.seal(Buffer.alloc(1), null as unknown as Uint8Array)).toThrow(/for aad but received null/);
  });
});

describe.each(impls)('$name: key ring', ({ make }) => {
  const key = (fill: number): Buffer => Buffer.alloc(32, fill);

  it('seals with the chosen key, opens with every key, forgets removed keys', () => {
    const crypto = make();
    crypto.setKeyRing([{ id: 1, key: key(1) }, { id: 2, key: key(2) }], 1);
    const old = crypto.seal(Buffer.from('old'), Buffer.alloc(0));
    expect(crypto.open(old, Buffer.alloc(0)).keyId).toBe(1);
    crypto.setKeyRing([{ id: 2, key: key(2) }, { id: 1, key: key(1) }], 2);
    const fresh = crypto.seal(Buffer.from('new'), Buffer.alloc(0));
    expect(crypto.open(fresh, Buffer.alloc(0))).toMatchObject({ status: TokenStatus.Ok, keyId: 2 });
    expect(crypto.open(old, Buffer.alloc(0))).toMatchObject({ status: TokenStatus.Ok, keyId: 1 });
    crypto.setKeyRing([{ id: 2, key: key(2) }], 2);
    expect(crypto.open(old, Buffer.alloc(0))).toEqual({ status: TokenStatus.UnknownKey, keyId: 1, version: 2, payload: null });
    // Same id, different key: authentication fails rather than anything opening.
    crypto.setKeyRing([{ id: 1, key: key(9) }], 1);
    expect(crypto.open(old, Buffer.alloc(0))).toEqual({ status: TokenStatus.AuthFailed, keyId: 1, version: 2, payload: null });
  });

  it('before any ring: seal throws, open reports an unknown key', () => {
    const crypto = make();
    expect(() => crypto.seal(Buffer.from('x'), Buffer.alloc(0))).toThrow(expect.objectContaining({ code: 'TETHER_ERR_NO_SEAL_KEY' }));
    const token = withRing(make()).seal(Buffer.from('x'), Buffer.alloc(0));
    expect(crypto.open(token, Buffer.alloc(0)).status).toBe(TokenStatus.UnknownKey);
  });

  it('explains every bad ring and keeps the previous one', () => {
    const crypto = withRing(make());
    const token = crypto.seal(Buffer.from('kept'), Buffer.alloc(0));
    const cases: [unknown, unknown, string, RegExp][] = [
      [null, 1, 'TypeError', /^expected an array of key ring entries but received null$/],
      [[{ id: 1, key: key(1) }], '1', 'TypeError', /^expected a number for sealKeyId but received string "1"$/],
      [[{ id: 1, key: key(1) }], 1.5, 'RangeError', /^expected an integer 0\.\.255 for sealKeyId but received 1\.5$/],
      [[{ id: 256, key: key(1) }], 256, 'RangeError', /for sealKeyId but received 256/],
      [[{ id: 1, key: key(1) }, { id: 256, key: key(2) }], 1, 'RangeError', /^expected an integer 0\.\.255 for entries\[1\]\.id but received 256$/],
      [[{ id: -1, key: key(1) }], 1, 'RangeError', /entries\[0\]\.id but received -1/],
      [[{ id: '1', key: key(1) }], 1, 'TypeError', /^expected a number for entries\[0\]\.id but received string "1"$/],
      [[{ id: 1, key: Buffer.alloc(16) }], 1, 'RangeError', /^expected a 32-byte key for entries\[0\]\.key but received 16 bytes$/],
      [[{ id: 1, key: 'k'.repeat(32) }], 1, 'TypeError', /^expected a Uint8Array for entries\[0\]\.key but received string/],
      [[null], 1, 'TypeError', /^expected an object for entries\[0\] but received null$/],
      [[{ id: 1, key: key(1) }, { id: 1, key: key(2) }], 1, 'RangeError', /^expected unique key ids but received id 1 in entries\[0\] and entries\[1\]$/],
      [[{ id: 1, key: key(1) }, { id: 2, key: key(2) }], 3, 'RangeError', /^expected sealKeyId to name a key in the ring \(ids: 1, 2\) but received 3$/],
      [[], 0, 'RangeError', /\(ids: none\) but received 0/],
    ];
    for (const [entries, sealId, name, message] of cases) {
      expect(() => crypto.setKeyRing(entries as KeyRingEntry[], sealId as number), String(message)).toThrow(
        expect.objectContaining({ name, message: expect.stringMatching(message), code: expect.stringMatching(/^TETHER_ERR_INVALID_ARG_/) }),
      );
    }
    expect(crypto.open(token, Buffer.alloc(0)).payload?.toString()).toBe('kept');
  });
});

describe('native addon per thread', () => {
  it('loads and works in worker threads alongside the main thread, and unloads cleanly', async () => {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData.path);
      const tc = new addon.TokenCrypto();
      tc.setKeyRing(Uint8Array.of(workerData.id), new Uint8Array(32).fill(workerData.id), workerData.id);
      const out = new Uint8Array(255);
      let ok = 0;
      for (let i = 0; i < 2000; i++) {
        const t = tc.seal(Uint8Array.of(i & 255, workerData.id), new Uint8Array(0));
        const packed = tc.open(t, new Uint8Array(0), out);
        if ((packed & 255) === 0 && out[0] === (i & 255) && out[1] === workerData.id) ok++;
      }
      parentPort.postMessage(ok);
    `;
    // Each worker's key differs; the main thread's ring is untouched by theirs.
    const main = withRing(createTokenCrypto());
    const before = main.seal(Buffer.from('main'), Buffer.alloc(0));
    const results = await Promise.all(
      [11, 12, 13].map(
        (id) =>
          new Promise<number>((resolve, reject) => {
            const worker = new Worker(code, { eval: true, workerData: { path: NATIVE_ADDON_PATH, id } });
            worker.once('message', (n: number) => {
              void worker.terminate().then(() => resolve(n));
            });
            worker.once('error', reject);
          }),
      ),
    );
    expect(results).toEqual([2000, 2000, 2000]);
    expect(main.open(before, Buffer.alloc(0)).payload?.toString()).toBe('main');
    // The module the facade loads is the same file the workers loaded.
    expect(typeof createRequire(import.meta.url)(NATIVE_ADDON_PATH).TokenCrypto).toBe('function');
  });
});
