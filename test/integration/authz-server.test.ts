// The server verifier (src/authz/server.ts): grants sealed with protocol.seal under a test pool
// key, fed with acceptGrant() or pushed over a small fake control channel (a ws server that acks
// announces with frames.ts); verify() verdicts; tlsServer() end to end with the terminal SDK's
// connect(); httpGuard() over keep-alive connections. Waits are for events, never for time.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';

import { seal, serverBoxInfo, type ServerGrant, type TerminalGrant } from '../../src/authz/protocol.js';
import { startVerifier, type Verifier, type VerifierEvent, type VerifierOptions } from '../../src/authz/server.js';
import { AuthzError, authorizationHeader, connect } from '../../src/authz/terminal.js';
import { encodeFrame, openFrame } from '../../src/control/frames.js';
import { referenceHmacSha256, referenceHmacVerify } from '../../src/native/reference.js';
import { makePki, type TestPki } from '../helpers/tls.js';
import { rejectionOf } from '../helpers/rejects.js';

const POOL = 'kiosk';
const ID = 's1';
const KEY = randomBytes(32);
const WAIT_MS = 5_000;

/** The balancer's /control reduced to acking announces; keeps the sockets to push grants on. */
let control: WebSocketServer;
const controlSockets: WebSocket[] = [];
let pki: TestPki;
beforeAll(async () => {
  pki = makePki(['localhost']);
  control = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/control' });
  await new Promise<void>((resolve) => control.once('listening', resolve));
  control.on('connection', (socket) => {
    controlSockets.push(socket);
    socket.on('message', (data) => {
      const msg = openFrame('A', data as Buffer, KEY, referenceHmacVerify);
      const reply = msg.type === 'announce' ? { type: 'ack', state: 'up', address: msg.address, port: msg.port } : { type: 'ack', state: 'up' };
      socket.send(encodeFrame('B', POOL, KEY, { ...reply, ref: msg.nonce, ts: Date.now(), nonce: randomBytes(16) }, referenceHmacSha256), { binary: true });
    });
  });
});
afterAll(async () => {
  for (const s of control.clients) s.terminate();
  await new Promise<void>((resolve) => control.close(() => resolve()));
  pki.cleanup();
});
const controlUrl = (): string => `ws://127.0.0.1:${(control.address() as AddressInfo).port}/control`;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** Verifier events, awaitable (from an index, so nothing is missed). */
class Events {
  readonly items: VerifierEvent[] = [];
  #waiters: { match: (e: VerifierEvent) => boolean; resolve: (e: VerifierEvent) => void }[] = [];
  push = (e: VerifierEvent): void => {
    this.items.push(e);
    this.#waiters = this.#waiters.filter((w) => (w.match(e) ? (w.resolve(e), false) : true));
  };
  waitFor(what: string, match: (e: VerifierEvent) => boolean, from = 0): Promise<VerifierEvent> {
    const found = this.items.slice(from).find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; saw ${JSON.stringify(this.items)}`)), WAIT_MS);
      this.#waiters.push({ match, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }
}

function verifier(options: Partial<VerifierOptions> = {}): { v: Verifier; events: Events } {
  const events = new Events();
  const v = startVerifier({ control: controlUrl(), pool: POOL, id: ID, key: KEY, port: 7000, onEvent: events.push, ...options });
  cleanups.push(() => v.close());
  return { v, events };
}

/** A grant frame body for this server (or as changed), sealed the way the balancer seals it. */
function grant(change: Partial<ServerGrant> = {}, seal_: { pool?: string; id?: string; key?: Uint8Array } = {}): { code: Buffer; expiresAt: number; f: Buffer; box: Buffer } {
  const code = randomBytes(32);
  const now = Date.now();
  const g: ServerGrant = { server: ID, pool: POOL, user: 'kiosk-7', code, terminal: '127.0.0.1', issuedAt: now, expiresAt: now + 30_000, ...change };
  const f = randomBytes(16);
  return { code: Buffer.from(g.code), expiresAt: g.expiresAt, f, box: seal(seal_.key ?? KEY, f, serverBoxInfo(seal_.pool ?? POOL, seal_.id ?? ID), g) };
}

const dropped = (reason: string) => (e: VerifierEvent) => e.type === 'grant_dropped' && e.reason === reason;

describe('verify', () => {
  it('announces, takes a grant pushed over the control channel, and accepts its code once', async () => {
    const { v, events } = verifier();
    expect(await v.ready).toMatchObject({ state: 'up', port: 7000 });
    const g = grant();
    const socket = controlSockets.at(-1)!;
    socket.send(encodeFrame('B', POOL, KEY, { type: 'grant', ts: Date.now(), nonce: randomBytes(16), f: g.f, box: g.box }, referenceHmacSha256), { binary: true });
    await events.waitFor('the grant', (e) => e.type === 'grant');
    const ok = await v.verify(g.code.toString('base64url'), '127.0.0.1');
    expect(ok).toMatchObject({ ok: true, user: 'kiosk-7', grant: { server: ID, pool: POOL, terminal: '127.0.0.1' } });
    expect(await v.verify(g.code, '127.0.0.1')).toEqual({ ok: false, code: 'used' });
    expect(events.items.filter((e) => e.type === 'verified' || e.type === 'denied')).toEqual([
      { type: 'verified', user: 'kiosk-7', remoteAddress: '127.0.0.1' },
      { type: 'denied', code: 'used', remoteAddress: '127.0.0.1' },
    ]);
  });

  it("refuses a code from another address without spending it ('wrong_address')", async () => {
    const { v } = verifier();
    const g = grant({ terminal: '10.0.0.7' });
    expect(v.acceptGrant(g)).toBe(true);
    expect(await v.verify(g.code, '127.0.0.1')).toEqual({ ok: false, code: 'wrong_address' });
    expect(await v.verify(g.code, '::ffff:10.0.0.7')).toMatchObject({ ok: true });
    const g6 = grant({ terminal: '2001:db8::7' });
    v.acceptGrant(g6);
    expect(await v.verify(g6.code, '2001:0db8:0:0::0007')).toMatchObject({ ok: true });
  });

  it("refuses a code after its grant expired ('expired')", async () => {
    const { v } = verifier();
    const g = grant({ expiresAt: Date.now() + 50 });
    expect(v.acceptGrant(g)).toBe(true);
    while (Date.now() <= g.expiresAt + 1) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(await v.verify(g.code, '127.0.0.1')).toEqual({ ok: false, code: 'expired' });
  });

  it("waits graceMs for an unknown code, then refuses it ('unknown_code')", async () => {
    const { v } = verifier({ graceMs: 40 });
    const started = performance.now();
    expect(await v.verify(randomBytes(32), '127.0.0.1')).toEqual({ ok: false, code: 'unknown_code' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(35);
  });

  it('accepts a code whose grant arrives during the grace', async () => {
    const { v, events } = verifier({ graceMs: 30_000 });
    const g = grant();
    const verdict = v.verify(g.code, '127.0.0.1');
    const second = v.verify(g.code, '127.0.0.1'); // the same code twice while waiting: one wins
    await new Promise((resolve) => setImmediate(resolve));
    expect(events.items.some((e) => e.type === 'verified' || e.type === 'denied')).toBe(false);
    expect(v.acceptGrant(g)).toBe(true);
    expect(await verdict).toMatchObject({ ok: true, user: 'kiosk-7' });
    expect(await second).toEqual({ ok: false, code: 'used' });
  });

  it('drops grants for another server or pool, already expired, malformed, or replayed', async () => {
    const { v, events } = verifier({ graceMs: 0 });
    const other = grant({}, { id: 's2' });
    expect(v.acceptGrant(other)).toBe(false);
    expect(v.acceptGrant(grant({}, { key: randomBytes(32) }))).toBe(false);
    expect(events.items.filter(dropped('does_not_open'))).toHaveLength(2);
    expect(v.acceptGrant(grant({ server: 's2' }))).toBe(false);
    expect(v.acceptGrant(grant({ pool: 'web' }))).toBe(false);
    expect(events.items.filter(dropped('wrong_server'))).toHaveLength(2);
    expect(v.acceptGrant(grant({ expiresAt: Date.now() - 1 }))).toBe(false);
    expect(events.items.filter(dropped('expired'))).toHaveLength(1);
    expect(v.acceptGrant({ f: randomBytes(8), box: randomBytes(64) })).toBe(false);
    expect(v.acceptGrant(grant({ terminal: 'not an ip' }))).toBe(false);
    expect(events.items.filter(dropped('malformed'))).toHaveLength(2);
    expect(await v.verify(other.code, '127.0.0.1')).toEqual({ ok: false, code: 'unknown_code' });

    const g = grant();
    expect(v.acceptGrant(g)).toBe(true);
    expect(await v.verify(g.code, '127.0.0.1')).toMatchObject({ ok: true });
    expect(v.acceptGrant(g)).toBe(false); // the same frame again: the code stays used
    expect(events.items.filter(dropped('duplicate'))).toHaveLength(1);
    expect(await v.verify(g.code, '127.0.0.1')).toEqual({ ok: false, code: 'used' });
  });

  it("refuses malformed codes at once ('malformed')", async () => {
    const { v } = verifier({ graceMs: 30_000 });
    for (const code of ['', 'abc', randomBytes(32).toString('base64'), randomBytes(31), `${randomBytes(32).toString('base64url')}=`]) {
      expect(await v.verify(code, '127.0.0.1')).toEqual({ ok: false, code: 'malformed' });
    }
  });

  it('holds at most maxCodes, forgetting the oldest', async () => {
    const { v, events } = verifier({ maxCodes: 2, graceMs: 0 });
    const [a, b, c] = [grant(), grant(), grant()];
    for (const g of [a, b, c]) expect(v.acceptGrant(g)).toBe(true);
    expect(events.items.filter((e) => e.type === 'code_evicted')).toHaveLength(1);
    expect(await v.verify(a.code, '127.0.0.1')).toEqual({ ok: false, code: 'unknown_code' });
    expect(await v.verify(b.code, '127.0.0.1')).toMatchObject({ ok: true });
    expect(await v.verify(c.code, '127.0.0.1')).toMatchObject({ ok: true });
  });

  it('answers waiting verify() calls when closed', async () => {
    const { v } = verifier({ graceMs: 30_000 });
    const verdict = v.verify(randomBytes(32), '127.0.0.1');
    await v.close();
    expect(await verdict).toEqual({ ok: false, code: 'unknown_code' });
  });

  it('validates options up front, naming the option', () => {
    const good: VerifierOptions = { control: controlUrl(), pool: POOL, id: ID, key: KEY, port: 7000 };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ key: randomBytes(16) }, /^expected a 32-byte key \(Uint8Array\) for key but received Buffer of 16 bytes/],
      [{ pool: 'a b' }, /for pool but received string "a b"/],
      [{ id: '' }, /for id/],
      [{ graceMs: -1 }, /for graceMs but received number -1/],
      [{ maxCodes: 0 }, /for maxCodes/],
      [{ control: 'http://lb/control' }, /for control but received string "http:\/\/lb\/control"/],
      [{ port: 0 }, /for port/],
      [{ onEvent: 1 }, /expected a function for onEvent/],
      [{ window: 5 }, /^unknown option 'window' in verifier options/],
    ];
    for (const [change, message] of cases) expect(() => startVerifier({ ...good, ...change } as VerifierOptions), JSON.stringify(Object.keys(change))).toThrow(message);
  });
});

describe('tlsServer', () => {
  /** A verifier behind an echo server; returns the port and a terminal grant for a taken code. */
  async function echoServer(options: Partial<VerifierOptions> = {}): Promise<{ v: Verifier; events: Events; port: number; authorized: ServerGrant[] }> {
    const { v, events } = verifier(options);
    const authorized: ServerGrant[] = [];
    const sockets = new Set<Socket>();
    // The handshake deadline apart from a short lineTimeoutMs: a slow machine is not a slow client.
    const server = v.tlsServer({ ...pki.leaf('localhost'), handshakeTimeout: 30_000 }, (socket, g) => {
      authorized.push(g);
      socket.on('error', () => {});
      socket.pipe(socket);
    });
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return { v, events, port: (server.address() as AddressInfo).port, authorized };
  }
  const terminalGrant = (code: Uint8Array, port: number): TerminalGrant => ({ user: 'kiosk-7', nT: randomBytes(16), nB: randomBytes(56), code, server: { id: ID, pool: POOL, address: '127.0.0.1', port }, expiresAt: Date.now() + 30_000 });
  const tlsOptions = (): tls.ConnectionOptions => ({ ca: pki.ca, servername: 'localhost' });

  it('answers TETHER-OK to a granted code and hands the socket over (echo)', async () => {
    const { v, port, authorized } = await echoServer();
    const g = grant();
    v.acceptGrant(g);
    const socket = await connect({ grant: terminalGrant(g.code, port), tls: tlsOptions() });
    cleanups.push(() => void socket.destroy());
    socket.write('ping\n');
    expect(await new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())))).toBe('ping\n');
    expect(authorized).toEqual([expect.objectContaining({ user: 'kiosk-7', terminal: '127.0.0.1' })]);
    // The same code again, on a new connection: refused.
    expect(await authzErrorOf(connect({ grant: terminalGrant(g.code, port), tls: tlsOptions() }))).toMatchObject({ code: 'used' });
  });

  it('answers TETHER-DENIED for an unknown code and closes', async () => {
    const { port, events } = await echoServer({ graceMs: 20 });
    expect(await authzErrorOf(connect({ grant: terminalGrant(randomBytes(32), port), tls: tlsOptions() }))).toMatchObject({ code: 'unknown_code', message: `127.0.0.1:${port} refused the code: unknown_code` });
    await events.waitFor('denied', (e) => e.type === 'denied' && e.code === 'unknown_code');
  });

  /** A raw TLS client: sends `text` (if any) and collects everything until the server closes. */
  async function rawExchange(port: number, text: string | null): Promise<string> {
    const socket = tls.connect({ host: '127.0.0.1', port, ...tlsOptions() });
    cleanups.push(() => void socket.destroy());
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    if (text !== null) socket.write(text);
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    await new Promise((resolve) => socket.once('close', resolve));
    return received;
  }

  it('refuses a client that sends no code line within lineTimeoutMs', async () => {
    const { port, events } = await echoServer({ lineTimeoutMs: 100 });
    expect(await rawExchange(port, null)).toBe('TETHER-DENIED timeout\r\n');
    await events.waitFor('denied timeout', (e) => e.type === 'denied' && e.code === 'timeout');
  });

  it('refuses a line that is not a code line, or too long, as malformed', async () => {
    const { port } = await echoServer();
    expect(await rawExchange(port, 'GET / HTTP/1.1\r\n\r\n')).toBe('TETHER-DENIED malformed\r\n');
    expect(await rawExchange(port, `TETHER-CODE ${'A'.repeat(300)}`)).toBe('TETHER-DENIED malformed\r\n');
  });
});

describe('httpGuard', () => {
  async function guarded(): Promise<{ v: Verifier; port: number }> {
    const { v } = verifier({ graceMs: 20 });
    const server = http.createServer(
      v.httpGuard((req, res) => {
        const g = v.grantOf(req.socket);
        res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${g?.user ?? '?'} on ${req.socket.remotePort}`);
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return { v, port: (server.address() as AddressInfo).port };
  }

  function get(port: number, agent: http.Agent, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string; localPort: number }> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, agent, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, localPort: req.socket?.localPort ?? 0 }));
      });
      req.on('error', reject);
    });
  }

  function keepAlive(): http.Agent {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    return agent;
  }

  it('requires the code on the first request of a connection, and only there', async () => {
    const { v, port } = await guarded();
    const g = grant();
    v.acceptGrant(g);
    const agent = keepAlive();

    const missing = await get(port, agent);
    expect(missing.status).toBe(401);
    expect(JSON.parse(missing.body)).toEqual({ error: 'missing_code', message: expect.stringContaining('Authorization: Tether-Code') });

    const first = await get(port, agent, { authorization: authorizationHeader({ code: g.code }) });
    expect(first).toMatchObject({ status: 200, body: `hello kiosk-7 on ${first.localPort}` });
    const second = await get(port, agent);
    expect(second).toMatchObject({ status: 200, localPort: first.localPort });

    const otherConnection = await get(port, keepAlive());
    expect(otherConnection.status).toBe(401);
    expect(otherConnection.localPort).not.toBe(first.localPort);
  });

  it('answers 401 with the reason for a refused code', async () => {
    const { port } = await guarded();
    const unknown = await get(port, keepAlive(), { authorization: `Tether-Code ${randomBytes(32).toString('base64url')}` });
    expect(unknown.status).toBe(401);
    expect(JSON.parse(unknown.body)).toMatchObject({ error: 'unknown_code' });
    const malformed = await get(port, keepAlive(), { authorization: 'Bearer abc' });
    expect(JSON.parse(malformed.body)).toMatchObject({ error: 'malformed' });
  });
});

const authzErrorOf = (promise: Promise<unknown>): Promise<AuthzError> => rejectionOf(promise, AuthzError);
