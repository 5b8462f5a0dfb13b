// The dashboard's percentile from a second's worth of histogram bucket counts.
import { describe, expect, it } from 'vitest';
import { quantileMs } from '../../src/orchestrator/dashboard.js';
import { LATENCY_BOUNDS_MS } from '../../src/shared-memory/counters.js';

const counts = (at: Record<number, number>) => Array.from({ length: LATENCY_BOUNDS_MS.length + 1 }, (_, i) => at[i] ?? 0);

describe('quantileMs', () => {
  it('is null without samples and interpolates inside the bucket that holds the rank', () => {
    expect(quantileMs(counts({}), 0.5)).toBeNull();
    // 10 samples in (1, 2.5] ms: the median sits half-way through that bucket.
    expect(quantileMs(counts({ 2: 10 }), 0.5)).toBeCloseTo(1.75);
    // 99 fast (≤ 0.5 ms) and 1 slow (250-500 ms]: p50 is fast, p99 at the top of the fast bucket, p100 in the slow one.
    const c = counts({ 0: 99, 9: 1 });
    expect(quantileMs(c, 0.5)!).toBeLessThanOrEqual(0.5);
    expect(quantileMs(c, 0.99)).toBeCloseTo(0.5);
    expect(quantileMs(c, 1)).toBe(500);
    // Beyond the last bound (+Inf): reported between 10 s and twice that.
    const over = quantileMs(counts({ [LATENCY_BOUNDS_MS.length]: 3 }), 0.5)!;
    expect(over).toBeGreaterThan(10_000);
    expect(over).toBeLessThanOrEqual(20_000);
  });
});
