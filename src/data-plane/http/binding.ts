// Phase 4, check the binding: the session a request presents (its route token, its application
// session cookie) must not be revoked and must come from the terminal it was issued to; learn
// mode's routing is looked up here too, sharing the table lookups. A refused request is
// answered 403 here and never reaches a backend.
import { C } from '../../shared-memory/counters.js';
import { compareTableTag, compareTokenTag, describeTableTag, describeTokenTag, formatBindPolicy } from '../../sticky/binding.js';
import { ENTRY_KIND_MASK, ENTRY_LEARNED, ENTRY_REVOKED, ENTRY_SLIDING } from '../../sticky/sessions.js';
import { clock } from '../clock.js';
import type { ClientResponse } from '../front-door/client.js';
import type { PoolRuntime } from '../runtime.js';
import { statusLine } from '../status.js';
import { Body, NO_SESSION, type ListenerContext, type SessionContext, type StickyDecision } from './context.js';
import { headerValue, type RequestHead } from './request-head.js';
import { sessionValues } from './sticky.js';

/**
 * The request's session context, and whether it may go on. Pools that bind nothing, keep no
 * application sessions and have no revocation to check get NO_SESSION without any work.
 * Returns null when the request was refused (403 sent).
 */
export function checkBinding(
  ctx: ListenerContext,
  res: ClientResponse,
  pool: PoolRuntime,
  head: RequestHead,
  sticky: StickyDecision,
  clientIp: string,
): SessionContext | null {
  if (pool.bind.kind === 'none' && !pool.mode.sessionCookie && !(sticky.token && ctx.sessions !== null && ctx.sessions.table.revocations() > 0)) return NO_SESSION;
  const terminal = pool.bind.kind === 'none' ? null : pool.terminals.get(clientIp, pool.bind.kind === 'header' ? headerValue(head.flat, pool.bind.header) : '');
  const values = pool.mode.sessionCookie && head.cookie ? sessionValues(pool, head.cookie) : [];
  const session: SessionContext = { terminal, values };
  const refusal = checkSession(ctx, pool, sticky, session);
  if (refusal === null) return session;
  refuseSession(ctx, res, pool, refusal, clientIp, head.body !== Body.None);
  return null;
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
  const learn = pool.mode.routesBySession;
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
        const ttl = pool.mode.sessionTtlSec;
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
function refuseSession(ctx: ListenerContext, res: ClientResponse, pool: PoolRuntime, refusal: Refusal, presentedFrom: string, hasBody: boolean): void {
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
  res.cork(() => {
    res.writeStatus(statusLine(403));
    res.writeHeader('content-type', 'application/json');
    res.writeHeader('cache-control', 'no-store');
    // A request body we will not read: close after answering, like any refused upload.
    res.end(`${bodyText}\n`, hasBody);
  });
}
