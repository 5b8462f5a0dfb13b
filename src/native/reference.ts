// JS reference implementation of the native token and HMAC API on node:crypto: the oracle the
// addon is tested against. Written for clarity, not speed; same checks, same order, same statuses.
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import {
  HMAC_SHA256_BYTES,
  TOKEN_KEY_BYTES,
  TOKEN_MAX_CHARS,
  TOKEN_NONCE_BYTES,
  TOKEN_TAG_BYTES,
  TOKEN_MAX_PAYLOAD_BYTES,
  TOKEN_VERSION,
  TokenStatus,
  checkBytes,
  checkNonce,
  checkSealArgs,
  noSealKeyError,
  packKeyRing,
  typeError,
  type KeyRingEntry,
  type OpenResult,
  type TokenCrypto,
} from './index.js';

const HEADER_BYTES = 2;
const MIN_RAW_BYTES = HEADER_BYTES + TOKEN_NONCE_BYTES + TOKEN_TAG_BYTES;
const MAX_RAW_BYTES = MIN_RAW_BYTES + TOKEN_MAX_PAYLOAD_BYTES;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Strict base64url: alphabet only, no padding, and the one canonical spelling of its bytes. */
export function decodeBase64UrlStrict(text: string): Buffer | null {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64url');
  // Node ignores non-zero trailing bits; re-encoding exposes them.
  return bytes.toString('base64url') === text ? bytes : null;
}

function result(status: TokenStatus, keyId = -1): OpenResult {
  return { status, keyId, payload: null };
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
    return this.sealWithNonce(payload, aad, randomBytes(TOKEN_NONCE_BYTES));
  }

  /** Known-answer tests only: a nonce must never repeat under one key. */
  sealWithNonce(payload: Uint8Array, aad: Uint8Array, nonce: Uint8Array): string {
    checkSealArgs(payload, aad);
    checkNonce(nonce);
    const key = this.#keys.get(this.#sealKeyId);
    if (key === undefined) throw noSealKeyError();
    const header = Buffer.from([TOKEN_VERSION, this.#sealKeyId]);
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TOKEN_TAG_BYTES });
    cipher.setAAD(Buffer.concat([header, aad]));
    const ciphertext = Buffer.concat([cipher.update(payload), cipher.final()]);
    return Buffer.concat([header, nonce, ciphertext, cipher.getAuthTag()]).toString('base64url');
  }

  open(token: string, aad: Uint8Array): OpenResult {
    if (typeof token !== 'string') throw typeError('a string for token', token);
    checkBytes(aad, 'aad');
    if (token.length === 0 || token.length > TOKEN_MAX_CHARS) return result(TokenStatus.Malformed);
    const raw = decodeBase64UrlStrict(token);
    if (raw === null || raw.length === 0) return result(TokenStatus.Malformed);
    if (raw[0] !== TOKEN_VERSION) return result(TokenStatus.BadVersion);
    if (raw.length < MIN_RAW_BYTES || raw.length > MAX_RAW_BYTES) return result(TokenStatus.Malformed);
    const keyId = raw[1]!;
    const key = this.#keys.get(keyId);
    if (key === undefined) return result(TokenStatus.UnknownKey, keyId);
    const nonce = raw.subarray(HEADER_BYTES, HEADER_BYTES + TOKEN_NONCE_BYTES);
    const ciphertext = raw.subarray(HEADER_BYTES + TOKEN_NONCE_BYTES, raw.length - TOKEN_TAG_BYTES);
    const tag = raw.subarray(raw.length - TOKEN_TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TOKEN_TAG_BYTES });
    decipher.setAAD(Buffer.concat([raw.subarray(0, HEADER_BYTES), aad]));
    decipher.setAuthTag(tag);
    try {
      const payload = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
      return { status: TokenStatus.Ok, keyId, payload };
    } catch {
      return result(TokenStatus.AuthFailed, keyId);
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
