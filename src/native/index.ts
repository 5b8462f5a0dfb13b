// Typed facade over the native addon: validates and explains bad arguments in JS, then calls
// C++ that trusts them. src/native/reference.ts implements the same API on node:crypto.
import { loadNative, type NativeBinding, type NativeTokenCryptoHandle } from './loader.js';

/** Outcome of opening a route token; bad token content is a status, never an exception. */
export enum TokenStatus {
  Ok = 0,
  Malformed = 1,
  BadVersion = 2,
  UnknownKey = 3,
  AuthFailed = 4,
}

export interface KeyRingEntry {
  /** 0..255, carried in clear in the token header. */
  id: number;
  /** 32 bytes (AES-256). */
  key: Uint8Array;
}

export interface OpenResult {
  status: TokenStatus;
  /** The header's key id once it could be read (UnknownKey, AuthFailed, Ok), else -1. */
  keyId: number;
  /** The token's format (1 or 2) once its version byte was read and known, else 0. */
  version: number;
  /** A fresh Buffer owned by the caller when status is Ok, else null. */
  payload: Buffer | null;
}

export interface TokenCrypto {
  /** Replaces the ring; all keys open, `sealKeyId` seals. Throws TypeError/RangeError on bad input. */
  setKeyRing(entries: readonly KeyRingEntry[], sealKeyId: number): void;
  /** Seals at most 255 payload bytes as a v2 token under a fresh random salt; returns it base64url. */
  seal(payload: Uint8Array, aad: Uint8Array): string;
  /** Opens a v1 or v2 token minted with the same `aad`. Throws only on argument types. */
  open(token: string, aad: Uint8Array): OpenResult;
}

/** The format sealed: v2 (a key per token, native/include/tether/token.h). v1 only opens. */
export const TOKEN_VERSION = 2;
export const TOKEN_VERSION_V1 = 1;
export const TOKEN_KEY_BYTES = 32;
/** v2's random per-token salt. */
export const TOKEN_SALT_BYTES = 16;
/** v1's random GCM nonce. */
export const TOKEN_V1_NONCE_BYTES = 12;
export const TOKEN_TAG_BYTES = 16;
/** HKDF-Extract's salt for v2: a fixed label; the per-token salt goes into Expand's info. */
export const TOKEN_V2_LABEL = 'tether route token v2';
export const TOKEN_MAX_PAYLOAD_BYTES = 255;
/** Longer strings are Malformed without being decoded. */
export const TOKEN_MAX_CHARS = 512;
export const HMAC_SHA256_BYTES = 32;

// ---------------------------------------------------------------------------------------------
// Argument checks shared with the reference implementation, so both explain bad input alike.

/** Error codes thrown by this module (stable; mirrored in native/src/addon.cc). */
const NativeErrorCode = {
  InvalidArgType: 'TETHER_ERR_INVALID_ARG_TYPE',
  InvalidArgValue: 'TETHER_ERR_INVALID_ARG_VALUE',
  NoSealKey: 'TETHER_ERR_NO_SEAL_KEY',
  Crypto: 'TETHER_ERR_CRYPTO',
  NativeLoad: 'TETHER_ERR_NATIVE_LOAD',
} as const;

export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof Uint8Array) return `${value.constructor.name} of ${value.length} bytes`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  switch (typeof value) {
    case 'string':
      return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
    case 'number':
    case 'bigint':
    case 'boolean':
      return `${typeof value} ${String(value)}`;
    case 'undefined':
      return 'undefined';
    case 'function':
      return 'a function';
    default:
      return `an instance of ${(value as object).constructor?.name ?? 'Object'}`;
  }
}

export function typeError(expected: string, value: unknown): TypeError {
  return Object.assign(new TypeError(`expected ${expected} but received ${describeValue(value)}`), {
    code: NativeErrorCode.InvalidArgType,
  });
}

export function rangeError(expected: string, received: string): RangeError {
  return Object.assign(new RangeError(`expected ${expected} but received ${received}`), {
    code: NativeErrorCode.InvalidArgValue,
  });
}

export function noSealKeyError(): Error {
  return Object.assign(new Error('no key ring: call setKeyRing() before seal()'), {
    code: NativeErrorCode.NoSealKey,
  });
}

export function checkBytes(value: unknown, name: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw typeError(`a Uint8Array for ${name}`, value);
}

export function checkSealArgs(payload: unknown, aad: unknown): asserts payload is Uint8Array {
  checkBytes(payload, 'payload');
  checkBytes(aad, 'aad');
  if (payload.length > TOKEN_MAX_PAYLOAD_BYTES) {
    throw rangeError(`a payload of at most ${TOKEN_MAX_PAYLOAD_BYTES} bytes`, `${payload.length} bytes`);
  }
}

