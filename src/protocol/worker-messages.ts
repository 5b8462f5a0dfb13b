// Messages between the orchestrator and worker threads: versioned, discriminated unions,
// msgpackr-encoded. Hot per-request state never travels here; it lives in shared memory.
import { pack, unpack } from 'msgpackr';
import type { BackendConfig, Config } from '../config/schema.js';
import type { KeyRing } from './key-ring.js';
import type { SharedLayout } from '../shared-memory/counters.js';

const PROTOCOL_VERSION = 1;

/** Where each backend's counters and health live in shared memory (by pool, then id). */
export type BackendSlots = Record<string, Record<string, number>>;

export interface WorkerInit {
  workerIndex: number;
  config: Config;
  keyRing: KeyRing;
  slots: BackendSlots;
  /** Registry version of config.pools' backend lists. */
  backendsVersion: number;
  /** Counter slot of each config.passthrough.routes entry (see RouteSlots). */
  routeSlots: number[];
  layout: SharedLayout;
  shared: SharedArrayBuffer;
  /** The shared session table (src/shared-memory/table.ts) and the key its fingerprints derive from. */
  table: SharedArrayBuffer;
  sessionKey: Uint8Array;
  /** Authorization handshake keys (null: off): terminal keys by user, agent (server) keys by pool ('*': any). */
  authz: { terminalKeys: [string, Uint8Array][]; serverKeys: [string, Uint8Array][] } | null;
  /** 48 bytes every worker encrypts TLS session tickets with, so a session resumes on any worker. */
  ticketKeys: Uint8Array;
}

/** A sealed authorization grant for the orchestrator to push to pool/id over its control connection. */
export interface GrantToPush {
  pool: string;
  id: string;
  f: Uint8Array;
  box: Uint8Array;
}

/** A registry snapshot: every pool's backends (in order) and their shared-memory slots. */
interface BackendsSnapshot {
  version: number;
  /** The whole configuration (pools with these lists): present when sent to workers. */
  config?: Config;
  /** With config: the counter slot of each config.passthrough.routes entry. */
  routeSlots?: number[];
  pools: Record<string, BackendConfig[]>;
  slots: BackendSlots;
}

export type ToWorker =
  | { v: 1; type: 'key-ring'; keyRing: KeyRing }
  | { v: 1; type: 'backends'; snapshot: BackendsSnapshot }
  | { v: 1; type: 'terminal-keys'; keys: [string, Uint8Array][] }
  /** Reopen the access log at dest (rotation, or a reload's new path); null: stop logging. */
  | { v: 1; type: 'access-log'; dest: string | null; generation: number }
  /** Read the HTTPS certificates again (a reload checked them): they serve the next handshakes. */
  | { v: 1; type: 'certificates'; tls: Config['tls']; generation: number }
  | { v: 1; type: 'shutdown'; drainMs: number };

export type FromWorker =
  | { v: 1; type: 'listening'; workerIndex: number; ports: number[] }
  | { v: 1; type: 'listen-failed'; workerIndex: number; address: string }
  | { v: 1; type: 'drained'; workerIndex: number }
  | { v: 1; type: 'backends-applied'; workerIndex: number; version: number }
  | { v: 1; type: 'access-log-applied'; workerIndex: number; generation: number }
  /** A certificate reload carried out (or, `ok` false, failed: the worker keeps the ones it had). */
  | { v: 1; type: 'certificates-applied'; workerIndex: number; generation: number; ok: boolean }
  /** Authorization grants sealed this event-loop turn, in order: one message for all of them. */
  | { v: 1; type: 'grants'; grants: GrantToPush[] }
  | { v: 1; type: 'log'; level: 'info' | 'warn' | 'error'; msg: string; fields?: Record<string, unknown> };

export function encode(msg: ToWorker | FromWorker): Uint8Array {
  return pack(msg);
}

/** Decodes and checks the version; unknown versions are rejected, not guessed at. */
export function decode<T extends ToWorker | FromWorker>(data: unknown): T {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data as ArrayBuffer);
  const msg = unpack(bytes) as { v?: unknown; type?: unknown };
  if (msg?.v !== PROTOCOL_VERSION || typeof msg.type !== 'string') {
    throw new Error(`expected a v${PROTOCOL_VERSION} message but received ${JSON.stringify(msg).slice(0, 80)}`);
  }
  return msg as T;
}
