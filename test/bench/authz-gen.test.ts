// authz-gen, the C load generator of the authz-handshakes bench (bench/load/authz-gen/): built
// with the machine's compiler and OpenSSL, then run against a stand-in balancer (node:http on
// loopback) that checks its proofs with node:crypto and seals its answers with the project's own
// protocol code (src/authz/protocol.ts, the oracle). A right answer is counted, and each way of
// being wrong is caught under its own name: a challenge that does not echo nT, a box that does
// not open, a box that opens but names another nB, chunked framing, a closed connection, silence
// past the deadline. Bad arguments and an empty key file are refused with a message. The run
// against real Tether is in bench-authz.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHmac, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { loadBench } from '../helpers/bench.js';
import { proofInput, seal, terminalBoxInfo } from '../../src/authz/protocol.js';

interface LoadResult {
  requests: number;
  rps: number;
  p50Ms: number | null;
  errors: Record<string, number>;
  errorCount: number;
  counters: Record<string, number>;
  cpuSeconds: number;
}
const gen = await loadBench<{
  buildAuthzGen(): Promise<{ ok: boolean; path?: string; reason?: string }>;
  runAuthzGen(o: { binary?: string; host: string; port: number; path: string; keysFile: string; connections: number; threads?: number; durationS: number; maxPerConnection?: number; openEvery?: number; requestTimeoutMs?: number }): Promise<LoadResult>;
}>('load/authz-gen/index.js');

type Mode = 'good' | 'wrong-nT' | 'bad-box' | 'other-nB' | 'chunked' | 'close' | 'silent' | 'slow-hello' | 'slow-proof';
/** How long the slow modes hold their answer: past the end of a SLOW_RUN_S run. */
const SLOW_MS = 1500;
const SLOW_RUN_S = 1;

const work = mkdtempSync(join(os.tmpdir(), 'authz-gen-'));
const key = randomBytes(32);
const keysFile = join(work, 'keys');
writeFileSync(keysFile, `# a comment, then one terminal\nkiosk-7 ${key.toString('hex')}\n`);
let binary = '';
let server: http.Server;
let port = 0;
let mode: Mode = 'good';
/** Proofs the stand-in checked: right and wrong. */
const proofs = { right: 0, wrong: 0 };

const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

