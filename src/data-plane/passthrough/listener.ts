// The TLS passthrough path of one worker (README "TLS passthrough"): accept on an SO_REUSEPORT
// socket shared with the other workers, and hand each client to a PassthroughConnection
// (./connection.ts), which buffers until the whole ClientHello is in (capped, with a deadline),
// parses it natively, routes by SNI and ALPN (./client-hello.ts), connects to a backend of the
// route's pool, optionally sending a PROXY v2 header (./upstream-connect.ts), then relays both
// ways with backpressure and half-close until both sides are done or the connection goes idle.
// TLS is never terminated; no key is ever held. Bad input is closed and counted, never left
// waiting.
//
// This file owns what the connections share: the live set, the worker's read buffer, and the
// sweep. Every deadline (ClientHello, connect, idle, linger after a refusal) is one number on a
// connection, checked by a sweep over the live connections every `tick` ms: no timer per
// connection. Deadlines therefore fire up to one tick late; the tick is a tenth of the
// shortest configured deadline, between 5 and 100 ms.
import type { Config, PassthroughConfig } from '../../config/schema.js';
import type { Runtime } from '../runtime.js';
import { C, type WorkerCounters } from '../../shared-memory/counters.js';
import { compileSniRoutes, type SniRouter } from './router.js';
import { LINGER_MS, PassthroughConnection, READ_BUFFER_BYTES, type ConnectionShared } from './connection.js';
import * as tcp from './raw-tcp.js';
import type { TcpHandle } from './raw-tcp.js';
import type { ClientHelloStatus } from '../../native/index.js';

/** node:net's default accept backlog. */
const BACKLOG = 511;

/** What the ClientHello parser found: routing needs only the status, SNI and ALPN. */
export interface ClientHelloInfo {
  status: ClientHelloStatus;
  sni?: string | null;
  alpn?: string[];
  reason?: string;
}

export type ParseClientHello = (bytes: Uint8Array, maxBytes: number) => ClientHelloInfo;

/**
 * The routes and limits in force, replaced whole by a reload. A connection keeps the set it was
 * accepted under, so a reload never changes the rules halfway through a ClientHello.
 */
export interface RouteSet {
  readonly config: PassthroughConfig;
  readonly router: SniRouter;
  /** Shared-memory counter slot of each route (stable across reloads for the same route). */
  readonly slots: readonly number[];
}

/** The routes of `config` compiled for lookup; throws when the counter slots do not match them one for one. */
export function compileRouteSet(config: PassthroughConfig, slots: readonly number[]): RouteSet {
  if (slots.length !== config.routes.length) throw new Error(`passthrough: ${config.routes.length} routes but ${slots.length} counter slots`);
  return { config, router: compileSniRoutes(config.routes), slots };
}

/** What the worker gives its passthrough listener. */
export interface PassthroughContext {
  /** At start: the listen addresses. */
  config: Config;
  runtime: () => Runtime;
  /** The current routes (a reload swaps the set). */
  routes: () => RouteSet;
  counters: WorkerCounters;
  parse: ParseClientHello;
  /** Opens this worker's SO_REUSEPORT socket on the address (native). */
  openListener: (host: string, port: number) => number;
  log: (level: 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** This worker's index (diagnostics messages). */
  workerIndex?: number;
}

export interface Passthrough {
  /** Stops accepting; resolves once every relayed connection has ended or `drainMs` passed (then cut). */
  close(drainMs: number): Promise<void>;
  readonly active: number;
}

/** Sweep period: a tenth of the shortest deadline, within [5, 100] ms. */
export function sweepTickMs(deadlinesMs: readonly number[]): number {
  return Math.min(100, Math.max(5, Math.floor(Math.min(...deadlinesMs) / 10)));
}

/**
 * Listens on every `passthrough.listen` address of the configuration and relays what it
 * accepts. Resolves once all are listening; rejects, with none left open, when one cannot be.
 */
export function startPassthrough(ctx: PassthroughContext): Promise<Passthrough> {
  const counters = ctx.counters;
  const tickFor = (set: RouteSet) => sweepTickMs([set.config.clientHelloTimeoutMs, ctx.runtime().config.timeouts.connectMs, set.config.idleTimeoutMs, LINGER_MS]);
  // Idle and small connections read into one buffer for the whole worker, not into the fresh
  // 64 KiB allocation Node makes per read otherwise (see ConnectionShared.readBuffer).
  const shared: ConnectionShared = {
    ctx,
    counters,
    readBuffer: Buffer.allocUnsafeSlow(READ_BUFFER_BYTES),
    live: [],
    onEmpty: null,
  };
  const live = shared.live;

  /** Accepted: counted, tracked in the live set, and read from (a failed start closes it). */
  const onConnection = (status: number, client: TcpHandle | undefined): void => {
    // A failed accept (EMFILE, ECONNABORTED) leaves nothing to clean up.
    if (status !== 0 || client === undefined) return;
    counters.inc(C.passthrough_connections);
    counters.inc(C.passthrough_active);
    // No setNoDelay: the listening socket has TCP_NODELAY (native/src/listen_socket.cc), and
    // an accepted socket inherits it.
    const conn = new PassthroughConnection(shared, client, Date.now());
    conn.index = live.length;
    live.push(conn);
    if (client.readStart() !== 0) conn.close();
  };

  /** Every tick: each connection's deadline checked, and the tick kept to the current routes. */
  const sweep = (): void => {
    const now = Date.now();
    // Backwards: close() moves the last connection into the closed one's slot.
    for (let i = live.length - 1; i >= 0; i--) live[i]!.onSweep(now);
    // A reload may have shortened a deadline: the sweep keeps to a tenth of the shortest.
    const set = ctx.routes();
    if (set !== sweptFor) {
      sweptFor = set;
      const next = tickFor(set);
      if (next !== tick) {
        tick = next;
        clearInterval(sweeper);
        sweeper = setInterval(sweep, tick);
        sweeper.unref();
      }
    }
  };
  let sweptFor = ctx.routes();
  let tick = tickFor(sweptFor);
  let sweeper = setInterval(sweep, tick);
  sweeper.unref();

  const servers: TcpHandle[] = [];
  try {
    for (const addr of ctx.config.passthrough.listen) {
      // listenOnFd owns the fd from here, on success and on failure.
      servers.push(tcp.listenOnFd(ctx.openListener(addr.host, addr.port), BACKLOG, onConnection));
    }
  } catch (err) {
    for (const s of servers) s.close();
    clearInterval(sweeper);
    return Promise.reject(err);
  }

  return Promise.resolve({
    get active() {
      return live.length;
    },
    close(drainMs: number): Promise<void> {
      for (const s of servers.splice(0)) s.close();
      return new Promise<void>((resolve) => {
        const done = () => {
          shared.onEmpty = null;
          clearTimeout(cut);
          clearInterval(sweeper);
          resolve();
        };
        const cut = setTimeout(() => {
          for (let i = live.length - 1; i >= 0; i--) live[i]!.close();
          done();
        }, drainMs);
        if (live.length === 0) done();
        else shared.onEmpty = done;
      });
    },
  });
}
