// Keyed 96-bit fingerprints for the shared table's keys (./table.ts): an application session
// id, a token, a nonce. HalfSipHash-2-4 (Aumasson & Bernstein; a PRF on 32-bit words, so it
// runs on plain JS int32 arithmetic) under a per-process random key: a client cannot predict
// fingerprints, so it can neither aim collisions at one bucket nor forge a match.
//
// Output: HalfSipHash-2-4's 64-bit output, then a third 32-bit word squeezed the same way the
// second one is (v1 ^= 0xdd, four rounds, v1 ^ v3). With 10^6 live entries the chance that
// any two of them share a fingerprint is ~10^-17.
//
// Input: a string whose code units are all < 256 (cookie values, ids, tokens: the common
// case) is hashed as its Latin-1 bytes under the first half of the key; any other string as
// its UTF-16LE bytes under the second half, so the two encodings never collide with each
// other by construction. No encoding step: code units are packed straight into words. The
// byte-oriented `halfSipHash` is the reference the tests check this against, and it is
// checked itself against the authors' test vectors. Both run on one HalfSipState.

const C2 = 0x6c796765;
const C3 = 0x74656462;

/** Reads a little-endian u32 from 4 bytes at `i`. */
function le32(b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) | 0;
}

/**
 * HalfSipHash-2-4's state and the steps both hashes below are made of: the one implementation
 * of its round. One instance per hash in progress; not reentrant. `wide` is true for 64-bit
 * (and longer) output, false for 32-bit: it picks the constants the two output sizes differ in.
 */
class HalfSipState {
  #v0 = 0;
  #v1 = 0;
  #v2 = 0;
  #v3 = 0;

  /** Starts a hash under the key words (k0, k1). */
  init(k0: number, k1: number, wide: boolean): void {
    this.#v0 = k0;
    this.#v1 = wide ? k1 ^ 0xee : k1;
    this.#v2 = C2 ^ k0;
    this.#v3 = C3 ^ k1;
  }

  /** Absorbs one little-endian message word (two rounds). */
  absorb(m: number): void {
    this.#v3 ^= m;
    this.#rounds(2);
    this.#v0 ^= m;
  }

  /** Absorbs the last word `b` (message length in the top byte, the 0..3 tail bytes below) and finalises. */
  finish(b: number, wide: boolean): void {
    this.absorb(b);
    this.#v2 ^= wide ? 0xee : 0xff;
    this.#rounds(4);
  }

  /** The current output word: the first one right after `finish`. */
  word(): number {
    return this.#v1 ^ this.#v3;
  }

  /** Squeezes and returns the next output word (v1 ^= 0xdd, four rounds). */
  squeeze(): number {
    this.#v1 ^= 0xdd;
    this.#rounds(4);
    return this.#v1 ^ this.#v3;
  }

  #rounds(n: number): void {
    let v0 = this.#v0;
    let v1 = this.#v1;
    let v2 = this.#v2;
    let v3 = this.#v3;
    for (let i = 0; i < n; i++) {
      v0 = (v0 + v1) | 0;
      v1 = (v1 << 5) | (v1 >>> 27);
      v1 ^= v0;
      v0 = (v0 << 16) | (v0 >>> 16);
      v2 = (v2 + v3) | 0;
      v3 = (v3 << 8) | (v3 >>> 24);
      v3 ^= v2;
      v0 = (v0 + v3) | 0;
      v3 = (v3 << 7) | (v3 >>> 25);
      v3 ^= v0;
      v2 = (v2 + v1) | 0;
      v1 = (v1 << 13) | (v1 >>> 19);
      v1 ^= v2;
      v2 = (v2 << 16) | (v2 >>> 16);
    }
    this.#v0 = v0;
    this.#v1 = v1;
    this.#v2 = v2;
    this.#v3 = v3;
  }
}

