#!/usr/bin/env -S node --single-threaded-gc
// The `tether` command: argv → config → start. All logic lives in orchestrator/run.ts.
//
// --single-threaded-gc (in the shebang, and in `npm start`): GC without helper threads.
// Measured with wrk on a 2-core machine shared with the load generator and backends: 3-13%
// more requests/s and ~2 us less system CPU per request, from fewer context switches. It must
// be on the command line: V8 crashes if GC flags change after it has started.
import { run } from './orchestrator/run.js';

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`tether: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
