// The TLS passthrough bench scenarios and what they stand on: the bench's own PKI (openssl
// CLI), the TLS backend (a real tls-backend.js child process) serving / and /bytes/N over
// verified TLS, the node:tls load client's error accounting (a CA that does not verify, a
// certificate for another name, servers that never finish a handshake or never answer: all
// counted, none hangs — every wait has a deadline, every client loop a count bound), the
// generated HAProxy and nginx passthrough configurations checked by the binaries themselves,
// the Tether peer's passthrough arguments, which peers run in which scenario, and each
// passthrough peer started for real with both routes carrying load (skipped, with the reason,
// when a binary or the nginx stream module is missing).
// The bench is plain JS, so its modules are imported by URL and typed here by hand.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processes, startReadyProcess, type Handle } from '../helpers/bench.js';

interface Pki {
  dir: string;
  caFile: string;
  ca: string;
  leaf(name: string): { keyFile: string; certFile: string };
}
interface Response {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  bodyBytes: number;
  keepAlive: boolean;
}
interface Connection {
  reusable: boolean;
  request(o?: { path?: string; timeoutMs?: number }): Promise<Response>;
  close(): void;
}
interface Route {
  serverName: string;
  backend: string;
}
interface Passthrough {
  host: string;
  port: number;
  ca: string;
  routes: Route[];
}
interface LoadResult {
  requests: number;
  errorCount: number;
  errors: Record<string, number>;
  counters: Record<string, number>;
  threadsLeft: number;
  overran: number;
}
interface LoadRecord {
  requests: number;
  errorCount: number;
  errors: Record<string, number>;
  extra: Record<string, number>;
}
interface TlsBackend {
  name: string;
  port: number;
}
interface PassthroughOptions {
  tlsBackends: TlsBackend[];
  routes: Route[];
  workers: number;
  port: number;
  connections: number;
  prefix?: string;
  loadModule?: string | null;
}
interface StartedPassthrough {
  handle: Handle;
  host: string;
  port: number;
  waitReady(deadlineMs: number): Promise<unknown>;
}
interface PeerModule {
  name: string;
  scenarios?: string[];
  startPassthrough?(o: PassthroughOptions & { ca: string; dir: string; repoRoot: string }): Promise<StartedPassthrough> | StartedPassthrough;
}
interface ReportPeer {
  name: string;
  available: boolean;
  reason?: string;
  install?: string;
  scenarios?: string[];
  passthrough?: { available: boolean; version?: string; reason?: string; install?: string };
}

const load = async <T>(relative: string): Promise<T> =>
  (await import(new URL(`../../bench/${relative}`, import.meta.url).href)) as T;

const { makePki } = await load<{ makePki(dir: string, names: string[]): Pki }>('load/pki.js');
const client = await load<{
  openTlsConnection(o: { host: string; port: number; servername: string; ca: string; timeoutMs?: number }): Promise<Connection>;
  tlsErrorKind(error: unknown, o: { tcpConnected: boolean }): string;
}>('load/node-load/http-client.js');
const common = await load<{
  loadRecord(r: LoadResult & Record<string, unknown>, routes: Route[], extra?: Record<string, number>): LoadRecord;
  checkRoutes(o: { passthrough: Passthrough; peer: { name: string }; bytes?: number }): Promise<Record<string, unknown>>;
}>('load/scenarios/passthrough-common.js');
const small = await load<{
  runSmall(o: { passthrough: Passthrough; threads: number; clients: number; durationS: number; connectTimeoutMs?: number; responseTimeoutMs?: number; maxRequestsPerClient?: number }): Promise<LoadResult>;
}>('load/scenarios/passthrough-small.js');
const handshakes = await load<{
  runHandshakes(o: { passthrough: Passthrough; threads: number; clients: number; durationS: number; connectTimeoutMs?: number; responseTimeoutMs?: number; maxConnectionsPerClient?: number }): Promise<LoadResult>;
}>('load/scenarios/passthrough-handshakes.js');
const bulk = await load<{
  BODY_BYTES: number;
  runBulk(o: { passthrough: Passthrough; threads: number; durationS: number; bytes?: number; lanes?: number; transferDeadlineMs?: number; maxTransfersPerLane?: number }): Promise<LoadResult & { verifiedBytes: number; MiBps: number }>;
}>('load/scenarios/passthrough-bulk.js');
const scenarioIndex = await load<{ scenarios: { name: string; backendKind?: string; measure?: unknown }[] }>('load/scenarios/index.js');
const peerIndex = await load<{ peers: PeerModule[]; runsIn(peer: PeerModule, scenario: { name: string; backendKind?: string; stickiness?: string }): boolean }>('load/peers/index.js');
const haproxy = await load<PeerModule & { passthroughConfig(o: PassthroughOptions): string }>('load/peers/haproxy.js');
const nginx = await load<
  PeerModule & {
    PASSTHROUGH_INSTALL: string;
    passthroughConfig(o: PassthroughOptions): string;
    streamModule(versionText: string, o?: { exists?: (path: string) => boolean }): { ok: boolean; loadModule?: string | null; reason?: string };
    available(o?: { passthrough?: boolean }): { ok: boolean; reason?: string; install?: string };
  }
