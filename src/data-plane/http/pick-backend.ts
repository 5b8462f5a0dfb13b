// Phase 5, pick the backend: the session's backend while it may still serve its sessions,
// else the pool's balancer; a retry after a failed connect asks the balancer for another.
import { C } from '../../shared-memory/counters.js';
import { getCookie } from '../../sticky/cookies.js';
import type { PoolRuntime } from '../runtime.js';
import type { ListenerContext, StickyDecision } from './context.js';
import type { RequestHead } from './request-head.js';

/**
 * The backend index for a request, or -1 when no backend is up to try. The backend its token
 * or learned session names comes first while it is routable (up and not past a drain's
 * deadline); otherwise the balancer picks. A request in a sticky pool that presented no
 * session is counted as a sticky miss here; hits and failovers are counted once the serving
 * backend is known (the exchange's countSticky).
 */
export function pickBackend(ctx: ListenerContext, pool: PoolRuntime, sticky: StickyDecision, hashKey: string): number {
  const t = sticky.tokenBackend;
  if (t >= 0) {
    if (pool.isRoutable(t)) return t;
  } else if (pool.mode.sticks) {
    ctx.counters.inc(C.sticky_misses);
  }
  return pool.balancer.pick({ hashKey }, -1);
}

/** Another backend than `failedIndex` for a request whose connect failed, or -1. */
export function pickAnother(pool: PoolRuntime, hashKey: string, failedIndex: number): number {
  return pool.balancer.pick({ hashKey }, failedIndex);
}

/** What a consistent-hash pool hashes: a header, a cookie or the client's address; '' for other balancers. */
export function hashKeyFor(pool: PoolRuntime, clientIp: string, head: RequestHead): string {
  if (pool.balancer.kind !== 'consistent-hash') return '';
  if (pool.hashHeader) {
    const flat = head.flat;
    for (let i = 0; i < flat.length; i += 2) if (flat[i] === pool.hashHeader) return flat[i + 1]!;
    return '';
  }
  if (pool.hashCookie) return (head.cookie && getCookie(head.cookie, pool.hashCookie)) || '';
  return clientIp;
}
