// The terminal SDK (src/authz/terminal.ts): authorize() against a small fake balancer on
// loopback that runs hello/proof with protocol.ts (stateless challenge, proof MAC, sealed
// grant), in JSON and msgpack; connect() against raw TLS servers speaking the code exchange.
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import { pack, unpack } from 'msgpackr';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import {
  CHALLENGE_BYTES,
  DEFAULT_WINDOW_MS,
  NONCE_T_BYTES,
  PROOF_BYTES,
  checkChallenge,
  fromB64u,
  mintChallenge,
  proofInput,
  seal,
  terminalBoxInfo,
  type TerminalGrant,
} from '../../src/authz/protocol.js';
import { AuthzError, authorizationHeader, authorize, connect, type AuthorizeOptions } from '../../src/authz/terminal.js';
import { referenceHmacSha256, referenceHmacVerify } from '../../src/native/reference.js';
import { makePki, type TestPki } from '../helpers/tls.js';
import { rejectionOf } from '../helpers/rejects.js';

const USER = 'kiosk-7';
const KEY = randomBytes(32);
const SECRET = randomBytes(32);
const SERVER = { id: 's1', pool: 'kiosk', address: '192.0.2.10', port: 7000 };

type Body = Record<string, unknown>;
interface Seen {
  path: string;
  contentType: string;
  raw: unknown;
  remotePort: number;
}
/** What the fake does at /proof after checking the challenge and proof: a status and body, or 'hang'. */
type ProofAnswer = (ctx: { user: string; nT: Buffer; nB: Buffer }) => { status: number; body: Body } | 'hang';

/** The balancer's side of the handshake, just enough of it: keys for USER only. */
class FakeBalancer {
  readonly seen: Seen[] = [];
  proofAnswer: ProofAnswer = (ctx) => this.grantFor(ctx, KEY);
  /** Replaces the whole answer to hello (e.g. a non-Tether error page). */
  helloAnswer: ((req: IncomingMessage, res: ServerResponse) => void) | null = null;
  readonly #server: http.Server;
  readonly #sockets = new Set<Socket>();

  constructor() {
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    this.#server.on('connection', (s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  /** A 200 grant answer for the handshake, sealed under `key`. */
  grantFor(ctx: { user: string; nT: Buffer; nB: Buffer }, key: Uint8Array, change: Partial<TerminalGrant> = {}): { status: number; body: Body } {
    const grant: TerminalGrant = { user: ctx.user, nT: ctx.nT, nB: ctx.nB, code: randomBytes(32), server: SERVER, expiresAt: Date.now() + DEFAULT_WINDOW_MS, ...change };
    const f = randomBytes(16);
    return { status: 200, body: { f, box: seal(key, f, terminalBoxInfo(), grant) } };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const contentType = req.headers['content-type'] ?? '';
    const msgpack = contentType === 'application/msgpack';
    const raw: unknown = msgpack ? unpack(Buffer.concat(chunks)) : JSON.parse(Buffer.concat(chunks).toString('utf8'));
    this.seen.push({ path: req.url ?? '', contentType, raw, remotePort: req.socket.remotePort ?? 0 });
    const send = (status: number, body: Body): void => {
      const json = Object.fromEntries(Object.entries(body).map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString('base64url') : v]));
      const bytes = msgpack ? pack(body) : Buffer.from(JSON.stringify(json));
      res.writeHead(status, { 'content-type': contentType, 'content-length': bytes.length });
      res.end(bytes);
    };
    const m = raw as Body;
    const bytes = (name: string, len: number): Buffer | null => (msgpack ? (m[name] instanceof Uint8Array && (m[name] as Uint8Array).length === len ? Buffer.from(m[name] as Uint8Array) : null) : fromB64u(m[name], len));
    const user = typeof m.user === 'string' ? m.user : '';
    const nT = bytes('nT', NONCE_T_BYTES);
    if (nT === null || user === '') return send(400, { error: 'bad_request', message: 'no user or nT' });
    if (req.url === '/_tether/authz/hello' || req.url === '/custom/hello') {
      if (this.helloAnswer !== null) return this.helloAnswer(req, res);
      return send(200, { user, nT, nB: mintChallenge(SECRET, user, nT, Date.now(), referenceHmacSha256) });
    }
    const nB = bytes('nB', CHALLENGE_BYTES);
    const proof = bytes('proof', PROOF_BYTES);
    if (nB === null || proof === null) return send(400, { error: 'bad_request', message: 'no nB or proof' });
    if (!checkChallenge(SECRET, user, nT, nB, Date.now(), DEFAULT_WINDOW_MS, referenceHmacVerify).ok) return send(403, { error: 'denied', message: 'bad challenge' });
    if (user !== USER || !referenceHmacVerify(KEY, proofInput(user, nT, nB), proof)) return send(403, { error: 'denied', message: 'the proof does not verify' });
    const answer = this.proofAnswer({ user, nT, nB });
    if (answer !== 'hang') send(answer.status, answer.body);
  }
}

