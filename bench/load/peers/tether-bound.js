// Tether with session ↔ terminal binding on (`--bind ip`): every route token is sealed with
// the client's address and checked against it on every request. Runs in sticky-hit only,
// beside plain Tether, to show what the binding check costs (issue #5: ≤ 5% of sticky-hit
// throughput). Everything else is tether.js's setup.

import * as tether from './tether.js';

export const name = 'tether-bound';
export const cookieName = tether.cookieName;
export const scenarios = ['sticky-hit'];
export const describe = `${tether.describe}, --bind ip`;
export const available = tether.available;

export function start(options) {
  return tether.start(options, ['--bind', 'ip']);
}
