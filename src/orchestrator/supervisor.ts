// The main thread: owns the configuration, key ring and shared memory, runs the worker
// threads (restarting any that die), the admin listener, and the signals. It never proxies.
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { MAX_PASSTHROUGH_ROUTES, type Config } from '../config/schema.js';
import { TetherError } from '../errors.js';
import { CounterReader, createSharedState, type SharedLayout } from '../shared-memory/counters.js';
import { decode, encode, type FromWorker, type ToWorker, type WorkerInit } from '../protocol/worker-messages.js';
import { ephemeralRing, initialRing, readKeyFile, rotate } from './key-ring.js';
import type { KeyRing } from '../protocol/key-ring.js';
import { startAdmin, type AdminServer } from './admin.js';
import { createMetrics } from './metrics.js';
import { revokeSession } from './sessions-api.js';
import { SharedTable } from '../shared-memory/table.js';
import { SessionStore } from '../sticky/sessions.js';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import type { BackendConfig, HealthCheckConfig } from '../config/schema.js';
import { parseAgentKeys } from '../control/frames.js';
import { parseTerminalKeys } from '../authz/protocol.js';
import { backendsApi } from './backends-api.js';
import { ControlServer } from './control.js';
import { Dashboard } from './dashboard.js';
import { EventLog } from './events.js';
import { HealthChecker, type HealthCheckConfig as CheckSpec } from './health-check.js';
import { Registry } from './registry.js';
import { RouteSlots } from './route-slots.js';
import { countEstablished } from './tcp-connections.js';

const BACKEND_CAPACITY = 1024;
/** Longest a registry change waits for every worker to confirm it. */
const PUBLISH_DEADLINE_MS = 2_000;
/** A second signal waits at most this long for workers to close their sockets. */
const STOP_NOW_BACKSTOP_MS = 1_000;
const WORKER_START_DEADLINE_MS = 15_000;
const WORKER_URL = new URL('../data-plane/worker.js', import.meta.url);

