// The authz-handshakes bench scenario and what it stands on: Tether started from dist/ by the
// peer's startAuthz() exactly as the harness starts it (a bench backend, loopback ports), the two
// SDK app servers prepare() connects, and the scenario's own load clients run for a bounded
// number of handshakes (never for a time): every completed handshake has its grant at a server,
// nothing else counts as one — a terminal with the wrong key is an error (denied), not a success.
// Also: only Tether runs the scenario, the load record flags grants ≠ handshakes, perf script
// text is read and classified as the scenario reports it, and a figure not measured shows n/a.
// The bench is plain JS, so its modules are imported by URL and typed here by hand.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processes, startReadyProcess, type Handle } from '../helpers/bench.js';

interface AuthzContext {
  host: string;
  port: number;
  path: string;
  pool: string;
  control: string;
  agentKey: string;
  terminalKeysFile: string;
  users: number;
  pid: number;
}
interface LoadResult {
  cpuSeconds?: number;
  requests: number;
  durationS: number;
  rps: number;
  p50Ms: number | null;
  p99Ms: number | null;
  errorCount: number;
  errors: Record<string, number>;
  counters: Record<string, number>;
  threadsLeft: number;
  overran: number;
  firstCrash: string | null;
}
interface Servers {
  total(): number;
  readonly checked: number;
  readonly bad: number;
  expect(granted: number): void;
  settle(deadlineMs?: number): Promise<number>;
  close(): Promise<unknown>;
}
interface Prepared {
  generator: string;
  cookies: string[];
  checks: Record<string, unknown>;
  servers: Servers;
  cleanup(): Promise<{ extra: Record<string, number>; flag?: string }>;
}
interface Frame {
  sym: string;
  dso: string;
}
interface Sample {
  comm: string;
  period: number;
  frames: Frame[];
}
interface CpuClass {
  name: string;
  match(frames: Frame[]): boolean;
}
interface Profile {
  ok: boolean;
  reason?: string;
  seconds?: number;
  summary?: { samples: number; shares: Record<string, number>; top: { dso: string; sym: string; percent: number }[] };
}
interface LoadRecord {
  requests: number;
  errorCount: number;
  extra: Record<string, number | string | null>;
  flag?: string;
  profile: Record<string, unknown>;
}
interface PeerModule {
  name: string;
  scenarios?: string[];
  startAuthz?: unknown;
}

const load = async <T>(relative: string): Promise<T> =>
  (await import(new URL(`../../bench/${relative}`, import.meta.url).href)) as T;

const tether = await load<{
  AUTHZ_USERS: number;
  startAuthz(o: { backends: { name: string; port: number }[]; workers: number; connections: number; port: number; dir: string; repoRoot: string }): Promise<{
    handle: Handle;
    url: string;
    waitReady(deadlineMs: number): Promise<unknown>;
    setup: { command: string };
    authz: AuthzContext;
  }>;
}>('load/peers/tether.js');
const scenario = await load<{
  name: string;
  authz: boolean;
  warmup: boolean;
  columns: { key: string; label: string; digits: number; missing?: string }[];
  OPEN_EVERY: number;
  CPU_CLASSES: CpuClass[];
  prepare(o: { authz?: AuthzContext; options: { warmup: number; threads: number; connections: number } }): Promise<Prepared>;
  runAuthzHandshakes(o: {
    authz: AuthzContext;
    threads: number;
    clients: number;
    durationS: number;
    maxHandshakesPerClient?: number;
    keysFile?: string;
    format?: 'json' | 'msgpack';
    generator?: string;
  }): Promise<LoadResult>;
  authzRecord(r: LoadResult, o: { workers: number; grants: number; cpuSeconds: number; profile: Profile | null }): LoadRecord;
}>('load/scenarios/authz-handshakes.js');
const gen = await load<{
  AUTHZ_GEN_PATH: string;
  buildAuthzGen(): Promise<{ ok: boolean; path?: string; reason?: string }>;
  runAuthzGen(o: { host: string; port: number; path: string; keysFile: string; connections: number; threads?: number; durationS: number; maxPerConnection?: number; openEvery?: number }): Promise<LoadResult>;
}>('load/authz-gen/index.js');
const perf = await load<{
  parseSamples(text: string): Sample[];
  summarizeSamples(samples: Sample[], classes: CpuClass[], o?: { topN?: number }): { samples: number; shares: Record<string, number>; top: { dso: string; sym: string; percent: number }[] };
}>('load/perf-profile.js');
const scenarioIndex = await load<{ scenarios: { name: string }[] }>('load/scenarios/index.js');
const peerIndex = await load<{ peers: PeerModule[]; runsIn(peer: PeerModule, s: { name: string; authz?: boolean }): boolean }>('load/peers/index.js');
const report = await load<{ formatTable(rows: unknown[], columns?: unknown[]): string }>('report.js');

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const backendPath = fileURLToPath(new URL('../../bench/load/backend.js', import.meta.url));
const work = mkdtempSync(join(os.tmpdir(), 'bench-authz-'));
const cleanups: (() => Promise<unknown> | void)[] = [];
let authz: AuthzContext;
let prepared: Prepared;

