// Load bench: Tether against HAProxy, nginx and node-http-proxy, with wrk, on loopback.
// Two uWS backends stay up for the whole run; each balancer is started fresh for every
// measured run, on the same two backends, and stopped after it. Rounds are interleaved
// (round r: every peer in turn) so slow drifts of a shared machine hit every peer alike.
// See `node bench/run.js --help`; results go to DIR/results.json and the terminal.

import { parseArgs } from 'node:util';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { delay, freePort, killAll, onExit, startProcess } from './load/processes.js';
import { cpuSecondsBetween, groupCpuTicks, sampleGroupRss } from './load/proc-stats.js';
import { runWrk, writeWrkScript } from './load/wrk.js';
import { machineInfo } from './load/machine.js';
import { findExecutable } from './load/peers/common.js';
import { peers as allPeers } from './load/peers/index.js';
import { scenarios as allScenarios } from './load/scenarios/index.js';
import { formatReport } from './report.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const BACKEND_NAMES = ['app1', 'app2'];
const READY_DEADLINE_MS = 15_000;
const STOP_GRACE_MS = 3_000;

const HELP = `usage: node bench/run.js [options]

  --scenario LIST     comma-separated, default ${allScenarios.map((s) => s.name).join(',')}
  --peers LIST        comma-separated, default ${allPeers.map((p) => p.name).join(',')}
  --duration S        seconds per measured run (default 10; --quick: 3)
  --warmup S          seconds of load on each fresh balancer before measuring (default 2; --quick: 1; 0 = none)
  --connections C     wrk connections (default 50)
  --threads T         wrk threads (default 2)
  --workers W         balancer threads/processes (default 2)
  --repeat N          measured rounds per scenario, after one warm-up round (default 3; --quick: 1)
  --out DIR           where results.json goes (default bench/out/<timestamp>)
  --quick             smoke run: --duration 3 --repeat 1 --warmup 1 unless given
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
    if (values[flag] === undefined) return known.map((k) => k.name);
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

/** Starts one uWS backend process and resolves { name, port, handle } once it listens. */
async function startBackend(name) {
  let announce;
  const listening = new Promise((resolve) => {
    announce = resolve;
  });
  const handle = startProcess(`backend ${name}`, process.execPath, [join(repoRoot, 'bench/load/backend.js'), name], {
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
 * One run of one peer in one scenario: start, wait ready, prepare (cookies + checks), warm
 * up, measure wrk + CPU + RSS, stop. Never throws: failures become { ok: false, error }.
 */
async function runOnce({ peer, scenario, round, options, backends, workDir, setups }) {
  const record = { scenario: scenario.name, peer: peer.name, round, ok: false };
  const dir = join(workDir, peer.name);
  mkdirSync(dir, { recursive: true });
  let started = null;
  let exitedEarly = null;
  try {
    const port = await freePort();
    started = await peer.start({
      backends: backends.map(({ name, port: p }) => ({ name, port: p })),
      workers: options.workers,
      connections: options.connections,
      port,
      dir,
      repoRoot,
    });
    void started.handle.exited.then((e) => {
      exitedEarly = e;
    });
    if (!setups.has(peer.name)) setups.set(peer.name, started.setup);
    const startedAt = Date.now();
    await started.waitReady(READY_DEADLINE_MS);
    record.readyMs = Date.now() - startedAt;

    const prepared = await scenario.prepare({ url: started.url, peer, backendNames: BACKEND_NAMES });
    record.checks = prepared.checks;
    const scriptPath = writeWrkScript(dir, prepared.cookies, `${scenario.name}`);
    const wrkArgs = { url: started.url, scriptPath, threads: options.threads, connections: options.connections };
    if (options.warmup > 0) await runWrk({ ...wrkArgs, durationS: options.warmup });

    const pgid = started.handle.pid;
    const cpuBefore = groupCpuTicks(pgid);
    const rss = sampleGroupRss(pgid, { intervalMs: 100, maxSamples: Math.ceil(options.duration * 10) + 200 });
    let wrk;
    try {
      wrk = await runWrk({ ...wrkArgs, durationS: options.duration });
    } finally {
      const { peakKiB, samples } = rss.stop();
      record.rssSamples = samples;
      record.peakRssMiB = Number((peakKiB / 1024).toFixed(1));
    }
    const cpuSeconds = cpuSecondsBetween(cpuBefore, groupCpuTicks(pgid));
    if (exitedEarly) throw new Error(`${peer.name} exited during the run (${exitedEarly.code ?? exitedEarly.signal}):\n${started.handle.output()}`);

    const { raw, ...parsed } = wrk;
    record.wrk = parsed;
    record.cpuSeconds = Number(cpuSeconds.toFixed(2));
    record.cpuSecondsPer1kRequests = wrk.requests > 0 ? Number(((cpuSeconds * 1000) / wrk.requests).toFixed(5)) : null;
    record.flagged = wrk.errorCount > 0;
    if (record.flagged) record.wrkOutput = raw;
    record.ok = true;
  } catch (error) {
    record.error = error instanceof Error ? error.message : String(error);
  } finally {
    if (started) await started.handle.kill(STOP_GRACE_MS);
  }
  return record;
}

function progressLine(record, options) {
  const label = record.round === 0 ? 'warm-up' : `round ${record.round}/${options.repeat}`;
  if (!record.ok) return `  ${label.padEnd(11)} ${record.peer.padEnd(10)} FAILED: ${record.error.split('\n')[0]}`;
  const w = record.wrk;
  return (
    `  ${label.padEnd(11)} ${record.peer.padEnd(10)} ${w.rps.toFixed(0).padStart(7)} req/s  p50 ${w.p50Ms.toFixed(3)} ms` +
    `  p99 ${w.p99Ms.toFixed(3)} ms  CPU ${record.cpuSeconds.toFixed(2)} s  RSS ${record.peakRssMiB.toFixed(1)} MiB` +
    (record.flagged ? `  ! ${w.errorCount} errors` : '')
  );
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  if (!findExecutable('wrk')) {
    process.stderr.write('wrk not found; install it: apt-get update && apt-get install -y wrk\n');
    process.exit(1);
  }
  const scenarios = options.scenarios.map((n) => allScenarios.find((s) => s.name === n));
  const peerStatus = options.peers.map((n) => {
    const peer = allPeers.find((p) => p.name === n);
    return { peer, status: peer.available({ repoRoot }) };
  });
  const runnable = peerStatus.filter((p) => p.status.ok).map((p) => p.peer);
  for (const { peer, status } of peerStatus) {
    if (!status.ok) process.stdout.write(`skipping ${peer.name}: ${status.reason} (install: ${status.install})\n`);
  }

  mkdirSync(options.out, { recursive: true });
  const workDir = mkdtempSync(join(os.tmpdir(), 'tether-bench-'));
  onExit(() => rmSync(workDir, { recursive: true, force: true }));
  const setups = new Map();
  const results = {
    version: 1,
    machine: machineInfo(repoRoot),
    options: { ...options },
    peers: peerStatus.map(({ peer, status }) => ({
      name: peer.name,
      describe: peer.describe,
      cookieName: peer.cookieName,
      available: status.ok,
      ...(status.ok ? { version: status.version } : { reason: status.reason, install: status.install }),
    })),
    scenarios: scenarios.map((s) => ({ name: s.name, description: s.description })),
    backends: [],
    runs: [],
    complete: false,
  };
  const resultsPath = join(options.out, 'results.json');
  const save = () => {
    for (const p of results.peers) if (setups.has(p.name)) p.setup = setups.get(p.name);
    writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  };

  // Every step is bounded on its own; this bounds the whole, in case something unforeseen
  // (a peer that answers readiness but never finishes a request, say) stacks timeouts.
  const perRunS = options.duration + options.warmup + READY_DEADLINE_MS / 1000 + 25;
  const budgetS = scenarios.length * runnable.length * (options.repeat + 1) * perRunS + 60;
  const watchdog = setTimeout(() => {
    process.stderr.write(`\nbench: overall time budget of ${budgetS} s exceeded, stopping everything\n`);
    save();
    process.exit(1); // the exit handler kills every process group we started
  }, budgetS * 1000);
  watchdog.unref();

  const expectedS = scenarios.length * runnable.length * (options.repeat + 1) * (options.duration + options.warmup + 1);
  process.stdout.write(
    `tether load bench: ${scenarios.map((s) => s.name).join(', ')} × ${runnable.map((p) => p.name).join(', ') || 'no peers'}` +
      ` — about ${Math.ceil(expectedS / 60)} min; results in ${resultsPath}\n`,
  );

  let backends = [];
  let exitCode = 0;
  try {
    backends = await Promise.all(BACKEND_NAMES.map(startBackend));
    results.backends = backends.map(({ name, port }) => ({ name, port }));
    for (const scenario of scenarios) {
      process.stdout.write(`\n[${scenario.name}] ${scenario.description}\n`);
      for (let round = 0; round <= options.repeat; round += 1) {
        for (const peer of runnable) {
          const record = await runOnce({ peer, scenario, round, options, backends, workDir, setups });
          results.runs.push(record);
          process.stdout.write(`${progressLine(record, options)}\n`);
        }
      }
    }
    results.complete = true;
  } catch (error) {
    exitCode = 1;
    results.error = error instanceof Error ? error.message : String(error);
    process.stderr.write(`bench failed: ${results.error}\n`);
  } finally {
    await Promise.all(backends.map((b) => b.handle.kill(STOP_GRACE_MS)));
    await killAll(STOP_GRACE_MS);
    clearTimeout(watchdog);
    save();
    rmSync(workDir, { recursive: true, force: true });
  }
  process.stdout.write(`${formatReport(results)}\n\nresults: ${resultsPath}\n`);
  const failedRuns = results.runs.filter((r) => r.round > 0 && !r.ok).length;
  if (failedRuns > 0) exitCode = 1;
  process.exitCode = exitCode;
}

await main();
