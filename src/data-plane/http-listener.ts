// The HTTP request path of one worker (DESIGN.md "HTTP request path"): the front door's handler
// copies the request out of its request object (valid during the call only), routes it to a pool, reads the route
// token, picks a backend, and hands the rest to an Exchange that streams the request to a
// pooled upstream connection and the response back, with backpressure both ways and a
// deadline on every wait.
import type { ClientRequest as HttpRequest, ClientResponse as HttpResponse } from './front-door/client.js';
import { chunkHeader, LAST_CHUNK, isToken, type ResponseHandlers } from './upstream/codec.js';
import { acquire, release, type UpstreamConnection, type UpstreamSink } from './upstream/pool.js';
import type { BackendRuntime, PoolRuntime, Runtime } from './runtime.js';
import { C, type WorkerCounters } from '../shared-memory/counters.js';
import { clock } from './clock.js';
import type { RouteTokens } from '../sticky/route-token.js';
import { getAllCookies, getCookie, mapCookie, parseSetCookie, removeCookie, replaceSetCookieValue, splitPrefixed } from '../sticky/cookies.js';
import { compareTableTag, compareTokenTag, describeTableTag, describeTokenTag, formatBindPolicy, tableBindFlags, type Terminal } from '../sticky/binding.js';
import type { AccessLog } from './access-log.js';
import { forwardedNode, forwardedValue, realClient } from './forwarding.js';
import { ENTRY_BOUND, ENTRY_KIND_MASK, ENTRY_LEARNED, ENTRY_REVOKED, ENTRY_SLIDING, type SessionStore } from '../sticky/sessions.js';

/** Request headers a proxy must not forward (RFC 9110 §7.6.1), plus the ones we rewrite. Names arrive lower-cased. */
function droppedRequestHeader(name: string): boolean {
  switch (name) {
    case 'te': case 'expect': case 'upgrade': case 'trailer': case 'keep-alive': case 'connection':
    case 'content-length': case 'proxy-connection': case 'transfer-encoding':
    case 'x-forwarded-for': case 'x-forwarded-host': case 'x-forwarded-proto': case 'x-real-ip': case 'forwarded':
      return true;
    default:
      return false;
  }
}
/** Response headers the front door writes itself or that are hop-by-hop; `lower` is the lower-cased name. */
function droppedResponseHeader(lower: string): boolean {
  switch (lower) {
    case 'date': case 'trailer': case 'upgrade': case 'connection': case 'keep-alive':
    case 'content-length': case 'proxy-connection': case 'transfer-encoding':
      return true;
    default:
      return false;
  }
}
/**
 * Lengths of the response header names onHead must recognise (the dropped ones and
 * set-cookie): any other name is passed through without lower-casing it first.
 */
const NOTABLE_RESPONSE_NAME_LENGTHS = new Uint8Array(32);
for (const n of ['date', 'trailer', 'upgrade', 'connection', 'keep-alive', 'content-length', 'proxy-connection', 'transfer-encoding', 'set-cookie']) {
  NOTABLE_RESPONSE_NAME_LENGTHS[n.length] = 1;
}
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** Past this much request body buffered before the upstream is ready, stop reading the client. */
const MAX_QUEUED_BODY = 256 * 1024;
const MAX_ATTEMPTS = 3;

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 204: 'No Content', 301: 'Moved Permanently', 302: 'Found', 304: 'Not Modified',
  400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout',
};
/** `200 OK` and friends, built once. */
const STATUS_LINE: Record<number, string> = Object.fromEntries(Object.entries(STATUS_TEXT).map(([code, text]) => [code, `${code} ${text}`]));

function statusLine(status: number, reason: string): string {
  return reason === STATUS_TEXT[status] ? STATUS_LINE[status]! : `${status} ${reason || STATUS_TEXT[status] || ''}`;
}

export interface ListenerContext {
  runtime: () => Runtime;
  tokens: RouteTokens;
  counters: WorkerCounters;
  /** In-flight exchanges, swept for deadlines. */
  active: ActiveExchanges;
  log: (level: 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** --access-log: one line per completed request; null when off. */
  accessLog?: AccessLog | null;
  workerIndex?: number;
  /** The shared session table (learn mode, bindings, revocations); null in tests that need none. */
  sessions: SessionStore | null;
}

/**
 * The in-flight exchanges of one worker: an array with swap-remove, each exchange holding its
 * own index, so add and delete are O(1) without a hash lookup on every request.
 */
export class ActiveExchanges {
  private readonly items: Exchange[] = [];

  get size(): number {
    return this.items.length;
  }

  add(ex: Exchange): void {
    if (ex.activeIndex >= 0) return;
    ex.activeIndex = this.items.length;
    this.items.push(ex);
  }

  /** True if `ex` was in the set. */
  delete(ex: Exchange): boolean {
    const i = ex.activeIndex;
    if (i < 0 || this.items[i] !== ex) return false;
    const last = this.items.pop()!;
    if (last !== ex) {
      this.items[i] = last;
      last.activeIndex = i;
    }
    ex.activeIndex = -1;
    return true;
  }