/** The bench backend as bench/run.js starts it (Tether's readiness asks for a 200 on GET /). */
async function startBenchBackend(name: string): Promise<number> {
  const { handle, port } = await startReadyProcess(`backend ${name}`, [backendPath, name]);
  cleanups.push(() => handle.kill(2000));
  return port;
}

/** A bounded run plus the grants it brought the servers. */
async function handshakes(o: { threads: number; clients: number; perClient: number; keysFile?: string; format?: 'json' | 'msgpack'; generator?: string }): Promise<{ r: LoadResult; grants: number }> {
  const r = await scenario.runAuthzHandshakes({
    authz,
    threads: o.threads,
    clients: o.clients,
    durationS: 60, // a safety net only: the count bounds the run
    maxHandshakesPerClient: o.perClient,
    ...(o.keysFile ? { keysFile: o.keysFile } : {}),
    ...(o.format ? { format: o.format } : {}),
    ...(o.generator ? { generator: o.generator } : {}),
  });
  prepared.servers.expect(r.counters.granted ?? 0);
  return { r, grants: await prepared.servers.settle() };
}

beforeAll(async () => {
  const backendPort = await startBenchBackend('app1');
  const started = await tether.startAuthz({ backends: [{ name: 'app1', port: backendPort }], workers: 2, connections: 8, port: await processes.freePort(), dir: work, repoRoot });
  cleanups.push(() => started.handle.kill(3000));
  await started.waitReady(15_000);
  authz = started.authz;
  prepared = await scenario.prepare({ authz, options: { warmup: 0, threads: 2, connections: 4 } });
  cleanups.push(() => prepared.cleanup());
});

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(work, { recursive: true, force: true });
});

describe('authz-handshakes: which peers, how registered', () => {
  it('is registered, drives its own load after its own warm-up, and runs only in Tether', () => {
    expect(scenarioIndex.scenarios.map((s) => s.name)).toContain('authz-handshakes');
    expect(scenario.authz).toBe(true);
    expect(scenario.warmup).toBe(false);
    const running = peerIndex.peers.filter((p) => peerIndex.runsIn(p, scenario)).map((p) => p.name);
    // Not HAProxy, nginx or node-http-proxy (no handshake), nor Tether variants made for another scenario.
    expect(running).toEqual(['tether']);
  });

  it('starts Tether with the handshake on: agent key, 1000 terminal keys, the authz pool', () => {
    expect(authz.users).toBe(tether.AUTHZ_USERS);
    const users = readFileSync(authz.terminalKeysFile, 'utf8').trim().split('\n');
    expect(users).toHaveLength(tether.AUTHZ_USERS);
    expect(users[0]).toMatch(/^user0000 [0-9a-f]{64}$/);
    expect(authz.agentKey).toMatch(/^[0-9a-f]{64}$/);
    expect(authz.control).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/control$/);
  });
});

