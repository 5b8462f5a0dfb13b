// Scenario https-handshakes: new HTTPS connections per second, TLS terminated by the peer. Each
// client loops: connect, full TLS handshake (SNI https.bench.test), one GET / carrying the peer's
// own route cookie, close. What it shows:
// the peer's per-connection cost (accept, the handshake's key exchange and ECDSA signature,
// setting up and tearing down a TLS connection) which https-sticky-hit spreads over thousands
// of requests. req/s = handshakes/s (one request per connection); p50/p99 are whole
// connections: connect + handshake + request + response.
//
// Why not wrk: wrk reconnects after `Connection: close`, but on the same SSL object, and
// SSL_clear() keeps the session, so its next handshake offers it: measured against a node:tls
// server, 10,998 of 11,000 TLS 1.2 reconnections and half of the TLS 1.3 ones resumed. A resumed
// handshake skips the signature, the costliest step. So the load is the Node clients of
// ../node-load/ (piscina threads), which never offer a session; every connection counts
// whether the server resumed it anyway (`resumed`), and any resumption fails the run.
// Every answer is checked against the backend its cookie pins (client i carries cookie i mod
// the cookies prepare() got): a wrong backend fails the run, as in passthrough-handshakes.
// The certificate is verified by prepare() (for https.bench.test, against the run's CA), not
// by the clients under load: a peer with one certificate serves that one, and verifying costs a
// node:tls client ~0.4 ms of CPU per handshake (1.4 → 1.0 ms, measured) on the cores the peer
// needs. wrk does not verify either. The server's work is the same.
// The clients' own CPU (handshakes cost the client too: an ECDHE share and a signature to
// verify) is measured and reported (gen CPU ms/1k): on a small machine they may set the pace.

import { clientsPhrase } from './passthrough-common.js';
import { harnessRecord, openTlsConnection, runLoad } from '../node-load/index.js';

export { frontend, prepareHttps as prepare } from './https-common.js';

export const name = 'https-handshakes';
export const description = 'a new TLS connection per request, TLS terminated by the peer: connect, full handshake (no resumption), one GET / with the peer\'s own cookie, close';
export const columns = [
  { key: 'handshakesPerS', label: 'handshakes/s', digits: 0 },
  { key: 'genCpuMsPer1k', label: 'gen CPU ms/1k', digits: 1 },
];

/** TCP connect + TLS handshake, together. */
export const CONNECT_TIMEOUT_MS = 2000;
/** A whole small response (as wrk --timeout 5s in the HTTP scenarios). */
export const RESPONSE_TIMEOUT_MS = 5000;

export function loadDescription(options) {
  return (
    `node:tls clients (piscina, ${clientsPhrase(options.threads, options.connections)}), each: connect + full handshake ` +
    `(no session offered; the certificate verified once, in prepare) + GET / with the peer's cookie + close, ${options.duration}s; p50/p99 = whole connection`
  );
}

/**
 * Runs the clients against `https` ({ host, port, serverName }) with `pins` ([{ cookie,
 * backend }] from prepare()). Knobs after `durationS` exist for tests (deadlines, a connection
 * bound instead of a time bound). Returns runLoad's result.
 */
export function runHandshakes({ https, pins, threads, clients, durationS, connectTimeoutMs = CONNECT_TIMEOUT_MS, responseTimeoutMs = RESPONSE_TIMEOUT_MS, maxConnectionsPerClient }) {
  if (!Array.isArray(pins) || pins.length === 0) throw new Error(`expected at least one { cookie, backend } pin but received ${JSON.stringify(pins)}`);
  const { host, port, serverName } = https;
  return runLoad({
    client: import.meta.url,
    clientExport: 'handshakeClient',
    threads,
    clients,
    durationS,
    ...(maxConnectionsPerClient === undefined ? {} : { maxLoopsPerClient: maxConnectionsPerClient }),
    params: { host, port, serverName, pins, connectTimeoutMs, responseTimeoutMs },
  });
}

/**
 * The harness's load record from runLoad's result `r`: throws when an answer came from a backend
 * other than its cookie's, or a handshake was resumed (the run would not have measured full
 * handshakes), or harnessRecord's own reasons; extra = handshakes/s, the load generator's CPU
 * per 1k connections (`genCpuSeconds`, when measured) and answers per backend.
 */
export function handshakeRecord(r, pins, { genCpuSeconds = null } = {}) {
  const wrong = Object.entries(r.counters).filter(([key]) => key.startsWith('wrong.'));
  if (wrong.length > 0) throw new Error(`a cookie reached another backend than the one it pins: ${JSON.stringify(Object.fromEntries(wrong))}`);
  const resumed = r.counters.resumed ?? 0;
  if (resumed > 0) throw new Error(`${resumed} handshake(s) resumed a session: not the full handshakes this scenario measures`);
  const answers = Object.fromEntries(pins.map((p) => [p.backend, r.counters[`answers.${p.backend}`] ?? 0]));
  const genCpuMsPer1k = genCpuSeconds !== null && r.requests > 0 ? (genCpuSeconds * 1e6) / r.requests : null;
  return harnessRecord(r, { handshakesPerS: r.rps, ...(genCpuMsPer1k === null ? {} : { genCpuMsPer1k }), ...answers, reissuedCookies: r.counters.reissued ?? 0 });
}

export async function measure({ https, prepared, options, durationS }) {
  // This process's CPU, every thread: the load generator's (the harness's own main thread only
  // samples /proc meanwhile).
  const before = process.cpuUsage();
  const r = await runHandshakes({ https, pins: prepared.pins, threads: options.threads, clients: options.connections, durationS });
  const used = process.cpuUsage(before);
  return handshakeRecord(r, prepared.pins, { genCpuSeconds: (used.user + used.system) / 1e6 });
}

/** One client (in a load-generator thread; see ../node-load/worker.js for ctx). */
export async function handshakeClient(ctx) {
  const { host, port, serverName, pins, connectTimeoutMs, responseTimeoutMs } = ctx.params;
  const pin = pins[ctx.index % pins.length];
  const headers = { Cookie: pin.cookie };
  while (ctx.running()) {
    const startedAt = performance.now();
    let connection;
    try {
      connection = await openTlsConnection({ host, port, servername: serverName, timeoutMs: connectTimeoutMs, verify: false });
    } catch (error) {
      ctx.error(error.kind ?? 'connect');
      continue;
    }
    if (connection.tls.resumed) ctx.count('resumed');
    let response;
    try {
      response = await connection.request({ headers, timeoutMs: responseTimeoutMs });
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
    if (response.headers['set-cookie']) ctx.count('reissued');
    const backend = response.body.toString('latin1');
    if (backend === pin.backend) {
      ctx.count(`answers.${backend}`);
    } else {
      ctx.error('wrongBackend');
      ctx.count(`wrong.${pin.backend}→${backend.slice(0, 40) || '?'}`);
    }
  }
}
