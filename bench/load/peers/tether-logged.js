// Tether with the access log on (`--access-log FILE`, a file in the run's work directory):
// one JSON line per request. Runs in sticky-hit only, beside plain Tether, to show what logging
// costs (issue #8: at most 10% of sticky-hit throughput). Everything else is tether.js's setup.

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import * as tether from './tether.js';

export const name = 'tether-logged';
export const cookieName = tether.cookieName;
export const scenarios = ['sticky-hit'];
export const describe = `${tether.describe}, --access-log FILE`;
export const available = tether.available;

export function start(options) {
  const file = join(options.dir, 'access.log');
  // Each round starts from an empty file: the runs' logs would fill the disk otherwise.
  rmSync(file, { force: true });
  return tether.start(options, ['--access-log', file]);
}
