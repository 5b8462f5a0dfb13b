// The live dashboard (/dashboard on the admin listener): the page (./dashboard-page.ts, served
// from the package, no CDN) and a WebSocket (/dashboard/ws) that pushes one JSON frame a second
// to every viewer: per-backend requests/s and p50/p99 over the last second (from the workers'
// shared-memory counters and latency histograms), the backends table, and new alerts.
import type { TemplatedApp, WebSocket } from '@trufflesuite/uws-js-unofficial';
import { LATENCY_BOUNDS_MS, type CounterReader } from '../shared-memory/counters.js';
import { DASHBOARD_HTML } from './dashboard-page.js';
import type { EventLog } from './events.js';
import type { CertificateDescription } from '../tls/certificates.js';
import type { Registry } from './registry.js';

const TICK_MS = 1_000;
const DOWN_WHY = { check: 'health check', lost: 'heartbeats lost', ejected: 'ejected' } as const;
const MAX_VIEWERS = 64;

interface Previous {
  requests: number;
  sessions: number;
  stickyHits: number;
  buckets: number[];
}

/** The q-quantile (0..1) in ms from per-bucket counts (not cumulative), interpolated in its bucket; null without samples. */
export function quantileMs(counts: readonly number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (c > 0 && seen + c >= rank) {
      const lo = i === 0 ? 0 : LATENCY_BOUNDS_MS[i - 1]!;
      const hi = i < LATENCY_BOUNDS_MS.length ? LATENCY_BOUNDS_MS[i]! : lo * 2;
      return lo + ((hi - lo) * (rank - seen)) / c;
    }
    seen += c;
  }
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1]!;
}

export class Dashboard {
  private readonly viewers = new Set<WebSocket<{ closed: boolean }>>();
  private readonly previous = new Map<string, Previous>();
  private lastEvent = 0;
  private readonly timer: NodeJS.Timeout;
  private lastTick = Date.now();
  /** Alert counters last seen (binding refusals, 5xx ejections), to turn their increase into feed lines. */
  private readonly alertTotals = new Map<string, number>();

  /** The certificates list the viewers were last sent (they get it again when it changes: a reload). */
  private sentCertificates = '';

  constructor(private readonly d: { registry: Registry; reader: CounterReader; events: EventLog; now?: () => number; certificates?: () => readonly CertificateDescription[] }) {
    this.lastEvent = d.events.lastSeq;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  mount(app: TemplatedApp): void {
    app.get('/dashboard', (res) => {
      res.writeHeader('content-type', 'text/html; charset=utf-8').writeHeader('cache-control', 'no-store').end(DASHBOARD_HTML);
    });
    app.ws<{ closed: boolean }>('/dashboard/ws', {
      maxPayloadLength: 1024,
      idleTimeout: 60,
      maxBackpressure: 1024 * 1024,
      closeOnBackpressureLimit: 1,
      upgrade: (res, req, context) => {
        if (this.viewers.size >= MAX_VIEWERS) {
          res.writeStatus('503 Service Unavailable').end(`at most ${MAX_VIEWERS} dashboard viewers\n`);
          return;
        }
        res.upgrade({ closed: false }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
      },
      open: (ws) => {
        this.viewers.add(ws);
        // The recent alerts at once, so a new viewer does not start with an empty feed.
        ws.send(JSON.stringify({ type: 'hello', alerts: this.d.events.list(Math.max(0, this.d.events.lastSeq - 50)), certificates: this.d.certificates?.() ?? [] }));
      },
      close: (ws) => {
        ws.getUserData().closed = true;
        this.viewers.delete(ws);
      },
    });
  }

  close(): void {
    clearInterval(this.timer);
    for (const ws of this.viewers) if (!ws.getUserData().closed) ws.end(1001, 'balancer stopping');
  }

  /** One frame: computed every tick (so rates stay per-second) even without viewers. */
  private tick(): void {
    const now = (this.d.now ?? Date.now)();
    const seconds = Math.max(0.001, (now - this.lastTick) / 1000);
    this.lastTick = now;
    const r = this.d.reader;
    const backends = this.d.registry.entries().map((e) => {
      const key = `${e.pool}|${e.id}|${e.slot}`;
      const requests = r.backendTotal(e.slot, 'requests');
      const sessions = r.backendTotal(e.slot, 'sessions');
      const stickyHits = r.backendTotal(e.slot, 'sticky_hits');
      const { buckets: cumulative } = r.backendLatency(e.slot);
      const buckets = cumulative.map((c, i) => c - (i === 0 ? 0 : cumulative[i - 1]!));
      const prev = this.previous.get(key) ?? { requests, sessions, stickyHits, buckets };
      this.previous.set(key, { requests, sessions, stickyHits, buckets });
      const delta = buckets.map((b, i) => Math.max(0, b - (prev.buckets[i] ?? 0)));
      const down = r.downCause(e.slot, now);
      return {
        pool: e.pool,
        id: e.id,
        address: `${e.address}:${e.port}`,
        weight: e.weight,
        source: e.source,
        state: down ? 'down' : e.draining ? 'draining' : 'up',
        why: down ? DOWN_WHY[down] : '',
        active: r.backendTotal(e.slot, 'active'),
        rps: Math.max(0, requests - prev.requests) / seconds,
        // Sticky sessions: started here in all, started per second, and requests per second
        // that came back to this backend by their session.
        sessions,
        newSessionsPerSec: Math.max(0, sessions - prev.sessions) / seconds,
        stickyPerSec: Math.max(0, stickyHits - prev.stickyHits) / seconds,
        p50: quantileMs(delta, 0.5),
        p99: quantileMs(delta, 0.99),
      };
    });
    // Forget removed backends (agents come and go: the map must not grow with them).
    if (this.previous.size > backends.length) {
      const live = new Set(this.d.registry.entries().map((e) => `${e.pool}|${e.id}|${e.slot}`));
      for (const k of this.previous.keys()) if (!live.has(k)) this.previous.delete(k);
    }
    const alerts = this.d.events.list(this.lastEvent);
    this.lastEvent = this.d.events.lastSeq;
    // Binding refusals and 5xx ejections happen in workers: their counters become feed lines.
    for (const [name, label] of [
      ['binding_refused_terminal', 'binding refusals (another terminal)'],
      ['binding_refused_revoked', 'refusals of revoked sessions'],
      ['backend_ejections_5xx', 'backends ejected after 5xx'],
    ] as const) {
      const total = r.total(name);
      const before = this.alertTotals.get(name) ?? total;
      this.alertTotals.set(name, total);
      if (total > before) alerts.push({ seq: 0, time: new Date(now).toISOString(), type: name, severity: 'warn', message: `${total - before} ${label} in the last second`, fields: {} });
    }
    if (this.viewers.size === 0) return;
    // Certificates change on a reload only: sent when they differ from the last frame's.
    const certificates = this.d.certificates?.() ?? [];
    const certText = JSON.stringify(certificates.map((c) => [c.file, c.fingerprint256]));
    const changed = certText !== this.sentCertificates;
    this.sentCertificates = certText;
    const frame = JSON.stringify(changed ? { type: 'tick', time: now, backends, alerts, certificates } : { type: 'tick', time: now, backends, alerts });
    for (const ws of this.viewers) if (!ws.getUserData().closed) ws.send(frame);
  }
}
