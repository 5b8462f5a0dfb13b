// Per-worker counters and per-backend state in one SharedArrayBuffer, so the orchestrator can
// sum them on a /metrics scrape and every worker sees backend health at once, with no message
// per request.
//
// Layout (Float64 slots; a float64 counts exactly up to 2^53):
//
//   [ worker 0 block ][ worker 1 block ] … [ worker W-1 block ][ backend state ]
//   worker block  = GLOBAL_COUNTERS.length slots
//                 + PER_BACKEND × backendCapacity slots (counters, latency histogram)
//                 + ROUTE_COUNTERS.length × routeCapacity slots (passthrough routes)
//                 + TOKEN_KEY_IDS slots (route tokens sealed, by key id)
//                 + TLS_OUTCOMES.length × MAX_LISTENERS slots (HTTPS handshakes, by listener)
//   backend state = BACKEND_STATE.length × backendCapacity slots
//
// Each worker block has exactly one writer (its worker), so increments are plain `+= 1`: no
// atomics on the hot path. Readers may see a value one increment stale; that is fine for
// metrics. Backend state is written by any worker (last writer wins; values are deadlines and
// gauges that tolerate it). Aligned 8-byte stores do not tear on the platforms Node supports.

/**
 * Counters kept per worker, not per backend, by slot. The values are the layout: append only,
 * never renumber. Call sites pass `C.name` (a constant property load), not a string to look up.
 */
export const C = {
  requests: 0,
  responses_1xx: 1,
  responses_2xx: 2,
  responses_3xx: 3,
  responses_4xx: 4,
  responses_5xx: 5,
  bad_requests: 6,
  no_backend: 7,
  upstream_connect_errors: 8,
  upstream_timeouts: 9,
  upstream_protocol_errors: 10,
  upstream_retries: 11,
  upstream_connections_opened: 12,
  client_aborts: 13,
  sticky_hits: 14,
  sticky_misses: 15,
  sticky_invalid_malformed: 16,
  sticky_invalid_unknown_key: 17,
  sticky_invalid_forged: 18,
  sticky_invalid_expired: 19,
  sticky_backend_unknown: 20,
  sticky_failovers: 21,
  tokens_issued: 22,
  active_requests: 23,
  client_timeouts: 24,
  // TLS passthrough (one per accepted connection, then one outcome each).
  passthrough_connections: 25,
  passthrough_routed: 26,
  passthrough_not_tls: 27,
  passthrough_malformed: 28,
  passthrough_too_large: 29,
  passthrough_hello_timeouts: 30,
  passthrough_no_route: 31,
  passthrough_no_backend: 32,
  passthrough_upstream_connect_errors: 33,
  passthrough_idle_timeouts: 34,
  passthrough_active: 35,
  passthrough_bytes_in: 36,
  passthrough_bytes_out: 37,
  // Shared session table: learn mode, bindings, revocations.
  sessions_learned: 38,
  sessions_forgotten: 39,
  learn_hits: 40,
  learn_misses: 41,
  binding_refused_terminal: 42,
  binding_refused_revoked: 43,
  binding_unverifiable: 44,
  // Backend health.
  backend_ejections_5xx: 45,
  // Authorization handshake (src/authz/balancer.ts): one per outcome.
  authz_challenge_issued: 46,
  authz_granted: 47,
  authz_bad_request: 48,
  authz_unknown_user: 49,
  authz_bad_proof: 50,
  authz_forged_challenge: 51,
  authz_stale_challenge: 52,
  authz_replayed: 53,
  authz_rate_limited: 54,
  authz_no_server: 55,
  access_log_dropped: 56,
  /** A backend's own Set-Cookie for Tether's cookie (or its own token header): dropped, never beside Tether's. */
  backend_route_cookie_dropped: 57,
  // The HTTP front door: requests refused before the request path saw them, by reason.
  refused_bad_request_line: 58,
  refused_bad_method: 59,
  refused_bad_target: 60,
  refused_bad_version: 61,
  refused_h2_preface: 62,
  refused_bare_lf: 63,
  refused_bare_cr: 64,
  refused_control_byte: 65,
  refused_obs_fold: 66,
  refused_space_before_colon: 67,
  refused_bad_field_name: 68,
  refused_head_too_large: 69,
  refused_too_many_headers: 70,
  refused_bad_content_length: 71,
  refused_te_and_content_length: 72,
  refused_bad_transfer_encoding: 73,
  refused_bad_chunk: 74,
  refused_connect_method: 75,
  refused_head_timeout: 76,
  // Route token format v1 (from before the upgrade to v2): refused after the grace, and opened.
  sticky_invalid_old_format: 77,
  tokens_v1_presented: 78,
  // Requests a redirect=https listener answered with 308. (TLS handshakes are counted per listener.)
  https_redirects: 79,
} as const;

