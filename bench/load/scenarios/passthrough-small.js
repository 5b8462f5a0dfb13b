// Scenario passthrough-small: keep-alive small HTTPS requests through the TLS passthrough.
// Each client opens one verified TLS connection (SNI = its route's name, see
// ./passthrough-common.js) and sends GET / after GET / on it, one at a time; the TLS is end
// to end, so per request the balancer only relays a few hundred encrypted bytes each way.
// What it shows: the relay's per-read/per-write cost once the route is chosen. A connection
// that fails is closed and the next attempt reconnects (a new handshake, counted).
// p50/p99 are per request, from writing it to its last byte, handshakes excluded (as wrk).

import { CONNECT_TIMEOUT_MS, RESPONSE_TIMEOUT_MS, answeredBy, clientsPhrase, countAnswer, loadRecord, routeOf, runPassthroughLoad } from './passthrough-common.js';
import { openTlsConnection } from '../node-load/index.js';

export { backendKind, prepareRoutes as prepare } from './passthrough-common.js';
export const name = 'passthrough-small';
export const description = 'keep-alive small HTTPS requests through TLS passthrough (SNI routing, TLS end to end, certificates verified)';

export function loadDescription(options) {
  return `node:tls clients (piscina, ${clientsPhrase(options.threads, options.connections)}), keep-alive GET /, SNI alternating app1/app2.bench.test, ${options.duration}s`;
}


/** Knobs after `durationS` exist for tests (deadlines, a request bound instead of a time bound). */
export async function runSmall({ passthrough, threads, clients, durationS, connectTimeoutMs = CONNECT_TIMEOUT_MS, responseTimeoutMs = RESPONSE_TIMEOUT_MS, maxRequestsPerClient }) {
  return runPassthroughLoad({
    clientModule: import.meta.url,
    clientExport: 'smallClient',
    passthrough,
    threads,
    clients,
    durationS,
    maxLoopsPerClient: maxRequestsPerClient,
    params: { connectTimeoutMs, responseTimeoutMs },
  });
}

export async function measure({ passthrough, options, durationS }) {
  const r = await runSmall({ passthrough, threads: options.threads, clients: options.connections, durationS });
  return loadRecord(r, passthrough.routes, { handshakes: r.counters.handshakes ?? 0 });
}

/** One client (in a load-generator thread; see ../node-load/worker.js for ctx). */
export async function smallClient(ctx) {
  const { host, port, ca, routes, connectTimeoutMs, responseTimeoutMs } = ctx.params;
  const route = routeOf(routes, ctx.index);
  let connection = null;
  try {
    while (ctx.running()) {
      if (connection === null || !connection.reusable) {
        connection?.close();
        connection = null;
        try {
          connection = await openTlsConnection({ host, port, servername: route.serverName, ca, timeoutMs: connectTimeoutMs });
        } catch (error) {
          ctx.error(error.kind ?? 'connect');
          continue;
        }
        ctx.count('handshakes');
      }
      const sentAt = performance.now();
      let response;
      try {
        response = await connection.request({ timeoutMs: responseTimeoutMs });
      } catch (error) {
        ctx.error(error.kind ?? 'socket');
        connection.close();
        connection = null;
        continue;
      }
      ctx.response((performance.now() - sentAt) * 1000);
      if (response.status !== 200) {
        ctx.error('status');
        continue;
      }
      countAnswer(ctx, route, answeredBy(response));
    }
  } finally {
    connection?.close();
  }
}
