// Route tokens: what a sticky token says (payload codec), what it is bound to (pool + mode AAD),
// and the policy around the crypto (key retirement, max age, clock skew). Format: DESIGN.md.
import { TokenStatus, checkBytes, rangeError, typeError, type TokenCrypto } from '../native/index.js';
import type { RingKey } from '../protocol/key-ring.js';

// Payload v1, sealed inside the token (src/native, native/include/tether/token.h):
//
//    0       1                  5                     13       14              14+n
//   +-------+------------------+---------------------+--------+---------------+
//   | flags | issuedAt (u32 BE, | bindingTag (8 bytes, | idLen  | backendId     |
//   |       |  unix seconds)   |  all zero = unbound) | = n    | UTF-8, 1..64  |
//   +-------+------------------+---------------------+--------+---------------+
//
// Decoding is strict: exact total length, idLen 1..64, well-formed UTF-8 (a BOM is kept, not
// stripped), so one backend ID has exactly one payload.

const BINDING_TAG_BYTES = 8;
const MAX_BACKEND_ID_BYTES = 64;
const FIXED_BYTES = 1 + 4 + BINDING_TAG_BYTES + 1;
const ID_LENGTH_OFFSET = FIXED_BYTES - 1;
const UNBOUND = Buffer.alloc(BINDING_TAG_BYTES);

export interface RouteTokenClaims {
  backendId: string;
  /** Unix seconds. */
  issuedAt: number;
  flags: number;
  /** 8 bytes; all zero means the token is not bound to a terminal. */
  bindingTag: Buffer;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function utf8Exact(text: string): Buffer | null {
  const bytes = Buffer.from(text, 'utf8');
  // Lone surrogates become U+FFFD on the way in; refuse rather than alter the ID.
  return bytes.toString('utf8') === text ? bytes : null;
}

function isUint(value: unknown, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= max;
}

export function encodePayload(c: RouteTokenClaims): Buffer {
  if (typeof c !== 'object' || c === null) throw typeError('an object for claims', c);
  if (typeof c.backendId !== 'string') throw typeError('a string for backendId', c.backendId);
  const id = utf8Exact(c.backendId);
  if (id === null) throw rangeError('a well-formed Unicode backendId', 'a string with a lone surrogate');
  if (id.length < 1 || id.length > MAX_BACKEND_ID_BYTES) {
    throw rangeError(`a backendId of 1..${MAX_BACKEND_ID_BYTES} UTF-8 bytes`, `${id.length} bytes`);
  }
  if (!isUint(c.issuedAt, 0xffff_ffff)) throw rangeError('an integer 0..2^32-1 for issuedAt', String(c.issuedAt));
  if (!isUint(c.flags, 0xff)) throw rangeError('an integer 0..255 for flags', String(c.flags));
  checkBytes(c.bindingTag, 'bindingTag');
  if (c.bindingTag.length !== BINDING_TAG_BYTES) {
    throw rangeError(`a ${BINDING_TAG_BYTES}-byte bindingTag`, `${c.bindingTag.length} bytes`);
  }
  const out = Buffer.allocUnsafe(FIXED_BYTES + id.length);
  out[0] = c.flags;
  out.writeUInt32BE(c.issuedAt, 1);
  out.set(c.bindingTag, 5);
  out[ID_LENGTH_OFFSET] = id.length;
  out.set(id, FIXED_BYTES);
  return out;
}

export function decodePayload(b: Uint8Array): RouteTokenClaims | null {
  if (b.length < FIXED_BYTES + 1) return null;
  const idLength = b[ID_LENGTH_OFFSET]!;
  if (idLength < 1 || idLength > MAX_BACKEND_ID_BYTES || b.length !== FIXED_BYTES + idLength) return null;
  let backendId: string;
  try {
    backendId = strictUtf8.decode(b.subarray(FIXED_BYTES));
  } catch {
    return null;
  }
  return {
    backendId,
    issuedAt: ((b[1]! << 24) | (b[2]! << 16) | (b[3]! << 8) | b[4]!) >>> 0,
    flags: b[0]!,
    bindingTag: Buffer.from(b.subarray(5, 5 + BINDING_TAG_BYTES)),
  };
}

/**
 * The additional authenticated data binding a token to one pool and one token mode:
 * u16 BE length | pool UTF-8 | u16 BE length | mode UTF-8, so ("ab","c") and ("a","bc") differ.
 */
export function tokenAad(pool: string, mode: string): Buffer {
  if (typeof pool !== 'string') throw typeError('a string for pool', pool);
  if (typeof mode !== 'string') throw typeError('a string for mode', mode);
  const p = Buffer.from(pool, 'utf8');
  const m = Buffer.from(mode, 'utf8');
  if (p.length > 0xffff) throw rangeError('a pool name of at most 65535 UTF-8 bytes', `${p.length} bytes`);
  if (m.length > 0xffff) throw rangeError('a mode of at most 65535 UTF-8 bytes', `${m.length} bytes`);
  const out = Buffer.allocUnsafe(4 + p.length + m.length);
  out.writeUInt16BE(p.length, 0);
  out.set(p, 2);
  out.writeUInt16BE(m.length, 2 + p.length);
  out.set(m, 4 + p.length);
  return out;
}


type ReadResult =
  | {
      ok: true;
      backendId: string;
      issuedAt: number;
      bindingTag: Buffer;
      flags: number;
      keyId: number;
      /** The token's format: 2, or 1 for a token from before the upgrade (re-issue it as v2). */
      version: number;
    }
  | {
      ok: false;
      reason: 'malformed' | 'unknown_key' | 'retired_key' | 'retired_format' | 'forged' | 'bad_payload' | 'expired' | 'future';
    };

type Failure = Extract<ReadResult, { ok: false }>;
type OkResult = Extract<ReadResult, { ok: true }>;
const fail = (reason: Failure['reason']): Failure => Object.freeze({ ok: false, reason });
const FAILURES = {
  malformed: fail('malformed'),
  unknown_key: fail('unknown_key'),
  retired_key: fail('retired_key'),
  retired_format: fail('retired_format'),
  forged: fail('forged'),
  bad_payload: fail('bad_payload'),
  expired: fail('expired'),
  future: fail('future'),
} as const;

/** Pools × modes come from config, so this only guards against a caller passing request data. */
const MAX_CACHED_AADS = 4096;
/** Opened tokens kept per thread (~200 B each); past this the cache starts over. */
const MAX_CACHED_TOKENS = 65_536;

interface RouteTokensOptions {
  /** Tokens older than this are 'expired'. */
  maxAgeSec: number;
  /** Tokens issued up to this far in the future still read (other nodes' clocks). Default 60. */
  clockSkewSec?: number;
  /** ms epoch clock; default Date.now. */
  now?: () => number;
}

/** Issues and reads route tokens for every pool of one thread, over one TokenCrypto. */
export class RouteTokens {
  readonly #crypto: TokenCrypto;
  #maxAgeSec: number;
  readonly #clockSkewSec: number;
  readonly #now: () => number;
  #retireAt = new Float64Array(256).fill(Infinity);
  #v1OpensUntil = -Infinity;
  #sealKeyId = -1;
  readonly #aads = new Map<string, Map<string, Buffer>>();
  #aadCount = 0;
  /**
   * Tokens that opened, by (pool, mode) AAD and exact token string. Decryption is a pure
   * function of (key ring, token, AAD), so a hit skips it; expiry and key retirement are still
   * checked on every read, and any key-ring change empties the cache. Failures are not cached,
   * so forged tokens cannot fill it.
   */
  #opened = new Map<Buffer, Map<string, OkResult>>();
  #openedCount = 0;

