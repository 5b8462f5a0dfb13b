// The bench-only C++ lookup (native/bench/table_get.cc) against the TS table it is compared
// with in bench/micro/table.bench.js: same answers on the same memory, so the benchmark
// compares two implementations of one thing. The TS table is the oracle.
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { Fingerprinter } from '../../src/shared-memory/fingerprint.js';
import { SharedTable, TableEntry } from '../../src/shared-memory/table.js';

const require = createRequire(import.meta.url);
const native = require('../../build/Release/tether_table_bench.node') as {
  tableGet(words: Int32Array, k0: number, k1: number, k2: number, nowSec: number, out: Int32Array): boolean;
};
const NOW = 1_800_000_000;

describe('C++ table lookup (bench-only) vs the TS table', () => {
  it('agrees on hits, misses, expired entries, tags and evicted keys', () => {
    const t = SharedTable.create(1024);
    const words = new Int32Array(t.buffer);
    const fp = new Fingerprinter(new Uint8Array(16).fill(1));
    const out = new TableEntry();
    const nout = new Int32Array(7);
    // Past capacity, so some keys were evicted; a third expire at NOW + 10.
    for (let i = 0; i < 3000; i++) {
      const k = fp.ofString(`k${i}`);
      t.put(k[0]!, k[1]!, k[2]!, i, i & 0xff, Int32Array.of(i, -i, i * 3, 7), NOW + (i % 3 === 0 ? 10 : 1000), NOW);
    }
    let hits = 0;
    for (const now of [NOW, NOW + 10]) {
      for (let i = 0; i < 3500; i++) {
        const k = fp.ofString(`k${i}`);
        const a = t.get(k[0]!, k[1]!, k[2]!, now, out);
        const b = native.tableGet(words, k[0]!, k[1]!, k[2]!, now, nout);
        expect(b, `k${i} at ${now}`).toBe(a);
        if (a) {
          hits++;
          expect([...nout]).toEqual([out.value, out.flags, out.expiresAt | 0, ...out.tag]);
        }
      }
    }
    expect(hits).toBeGreaterThan(2000);
  });

  it('refuses memory that is not a table', () => {
    expect(() => native.tableGet(new Int32Array(8), 1, 2, 3, NOW, new Int32Array(7))).toThrow(/shorter than its header/);
    expect(() => native.tableGet(new Int32Array(64), 1, 2, 3, NOW, new Int32Array(7))).toThrow(/does not match its header/);
    expect(() => native.tableGet(new Int32Array(64), 1, 2, 3, NOW, new Int32Array(3))).toThrow(/tableGet\(words/);
  });
});
