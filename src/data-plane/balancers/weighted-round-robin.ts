// Smooth weighted round robin, nginx's algorithm (ngx_http_upstream_get_peer): every pick adds
// each candidate's weight to its running score, takes the highest score and subtracts the
// candidates' total from it. Over any run of sum(weights) picks with a stable set of up backends
// each is chosen exactly `weight` times, and picks interleave (5:1:1 gives a a b a c a a, not a a a a a b c).

import type { Balancer, BalancerDeps, BackendSlot, PickContext } from './types.js';
import { validateBackends } from './types.js';

export class WeightedRoundRobinBalancer implements Balancer {
  readonly kind = 'weighted' as const;
  private readonly weights: Float64Array;
  /** nginx's `current_weight`, one per backend; only candidates of a pick move. */
  private readonly current: Float64Array;
  private readonly deps: BalancerDeps;

  constructor(backends: readonly BackendSlot[], deps: BalancerDeps) {
    validateBackends(backends);
    this.weights = Float64Array.from(backends, (b) => b.weight);
    this.current = new Float64Array(backends.length);
    this.deps = deps;
  }

  /** Highest smoothed score among up, non-excluded backends with weight > 0 (first index wins ties); -1 if none. */
  pick(_ctx: PickContext, exclude: number): number {
    return smoothWeightedPick(this.weights, this.current, this.deps, exclude, 0, 0, 0);
  }
}

/**
 * One smooth weighted round-robin pick (nginx's, see the top of this file) over the backends
 * at index ≥ `from` that have weight > 0, are up and are not `exclude`, updating `current` (one
 * score per backend; only candidates move). With `tieWeight` > 0, candidates are further
 * limited to those whose in-flight count per unit of weight equals tieActive / tieWeight
 * (least-connections' tie-break; `deps.active` is read only then). First index wins equal
 * scores. Returns the chosen index, or -1 (nothing moved) when there is no candidate.
 */
export function smoothWeightedPick(
  weights: Float64Array,
  current: Float64Array,
  deps: BalancerDeps,
  exclude: number,
  from: number,
  tieActive: number,
  tieWeight: number,
): number {
  const n = weights.length;
  let total = 0;
  let best = -1;
  let bestScore = 0;
  for (let i = from; i < n; i++) {
    const w = weights[i]!;
    if (w === 0 || i === exclude || !deps.isUp(i)) continue;
    if (tieWeight > 0 && deps.active(i) * tieWeight !== tieActive * w) continue;
    const score = current[i]! + w;
    current[i] = score;
    total += w;
    if (best < 0 || score > bestScore) {
      best = i;
      bestScore = score;
    }
  }
  if (best >= 0) current[best] = bestScore - total;
  return best;
}
