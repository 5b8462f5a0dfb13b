// The worker's set of in-flight exchanges: O(1) add/delete by index, and a sweep in which an
// exchange may leave the set (or make another leave) while it is being swept.
import { describe, expect, it } from 'vitest';
import { ActiveExchanges } from '../../src/data-plane/http/active-exchanges.js';
import type { Exchange } from '../../src/data-plane/http/exchange.js';

interface Fake {
  activeIndex: number;
  deadline: number;
  expired: number;
  onDeadline: () => void;
}

function fakes(set: ActiveExchanges, deadlines: number[]): Fake[] {
  return deadlines.map((deadline) => {
    const f: Fake = { activeIndex: -1, deadline, expired: 0, onDeadline: () => {} };
    f.onDeadline = () => {
      f.expired++;
      set.delete(f as unknown as Exchange);
    };
    set.add(f as unknown as Exchange);
    return f;
  });
}

describe('ActiveExchanges', () => {
  it('adds once, deletes once, and reports its size', () => {
    const set = new ActiveExchanges();
    const [a, b, c] = fakes(set, [1, 2, 3]) as [Fake, Fake, Fake];
    set.add(a as unknown as Exchange);
    expect(set.size).toBe(3);
    expect(set.delete(b as unknown as Exchange)).toBe(true);
    expect(set.delete(b as unknown as Exchange)).toBe(false);
    expect(set.size).toBe(2);
    // c was swapped into b's place and still deletes by its own index.
    expect(set.delete(c as unknown as Exchange)).toBe(true);
    expect(set.delete(a as unknown as Exchange)).toBe(true);
    expect(set.size).toBe(0);
  });

  it('expires exactly the exchanges past their deadline, each once, while they delete themselves', () => {
    const set = new ActiveExchanges();
    const deadlines = Array.from({ length: 200 }, (_, i) => (i * 7919) % 101);
    const all = fakes(set, deadlines);
    set.expire(50);
    for (const f of all) expect(f.expired, `deadline ${f.deadline}`).toBe(f.deadline <= 50 ? 1 : 0);
    expect(set.size).toBe(all.filter((f) => f.deadline > 50).length);
    set.expire(1000);
    expect(set.size).toBe(0);
    for (const f of all) expect(f.expired).toBe(1);
  });

  it('survives an expiring exchange that also ends others', () => {
    const set = new ActiveExchanges();
    const all = fakes(set, [0, 0, 0, 0, 0, 0]);
    // The first to expire (swept from the end) takes two others down with it.
    all[5]!.onDeadline = () => {
      all[5]!.expired++;
      for (const f of [all[5]!, all[0]!, all[2]!]) set.delete(f as unknown as Exchange);
    };
    set.expire(0);
    expect(set.size).toBe(0);
    expect(all.map((f) => f.expired)).toEqual([0, 1, 0, 1, 1, 1]);
  });
});