  constructor(crypto: TokenCrypto, opts: RouteTokensOptions) {
    if (typeof opts !== 'object' || opts === null) throw typeError('an options object', opts);
    const { maxAgeSec, clockSkewSec = 60, now = Date.now } = opts;
    if (typeof maxAgeSec !== 'number' || !(maxAgeSec > 0) || !Number.isFinite(maxAgeSec)) {
      throw rangeError('a positive finite number for maxAgeSec', String(maxAgeSec));
    }
    if (typeof clockSkewSec !== 'number' || !(clockSkewSec >= 0) || !Number.isFinite(clockSkewSec)) {
      throw rangeError('a non-negative finite number for clockSkewSec', String(clockSkewSec));
    }
    if (typeof now !== 'function') throw typeError('a function for now', now);
    this.#crypto = crypto;
    this.#maxAgeSec = maxAgeSec;
    this.#clockSkewSec = clockSkewSec;
    this.#now = now;
  }

  /** A reload's new token lifetime: applies to every later read, cached tokens included. */
  setMaxAgeSec(maxAgeSec: number): void {
    if (typeof maxAgeSec !== 'number' || !(maxAgeSec > 0) || !Number.isFinite(maxAgeSec)) {
      throw rangeError('a positive finite number for maxAgeSec', String(maxAgeSec));
    }
    this.#maxAgeSec = maxAgeSec;
  }

