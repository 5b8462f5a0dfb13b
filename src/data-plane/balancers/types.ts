// The one interface every load-balancing algorithm implements, and the input checks they share.
// Balancers sit on the per-request hot path: `pick` must not allocate.

/** One backend as the balancer sees it: a stable ID and a non-negative integer weight. */
export interface BackendSlot {
  readonly id: string;
  /** Integer ≥ 0. 0 means "never picked" for the weight-aware algorithms (weighted, least-connections, consistent-hash); plain round-robin ignores weights. */
  readonly weight: number;
}

/** Live per-backend state, read on every pick (later backed by shared memory, so it may change between two calls). */
export interface BalancerDeps {
  /** Health of the backend at `index`. */
  isUp(index: number): boolean;
  /** In-flight requests to the backend at `index` (used by least-connections). */
  active(index: number): number;
}

/** Per-request input. Callers on the hot path should reuse one object rather than allocate one per request. */
export interface PickContext {
  /** Consistent-hash key (client IP, header or cookie value; the caller decides). Absent or '' → round robin. */
  hashKey?: string;
}

export type BalancerKind = 'round-robin' | 'weighted' | 'least-connections' | 'consistent-hash';

export interface Balancer {
  readonly kind: BalancerKind;
  /**
   * Index of the chosen backend, or -1 when no backend is up (and not excluded).
   * `exclude` = an index to skip (failover retry), -1 for none.
   */
  pick(ctx: PickContext, exclude: number): number;
}

/** Largest accepted weight: keeps `active × weight` cross-products exact in a double. */
const MAX_WEIGHT = 1_000_000;
/** Largest accepted pool size: ring owners and typed arrays are sized from it. */
const MAX_BACKENDS = 65_535;

/**
 * Throws a TypeError/RangeError explaining the first bad slot. Runs once per balancer build, never per pick.
 * IDs must be unique: route tokens and the hash ring name backends by ID.
 */
export function validateBackends(backends: readonly BackendSlot[]): void {
  if (!Array.isArray(backends)) {
    throw new TypeError(`expected an array for backends but received ${describe(backends)}`);
  }
  if (backends.length > MAX_BACKENDS) {
    throw new RangeError(`expected at most ${MAX_BACKENDS} backends but received ${backends.length}`);
  }
  const seen = new Set<string>();
  for (let i = 0; i < backends.length; i++) {
    const slot = backends[i] as BackendSlot | undefined;
    if (slot === null || typeof slot !== 'object') {
      throw new TypeError(`expected an object for backends[${i}] but received ${describe(slot)}`);
    }
    if (typeof slot.id !== 'string' || slot.id.length === 0) {
      throw new TypeError(`expected a non-empty string for backends[${i}].id but received ${describe(slot.id)}`);
    }
    if (!Number.isInteger(slot.weight) || slot.weight < 0 || slot.weight > MAX_WEIGHT) {
      throw new RangeError(
        `expected an integer from 0 to ${MAX_WEIGHT} for backends[${i}].weight (${slot.id}) but received ${describe(slot.weight)}`,
      );
    }
    if (seen.has(slot.id)) {
      throw new RangeError(`expected unique backend IDs but received "${slot.id}" twice (backends[${i}])`);
    }
    seen.add(slot.id);
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return String(value);
  return typeof value;
}
