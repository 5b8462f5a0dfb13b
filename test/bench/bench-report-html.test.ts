// The load bench's HTML report (bench/report-html.js) and terminal progress bar
// (bench/load/progress.js): the report shows the same figures as the terminal table, escapes
// everything from results.json and is balanced HTML; the CLI writes a file; the progress bar is
// silent off a terminal and fits the terminal width on one.
// Plain-JS bench modules are imported by URL and typed here by hand, as in bench-report.test.ts.

import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

interface Column {
  key: string;
  label: string;
  digits?: number;
}
interface Row {
  peer: string;
  status: string;
  rps?: number;
  vsReference?: number | null;
  extra?: Record<string, number | null>;
}
interface FakeStream {
  isTTY: boolean;
  columns: number;
  writes: string[];
  write(chunk: string): boolean;
}
interface Progress {
  start(label: string): void;
  tick(label?: string): void;
  log(line: string): void;
  clear(): void;
  done(): void;
}

const benchUrl = (relative: string) => new URL(`../../bench/${relative}`, import.meta.url);
const load = async <T>(relative: string): Promise<T> => (await import(benchUrl(relative).href)) as T;

const html = await load<{ renderHtml(results: unknown): string }>('report-html.js');
const report = await load<{
  summarizeScenario(runs: unknown[], scenario: string, peers: unknown[], columns?: Column[]): Row[];
  formatTable(rows: Row[], columns?: Column[]): string;
}>('report.js');
const progressModule = await load<{
  createProgress(o: { total: number; stream: FakeStream; estimateS?: number; now?: () => number }): Progress;
}>('load/progress.js');

const EVIL = '<script>alert(1)</script>';
const EVIL_ERROR = 'tether exited: <img src=x onerror=alert(1)> & "quoted" \'single\'';
const COLUMNS: Column[] = [{ key: 'handoffs', label: 'handoffs/s', digits: 1 }];

const run = (scenario: string, peer: string, round: number, rps: number, extra?: Record<string, number>) => ({
  scenario,
  peer,
  round,
  ok: true,
  load: { tool: extra ? 'node' : 'wrk', rps, p50Ms: 1.25, p99Ms: 4.5, errorCount: 0, requests: rps * 10, ...(extra ? { extra } : {}) },
  cpuSeconds: 1,
  cpuSecondsPer1kRequests: 0.0321,
  peakRssMiB: 40 + round,
});

const results = {
  version: 1,
  machine: { date: '2026-11-22T20:39:59.806Z', kernel: '6.1.0', cpuModel: 'Test CPU & Co', cpus: 2, memoryMiB: 4096, node: 'v20.20.2', commit: 'abc123' },
  options: { scenarios: ['alpha', 'beta'], peers: ['tether', 'haproxy', 'nginx'], duration: 3, warmup: 1, connections: 50, threads: 2, workers: 2, repeat: 2 },
  peers: [
    { name: 'tether', describe: `Tether ${EVIL}`, available: true, version: 'tether test' },
    { name: 'haproxy', describe: 'HAProxy', available: true, version: 'HAProxy 2.6' },
    { name: 'nginx', describe: 'nginx', available: false, reason: 'nginx not found', install: 'apt-get install -y nginx' },
  ],
  scenarios: [
    { name: 'alpha', description: 'plain requests' },
    { name: 'beta', description: 'a scenario with its own figures', columns: COLUMNS, load: 'node client, 50 connections' },
  ],
  runs: [
    // alpha: tether 900 and 700 against 1000 → median 800 req/s, ratio median of 0.9 and 0.7 = 0.80×
    run('alpha', 'tether', 0, 1),
    run('alpha', 'haproxy', 0, 1),
    run('alpha', 'tether', 1, 900),
    run('alpha', 'haproxy', 1, 1000),
    run('alpha', 'tether', 2, 700),
    run('alpha', 'haproxy', 2, 1000),
    // beta: tether fails every round; haproxy carries the scenario's own column
    ...[0, 1, 2].map((round) => ({ scenario: 'beta', peer: 'tether', round, ok: false, error: `${EVIL_ERROR}\nsecond line` })),
    run('beta', 'haproxy', 0, 1, { handoffs: 1 }),
    run('beta', 'haproxy', 1, 500, { handoffs: 12.34 }),
    run('beta', 'haproxy', 2, 700, { handoffs: 15.66 }),
  ],
  complete: true,
};

const balanced = ['html', 'head', 'body', 'header', 'section', 'div', 'p', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'svg', 'g', 'text', 'tspan', 'rect', 'title', 'dl', 'dt', 'dd', 'ul', 'li', 'details', 'summary', 'pre', 'code', 'span', 'b'];
const count = (text: string, pattern: RegExp) => (text.match(pattern) ?? []).length;

