// The shared session table (DESIGN.md "Shared tables"): one fixed-capacity hash table in a
// SharedArrayBuffer that every worker thread and the orchestrator map. Users: learn mode
// (app session → backend), session ↔ terminal bindings, revocations.
//
// Memory layout (Int32 words; the SharedArrayBuffer is exactly `tableLayout(n).bytes`):
//
//   words [0, 16)                 header
//     0 magic 0x54544231 ('TTB1')   1 layout version (1)       2 bucket count (power of 2)
//     3 slots per bucket (8)        4 words per slot (12)      5 occupied slots (Atomics)
//     6 insert stamp counter        7 evictions (full buckets) 8 expired slots reclaimed
//     9 revocations recorded (lets readers skip the revocation lookup while there are none)
//     10..15 reserved (0)
//   words [16, 16 + B)            one writer lock per bucket (0 free, else the holder's id)
//   words [16 + B, …)             B × 8 slots of 12 words:
//     0 seq        seqlock: odd while a writer changes the slot, even (and changed) after
//     1..3 key     96-bit keyed fingerprint (./fingerprint.ts); never read unless 4 != 0
//     4 expiresAt  Unix seconds (u32); 0 = empty slot
//     5 stamp      insert order (u32, wraps) for "evict the oldest"
//     6 value      user value (a backend reference)
//     7 flags      user flags (entry kind, binding kind, subnet bits)
//     8..11 tag    16 user bytes (the binding tag: an address, a prefix or a hash)
//
// Sizing: `capacity` entries get 2 × capacity slots rounded up to a power-of-two bucket count,
// so the table is at most half full at capacity. 1,000,000 entries: 262,144 buckets,
// 2,097,152 slots, 96 MiB + 1 MiB of locks.
//
// Placement: a key may live in either of two buckets (from independent fingerprint words);
// an insert goes to the emptier one ("two choices", which keeps the fullest bucket close to
// the mean). A bucket is eight 48-byte slots, six cache lines, scanned linearly.
//
// Concurrency:
// - Readers never block and never write. A slot whose key words match is read as seq →
//   fields → seq again; an odd or changed seq means a writer was there, and the slot is
//   re-read. seq is read and written with Atomics (which V8 never reorders plain accesses
//   across; x86 keeps loads in order and stores in order); the other fields are plain Int32
//   accesses, which the JS memory model makes tear-free. Measured (bench/micro/table.bench.js):
//   an Atomics.load costs ~8 ns in Node 20, a plain load ~1 ns, and a lookup scans up to 16
//   slots, so only the two seq reads of the matching slot are atomic.
// - Writers (any thread) take the locks of the key's two buckets, lower index first (no
//   deadlock), with a bounded spin. A lock still held after ~0.5 s of spinning belonged to a
//   thread that died mid-write (a write holds it for well under a microsecond) and is taken
//   over; the slot seqlock keeps readers safe either way.
// - Updates in place keep a key in its slot, so a reader sees the old or the new value,
//   never a mix and never a miss of a live key.
// - Expired entries read as absent at once; their slots are reused by inserts and cleared by
//   `sweep` (the orchestrator runs it in slices), which keeps the occupancy count honest.
// - Full: when both buckets have no free or expired slot, the entry with the oldest insert
//   stamp among the 16 candidates is evicted (counted). At half load this is rare; it is
//   what makes the table degrade instead of failing.

export const TABLE_MAGIC = 0x54544231;
const TABLE_VERSION = 1;
export const HEADER_WORDS = 16;
export const SLOTS_PER_BUCKET = 8;
export const SLOT_WORDS = 12;
const TAG_BYTES = 16;
export const MIN_TABLE_ENTRIES = 1024;
export const MAX_TABLE_ENTRIES = 16_777_216;
export const DEFAULT_TABLE_ENTRIES = 1_000_000;

