// Tether as built from another checkout, beside this one in the same run: the before/after of
// a change measured against the same peers on the same noisy machine. Set
// TETHER_BASELINE=/path/to/checkout (built there with `npm ci && npm run build`), e.g.
//   git worktree add /tmp/tether-before <commit> && (cd /tmp/tether-before && npm ci && npm run build)
//   TETHER_BASELINE=/tmp/tether-before node bench/run.js --peers tether,tether-baseline,uws-floor
// Without it the peer is unavailable (listed as such, never silently this checkout).

import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tether from './tether.js';

export const name = 'tether-baseline';
/** Not in the default --peers list: it needs TETHER_BASELINE. */
export const optIn = true;
export const cookieName = tether.cookieName;
export const stickinessModes = tether.stickinessModes;

const baseline = () => (process.env.TETHER_BASELINE ? resolve(process.env.TETHER_BASELINE) : null);

export const describe = `${tether.describe}, built from TETHER_BASELINE (${baseline() ?? 'unset'})`;

export function available() {
  const dir = baseline();
  if (dir === null) return { ok: false, reason: 'TETHER_BASELINE is not set', install: 'TETHER_BASELINE=/path/to/a/built/checkout' };
  if (!existsSync(join(dir, 'dist', 'cli.js'))) return { ok: false, reason: `not built: ${dir}/dist/cli.js missing`, install: `cd ${dir} && npm ci && npm run build` };
  return { ok: true, version: `tether (${dir}/dist/cli.js) on node ${process.version}` };
}

export function start(options) {
  return tether.start({ ...options, repoRoot: baseline() });
}

/** HTTPS as tether.startHttps (a baseline built before HTTPS termination fails to start, named). */
export function startHttps(options) {
  return tether.startHttps({ ...options, repoRoot: baseline() });
}