export function checkSalt(salt: unknown): asserts salt is Uint8Array {
  checkBytes(salt, 'salt');
  if (salt.length !== TOKEN_SALT_BYTES) {
    throw rangeError(`a ${TOKEN_SALT_BYTES}-byte salt`, `${salt.length} bytes`);
  }
}

function isKeyId(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 255;
}

/**
 * Checks a key ring and packs it as the addon takes it: ids (n bytes) and keys (32 n bytes).
 * The caller should zero `keys` once it has been handed over.
 */
export function packKeyRing(entries: unknown, sealKeyId: unknown): { ids: Uint8Array; keys: Uint8Array } {
  if (!Array.isArray(entries)) throw typeError('an array of key ring entries', entries);
  if (typeof sealKeyId !== 'number') throw typeError('a number for sealKeyId', sealKeyId);
  if (!isKeyId(sealKeyId)) throw rangeError('an integer 0..255 for sealKeyId', String(sealKeyId));
  if (entries.length > 256) throw rangeError('at most 256 key ring entries', `${entries.length}`);
  const ids = new Uint8Array(entries.length);
  const keys = new Uint8Array(entries.length * TOKEN_KEY_BYTES);
  const firstIndexOfId = new Map<number, number>();
  entries.forEach((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null) throw typeError(`an object for entries[${i}]`, entry);
    const { id, key } = entry as { id?: unknown; key?: unknown };
    if (typeof id !== 'number') throw typeError(`a number for entries[${i}].id`, id);
    if (!isKeyId(id)) throw rangeError(`an integer 0..255 for entries[${i}].id`, String(id));
    checkBytes(key, `entries[${i}].key`);
    if (key.length !== TOKEN_KEY_BYTES) {
      throw rangeError(`a ${TOKEN_KEY_BYTES}-byte key for entries[${i}].key`, `${key.length} bytes`);
    }
    const first = firstIndexOfId.get(id);
    if (first !== undefined) {
      throw rangeError(`unique key ids`, `id ${id} in entries[${first}] and entries[${i}]`);
    }
    firstIndexOfId.set(id, i);
    ids[i] = id;
    keys.set(key, i * TOKEN_KEY_BYTES);
  });
  if (!firstIndexOfId.has(sealKeyId)) {
    const present = [...firstIndexOfId.keys()].join(', ') || 'none';
    throw rangeError(`sealKeyId to name a key in the ring (ids: ${present})`, String(sealKeyId));
  }
  return { ids, keys };
}

// ---------------------------------------------------------------------------------------------
// Native implementation.

let binding: NativeBinding | undefined;
function native(): NativeBinding {
  return (binding ??= loadNative());
}

const MALFORMED: OpenResult = Object.freeze({ status: TokenStatus.Malformed, keyId: -1, version: 0, payload: null });

/** Route-token crypto on the addon; one key ring per object, objects belong to their thread. */
export class NativeTokenCrypto implements TokenCrypto {
  readonly #handle: NativeTokenCryptoHandle;
  // Decrypted payloads land here, then are copied into the Buffer handed to the caller.
  readonly #out = Buffer.alloc(TOKEN_MAX_PAYLOAD_BYTES);

  constructor() {
    this.#handle = new (native().TokenCrypto)();
  }

  setKeyRing(entries: readonly KeyRingEntry[], sealKeyId: number): void {
    const { ids, keys } = packKeyRing(entries, sealKeyId);
    try {
      this.#handle.setKeyRing(ids, keys, sealKeyId);
    } finally {
      keys.fill(0);
    }
  }

  seal(payload: Uint8Array, aad: Uint8Array): string {
    checkSealArgs(payload, aad);
    return this.#handle.seal(payload, aad);
  }

  /** Known-answer tests only: a salt must never repeat under one key. */
  sealWithSalt(payload: Uint8Array, aad: Uint8Array, salt: Uint8Array): string {
    checkSealArgs(payload, aad);
    checkSalt(salt);
    return this.#handle.sealWithSalt(payload, aad, salt);
  }

  open(token: string, aad: Uint8Array): OpenResult {
    if (typeof token !== 'string') throw typeError('a string for token', token);
    checkBytes(aad, 'aad');
    if (token.length > TOKEN_MAX_CHARS) return MALFORMED;
    const packed = this.#handle.open(token, aad, this.#out);
    const status = (packed & 0xff) as TokenStatus;
    const keyId = ((packed >>> 8) & 0x1ff) - 1;
    const version = (packed >>> 25) & 3;
    if (status !== TokenStatus.Ok) return { status, keyId, version, payload: null };
    const length = (packed >>> 17) & 0xff;
    const payload = Buffer.allocUnsafe(length);
    // A plain loop beats Buffer#copy and TypedArray#set for route payloads (< 80 bytes).
    const out = this.#out;
    for (let i = 0; i < length; i++) payload[i] = out[i]!;
    return { status, keyId, version, payload };
  }
}

