// Observability hooks on node:diagnostics_channel (as undici publishes its own): subscribe in
// each worker thread with a preloaded module, `NODE_OPTIONS="--require ./hooks.cjs" tether …`
// (README "Diagnostics channels"). Messages are built only while a channel has subscribers, so
// an unobserved Tether pays one property read per event.
import diagnostics from 'node:diagnostics_channel';
import type { Failure } from './failure.js';

/** A request entered the HTTP path (its head read and routed). */
export interface RequestStartMessage {
  worker: number;
  method: string;
  target: string;
  pool: string;
  client: string;
}

/** A request's response ended (or the request was answered by Tether itself, or the client left). */
export interface RequestEndMessage extends RequestStartMessage {
  /** The status sent (0: none was, the client left first). */
  status: number;
  /** The backend that served it ('' when none did). */
  backend: string;
  /** The failure that ended it, if one did. */
  failure: Failure | null;
  durationMs: number;
}

/** How the request's session routed it, once the serving backend is known. */
export interface StickyDecisionMessage {
  worker: number;
  pool: string;
  /** hit: the session's backend served; failover: another did; miss: no session; invalid: a token that did not open; none: the pool does not stick. */
  outcome: 'hit' | 'failover' | 'miss' | 'invalid' | 'none';
  /** The backend the session named ('' when none). */
  sessionBackend: string;
}

/** A backend failed a request or a passthrough connection (it may be retried on another). */
export interface UpstreamFailureMessage {
  worker: number;
  protocol: 'http' | 'passthrough';
  pool: string;
  backend: string;
  address: string;
  failure: Failure;
  /** Attempt number of this request or connection (1 = first). */
  attempt: number;
}

export const channels = {
  requestStart: diagnostics.channel('tether:request:start'),
  requestEnd: diagnostics.channel('tether:request:end'),
  stickyDecision: diagnostics.channel('tether:sticky:decision'),
  upstreamFailure: diagnostics.channel('tether:upstream:failure'),
} as const;
