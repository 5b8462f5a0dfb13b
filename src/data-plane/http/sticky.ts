// Phase 3, resolve stickiness: read the pool's sticky mode off the request (its route token,
// or nothing until the binding phase looks up a learned session), and decide what the backend
// sees of Tether's own cookie or header.
import { C } from '../../shared-memory/counters.js';
import { getAllCookies, getCookie, mapCookie, removeCookie, splitPrefixed } from '../../sticky/cookies.js';
import { clock } from '../clock.js';
import type { PoolRuntime } from '../runtime.js';
import type { ListenerContext, StickyDecision } from './context.js';
import type { RequestHead } from './request-head.js';

/** A decision with nothing decided: no token, no backend. */
export function noStickyDecision(): StickyDecision {
  return { tokenBackend: -1, refresh: false, token: '', tokenFlags: 0, tokenTag: null, invalid: false };
}

/**
 * Reads the request's route token for the pool's mode into `sticky` (an invalid token is
 * counted and ignored: the request is balanced as a new one) and returns the Cookie header the
 * backend gets: without Tether's cookie (cookie mode), with the application's own value only
 * (prefix mode), as sent (other modes). Header mode removes every copy of the token header
 * from `head.flat`. Learn mode reads nothing here: its session is looked up by the binding
 * phase, with the table lookups it shares with binding and revocation.
 */
export function resolveSticky(ctx: ListenerContext, pool: PoolRuntime, head: RequestHead, sticky: StickyDecision): string {
  const cookie = head.cookie;
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
      const flat = head.flat;
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
  return forwardCookie;
}

/**
 * Opens a presented route token into `out`. Returns false when the string is not shaped like
 * one of our tokens at all (wrong length or encoding), true otherwise — valid or not.
 */
export function readToken(ctx: ListenerContext, pool: PoolRuntime, token: string, out: StickyDecision): boolean {
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

/** Every value of the pool's session cookie, with a prefix-mode token stripped: the application's session ids. */
export function sessionValues(pool: PoolRuntime, cookie: string): string[] {
  const values = getAllCookies(cookie, pool.sessionCookie);
  if (pool.sticky.mode === 'prefix') {
    for (let i = 0; i < values.length; i++) {
      const split = splitPrefixed(values[i]!);
      if (split) values[i] = split.appValue;
    }
  }
  return values;
}
