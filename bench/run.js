// Load bench: Tether against HAProxy, nginx and node-http-proxy, with wrk, on loopback.
// Two uWS backends stay up for the whole run; each balancer is started fresh for every
// measured run, on the same two backends, and stopped after it. TLS passthrough scenarios
// (backendKind 'tls') get two TLS backends instead (tls-backend.js, certificates for
// app1.bench.test and app2.bench.test from a CA made for the run), and the peers that do
// passthrough are started in that mode with one SNI route per name; HTTPS scenarios (frontend
// 'https') get a certificate made for the run (https.bench.test, from its own CA), and the peers
// that terminate TLS are started with their startHttps() on it; an `authz` scenario starts
// the peers that do the authorization handshake with their startAuthz(). Rounds are interleaved
// (round r: every peer in turn) so slow drifts of a shared machine hit every peer alike.
// See `node bench/run.js --help`; results go to DIR/results.json and the terminal.

import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { delay, freePort, killAll, onExit, startProcess } from './load/processes.js';
import { cpuSecondsBetween, groupCpuTicks, sampleGroupRss } from './load/proc-stats.js';
import { runWrk, writeWrkScript } from './load/wrk.js';
import { machineInfo } from './load/machine.js';
import { findExecutable } from './load/peers/common.js';
import { peers as allPeers, runsIn } from './load/peers/index.js';
import { makePki } from './load/pki.js';
import { scenarios as allScenarios } from './load/scenarios/index.js';
import { formatReport } from './report.js';
import { renderHtml } from './report-html.js';
import { createProgress } from './load/progress.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const BACKEND_NAMES = ['app1', 'app2'];
/** Passthrough: backend `app1` holds the certificate for app1.bench.test, and so on; one route per name. */
const TLS_DOMAIN = 'bench.test';
const isTls = (scenario) => scenario.backendKind === 'tls';
/** HTTPS scenarios: the peer terminates TLS with a certificate for this name (the CA and the leaf made per run). */
const HTTPS_NAME = 'https.bench.test';
const isHttps = (scenario) => scenario.frontend === 'https';
/** A scenario's kind of peer setup: 'tls' (passthrough), 'https' (termination) or 'http'. */
const kindOf = (scenario) => (isTls(scenario) ? 'tls' : isHttps(scenario) ? 'https' : 'http');
const READY_DEADLINE_MS = 15_000;
const STOP_GRACE_MS = 3_000;

const HELP = `usage: node bench/run.js [options]

  --scenario LIST     comma-separated, default ${allScenarios.map((s) => s.name).join(',')}
  --peers LIST        comma-separated, default ${allPeers.filter((p) => !p.optIn).map((p) => p.name).join(',')}
                      (also: ${allPeers.filter((p) => p.optIn).map((p) => p.name).join(',')}, when named)
  --duration S        seconds per measured run (default 10; --quick: 3)
  --warmup S          seconds of load on each fresh balancer before measuring (default 2; --quick: 1; 0 = none)
  --connections C     wrk connections (default 50)
  --threads T         wrk threads (default 2)
  --workers W         balancer threads/processes (default 2)
  --repeat N          measured rounds per scenario, after one warm-up round (default 3; --quick: 1)
  --out DIR           where results.json goes (default bench/out/<timestamp>)
  --quick             smoke run: --duration 3 --repeat 1 --warmup 1 unless given
  --install-peers     install missing Debian peers and wrk with apt-get first (needs root)
  --help
`;

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      scenario: { type: 'string' },
      peers: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      threads: { type: 'string' },
      workers: { type: 'string' },
      repeat: { type: 'string' },
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'install-peers': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const problems = [];
  const integer = (flag, fallback, min, max) => {
    if (values[flag] === undefined) return fallback;
    const n = Number(values[flag]);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`expected an integer in [${min}, ${max}] for --${flag} but received ${JSON.stringify(values[flag])}`);
    }
    return n;
  };
  const list = (flag, known) => {
    // Opt-in entries (tether-baseline: needs TETHER_BASELINE) run only when named.
    if (values[flag] === undefined) return known.filter((k) => !k.optIn).map((k) => k.name);
    const names = values[flag].split(',').map((s) => s.trim()).filter(Boolean);
    for (const n of names) {
      if (!known.some((k) => k.name === n)) {
        problems.push(`expected --${flag} names among ${known.map((k) => k.name).join(', ')} but received ${JSON.stringify(n)}`);
      }
    }
    if (names.length === 0) problems.push(`expected at least one name for --${flag}`);
    return [...new Set(names)];
  };
  const options = {
    scenarios: list('scenario', allScenarios),
    peers: list('peers', allPeers),
    duration: integer('duration', values.quick ? 3 : 10, 1, 600),
    warmup: integer('warmup', values.quick ? 1 : 2, 0, 60),
    connections: integer('connections', 50, 1, 10_000),
    threads: integer('threads', 2, 1, 64),
    workers: integer('workers', 2, 1, 64),
    repeat: integer('repeat', values.quick ? 1 : 3, 1, 50),
    quick: values.quick,
    installPeers: values['install-peers'],
  };
  if (options.connections < options.threads) problems.push('expected --connections ≥ --threads (wrk needs a connection per thread)');
  if (problems.length > 0) {
    process.stderr.write(`${problems.join('\n')}\n\n${HELP}`);
    process.exit(2);
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  options.out = values.out ?? join(repoRoot, 'bench', 'out', stamp);
  return options;
}

