// Route-token key ring: what the key file says now, plus keys that left it less than
// `graceSec` ago (they keep opening tokens, never sealing). Rebuilt on every (re)load and
// pushed to the workers; workers also check `retireAt` themselves, so a retired key stops
// opening tokens on time even between reloads.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { TetherError } from '../errors.js';
import { parseKeyFile } from '../config/key-file.js';
import type { KeyRing, RingKey } from '../protocol/key-ring.js';

export function ephemeralRing(): KeyRing {
  return { keys: [{ id: 0, key: randomBytes(32) }], sealKeyId: 0, ephemeral: true, v1OpensUntil: 0 };
}

/** The ring read from the key file at start: v1 tokens open for `graceSec` from `now`. */
export function initialRing(file: { keys: { id: number; key: Buffer }[]; sealKeyId: number }, graceSec: number, now: number): KeyRing {
  return { keys: file.keys, sealKeyId: file.sealKeyId, ephemeral: false, v1OpensUntil: now + graceSec * 1000 };
}

export function readKeyFile(path: string): { keys: { id: number; key: Buffer }[]; sealKeyId: number } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new TetherError('TETHER_ERR_KEY_FILE', `cannot read key file ${path}: ${(cause as Error).message}`, { cause });
  }
  return parseKeyFile(text, path);
}

/**
 * The ring after a reload: the new file's keys, plus every previous key the file no longer
 * has, retiring `graceSec` after now (or earlier, if it was already retiring). A key id
 * reused with different bytes retires the old bytes: they can no longer be told apart by id,
 * so tokens sealed under them stop opening at once — returned as a warning.
 */
export function rotate(
  previous: KeyRing,
  next: { keys: { id: number; key: Buffer }[]; sealKeyId: number },
  graceSec: number,
  now: number,
): { ring: KeyRing; warnings: string[] } {
  const warnings: string[] = [];
  const keys: RingKey[] = next.keys.map((k) => ({ id: k.id, key: k.key }));
  const ids = new Set(keys.map((k) => k.id));
  for (const old of previous.keys) {
    const same = next.keys.find((k) => k.id === old.id);
    if (same) {
      if (Buffer.compare(same.key, old.key) !== 0) warnings.push(`key id ${old.id} now has different bytes: tokens sealed under the old key ${old.id} no longer open`);
      continue;
    }
    if (ids.has(old.id)) continue;
    const retireAt = Math.min(old.retireAt ?? Infinity, now + graceSec * 1000);
    if (retireAt > now) keys.push({ id: old.id, key: old.key, retireAt });
  }
  return { ring: { keys, sealKeyId: next.sealKeyId, ephemeral: false, v1OpensUntil: previous.v1OpensUntil }, warnings };
}
