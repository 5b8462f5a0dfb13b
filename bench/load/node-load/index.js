// A small Node load generator for bench scenarios whose clients wrk cannot express (a cookie
// jar, a source address that changes mid-session, multi-step visits). Clients run as async
// loops in piscina worker threads, so the generator is not limited to one core; each thread
// returns counts and a fixed-bucket histogram, merged here, and percentiles are read from the
// merged histogram (never averaged across threads).
//
//   runLoad({ client, clientExport, threads, clients, durationS, params, ... })
//     → { requests, durationS, rps, p50Ms, p99Ms, errors, errorCount, counters, distinct,
//         threads, threadsLeft, overran, firstCrash }
//
// `client` is the URL of a module exporting the client function (see ./worker.js for its
// context). A fresh pool is made for every call and destroyed before it returns, so no
// thread outlives a measurement (`threadsLeft` checks it: 0, or the bench has a leak).
// Latency is per request: from writing it to its last byte, connect time excluded (as wrk).

import { Piscina } from 'piscina';
import { createHistogram, mergeHistogram, percentileMicros } from './histogram.js';

export { openConnection, openTlsConnection, Connection, HttpError } from './http-client.js';
export { CookieJar } from './cookie-jar.js';
export { createHistogram, mergeHistogram, percentileMicros, recordMicros } from './histogram.js';

const workerUrl = new URL('./worker.js', import.meta.url).href;

/** `total` clients spread over `threads` as evenly as possible: [{ firstClient, clients }]. */
export function splitClients(total, threads) {
  const n = Math.max(1, Math.min(threads, total));
  const shares = [];
  let firstClient = 0;
  for (let t = 0; t < n; t += 1) {
    const clients = Math.floor(total / n) + (t < total % n ? 1 : 0);
    shares.push({ firstClient, clients });
    firstClient += clients;
  }
  return shares;
}

/**
 * Runs `clients` clients of `client` (module URL) / `clientExport` over `threads` worker
 * threads for `durationS` seconds; `params` reaches every client as ctx.params. Every client
 * loop is bounded by the duration and by `maxLoopsPerClient`; every task by durationS +
 * graceMs. Rejects only if a thread fails to load the client module.
 */
export async function runLoad({
  client,
  clientExport = 'default',
  threads = 2,
  clients,
  durationS,
  params = {},
  maxLoopsPerClient = 10_000_000,
  graceMs = 10_000,
}) {
  if (!Number.isInteger(clients) || clients < 1) throw new Error(`expected a client count ≥ 1 but received ${clients}`);
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`expected a thread count ≥ 1 but received ${threads}`);
  if (!(durationS > 0)) throw new Error(`expected a duration in seconds > 0 but received ${durationS}`);
  const shares = splitClients(clients, threads);
  const pool = new Piscina({
    filename: workerUrl,
    minThreads: shares.length,
    maxThreads: shares.length,
    // Tasks are long and asynchronous: the worker's event loop must keep turning.
    atomics: 'disabled',
    concurrentTasksPerWorker: 1,
  });
  const workers = [...pool.threads];
  let parts;
  try {
    const clientModule = client instanceof URL ? client.href : String(client);
    parts = await Promise.all(
      shares.map((share) =>
        pool.run({ clientModule, clientExport, ...share, durationMs: durationS * 1000, params, maxLoopsPerClient, graceMs }),
      ),
    );
  } finally {
    workers.push(...pool.threads.filter((w) => !workers.includes(w)));
    await pool.destroy();
  }
  return merge(parts, shares.length, workers);
}

function merge(parts, threads, workers) {
  const histogram = createHistogram();
  const errors = {};
  const counters = {};
  const distinct = {};
  let requests = 0;
  let errorCount = 0;
  let elapsedMs = 0;
  let overran = 0;
  let firstCrash = null;
  for (const part of parts) {
    mergeHistogram(histogram, part.histogram);
    requests += part.requests;
    errorCount += part.errorCount;
    for (const [kind, n] of Object.entries(part.errors)) errors[kind] = (errors[kind] ?? 0) + n;
    for (const [key, n] of Object.entries(part.counters)) counters[key] = (counters[key] ?? 0) + n;
    for (const [key, values] of Object.entries(part.distinct)) {
      const set = (distinct[key] ??= new Set());
      for (const v of values) set.add(v);
    }
    // Threads run side by side: the measurement lasted as long as the slowest.
    elapsedMs = Math.max(elapsedMs, part.elapsedMs);
    overran += part.overran;
    firstCrash ??= part.firstCrash;
  }
  const durationS = elapsedMs / 1000;
  const ms = (micros) => (micros === null ? null : micros / 1000);
  return {
    requests,
    durationS,
    rps: durationS > 0 ? requests / durationS : 0,
    p50Ms: ms(percentileMicros(histogram, 50)),
    p99Ms: ms(percentileMicros(histogram, 99)),
    errors,
    errorCount,
    counters,
    distinct: Object.fromEntries(Object.entries(distinct).map(([key, set]) => [key, set.size])),
    threads,
    // A terminated worker_threads Worker has threadId −1.
    threadsLeft: workers.filter((w) => w.threadId !== -1).length,
    overran,
    firstCrash,
  };
}

/**
 * The harness's load record from runLoad's result `r` (core fields plus `extra`). Throws when a
 * worker thread outlived its pool or no request completed: such a run measured nothing.
 */
export function harnessRecord(r, extra) {
  if (r.threadsLeft > 0) throw new Error(`node load generator: ${r.threadsLeft} worker thread(s) still running after the pool was destroyed`);
  if (r.requests === 0) {
    throw new Error(`no request completed (errors ${JSON.stringify(r.errors)})${r.firstCrash ? `; first client crash: ${r.firstCrash}` : ''}`);
  }
  return {
    requests: r.requests,
    durationS: r.durationS,
    rps: r.rps,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    errors: r.errors,
    errorCount: r.errorCount,
    extra,
  };
}