describe('renderHtml', () => {
  const page = html.renderHtml(results);

  it('closes every element it opens', () => {
    for (const tag of balanced) {
      expect(count(page, new RegExp(`</${tag}>`, 'g')), tag).toBe(count(page, new RegExp(`<${tag}[\\s>]`, 'g')));
    }
    expect(count(page, /<svg[\s>]/g)).toBe(5 + 6); // five per scenario, and one per own column (beta: handoffs/s)
    expect(count(page, /<section[\s>]/g)).toBe(1 + 2);
  });

  it('shows every peer, the table figures and the ratio', () => {
    for (const name of ['tether', 'haproxy', 'nginx']) expect(page).toContain(`>${name}<`);
    const alpha = report.summarizeScenario(results.runs, 'alpha', results.peers);
    const tether = alpha.find((r) => r.peer === 'tether');
    expect(tether?.rps).toBe(800);
    expect(report.formatTable(alpha)).toMatch(/tether\s+800 .* 0\.80×/);
    expect(page).toContain('<td class="n">800</td>');
    expect(page).toContain('0.80×');
    expect(page).toContain('<td class="n">14.0</td>'); // beta's own column: median of 12.34 and 15.66
    expect(page).toContain('handoffs/s');
    expect(page).toContain('node client, 50 connections');
  });

  it('shows skipped and failed peers with their install hint and error', () => {
    expect(page).toContain('apt-get install -y nginx');
    expect(page).toMatch(/skipped/);
    expect(page).toMatch(/<td class="st">failed<\/td>/);
    expect(page).toContain('tether exited: &#60;img src=x onerror=alert(1)&#62; &#38; &#34;quoted&#34; &#39;single&#39;');
  });

  it('escapes strings from the results', () => {
    expect(page).not.toContain('<script');
    expect(page).not.toContain('<img');
    expect(page).toContain('Tether &#60;script&#62;alert(1)&#60;/script&#62;');
    expect(page).toContain('Test CPU &#38; Co');
  });
});

describe('node bench/report-html.js', () => {
  const dir = mkdtempSync(join(os.tmpdir(), 'bench-html-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const script = fileURLToPath(benchUrl('report-html.js'));
  const json = join(dir, 'results.json');
  writeFileSync(json, JSON.stringify(results));

  it('writes the named file', () => {
    const out = join(dir, 'out.html');
    const r = spawnSync(process.execPath, [script, json, out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
    expect(readFileSync(out, 'utf8').startsWith('<!doctype html>')).toBe(true);
  });

  it('writes report.html next to the JSON by default, and explains its usage', () => {
    const r = spawnSync(process.execPath, [script, json], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(dir, 'report.html'), 'utf8').startsWith('<!doctype html>')).toBe(true);
    expect(spawnSync(process.execPath, [script], { encoding: 'utf8' }).status).toBe(2);
  });
});

describe('createProgress', () => {
  const fakeStream = (isTTY: boolean, columns = 80): FakeStream => ({
    isTTY,
    columns,
    writes: [],
    write(chunk: string) {
      this.writes.push(chunk);
      return true;
    },
  });

  it('adds nothing when the stream is not a terminal', () => {
    const stream = fakeStream(false);
    const progress = progressModule.createProgress({ total: 10, stream });
    progress.start('alpha round 1/3 tether');
    progress.tick();
    progress.clear();
    progress.done();
    expect(stream.writes).toEqual([]);
    progress.log('a run line');
    expect(stream.writes).toEqual(['a run line\n']);
  });

  it('redraws one line on a terminal, within its width, and clears it before other output', () => {
    const stream = fakeStream(true, 80);
    let clock = 0;
    const progress = progressModule.createProgress({ total: 10, stream, now: () => clock });
    for (let i = 1; i <= 3; i += 1) {
      progress.start(`sticky-hit round ${i}/3 ${'a-very-long-peer-name-'.repeat(i)}`);
      clock += 10_000;
      progress.tick();
    }
    const last = stream.writes.at(-1) ?? '';
    expect(last).toContain('3/10');
    expect(last).toContain('~1:10 left'); // 7 runs left at the 10 s average (a fake clock)
    progress.log('a run line');
    expect(stream.writes.slice(-3)).toEqual(['\r\x1b[K', 'a run line\n', expect.stringContaining('3/10')]);
    progress.done();
    expect(stream.writes.at(-1)).toBe('\r\x1b[K');
    for (const chunk of stream.writes) {
      for (const line of chunk.replaceAll('\x1b[K', '').split(/[\r\n]/)) expect(line.length).toBeLessThanOrEqual(80);
    }
  });

  it('never throws, even when the stream does', () => {
    const progress = progressModule.createProgress({
      total: 2,
      stream: { isTTY: true, columns: 80, writes: [], write: () => { throw new Error('EPIPE'); } },
    });
    expect(() => {
      progress.start('x');
      progress.tick();
      progress.log('y');
      progress.done();
    }).not.toThrow();
  });
});