/**
 * Starts one backend process (bench/load/backend.js NAME, or tls-backend.js NAME KEY CERT
 * when `tls` = { keyFile, certFile }) and resolves { name, port, handle } once it listens.
 */
async function startBackend(name, tls = null) {
  let announce;
  const listening = new Promise((resolve) => {
    announce = resolve;
  });
  const script = tls ? 'bench/load/tls-backend.js' : 'bench/load/backend.js';
  const args = [join(repoRoot, script), name, ...(tls ? [tls.keyFile, tls.certFile] : [])];
  const handle = startProcess(`${tls ? 'tls-backend' : 'backend'} ${name}`, process.execPath, args, {
    onStdoutLine: (line) => {
      try {
        const message = JSON.parse(line);
        if (message.ready) announce(message.port);
      } catch {
        // not our line
      }
    },
  });
  const port = await Promise.race([
    listening,
    handle.exited.then((e) => Promise.reject(new Error(`backend ${name} exited (${e.code ?? e.signal}):\n${handle.output()}`))),
    delay(10_000).then(() => Promise.reject(new Error(`backend ${name} not listening within 10 s:\n${handle.output()}`))),
  ]);
  return { name, port, handle };
}

/**
 * The passthrough setting: a CA and a certificate per backend name (in `dir`), one TLS
 * backend per name, and the routes (name.bench.test → name). Resolves { backends, routes, ca }.
 */
async function startTlsBackends(dir) {
  const routes = BACKEND_NAMES.map((name) => ({ serverName: `${name}.${TLS_DOMAIN}`, backend: name }));
  const pki = makePki(dir, routes.map((r) => r.serverName));
  const backends = await Promise.all(routes.map((r) => startBackend(r.backend, pki.leaf(r.serverName))));
  return { backends, routes, ca: pki.ca };
}

/**
 * The HTTPS setting: a CA and one certificate for HTTPS_NAME (in `dir`), as the peers take it:
 * pemFile (the leaf, then its key), certFile and keyFile apart, the CA to verify with.
 */
function makeHttpsCertificate(dir) {
  const pki = makePki(dir, [HTTPS_NAME]);
  return { ...pki.leaf(HTTPS_NAME), pemFile: pki.bundle(HTTPS_NAME), ca: pki.ca, serverName: HTTPS_NAME };
}

/**
 * One run of one peer in one scenario: start, wait ready, prepare (cookies + checks), warm
 * up, measure wrk + CPU + RSS, stop. Never throws: failures become { ok: false, error }.
 */
