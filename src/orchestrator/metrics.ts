// Prometheus metrics, read from the workers' shared-memory counters at scrape time: the data
// path never sends a message per request, and a scrape costs a sum over a few slots.
import { REFUSAL_REASONS } from '../data-plane/front-door/refusals.js';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LATENCY_BOUNDS_MS, TOKEN_KEY_IDS, type CounterReader, type GlobalCounter } from '../shared-memory/counters.js';
import type { KeyRing } from '../protocol/key-ring.js';
import type { TableStats } from '../shared-memory/table.js';
import { VERSION } from '../version.js';

export interface MetricSources {
  reader: CounterReader;
  /** Current backends and their shared-memory slots (the registry's, so it follows changes). */
  backends(): readonly { pool: string; id: string; slot: number; checkDown: boolean; lost: boolean; draining: boolean }[];
  /** Control plane: address conflicts refused, and control frames by outcome. */
  addressConflicts(): number;
  controlFrames(): Readonly<Record<string, number>>;
  /** Authorization grants whose server had no control connection when they were pushed. */
  grantsUndeliverable(): number;
  workerRestarts(): number;
  workersRunning(): number;
  keyReloads(): number;
  keyRing(): KeyRing;
  workerCount: number;
  /** Client connections established to the HTTP listeners now (null: cannot tell here). */
  httpConnections: () => Promise<number | null>;
  /** The passthrough routes in force and the counter slot of each. */
  passthroughRoutes: () => readonly { sni: string; pool: string; slot: number }[];
  table(): TableStats;
}

/** A counter whose value is read from somewhere else at scrape time. */
function mirroredCounter(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A counter with one label whose values are read, one shared-memory counter each, at scrape time. */
function mirroredByLabel(registry: Registry, name: string, help: string, label: string, values: readonly [string, () => number][]): void {
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [value, read] of values) this.inc({ [label]: value }, read());
    },
  });
}

