// Balancer factory: one entry point for the data plane, one file per algorithm behind it.

import type { Balancer, BalancerDeps, BalancerKind, BackendSlot } from './types.js';
import { RoundRobinBalancer } from './round-robin.js';
import { WeightedRoundRobinBalancer } from './weighted-round-robin.js';
import { LeastConnectionsBalancer } from './least-connections.js';
import { ConsistentHashBalancer } from './consistent-hash.js';

export type { Balancer, BalancerKind, BackendSlot, PickContext } from './types.js';
export { ConsistentHashBalancer, hash32, POINTS_PER_WEIGHT, MAX_RING_POINTS } from './consistent-hash.js';

export const BALANCER_KINDS: readonly BalancerKind[] = Object.freeze([
  'round-robin',
  'weighted',
  'least-connections',
  'consistent-hash',
]);

/**
 * Builds the balancer for one pool. Validates the slots (throws TypeError/RangeError naming the
 * bad one). Backend indices passed to `deps` and returned by `pick` are positions in `backends`.
 * Balancers are immutable in shape: on a registry change, build a new one and swap it in.
 */
export function createBalancer(kind: BalancerKind, backends: readonly BackendSlot[], deps: BalancerDeps): Balancer {
  switch (kind) {
    case 'round-robin':
      return new RoundRobinBalancer(backends, deps);
    case 'weighted':
      return new WeightedRoundRobinBalancer(backends, deps);
    case 'least-connections':
      return new LeastConnectionsBalancer(backends, deps);
    case 'consistent-hash':
      return new ConsistentHashBalancer(backends, deps);
    default:
      throw new TypeError(
        `expected one of ${BALANCER_KINDS.join(', ')} for balancer kind but received ${JSON.stringify(kind as unknown)}`,
      );
  }
}
