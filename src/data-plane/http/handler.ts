// The HTTP path of one worker, phase by phase (README "Development" has the map):
//   1 read the request head   ./request-head.ts
//   2 choose the route        ./route.ts
//   3 resolve stickiness      ./sticky.ts
//   4 check the binding       ./binding.ts
//   5 pick the backend        ./pick-backend.ts      (called by the exchange, which retries)
//   6 exchange upstream       ./exchange.ts          (request head: ./upstream-head.ts)
//   7 shape the response head ./response-head.ts
// Phases 1-5 take a ClientRequest/ClientResponse (./front-door/client.ts) and nothing else of
// the listener, so any listener that can present a request that way reuses them unchanged.
import { C } from '../../shared-memory/counters.js';
import { clock } from '../clock.js';
import type { ClientRequest, ClientResponse } from '../front-door/client.js';
import { checkBinding } from './binding.js';
import type { ListenerContext } from './context.js';
import { Exchange } from './exchange.js';
import { hashKeyFor } from './pick-backend.js';
import { readRequestHead } from './request-head.js';
import { respondError } from './respond.js';
import { chooseRoute, identifyClient, viaTrustedProxy } from './route.js';
import { resolveSticky } from './sticky.js';
import { upstreamHead } from './upstream-head.js';
import { channels } from '../diagnostics.js';
import { Failure } from '../failure.js';
import type { RequestHead } from './request-head.js';

/** Runs one request through the phases into an Exchange, or answers it (400/403/503) directly. Never throws. */
export function handleRequest(ctx: ListenerContext, res: ClientResponse, req: ClientRequest): void {
  clock.now = Date.now();
  ctx.counters.inc(C.requests);
  const head = readRequestHead(req);
  if (head.bad) {
    ctx.counters.inc(C.bad_requests);
    const failure = new Failure('TETHER_ERR_BAD_REQUEST', head.bad);
    if (channels.requestEnd.hasSubscribers) publishAnswered(ctx, head, '', res.getRemoteAddress(), failure);
    // The front door refuses such framing before dispatch; this is the check for any listener
    // that presents requests through ClientRequest.
    respondError(ctx, res, failure.status, failure.message, true);
    return;
  }
  const runtime = ctx.runtime();
  const pool = chooseRoute(runtime, head);
  const peerIp = res.getRemoteAddress();
  const viaProxy = viaTrustedProxy(runtime, peerIp);
  const clientIp = identifyClient(runtime, peerIp, head, viaProxy);
  const sticky = resolveSticky(ctx, pool, head);
  const session = checkBinding(ctx, res, pool, head, sticky, clientIp);
  if (session === null) {
    // Refused (403 sent).
    if (channels.requestEnd.hasSubscribers) publishAnswered(ctx, head, pool.name, clientIp, new Failure('TETHER_ERR_SESSION_REFUSED', 'session refused'));
    return;
  }
  const ex = new Exchange(ctx, res, pool, head.method, head.body, sticky, session);
  ex.head = upstreamHead(head, sticky.forwardCookie, peerIp, clientIp, viaProxy);
  ex.hashKey = hashKeyFor(pool, clientIp, head);
  ex.tls = head.tls;
  if (ctx.accessLog || channels.requestEnd.hasSubscribers || channels.requestStart.hasSubscribers || channels.stickyDecision.hasSubscribers) {
    ex.observe(clientIp, head.target);
  }
  ex.start();
}

/** A request Tether answered itself before any exchange (400, 403): its end, for diagnostics subscribers. */
function publishAnswered(ctx: ListenerContext, head: RequestHead, pool: string, client: string, failure: Failure): void {
  channels.requestEnd.publish({
    worker: ctx.workerIndex ?? 0,
    method: head.method,
    target: head.target,
    pool,
    client,
    status: failure.status,
    backend: '',
    failure,
    durationMs: 0,
  });
}
