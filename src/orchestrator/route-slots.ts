// Counter slots for passthrough routes. Per-route counters live in shared memory at a slot
// index; a route keeps its slot across reloads (same name, ALPN condition and pool), so its
// Prometheus counters never jump back or move to another route. Slots are never reused for a
// different route: a counter series restarting from another route's count would be a lie.
import type { SniRouteConfig } from '../config/schema.js';

interface RouteSlotPlan {
  /** The slot of each route, in configuration order. */
  slots: number[];
  /** Set when the routes need more slots than remain; nothing may be applied then. */
  problem: string | null;
  /** Records the plan's new routes. */
  apply(): void;
}

function routeKey(route: SniRouteConfig): string {
  return JSON.stringify([route.sni.toLowerCase(), route.alpn ?? null, route.pool]);
}

export class RouteSlots {
  readonly #byKey = new Map<string, number>();

  constructor(readonly capacity: number) {}

  /** Slots for `routes`: known routes keep theirs, new ones take the next unused. */
  plan(routes: readonly SniRouteConfig[]): RouteSlotPlan {
    const added = new Map<string, number>();
    let next = this.#byKey.size;
    const slots = routes.map((r) => {
      const key = routeKey(r);
      const known = this.#byKey.get(key) ?? added.get(key);
      if (known !== undefined) return known;
      added.set(key, next);
      return next++;
    });
    const problem =
      next > this.capacity
        ? `passthrough.routes: ${next - this.#byKey.size} new routes would take the counters past their ${this.capacity} slots (${this.#byKey.size} used since start, kept for routes removed by reloads); restart to apply`
        : null;
    return {
      slots,
      problem,
      apply: () => {
        if (problem) throw new Error(problem);
        for (const [key, slot] of added) this.#byKey.set(key, slot);
      },
    };
  }
}
