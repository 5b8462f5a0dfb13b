// Consistent hashing on a ketama-style ring: each backend owns POINTS_PER_WEIGHT points per unit
// of weight, placed by hashing "<id>#<k>"; a key goes to the owner of the first point at or
// after its hash. Chosen over Maglev because removing (or losing) a backend moves exactly the
// keys it owned and nothing else, and "walk to the next distinct up owner" gives every key a
// deterministic fallback that equals the answer the ring would give without that backend, so a
// backend that goes down and comes back does not reshuffle anyone else. Lookup is a binary search
// over a Uint32Array (~16 steps at the cap), which is cheap next to proxying a request.

import type { Balancer, BalancerDeps, BackendSlot, PickContext } from './types.js';
import { validateBackends } from './types.js';
import { WeightedRoundRobinBalancer } from './weighted-round-robin.js';

/** Points per unit of weight (ketama's figure): enough for a few percent of imbalance. */
export const POINTS_PER_WEIGHT = 160;
/**
 * Ring size cap (512 KiB per ring with 4-byte hashes and 4-byte owners). Below it (total weight
 * ≤ 409) a backend's points depend only on its own ID and weight; above it every backend's point
 * count is scaled down by the same factor (at least 1 point each), so a change in total weight
 * also moves the keys of the points that appear or disappear.
 */
export const MAX_RING_POINTS = 1 << 16;

/**
 * 32-bit FNV-1a over the string's UTF-16 code units, then murmur3's fmix32 finaliser so that
 * keys differing in one character (IPs, sequential IDs) land far apart on the ring.
 * Deterministic across processes and Node versions: the ring must agree on every worker and node.
 */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class ConsistentHashBalancer implements Balancer {
  readonly kind = 'consistent-hash' as const;
  /** Sorted point hashes. */
  private readonly points: Uint32Array;
  /** owners[i] = backend index owning points[i]. */
  private readonly owners: Int32Array;
  /** Distinct backends on the ring (weight > 0): the walk stops once it has seen them all. */
  private readonly ownersOnRing: number;
  /** seen[b] === epoch ⇔ backend b was already rejected during the current walk. */
  private readonly seen: Uint32Array;
  private epoch = 0;
  private readonly deps: BalancerDeps;
  /** Used when the request has no hash key. Same weights as the ring, so weight 0 is never picked either way. */
  private readonly fallback: WeightedRoundRobinBalancer;

  constructor(backends: readonly BackendSlot[], deps: BalancerDeps) {
    validateBackends(backends);
    this.deps = deps;
    this.fallback = new WeightedRoundRobinBalancer(backends, deps);
    this.seen = new Uint32Array(backends.length);

    let totalWeight = 0;
    let ownersOnRing = 0;
    for (const b of backends) {
      totalWeight += b.weight;
      if (b.weight > 0) ownersOnRing++;
    }
    this.ownersOnRing = ownersOnRing;
    const scale = totalWeight === 0 ? 0 : Math.min(POINTS_PER_WEIGHT, MAX_RING_POINTS / totalWeight);

    // Ties between equal point hashes are broken by ID order, not list order, so the ring
    // depends only on the (id, weight) set. Key = hash · 2^16 + rank fits a double exactly.
    const rank = new Int32Array(backends.length);
    const byId = backends.map((b, i) => ({ id: b.id, i })).sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
    byId.forEach((entry, r) => {
      rank[entry.i] = r;
    });
    const indexOfRank = Int32Array.from(byId, (entry) => entry.i);

    const counts = backends.map((b) => (b.weight === 0 ? 0 : Math.max(1, Math.round(b.weight * scale))));
    const size = counts.reduce((a, c) => a + c, 0);
    const keys = new Float64Array(size);
    let at = 0;
    backends.forEach((b, i) => {
      const count = counts[i] ?? 0;
      for (let k = 0; k < count; k++) keys[at++] = hash32(`${b.id}#${k}`) * 65536 + rank[i]!;
    });
    keys.sort();

    this.points = new Uint32Array(size);
    this.owners = new Int32Array(size);
    for (let p = 0; p < size; p++) {
      const key = keys[p]!;
      const r = key % 65536;
      this.points[p] = (key - r) / 65536;
      this.owners[p] = indexOfRank[r]!;
    }
  }

  /** Number of points on the ring (for tests and metrics). */
  get ringSize(): number {
    return this.points.length;
  }

  /**
   * Owner of the first point at or after hash32(ctx.hashKey), or, if that backend is down or
   * excluded, the next distinct up backend clockwise. No key (absent or '') → smooth weighted
   * round robin. -1 when no backend with weight > 0 is up and not excluded.
   */
  pick(ctx: PickContext, exclude: number): number {
    const key = ctx.hashKey;
    if (key === undefined || key.length === 0) return this.fallback.pick(ctx, exclude);
    const points = this.points;
    const len = points.length;
    if (len === 0) return -1;

    // First point with hash ≥ h (lower bound); past the end wraps to 0.
    const h = hash32(key);
    let lo = 0;
    let hi = len;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    let p = lo === len ? 0 : lo;

    const owners = this.owners;
    const first = owners[p]!;
    if (first !== exclude && this.deps.isUp(first)) return first;

    // Walk clockwise, asking each distinct backend once; stop when all have been asked.
    let epoch = this.epoch + 1;
    if (epoch > 0xffffffff) {
      this.seen.fill(0);
      epoch = 1;
    }
    this.epoch = epoch;
    const seen = this.seen;
    seen[first] = epoch;
    let asked = 1;
    for (let step = 1; step < len && asked < this.ownersOnRing; step++) {
      if (++p === len) p = 0;
      const owner = owners[p]!;
      if (seen[owner] === epoch) continue;
      seen[owner] = epoch;
      asked++;
      if (owner !== exclude && this.deps.isUp(owner)) return owner;
    }
    return -1;
  }
}