/** A native TokenCrypto for the calling thread. Throws TETHER_ERR_NATIVE_LOAD without the addon. */
export function createTokenCrypto(): TokenCrypto {
  return new NativeTokenCrypto();
}

export function hmacSha256(key: Uint8Array, data: Uint8Array): Buffer {
  checkBytes(key, 'key');
  checkBytes(data, 'data');
  const out = Buffer.allocUnsafe(HMAC_SHA256_BYTES);
  native().hmacSha256(key, data, out);
  return out;
}

/** Constant time in the content of `mac`; false (not an error) when `mac` is not 32 bytes. */
export function hmacVerify(key: Uint8Array, data: Uint8Array, mac: Uint8Array): boolean {
  checkBytes(key, 'key');
  checkBytes(data, 'data');
  checkBytes(mac, 'mac');
  return native().hmacVerify(key, data, mac);
}

/** AES-256-GCM tag size, and the largest plaintext or additional data aesGcmSeal takes. */
const AES_GCM_TAG_BYTES = 16;
export const AES_GCM_MAX_INPUT_BYTES = 64 * 1024;

/**
 * AES-256-GCM under `key` (32 bytes) and `nonce` (12 bytes, never twice under one key),
 * authenticating `aad` too: writes ciphertext | tag (plaintext.length + 16 bytes) into `out` at
 * `offset`. The authorization boxes use it (src/authz/protocol.ts); referenceAesGcmSeal is the
 * node:crypto oracle.
 */
export function aesGcmSealInto(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, offset = 0): void {
  checkBytes(key, 'key');
  checkBytes(nonce, 'nonce');
  checkBytes(aad, 'aad');
  checkBytes(plaintext, 'plaintext');
  checkBytes(out, 'out');
  if (!Number.isInteger(offset) || offset < 0 || offset + plaintext.length + AES_GCM_TAG_BYTES > out.length) {
    throw rangeError(`an offset leaving ${plaintext.length + AES_GCM_TAG_BYTES} bytes in out (${out.length} bytes)`, String(offset));
  }
  native().aesGcmSeal(key, nonce, aad, plaintext, out.subarray(offset, offset + plaintext.length + AES_GCM_TAG_BYTES));
}

/**
 * Opens a listening TCP socket with SO_REUSEPORT on a numeric address and returns its fd, for
 * `net.Server.listen({ fd })` (Node 20's net cannot set SO_REUSEPORT). Every worker thread
 * opens its own on the same port; the kernel spreads connections over them. The server adopts
 * the fd; if listen({ fd }) fails, close it with fs.closeSync. Throws an Error with the errno
 * name as `code` (EADDRINUSE, EACCES, EADDRNOTAVAIL, …) naming the call and the address.
 */
export function openReusePortListener(host: string, port: number, backlog = 511): number {
  return native().openReusePortListener(host, port, backlog);
}

/**
 * Sets glibc's M_TRIM_THRESHOLD for the whole process (every thread's heap): how much free
 * memory a heap keeps before giving it back to the kernel. Memory the GC frees in bursts is
 * otherwise returned and faulted in again by the next allocations; it cost the passthrough relay
 * twice the CPU per byte when each read was a fresh 64 KiB allocation
 * (native/include/tether/malloc_tuning.h has the numbers, and what changed since).
 * Returns false where the C library has no such setting; throws a RangeError for anything but a
 * whole number of bytes in 1..2^31-1.
 */
export function setMallocTrimThreshold(bytes: number): boolean {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 0x7fffffff) throw rangeError('a whole number of bytes in 1..2147483647', String(bytes));
  return native().setMallocTrimThreshold(bytes);
}

// ---------------------------------------------------------------------------------------------
// TLS ClientHello parser (native/include/tether/client_hello.h has the wire format and the
// order of decisions; src/native/client-hello-reference.ts is the oracle).

export type ClientHelloStatus = 'ok' | 'incomplete' | 'not_tls' | 'too_large' | 'malformed';

/** A whole, well-formed ClientHello. */
export interface ClientHelloOk {
  status: 'ok';
  /** Bytes of the records that carried the ClientHello; whatever follows must still be forwarded. */
  consumed: number;
  /** The host name asked for, ASCII lower-cased (names are checked: LDH and `_`), or null. */
  sni: string | null;
  /** ALPN protocol names in the client's order, one latin1 character per byte. */
  alpn: string[];
  /** supported_versions in the client's order, GREASE removed (e.g. 0x0304); [] when absent. */
  versions: number[];
  /** The ClientHello's legacy_version (0x0303 from TLS 1.2 and 1.3 clients). */
  legacyVersion: number;
  /** JA4 fingerprint, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`; '' when not asked for. */
  ja4: string;
  /** JA4 with the lists unhashed (`ja4_r`); '' when not asked for. */
  ja4r: string;
}

