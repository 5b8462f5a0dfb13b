// The authorization handshake with real processes: Tether, the example TLS server (the verifier
// beside a real app) and a terminal using the SDK from its own loopback address. After the
// handshake the terminal talks to the server directly; every bad input is refused and counted.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { createInterface } from 'node:readline';
import type tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64u, proofInput, type TerminalGrant } from '../../src/authz/protocol.js';
import { AuthzError, authorize, connect } from '../../src/authz/terminal.js';
import { referenceHmacSha256 } from '../../src/native/reference.js';
import { rejectionOf } from '../helpers/rejects.js';
import { pollUntil, tempDir } from '../helpers/sticky.js';
import { makePki, type TestPki } from '../helpers/tls.js';
import { startTether, type TetherProcess } from '../helpers/tether.js';

const SERVER_EXAMPLE = fileURLToPath(new URL('../../dist/authz/examples/server.js', import.meta.url));
const agentKey = randomBytes(32);
const kiosk = randomBytes(32);
const dir = tempDir('tether-authz-');
const agentKeys = dir.file('agents.keys', `app ${agentKey.toString('hex')}\n`);
const terminalKeys = dir.file('terminals.keys', `# kiosks\nkiosk-1 ${kiosk.toString('hex')}\nkiosk-2 ${randomBytes(32).toString('hex')}\n`);
let pki: TestPki;
let t: TetherProcess;
let server: ChildProcess;
const serverLines: string[] = [];
let balancer: string;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function waitForServerLine(pred: (line: string) => boolean, ms = 10_000): Promise<string> {
  return pollUntil('server output', async () => serverLines.find(pred), ms);
}

beforeAll(async () => {
  pki = makePki(['app.test', 'lb.test']);
  const leaf = pki.leaf('app.test');
  const certFile = dir.file('app.pem', leaf.cert.toString());
  const keyFile = dir.file('app.key', leaf.key.toString());
  // The balancer's own HTTPS listener beside the plain one (its certificate: lb.test).
  const lb = pki.leaf('lb.test');
  const lbCert = dir.file('lb.pem', lb.cert.toString() + lb.key.toString());
  t = await startTether(['--listen', 'https://127.0.0.1:0', '--cert', lbCert, '--pool', 'app', '--agent-keys', agentKeys, '--terminal-keys', terminalKeys, '--authz-pool', 'app', '--authz-window', '2000', '--authz-fail-limit', '8']);
  balancer = `http://127.0.0.1:${t.port}`;
  const port = await freePort();
  server = spawn(process.execPath, [SERVER_EXAMPLE, '--control', `ws://127.0.0.1:${t.adminPort}/control`, '--pool', 'app', '--id', 's1', '--port', String(port), '--key-file', agentKeys, '--tls-cert', certFile, '--tls-key', keyFile, '--address', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  createInterface({ input: server.stdout! }).on('line', (l) => serverLines.push(l));
  createInterface({ input: server.stderr! }).on('line', (l) => serverLines.push(`stderr: ${l}`));
  await waitForServerLine((l) => l.startsWith('listening on'));
  // Grants can be given once every worker knows the server: its announce is acknowledged then.
  await waitForServerLine((l) => l === 'control: announced');
});

afterAll(async () => {
  server?.kill('SIGTERM');
  await t?.stop();
  pki?.cleanup();
  dir.cleanup();
});

/** Sends a line over the authorized socket and reads the echo. */
function echo(socket: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`no echo within 5 s (got ${JSON.stringify(got)})`)), 5_000);
    socket.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.endsWith('\n')) {
        clearTimeout(timer);
        resolve(got);
      }
    });
    socket.write(text);
  });
}

const authorizeAs = (o: { userId?: string; key?: Uint8Array; from?: string; format?: 'json' | 'msgpack' } = {}) =>
  authorize({ balancer, userId: o.userId ?? 'kiosk-1', key: o.key ?? kiosk, localAddress: o.from ?? '127.0.0.3', format: o.format, timeoutMs: 5_000 });

