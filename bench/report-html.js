// The load bench's results as one self-contained HTML page: the same tables as the terminal
// report (bench/report.js computes every figure; nothing here re-derives them) plus bar charts,
// drawn here as inline SVG, so the file can be mailed, attached to a PR or opened offline with
// no scripts, fonts or CDNs. bench/run.js writes DIR/report.html; for a saved run:
//   node bench/report-html.js bench/out/<timestamp>/results.json [out.html]
//
// Every string from results.json goes through esc(): peer descriptions, errors and configs are
// free text and may hold <, & or quotes.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REFERENCE_PEER, peersOf, ratioCell, summarizeScenario } from './report.js';

const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

/** HTML-escapes anything (numbers, null and undefined included) for text and attribute values. */
export function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
// The same formatting as formatTable in bench/report.js, so both reports show identical figures.
const fixed = (value, digits, missing = '—') => (num(value) === null ? missing : value.toFixed(digits));
const ratio = (value) => (num(value) === null ? '—' : `${value.toFixed(2)}×`);

/** A round step for about `count` gridlines up to `max`: 1, 2 or 5 × 10^k. */
function niceStep(max, count = 5) {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? raw;
}

/**
 * A horizontal bar chart, one bar per peer: rows are { peer, color, value, lo?, hi?, label?,
 * status?, note? }; a row with no value (skipped, failed) shows its status instead of a bar.
 * `lo`/`hi` draw a whisker (the per-round range); `reference` a dashed line at that value.
 */
