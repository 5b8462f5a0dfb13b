// Phase 7, shape the response head: the backend's status and headers minus hop-by-hop ones and
// any copy of Tether's own cookie or token header, the application session cookie observed
// (learn mode, bindings) or prefixed with a token (prefix mode), and a fresh route token when
// the request started a session here or its token was due for re-issue.
import { C } from '../../shared-memory/counters.js';
import { tableBindFlags } from '../../sticky/binding.js';
import { parseSetCookie, replaceSetCookieValue } from '../../sticky/cookies.js';
import { ENTRY_BOUND, ENTRY_LEARNED, ENTRY_SLIDING } from '../../sticky/sessions.js';
import { clock } from '../clock.js';
import type { ClientResponse } from '../front-door/client.js';
import type { BackendRuntime, PoolRuntime } from '../runtime.js';
import type { ListenerContext, SessionContext, StickyDecision } from './context.js';
import { connectionListed } from './request-head.js';
import { relayedStatusLine } from '../status.js';

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
for (const n of ['date', 'trailer', 'upgrade', 'connection', 'keep-alive', 'content-length', 'proxy-connection', 'transfer-encoding', 'set-cookie', 'strict-transport-security']) {
  NOTABLE_RESPONSE_NAME_LENGTHS[n.length] = 1;
}
/** The request whose response is being shaped: what the sticky side of the head needs. */
export interface Shaping {
  ctx: ListenerContext;
  pool: PoolRuntime;
  sticky: StickyDecision;
  session: SessionContext;
  /** The backend that answered. */
  served: BackendRuntime;
  /** The request came over HTTPS: the route cookie is Secure, and the pool's HSTS applies. */
  secure: boolean;
}

/**
 * Writes the response's status and headers to `res` (one writeHeader call for all of them).
 * Returns the Content-Length the backend declared (-1: none), which a HEAD response repeats.
 * `headers` is name, value, name, value… as the backend sent them; the codec has refused any
 * CR or LF inside a field.
 */
