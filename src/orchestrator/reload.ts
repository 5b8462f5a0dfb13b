// Changes to a running Tether asked for from outside: a reload (SIGHUP, POST /api/v1/reload)
// re-reads the configuration, checks it against the one in force, and either refuses it whole
// with every problem or applies it and sends it to every worker; a log reopen (SIGUSR1) has
// every worker reopen the access log by its path.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { CertificateStore } from '../tls/certificates.js';
import type { EventLog } from './events.js';
import type { Registry } from './registry.js';
import type { RouteSlots } from './route-slots.js';
import { checkAppendable, checkBackendCa } from './startup-files.js';

export type ReloadResult = { ok: true; version: number } | { ok: false; problems: string[] };

/** The configuration in force and what derives from it; a reload replaces all three together. */
export interface ConfigInForce {
  /** As configured (a listener's port 0 stays 0). */
  config: Config;
  /** `config` with every listener's port explicit: what the workers bind (listen-ports.ts). */
  listenConfig: Config;
  /** Counter slot of each config.passthrough.routes entry (route-slots.ts). */
  routeSlots: number[];
}

/**
 * What a reload cannot change: listeners, threads, the memory sized at start, and the files
 * and listeners of the control and authorization channels. (The passthrough listeners are
 * compared on their own: its routes and timeouts do reload.)
 */
const FIXED_ON_RELOAD = ['listen', 'admin', 'workers', 'tableSize', 'control', 'authz', 'adminTokenFile', 'keyFile', 'demo', 'pidFile'] as const;

/** One problem for each setting that differs between `current` and `next` but only a restart can apply. */
function fixedSettingProblems(current: Config, next: Config): string[] {
  const problems: string[] = [];
  for (const key of FIXED_ON_RELOAD) {
    if (JSON.stringify(current[key]) !== JSON.stringify(next[key])) problems.push(`${key}: cannot change while running (restart to apply it)`);
  }
  if (JSON.stringify(current.passthrough.listen) !== JSON.stringify(next.passthrough.listen)) problems.push('passthrough.listen: cannot change while running (restart to apply it)');
  // Set once for every thread's heap, before any worker allocated (run.ts).
  if (current.limits.mallocTrimThresholdBytes !== next.limits.mallocTrimThresholdBytes) problems.push('limits.mallocTrimThresholdBytes: cannot change while running (restart to apply it)');
  // node:tls takes the handshake deadline when its server is made.
  if (current.tls.handshakeTimeoutMs !== next.tls.handshakeTimeoutMs) problems.push('tls.handshakeTimeoutMs: cannot change while running (restart to apply it)');
  return problems;
}

export interface ReloadDeps {
  inForce: ConfigInForce;
  /** The configuration as flags, env and file say now; throws with every problem, one per line after the first. */
  reread(): Config;
  routeSlots: RouteSlots;
  registry: Registry;
  events: EventLog;
  log: Logger;
  /** Sends the registry's snapshot, with the configuration in force, to every worker and waits for them. */
  publish(): Promise<void>;
  /** Every worker reopens the access log at `dest` (null: stops logging) and confirms. */
  reopenAccessLog(dest: string | null): Promise<void>;
  /** Re-reads the key files named by the configuration in force; throws on a bad route-token key file. */
  reloadKeys(): void;
  /** Reads and checks the HTTPS certificates `next` names (throws with every problem); warnings go to the log. */
  checkCertificates(next: Config): CertificateStore | null;
  /** `checked` is in force: every worker re-reads the certificates for its next handshakes, and confirms. */
  reloadCertificates(checked: CertificateStore | null): Promise<void>;
}

/**
 * Runs reloads, one at a time (a second request waits for the first, then runs). Decides what a
 * reload does: refused whole, nothing changed, if the configuration is invalid, changes a fixed
 * setting (fixedSettingProblems), names an access log that cannot be opened, needs more route
 * counter slots than remain, or is refused by the registry's plan. Otherwise the registry, route
 * slots, configuration and log level change together; then the workers route by it, reopen the
 * access log, and the keys are re-read (a bad key file is logged; the reload still succeeds).
 * Listeners stay open and requests in flight finish on the old configuration.
 */