function barChart({ title, unit, digits, rows, reference = null, width = 560 }) {
  const W = width;
  const left = Math.max(80, 14 + 7 * Math.max(...rows.map((r) => String(r.peer).length))); // room for the names
  const right = 120;
  const top = 36;
  const rowH = 26;
  const plotW = W - left - right;
  const H = top + rows.length * rowH + 22;
  const max = Math.max(...rows.flatMap((r) => [num(r.value), num(r.hi)]).filter((v) => v !== null), 0);
  const step = max > 0 ? niceStep(max) : 1;
  const steps = Math.max(1, Math.ceil(max / step));
  const x = (v) => left + (v / (steps * step)) * plotW;
  const parts = [`<text x="0" y="16" class="ct">${esc(title)}${unit ? ` <tspan class="cu">(${esc(unit)})</tspan>` : ''}</text>`];
  const gridDigits = Math.max(0, -Math.floor(Math.log10(step)));
  for (let i = 0; i <= steps; i += 1) {
    const g = i * step;
    const gx = x(g).toFixed(1);
    parts.push(`<line x1="${gx}" x2="${gx}" y1="${top - 4}" y2="${H - 20}" class="grid"/>`);
    parts.push(`<text x="${gx}" y="${H - 6}" class="tick" text-anchor="middle">${esc(g.toFixed(gridDigits))}</text>`);
  }
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const cy = y + rowH / 2;
    parts.push(`<text x="${left - 8}" y="${cy + 4}" text-anchor="end" class="lbl">${esc(r.peer)}</text>`);
    const value = num(r.value);
    if (value === null) {
      parts.push(`<text x="${left + 6}" y="${cy + 4}" class="na">${esc(r.status ?? 'no data')}</text>`);
      return;
    }
    const w = Math.max(1, x(value) - left);
    parts.push(`<rect x="${left}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowH - 8}" rx="2" fill="${r.color}"><title>${esc(`${r.peer}: ${fixed(value, digits)} ${unit}`.trim())}</title></rect>`);
    let labelX = x(value);
    if (num(r.lo) !== null && num(r.hi) !== null && r.hi > r.lo) {
      const [x1, x2] = [x(r.lo).toFixed(1), x(r.hi).toFixed(1)];
      parts.push(
        `<g class="wh"><line x1="${x1}" x2="${x2}" y1="${cy}" y2="${cy}"/><line x1="${x1}" x2="${x1}" y1="${cy - 5}" y2="${cy + 5}"/>` +
          `<line x1="${x2}" x2="${x2}" y1="${cy - 5}" y2="${cy + 5}"/><title>${esc(`rounds: ${fixed(r.lo, digits)} – ${fixed(r.hi, digits)}`)}</title></g>`,
      );
      labelX = Math.max(labelX, x(r.hi));
    }
    parts.push(`<text x="${(labelX + 6).toFixed(1)}" y="${cy + 4}" class="val">${esc(r.label ?? fixed(value, digits))}</text>`);
  });
  if (num(reference) !== null && reference > 0) {
    const rx = x(reference).toFixed(1);
    parts.push(`<line x1="${rx}" x2="${rx}" y1="${top - 4}" y2="${H - 20}" class="ref"/>`);
    parts.push(`<text x="${rx}" y="${top - 7}" text-anchor="middle" class="tick">HAProxy</text>`);
  }
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${parts.join('')}</svg>`;
}

/** Per-round values of one figure for one peer (counted rounds, ok runs): { lo, hi }. */
function spread(runs, scenario, peer, pick) {
  const values = runs
    .filter((r) => r.scenario === scenario && r.peer === peer && r.round > 0 && r.ok)
    .map(pick)
    .filter((v) => num(v) !== null);
  return values.length > 0 ? { lo: Math.min(...values), hi: Math.max(...values) } : {};
}

function summaryTable(rows, columns) {
  const head = ['peer', 'req/s', ...columns.map((c) => c.label), 'p50 ms', 'p99 ms', 'CPU s/1k req', 'peak RSS MiB', 'vs HAProxy', 'rounds', 'notes'];
  const body = rows.map((row) => {
    if (row.status !== 'ok') {
      const blanks = '<td></td>'.repeat(columns.length + 5);
      return (
        `<tr class="${esc(row.status)}"><th>${esc(row.peer)}</th><td class="st">${esc(row.status)}</td>${blanks}` +
        `<td class="n">${row.rounds ? `0/${esc(row.rounds)}` : ''}</td><td class="note">${esc(row.note)}</td></tr>`
      );
    }
    const cells = [
      fixed(row.rps, 0),
      ...columns.map((c) => fixed(row.extra?.[c.key] ?? null, c.digits ?? 1, c.missing)),
      fixed(row.p50Ms, 3),
      fixed(row.p99Ms, 3),
      fixed(row.cpuPer1k, 4),
      fixed(row.peakRssMiB, 1),
      ratioCell(row),
      `${row.okRounds}/${row.rounds}`,
    ];
    return (
      `<tr${row.flagged ? ' class="flagged"' : ''}><th>${esc(row.peer)}${row.flagged ? ' <span class="bang" title="see the notes: failed requests or rounds, or a run that was not what the scenario announced">!</span>' : ''}</th>` +
      `${cells.map((c) => `<td class="n">${esc(c)}</td>`).join('')}<td class="note">${esc(row.note)}</td></tr>`
    );
  });
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body.join('')}</tbody></table>`;
}

