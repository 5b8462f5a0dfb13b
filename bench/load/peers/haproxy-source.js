// HAProxy with stickiness by client address instead of a cookie: `balance source` hashes the
// source IP (`hash-type consistent`, so adding or removing a server moves few clients). It
// runs in the roaming scenario only, to show what address-based stickiness loses when a
// client's address changes mid-session; everything else is haproxy.js's configuration.

import * as haproxy from './haproxy.js';

export const name = 'haproxy-source';
export const cookieName = null; // no route cookie: the client's address is the route
export const scenarios = ['roaming'];
export const describe =
  'HAProxy: nbthread W, balance source, hash-type consistent (no cookie), http-reuse always, X-Forwarded-*, no logs';

export const available = haproxy.available;

/** The `backend app` body: hash the source address, no cookie. */
function sourceStickiness(backends) {
  return `    balance source
    hash-type consistent
    http-reuse always
${backends.map((b) => `    server ${b.name} 127.0.0.1:${b.port}`).join('\n')}`;
}

export function config(options) {
  return haproxy.config(options, sourceStickiness);
}

export function start(options) {
  return haproxy.start(options, config);
}
