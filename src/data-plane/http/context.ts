// What every phase of the HTTP path shares: the worker's context, and the per-request sticky
// and session state that the phases fill in and the exchange carries to the response.
import type { RouteTokens } from '../../sticky/route-token.js';
import type { Terminal } from '../../sticky/binding.js';
import type { SessionStore } from '../../sticky/sessions.js';
import type { WorkerCounters } from '../../shared-memory/counters.js';
import type { AccessLog } from '../access-log.js';
import type { Runtime } from '../runtime.js';
import type { ActiveExchanges } from './active-exchanges.js';

export interface ListenerContext {
  runtime: () => Runtime;
  tokens: RouteTokens;
  counters: WorkerCounters;
  /** In-flight exchanges, swept for deadlines. */
  active: ActiveExchanges;
  log: (level: 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** --access-log: one line per completed request; null when off. */
  accessLog?: AccessLog | null;
  workerIndex?: number;
  /** The shared session table (learn mode, bindings, revocations); null in tests that need none. */
  sessions: SessionStore | null;
}

/** How the request body is framed on its way to the backend. */
export const enum Body { None, Length, Chunked }

/** Sticky outcome of reading the request's route token (or its learned session). */
export interface StickyDecision {
  /** Backend index the token (or the learned session) named, or -1. */
  tokenBackend: number;
  /** Token presented was valid but old enough to refresh. */
  refresh: boolean;
  /** The valid token presented ('' if none): its binding, for the terminal check. */
  token: string;
  tokenFlags: number;
  tokenTag: Buffer | null;
  /** A token was presented but could not be used (for the access log). */
  invalid: boolean;
}

/** What the response side needs from the request's session handling. */
export interface SessionContext {
  /** The requester's terminal under the pool's binding policy (null when the pool binds nothing). */
  terminal: Terminal | null;
  /** The application session ids the request carried (learn/prefix modes), to forget on a deleting Set-Cookie. */
  values: string[];
}

export const NO_SESSION: SessionContext = Object.freeze({ terminal: null, values: [] as string[] }) as SessionContext;