function answer(res: http.ServerResponse, body: object) {
  const text = JSON.stringify(body);
  if (mode === 'chunked') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(text);
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

beforeAll(async () => {
  const built = await gen.buildAuthzGen();
  expect(built.reason).toBeUndefined();
  binary = built.path!;
  server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      if (mode === 'close') {
        req.socket.destroy();
        return;
      }
      if (mode === 'silent') return; // the client's deadline ends it
      const body = JSON.parse(raw) as { user: string; nT: string; nB?: string; proof?: string };
      const hold = (mode === 'slow-hello' && req.url === '/authz/hello') || (mode === 'slow-proof' && req.url === '/authz/proof');
      if (hold) setTimeout(() => reply(req.url!, body, res), SLOW_MS);
      else reply(req.url!, body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

/** The stand-in balancer's answers: hello echoes (or, wrong-nT, does not); proof checks the HMAC, then seals. */
function reply(url: string, body: { user: string; nT: string; nB?: string; proof?: string }, res: http.ServerResponse) {
  if (url === '/authz/hello') {
    const nT = mode === 'wrong-nT' ? b64u(randomBytes(16)) : body.nT;
    answer(res, { user: body.user, nT, nB: b64u(randomBytes(56)) });
    return;
  }
  const nT = Buffer.from(body.nT, 'base64url');
  const nB = Buffer.from(body.nB!, 'base64url');
  const expected = createHmac('sha256', key).update(proofInput(body.user, nT, nB)).digest();
  if (!expected.equals(Buffer.from(body.proof!, 'base64url'))) {
    proofs.wrong += 1;
    res.writeHead(403, { 'content-length': 2 }).end('no');
    return;
  }
  proofs.right += 1;
  const f = randomBytes(16);
  const grant = { user: body.user, nT, nB: mode === 'other-nB' ? randomBytes(56) : nB, code: randomBytes(32), server: { id: 's1', pool: 'p', address: '127.0.0.1', port: 1 }, expiresAt: Date.now() + 30_000 };
  const box = mode === 'bad-box' ? randomBytes(90) : seal(key, f, terminalBoxInfo(), grant);
  answer(res, { f: b64u(f), box: b64u(box) });
}

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  rmSync(work, { recursive: true, force: true });
});

const run = (m: Mode, o: { perConnection?: number; openEvery?: number; requestTimeoutMs?: number; durationS?: number } = {}) => {
  mode = m;
  return gen.runAuthzGen({ binary, host: '127.0.0.1', port, path: '/authz', keysFile, connections: 2, threads: 1, durationS: o.durationS ?? 20, maxPerConnection: o.perConnection ?? 3, openEvery: o.openEvery ?? 1, ...(o.requestTimeoutMs ? { requestTimeoutMs: o.requestTimeoutMs } : {}) });
};

describe('authz-gen against a stand-in balancer', () => {
  it('completes handshakes whose proofs check out and whose boxes open to its own user, nT and nB', async () => {
    const before = proofs.right;
    const r = await run('good');
    expect(r.errors).toEqual({});
    expect(r.requests).toBe(6);
    expect(r.counters).toEqual({ granted: 6, opened: 6 });
    expect(proofs.right - before).toBe(6);
    expect(proofs.wrong).toBe(0);
    expect(r.p50Ms).toBeGreaterThan(0);
    expect(r.cpuSeconds).toBeGreaterThan(0);
  });

  it('opens the first answer of every OPEN_EVERY per connection, and only those', async () => {
    const r = await run('good', { perConnection: 5, openEvery: 2 });
    // Answers 1, 3 and 5 of each of the two connections.
    expect(r.counters).toEqual({ granted: 10, opened: 6 });
  });

  it('a challenge that does not echo its nT is badChallenge', async () => {
    const r = await run('wrong-nT');
    expect(r.requests).toBe(0);
    expect(r.errors).toEqual({ badChallenge: 6 });
  });

  it('a box that does not open is badGrant, though the proof was granted', async () => {
    const r = await run('bad-box');
    expect(r.requests).toBe(0);
    expect(r.errors).toEqual({ badGrant: 6 });
    expect(r.counters.granted).toBe(6);
  });

  it('a box that opens but names another nB is badGrant', async () => {
    const r = await run('other-nB');
    expect(r.errors).toEqual({ badGrant: 6 });
  });

  it('an answer without Content-Length (chunked) is a parse error, a closed connection is closed', async () => {
    expect((await run('chunked', { perConnection: 1 })).errors).toEqual({ parse: 2 });
    expect((await run('close', { perConnection: 1 })).errors).toEqual({ closed: 2 });
  });

  it('an answer that never comes is a timeout at the request deadline', async () => {
    const r = await run('silent', { perConnection: 1, requestTimeoutMs: 300 });
    expect(r.errors).toEqual({ timeout: 2 });
  });

  it('at the end of the run, waits for proofs already sent (their grants were issued) and counts them', async () => {
    const before = proofs.right;
    const r = await run('slow-proof', { durationS: SLOW_RUN_S, perConnection: 0 });
    expect(proofs.right - before).toBe(2);
    expect(r.errors).toEqual({});
    expect(r.requests).toBe(2);
    expect(r.counters.granted).toBe(2);
  });

  it('at the end of the run, sends no proof for a challenge that arrives after it', async () => {
    const before = proofs.right;
    const r = await run('slow-hello', { durationS: SLOW_RUN_S, perConnection: 0 });
    expect(proofs.right - before).toBe(0);
    expect(r.errors).toEqual({});
    expect(r.requests).toBe(0);
  });

  it('refuses bad arguments and a key file without keys, saying what is wrong', async () => {
    const noKeys = spawnSync(binary, ['--host', '127.0.0.1', '--port', String(port)], { encoding: 'utf8', timeout: 10_000 });
    expect(noKeys.status).toBe(2);
    expect(noKeys.stderr).toContain('--host, --port and --keys are required');
    const badPort = spawnSync(binary, ['--host', '127.0.0.1', '--port', '70000', '--keys', keysFile], { encoding: 'utf8', timeout: 10_000 });
    expect(badPort.status).toBe(2);
    expect(badPort.stderr).toContain("--port: expected a whole number in 1..65535 but received '70000'");
    const empty = join(work, 'empty.keys');
    writeFileSync(empty, 'not-a-key-line\n');
    await expect(gen.runAuthzGen({ binary, host: '127.0.0.1', port, path: '/authz', keysFile: empty, connections: 1, durationS: 1 })).rejects.toThrow(/exited 2: authz-gen: no '<user> <64 hex>' line/);
  });
});
