// The server verifier of the authorization handshake (DESIGN.md "Authorization handshake",
// src/authz/protocol.ts): announces this app server over the control channel (sdk.ts), receives
// the balancer's sealed grants there, and accepts each grant's code once, only from the
// terminal's address, only until it expires. The code exchange on the wire is drawn in
// terminal.ts; tlsServer() speaks it, httpGuard() takes the code from an Authorization header.
//
//   const verifier = startVerifier({ control: 'ws://lb:9090/control', pool: 'kiosk', id: 's1', key, port: 7000 });
//   verifier.tlsServer({ key: pem, cert }, (socket, grant) => serve(socket, grant.user)).listen(7000);
//
// A grant travels balancer → S while the balancer's answer travels balancer → T, so T may
// present a code before S has it: verify() waits up to graceMs for an unknown code. A replayed
// grant frame changes nothing: a code already held is not replaced (its used mark stays), and
// one expired is dropped.
import type http from 'node:http';
import { BlockList, isIP, type Socket } from 'node:net';
import tls from 'node:tls';

import { describeValue } from '../native/index.js';
import { AGENT_KEY_BYTES } from '../control/frames.js';
import { normalizeAddress, startAgent, type Agent, type AgentEvent, type Announced } from '../control/sdk.js';
import { CODE_BYTES, CODE_LINE_PREFIX, SALT_BYTES, b64u, fromB64u, isUserId, open, serverBoxInfo, type ServerGrant } from './protocol.js';
import { DENIED_LINE_PREFIX, MAX_CODE_EXCHANGE_LINE_BYTES, OK_LINE, readLine } from './terminal.js';

export type { ServerGrant } from './protocol.js';

export const DEFAULT_GRACE_MS = 2_000;
export const DEFAULT_MAX_CODES = 100_000;
export const DEFAULT_LINE_TIMEOUT_MS = 5_000;
/** An expired code is remembered this long, so a late terminal hears 'expired', not 'unknown_code'. */
const EXPIRED_RETENTION_MS = 5_000;
const SWEEP_MS = 1_000;
const MAX_TIMEOUT_MS = 600_000;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const AUTHORIZATION = /^Tether-Code[ \t]+([A-Za-z0-9_-]+)[ \t]*$/i;

export type DenyCode = 'malformed' | 'unknown_code' | 'wrong_address' | 'expired' | 'used';
export type VerifyResult = { ok: true; user: string; grant: ServerGrant } | { ok: false; code: DenyCode };

/** Why a grant was not taken: its box did not open, it was not a grant, names another server or pool, had expired, or its code was already held (a replayed frame). */
export type GrantDrop = 'malformed' | 'does_not_open' | 'wrong_server' | 'expired' | 'duplicate';

export type VerifierEvent =
  /** A grant was taken: its code is now accepted from `terminal` until `expiresAt`. */
  | { type: 'grant'; user: string; terminal: string; expiresAt: number }
  | { type: 'grant_dropped'; reason: GrantDrop; detail: string }
  /** maxCodes was reached: the oldest code was forgotten to make room. */
  | { type: 'code_evicted'; user: string }
  | { type: 'verified'; user: string; remoteAddress: string }
  /** A code refused; `code` also 'timeout' when a connection sent no code line in time. */
  | { type: 'denied'; code: DenyCode | 'timeout' | 'missing_code'; remoteAddress: string }
  /** A TLS handshake or connection failed before the connection was authorized. */
  | { type: 'connection_error'; remoteAddress: string; error: Error }
  /** What the control-channel agent reported (connected, announced, disconnected, …). */
  | { type: 'agent'; event: AgentEvent };

export interface VerifierOptions {
  /** The balancer's control channel, e.g. ws://balancer:9090/control. */
  control: string;
  pool: string;
  /** This server's backend id in the pool. */
  id: string;
  /** The pool's 32-byte agent key (MACs control frames; grants are sealed under it). */
  key: Uint8Array;
  /** The port terminals connect to (announced). */
  port: number;
  /** The address to announce; default the control connection's local address. */
  address?: string;
  /** How long verify() waits for the grant of an unknown code; default 2000. */
  graceMs?: number;
  /** Codes held at most; past it the oldest is dropped. Default 100000. */
  maxCodes?: number;
  /** tlsServer(): TLS handshake and code line deadline, each; default 5000. */
  lineTimeoutMs?: number;
  /** Called synchronously; an exception thrown by it is ignored. */
  onEvent?: (event: VerifierEvent) => void;
}