const connectAs = (grant: TerminalGrant, from = '127.0.0.3') => connect({ grant, localAddress: from, timeoutMs: 5_000, tls: { ca: pki.ca, servername: 'app.test' } });

const refusal = (p: Promise<unknown>): Promise<AuthzError> => rejectionOf(p, AuthzError);

async function post(path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${balancer}/_tether/authz/${path}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const outcome = (o: string) => t.metric(`tether_authz_total{outcome="${o}"}`);

describe('authorization handshake, end to end', () => {
  it('a terminal authorizes, connects straight to the server and is served; the server sees the terminal itself', async () => {
    const grant = await authorizeAs();
    expect(grant.server).toMatchObject({ pool: 'app', id: 's1', address: '127.0.0.1' });
    const socket = await connectAs(grant);
    try {
      expect(socket.remoteAddress).toBe('127.0.0.1');
      expect(await echo(socket, 'hello from the kiosk\n')).toBe('hello from the kiosk\n');
    } finally {
      socket.destroy();
    }
    // The server verified the code against the address it saw: the terminal's, not the balancer's.
    await waitForServerLine((l) => l === 'kiosk-1 authorized from 127.0.0.3');
    expect(await outcome('granted')).toBeGreaterThanOrEqual(1);
  });

  it('works the same over the balancer\'s HTTPS listener: the terminal verifies the balancer, then connects straight to the server', async () => {
    const grant = await authorize({ balancer: `https://127.0.0.1:${t.ports[1]}`, tls: { ca: pki.ca, servername: 'lb.test' }, userId: 'kiosk-1', key: kiosk, localAddress: '127.0.0.4', timeoutMs: 5_000 });
    expect(grant.server).toMatchObject({ pool: 'app', id: 's1', address: '127.0.0.1' });
    const socket = await connectAs(grant, '127.0.0.4');
    try {
      expect(await echo(socket, 'hello over https\n')).toBe('hello over https\n');
    } finally {
      socket.destroy();
    }
    await waitForServerLine((l) => l === 'kiosk-1 authorized from 127.0.0.4');
  });

  it('twenty terminals at once: grants sealed in the same turn travel together, and every code opens its connection', async () => {
    const grants = await Promise.all(Array.from({ length: 20 }, () => authorizeAs()));
    const sockets = await Promise.all(grants.map((g) => connectAs(g)));
    try {
      const answers = await Promise.all(sockets.map((s, i) => echo(s, `terminal ${i}\n`)));
      expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => `terminal ${i}\n`));
    } finally {
      for (const s of sockets) s.destroy();
    }
    expect(await t.metric('tether_authz_grants_undeliverable_total')).toBe(0);
  });

  it('the runnable terminal example does the same from the command line', async () => {
    const example = fileURLToPath(new URL('../../dist/authz/examples/terminal.js', import.meta.url));
    const proc = spawn(process.execPath, [example, '--balancer', balancer, '--user', 'kiosk-1', '--key-file', terminalKeys, '--ca', pki.caFile, '--servername', 'app.test', '--message', 'from the example'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d));
    proc.stderr!.on('data', (d: Buffer) => (out += d));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      proc.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(out).toContain('granted app/s1 at 127.0.0.1:');
    expect(out).toContain('echo: from the example');
    expect(code).toBe(0);
  });

  it('msgpack bodies work the same', async () => {
    const socket = await connectAs(await authorizeAs({ format: 'msgpack' }));
    socket.destroy();
  });

  it('a code is good once: presenting it again is refused', async () => {
    const grant = await authorizeAs();
    (await connectAs(grant)).destroy();
    expect((await refusal(connectAs(grant))).code).toBe('used');
  });

  it('a code presented from another address is refused', async () => {
    const grant = await authorizeAs({ from: '127.0.0.3' });
    expect((await refusal(connectAs(grant, '127.0.0.4'))).code).toBe('wrong_address');
  });

  it('an expired grant is refused', async () => {
    const grant = await authorizeAs();
    await pollUntil('the grant to expire', async () => (Date.now() > grant.expiresAt + 50 ? true : undefined), 5_000);
    expect((await refusal(connectAs(grant))).code).toBe('expired');
  });

  it('unknown user and wrong key get the same "denied", each counted by its cause', async () => {
    const unknownBefore = await outcome('unknown_user');
    const badBefore = await outcome('bad_proof');
    const a = await refusal(authorizeAs({ userId: 'kiosk-99', from: '127.0.0.21' }));
    const b = await refusal(authorizeAs({ key: randomBytes(32), from: '127.0.0.22' }));
    expect([a.code, a.status, b.code, b.status]).toEqual(['denied', 403, 'denied', 403]);
    expect(a.message).toBe(b.message);
    expect(await outcome('unknown_user')).toBe(unknownBefore + 1);
    expect(await outcome('bad_proof')).toBe(badBefore + 1);
  });

  it('a forged challenge, a stale one and a replayed proof are denied', async () => {
    const nT = randomBytes(16);
    const forgedNb = randomBytes(56);
    const forged = await post('proof', { user: 'kiosk-1', nT: b64u(nT), nB: b64u(forgedNb), proof: b64u(referenceHmacSha256(kiosk, proofInput('kiosk-1', nT, forgedNb))) });
    expect(forged).toMatchObject({ status: 403, body: { error: 'denied' } });
    // A real challenge, answered correctly: good once, then a replay (on fresh connections, so
    // likely another worker: the used-challenge record is shared).
    const hello = await post('hello', { user: 'kiosk-1', nT: b64u(nT) });
    const nB = Buffer.from(hello.body.nB as string, 'base64url');
    const proof = { user: 'kiosk-1', nT: b64u(nT), nB: hello.body.nB, proof: b64u(referenceHmacSha256(kiosk, proofInput('kiosk-1', nT, nB))) };
    expect((await post('proof', proof)).status).toBe(200);
    const replays = await Promise.all([post('proof', proof), post('proof', proof), post('proof', proof)]);
    for (const r of replays) expect(r).toMatchObject({ status: 403, body: { error: 'denied' } });
    expect(await outcome('forged_challenge')).toBeGreaterThanOrEqual(1);
    expect(await outcome('replayed')).toBeGreaterThanOrEqual(3);
    // Stale: the window is 2 s here; a challenge answered after it is refused.
    const staleHello = await post('hello', { user: 'kiosk-1', nT: b64u(nT) });
    const issuedAt = Number(Buffer.from(staleHello.body.nB as string, 'base64url').readBigUInt64BE());
    await pollUntil('the challenge to go stale', async () => (Date.now() > issuedAt + 2_100 ? true : undefined), 5_000);
    const staleNb = Buffer.from(staleHello.body.nB as string, 'base64url');
    const stale = await post('proof', { user: 'kiosk-1', nT: b64u(nT), nB: staleHello.body.nB, proof: b64u(referenceHmacSha256(kiosk, proofInput('kiosk-1', nT, staleNb))) });
    expect(stale).toMatchObject({ status: 403, body: { error: 'denied' } });
    expect(await outcome('stale_challenge')).toBeGreaterThanOrEqual(1);
  });

  it('garbled bodies get 400 with the reason', async () => {
    const res = await fetch(`${balancer}/_tether/authz/proof`, { method: 'POST', body: '{not json', headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('bad_request');
    const msgpack = await fetch(`${balancer}/_tether/authz/hello`, { method: 'POST', body: new Uint8Array([0x92, 0x01]), headers: { 'content-type': 'application/msgpack' } });
    expect(msgpack.status).toBe(400);
    expect((await post('hello', { user: 'kiosk-1', nT: 'too-short' })).status).toBe(400);
    expect((await post('proof', { user: 'kiosk-1' })).status).toBe(400);
    expect(await outcome('bad_request')).toBeGreaterThanOrEqual(4);
  });

  it('a brute-force loop is throttled at exactly the limit, however the workers share it', async () => {
    // kiosk-2 from one address with wrong keys. The limit (8 a minute) is counted in the shared
    // table, so it holds across both workers: 8 denials, then 429s. (Counted per worker, the
    // tries spread over two workers would get up to 16 denials.)
    const codes: string[] = [];
    for (let i = 0; i < 11; i++) codes.push((await refusal(authorizeAs({ userId: 'kiosk-2', key: randomBytes(32), from: '127.0.0.30' }))).code);
    expect(codes).toEqual([...Array<string>(8).fill('denied'), ...Array<string>(3).fill('rate_limited')]);
    expect(await outcome('rate_limited')).toBeGreaterThanOrEqual(3);
    // The right key still passes from that address: the limit slows guessing, it locks no one out.
    const grant = await authorizeAs({ from: '127.0.0.30' });
    expect(grant.server.id).toBe('s1');
  });
});

describe('keys and nodes', () => {
  it('SIGHUP re-reads the terminal keys: a terminal added is admitted, then denied once removed', async () => {
    const added = randomBytes(32);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(terminalKeys, `kiosk-1 ${kiosk.toString('hex')}\nkiosk-3 ${added.toString('hex')}\n`);
    t.proc.kill('SIGHUP');
    await t.waitForLog((e) => e.msg === 'terminal keys reloaded');
    const grant = await authorizeAs({ userId: 'kiosk-3', key: added, from: '127.0.0.40' });
    expect(grant.user).toBe('kiosk-3');
    // Removed again: the same terminal, with its right key, is denied after the next SIGHUP.
    writeFileSync(terminalKeys, `kiosk-1 ${kiosk.toString('hex')}\n`);
    t.proc.kill('SIGHUP');
    await pollUntil('a second reload', async () => (t.lines.filter((l) => l.includes('terminal keys reloaded')).length >= 2 ? true : undefined));
    expect((await refusal(authorizeAs({ userId: 'kiosk-3', key: added, from: '127.0.0.41' }))).code).toBe('denied');
  });

  it('a challenge from one balancer node is accepted by another with the same key file', async () => {
    const keyFile = dir.file('route.keys', `1 ${randomBytes(32).toString('hex')}\n`);
    const args = ['--pool', 'app', '--agent-keys', agentKeys, '--terminal-keys', terminalKeys, '--authz-pool', 'app', '--key-file', keyFile];
    const [a, b] = await Promise.all([startTether(args, { workers: 1 }), startTether(args, { workers: 1 })]);
    const other = await startTether(['--pool', 'app', '--agent-keys', agentKeys, '--terminal-keys', terminalKeys, '--authz-pool', 'app'], { workers: 1 });
    try {
      const proofFor = async (helloNode: TetherProcess, proofNode: TetherProcess) => {
        const nT = randomBytes(16);
        const at = (n: TetherProcess, path: string, body: unknown) =>
          fetch(`http://127.0.0.1:${n.port}/_tether/authz/${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(5_000) });
        const hello = (await (await at(helloNode, 'hello', { user: 'kiosk-1', nT: b64u(nT) })).json()) as { nB: string };
        const nB = Buffer.from(hello.nB, 'base64url');
        const res = await at(proofNode, 'proof', { user: 'kiosk-1', nT: b64u(nT), nB: hello.nB, proof: b64u(referenceHmacSha256(kiosk, proofInput('kiosk-1', nT, nB))) });
        return { status: res.status, error: ((await res.json()) as { error?: string }).error };
      };
      // Node b has no server connected, so an accepted proof is answered 503 no_server — but
      // not 'denied': the challenge node a minted checked out on b.
      expect(await proofFor(a, b)).toEqual({ status: 503, error: 'no_server' });
      // A node with a different key file cannot check it.
      expect(await proofFor(a, other)).toEqual({ status: 403, error: 'denied' });
    } finally {
      await Promise.all([a.stop(), b.stop(), other.stop()]);
    }
  });
});
