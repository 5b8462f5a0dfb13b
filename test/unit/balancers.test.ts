// Load-balancing algorithms: proportions, health and exclusion, weight 0, and the consistent-hash
// ring's minimal disruption, balance and determinism. Counts only; timing lives in bench/.

import { describe, expect, it } from 'vitest';
import {
  BALANCER_KINDS,
  ConsistentHashBalancer,
  createBalancer,
  hash32,
  MAX_RING_POINTS,
  POINTS_PER_WEIGHT,
} from '../../src/data-plane/balancers/index.js';
import type { BackendSlot, Balancer, BalancerKind, PickContext } from '../../src/data-plane/balancers/index.js';

/** A pool whose health and in-flight counts the test flips directly. */
function pool(weights: number[]) {
  const slots: BackendSlot[] = weights.map((weight, i) => ({ id: `b${i}`, weight }));
  const up = weights.map(() => true);
  const active = weights.map(() => 0);
  const deps = { isUp: (i: number) => up[i] === true, active: (i: number) => active[i] ?? 0 };
  return { slots, up, active, deps };
}

function picks(b: Balancer, count: number, ctx: PickContext = {}, exclude = -1): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(b.pick(ctx, exclude));
  return out;
}

function tally(indices: number[], n: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (const i of indices) if (i >= 0) counts[i] = (counts[i] ?? 0) + 1;
  return counts;
}

const ipKey = (k: number) => `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`;

describe('every kind', () => {
  for (const kind of BALANCER_KINDS) {
    describe(kind, () => {
      // consistent-hash exercises its ring with a key; without one it round-robins (tested below).
      const ctx: PickContext = kind === 'consistent-hash' ? { hashKey: 'client-1' } : {};

      it('reports its kind', () => {
        expect(createBalancer(kind, pool([1]).slots, pool([1]).deps).kind).toBe(kind);
      });

      it('never picks a down backend', () => {
        const p = pool([1, 1, 1, 1]);
        p.up[1] = false;
        p.up[2] = false;
        const b = createBalancer(kind, p.slots, p.deps);
        const got = picks(b, 200, ctx);
        expect(got.every((i) => i === 0 || i === 3)).toBe(true);
      });

      it('returns -1 when every backend is down', () => {
        const p = pool([1, 2, 3]);
        p.up.fill(false);
        expect(picks(createBalancer(kind, p.slots, p.deps), 5, ctx)).toEqual([-1, -1, -1, -1, -1]);
        expect(picks(createBalancer(kind, p.slots, p.deps), 5, {})).toEqual([-1, -1, -1, -1, -1]);
      });

      it('returns -1 for an empty pool', () => {
        const p = pool([]);
        expect(createBalancer(kind, p.slots, p.deps).pick(ctx, -1)).toBe(-1);
      });

      it('never picks the excluded backend', () => {
        const p = pool([1, 1, 1]);
        const b = createBalancer(kind, p.slots, p.deps);
        for (let k = 0; k < 300; k++) {
          const i = b.pick(kind === 'consistent-hash' ? { hashKey: ipKey(k) } : ctx, 1);
          expect(i === 0 || i === 2).toBe(true);
        }
      });

      it('returns -1 when the only backend is excluded, or the only up one is', () => {
        const single = pool([1]);
        expect(createBalancer(kind, single.slots, single.deps).pick(ctx, 0)).toBe(-1);
        const two = pool([1, 1]);
        two.up[0] = false;
        expect(createBalancer(kind, two.slots, two.deps).pick(ctx, 1)).toBe(-1);
      });

      it('recovers a backend once it is up again', () => {
        const p = pool([1, 1]);
        const b = createBalancer(kind, p.slots, p.deps);
        p.up[0] = false;
        expect(picks(b, 10, ctx).every((i) => i === 1)).toBe(true);
        p.up[0] = true;
        p.up[1] = false;
        expect(picks(b, 10, ctx).every((i) => i === 0)).toBe(true);
      });
    });
  }
});

describe('round-robin', () => {
  it('cycles through backends in order', () => {
    const p = pool([1, 1, 1]);
    expect(picks(createBalancer('round-robin', p.slots, p.deps), 7)).toEqual([0, 1, 2, 0, 1, 2, 0]);
  });

  it('stays fair when a backend is down (its turn is not handed to one neighbour)', () => {
    const p = pool([1, 1, 1, 1]);
    p.up[1] = false;
    const got = picks(createBalancer('round-robin', p.slots, p.deps), 300);
    expect(tally(got, 4)).toEqual([100, 0, 100, 100]);
  });

  it('ignores weights, including 0', () => {
    const p = pool([5, 0, 1]);
    expect(tally(picks(createBalancer('round-robin', p.slots, p.deps), 30), 3)).toEqual([10, 10, 10]);
  });

  it('moves on after an excluded backend', () => {
    const p = pool([1, 1, 1]);
    const b = createBalancer('round-robin', p.slots, p.deps);
    expect(b.pick({}, 0)).toBe(1);
    expect(b.pick({}, -1)).toBe(2);
  });
});

