// Scenario passthrough-handshakes: new TLS connections per second through the passthrough.
// Each client loops: connect, full TLS handshake with SNI (no session resumption; see
// ./passthrough-common.js for names and verification), one GET /, close. What it shows: the
// balancer's per-connection cost — accept, read and parse the ClientHello, pick the route,
// connect to the backend, set up the relay, tear both sides down — which the keep-alive
// scenarios hide. req/s = handshakes/s (one request per connection); p50/p99 are whole
// connections: connect + handshake + request + response.
// Both client and backend do the handshake's public-key work, so on a small machine they, not
// the balancer, may set the ceiling: read the balancer's CPU per 1k connections with it.

import { CONNECT_TIMEOUT_MS, RESPONSE_TIMEOUT_MS, answeredBy, clientsPhrase, countAnswer, loadRecord, routeOf, runPassthroughLoad } from './passthrough-common.js';
import { openTlsConnection } from '../node-load/index.js';

export { backendKind, prepareRoutes as prepare } from './passthrough-common.js';
export const name = 'passthrough-handshakes';
export const description = 'new TLS connections per second through TLS passthrough: connect, full handshake with SNI, one small request, close';
export const columns = [{ key: 'handshakesPerS', label: 'handshakes/s', digits: 0 }];

export function loadDescription(options) {
  return (
    `node:tls clients (piscina, ${clientsPhrase(options.threads, options.connections)}), each: connect + full handshake ` +
    `(SNI alternating app1/app2.bench.test, certificate verified) + GET / + close, ${options.duration}s; p50/p99 = whole connection`
  );
}


/** Knobs after `durationS` exist for tests (deadlines, a connection bound instead of a time bound). */
export async function runHandshakes({ passthrough, threads, clients, durationS, connectTimeoutMs = CONNECT_TIMEOUT_MS, responseTimeoutMs = RESPONSE_TIMEOUT_MS, maxConnectionsPerClient }) {
  return runPassthroughLoad({
    clientModule: import.meta.url,
    clientExport: 'handshakeClient',
    passthrough,
    threads,
    clients,
    durationS,
    maxLoopsPerClient: maxConnectionsPerClient,
    params: { connectTimeoutMs, responseTimeoutMs },
  });
}

export async function measure({ passthrough, options, durationS }) {
  const r = await runHandshakes({ passthrough, threads: options.threads, clients: options.connections, durationS });
  return loadRecord(r, passthrough.routes, { handshakesPerS: r.rps });
}

/** One client (in a load-generator thread; see ../node-load/worker.js for ctx). */
export async function handshakeClient(ctx) {
  const { host, port, ca, routes, connectTimeoutMs, responseTimeoutMs } = ctx.params;
  const route = routeOf(routes, ctx.index);
  while (ctx.running()) {
    const startedAt = performance.now();
    let connection;
    try {
      connection = await openTlsConnection({ host, port, servername: route.serverName, ca, timeoutMs: connectTimeoutMs });
    } catch (error) {
      ctx.error(error.kind ?? 'connect');
      continue;
    }
    let response;
    try {
      response = await connection.request({ timeoutMs: responseTimeoutMs });
    } catch (error) {
      ctx.error(error.kind ?? 'socket');
      continue;
    } finally {
      connection.close();
    }
    ctx.response((performance.now() - startedAt) * 1000);
    if (response.status !== 200) {
      ctx.error('status');
      continue;
    }
    countAnswer(ctx, route, answeredBy(response));
  }
}