let fake: FakeBalancer;
let balancer: string;
beforeAll(async () => {
  fake = new FakeBalancer();
  balancer = await fake.listen();
});
afterAll(() => fake.close());
afterEach(() => {
  fake.seen.length = 0;
  fake.proofAnswer = (ctx) => fake.grantFor(ctx, KEY);
  fake.helloAnswer = null;
});

const authzError = (promise: Promise<unknown>): Promise<AuthzError> => rejectionOf(promise, AuthzError);

const options = (change: Partial<AuthorizeOptions> = {}): AuthorizeOptions => ({ balancer, userId: USER, key: KEY, ...change });

describe('authorize', () => {
  it('runs hello and proof in JSON over one connection and returns the opened grant', async () => {
    const grant = await authorize(options());
    expect(grant).toMatchObject({ user: USER, server: SERVER });
    expect(grant.code).toHaveLength(32);
    expect(grant.expiresAt).toBeGreaterThan(Date.now());
    expect(fake.seen.map((s) => [s.path, s.contentType])).toEqual([
      ['/_tether/authz/hello', 'application/json'],
      ['/_tether/authz/proof', 'application/json'],
    ]);
    const [hello, proof] = fake.seen.map((s) => s.raw as Body);
    expect(Object.keys(hello!).sort()).toEqual(['nT', 'user']);
    expect(hello!.nT).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(proof).toMatchObject({ user: USER, nT: hello!.nT });
    expect(fromB64u(proof!.proof, 32)).not.toBeNull();
    expect(Buffer.from(grant.nT).toString('base64url')).toBe(hello!.nT);
    expect(Buffer.from(grant.nB).toString('base64url')).toBe(proof!.nB);
    expect(fake.seen[0]!.remotePort).toBe(fake.seen[1]!.remotePort);
  });

  it('speaks msgpack (byte fields as bin) on request, and honours a custom path', async () => {
    const grant = await authorize(options({ format: 'msgpack', path: '/custom' }));
    expect(grant).toMatchObject({ user: USER, server: SERVER });
    expect(fake.seen.map((s) => [s.path, s.contentType])).toEqual([
      ['/custom/hello', 'application/msgpack'],
      ['/custom/proof', 'application/msgpack'],
    ]);
    const proof = fake.seen[1]!.raw as Body;
    expect(proof.nT).toBeInstanceOf(Uint8Array);
    expect(proof.proof).toHaveLength(32);
  });

  it("rejects with the balancer's error code and status", async () => {
    // A wrong key: the fake really refuses the proof.
    expect(await authzError(authorize(options({ key: randomBytes(32) })))).toMatchObject({ code: 'denied', status: 403, message: 'the balancer refused proof with 403 denied: the proof does not verify' });
    fake.proofAnswer = () => ({ status: 429, body: { error: 'rate_limited', message: 'too many failed proofs' } });
    expect(await authzError(authorize(options({ format: 'msgpack' })))).toMatchObject({ code: 'rate_limited', status: 429 });
    fake.proofAnswer = () => ({ status: 503, body: { error: 'no_server', message: 'no server in pool kiosk' } });
    expect(await authzError(authorize(options()))).toMatchObject({ code: 'no_server', status: 503 });
  });

  it("reports an error status without a Tether body as 'http_error'", async () => {
    fake.helloAnswer = (_req, res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>Bad Gateway</h1>');
    expect(await authzError(authorize(options()))).toMatchObject({ code: 'http_error', status: 502 });
  });

  it("refuses a grant that does not open, or does not echo this handshake ('bad_reply')", async () => {
    fake.proofAnswer = (ctx) => fake.grantFor(ctx, randomBytes(32));
    expect(await authzError(authorize(options()))).toMatchObject({ code: 'bad_reply', message: expect.stringContaining('does not open') });
    fake.proofAnswer = (ctx) => fake.grantFor(ctx, KEY, { nT: randomBytes(16) });
    expect(await authzError(authorize(options({ format: 'msgpack' })))).toMatchObject({ code: 'bad_reply', message: expect.stringContaining('does not echo') });
    fake.proofAnswer = (ctx) => fake.grantFor(ctx, KEY, { user: 'kiosk-8' });
    expect((await authzError(authorize(options()))).code).toBe('bad_reply');
    fake.proofAnswer = () => ({ status: 200, body: { f: 'short', box: 'AAAA' } });
    expect(await authzError(authorize(options()))).toMatchObject({ code: 'bad_reply', message: expect.stringContaining('16-byte `f`') });
    fake.helloAnswer = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ user: USER, nT: randomBytes(16).toString('base64url'), nB: randomBytes(56).toString('base64url') }));
    expect(await authzError(authorize(options()))).toMatchObject({ code: 'bad_reply', message: expect.stringContaining('does not echo') });
  });

  it("rejects with 'timeout' when the balancer does not answer within timeoutMs", async () => {
    fake.proofAnswer = () => 'hang';
    const err = await authzError(authorize(options({ timeoutMs: 500 })));
    expect(err).toMatchObject({ code: 'timeout', message: `no authorization from ${balancer} within 500 ms` });
    expect(fake.seen.map((s) => s.path)).toEqual(['/_tether/authz/hello', '/_tether/authz/proof']);
  });

  it("rejects with 'connect_failed' when nothing listens", async () => {
    const closed = new FakeBalancer();
    const url = await closed.listen();
    await closed.close();
    expect((await authzError(authorize(options({ balancer: url })))).code).toBe('connect_failed');
  });

  it('validates options up front, naming the option', () => {
    const cases: [Record<string, unknown>, string | RegExp][] = [
      [{ balancer: 'ws://lb:9090' }, /^expected an http:\/\/ or https:\/\/ origin .* for balancer but received string "ws:\/\/lb:9090"/],
      [{ balancer: 'http://lb:8080/authz' }, /for balancer/],
      [{ balancer: 8080 }, /for balancer but received number 8080/],
      [{ path: 'authz' }, /for path but received string "authz"/],
      [{ path: '/authz/' }, /for path/],
      [{ userId: 'kiosk 7' }, /for userId but received string "kiosk 7"/],
      [{ key: randomBytes(16) }, 'expected a 32-byte key for key but received 16 bytes'],
      [{ key: KEY.toString('hex') }, /^expected a 32-byte key \(Uint8Array\) for key/],
      [{ format: 'xml' }, /^expected 'json' or 'msgpack' for format/],
      [{ timeoutMs: 0 }, /for timeoutMs but received number 0/],
      [{ localAddress: 'eth0' }, /for localAddress but received string "eth0"/],
      [{ tls: { ca: 'x' } }, /tls options were given but balancer .* is not https/],
      [{ retries: 3 }, /^unknown option 'retries' in authorize\(\) options/],
    ];
    for (const [change, message] of cases) expect(() => authorize({ ...options(), ...change } as AuthorizeOptions), JSON.stringify(change)).toThrow(message);
  });

  it('formats the Authorization header for HTTP servers', () => {
    const code = randomBytes(32);
    expect(authorizationHeader({ code })).toBe(`Tether-Code ${code.toString('base64url')}`);
  });
});

