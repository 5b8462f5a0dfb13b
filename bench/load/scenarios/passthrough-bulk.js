// Scenario passthrough-bulk: 100 MiB downloads through the TLS passthrough. LANES clients
// (half per name, see ./passthrough-common.js) each keep one verified TLS connection and run
// GET /bytes/104857600 after GET /bytes/104857600 on it for the duration; every transfer's
// byte count is verified and has its own deadline; a failed one is counted, its connection
// dropped and the next transfer reconnects. A lane starts no transfer after the duration; the
// one in flight finishes (bounded by its deadline), and the run's time includes it.
// What it shows: how fast the relay moves bytes with backpressure (MiB/s = verified bytes /
// run time) and whether it buffers (peak RSS, which the harness samples). The bytes are
// encrypted end to end: client and backend pay for AES; the balancer only copies.
// req/s = transfers/s; p50/p99 = whole-transfer times.

import { CONNECT_TIMEOUT_MS, answeredBy, countAnswer, prepareRoutes, loadRecord, routeOf, runPassthroughLoad } from './passthrough-common.js';
import { openTlsConnection } from '../node-load/index.js';

export { backendKind } from './passthrough-common.js';
export const name = 'passthrough-bulk';
export const description = '100 MiB downloads through TLS passthrough (TLS end to end, certificates verified), every byte count verified';
// As large-body: the unmeasured first round warms up; a 1 s warm-up would cut a transfer short.
export const warmup = false;
export const columns = [{ key: 'MiBps', label: 'MiB/s', digits: 0 }];

export const BODY_BYTES = 100 * 1024 * 1024;
export const LANES = 4;
export const TRANSFER_DEADLINE_MS = 60_000;
const PREPARE_BYTES = 8 * 1024 * 1024;
const MiB = 1024 * 1024;

export function loadDescription(options) {
  const threads = Math.min(options.threads, LANES);
  return (
    `node:tls clients (piscina, ${threads} threads), ${LANES} lanes (2 per name) of back-to-back ${BODY_BYTES / MiB} MiB downloads on ` +
    `keep-alive connections, ${options.duration}s; req/s = transfers/s, p50/p99 = transfer time`
  );
}

export function prepare({ peer, passthrough, bytes = PREPARE_BYTES }) {
  return prepareRoutes({ peer, passthrough, bytes });
}

/** Knobs after `durationS` exist for tests (small bodies, deadlines, a transfer bound). */
export async function runBulk({ passthrough, threads, durationS, bytes = BODY_BYTES, lanes = LANES, connectTimeoutMs = CONNECT_TIMEOUT_MS, transferDeadlineMs = TRANSFER_DEADLINE_MS, maxTransfersPerLane }) {
  const r = await runPassthroughLoad({
    clientModule: import.meta.url,
    clientExport: 'bulkClient',
    passthrough,
    threads: Math.min(threads, lanes),
    clients: lanes,
    durationS,
    maxLoopsPerClient: maxTransfersPerLane,
    // A transfer in flight when the duration ends may take its whole deadline.
    graceMs: connectTimeoutMs + transferDeadlineMs + 5000,
    params: { bytes, connectTimeoutMs, transferDeadlineMs },
  });
  const verified = r.counters.verifiedBytes ?? 0;
  return { ...r, verifiedBytes: verified, MiBps: r.durationS > 0 ? verified / MiB / r.durationS : 0 };
}

export async function measure({ passthrough, options, durationS }) {
  const r = await runBulk({ passthrough, threads: options.threads, durationS });
  return loadRecord(r, passthrough.routes, { MiBps: Number(r.MiBps.toFixed(1)), transfers: r.counters.transfers ?? 0 });
}

/** A lane that fails this many transfers in a row stops (a dead peer must not spin the loop). */
const MAX_CONSECUTIVE_FAILURES = 3;

/** One lane (in a load-generator thread; see ../node-load/worker.js for ctx). */
export async function bulkClient(ctx) {
  const { host, port, ca, routes, bytes, connectTimeoutMs, transferDeadlineMs } = ctx.params;
  const route = routeOf(routes, ctx.index);
  const path = `/bytes/${bytes}`;
  let connection = null;
  let failures = 0;
  const failed = (kind) => {
    ctx.error(kind);
    failures += 1;
    connection?.close();
    connection = null;
  };
  try {
    while (failures < MAX_CONSECUTIVE_FAILURES && ctx.running()) {
      if (connection === null || !connection.reusable) {
        connection?.close();
        try {
          connection = await openTlsConnection({ host, port, servername: route.serverName, ca, timeoutMs: connectTimeoutMs });
        } catch (error) {
          connection = null;
          failed(error.kind ?? 'connect');
          continue;
        }
      }
      const sentAt = performance.now();
      let response;
      try {
        response = await connection.request({ path, timeoutMs: transferDeadlineMs });
      } catch (error) {
        failed(error.kind ?? 'socket');
        continue;
      }
      if (response.status !== 200) {
        failed('status');
        continue;
      }
      if (response.bodyBytes !== bytes) {
        failed('short');
        continue;
      }
      if (!countAnswer(ctx, route, answeredBy(response, path))) {
        failures += 1;
        continue;
      }
      failures = 0;
      ctx.response((performance.now() - sentAt) * 1000);
      ctx.count('transfers');
      ctx.count('verifiedBytes', bytes);
    }
  } finally {
    connection?.close();
  }
}
