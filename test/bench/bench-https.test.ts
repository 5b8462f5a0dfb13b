// The HTTPS bench scenarios (https-sticky-hit, https-handshakes) and what they stand on: the
// run's certificate bundle, the handshake terms every peer is given (checked against Tether's
// own), which peers run there, the HAProxy and nginx HTTPS configurations checked by the
// binaries themselves, the tls-floor peer's proxying (forwarded headers, the Secure cookie,
// 1-byte writes, pipelined heads, bodies refused, Connection: close), prepare()'s failures (no
// cookie, a cookie without Secure, a cookie that reaches another backend, a certificate that does
// not verify), the handshake clients' failures (a wrong backend, a resumed session, a server
// that never finishes a handshake: counted and bounded, none hangs), and each HTTPS peer started
// for real on two real bench backends: prepare's checks, a bounded burst of full handshakes,
// and one second of wrk over https:// (skipped, with the reason, when a binary is missing).
// The bench is plain JS, so its modules are imported by URL and typed here by hand.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCertificates } from '../../src/tls/certificates.js';
import { loadBench, processes, startReadyProcess, type Handle } from '../helpers/bench.js';

interface Pki {
  ca: string;
  leaf(name: string): { keyFile: string; certFile: string };
  bundle(name: string): string;
}
interface HttpsSetting {
  pemFile: string;
  certFile: string;
  keyFile: string;
  ca: string;
  serverName: string;
}
interface HttpsContext {
  host: string;
  port: number;
  ca: string;
  serverName: string;
}
interface Backend {
  name: string;
  port: number;
}
interface Started {
  handle: Handle;
  url: string;
  waitReady(deadlineMs: number): Promise<unknown>;
  setup: { command: string; config?: string };
}
interface StartOptions {
  backends: Backend[];
  workers: number;
  connections: number;
  port: number;
  dir: string;
  repoRoot: string;
  https: HttpsSetting;
}
interface PeerModule {
  name: string;
  cookieName: string;
  scenarios?: string[];
  startHttps?(o: StartOptions): Promise<Started> | Started;
  available(o: { repoRoot: string; https?: boolean }): { ok: boolean; reason?: string };
}
interface Pin {
  cookie: string;
  backend: string;
}
interface Prepared {
  cookies: string[];
  pins: Pin[];
  checks: Record<string, unknown>;
}
interface LoadResult {
  requests: number;
  errorCount: number;
  errors: Record<string, number>;
  counters: Record<string, number>;
  threadsLeft: number;
  overran: number;
  rps: number;
}
interface ReportPeer {
  name: string;
  available: boolean;
  reason?: string;
  install?: string;
  https?: { available: boolean; version?: string; reason?: string; install?: string };
}