export type GlobalCounter = keyof typeof C;

/** Counter names in slot order. */
export const GLOBAL_COUNTERS: readonly GlobalCounter[] = (Object.keys(C) as GlobalCounter[]).sort((a, b) => C[a] - C[b]);
GLOBAL_COUNTERS.forEach((name, i) => {
  if (C[name] !== i) throw new Error(`counter slots must be 0..n-1 without gaps: ${name} is ${C[name]}, expected ${i}`);
});

export const BACKEND_COUNTERS = [
  'requests',
  'connect_errors',
  'active',
  'responses_1xx',
  'responses_2xx',
  'responses_3xx',
  'responses_4xx',
  'responses_5xx',
  /** Sticky sessions started on the backend: a token naming it issued to a request that did not present one for it, or a learned session it set. */
  'sessions',
  /** Requests routed to the backend by their session (token or learned cookie). */
  'sticky_hits',
] as const;

/**
 * Upstream response time (request sent → response head) per backend: a histogram with these
 * upper bounds in ms, plus +Inf, and the sum in ms. Slots per backend, after its counters.
 */
export const LATENCY_BOUNDS_MS = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000] as const;
const LATENCY_SLOTS = LATENCY_BOUNDS_MS.length + 2;
/** Slots per backend in a worker block: counters, then histogram buckets (+Inf last), then the sum. */
export const PER_BACKEND = BACKEND_COUNTERS.length + LATENCY_SLOTS;

/** Per-backend state shared by all workers. */
export const BACKEND_STATE = [
  /** Passive health: the backend is considered down until this time (ms since the Unix epoch). */
  'down_until',
  /** Consecutive ejections (connect failures, 5xx runs): the backoff's exponent. */
  'failures',
  /** Consecutive 5xx responses (passive ejection once it reaches the pool's limit). */
  'errors_5xx',
  /** 1 after an ejection for 5xx, until a response below 500 (probation: one 5xx re-ejects). */
  'ejected_5xx',
  /** Set by the orchestrator only: UNAVAILABLE_CHECK | UNAVAILABLE_LOST bits; 0 = available. */
  'unavailable',
  /** Set by the orchestrator only: 0, or draining: no new sessions; sticky ones until this time (ms). */
  'drain_until',
  /** Set by the orchestrator only: 1 while the backend's agent holds a control connection (grants can reach it). */
  'control',
] as const;

/** `unavailable` bits. */
export const UNAVAILABLE_CHECK = 1;
export const UNAVAILABLE_LOST = 2;
const S_DOWN_UNTIL = 0;
const S_FAILURES = 1;
const S_5XX = 2;
const S_EJECTED_5XX = 3;
const S_UNAVAILABLE = 4;
const S_DRAIN_UNTIL = 5;
const S_CONTROL = 6;

type BackendCounter = (typeof BACKEND_COUNTERS)[number];

