// HMAC-SHA256 sign/verify: native against node:crypto and RFC 4231.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { hmacSha256, hmacVerify } from '../../src/native/index.js';
import { referenceHmacSha256, referenceHmacVerify } from '../../src/native/reference.js';

const { hmac: vectors } = JSON.parse(
  readFileSync(new URL('../fixtures/token-vectors.json', import.meta.url), 'utf8'),
) as { hmac: { name: string; key: string; data: string; mac: string }[] };
const hex = (s: string): Buffer => Buffer.from(s, 'hex');

const impls = [
  { name: 'native', sign: hmacSha256, verify: hmacVerify },
  { name: 'reference', sign: referenceHmacSha256, verify: referenceHmacVerify },
];

describe.each(impls)('$name HMAC-SHA256', ({ sign, verify }) => {
  it('matches RFC 4231 and the edge vectors', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(9);
    for (const v of vectors) {
      expect(sign(hex(v.key), hex(v.data)).toString('hex'), v.name).toBe(v.mac);
      expect(verify(hex(v.key), hex(v.data), hex(v.mac)), v.name).toBe(true);
    }
  });

  it('rejects every single-bit change to the mac, and every wrong length', () => {
    const key = randomBytes(32);
    const data = randomBytes(100);
    const mac = sign(key, data);
    for (let bit = 0; bit < 256; bit++) {
      const bad = Buffer.from(mac);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      expect(verify(key, data, bad)).toBe(false);
    }
    for (const len of [0, 1, 16, 31, 33, 64]) {
      const wrong = Buffer.alloc(len);
      mac.copy(wrong);
      expect(verify(key, data, wrong), `length ${len}`).toBe(false);
    }
    expect(verify(key, Buffer.concat([data, Buffer.alloc(1)]), mac)).toBe(false);
    expect(verify(Buffer.concat([key, Buffer.from([1])]), data, mac)).toBe(false);
    // HMAC pads short keys with zeros, so appending a zero byte names the same key (RFC 2104).
    expect(verify(Buffer.concat([key, Buffer.alloc(1)]), data, mac)).toBe(true);
  });

  it('explains bad argument types', () => {
    expect(() => sign('key' as unknown as Uint8Array, Buffer.alloc(0))).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'TETHER_ERR_INVALID_ARG_TYPE', message: 'expected a Uint8Array for key but received string "key"' }),
    );
    expect(() => verify(Buffer.alloc(1), Buffer.alloc(0), undefined as unknown as Uint8Array)).toThrow(
      /expected a Uint8Array for mac but received undefined/,
    );
  });
});

describe('native ⇄ reference HMAC', () => {
  it('agree on random keys and data, including views at an offset', () => {
    for (let i = 0; i < 500; i++) {
      const key = randomBytes(i % 150);
      const data = randomBytes((i * 37) % 2000);
      const mac = hmacSha256(key, data);
      expect(mac.length).toBe(32);
      expect(mac.equals(referenceHmacSha256(key, data))).toBe(true);
      expect(hmacVerify(key, data, mac)).toBe(true);
      expect(referenceHmacVerify(key, data, mac)).toBe(true);
      const other = randomBytes(32);
      expect(hmacVerify(key, data, other)).toBe(referenceHmacVerify(key, data, other));
    }
    const backing = randomBytes(300);
    const key = backing.subarray(3, 40);
    const data = new Uint8Array(backing.buffer, backing.byteOffset + 41, 200);
    expect(hmacSha256(key, data).equals(referenceHmacSha256(Buffer.from(key), Buffer.from(data)))).toBe(true);
  });

  it('returns a fresh buffer per call', () => {
    const a = hmacSha256(Buffer.from('k'), Buffer.from('a'));
    const copy = Buffer.from(a);
    hmacSha256(Buffer.from('k'), Buffer.from('b'));
    expect(a.equals(copy)).toBe(true);
  });
});