const { makePki } = await loadBench<{ makePki(dir: string, names: string[]): Pki }>('load/pki.js');
const terms = await loadBench<{ TLS_CIPHERS: string; TLS_CURVES: string; TLS_MIN_VERSION: string; TLS_MAX_VERSION: string }>('load/peers/tls-terms.js');
const common = await loadBench<{ prepareHttps(o: { url: string; peer: { name: string; cookieName: string }; backendNames: string[]; https: HttpsContext }): Promise<Prepared> }>(
  'load/scenarios/https-common.js',
);
const handshakes = await loadBench<{
  frontend: string;
  runHandshakes(o: { https: HttpsContext; pins: Pin[]; threads: number; clients: number; durationS: number; connectTimeoutMs?: number; responseTimeoutMs?: number; maxConnectionsPerClient?: number }): Promise<LoadResult>;
  handshakeRecord(r: LoadResult & Record<string, unknown>, pins: Pin[], o?: { genCpuSeconds?: number }): { requests: number; extra: Record<string, number> };
}>('load/scenarios/https-handshakes.js');
const wrk = await loadBench<{
  writeWrkScript(dir: string, cookies: string[], tag: string): string;
  runWrk(o: { url: string; scriptPath: string; threads: number; connections: number; durationS: number }): Promise<{ requests: number; errorCount: number }>;
}>('load/wrk.js');
const scenarioIndex = await loadBench<{ scenarios: { name: string; frontend?: string; backendKind?: string; measure?: unknown }[] }>('load/scenarios/index.js');
const peerIndex = await loadBench<{ peers: PeerModule[]; runsIn(peer: PeerModule, scenario: { name: string; frontend?: string; backendKind?: string }): boolean }>('load/peers/index.js');
const haproxy = await loadBench<PeerModule & { config(o: Record<string, unknown>): string }>('load/peers/haproxy.js');
const nginx = await loadBench<PeerModule & { config(o: Record<string, unknown>): string }>('load/peers/nginx.js');
const tether = await loadBench<PeerModule>('load/peers/tether.js');
const tlsFloor = await loadBench<PeerModule>('load/peers/tls-floor.js');
const report = await loadBench<{ peersOf(results: { peers: ReportPeer[] }, scenario: { name: string; frontend?: string; peers?: string[] }): ReportPeer[] }>('report.js');
const html = await loadBench<{ renderHtml(results: unknown): string }>('report-html.js');

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const backendPath = fileURLToPath(new URL('../../bench/load/backend.js', import.meta.url));
const which = (binary: string): string | null => {
  const r = spawnSync('sh', ['-c', `command -v ${binary} || { test -x /usr/sbin/${binary} && echo /usr/sbin/${binary}; }`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
};
const haproxyBinary = which('haproxy');
const nginxBinary = which('nginx');
const wrkBinary = which('wrk');

const NAME = 'https.bench.test';
const HTTPS_HOSTS = ['tether', 'haproxy', 'nginx', 'tls-floor'];
const work = mkdtempSync(join(os.tmpdir(), 'bench-https-'));
const cleanups: (() => Promise<unknown> | void)[] = [];
let pki: Pki;
let otherPki: Pki;
let setting: HttpsSetting;
const backends: Backend[] = [];

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

/** An HTTPS server with the run's certificate answering `answer(cookie header)` → { body, setCookie? }. */
function fakePeer(answer: (cookie: string) => { body: string; setCookie?: string }): Promise<number> {
  const { keyFile, certFile } = pki.leaf(NAME);
  const server = https.createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, (req, res) => {
    const { body, setCookie } = answer(req.headers.cookie ?? '');
    if (setCookie) res.setHeader('Set-Cookie', setCookie);
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(body);
  });
  return listen(server);
}

const contextFor = (port: number, ca = pki.ca): HttpsContext => ({ host: '127.0.0.1', port, ca, serverName: NAME });
const urlOf = (port: number) => `https://127.0.0.1:${port}/`;

/** Starts `peer` with startHttps on the two bench backends; stopped after the file. */
async function startPeer(peer: PeerModule, tag: string, workers = 1, over: Backend[] = backends): Promise<Started> {
  const dir = join(work, `peer-${tag}`);
  mkdirSync(dir, { recursive: true });
  const port = await processes.freePort();
  const started = await peer.startHttps!({ backends: over, workers, connections: 16, port, dir, repoRoot, https: setting });
  cleanups.push(() => started.handle.kill(2000));
  await started.waitReady(15_000);
  return started;
}

beforeAll(async () => {
  pki = makePki(join(work, 'pki'), [NAME]);
  otherPki = makePki(join(work, 'other-pki'), [NAME]);
  setting = { ...pki.leaf(NAME), pemFile: pki.bundle(NAME), ca: pki.ca, serverName: NAME };
  for (const name of ['app1', 'app2']) {
    const { handle, port } = await startReadyProcess(`backend ${name}`, [backendPath, name]);
    cleanups.push(() => handle.kill(2000));
    backends.push({ name, port });
  }
});

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  rmSync(work, { recursive: true, force: true });
});

