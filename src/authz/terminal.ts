// The terminal SDK of the authorization handshake (DESIGN.md "Authorization handshake",
// src/authz/protocol.ts): authorize() asks the balancer for a one-time code for an app server,
// connect() presents it to that server over TLS. Only node:http(s), node:tls and node:crypto.
//
//   import { authorize, connect } from './authz/terminal.js';
//
//   const grant = await authorize({ balancer: 'https://lb:8443', userId: 'kiosk-7', key });
//   const socket = await connect({ grant, tls: { ca, servername: 'app.internal' } });
//   socket.write('hello\n');          // the application protocol, on the authorized socket
//
// The code exchange, after the TLS handshake (one line each way, ASCII, at most 256 bytes):
//
//   T → S   TETHER-CODE <code: 43 base64url chars>\r\n
//   S → T   TETHER-OK\r\n                         then the application protocol
//        or TETHER-DENIED <reason>\r\n            then S closes; reason: malformed,
//                                                  unknown_code, wrong_address, expired,
//                                                  used, timeout
//
// For HTTP servers behind the verifier, send `Authorization: Tether-Code <code>` instead
// (authorizationHeader()) on the first request of the connection.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import tls from 'node:tls';
import { pack, unpack } from 'msgpackr';

import { describeValue } from '../native/index.js';
import { decodeBase64UrlStrict, referenceHmacSha256 } from '../native/reference.js';
import {
  CHALLENGE_BYTES,
  CODE_BYTES,
  CODE_LINE_PREFIX,
  NONCE_T_BYTES,
  SALT_BYTES,
  TERMINAL_KEY_BYTES,
  b64u,
  fromB64u,
  isUserId,
  open,
  proofInput,
  terminalBoxInfo,
  type TerminalGrant,
} from './protocol.js';

export type { TerminalGrant } from './protocol.js';

export const DEFAULT_AUTHZ_PATH = '/_tether/authz';
export const DEFAULT_AUTHORIZE_TIMEOUT_MS = 10_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Either line of the code exchange, terminator included, is at most this long. */
export const MAX_CODE_EXCHANGE_LINE_BYTES = 256;
/** The server's answer when it accepts the code. */
export const OK_LINE = 'TETHER-OK';
/** The server's answer when it refuses the code: `TETHER-DENIED <reason>`. */
export const DENIED_LINE_PREFIX = 'TETHER-DENIED ';
/** A balancer answer larger than this is not one (the largest is a few hundred bytes). */
const MAX_REPLY_BYTES = 64 * 1024;
const MAX_TIMEOUT_MS = 600_000;
const ERROR_CODE = /^[a-z][a-z0-9_]{0,63}$/;

/**
 * Why authorize() or connect() failed. `code` is the balancer's (bad_request, denied,
 * rate_limited, no_server, unavailable; `status` is then the HTTP status), the server's
 * TETHER-DENIED reason (malformed, unknown_code, wrong_address, expired, used, timeout), or the
 * SDK's own: 'timeout', 'connect_failed', 'tls_error', 'connection_closed', 'bad_reply',
 * 'http_error' (an error status without a Tether error body).
 */
export class AuthzError extends Error {
  readonly code: string;
  readonly status?: number;
  constructor(code: string, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AuthzError';
    this.code = code;
    if (options.status !== undefined) this.status = options.status;
  }
}

// ---------------------------------------------------------------------------------------------
// Option checks: "expected … for … but received …", thrown before anything starts.

function expected(what: string, name: string, value: unknown, Err: typeof TypeError = RangeError): Error {
  return new Err(`expected ${what} for ${name} but received ${describeValue(value)}`);
}

function checkKeys(value: object, allowed: readonly string[], name: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw new RangeError(`unknown option '${key}' in ${name} (expected one of ${allowed.join(', ')})`);
  }
}

function checkTimeout(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw expected(`an integer 1-${MAX_TIMEOUT_MS}`, name, value, TypeError);
  if (!Number.isInteger(value) || value < 1 || value > MAX_TIMEOUT_MS) throw expected(`an integer 1-${MAX_TIMEOUT_MS}`, name, value);
  return value;
}

function checkLocalAddress(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw expected('an IPv4 or IPv6 address', 'localAddress', value, TypeError);
  if (isIP(value) === 0) throw expected('an IPv4 or IPv6 address', 'localAddress', value);
  return value;
}

function checkObject(value: unknown, what: string, name: string): object | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object') throw expected(what, name, value, TypeError);
  return value;
}

// ---------------------------------------------------------------------------------------------
// authorize(): hello, proof, open the grant.

