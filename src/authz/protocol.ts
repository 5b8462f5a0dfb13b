// The pre-shared-key authorization handshake (DESIGN.md "Authorization handshake"): message
// shapes and the crypto every party shares — balancer (src/authz/balancer.ts), terminal SDK
// (terminal.ts) and server verifier (server.ts). HMACs are passed in, so the balancer uses the
// native addon and the SDKs node:crypto; both are checked against each other in tests.
//
//   T → B  POST <path>/hello  {user, nT}                       nT: 16 random bytes
//   B → T  200                {user, nT, nB}                   nB: stateless challenge (below)
//   T → B  POST <path>/proof  {user, nT, nB, proof}            proof = proofMac(K_T, user, nT, nB)
//   B → S  control frame      {type:'grant', f, box}           box = seal(K_S, f, serverBoxInfo(pool, S), grant)
//   B → T  200                {f, box}                         box = seal(K_T, f, terminalBoxInfo(), grant)
//   T → S  TLS, first line    "TETHER-CODE <base64url code>\r\n"
//
// Bodies are JSON (byte fields base64url, no padding) or msgpack (byte fields as bin) by the
// request's content-type; the answer uses the same.
//
// nB, 56 bytes:  issuedAt ms (8, big-endian) | random (16) | HMAC(secret, CHALLENGE_DOMAIN |
// issuedAt | random | len(user) u16 | user | nT) (32). Any worker or node holding the secret can
// check it; none stores it. A proof is accepted once per nB (the balancer remembers used nB for
// the window), so a replayed proof is refused.
//
// Sealed box: nonce (12) | AES-256-GCM ciphertext | tag (16); key = HKDF-SHA256(K, salt f, info),
// additional data = the info string, so a box for one role or server opens for no other.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { takeRandom } from './random-pool.js';
import { pack, unpack } from 'msgpackr';
import { parseNamedKeys } from '../config/named-keys.js';

export const NONCE_T_BYTES = 16;
export const CHALLENGE_BYTES = 56;
export const PROOF_BYTES = 32;
export const CODE_BYTES = 32;
export const SALT_BYTES = 16;
export const TERMINAL_KEY_BYTES = 32;
/** Default: challenges, grants and codes live this long. */
export const DEFAULT_WINDOW_MS = 30_000;
/** The first line a terminal sends a server after the TLS handshake: `TETHER-CODE <code>\r\n`. */
export const CODE_LINE_PREFIX = 'TETHER-CODE ';

const CHALLENGE_DOMAIN = Buffer.from('tether-authz-challenge-v1');
const PROOF_DOMAIN = Buffer.from('tether-authz-proof-v1');
const USER = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;

export type Sign = (key: Uint8Array, data: Uint8Array) => Uint8Array;
export type Verify = (key: Uint8Array, data: Uint8Array, mac: Uint8Array) => boolean;

/** What the terminal learns from a grant (sealed to it). */
export interface TerminalGrant {
  user: string;
  nT: Uint8Array;
  nB: Uint8Array;
  code: Uint8Array;
  server: { id: string; pool: string; address: string; port: number };
  /** ms since the Unix epoch: the server refuses the code after this. */
  expiresAt: number;
}

/** What the server learns from a grant (sealed to it). */
export interface ServerGrant {
  server: string;
  pool: string;
  user: string;
  code: Uint8Array;
  /** The terminal's IP address as the balancer saw it: the code is accepted only from there. */
  terminal: string;
  issuedAt: number;
  expiresAt: number;
}

