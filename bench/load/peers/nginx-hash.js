// nginx OSS with stickiness by client address instead of a cookie: `hash $remote_addr
// consistent` (ketama) over the whole address. Not `ip_hash`: that hashes only the first
// three octets of an IPv4 address, so every client in 127.0.0.0/24 would go to one server and
// roaming between 127.0.0.x addresses would look lossless. Runs in the roaming scenario only;
// keep-alive, body streaming, limits and X-Forwarded-* are nginx.js's own configuration.

import * as nginx from './nginx.js';

export const name = 'nginx-hash';
export const cookieName = null; // no route cookie: the client's address is the route
export const scenarios = ['roaming'];
export const describe = 'nginx OSS: worker_processes W, upstream hash $remote_addr consistent (no cookie), upstream keepalive 64';

export const available = nginx.available;

/** nginx.js's configuration with address-hash routing instead of its cookie maps. */
function hashStickiness(backends) {
  return { http: nginx.upstream('app', backends, 'hash $remote_addr consistent'), target: 'http://app', location: '' };
}

export function config(options) {
  return nginx.config(options, hashStickiness);
}

export function start(options) {
  return nginx.start(options, config);
}