function scenarioSection(results, runs, scenario, colorOf) {
  const o = results.options ?? {};
  const columns = scenario.columns ?? [];
  const rows = summarizeScenario(runs, scenario.name, peersOf(results, scenario), columns);
  const how = scenario.load ?? `wrk -t${o.threads} -c${o.connections} -d${o.duration}s`;
  const chartRows = (pick, perRound, label) =>
    rows.map((row) => ({
      peer: row.peer,
      color: colorOf(row.peer),
      status: row.status === 'skipped' ? 'skipped (not installed)' : row.status,
      value: row.status === 'ok' ? pick(row) : null,
      ...(row.status === 'ok' && perRound ? spread(runs, scenario.name, row.peer, perRound) : {}),
      ...(row.status === 'ok' && label ? { label: label(row) } : {}),
    }));
  const reference = rows.find((r) => r.peer === REFERENCE_PEER && r.status === 'ok')?.rps ?? null;
  const rpsLabel = (row) => (num(row.vsReference) === null ? fixed(row.rps, 0) : `${fixed(row.rps, 0)} · ${ratio(row.vsReference)}`);
  const charts = [
    barChart({
      title: 'Requests per second: median, whiskers = min–max over rounds, × = vs HAProxy',
      unit: 'req/s',
      digits: 0,
      rows: chartRows((r) => r.rps, (r) => r.load?.rps, rpsLabel),
      reference,
      width: 840,
    }),
    // The scenario's own figures (kept %, MiB/s) are often its point: they come right after req/s.
    ...columns.map((c) =>
      barChart({ title: c.label, unit: '', digits: c.digits ?? 1, rows: chartRows((r) => r.extra?.[c.key], (r) => r.load?.extra?.[c.key]) }),
    ),
    barChart({ title: 'p50 latency', unit: 'ms', digits: 3, rows: chartRows((r) => r.p50Ms, (r) => r.load?.p50Ms) }),
    barChart({ title: 'p99 latency', unit: 'ms', digits: 3, rows: chartRows((r) => r.p99Ms, (r) => r.load?.p99Ms) }),
    barChart({ title: 'CPU seconds per 1k requests', unit: 's', digits: 4, rows: chartRows((r) => r.cpuPer1k, (r) => r.cpuSecondsPer1kRequests) }),
    barChart({ title: 'Peak RSS, max over rounds', unit: 'MiB', digits: 1, rows: chartRows((r) => r.peakRssMiB, (r) => r.peakRssMiB) }),
  ];
  return (
    `<section><h2>${esc(scenario.name)}</h2><p>${esc(scenario.description)}</p>` +
    `<p class="how">${esc(how)}, ${esc(o.repeat)} round(s) after a warm-up, --workers ${esc(o.workers)}</p>` +
    `${summaryTable(rows, columns)}<div class="charts">${charts.map((c, i) => `<div${i === 0 ? ' class="wide"' : ''}>${c}</div>`).join('')}</div></section>`
  );
}

const MACHINE_LABELS = {
  date: 'date',
  cpuModel: 'CPU',
  cpus: 'cores',
  memoryMiB: 'memory MiB',
  kernel: 'kernel',
  loadAverageAtStart: 'load average at start',
  node: 'node',
  haproxy: 'HAProxy',
  nginx: 'nginx',
  wrk: 'wrk',
  commit: 'commit',
};

/** A <dl> of an object's fields; arrays joined, objects as JSON. */
function definitionList(object, labels = {}) {
  const show = (v) => (Array.isArray(v) ? v.join(', ') : v !== null && typeof v === 'object' ? JSON.stringify(v) : v);
  const keys = [...Object.keys(labels).filter((k) => k in object), ...Object.keys(object).filter((k) => !(k in labels))];
  return `<dl>${keys.map((k) => `<dt>${esc(labels[k] ?? k)}</dt><dd>${esc(show(object[k]))}</dd>`).join('')}</dl>`;
}