>('load/peers/nginx.js');
const tether = await load<PeerModule & { passthroughArgs(o: Record<string, unknown>): string[] }>('load/peers/tether.js');
const report = await load<{
  peersOf(results: { peers: ReportPeer[] }, scenario: { name: string; backendKind?: string; peers?: string[] }): ReportPeer[];
}>('report.js');

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const tlsBackendPath = fileURLToPath(new URL('../../bench/load/tls-backend.js', import.meta.url));
const which = (binary: string): string | null => {
  const r = spawnSync('sh', ['-c', `command -v ${binary} || { test -x /usr/sbin/${binary} && echo /usr/sbin/${binary}; }`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
};
const haproxyBinary = which('haproxy');
const nginxBinary = which('nginx');
const nginxStream = nginxBinary
  ? nginx.streamModule(`${spawnSync(nginxBinary, ['-V'], { encoding: 'utf8' }).stderr}`)
  : { ok: false, reason: 'nginx not installed' };
const nginxSkip = nginxBinary ? (nginxStream.ok ? null : nginxStream.reason ?? 'no stream module') : 'nginx not installed';

const NAMES = ['app1.bench.test', 'app2.bench.test'];
const ROUTES: Route[] = NAMES.map((serverName) => ({ serverName, backend: serverName.split('.')[0]! }));
const MiB = 1024 * 1024;

const work = mkdtempSync(join(os.tmpdir(), 'bench-pt-'));
const cleanups: (() => Promise<unknown> | void)[] = [];
let pki: Pki;
let otherPki: Pki;
const backends: Record<string, TlsBackend & { handle: Handle }> = {};

/** tls-backend.js as bench/run.js starts it: resolves once it prints {"ready":true,…,"port"}. */
async function startTlsBackend(name: string, serverName: string): Promise<TlsBackend & { handle: Handle }> {
  const { keyFile, certFile } = pki.leaf(serverName);
  const { handle, port } = await startReadyProcess(`tls-backend ${name}`, [tlsBackendPath, name, keyFile, certFile]);
  cleanups.push(() => handle.kill(2000));
  return { name, port, handle };
}

/** A server on loopback; closed (with its sockets) after the file. */
async function listen(server: net.Server): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** Straight to one backend (no balancer): the routes say what the client expects of each name. */
const direct = (backend: TlsBackend, routes: Route[], ca = pki.ca): Passthrough => ({ host: '127.0.0.1', port: backend.port, ca, routes });

beforeAll(async () => {
  pki = makePki(join(work, 'pki'), NAMES);
  otherPki = makePki(join(work, 'other-pki'), NAMES);
  for (const route of ROUTES) backends[route.backend] = await startTlsBackend(route.backend, route.serverName);
});

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(work, { recursive: true, force: true });
});