describe('connect', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makePki(['localhost']);
  });
  afterAll(() => pki.cleanup());

  const servers: tls.Server[] = [];
  const sockets = new Set<Socket>();
  afterEach(async () => {
    for (const s of sockets) s.destroy();
    for (const s of servers.splice(0)) await new Promise<void>((resolve) => s.close(() => resolve()));
  });

  /** A TLS server that reads the code line and answers with `answer(line)` (null: says nothing). */
  async function codeServer(answer: (line: string, socket: tls.TLSSocket) => void): Promise<number> {
    const server = tls.createServer(pki.leaf('localhost'), (socket) => {
      socket.on('error', () => {});
      let text = '';
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        const nl = text.indexOf('\n');
        if (nl !== -1) {
          socket.removeAllListeners('data');
          answer(text.slice(0, nl + 1), socket);
        }
      });
    });
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    return (server.address() as AddressInfo).port;
  }

  const grantFor = (port: number): TerminalGrant => ({ user: USER, nT: randomBytes(16), nB: randomBytes(56), code: randomBytes(32), server: { ...SERVER, address: '127.0.0.1', port }, expiresAt: Date.now() + 30_000 });
  const tlsOptions = (): tls.ConnectionOptions => ({ ca: pki.ca, servername: 'localhost' });

  it('sends the code line and resolves after TETHER-OK, keeping what the server sent after it', async () => {
    let seenLine = '';
    const port = await codeServer((line, socket) => {
      seenLine = line;
      socket.write('TETHER-OK\r\nwelcome\n');
    });
    const grant = grantFor(port);
    const socket = await connect({ grant, tls: tlsOptions() });
    expect(seenLine).toBe(`TETHER-CODE ${Buffer.from(grant.code).toString('base64url')}\r\n`);
    const first = await new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
    expect(first).toBe('welcome\n');
    socket.destroy();
  });

  it("rejects with the server's TETHER-DENIED reason", async () => {
    const port = await codeServer((_line, socket) => socket.end('TETHER-DENIED used\r\n'));
    expect(await authzError(connect({ grant: grantFor(port), tls: tlsOptions() }))).toMatchObject({ code: 'used', message: `127.0.0.1:${port} refused the code: used` });
  });

  it("rejects any other answer as 'bad_reply' and a close without one as 'connection_closed'", async () => {
    const garbage = await codeServer((_line, socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    expect((await authzError(connect({ grant: grantFor(garbage), tls: tlsOptions() }))).code).toBe('bad_reply');
    const silent = await codeServer((_line, socket) => socket.end());
    expect((await authzError(connect({ grant: grantFor(silent), tls: tlsOptions() }))).code).toBe('connection_closed');
  });

  it("rejects with 'timeout' when the server never answers the code", async () => {
    const port = await codeServer(() => {});
    expect(await authzError(connect({ grant: grantFor(port), tls: tlsOptions(), timeoutMs: 500 }))).toMatchObject({ code: 'timeout', message: expect.stringContaining('did not answer the code within 500 ms') });
  });

  it("rejects an untrusted certificate as 'tls_error' and a closed port as 'connect_failed'", async () => {
    const port = await codeServer((_line, socket) => socket.write('TETHER-OK\r\n'));
    expect((await authzError(connect({ grant: grantFor(port), tls: { servername: 'localhost' } }))).code).toBe('tls_error');
    await new Promise<void>((resolve) => servers.pop()!.close(() => resolve()));
    expect((await authzError(connect({ grant: grantFor(port), tls: tlsOptions() }))).code).toBe('connect_failed');
  });

  it('validates options up front', () => {
    const grant = grantFor(1);
    expect(() => connect({ grant: { ...grant, code: randomBytes(31) } })).toThrow(/^expected a grant from authorize\(\)/);
    expect(() => connect({ grant: { ...grant, server: { ...grant.server, port: 0 } } })).toThrow(/for grant.server.port but received number 0/);
    expect(() => connect({ grant, timeoutMs: -1 })).toThrow(/for timeoutMs/);
    expect(() => connect({ grant, tlsOptions: {} } as never)).toThrow(/^unknown option 'tlsOptions'/);
  });
});