  /**
   * All keys open until their retireAt; `sealKeyId` seals and must not be retired already.
   * Format v1 tokens open until `v1OpensUntil` (ms epoch; default never): the upgrade's grace.
   */
  setKeyRing(keys: readonly RingKey[], sealKeyId: number, v1OpensUntil = -Infinity): void {
    if (typeof v1OpensUntil !== 'number' || Number.isNaN(v1OpensUntil)) throw typeError('a number for v1OpensUntil', v1OpensUntil);
    if (!Array.isArray(keys)) throw typeError('an array of ring keys', keys);
    const retireAt = new Float64Array(256).fill(Infinity);
    const now = this.#now();
    keys.forEach((k, i) => {
      const at = k?.retireAt;
      if (at === undefined) return;
      if (typeof at !== 'number' || Number.isNaN(at)) throw typeError(`a number for keys[${i}].retireAt`, at);
      if (k.id === sealKeyId && now >= at) {
        throw rangeError(`an unretired seal key (id ${sealKeyId})`, `retireAt ${new Date(at).toISOString()}`);
      }
      if (Number.isInteger(k.id) && k.id >= 0 && k.id <= 255) retireAt[k.id] = at;
    });
    // Validates ids, lengths, uniqueness and the seal id, and explains what is wrong.
    this.#crypto.setKeyRing(
      keys.map((k) => ({ id: k.id, key: k.key })),
      sealKeyId,
    );
    this.#retireAt = retireAt;
    this.#v1OpensUntil = v1OpensUntil;
    this.#sealKeyId = sealKeyId;
    this.#opened = new Map();
    this.#openedCount = 0;
  }

  /** A token routing (pool, mode) to backendId, issued now. Throws if the seal key has retired. */
  issue(pool: string, mode: string, backendId: string, bindingTag: Uint8Array = UNBOUND, flags = 0): string {
    const now = this.#now();
    if (this.#sealKeyId >= 0 && now >= this.#retireAt[this.#sealKeyId]!) {
      throw Object.assign(new Error(`seal key ${this.#sealKeyId} has retired: load a newer key ring`), {
        code: 'TETHER_ERR_SEAL_KEY_RETIRED',
      });
    }
    const payload = encodePayload({
      backendId,
      issuedAt: Math.floor(now / 1000),
      flags,
      bindingTag: bindingTag as Buffer,
    });
    return this.#crypto.seal(payload, this.#aad(pool, mode));
  }

  /** Never throws on token content: every way a token can be unusable is a reason. */
  read(pool: string, mode: string, token: string): ReadResult {
    const aad = this.#aad(pool, mode);
    const cached = this.#opened.get(aad)?.get(token);
    if (cached !== undefined) return this.#checkTime(cached);
    const result = this.#open(aad, token);
    if (result.ok) {
      if (this.#openedCount >= MAX_CACHED_TOKENS) {
        this.#opened = new Map();
        this.#openedCount = 0;
      }
      let byToken = this.#opened.get(aad);
      if (byToken === undefined) this.#opened.set(aad, (byToken = new Map()));
      byToken.set(token, result);
      this.#openedCount++;
    }
    return result;
  }

  /** The key id new tokens are sealed under (-1 before a ring). */
  get sealKeyId(): number {
    return this.#sealKeyId;
  }

  /** Retirement (of the key, and of format v1) and age, re-checked on every read (cached or not). */
  #checkTime(r: OkResult): ReadResult {
    const now = this.#now();
    if (now >= this.#retireAt[r.keyId]!) return FAILURES.retired_key;
    if (r.version === 1 && now >= this.#v1OpensUntil) return FAILURES.retired_format;
    const nowSec = Math.floor(now / 1000);
    if (r.issuedAt > nowSec + this.#clockSkewSec) return FAILURES.future;
    if (nowSec - r.issuedAt > this.#maxAgeSec) return FAILURES.expired;
    return r;
  }

  #open(aad: Buffer, token: string): ReadResult {
    const opened = this.#crypto.open(token, aad);
    switch (opened.status) {
      case TokenStatus.Ok:
        break;
      case TokenStatus.UnknownKey:
        return FAILURES.unknown_key;
      case TokenStatus.AuthFailed:
        return FAILURES.forged;
      default:
        return FAILURES.malformed;
    }
    const claims = decodePayload(opened.payload!);
    if (claims === null) return FAILURES.bad_payload;
    return this.#checkTime(
      Object.freeze({
        ok: true as const,
        backendId: claims.backendId,
        issuedAt: claims.issuedAt,
        bindingTag: claims.bindingTag,
        flags: claims.flags,
        keyId: opened.keyId,
        version: opened.version,
      }),
    );
  }

  #aad(pool: string, mode: string): Buffer {
    let byMode = this.#aads.get(pool);
    let aad = byMode?.get(mode);
    if (aad !== undefined) return aad;
    aad = tokenAad(pool, mode);
    if (this.#aadCount >= MAX_CACHED_AADS) {
      this.#aads.clear();
      this.#aadCount = 0;
      byMode = undefined;
    }
    if (byMode === undefined) {
      byMode = new Map();
      this.#aads.set(pool, byMode);
    }
    byMode.set(mode, aad);
    this.#aadCount++;
    return aad;
  }
}