export interface Verifier {
  /** The control-channel agent: it announces this server, heartbeats, receives grants. */
  readonly agent: Agent;
  /** The first announce was acked (agent.ready). */
  readonly ready: Promise<Announced>;
  /** Accepts a code once, only from grant.terminal, only before grant.expiresAt; waits up to graceMs for a grant not yet arrived. */
  verify(code: Uint8Array | string, remoteAddress: string): Promise<VerifyResult>;
  /** Feeds a grant frame's body (what the agent's onMessage does); true if its code was taken. */
  acceptGrant(msg: { f: Uint8Array; box: Uint8Array }): boolean;
  /**
   * A node:tls server that reads the code line from each connection (lineTimeoutMs, at most 256
   * bytes), verifies it against the socket's remote address, answers TETHER-OK or
   * TETHER-DENIED <code>, and hands authorized sockets to onAuthorized, which owns them from
   * then on (attach an 'error' listener). The caller listens and closes it.
   */
  tlsServer(options: tls.TlsOptions, onAuthorized: (socket: tls.TLSSocket, grant: ServerGrant) => void): tls.Server;
  /**
   * For an HTTP(S) server: until a request on a connection carries an accepted
   * `Authorization: Tether-Code <code>`, requests on it are answered 401 (JSON {error, message});
   * after that, every request on that connection is passed to `handler`.
   */
  httpGuard(handler: http.RequestListener): http.RequestListener;
  /** The grant that authorized a connection (tlsServer or httpGuard), if any. */
  grantOf(socket: Socket): ServerGrant | undefined;
  /** Stops the sweep, answers waiting verify() calls, closes the agent. Servers are the caller's. */
  close(): Promise<void>;
}

interface Held {
  grant: ServerGrant;
  used: boolean;
}

function expected(what: string, name: string, value: unknown, Err: typeof TypeError = RangeError): Error {
  return new Err(`expected ${what} for ${name} but received ${describeValue(value)}`);
}

function checkInt(value: unknown, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw expected(`an integer ${min}-${max}`, name, value, TypeError);
  if (!Number.isInteger(value) || value < min || value > max) throw expected(`an integer ${min}-${max}`, name, value);
  return value;
}

const VERIFIER_OPTIONS = ['control', 'pool', 'id', 'key', 'port', 'address', 'graceMs', 'maxCodes', 'lineTimeoutMs', 'onEvent'] as const;

/** Validates `o` (throws naming the option) and starts the agent; see the top of this file. */
export function startVerifier(o: VerifierOptions): Verifier {
  if (o === null || typeof o !== 'object') throw expected('an options object', 'options', o, TypeError);
  for (const k of Object.keys(o)) {
    if (!(VERIFIER_OPTIONS as readonly string[]).includes(k)) throw new RangeError(`unknown option '${k}' in verifier options (expected one of ${VERIFIER_OPTIONS.join(', ')})`);
  }
  // Checked here: what the grant box names, and `control` (startAgent calls it url); port and address by startAgent.
  const controlOk = typeof o.control === 'string' && URL.canParse(o.control) && /^wss?:$/.test(new URL(o.control).protocol);
  if (!controlOk) throw expected('a ws:// or wss:// URL (e.g. ws://balancer:9090/control)', 'control', o.control, typeof o.control === 'string' ? RangeError : TypeError);
  if (typeof o.pool !== 'string' || !NAME.test(o.pool)) throw expected("a pool name of 1-64 letters, digits, '.', '_' or '-'", 'pool', o.pool);
  if (typeof o.id !== 'string' || !NAME.test(o.id)) throw expected("an id of 1-64 letters, digits, '.', '_' or '-'", 'id', o.id);
  if (!(o.key instanceof Uint8Array) || o.key.length !== AGENT_KEY_BYTES) throw expected(`a ${AGENT_KEY_BYTES}-byte key (Uint8Array)`, 'key', o.key, TypeError);
  if (o.onEvent !== undefined && typeof o.onEvent !== 'function') throw expected('a function', 'onEvent', o.onEvent, TypeError);
  return new CodeVerifier({
    ...o,
    key: Buffer.from(o.key),
    graceMs: checkInt(o.graceMs, 'graceMs', 0, MAX_TIMEOUT_MS, DEFAULT_GRACE_MS),
    maxCodes: checkInt(o.maxCodes, 'maxCodes', 1, 10_000_000, DEFAULT_MAX_CODES),
    lineTimeoutMs: checkInt(o.lineTimeoutMs, 'lineTimeoutMs', 1, MAX_TIMEOUT_MS, DEFAULT_LINE_TIMEOUT_MS),
  });
}

