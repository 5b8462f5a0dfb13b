// Phase 3, resolve stickiness: read the pool's sticky mode off the request (its route token,
// or nothing until the binding phase looks up a learned session), and decide what the backend
// sees of Tether's own cookie or header.
import { C } from '../../shared-memory/counters.js';
import { getAllCookies } from '../../sticky/cookies.js';
import type { TokenReader } from '../../sticky/modes/index.js';
import { clock } from '../clock.js';
import type { PoolRuntime } from '../runtime.js';
import type { ListenerContext, StickyDecision } from './context.js';
import type { RequestHead } from './request-head.js';

/**
 * The sticky decision of one request, and the reader its pool's mode hands a presented token
 * to: a valid token fills the decision, an invalid one is counted and marks it `invalid`.
 */
class StickyOutcome implements StickyDecision, TokenReader {
  tokenBackend = -1;
  refresh = false;
  token = '';
  tokenFlags = 0;
  tokenTag: Buffer | null = null;
  invalid = false;
  /** The Cookie header the backend gets (set by resolveSticky). */
  forwardCookie = '';

  constructor(
    private readonly ctx: ListenerContext,
    private readonly pool: PoolRuntime,
  ) {}

  /**
   * Opens a presented route token into this decision. Returns false when the string is not
   * shaped like one of our tokens at all (wrong length or encoding), true otherwise — valid or not.
   */
  read(token: string): boolean {
    return readToken(this.ctx, this.pool, token, this);
  }
}

/**
 * Reads the request's route token as the pool's mode carries it (./sticky/modes/) into a new
 * decision (an invalid token is counted and ignored: the request is balanced as a new one),
 * with the Cookie header the backend gets in its `forwardCookie` (without Tether's cookie, with
 * the application's own value only, or as sent); the mode may remove its own headers from
 * `head.flat`. Learn mode reads nothing here: its session is looked up by the binding phase,
 * with the table lookups it shares with binding and revocation.
 */
export function resolveSticky(ctx: ListenerContext, pool: PoolRuntime, head: RequestHead): StickyOutcome {
  const sticky = new StickyOutcome(ctx, pool);
  sticky.forwardCookie = pool.mode.readRequest(head, sticky);
  return sticky;
}

/**
 * Opens a presented route token into `out`. Returns false when the string is not shaped like
 * one of our tokens at all (wrong length or encoding), true otherwise — valid or not.
 */
function readToken(ctx: ListenerContext, pool: PoolRuntime, token: string, out: StickyDecision): boolean {
  const r = ctx.tokens.read(pool.name, pool.mode.name, token);
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
  const mode = pool.mode;
  const values = getAllCookies(cookie, mode.sessionCookie);
  for (let i = 0; i < values.length; i++) values[i] = mode.appSessionValue(values[i]!);
  return values;
}