export function createMetrics(src: MetricSources): { text(): Promise<string>; contentType: string } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tether_process_' });
  const r = src.reader;
  const simple: [string, GlobalCounter, string][] = [
    ['tether_requests_total', 'requests', 'HTTP requests received'],
    ['tether_bad_requests_total', 'bad_requests', 'Requests refused with 400 (malformed or ambiguous framing)'],
    ['tether_no_backend_total', 'no_backend', 'Requests answered 503 because no backend was up'],
    ['tether_upstream_connect_errors_total', 'upstream_connect_errors', 'Backend connections refused, reset or timed out'],
    ['tether_upstream_timeouts_total', 'upstream_timeouts', 'Backend responses that missed their deadline (504 or cut)'],
    ['tether_upstream_protocol_errors_total', 'upstream_protocol_errors', 'Backend responses that were malformed or ended early'],
    ['tether_upstream_retries_total', 'upstream_retries', 'Requests retried on another connection or backend'],
    ['tether_upstream_connections_opened_total', 'upstream_connections_opened', 'New backend connections (keep-alive misses)'],
    ['tether_client_aborts_total', 'client_aborts', 'Clients that went away before their response finished'],
    ['tether_client_timeouts_total', 'client_timeouts', 'Responses cut because the client stopped reading for --idle-timeout'],
    ['tether_tokens_issued_total', 'tokens_issued', 'Route tokens issued (new, failed over or refreshed)'],
    ['tether_tokens_v1_presented_total', 'tokens_v1_presented', 'Requests that presented a valid format-v1 route token (from before the upgrade; answered with a v2 token)'],
    ['tether_sessions_learned_total', 'sessions_learned', 'Application sessions recorded from a backend Set-Cookie (learn mode, or bound prefix-mode sessions)'],
    ['tether_sessions_forgotten_total', 'sessions_forgotten', 'Sessions removed because the backend expired their cookie'],
    ['tether_backend_route_cookie_dropped_total', 'backend_route_cookie_dropped', 'Set-Cookie for Tether\'s own cookie (or Tether\'s token header) sent by a backend: dropped, so the client keeps one route'],
    ['tether_binding_unverifiable_total', 'binding_unverifiable', 'Sessions presented without a terminal recorded under the pool\'s current policy (let through)'],
  ];
  for (const [name, counter, help] of simple) mirroredCounter(registry, name, help, () => r.total(counter));

  const total = (counter: GlobalCounter) => () => r.total(counter);
  mirroredByLabel(registry, 'tether_responses_total', 'Responses sent to clients, by status class', 'class',
    (['1xx', '2xx', '3xx', '4xx', '5xx'] as const).map((c) => [c, total(`responses_${c}`)]));
  mirroredByLabel(
    registry,
    'tether_sticky_total',
    'Sticky routing outcomes: hit (token routed), miss (no token), failover (token backend down), invalid_* (token ignored), backend_unknown',
    'outcome',
    [
      ['hit', total('sticky_hits')],
      ['miss', total('sticky_misses')],
      ['failover', total('sticky_failovers')],
      ['invalid_malformed', total('sticky_invalid_malformed')],
      ['invalid_unknown_key', total('sticky_invalid_unknown_key')],
      ['invalid_forged', total('sticky_invalid_forged')],
      ['invalid_expired', total('sticky_invalid_expired')],
      ['invalid_old_format', total('sticky_invalid_old_format')],
      ['backend_unknown', total('sticky_backend_unknown')],
    ],
  );
  mirroredByLabel(
    registry,
    'tether_front_door_refusals_total',
    'Requests refused by the HTTP front door before routing (400/405/408/431/505, or closed for an HTTP/2 preface), by reason',
    'reason',
    REFUSAL_REASONS.map((reason) => [reason, total(`refused_${reason}`)]),
  );
  mirroredByLabel(registry, 'tether_learn_total', 'Learn-mode lookups of the first session cookie: hit (routed to the learned backend) or miss (not in the table)', 'outcome', [
    ['hit', total('learn_hits')],
    ['miss', total('learn_misses')],
  ]);
  mirroredByLabel(registry, 'tether_session_refusals_total', 'Requests refused with 403: a session presented from another terminal (terminal_mismatch) or revoked', 'reason', [
    ['terminal_mismatch', total('binding_refused_terminal')],
    ['revoked', total('binding_refused_revoked')],
  ]);
  new Gauge({
    name: 'tether_session_table_entries',
    help: 'Occupied slots of the shared session table (live and not yet reclaimed expired entries)',
    registers: [registry],
    collect() {
      this.set(src.table().occupied);
    },
  });
  new Gauge({
    name: 'tether_session_table_slots',
    help: 'Slots of the shared session table (twice its rated capacity)',
    registers: [registry],
    collect() {
      this.set(src.table().slots);
    },
  });
  mirroredCounter(registry, 'tether_session_table_evictions_total', 'Entries evicted from a full pair of buckets (the table is too small)', () => src.table().evictions);
  new Gauge({
    name: 'tether_http_connections',
    help: 'Client TCP connections established to the HTTP listeners (counted in the kernel socket table at scrape time; absent where it cannot be read)',
    registers: [registry],
    async collect() {
      const n = await src.httpConnections();
      if (n === null) this.reset();
      else this.set(n);
    },
  });
  new Gauge({
    name: 'tether_active_requests',
    help: 'Requests in flight',
    registers: [registry],
    collect() {
      this.set(r.total('active_requests'));
    },
  });
  const perBackend = (name: string, help: string, kind: 'counter' | 'gauge', read: (slot: number) => number) => {
    const Metric = kind === 'counter' ? Counter : Gauge;
    new Metric({
      name,
      help,
      labelNames: ['pool', 'backend'],
      registers: [registry],
      collect(this: Counter | Gauge) {
        this.reset();
        for (const b of src.backends()) {
          const v = read(b.slot);
          if (this instanceof Gauge) this.set({ pool: b.pool, backend: b.id }, v);
          else this.inc({ pool: b.pool, backend: b.id }, v);
        }
      },
    });
  };
  perBackend('tether_backend_requests_total', 'Requests completed per backend', 'counter', (s) => r.backendTotal(s, 'requests'));
  perBackend('tether_backend_connect_errors_total', 'Connect failures per backend', 'counter', (s) => r.backendTotal(s, 'connect_errors'));
  perBackend('tether_backend_active_requests', 'Requests in flight per backend', 'gauge', (s) => r.backendTotal(s, 'active'));
  perBackend('tether_backend_sessions_total', 'Sticky sessions started per backend (a token naming it issued to a request without one for it, or a new learned session)', 'counter', (s) => r.backendTotal(s, 'sessions'));
  perBackend('tether_backend_sticky_hits_total', 'Requests routed to the backend by their session (token or learned cookie) and served by it', 'counter', (s) => r.backendTotal(s, 'sticky_hits'));
  perBackend('tether_backend_up', '1 when the backend may take requests: not ejected (passive), not failing its health check, not lost (missed heartbeats)', 'gauge', (s) =>
    r.downCause(s, Date.now()) === null ? 1 : 0,
  );
  new Counter({
    name: 'tether_backend_responses_total',
    help: 'Final responses from each backend by status class (1xx-5xx); sum over backends for a pool',
    labelNames: ['pool', 'backend', 'class'],
    registers: [registry],
    collect() {
      this.reset();
      for (const b of src.backends()) {
        for (const cls of ['1xx', '2xx', '3xx', '4xx', '5xx'] as const) this.inc({ pool: b.pool, backend: b.id, class: cls }, r.backendTotal(b.slot, `responses_${cls}`));
      }
    },
  });
  perBackend('tether_backend_draining', '1 while the backend is draining (no new sessions)', 'gauge', (s) => (r.backendState(s).drainUntil !== 0 ? 1 : 0));
  new Gauge({
    name: 'tether_backend_health',
    help: 'Why a backend is down, one series per cause: check (active health check), lost (missed heartbeats), ejected (passive: connect failures or 5xx); 1 = that cause holds',
    labelNames: ['pool', 'backend', 'cause'],
    registers: [registry],
    collect() {
      this.reset();
      const now = Date.now();
      for (const b of src.backends()) {
        this.set({ pool: b.pool, backend: b.id, cause: 'check' }, b.checkDown ? 1 : 0);
        this.set({ pool: b.pool, backend: b.id, cause: 'lost' }, b.lost ? 1 : 0);
        this.set({ pool: b.pool, backend: b.id, cause: 'ejected' }, r.backendState(b.slot).downUntil > now ? 1 : 0);
      }
    },
  });
  mirroredCounter(registry, 'tether_backend_ejections_5xx_total', 'Backends ejected after a run of consecutive 5xx responses (passive health)', () => r.total('backend_ejections_5xx'));
  mirroredByLabel(
    registry,
    'tether_authz_total',
    'Authorization handshake outcomes: challenge_issued, granted; refusals bad_request, unknown_user, bad_proof, forged_challenge, stale_challenge, replayed (terminals see only "denied"), rate_limited, no_server',
    'outcome',
    (['challenge_issued', 'granted', 'bad_request', 'unknown_user', 'bad_proof', 'forged_challenge', 'stale_challenge', 'replayed', 'rate_limited', 'no_server'] as const).map((o): [string, () => number] => [o, total(`authz_${o}`)]),
  );
  mirroredCounter(registry, 'tether_access_log_dropped_total', 'Access log lines dropped because the destination could not keep up or failed', () => r.total('access_log_dropped'));
  mirroredCounter(registry, 'tether_authz_grants_undeliverable_total', 'Grants not pushed because the chosen server had lost its control connection', src.grantsUndeliverable);
  mirroredCounter(registry, 'tether_address_conflicts_total', 'Backend announcements or additions refused because another live backend holds the address', src.addressConflicts);
  new Counter({
    name: 'tether_control_frames_total',
    help: 'Control-channel frames by outcome: ok, or why dropped (bad_mac, stale, replayed, malformed, oversized, unknown_pool, bad_body, unknown_type, invalid, rate_limited)',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [result, n] of Object.entries(src.controlFrames())) this.inc({ result }, n);
    },
  });
  // TLS passthrough.
  const ptOutcomes: [string, GlobalCounter][] = [
    ['routed', 'passthrough_routed'],
    ['not_tls', 'passthrough_not_tls'],
    ['malformed', 'passthrough_malformed'],
    ['too_large', 'passthrough_too_large'],
    ['client_hello_timeout', 'passthrough_hello_timeouts'],
    ['no_route', 'passthrough_no_route'],
    ['no_backend', 'passthrough_no_backend'],
    ['upstream_connect_error', 'passthrough_upstream_connect_errors'],
  ];
  const byWorker = (counter: GlobalCounter) => Array.from({ length: src.workerCount }, (_, w): [string, () => number] => [String(w), () => r.workerTotal(w, counter)]);
  mirroredByLabel(registry, 'tether_worker_requests_total', 'HTTP requests received, by worker thread (how SO_REUSEPORT spread the connections)', 'worker', byWorker('requests'));
  mirroredByLabel(registry, 'tether_passthrough_connections_total', 'TLS passthrough connections accepted, by worker thread', 'worker', byWorker('passthrough_connections'));
  mirroredByLabel(
    registry,
    'tether_passthrough_outcomes_total',
    'What became of passthrough connections: routed to a backend, or closed (not_tls, malformed, too_large, client_hello_timeout, no_route, no_backend, upstream_connect_error)',
    'outcome',
    ptOutcomes.map(([outcome, counter]) => [outcome, total(counter)]),
  );
  mirroredCounter(registry, 'tether_passthrough_idle_timeouts_total', 'Relayed passthrough connections closed for being idle', () => r.total('passthrough_idle_timeouts'));
  new Gauge({
    name: 'tether_passthrough_active_connections',
    help: 'TLS passthrough connections open (reading a ClientHello, connecting or relaying)',
    registers: [registry],
    collect() {
      this.set(r.total('passthrough_active'));
    },
  });
  const perRoute = (name: string, help: string, read: (i: number) => number) =>
    new Counter({
      name,
      help,
      labelNames: ['sni', 'pool'],
      registers: [registry],
      collect() {
        this.reset();
        for (const route of src.passthroughRoutes()) this.inc({ sni: route.sni, pool: route.pool }, read(route.slot));
      },
    });
  perRoute('tether_passthrough_route_connections_total', 'Passthrough connections routed, per SNI route', (i) => r.routeTotal(i, 'connections'));
  perRoute('tether_passthrough_route_bytes_in_total', 'Bytes received from clients of closed relays, per SNI route', (i) => r.routeTotal(i, 'bytes_in'));
  perRoute('tether_passthrough_route_bytes_out_total', 'Bytes sent to clients of closed relays, per SNI route', (i) => r.routeTotal(i, 'bytes_out'));

  mirroredCounter(registry, 'tether_worker_restarts_total', 'Worker threads that died and were restarted', src.workerRestarts);
  mirroredCounter(registry, 'tether_key_reloads_total', 'Route-token key file reloads', src.keyReloads);
  new Gauge({
    name: 'tether_workers_running',
    help: 'Worker threads listening',
    registers: [registry],
    collect() {
      this.set(src.workersRunning());
    },
  });
  new Counter({
    name: 'tether_tokens_sealed_total',
    help: 'Route tokens sealed, by key id: each key seals at most 2^48 v2 tokens before a repeated salt becomes a real risk (README: key hygiene)',
    labelNames: ['key'],
    registers: [registry],
    collect() {
      this.reset();
      const ring = new Set(src.keyRing().keys.map((k) => k.id));
      for (let id = 0; id < TOKEN_KEY_IDS; id++) {
        const n = r.keySealedTotal(id);
        // Keys in the ring always show (0 included); a key gone from it shows while its count lives.
        if (n > 0 || ring.has(id)) this.inc({ key: String(id) }, n);
      }
    },
  });
  new Gauge({
    name: 'tether_key_ring_keys',
    help: 'Keys in the route-token key ring (current + retiring)',
    registers: [registry],
    collect() {
      this.set(src.keyRing().keys.length);
    },
  });
  new Gauge({ name: 'tether_build_info', help: 'Build information', labelNames: ['version', 'node'], registers: [registry] }).set(
    { version: VERSION, node: process.version },
    1,
  );
  // prom-client's Histogram cannot be loaded from counts kept elsewhere: this one is written out
  // in the exposition format from the workers' shared-memory buckets.
  const latencyText = (): string => {
    const name = 'tether_upstream_response_seconds';
    let out = `# HELP ${name} Time from the request sent to the backend to its response head\n# TYPE ${name} histogram\n`;
    for (const b of src.backends()) {
      const { buckets, sumMs } = r.backendLatency(b.slot);
      const labels = `pool="${b.pool}",backend="${b.id}"`;
      LATENCY_BOUNDS_MS.forEach((ms, i) => (out += `${name}_bucket{${labels},le="${ms / 1000}"} ${buckets[i]}\n`));
      out += `${name}_bucket{${labels},le="+Inf"} ${buckets[buckets.length - 1]}\n`;
      out += `${name}_sum{${labels}} ${sumMs / 1000}\n${name}_count{${labels}} ${buckets[buckets.length - 1]}\n`;
    }
    return out;
  };
  return { text: async () => `${await registry.metrics()}\n${latencyText()}`, contentType: registry.contentType };
}
