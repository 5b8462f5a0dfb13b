// Where a running process spends its CPU, sampled with Linux perf, for scenarios that report
// it (authz-handshakes: the balancer's share in crypto). Linux only; without perf, or when it
// cannot attach, the caller gets { ok: false, reason } and reports n/a — never a guess.
//
// Recording: `perf record -F 999 -g -p PID -o FILE -- sleep S` samples the on-CPU call chains
// of every thread of PID (cpu-clock where there are no hardware counters) for S seconds.
// Reading: `perf script -F comm,tid,period,ip,sym,dso` prints one block per sample:
//
//   comm  tid  period                   period: the CPU time (ns) the sample stands for
//   \t addr symbol (dso)                innermost frame first, one line per frame
//   \t …                                (symbol [unknown] for JIT code without a perf map)
//   <empty line>
//
// Shares are period-weighted, as `perf report`'s percentages are. A class of samples is a
// predicate over a sample's frames; classes are tried in order and the first that matches takes
// the sample, so classes never overlap and their shares add up.

import { execFile } from 'node:child_process';
import { basename } from 'node:path';
import { findExecutable } from './peers/common.js';
import { delay, startProcess } from './processes.js';

export const SAMPLE_HZ = 999;
/** perf script of a few seconds of samples is a few MB; far more means something else went wrong. */
const MAX_SCRIPT_BYTES = 512 * 1024 * 1024;

/** The perf binary, or null. */
export function perfPath() {
  return findExecutable('perf');
}

/**
 * Samples `pid` for `seconds` after `afterS` seconds into `file`. Resolves { ok: true, file }
 * once perf has written it, or { ok: false, reason } (no perf, no samples, perf failed). Every
 * wait is bounded: perf is killed if it outlives its recording by 15 s.
 */
export async function recordProfile({ pid, seconds, afterS = 0, file }) {
  const perf = perfPath();
  if (!perf) return { ok: false, reason: 'perf not found' };
  if (afterS > 0) await delay(afterS * 1000);
  const args = ['record', '-F', String(SAMPLE_HZ), '-g', '-p', String(pid), '-o', file, '--', 'sleep', String(seconds)];
  const handle = startProcess('perf record', perf, args);
  const finished = await Promise.race([handle.exited, delay((seconds + 15) * 1000).then(() => null)]);
  if (finished === null) {
    await handle.kill(2000);
    return { ok: false, reason: `perf record did not finish within ${seconds + 15} s` };
  }
  const output = handle.output();
  if (finished.code !== 0) return { ok: false, reason: `perf record failed (${finished.code ?? finished.signal}): ${lastLine(output)}` };
  if (/\(0 samples\)/.test(output)) return { ok: false, reason: 'perf record took no samples (could it attach to the process?)' };
  return { ok: true, file };
}

/** perf script's text for `file` (see the header), or throws. Bounded by `timeoutMs`. */
export function readProfile(file, { timeoutMs = 60_000 } = {}) {
  const perf = perfPath();
  if (!perf) return Promise.reject(new Error('perf not found'));
  return new Promise((resolve, reject) => {
    execFile(
      perf,
      ['script', '-i', file, '-F', 'comm,tid,period,ip,sym,dso'],
      { encoding: 'utf8', maxBuffer: MAX_SCRIPT_BYTES, timeout: timeoutMs },
      (error, stdout, stderr) => (error ? reject(new Error(`perf script failed: ${error.message} ${lastLine(stderr)}`)) : resolve(stdout)),
    );
  });
}

/**
 * The samples in perf script text: [{ comm, period, frames: [{ sym, dso }] }], innermost frame
 * first; `dso` is the file's base name (node, libc.so.6, tether_native.node, [kernel.kallsyms]).
 */
export function parseSamples(text) {
  const samples = [];
  let current = null;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      current = null;
      continue;
    }
    if (line.startsWith('\t')) {
      if (!current) continue;
      // "addr symbol (dso)": the symbol may hold parentheses (C++ signatures); the dso is the last group.
      const body = line.trim();
      const space = body.indexOf(' ');
      const open = body.lastIndexOf(' (');
      if (space < 0 || open < space || !body.endsWith(')')) continue;
      current.frames.push({ sym: body.slice(space + 1, open), dso: basename(body.slice(open + 2, -1)) });
      continue;
    }
    const period = /(\d+)\s*$/.exec(line);
    current = { comm: line.trim().split(/\s+/)[0], period: period ? Number(period[1]) : 1, frames: [] };
    samples.push(current);
  }
  return samples;
}

/**
 * Summary of parsed samples: { samples, shares: { class: percent }, top: [{ dso, sym, percent }] }
 * where `classes` is [{ name, match(frames) → boolean }] (first match wins) and `top` lists the
 * `topN` innermost symbols by self time, as `perf report --no-children --sort dso,sym` does.
 */
export function summarizeSamples(samples, classes, { topN = 15 } = {}) {
  let total = 0;
  const byClass = Object.fromEntries(classes.map((c) => [c.name, 0]));
  const bySymbol = new Map();
  for (const sample of samples) {
    total += sample.period;
    const owner = classes.find((c) => c.match(sample.frames));
    if (owner) byClass[owner.name] += sample.period;
    const leaf = sample.frames[0] ?? { sym: '[no frames]', dso: '?' };
    const key = `${leaf.dso}\u0000${leaf.sym}`;
    bySymbol.set(key, (bySymbol.get(key) ?? 0) + sample.period);
  }
  const percent = (period) => (total > 0 ? (100 * period) / total : 0);
  const top = [...bySymbol.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([key, period]) => {
      const [dso, sym] = key.split('\u0000');
      return { dso, sym, percent: Number(percent(period).toFixed(2)) };
    });
  return {
    samples: samples.length,
    shares: Object.fromEntries(Object.entries(byClass).map(([name, period]) => [name, Number(percent(period).toFixed(2))])),
    top,
  };
}

function lastLine(text) {
  return (text ?? '').trim().split('\n').pop() ?? '';
}
