// Least connections, weighted, as nginx's least_conn does it: the backend with the fewest
// in-flight requests per unit of weight wins (a/wa < b/wb compared as a·wb < b·wa, no division);
// among equals, smooth weighted round robin decides. That matters at low load, where every
// backend has 0 in flight: picks then follow the weights instead of always hitting the first.

import type { Balancer, BalancerDeps, BackendSlot, PickContext } from './types.js';
import { validateBackends } from './types.js';
import { smoothWeightedPick } from './weighted-round-robin.js';

export class LeastConnectionsBalancer implements Balancer {
  readonly kind = 'least-connections' as const;
  private readonly weights: Float64Array;
  /** Smooth-WRR scores used only to break ties. */
  private readonly current: Float64Array;
  private readonly deps: BalancerDeps;

  constructor(backends: readonly BackendSlot[], deps: BalancerDeps) {
    validateBackends(backends);
    this.weights = Float64Array.from(backends, (b) => b.weight);
    this.current = new Float64Array(backends.length);
    this.deps = deps;
  }

  /** Lowest active/weight among up, non-excluded backends with weight > 0; ties by smooth WRR; -1 if none. */
  pick(_ctx: PickContext, exclude: number): number {
    const weights = this.weights;
    const deps = this.deps;
    const n = weights.length;
    let best = -1;
    let bestActive = 0;
    let bestWeight = 1;
    let tied = false;
    for (let i = 0; i < n; i++) {
      const w = weights[i]!;
      if (w === 0 || i === exclude || !deps.isUp(i)) continue;
      const a = deps.active(i);
      const lhs = a * bestWeight;
      const rhs = bestActive * w;
      if (best < 0 || lhs < rhs) {
        best = i;
        bestActive = a;
        bestWeight = w;
        tied = false;
      } else if (lhs === rhs) {
        tied = true;
      }
    }
    if (!tied) return best;

    // Second pass over the tied backends only (all at index ≥ best), by smooth WRR. Counts are
    // re-read: they live in shared memory and may have moved; if none still ties, keep the
    // first-pass answer.
    const chosen = smoothWeightedPick(weights, this.current, deps, exclude, best, bestActive, bestWeight);
    return chosen < 0 ? best : chosen;
  }
}