export interface RunningTether {
  readonly httpPorts: number[];
  readonly passthroughPorts: number[];
  readonly adminPort: number | null;
  /** Re-read the key file (what SIGHUP does). Throws on a bad key file; the old ring stays. */
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

interface WorkerSlot {
  index: number;
  worker: Worker | null;
  listening: boolean;
  /** Registry version this worker routes by. */
  appliedVersion: number;
  /** The last access-log reopen this worker has carried out. */
  logGeneration: number;
  /** Has listened at least once: only such a slot is restarted when its worker exits. */
  served: boolean;
  consecutiveFailures: number;
}

export type ReloadResult = { ok: true; version: number } | { ok: false; problems: string[] };

/**
 * What a reload cannot change: listeners, threads, the memory sized at start, and the files
 * and listeners of the control and authorization channels. (The passthrough listeners are
 * compared on their own: its routes and timeouts do reload.)
 */
const FIXED_ON_RELOAD = ['listen', 'admin', 'workers', 'tableSize', 'control', 'authz', 'adminTokenFile', 'keyFile', 'demo', 'pidFile'] as const;

export async function startTether(startConfig: Config, log: Logger, reread: () => Config = () => startConfig): Promise<RunningTether> {
  /** The configuration in force (replaced whole by a reload). */
  let config = startConfig;
  let keyRing: KeyRing;
  if (config.keyFile) {
    keyRing = initialRing(readKeyFile(config.keyFile), config.keyGraceSec, Date.now());
    log.info(
      { keyFile: config.keyFile, keys: keyRing.keys.length, sealKeyId: keyRing.sealKeyId, v1TokensOpenUntil: new Date(keyRing.v1OpensUntil).toISOString() },
      'route-token keys loaded',
    );
  } else {
    keyRing = ephemeralRing();
    log.warn('no --key-file: route tokens are sealed with a random key made now; they will not survive a restart or route on another balancer node (create one with `tether keygen > keys` and pass --key-file keys)');
  }

  const layout: SharedLayout = { workerCapacity: config.workers, backendCapacity: BACKEND_CAPACITY, routeCapacity: MAX_PASSTHROUGH_ROUTES };
  const routeSlots = new RouteSlots(MAX_PASSTHROUGH_ROUTES);
  const firstRoutes = routeSlots.plan(config.passthrough.routes);
  firstRoutes.apply(); // the schema caps routes at the capacity
  /** Counter slot of each route of config.passthrough.routes. */
  let currentRouteSlots = firstRoutes.slots;
  const shared = createSharedState(layout);
  const reader = new CounterReader(shared, layout);
  const events = new EventLog();
  const registry = new Registry(config, { state: reader, capacity: BACKEND_CAPACITY, events, log });
  let snapshot = registry.snapshot();
  const adminToken = config.adminTokenFile ? readAdminToken(config.adminTokenFile) : null;
  if (config.accessLog && config.accessLog !== '-') checkAppendable(config.accessLog);
  const agentKeys = config.control.agentKeysFile ? readAgentKeys(config.control.agentKeysFile) : null;
  let terminalKeys = config.authz.terminalKeysFile ? readTerminalKeys(config.authz.terminalKeysFile) : null;
  if (terminalKeys) log.info({ terminalKeys: terminalKeys.size, path: config.authz.path }, 'authorization handshake on');
  // The session table: allocated zeroed, so its pages cost memory only as entries arrive.
  const table = SharedTable.create(config.tableSize);
  const sessionKey = new Uint8Array(randomBytes(32));
  const sessions = new SessionStore(table, sessionKey);
  let sweepFrom = 0;
  const tableSweeper = setInterval(() => {
    // A whole pass a minute, in slices of 1/60 (a few hundred microseconds each).
    sweepFrom = table.sweep(sweepFrom, Math.max(1, Math.ceil(table.buckets / 60)), Math.floor(Date.now() / 1000));
  }, 1_000);
  tableSweeper.unref();
  let workerRestarts = 0;
  let grantsUndeliverable = 0;
  let keyReloads = 0;
  /** Access-log reopens asked of the workers (each confirms the generation it carried out). */
  let logGeneration = 0;
  let shuttingDown = false;

  const workers: WorkerSlot[] = Array.from({ length: config.workers }, (_, index) => ({ index, worker: null, listening: false, appliedVersion: 0, logGeneration: 0, served: false, consecutiveFailures: 0 }));
  // Port 0 means "any": the first worker picks, the others join it on the same port.
  let listenConfig = config;

  const post = (w: WorkerSlot, msg: ToWorker) => w.worker?.postMessage(encode(msg));

  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));

  function spawn(slot: WorkerSlot): Promise<number[]> {
    return new Promise((resolve, reject) => {
      reader.clearGauges(slot.index);
      // A (re)started worker begins at the registry's current version.
      const init: WorkerInit = {
        workerIndex: slot.index,
        config: withBackends(listenConfig, snapshot.pools),
        keyRing,
        slots: snapshot.slots,
        backendsVersion: snapshot.version,
        routeSlots: currentRouteSlots,
        layout,
        shared,
        table: table.buffer,
        sessionKey,
        authz: terminalKeys && agentKeys ? { terminalKeys: [...terminalKeys], serverKeys: [...agentKeys] } : null,
      };
      slot.appliedVersion = snapshot.version;
      // It opens the access log where the configuration says now.
      slot.logGeneration = logGeneration;
      const worker = new Worker(WORKER_URL, { workerData: init, name: `tether-worker-${slot.index}` });
      slot.worker = worker;
      slot.listening = false;
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        void worker.terminate();
        reject(new TetherError('TETHER_ERR_WORKER', `worker ${slot.index} did not start listening within ${WORKER_START_DEADLINE_MS} ms`));
      }, WORKER_START_DEADLINE_MS);
      worker.on('message', (data: unknown) => {
        const msg = decode<FromWorker>(data);
        switch (msg.type) {
          case 'listening':
            slot.listening = true;
            slot.served = true;
            slot.consecutiveFailures = 0;
            if (!settled) {
              settled = true;
              clearTimeout(timer);
              resolve(msg.ports);
            }
            return;
          case 'listen-failed':
            if (!settled) {
              settled = true;
              clearTimeout(timer);
              reject(new TetherError('TETHER_ERR_LISTEN', `cannot listen on ${msg.address} (in use, or not an address of this machine)`));
            }
            return;
          case 'log':
            log[msg.level]({ worker: slot.index, ...msg.fields }, msg.msg);
            return;
          case 'drained':
            return;
          case 'grants':
            for (const g of control ? control.pushGrants(msg.grants) : msg.grants) {
              grantsUndeliverable++;
              log.warn({ event: 'grant_undeliverable', pool: g.pool, id: g.id }, `authorization grant for ${g.pool}/${g.id} not delivered: its control connection is gone`);
            }
            return;
          case 'backends-applied':
            slot.appliedVersion = Math.max(slot.appliedVersion, msg.version);
            for (const w of appliedWaiters.splice(0)) w();
            return;
          case 'access-log-applied':
            slot.logGeneration = Math.max(slot.logGeneration, msg.generation);
            for (const w of appliedWaiters.splice(0)) w();
            return;
        }
      });
      worker.on('error', (err) => {
        log.error({ worker: slot.index, err }, 'worker failed');
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          reject(new TetherError('TETHER_ERR_WORKER', `worker ${slot.index} failed to start: ${err.message}`, { cause: err }));
        }
      });
      worker.on('exit', (code) => {
        if (slot.worker !== worker) return;
        slot.worker = null;
        slot.listening = false;
        if (!settled) {
          // Exited before listening (its listen-failed message may not have made it out).
          settled = true;
          clearTimeout(timer);
          reject(new TetherError('TETHER_ERR_WORKER', `worker ${slot.index} exited with code ${code} before listening (address in use?)`));
        }
        // A worker that never listened is a start-up failure (the caller stops everything).
        if (shuttingDown || !slot.served) return;
        workerRestarts++;
        slot.consecutiveFailures++;
        const delay = Math.min(5_000, 100 * 2 ** (slot.consecutiveFailures - 1));
        log.error({ worker: slot.index, code, restartInMs: delay }, 'worker exited; restarting');
        setTimeout(() => {
          if (shuttingDown) return;
          spawn(slot).catch((err: Error) => log.error({ worker: slot.index, err }, 'worker restart failed'));
        }, delay).unref();
      });
    });
  }

  /** Called whenever a worker reports a newer applied version. */
  const appliedWaiters: (() => void)[] = [];

  /**
   * Sends the registry's current snapshot to every worker and resolves once each running one
   * routes by it (a worker that restarts meanwhile starts from it anyway), or after a deadline:
   * a stuck worker must not stall the control plane.
   */
  function publish(): Promise<void> {
    snapshot = registry.snapshot();
    const version = snapshot.version;
    // The pools' policies travel too: a reload may have changed them with or without the lists.
    for (const w of workers) post(w, { v: 1, type: 'backends', snapshot: { ...snapshot, config: withBackends(listenConfig, snapshot.pools), routeSlots: currentRouteSlots } });
    updateChecks();
    return confirmed((w) => w.appliedVersion >= version, `registry change ${version}`);
  }

  /**
   * Resolves once every running worker has confirmed (`done`), or after PUBLISH_DEADLINE_MS
   * with a warning naming the laggards. A worker restarted meanwhile starts from the new state.
   */
  function confirmed(done: (w: WorkerSlot) => boolean, what: string): Promise<void> {
    const lagging = () => workers.filter((w) => w.worker && w.listening && !done(w));
    return new Promise((resolve) => {
      const check = () => {
        if (lagging().length > 0) {
          appliedWaiters.push(check);
          return;
        }
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = appliedWaiters.indexOf(check);
        if (i >= 0) appliedWaiters.splice(i, 1);
        log.warn({ workers: lagging().map((w) => w.index) }, `${what} not confirmed by every worker within ${PUBLISH_DEADLINE_MS} ms`);
        resolve();
      }, PUBLISH_DEADLINE_MS);
      check();
    });
  }

  /** Every worker reopens the access log at `dest` (null: stops logging); resolves when all have. */
  function applyAccessLog(dest: string | null): Promise<void> {
    const generation = ++logGeneration;
    for (const w of workers) post(w, { v: 1, type: 'access-log', dest, generation });
    return confirmed((w) => w.logGeneration >= generation, 'access log reopen');
  }

  const checker = new HealthChecker({
    onChange: (key, up, detail) => {
      const [pool, id] = key.split('\0') as [string, string];
      registry.setCheck(pool, id, up, detail);
    },
  });
  function updateChecks(): void {
    checker.setTargets(
      registry.entries().flatMap((e) => {
        const hc = config.pools[e.pool]?.healthCheck;
        return hc ? [{ key: `${e.pool}\0${e.id}`, host: e.address, port: e.port, check: toCheck(hc) }] : [];
      }),
    );
  }
  updateChecks();
  const heartbeats = setInterval(() => registry.expire(config.control.heartbeatTimeoutMs), 1_000);
  heartbeats.unref();
  const control = agentKeys
    ? new ControlServer({
        keys: agentKeys,
        registry,
        publish,
        windowMs: config.control.windowMs,
        log,
        onConnection: (pool, id, connected) => {
          const e = registry.get(pool, id);
          if (e) reader.setControlConnected(e.slot, connected);
        },
      })
    : null;

  const dashboard = new Dashboard({ registry, reader, events });

  const metrics = createMetrics({
    reader,
    backends: () => registry.entries().map((e) => ({ pool: e.pool, id: e.id, slot: e.slot, checkDown: e.checkDown, lost: e.lost, draining: e.draining !== null })),
    addressConflicts: () => registry.conflicts,
    controlFrames: () => control?.frames ?? {},
    grantsUndeliverable: () => grantsUndeliverable,
    workerRestarts: () => workerRestarts,
    workersRunning: () => workers.filter((w) => w.listening).length,
    keyReloads: () => keyReloads,
    keyRing: () => keyRing,
    workerCount: config.workers,
    httpConnections: () => countEstablished(listenConfig.listen),
    passthroughRoutes: () => config.passthrough.routes.map((r, i) => ({ sni: r.sni, pool: r.pool, slot: currentRouteSlots[i]! })),
    table: () => table.stats(),
  });

  let admin: AdminServer | null = null;
  try {
    // uWS sets SO_REUSEPORT only for an explicit port, so port 0 is resolved here first and
    // every worker binds the same explicit port.
    // An explicit port is probed without SO_REUSEPORT first: the workers' reuseport sockets
    // would otherwise silently share a port with another process (say, a second Tether).
    listenConfig = {
      ...config,
      listen: await Promise.all(config.listen.map(async (l) => ({ host: l.host, port: await exclusivePort(l.host, l.port) }))),
      // The passthrough sockets are SO_REUSEPORT too (opened by the addon): same rule.
      passthrough: {
        ...config.passthrough,
        listen: await Promise.all(config.passthrough.listen.map(async (l) => ({ host: l.host, port: await exclusivePort(l.host, l.port) }))),
      },
    };
    await Promise.all(workers.map((w) => spawn(w)));
    if (config.admin) {
      admin = await startAdmin(config.admin, {
        ready: () => !shuttingDown && workers.every((w) => w.listening),
        metrics: () => metrics.text(),
        contentType: metrics.contentType,
        adminToken,
        revoke: (body) => revokeSession(body, { config, sessions, log }),
        ...backendsApi({ registry, reader, events, publish, checkState: (pool, id) => checker.state(`${pool}\0${id}`) }),
        mountControl: control ? (app) => control.mount(app) : undefined,
        mountDashboard: (app) => dashboard.mount(app),
        failed: (err, where) => log.error({ event: 'admin_request_failed', where, err }, `admin request failed (answered 500; traffic unaffected): ${where}`),
        reload: async () => {
          const r = await reload('api');
          return r.ok ? { status: 200, body: { result: 'reloaded', version: r.version } } : { status: 400, body: { error: 'invalid_config', message: 'reload refused; the running configuration stays', problems: r.problems } };
        },
      });
      if (!adminToken) log.warn('no --admin-token-file: the admin API is read-only (changes are refused)');
    }
  } catch (err) {
    shuttingDown = true;
    clearInterval(heartbeats);
    checker.close();
    control?.close();
    dashboard.close();
    await Promise.all(workers.map((w) => stopWorker(w, 0)));
    throw err;
  }

  let reloading: Promise<ReloadResult> | null = null;
  /** One reload at a time; a second request while one runs waits for it and runs after. */
  async function reload(by: string): Promise<ReloadResult> {
    while (reloading) await reloading.catch(() => undefined);
    reloading = doReload(by);
    try {
      return await reloading;
    } finally {
      reloading = null;
    }
  }

  async function doReload(by: string): Promise<ReloadResult> {
    let next: Config;
    try {
      next = reread();
    } catch (err) {
      const problems = ((err as Error).message.split('\n').slice(1).map((l) => l.trim()).filter(Boolean));
      log.error({ event: 'reload_refused', by, problems }, 'reload refused: the configuration is invalid; the running one stays');
      return { ok: false, problems: problems.length > 0 ? problems : [(err as Error).message] };
    }
    const problems: string[] = [];
    for (const key of FIXED_ON_RELOAD) {
      if (JSON.stringify(config[key]) !== JSON.stringify(next[key])) problems.push(`${key}: cannot change while running (restart to apply it)`);
    }
    if (JSON.stringify(config.passthrough.listen) !== JSON.stringify(next.passthrough.listen)) problems.push('passthrough.listen: cannot change while running (restart to apply it)');
    if (config.limits.mallocTrimThresholdBytes !== next.limits.mallocTrimThresholdBytes) problems.push('limits.mallocTrimThresholdBytes: cannot change while running (restart to apply it)');
    if (next.accessLog && next.accessLog !== '-') {
      try {
        checkAppendable(next.accessLog);
      } catch (err) {
        problems.push(`accessLog: ${(err as Error).message}`);
      }
    }
    const routePlan = routeSlots.plan(next.passthrough.routes);
    if (routePlan.problem) problems.push(routePlan.problem);
    const plan = registry.planReload(next);
    problems.push(...plan.problems);
    if (problems.length > 0) {
      log.error({ event: 'reload_refused', by, problems }, 'reload refused; the running configuration stays');
      return { ok: false, problems };
    }
    plan.apply();
    routePlan.apply();
    currentRouteSlots = routePlan.slots;
    config = next;
    listenConfig = { ...next, listen: listenConfig.listen, passthrough: { ...next.passthrough, listen: listenConfig.passthrough.listen } };
    log.level = next.logLevel;
    await publish();
    // A reload reopens the access log too (a new path, on or off, or a rotated file).
    await applyAccessLog(config.accessLog ?? null);
    try {
      reloadKeys();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reload: key file rejected; the running keys stay');
    }
    events.add('config_reloaded', 'info', `configuration reloaded (${by})`, { by, version: registry.version });
    log.info({ event: 'config_reloaded', by, version: registry.version }, 'configuration reloaded');
    return { ok: true, version: registry.version };
  }

  function reloadKeys(): void {
    if (config.authz.terminalKeysFile) {
      // A bad terminal key file keeps the running keys, as a bad route-token key file does.
      try {
        const next = readTerminalKeys(config.authz.terminalKeysFile);
        terminalKeys = next;
        for (const w of workers) post(w, { v: 1, type: 'terminal-keys', keys: [...next] });
        log.info({ terminalKeys: next.size }, 'terminal keys reloaded');
      } catch (err) {
        log.error({ err: (err as Error).message }, 'SIGHUP: terminal key file rejected; the running terminal keys stay');
      }
    }
    if (!config.keyFile) {
      log.warn('SIGHUP: no --key-file to re-read; the random key stays');
      return;
    }
    const next = readKeyFile(config.keyFile);
    const { ring, warnings } = rotate(keyRing, next, config.keyGraceSec, Date.now());
    for (const w of warnings) log.warn(w);
    keyRing = ring;
    for (const w of workers) post(w, { v: 1, type: 'key-ring', keyRing });

    keyReloads++;
    log.info(
      { keys: ring.keys.map((k) => ({ id: k.id, retireAt: k.retireAt ? new Date(k.retireAt).toISOString() : undefined })), sealKeyId: ring.sealKeyId },
      'route-token keys reloaded',
    );
  }

  async function reopenLogs(by: string): Promise<boolean> {
    const dest = config.accessLog;
    if (!dest) {
      log.info({ by }, 'no --access-log to reopen');
      return true;
    }
    if (dest !== '-') {
      try {
        checkAppendable(dest);
      } catch (err) {
        log.error({ by, err: (err as Error).message }, 'access log not reopened; workers keep writing to the file they have');
        return false;
      }
    }
    await applyAccessLog(dest);
    log.info({ event: 'access_log_reopened', by, path: dest }, 'access log reopened by every worker');
    return true;
  }

  async function stop(drainMs = config.drainTimeoutMs): Promise<void> {
    clearInterval(tableSweeper);
    clearInterval(heartbeats);
    checker.close();
    control?.close();
    dashboard.close();
    if (shuttingDown) return stopped;
    shuttingDown = true;
    await Promise.all(workers.map((w) => stopWorker(w, drainMs)));
    admin?.close();
    resolveStopped();
  }

  /**
   * Asks a worker to close its listeners and exit once drained. A worker must close its uWS
   * sockets itself: terminating a thread with uWS handles open aborts the whole process, so
   * terminate() is only the backstop for a worker that stopped answering messages.
   */
  function stopWorker(w: WorkerSlot, drainMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const worker = w.worker;
      if (!worker) return resolve();
      const backstop = setTimeout(() => void worker.terminate(), drainMs + 5_000);
      worker.once('exit', () => {
        clearTimeout(backstop);
        resolve();
      });
      post(w, { v: 1, type: 'shutdown', drainMs });
    });
  }

  /** Workers must close their own uWS sockets before the process goes (see stopWorker). */
  function stopNow(): Promise<void> {
    shuttingDown = true;
    const exits = workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (!w.worker) return resolve();
          w.worker.once('exit', () => resolve());
          post(w, { v: 1, type: 'shutdown', drainMs: 0 });
        }),
    );
    return Promise.race([Promise.all(exits).then(() => undefined), new Promise<void>((r) => setTimeout(r, STOP_NOW_BACKSTOP_MS))]);
  }

  return {
    stopNow,
    httpPorts: listenConfig.listen.map((l) => l.port),
    passthroughPorts: listenConfig.passthrough.listen.map((l) => l.port),
    adminPort: admin?.port ?? null,
    reloadKeys,
    reload,
    reopenLogs,
    stop,
    stopped,
  };
}