export class Reloader {
  private running: Promise<ReloadResult> | null = null;

  constructor(private readonly d: ReloadDeps) {}

  /** Re-reads and applies the configuration; `by` (SIGHUP, api) is logged and recorded as an event. */
  async reload(by: string): Promise<ReloadResult> {
    while (this.running) await this.running.catch(() => undefined);
    this.running = this.reloadNow(by);
    try {
      return await this.running;
    } finally {
      this.running = null;
    }
  }

  private async reloadNow(by: string): Promise<ReloadResult> {
    const { inForce, log, registry } = this.d;
    let next: Config;
    try {
      next = this.d.reread();
    } catch (err) {
      const problems = ((err as Error).message.split('\n').slice(1).map((l) => l.trim()).filter(Boolean));
      log.error({ event: 'reload_refused', by, problems }, 'reload refused: the configuration is invalid; the running one stays');
      return { ok: false, problems: problems.length > 0 ? problems : [(err as Error).message] };
    }
    const problems = fixedSettingProblems(inForce.config, next);
    if (next.accessLog && next.accessLog !== '-') {
      try {
        checkAppendable(next.accessLog);
      } catch (err) {
        problems.push(`accessLog: ${(err as Error).message}`);
      }
    }
    // The certificates are read again whenever the configuration is (rotation: same paths, new files).
    let certificates: CertificateStore | null = null;
    if (next.tls.certs.length > 0) {
      try {
        certificates = this.d.checkCertificates(next);
      } catch (err) {
        problems.push(`tls.certs: ${(err as Error).message}`);
      }
    }
    if (next.tls.backendCa) {
      try {
        checkBackendCa(next.tls.backendCa);
      } catch (err) {
        problems.push(`tls.backendCa: ${(err as Error).message}`);
      }
    }
    const routePlan = this.d.routeSlots.plan(next.passthrough.routes);
    if (routePlan.problem) problems.push(routePlan.problem);
    const plan = registry.planReload(next);
    problems.push(...plan.problems);
    if (problems.length > 0) {
      log.error({ event: 'reload_refused', by, problems }, 'reload refused; the running configuration stays');
      return { ok: false, problems };
    }
    plan.apply();
    routePlan.apply();
    inForce.routeSlots = routePlan.slots;
    inForce.config = next;
    // The listeners stay as they are: their ports were resolved at start (and cannot change).
    inForce.listenConfig = { ...next, listen: inForce.listenConfig.listen, passthrough: { ...next.passthrough, listen: inForce.listenConfig.passthrough.listen } };
    log.level = next.logLevel;
    await this.d.publish();
    // New handshakes get the new certificates; open connections keep theirs.
    if (next.tls.certs.length > 0) await this.d.reloadCertificates(certificates);
    // A reload reopens the access log too (a new path, on or off, or a rotated file).
    await this.d.reopenAccessLog(inForce.config.accessLog ?? null);
    try {
      this.d.reloadKeys();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reload: key file rejected; the running keys stay');
    }
    this.d.events.add('config_reloaded', 'info', `configuration reloaded (${by})`, { by, version: registry.version });
    log.info({ event: 'config_reloaded', by, version: registry.version }, 'configuration reloaded');
    return { ok: true, version: registry.version };
  }
}

/**
 * Log rotation (SIGUSR1): every worker reopens the access log of the configuration in force by
 * its path. False, and nothing asked of the workers, if the path cannot be opened (they keep
 * writing where they were); true without an access log.
 */
export async function reopenLogs(by: string, d: Pick<ReloadDeps, 'inForce' | 'log' | 'reopenAccessLog'>): Promise<boolean> {
  const { log } = d;
  const dest = d.inForce.config.accessLog;
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
  await d.reopenAccessLog(dest);
  log.info({ event: 'access_log_reopened', by, path: dest }, 'access log reopened by every worker');
  return true;
}
