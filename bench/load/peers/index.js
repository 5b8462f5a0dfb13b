// The peer registry, in the default run order. See ./common.js for what a peer exports.

import * as tether from './tether.js';
import * as haproxy from './haproxy.js';
import * as nginx from './nginx.js';
import * as httpProxy from './http-proxy.js';
import * as haproxySource from './haproxy-source.js';
import * as nginxHash from './nginx-hash.js';
import * as tetherBound from './tether-bound.js';
import * as tetherLogged from './tether-logged.js';
import * as uwsFloor from './uws-floor.js';
import * as tlsFloor from './tls-floor.js';
import * as tetherBaseline from './tether-baseline.js';

// Variants that run only in some scenarios (their `scenarios` export) come last.
export const peers = [tether, haproxy, nginx, httpProxy, haproxySource, nginxHash, tetherBound, tetherLogged, uwsFloor, tlsFloor, tetherBaseline];

/**
 * Whether `peer` runs in `scenario`: the one rule, used by the harness and recorded in
 * results.json. A peer's `scenarios` list (variants made for one scenario) limits it to
 * those; a passthrough scenario (backendKind 'tls') needs a peer that does TLS passthrough
 * (exports startPassthrough; node-http-proxy does not), an HTTPS one (frontend 'https') a peer
 * that terminates TLS (exports startHttps), an `authz` scenario one that does the
 * authorization handshake (exports startAuthz; only Tether).
 */
export function runsIn(peer, scenario) {
  if (peer.scenarios && !peer.scenarios.includes(scenario.name)) return false;
  // A scenario that needs a stickiness mode (learn-hit: `learn`) runs the peers that have it.
  if (scenario.stickiness && !(peer.stickinessModes ?? []).includes(scenario.stickiness)) return false;
  if (scenario.backendKind === 'tls') return typeof peer.startPassthrough === 'function';
  // HTTPS termination (https-sticky-hit, https-handshakes): peers exporting startHttps().
  if (scenario.frontend === 'https') return typeof peer.startHttps === 'function';
  // The authorization handshake (authz-handshakes) is Tether's own: peers exporting startAuthz().
  if (scenario.authz) return typeof peer.startAuthz === 'function';
  return true;
}