const H_MAGIC = 0;
const H_VERSION = 1;
const H_BUCKETS = 2;
const H_SLOTS_PER_BUCKET = 3;
const H_SLOT_WORDS = 4;
const H_OCCUPIED = 5;
const H_STAMP = 6;
const H_EVICTIONS = 7;
const H_RECLAIMED = 8;
const H_REVOCATIONS = 9;

const S_SEQ = 0;
const S_K0 = 1;
const S_K1 = 2;
const S_K2 = 3;
const S_EXPIRES = 4;
const S_STAMP = 5;
const S_VALUE = 6;
const S_FLAGS = 7;
const S_TAG = 8;

const BUCKET_WORDS = SLOTS_PER_BUCKET * SLOT_WORDS;

/** Spins before a held bucket lock is presumed abandoned (~0.5 s at a few ns per try). */
const LOCK_SPINS = 100_000_000;
/** Re-reads of a slot a writer keeps changing before the reader reports it absent. */
const READ_RETRIES = 1_000;

interface TableLayout {
  capacity: number;
  buckets: number;
  slots: number;
  bytes: number;
}

/** The memory a table for `capacity` entries takes. Throws on a capacity out of range. */
export function tableLayout(capacity: number): TableLayout {
  if (!Number.isInteger(capacity) || capacity < MIN_TABLE_ENTRIES || capacity > MAX_TABLE_ENTRIES) {
    throw new RangeError(`table size: expected a whole number of entries in ${MIN_TABLE_ENTRIES}..${MAX_TABLE_ENTRIES} but received ${capacity}`);
  }
  let buckets = 1;
  while (buckets * SLOTS_PER_BUCKET < 2 * capacity) buckets *= 2;
  const slots = buckets * SLOTS_PER_BUCKET;
  return { capacity, buckets, slots, bytes: 4 * (HEADER_WORDS + buckets + slots * SLOT_WORDS) };
}

/** What `get` fills in; reuse one per caller (no allocation per lookup). */
export class TableEntry {
  value = 0;
  flags = 0;
  expiresAt = 0;
  readonly tag = new Int32Array(TAG_BYTES / 4);
  /** The tag as bytes (a view of `tag`). */
  readonly tagBytes = new Uint8Array(this.tag.buffer);
}

export interface TableStats {
  buckets: number;
  slots: number;
  occupied: number;
  evictions: number;
  reclaimed: number;
}

export class SharedTable {
  readonly buffer: SharedArrayBuffer;
  readonly buckets: number;
  readonly #w: Int32Array;
  readonly #mask: number;
  readonly #lockBase = HEADER_WORDS;
  readonly #slotBase: number;
  /** This thread's lock id (any non-zero value; threads need not differ for correctness). */
  readonly #owner: number;
  /** Where #scan left a bucket's first free (else expired) slot and its live count. */
  #scanFree = -1;
  #scanLive = 0;
  /** Sink for the loads that warm a put's buckets: stored so the compiler keeps the loads. */
  // eslint-disable-next-line no-unused-private-class-members -- written only, by design
  #warm = 0;

  private constructor(buffer: SharedArrayBuffer, owner: number) {
    const w = new Int32Array(buffer);
    if (w.length < HEADER_WORDS || w[H_MAGIC] !== TABLE_MAGIC) throw new Error('not a Tether shared table (bad magic)');
    if (w[H_VERSION] !== TABLE_VERSION || w[H_SLOTS_PER_BUCKET] !== SLOTS_PER_BUCKET || w[H_SLOT_WORDS] !== SLOT_WORDS) {
      throw new Error(`shared table layout ${w[H_VERSION]}/${w[H_SLOTS_PER_BUCKET]}/${w[H_SLOT_WORDS]} is not this code's ${TABLE_VERSION}/${SLOTS_PER_BUCKET}/${SLOT_WORDS}`);
    }
    const buckets = w[H_BUCKETS]!;
    if (buckets < 1 || (buckets & (buckets - 1)) !== 0 || buffer.byteLength !== 4 * (HEADER_WORDS + buckets + buckets * SLOTS_PER_BUCKET * SLOT_WORDS)) {
      throw new Error(`shared table of ${buffer.byteLength} bytes does not match its header (${buckets} buckets)`);
    }
    this.buffer = buffer;
    this.buckets = buckets;
    this.#w = w;
    this.#mask = buckets - 1;
    this.#slotBase = HEADER_WORDS + buckets;
    this.#owner = owner | 0 || 1;
  }