/**
 * Reference HalfSipHash-2-4 over bytes: 4 or 8 output bytes (little-endian, as the reference
 * implementation writes them), or 12 (the 8, then one more squeezed word). The test oracle
 * for `Fingerprinter`. It shares the round (HalfSipState) with what it checks, but that round
 * is pinned by the authors' vectors, which this function is tested against; what the oracle
 * checks independently is everything Fingerprinter adds: reading bytes rather than code
 * units, the tail and length word, and which key half each encoding uses.
 */
export function halfSipHash(key: Uint8Array, message: Uint8Array, outBytes: 4 | 8 | 12): Uint8Array {
  if (key.length !== 8) throw new RangeError(`HalfSipHash: expected an 8-byte key but received ${key.length} bytes`);
  const wide = outBytes !== 4;
  const h = new HalfSipState();
  h.init(le32(key, 0), le32(key, 4), wide);
  const end = message.length - (message.length % 4);
  for (let i = 0; i < end; i += 4) h.absorb(le32(message, i));
  let b = (message.length & 0xff) << 24;
  for (let i = message.length - 1; i >= end; i--) b |= message[i]! << (8 * (i - end));
  h.finish(b, wide);
  const out = new Uint8Array(outBytes);
  const view = new DataView(out.buffer);
  view.setInt32(0, h.word(), true);
  for (let word = 1; word < outBytes / 4; word++) view.setInt32(4 * word, h.squeeze(), true);
  return out;
}

/** 96-bit fingerprints of strings under one 16-byte key. One per thread; not reentrant. */
export class Fingerprinter {
  readonly #l0: number;
  readonly #l1: number;
  readonly #u0: number;
  readonly #u1: number;
  /** The last result: three int32 words (also returned by ofString). */
  readonly out = new Int32Array(3);
  readonly #h = new HalfSipState();

  constructor(key: Uint8Array) {
    if (!(key instanceof Uint8Array) || key.length !== 16) {
      throw new RangeError(`fingerprint key: expected 16 bytes but received ${key instanceof Uint8Array ? `${key.length} bytes` : typeof key}`);
    }
    this.#l0 = le32(key, 0);
    this.#l1 = le32(key, 4);
    this.#u0 = le32(key, 8);
    this.#u1 = le32(key, 12);
  }

  /** The fingerprint of `s` into `out` (see the top of this file for the definition). */
  ofString(s: string): Int32Array {
    if (!this.#latin1(s)) this.#utf16(s);
    const h = this.#h;
    const out = this.out;
    out[0] = h.word();
    out[1] = h.squeeze();
    out[2] = h.squeeze();
    return out;
  }

  /** Absorbs `s` as Latin-1 bytes and finalises; false if a code unit is > 255. */
  #latin1(s: string): boolean {
    const h = this.#h;
    h.init(this.#l0, this.#l1, true);
    const n = s.length;
    const whole = n & ~3;
    for (let i = 0; i < whole; i += 4) {
      const c0 = s.charCodeAt(i);
      const c1 = s.charCodeAt(i + 1);
      const c2 = s.charCodeAt(i + 2);
      const c3 = s.charCodeAt(i + 3);
      if ((c0 | c1 | c2 | c3) > 0xff) return false;
      h.absorb(c0 | (c1 << 8) | (c2 << 16) | (c3 << 24));
    }
    let b = (n & 0xff) << 24;
    for (let i = n - 1; i >= whole; i--) {
      const c = s.charCodeAt(i);
      if (c > 0xff) return false;
      b |= c << (8 * (i - whole));
    }
    h.finish(b, true);
    return true;
  }

  /** Absorbs `s` as UTF-16LE bytes and finalises. */
  #utf16(s: string): void {
    const h = this.#h;
    h.init(this.#u0, this.#u1, true);
    const n = s.length;
    const pairs = n & ~1;
    for (let i = 0; i < pairs; i += 2) h.absorb(s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16));
    // Byte length 2n; an odd code unit count leaves 2 bytes for the last word.
    let b = ((2 * n) & 0xff) << 24;
    if (pairs !== n) b |= s.charCodeAt(n - 1);
    h.finish(b, true);
  }
}