describe('the run’s certificate and the handshake terms', () => {
  it('bundles the ECDSA P-256 leaf for https.bench.test and then its key, readable by its owner only', () => {
    const text = readFileSync(setting.pemFile, 'utf8');
    expect(text.indexOf('BEGIN CERTIFICATE')).toBeLessThan(text.indexOf('BEGIN PRIVATE KEY'));
    expect(text.match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
    expect(statSync(setting.pemFile).mode & 0o077).toBe(0);
    const leaf = new X509Certificate(readFileSync(setting.certFile));
    expect(leaf.subjectAltName).toBe(`DNS:${NAME}`);
    expect(leaf.publicKey.asymmetricKeyDetails).toEqual({ namedCurve: 'prime256v1' });
    expect(leaf.checkIssued(new X509Certificate(pki.ca))).toBe(true);
    // node:tls takes it as one file, as Tether's --cert and HAProxy's crt do.
    expect(() => tls.createSecureContext({ cert: text, key: text })).not.toThrow();
  });

  it('gives every peer Tether’s own terms (versions, TLS 1.2 suites, curves)', () => {
    const tether = loadCertificates([setting.pemFile]).contextTerms;
    expect(terms.TLS_CIPHERS).toBe(tether.ciphers);
    expect(terms.TLS_CURVES).toBe(tether.ecdhCurve);
    expect(terms.TLS_MIN_VERSION).toBe(tether.minVersion);
    expect(terms.TLS_MAX_VERSION).toBe(tether.maxVersion);
  });
});

describe('HTTPS scenarios and peers', () => {
  const names = ['https-sticky-hit', 'https-handshakes'];

  it('registers both as HTTPS scenarios: wrk drives the first, the Node clients the second', () => {
    const registered = scenarioIndex.scenarios.filter((s) => names.includes(s.name));
    expect(registered.map((s) => s.name)).toEqual(names);
    for (const s of registered) {
      expect(s.frontend).toBe('https');
      expect(s.backendKind).toBeUndefined();
    }
    expect(registered[0]!.measure).toBeUndefined();
    expect(typeof registered[1]!.measure).toBe('function');
  });

  it('runs the peers that terminate TLS, and tls-floor nowhere else', () => {
    for (const name of names) {
      const runs = peerIndex.peers.filter((p) => peerIndex.runsIn(p, { name, frontend: 'https' })).map((p) => p.name);
      expect(runs).toEqual([...HTTPS_HOSTS, 'tether-baseline']);
    }
    const floor = peerIndex.peers.find((p) => p.name === 'tls-floor')!;
    expect(peerIndex.runsIn(floor, { name: 'sticky-hit' })).toBe(false);
    expect(peerIndex.runsIn(floor, { name: 'first-visit' })).toBe(false);
    expect(peerIndex.runsIn(floor, { name: 'passthrough-handshakes', backendKind: 'tls' })).toBe(false);
  });

  it('reports each peer’s HTTPS availability in the HTTPS tables only', () => {
    const peers: ReportPeer[] = [
      { name: 'haproxy', available: true, https: { available: true, version: 'HAProxy 2.6' } },
      { name: 'nginx', available: true, https: { available: false, reason: 'nginx built without ngx_http_ssl_module', install: 'apt-get install -y nginx' } },
    ];
    expect(report.peersOf({ peers }, { name: 'https-sticky-hit', frontend: 'https' }).map((p) => [p.name, p.available])).toEqual([
      ['haproxy', true],
      ['nginx', false],
    ]);
    expect(report.peersOf({ peers }, { name: 'sticky-hit' }).map((p) => p.available)).toEqual([true, true]);
    // The HTML report lists each peer's HTTPS status and setup, escaped.
    const page = html.renderHtml({
      version: 1,
      machine: {},
      options: { duration: 1, warmup: 0, connections: 4, threads: 1, workers: 1, repeat: 1 },
      peers: [
        { ...peers[0], describe: 'HAProxy', version: 'HAProxy 2.6', https: { ...peers[0]!.https, setup: { command: 'haproxy -f <cfg>', config: 'bind … ssl crt x.pem' } } },
        { ...peers[1], describe: 'nginx', version: 'nginx 1.22' },
      ],
      scenarios: [{ name: 'https-sticky-hit', description: 'HTTPS', frontend: 'https', peers: ['haproxy', 'nginx'] }],
      runs: [],
      complete: true,
    });
    expect(page).toContain('https setup');
    expect(page).toContain('haproxy -f &#60;cfg&#62;');
    expect(page).toContain('nginx built without ngx_http_ssl_module');
  });

  const configOptions = (prefix: string, https: HttpsSetting | null) => ({
    backends: [{ name: 'app1', port: 41001 }, { name: 'app2', port: 41002 }],
    workers: 2,
    port: 41000,
    connections: 50,
    prefix,
    ...(https ? { https } : {}),
  });

  it.skipIf(!haproxyBinary)(`haproxy -c accepts the HTTPS configuration${haproxyBinary ? '' : ' (skipped: haproxy not installed)'}`, () => {
    const text = haproxy.config(configOptions('', setting));
    expect(text).toContain(`bind 127.0.0.1:41000 ssl crt ${setting.pemFile} alpn http/1.1 ssl-min-ver TLSv1.2 ciphers ${terms.TLS_CIPHERS} curves ${terms.TLS_CURVES}`);
    expect(text).toMatch(/cookie SRV insert indirect nocache secure\n/);
    expect(text).toMatch(/X-Forwarded-Proto https/);
    // Plain HTTP is as it was.
    const plain = haproxy.config(configOptions('', null));
    expect(plain).toMatch(/bind 127\.0\.0\.1:41000\n/);
    expect(plain).toMatch(/cookie SRV insert indirect nocache\n/);
    const path = join(work, 'haproxy-https.cfg');
    writeFileSync(path, text);
    const r = spawnSync(haproxyBinary!, ['-c', '-f', path], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  });

  it.skipIf(!nginxBinary)(`nginx -t accepts the HTTPS configuration${nginxBinary ? '' : ' (skipped: nginx not installed)'}`, () => {
    const prefix = join(work, 'nginx-t');
    mkdirSync(join(prefix, 'tmp'), { recursive: true });
    const text = nginx.config(configOptions(prefix, setting));
    expect(text).toMatch(/listen 127\.0\.0\.1:41000 ssl;/);
    expect(text).toContain(`ssl_certificate ${setting.certFile};`);
    expect(text).toContain(`ssl_certificate_key ${setting.keyFile};`);
    expect(text).toContain(`ssl_ecdh_curve ${terms.TLS_CURVES};`);
    expect(text).toContain('rr "SRV=$chosen_backend; Path=/; Secure";');
    expect(nginx.config(configOptions(prefix, null))).toContain('rr "SRV=$chosen_backend; Path=/";');
    const path = join(prefix, 'nginx.conf');
    writeFileSync(path, text);
    const r = spawnSync(nginxBinary!, ['-t', '-p', prefix, '-c', path], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  });
});

describe('prepare() and the handshake clients fail what they must', () => {
  /** A fake peer with cookie stickiness done right or wrong (`secure`, `pin`). */
  const stickyServer = ({ secure = true, pin = true }: { secure?: boolean; pin?: boolean } = {}) => {
    let next = 0;
    return fakePeer((cookie) => {
      const pinned = /FLOOR=(app[12])/.exec(cookie)?.[1];
      if (pin && pinned) return { body: pinned };
      const body = next++ % 2 === 0 ? 'app1' : 'app2';
      return { body, setCookie: `FLOOR=${body}; Path=/${secure ? '; Secure' : ''}` };
    });
  };
  const peer = { name: 'fake', cookieName: 'FLOOR' };
  const backendNames = ['app1', 'app2'];

  it('passes a peer that does it right, and names what was negotiated', async () => {
    const port = await stickyServer();
    const prepared = await common.prepareHttps({ url: urlOf(port), peer, backendNames, https: contextFor(port) });
    expect(prepared.pins.map((p) => `${p.cookie}→${p.backend}`).sort()).toEqual(['FLOOR=app1→app1', 'FLOOR=app2→app2']);
    expect(prepared.checks).toMatchObject({ certificateVerifiedFor: NAME, cookieAttributes: 'path, secure', responsesReissuingCookie: 0 });
    expect(prepared.checks.tls).toMatch(/^TLSv1\.[23] \S+ \S+$/);
  });

  it('fails on no cookie, a cookie without Secure, a cookie that does not pin, and a certificate that does not verify', async () => {
    const none = await fakePeer(() => ({ body: 'app1' }));
    await expect(common.prepareHttps({ url: urlOf(none), peer, backendNames, https: contextFor(none) })).rejects.toThrow(/fake: expected a FLOOR cookie/);
    const insecure = await stickyServer({ secure: false });
    await expect(common.prepareHttps({ url: urlOf(insecure), peer, backendNames, https: contextFor(insecure) })).rejects.toThrow(/FLOOR cookie to be Secure/);
    const loose = await stickyServer({ pin: false });
    await expect(common.prepareHttps({ url: urlOf(loose), peer, backendNames, https: contextFor(loose) })).rejects.toThrow(/stickiness broken/);
    const good = await stickyServer();
    await expect(common.prepareHttps({ url: urlOf(good), peer, backendNames, https: contextFor(good, otherPki.ca) })).rejects.toThrow(/certificate|signature/i);
  });

  it('counts every full handshake and fails the run when an answer comes from another backend than its cookie’s', async () => {
    const port = await stickyServer();
    const pins = [
      { cookie: 'FLOOR=app1', backend: 'app1' },
      { cookie: 'FLOOR=app2', backend: 'app2' },
    ];
    const r = await handshakes.runHandshakes({ https: contextFor(port), pins, threads: 2, clients: 4, durationS: 60, maxConnectionsPerClient: 5 });
    expect(r.errors).toEqual({});
    expect(r.requests).toBe(20);
    expect(r.counters).toEqual({ 'answers.app1': 10, 'answers.app2': 10 });
    expect(r.threadsLeft).toBe(0);
    const record = handshakes.handshakeRecord({ ...r, durationS: 1, p50Ms: 1, p99Ms: 1 }, pins, { genCpuSeconds: 0.02 });
    expect(record.extra).toMatchObject({ app1: 10, app2: 10, genCpuMsPer1k: 1000, reissuedCookies: 0 });

    const swapped = pins.map((p, i) => ({ ...p, backend: pins[1 - i]!.backend }));
    const wrong = await handshakes.runHandshakes({ https: contextFor(port), pins: swapped, threads: 1, clients: 2, durationS: 60, maxConnectionsPerClient: 2 });
    expect(wrong.errors).toEqual({ wrongBackend: 4 });
    expect(() => handshakes.handshakeRecord({ ...wrong, durationS: 1, p50Ms: 1, p99Ms: 1 }, swapped)).toThrow(/another backend than the one it pins/);
  });

  it('fails the run on a resumed session, and never hangs on a server that does not finish its handshake', async () => {
    const pins = [{ cookie: 'FLOOR=app1', backend: 'app1' }];
    const resumed = { requests: 4, errorCount: 0, errors: {}, counters: { 'answers.app1': 4, resumed: 1 }, threadsLeft: 0, overran: 0, rps: 4, durationS: 1, p50Ms: 1, p99Ms: 1 };
    expect(() => handshakes.handshakeRecord(resumed, pins)).toThrow(/1 handshake\(s\) resumed a session/);
    const silent = await listen(net.createServer((socket) => socket.on('error', () => {})));
    const r = await handshakes.runHandshakes({ https: contextFor(silent), pins, threads: 1, clients: 2, durationS: 60, connectTimeoutMs: 200, maxConnectionsPerClient: 2 });
    expect(r.errors).toEqual({ handshake: 4 });
    expect(r.overran).toBe(0);
    expect(() => handshakes.handshakeRecord({ ...r, durationS: 1, p50Ms: 0, p99Ms: 0 }, pins)).toThrow(/no request completed/);
  });
});

describe('tls-floor bench peer', () => {
  const skip = tlsFloor.available({ repoRoot }).ok ? null : tlsFloor.available({ repoRoot }).reason;
  let echoPort = 0;
  let seen: http.IncomingHttpHeaders[] = [];
  let floor: Started;

  /** One TLS connection to the floor; `writes` go out one by one; resolves everything read until it closes or `quietMs` passes. */
  async function exchange(port: number, writes: Buffer[], { quietMs = 300 } = {}): Promise<{ text: string; closed: boolean }> {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: NAME, ca: pki.ca });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    let text = '';
    let closed = false;
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve) => {
      const quiet = () => {
        clearTimeout(timer);
        timer = setTimeout(resolve, quietMs);
      };
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        quiet();
      });
      socket.on('close', () => {
        closed = true;
        clearTimeout(timer);
        resolve();
      });
      socket.on('error', () => {});
      quiet();
    });
    for (const w of writes) {
      await new Promise<void>((resolve) => socket.write(w, () => resolve()));
    }
    await done;
    socket.destroy();
    return { text, closed };
  }
  const get = (extra = '') => Buffer.from(`GET /x?y=1 HTTP/1.1\r\nHost: ${NAME}\r\nX-Forwarded-For: 6.6.6.6\r\n${extra}\r\n`, 'latin1');

  beforeAll(async () => {
    if (skip) return;
    echoPort = await listen(
      http.createServer((req, res) => {
        seen.push(req.headers);
        const body = JSON.stringify({ url: req.url });
        res.setHeader('Content-Length', Buffer.byteLength(body));
        res.end(body);
      }),
    );
    floor = await startPeer(tlsFloor, 'floor-echo', 1, [{ name: 'echo', port: echoPort }]);
  });

  it.skipIf(skip !== null)(`forwards over TLS with X-Forwarded-* and a Secure cookie, on a head sent 1 byte at a time${skip ? ` (skipped: ${skip})` : ''}`, async () => {
    seen = [];
    const port = Number(new URL(floor.url).port);
    const head = get();
    const { text } = await exchange(port, [...head].map((b) => Buffer.from([b])));
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text).toMatch(/\r\nset-cookie: FLOOR=echo; Path=\/; Secure\r\n/);
    expect(text.endsWith('{"url":"/x?y=1"}')).toBe(true);
    expect(seen).toHaveLength(1);
    // The floor replaces nothing a client sent: it appends its own, as the uws-floor does.
    expect(seen[0]!['x-forwarded-proto']).toBe('https');
    expect(seen[0]!['x-forwarded-for']).toBe('6.6.6.6, 127.0.0.1');
    expect(seen[0]!['x-forwarded-host']).toBe(NAME);
  });

  it.skipIf(skip !== null)('answers pipelined requests in order, keeps the connection, and closes after Connection: close', async () => {
    const port = Number(new URL(floor.url).port);
    const kept = await exchange(port, [Buffer.concat([get('Cookie: FLOOR=echo\r\n'), get('Cookie: FLOOR=echo\r\n')])]);
    expect(kept.text.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
    expect(kept.text).not.toMatch(/set-cookie/);
    expect(kept.closed).toBe(false);
    const closing = await exchange(port, [get('Connection: close\r\n')], { quietMs: 5000 });
    expect(closing.text).toMatch(/\r\nconnection: close\r\n/);
    expect(closing.closed).toBe(true);
  });

  it.skipIf(skip !== null)('refuses a request body with 501 instead of forwarding half a request', async () => {
    const port = Number(new URL(floor.url).port);
    const { text, closed } = await exchange(port, [Buffer.from(`POST / HTTP/1.1\r\nHost: ${NAME}\r\nContent-Length: 5\r\n\r\nhello`)], { quietMs: 5000 });
    expect(text).toMatch(/^HTTP\/1\.1 501 /);
    expect(closed).toBe(true);
  });
});