  /** A new, empty table for `capacity` entries. */
  static create(capacity: number): SharedTable {
    const layout = tableLayout(capacity);
    const buffer = new SharedArrayBuffer(layout.bytes);
    const w = new Int32Array(buffer);
    w[H_MAGIC] = TABLE_MAGIC;
    w[H_VERSION] = TABLE_VERSION;
    w[H_BUCKETS] = layout.buckets;
    w[H_SLOTS_PER_BUCKET] = SLOTS_PER_BUCKET;
    w[H_SLOT_WORDS] = SLOT_WORDS;
    return new SharedTable(buffer, 1);
  }

  /** This thread's view of a table another thread created. `owner`: a non-zero id for locks. */
  static attach(buffer: SharedArrayBuffer, owner = 1): SharedTable {
    if (!(buffer instanceof SharedArrayBuffer)) throw new TypeError('shared table: expected a SharedArrayBuffer');
    return new SharedTable(buffer, owner);
  }

  /**
   * Looks up key (k0, k1, k2). On a live entry (expiresAt > nowSec) fills `out` and returns
   * true; otherwise false. Never blocks.
   */
  get(k0: number, k1: number, k2: number, nowSec: number, out: TableEntry): boolean {
    const b1 = k0 & this.#mask;
    const b2 = this.#second(b1, k1);
    return this.#find(b1, k0, k1, k2, nowSec, out) || this.#find(b2, k0, k1, k2, nowSec, out);
  }