describe('authz-handshakes against a real Tether', () => {
  it('prepare() saw a proof refused before any server connected, then one full handshake with its grant', () => {
    expect(prepared.checks.proofWithoutServer).toBe('refused (noServer)');
    expect(prepared.checks.handshakeWithServers).toMatch(/granted/);
  });

  it('counts every completed handshake once, and each one has its grant at a server', async () => {
    const { r, grants } = await handshakes({ threads: 2, clients: 4, perClient: 60 });
    expect(r.errors).toEqual({});
    expect(r.firstCrash).toBeNull();
    expect(r.requests).toBe(240);
    expect(r.counters.granted).toBe(240);
    expect(grants).toBe(240);
    // One answer in OPEN_EVERY per client (its first among them) is opened and checked.
    expect(r.counters.opened).toBe(4 * Math.ceil(60 / scenario.OPEN_EVERY));
    expect(r.threadsLeft).toBe(0);
    expect(r.overran).toBe(0);
    const record = scenario.authzRecord(r, { workers: 2, grants, cpuSeconds: 0.5, profile: null });
    expect(record.flag).toBeUndefined();
    expect(record.extra).toMatchObject({ handshakes: 240, grants: 240, cpuMsPer1k: (0.5 * 1e6) / 240, nativePct: 'n/a', opensslPct: 'n/a' });
  });

  it('speaks msgpack too (bin byte fields, application/msgpack)', async () => {
    const { r, grants } = await handshakes({ threads: 1, clients: 2, perClient: 5, format: 'msgpack' });
    expect(r.errors).toEqual({});
    expect(r.requests).toBe(10);
    expect(grants).toBe(10);
    expect(r.counters.opened).toBe(2);
  });

  it('counts a terminal with the wrong key as an error (denied), never as a handshake or a grant', async () => {
    // The same users with other keys: hello succeeds, the proof is refused with 403.
    const wrongKeys = join(work, 'wrong.keys');
    const lines = readFileSync(authz.terminalKeysFile, 'utf8').trim().split('\n').slice(0, 3);
    writeFileSync(wrongKeys, lines.map((l) => `${l.split(' ')[0]} ${'ab'.repeat(32)}\n`).join(''));
    // 3 refusals: under the per-IP limit of failed proofs (10 a minute per worker), so no 429 yet.
    const { r, grants } = await handshakes({ threads: 1, clients: 1, perClient: 3, keysFile: wrongKeys });
    expect(r.requests).toBe(0);
    expect(r.errors).toEqual({ denied: 3 });
    expect(r.counters.granted ?? 0).toBe(0);
    expect(grants).toBe(0);
    expect(() => scenario.authzRecord(r, { workers: 2, grants, cpuSeconds: 0, profile: null })).toThrow(/no request completed.*denied/);
  });

  it('a user the balancer does not know is denied the same way', async () => {
    const strangers = join(work, 'strangers.keys');
    writeFileSync(strangers, `nobody ${'cd'.repeat(32)}\n`);
    const { r, grants } = await handshakes({ threads: 1, clients: 1, perClient: 2, keysFile: strangers });
    expect(r.errors).toEqual({ denied: 2 });
    expect(r.requests + grants).toBe(0);
  });

  it('prepare() built authz-gen (C) and saw it complete one checked handshake: the measured run uses it', () => {
    expect(prepared.generator).toBe(gen.AUTHZ_GEN_PATH);
    expect(prepared.checks.generator).toMatch(/^authz-gen \(C.*one handshake granted, box opened, grant received$/);
  });

  it('authz-gen counts every completed handshake once, each with its grant, and opens one box in OPEN_EVERY', async () => {
    const { r, grants } = await handshakes({ threads: 2, clients: 4, perClient: 150, generator: prepared.generator });
    expect(r.errors).toEqual({});
    expect(r.requests).toBe(600);
    expect(r.counters.granted).toBe(600);
    expect(grants).toBe(600);
    // Each terminal's 1st and 101st answers are opened.
    expect(r.counters.opened).toBe(4 * Math.ceil(150 / scenario.OPEN_EVERY));
    expect(r.p50Ms).toBeGreaterThan(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms!);
    expect(r.cpuSeconds).toBeGreaterThan(0);
    const record = scenario.authzRecord(r, { workers: 2, grants, cpuSeconds: 0.6, profile: null });
    expect(record.flag).toBeUndefined();
    expect(record.extra.genCpuMsPer1k).toBeCloseTo((r.cpuSeconds! * 1e6) / 600, 6);
  });

  it('authz-gen counts a wrong key as denied, never as a handshake or a grant', async () => {
    const wrongKeys = join(work, 'wrong-gen.keys');
    const lines = readFileSync(authz.terminalKeysFile, 'utf8').trim().split('\n').slice(10, 12);
    writeFileSync(wrongKeys, lines.map((l) => `${l.split(' ')[0]} ${'ef'.repeat(32)}\n`).join(''));
    // 2 refusals: with the 5 above, under the per-IP limit of 10 failed proofs a minute.
    const { r, grants } = await handshakes({ threads: 1, clients: 1, perClient: 2, keysFile: wrongKeys, generator: prepared.generator });
    expect(r.requests).toBe(0);
    expect(r.errors).toEqual({ denied: 2 });
    expect(r.counters.granted).toBe(0);
    expect(grants).toBe(0);
  });

  it('the servers opened every grant frame they checked with the pool key', () => {
    expect(prepared.servers.bad).toBe(0);
    expect(prepared.servers.total()).toBeGreaterThanOrEqual(852);
  });
});

describe('authz-handshakes record and profile', () => {
  const result = (requests: number, granted = requests): LoadResult => ({
    requests,
    durationS: 1,
    rps: requests,
    p50Ms: 1,
    p99Ms: 2,
    errorCount: 0,
    errors: {},
    counters: { granted },
    threadsLeft: 0,
    overran: 0,
    firstCrash: null,
  });

  it('flags a run whose servers received more or fewer grants than handshakes completed', () => {
    expect(scenario.authzRecord(result(100), { workers: 2, grants: 99, cpuSeconds: 1, profile: null }).flag).toMatch(/99 grant\(s\) for 100 completed/);
    expect(scenario.authzRecord(result(100, 101), { workers: 2, grants: 101, cpuSeconds: 1, profile: null }).flag).toMatch(/101 grant\(s\) for 100 completed handshake\(s\) \(101 proofs answered 200\)/);
    const fine = scenario.authzRecord(result(100), { workers: 4, grants: 100, cpuSeconds: 1, profile: null });
    expect(fine.flag).toBeUndefined();
    expect(fine.extra.perWorker).toBe(25);
  });

  // perf script -F comm,tid,period,ip,sym,dso: innermost frame first.
  const PERF_SCRIPT = [
    'node 101    3000000 ',
    '\t    7f01 sha256_block_data_order_shaext (/usr/bin/node)',
    '\t    7f02 HMAC_Update (/usr/bin/node)',
    '\t    7f03 tether::HmacSha256(unsigned char const*, unsigned long) (/work/main/build/Release/tether_native.node)',
    '\t    7f04 [unknown] (/tmp/perf-100.map)',
    '',
    'node 102    1000000 ',
    '\t    7f05 _int_malloc (/usr/lib/x86_64-linux-gnu/libc.so.6)',
    '\t    7f06 CRYPTO_malloc (/usr/bin/node)',
    '\t    7f07 EVP_CIPHER_CTX_new (/usr/bin/node)',
    '\t    7f08 node::crypto::CipherBase::New(v8::FunctionCallbackInfo<v8::Value> const&) (/usr/bin/node)',
    '',
    'node 102    1000000 ',
    '\t    7f09 node::crypto::RandomBytesTraits::DeriveBits (/usr/bin/node)',
    '',
    'WorkerThread 103    4000000 ',
    '\t    7f0a tcp_sendmsg_locked ([kernel.kallsyms])',
    '\t    7f0b __send (/usr/lib/x86_64-linux-gnu/libc.so.6)',
    '',
    'node 101    1000000 ',
    '\t    7f0c Builtins_LoadIC (/usr/bin/node)',
    '\t    7f0d uv_run (/usr/bin/node)',
    '',
  ].join('\n');

  it('reads perf script samples: period, frames innermost first, C++ symbols with parentheses, dso base names', () => {
    const samples = perf.parseSamples(PERF_SCRIPT);
    expect(samples).toHaveLength(5);
    expect(samples[0]).toMatchObject({ comm: 'node', period: 3_000_000 });
    expect(samples[0]!.frames[2]).toEqual({ sym: 'tether::HmacSha256(unsigned char const*, unsigned long)', dso: 'tether_native.node' });
    expect(samples[3]!.comm).toBe('WorkerThread');
    expect(samples[3]!.frames[0]).toEqual({ sym: 'tcp_sendmsg_locked', dso: '[kernel.kallsyms]' });
  });

  it('gives the addon its OpenSSL calls, OpenSSL what node:crypto calls (and what it calls), by period', () => {
    const summary = perf.summarizeSamples(perf.parseSamples(PERF_SCRIPT), scenario.CPU_CLASSES, { topN: 3 });
    expect(summary.samples).toBe(5);
    // Periods: addon 3, OpenSSL 1 (malloc under EVP_CIPHER_CTX_new), node's binding 1, kernel 4, other 1 — of 10.
    expect(summary.shares).toEqual({ native: 30, openssl: 10, nodeCrypto: 10, kernel: 40 });
    expect(summary.top[0]).toEqual({ dso: '[kernel.kallsyms]', sym: 'tcp_sendmsg_locked', percent: 40 });
    expect(summary.top[1]).toEqual({ dso: 'node', sym: 'sha256_block_data_order_shaext', percent: 30 });
  });

  it('shows n/a in the table for a share that was not measured (no perf), never a number', () => {
    const row = { peer: 'tether', status: 'ok', rounds: 1, okRounds: 1, rps: 100, p50Ms: 1, p99Ms: 2, cpuPer1k: 0.3, peakRssMiB: 100, vsReference: null, errors: 0, flagged: false, note: '', extra: { nativePct: null, opensslPct: 12.34 } };
    const table = report.formatTable([row], scenario.columns.filter((c) => c.key.endsWith('Pct')));
    const line = table.split('\n')[2]!;
    expect(line).toMatch(/\bn\/a\b/);
    expect(line).toContain('12.3');
  });
});
