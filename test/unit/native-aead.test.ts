// AES-256-GCM sealing under a caller's key (the authorization boxes): the addon against
// node:crypto (the reference), the GCM specification's AES-256 vectors, and its argument checks.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import { AES_GCM_MAX_INPUT_BYTES, aesGcmSealInto } from '../../src/native/index.js';
import { referenceAesGcmSeal } from '../../src/native/reference.js';

function nativeSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Buffer {
  const out = Buffer.alloc(plaintext.length + 16);
  aesGcmSealInto(key, nonce, aad, plaintext, out);
  return out;
}

describe('aesGcmSealInto', () => {
  it('matches the GCM specification (test cases 13 and 14: AES-256, zero key and nonce)', () => {
    const zeroKey = Buffer.alloc(32);
    const zeroNonce = Buffer.alloc(12);
    for (const seal of [nativeSeal, referenceAesGcmSeal]) {
      expect(seal(zeroKey, zeroNonce, Buffer.alloc(0), Buffer.alloc(0)).toString('hex')).toBe('530f8afbc74536b9a963b4f1c4cb738b');
      expect(seal(zeroKey, zeroNonce, Buffer.alloc(0), Buffer.alloc(16)).toString('hex')).toBe(
        'cea7403d4d606b6e074ec5d3baf39d18' + 'd0d1c8a799996bf0265b98b5d48ab919',
      );
    }
  });

  it('gives node:crypto’s bytes on 2,000 random keys, nonces, additional data and plaintexts', () => {
    for (let i = 0; i < 2000; i++) {
      const key = randomBytes(32);
      const nonce = randomBytes(12);
      const aad = randomBytes(i % 97);
      const plaintext = randomBytes((i * 7) % 600);
      expect(nativeSeal(key, nonce, aad, plaintext).equals(referenceAesGcmSeal(key, nonce, aad, plaintext)), `case ${i}`).toBe(true);
    }
    const big = randomBytes(AES_GCM_MAX_INPUT_BYTES);
    const key = randomBytes(32);
    const nonce = randomBytes(12);
    expect(nativeSeal(key, nonce, big, big).equals(referenceAesGcmSeal(key, nonce, big, big))).toBe(true);
  });

  it('writes at an offset and nowhere else, from views at an offset', () => {
    const key = randomBytes(32);
    const nonce = randomBytes(12);
    const backing = randomBytes(200);
    const plaintext = backing.subarray(50, 150);
    const out = Buffer.alloc(12 + 100 + 16 + 5, 0xee);
    aesGcmSealInto(key, nonce, Buffer.from('info'), plaintext, out, 12);
    expect(out.subarray(12, 128).equals(referenceAesGcmSeal(key, nonce, Buffer.from('info'), plaintext))).toBe(true);
    expect([...out.subarray(0, 12)].every((b) => b === 0xee)).toBe(true);
    expect([...out.subarray(128)].every((b) => b === 0xee)).toBe(true);
  });

  it('refuses wrong sizes and types with a clear error, writing nothing', () => {
    const ok = { key: randomBytes(32), nonce: randomBytes(12), aad: Buffer.alloc(0), plaintext: Buffer.alloc(10) };
    const out = Buffer.alloc(26, 0xaa);
    expect(() => aesGcmSealInto(randomBytes(31), ok.nonce, ok.aad, ok.plaintext, out)).toThrow(/32-byte key and a 12-byte nonce/);
    expect(() => aesGcmSealInto(ok.key, randomBytes(16), ok.aad, ok.plaintext, out)).toThrow(/32-byte key and a 12-byte nonce/);
    expect(() => aesGcmSealInto(ok.key, ok.nonce, ok.aad, ok.plaintext, Buffer.alloc(25))).toThrow(/offset leaving 26 bytes/);
    expect(() => aesGcmSealInto(ok.key, ok.nonce, ok.aad, ok.plaintext, out, 1)).toThrow(/offset leaving 26 bytes/);
    expect(() => aesGcmSealInto(ok.key, ok.nonce, ok.aad, ok.plaintext, out, -1)).toThrow(/offset/);
    const tooBig = Buffer.alloc(AES_GCM_MAX_INPUT_BYTES + 1);
    expect(() => aesGcmSealInto(ok.key, ok.nonce, ok.aad, tooBig, Buffer.alloc(tooBig.length + 16))).toThrow(/at most 65536 bytes/);
    expect(() => aesGcmSealInto(ok.key, ok.nonce, tooBig, ok.plaintext, out)).toThrow(/at most 65536 bytes/);
    expect(() => aesGcmSealInto('key' as unknown as Uint8Array, ok.nonce, ok.aad, ok.plaintext, out)).toThrow(TypeError);
    expect(() => aesGcmSealInto(ok.key, ok.nonce, ok.aad, [1, 2] as unknown as Uint8Array, out)).toThrow(TypeError);
    expect([...out].every((b) => b === 0xaa)).toBe(true);
  });

  it('works in worker threads beside the main thread (one cipher context per thread)', async () => {
    const { Worker } = await import('node:worker_threads');
    const key = randomBytes(32);
    const nonce = randomBytes(12);
    const plaintext = randomBytes(300);
    const expected = referenceAesGcmSeal(key, nonce, Buffer.from('w'), plaintext).toString('hex');
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const b = require(workerData.addon);
      const out = Buffer.alloc(workerData.plaintext.length + 16);
      for (let i = 0; i < 100; i++) b.aesGcmSeal(workerData.key, workerData.nonce, Buffer.from('w'), workerData.plaintext, out);
      parentPort.postMessage(out.toString('hex'));`;
    const addon = new URL('../../build/Release/tether_native.node', import.meta.url).pathname;
    const results = await Promise.all(
      [1, 2].map(
        () =>
          new Promise<string>((resolve, reject) => {
            const w = new Worker(code, { eval: true, workerData: { addon, key, nonce, plaintext } });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      ),
    );
    expect(results).toEqual([expected, expected]);
    expect(nativeSeal(key, nonce, Buffer.from('w'), plaintext).toString('hex')).toBe(expected);
  });
});
