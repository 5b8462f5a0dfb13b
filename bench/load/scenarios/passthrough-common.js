// What the three TLS passthrough scenarios share (passthrough-small, passthrough-bulk,
// passthrough-handshakes). Not a scenario itself.
//
// The setting: the harness starts TLS backends app1 and app2 (../tls-backend.js) holding
// certificates for app1.bench.test and app2.bench.test, signed by a CA made for the run
// (../pki.js), and starts each peer in passthrough mode with one route per name
// (app1.bench.test → app1, app2.bench.test → app2) and nothing else. The balancer never holds
// a key: the TLS is end to end, client ↔ backend, and the balancer only reads the ClientHello
// and relays bytes.
//
// The load: the Node load generator (../node-load/, piscina threads) with node:tls clients
// sending SNI = the route's name and trusting only the bench CA (rejectUnauthorized), so every
// connection verifies the certificate of the backend it reached through the balancer. wrk
// cannot do this on loopback: it sends SNI = the URL's host and cannot map a name to 127.0.0.1
// without /etc/hosts. Clients alternate between the names (client i uses route i mod 2), so
// both routes carry load; every answer is checked against the backend the name routes to and
// counted per backend (extra.app1, extra.app2). A name that reaches the wrong backend fails
// the run: its handshake fails with a certificate for another name (error kind certName), or,
// were a backend to hold both certificates, its answer names the other backend (wrongBackend).
//
// A scenario's harness context carries `passthrough: { host, port, ca, routes: [{ serverName,
// backend }] }` instead of an HTTP url.

import { harnessRecord, openTlsConnection, runLoad } from '../node-load/index.js';

export const backendKind = 'tls';

/** TCP connect + TLS handshake, together. */
export const CONNECT_TIMEOUT_MS = 2000;
/** A whole small response (as wrk --timeout 5s in the HTTP scenarios). */
export const RESPONSE_TIMEOUT_MS = 5000;
/** A name no route serves: recorded in checks (how the peer refuses it), never sent under load. */
export const UNKNOWN_NAME = 'unknown.bench.test';

/** The route client `index` uses: clients alternate between the names. */
export function routeOf(routes, index) {
  return routes[index % routes.length];
}

/** Who answered: the body of GET / (its name) or, for /bytes/N, the X-Backend header. */
export function answeredBy(response, path = '/') {
  return path === '/' ? response.body.toString('latin1') : String(response.headers['x-backend'] ?? '');
}

/**
 * Counts an answer for client `ctx` on `route`: answers.<backend> when the right backend
 * answered, else an error wrongBackend (and a counter naming the pair). Returns whether it was right.
 */
export function countAnswer(ctx, route, backend) {
  if (backend === route.backend) {
    ctx.count(`answers.${backend}`);
    return true;
  }
  ctx.error('wrongBackend');
  ctx.count(`wrong.${route.serverName}→${backend || '?'}`);
  return false;
}

/**
 * One fresh verified connection through the passthrough to `serverName`, one GET `path`,
 * closed. Resolves { status, backend, bodyBytes }; rejects HttpError (kind: connect,
 * handshake, certificate, certName, timeout, closed, …).
 */
export async function probe({ host, port, ca, serverName, path = '/', connectTimeoutMs = CONNECT_TIMEOUT_MS, responseTimeoutMs = RESPONSE_TIMEOUT_MS }) {
  const connection = await openTlsConnection({ host, port, servername: serverName, ca, timeoutMs: connectTimeoutMs });
  try {
    const response = await connection.request({ path, timeoutMs: responseTimeoutMs });
    return { status: response.status, backend: answeredBy(response, path), bodyBytes: response.bodyBytes };
  } finally {
    connection.close();
  }
}

/** A passthrough scenario's prepare(): no cookies, the route checks below (`bytes`: see there). */
export async function prepareRoutes({ peer, passthrough, bytes = 0 }) {
  return { cookies: [], checks: await checkRoutes({ passthrough, peer, bytes }) };
}

/**
 * prepare()'s check, shared: every route answers GET / from its own backend over a verified
 * connection (else it throws, named), then, recorded only, what the peer does with a name no
 * route serves. `bytes` > 0 also checks a GET /bytes/N per route, byte count verified.
 */
