// The load bench's own logic: wrk report parsing, /proc/PID/stat parsing, cookie extraction,
// medians and per-round HAProxy ratios, and that the generated HAProxy/nginx configs are
// accepted by the real binaries (skipped when they are not installed).
// The bench is plain JS (bench/ is run by node directly), so its modules are imported by URL
// and typed here by hand.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';

interface WrkReport {
  requests: number;
  durationS: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: Record<string, number>;
  errorCount: number;
}
interface Row {
  peer: string;
  status: string;
  rps?: number;
  vsReference?: number | null;
  vsReferenceMin?: number | null;
  vsReferenceMax?: number | null;
  peakRssMiB?: number;
  flagged?: boolean;
  okRounds?: number;
}
interface Backend {
  name: string;
  port: number;
}

const load = async <T>(relative: string): Promise<T> =>
  (await import(new URL(`../../bench/${relative}`, import.meta.url).href)) as T;

const wrk = await load<{ parseWrkOutput(text: string): WrkReport }>('load/wrk.js');
const report = await load<{
  median(values: unknown[]): number | null;
  summarizeScenario(runs: unknown[], scenario: string, peers: unknown[], columns?: unknown[]): Row[];
  formatTable(rows: Row[], columns?: unknown[]): string;
}>('report.js');
const procStats = await load<{ parseProcStat(text: string): { pgrp: number; ticks: number } | null }>('load/proc-stats.js');
const cookies = await load<{ routeCookieFrom(headers: Record<string, unknown>, name: string): string | null }>(
  'load/scenarios/cookies.js',
);
const haproxy = await load<{ config(o: { backends: Backend[]; workers: number; port: number; connections: number }): string }>(
  'load/peers/haproxy.js',
);
const nginx = await load<{ config(o: { backends: Backend[]; workers: number; port: number; prefix: string }): string }>(
  'load/peers/nginx.js',
);

const WRK_CLEAN = `Running 3s test @ http://127.0.0.1:41234/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   257.91us  557.61us   8.08ms   92.16%
    Req/Sec    39.32k    17.35k   99.96k    76.19%
  Latency Distribution
     50%   72.00us
     75%  191.00us
     90%  532.00us
     99%    2.98ms
  82070 requests in 1.10s, 9.55MB read
Requests/sec:  74644.17
Transfer/sec:      8.68MB
`;

const WRK_ERRORS = `Running 10s test @ http://127.0.0.1:41234/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20s   300.00ms   2.00s    80.00%
    Req/Sec    10.00     5.00     20.00     50.00%
  Latency Distribution
     50%    1.10s
     75%    1.30s
     90%    1.50s
     99%    1.90s
  200 requests in 10.00s, 20.00KB read
  Socket errors: connect 0, read 3, write 1, timeout 7
  Non-2xx or 3xx responses: 12
Requests/sec:     20.00
Transfer/sec:      2.00KB
`;

describe('parseWrkOutput', () => {
  it('reads throughput, totals and percentiles in milliseconds', () => {
    const r = wrk.parseWrkOutput(WRK_CLEAN);
    expect(r.requests).toBe(82070);
    expect(r.durationS).toBeCloseTo(1.1);
    expect(r.rps).toBeCloseTo(74644.17);
    expect(r.p50Ms).toBeCloseTo(0.072);
    expect(r.p99Ms).toBeCloseTo(2.98);
    expect(r.errorCount).toBe(0);
  });

  it('reads socket errors and non-2xx/3xx responses, and seconds', () => {
    const r = wrk.parseWrkOutput(WRK_ERRORS);
    expect(r.errors).toEqual({ connect: 0, read: 3, write: 1, timeout: 7, non2xx3xx: 12 });
    expect(r.errorCount).toBe(23);
    expect(r.p99Ms).toBeCloseTo(1900);
  });

  it('refuses output that is not a wrk report', () => {
    expect(() => wrk.parseWrkOutput('unable to connect to 127.0.0.1:1 Connection refused\n')).toThrow(/unrecognised/);
  });
});

describe('parseProcStat', () => {
  it('splits after the last parenthesis, so a comm with spaces and parens is harmless', () => {
    const line = '4242 (nginx: a (b) c) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 100 1000 200';
    expect(procStats.parseProcStat(line)).toEqual({ pgrp: 4240, ticks: 250 + 50 + 7 + 3 });
  });

  it('reads this very process', () => {
    const stat = spawnSync('cat', [`/proc/${process.pid}/stat`], { encoding: 'utf8' }).stdout;
    const parsed = procStats.parseProcStat(stat);
    expect(parsed?.pgrp).toBe(Number(spawnSync('ps', ['-o', 'pgid=', '-p', String(process.pid)], { encoding: 'utf8' }).stdout.trim()));
  });
});

describe('routeCookieFrom', () => {
  it('finds the named cookie among several Set-Cookie lines', () => {
    const headers = { 'set-cookie': ['a=1; Path=/', 'SRV=app2; Path=/', 'SRVX=no'] };
    expect(cookies.routeCookieFrom(headers, 'SRV')).toBe('SRV=app2');
    expect(cookies.routeCookieFrom(headers, 'TETHER')).toBeNull();
    expect(cookies.routeCookieFrom({ 'set-cookie': ['SRV=; Max-Age=0'] }, 'SRV')).toBeNull();
  });
});