export interface AuthorizeOptions {
  /** The balancer's origin: http://host:port or https://host:port (no path). */
  balancer: string;
  /** The handshake's path prefix on the balancer; default '/_tether/authz'. */
  path?: string;
  userId: string;
  /** The terminal's 32-byte pre-shared key K_T. */
  key: Uint8Array;
  /** Request body encoding; default 'json'. */
  format?: 'json' | 'msgpack';
  /** Deadline of the whole handshake (both requests); default 10000. */
  timeoutMs?: number;
  /** The local address to connect from. */
  localAddress?: string;
  /** For an https:// balancer: ca, servername, client certificate, … */
  tls?: tls.ConnectionOptions;
}

const AUTHORIZE_OPTIONS = ['balancer', 'path', 'userId', 'key', 'format', 'timeoutMs', 'localAddress', 'tls'] as const;
const PATH = /^(\/[A-Za-z0-9._~-]+)+$/;

interface ResolvedAuthorize {
  origin: URL;
  path: string;
  userId: string;
  key: Uint8Array;
  format: 'json' | 'msgpack';
  timeoutMs: number;
  localAddress: string | undefined;
  tls: tls.ConnectionOptions | undefined;
}

function resolveAuthorizeOptions(o: AuthorizeOptions): ResolvedAuthorize {
  if (o === null || typeof o !== 'object') throw expected('an options object', 'options', o, TypeError);
  checkKeys(o, AUTHORIZE_OPTIONS, 'authorize() options');
  const origin = (() => {
    const what = 'an http:// or https:// origin without a path (e.g. http://balancer:8080)';
    if (typeof o.balancer !== 'string') throw expected(what, 'balancer', o.balancer, TypeError);
    let url: URL;
    try {
      url = new URL(o.balancer);
    } catch {
      throw expected(what, 'balancer', o.balancer);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '') throw expected(what, 'balancer', o.balancer);
    return url;
  })();
  const path = o.path ?? DEFAULT_AUTHZ_PATH;
  if (typeof path !== 'string') throw expected('a path such as /_tether/authz', 'path', path, TypeError);
  if (!PATH.test(path)) throw expected("a path of '/'-separated segments without a trailing '/' (e.g. /_tether/authz)", 'path', path);
  if (typeof o.userId !== 'string') throw expected('a user id', 'userId', o.userId, TypeError);
  if (!isUserId(o.userId)) throw expected("a user id of 1-128 letters, digits, '.', '_', '@' or '-' (starting with a letter or digit)", 'userId', o.userId);
  if (!(o.key instanceof Uint8Array)) throw expected(`a ${TERMINAL_KEY_BYTES}-byte key (Uint8Array)`, 'key', o.key, TypeError);
  if (o.key.length !== TERMINAL_KEY_BYTES) throw new RangeError(`expected a ${TERMINAL_KEY_BYTES}-byte key for key but received ${o.key.length} bytes`);
  const format = o.format ?? 'json';
  if (format !== 'json' && format !== 'msgpack') throw expected("'json' or 'msgpack'", 'format', format);
  const tlsOptions = checkObject(o.tls, 'a tls.ConnectionOptions object', 'tls') as tls.ConnectionOptions | undefined;
  if (tlsOptions !== undefined && origin.protocol !== 'https:') throw new RangeError(`tls options were given but balancer ${o.balancer} is not https://`);
  return {
    origin,
    path,
    userId: o.userId,
    key: Buffer.from(o.key),
    format,
    timeoutMs: checkTimeout(o.timeoutMs, 'timeoutMs', DEFAULT_AUTHORIZE_TIMEOUT_MS),
    localAddress: checkLocalAddress(o.localAddress),
    tls: tlsOptions,
  };
}

/**
 * Runs the handshake with the balancer and returns the grant: which server to connect to and
 * the one-time code to present there. Bad options throw at once (TypeError/RangeError, naming
 * the option); after that it rejects only with an AuthzError, 'timeout' once `timeoutMs` passed.
 */
export function authorize(o: AuthorizeOptions): Promise<TerminalGrant> {
  return runHandshake(resolveAuthorizeOptions(o));
}