async function runOnce({ peer, scenario, round, options, backends, tls, https, workDir, setups }) {
  const record = { scenario: scenario.name, peer: peer.name, round, ok: false };
  const dir = join(workDir, peer.name);
  mkdirSync(dir, { recursive: true });
  let started = null;
  let exitedEarly = null;
  let prepared = null;
  try {
    const port = await freePort();
    const common = {
      workers: options.workers,
      // Peers size their connection limits by this: the load plus any idle connections the scenario holds.
      connections: options.connections + (scenario.idleConnections ?? 0),
      port,
      dir,
      repoRoot,
    };
    const passthrough = isTls(scenario);
    if (passthrough && !scenario.measure) throw new Error(`scenario ${scenario.name}: a passthrough scenario must drive its own load (measure)`);
    const httpBackends = backends.map(({ name, port: p }) => ({ name, port: p }));
    started = passthrough
      ? await peer.startPassthrough({ ...common, tlsBackends: tls.backends.map(({ name, port: p }) => ({ name, port: p })), routes: tls.routes, ca: tls.ca })
      : scenario.authz
        ? await peer.startAuthz({ ...common, backends: httpBackends })
        : isHttps(scenario)
          ? await peer.startHttps({ ...common, stickiness: scenario.stickiness, backends: httpBackends, https })
          : await peer.start({ ...common, stickiness: scenario.stickiness, backends: httpBackends });
    void started.handle.exited.then((e) => {
      exitedEarly = e;
    });
    const setupKey = passthrough ? `${peer.name} passthrough` : scenario.authz ? `${peer.name} authz` : isHttps(scenario) ? `${peer.name} https` : peer.name;
    if (!setups.has(setupKey)) setups.set(setupKey, started.setup);
    const startedAt = Date.now();
    await started.waitReady(READY_DEADLINE_MS);
    record.readyMs = Date.now() - startedAt;

    const context = passthrough
      ? {
          url: null,
          passthrough: { host: started.host, port: started.port, ca: tls.ca, routes: tls.routes },
          peer,
          backendNames: BACKEND_NAMES,
          backends: tls.backends,
          options,
          dir,
        }
      : {
          url: started.url,
          peer,
          backendNames: BACKEND_NAMES,
          backends,
          options,
          dir,
          ...(scenario.authz ? { authz: started.authz } : {}),
          ...(isHttps(scenario) ? { https: { host: '127.0.0.1', port, ca: https.ca, serverName: https.serverName } } : {}),
        };
    prepared = await scenario.prepare(context);
    record.checks = prepared.checks;
    // A scenario drives load with wrk (the default) or with its own `measure` (multi-step
    // clients wrk cannot express); either way the result has the same core fields.
    let drive;
    if (scenario.measure) {
      drive = (durationS) => scenario.measure({ ...context, prepared, durationS });
    } else {
      const scriptPath = writeWrkScript(dir, prepared.cookies, `${scenario.name}`);
      const wrkArgs = { url: started.url, scriptPath, threads: options.threads, connections: options.connections };
      drive = (durationS) => runWrk({ ...wrkArgs, durationS });
    }
    if (options.warmup > 0 && scenario.warmup !== false) await drive(options.warmup);

    const pgid = started.handle.pid;
    const cpuBefore = groupCpuTicks(pgid);
    const rss = sampleGroupRss(pgid, { intervalMs: 100, maxSamples: Math.ceil(options.duration * 10) + 200 });
    let load;
    try {
      load = await drive(options.duration);
    } finally {
      const { peakKiB, samples } = rss.stop();
      record.rssSamples = samples;
      record.peakRssMiB = Number((peakKiB / 1024).toFixed(1));
    }
    const cpuSeconds = cpuSecondsBetween(cpuBefore, groupCpuTicks(pgid));
    // What the scenario held (idle sockets) is let go of here; it may add figures it measured.
    const cleanup = prepared.cleanup;
    prepared = null;
    const after = await cleanup?.();
    if (after?.extra) load.extra = { ...load.extra, ...after.extra };
    // The scenario saw the run measure something other than announced (say, idle connections dropped).
    if (after?.flag) load.flag = after.flag;
    if (exitedEarly) throw new Error(`${peer.name} exited during the run (${exitedEarly.code ?? exitedEarly.signal}):\n${started.handle.output()}`);

    const { raw, ...parsed } = load;
    record.load = { tool: scenario.measure ? 'node' : 'wrk', ...parsed };
    record.cpuSeconds = Number(cpuSeconds.toFixed(2));
    record.cpuSecondsPer1kRequests = load.requests > 0 ? Number(((cpuSeconds * 1000) / load.requests).toFixed(5)) : null;
    record.flagged = load.errorCount > 0 || Boolean(load.flag);
    if (record.flagged && raw) record.loadOutput = raw;
    record.ok = true;
  } catch (error) {
    record.error = error instanceof Error ? error.message : String(error);
  } finally {
    // A failed run still lets go of what the scenario held.
    if (prepared?.cleanup) await prepared.cleanup().catch(() => {});
    if (started) await started.handle.kill(STOP_GRACE_MS);
  }
  return record;
}

