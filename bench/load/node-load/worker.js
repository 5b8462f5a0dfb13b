// One piscina task = one thread's share of the load: `clients` concurrent clients (async loops
// on this thread's event loop) run for `durationMs`, and the task returns plain counts and a
// mergeable latency histogram for the main thread to add up (see ./index.js).
//
// A client is an async function exported by a module (`clientModule` URL, `clientExport`
// name), called once with a context:
//
//   ctx.index            this client's number, unique across threads (0 … total − 1)
//   ctx.params           the task's params, as given to runLoad
//   ctx.running()        true while the client should go on; false once the duration is over
//                        or after maxLoopsPerClient calls (so every client loop is bounded
//                        in time and in count — call it once per iteration)
//   ctx.response(µs)     a complete response and its latency
//   ctx.error(kind)      a failed request (kind: connect, timeout, closed, status, …)
//   ctx.count(key, n=1)  a scenario counter, summed across clients and threads
//   ctx.distinct(k, v)   a value for a distinct count (set union across threads; capped)
//
// A client that throws is counted as errors.crashed and stops; the others go on.

import { createHistogram, recordMicros } from './histogram.js';

const MAX_DISTINCT_VALUES = 4096;

export default async function runClients(task) {
  const {
    clientModule,
    clientExport = 'default',
    clients,
    firstClient = 0,
    durationMs,
    params = {},
    maxLoopsPerClient = 10_000_000,
    graceMs = 10_000,
  } = task;
  const client = (await import(clientModule))[clientExport];
  if (typeof client !== 'function') {
    throw new Error(`expected ${clientModule} to export a client function named ${clientExport} but received ${typeof client}`);
  }

  const histogram = createHistogram();
  const errors = {};
  const counters = {};
  const distinct = {};
  let requests = 0;
  let errorCount = 0;
  let firstCrash = null;

  const started = performance.now();
  const until = started + durationMs;
  const contextFor = (index) => {
    let loops = 0;
    return {
      index,
      params,
      running: () => {
        loops += 1;
        return loops <= maxLoopsPerClient && performance.now() < until;
      },
      response: (micros) => {
        requests += 1;
        recordMicros(histogram, micros);
      },
      error: (kind) => {
        errorCount += 1;
        errors[kind] = (errors[kind] ?? 0) + 1;
      },
      count: (key, n = 1) => {
        counters[key] = (counters[key] ?? 0) + n;
      },
      distinct: (key, value) => {
        const values = (distinct[key] ??= new Set());
        if (values.size < MAX_DISTINCT_VALUES) values.add(value);
      },
    };
  };

  let finished = 0;
  const runs = Array.from({ length: clients }, (_, i) =>
    Promise.resolve()
      .then(() => client(contextFor(firstClient + i)))
      .catch((error) => {
        errorCount += 1;
        errors.crashed = (errors.crashed ?? 0) + 1;
        firstCrash ??= error instanceof Error ? error.stack ?? error.message : String(error);
      })
      .finally(() => {
        finished += 1;
      }),
  );
  // Clients bound every wait themselves; this bounds the task in case one does not, so a
  // hung client costs a count (`overran`), not the bench.
  let timer;
  const overrun = new Promise((resolve) => {
    timer = setTimeout(resolve, durationMs + graceMs);
  });
  await Promise.race([Promise.all(runs), overrun]);
  clearTimeout(timer);

  return {
    requests,
    errorCount,
    errors,
    counters,
    distinct: Object.fromEntries(Object.entries(distinct).map(([key, values]) => [key, [...values]])),
    histogram,
    elapsedMs: performance.now() - started,
    clients,
    overran: clients - finished,
    firstCrash,
  };
}
