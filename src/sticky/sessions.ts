// Sessions in the shared table (../shared-memory/table.ts), as the request path and the admin
// API use them. One SessionStore per thread over the one table every thread maps.
//
// Entry kinds (low byte of an entry's flags; bits 8-11 are the binding kind, ./binding.ts):
//   LEARNED  learn mode: the application session → the backend that set it (value = backend
//            reference), with the terminal it was issued to when the pool binds sessions;
//   BOUND    prefix mode with binding: the application session → its terminal (routing is by
//            the token in the cookie; this entry keeps a stripped cookie from bypassing the check);
//   REVOKED  refused everywhere until it expires (POST /api/v1/sessions/revoke);
//   USED     authorization bookkeeping: a used challenge, or a count of failed proofs per
//            user or client address in a one-minute window (value = the count, `count()`).
// Bit 4 (SLIDING): the session cookie had no lifetime of its own; its entry is extended on use.
//
// Keys are fingerprints under a key derived per pool and purpose from the process's random
// key, so the same session id in two pools is two entries, and a session id and a token
// never collide.
import { createHmac } from 'node:crypto';
import { Fingerprinter } from '../shared-memory/fingerprint.js';
import { SharedTable, TableEntry } from '../shared-memory/table.js';

export const ENTRY_LEARNED = 1;
export const ENTRY_BOUND = 2;
export const ENTRY_REVOKED = 3;
/** A one-time value already used (an authorization challenge whose proof was accepted). */
const ENTRY_USED = 4;
export const ENTRY_SLIDING = 0x10;
export const ENTRY_KIND_MASK = 0x0f;

/** What a fingerprint is of: an application session id, or a route token string. */
type SessionKeyKind = 'session' | 'token' | 'authz' | 'authz-failures';

/** A backend's 32-bit reference in table entries: FNV-1a of its ID (stable across reloads and nodes). */
export function backendRef(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

export class SessionStore {
  readonly table: SharedTable;
  readonly #key: Uint8Array;
  readonly #fingerprinters = new Map<string, Fingerprinter>();
  readonly entry = new TableEntry();

  constructor(table: SharedTable, processKey: Uint8Array) {
    if (!(processKey instanceof Uint8Array) || processKey.length !== 32) {
      throw new RangeError(`session store: expected a 32-byte process key but received ${processKey instanceof Uint8Array ? processKey.length : typeof processKey} bytes`);
    }
    this.table = table;
    this.#key = processKey;
  }

  /** The fingerprinter for (pool, kind), derived once: HMAC-SHA256(process key, kind|pool)[0..16). */
  fingerprinter(pool: string, kind: SessionKeyKind): Fingerprinter {
    const id = `${kind}|${pool}`;
    let f = this.#fingerprinters.get(id);
    if (f === undefined) {
      f = new Fingerprinter(createHmac('sha256', this.#key).update(id).digest().subarray(0, 16));
      this.#fingerprinters.set(id, f);
    }
    return f;
  }

  /** Looks `value` up; fills `this.entry` and returns true for a live entry. */
  lookup(fp: Fingerprinter, value: string, nowSec: number): boolean {
    const k = fp.ofString(value);
    return this.table.get(k[0]!, k[1]!, k[2]!, nowSec, this.entry);
  }

  put(fp: Fingerprinter, value: string, ref: number, flags: number, tag: Int32Array | null, expiresAt: number, nowSec: number): void {
    const k = fp.ofString(value);
    this.table.put(k[0]!, k[1]!, k[2]!, ref, flags, tag, expiresAt, nowSec);
  }

  /**
   * put, unless the key holds a live REVOKED entry (a revocation is not undone by the backend
   * setting the same session again). One fingerprint for both steps. The table's outcome if it
   * wrote, null if the session is revoked.
   */
  putUnlessRevoked(fp: Fingerprinter, value: string, ref: number, flags: number, tag: Int32Array | null, expiresAt: number, nowSec: number): 'inserted' | 'updated' | 'evicted' | null {
    const k = fp.ofString(value);
    const k0 = k[0]!;
    const k1 = k[1]!;
    const k2 = k[2]!;
    if (this.table.get(k0, k1, k2, nowSec, this.entry) && (this.entry.flags & ENTRY_KIND_MASK) === ENTRY_REVOKED) return null;
    return this.table.put(k0, k1, k2, ref, flags, tag, expiresAt, nowSec);
  }

  /**
   * Records a one-time value (e.g. an authorization challenge) until `expiresAt` (Unix seconds);
   * false when it was already recorded: every worker sees the first use.
   */
  markUsed(fp: Fingerprinter, value: string, expiresAt: number, nowSec: number): boolean {
    const k = fp.ofString(value);
    return this.table.put(k[0]!, k[1]!, k[2]!, 0, ENTRY_USED, null, expiresAt, nowSec) !== 'updated';
  }

  /**
   * Adds `delta` to the count kept for `value` until `windowEnd` (Unix seconds; a new window
   * starts when the last one has expired) and returns the count: one number every worker sees.
   */
  count(fp: Fingerprinter, value: string, delta: number, windowEnd: number, nowSec: number): number {
    const k = fp.ofString(value);
    return this.table.add(k[0]!, k[1]!, k[2]!, delta, ENTRY_USED, windowEnd, nowSec);
  }

  delete(fp: Fingerprinter, value: string): boolean {
    const k = fp.ofString(value);
    return this.table.delete(k[0]!, k[1]!, k[2]!);
  }

  /** The hex fingerprint, for logs: identifies a session without writing its secret value. */
  id(fp: Fingerprinter, value: string): string {
    const k = fp.ofString(value);
    return [k[0]!, k[1]!, k[2]!].map((w) => (w >>> 0).toString(16).padStart(8, '0')).join('');
  }
}
