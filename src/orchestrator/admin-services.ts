// The admin listener and the services behind it, built from the supervisor's parts: active
// health checks feeding the registry, heartbeat expiry of agent-announced backends, the agents'
// /control channel (control.ts), the dashboard, Prometheus metrics, and the listener itself
// (admin.ts), started once every worker listens.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { HealthCheckConfig } from '../config/schema.js';
import type { GrantToPush } from '../protocol/worker-messages.js';
import type { CounterReader } from '../shared-memory/counters.js';
import type { SharedTable } from '../shared-memory/table.js';
import type { SessionStore } from '../sticky/sessions.js';
import { startAdmin, type AdminServer } from './admin.js';
import { backendsApi } from './backends-api.js';
import { ControlServer } from './control.js';
import { Dashboard } from './dashboard.js';
import type { EventLog } from './events.js';
import { HealthChecker, type HealthCheckConfig as CheckSpec } from './health-check.js';
import type { KeysInForce } from './keys-in-force.js';
import { createMetrics } from './metrics.js';
import type { Registry } from './registry.js';
import type { ConfigInForce, ReloadResult } from './reload.js';
import { revokeSession } from './sessions-api.js';
import { countEstablished } from './tcp-connections.js';
import type { WorkerPool } from './worker-pool.js';
import type { CertificatesInForce } from './certificates-in-force.js';

export interface AdminServicesDeps {
  inForce: ConfigInForce;
  log: Logger;
  registry: Registry;
  reader: CounterReader;
  events: EventLog;
  sessions: SessionStore;
  table: SharedTable;
  pool: WorkerPool;
  keys: KeysInForce;
  /** The HTTPS certificates in force (none without an https:// listener). */
  certificates: CertificatesInForce;
  /** --admin-token-file's token (null: the API is read-only). */
  adminToken: string | null;
  /** --agent-keys (null: no /control channel). */
  agentKeys: Map<string, Buffer> | null;
  /** Sends the registry's current snapshot to every worker; resolves once all applied it. */
  publish(): Promise<void>;
  reload(by: string): Promise<ReloadResult>;
}

/**
 * Owns the services that watch and change the registry from the main thread and the admin
 * listener that serves them. Health checks, heartbeat expiry, /control and the dashboard run from
 * construction; `listen` opens the admin listener (if configured); `closeServices` stops the
 * former, `closeListener` the latter, which a drain keeps open until the workers have exited.
 */
export class AdminServices {
  private readonly checker: HealthChecker;
  private readonly heartbeats: NodeJS.Timeout;
  private readonly control: ControlServer | null;
  private readonly dashboard: Dashboard;
  private readonly metrics: ReturnType<typeof createMetrics>;
  private admin: AdminServer | null = null;
  private closed = false;
  /** Grants whose server had no control connection (tether_authz_grants_undeliverable_total). */
  private grantsUndeliverable = 0;