/**
 * `port` on `host` if nothing holds it right now (0: any free port), checked by binding it
 * without SO_REUSEPORT and releasing it.
 */
function exclusivePort(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new TetherError(
          'TETHER_ERR_LISTEN',
          err.code === 'EADDRINUSE'
            ? `cannot listen on ${host}:${port}: already in use by another process (another Tether?)`
            : `cannot listen on ${host}:${port}: ${err.message}`,
          { cause: err },
        ),
      ),
    );
    srv.listen({ port, host, exclusive: true }, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function withBackends(config: Config, pools: Record<string, BackendConfig[]>): Config {
  return { ...config, pools: Object.fromEntries(Object.entries(config.pools).map(([name, pc]) => [name, { ...pc, backends: pools[name] ?? [] }])) };
}

const MIN_ADMIN_TOKEN_CHARS = 16;

/** The contents of the file a flag names; an unreadable file is a TETHER_ERR_CONFIG naming both. */
function readFlagFile(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new TetherError('TETHER_ERR_CONFIG', `cannot read ${flag} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function readAdminToken(path: string): string {
  const text = readFlagFile(path, '--admin-token-file').trim();
  if (text.length < MIN_ADMIN_TOKEN_CHARS || /\s/.test(text)) {
    throw new TetherError('TETHER_ERR_CONFIG', `--admin-token-file ${path} must hold one token of at least ${MIN_ADMIN_TOKEN_CHARS} characters without spaces (e.g. \`openssl rand -hex 32\`)`);
  }
  return text;
}

/** Reads a key file for `flag`; any problem becomes a TETHER_ERR_CONFIG naming the file. */
function readKeys(path: string, flag: string, parse: (text: string, source: string) => Map<string, Buffer>): Map<string, Buffer> {
  const text = readFlagFile(path, flag);
  try {
    return parse(text, path);
  } catch (err) {
    throw new TetherError('TETHER_ERR_CONFIG', (err as Error).message, { cause: err });
  }
}

const readTerminalKeys = (path: string) => readKeys(path, '--terminal-keys', parseTerminalKeys);
const readAgentKeys = (path: string) => readKeys(path, '--agent-keys', parseAgentKeys);

/** The config's check (expect as 'NNN' or 'NNN-NNN') in the checker's shape. */
function toCheck(hc: HealthCheckConfig): CheckSpec {
  const timing = { intervalMs: hc.intervalMs, timeoutMs: hc.timeoutMs, rise: hc.rise, fall: hc.fall };
  if (hc.type === 'tcp') return { type: 'tcp', ...timing };
  const [min, max = min] = hc.expect.split('-').map(Number) as [number, number?];
  return { type: 'http', path: hc.path, expect: { min, max }, ...(hc.host ? { host: hc.host } : {}), ...timing };
}

/** Fails start-up with a clear message when the access log cannot be opened (workers open it themselves). */
function checkAppendable(path: string): void {
  try {
    closeSync(openSync(path, 'a', 0o640));
  } catch (err) {
    throw new TetherError('TETHER_ERR_CONFIG', `cannot open --access-log ${path} for appending: ${(err as Error).message}`, { cause: err });
  }
}
