// Summaries and terminal tables for the load bench (bench/run.js writes results.json; this
// turns runs into one row per peer). Also runnable on a saved file:
//   node bench/report.js bench/out/<timestamp>/results.json
//
// Every figure is the median over the counted rounds (warm-up runs are round 0 and never
// counted), except peak RSS, which is the maximum. "vs HAProxy" is computed per round
// (peer req/s ÷ HAProxy req/s in the same round, so both saw the same machine noise) and
// then the median is taken; the table shows the lowest and highest round beside it, since on a
// shared machine one round can be far from the others.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const REFERENCE_PEER = 'haproxy';

/** Median of the finite numbers in `values`; null when there are none. */
export function median(values) {
  const sorted = values.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * One row per peer for `scenario`: { peer, status, rounds, okRounds, rps, p50Ms, p99Ms,
 * cpuPer1k, peakRssMiB, vsReference, vsReferenceMin, vsReferenceMax, errors, flagged, note,
 * extra }.
 * `runs` are result records from bench/run.js; `peers` is [{ name, available, reason, install }];
 * `columns` the scenario's own figures ([{ key, label, digits }], read from each run's
 * load.extra and reported as medians in `extra`). Peers with no run in this scenario (a peer
 * variant made for another scenario) get no row.
 */
export function summarizeScenario(runs, scenario, peers, columns = []) {
  // Results files before the `load` field kept the same figures under `wrk`.
  runs = runs.map((r) => (r.load || !r.wrk ? r : { ...r, load: r.wrk }));
  const counted = runs.filter((r) => r.scenario === scenario && r.round > 0);
  const ran = new Set(runs.filter((r) => r.scenario === scenario).map((r) => r.peer));
  peers = peers.filter((p) => ran.has(p.name) || !p.scenarios || p.scenarios.includes(scenario));
  const referenceByRound = new Map(
    counted.filter((r) => r.peer === REFERENCE_PEER && r.ok).map((r) => [r.round, r.load.rps]),
  );
  return peers.map((peer) => {
    if (!peer.available) {
      return { peer: peer.name, status: 'skipped', note: `${peer.reason}; install: ${peer.install}` };
    }
    const mine = counted.filter((r) => r.peer === peer.name);
    const ok = mine.filter((r) => r.ok);
    if (ok.length === 0) {
      const firstError = mine.find((r) => r.error)?.error ?? 'no counted runs';
      return { peer: peer.name, status: 'failed', rounds: mine.length, okRounds: 0, note: firstError.split('\n')[0] };
    }
    const ratios = ok
      .filter((r) => referenceByRound.has(r.round))
      .map((r) => r.load.rps / referenceByRound.get(r.round));
    const errors = ok.reduce((sum, r) => sum + r.load.errorCount, 0);
    const failedRounds = mine.length - ok.length;
    const notes = [];
    if (errors > 0) notes.push(`${errors} failed requests (non-2xx/3xx or socket errors)`);
    if (failedRounds > 0) notes.push(`${failedRounds} round(s) failed`);
    const flags = [...new Set(ok.map((r) => r.load.flag).filter(Boolean))];
    notes.push(...flags);
    return {
      peer: peer.name,
      status: 'ok',
      rounds: mine.length,
      okRounds: ok.length,
      rps: median(ok.map((r) => r.load.rps)),
      p50Ms: median(ok.map((r) => r.load.p50Ms)),
      p99Ms: median(ok.map((r) => r.load.p99Ms)),
      cpuPer1k: median(ok.map((r) => r.cpuSecondsPer1kRequests)),
      peakRssMiB: Math.max(...ok.map((r) => r.peakRssMiB)),
      vsReference: median(ratios),
      vsReferenceMin: ratios.length > 0 ? Math.min(...ratios) : null,
      vsReferenceMax: ratios.length > 0 ? Math.max(...ratios) : null,
      errors,
      flagged: errors > 0 || failedRounds > 0 || flags.length > 0,
      note: notes.join('; '),
      extra: Object.fromEntries(columns.map((c) => [c.key, median(ok.map((r) => r.load.extra?.[c.key]))])),
    };
  });
}