describe('bench PKI and TLS backend', () => {
  it('makes a CA and a leaf per name, and refuses names it did not make', () => {
    expect(pki.ca).toMatch(/BEGIN CERTIFICATE/);
    const leaf = new X509Certificate(readFileSync(pki.leaf('app1.bench.test').certFile));
    expect(leaf.subjectAltName).toBe('DNS:app1.bench.test');
    expect(leaf.checkIssued(new X509Certificate(pki.ca))).toBe(true);
    expect(leaf.checkIssued(new X509Certificate(otherPki.ca))).toBe(false);
    expect(() => pki.leaf('other.bench.test')).toThrow(/no certificate made/);
    expect(() => makePki(join(work, 'bad'), ['Not A Name'])).toThrow(/DNS name/);
  });

  it('serves GET / (its name) and GET /bytes/N (N bytes) on one verified keep-alive connection', async () => {
    const connection = await client.openTlsConnection({ host: '127.0.0.1', port: backends.app1!.port, servername: 'app1.bench.test', ca: pki.ca });
    try {
      const root = await connection.request();
      expect(root.status).toBe(200);
      expect(root.body.toString()).toBe('app1');
      expect(root.headers['x-backend']).toBe('app1');
      expect(root.keepAlive).toBe(true);
      const bytes = await connection.request({ path: `/bytes/${3 * MiB + 7}`, timeoutMs: 30_000 });
      expect(bytes.status).toBe(200);
      expect(bytes.bodyBytes).toBe(3 * MiB + 7);
      expect(bytes.headers['content-length']).toBe(String(3 * MiB + 7));
      expect(bytes.headers['x-backend']).toBe('app1');
      const none = await connection.request({ path: '/bytes/0' });
      expect(none.bodyBytes).toBe(0);
      expect((await connection.request({ path: '/bytes/nope' })).status).toBe(400);
      expect(connection.reusable).toBe(true);
    } finally {
      connection.close();
    }
  });

  it('is verified by node:https too (the CA and the name, independently of the bench client)', async () => {
    const got = await new Promise<{ status: number; bytes: number; authorized: boolean }>((resolve, reject) => {
      const req = https.get(
        { host: '127.0.0.1', port: backends.app2!.port, servername: 'app2.bench.test', ca: pki.ca, path: '/bytes/65537', agent: false, timeout: 10_000 },
        (res) => {
          let bytes = 0;
          res.on('data', (chunk: Buffer) => (bytes += chunk.length));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, authorized: (res.socket as tls.TLSSocket).authorized }));
        },
      );
      req.on('timeout', () => req.destroy(new Error('no response within 10 s')));
      req.on('error', reject);
    });
    expect(got).toEqual({ status: 200, bytes: 65537, authorized: true });
  });
});