function progressLine(record, options) {
  const label = record.round === 0 ? 'warm-up' : `round ${record.round}/${options.repeat}`;
  if (!record.ok) return `  ${label.padEnd(11)} ${record.peer.padEnd(14)} FAILED: ${record.error.split('\n')[0]}`;
  const w = record.load;
  return (
    `  ${label.padEnd(11)} ${record.peer.padEnd(14)} ${w.rps.toFixed(0).padStart(7)} req/s  p50 ${w.p50Ms.toFixed(3)} ms` +
    `  p99 ${w.p99Ms.toFixed(3)} ms  CPU ${record.cpuSeconds.toFixed(2)} s  RSS ${record.peakRssMiB.toFixed(1)} MiB` +
    (record.flagged ? `  ! ${w.errorCount} errors` : '') +
    (w.extra ? `  ${Object.entries(w.extra).map(([k, v]) => `${k} ${typeof v === 'number' ? Number(v.toFixed(3)) : v}`).join('  ')}` : '')
  );
}

/**
 * apt-get install for every missing Debian package among wrk and the selected peers (their
 * `install` hint names it). Bounded: apt-get gets 10 minutes; failure stops the bench.
 */
function installPeers(options) {
  const missing = [];
  if (!findExecutable('wrk')) missing.push('wrk');
  const scenarios = options.scenarios.map((n) => allScenarios.find((s) => s.name === n));
  for (const name of options.peers) {
    const peer = allPeers.find((p) => p.name === name);
    for (const status of peerStatuses(peer, scenarios).values()) {
      const m = !status.ok && /apt-get install -y ([\w.+-]+(?: [\w.+-]+)*)$/.exec(status.install ?? '');
      if (m) missing.push(...m[1].split(' '));
    }
  }
  const packages = [...new Set(missing)];
  if (packages.length === 0) {
    process.stdout.write('--install-peers: nothing to install\n');
    return;
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    process.stderr.write(`--install-peers needs root to run apt-get; run as root or install: apt-get install -y ${packages.join(' ')}\n`);
    process.exit(1);
  }
  process.stdout.write(`--install-peers: apt-get install -y ${packages.join(' ')}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...packages]]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env, timeout: 600_000 });
    if (r.status !== 0) {
      process.stderr.write(`--install-peers: apt-get ${args[0]} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})\n`);
      process.exit(1);
    }
  }
}

/**
 * `peer`'s availability per kind of setup among `scenarios` it runs in: Map 'http' | 'tls' |
 * 'https' → { ok, version } | { ok: false, reason, install }. Passthrough and HTTPS are asked
 * separately (nginx, say, may lack the stream module while serving HTTP fine).
 */
function peerStatuses(peer, scenarios) {
  const statuses = new Map();
  for (const scenario of scenarios) {
    if (!runsIn(peer, scenario)) continue;
    const kind = kindOf(scenario);
    if (!statuses.has(kind)) {
      statuses.set(kind, peer.available(kind === 'tls' ? { repoRoot, passthrough: true } : kind === 'https' ? { repoRoot, https: true } : { repoRoot }));
    }
  }
  return statuses;
}

/** A status as results.json keeps it. */
function statusRecord(status) {
  return { available: status.ok, ...(status.ok ? { version: status.version } : { reason: status.reason, install: status.install }) };
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  if (options.installPeers) installPeers(options);
  const scenarios = options.scenarios.map((n) => allScenarios.find((s) => s.name === n));
  // wrk drives every scenario that does not drive its own load.
  if (scenarios.some((s) => !s.measure) && !findExecutable('wrk')) {
    process.stderr.write('wrk not found; install it: apt-get update && apt-get install -y wrk (or run with --install-peers)\n');
    process.exit(1);
  }
  const peerStatus = options.peers.map((n) => {
    const peer = allPeers.find((p) => p.name === n);
    const byKind = peerStatuses(peer, scenarios);
    // The HTTP status is what results.peers[].available has always meant; ask for it even when
    // only passthrough or HTTPS scenarios run, so every peer has one.
    return { peer, status: byKind.get('http') ?? peer.available({ repoRoot }), tls: byKind.get('tls') ?? null, https: byKind.get('https') ?? null };
  });
  /** Whether `peer` runs in `scenario` here: it applies (runsIn) and can (available for that kind). */
  const canRun = (peer, scenario) => {
    if (!runsIn(peer, scenario)) return false;
    const entry = peerStatus.find((p) => p.peer === peer);
    return ({ tls: entry.tls, https: entry.https, http: entry.status })[kindOf(scenario)]?.ok === true;
  };
  const runnable = peerStatus.filter(({ peer }) => scenarios.some((s) => canRun(peer, s))).map((p) => p.peer);
  for (const { peer, status, tls, https } of peerStatus) {
    if (!status.ok && scenarios.some((s) => kindOf(s) === 'http' && runsIn(peer, s))) {
      process.stdout.write(`skipping ${peer.name}: ${status.reason} (install: ${status.install})\n`);
    }
    if (tls && !tls.ok) process.stdout.write(`skipping ${peer.name} in passthrough scenarios: ${tls.reason} (install: ${tls.install})\n`);
    if (https && !https.ok) process.stdout.write(`skipping ${peer.name} in HTTPS scenarios: ${https.reason} (install: ${https.install})\n`);
  }

  mkdirSync(options.out, { recursive: true });
  const workDir = mkdtempSync(join(os.tmpdir(), 'tether-bench-'));
  onExit(() => rmSync(workDir, { recursive: true, force: true }));
  const setups = new Map();
  const results = {
    version: 1,
    machine: machineInfo(repoRoot),
    options: { ...options },
    peers: peerStatus.map(({ peer, status, tls, https }) => ({
      name: peer.name,
      describe: peer.describe,
      cookieName: peer.cookieName,
      ...(peer.scenarios ? { scenarios: peer.scenarios } : {}),
      ...statusRecord(status),
      // Its status for the passthrough scenarios, when any ran and the peer does passthrough.
      ...(tls ? { passthrough: statusRecord(tls) } : {}),
      // The same for the HTTPS scenarios.
      ...(https ? { https: statusRecord(https) } : {}),
    })),
    scenarios: scenarios.map((s) => ({
      name: s.name,
      description: s.description,
      ...(s.columns ? { columns: s.columns } : {}),
      ...(s.loadDescription ? { load: s.loadDescription(options) } : {}),
      ...(s.warmup === false ? { warmup: false } : {}),
      ...(s.backendKind ? { backendKind: s.backendKind } : {}),
      ...(s.frontend ? { frontend: s.frontend } : {}),
      // The selected peers this scenario applies to (runsIn), installed or not: the report's rows.
      peers: peerStatus.filter(({ peer }) => runsIn(peer, s)).map(({ peer }) => peer.name),
    })),
    backends: [],
    runs: [],
    complete: false,
  };
  const resultsPath = join(options.out, 'results.json');
  const save = () => {
    for (const p of results.peers) {
      if (setups.has(p.name)) p.setup = setups.get(p.name);
      if (setups.has(`${p.name} passthrough`)) p.passthrough.setup = setups.get(`${p.name} passthrough`);
      if (setups.has(`${p.name} https`)) p.https.setup = setups.get(`${p.name} https`);
      if (setups.has(`${p.name} authz`)) p.authzSetup = setups.get(`${p.name} authz`);
    }
    writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  };

  // Every step is bounded on its own; this bounds the whole, in case something unforeseen
  // (a peer that answers readiness but never finishes a request, say) stacks timeouts.
  const perRunS = options.duration + options.warmup + READY_DEADLINE_MS / 1000 + 25;
  const runsPerRound = scenarios.reduce((n, s) => n + runnable.filter((p) => canRun(p, s)).length, 0);
  const budgetS = runsPerRound * (options.repeat + 1) * (perRunS + 120) + 60;
  const watchdog = setTimeout(() => {
    process.stderr.write(`\nbench: overall time budget of ${budgetS} s exceeded, stopping everything\n`);
    save();
    process.exit(1); // the exit handler kills every process group we started
  }, budgetS * 1000);
  watchdog.unref();

  const expectedS = runsPerRound * (options.repeat + 1) * (options.duration + options.warmup + 1);
  process.stdout.write(
    `tether load bench: ${scenarios.map((s) => s.name).join(', ')} × ${runnable.map((p) => p.name).join(', ') || 'no peers'}` +
      ` — about ${Math.ceil(expectedS / 60)} min; results in ${resultsPath}\n`,
  );
  const progress = createProgress({ total: runsPerRound * (options.repeat + 1), estimateS: options.duration + options.warmup + 1 });

  let backends = [];
  let tls = null;
  let https = null;
  let exitCode = 0;
  try {
    // HTTP backends for the HTTP and HTTPS scenarios, TLS ones for the passthrough scenarios: only what runs.
    if (scenarios.some((s) => !isTls(s))) backends = await Promise.all(BACKEND_NAMES.map((name) => startBackend(name)));
    results.backends = backends.map(({ name, port }) => ({ name, port }));
    if (scenarios.some(isTls)) {
      tls = await startTlsBackends(join(workDir, 'pki'));
      results.tlsBackends = tls.backends.map(({ name, port }) => ({ name, port, serverName: tls.routes.find((r) => r.backend === name).serverName }));
    }
    if (scenarios.some(isHttps)) {
      https = makeHttpsCertificate(join(workDir, 'https-pki'));
      results.httpsCertificate = { serverName: https.serverName, key: 'ECDSA P-256', chain: 'the leaf alone (the CA is the clients\' root)' };
    }
    for (const scenario of scenarios) {
      progress.log(`\n[${scenario.name}] ${scenario.description}`);
      for (let round = 0; round <= options.repeat; round += 1) {
        for (const peer of runnable) {
          // Variants made for one scenario run only there; passthrough needs a peer that does it (runsIn).
          if (!canRun(peer, scenario)) continue;
          progress.start(`${scenario.name} ${round === 0 ? 'warm-up' : `round ${round}/${options.repeat}`} ${peer.name}`);
          const record = await runOnce({ peer, scenario, round, options, backends, tls, https, workDir, setups });
          results.runs.push(record);
          progress.tick();
          progress.log(progressLine(record, options));
        }
      }
    }
    results.complete = true;
  } catch (error) {
    progress.done();
    exitCode = 1;
    results.error = error instanceof Error ? error.message : String(error);
    process.stderr.write(`bench failed: ${results.error}\n`);
  } finally {
    progress.done();
    await Promise.all([...backends, ...(tls?.backends ?? [])].map((b) => b.handle.kill(STOP_GRACE_MS)));
    await killAll(STOP_GRACE_MS);
    clearTimeout(watchdog);
    save();
    rmSync(workDir, { recursive: true, force: true });
  }
  const reportPath = join(options.out, 'report.html');
  let reportLine = `report:  ${reportPath}`;
  try {
    writeFileSync(reportPath, renderHtml(results));
  } catch (error) {
    reportLine = `report.html not written: ${error instanceof Error ? error.message : String(error)}`;
  }
  process.stdout.write(`${formatReport(results)}\n\nresults: ${resultsPath}\n${reportLine}\n`);
  const failedRuns = results.runs.filter((r) => r.round > 0 && !r.ok).length;
  if (failedRuns > 0) exitCode = 1;
  process.exitCode = exitCode;
}

await main();
