// Passthrough route counter slots: a route keeps its slot across reloads, new routes take
// unused ones, removed routes' slots are never handed to another route, and running out is a
// problem reported before anything changes.
import { describe, expect, it } from 'vitest';
import { RouteSlots } from '../../src/orchestrator/route-slots.js';

const r = (sni: string, pool: string, alpn?: string[]) => ({ sni, pool, alpn, proxyProtocol: false });

describe('RouteSlots', () => {
  it('keeps a route on its slot however the list is reordered, and never reuses a removed route’s slot', () => {
    const slots = new RouteSlots(8);
    const first = slots.plan([r('a.test', 'x'), r('b.test', 'y')]);
    first.apply();
    expect(first.slots).toEqual([0, 1]);
    // Reordered, b removed, c added, a's name in other case (names compare case-insensitively).
    const second = slots.plan([r('c.test', 'z'), r('A.TEST', 'x')]);
    second.apply();
    expect(second.slots).toEqual([2, 0]);
    // b comes back: its old slot.
    expect(slots.plan([r('b.test', 'y')]).slots).toEqual([1]);
    // Same name, other pool or other ALPN condition: another route.
    expect(slots.plan([r('a.test', 'y'), r('a.test', 'x', ['h2'])]).slots).toEqual([3, 4]);
  });

  it('a plan that would exceed the capacity is a problem, and applying it is refused', () => {
    const slots = new RouteSlots(2);
    slots.plan([r('a.test', 'x')]).apply();
    const plan = slots.plan([r('b.test', 'x'), r('c.test', 'x')]);
    expect(plan.problem).toMatch(/2 new routes would take the counters past their 2 slots.*restart/);
    expect(() => plan.apply()).toThrow(/restart/);
    expect(slots.plan([r('b.test', 'x')]).problem).toBeNull();
  });
});