describe('summaries', () => {
  const peers = [
    { name: 'tether', available: true },
    { name: 'haproxy', available: true },
    { name: 'nginx', available: false, reason: 'nginx not found', install: 'apt-get install -y nginx' },
  ];
  const run = (peer: string, round: number, rps: number, extra: Record<string, unknown> = {}) => ({
    scenario: 's',
    peer,
    round,
    ok: true,
    load: { rps, p50Ms: 1, p99Ms: 2, errorCount: 0, requests: rps },
    cpuSecondsPer1kRequests: 0.02,
    peakRssMiB: round * 10,
    ...extra,
  });

  it('takes medians of odd and even counts and ignores non-numbers', () => {
    expect(report.median([3, 1, 2])).toBe(2);
    expect(report.median([4, 1, 3, 2])).toBe(2.5);
    expect(report.median([null, undefined, NaN])).toBeNull();
  });

  it('computes the ratio to HAProxy per round, then the median, and skips warm-ups', () => {
    const runs = [
      run('tether', 0, 1), // warm-up: never counted
      run('haproxy', 0, 1000),
      run('tether', 1, 900),
      run('haproxy', 1, 1000),
      run('tether', 2, 400),
      run('haproxy', 2, 500),
      run('tether', 3, 1000),
      run('haproxy', 3, 2000),
    ];
    const [tether, haproxyRow, nginxRow] = report.summarizeScenario(runs, 's', peers);
    expect(tether?.rps).toBe(900);
    // per round: 0.9, 0.8, 0.5 → median 0.8 (the ratio of medians would be 900/1000 = 0.9)
    expect(tether?.vsReference).toBeCloseTo(0.8);
    expect(tether?.peakRssMiB).toBe(30);
    expect(haproxyRow?.vsReference).toBe(1);
    expect(nginxRow?.status).toBe('skipped');
    // The lowest and highest round beside the median; HAProxy against itself has no range.
    expect(tether?.vsReferenceMin).toBeCloseTo(0.5);
    expect(tether?.vsReferenceMax).toBeCloseTo(0.9);
    const table = report.formatTable(report.summarizeScenario(runs, 's', peers));
    expect(table).toMatch(/tether\s+900 .* 0\.80× \(0\.50-0\.90\)/);
    expect(table).toMatch(/haproxy .* 1\.00×\s+3\/3/);
  });

  it('flags a peer whose runs had errors or failed', () => {
    const runs = [
      run('tether', 1, 900, { load: { rps: 900, p50Ms: 1, p99Ms: 2, errorCount: 5, requests: 900 } }),
      { scenario: 's', peer: 'tether', round: 2, ok: false, error: 'boom' },
      run('haproxy', 1, 1000),
    ];
    const [tether] = report.summarizeScenario(runs, 's', peers);
    expect(tether?.flagged).toBe(true);
    expect(tether?.okRounds).toBe(1);
  });

  it('flags and notes a run the scenario says measured something else, and reports scenario columns as medians', () => {
    const runs = [
      run('tether', 1, 900, { load: { rps: 900, p50Ms: 1, p99Ms: 2, errorCount: 0, requests: 900, extra: { kept: 0 }, flag: 'dropped idle connections' } }),
      run('tether', 2, 950, { load: { rps: 950, p50Ms: 1, p99Ms: 2, errorCount: 0, requests: 950, extra: { kept: 10 } } }),
      run('haproxy', 1, 1000, { load: { rps: 1000, p50Ms: 1, p99Ms: 2, errorCount: 0, requests: 1000, extra: { kept: 100 } } }),
    ];
    const columns = [{ key: 'kept', label: 'kept %', digits: 1 }];
    const [tether, haproxy] = report.summarizeScenario(runs, 's', peers, columns) as (Row & { note: string; extra: Record<string, number> })[];
    expect(tether?.flagged).toBe(true);
    expect(tether?.note).toContain('dropped idle connections');
    expect(tether?.extra.kept).toBe(5);
    expect(haproxy?.flagged).toBe(false);
    expect(report.formatTable([tether!, haproxy!], columns)).toMatch(/kept %[\s\S]*5\.0/);
  });
});

const has = (binary: string) => spawnSync('sh', ['-c', `command -v ${binary} || test -x /usr/sbin/${binary}`]).status === 0;
const backends = [
  { name: 'app1', port: 40001 },
  { name: 'app2', port: 40002 },
];

describe('generated peer configs', () => {
  it.skipIf(!has('haproxy'))('haproxy -c accepts the HAProxy config', () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'bench-cfg-'));
    try {
      const path = join(dir, 'haproxy.cfg');
      writeFileSync(path, haproxy.config({ backends, workers: 2, port: 40000, connections: 50 }));
      const check = spawnSync('haproxy', ['-c', '-f', path], { encoding: 'utf8', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin` } });
      expect(check.status, check.stderr + check.stdout).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!has('nginx'))('nginx -t accepts the nginx config', () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'bench-cfg-'));
    try {
      mkdirSync(join(dir, 'tmp'));
      const path = join(dir, 'nginx.conf');
      writeFileSync(path, nginx.config({ backends, workers: 2, port: 40000, prefix: dir }));
      const check = spawnSync('nginx', ['-t', '-p', dir, '-c', path], { encoding: 'utf8', env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin` } });
      expect(check.status, check.stderr).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
