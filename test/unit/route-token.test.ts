// Route tokens: payload codec, pool/mode AAD, and the RouteTokens policy (retirement, age,
// skew, forgery), over both the native crypto and the node:crypto reference.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import { TokenStatus, createTokenCrypto, type TokenCrypto } from '../../src/native/index.js';
import { createReferenceTokenCrypto } from '../../src/native/reference.js';
import type { RingKey } from '../../src/protocol/key-ring.js';
import { rawToken as sealV1 } from '../fixtures/token-format.mjs';
import {
  RouteTokens,
  decodePayload,
  encodePayload,
  tokenAad,
  type RouteTokenClaims,
} from '../../src/sticky/route-token.js';

const claims = (over: Partial<RouteTokenClaims> = {}): RouteTokenClaims => ({
  backendId: 'app-1',
  issuedAt: 1_700_000_000,
  flags: 0,
  bindingTag: Buffer.alloc(8),
  ...over,
});

describe('payload codec', () => {
  it('lays out flags | issuedAt BE | bindingTag | idLen | id', () => {
    const b = encodePayload(claims({ flags: 0x81, bindingTag: Buffer.from('0102030405060708', 'hex') }));
    expect(b.toString('hex')).toBe('81' + '6553f100' + '0102030405060708' + '05' + Buffer.from('app-1').toString('hex'));
    expect(decodePayload(b)).toEqual(claims({ flags: 0x81, bindingTag: Buffer.from('0102030405060708', 'hex') }));
  });

  it('round-trips IDs of 1..64 UTF-8 bytes, extreme times and flags', () => {
    for (const backendId of ['a', 'x'.repeat(64), 'nœud-7', '節點', '\u{1F600}'.repeat(16), '\uFEFFbom']) {
      for (const issuedAt of [0, 1, 0xffff_ffff]) {
        const c = claims({ backendId, issuedAt, flags: 255, bindingTag: randomBytes(8) });
        expect(decodePayload(encodePayload(c))).toEqual(c);
      }
    }
  });

  it('decodes strictly', () => {
    const good = encodePayload(claims());
    const edit = (fn: (b: Buffer) => Buffer | void): Buffer => {
      const b = Buffer.from(good);
      return fn(b) ?? b;
    };
    expect(decodePayload(good.subarray(0, good.length - 1))).toBeNull();
    expect(decodePayload(Buffer.concat([good, Buffer.from('x')]))).toBeNull();
    expect(decodePayload(edit((b) => void (b[13] = 0)))).toBeNull();
    expect(decodePayload(edit((b) => void (b[13] = 6)))).toBeNull();
    expect(decodePayload(Buffer.concat([good.subarray(0, 13), Buffer.from([65]), Buffer.alloc(65, 0x61)]))).toBeNull();
    expect(decodePayload(Buffer.alloc(0))).toBeNull();
    expect(decodePayload(Buffer.alloc(14))).toBeNull();
    // Invalid UTF-8: stray continuation, overlong '/', CESU-8 surrogate, truncated sequence.
    for (const id of ['80', 'c0af', 'eda080', 'e282']) {
      const bytes = Buffer.from(id, 'hex');
      const payload = Buffer.concat([good.subarray(0, 13), Buffer.from([bytes.length]), bytes]);
      expect(decodePayload(payload), id).toBeNull();
    }
  });

  it('explains bad claims', () => {
    expect(() => encodePayload(claims({ backendId: '' }))).toThrow(/expected a backendId of 1\.\.64 UTF-8 bytes but received 0 bytes/);
    expect(() => encodePayload(claims({ backendId: 'é'.repeat(33) }))).toThrow(/but received 66 bytes/);
    expect(() => encodePayload(claims({ backendId: 'a\ud800' }))).toThrow(RangeError);
    expect(() => encodePayload(claims({ backendId: 7 as unknown as string }))).toThrow(TypeError);
    expect(() => encodePayload(claims({ issuedAt: -1 }))).toThrow(/issuedAt but received -1/);
    expect(() => encodePayload(claims({ issuedAt: 2 ** 32 }))).toThrow(RangeError);
    expect(() => encodePayload(claims({ issuedAt: 1.5 }))).toThrow(RangeError);
    expect(() => encodePayload(claims({ flags: 256 }))).toThrow(/flags but received 256/);
    expect(() => encodePayload(claims({ bindingTag: Buffer.alloc(7) }))).toThrow(/8-byte bindingTag but received 7 bytes/);
  });
});

describe('tokenAad', () => {
  it('is length-prefixed, so splits of one string differ', () => {
    expect(tokenAad('web', 'cookie').toString('hex')).toBe('0003' + Buffer.from('web').toString('hex') + '0006' + Buffer.from('cookie').toString('hex'));
    expect(tokenAad('ab', 'c').equals(tokenAad('a', 'bc'))).toBe(false);
    expect(tokenAad('', 'abc').equals(tokenAad('abc', ''))).toBe(false);
    expect(tokenAad('é', 'x').length).toBe(7);
    expect(() => tokenAad('p'.repeat(65_536), 'cookie')).toThrow(RangeError);
    expect(() => tokenAad(1 as unknown as string, 'cookie')).toThrow(TypeError);
  });
});

