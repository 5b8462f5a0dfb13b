// The main thread: owns the configuration, key ring and shared memory, runs the worker
// threads (restarting any that die), the admin listener, and what the signals ask for (run.ts
// installs them). It never proxies. startTether composes the parts, each in its own file:
//
//   keys-in-force.ts    route-token and terminal keys: loaded, re-read, sent to the workers
//   worker-pool.ts      the worker threads: start, restart with backoff, confirmed messages, stop
//   listen-ports.ts     listener ports made explicit and checked free before the workers bind
//   admin-services.ts   health checks, heartbeats, agents' /control, dashboard, metrics, admin listener
//   reload.ts           a reload, refused whole or applied whole; a log reopen
//   startup-files.ts    the files the flags name: admin token, key files, the access log
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { MAX_PASSTHROUGH_ROUTES, type BackendConfig, type Config } from '../config/schema.js';
import type { WorkerInit } from '../protocol/worker-messages.js';
import { CounterReader, createSharedState, type SharedLayout } from '../shared-memory/counters.js';
import { SharedTable } from '../shared-memory/table.js';
import { SessionStore } from '../sticky/sessions.js';
import { CertificatesInForce } from './certificates-in-force.js';
import { AdminServices } from './admin-services.js';
import { EventLog } from './events.js';
import { KeysInForce, loadKeyRing } from './keys-in-force.js';
import { resolveListenPorts } from './listen-ports.js';
import { Registry } from './registry.js';
import { Reloader, reopenLogs, type ConfigInForce, type ReloadResult } from './reload.js';
import { RouteSlots } from './route-slots.js';
import { checkAppendable, checkBackendCa, readAdminToken, readAgentKeys, readTerminalKeys } from './startup-files.js';
import { WorkerPool } from './worker-pool.js';

export type { ReloadResult } from './reload.js';

const BACKEND_CAPACITY = 1024;

export interface RunningTether {
  readonly httpPorts: number[];
  readonly passthroughPorts: number[];
  readonly adminPort: number | null;
  /** Re-read the key files (a reload's last step). Throws on a bad route-token key file; the old ring stays. */
  reloadKeys(): void;
  /**
   * Re-reads the configuration and applies it (SIGHUP, POST /api/v1/reload): pools, backends,
   * policies, routes, timeouts, keys. Listeners stay open; requests in flight finish on the old
   * configuration. A bad configuration is refused whole, with every problem, and nothing changes.
   */
  reload(by: string): Promise<ReloadResult>;
  /**
   * Log rotation (SIGUSR1): every worker reopens the access log by its path, so lines go to the
   * new file once the old one has been renamed away. False if the path cannot be opened (the
   * workers keep writing where they were).
   */
  reopenLogs(by: string): Promise<boolean>;
  /**
   * Stop accepting, let in-flight requests finish up to `drainMs` (default: the running
   * configuration's drainTimeoutMs), stop workers and admin.
   */
  stop(drainMs?: number): Promise<void>;
  /**
   * Cut everything now (a second signal): workers close their sockets and exit at once. Resolves
   * when they have, or after a short backstop; the caller then exits the process.
   */
  stopNow(): Promise<void>;
  readonly stopped: Promise<void>;
}

/**
 * Starts Tether on `startConfig`: keys, shared memory, the registry, every worker listening,
 * then the admin listener. Rejects when any of it cannot start, after stopping the workers and
 * services already started. `reread` gives the configuration a reload applies.
 */