export interface ClientHelloOptions {
  /** Compute JA4 / JA4_r (default true). Routing needs only SNI and ALPN: false skips two thirds of the work. */
  fingerprint?: boolean;
}

export type ClientHelloResult =
  | ClientHelloOk
  /** Need more bytes: nothing is wrong so far, and fewer bytes than the cap are buffered. */
  | { status: 'incomplete' }
  /** not_tls: the first record cannot be TLS; too_large: it would end past the cap. */
  | { status: 'not_tls' | 'too_large' | 'malformed'; reason: string };

/** The usual cap on the records carrying a ClientHello (post-quantum ones are ~2 KiB). */
export const CLIENT_HELLO_DEFAULT_MAX_BYTES = 16_384;
/** Caps outside this range are refused: one 1-byte record, and the native workspace size. */
const CLIENT_HELLO_MIN_CAP_BYTES = 6;
export const CLIENT_HELLO_MAX_CAP_BYTES = 65_536;

export function checkClientHelloArgs(bytes: unknown, maxBytes: unknown): asserts bytes is Uint8Array {
  checkBytes(bytes, 'ClientHello bytes');
  if (typeof maxBytes !== 'number') throw typeError('a number for maxBytes', maxBytes);
  if (!Number.isInteger(maxBytes) || maxBytes < CLIENT_HELLO_MIN_CAP_BYTES || maxBytes > CLIENT_HELLO_MAX_CAP_BYTES) {
    throw rangeError(
      `an integer ${CLIENT_HELLO_MIN_CAP_BYTES}..${CLIENT_HELLO_MAX_CAP_BYTES} for maxBytes`,
      String(maxBytes),
    );
  }
}

/** The addon's status numbers (client_hello::Status), by value. */
const CLIENT_HELLO_STATUS = ['ok', 'incomplete', 'not_tls', 'too_large', 'malformed'] as const;
const HELLO_OUT_HEADER = 52;
/** The most one result can need in the out buffer: header, host name, ALPN list, versions, ja4_r. */
const HELLO_OUT_BYTES = HELLO_OUT_HEADER + 253 + CLIENT_HELLO_MAX_CAP_BYTES + 254 + (CLIENT_HELLO_MAX_CAP_BYTES / 2) * 5 + 16;
// Per thread, like the addon's own workspace; allocated on first use.
let helloOut: Buffer | undefined;

/**
 * Parses the bytes received so far on a connection, from its first byte: call again with the
 * longer buffer while the status is `incomplete`. Pure: the result depends on the bytes only,
 * and a decided status never changes when bytes are appended.
 */
export function parseClientHello(
  bytes: Uint8Array,
  maxBytes: number = CLIENT_HELLO_DEFAULT_MAX_BYTES,
  options: ClientHelloOptions = {},
): ClientHelloResult {
  checkClientHelloArgs(bytes, maxBytes);
  const out = (helloOut ??= Buffer.allocUnsafe(HELLO_OUT_BYTES));
  const fingerprint = options.fingerprint !== false;
  const code = native().parseClientHello(bytes, maxBytes, out, fingerprint);
  if (code === 1) return { status: 'incomplete' };
  if (code !== 0) {
    const status = CLIENT_HELLO_STATUS[code] as 'not_tls' | 'too_large' | 'malformed';
    return { status, reason: out.toString('latin1', 1, 1 + out[0]!) };
  }
  // Layout written by ParseClientHello in native/src/addon.cc. One latin1 string holds every
  // text field and is sliced up: one call into C++ instead of one per field.
  const sniLength = out[6]!;
  const versionsAt = HELLO_OUT_HEADER + sniLength + out.readUInt32LE(8);
  const ja4rAt = versionsAt + 2 * out[7]!;
  const text = out.toString('latin1', 16, ja4rAt + out.readUInt32LE(12));
  const alpn: string[] = [];
  for (let at = HELLO_OUT_HEADER + sniLength; at < versionsAt; at += 1 + out[at]!) {
    alpn.push(text.slice(at + 1 - 16, at + 1 + out[at]! - 16));
  }
  const versions: number[] = [];
  for (let at = versionsAt; at < ja4rAt; at += 2) versions.push(out[at]! | (out[at + 1]! << 8));
  return {
    status: 'ok',
    consumed: out.readUInt32LE(0),
    sni: sniLength === 0 ? null : text.slice(HELLO_OUT_HEADER - 16, HELLO_OUT_HEADER - 16 + sniLength),
    alpn,
    versions,
    legacyVersion: out[4]! | (out[5]! << 8),
    ja4: fingerprint ? text.slice(0, HELLO_OUT_HEADER - 16) : '',
    ja4r: fingerprint ? text.slice(ja4rAt - 16) : '',
  };
}
