// HalfSipHash-2-4 against the reference test vectors (key 00..07, message 00..i-1, from the
// SipHash authors' vectors.h), and the string fingerprinter against that reference.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Fingerprinter, halfSipHash } from '../../src/shared-memory/fingerprint.js';

const KEY = Uint8Array.from({ length: 8 }, (_, i) => i);
const message = (n: number) => Uint8Array.from({ length: n }, (_, i) => i);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

// vectors_hsip64[0..6] and vectors_hsip32[0..7]: every tail length 0..3, and full blocks.
const HSIP64 = ['218d1f59b9b83cc8', 'be552412f8387315', '064f39ef7c50eb57', 'ce0f1a45f7060679', 'd5e78a175be52ea1', 'cb9d7c3f2f3db580', 'ce3e91358aa2bc25'];
const HSIP32 = ['a9359f5b', '27475ab8', 'fa62a603', '8afee704', '2a6e4689', 'c5fab669', '5863fc23', '8bcf63c5'];

/** The definition: Latin-1 bytes under key[0..8) when every code unit fits, else UTF-16LE under key[8..16). */
function reference(key16: Uint8Array, s: string): number[] {
  const latin1 = [...s].every((c) => c.charCodeAt(0) < 256 && c.length === 1);
  const bytes = latin1 ? Buffer.from(s, 'latin1') : Buffer.from(s, 'utf16le');
  const h = Buffer.from(halfSipHash(latin1 ? key16.subarray(0, 8) : key16.subarray(8, 16), bytes, 12));
  return [h.readInt32LE(0), h.readInt32LE(4), h.readInt32LE(8)];
}

describe('HalfSipHash-2-4', () => {
  it('matches the reference vectors, 64-bit and 32-bit output', () => {
    HSIP64.forEach((want, n) => expect(hex(halfSipHash(KEY, message(n), 8)), `64-bit, ${n} bytes`).toBe(want));
    HSIP32.forEach((want, n) => expect(hex(halfSipHash(KEY, message(n), 4)), `32-bit, ${n} bytes`).toBe(want));
  });

  it('refuses a key that is not 8 bytes', () => {
    expect(() => halfSipHash(new Uint8Array(16), message(1), 8)).toThrow(/8-byte key but received 16 bytes/);
  });
});

describe('Fingerprinter', () => {
  it('equals the reference (Latin-1 or UTF-16LE bytes) for every length, and for text beyond Latin-1', () => {
    const key = new Uint8Array(randomBytes(16));
    const f = new Fingerprinter(key);
    const samples = ['', 'a', 'ab', 'abc', 'abcd', 'abcde', 'JSESSIONID=0123456789abcdef', 'é', 'é漢字x', 'abcd漢', 'abc漢', '\u0000\uffff', '\ud83d\ude00', 'x'.repeat(4096)];
    for (let i = 0; i < 200; i++) samples.push(randomBytes(i % 67).toString('latin1'));
    for (const s of samples) expect([...f.ofString(s)], JSON.stringify(s.slice(0, 20))).toEqual(reference(key, s));
  });

  it('depends on the key half of the encoding used, and on nothing else', () => {
    const zero = new Fingerprinter(new Uint8Array(16));
    const key = new Uint8Array(16);
    key[15] = 1; // second half: the UTF-16 key
    const other = new Fingerprinter(key);
    expect([...other.ofString('session-1')]).toEqual([...zero.ofString('session-1')]);
    expect([...other.ofString('session-漢')]).not.toEqual([...zero.ofString('session-漢')]);
  });

  it('extends the 64-bit output by one word, leaving the first 64 bits as the reference', () => {
    HSIP64.forEach((want, n) => {
      const full = halfSipHash(KEY, message(n), 12);
      expect(hex(full.subarray(0, 8)), `${n} bytes`).toBe(want);
      expect(Buffer.from(full).readInt32LE(8)).not.toBe(Buffer.from(full).readInt32LE(4));
    });
  });

  it('refuses a key that is not 16 bytes', () => {
    expect(() => new Fingerprinter(new Uint8Array(8))).toThrow(/expected 16 bytes but received 8 bytes/);
  });
});