export function shapeResponseHead(s: Shaping, res: ClientResponse, status: number, reason: string, headers: string[]): number {
  const { ctx, sticky, served } = s;
  const mode = s.pool.mode;
  const ownHeader = mode.ownHeader;
  res.writeStatus(relayedStatusLine(status, reason));
  const issue = sticky.tokenBackend !== served.index || sticky.refresh;
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
    if (NOTABLE_RESPONSE_NAME_LENGTHS[name.length] === 1 || connection || name.length === ownHeader.length) {
      const lower = name.toLowerCase();
      if (droppedResponseHeader(lower)) {
        if (lower === 'content-length') declaredLength = Number(value);
        continue;
      }
      // Headers the backend named in Connection are hop-by-hop too (RFC 9110 §7.6.1).
      if (connection && connectionListed(connection, lower)) continue;
      // Tether's HSTS, where the pool sets one, replaces the backend's.
      if (lower === 'strict-transport-security' && s.secure && s.pool.hsts !== null) continue;
      // Tether's token header is Tether's: a backend's copy would sit beside (or instead of) it.
      if (lower === ownHeader) {
        ctx.counters.inc(C.backend_route_cookie_dropped);
        continue;
      }
      if (lower === 'set-cookie' && (mode.sessionCookie || mode.ownCookie)) {
        const parsed = parseSetCookie(value);
        // Tether's own cookie, set by the backend: two values for one name would leave the
        // client's route to whichever the browser keeps. Dropped and counted.
        if (parsed && mode.ownCookie && parsed.name === mode.ownCookie) {
          ctx.counters.inc(C.backend_route_cookie_dropped);
          continue;
        }
        if (parsed && mode.sessionCookie && parsed.name === mode.sessionCookie) {
          observeSessionCookie(s, parsed.value, parsed.deletes, parsed.expiresAt);
          if (mode.prefixesSessionCookie && !parsed.deletes) {
            token ||= issueToken(s);
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
  if (issue && mode.tokenHeader !== null) {
    const fresh = issueToken(s);
    if (fresh) {
      const [name, value] = mode.tokenHeader(fresh, s.secure);
      if (first) lines += `\r\n${name}: ${value}`;
      else {
        first = name;
        lines = value;
      }
    }
  }
  if (s.secure && s.pool.hsts !== null) {
    if (first) lines += `\r\nstrict-transport-security: ${s.pool.hsts}`;
    else {
      first = 'strict-transport-security';
      lines = s.pool.hsts;
    }
  }
  // The front door writes header strings as latin1: a value's bytes 0x80-0xFF go out as they came.
  if (first) res.writeHeader(first, lines);
  return declaredLength;
}

/**
 * The backend set (or deleted) the application's session cookie: learn mode records which
 * backend owns it, and a binding pool records the terminal it was issued to; a deleting
 * Set-Cookie forgets the session (both the value it names and the ones the request carried).
 */
function observeSessionCookie(s: Shaping, value: string, deletes: boolean, expiresAtMs: number | undefined): void {
  const { ctx, served } = s;
  const store = ctx.sessions;
  const pool = s.pool;
  const fp = pool.sessionFp;
  if (store === null || fp === null) return;
  const learn = pool.mode.routesBySession;
  const terminal = s.session.terminal;
  if (!learn && terminal === null) return; // prefix mode without binding: the token routes, nothing to keep
  if (deletes) {
    let forgot = value ? store.delete(fp, value) : false;
    for (const v of s.session.values) forgot = store.delete(fp, v) || forgot;
    if (forgot) ctx.counters.inc(C.sessions_forgotten);
    return;
  }
  if (!value) return;
  const nowSec = Math.floor(clock.now / 1000);
  const ttl = learn ? pool.mode.sessionTtlSec : ctx.runtime().config.tokenMaxAgeSec;
  let expiresAt = expiresAtMs === undefined ? nowSec + ttl : Math.floor(expiresAtMs / 1000);
  let flags = (learn ? ENTRY_LEARNED : ENTRY_BOUND) | (terminal ? tableBindFlags(pool.bind) : 0);
  if (expiresAtMs === undefined) flags |= ENTRY_SLIDING;
  if (expiresAt <= nowSec) return;
  if (expiresAt > 0xffff_ffff) expiresAt = 0xffff_ffff;
  // A session the table already refuses stays refused: a backend re-setting it does not un-revoke it.
  const put = store.putUnlessRevoked(fp, value, served.ref, flags, terminal ? terminal.tableTag : null, expiresAt, nowSec);
  if (put !== null) {
    ctx.counters.inc(C.sessions_learned);
    // A session the table did not hold is a new one on this backend (a re-set cookie is not).
    if (learn && put !== 'updated') ctx.counters.incBackend(served.slot, 'sessions');
  }
}

/** A fresh token for `backend`, or '' if none can be sealed (logged; the response still goes out). */
function issueToken(s: Shaping): string {
  const { ctx, served: backend } = s;
  try {
    const terminal = s.session.terminal;
    const token = terminal
      ? ctx.tokens.issue(s.pool.name, s.pool.mode.name, backend.id, terminal.tokenTag, terminal.tokenFlags)
      : ctx.tokens.issue(s.pool.name, s.pool.mode.name, backend.id);
    ctx.counters.inc(C.tokens_issued);
    ctx.counters.incKeySealed(ctx.tokens.sealKeyId);
    // A token for another backend than the one presented starts a session here; the same
    // backend's is a refresh.
    if (s.sticky.tokenBackend !== backend.index) ctx.counters.incBackend(backend.slot, 'sessions');
    return token;
  } catch (err) {
    ctx.log('error', 'could not seal a route token', { err: (err as Error).message, code: (err as { code?: string }).code });
    return '';
  }
}