function peerList(peers, colorOf) {
  const items = peers.map((p) => {
    const status = p.available
      ? `<span class="ver">${esc(p.version)}</span>`
      : `<span class="st">skipped</span>: ${esc(p.reason)}; install: <code>${esc(p.install)}</code>`;
    const details = (summary, setup) =>
      setup
        ? `<details><summary>${summary}</summary><pre>${esc(setup.command)}${setup.config ? `\n\n${esc(setup.config)}` : ''}</pre></details>`
        : '';
    // A peer that also ran TLS passthrough or HTTPS scenarios: its status and setup for those.
    const mode = (label, m) =>
      m
        ? `<br>${label}: ${m.available ? `<span class="ver">${esc(m.version)}</span>` : `<span class="st">skipped</span>: ${esc(m.reason)}; install: <code>${esc(m.install)}</code>`}` +
          details(`${label} setup`, m.setup)
        : '';
    const only = p.scenarios ? ` <span class="ver">(only in ${esc(p.scenarios.join(', '))})</span>` : '';
    return `<li><span class="sw" style="background:${colorOf(p.name)}"></span><b>${esc(p.name)}</b>${only} — ${esc(p.describe)}<br>${status}${details('setup', p.setup)}${mode('passthrough', p.passthrough)}${mode('https', p.https)}</li>`;
  });
  return `<ul class="peers">${items.join('')}</ul>`;
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2937;max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0 0 4px}p{margin:4px 0}.how,.meta{color:#6b7280}
section{border-top:1px solid #e5e7eb;margin-top:28px;padding-top:16px}
.warn{background:#fef3c7;border:1px solid #f59e0b;padding:8px 12px;border-radius:4px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:0 32px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:8px 0}dt{color:#6b7280}dd{margin:0;word-break:break-word}
table{border-collapse:collapse;margin:12px 0;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}thead th{background:#f3f4f6;font-weight:600}
td.n{text-align:right;white-space:nowrap}td.note{color:#6b7280;max-width:360px}
tr.skipped td.st,tr.failed td.st,span.st{color:#b45309;font-weight:600}tr.failed td.st{color:#b91c1c}
.bang{color:#b91c1c;font-weight:700}tr.flagged th{color:#b91c1c}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:16px 32px}.charts .wide{grid-column:1/-1;max-width:840px}
.chart{width:100%;height:auto;font-size:12px}.ct{font-weight:600;font-size:13px}.cu,.tick{fill:#6b7280}.tick{font-size:10px}
.grid{stroke:#e5e7eb}.ref{stroke:#111827;stroke-dasharray:4 3}.wh line{stroke:#111827;stroke-width:1.3}
.lbl{fill:#111827}.val{fill:#374151}.na{fill:#b45309;font-style:italic}
.peers{list-style:none;padding:0}.peers li{margin:6px 0}.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.ver{color:#6b7280}details{margin:2px 0 0 16px}pre{background:#f9fafb;border:1px solid #e5e7eb;padding:8px;overflow:auto;font-size:12px}
code{background:#f3f4f6;padding:0 3px;border-radius:3px}
@media (max-width:800px){.charts,.grid2{grid-template-columns:1fr}}
`;

/** The whole report for a results.json object, as one HTML document. */
export function renderHtml(results) {
  const peers = results.peers ?? [];
  // Older results.json files kept the load figures under `wrk`.
  const runs = (results.runs ?? []).map((r) => (r.load || !r.wrk ? r : { ...r, load: { tool: 'wrk', ...r.wrk } }));
  const colorOf = (name) => PALETTE[Math.max(0, peers.findIndex((p) => p.name === name)) % PALETTE.length];
  const machine = results.machine ?? {};
  const date = machine.date ? String(machine.date).replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : 'unknown date';
  const warnings = [];
  if (results.complete === false) warnings.push('This run did not complete; the figures cover the runs that finished.');
  if (results.error) warnings.push(`Bench error: ${results.error}`);
  const failedRuns = runs.filter((r) => r.round > 0 && !r.ok).length;
  if (failedRuns > 0) warnings.push(`${failedRuns} counted run(s) failed; see the notes and results.json.`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Tether load bench — ${esc(date)}</title><style>${CSS}</style></head><body>
<header><h1>Tether load bench</h1><p class="meta">${esc(date)} · commit ${esc(machine.commit ?? 'unknown')}</p>
${warnings.map((w) => `<p class="warn">${esc(w)}</p>`).join('')}</header>
<section><div class="grid2"><div><h2>Machine</h2>${definitionList(machine, MACHINE_LABELS)}</div>
<div><h2>Options</h2>${definitionList(results.options ?? {})}</div></div>
<h2>Peers</h2>${peerList(peers, colorOf)}
<p class="meta">Figures are medians over the counted rounds (the warm-up round 0 is never counted), except peak RSS, the maximum.
"vs HAProxy" is the peer's req/s ÷ HAProxy's in the same round, then the median (the lowest and highest round in brackets). ! = some requests failed (non-2xx/3xx or socket errors) or a round failed.</p></section>
${(results.scenarios ?? []).map((s) => scenarioSection(results, runs, s, colorOf)).join('\n')}
</body></html>
`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const [file, out] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node bench/report-html.js path/to/results.json [out.html]\n');
    process.exit(2);
  }
  const target = out ?? join(dirname(file), 'report.html');
  writeFileSync(target, renderHtml(JSON.parse(readFileSync(file, 'utf8'))));
  process.stdout.write(`${target}\n`);
}
