// The shared session table (src/shared-memory/table.ts): its memory layout (pinned word by
// word, and the 1M-entry size asserted from it), lookups, updates, expiry, sweeping, eviction
// of the oldest when full, and 4 threads writing and reading 1M keys at once.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Fingerprinter } from '../../src/shared-memory/fingerprint.js';
import {
  DEFAULT_TABLE_ENTRIES,
  HEADER_WORDS,
  SLOTS_PER_BUCKET,
  SLOT_WORDS,
  SharedTable,
  TABLE_MAGIC,
  TableEntry,
  tableLayout,
} from '../../src/shared-memory/table.js';

const NOW = 1_800_000_000;
const fp = new Fingerprinter(new Uint8Array(16).fill(7));
const key = (s: string): [number, number, number] => {
  const o = fp.ofString(s);
  return [o[0]!, o[1]!, o[2]!];
};

describe('shared table layout', () => {
  it('fits 1M entries in at most 128 MiB, at most half full', () => {
    const l = tableLayout(DEFAULT_TABLE_ENTRIES);
    expect(DEFAULT_TABLE_ENTRIES).toBe(1_000_000);
    expect(l).toEqual({ capacity: 1_000_000, buckets: 262_144, slots: 2_097_152, bytes: 4 * (16 + 262_144 + 2_097_152 * 12) });
    expect(l.bytes).toBeLessThanOrEqual(128 * 1024 * 1024);
    expect(l.slots).toBeGreaterThanOrEqual(2 * l.capacity);
    expect(() => tableLayout(10)).toThrow(/table size: expected a whole number of entries in 1024\.\.16777216 but received 10/);
    expect(() => tableLayout(1.5e3 + 0.5)).toThrow(/received 1500\.5/);
  });

  it('writes the header and each slot where the layout comment says', () => {
    const t = SharedTable.create(1024);
    const w = new Int32Array(t.buffer);
    expect([...w.subarray(0, 9)]).toEqual([TABLE_MAGIC, 1, 256, 8, 12, 0, 0, 0, 0]);
    expect(t.buffer.byteLength).toBe(4 * (HEADER_WORDS + 256 + 256 * SLOTS_PER_BUCKET * SLOT_WORDS));
    const [k0, k1, k2] = [0x100, 0x200, 0x300]; // bucket 0x100 & 255 = 0
    const tag = Int32Array.of(11, 12, 13, 14);
    expect(t.put(k0, k1, k2, 42, 7, tag, NOW + 60, NOW)).toBe('inserted');
    const slot = HEADER_WORDS + 256; // first slot of bucket 0
    expect([...w.subarray(slot, slot + SLOT_WORDS)]).toEqual([2, k0, k1, k2, NOW + 60, 1, 42, 7, 11, 12, 13, 14]);
    expect(w[5]).toBe(1); // occupied
    expect(w[6]).toBe(1); // stamp counter
    expect(w[HEADER_WORDS]).toBe(0); // bucket 0's lock, released
  });

  it('refuses memory that is not a table of this layout, saying why', () => {
    expect(() => SharedTable.attach(new SharedArrayBuffer(64 * 4))).toThrow(/bad magic/);
    const t = SharedTable.create(1024);
    const copy = new SharedArrayBuffer(t.buffer.byteLength + 4);
    new Int32Array(copy).set(new Int32Array(t.buffer));
    expect(() => SharedTable.attach(copy)).toThrow(/does not match its header \(256 buckets\)/);
    new Int32Array(t.buffer)[4] = 16;
    expect(() => SharedTable.attach(t.buffer)).toThrow(/layout 1\/8\/16 is not this code's 1\/8\/12/);
    expect(() => SharedTable.attach(new ArrayBuffer(8) as unknown as SharedArrayBuffer)).toThrow(/expected a SharedArrayBuffer/);
  });
});

describe('shared table operations', () => {
  it('finds what was put, updates in place, deletes, and treats expired as absent', () => {
    const t = SharedTable.create(1024);
    const other = SharedTable.attach(t.buffer, 2);
    const out = new TableEntry();
    const k = key('session-a');
    expect(other.get(...k, NOW, out)).toBe(false);
    expect(t.put(...k, 5, 1, Int32Array.of(1, 2, 3, 4), NOW + 10, NOW)).toBe('inserted');
    expect(other.get(...k, NOW, out)).toBe(true);
    expect([out.value, out.flags, out.expiresAt, ...out.tag]).toEqual([5, 1, NOW + 10, 1, 2, 3, 4]);
    expect(other.put(...k, 6, 2, null, NOW + 20, NOW)).toBe('updated');
    expect(t.get(...k, NOW, out)).toBe(true);
    expect([out.value, out.flags, ...out.tag]).toEqual([6, 2, 0, 0, 0, 0]);
    expect(t.stats().occupied).toBe(1);
    expect(t.get(...k, NOW + 20, out), 'expired at its expiry second').toBe(false);
    expect(t.get(...k, NOW + 19, out)).toBe(true);
    expect(t.delete(...k)).toBe(true);
    expect(t.delete(...k)).toBe(false);
    expect(t.get(...k, NOW, out)).toBe(false);
    expect(t.stats().occupied).toBe(0);
    expect(() => t.put(...k, 1, 0, null, NOW, NOW)).toThrow(/expiresAt 1800000000 must be after now/);
  });

  it('reuses expired slots and sweeps them, keeping the occupancy count', () => {
    const t = SharedTable.create(1024);
    for (let i = 0; i < 500; i++) t.put(...key(`short-${i}`), i, 0, null, NOW + 5, NOW);
    for (let i = 0; i < 100; i++) t.put(...key(`long-${i}`), i, 0, null, NOW + 500, NOW);
    expect(t.stats().occupied).toBe(600);
    let next = 0;
    for (let n = 0; n < t.buckets; n += 64) next = t.sweep(next, 64, NOW + 5);
    expect(next).toBe(0);
    const s = t.stats();
    expect(s.occupied).toBe(100);
    expect(s.reclaimed).toBe(500);
    const out = new TableEntry();
    for (let i = 0; i < 100; i++) expect(t.get(...key(`long-${i}`), NOW + 5, out)).toBe(true);
  });

  it('when full, evicts the oldest entries and keeps the newest', () => {
    const t = SharedTable.create(1024); // 2048 slots
    const n = 6000;
    for (let i = 0; i < n; i++) t.put(...key(`k${i}`), i, 0, null, NOW + 1000, NOW);
    const s = t.stats();
    expect(s.occupied).toBe(2048);
    expect(s.evictions).toBe(n - 2048);
    const out = new TableEntry();
    // Eviction is the oldest of the key's 16 candidate slots, so the newest entries survive:
    // every one of the last 500 inserts is still there, most of the first 2000 are gone.
    for (let i = n - 500; i < n; i++) expect(t.get(...key(`k${i}`), NOW, out), `k${i}`).toBe(true);
    let oldKept = 0;
    for (let i = 0; i < 2000; i++) if (t.get(...key(`k${i}`), NOW, out)) oldKept++;
    expect(oldKept).toBeLessThan(100);
  });

  it('keeps every one of 1M keys at the default size (no eviction while capacity allows)', () => {
    const t = SharedTable.create(DEFAULT_TABLE_ENTRIES);
    const f = new Fingerprinter(new Uint8Array(16).fill(3));
    for (let i = 0; i < DEFAULT_TABLE_ENTRIES; i++) {
      const o = f.ofString(`s${i}`);
      t.put(o[0]!, o[1]!, o[2]!, i, 0, null, NOW + 60, NOW);
    }
    expect(t.stats()).toMatchObject({ occupied: DEFAULT_TABLE_ENTRIES, evictions: 0 });
    const out = new TableEntry();
    let found = 0;
    for (let i = 0; i < DEFAULT_TABLE_ENTRIES; i++) {
      const o = f.ofString(`s${i}`);
      if (t.get(o[0]!, o[1]!, o[2]!, NOW, out) && out.value === i) found++;
    }
    expect(found).toBe(DEFAULT_TABLE_ENTRIES);
  }, 60_000);
});

describe('shared table under 4 threads', () => {
  it('1M keys written and read concurrently: no torn read, no lost entry, expiry honored', async () => {
    const THREADS = 4;
    const KEYS = 1_000_000;
    const table = SharedTable.create(DEFAULT_TABLE_ENTRIES);
    const keys = new SharedArrayBuffer(KEYS * 3 * 4);
    const k = new Int32Array(keys);
    const f = new Fingerprinter(new Uint8Array(16).fill(9));
    for (let i = 0; i < KEYS; i++) k.set(f.ofString(`stress-${i}`), 3 * i);
    const script = fileURLToPath(new URL('../helpers/table-stress-worker.mjs', import.meta.url));
    const deadline = Date.now() + 3_000;
    const results = await Promise.all(
      Array.from({ length: THREADS }, (_, t) =>
        new Promise<{ reads: number; hits: number; writes: number; torn: unknown[] }>((resolve, reject) => {
          const w = new Worker(script, {
            workerData: { buffer: table.buffer, keys, from: (t * KEYS) / THREADS, to: ((t + 1) * KEYS) / THREADS, owner: t + 1, deadline, nowSec: NOW, expiresAt: NOW + 30, threads: THREADS },
          });
          const kill = setTimeout(() => void w.terminate().then(() => reject(new Error(`stress thread ${t} still running after 60 s`))), 60_000);
          w.once('message', (m) => {
            clearTimeout(kill);
            resolve(m);
          });
          w.once('error', (e) => {
            clearTimeout(kill);
            reject(e);
          });
        }),
      ),
    );
    for (const r of results) {
      expect(r.torn, 'entries read with parts of two writes').toEqual([]);
      expect(r.writes).toBeGreaterThanOrEqual(KEYS / THREADS);
      expect(r.hits).toBeGreaterThan(0);
    }
    expect(table.stats()).toMatchObject({ occupied: KEYS, evictions: 0 });
    const out = new TableEntry();
    let live = 0;
    let expired = 0;
    for (let i = 0; i < KEYS; i++) {
      if (table.get(k[3 * i]!, k[3 * i + 1]!, k[3 * i + 2]!, NOW + 29, out) && out.value === (k[3 * i]! ^ 0x5bd1e995)) live++;
      if (table.get(k[3 * i]!, k[3 * i + 1]!, k[3 * i + 2]!, NOW + 30, out)) expired++;
    }
    expect(live, 'every key found before its expiry').toBe(KEYS);
    expect(expired, 'no key found at its expiry').toBe(0);
  }, 120_000);
});

describe('shared table counters (add)', () => {
  it('adds within a live window, starts a new one after expiry, and is atomic across 4 threads', async () => {
    const t = SharedTable.create(1024);
    const k = key('failures|user|kiosk-2');
    expect(t.add(...k, 1, 4, NOW + 60, NOW)).toBe(1);
    expect(SharedTable.attach(t.buffer, 2).add(...k, 1, 4, NOW + 999, NOW + 1)).toBe(2);
    const out = new TableEntry();
    expect(t.get(...k, NOW + 59, out)).toBe(true);
    expect([out.value, out.flags, out.expiresAt]).toEqual([2, 4, NOW + 60]); // the window keeps its first expiry
    expect(t.add(...k, 1, 4, NOW + 120, NOW + 60)).toBe(1); // expired: a new window
    expect(() => t.add(...k, 1, 4, NOW, NOW)).toThrow(/table add: expiresAt/);

    // Four threads add 1 to the same key 5,000 times each: no increment is lost.
    const url = new URL('../../dist/shared-memory/table.js', import.meta.url).href;
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(${JSON.stringify(url)}).then(({ SharedTable }) => {
        const t = SharedTable.attach(workerData.buffer, workerData.owner);
        for (let i = 0; i < 5000; i++) t.add(...workerData.key, 1, 4, workerData.now + 60, workerData.now);
        parentPort.postMessage('done');
      });`;
    const shared = SharedTable.create(1024);
    const k2 = key('failures|ip|127.0.0.30');
    await Promise.all(
      [2, 3, 4, 5].map(
        (owner) =>
          new Promise<void>((resolve, reject) => {
            const w = new Worker(code, { eval: true, workerData: { buffer: shared.buffer, owner, key: k2, now: NOW } });
            w.once('message', () => void w.terminate().then(() => resolve()));
            w.once('error', reject);
          }),
      ),
    );
    expect(shared.get(...k2, NOW, out)).toBe(true);
    expect(out.value).toBe(20_000);
  });
});