  #find(bucket: number, k0: number, k1: number, k2: number, nowSec: number, out: TableEntry): boolean {
    const w = this.#w;
    let s = this.#slotBase + bucket * SLOTS_PER_BUCKET * SLOT_WORDS;
    const end = s + SLOTS_PER_BUCKET * SLOT_WORDS;
    for (; s < end; s += SLOT_WORDS) {
      // Filter with plain loads: a slot that is not ours, or is being rewritten to hold our key,
      // reads as "not ours", which is a correct answer for a lookup racing that insert. An
      // update in place rewrites a key with the same words, so it never hides a live key.
      if (w[s + S_K0] !== k0 || w[s + S_K1] !== k1 || w[s + S_K2] !== k2) continue;
      for (let tries = 0; tries < READ_RETRIES; tries++) {
        const seq = Atomics.load(w, s + S_SEQ);
        if ((seq & 1) !== 0) continue;
        const expires = w[s + S_EXPIRES]! >>> 0;
        const a = w[s + S_K0]!;
        const b = w[s + S_K1]!;
        const c = w[s + S_K2]!;
        const value = w[s + S_VALUE]!;
        const flags = w[s + S_FLAGS]!;
        const t0 = w[s + S_TAG]!;
        const t1 = w[s + S_TAG + 1]!;
        const t2 = w[s + S_TAG + 2]!;
        const t3 = w[s + S_TAG + 3]!;
        if (Atomics.load(w, s + S_SEQ) !== seq) continue;
        if (a !== k0 || b !== k1 || c !== k2 || expires <= nowSec) return false;
        out.value = value;
        out.flags = flags;
        out.expiresAt = expires;
        const tag = out.tag;
        tag[0] = t0;
        tag[1] = t1;
        tag[2] = t2;
        tag[3] = t3;
        return true;
      }
      return false;
    }
    return false;
  }

  /**
   * Inserts or replaces key → (value, flags, tag) until `expiresAt` (Unix seconds, > nowSec).
   * `tag`: 4 words (16 bytes) or null for zeros. Returns 'inserted', 'updated' or 'evicted'
   * (inserted by evicting the oldest entry of a full pair of buckets).
   */
  put(k0: number, k1: number, k2: number, value: number, flags: number, tag: Int32Array | null, expiresAt: number, nowSec: number): 'inserted' | 'updated' | 'evicted' {
    if (!(expiresAt > nowSec) || expiresAt > 0xffff_ffff) throw new RangeError(`table put: expiresAt ${expiresAt} must be after now (${nowSec}) and fit in 32 bits`);
    return this.#store(k0, k1, k2, value, flags, tag, expiresAt, nowSec, false);
  }

  /**
   * A shared counter per key and time window (e.g. failed attempts): adds `delta` to the value
   * of a live entry, keeping its expiry and flags; with no live entry, stores (delta, flags)
   * until `expiresAt`. Returns the value now held. Atomic across threads: the key's bucket
   * locks are held from the read to the write.
   */
  add(k0: number, k1: number, k2: number, delta: number, flags: number, expiresAt: number, nowSec: number): number {
    if (!(expiresAt > nowSec) || expiresAt > 0xffff_ffff) throw new RangeError(`table add: expiresAt ${expiresAt} must be after now (${nowSec}) and fit in 32 bits`);
    this.#store(k0, k1, k2, delta, flags, null, expiresAt, nowSec, true);
    return this.#stored;
  }

  /** The value #store left in its slot (for add). */
  #stored = 0;

  /** put, or with `add` set, add (see both). Validation done by the caller. */
  #store(k0: number, k1: number, k2: number, value: number, flags: number, tag: Int32Array | null, expiresAt: number, nowSec: number, add: boolean): 'inserted' | 'updated' | 'evicted' {
    const w = this.#w;
    const b1 = k0 & this.#mask;
    const b2 = this.#second(b1, k1);
    // Touch every cache line of both buckets before locking: the lock's atomic instruction
    // waits for the loads issued before it, so the twelve DRAM misses overlap instead of
    // coming one bucket after the other (bench/micro/table.bench.js: inserts ~1.5x faster).
    const s1 = this.#slotBase + b1 * BUCKET_WORDS;
    const s2 = this.#slotBase + b2 * BUCKET_WORDS;
    this.#warm =
      w[s1]! ^ w[s1 + 16]! ^ w[s1 + 32]! ^ w[s1 + 48]! ^ w[s1 + 64]! ^ w[s1 + 80]! ^ w[s2]! ^ w[s2 + 16]! ^ w[s2 + 32]! ^ w[s2 + 48]! ^ w[s2 + 64]! ^ w[s2 + 80]!;
    this.#lockPair(b1, b2);
    try {
      // The key's own slot, if it has one (live or expired): update in place. One pass over
      // each bucket also finds its free slot and counts its live entries.
      let slot = this.#scan(b1, k0, k1, k2, nowSec);
      let outcome: 'inserted' | 'updated' | 'evicted' = 'updated';
      if (slot < 0) {
        const free1 = this.#scanFree;
        const live1 = this.#scanLive;
        slot = this.#scan(b2, k0, k1, k2, nowSec);
        if (slot < 0) {
          const free2 = this.#scanFree;
          outcome = 'inserted';
          if (free1 >= 0 && (free2 < 0 || live1 <= this.#scanLive)) slot = free1;
          else if (free2 >= 0) slot = free2;
          else {
            slot = this.#oldest(b1, b2);
            outcome = 'evicted';
            Atomics.add(w, H_EVICTIONS, 1);
          }
          const old = w[slot + S_EXPIRES];
          if (old === 0) Atomics.add(w, H_OCCUPIED, 1);
          else if (outcome !== 'evicted') Atomics.add(w, H_RECLAIMED, 1); // an expired entry's slot
        }
      }
      if (add && outcome === 'updated' && w[slot + S_EXPIRES]! >>> 0 > nowSec) {
        // A live entry: only its value changes.
        const sum = (w[slot + S_VALUE]! + value) | 0;
        const seq = Atomics.load(w, slot + S_SEQ) | 1;
        Atomics.store(w, slot + S_SEQ, seq);
        w[slot + S_VALUE] = sum;
        Atomics.store(w, slot + S_SEQ, seq + 1);
        this.#stored = sum;
        return outcome;
      }
      this.#stored = value | 0;
      const stamp = Atomics.add(w, H_STAMP, 1) + 1;
      // Odd while writing. Set, not incremented: a writer that died mid-write left it odd.
      const seq = Atomics.load(w, slot + S_SEQ) | 1;
      Atomics.store(w, slot + S_SEQ, seq);
      w[slot + S_K0] = k0;
      w[slot + S_K1] = k1;
      w[slot + S_K2] = k2;
      w[slot + S_EXPIRES] = expiresAt | 0;
      w[slot + S_STAMP] = stamp;
      w[slot + S_VALUE] = value | 0;
      w[slot + S_FLAGS] = flags | 0;
      w[slot + S_TAG] = tag ? tag[0]! : 0;
      w[slot + S_TAG + 1] = tag ? tag[1]! : 0;
      w[slot + S_TAG + 2] = tag ? tag[2]! : 0;
      w[slot + S_TAG + 3] = tag ? tag[3]! : 0;
      Atomics.store(w, slot + S_SEQ, seq + 1);
      return outcome;
    } finally {
      this.#unlockPair(b1, b2);
    }
  }

  /**
   * The key's slot in `bucket` (live or expired), else -1, leaving in #scanFree the bucket's
   * first empty slot (else its first expired one, else -1) and in #scanLive its live entries.
   * Lock held.
   */
  #scan(bucket: number, k0: number, k1: number, k2: number, nowSec: number): number {
    const w = this.#w;
    const base = this.#slotBase + bucket * BUCKET_WORDS;
    let empty = -1;
    let expired = -1;
    let live = 0;
    for (let s = base; s < base + BUCKET_WORDS; s += SLOT_WORDS) {
      const e = w[s + S_EXPIRES]! >>> 0;
      if (e === 0) {
        if (empty < 0) empty = s;
        continue;
      }
      if (w[s + S_K0] === k0 && w[s + S_K1] === k1 && w[s + S_K2] === k2) return s;
      if (e > nowSec) live++;
      else if (expired < 0) expired = s;
    }
    this.#scanFree = empty >= 0 ? empty : expired;
    this.#scanLive = live;
    return -1;
  }

  /** Removes the key; true if it had a slot (live or expired). */
  delete(k0: number, k1: number, k2: number): boolean {
    const b1 = k0 & this.#mask;
    const b2 = this.#second(b1, k1);
    this.#lockPair(b1, b2);
    try {
      let slot = this.#scan(b1, k0, k1, k2, 0);
      if (slot < 0) slot = this.#scan(b2, k0, k1, k2, 0);
      if (slot < 0) return false;
      this.#clear(slot);
      return true;
    } finally {
      this.#unlockPair(b1, b2);
    }
  }

  /** The key's second bucket: from its second word, never the same as the first. */
  #second(b1: number, k1: number): number {
    const b2 = k1 & this.#mask;
    return b2 === b1 ? (b1 + 1) & this.#mask : b2;
  }

  /** Locks both buckets of a key, lower index first (so two writers never wait on each other in a cycle). */
  #lockPair(b1: number, b2: number): void {
    this.#lock(b1 < b2 ? b1 : b2);
    this.#lock(b1 < b2 ? b2 : b1);
  }

  #unlockPair(b1: number, b2: number): void {
    this.#unlock(b1);
    this.#unlock(b2);
  }

  /**
   * Clears expired entries in `count` buckets from `fromBucket` on (wrapping); returns the
   * bucket to continue from. The orchestrator calls it in slices so no call is long.
   */
  sweep(fromBucket: number, count: number, nowSec: number): number {
    const w = this.#w;
    let bucket = fromBucket & this.#mask;
    for (let i = 0; i < count; i++) {
      const base = this.#slotBase + bucket * SLOTS_PER_BUCKET * SLOT_WORDS;
      let any = false;
      for (let s = base; s < base + SLOTS_PER_BUCKET * SLOT_WORDS; s += SLOT_WORDS) {
        const e = w[s + S_EXPIRES]! >>> 0;
        if (e !== 0 && e <= nowSec) any = true;
      }
      if (any) {
        this.#lock(bucket);
        try {
          for (let s = base; s < base + SLOTS_PER_BUCKET * SLOT_WORDS; s += SLOT_WORDS) {
            const e = w[s + S_EXPIRES]! >>> 0;
            if (e !== 0 && e <= nowSec) {
              this.#clear(s);
              Atomics.add(w, H_RECLAIMED, 1);
            }
          }
        } finally {
          this.#unlock(bucket);
        }
      }
      bucket = (bucket + 1) & this.#mask;
    }
    return bucket;
  }

  /** Counts a revocation (any thread); `revocations()` is non-zero from then on. */
  noteRevocation(): void {
    Atomics.add(this.#w, H_REVOCATIONS, 1);
  }

  /** Revocations ever recorded: a plain load, cheap enough to test on every request. */
  revocations(): number {
    return this.#w[H_REVOCATIONS]!;
  }

  stats(): TableStats {
    const w = this.#w;
    return {
      buckets: this.buckets,
      slots: this.buckets * SLOTS_PER_BUCKET,
      occupied: Atomics.load(w, H_OCCUPIED),
      evictions: Atomics.load(w, H_EVICTIONS) >>> 0,
      reclaimed: Atomics.load(w, H_RECLAIMED) >>> 0,
    };
  }

  /** The slot with the oldest stamp in two full buckets (stamps wrap: compared as distances). Locks held. */
  #oldest(b1: number, b2: number): number {
    const w = this.#w;
    const now = Atomics.load(w, H_STAMP);
    let best = -1;
    let bestAge = -1;
    for (const bucket of [b1, b2]) {
      const base = this.#slotBase + bucket * SLOTS_PER_BUCKET * SLOT_WORDS;
      for (let s = base; s < base + SLOTS_PER_BUCKET * SLOT_WORDS; s += SLOT_WORDS) {
        const age = (now - w[s + S_STAMP]!) >>> 0;
        if (age > bestAge) {
          bestAge = age;
          best = s;
        }
      }
    }
    return best;
  }

  /** Empties a slot. Lock held. */
  #clear(s: number): void {
    const w = this.#w;
    const seq = Atomics.load(w, s + S_SEQ) | 1;
    Atomics.store(w, s + S_SEQ, seq);
    w[s + S_EXPIRES] = 0;
    w[s + S_K0] = 0;
    w[s + S_K1] = 0;
    w[s + S_K2] = 0;
    Atomics.store(w, s + S_SEQ, seq + 1);
    Atomics.sub(w, H_OCCUPIED, 1);
  }

  #lock(bucket: number): void {
    const w = this.#w;
    const at = this.#lockBase + bucket;
    for (let spins = 0; ; spins++) {
      const held = Atomics.compareExchange(w, at, 0, this.#owner);
      if (held === 0) return;
      if (spins >= LOCK_SPINS) {
        // Abandoned by a thread that died mid-write: take it over.
        if (Atomics.compareExchange(w, at, held, this.#owner) === held) return;
        spins = 0;
      }
    }
  }

  #unlock(bucket: number): void {
    Atomics.store(this.#w, this.#lockBase + bucket, 0);
  }
}