  /** Calls onDeadline on every exchange whose deadline is at or before `now`; they may leave the set meanwhile. */
  expire(now: number): void {
    // Backwards: an exchange that completes swaps the last one into its place, already visited.
    for (let i = this.items.length - 1; i >= 0; i--) {
      const ex = this.items[i];
      if (ex !== undefined && ex.deadline <= now) ex.onDeadline();
    }
  }
}

const enum Body { None, Length, Chunked }
const enum Phase { Connecting, Waiting, Streaming, Done }
const enum Out { None, Length, Stream }

/** Sticky outcome of reading the request's route token (or its learned session). */
interface StickyDecision {
  /** Backend index the token (or the learned session) named, or -1. */
  tokenBackend: number;
  /** Token presented was valid but old enough to refresh. */
  refresh: boolean;
  /** The valid token presented ('' if none): its binding, for the terminal check. */
  token: string;
  tokenFlags: number;
  tokenTag: Buffer | null;
  /** A token was presented but could not be used (for the access log). */
  invalid: boolean;
}

/** What the response side needs from the request's session handling. */
interface SessionContext {
  /** The requester's terminal under the pool's binding policy (null when the pool binds nothing). */
  terminal: Terminal | null;
  /** The application session ids the request carried (learn/prefix modes), to forget on a deleting Set-Cookie. */
  values: string[];
}

const NO_SESSION: SessionContext = Object.freeze({ terminal: null, values: [] as string[] }) as SessionContext;

/**
 * What handleRequest needs from the request headers, filled by collectHeader. One per thread,
 * reset per request and read synchronously: no closure and no object allocated per request.
 */
const H = {
  /** name, value, name, value… of the headers forwarded as they are. */
  flat: [] as string[],
  host: '',
  hostCount: 0,
  cookie: '',
  contentLength: '',
  clCount: 0,
  transferEncoding: '',
  xff: '',
  /** The first X-Forwarded-Proto / -Host, and every Forwarded: kept only from a trusted proxy. */
  xfProto: '',
  xfHost: '',
  forwarded: '',
  connection: '',
  bad: '',
};

function resetHeaders(): void {
  H.flat = [];
  H.host = '';
  H.hostCount = 0;
  H.cookie = '';
  H.contentLength = '';
  H.clCount = 0;
  H.transferEncoding = '';
  H.xff = '';
  H.xfProto = '';
  H.xfHost = '';
  H.forwarded = '';
  H.connection = '';
  H.bad = '';
}

function collectHeader(name: string, value: string): void {
  switch (name) {
    case 'host': H.host = value; H.hostCount++; break;
    case 'cookie': H.cookie = H.cookie ? `${H.cookie}; ${value}` : value; return; // re-emitted once
    case 'content-length': H.contentLength = value; if (++H.clCount > 1) H.bad ||= 'more than one Content-Length'; return;
    case 'transfer-encoding': H.transferEncoding = H.transferEncoding ? `${H.transferEncoding}, ${value}` : value; return;
    case 'x-forwarded-for': H.xff = H.xff ? `${H.xff}, ${value}` : value; return;
    case 'x-forwarded-proto': H.xfProto ||= value; return;
    case 'x-forwarded-host': H.xfHost ||= value; return;
    case 'forwarded': H.forwarded = H.forwarded ? `${H.forwarded}, ${value}` : value; return;
    case 'x-real-ip': return; // never believed: Tether sets its own
    case 'connection': H.connection = H.connection ? `${H.connection}, ${value}` : value; return;
  }
  H.flat.push(name, value);
}

/** Parses the request into an Exchange or answers it (400/503) directly. Never throws. */
export function handleRequest(ctx: ListenerContext, res: HttpResponse, req: HttpRequest): void {
  const counters = ctx.counters;
  clock.now = Date.now();
  counters.inc(C.requests);
  // HttpRequest is stack-allocated: copy everything now.
  const method = req.getCaseSensitiveMethod();
  const query = req.getQuery();
  const path = req.getUrl();
  const target = query ? `${path}?${query}` : path;
  resetHeaders();
  req.forEach(collectHeader);
  const flat = H.flat;
  const host = H.host;
  const cookie = H.cookie;
  const contentLength = H.contentLength;
  const clCount = H.clCount;
  const transferEncoding = H.transferEncoding;
  const xff = H.xff;
  const connection = H.connection;
  let bad = H.bad;
  const hostCount = H.hostCount;
  if (hostCount !== 1) bad ||= 'exactly one Host header is required';
  let body = Body.None;
  let length = 0;
  if (transferEncoding) {
    // The front door de-chunks `chunked`; anything else (gzip, chunked; identity) would leave us and the
    // backend disagreeing about where the body ends.
    if (transferEncoding.trim().toLowerCase() !== 'chunked') bad ||= `unsupported Transfer-Encoding '${transferEncoding}'`;
    if (clCount > 0) bad ||= 'both Content-Length and Transfer-Encoding';
    body = Body.Chunked;
  } else if (clCount === 1) {
    if (!/^\d{1,15}$/.test(contentLength)) bad ||= `invalid Content-Length '${contentLength}'`;
    length = Number(contentLength);
    body = length > 0 ? Body.Length : Body.None;
  }
  if (!isToken(method)) bad ||= 'invalid method';
  if (bad) {
    counters.inc(C.bad_requests);
    refuseFraming(ctx, res, bad);
    return;
  }

  const runtime = ctx.runtime();
  const pool = runtime.hasRoutes ? runtime.route(hostnameOf(host), path) : runtime.defaultPool;
  const peerIp = res.getRemoteAddress();
  // Forwarding headers are believed only from --trusted-proxies (./forwarding.ts); the client
  // they vouch for is the one binding, hashing and the access log see.
  const trusted = runtime.trustedProxies;
  const viaProxy = !trusted.none && trusted.trusts(peerIp);
  const clientIp = viaProxy ? realClient(peerIp, xff, trusted) : peerIp;

  // Sticky lookup (DESIGN step 3). Invalid tokens count and fall through to balancing.
  const sticky: StickyDecision = { tokenBackend: -1, refresh: false, token: '', tokenFlags: 0, tokenTag: null, invalid: false };
  let presented = '';
  let forwardCookie = cookie;
  const mode = pool.sticky;
  switch (mode.mode) {
    case 'cookie': {
      if (cookie) {
        const v = getCookie(cookie, mode.name);
        if (v !== undefined) {
          presented = v;
          forwardCookie = removeCookie(cookie, mode.name);
        }
      }
      break;
    }
    case 'prefix': {
      if (cookie) {
        const v = getCookie(cookie, mode.cookie);
        const split = v === undefined ? null : splitPrefixed(v);
        // Strip only what is structurally one of our tokens (even an expired one): an app
        // value that merely contains '~' reaches the backend untouched.
        if (split && readToken(ctx, pool, split.token, sticky)) {
          // The backend always sees exactly the value it set.
          forwardCookie = mapCookie(cookie, mode.cookie, (val) => {
            const s = splitPrefixed(val);
            return s && s.token === split.token ? s.appValue : val;
          });
        }
      }
      break;
    }
    case 'header': {
      // The first copy is the token; every copy is ours and none reaches the backend.
      for (let i = 0; i < flat.length; ) {
        if (flat[i] === pool.headerLower) {
          presented ||= flat[i + 1]!;
          flat.splice(i, 2);
        } else {
          i += 2;
        }
      }
      break;
    }
    case 'learn':
    case 'none':
      break;
  }
  if (presented) readToken(ctx, pool, presented, sticky);

  // Sessions (DESIGN steps 3-4): learned routing, terminal binding, revocation.
  let session = NO_SESSION;
  if (pool.bind.kind !== 'none' || pool.sessionCookie || (sticky.token && ctx.sessions !== null && ctx.sessions.table.revocations() > 0)) {
    const terminal = pool.bind.kind === 'none' ? null : pool.terminals.get(clientIp, pool.bind.kind === 'header' ? headerValue(flat, pool.bind.header) : '');
    const values = pool.sessionCookie && cookie ? sessionValues(pool, cookie) : [];
    session = { terminal, values };
    const refusal = checkSession(ctx, pool, sticky, session);
    if (refusal !== null) {
      refuseSession(ctx, res, pool, refusal, clientIp, body !== Body.None);
      return;
    }
  }

  const ex = new Exchange(ctx, res, pool, method, body, sticky, session);
  // Head, minus framing and the backend-specific parts, built once for every attempt.
  let head = '';
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!;
    if (droppedRequestHeader(name)) continue;
    if (connection && connectionListed(connection, name)) continue;
    head += `${name}: ${flat[i + 1]}\r\n`;
  }
  if (forwardCookie) head += `cookie: ${forwardCookie}\r\n`;
  if (viaProxy) {
    head += `x-forwarded-for: ${xff ? `${xff}, ${peerIp}` : peerIp}\r\nx-forwarded-proto: ${H.xfProto || 'http'}\r\nx-forwarded-host: ${H.xfHost || host}\r\n`;
    head += `forwarded: ${H.forwarded ? `${H.forwarded}, ` : ''}for=${forwardedNode(peerIp)};host=${forwardedValue(host)};proto=http\r\n`;
  } else {
    head += `x-forwarded-for: ${peerIp}\r\nx-forwarded-proto: http\r\nx-forwarded-host: ${host}\r\nforwarded: for=${forwardedNode(peerIp)};host=${forwardedValue(host)};proto=http\r\n`;
  }
  head += `x-real-ip: ${clientIp}\r\n`;
  if (body === Body.Length) head += `content-length: ${length}\r\n`;
  else if (body === Body.Chunked) head += 'transfer-encoding: chunked\r\n';
  else if (clCount === 1) head += 'content-length: 0\r\n';
  ex.head = `${method} ${target} HTTP/1.1\r\n${head}\r\n`;
  ex.hashKey = hashKeyFor(pool, clientIp, flat, cookie);
  if (ctx.accessLog) ex.logged(clientIp, target);
  ex.start();
}

