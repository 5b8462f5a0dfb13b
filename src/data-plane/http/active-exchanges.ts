// The in-flight exchanges of one worker, swept for deadlines by the worker's timer.
import type { Exchange } from './exchange.js';

/**
 * The in-flight exchanges of one worker: an array with swap-remove, each exchange holding its
 * own index, so add and delete are O(1) without a hash lookup on every request.
 */
export class ActiveExchanges {
  private readonly items: Exchange[] = [];

  get size(): number {
    return this.items.length;
  }

  add(ex: Exchange): void {
    if (ex.activeIndex >= 0) return;
    ex.activeIndex = this.items.length;
    this.items.push(ex);
  }

  /** True if `ex` was in the set. */
  delete(ex: Exchange): boolean {
    const i = ex.activeIndex;
    if (i < 0 || this.items[i] !== ex) return false;
    const last = this.items.pop()!;
    if (last !== ex) {
      this.items[i] = last;
      last.activeIndex = i;
    }
    ex.activeIndex = -1;
    return true;
  }

  /** Calls onDeadline on every exchange whose deadline is at or before `now`; they may leave the set meanwhile. */
  expire(now: number): void {
    // Backwards: an exchange that completes swaps the last one into its place, already visited.
    for (let i = this.items.length - 1; i >= 0; i--) {
      const ex = this.items[i];
      if (ex !== undefined && ex.deadline <= now) ex.onDeadline();
    }
  }
}
