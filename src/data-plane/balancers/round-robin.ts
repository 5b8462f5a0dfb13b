// Round robin: each up backend in turn, weights ignored. The cursor restarts after the
// chosen backend (not after the last cursor position), so a down backend's turn is spread
// evenly instead of doubling the share of its neighbour.

import type { Balancer, BalancerDeps, BackendSlot, PickContext } from './types.js';
import { validateBackends } from './types.js';

export class RoundRobinBalancer implements Balancer {
  readonly kind = 'round-robin' as const;
  private readonly count: number;
  private readonly deps: BalancerDeps;
  /** Index to try first on the next pick. */
  private next = 0;

  constructor(backends: readonly BackendSlot[], deps: BalancerDeps) {
    validateBackends(backends);
    this.count = backends.length;
    this.deps = deps;
  }

  /** Next up, non-excluded backend after the previous pick; -1 if none. O(n) worst case, no allocation. */
  pick(_ctx: PickContext, exclude: number): number {
    const n = this.count;
    let i = this.next;
    for (let tried = 0; tried < n; tried++, i++) {
      if (i >= n) i = 0;
      if (i !== exclude && this.deps.isUp(i)) {
        this.next = i + 1;
        return i;
      }
    }
    return -1;
  }
}
