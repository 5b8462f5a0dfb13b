// Prometheus metrics, read from the workers' shared-memory counters at scrape time: the data
// path never sends a message per request, and a scrape costs a sum over a few slots.
import { REFUSAL_REASONS } from '../data-plane/front-door/refusals.js';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LATENCY_BOUNDS_MS, TLS_OUTCOMES, TOKEN_KEY_IDS, type CounterReader, type GlobalCounter } from '../shared-memory/counters.js';
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
  /** The HTTPS listeners: index in config.listen, and `host:port` as they listen. */
  httpsListeners(): readonly { index: number; name: string }[];
  /** Seconds until each HTTPS name's certificate expires (negative: expired). */
  certificateExpiry(): readonly { name: string; seconds: number }[];
}

type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx';
const STATUS_CLASSES: readonly StatusClass[] = ['1xx', '2xx', '3xx', '4xx', '5xx'];

/** One series at scrape time: its label values, in the order of the row's `labels`, and its value. */
type Series = readonly [labelValues: readonly string[], value: number];

/**
 * One metric of the exposition. Nothing is counted here: every value is read where it is kept
 * (shared memory, the registry, the key ring) when a scrape asks for it.
 */
interface MetricRow {
  name: string;
  type: 'counter' | 'gauge';
  /** Label names, in the order the exposition writes them; none for a single unlabelled value. */
  labels?: readonly string[];
  /** The series now. With none, a labelled metric shows no samples and an unlabelled one shows 0 (prom-client's reset). */
  series(): Iterable<Series> | Promise<Iterable<Series>>;
  help: string;
}

/**
 * Every metric Tether exports, in exposition order (a scrape lists them as they stand here;
 * the upstream latency histogram follows them). Adding a metric is adding a row.
 */
