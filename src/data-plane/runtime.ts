// A worker's view of the configuration, compiled for the request path: routes as an ordered
// list, pools with their backends, balancer, sticky settings and precomputed strings, and
// the route-token codec. Built once per snapshot; the request path only reads it.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Config, PoolConfig, RouteConfig } from '../config/schema.js';
import { createStickyMode, type StickyMode } from '../sticky/modes/index.js';
import { createBalancer, type Balancer } from './balancers/index.js';
import type { BackendSlots } from '../protocol/worker-messages.js';
import type { WorkerCounters } from '../shared-memory/counters.js';
import type { UpstreamConnection } from './upstream/pool.js';
import { parseBindPolicy, TerminalCache, type BindPolicy } from '../sticky/binding.js';
import { backendRef, type SessionStore } from '../sticky/sessions.js';
import type { Fingerprinter } from '../shared-memory/fingerprint.js';
import { parseCidr, TrustedProxies, type Cidr } from './forwarding.js';

/** How a backend over TLS is connected to: SNI, and what its certificate is verified against. */
export interface BackendTls {
  readonly servername: string;
  readonly rejectUnauthorized: boolean;
  /** --backend-ca's certificates; undefined: the system CAs. */
  readonly ca: Buffer | undefined;
  /** verify, servername and CA as one string: a pooled connection is reused only under the same terms. */
  readonly terms: string;
}

export interface BackendRuntime {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** null: plain HTTP. */
  readonly tls: BackendTls | null;
  readonly weight: number;
  /** Position in its pool's `backends` (what route tokens and balancers resolve to). */
  readonly index: number;
  /** Index of this backend's counters and health in shared memory. */
  readonly slot: number;
  /** Its reference in shared-table entries (learn mode): a hash of its ID. */
  readonly ref: number;
  readonly pool: PoolRuntime;
  /**
   * Idle keep-alive connections, most recently used last (LIFO keeps hot sockets hot). Shared
   * with the same backend in the next snapshot while its address stays the same.
   */
  readonly idle: UpstreamConnection[];
  /** Set when a newer snapshot dropped this backend or moved it: its connections are not pooled again. */
  retired: boolean;
}

export interface PoolRuntime {
  readonly name: string;
  readonly backends: BackendRuntime[];
  readonly byId: ReadonlyMap<string, number>;
  readonly balancer: Balancer;
  /**
   * May the balancer send a new session there (shared memory: not ejected, not down by checks
   * or lost heartbeats, not draining)? The balancer's `isUp`.
   */
  readonly isUp: (index: number) => boolean;
  /** May an existing sticky session keep going there (as isUp, but draining is fine until its deadline)? */
  readonly isRoutable: (index: number) => boolean;
  /** Consecutive 5xx responses that eject a backend (0: never). */
  readonly eject5xx: number;
  /** Passive-health backoff after a connect failure or an ejection: first, doubling up to max (ms). */
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  /** Round robin over backends that may take new sessions and hold a control connection (authorization grants). */
  readonly grantBalancer: Balancer;
  /** How requests of this pool carry their session (src/sticky/modes/). */
  readonly mode: StickyMode;
  /** Lower-cased header or cookie the consistent hash reads, or null for the client IP. */
  readonly hashHeader: string | null;
  readonly hashCookie: string | null;
  /** Session ↔ terminal binding policy, and this thread's terminals under it. */
  readonly bind: BindPolicy;
  readonly terminals: TerminalCache;
  /** The policy as configured (a reload keeps `terminals` only when this is unchanged). */
  readonly bindText: string;
  /** Fingerprints of application session ids and of route tokens, for the shared table (null without one). */
  readonly sessionFp: Fingerprinter | null;
  readonly tokenFp: Fingerprinter | null;
  /** Backend reference (table entries) → index. */
  readonly byRef: ReadonlyMap<number, number>;
  /** Strict-Transport-Security value for responses over HTTPS (`max-age=N`), or null. */
  readonly hsts: string | null;
}