/** Same host? IPv4-mapped IPv6 is its IPv4 address; IPv6 compares by value, not spelling. */
function sameAddress(a: string, b: string): boolean {
  const x = normalizeAddress(a);
  const y = normalizeAddress(b);
  if (x === y) return true;
  if (isIP(x) !== 6 || isIP(y) !== 6) return false;
  try {
    const list = new BlockList();
    list.addAddress(x, 'ipv6');
    return list.check(y, 'ipv6');
  } catch {
    return false; // e.g. a zone index BlockList does not parse: only an exact match counts
  }
}

/** The opened box → a ServerGrant, or null if it is not one. */
function readServerGrant(v: unknown): ServerGrant | null {
  if (v === null || typeof v !== 'object') return null;
  const g = v as Record<string, unknown>;
  if (typeof g.server !== 'string' || typeof g.pool !== 'string' || !isUserId(g.user)) return null;
  if (!(g.code instanceof Uint8Array) || g.code.length !== CODE_BYTES || typeof g.terminal !== 'string' || isIP(normalizeAddress(g.terminal)) === 0) return null;
  if (typeof g.issuedAt !== 'number' || typeof g.expiresAt !== 'number' || !Number.isFinite(g.issuedAt) || !Number.isFinite(g.expiresAt)) return null;
  return { server: g.server, pool: g.pool, user: g.user, code: Buffer.from(g.code), terminal: normalizeAddress(g.terminal), issuedAt: g.issuedAt, expiresAt: g.expiresAt };
}

type Resolved = VerifierOptions & Required<Pick<VerifierOptions, 'graceMs' | 'maxCodes' | 'lineTimeoutMs'>>;

class CodeVerifier implements Verifier {
  readonly agent: Agent;
  readonly ready: Promise<Announced>;
  readonly #o: Resolved;
  readonly #boxInfo: string;
  /** Codes by base64url, oldest first (Map order is insertion order). */
  readonly #codes = new Map<string, Held>();
  /** verify() calls waiting for a grant, by code. */
  readonly #waiting = new Map<string, Set<() => void>>();
  readonly #authorized = new WeakMap<Socket, ServerGrant>();
  /** httpGuard: a verification under way on a connection, which its later requests wait for. */
  readonly #verifying = new WeakMap<Socket, Promise<VerifyResult>>();
  readonly #sweep: NodeJS.Timeout;
  #closed = false;

  constructor(o: Resolved) {
    this.#o = o;
    this.#boxInfo = serverBoxInfo(o.pool, o.id);
    this.#sweep = setInterval(() => this.#sweepExpired(), SWEEP_MS);
    this.#sweep.unref();
    this.agent = startAgent({
      url: o.control,
      pool: o.pool,
      id: o.id,
      key: o.key,
      port: o.port,
      ...(o.address === undefined ? {} : { address: o.address }),
      onEvent: (event) => this.#emit({ type: 'agent', event }),
      onMessage: (msg) => {
        if (msg.type !== 'grant') return;
        this.acceptGrant({ f: msg.f as Uint8Array, box: msg.box as Uint8Array });
      },
    });
    this.ready = this.agent.ready;
  }