function metricTable(src: MetricSources): readonly MetricRow[] {
  const r = src.reader;
  const value = (read: () => number) => (): Series[] => [[[], read()]];
  const total = (counter: GlobalCounter) => value(() => r.total(counter));
  /** One series per label value, each read from its own global counter. */
  const byCounter = (pairs: readonly (readonly [string, GlobalCounter])[]) => (): Series[] => pairs.map(([label, counter]) => [[label], r.total(counter)]);
  const byWorker = (counter: GlobalCounter) => (): Series[] => Array.from({ length: src.workerCount }, (_, w) => [[String(w)], r.workerTotal(w, counter)]);
  const perBackend = (read: (slot: number) => number) => (): Series[] => src.backends().map((b) => [[b.pool, b.id], read(b.slot)]);
  const perRoute = (read: (slot: number) => number) => (): Series[] => src.passthroughRoutes().map((route) => [[route.sni, route.pool], read(route.slot)]);
  const backendLabels = ['pool', 'backend'];
  const routeLabels = ['sni', 'pool'];
  const authzOutcomes = ['challenge_issued', 'granted', 'bad_request', 'unknown_user', 'bad_proof', 'forged_challenge', 'stale_challenge', 'replayed', 'rate_limited', 'no_server'] as const;

  return [
    { name: 'tether_requests_total', type: 'counter', series: total('requests'), help: 'HTTP requests received' },
    { name: 'tether_bad_requests_total', type: 'counter', series: total('bad_requests'), help: 'Requests refused with 400 (malformed or ambiguous framing)' },
    { name: 'tether_no_backend_total', type: 'counter', series: total('no_backend'), help: 'Requests answered 503 because no backend was up' },
    { name: 'tether_upstream_connect_errors_total', type: 'counter', series: total('upstream_connect_errors'), help: 'Backend connections refused, reset or timed out' },
    { name: 'tether_upstream_timeouts_total', type: 'counter', series: total('upstream_timeouts'), help: 'Backend responses that missed their deadline (504 or cut)' },
    { name: 'tether_upstream_protocol_errors_total', type: 'counter', series: total('upstream_protocol_errors'), help: 'Backend responses that were malformed or ended early' },
    { name: 'tether_upstream_retries_total', type: 'counter', series: total('upstream_retries'), help: 'Requests retried on another connection or backend' },
    { name: 'tether_upstream_connections_opened_total', type: 'counter', series: total('upstream_connections_opened'), help: 'New backend connections (keep-alive misses)' },
    { name: 'tether_client_aborts_total', type: 'counter', series: total('client_aborts'), help: 'Clients that went away before their response finished' },
    { name: 'tether_client_timeouts_total', type: 'counter', series: total('client_timeouts'), help: 'Responses cut because the client stopped reading for --idle-timeout' },
    { name: 'tether_tokens_issued_total', type: 'counter', series: total('tokens_issued'), help: 'Route tokens issued (new, failed over or refreshed)' },
    { name: 'tether_tokens_v1_presented_total', type: 'counter', series: total('tokens_v1_presented'), help: 'Requests that presented a valid format-v1 route token (from before the upgrade; answered with a v2 token)' },
    { name: 'tether_sessions_learned_total', type: 'counter', series: total('sessions_learned'), help: 'Application sessions recorded from a backend Set-Cookie (learn mode, or bound prefix-mode sessions)' },
    { name: 'tether_sessions_forgotten_total', type: 'counter', series: total('sessions_forgotten'), help: 'Sessions removed because the backend expired their cookie' },
    { name: 'tether_backend_route_cookie_dropped_total', type: 'counter', series: total('backend_route_cookie_dropped'), help: 'Set-Cookie for Tether\'s own cookie (or Tether\'s token header) sent by a backend: dropped, so the client keeps one route' },
    { name: 'tether_binding_unverifiable_total', type: 'counter', series: total('binding_unverifiable'), help: 'Sessions presented without a terminal recorded under the pool\'s current policy (let through)' },
    { name: 'tether_responses_total', type: 'counter', labels: ['class'], series: byCounter(STATUS_CLASSES.map((c) => [c, `responses_${c}`] as const)), help: 'Responses sent to clients, by status class' },
    {
      name: 'tether_sticky_total',
      type: 'counter',
      labels: ['outcome'],
      series: byCounter([
        ['hit', 'sticky_hits'],
        ['miss', 'sticky_misses'],
        ['failover', 'sticky_failovers'],
        ['invalid_malformed', 'sticky_invalid_malformed'],
        ['invalid_unknown_key', 'sticky_invalid_unknown_key'],
        ['invalid_forged', 'sticky_invalid_forged'],
        ['invalid_expired', 'sticky_invalid_expired'],
        ['invalid_old_format', 'sticky_invalid_old_format'],
        ['backend_unknown', 'sticky_backend_unknown'],
      ]),
      help: 'Sticky routing outcomes: hit (token routed), miss (no token), failover (token backend down), invalid_* (token ignored), backend_unknown',
    },
    { name: 'tether_front_door_refusals_total', type: 'counter', labels: ['reason'], series: byCounter(REFUSAL_REASONS.map((reason) => [reason, `refused_${reason}`] as const)), help: 'Requests refused by the HTTP front door before routing (400/405/408/431/505, or closed for an HTTP/2 preface), by reason' },
    { name: 'tether_tls_handshakes_total', type: 'counter', labels: ['listener', 'outcome'], series: () => src.httpsListeners().flatMap((l) => TLS_OUTCOMES.map((o): Series => [[l.name, o], r.tlsHandshakeTotal(l.index, o)])), help: 'TLS handshakes on the HTTPS listeners: ok; timeout (--tls-handshake-timeout), plain_http (an HTTP request on the TLS port, closed at once), unknown_name (--strict-sni), failed (no common version or cipher, a bad record, the client went away)' },
    { name: 'tether_certificate_expiry_seconds', type: 'gauge', labels: ['name'], series: () => src.certificateExpiry().map((c): Series => [[c.name], c.seconds]), help: 'Seconds until the certificate serving each HTTPS name expires (negative once expired); a warning is logged from 14 days before' },
    { name: 'tether_https_redirects_total', type: 'counter', series: total('https_redirects'), help: 'Requests answered 308 to HTTPS by a redirect=https listener' },
    { name: 'tether_learn_total', type: 'counter', labels: ['outcome'], series: byCounter([['hit', 'learn_hits'], ['miss', 'learn_misses']]), help: 'Learn-mode lookups of the first session cookie: hit (routed to the learned backend) or miss (not in the table)' },
    { name: 'tether_session_refusals_total', type: 'counter', labels: ['reason'], series: byCounter([['terminal_mismatch', 'binding_refused_terminal'], ['revoked', 'binding_refused_revoked']]), help: 'Requests refused with 403: a session presented from another terminal (terminal_mismatch) or revoked' },
    { name: 'tether_session_table_entries', type: 'gauge', series: value(() => src.table().occupied), help: 'Occupied slots of the shared session table (live and not yet reclaimed expired entries)' },
    { name: 'tether_session_table_slots', type: 'gauge', series: value(() => src.table().slots), help: 'Slots of the shared session table (twice its rated capacity)' },
    { name: 'tether_session_table_evictions_total', type: 'counter', series: value(() => src.table().evictions), help: 'Entries evicted from a full pair of buckets (the table is too small)' },
    {
      name: 'tether_http_connections',
      type: 'gauge',
      async series() {
        const n = await src.httpConnections();
        return n === null ? [] : [[[], n]];
      },
      help: 'Client TCP connections established to the HTTP listeners (counted in the kernel socket table at scrape time; absent where it cannot be read)',
    },
    { name: 'tether_active_requests', type: 'gauge', series: total('active_requests'), help: 'Requests in flight' },
    { name: 'tether_backend_requests_total', type: 'counter', labels: backendLabels, series: perBackend((s) => r.backendTotal(s, 'requests')), help: 'Requests completed per backend' },
    { name: 'tether_backend_connect_errors_total', type: 'counter', labels: backendLabels, series: perBackend((s) => r.backendTotal(s, 'connect_errors')), help: 'Connect failures per backend' },
    { name: 'tether_backend_active_requests', type: 'gauge', labels: backendLabels, series: perBackend((s) => r.backendTotal(s, 'active')), help: 'Requests in flight per backend' },
    { name: 'tether_backend_sessions_total', type: 'counter', labels: backendLabels, series: perBackend((s) => r.backendTotal(s, 'sessions')), help: 'Sticky sessions started per backend (a token naming it issued to a request without one for it, or a new learned session)' },
    { name: 'tether_backend_sticky_hits_total', type: 'counter', labels: backendLabels, series: perBackend((s) => r.backendTotal(s, 'sticky_hits')), help: 'Requests routed to the backend by their session (token or learned cookie) and served by it' },
    { name: 'tether_backend_up', type: 'gauge', labels: backendLabels, series: perBackend((s) => (r.downCause(s, Date.now()) === null ? 1 : 0)), help: '1 when the backend may take requests: not ejected (passive), not failing its health check, not lost (missed heartbeats)' },
    {
      name: 'tether_backend_responses_total',
      type: 'counter',
      labels: ['pool', 'backend', 'class'],
      series: () => src.backends().flatMap((b) => STATUS_CLASSES.map((c): Series => [[b.pool, b.id, c], r.backendTotal(b.slot, `responses_${c}`)])),
      help: 'Final responses from each backend by status class (1xx-5xx); sum over backends for a pool',
    },
    { name: 'tether_backend_draining', type: 'gauge', labels: backendLabels, series: perBackend((s) => (r.backendState(s).drainUntil !== 0 ? 1 : 0)), help: '1 while the backend is draining (no new sessions)' },
    {
      name: 'tether_backend_health',
      type: 'gauge',
      labels: ['pool', 'backend', 'cause'],
      series() {
        const now = Date.now();
        return src.backends().flatMap((b): Series[] => [
          [[b.pool, b.id, 'check'], b.checkDown ? 1 : 0],
          [[b.pool, b.id, 'lost'], b.lost ? 1 : 0],
          [[b.pool, b.id, 'ejected'], r.backendState(b.slot).downUntil > now ? 1 : 0],
        ]);
      },
      help: 'Why a backend is down, one series per cause: check (active health check), lost (missed heartbeats), ejected (passive: connect failures or 5xx); 1 = that cause holds',
    },
    { name: 'tether_backend_ejections_5xx_total', type: 'counter', series: total('backend_ejections_5xx'), help: 'Backends ejected after a run of consecutive 5xx responses (passive health)' },
    { name: 'tether_authz_total', type: 'counter', labels: ['outcome'], series: byCounter(authzOutcomes.map((o) => [o, `authz_${o}`] as const)), help: 'Authorization handshake outcomes: challenge_issued, granted; refusals bad_request, unknown_user, bad_proof, forged_challenge, stale_challenge, replayed (terminals see only "denied"), rate_limited, no_server' },
    { name: 'tether_access_log_dropped_total', type: 'counter', series: total('access_log_dropped'), help: 'Access log lines dropped because the destination could not keep up or failed' },
    { name: 'tether_authz_grants_undeliverable_total', type: 'counter', series: value(src.grantsUndeliverable), help: 'Grants not pushed because the chosen server had lost its control connection' },
    { name: 'tether_address_conflicts_total', type: 'counter', series: value(src.addressConflicts), help: 'Backend announcements or additions refused because another live backend holds the address' },
    { name: 'tether_control_frames_total', type: 'counter', labels: ['result'], series: () => Object.entries(src.controlFrames()).map(([result, n]): Series => [[result], n]), help: 'Control-channel frames by outcome: ok, or why dropped (bad_mac, stale, replayed, malformed, oversized, unknown_pool, bad_body, unknown_type, invalid, rate_limited)' },
    // TLS passthrough.
    { name: 'tether_worker_requests_total', type: 'counter', labels: ['worker'], series: byWorker('requests'), help: 'HTTP requests received, by worker thread (how SO_REUSEPORT spread the connections)' },
    { name: 'tether_passthrough_connections_total', type: 'counter', labels: ['worker'], series: byWorker('passthrough_connections'), help: 'TLS passthrough connections accepted, by worker thread' },
    {
      name: 'tether_passthrough_outcomes_total',
      type: 'counter',
      labels: ['outcome'],
      series: byCounter([
        ['routed', 'passthrough_routed'],
        ['not_tls', 'passthrough_not_tls'],
        ['malformed', 'passthrough_malformed'],
        ['too_large', 'passthrough_too_large'],
        ['client_hello_timeout', 'passthrough_hello_timeouts'],
        ['no_route', 'passthrough_no_route'],
        ['no_backend', 'passthrough_no_backend'],
        ['upstream_connect_error', 'passthrough_upstream_connect_errors'],
      ]),
      help: 'What became of passthrough connections: routed to a backend, or closed (not_tls, malformed, too_large, client_hello_timeout, no_route, no_backend, upstream_connect_error)',
    },
    { name: 'tether_passthrough_idle_timeouts_total', type: 'counter', series: total('passthrough_idle_timeouts'), help: 'Relayed passthrough connections closed for being idle' },
    { name: 'tether_passthrough_active_connections', type: 'gauge', series: total('passthrough_active'), help: 'TLS passthrough connections open (reading a ClientHello, connecting or relaying)' },
    { name: 'tether_passthrough_route_connections_total', type: 'counter', labels: routeLabels, series: perRoute((i) => r.routeTotal(i, 'connections')), help: 'Passthrough connections routed, per SNI route' },
    { name: 'tether_passthrough_route_bytes_in_total', type: 'counter', labels: routeLabels, series: perRoute((i) => r.routeTotal(i, 'bytes_in')), help: 'Bytes received from clients of closed relays, per SNI route' },
    { name: 'tether_passthrough_route_bytes_out_total', type: 'counter', labels: routeLabels, series: perRoute((i) => r.routeTotal(i, 'bytes_out')), help: 'Bytes sent to clients of closed relays, per SNI route' },
    // Workers and route-token keys.
    { name: 'tether_worker_restarts_total', type: 'counter', series: value(src.workerRestarts), help: 'Worker threads that died and were restarted' },
    { name: 'tether_key_reloads_total', type: 'counter', series: value(src.keyReloads), help: 'Route-token key file reloads' },
    { name: 'tether_workers_running', type: 'gauge', series: value(src.workersRunning), help: 'Worker threads listening' },
    {
      name: 'tether_tokens_sealed_total',
      type: 'counter',
      labels: ['key'],
      *series() {
        const ring = new Set(src.keyRing().keys.map((k) => k.id));
        for (let id = 0; id < TOKEN_KEY_IDS; id++) {
          const n = r.keySealedTotal(id);
          // Keys in the ring always show (0 included); a key gone from it shows while its count lives.
          if (n > 0 || ring.has(id)) yield [[String(id)], n];
        }
      },
      help: 'Route tokens sealed, by key id: each key seals at most 2^48 v2 tokens before a repeated salt becomes a real risk (README: key hygiene)',
    },
    { name: 'tether_key_ring_keys', type: 'gauge', series: value(() => src.keyRing().keys.length), help: 'Keys in the route-token key ring (current + retiring)' },
    { name: 'tether_build_info', type: 'gauge', labels: ['version', 'node'], series: () => [[[VERSION, process.version], 1]], help: 'Build information' },
  ];
}

