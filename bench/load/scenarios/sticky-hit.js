// Scenario sticky-hit: a returning client. Every request carries a valid route cookie the
// peer itself issued, so the balancer's work is: read the cookie, validate it (for Tether:
// decrypt and authenticate the token), route to the named backend, add no new cookie.
//
// prepare() asks the peer for cookies with fresh cookie-less requests until it has one per
// backend (bounded), then checks that each cookie pins its backend. wrk's threads get the
// cookies round robin, so with -t2 half the connections go to each backend.

import { httpGet } from '../processes.js';
import { backendOf, routeCookieFrom } from './cookies.js';

export const name = 'sticky-hit';
export const description = 'every request carries the peer\'s own valid sticky cookie (one per backend, per wrk thread)';

const MAX_ISSUE_ATTEMPTS = 20;
const PIN_CHECKS = 5;

/**
 * `https` (the HTTPS scenarios' context: { ca, serverName }): every request goes over TLS,
 * the peer's certificate verified for that name (see ./https-common.js).
 */
export async function prepare({ url, peer, backendNames, https = null }) {
  const tls = https ? { ca: https.ca, servername: https.serverName } : null;
  const cookieByBackend = new Map();
  for (let attempt = 0; attempt < MAX_ISSUE_ATTEMPTS && cookieByBackend.size < backendNames.length; attempt += 1) {
    const response = await httpGet(url, { tls });
    const backend = backendOf(response, backendNames, `${peer.name} first visit`);
    const cookie = routeCookieFrom(response.headers, peer.cookieName);
    if (!cookie) {
      throw new Error(`${peer.name}: expected a ${peer.cookieName} cookie on a first visit but received Set-Cookie ${JSON.stringify(response.headers['set-cookie'] ?? null)}`);
    }
    if (!cookieByBackend.has(backend)) cookieByBackend.set(backend, cookie);
  }

  let reissued = 0;
  for (const [backend, cookie] of cookieByBackend) {
    for (let i = 0; i < PIN_CHECKS; i += 1) {
      const response = await httpGet(url, { headers: { Cookie: cookie }, tls });
      const got = backendOf(response, backendNames, `${peer.name} with cookie`);
      if (got !== backend) {
        throw new Error(`${peer.name}: cookie ${cookie} was issued by ${backend} but routed to ${got}: stickiness broken`);
      }
      if (routeCookieFrom(response.headers, peer.cookieName)) reissued += 1;
    }
  }
  return {
    cookies: [...cookieByBackend.values()],
    checks: {
      backendsPinned: [...cookieByBackend.keys()],
      pinChecksPerBackend: PIN_CHECKS,
      // HAProxy's `insert indirect` never re-sends a valid cookie; a peer that does pays for it.
      responsesReissuingCookie: reissued,
    },
  };
}
