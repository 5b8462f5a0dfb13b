// The shared-memory counter layout is read by the orchestrator and written by workers built
// from the same module; these tests pin it (slots, sizes, sums, gauges, health backoff).
import { describe, expect, it } from 'vitest';
import {
  BACKEND_COUNTERS, BACKEND_STATE, C, LATENCY_BOUNDS_MS, PER_BACKEND, CounterReader, GLOBAL_COUNTERS, MAX_LISTENERS, TLS_OUTCOMES, TOKEN_KEY_IDS, WorkerCounters, createSharedState, sharedBytes, workerBlockSlots,
} from '../../src/shared-memory/counters.js';

const layout = { workerCapacity: 3, backendCapacity: 4 };

describe('shared counters', () => {
  it('pins the layout: slots in order, sizes from the formula', () => {
    expect(GLOBAL_COUNTERS[0]).toBe('requests');
    expect(GLOBAL_COUNTERS[C.client_timeouts]).toBe('client_timeouts');
    GLOBAL_COUNTERS.forEach((name, i) => expect(C[name]).toBe(i));
    expect(PER_BACKEND).toBe(BACKEND_COUNTERS.length + LATENCY_BOUNDS_MS.length + 2);
    expect(TOKEN_KEY_IDS).toBe(256);
    expect(MAX_LISTENERS).toBe(32);
    expect(workerBlockSlots(layout)).toBe(GLOBAL_COUNTERS.length + PER_BACKEND * 4 + TOKEN_KEY_IDS + TLS_OUTCOMES.length * MAX_LISTENERS);
    expect(sharedBytes(layout)).toBe(8 * (workerBlockSlots(layout) * 3 + BACKEND_STATE.length * 4));
    expect(createSharedState(layout).byteLength).toBe(sharedBytes(layout));
  });

  it('sums each counter over workers, without one worker touching another block', () => {
    const buf = createSharedState(layout);
    const workers = [0, 1, 2].map((i) => new WorkerCounters(buf, layout, i));
    workers[0]!.inc(C.requests);
    workers[1]!.inc(C.requests, 2);
    workers[2]!.inc(C.tokens_issued, 5);
    workers[1]!.incBackend(3, 'requests', 7);
    workers[2]!.incBackend(3, 'requests');
    const r = new CounterReader(buf, layout);
    expect(r.total('requests')).toBe(3);
    expect(r.total('tokens_issued')).toBe(5);
    expect(r.total('responses_2xx')).toBe(0);
    expect(r.backendTotal(3, 'requests')).toBe(8);
    expect(r.backendTotal(2, 'requests')).toBe(0);
    // TLS handshakes per listener and outcome: each its own slot, summed over workers; out of range not counted.
    workers[0]!.incTlsHandshake(1, 'ok');
    workers[2]!.incTlsHandshake(1, 'ok');
    workers[1]!.incTlsHandshake(31, 'plain_http');
    workers[1]!.incTlsHandshake(32, 'ok');
    workers[1]!.incTlsHandshake(-1, 'ok');
    expect([r.tlsHandshakeTotal(1, 'ok'), r.tlsHandshakeTotal(1, 'timeout'), r.tlsHandshakeTotal(0, 'ok'), r.tlsHandshakeTotal(31, 'plain_http'), r.tlsHandshakeTotal(32, 'ok')]).toEqual([2, 0, 0, 1, 0]);
    expect(r.total('requests')).toBe(3);
    expect(() => new WorkerCounters(buf, layout, 3)).toThrow(/below 3/);
  });

  it('counts tokens sealed per key id, summed over workers, beside routes and backends', () => {
    const withRoutes = { ...layout, routeCapacity: 2 };
    const buf = createSharedState(withRoutes);
    const workers = [0, 1, 2].map((i) => new WorkerCounters(buf, withRoutes, i));
    workers[0]!.incKeySealed(0);
    workers[1]!.incKeySealed(255);
    workers[2]!.incKeySealed(255);
    workers[2]!.incKeySealed(256); // not a key id: ignored
    workers[2]!.incKeySealed(-1);
    workers[1]!.incRoute(1, 'bytes_out', 9);
    workers[1]!.incBackend(3, 'sticky_hits');
    const r = new CounterReader(buf, withRoutes);
    expect([r.keySealedTotal(0), r.keySealedTotal(1), r.keySealedTotal(255)]).toEqual([1, 0, 2]);
    expect(r.backendTotal(3, 'sticky_hits')).toBe(1);
    expect(r.total('tokens_issued')).toBe(0);
  });

  it('clears a dead worker\'s gauges and keeps its counters', () => {
    const buf = createSharedState(layout);
    const w = new WorkerCounters(buf, layout, 1);
    w.inc(C.requests, 10);
    w.inc(C.active_requests, 4);
    w.incBackend(0, 'active', 2);
    const r = new CounterReader(buf, layout);
    expect(w.backendActive(0)).toBe(2);
    r.clearGauges(1);
    expect(r.total('active_requests')).toBe(0);
    expect(r.backendTotal(0, 'active')).toBe(0);
    expect(r.total('requests')).toBe(10);
  });

  it('backs a failing backend off exponentially, capped, and resets on success; every worker sees it', () => {
    const buf = createSharedState(layout);
    const a = new WorkerCounters(buf, layout, 0);
    const b = new WorkerCounters(buf, layout, 2);
    a.markBackendFailure(1, 1_000, 100, 1_000);
    expect(b.backendDownUntil(1)).toBe(1_100);
    b.markBackendFailure(1, 2_000, 100, 1_000);
    expect(a.backendDownUntil(1)).toBe(2_200);
    for (let i = 0; i < 10; i++) a.markBackendFailure(1, 3_000, 100, 1_000);
    expect(b.backendDownUntil(1)).toBe(4_000);
    expect(new CounterReader(buf, layout).backendDownUntil(1)).toBe(4_000);
    b.markBackendSuccess(1);
    expect(a.backendDownUntil(1)).toBe(0);
    expect(a.backendDownUntil(0)).toBe(0);
  });

  it('keeps a latency histogram per backend: bucket by upper bound, cumulative over workers, with the sum', () => {
    const buf = createSharedState(layout);
    const a = new WorkerCounters(buf, layout, 0);
    const b = new WorkerCounters(buf, layout, 1);
    for (const ms of [0.2, 0.5, 0.7, 3, 10_000]) a.observeUpstream(2, ms);
    b.observeUpstream(2, 20_000);
    b.observeUpstream(1, 1);
    const r = new CounterReader(buf, layout);
    const { buckets, sumMs } = r.backendLatency(2);
    expect(buckets).toHaveLength(LATENCY_BOUNDS_MS.length + 1);
    expect(buckets[0]).toBe(2); // ≤ 0.5 ms: 0.2, 0.5
    expect(buckets[1]).toBe(3); // ≤ 1 ms
    expect(buckets[3]).toBe(4); // ≤ 5 ms: + 3
    expect(buckets[LATENCY_BOUNDS_MS.length - 1]).toBe(5); // ≤ 10 s
    expect(buckets[LATENCY_BOUNDS_MS.length]).toBe(6); // +Inf
    expect(sumMs).toBeCloseTo(30_004.4);
    expect(r.backendLatency(1).buckets[1]).toBe(1);
    // Status classes count per backend; a reset slot starts from zero.
    a.countBackendStatus(2, 204);
    b.countBackendStatus(2, 503);
    expect([r.backendTotal(2, 'responses_2xx'), r.backendTotal(2, 'responses_5xx')]).toEqual([1, 1]);
    r.resetBackend(2);
    expect(r.backendLatency(2).buckets.at(-1)).toBe(0);
    expect(r.backendTotal(2, 'responses_2xx')).toBe(0);
  });
});