/**
 * The peers a scenario's table shows, as summarizeScenario takes them: the ones the harness
 * recorded as applying to it (`scenario.peers`; every peer in older results files), and for a
 * passthrough scenario (backendKind 'tls') with each peer's passthrough availability, for an
 * HTTPS one (frontend 'https') with its HTTPS availability, since a peer may serve HTTP but lack
 * what the other needs (nginx without its stream module).
 */
export function peersOf(results, scenario) {
  const peers = scenario.peers ? (results.peers ?? []).filter((p) => scenario.peers.includes(p.name)) : results.peers ?? [];
  const field = scenario.backendKind === 'tls' ? 'passthrough' : scenario.frontend === 'https' ? 'https' : null;
  if (field === null) return peers;
  return peers.map((p) => {
    if (!p[field]) return p;
    const { available, version, reason, install } = p[field];
    return { ...p, available, version, reason, install };
  });
}

/** `missing`: what a figure that could not be measured shows (a column's own `missing`, else '—'). */
const fixed = (value, digits, missing = '—') => (value === null || value === undefined ? missing : value.toFixed(digits));

/** `0.77× (0.69-0.86)`: the median ratio, and its lowest and highest round when they differ. */
export function ratioCell(row) {
  if (row.vsReference === null || row.vsReference === undefined) return '—';
  const text = `${row.vsReference.toFixed(2)}×`;
  const lo = row.vsReferenceMin;
  const hi = row.vsReferenceMax;
  if (typeof lo !== 'number' || typeof hi !== 'number' || lo.toFixed(2) === hi.toFixed(2)) return text;
  return `${text} (${lo.toFixed(2)}-${hi.toFixed(2)})`;
}

/** A plain-text table for rows from summarizeScenario, with the scenario's own `columns` after req/s. */
export function formatTable(rows, columns = []) {
  const header = ['peer', 'req/s', ...columns.map((c) => c.label), 'p50 ms', 'p99 ms', 'CPU s/1k req', 'peak RSS MiB', 'vs HAProxy', 'rounds', 'notes'];
  const lines = rows.map((row) => {
    if (row.status !== 'ok') {
      return [row.peer, row.status, ...columns.map(() => ''), '', '', '', '', '', row.rounds ? `0/${row.rounds}` : '', row.note];
    }
    return [
      row.flagged ? `${row.peer} !` : row.peer,
      fixed(row.rps, 0),
      ...columns.map((c) => fixed(row.extra?.[c.key] ?? null, c.digits ?? 1, c.missing)),
      fixed(row.p50Ms, 3),
      fixed(row.p99Ms, 3),
      fixed(row.cpuPer1k, 4),
      fixed(row.peakRssMiB, 1),
      ratioCell(row),
      `${row.okRounds}/${row.rounds}`,
      row.note,
    ];
  });
  const all = [header, ...lines];
  const numeric = new Set(Array.from({ length: 7 + columns.length }, (_, i) => i + 1));
  const widths = header.map((_, i) => Math.max(...all.map((cells) => String(cells[i]).length)));
  const render = (cells) =>
    cells
      .map((cell, i) => (numeric.has(i) ? String(cell).padStart(widths[i]) : String(cell).padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [render(header), render(widths.map((w) => '-'.repeat(w))), ...lines.map(render)].join('\n');
}

/** The whole terminal report for a results.json object. */
export function formatReport(results) {
  const parts = [];
  const o = results.options;
  for (const scenario of results.scenarios) {
    const columns = scenario.columns ?? [];
    const rows = summarizeScenario(results.runs, scenario.name, peersOf(results, scenario), columns);
    const how = scenario.load ?? `wrk -t${o.threads} -c${o.connections} -d${o.duration}s`;
    parts.push(
      `\n== ${scenario.name}: ${scenario.description}\n` +
        `   ${how}, ${o.repeat} round(s) after ${scenario.warmup === false ? 'an unmeasured first round' : 'a warm-up'}, --workers ${o.workers}\n\n` +
        formatTable(rows, columns),
    );
  }
  parts.push('\n! = some requests failed (non-2xx/3xx or socket errors), a round failed, or the run was not what the scenario announced (see notes); details in results.json');
  return parts.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node bench/report.js path/to/results.json\n');
    process.exit(2);
  }
  process.stdout.write(`${formatReport(JSON.parse(readFileSync(file, 'utf8')))}\n`);
}
