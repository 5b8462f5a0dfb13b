// Phase 2, choose the route: the pool that serves the request, and who the client is (the
// peer, or the client a trusted proxy vouches for) — what binding, hashing and logs see.
import type { PoolRuntime, Runtime } from '../runtime.js';
import { realClient } from '../forwarding.js';
import { hostnameOf, type RequestHead } from './request-head.js';

/** The pool for this request: the first route matching its Host and path, else the default pool. */
export function chooseRoute(runtime: Runtime, head: RequestHead): PoolRuntime {
  return runtime.hasRoutes ? runtime.route(hostnameOf(head.host), head.path) : runtime.defaultPool;
}

/** Is the peer one of --trusted-proxies, whose forwarding headers are believed (../forwarding.ts)? */
export function viaTrustedProxy(runtime: Runtime, peerIp: string): boolean {
  const trusted = runtime.trustedProxies;
  return !trusted.none && trusted.trusts(peerIp);
}

/**
 * The client behind `peerIp`: the peer itself, or, from a trusted proxy, the rightmost address
 * of its X-Forwarded-For that is not itself a trusted proxy.
 */
export function identifyClient(runtime: Runtime, peerIp: string, head: RequestHead, viaProxy: boolean): string {
  return viaProxy ? realClient(peerIp, head.xff, runtime.trustedProxies) : peerIp;
}