interface CompiledRoute {
  readonly host: string | null;
  readonly pathPrefix: string;
  readonly pool: PoolRuntime;
}

export class Runtime {
  readonly pools = new Map<string, PoolRuntime>();
  private readonly routes: CompiledRoute[];
  /** Where requests go when no route matches (the pool named `default`, else the first). */
  readonly defaultPool: PoolRuntime;
  /** False when every request goes to the default pool: the Host header need not be parsed. */
  readonly hasRoutes: boolean;
  /** --trusted-proxies: whose forwarding headers are believed. */
  readonly trustedProxies: TrustedProxies;

  /**
   * `previous`: the snapshot this one replaces (registry changes). A backend whose pool, ID,
   * address and port are unchanged keeps its idle connections; see `Runtime.retire`.
   */
  constructor(
    readonly config: Config,
    slots: BackendSlots,
    counters: WorkerCounters,
    now: () => number = Date.now,
    sessions: SessionStore | null = null,
    previous: Runtime | null = null,
  ) {
    // --backend-ca is read once per snapshot, and only when a backend speaks TLS (the main thread checked it).
    const anyTls = Object.values(config.pools).some((pc) => pc.backends.some((b) => b.tls !== null));
    const caBytes = anyTls && config.tls.backendCa ? readFileSync(config.tls.backendCa) : undefined;
    const ca = caBytes === undefined ? null : { bytes: caBytes, hash: createHash('sha256').update(caBytes).digest('hex') };
    for (const [name, pc] of Object.entries(config.pools)) {
      this.pools.set(name, buildPool(name, pc, slots[name] ?? {}, config.tokenMaxAgeSec, counters, now, sessions, previous?.pools.get(name) ?? null, ca));
    }
    const first = this.pools.get('default') ?? this.pools.values().next().value;
    if (!first) throw new Error('expected at least one pool in the configuration');
    this.defaultPool = first;
    this.routes = compileRoutes(config.routes, this.pools);
    this.hasRoutes = this.routes.length > 0;
    // The schema validated every entry; a config built without it (tests) gets the same check.
    this.trustedProxies = new TrustedProxies(
      config.trustedProxies.map((t) => {
        const c = parseCidr(t);
        if (typeof c === 'string') throw new Error(c);
        return c as Cidr;
      }),
    );
  }

  /**
   * Backends of `previous` this snapshot dropped or moved, now marked retired: the caller closes
   * their idle connections (in-flight ones finish, then close instead of returning to a pool).
   */
  static retire(previous: Runtime, next: Runtime): BackendRuntime[] {
    const out: BackendRuntime[] = [];
    for (const [name, pool] of previous.pools) {
      const nextPool = next.pools.get(name);
      for (const b of pool.backends) {
        const i = nextPool?.byId.get(b.id);
        if (i === undefined || nextPool!.backends[i]!.idle !== b.idle) {
          b.retired = true;
          out.push(b);
        }
      }
    }
    return out;
  }

  /** Host (without port, lower-case) and path → pool. First match in specificity order; otherwise the default pool. */
  route(host: string, path: string): PoolRuntime {
    for (const r of this.routes) {
      if (r.host !== null && r.host !== host) continue;
      if (path.startsWith(r.pathPrefix)) return r.pool;
    }
    return this.defaultPool;
  }
}

function compileRoutes(routes: readonly RouteConfig[], pools: Map<string, PoolRuntime>): CompiledRoute[] {
  const compiled = routes.map((r) => ({ host: r.host?.toLowerCase() ?? null, pathPrefix: r.pathPrefix, pool: pools.get(r.pool)! }));
  // Host-specific before host-less, then longer prefixes first; otherwise as written.
  return compiled
    .map((r, i) => ({ r, i }))
    .sort((a, b) => Number(a.r.host === null) - Number(b.r.host === null) || b.r.pathPrefix.length - a.r.pathPrefix.length || a.i - b.i)
    .map((x) => x.r);
}