// Each HTTPS peer started for real: prepare's checks over verified TLS, a bounded burst of full
// handshakes through it (none resumed, every answer from its cookie's backend), and one second
// of wrk over https:// with the cookies prepare() got.
describe('HTTPS peers, live', () => {
  const live: [string, PeerModule, string | null][] = [
    ['tether', tether, tether.available({ repoRoot }).ok ? null : 'dist/cli.js not built'],
    ['haproxy', haproxy, haproxyBinary ? null : 'haproxy not installed'],
    ['nginx', nginx, nginxBinary ? null : 'nginx not installed'],
    ['tls-floor', tlsFloor, tlsFloor.available({ repoRoot }).reason ?? null],
  ];
  it('covers every peer that runs in the HTTPS scenarios (but the opt-in baseline)', () => {
    expect(live.map(([name]) => name)).toEqual(HTTPS_HOSTS);
  });
  for (const [peerName, peer, skip] of live) {
    it.skipIf(skip !== null)(`${peerName}: prepare’s checks, full handshakes and wrk through its HTTPS listener${skip ? ` (skipped: ${skip})` : ''}`, async () => {
      const started = await startPeer(peer, peerName);
      expect(started.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      const context = contextFor(Number(new URL(started.url).port));
      const prepared = await common.prepareHttps({ url: started.url, peer, backendNames: ['app1', 'app2'], https: context });
      expect(prepared.cookies.every((c) => c.startsWith(`${peer.cookieName}=`))).toBe(true);
      expect(prepared.pins.map((p) => p.backend).sort()).toEqual(['app1', 'app2']);
      expect(prepared.checks).toMatchObject({ responsesReissuingCookie: 0, tls: 'TLSv1.3 TLS_AES_256_GCM_SHA384 X25519' });
      expect(String(prepared.checks.cookieAttributes).split(', ')).toContain('secure');

      const r = await handshakes.runHandshakes({ https: context, pins: prepared.pins, threads: 1, clients: 4, durationS: 60, maxConnectionsPerClient: 5 });
      expect(r.errors).toEqual({});
      expect(r.counters['answers.app1']).toBe(10);
      expect(r.counters['answers.app2']).toBe(10);
      expect(r.counters.resumed).toBeUndefined();
      expect(handshakes.handshakeRecord({ ...r, durationS: 1, p50Ms: 1, p99Ms: 1 }, prepared.pins).requests).toBe(20);

      if (wrkBinary) {
        const dir = join(work, `wrk-${peerName}`);
        mkdirSync(dir, { recursive: true });
        const scriptPath = wrk.writeWrkScript(dir, prepared.cookies, 'https-sticky-hit');
        const load = await wrk.runWrk({ url: started.url, scriptPath, threads: 2, connections: 4, durationS: 1 });
        expect(load.errorCount).toBe(0);
        expect(load.requests).toBeGreaterThan(0);
      }
    });
  }
});