  acceptGrant(msg: { f: Uint8Array; box: Uint8Array }): boolean {
    const drop = (reason: GrantDrop, detail: string): false => {
      this.#emit({ type: 'grant_dropped', reason, detail });
      return false;
    };
    if (this.#closed) return false;
    if (msg === null || typeof msg !== 'object' || !(msg.f instanceof Uint8Array) || msg.f.length !== SALT_BYTES || !(msg.box instanceof Uint8Array)) {
      return drop('malformed', `a grant needs a ${SALT_BYTES}-byte f and a box`);
    }
    const opened = open(this.#o.key, msg.f, this.#boxInfo, msg.box);
    if (opened === null) return drop('does_not_open', `the box does not open as a grant for ${this.#o.pool}/${this.#o.id} under the pool key`);
    const grant = readServerGrant(opened);
    if (grant === null) return drop('malformed', 'the box opened but holds no server grant');
    if (grant.server !== this.#o.id || grant.pool !== this.#o.pool) return drop('wrong_server', `the grant names ${grant.pool}/${grant.server}, not ${this.#o.pool}/${this.#o.id}`);
    if (grant.expiresAt <= Date.now()) return drop('expired', `the grant for ${grant.user} expired ${Date.now() - grant.expiresAt} ms ago (clocks apart?)`);
    const key = b64u(grant.code);
    if (this.#codes.has(key)) return drop('duplicate', `the code for ${grant.user} is already held (a replayed grant)`);
    this.#codes.set(key, { grant, used: false });
    while (this.#codes.size > this.#o.maxCodes) {
      const [oldest, held] = this.#codes.entries().next().value!;
      this.#codes.delete(oldest);
      this.#emit({ type: 'code_evicted', user: held.grant.user });
    }
    this.#emit({ type: 'grant', user: grant.user, terminal: grant.terminal, expiresAt: grant.expiresAt });
    const waiters = this.#waiting.get(key);
    if (waiters !== undefined) for (const wake of waiters) wake();
    return true;
  }

  verify(code: Uint8Array | string, remoteAddress: string): Promise<VerifyResult> {
    const bytes = typeof code === 'string' ? fromB64u(code, CODE_BYTES) : code instanceof Uint8Array && code.length === CODE_BYTES ? code : null;
    if (bytes === null) return Promise.resolve(this.#decide(null, remoteAddress));
    const key = b64u(bytes);
    // Looked up before any await, so a grant taken after this call is found by the wait.
    if (this.#codes.has(key) || this.#closed || this.#o.graceMs === 0) return Promise.resolve(this.#decide(key, remoteAddress));
    return new Promise((resolve) => {
      const set = this.#waiting.get(key) ?? new Set();
      this.#waiting.set(key, set);
      const wake = (): void => {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0) this.#waiting.delete(key);
        resolve(this.#decide(key, remoteAddress));
      };
      const timer = setTimeout(wake, this.#o.graceMs);
      set.add(wake);
    });
  }

  /** The verdict for a code (null: malformed) at this moment; marks an accepted code used. */
  #decide(key: string | null, remoteAddress: string): VerifyResult {
    const held = key === null ? undefined : this.#codes.get(key);
    const deny = (code: DenyCode): VerifyResult => {
      this.#emit({ type: 'denied', code, remoteAddress });
      return { ok: false, code };
    };
    if (key === null) return deny('malformed');
    if (held === undefined) return deny('unknown_code');
    // Address first: a code presented from elsewhere is refused without being spent.
    if (!sameAddress(held.grant.terminal, remoteAddress)) return deny('wrong_address');
    if (Date.now() > held.grant.expiresAt) return deny('expired');
    if (held.used) return deny('used');
    held.used = true;
    this.#emit({ type: 'verified', user: held.grant.user, remoteAddress });
    return { ok: true, user: held.grant.user, grant: held.grant };
  }

  tlsServer(options: tls.TlsOptions, onAuthorized: (socket: tls.TLSSocket, grant: ServerGrant) => void): tls.Server {
    if (typeof onAuthorized !== 'function') throw expected('a function', 'onAuthorized', onAuthorized, TypeError);
    const server = tls.createServer({ handshakeTimeout: this.#o.lineTimeoutMs, ...options }, (socket) => void this.#admit(socket, onAuthorized));
    server.on('tlsClientError', (error, socket) => this.#emit({ type: 'connection_error', remoteAddress: normalizeAddress(socket.remoteAddress ?? ''), error }));
    return server;
  }

  /** One connection: code line → verdict line → onAuthorized, or a refusal and close. */
  async #admit(socket: tls.TLSSocket, onAuthorized: (socket: tls.TLSSocket, grant: ServerGrant) => void): Promise<void> {
    const remoteAddress = normalizeAddress(socket.remoteAddress ?? '');
    const onError = (error: Error): void => this.#emit({ type: 'connection_error', remoteAddress, error });
    socket.on('error', onError);
    /** `reported`: verify() already emitted the 'denied' event. */
    const refuse = (code: DenyCode | 'timeout', reported = false): void => {
      if (!reported) this.#emit({ type: 'denied', code, remoteAddress });
      if (socket.destroyed) return;
      socket.end(`${DENIED_LINE_PREFIX}${code}\r\n`);
      // A peer that never closes its side does not keep the socket.
      setTimeout(() => socket.destroy(), this.#o.lineTimeoutMs).unref();
    };
    const read = await readLine(socket, MAX_CODE_EXCHANGE_LINE_BYTES, this.#o.lineTimeoutMs);
    if (!read.ok) {
      if (read.why === 'timeout') refuse('timeout');
      else if (read.why === 'too_long') refuse('malformed');
      else socket.destroy();
      return;
    }
    if (!read.line.startsWith(CODE_LINE_PREFIX)) {
      refuse('malformed');
      return;
    }
    const result = await this.verify(read.line.slice(CODE_LINE_PREFIX.length), remoteAddress);
    if (!result.ok) {
      refuse(result.code, true);
      return;
    }
    if (socket.destroyed) return; // the terminal gave up while the grant was awaited; the code is spent
    this.#authorized.set(socket, result.grant);
    socket.write(`${OK_LINE}\r\n`);
    socket.off('error', onError);
    onAuthorized(socket, result.grant);
  }

  httpGuard(handler: http.RequestListener): http.RequestListener {
    if (typeof handler !== 'function') throw expected('a function', 'handler', handler, TypeError);
    return (req, res) => {
      const socket = req.socket;
      if (this.#authorized.has(socket)) {
        handler(req, res);
        return;
      }
      const remoteAddress = normalizeAddress(socket.remoteAddress ?? '');
      const unauthorized = (error: string, message: string): void => {
        const body = JSON.stringify({ error, message });
        res.writeHead(401, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'www-authenticate': 'Tether-Code' });
        res.end(body);
      };
      // A request sent while an earlier one on the connection is being verified waits for it.
      const earlier = this.#verifying.get(socket);
      const header = req.headers.authorization;
      if (earlier === undefined && header === undefined) {
        this.#emit({ type: 'denied', code: 'missing_code', remoteAddress });
        unauthorized('missing_code', 'the first request on a connection must carry Authorization: Tether-Code <code>');
        return;
      }
      const verdict = earlier ?? this.verify(AUTHORIZATION.exec(header ?? '')?.[1] ?? '', remoteAddress);
      if (earlier === undefined) this.#verifying.set(socket, verdict);
      void verdict.then((result) => {
        if (this.#verifying.get(socket) === verdict) this.#verifying.delete(socket);
        if (result.ok) this.#authorized.set(socket, result.grant);
        if (this.#authorized.has(socket)) handler(req, res);
        else if (!result.ok) unauthorized(result.code, `the code was refused: ${result.code}`);
      });
    };
  }

  grantOf(socket: Socket): ServerGrant | undefined {
    return this.#authorized.get(socket);
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      clearInterval(this.#sweep);
      // Waiting verify() calls answer now (unknown_code) rather than after their grace.
      for (const set of [...this.#waiting.values()]) for (const wake of [...set]) wake();
      this.#codes.clear();
    }
    await this.agent.close();
  }

  #sweepExpired(): void {
    const before = Date.now() - EXPIRED_RETENTION_MS;
    for (const [key, held] of this.#codes) if (held.grant.expiresAt < before) this.#codes.delete(key);
  }

  #emit(event: VerifierEvent): void {
    try {
      this.#o.onEvent?.(event);
    } catch {
      // The application's handler failed; verification must go on regardless.
    }
  }
}