export async function startTether(startConfig: Config, log: Logger, reread: () => Config = () => startConfig): Promise<RunningTether> {
  const config = startConfig;
  const keyRing = loadKeyRing(config, log);

  const layout: SharedLayout = { workerCapacity: config.workers, backendCapacity: BACKEND_CAPACITY, routeCapacity: MAX_PASSTHROUGH_ROUTES };
  const routeSlots = new RouteSlots(MAX_PASSTHROUGH_ROUTES);
  const firstRoutes = routeSlots.plan(config.passthrough.routes);
  firstRoutes.apply(); // the schema caps routes at the capacity
  // Port 0 means "any": resolved below, before the workers start, so that they all share one port.
  const inForce: ConfigInForce = { config, listenConfig: config, routeSlots: firstRoutes.slots };
  const shared = createSharedState(layout);
  const reader = new CounterReader(shared, layout);
  const events = new EventLog();
  const registry = new Registry(config, { state: reader, capacity: BACKEND_CAPACITY, events, log });
  /** The registry snapshot the workers were last sent (a starting worker gets it too). */
  let snapshot = registry.snapshot();
  const adminToken = config.adminTokenFile ? readAdminToken(config.adminTokenFile) : null;
  if (config.accessLog && config.accessLog !== '-') checkAppendable(config.accessLog);
  if (config.tls.backendCa) checkBackendCa(config.tls.backendCa);
  const agentKeys = config.control.agentKeysFile ? readAgentKeys(config.control.agentKeysFile) : null;
  const terminalKeys = config.authz.terminalKeysFile ? readTerminalKeys(config.authz.terminalKeysFile) : null;
  if (terminalKeys) log.info({ terminalKeys: terminalKeys.size, path: config.authz.path }, 'authorization handshake on');
  const { table, sessionKey, sessions, sweeper } = openSessionTable(config.tableSize);
  // HTTPS: the certificates are checked here, once, so that a bad one stops start-up with its
  // file named (the workers load the same files); the session-ticket keys are made here so that
  // every worker shares them.
  const certificates = new CertificatesInForce(log);
  try {
    certificates.use(certificates.check(config));
  } catch (err) {
    certificates.close();
    throw err;
  }
  const ticketKeys = new Uint8Array(randomBytes(48));

  const keys = new KeysInForce({ ring: keyRing, terminalKeys, agentKeys, log, broadcast: (msg) => pool.broadcast(msg) });
  const pool = new WorkerPool({
    size: config.workers,
    log,
    reader,
    init: (workerIndex): WorkerInit => ({
      workerIndex,
      config: withBackends(inForce.listenConfig, snapshot.pools),
      keyRing: keys.ring,
      slots: snapshot.slots,
      backendsVersion: snapshot.version,
      routeSlots: inForce.routeSlots,
      layout,
      shared,
      table: table.buffer,
      sessionKey,
      authz: keys.workerAuthz(),
      ticketKeys,
    }),
    // Only after every worker listens can one seal a grant: by then `services` exists.
    onGrants: (grants) => services.deliverGrants(grants),
  });

  /**
   * Sends the registry's current snapshot to every worker and resolves once each running one
   * routes by it (a worker that restarts meanwhile starts from it anyway), or after a deadline:
   * a stuck worker must not stall the control plane.
   */
  function publish(): Promise<void> {
    snapshot = registry.snapshot();
    const version = snapshot.version;
    // The pools' policies travel too: a reload may have changed them with or without the lists.
    pool.broadcast({ v: 1, type: 'backends', snapshot: { ...snapshot, config: withBackends(inForce.listenConfig, snapshot.pools), routeSlots: inForce.routeSlots } });
    services.updateChecks();
    return pool.whenBackendsApplied(version);
  }

  const reloader = new Reloader({
    inForce,
    reread,
    routeSlots,
    registry,
    events,
    log,
    publish,
    reopenAccessLog: (dest) => pool.reopenAccessLog(dest),
    reloadKeys: () => keys.reload(inForce.config),
    checkCertificates: (next) => certificates.check(next),
    reloadCertificates: async (checked) => {
      certificates.use(checked);
      await pool.reloadCertificates(inForce.config.tls);
    },
  });
  const services = new AdminServices({ inForce, log, registry, reader, events, sessions, table, pool, keys, certificates, adminToken, agentKeys, publish, reload: (by) => reloader.reload(by) });

  try {
    inForce.listenConfig = await resolveListenPorts(config);
    await pool.start();
    await services.listen();
  } catch (err) {
    clearInterval(sweeper);
    certificates.close();
    services.closeServices();
    await pool.stop(0);
    throw err;
  }

  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));

  async function stop(drainMs = inForce.config.drainTimeoutMs): Promise<void> {
    clearInterval(sweeper);
    certificates.close();
    services.closeServices();
    if (pool.stopping) return stopped;
    await pool.stop(drainMs);
    services.closeListener();
    resolveStopped();
  }

  return {
    stopNow: () => pool.stopNow(),
    httpPorts: inForce.listenConfig.listen.map((l) => l.port),
    passthroughPorts: inForce.listenConfig.passthrough.listen.map((l) => l.port),
    adminPort: services.adminPort,
    reloadKeys: () => keys.reload(inForce.config),
    reload: (by) => reloader.reload(by),
    reopenLogs: (by) => reopenLogs(by, { inForce, log, reopenAccessLog: (dest) => pool.reopenAccessLog(dest) }),
    stop,
    stopped,
  };
}

/**
 * The shared session table, allocated zeroed (its pages cost memory only as entries arrive),
 * the random key its fingerprints derive from, and the sweeper that reclaims expired entries:
 * a whole pass a minute, in slices of 1/60 (a few hundred microseconds each).
 */
function openSessionTable(tableSize: number): { table: SharedTable; sessionKey: Uint8Array; sessions: SessionStore; sweeper: NodeJS.Timeout } {
  const table = SharedTable.create(tableSize);
  const sessionKey = new Uint8Array(randomBytes(32));
  const sessions = new SessionStore(table, sessionKey);
  let sweepFrom = 0;
  const sweeper = setInterval(() => {
    sweepFrom = table.sweep(sweepFrom, Math.max(1, Math.ceil(table.buckets / 60)), Math.floor(Date.now() / 1000));
  }, 1_000);
  sweeper.unref();
  return { table, sessionKey, sessions, sweeper };
}

/** `config` with each pool's backends as the registry lists them now: what a worker routes by. */
function withBackends(config: Config, pools: Record<string, BackendConfig[]>): Config {
  return { ...config, pools: Object.fromEntries(Object.entries(config.pools).map(([name, pc]) => [name, { ...pc, backends: pools[name] ?? [] }])) };
}
