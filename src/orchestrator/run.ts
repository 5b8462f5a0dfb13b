// Process lifecycle: argv → config → (demo backends) → workers + admin → signals.
// SIGHUP reloads the configuration; SIGUSR1 reopens the access log; SIGTERM/SIGINT drain and exit 0;
// a second one exits at once.
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import pino from 'pino';
import { loadConfig, helpText } from '../config/load.js';
import { poolSchema, type Config } from '../config/schema.js';
import { generateKeyLine } from '../config/key-file.js';
import { TetherError } from '../errors.js';
import { VERSION } from '../version.js';
import { startDemoBackends, type DemoBackend } from './demo-backends.js';
import { startTether } from './supervisor.js';
import { setMallocTrimThreshold } from '../native/index.js';


export async function run(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'keygen') return keygen(argv.slice(1));
  if (argv[0] === 'agent') return (await import('../control/agent.js')).runAgent(argv.slice(1));
  let loaded;
  try {
    loaded = loadConfig(argv);
  } catch (err) {
    if (err instanceof TetherError) {
      process.stderr.write(`tether: ${err.message}\n\nRun \`tether --help\` for the flags.\n`);
      return 2;
    }
    throw err;
  }
  if (loaded.help) {
    process.stdout.write(`${helpText()}\n`);
    return 0;
  }
  if (loaded.version) {
    process.stdout.write(`tether ${VERSION}\n`);
    return 0;
  }
  const log = pino({ level: loaded.config.logLevel, base: { pid: process.pid } });
  let demo: DemoBackend[] = [];
  const empty = Object.values(loaded.config.pools).every((p) => p.backends.length === 0);
  if (empty && loaded.config.demo && !loaded.config.control.agentKeysFile) {
    demo = await startDemoBackends(2);
    log.warn({ backends: demo.map((d) => `${d.id}=127.0.0.1:${d.port}`) }, 'no --backend given: started two demo backends');
  }
  const config: Config = withDemo(loaded.config, demo);
  // Once, before any worker thread allocates: it holds for every thread's heap. A reload that
  // changes it is refused (reload.ts), as one that changes the table size is.
  const trimBytes = config.limits.mallocTrimThresholdBytes;
  const mallocTrimThreshold = trimBytes === 0 ? 'default' : setMallocTrimThreshold(trimBytes) ? trimBytes : 'unsupported';
  if (mallocTrimThreshold === 'unsupported') log.warn({ mallocTrimThreshold: trimBytes }, 'this C library has no M_TRIM_THRESHOLD (not glibc): --malloc-trim-threshold has no effect');
  /** The configuration as argv, env and the file say now (a reload): every problem at once, or a Config. */
  const reread = (): Config => withDemo(loadConfig(argv).config, demo);

  let tether;
  try {
    tether = await startTether(config, log, reread);
  } catch (err) {
    log.fatal({ code: (err as TetherError).code, err: (err as Error).message }, 'tether failed to start');
    await Promise.all(demo.map((d) => d.close()));
    return 1;
  }
  const http = config.listen.map((l, i) => `${l.protocol}://${l.host.includes(':') ? `[${l.host}]` : l.host}:${tether.httpPorts[i]}`);
  const tls = config.passthrough.listen.map((l, i) => `tls://${l.host.includes(':') ? `[${l.host}]` : l.host}:${tether.passthroughPorts[i]}`);
  const pidFile = config.pidFile;
  const removePidFile = () => {
    if (pidFile) removeOwnPidFile(pidFile);
  };

  let signals = 0;
  const onStop = (signal: string) => {
    if (++signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      // Not process.exit() straight away: a worker torn down with its sockets open aborts the
      // process (libuv's loop-close check). Workers close theirs first, within a second.
      void tether.stopNow().then(() => {
        removePidFile();
        process.exit(1);
      });
      return;
    }
    log.info({ signal }, 'stopping: draining in-flight requests');
    // The running configuration's drain timeout: a reload may have changed it.
    void tether.stop();
  };
  process.on('SIGTERM', () => onStop('SIGTERM'));
  process.on('SIGINT', () => onStop('SIGINT'));
  process.on('SIGHUP', () => {
    void tether.reload('SIGHUP');
  });
  // Log rotation, as nginx does it: rename the file away, then SIGUSR1.
  process.on('SIGUSR1', () => {
    void tether.reopenLogs('SIGUSR1');
  });
  // The pid file only once the signals it invites are handled (a SIGHUP before would kill).
  if (config.pidFile) {
    try {
      writePidFile(config.pidFile);
    } catch (err) {
      log.fatal({ err: (err as Error).message }, `cannot write --pid-file ${config.pidFile}`);
      await tether.stop(0);
      await Promise.all(demo.map((d) => d.close()));
      return 1;
    }
  }
  log.info(
    { event: 'listening', http, httpPorts: tether.httpPorts, passthrough: tls, passthroughPorts: tether.passthroughPorts, adminPort: tether.adminPort, workers: config.workers, mallocTrimThreshold },
    `tether ${VERSION} listening on ${[...http, ...tls].join(', ')}`,
  );
  await tether.stopped;
  removePidFile();
  await Promise.all(demo.map((d) => d.close()));
  log.info({ event: 'stopped' }, 'stopped');
  return 0;
}

/** The pid, written whole: to a temporary file beside PATH, then renamed over it. */
function writePidFile(path: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${process.pid}\n`, { mode: 0o644 });
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Removes PATH if it still names this process (another instance may have taken it over). */
function removeOwnPidFile(path: string): void {
  try {
    if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
  } catch {
    // already gone
  }
}

/** With the demo backends running, a config without backends gets them (at start and on reload). */
function withDemo(config: Config, demo: readonly DemoBackend[]): Config {
  if (demo.length === 0 || !Object.values(config.pools).every((p) => p.backends.length === 0)) return config;
  const poolName = Object.keys(config.pools)[0] ?? 'default';
  const base = config.pools[poolName] ?? poolSchema.parse({});
  return { ...config, pools: { [poolName]: { ...base, backends: demo.map((d) => ({ id: d.id, address: '127.0.0.1', port: d.port, weight: 1, tls: null })) } } };
}

function keygen(argv: readonly string[]): number {
  if (argv[0] === '--agent') {
    const pool = argv[1] ?? '';
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(pool) || argv.length > 2) {
      process.stderr.write(`tether keygen --agent: expected a pool name but received '${pool}'\n`);
      return 2;
    }
    process.stdout.write(`# tether agent key for pool ${pool}, made ${new Date().toISOString()}: give the balancer (--agent-keys) and the pool's agents (--key-file) this line\n${pool} ${randomBytes(32).toString('hex')}\n`);
    return 0;
  }
  let id = 1;
  if (argv[0] === '--id') {
    const n = Number(argv[1]);
    if (!Number.isInteger(n) || n < 0 || n > 255) {
      process.stderr.write(`tether keygen: expected --id 0-255 but received '${argv[1] ?? ''}'\n`);
      return 2;
    }
    id = n;
  } else if (argv.length > 0) {
    process.stderr.write('usage: tether keygen [--id N] | tether keygen --agent POOL\n');
    return 2;
  }
  process.stdout.write(`# tether route-token key, made ${new Date().toISOString()}; the first key line seals\n${generateKeyLine(id)}\n`);
  return 0;
}