/** The Host header without its port, lower-cased (`[::1]:80` → `[::1]`). */
function hostnameOf(host: string): string {
  const colon = host.lastIndexOf(':');
  return (colon > 0 && host.indexOf(']') < colon ? host.slice(0, colon) : host).toLowerCase();
}

function connectionListed(connection: string, name: string): boolean {
  for (const t of connection.split(',')) if (t.trim().toLowerCase() === name) return true;
  return false;
}

function hashKeyFor(pool: PoolRuntime, clientIp: string, flat: string[], cookie: string): string {
  if (pool.balancer.kind !== 'consistent-hash') return '';
  if (pool.hashHeader) {
    for (let i = 0; i < flat.length; i += 2) if (flat[i] === pool.hashHeader) return flat[i + 1]!;
    return '';
  }
  if (pool.hashCookie) return (cookie && getCookie(cookie, pool.hashCookie)) || '';
  return clientIp;
}

/** The first value of a (lower-cased) request header, '' when absent. */
function headerValue(flat: string[], name: string): string {
  for (let i = 0; i < flat.length; i += 2) if (flat[i] === name) return flat[i + 1]!;
  return '';
}

/** Every value of the pool's session cookie, with a prefix-mode token stripped: the application's session ids. */
function sessionValues(pool: PoolRuntime, cookie: string): string[] {
  const values = getAllCookies(cookie, pool.sessionCookie);
  if (pool.sticky.mode === 'prefix') {
    for (let i = 0; i < values.length; i++) {
      const split = splitPrefixed(values[i]!);
      if (split) values[i] = split.appValue;
    }
  }
  return values;
}

interface Refusal {
  reason: 'terminal_mismatch' | 'revoked';
  /** Who the session was issued to (mismatch), for the alert. */
  issuedTo: string;
  session: string;
}

/**
 * Learned routing, binding and revocation for one request. Routing follows the first session
 * cookie (as getCookie); binding and revocation hold for every copy, so a duplicate cookie
 * cannot smuggle a session past the check. Returns why the request is refused, or null.
 */
function checkSession(ctx: ListenerContext, pool: PoolRuntime, sticky: StickyDecision, session: SessionContext): Refusal | null {
  const c = ctx.counters;
  const terminal = session.terminal;
  const store = ctx.sessions;
  const nowSec = Math.floor(clock.now / 1000);
  if (sticky.token) {
    if (terminal !== null && sticky.tokenTag !== null) {
      const verdict = compareTokenTag(pool.bind, sticky.tokenFlags, sticky.tokenTag, terminal);
      if (verdict === 'mismatch') {
        return { reason: 'terminal_mismatch', issuedTo: describeTokenTag(sticky.tokenFlags, sticky.tokenTag), session: `token ${sticky.token.slice(0, 12)}…` };
      }
      if (verdict === 'unbound') c.inc(C.binding_unverifiable);
    }
    if (store !== null && store.table.revocations() > 0 && pool.tokenFp !== null && store.lookup(pool.tokenFp, sticky.token, nowSec)) {
      if ((store.entry.flags & ENTRY_KIND_MASK) === ENTRY_REVOKED) return { reason: 'revoked', issuedTo: '', session: `token ${sticky.token.slice(0, 12)}…` };
    }
  }
  if (store === null || pool.sessionFp === null) return null;
  const learn = pool.sticky.mode === 'learn';
  // Prefix mode without binding keeps nothing in the table: only a revocation could be there.
  if (!learn && terminal === null && store.table.revocations() === 0) return null;
  const values = session.values;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!store.lookup(pool.sessionFp, v, nowSec)) {
      if (learn && i === 0) c.inc(C.learn_misses);
      continue;
    }
    const e = store.entry;
    const kind = e.flags & ENTRY_KIND_MASK;
    if (kind === ENTRY_REVOKED) return { reason: 'revoked', issuedTo: '', session: `session ${store.id(pool.sessionFp, v)}` };
    if (terminal !== null) {
      const verdict = compareTableTag(pool.bind, e.flags, e.tag, terminal);
      if (verdict === 'mismatch') return { reason: 'terminal_mismatch', issuedTo: describeTableTag(e.flags, e.tag), session: `session ${store.id(pool.sessionFp, v)}` };
      if (verdict === 'unbound') c.inc(C.binding_unverifiable);
    }
    if (learn && i === 0 && kind === ENTRY_LEARNED) {
      const index = pool.byRef.get(e.value);
      if (index === undefined) c.inc(C.sticky_backend_unknown);
      else {
        c.inc(C.learn_hits);
        sticky.tokenBackend = index;
        // A session cookie without a lifetime lives ttlSec past its last use: extend it once
        // it is half spent (one table write per half-ttl per session, not per request).
        const ttl = (pool.sticky as { ttlSec: number }).ttlSec;
        if ((e.flags & ENTRY_SLIDING) !== 0 && e.expiresAt - nowSec < ttl / 2) {
          store.put(pool.sessionFp, v, e.value, e.flags, e.tag, nowSec + ttl, nowSec);
        }
      }
    }
  }
  return null;
}