async function runHandshake(r: ResolvedAuthorize): Promise<TerminalGrant> {
  const { userId: user } = r;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), r.timeoutMs);
  // One connection for both requests: they are sent back to back.
  const agentOptions = { keepAlive: true, maxSockets: 1, ...(r.localAddress === undefined ? {} : { localAddress: r.localAddress }) };
  const agent = r.origin.protocol === 'https:' ? new https.Agent({ ...r.tls, ...agentOptions }) : new http.Agent(agentOptions);
  const post = (step: 'hello' | 'proof', body: Record<string, unknown>): Promise<Record<string, unknown>> =>
    postMessage(new URL(`${r.path}/${step}`, r.origin), step, body, r.format, agent, deadline.signal, r.timeoutMs);
  try {
    const nT = randomBytes(NONCE_T_BYTES);
    const challenge = await post('hello', { user, nT });
    const nB = bytesField(challenge, 'nB', CHALLENGE_BYTES, 'hello');
    if (challenge.user !== user || !bytesField(challenge, 'nT', NONCE_T_BYTES, 'hello').equals(nT)) throw new AuthzError('bad_reply', `the balancer's challenge does not echo user '${user}' and our nT`);

    const proof = referenceHmacSha256(r.key, proofInput(user, nT, nB));
    const reply = await post('proof', { user, nT, nB, proof });
    const f = bytesField(reply, 'f', SALT_BYTES, 'proof');
    const box = bytesField(reply, 'box', null, 'proof');
    const grant = readTerminalGrant(open(r.key, f, terminalBoxInfo(), box));
    if (grant === null) throw new AuthzError('bad_reply', "the balancer's grant does not open under this terminal's key (or is not a grant)");
    if (grant.user !== user || !Buffer.from(grant.nT).equals(nT) || !Buffer.from(grant.nB).equals(nB)) throw new AuthzError('bad_reply', "the balancer's grant does not echo this handshake's user, nT and nB");
    return grant;
  } catch (err) {
    if (deadline.signal.aborted) throw new AuthzError('timeout', `no authorization from ${r.origin.origin} within ${r.timeoutMs} ms`, { cause: err });
    throw err;
  } finally {
    clearTimeout(timer);
    agent.destroy();
  }
}

/** The value of an `Authorization` header presenting `grant`'s code to an HTTP server. */
export function authorizationHeader(grant: Pick<TerminalGrant, 'code'>): string {
  return `Tether-Code ${b64u(grant.code)}`;
}

/** JSON: byte fields as base64url without padding; msgpack: as bin. */
function encodeBody(body: Record<string, unknown>, format: 'json' | 'msgpack'): Buffer {
  if (format === 'msgpack') return pack(body);
  const json: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) json[k] = v instanceof Uint8Array ? b64u(v) : v;
  return Buffer.from(JSON.stringify(json));
}

/** A byte field of a balancer answer, decoded by the answer's format; `len` null: any length ≥ 1. */
function bytesField(body: Record<string, unknown>, name: string, len: number | null, step: string): Buffer {
  const v = body[name];
  let bytes: Buffer | null = null;
  if (v instanceof Uint8Array) bytes = len === null || v.length === len ? Buffer.from(v) : null;
  else if (typeof v === 'string') bytes = len === null ? decodeBase64UrlStrict(v) : fromB64u(v, len);
  if (bytes === null || bytes.length === 0) throw new AuthzError('bad_reply', `the balancer's answer to ${step} has no ${len === null ? '' : `${len}-byte `}\`${name}\``);
  return bytes;
}

/** The opened box → a TerminalGrant, or null if it is not one. */
function readTerminalGrant(v: unknown): TerminalGrant | null {
  if (v === null || typeof v !== 'object') return null;
  const g = v as Record<string, unknown>;
  const s = g.server as Record<string, unknown> | null | undefined;
  const bytes = (x: unknown, len: number): x is Uint8Array => x instanceof Uint8Array && x.length === len;
  if (typeof g.user !== 'string' || !bytes(g.nT, NONCE_T_BYTES) || !bytes(g.nB, CHALLENGE_BYTES) || !bytes(g.code, CODE_BYTES)) return null;
  if (typeof g.expiresAt !== 'number' || !Number.isFinite(g.expiresAt) || s === null || typeof s !== 'object') return null;
  if (typeof s.id !== 'string' || typeof s.pool !== 'string' || typeof s.address !== 'string' || s.address === '') return null;
  if (typeof s.port !== 'number' || !Number.isInteger(s.port) || s.port < 1 || s.port > 65535) return null;
  return {
    user: g.user,
    nT: Buffer.from(g.nT),
    nB: Buffer.from(g.nB),
    code: Buffer.from(g.code),
    server: { id: s.id, pool: s.pool, address: s.address, port: s.port },
    expiresAt: g.expiresAt,
  };
}

/**
 * POSTs one handshake message; resolves with the 200 answer's body, rejects with an AuthzError
 * (the balancer's error code and status, 'connect_failed', 'bad_reply', 'http_error'). The
 * caller's `signal` ends it early (the caller turns that into 'timeout').
 */