describe('node:tls load client', () => {
  it('classifies TLS errors: certificate, certName, handshake, connect', () => {
    expect(client.tlsErrorKind({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, { tcpConnected: true })).toBe('certificate');
    expect(client.tlsErrorKind({ code: 'SELF_SIGNED_CERT_IN_CHAIN' }, { tcpConnected: true })).toBe('certificate');
    expect(client.tlsErrorKind({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' }, { tcpConnected: true })).toBe('certName');
    expect(client.tlsErrorKind({ code: 'ECONNRESET' }, { tcpConnected: true })).toBe('handshake');
    expect(client.tlsErrorKind({ code: 'ERR_SSL_TLSV1_ALERT_UNRECOGNIZED_NAME' }, { tcpConnected: true })).toBe('handshake');
    expect(client.tlsErrorKind({ code: 'ECONNREFUSED' }, { tcpConnected: false })).toBe('connect');
  });

  it('runs keep-alive clients through verified connections and counts answers per backend', async () => {
    const r = await small.runSmall({ passthrough: direct(backends.app1!, [ROUTES[0]!]), threads: 2, clients: 4, durationS: 60, maxRequestsPerClient: 25 });
    expect(r.errors).toEqual({});
    expect(r.requests).toBe(100);
    expect(r.counters['answers.app1']).toBe(100);
    // Keep-alive: one handshake per client.
    expect(r.counters.handshakes).toBe(4);
    expect(r.threadsLeft).toBe(0);
    const record = common.loadRecord({ ...r, durationS: 1, rps: 100, p50Ms: 1, p99Ms: 1 }, [ROUTES[0]!]);
    expect(record.extra).toEqual({ app1: 100 });
  });

  it('counts a certificate that does not verify (wrong CA) as errors, never as answers, and the run fails', async () => {
    const passthrough = direct(backends.app1!, [ROUTES[0]!], otherPki.ca);
    for (const r of [
      await small.runSmall({ passthrough, threads: 1, clients: 2, durationS: 60, maxRequestsPerClient: 3 }),
      await handshakes.runHandshakes({ passthrough, threads: 1, clients: 2, durationS: 60, maxConnectionsPerClient: 3 }),
    ]) {
      expect(r.requests).toBe(0);
      expect(r.errors).toEqual({ certificate: 6 });
      expect(r.overran).toBe(0);
      expect(() => common.loadRecord({ ...r, durationS: 1, rps: 0, p50Ms: 0, p99Ms: 0 }, [ROUTES[0]!])).toThrow(/no request completed.*certificate/);
    }
    await expect(common.checkRoutes({ passthrough, peer: { name: 'wrong-ca' } })).rejects.toThrow(/wrong-ca for app1\.bench\.test.*certificate/);
  });

  it('fails the run when a name reaches the wrong backend (its certificate is for another name)', async () => {
    // Everything to app1: clients asking for app2.bench.test meet app1's certificate.
    const r = await handshakes.runHandshakes({ passthrough: direct(backends.app1!, ROUTES), threads: 1, clients: 2, durationS: 60, maxConnectionsPerClient: 4 });
    expect(r.counters['answers.app1']).toBe(4);
    expect(r.errors).toEqual({ certName: 4 });
    expect(() => common.loadRecord({ ...r, durationS: 1, rps: 4, p50Ms: 1, p99Ms: 1 }, ROUTES)).toThrow(/a name reached the wrong backend: 4 handshake/);
    // And when the answer names another backend (a backend holding both certificates).
    const wrongAnswer = { ...r, errors: { wrongBackend: 1 }, counters: { 'wrong.app2.bench.test→app1': 1 }, durationS: 1, rps: 1, p50Ms: 1, p99Ms: 1 };
    expect(() => common.loadRecord(wrongAnswer, ROUTES)).toThrow(/wrong backend.*app2\.bench\.test→app1/);
  });

  it('never hangs: a server that never finishes the handshake, and one that never answers, cost errors only', async () => {
    // The clients give up on the handshake and close: a reset then is their doing, not a failure.
    const silentTcp = await listen(net.createServer((socket) => socket.on('error', () => {})));
    const { keyFile, certFile } = pki.leaf('app1.bench.test');
    // Completes handshakes, then reads and never answers.
    const silentHttp = await listen(
      tls.createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, (socket) => socket.on('error', () => {})),
    );
    const at = (port: number): Passthrough => ({ host: '127.0.0.1', port, ca: pki.ca, routes: [ROUTES[0]!] });
    const noHandshake = await handshakes.runHandshakes({ passthrough: at(silentTcp), threads: 1, clients: 2, durationS: 60, connectTimeoutMs: 200, maxConnectionsPerClient: 2 });
    expect(noHandshake.errors).toEqual({ handshake: 4 });
    const noAnswer = await small.runSmall({ passthrough: at(silentHttp), threads: 1, clients: 2, durationS: 60, responseTimeoutMs: 200, maxRequestsPerClient: 2 });
    expect(noAnswer.errors).toEqual({ timeout: 4 });
    const noTransfer = await bulk.runBulk({ passthrough: at(silentHttp), threads: 1, durationS: 60, lanes: 2, transferDeadlineMs: 200, maxTransfersPerLane: 5 });
    // A lane stops after 3 failures in a row.
    expect(noTransfer.errors).toEqual({ timeout: 6 });
    for (const r of [noHandshake, noAnswer, noTransfer]) {
      expect(r.overran).toBe(0);
      expect(r.threadsLeft).toBe(0);
    }
    const refused = await processes.freePort();
    const noListener = await handshakes.runHandshakes({ passthrough: at(refused), threads: 1, clients: 1, durationS: 60, maxConnectionsPerClient: 2 });
    expect(noListener.errors).toEqual({ connect: 2 });
  });

  it('bulk lanes verify every byte count and report MiB/s from verified bytes', async () => {
    const bytes = MiB + 3;
    const r = await bulk.runBulk({ passthrough: direct(backends.app2!, [ROUTES[1]!]), threads: 2, durationS: 60, bytes, lanes: 2, maxTransfersPerLane: 3 });
    expect(r.errors).toEqual({});
    expect(r.counters.transfers).toBe(6);
    expect(r.verifiedBytes).toBe(6 * bytes);
    expect(r.counters['answers.app2']).toBe(6);
    expect(r.MiBps).toBeGreaterThan(0);
    expect(bulk.BODY_BYTES).toBe(100 * MiB);
  });
});

describe('scenarios and peers for passthrough', () => {
  const names = ['passthrough-small', 'passthrough-bulk', 'passthrough-handshakes'];

  it('registers the three scenarios as TLS scenarios that drive their own load', () => {
    const registered = scenarioIndex.scenarios.filter((s) => names.includes(s.name));
    expect(registered.map((s) => s.name)).toEqual(names);
    for (const s of registered) {
      expect(s.backendKind).toBe('tls');
      expect(typeof s.measure).toBe('function');
    }
  });

  it('runs tether, haproxy and nginx in passthrough scenarios, never http-proxy or the roaming variants', () => {
    const passthroughScenario = { name: 'passthrough-small', backendKind: 'tls' };
    const runs = peerIndex.peers.filter((p) => peerIndex.runsIn(p, passthroughScenario)).map((p) => p.name);
    expect(runs).toEqual(['tether', 'haproxy', 'nginx']);
    // HTTP scenarios are unchanged.
    const httpRuns = peerIndex.peers.filter((p) => peerIndex.runsIn(p, { name: 'sticky-hit' })).map((p) => p.name);
    expect(httpRuns).toEqual(['tether', 'haproxy', 'nginx', 'http-proxy', 'tether-bound', 'tether-logged', 'uws-floor', 'tether-baseline']);
    // learn-hit runs the peers with a learn mode only.
    expect(peerIndex.peers.filter((p) => peerIndex.runsIn(p, { name: 'learn-hit', stickiness: 'learn' })).map((p) => p.name)).toEqual(['tether', 'haproxy', 'tether-baseline']);
    expect(peerIndex.peers.filter((p) => peerIndex.runsIn(p, { name: 'roaming' })).map((p) => p.name)).toContain('haproxy-source');
  });

  it('reports a passthrough table with each peer’s passthrough availability and only the peers it applies to', () => {
    const peers: ReportPeer[] = [
      { name: 'haproxy', available: true, passthrough: { available: true, version: 'HAProxy 2.6' } },
      { name: 'nginx', available: true, passthrough: { available: false, reason: 'nginx stream module missing', install: nginx.PASSTHROUGH_INSTALL } },
      { name: 'http-proxy', available: true },
    ];
    const rows = report.peersOf({ peers }, { name: 'passthrough-small', backendKind: 'tls', peers: ['haproxy', 'nginx'] });
    expect(rows.map((p) => [p.name, p.available, p.install ?? null])).toEqual([
      ['haproxy', true, null],
      ['nginx', false, 'apt-get update && apt-get install -y nginx libnginx-mod-stream'],
    ]);
    // HTTP scenarios (and results files from before passthrough) see the peers as they were.
    expect(report.peersOf({ peers }, { name: 'sticky-hit' }).map((p) => [p.name, p.available])).toEqual([
      ['haproxy', true],
      ['nginx', true],
      ['http-proxy', true],
    ]);
  });

  it('tether: --passthrough on the port and no HTTP listener, one pool of one backend and one --sni per name, --workers W', () => {
    const args = tether.passthroughArgs({
      tlsBackends: [{ name: 'app1', port: 41001 }, { name: 'app2', port: 41002 }],
      routes: ROUTES,
      workers: 3,
      port: 41000,
      adminPort: 41004,
      repoRoot: '/repo',
    });
    expect(args).toEqual([
      '--single-threaded-gc',
      '/repo/dist/cli.js',
      '--listen', 'off',
      '--admin', '127.0.0.1:41004',
      '--backend', 'app1/app1=127.0.0.1:41001', '--sticky', 'app1/none',
      '--backend', 'app2/app2=127.0.0.1:41002', '--sticky', 'app2/none',
      '--passthrough', '127.0.0.1:41000',
      '--sni', 'app1.bench.test=app1',
      '--sni', 'app2.bench.test=app2',
      '--workers', '3',
    ]);
  });

  it('nginx: finds the stream module, or says it is missing with the command that installs it', () => {
    const debian = '--modules-path=/usr/lib/nginx/modules --with-stream=dynamic --with-stream_ssl_preread_module';
    expect(nginx.streamModule(debian, { exists: () => true })).toEqual({ ok: true, loadModule: '/usr/lib/nginx/modules/ngx_stream_module.so' });
    const missing = nginx.streamModule(debian, { exists: () => false });
    expect(missing.ok).toBe(false);
    expect(missing.reason).toMatch(/stream module missing.*libnginx-mod-stream/);
    expect(nginx.streamModule('--with-stream --with-stream_ssl_preread_module', { exists: () => false })).toEqual({ ok: true, loadModule: null });
    expect(nginx.streamModule('--with-http_ssl_module', { exists: () => true }).ok).toBe(false);
    expect(nginx.PASSTHROUGH_INSTALL).toMatch(/apt-get install -y nginx libnginx-mod-stream$/);
    if (!nginxBinary) expect(nginx.available({ passthrough: true }).install).toBe(nginx.PASSTHROUGH_INSTALL);
  });

  const configOptions = (prefix?: string): PassthroughOptions => ({
    tlsBackends: [{ name: 'app1', port: 41001 }, { name: 'app2', port: 41002 }],
    routes: ROUTES,
    workers: 2,
    port: 41000,
    connections: 50,
    ...(prefix ? { prefix, loadModule: nginxStream.loadModule ?? null } : {}),
  });

  it.skipIf(!haproxyBinary)(`haproxy -c accepts the passthrough configuration${haproxyBinary ? '' : ' (skipped: haproxy not installed)'}`, () => {
    const text = haproxy.passthroughConfig(configOptions());
    expect(text).toMatch(/mode tcp/);
    expect(text).toMatch(/tcp-request inspect-delay 5s/);
    expect(text).toMatch(/tcp-request content accept if \{ req\.ssl_hello_type 1 \}/);
    expect(text).toMatch(/use_backend app1 if \{ req\.ssl_sni -i app1\.bench\.test \}/);
    expect(text).toMatch(/use_backend app2 if \{ req\.ssl_sni -i app2\.bench\.test \}/);
    expect(text).toMatch(/nbthread 2/);
    expect(text).not.toMatch(/default_backend/);
    const path = join(work, 'haproxy-passthrough.cfg');
    writeFileSync(path, text);
    const r = spawnSync(haproxyBinary!, ['-c', '-f', path], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  });

  it.skipIf(nginxSkip !== null)(`nginx -t accepts the passthrough configuration${nginxSkip ? ` (skipped: ${nginxSkip})` : ''}`, () => {
    const prefix = join(work, 'nginx-t');
    mkdirSync(prefix, { recursive: true });
    const text = nginx.passthroughConfig(configOptions(prefix));
    expect(text).toMatch(/ssl_preread on;/);
    expect(text).toMatch(/map \$ssl_preread_server_name \$sni_upstream/);
    expect(text).toMatch(/app1\.bench\.test app1;/);
    expect(text).toMatch(/worker_processes 2;/);
    if (nginxStream.loadModule) expect(text).toContain(`load_module ${nginxStream.loadModule};`);
    const path = join(prefix, 'nginx.conf');
    writeFileSync(path, text);
    const r = spawnSync(nginxBinary!, ['-t', '-p', prefix, '-c', path], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  });

  // Each passthrough peer started for real: prepare's route check, then both routes under a
  // small bounded load, every answer from the right backend through verified TLS.
  const live: [string, PeerModule, string | null][] = [
    ['tether', tether, null],
    ['haproxy', haproxy, haproxyBinary ? null : 'haproxy not installed'],
    ['nginx', nginx, nginxSkip],
  ];
  for (const [peerName, peer, skip] of live) {
    it.skipIf(skip !== null)(`${peerName} routes both names to their backends through TLS passthrough${skip ? ` (skipped: ${skip})` : ''}`, async () => {
      const dir = join(work, `live-${peerName}`);
      mkdirSync(dir, { recursive: true });
      const port = await processes.freePort();
      const tlsBackends = ROUTES.map((r) => ({ name: r.backend, port: backends[r.backend]!.port }));
      const started = await peer.startPassthrough!({ tlsBackends, routes: ROUTES, ca: pki.ca, workers: 1, connections: 8, port, dir, repoRoot });
      try {
        await started.waitReady(15_000);
        const passthrough: Passthrough = { host: started.host, port: started.port, ca: pki.ca, routes: ROUTES };
        const checks = await common.checkRoutes({ passthrough, peer: { name: peerName } });
        expect(checks.routes).toEqual({ 'app1.bench.test': 'app1', 'app2.bench.test': 'app2' });
        expect(checks.unknownName).toMatch(/^refused/);
        const r = await small.runSmall({ passthrough, threads: 1, clients: 4, durationS: 60, maxRequestsPerClient: 10 });
        expect(r.errors).toEqual({});
        expect(r.counters['answers.app1']).toBe(20);
        expect(r.counters['answers.app2']).toBe(20);
      } finally {
        await started.handle.kill(2000);
      }
    });
  }
});