describe('weighted (smooth weighted round robin)', () => {
  it('matches nginx on 5:1:1', () => {
    const p = pool([5, 1, 1]);
    expect(picks(createBalancer('weighted', p.slots, p.deps), 7)).toEqual([0, 0, 1, 0, 2, 0, 0]);
  });

  it('gives exact proportions over every full cycle', () => {
    const weights = [7, 3, 1, 4, 10];
    const p = pool(weights);
    const b = createBalancer('weighted', p.slots, p.deps);
    for (let cycle = 0; cycle < 5; cycle++) expect(tally(picks(b, 25), 5)).toEqual(weights);
  });

  it('interleaves: never runs one backend longer than its share needs', () => {
    const p = pool([2, 2, 2, 1]);
    const got = picks(createBalancer('weighted', p.slots, p.deps), 70);
    for (let i = 1; i < got.length; i++) expect(got[i]).not.toBe(got[i - 1]);
  });

  it('never picks weight 0, and returns -1 when all weights are 0', () => {
    const p = pool([0, 3, 0, 1]);
    expect(tally(picks(createBalancer('weighted', p.slots, p.deps), 40), 4)).toEqual([0, 30, 0, 10]);
    const zero = pool([0, 0]);
    expect(createBalancer('weighted', zero.slots, zero.deps).pick({}, -1)).toBe(-1);
  });

  it('keeps the remaining proportions when one is down', () => {
    const p = pool([3, 5, 2]);
    p.up[1] = false;
    expect(tally(picks(createBalancer('weighted', p.slots, p.deps), 50), 3)).toEqual([30, 0, 20]);
  });

  it('keeps the remaining proportions under a permanent exclude', () => {
    const p = pool([3, 5, 2]);
    expect(tally(picks(createBalancer('weighted', p.slots, p.deps), 70, {}, 0), 3)).toEqual([0, 50, 20]);
  });
});

describe('least-connections', () => {
  it('picks the backend with the fewest in-flight requests', () => {
    const p = pool([1, 1, 1]);
    p.active.splice(0, 3, 5, 2, 9);
    const b = createBalancer('least-connections', p.slots, p.deps);
    expect(picks(b, 5)).toEqual([1, 1, 1, 1, 1]);
  });

  it('compares in-flight per unit of weight', () => {
    const p = pool([1, 4]);
    // 2/1 > 6/4: the heavier backend with more connections is the less loaded one.
    p.active[0] = 2;
    p.active[1] = 6;
    expect(createBalancer('least-connections', p.slots, p.deps).pick({}, -1)).toBe(1);
    // 1/1 < 5/4.
    p.active[0] = 1;
    p.active[1] = 5;
    expect(createBalancer('least-connections', p.slots, p.deps).pick({}, -1)).toBe(0);
  });

  it('rotates among ties instead of always taking the first', () => {
    const p = pool([1, 1, 1]);
    expect(picks(createBalancer('least-connections', p.slots, p.deps), 6)).toEqual([0, 1, 2, 0, 1, 2]);
  });

  it('breaks ties by weight (idle pool follows the weights)', () => {
    const p = pool([3, 1]);
    expect(tally(picks(createBalancer('least-connections', p.slots, p.deps), 40), 2)).toEqual([30, 10]);
  });

  it('rotates only among the tied minimum', () => {
    const p = pool([1, 1, 1, 1]);
    p.active.splice(0, 4, 3, 1, 3, 1);
    const got = picks(createBalancer('least-connections', p.slots, p.deps), 10);
    expect(tally(got, 4)).toEqual([0, 5, 0, 5]);
  });

  it('follows live counts as requests start', () => {
    const p = pool([1, 1, 1]);
    const b = createBalancer('least-connections', p.slots, p.deps);
    for (let k = 0; k < 30; k++) {
      const i = b.pick({}, -1);
      p.active[i] = (p.active[i] ?? 0) + 1;
    }
    expect(p.active).toEqual([10, 10, 10]);
  });

  it('never picks weight 0, even with no connections', () => {
    const p = pool([0, 1]);
    p.active[1] = 100;
    expect(picks(createBalancer('least-connections', p.slots, p.deps), 5)).toEqual([1, 1, 1, 1, 1]);
  });
});

