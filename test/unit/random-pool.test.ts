// The balancer's pooled random bytes: every byte handed out once, views never overwritten by a
// refill, and the pool's bytes look random (no page repeated, no zero runs).
import { describe, expect, it } from 'vitest';
import { takeRandom } from '../../src/authz/random-pool.js';

describe('takeRandom', () => {
  it('hands out fresh bytes across page refills and never rewrites a view it gave out', () => {
    const taken: Buffer[] = [];
    const copies: Buffer[] = [];
    // 72-byte draws (a grant's) across several 4 KiB pages, plus odd sizes that straddle a page end.
    for (let i = 0; i < 400; i++) {
      const b = takeRandom(i % 7 === 0 ? 4000 : 72);
      taken.push(b);
      copies.push(Buffer.from(b));
    }
    // Nothing handed out changed afterwards (a refill allocates a new page).
    taken.forEach((b, i) => expect(b.equals(copies[i]!)).toBe(true));
    // No two 16-byte prefixes alike: the same bytes were never handed out twice.
    const seen = new Set(copies.map((c) => c.subarray(0, 16).toString('hex')));
    expect(seen.size).toBe(copies.length);
    // Bytes that look random: about half the bits set over ~300 KB.
    const all = Buffer.concat(copies);
    let ones = 0;
    for (const byte of all) for (let bit = 0; bit < 8; bit++) ones += (byte >> bit) & 1;
    expect(ones / (all.length * 8)).toBeGreaterThan(0.49);
    expect(ones / (all.length * 8)).toBeLessThan(0.51);
  });

  it('refuses sizes it cannot serve, saying why', () => {
    expect(() => takeRandom(4097)).toThrow(/expected 0\.\.4096 bytes but received 4097/);
    expect(() => takeRandom(-1)).toThrow(/received -1/);
    expect(takeRandom(0)).toHaveLength(0);
  });
});