/** Registers one row: at each scrape its metric is emptied and refilled from `row.series()`. */
function register(registry: Registry, row: MetricRow): void {
  const labelNames = row.labels ?? [];
  const Metric = row.type === 'counter' ? Counter : Gauge;
  new Metric({
    name: row.name,
    help: row.help,
    labelNames,
    registers: [registry],
    async collect(this: Counter | Gauge) {
      const series = await row.series();
      this.reset();
      for (const [values, v] of series) {
        const labels = Object.fromEntries(labelNames.map((name, i) => [name, values[i]]));
        if (this instanceof Gauge) this.set(labels, v);
        else this.inc(labels, v);
      }
    },
  });
}

// prom-client's Histogram cannot be loaded from counts kept elsewhere: this one is written out
// in the exposition format from the workers' shared-memory buckets.
/** A label value in the text format: backslash, quote and newline escaped (ids are validated, but this is output). */
function labelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

function upstreamLatencyText(src: MetricSources): string {
  const name = 'tether_upstream_response_seconds';
  let out = `# HELP ${name} Time from the request sent to the backend to its response head\n# TYPE ${name} histogram\n`;
  for (const b of src.backends()) {
    const { buckets, sumMs } = src.reader.backendLatency(b.slot);
    const labels = `pool="${labelValue(b.pool)}",backend="${labelValue(b.id)}"`;
    LATENCY_BOUNDS_MS.forEach((ms, i) => (out += `${name}_bucket{${labels},le="${ms / 1000}"} ${buckets[i]}\n`));
    out += `${name}_bucket{${labels},le="+Inf"} ${buckets[buckets.length - 1]}\n`;
    out += `${name}_sum{${labels}} ${sumMs / 1000}\n${name}_count{${labels}} ${buckets[buckets.length - 1]}\n`;
  }
  return out;
}

export function createMetrics(src: MetricSources): { text(): Promise<string>; contentType: string } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tether_process_' });
  for (const row of metricTable(src)) register(registry, row);
  return { text: async () => `${await registry.metrics()}\n${upstreamLatencyText(src)}`, contentType: registry.contentType };
}
