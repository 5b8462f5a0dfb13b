// Loads the compiled addon (build/Release/tether_native.node) once per thread, and says how to
// build it when it is missing. Callers go through src/native/index.ts, never through this.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { TetherError } from '../errors.js';

/** The raw addon surface (native/src/addon.cc). Arguments are trusted to be checked by the facade. */
export interface NativeTokenCryptoHandle {
  setKeyRing(ids: Uint8Array, keys: Uint8Array, sealKeyId: number): void;
  seal(payload: Uint8Array, aad: Uint8Array): string;
  sealWithSalt(payload: Uint8Array, aad: Uint8Array, salt: Uint8Array): string;
  /** Packed int32: bits 0-7 status, 8-16 keyId + 1 (0: none), 17-24 payload length (in `out`), 25-26 version (0: not read). */
  open(token: string, aad: Uint8Array, out: Uint8Array): number;
}

export interface NativeBinding {
  TokenCrypto: new () => NativeTokenCryptoHandle;
  tokenLimits: { maxPayloadBytes: number; maxTokenChars: number; keySize: number; saltSize: number };
  hmacSha256(key: Uint8Array, data: Uint8Array, out: Uint8Array): void;
  hmacVerify(key: Uint8Array, data: Uint8Array, mac: Uint8Array): boolean;
  aesGcmSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array): void;
  /** A listening SO_REUSEPORT TCP socket's fd (native/src/listen_socket.cc). */
  openReusePortListener(host: string, port: number, backlog: number): number;
  /** glibc's M_TRIM_THRESHOLD (native/src/malloc_tuning.cc); false where there is no such setting. */
  setMallocTrimThreshold(bytes: number): boolean;
  /** Status number; the result's fields in `out` (layout in native/src/addon.cc). maxBytes is 6..65536. */
  parseClientHello(bytes: Uint8Array, maxBytes: number, out: Uint8Array, fingerprint?: boolean): number;
}

/** src/native/ and dist/native/ are both two levels below the package root. */
export const NATIVE_ADDON_PATH = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../build/Release/tether_native.node',
);

const NATIVE_NOT_BUILT_MESSAGE =
  "Tether's native addon is not built: run `npm run build:native` (needs g++, make, python3)";

let binding: NativeBinding | undefined;

/** Loads the addon on first use; module state is per thread, like the addon's own. */
export function loadNative(): NativeBinding {
  if (binding !== undefined) return binding;
  let loaded: unknown;
  try {
    loaded = createRequire(import.meta.url)(NATIVE_ADDON_PATH);
  } catch (cause) {
    throw new TetherError('TETHER_ERR_NATIVE_LOAD', `${NATIVE_NOT_BUILT_MESSAGE} [${NATIVE_ADDON_PATH}]`, { cause });
  }
  if (!isBinding(loaded)) {
    // An addon from an older checkout: same fix, different cause.
    throw new TetherError(
      'TETHER_ERR_NATIVE_LOAD',
      `${NATIVE_NOT_BUILT_MESSAGE} [${NATIVE_ADDON_PATH} is stale: exports are missing]`,
      { cause: new Error(`unexpected exports: ${Object.keys(loaded ?? {}).join(', ')}`) },
    );
  }
  binding = loaded;
  return binding;
}

function isBinding(value: unknown): value is NativeBinding {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.TokenCrypto === 'function' &&
    typeof v.hmacSha256 === 'function' &&
    typeof v.hmacVerify === 'function' &&
    typeof v.aesGcmSeal === 'function' &&
    typeof v.setMallocTrimThreshold === 'function' &&
    typeof v.parseClientHello === 'function' &&
    typeof v.openReusePortListener === 'function' &&
    typeof v.tokenLimits === 'object'
  );
}