export async function checkRoutes({ passthrough, peer, bytes = 0, transferDeadlineMs = 30_000 }) {
  const { host, port, ca, routes } = passthrough;
  const checks = { routes: {}, certificatesVerified: true };
  for (const route of routes) {
    const at = `${peer.name} for ${route.serverName}`;
    let answer;
    try {
      answer = await probe({ host, port, ca, serverName: route.serverName });
    } catch (error) {
      throw new Error(`${at}: expected a verified TLS connection to ${route.backend} but it failed (${error.kind ?? 'error'}: ${error.message})`);
    }
    if (answer.status !== 200 || answer.backend !== route.backend) {
      throw new Error(`${at}: expected 200 from ${route.backend} but received ${answer.status} from ${JSON.stringify(answer.backend.slice(0, 100))}`);
    }
    checks.routes[route.serverName] = answer.backend;
    if (bytes > 0) {
      const path = `/bytes/${bytes}`;
      let transfer;
      try {
        transfer = await probe({ host, port, ca, serverName: route.serverName, path, responseTimeoutMs: transferDeadlineMs });
      } catch (error) {
        throw new Error(`${at}: GET ${path} failed (${error.kind ?? 'error'}: ${error.message})`);
      }
      if (transfer.status !== 200 || transfer.bodyBytes !== bytes || transfer.backend !== route.backend) {
        throw new Error(`${at}: GET ${path} expected 200 with ${bytes} bytes from ${route.backend} but received ${transfer.status} with ${transfer.bodyBytes} bytes from ${JSON.stringify(transfer.backend)}`);
      }
      checks.checkTransferBytes = bytes;
    }
  }
  try {
    const answer = await probe({ host, port, ca, serverName: UNKNOWN_NAME });
    checks.unknownName = `answered ${answer.status} by ${JSON.stringify(answer.backend)}`;
  } catch (error) {
    checks.unknownName = `refused (${error.kind ?? 'error'})`;
  }
  return checks;
}

/**
 * Runs `clients` clients of `clientExport` in `clientModule` (a scenario module's URL) over
 * `threads` threads for `durationS`, against the passthrough; `params` adds to what every
 * client gets (host, port, ca, routes). `graceMs`: how long past the duration a client may
 * finish what it started (runLoad's default suits small requests). Returns runLoad's result.
 */
export function runPassthroughLoad({ clientModule, clientExport, passthrough, threads, clients, durationS, params = {}, maxLoopsPerClient, graceMs }) {
  const { host, port, ca, routes } = passthrough;
  return runLoad({
    client: clientModule,
    clientExport,
    threads,
    clients,
    durationS,
    ...(maxLoopsPerClient === undefined ? {} : { maxLoopsPerClient }),
    ...(graceMs === undefined ? {} : { graceMs }),
    params: { host, port, ca, routes, ...params },
  });
}

/**
 * The harness's load record from runLoad's result `r`: fails (throws) when a thread leaked,
 * nothing completed, or any name reached the wrong backend; extra = answers per backend plus
 * the scenario's own `extra`.
 */
export function loadRecord(r, routes, extra = {}) {
  const wrong = Object.entries(r.counters).filter(([key]) => key.startsWith('wrong.'));
  const certName = r.errors.certName ?? 0;
  if (wrong.length > 0 || certName > 0) {
    throw new Error(
      `a name reached the wrong backend: ${certName} handshake(s) met a certificate for another name` +
        `${wrong.length > 0 ? `, answers ${JSON.stringify(Object.fromEntries(wrong))}` : ''} (errors ${JSON.stringify(r.errors)})`,
    );
  }
  const answers = Object.fromEntries(routes.map((route) => [route.backend, r.counters[`answers.${route.backend}`] ?? 0]));
  return {
    ...harnessRecord(r, { ...extra, ...answers }),
    ...(r.overran > 0 ? { flag: `${r.overran} client(s) overran the run's deadline` } : {}),
  };
}

/** "T threads × C clients" as roaming.js words it. */
export function clientsPhrase(threads, clients) {
  const t = Math.max(1, Math.min(threads, clients));
  const low = Math.floor(clients / t);
  return `${t} threads × ${clients % t === 0 ? `${low}` : `${low}–${low + 1}`} clients`;
}
