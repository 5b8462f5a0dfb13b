// JS reference implementation of the native token and HMAC API on node:crypto: the oracle the
// addon is tested against. Written for clarity, not speed; same checks, same order, same statuses.
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import {
  HMAC_SHA256_BYTES,
  TOKEN_KEY_BYTES,
  TOKEN_MAX_CHARS,
  TOKEN_MAX_PAYLOAD_BYTES,
  TOKEN_SALT_BYTES,
  TOKEN_TAG_BYTES,
  TOKEN_V1_NONCE_BYTES,
  TOKEN_V2_LABEL,
  TOKEN_VERSION,
  TOKEN_VERSION_V1,
  TokenStatus,
  checkBytes,
  checkSalt,
  checkSealArgs,
  noSealKeyError,
  packKeyRing,
  typeError,
  type KeyRingEntry,
  type OpenResult,
  type TokenCrypto,
} from './index.js';

const HEADER_BYTES = 2;
const V1_OVERHEAD = HEADER_BYTES + TOKEN_V1_NONCE_BYTES + TOKEN_TAG_BYTES;
const V2_OVERHEAD = HEADER_BYTES + TOKEN_SALT_BYTES + TOKEN_TAG_BYTES;
const V2_NONCE = Buffer.alloc(12);
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Strict base64url: alphabet only, no padding, and the one canonical spelling of its bytes. */
export function decodeBase64UrlStrict(text: string): Buffer | null {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64url');
  // Node ignores non-zero trailing bits; re-encoding exposes them.
  return bytes.toString('base64url') === text ? bytes : null;
}

/**
 * A v2 token's own key: HKDF-SHA256 (RFC 5869) with the fixed label as salt, the ring key as
 * input key material and info = version | keyId | salt | aad; written out step by step
 * (node's hkdfSync caps info at 1024 bytes, and a pool name may be longer).
 */
export function deriveV2Key(ringKey: Uint8Array, keyId: number, salt: Uint8Array, aad: Uint8Array): Buffer {
  const prk = createHmac('sha256', TOKEN_V2_LABEL).update(ringKey).digest();
  return createHmac('sha256', prk)
    .update(Buffer.from([TOKEN_VERSION, keyId]))
    .update(salt)
    .update(aad)
    .update(Buffer.from([1]))
    .digest();
}

function result(status: TokenStatus, keyId = -1, version = 0): OpenResult {
  return { status, keyId, version, payload: null };
}

export class ReferenceTokenCrypto implements TokenCrypto {
  #keys = new Map<number, Buffer>();
  #sealKeyId = -1;

  setKeyRing(entries: readonly KeyRingEntry[], sealKeyId: number): void {
    const { ids, keys } = packKeyRing(entries, sealKeyId);
    const ring = new Map<number, Buffer>();
    ids.forEach((id, i) => {
      ring.set(id, Buffer.from(keys.subarray(i * TOKEN_KEY_BYTES, (i + 1) * TOKEN_KEY_BYTES)));
    });
    keys.fill(0);
    this.#keys = ring;
    this.#sealKeyId = sealKeyId;
  }

  seal(payload: Uint8Array, aad: Uint8Array): string {
    return this.sealWithSalt(payload, aad, randomBytes(TOKEN_SALT_BYTES));
  }

  /** Known-answer tests only: a salt must never repeat under one key. */
  sealWithSalt(payload: Uint8Array, aad: Uint8Array, salt: Uint8Array): string {
    checkSealArgs(payload, aad);
    checkSalt(salt);
    const key = this.#keys.get(this.#sealKeyId);
    if (key === undefined) throw noSealKeyError();
    const cipher = createCipheriv('aes-256-gcm', deriveV2Key(key, this.#sealKeyId, salt, aad), V2_NONCE, {
      authTagLength: TOKEN_TAG_BYTES,
    });
    const ciphertext = Buffer.concat([cipher.update(payload), cipher.final()]);
    return Buffer.concat([Buffer.from([TOKEN_VERSION, this.#sealKeyId]), salt, ciphertext, cipher.getAuthTag()]).toString('base64url');
  }

  open(token: string, aad: Uint8Array): OpenResult {
    if (typeof token !== 'string') throw typeError('a string for token', token);
    checkBytes(aad, 'aad');
    if (token.length === 0 || token.length > TOKEN_MAX_CHARS) return result(TokenStatus.Malformed);
    const raw = decodeBase64UrlStrict(token);
    if (raw === null || raw.length === 0) return result(TokenStatus.Malformed);
    const version = raw[0]!;
    if (version !== TOKEN_VERSION && version !== TOKEN_VERSION_V1) return result(TokenStatus.BadVersion);
    const overhead = version === TOKEN_VERSION ? V2_OVERHEAD : V1_OVERHEAD;
    if (raw.length < overhead || raw.length > overhead + TOKEN_MAX_PAYLOAD_BYTES) return result(TokenStatus.Malformed, -1, version);
    const keyId = raw[1]!;
    const key = this.#keys.get(keyId);
    if (key === undefined) return result(TokenStatus.UnknownKey, keyId, version);
    const ciphertext = raw.subarray(overhead - TOKEN_TAG_BYTES, raw.length - TOKEN_TAG_BYTES);
    const tag = raw.subarray(raw.length - TOKEN_TAG_BYTES);
    let decipher;
    if (version === TOKEN_VERSION) {
      const salt = raw.subarray(HEADER_BYTES, HEADER_BYTES + TOKEN_SALT_BYTES);
      decipher = createDecipheriv('aes-256-gcm', deriveV2Key(key, keyId, salt, aad), V2_NONCE, { authTagLength: TOKEN_TAG_BYTES });
    } else {
      const nonce = raw.subarray(HEADER_BYTES, HEADER_BYTES + TOKEN_V1_NONCE_BYTES);
      decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TOKEN_TAG_BYTES });
      decipher.setAAD(Buffer.concat([raw.subarray(0, HEADER_BYTES), aad]));
    }
    decipher.setAuthTag(tag);
    try {
      const payload = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
      return { status: TokenStatus.Ok, keyId, version, payload };
    } catch {
      return result(TokenStatus.AuthFailed, keyId, version);
    }
  }
}

export function createReferenceTokenCrypto(): TokenCrypto {
  return new ReferenceTokenCrypto();
}

export function referenceHmacSha256(key: Uint8Array, data: Uint8Array): Buffer {
  checkBytes(key, 'key');
  checkBytes(data, 'data');
  return createHmac('sha256', key).update(data).digest();
}

export function referenceHmacVerify(key: Uint8Array, data: Uint8Array, mac: Uint8Array): boolean {
  checkBytes(mac, 'mac');
  const expected = referenceHmacSha256(key, data);
  return mac.length === HMAC_SHA256_BYTES && timingSafeEqual(expected, mac);
}

/** node:crypto's AES-256-GCM: ciphertext | tag, the oracle for the addon's aesGcmSeal. */
export function referenceAesGcmSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}