/** Per passthrough route (its index in config.passthrough.routes). */
const ROUTE_COUNTERS = ['connections', 'bytes_in', 'bytes_out'] as const;
type RouteCounter = (typeof ROUTE_COUNTERS)[number];
const R: Record<RouteCounter, number> = { connections: 0, bytes_in: 1, bytes_out: 2 };

const B: Record<BackendCounter, number> = Object.fromEntries(BACKEND_COUNTERS.map((n, i) => [n, i])) as never;

export interface SharedLayout {
  readonly workerCapacity: number;
  readonly backendCapacity: number;
  /** Passthrough routes with counters (0: none). */
  readonly routeCapacity?: number;
}

/** Route-token key ids (0..255), each with a count of tokens sealed under it. */
export const TOKEN_KEY_IDS = 256;

/** Client listeners with counters of their own (config.listen's index; the schema allows no more). */
export const MAX_LISTENERS = 32;
/** How a TLS handshake on an HTTPS listener ended (tether_tls_handshakes_total{listener,outcome}). */
export const TLS_OUTCOMES = ['ok', 'timeout', 'plain_http', 'unknown_name', 'failed'] as const;
export type TlsOutcome = (typeof TLS_OUTCOMES)[number];
const T: Record<TlsOutcome, number> = { ok: 0, timeout: 1, plain_http: 2, unknown_name: 3, failed: 4 };

export function workerBlockSlots(l: SharedLayout): number {
  return GLOBAL_COUNTERS.length + PER_BACKEND * l.backendCapacity + ROUTE_COUNTERS.length * (l.routeCapacity ?? 0) + TOKEN_KEY_IDS + TLS_OUTCOMES.length * MAX_LISTENERS;
}

function tlsOffset(l: SharedLayout, listener: number, outcome: TlsOutcome): number {
  return GLOBAL_COUNTERS.length + PER_BACKEND * l.backendCapacity + ROUTE_COUNTERS.length * (l.routeCapacity ?? 0) + TOKEN_KEY_IDS + listener * TLS_OUTCOMES.length + T[outcome];
}

function keySealedOffset(l: SharedLayout, keyId: number): number {
  return GLOBAL_COUNTERS.length + PER_BACKEND * l.backendCapacity + ROUTE_COUNTERS.length * (l.routeCapacity ?? 0) + keyId;
}

