// The scenario registry, in the order they run by default. A scenario module exports:
//
//   name, description
//   prepare({ url, peer, backendNames, backends, options, dir }) → { cookies, checks, cleanup? }
//       `cookies`: the Cookie header values wrk sends (one per wrk thread, round robin; none
//       for a cookie-less client); `checks`: what was verified before the run (kept in
//       results); `cleanup()`: anything the scenario holds open (sockets), awaited after the run.
//   measure?({ ...the same, prepared, durationS }) → { requests, durationS, rps, p50Ms, p99Ms,
//       errors, errorCount, extra?, raw? }
//       Drives the load itself instead of wrk (multi-step clients wrk cannot express). `extra`
//       holds the scenario's own figures, named by `columns`.
//   columns?: [{ key, label, digits, missing? }]   extra figures for the report (medians over
//       rounds); `missing`: what the table shows when a figure could not be measured (default '—')
//   loadDescription?(options) → string   how the load is driven, for the report header
//   warmup?: false                       skip the warm-up run (the scenario warms up itself)
//   stickiness?: 'learn'                 runs only the peers listing it in `stickinessModes`, and
//       starts them with it (learn-hit: the balancer learns the app's own session cookie)
//   backendKind?: 'tls'                  TLS passthrough: the harness starts TLS backends
//       (../tls-backend.js, certificates from a CA made for the run) instead of / besides the
//       HTTP ones, starts each peer with its startPassthrough() (SNI routes, one per backend
//       name), and the context carries `passthrough: { host, port, ca, routes }` instead of a
//       usable `url`. Such a scenario drives its own load (measure). See ./passthrough-common.js.
//   frontend?: 'https'                   HTTPS termination: the harness makes a certificate for the
//       run (a CA and an ECDSA P-256 leaf for https.bench.test, ../pki.js), starts each peer
//       exporting startHttps() with it in front of the HTTP backends, and the context's `url`
//       is https://127.0.0.1:PORT/ and it carries `https: { host, port, ca, serverName }`
//       (for verified clients; wrk verifies nothing). See ./https-common.js.
//   authz?: true                         the authorization handshake: runs only the peers exporting
//       startAuthz() (Tether), started with it instead of start(); the context also carries
//       `authz` (see ../peers/common.js). See ./authz-handshakes.js.
//
// Which peers run in which scenario is decided in one place, ../peers/index.js runsIn(): a
// peer module may export `scenarios: [names]` to run only in those (variants such as
// source-IP stickiness exist to show what roaming clients lose), and only peers exporting
// startPassthrough() run in backendKind 'tls' scenarios, only peers exporting startHttps() in
// frontend 'https' ones, and only peers exporting startAuthz() in `authz` ones.

import * as stickyHit from './sticky-hit.js';
import * as learnHit from './learn-hit.js';
import * as firstVisit from './first-visit.js';
import * as roaming from './roaming.js';
import * as largeBody from './large-body.js';
import * as manyIdle from './many-idle.js';
import * as passthroughSmall from './passthrough-small.js';
import * as passthroughBulk from './passthrough-bulk.js';
import * as passthroughHandshakes from './passthrough-handshakes.js';
import * as httpsStickyHit from './https-sticky-hit.js';
import * as httpsHandshakes from './https-handshakes.js';
import * as authzHandshakes from './authz-handshakes.js';

export const scenarios = [
  stickyHit,
  firstVisit,
  learnHit,
  roaming,
  largeBody,
  manyIdle,
  passthroughSmall,
  passthroughBulk,
  passthroughHandshakes,
  httpsStickyHit,
  httpsHandshakes,
  authzHandshakes,
];