/**
 * Alerts logged per worker and second. A replay flood must not become a log flood (each log
 * line is a message to the main thread): past this, alerts are counted and one summary line
 * per second says how many were left out. The refusal counters stay exact.
 */
const ALERTS_PER_SECOND = 20;
const alerts = { second: 0, logged: 0, suppressed: 0 };

function alertAllowed(ctx: ListenerContext): boolean {
  const second = Math.floor(clock.now / 1000);
  if (second !== alerts.second) {
    alerts.second = second;
    alerts.logged = 0;
  }
  if (alerts.logged < ALERTS_PER_SECOND) {
    alerts.logged++;
    return true;
  }
  if (alerts.suppressed++ === 0) {
    setTimeout(() => {
      ctx.log('warn', 'session alerts left out (rate limit); the refusal counters have them all', { alert: 'alerts_suppressed', count: alerts.suppressed, perSecond: ALERTS_PER_SECOND });
      alerts.suppressed = 0;
    }, 1_000).unref();
  }
  return false;
}

/** 403 with a short JSON reason, an alert naming both terminals, and a counter; the backend never sees it. */
function refuseSession(ctx: ListenerContext, res: HttpResponse, pool: PoolRuntime, refusal: Refusal, presentedFrom: string, hasBody: boolean): void {
  const c = ctx.counters;
  const log = alertAllowed(ctx);
  if (refusal.reason === 'revoked') {
    c.inc(C.binding_refused_revoked);
    if (log) ctx.log('warn', 'revoked session presented', { alert: 'session_revoked', pool: pool.name, session: refusal.session, presentedFrom });
  } else {
    c.inc(C.binding_refused_terminal);
    if (log) {
      ctx.log('warn', 'session presented from another terminal', {
        alert: 'binding_mismatch',
        pool: pool.name,
        policy: formatBindPolicy(pool.bind),
        session: refusal.session,
        issuedTo: refusal.issuedTo,
        presentedFrom,
      });
    }
  }
  const bodyText = JSON.stringify({
    error: refusal.reason,
    message: refusal.reason === 'revoked' ? 'this session has been revoked' : 'this session was issued to another terminal',
  });
  c.inc(C.responses_4xx);
  const send = () =>
    res.cork(() => {
      res.writeStatus('403 Forbidden');
      res.writeHeader('content-type', 'application/json');
      res.writeHeader('cache-control', 'no-store');
      // A request body we will not read: close after answering, like any refused upload.
      res.end(`${bodyText}\n`, hasBody);
    });
  if (!hasBody) {
    send();
    return;
  }
  let aborted = false;
  res.onAborted(() => (aborted = true));
  setImmediate(() => {
    if (!aborted) send();
  });
}

/**
 * Opens a presented route token into `out`. Returns false when the string is not shaped like
 * one of our tokens at all (wrong length or encoding), true otherwise — valid or not.
 */
function readToken(ctx: ListenerContext, pool: PoolRuntime, token: string, out: StickyDecision): boolean {
  const r = ctx.tokens.read(pool.name, pool.sticky.mode, token);
  const c = ctx.counters;
  if (!r.ok) {
    out.invalid = true;
    switch (r.reason) {
      case 'malformed': case 'bad_payload': c.inc(C.sticky_invalid_malformed); break;
      case 'unknown_key': case 'retired_key': c.inc(C.sticky_invalid_unknown_key); break;
      case 'forged': c.inc(C.sticky_invalid_forged); break;
      case 'expired': case 'future': c.inc(C.sticky_invalid_expired); break;
      case 'retired_format': c.inc(C.sticky_invalid_old_format); break;
    }
    return r.reason !== 'malformed';
  }
  if (r.version === 1) c.inc(C.tokens_v1_presented);
  const index = pool.byId.get(r.backendId);
  // A valid token is checked for binding and revocation even if its backend is gone.
  out.token = token;
  out.tokenFlags = r.flags;
  out.tokenTag = r.bindingTag;
  if (index === undefined) {
    c.inc(C.sticky_backend_unknown);
    return true;
  }
  out.tokenBackend = index;
  // Sliding expiry: a token past half its life is re-issued so active clients never lapse. A
  // format-v1 token (from before the upgrade) is re-issued as v2 on its first response.
  out.refresh = r.version === 1 || (clock.now / 1000 - r.issuedAt) * 2 > ctx.runtime().config.tokenMaxAgeSec;
  return true;
}

/**
 * 400 for a request whose framing or Host we will not guess at, and the end of its connection.
 * The front door refuses ambiguous framing itself before dispatch; this is the second line.
 * The answer waits for the next tick, as it had to under uWS (which dispatched pipelined
 * requests synchronously); the front door dispatches one request at a time, so it is only a
 * tick later now. #19 leaves one of the two checks.
 */
function refuseFraming(ctx: ListenerContext, res: HttpResponse, why: string): void {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  setImmediate(() => {
    if (!aborted) respondError(ctx, res, 400, why, true);
  });
}

/** A short plain-text error naming the cause. */
function respondError(ctx: ListenerContext, res: HttpResponse, status: number, why: string, close: boolean): void {
  ctx.counters.inc(status >= 500 ? C.responses_5xx : C.responses_4xx);
  res.cork(() => {
    res.writeStatus(`${status} ${STATUS_TEXT[status] ?? ''}`);
    res.writeHeader('content-type', 'text/plain; charset=utf-8');
    res.end(`tether: ${why}\n`, close);
  });
}