describe('consistent-hash', () => {
  const N = 10;
  const KEYS = 10_000;

  function ring(weights: number[], order?: number[]) {
    const p = pool(weights);
    const slots = order ? order.map((i) => p.slots[i]!) : p.slots;
    const up = slots.map(() => true);
    const b = createBalancer('consistent-hash', slots, { isUp: (i) => up[i] === true, active: () => 0 });
    const idOf = (key: string, exclude = -1) => {
      const i = b.pick({ hashKey: key }, exclude);
      return i < 0 ? undefined : slots[i]!.id;
    };
    return { b, slots, up, idOf };
  }

  it('hashes deterministically (pinned values: every worker and node must agree)', () => {
    expect(hash32('')).toBe(hash32(''));
    expect(hash32('10.0.0.1')).toBe(hash32('10.0.0.1'));
    expect(hash32('10.0.0.1')).not.toBe(hash32('10.0.0.2'));
    // FNV-1a over UTF-16 code units + murmur3 fmix32, cross-checked with an independent Python implementation.
    expect([hash32(''), hash32('a'), hash32('10.0.0.1'), hash32('é✓😀')]).toEqual([2872998923, 444641715, 2931590574, 813270677]);
  });

  it('maps the same key to the same backend, across instances and list order', () => {
    const a = ring(new Array(N).fill(1));
    const b = ring(new Array(N).fill(1));
    const shuffled = ring(new Array(N).fill(1), [3, 7, 0, 9, 1, 5, 8, 2, 6, 4]);
    for (let k = 0; k < 2000; k++) {
      const key = ipKey(k);
      const id = a.idOf(key);
      expect(a.idOf(key)).toBe(id);
      expect(b.idOf(key)).toBe(id);
      expect(shuffled.idOf(key)).toBe(id);
    }
  });

  it('spreads 10k keys within ±30% of an even share', () => {
    const r = ring(new Array(N).fill(1));
    const counts = new Map<string, number>();
    for (let k = 0; k < KEYS; k++) {
      const id = r.idOf(ipKey(k))!;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect(counts.size).toBe(N);
    for (const c of counts.values()) {
      expect(c).toBeGreaterThan((KEYS / N) * 0.7);
      expect(c).toBeLessThan((KEYS / N) * 1.3);
    }
  });

  it('spreads keys in proportion to weight', () => {
    const r = ring([1, 2, 4]);
    const counts = [0, 0, 0];
    for (let k = 0; k < KEYS; k++) counts[r.b.pick({ hashKey: `user-${k}` }, -1)]! += 1;
    const share = counts.map((c) => c / KEYS);
    expect(share[0]).toBeGreaterThan((1 / 7) * 0.7);
    expect(share[0]).toBeLessThan((1 / 7) * 1.3);
    expect(share[1]).toBeGreaterThan((2 / 7) * 0.8);
    expect(share[1]).toBeLessThan((2 / 7) * 1.2);
    expect(share[2]).toBeGreaterThan((4 / 7) * 0.85);
    expect(share[2]).toBeLessThan((4 / 7) * 1.15);
  });

  it('removing one of N backends remaps ≈1/N of keys, and only keys it owned', () => {
    const full = ring(new Array(N).fill(1));
    const removed = 'b3';
    const p = pool(new Array(N).fill(1));
    const rest = p.slots.filter((s) => s.id !== removed);
    const smaller = createBalancer('consistent-hash', rest, { isUp: () => true, active: () => 0 });
    let moved = 0;
    for (let k = 0; k < KEYS; k++) {
      const key = ipKey(k);
      const before = full.idOf(key);
      const after = rest[smaller.pick({ hashKey: key }, -1)]!.id;
      if (before !== after) {
        moved++;
        expect(before).toBe(removed);
      }
    }
    expect(moved).toBeGreaterThan(0);
    expect(moved / KEYS).toBeLessThan(2 / N);
  });

  it('adding a backend moves keys only onto the new one', () => {
    const before = ring(new Array(N).fill(1));
    const after = ring(new Array(N + 1).fill(1));
    let moved = 0;
    for (let k = 0; k < KEYS; k++) {
      const key = ipKey(k);
      const a = after.idOf(key);
      if (a !== before.idOf(key)) {
        moved++;
        expect(a).toBe(`b${N}`);
      }
    }
    expect(moved / KEYS).toBeLessThan(2 / (N + 1));
  });

  it('a down backend fails over exactly as if it were removed, and nobody else moves', () => {
    const full = ring(new Array(N).fill(1));
    const baseline = Array.from({ length: KEYS }, (_, k) => full.idOf(ipKey(k)));
    full.up[3] = false;
    const p = pool(new Array(N).fill(1));
    const rest = p.slots.filter((s) => s.id !== 'b3');
    const smaller = createBalancer('consistent-hash', rest, { isUp: () => true, active: () => 0 });
    for (let k = 0; k < KEYS; k++) {
      const key = ipKey(k);
      const id = full.idOf(key);
      expect(id).toBe(rest[smaller.pick({ hashKey: key }, -1)]!.id);
      if (baseline[k] !== 'b3') expect(id).toBe(baseline[k]);
    }
  });

  it('exclude walks to the next distinct backend, deterministically', () => {
    const r = ring(new Array(N).fill(1));
    for (let k = 0; k < 500; k++) {
      const key = ipKey(k);
      const first = r.b.pick({ hashKey: key }, -1);
      const second = r.b.pick({ hashKey: key }, first);
      expect(second).toBeGreaterThanOrEqual(0);
      expect(second).not.toBe(first);
      expect(r.b.pick({ hashKey: key }, first)).toBe(second);
    }
  });

  it('walks past several down backends and ends at -1 when the rest is excluded', () => {
    const r = ring(new Array(N).fill(1));
    for (let i = 0; i < N - 1; i++) r.up[i] = false;
    for (let k = 0; k < 200; k++) expect(r.b.pick({ hashKey: ipKey(k) }, -1)).toBe(N - 1);
    expect(r.b.pick({ hashKey: 'x' }, N - 1)).toBe(-1);
  });

  it('gives weight 0 no points and never picks it', () => {
    const r = ring([1, 0, 1]);
    expect((r.b as ConsistentHashBalancer).ringSize).toBe(2 * POINTS_PER_WEIGHT);
    for (let k = 0; k < 2000; k++) expect(r.b.pick({ hashKey: ipKey(k) }, -1)).not.toBe(1);
    for (let k = 0; k < 20; k++) expect(r.b.pick({}, -1)).not.toBe(1);
    const zero = ring([0, 0]);
    expect(zero.b.pick({ hashKey: 'k' }, -1)).toBe(-1);
  });

  it('caps the ring and still gives every weighted backend a point', () => {
    const weights = new Array(100).fill(1000);
    weights[0] = 1;
    const r = ring(weights);
    const size = (r.b as ConsistentHashBalancer).ringSize;
    expect(size).toBeLessThanOrEqual(MAX_RING_POINTS + 100);
    expect(size).toBeGreaterThan(MAX_RING_POINTS / 2);
    r.up.fill(false);
    r.up[0] = true;
    expect(r.b.pick({ hashKey: 'any' }, -1)).toBe(0);
  });

  it('without a hash key (absent or empty) falls back to weighted round robin', () => {
    const r = ring([1, 1, 2]);
    expect(tally(picks(r.b, 40, {}), 3)).toEqual([10, 10, 20]);
    expect(tally(picks(r.b, 40, { hashKey: '' }), 3)).toEqual([10, 10, 20]);
  });

  it('handles unicode and very long keys', () => {
    const r = ring(new Array(N).fill(1));
    const long = 'x'.repeat(100_000);
    expect(r.idOf(long)).toBe(r.idOf(long));
    expect(r.idOf('é✓😀')).toBe(r.idOf('é✓😀'));
  });
});

describe('createBalancer input checks', () => {
  const deps = { isUp: () => true, active: () => 0 };
  const bad: [string, unknown][] = [
    ['negative weight', [{ id: 'a', weight: -1 }]],
    ['fractional weight', [{ id: 'a', weight: 1.5 }]],
    ['NaN weight', [{ id: 'a', weight: Number.NaN }]],
    ['empty id', [{ id: '', weight: 1 }]],
    ['duplicate id', [{ id: 'a', weight: 1 }, { id: 'a', weight: 2 }]],
    ['not an array', { id: 'a', weight: 1 }],
    ['null slot', [null]],
  ];
  for (const [what, backends] of bad) {
    it(`rejects ${what}`, () => {
      for (const kind of BALANCER_KINDS) {
        expect(() => createBalancer(kind, backends as BackendSlot[], deps)).toThrow(/expected/);
      }
    });
  }

  it('rejects an unknown kind', () => {
    expect(() => createBalancer('random' as BalancerKind, [], deps)).toThrow(/expected one of/);
  });
});