const cryptos: { name: string; make: () => TokenCrypto }[] = [
  { name: 'native', make: createTokenCrypto },
  { name: 'reference', make: createReferenceTokenCrypto },
];

describe.each(cryptos)('RouteTokens over $name crypto', ({ make }) => {
  const T0 = Date.UTC(2025, 0, 1);
  const k1: RingKey = { id: 1, key: randomBytes(32) };
  const k2: RingKey = { id: 2, key: randomBytes(32) };
  function setup(keys: RingKey[] = [k1], sealKeyId = 1, maxAgeSec = 3600) {
    const clock = { now: T0 };
    const tokens = new RouteTokens(make(), { maxAgeSec, now: () => clock.now });
    tokens.setKeyRing(keys, sealKeyId);
    return { tokens, clock };
  }

  it('reads back what it issued, for that pool and mode only', () => {
    const { tokens } = setup();
    const tag = randomBytes(8);
    const token = tokens.issue('web', 'cookie', 'app-7', tag, 0x09);
    expect(tokens.read('web', 'cookie', token)).toEqual({ ok: true, backendId: 'app-7', issuedAt: T0 / 1000, bindingTag: tag, flags: 0x09, keyId: 1, version: 2 });
    expect(tokens.read('api', 'cookie', token)).toEqual({ ok: false, reason: 'forged' });
    expect(tokens.read('web', 'header', token)).toEqual({ ok: false, reason: 'forged' });
    expect(tokens.read('webc', 'ookie', token)).toEqual({ ok: false, reason: 'forged' });
    // Repeated reads use the cached AAD and still agree.
    expect(tokens.read('web', 'cookie', token)).toMatchObject({ ok: true });
    const unbound = tokens.issue('web', 'cookie', 'app-7');
    expect(tokens.read('web', 'cookie', unbound)).toMatchObject({ ok: true, bindingTag: Buffer.alloc(8), flags: 0 });
  });

  it('maps every failure to a reason and never throws on token content', () => {
    const { tokens } = setup([k1, k2], 1);
    const token = tokens.issue('web', 'cookie', 'app-7');
    expect(tokens.read('web', 'cookie', '')).toEqual({ ok: false, reason: 'malformed' });
    expect(tokens.read('web', 'cookie', 'not a token')).toEqual({ ok: false, reason: 'malformed' });
    expect(tokens.read('web', 'cookie', `B${token.slice(1)}`)).toEqual({ ok: false, reason: 'malformed' }); // version
    expect(tokens.read('web', 'cookie', Buffer.from(token, 'base64url').subarray(0, -1).toString('base64url'))).toEqual({ ok: false, reason: 'forged' }); // tag 1 byte short
    const other = setup([k2], 2).tokens.issue('web', 'cookie', 'app-7');
    const unknown = setup([{ id: 3, key: randomBytes(32) }], 3).tokens.issue('web', 'cookie', 'app-7');
    expect(tokens.read('web', 'cookie', other)).toMatchObject({ ok: true, keyId: 2 });
    expect(tokens.read('web', 'cookie', unknown)).toEqual({ ok: false, reason: 'unknown_key' });
  });

  it('refuses authentic tokens whose payload is not a route payload', () => {
    const crypto = make();
    crypto.setKeyRing([k1], 1);
    const { tokens } = setup();
    const aad = tokenAad('web', 'cookie');
    expect(tokens.read('web', 'cookie', crypto.seal(Buffer.from('nonsense'), aad))).toEqual({ ok: false, reason: 'bad_payload' });
    const ok = crypto.seal(encodePayload(claims({ issuedAt: T0 / 1000 })), aad);
    expect(crypto.open(ok, aad).status).toBe(TokenStatus.Ok);
    expect(tokens.read('web', 'cookie', ok)).toMatchObject({ ok: true, backendId: 'app-1' });
  });

  it('enforces max age and clock skew at their boundaries', () => {
    const { tokens, clock } = setup([k1], 1, 100);
    const token = tokens.issue('web', 'cookie', 'app-7');
    clock.now = T0 + 100_999;
    expect(tokens.read('web', 'cookie', token)).toMatchObject({ ok: true });
    clock.now = T0 + 101_000;
    expect(tokens.read('web', 'cookie', token)).toEqual({ ok: false, reason: 'expired' });
    clock.now = T0 - 60_000;
    expect(tokens.read('web', 'cookie', token)).toMatchObject({ ok: true });
    clock.now = T0 - 61_000;
    expect(tokens.read('web', 'cookie', token)).toEqual({ ok: false, reason: 'future' });
  });

  it('rotates: old keys open until retireAt, new key seals, retired seal keys are refused', () => {
    const { tokens, clock } = setup([k1], 1);
    const old = tokens.issue('web', 'cookie', 'app-7');
    tokens.setKeyRing([k2, { ...k1, retireAt: T0 + 10_000 }], 2);
    const fresh = tokens.issue('web', 'cookie', 'app-8');
    expect(tokens.read('web', 'cookie', old)).toMatchObject({ ok: true, keyId: 1, backendId: 'app-7' });
    expect(tokens.read('web', 'cookie', fresh)).toMatchObject({ ok: true, keyId: 2, backendId: 'app-8' });
    clock.now = T0 + 10_000;
    expect(tokens.read('web', 'cookie', old)).toEqual({ ok: false, reason: 'retired_key' });
    expect(tokens.read('web', 'cookie', fresh)).toMatchObject({ ok: true });

    expect(() => tokens.setKeyRing([{ ...k1, retireAt: T0 }], 1)).toThrow(/expected an unretired seal key/);
    // A failed setKeyRing keeps the previous ring.
    expect(tokens.read('web', 'cookie', fresh)).toMatchObject({ ok: true });
    tokens.setKeyRing([{ ...k2, retireAt: T0 + 20_000 }], 2);
    clock.now = T0 + 20_000;
    expect(() => tokens.issue('web', 'cookie', 'app-8')).toThrow(expect.objectContaining({ code: 'TETHER_ERR_SEAL_KEY_RETIRED' }));
  });

  it('opens format v1 tokens until the upgrade grace ends, re-checked on cached reads too', () => {
    const { tokens, clock } = setup([k1], 1);
    const v1 = (backendId: string, tag = Buffer.alloc(8), flags = 0) =>
      sealV1(1, k1.key, randomBytes(12), encodePayload({ backendId, issuedAt: T0 / 1000, flags, bindingTag: tag }), tokenAad('web', 'cookie')).toString('base64url');
    const tag = randomBytes(8);
    const held = v1('app-3', tag, 0x05);
    // Without a grace (the default) v1 does not open at all.
    expect(tokens.read('web', 'cookie', held)).toEqual({ ok: false, reason: 'retired_format' });
    tokens.setKeyRing([k1], 1, T0 + 5_000);
    expect(tokens.read('web', 'cookie', held)).toEqual({ ok: true, backendId: 'app-3', issuedAt: T0 / 1000, bindingTag: tag, flags: 0x05, keyId: 1, version: 1 });
    expect(tokens.read('api', 'cookie', held)).toEqual({ ok: false, reason: 'forged' });
    // What it issues now is v2, for the same claims.
    const fresh = tokens.issue('web', 'cookie', 'app-3', tag, 0x05);
    expect(Buffer.from(fresh, 'base64url')[0]).toBe(2);
    expect(tokens.read('web', 'cookie', fresh)).toMatchObject({ ok: true, backendId: 'app-3', version: 2 });
    clock.now = T0 + 4_999;
    expect(tokens.read('web', 'cookie', held)).toMatchObject({ ok: true, version: 1 }); // from the cache
    clock.now = T0 + 5_000;
    expect(tokens.read('web', 'cookie', held)).toEqual({ ok: false, reason: 'retired_format' });
    expect(tokens.read('web', 'cookie', v1('app-4'))).toEqual({ ok: false, reason: 'retired_format' });
    expect(tokens.read('web', 'cookie', fresh)).toMatchObject({ ok: true, version: 2 });
    // A retired key beats the format: the reason names the key.
    tokens.setKeyRing([k2, { ...k1, retireAt: T0 + 6_000 }], 2, T0 + 60_000);
    clock.now = T0 + 6_000;
    expect(tokens.read('web', 'cookie', held)).toEqual({ ok: false, reason: 'retired_key' });
    expect(() => tokens.setKeyRing([k1], 1, NaN)).toThrow(/a number for v1OpensUntil/);
  });

  it('validates options and ring', () => {
    expect(() => new RouteTokens(make(), { maxAgeSec: 0 })).toThrow(/expected a positive finite number for maxAgeSec but received 0/);
    expect(() => new RouteTokens(make(), { maxAgeSec: 10, clockSkewSec: -1 })).toThrow(RangeError);
    const { tokens } = setup();
    expect(() => tokens.setKeyRing([{ id: 1, key: randomBytes(16) }], 1)).toThrow(/32-byte key/);
    expect(() => tokens.issue('web', 'cookie', 'app-7', Buffer.alloc(4))).toThrow(/8-byte bindingTag/);
  });
});

describe('RouteTokens across implementations', () => {
  it('a token issued over native crypto reads over the reference, and back', () => {
    const key: RingKey = { id: 9, key: randomBytes(32) };
    const native = new RouteTokens(createTokenCrypto(), { maxAgeSec: 60 });
    const reference = new RouteTokens(createReferenceTokenCrypto(), { maxAgeSec: 60 });
    native.setKeyRing([key], 9);
    reference.setKeyRing([key], 9);
    expect(reference.read('p', 'cookie', native.issue('p', 'cookie', 'b-1'))).toMatchObject({ ok: true, backendId: 'b-1' });
    expect(native.read('p', 'cookie', reference.issue('p', 'cookie', 'b-2'))).toMatchObject({ ok: true, backendId: 'b-2' });
  });
});