/** One request's life from backend choice to the last response byte. */
export class Exchange implements UpstreamSink {
  head = '';
  hashKey = '';
  deadline = 0;
  /** Position in ActiveExchanges, -1 when not in flight. */
  activeIndex = -1;
  phase = Phase.Connecting;
  private backend: BackendRuntime | null = null;
  private conn: UpstreamConnection | null = null;
  private attempts = 0;
  /** Client gone (onAborted) or response finished: `res` must not be touched. */
  private resDone = false;
  private headSent = false;
  private stickyCounted = false;
  private status = 0;
  // Request body.
  private queue: Buffer[] = [];
  private queued = 0;
  private bodyEnded: boolean;
  private bodyStarted = false;
  private clientPaused = false;
  // Response body.
  private out = Out.None;
  private total = 0;
  private pending: Buffer[] = [];
  private pendingOffset = 0;
  /** Body bytes of a length-framed response the client side has taken (the write offset while nothing is pending). */
  private sent = 0;
  private upstreamPaused = false;
  private upstreamEnded = false;
  /** Chunked/close-delimited body parsed under cork, written once the cork scope ends (flushStream). */
  private streamed: Buffer[] = [];
  private streamedBytes = 0;
  private endAfterStream = false;
  private headOnly: boolean;
  // Access log (set only with --access-log).
  clientIp = '';
  path = '';
  /** Request in (access log only: 0 without it); request sent and response head (the latency histogram). */
  private startedAt = 0;
  private sentAt = 0;
  private headAt = 0;
  private bytesOut = 0;

  constructor(
    private readonly ctx: ListenerContext,
    private readonly res: HttpResponse,
    private readonly pool: PoolRuntime,
    private readonly method: string,
    private readonly body: Body,
    private readonly sticky: StickyDecision,
    private readonly session: SessionContext,
  ) {
    this.bodyEnded = body === Body.None;
    this.headOnly = method === 'HEAD';
    res.onAborted(() => this.onClientAborted());
    if (body !== Body.None) res.onData((chunk, isLast) => this.onClientData(chunk, isLast));
  }

  /** Choose a backend (sticky first, then the balancer) and connect. */
  start(): void {
    const pool = this.pool;
    let index = -1;
    const t = this.sticky.tokenBackend;
    // Hit or failover is counted once the serving backend is known (countSticky).
    if (t >= 0) {
      if (pool.isRoutable(t)) index = t;
    } else if (pool.sticky.mode !== 'none') {
      this.ctx.counters.inc(C.sticky_misses);
    }
    if (index < 0) index = pool.balancer.pick({ hashKey: this.hashKey }, -1);
    if (index < 0) {
      this.ctx.counters.inc(C.no_backend);
      this.finishWithError(503, `no healthy backend in pool '${pool.name}'`);
      return;
    }
    this.ctx.active.add(this);
    this.ctx.counters.inc(C.active_requests);
    this.connectTo(pool.backends[index]!);
  }

  private connectTo(backend: BackendRuntime): void {
    const ctx = this.ctx;
    const cfg = ctx.runtime().config;
    if (this.backend !== backend) {
      if (this.backend) ctx.counters.incBackend(this.backend.slot, 'active', -1);
      ctx.counters.incBackend(backend.slot, 'active');
      this.backend = backend;
    }
    this.attempts++;
    const conn = acquire(backend, cfg.limits.maxResponseHeaderBytes);
    if (!conn.connected) ctx.counters.inc(C.upstream_connections_opened);
    this.conn = conn;
    conn.sink = this;
    conn.parser.expect(this.method);
    this.phase = Phase.Connecting;
    this.deadline = clock.now + cfg.timeouts.connectMs;
    if (conn.connected) this.onConnected(conn);
  }

  onConnected(conn: UpstreamConnection): void {
    if (conn !== this.conn) return;
    const cfg = this.ctx.runtime().config;
    conn.uses++;
    this.ctx.counters.markBackendSuccess(this.backend!.slot);
    const socket = conn.socket;
    let ok: boolean;
    if (this.body === Body.None) {
      // The common case: one write, no stream cork bookkeeping.
      ok = socket.write(this.head, 'latin1');
    } else {
      socket.cork();
      ok = socket.write(this.head, 'latin1');
      for (const chunk of this.queue) ok = this.writeBody(chunk) && ok;
      this.queue = [];
      this.queued = 0;
      if (this.bodyEnded && this.body === Body.Chunked) ok = socket.write(LAST_CHUNK, 'latin1') && ok;
      socket.uncork();
    }
    this.bodyStarted = true;
    this.sentAt = performance.now();
    this.phase = Phase.Waiting;
    this.deadline = clock.now + (this.bodyEnded ? cfg.timeouts.responseMs : cfg.timeouts.idleMs);
    if (this.clientPaused && ok) this.resumeClient();
  }

  private writeBody(chunk: Buffer): boolean {
    const socket = this.conn!.socket;
    if (this.body === Body.Chunked) {
      socket.write(chunkHeader(chunk.length), 'latin1');
      socket.write(chunk);
      return socket.write('\r\n', 'latin1');
    }
    return socket.write(chunk);
  }

  private onClientData(view: Uint8Array, isLast: boolean): void {
    clock.now = Date.now();
    // Answered already (an error, or the backend replied early): the rest of the body has
    // nowhere to go, and must not pile up here.
    if (this.phase === Phase.Done) return;
    // The view is only valid during this call: copy it.
    const chunk = view.byteLength > 0 ? Buffer.from(view) : null;
    if (isLast) this.bodyEnded = true;
    const cfg = this.ctx.runtime().config;
    if (this.bodyStarted) {
      // Upstream already finished or failed (an early response): the rest is not needed.
      if (!this.conn) return;
      const socket = this.conn.socket;
      let ok = true;
      if (chunk) ok = this.writeBody(chunk);
      if (isLast && this.body === Body.Chunked) ok = socket.write(LAST_CHUNK, 'latin1');
      if (!ok) this.pauseClient();
      if (this.phase === Phase.Waiting) this.deadline = clock.now + (isLast ? cfg.timeouts.responseMs : cfg.timeouts.idleMs);
      return;
    }
    if (chunk) {
      this.queue.push(chunk);
      this.queued += chunk.length;
      if (this.queued > MAX_QUEUED_BODY) this.pauseClient();
    }
  }

  private pauseClient(): void {
    if (!this.clientPaused && !this.resDone) {
      this.clientPaused = true;
      this.res.pause();
    }
  }

  private resumeClient(): void {
    if (this.clientPaused && !this.resDone) {
      this.clientPaused = false;
      this.res.resume();
    }
  }