function buildPool(
  name: string,
  pc: PoolConfig,
  slots: Record<string, number>,
  tokenMaxAgeSec: number,
  counters: WorkerCounters,
  now: () => number,
  sessions: SessionStore | null,
  previous: PoolRuntime | null,
  ca: { bytes: Buffer; hash: string } | null,
): PoolRuntime {
  const backends: BackendRuntime[] = [];
  const [hashKind, hashName] = pc.balance.hashOn.split(':') as [string, string | undefined];
  const bind = bindPolicy(pc.bind);
  const pool: PoolRuntime = {
    name,
    backends,
    byId: new Map(pc.backends.map((b, i) => [b.id, i])),
    balancer: undefined as unknown as Balancer,
    grantBalancer: undefined as unknown as Balancer,
    isUp: (i) => counters.backendPickable(backends[i]!.slot, now()),
    isRoutable: (i) => counters.backendRoutable(backends[i]!.slot, now()),
    eject5xx: pc.passive.consecutive5xx,
    backoffMs: pc.passive.backoffMs,
    maxBackoffMs: pc.passive.maxBackoffMs,
    mode: createStickyMode(pc.sticky, tokenMaxAgeSec),
    hashHeader: hashKind === 'header' ? hashName!.toLowerCase() : null,
    hashCookie: hashKind === 'cookie' ? hashName! : null,
    bind,
    // What this thread knows of its terminals holds while the policy is the same (a reload may change it).
    terminals: previous && previous.bindText === pc.bind ? previous.terminals : new TerminalCache(bind),
    bindText: pc.bind,
    sessionFp: sessions?.fingerprinter(name, 'session') ?? null,
    tokenFp: sessions?.fingerprinter(name, 'token') ?? null,
    byRef: new Map(),
    hsts: pc.hstsSec === null ? null : `max-age=${pc.hstsSec}`,
  };
  const refs = pool.byRef as Map<number, number>;
  for (const b of pc.backends) {
    const slot = slots[b.id];
    if (slot === undefined) throw new Error(`backend ${name}/${b.id} has no shared-memory slot`);
    const ref = backendRef(b.id);
    const clash = refs.get(ref);
    if (clash !== undefined) throw new Error(`backends ${name}/${pc.backends[clash]!.id} and ${name}/${b.id} have the same table reference: rename one`);
    refs.set(ref, backends.length);
    const tls: BackendTls | null = b.tls === null ? null : {
      servername: b.tls.servername ?? b.address,
      rejectUnauthorized: b.tls.verify,
      ca: ca?.bytes,
      terms: `${b.tls.verify}|${b.tls.servername ?? b.address}|${ca?.hash ?? ''}`,
    };
    const before = previous?.backends[previous.byId.get(b.id) ?? -1];
    const sameTerms = (before?.tls?.terms ?? null) === (tls?.terms ?? null);
    const idle = before && !before.retired && before.host === b.address && before.port === b.port && before.slot === slot && sameTerms ? before.idle : [];
    backends.push({ id: b.id, host: b.address, port: b.port, tls, weight: b.weight, index: backends.length, slot, ref, pool, idle, retired: false });
  }
  (pool as { balancer: Balancer }).balancer = createBalancer(
    pc.balance.algorithm,
    backends.map((b) => ({ id: b.id, weight: b.weight })),
    {
      isUp: pool.isUp,
      active: (i) => counters.backendActive(backends[i]!.slot),
    },
  );
  (pool as { grantBalancer: Balancer }).grantBalancer = createBalancer(
    'round-robin',
    backends.map((b) => ({ id: b.id, weight: b.weight })),
    {
      isUp: (i) => pool.isUp(i) && counters.backendControlled(backends[i]!.slot),
      active: (i) => counters.backendActive(backends[i]!.slot),
    },
  );
  return pool;
}

function bindPolicy(text: string): BindPolicy {
  const p = parseBindPolicy(text);
  if (typeof p === 'string') throw new Error(p); // the schema already refused it
  return p;
}