export function isUserId(v: unknown): v is string {
  return typeof v === 'string' && USER.test(v);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function challengeInput(issuedAt: Buffer, random: Uint8Array, user: string, nT: Uint8Array): Buffer {
  const u = Buffer.from(user, 'utf8');
  return Buffer.concat([CHALLENGE_DOMAIN, issuedAt, random, u16(u.length), u, nT]);
}

/** A fresh stateless challenge for (user, nT). */
export function mintChallenge(secret: Uint8Array, user: string, nT: Uint8Array, now: number, sign: Sign): Buffer {
  const issuedAt = Buffer.alloc(8);
  issuedAt.writeBigUInt64BE(BigInt(Math.floor(now)));
  const random = takeRandom(16);
  return Buffer.concat([issuedAt, random, sign(secret, challengeInput(issuedAt, random, user, nT))]);
}

export type ChallengeCheck = { ok: true; issuedAt: number } | { ok: false; why: 'malformed' | 'forged' | 'stale' };

/** Was `nB` minted by a holder of `secret` for (user, nT), within `windowMs` of `now` (either side)? */
export function checkChallenge(secret: Uint8Array, user: string, nT: Uint8Array, nB: Uint8Array, now: number, windowMs: number, verify: Verify): ChallengeCheck {
  if (nB.length !== CHALLENGE_BYTES || nT.length !== NONCE_T_BYTES) return { ok: false, why: 'malformed' };
  const issuedAtBytes = Buffer.from(nB.buffer, nB.byteOffset, 8);
  const random = nB.subarray(8, 24);
  const mac = nB.subarray(24);
  if (!verify(secret, challengeInput(issuedAtBytes, random, user, nT), mac)) return { ok: false, why: 'forged' };
  const issuedAt = Number(issuedAtBytes.readBigUInt64BE());
  if (Math.abs(now - issuedAt) > windowMs) return { ok: false, why: 'stale' };
  return { ok: true, issuedAt };
}

/** The bytes the terminal's proof MACs: domain | len(user) u16 | user | nT | nB. */
export function proofInput(user: string, nT: Uint8Array, nB: Uint8Array): Buffer {
  const u = Buffer.from(user, 'utf8');
  return Buffer.concat([PROOF_DOMAIN, u16(u.length), u, nT, nB]);
}

export function terminalBoxInfo(): string {
  return 'tether-authz-terminal-v1';
}

export function serverBoxInfo(pool: string, server: string): string {
  return `tether-authz-server-v1|${pool}|${server}`;
}

const ONE = Buffer.from([1]);

/**
 * HKDF-SHA256(key, salt, info) → 32 bytes. With `hmac` (the balancer passes the addon's), RFC
 * 5869 by hand — extract, then one expand block — which skips OpenSSL's per-call algorithm
 * lookups; without, node:crypto's hkdfSync (the reference: tests compare the two).
 */
export function deriveKey(key: Uint8Array, salt: Uint8Array, info: string, hmac?: Sign): Buffer {
  if (!hmac) return Buffer.from(hkdfSync('sha256', key, salt, info, 32));
  const prk = hmac(salt, key);
  return Buffer.from(hmac(prk, Buffer.concat([Buffer.from(info, 'latin1'), ONE])));
}

/**
 * AES-256-GCM of `plaintext` under `key` and `nonce`, `aad` authenticated: ciphertext | tag
 * written into `out` at `offset` (the balancer passes the addon's aesGcmSealInto).
 */
export type AeadSealInto = (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, offset: number) => void;

/**
 * nonce | AES-256-GCM(msgpack(value)) | tag under HKDF(key, salt, info), info as additional data.
 * `o.nonce`: 12 fresh random bytes from the caller (one draw for several values); `o.hmac`: see
 * deriveKey; `o.aead`: the cipher in one native call instead of node:crypto's four (the same
 * bytes: tests compare the two).
 */
export function seal(key: Uint8Array, salt: Uint8Array, info: string, value: object, o: { nonce?: Uint8Array; hmac?: Sign; aead?: AeadSealInto } = {}): Buffer {
  const nonce = o.nonce ?? randomBytes(12);
  if (nonce.length !== 12) throw new RangeError(`expected a 12-byte nonce but received ${nonce.length} bytes`);
  const boxKey = deriveKey(key, salt, info, o.hmac);
  const plaintext = pack(value);
  if (o.aead) {
    const box = Buffer.allocUnsafe(12 + plaintext.length + 16);
    box.set(nonce, 0);
    o.aead(boxKey, nonce, Buffer.from(info, 'utf8'), plaintext, box, 12);
    return box;
  }
  const c = createCipheriv('aes-256-gcm', boxKey, nonce);
  c.setAAD(Buffer.from(info));
  const body = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([nonce, body, c.getAuthTag()]);
}

/** Opens a box from `seal`; null when it does not open (wrong key, salt, info, or tampered). */
export function open(key: Uint8Array, salt: Uint8Array, info: string, box: Uint8Array): unknown {
  if (box.length < 12 + 16 + 1) return null;
  try {
    const d = createDecipheriv('aes-256-gcm', deriveKey(key, salt, info), box.subarray(0, 12));
    d.setAAD(Buffer.from(info));
    d.setAuthTag(box.subarray(box.length - 16));
    return unpack(Buffer.concat([d.update(box.subarray(12, box.length - 16)), d.final()]));
  } catch {
    return null;
  }
}

export function b64u(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64url');
}

/** Strict base64url (no padding, canonical) of exactly `len` bytes, else null. */
export function fromB64u(text: unknown, len: number): Buffer | null {
  if (typeof text !== 'string' || text.length !== Math.ceil((len * 4) / 3) || !/^[A-Za-z0-9_-]*$/.test(text)) return null;
  const b = Buffer.from(text, 'base64url');
  return b.length === len && b.toString('base64url') === text ? b : null;
}

/**
 * Terminal key file: `<userId> <64 hex>` per line, `#` comments. Returns the keys or throws
 * naming every bad line (the balancer keeps its old keys when a reload fails).
 */
export function parseTerminalKeys(text: string, source: string): Map<string, Buffer> {
  return parseNamedKeys(text, source, { what: 'user id', name: USER, nameHelp: "1-128 letters, digits, '.', '_', '@', '-'" });
}