  onUpstreamDrain(): void {
    if (this.phase === Phase.Waiting && !this.bodyEnded) this.deadline = clock.now + this.ctx.runtime().config.timeouts.idleMs;
    this.resumeClient();
  }

  cork(fn: () => void): void {
    if (this.resDone) fn();
    else this.res.cork(fn);
  }

  onInformational(): void {
    // 100 Continue and 103 Early Hints are not relayed: the front door already answered Expect itself.
  }

  onHead(status: number, reason: string, headers: string[], info: Parameters<ResponseHandlers['onHead']>[3]): void {
    if (this.resDone) return;
    const cfg = this.ctx.runtime().config;
    const res = this.res;
    const pool = this.pool;
    this.phase = Phase.Streaming;
    this.deadline = clock.now + cfg.timeouts.idleMs;
    this.status = status;
    this.headSent = true;
    const headAt = (this.headAt = performance.now());
    this.countSticky(this.backend);
    const counters = this.ctx.counters;
    const slot = this.backend!.slot;
    counters.countBackendStatus(slot, status);
    if (this.sentAt !== 0) counters.observeUpstream(slot, headAt - this.sentAt);
    if (counters.markBackendResponse(slot, status, pool.eject5xx, clock.now, 1_000, 30_000)) this.ejected5xx();
    res.writeStatus(statusLine(status, reason));
    const served = this.backend!;
    const issue = this.sticky.tokenBackend !== served.index || this.sticky.refresh;
    let declaredLength = -1;
    let token = '';
    let connection = '';
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i]!.length === 10 && headers[i]!.toLowerCase() === 'connection') connection += `${headers[i + 1]},`;
    }
    // Every forwarded header goes to the client in one writeHeader call: `first: v1\r\nname2: v2…`.
    // Safe because the codec refused any CR or LF inside a field, and cheaper by a native
    // call and two string conversions per header.
    let first = '';
    let lines = '';
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      let value = headers[i + 1]!;
      if (NOTABLE_RESPONSE_NAME_LENGTHS[name.length] === 1 || connection || name.length === pool.headerLower.length) {
        const lower = name.toLowerCase();
        if (droppedResponseHeader(lower)) {
          if (lower === 'content-length') declaredLength = Number(value);
          continue;
        }
        // Headers the backend named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
        if (connection && connectionListed(connection, lower)) continue;
        // Tether's token header is Tether's: a backend's copy would sit beside (or instead of) it.
        if (lower === pool.headerLower) {
          this.ctx.counters.inc(C.backend_route_cookie_dropped);
          continue;
        }
        if (lower === 'set-cookie' && (pool.sessionCookie || pool.sticky.mode === 'cookie')) {
          const parsed = parseSetCookie(value);
          // Tether's own cookie, set by the backend: two values for one name would leave the
          // client's route to whichever the browser keeps. Dropped and counted.
          if (parsed && pool.sticky.mode === 'cookie' && parsed.name === pool.sticky.name) {
            this.ctx.counters.inc(C.backend_route_cookie_dropped);
            continue;
          }
          if (parsed && parsed.name === pool.sessionCookie) {
            this.observeSessionCookie(parsed.value, parsed.deletes, parsed.expiresAt, served);
            if (pool.sticky.mode === 'prefix' && !parsed.deletes) {
              token ||= this.issueToken(served);
              if (token) value = replaceSetCookieValue(value, parsed, `${token}~${parsed.value}`);
            }
          }
        }
      }
      if (first) lines += `\r\n${name}: ${value}`;
      else {
        first = name;
        lines = value;
      }
    }
    if (issue && (pool.sticky.mode === 'cookie' || pool.sticky.mode === 'header')) {
      const fresh = this.issueToken(served);
      if (fresh) {
        const [name, value] = pool.sticky.mode === 'cookie' ? ['set-cookie', `${pool.sticky.name}=${fresh}${pool.cookieSuffix}`] : [pool.sticky.name, fresh];
        if (first) lines += `\r\n${name}: ${value}`;
        else {
          first = name;
          lines = value;
        }
      }
    }
    // The front door writes header strings as latin1: a value's bytes 0x80-0xFF go out as they came.
    if (first) res.writeHeader(first, lines);
    if (info.framing === 'none') {
      this.out = Out.None;
      this.total = this.headOnly && declaredLength >= 0 ? declaredLength : -1;
    } else if (info.framing === 'length') {
      this.out = Out.Length;
      this.total = info.contentLength;
    } else {
      this.out = Out.Stream;
    }
  }

  /**
   * The backend set (or deleted) the application's session cookie: learn mode records which
   * backend owns it, and a binding pool records the terminal it was issued to; a deleting
   * Set-Cookie forgets the session (both the value it names and the ones the request carried).
   */
  private observeSessionCookie(value: string, deletes: boolean, expiresAtMs: number | undefined, served: BackendRuntime): void {
    const store = this.ctx.sessions;
    const pool = this.pool;
    const fp = pool.sessionFp;
    if (store === null || fp === null) return;
    const learn = pool.sticky.mode === 'learn';
    const terminal = this.session.terminal;
    if (!learn && terminal === null) return; // prefix mode without binding: the token routes, nothing to keep
    if (deletes) {
      let forgot = value ? store.delete(fp, value) : false;
      for (const v of this.session.values) forgot = store.delete(fp, v) || forgot;
      if (forgot) this.ctx.counters.inc(C.sessions_forgotten);
      return;
    }
    if (!value) return;
    const nowSec = Math.floor(clock.now / 1000);
    const ttl = learn ? (pool.sticky as { ttlSec: number }).ttlSec : this.ctx.runtime().config.tokenMaxAgeSec;
    let expiresAt = expiresAtMs === undefined ? nowSec + ttl : Math.floor(expiresAtMs / 1000);
    let flags = (learn ? ENTRY_LEARNED : ENTRY_BOUND) | (terminal ? tableBindFlags(pool.bind) : 0);
    if (expiresAtMs === undefined) flags |= ENTRY_SLIDING;
    if (expiresAt <= nowSec) return;
    if (expiresAt > 0xffff_ffff) expiresAt = 0xffff_ffff;
    // A session the table already refuses stays refused: a backend re-setting it does not un-revoke it.
    const put = store.putUnlessRevoked(fp, value, served.ref, flags, terminal ? terminal.tableTag : null, expiresAt, nowSec);
    if (put !== null) {
      this.ctx.counters.inc(C.sessions_learned);
      // A session the table did not hold is a new one on this backend (a re-set cookie is not).
      if (learn && put !== 'updated') this.ctx.counters.incBackend(served.slot, 'sessions');
    }
  }

  /** A fresh token for `backend`, or '' if none can be sealed (logged; the response still goes out). */
  private issueToken(backend: BackendRuntime): string {
    try {
      const terminal = this.session.terminal;
      const token = terminal
        ? this.ctx.tokens.issue(this.pool.name, this.pool.sticky.mode, backend.id, terminal.tokenTag, terminal.tokenFlags)
        : this.ctx.tokens.issue(this.pool.name, this.pool.sticky.mode, backend.id);
      this.ctx.counters.inc(C.tokens_issued);
      this.ctx.counters.incKeySealed(this.ctx.tokens.sealKeyId);
      // A token for another backend than the one presented starts a session here; the same
      // backend's is a refresh.
      if (this.sticky.tokenBackend !== backend.index) this.ctx.counters.incBackend(backend.slot, 'sessions');
      return token;
    } catch (err) {
      this.ctx.log('error', 'could not seal a route token', { err: (err as Error).message, code: (err as { code?: string }).code });
      return '';
    }
  }

  onBody(chunk: Buffer): void {
    if (this.resDone) return;
    const cfg = this.ctx.runtime().config;
    this.deadline = clock.now + cfg.timeouts.idleMs;
    const res = this.res;
    // `chunk` is a view of the upstream read buffer: whatever is kept past this call is copied.
    if (this.out === Out.Length) {
      if (this.pending.length > 0) {
        this.pending.push(Buffer.from(chunk));
        return;
      }
      const [ok, done] = res.tryEnd(chunk, this.total);
      if (done) {
        this.sent = this.total;
        this.clientFinished();
      } else if (!ok) {
        this.pending.push(Buffer.from(chunk));
        // Every earlier chunk went out whole (else this one would have queued behind it), so
        // the body offset where this chunk starts is what we have sent: no getWriteOffset call.
        this.pendingOffset = this.sent;
        this.pauseUpstream();
        res.onWritable((off) => this.onWritable(off));
      } else {
        this.sent += chunk.length;
      }
    } else if (this.out === Out.Stream) {
      // Not written here, under cork: uWS 20.30's corked write() dropped a chunk's data when
      // flushing its cork buffer hit backpressure, so the bytes are written by flushStream once
      // the cork scope has ended. The front door has no such bug; #19 can write them here.
      // Still inside the same read callback when flushStream runs, so a view suffices.
      this.streamed.push(chunk);
      this.streamedBytes += chunk.length;
    }
  }

  /** Writes the chunked/close-delimited body parsed in the last corked scope. */
  flushStream(): void {
    if (this.streamed.length === 0 && !this.endAfterStream) return;
    if (this.resDone) {
      this.streamed = [];
      return;
    }
    const res = this.res;
    const chunks = this.streamed;
    this.streamed = [];
    let ok = true;
    const writeAll = () => {
      for (const chunk of chunks) {
        ok = res.write(chunk) && ok;
        this.bytesOut += chunk.length;
      }
      if (this.endAfterStream) res.end();
    };
    // A small batch goes out corked, in one write; a larger one chunk by chunk (a limit from
    // uWS's 16 KiB cork buffer, kept while the front door replaced it: one copy per write either way).
    if (this.streamedBytes + 16 * chunks.length + 64 < 12 * 1024) res.cork(writeAll);
    else writeAll();
    this.streamedBytes = 0;
    if (this.endAfterStream) {
      this.endAfterStream = false;
      this.clientFinished();
    } else if (!ok) {
      this.pauseUpstream();
      res.onWritable(() => {
        this.deadline = (clock.now = Date.now()) + this.ctx.runtime().config.timeouts.idleMs;
        this.resumeUpstream();
        return true;
      });
    }
  }

  /** The client side drained: resend what tryEnd did not take of each pending chunk (none, on the front door, which takes whole chunks). */
  private onWritable(offset: number): boolean {
    clock.now = Date.now();
    const res = this.res;
    while (this.pending.length > 0) {
      const chunk = this.pending[0]!;
      const [ok, done] = res.tryEnd(chunk.subarray(offset - this.pendingOffset), this.total);
      if (done) {
        this.pending = [];
        this.sent = this.total;
        this.clientFinished();
        return true;
      }
      this.deadline = clock.now + this.ctx.runtime().config.timeouts.idleMs;
      if (!ok) return false;
      this.pending.shift();
      offset = res.getWriteOffset();
      this.pendingOffset = offset;
      this.sent = offset;
    }
    this.resumeUpstream();
    return true;
  }

  private pauseUpstream(): void {
    if (!this.upstreamPaused && this.conn) {
      this.upstreamPaused = true;
      this.conn.socket.pause();
    }
  }

  private resumeUpstream(): void {
    if (this.upstreamPaused) {
      this.upstreamPaused = false;
      if (this.conn) this.conn.socket.resume();
    }
  }

  onEnd(): void {
    this.upstreamEnded = true;
    const conn = this.conn;
    // Reusable only if the backend also got our whole request.
    if (conn) {
      if (!this.bodyEnded) conn.reusable = false;
      this.conn = null;
      if (this.upstreamPaused) {
        this.upstreamPaused = false;
        conn.socket.resume();
      }
      release(conn, clock.now, this.ctx.runtime().config.limits.maxIdlePerBackend);
    }
    if (this.resDone) {
      this.complete();
      return;
    }
    const res = this.res;
    if (this.out === Out.None) {
      // HEAD's length as a header (uWS's endWithoutBody(n) wedged keep-alive; the front door's
      // takes no length at all).
      if (this.total >= 0) res.writeHeader('content-length', String(this.total));
      res.endWithoutBody();
      this.clientFinished();
    } else if (this.out === Out.Stream) {
      this.endAfterStream = true; // flushStream ends the response after the last bytes
    } else if (this.total === 0) {
      res.end();
      this.clientFinished();
    }
    // Out.Length with bytes still pending: onWritable finishes the client side.
  }

  onUpstreamFailure(conn: UpstreamConnection, error: Error, connected: boolean): void {
    if (conn !== this.conn) return;
    this.conn = null;
    const ctx = this.ctx;
    const backend = this.backend!;
    if (!connected) {
      ctx.counters.inc(C.upstream_connect_errors);
      ctx.counters.incBackend(backend.slot, 'connect_errors');
      ctx.counters.markBackendFailure(backend.slot, clock.now, 1_000, 30_000);
      this.retryOrFail(backend, `backend ${backend.id} (${backend.host}:${backend.port}) refused or dropped the connection: ${error.message}`);
      return;
    }
    // A reused keep-alive socket the backend had closed: safe to replay only if idempotent and
    // no response byte came back and the whole request is still ours to resend.
    if (conn.uses > 1 && !conn.gotBytes && !this.headSent && IDEMPOTENT.has(this.method) && this.body === Body.None) {
      ctx.counters.inc(C.upstream_retries);
      this.connectTo(backend);
      return;
    }
    ctx.counters.inc(C.upstream_protocol_errors);
    this.finishWithError(502, `backend ${backend.id} failed mid-response: ${error.message}`);
  }

  /** Connect failed: nothing reached the backend, so any method may go to another one. */
  private retryOrFail(failed: BackendRuntime, why: string): void {
    const pool = this.pool;
    const failedIndex = failed.index;
    if (this.attempts < MAX_ATTEMPTS && !this.resDone) {
      const next = pool.balancer.pick({ hashKey: this.hashKey }, failedIndex);
      if (next >= 0) {
        this.ctx.counters.inc(C.upstream_retries);
        this.connectTo(pool.backends[next]!);
        return;
      }
    }
    // This request did reach for backends and every attempt failed: that is a 502 naming the
    // failure. (503 is for a request that found no backend up to try at all.)
    this.finishWithError(502, why);
  }

  /** Called by the worker's sweeper when `deadline` has passed. */
  onDeadline(): void {
    const backend = this.backend;
    const where = backend ? `backend ${backend.id}` : 'backend';
    switch (this.phase) {
      case Phase.Connecting: {
        this.ctx.counters.inc(C.upstream_connect_errors);
        this.conn?.destroy();
        this.conn = null;
        if (backend) {
          this.ctx.counters.markBackendFailure(backend.slot, clock.now, 1_000, 30_000);
          this.retryOrFail(backend, `${where} did not accept the connection in time`);
        } else this.finishWithError(504, 'timed out');
        return;
      }
      case Phase.Waiting:
        this.ctx.counters.inc(C.upstream_timeouts);
        this.finishWithError(504, `${where} did not answer in time`);
        return;
      case Phase.Streaming:
        // Paused upstream means we were waiting for the client to read, not for the backend.
        if (this.upstreamPaused || this.upstreamEnded) {
          this.ctx.counters.inc(C.client_timeouts);
          this.finishWithError(504, 'client stopped reading');
        } else {
          this.ctx.counters.inc(C.upstream_timeouts);
          this.finishWithError(504, `${where} stalled mid-response`);
        }
        return;
      case Phase.Done:
        return;
    }
  }

  /** This response completed a run of 5xx: the backend sits out its backoff (all workers see it). */
  private ejected5xx(): void {
    const b = this.backend!;
    this.ctx.counters.inc(C.backend_ejections_5xx);
    this.ctx.log('warn', `backend ${this.pool.name}/${b.id} ejected after ${this.pool.eject5xx} consecutive 5xx responses`, { pool: this.pool.name, backend: b.id, address: `${b.host}:${b.port}`, event: 'backend_ejected' });
  }

  /** Sticky outcome, once per request: the token's backend served it (hit) or another did (failover). */
  private countSticky(served: BackendRuntime | null): void {
    const t = this.sticky.tokenBackend;
    if (t < 0 || this.stickyCounted) return;
    this.stickyCounted = true;
    if (served && served.index === t) {
      this.ctx.counters.inc(C.sticky_hits);
      this.ctx.counters.incBackend(served.slot, 'sticky_hits');
    } else this.ctx.counters.inc(C.sticky_failovers);
  }

  private finishWithError(status: number, why: string): void {
    this.countSticky(null);
    this.conn?.destroy();
    this.conn = null;
    if (!this.resDone) {
      if (this.headSent) {
        // Too late for an error page: cut the connection so the client sees a truncated response.
        this.resDone = true;
        this.res.close();
      } else {
        this.status = status;
        this.resDone = true;
        respondError(this.ctx, this.res, status, why, false);
        this.complete();
        return;
      }
    }
    this.complete();
  }

  private clientFinished(): void {
    if (this.resDone) return;
    this.resDone = true;
    const c = this.ctx.counters;
    const s = this.status;
    c.inc(s < 200 ? C.responses_1xx : s < 300 ? C.responses_2xx : s < 400 ? C.responses_3xx : s < 500 ? C.responses_4xx : C.responses_5xx);
    if (this.upstreamEnded) this.complete();
  }

  private onClientAborted(): void {
    if (this.resDone) return;
    this.resDone = true;
    this.ctx.counters.inc(C.client_aborts);
    this.conn?.destroy();
    this.conn = null;
    this.complete();
  }

  private complete(): void {
    if (this.phase === Phase.Done) return;
    this.phase = Phase.Done;
    if (this.ctx.active.delete(this)) this.ctx.counters.inc(C.active_requests, -1);
    if (this.backend) {
      this.ctx.counters.incBackend(this.backend.slot, 'requests');
      this.ctx.counters.incBackend(this.backend.slot, 'active', -1);
    }
    // An exchange begun before the log was turned on (a reload) has nothing to log.
    if (this.ctx.accessLog && this.startedAt > 0) this.logAccess(this.ctx.accessLog);
  }

  /** --access-log: remember who asked for what, and start the clock. */
  logged(clientIp: string, target: string): void {
    this.clientIp = clientIp;
    this.path = target;
    this.startedAt = performance.now();
  }

  private logAccess(log: AccessLog): void {
    const b = this.backend;
    const t = this.sticky.tokenBackend;
    const sticky = t >= 0 ? (b && b.index === t ? 'hit' : 'failover') : this.sticky.invalid ? 'invalid' : this.pool.sticky.mode === 'none' ? 'none' : 'miss';
    log.write({
      worker: this.ctx.workerIndex ?? 0,
      client: this.clientIp,
      method: this.method,
      path: this.path,
      status: this.status,
      bytes: this.out === Out.Length ? this.sent : this.bytesOut,
      upstream: b?.id ?? '',
      upstreamAddr: b ? `${b.host}:${b.port}` : '',
      upstreamMs: this.headAt > 0 && this.sentAt > 0 ? this.headAt - this.sentAt : -1,
      totalMs: performance.now() - this.startedAt,
      sticky,
    });
  }
}