function routeOffset(l: SharedLayout, route: number, name: RouteCounter): number {
  return GLOBAL_COUNTERS.length + PER_BACKEND * l.backendCapacity + route * ROUTE_COUNTERS.length + R[name];
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
  private readonly routeCapacity: number;

  constructor(buffer: SharedArrayBuffer, private readonly layout: SharedLayout, workerIndex: number) {
    if (workerIndex < 0 || workerIndex >= layout.workerCapacity) {
      throw new RangeError(`expected a worker index below ${layout.workerCapacity} but received ${workerIndex}`);
    }
    this.slots = new Float64Array(buffer);
    this.base = workerIndex * workerBlockSlots(layout);
    this.backendBase = this.base + GLOBAL_COUNTERS.length;
    this.stateBase = workerBlockSlots(layout) * layout.workerCapacity;
    this.stride = workerBlockSlots(layout);
    this.workerCapacity = layout.workerCapacity;
    this.routeCapacity = layout.routeCapacity ?? 0;
  }

  /** Adds to a passthrough route's counter; routes beyond the layout's capacity are not counted. */
  incRoute(route: number, name: RouteCounter, by = 1): void {
    if (route < 0 || route >= this.routeCapacity) return;
    this.slots[this.base + routeOffset(this.layout, route, name)]! += by;
  }

  /** One route token sealed under key `keyId` (0..255; anything else is not counted). */
  incKeySealed(keyId: number): void {
    if (keyId >= 0 && keyId < TOKEN_KEY_IDS) this.slots[this.base + keySealedOffset(this.layout, keyId)]! += 1;
  }

  /** One TLS handshake on client listener `listener` ended with `outcome`. */
  incTlsHandshake(listener: number, outcome: TlsOutcome): void {
    if (listener >= 0 && listener < MAX_LISTENERS) this.slots[this.base + tlsOffset(this.layout, listener, outcome)]! += 1;
  }

  /** Adds to a counter slot (`C.requests`, …). */
  inc(slot: number, by = 1): void {
    this.slots[this.base + slot]! += by;
  }

  incBackend(slot: number, name: BackendCounter, by = 1): void {
    this.slots[this.backendBase + slot * PER_BACKEND + B[name]]! += by;
  }

  /** A final response from the backend, counted by status class (1xx-5xx). */
  countBackendStatus(slot: number, status: number): void {
    const cls = status < 200 ? 0 : status < 300 ? 1 : status < 400 ? 2 : status < 500 ? 3 : 4;
    this.slots[this.backendBase + slot * PER_BACKEND + B.responses_1xx + cls]! += 1;
  }

  /** One upstream response time (ms) into the backend's histogram. */
  observeUpstream(slot: number, ms: number): void {
    const at = this.backendBase + slot * PER_BACKEND + BACKEND_COUNTERS.length;
    let i = 0;
    while (i < LATENCY_BOUNDS_MS.length && ms > LATENCY_BOUNDS_MS[i]!) i++;
    this.slots[at + i]! += 1;
    this.slots[at + LATENCY_SLOTS - 1]! += ms;
  }

  backendDownUntil(slot: number): number {
    return this.slots[this.stateBase + slot * BACKEND_STATE.length]!;
  }

  /** May the balancer give this backend a new session? Up, not ejected, not draining. */
  backendPickable(slot: number, now: number): boolean {
    const at = this.stateBase + slot * BACKEND_STATE.length;
    const s = this.slots;
    return s[at + S_DOWN_UNTIL]! <= now && s[at + S_UNAVAILABLE] === 0 && s[at + S_DRAIN_UNTIL] === 0;
  }

  /** May an existing (sticky) session keep going to it? Up and not ejected, and any drain not past its deadline. */
  backendRoutable(slot: number, now: number): boolean {
    const at = this.stateBase + slot * BACKEND_STATE.length;
    const s = this.slots;
    const drain = s[at + S_DRAIN_UNTIL]!;
    return s[at + S_DOWN_UNTIL]! <= now && s[at + S_UNAVAILABLE] === 0 && (drain === 0 || now < drain);
  }

  /** Does the backend's agent hold a control connection (so an authorization grant can reach it)? */
  backendControlled(slot: number): boolean {
    return this.slots[this.stateBase + slot * BACKEND_STATE.length + S_CONTROL] === 1;
  }

  /** In-flight requests to a backend summed over every worker (least-connections reads this). */
  backendActive(slot: number): number {
    const off = GLOBAL_COUNTERS.length + slot * PER_BACKEND + B.active;
    let sum = 0;
    for (let w = 0; w < this.workerCapacity; w++) sum += this.slots[w * this.stride + off]!;
    return sum;
  }

  /** Passive health: record a connect failure; the backend is skipped for an exponential backoff. */
  markBackendFailure(slot: number, now: number, baseMs: number, maxMs: number): void {
    const at = this.stateBase + slot * BACKEND_STATE.length;
    const failures = this.slots[at + S_FAILURES]! + 1;
    this.slots[at + S_FAILURES] = failures;
    this.slots[at + S_DOWN_UNTIL] = now + Math.min(maxMs, baseMs * 2 ** Math.min(failures - 1, 20));
  }

  /** Connected: the connect-failure run is over. */
  markBackendSuccess(slot: number): void {
    const at = this.stateBase + slot * BACKEND_STATE.length;
    // Not after a 5xx ejection: accepting connections does not show it answers well again.
    if (this.slots[at + S_FAILURES] !== 0 && this.slots[at + S_EJECTED_5XX] === 0) {
      this.slots[at + S_FAILURES] = 0;
      this.slots[at + S_DOWN_UNTIL] = 0;
    }
  }

  /**
   * A response head from the backend. `limit` consecutive 5xx (0: never) eject it like a
   * connect failure, with the same exponential backoff. Once readmitted it is on probation: one
   * more 5xx ejects it again for twice as long; a response below 500 clears everything.
   * Returns true when this response ejected it.
   */
  markBackendResponse(slot: number, status: number, limit: number, now: number, baseMs: number, maxMs: number): boolean {
    const at = this.stateBase + slot * BACKEND_STATE.length;
    const s = this.slots;
    if (status < 500) {
      if (s[at + S_5XX] !== 0 || s[at + S_EJECTED_5XX] !== 0) {
        s[at + S_5XX] = 0;
        s[at + S_EJECTED_5XX] = 0;
        s[at + S_FAILURES] = 0;
      }
      return false;
    }
    if (limit === 0) return false;
    const run = s[at + S_5XX]! + 1;
    if (run < limit && s[at + S_EJECTED_5XX] === 0) {
      s[at + S_5XX] = run;
      return false;
    }
    s[at + S_5XX] = 0;
    s[at + S_EJECTED_5XX] = 1;
    this.markBackendFailure(slot, now, baseMs, maxMs);
    return true;
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
    for (let w = 0; w < this.layout.workerCapacity; w++) sum += this.slots[w * stride + C[name]]!;
    return sum;
  }

  /** TLS handshakes on client listener `listener` that ended with `outcome`, summed over workers. */
  tlsHandshakeTotal(listener: number, outcome: TlsOutcome): number {
    if (listener < 0 || listener >= MAX_LISTENERS) return 0;
    const stride = workerBlockSlots(this.layout);
    const off = tlsOffset(this.layout, listener, outcome);
    let sum = 0;
    for (let w = 0; w < this.layout.workerCapacity; w++) sum += this.slots[w * stride + off]!;
    return sum;
  }

  /** Route tokens sealed under key `keyId`, summed over workers. */
  keySealedTotal(keyId: number): number {
    const stride = workerBlockSlots(this.layout);
    const off = keySealedOffset(this.layout, keyId);
    let sum = 0;
    for (let w = 0; w < this.layout.workerCapacity; w++) sum += this.slots[w * stride + off]!;
    return sum;
  }

  backendTotal(slot: number, name: BackendCounter): number {
    const stride = workerBlockSlots(this.layout);
    const off = GLOBAL_COUNTERS.length + slot * PER_BACKEND + B[name];
    let sum = 0;
    for (let w = 0; w < this.layout.workerCapacity; w++) sum += this.slots[w * stride + off]!;
    return sum;
  }

  backendDownUntil(slot: number): number {
    return this.slots[workerBlockSlots(this.layout) * this.layout.workerCapacity + slot * BACKEND_STATE.length]!;
  }

  private stateAt(slot: number): number {
    return workerBlockSlots(this.layout) * this.layout.workerCapacity + slot * BACKEND_STATE.length;
  }

  backendState(slot: number): { downUntil: number; failures: number; errors5xx: number; ejected5xx: boolean; unavailable: number; drainUntil: number } {
    const at = this.stateAt(slot);
    const s = this.slots;
    return { downUntil: s[at + S_DOWN_UNTIL]!, failures: s[at + S_FAILURES]!, errors5xx: s[at + S_5XX]!, ejected5xx: s[at + S_EJECTED_5XX] === 1, unavailable: s[at + S_UNAVAILABLE]!, drainUntil: s[at + S_DRAIN_UNTIL]! };
  }

  /** The backend's upstream latency histogram over all workers: cumulative bucket counts (+Inf last), sum in ms. */
  backendLatency(slot: number): { buckets: number[]; sumMs: number } {
    const stride = workerBlockSlots(this.layout);
    const off = GLOBAL_COUNTERS.length + slot * PER_BACKEND + BACKEND_COUNTERS.length;
    const buckets = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
    let sumMs = 0;
    for (let w = 0; w < this.layout.workerCapacity; w++) {
      const at = w * stride + off;
      for (let i = 0; i <= LATENCY_BOUNDS_MS.length; i++) buckets[i]! += this.slots[at + i]!;
      sumMs += this.slots[at + LATENCY_SLOTS - 1]!;
    }
    for (let i = 1; i < buckets.length; i++) buckets[i]! += buckets[i - 1]!;
    return { buckets, sumMs };
  }

  /**
   * Why the backend is down now, first cause first — 'check' (active health check), 'lost'
   * (missed heartbeats), 'ejected' (passive backoff) — or null when it may take requests.
   * One definition for the API, the dashboard and /metrics.
   */
  downCause(slot: number, now: number): 'check' | 'lost' | 'ejected' | null {
    const at = this.stateAt(slot);
    const unavailable = this.slots[at + S_UNAVAILABLE]!;
    if (unavailable & UNAVAILABLE_CHECK) return 'check';
    if (unavailable & UNAVAILABLE_LOST) return 'lost';
    return this.slots[at + S_DOWN_UNTIL]! > now ? 'ejected' : null;
  }

  /** Orchestrator only: raise or clear `bit` of a backend's `unavailable` word. */
  setUnavailable(slot: number, bit: number, on: boolean): void {
    const at = this.stateAt(slot) + S_UNAVAILABLE;
    const v = this.slots[at]!;
    this.slots[at] = on ? v | bit : v & ~bit;
  }

  /** Orchestrator only: 0 = not draining; else sticky sessions keep going until this time (ms; Infinity: no deadline). */
  setDrainUntil(slot: number, until: number): void {
    this.slots[this.stateAt(slot) + S_DRAIN_UNTIL] = until;
  }

  /** Orchestrator only: the backend's agent holds (or lost) a control connection. */
  setControlConnected(slot: number, on: boolean): void {
    this.slots[this.stateAt(slot) + S_CONTROL] = on ? 1 : 0;
  }

  /** A slot handed to a new backend starts clean: its old counters and state are zeroed. */
  resetBackend(slot: number): void {
    const stride = workerBlockSlots(this.layout);
    for (let w = 0; w < this.layout.workerCapacity; w++) {
      const off = w * stride + GLOBAL_COUNTERS.length + slot * PER_BACKEND;
      for (let k = 0; k < PER_BACKEND; k++) this.slots[off + k] = 0;
    }
    const at = this.stateAt(slot);
    for (let k = 0; k < BACKEND_STATE.length; k++) this.slots[at + k] = 0;
  }

  /** One worker's value of a global counter (to show how work spreads over workers). */
  workerTotal(workerIndex: number, name: GlobalCounter): number {
    return this.slots[workerIndex * workerBlockSlots(this.layout) + C[name]]!;
  }

  routeTotal(route: number, name: RouteCounter): number {
    if (route < 0 || route >= (this.layout.routeCapacity ?? 0)) return 0;
    const stride = workerBlockSlots(this.layout);
    const off = routeOffset(this.layout, route, name);
    let sum = 0;
    for (let w = 0; w < this.layout.workerCapacity; w++) sum += this.slots[w * stride + off]!;
    return sum;
  }

  /** A dead worker's gauges would stay raised forever: zero them before its replacement starts. */
  clearGauges(workerIndex: number): void {
    const base = workerIndex * workerBlockSlots(this.layout);
    this.slots[base + C.active_requests] = 0;
    this.slots[base + C.passthrough_active] = 0;
    for (let s = 0; s < this.layout.backendCapacity; s++) {
      this.slots[base + GLOBAL_COUNTERS.length + s * PER_BACKEND + B.active] = 0;
    }
  }
}