  constructor(private readonly d: AdminServicesDeps) {
    const { inForce, registry, reader, events, pool, log } = d;
    this.checker = new HealthChecker({
      onChange: (key, up, detail) => {
        const [pool, id] = key.split('\0') as [string, string];
        registry.setCheck(pool, id, up, detail);
      },
    });
    this.updateChecks();
    this.heartbeats = setInterval(() => registry.expire(inForce.config.control.heartbeatTimeoutMs), 1_000);
    this.heartbeats.unref();
    this.control = d.agentKeys
      ? new ControlServer({
          keys: d.agentKeys,
          registry,
          publish: d.publish,
          windowMs: inForce.config.control.windowMs,
          log,
          onConnection: (pool, id, connected) => {
            const e = registry.get(pool, id);
            if (e) reader.setControlConnected(e.slot, connected);
          },
        })
      : null;
    this.dashboard = new Dashboard({ registry, reader, events, certificates: () => d.certificates.describe() });
    this.metrics = createMetrics({
      reader,
      backends: () => registry.entries().map((e) => ({ pool: e.pool, id: e.id, slot: e.slot, checkDown: e.checkDown, lost: e.lost, draining: e.draining !== null })),
      addressConflicts: () => registry.conflicts,
      controlFrames: () => this.control?.frames ?? {},
      grantsUndeliverable: () => this.grantsUndeliverable,
      workerRestarts: () => pool.restarts,
      workersRunning: () => pool.listening,
      keyReloads: () => d.keys.reloads,
      keyRing: () => d.keys.ring,
      workerCount: inForce.config.workers,
      httpConnections: () => countEstablished(inForce.listenConfig.listen),
      passthroughRoutes: () => inForce.config.passthrough.routes.map((r, i) => ({ sni: r.sni, pool: r.pool, slot: inForce.routeSlots[i]! })),
      table: () => d.table.stats(),
      certificateExpiry: () => d.certificates.expirySeconds(),
      httpsListeners: () => inForce.listenConfig.listen.flatMap((l, index) => (l.protocol === 'https' ? [{ index, name: l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}` }] : [])),
    });
  }

  /** The admin listener's port, or null when it is off (or not started). */
  get adminPort(): number | null {
    return this.admin?.port ?? null;
  }

  /** Health-check targets follow the registry: every backend of a pool that has a check. */
  updateChecks(): void {
    // Stopping: the checks are over, though a backend change may still arrive while workers drain.
    if (this.closed) return;
    const { registry, inForce } = this.d;
    const backendCa = inForce.config.tls.backendCa;
    let ca: Buffer | undefined;
    this.checker.setTargets(
      registry.entries().flatMap((e) => {
        const hc = inForce.config.pools[e.pool]?.healthCheck;
        if (!hc) return [];
        if (e.tls && backendCa) ca ??= readFileSync(backendCa);
        const tls = e.tls ? { servername: e.tls.servername ?? e.address, rejectUnauthorized: e.tls.verify, ca } : null;
        return [{ key: `${e.pool}\0${e.id}`, host: e.address, port: e.port, check: toCheck(hc), tls }];
      }),
    );
  }

  /** Pushes grants a worker sealed to their servers' agents; one without a control connection is counted and logged. */
  deliverGrants(grants: GrantToPush[]): void {
    for (const g of this.control ? this.control.pushGrants(grants) : grants) {
      this.grantsUndeliverable++;
      this.d.log.warn({ event: 'grant_undeliverable', pool: g.pool, id: g.id }, `authorization grant for ${g.pool}/${g.id} not delivered: its control connection is gone`);
    }
  }

  /** Opens the admin listener if the configuration has one (--admin). */
  async listen(): Promise<void> {
    const { inForce, log, registry, reader, events, pool, adminToken } = this.d;
    if (!inForce.config.admin) return;
    const { control, dashboard, checker, metrics } = this;
    this.admin = await startAdmin(inForce.config.admin, {
      ready: () => pool.ready(),
      metrics: () => metrics.text(),
      contentType: metrics.contentType,
      adminToken,
      revoke: (body) => revokeSession(body, { config: inForce.config, sessions: this.d.sessions, log }),
      ...backendsApi({ registry, reader, events, publish: this.d.publish, checkState: (pool, id) => checker.state(`${pool}\0${id}`) }),
      mountControl: control ? (app) => control.mount(app) : undefined,
      mountDashboard: (app) => dashboard.mount(app),
      failed: (err, where) => log.error({ event: 'admin_request_failed', where, err }, `admin request failed (answered 500; traffic unaffected): ${where}`),
      certificates: () => ({ status: 200, body: { certificates: this.d.certificates.describe() } }),
      reload: async () => {
        const r = await this.d.reload('api');
        return r.ok ? { status: 200, body: { result: 'reloaded', version: r.version } } : { status: 400, body: { error: 'invalid_config', message: 'reload refused; the running configuration stays', problems: r.problems } };
      },
    });
    if (!adminToken) log.warn('no --admin-token-file: the admin API is read-only (changes are refused)');
  }

  /** Stops health checks, heartbeat expiry, the agents' connections and the dashboard (safe to repeat). */
  closeServices(): void {
    this.closed = true;
    clearInterval(this.heartbeats);
    this.checker.close();
    this.control?.close();
    this.dashboard.close();
  }

  /** Closes the admin listener: last, so that while workers drain /readyz answers 503 and /metrics still answers. */
  closeListener(): void {
    this.admin?.close();
  }
}

/** The config's check (expect as 'NNN' or 'NNN-NNN') in the checker's shape. */
function toCheck(hc: HealthCheckConfig): CheckSpec {
  const timing = { intervalMs: hc.intervalMs, timeoutMs: hc.timeoutMs, rise: hc.rise, fall: hc.fall };
  if (hc.type === 'tcp') return { type: 'tcp', ...timing };
  const [min, max = min] = hc.expect.split('-').map(Number) as [number, number?];
  return { type: 'http', path: hc.path, expect: { min, max }, ...(hc.host ? { host: hc.host } : {}), ...timing };
}
