// Per-worker counters and per-backend state in one SharedArrayBuffer, so the orchestrator can
// sum them on a /metrics scrape and every worker sees backend health at once, with no message
// per request.
//
// Layout (Float64 slots; a float64 counts exactly up to 2^53):
//
//   [ worker 0 block ][ worker 1 block ] … [ worker W-1 block ][ backend state ]
//   worker block  = GLOBAL_COUNTERS.length slots
//                 + BACKEND_COUNTERS.length × backendCapacity slots
//   backend state = BACKEND_STATE.length × backendCapacity slots
//
// Each worker block has exactly one writer (its worker), so increments are plain `+= 1`: no
// atomics on the hot path. Readers may see a value one increment stale; that is fine for
// metrics. Backend state is written by any worker (last writer wins; values are deadlines and
// gauges that tolerate it). Aligned 8-byte stores do not tear on the platforms Node supports.

/** Counters kept per worker, not per backend. Order is the layout: append only. */
export const GLOBAL_COUNTERS = [
  'requests',
  'responses_1xx',
  'responses_2xx',
  'responses_3xx',
  'responses_4xx',
  'responses_5xx',
  'bad_requests',
  'no_backend',
  'upstream_connect_errors',
  'upstream_timeouts',
  'upstream_protocol_errors',
  'upstream_retries',
  'upstream_connections_opened',
  'client_aborts',
  'sticky_hits',
  'sticky_misses',
  'sticky_invalid_malformed',
  'sticky_invalid_unknown_key',
  'sticky_invalid_forged',
  'sticky_invalid_expired',
  'sticky_backend_unknown',
  'sticky_failovers',
  'tokens_issued',
  'active_requests',
  'client_timeouts',
] as const;

export const BACKEND_COUNTERS = ['requests', 'connect_errors', 'active'] as const;

/** Per-backend state shared by all workers. */
export const BACKEND_STATE = [
  /** Passive health: the backend is considered down until this time (ms since the Unix epoch). */
  'down_until',
  /** Consecutive connect failures (drives exponential backoff). */
  'failures',
] as const;

export type GlobalCounter = (typeof GLOBAL_COUNTERS)[number];
export type BackendCounter = (typeof BACKEND_COUNTERS)[number];

const G: Record<GlobalCounter, number> = Object.fromEntries(GLOBAL_COUNTERS.map((n, i) => [n, i])) as never;
const B: Record<BackendCounter, number> = Object.fromEntries(BACKEND_COUNTERS.map((n, i) => [n, i])) as never;

export interface SharedLayout {
  readonly workerCapacity: number;
  readonly backendCapacity: number;
}

export function workerBlockSlots(l: SharedLayout): number {
  return GLOBAL_COUNTERS.length + BACKEND_COUNTERS.length * l.backendCapacity;
}

export function sharedBytes(l: SharedLayout): number {
  return 8 * (workerBlockSlots(l) * l.workerCapacity + BACKEND_STATE.length * l.backendCapacity);
}

export function createSharedState(l: SharedLayout): SharedArrayBuffer {
  return new SharedArrayBuffer(sharedBytes(l));
}

/** One worker's writer view. */
export class WorkerCounters {
  private readonly slots: Float64Array;
  private readonly base: number;
  private readonly backendBase: number;
  private readonly stateBase: number;
  private readonly stride: number;
  private readonly workerCapacity: number;

  constructor(buffer: SharedArrayBuffer, layout: SharedLayout, workerIndex: number) {
    if (workerIndex < 0 || workerIndex >= layout.workerCapacity) {
      throw new RangeError(`expected a worker index below ${layout.workerCapacity} but received ${workerIndex}`);
    }
    this.slots = new Float64Array(buffer);
    this.base = workerIndex * workerBlockSlots(layout);
    this.backendBase = this.base + GLOBAL_COUNTERS.length;
    this.stateBase = workerBlockSlots(layout) * layout.workerCapacity;
    this.stride = workerBlockSlots(layout);
    this.workerCapacity = layout.workerCapacity;
  }

  inc(name: GlobalCounter, by = 1): void {
    this.slots[this.base + G[name]]! += by;
  }

  incBackend(slot: number, name: BackendCounter, by = 1): void {
    this.slots[this.backendBase + slot * BACKEND_COUNTERS.length + B[name]]! += by;
  }

  backendDownUntil(slot: number): number {
    return this.slots[this.stateBase + slot * BACKEND_STATE.length]!;
  }

  /** In-flight requests to a backend summed over every worker (least-connections reads this). */
  backendActive(slot: number): number {
    const off = GLOBAL_COUNTERS.length + slot * BACKEND_COUNTERS.length + B.active;
    let sum = 0;
    for (let w = 0; w < this.workerCapacity; w++) sum += this.slots[w * this.stride + off]!;
    return sum;
  }

  /** Passive health: record a connect failure; the backend is skipped for an exponential backoff. */
  markBackendFailure(slot: number, now: number, baseMs: number, maxMs: number): void {
    const at = this.stateBase + slot * BACKEND_STATE.length;
    const failures = this.slots[at + 1]! + 1;
    this.slots[at + 1] = failures;
    this.slots[at] = now + Math.min(maxMs, baseMs * 2 ** Math.min(failures - 1, 20));
  }

  markBackendSuccess(slot: number): void {
    const at = this.stateBase + slot * BACKEND_STATE.length;
    if (this.slots[at + 1] !== 0) {
      this.slots[at + 1] = 0;
      this.slots[at] = 0;
    }
  }
}

/** The orchestrator's read view: sums over workers. */
export class CounterReader {
  private readonly slots: Float64Array;
  constructor(buffer: SharedArrayBuffer, private readonly layout: SharedLayout) {
    this.slots = new Float64Array(buffer);
  }

  total(name: GlobalCounter): number {
    const stride = workerBlockSlots(this.layout);
    let sum = 0;
    for (let w = 0; w < this.layout.workerCapacity; w++) sum += this.slots[w * stride + G[name]]!;
    return sum;
  }

  backendTotal(slot: number, name: BackendCounter): number {
    const stride = workerBlockSlots(this.layout);
    const off = GLOBAL_COUNTERS.length + slot * BACKEND_COUNTERS.length + B[name];
    let sum = 0;
    for (let w = 0; w < this.layout.workerCapacity; w++) sum += this.slots[w * stride + off]!;
    return sum;
  }

  backendDownUntil(slot: number): number {
    return this.slots[workerBlockSlots(this.layout) * this.layout.workerCapacity + slot * BACKEND_STATE.length]!;
  }

  /** A dead worker's gauges would stay raised forever: zero them before its replacement starts. */
  clearGauges(workerIndex: number): void {
    const base = workerIndex * workerBlockSlots(this.layout);
    this.slots[base + G.active_requests] = 0;
    for (let s = 0; s < this.layout.backendCapacity; s++) {
      this.slots[base + GLOBAL_COUNTERS.length + s * BACKEND_COUNTERS.length + B.active] = 0;
    }
  }
}