function postMessage(url: URL, step: string, body: Record<string, unknown>, format: 'json' | 'msgpack', agent: http.Agent, signal: AbortSignal, timeoutMs: number): Promise<Record<string, unknown>> {
  const payload = encodeBody(body, format);
  const type = format === 'json' ? 'application/json' : 'application/msgpack';
  const request = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err: Error | null, value?: Record<string, unknown>): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      if (err === null) resolve(value!);
      else {
        req.destroy();
        reject(err);
      }
    };
    const onAbort = (): void => settle(new AuthzError('timeout', `no answer to ${step} from ${url.origin} within ${timeoutMs} ms`));
    signal.addEventListener('abort', onAbort, { once: true });
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': type, accept: type, 'content-length': payload.length } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_REPLY_BYTES) settle(new AuthzError('bad_reply', `the balancer's answer to ${step} exceeds ${MAX_REPLY_BYTES} bytes`, { status: res.statusCode }));
        else chunks.push(chunk);
      });
      res.on('error', (err) => settle(new AuthzError('connection_closed', `the answer to ${step} from ${url.origin} was cut off: ${err.message}`, { cause: err })));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const decoded = decodeAnswer(Buffer.concat(chunks), res.headers['content-type'] ?? '');
        if (status === 200) {
          if (decoded === null) settle(new AuthzError('bad_reply', `the balancer's answer to ${step} is not a JSON or msgpack map`, { status }));
          else settle(null, decoded);
          return;
        }
        const code = typeof decoded?.error === 'string' && ERROR_CODE.test(decoded.error) ? decoded.error : 'http_error';
        const detail = typeof decoded?.message === 'string' && decoded.message !== '' ? `: ${decoded.message.slice(0, 200)}` : '';
        settle(new AuthzError(code, `the balancer refused ${step} with ${status} ${code}${detail}`, { status }));
      });
    });
    req.on('error', (err) => settle(new AuthzError('connect_failed', `${step} to ${url.origin} failed: ${err.message}`, { cause: err })));
    req.end(payload);
  });
}

/** A JSON or msgpack map, by content-type; null when it is neither. */
function decodeAnswer(bytes: Buffer, contentType: string): Record<string, unknown> | null {
  let v: unknown;
  try {
    if (/^application\/msgpack\b/i.test(contentType)) v = unpack(bytes);
    else if (/^application\/json\b/i.test(contentType)) v = JSON.parse(bytes.toString('utf8'));
    else return null;
  } catch {
    return null;
  }
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array) ? (v as Record<string, unknown>) : null;
}

// ---------------------------------------------------------------------------------------------
// connect(): TLS to the granted server, present the code, wait for its answer.

export interface ConnectOptions {
  grant: TerminalGrant;
  /** ca, servername, client certificate, …; host and port come from the grant. */
  tls?: tls.ConnectionOptions;
  /** Deadline of TCP + TLS + the server's answer to the code; default 10000. */
  timeoutMs?: number;
  localAddress?: string;
}

const CONNECT_OPTIONS = ['grant', 'tls', 'timeoutMs', 'localAddress'] as const;

/**
 * Opens TLS to grant.server, sends the code line and resolves with the socket once the server
 * answered TETHER-OK (bytes the server sent after that line are still to be read from it).
 * Rejects with an AuthzError: the server's TETHER-DENIED reason, 'timeout', 'connect_failed',
 * 'tls_error' (handshake or certificate), 'connection_closed', 'bad_reply'.
 */
