#!/usr/bin/env node
// The `tether` command: argv → config → start. All logic lives in orchestrator/run.ts.
import { run } from './orchestrator/run.js';

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`tether: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