export function connect(o: ConnectOptions): Promise<tls.TLSSocket> {
  if (o === null || typeof o !== 'object') throw expected('an options object', 'options', o, TypeError);
  checkKeys(o, CONNECT_OPTIONS, 'connect() options');
  const grant = checkObject(o.grant, 'a grant from authorize()', 'grant') as TerminalGrant | undefined;
  const server = grant?.server;
  if (grant === undefined || !(grant.code instanceof Uint8Array) || grant.code.length !== CODE_BYTES || server === null || typeof server !== 'object') throw expected(`a grant from authorize() (with a ${CODE_BYTES}-byte code and a server)`, 'grant', o.grant, TypeError);
  if (typeof server.address !== 'string' || server.address === '') throw expected('a host name or address', 'grant.server.address', server.address);
  if (typeof server.port !== 'number' || !Number.isInteger(server.port) || server.port < 1 || server.port > 65535) throw expected('an integer 1-65535', 'grant.server.port', server.port);
  const tlsOptions = (checkObject(o.tls, 'a tls.ConnectionOptions object', 'tls') ?? {}) as tls.ConnectionOptions;
  const timeoutMs = checkTimeout(o.timeoutMs, 'timeoutMs', DEFAULT_CONNECT_TIMEOUT_MS);
  const localAddress = checkLocalAddress(o.localAddress);
  const where = `${server.address}:${server.port}`;
  const line = `${CODE_LINE_PREFIX}${b64u(grant.code)}\r\n`;

  return new Promise((resolve, reject) => {
    const socket = tls.connect({ ...tlsOptions, host: server.address, port: server.port, ...(localAddress === undefined ? {} : { localAddress }) });
    let stage: 'tcp' | 'tls' | 'answer' = 'tcp';
    let settled = false;
    const fail = (err: AuthzError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new AuthzError('timeout', `${where} did not ${stage === 'answer' ? 'answer the code' : 'complete the connection'} within ${timeoutMs} ms`)), timeoutMs);
    const onError = (err: Error): void => {
      if (stage === 'tcp') fail(new AuthzError('connect_failed', `could not connect to ${where}: ${err.message}`, { cause: err }));
      else if (stage === 'tls') fail(new AuthzError('tls_error', `TLS with ${where} failed: ${err.message}`, { cause: err }));
      else fail(new AuthzError('connection_closed', `the connection to ${where} failed before it answered the code: ${err.message}`, { cause: err }));
    };
    socket.on('error', onError);
    socket.once('connect', () => (stage = 'tls'));
    socket.once('secureConnect', () => {
      stage = 'answer';
      socket.write(line);
      // No deadline of its own: when `timer` fires it destroys the socket, which ends the read.
      void readLine(socket, MAX_CODE_EXCHANGE_LINE_BYTES).then((r) => {
        if (settled) return;
        if (!r.ok) {
          if (r.why === 'too_long') fail(new AuthzError('bad_reply', `${where} answered the code with a line over ${MAX_CODE_EXCHANGE_LINE_BYTES} bytes`));
          else if (r.why === 'closed') fail(new AuthzError('connection_closed', `${where} closed the connection without answering the code`));
          return; // 'error' is reported by onError, 'timeout' cannot happen
        }
        if (r.line === OK_LINE) {
          settled = true;
          clearTimeout(timer);
          socket.off('error', onError);
          resolve(socket);
        } else if (r.line.startsWith(DENIED_LINE_PREFIX) && ERROR_CODE.test(r.line.slice(DENIED_LINE_PREFIX.length))) {
          const reason = r.line.slice(DENIED_LINE_PREFIX.length);
          fail(new AuthzError(reason, `${where} refused the code: ${reason}`));
        } else {
          fail(new AuthzError('bad_reply', `${where} answered the code with ${JSON.stringify(r.line.slice(0, 60))}, not ${OK_LINE} or ${DENIED_LINE_PREFIX}<reason>`));
        }
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// One line off a stream (shared with the server verifier).

export type LineResult = { ok: true; line: string } | { ok: false; why: 'too_long' | 'closed' | 'timeout' | 'error' };

/**
 * Reads one '\n'-terminated line (a '\r' before it is dropped) of at most `maxBytes` bytes,
 * terminator included, within `timeoutMs` if given. Bytes after the line are put back (unshift), so the
 * stream's next reader sees them; the stream is left paused. Never rejects; decodes latin1.
 */
export function readLine(stream: Readable, maxBytes: number, timeoutMs?: number): Promise<LineResult> {
  return new Promise((resolve) => {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (result: LineResult, rest?: Buffer): void => {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onClosed);
      stream.off('close', onClosed);
      stream.off('error', onError);
      if (rest !== undefined && rest.length > 0) stream.unshift(rest);
      resolve(result);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = stream.read() as Buffer | null) !== null) {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        const nl = buffered.indexOf(0x0a);
        if (nl !== -1 && nl < maxBytes) {
          const end = nl > 0 && buffered[nl - 1] === 0x0d ? nl - 1 : nl;
          finish({ ok: true, line: buffered.subarray(0, end).toString('latin1') }, buffered.subarray(nl + 1));
          return;
        }
        if (buffered.length >= maxBytes) {
          finish({ ok: false, why: 'too_long' });
          return;
        }
      }
    };
    const onClosed = (): void => finish({ ok: false, why: 'closed' });
    const onError = (): void => finish({ ok: false, why: 'error' });
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => finish({ ok: false, why: 'timeout' }), timeoutMs);
    stream.on('readable', onReadable);
    stream.once('end', onClosed);
    stream.once('close', onClosed);
    stream.once('error', onError);
  });
}
