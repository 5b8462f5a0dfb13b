// Scenario first-visit: a new client on every request. No cookie is sent, so the balancer
// picks a backend (round robin) and issues a route cookie on every response (for Tether:
// seals a fresh token).
//
// prepare() checks that cookie-less responses do carry the peer's cookie.

import { httpGet } from '../processes.js';
import { backendOf, routeCookieFrom } from './cookies.js';

export const name = 'first-visit';
export const description = 'no cookie on any request; every response issues a sticky cookie';

const CHECKS = 4;

export async function prepare({ url, peer, backendNames }) {
  const seen = new Set();
  for (let i = 0; i < CHECKS; i += 1) {
    const response = await httpGet(url);
    seen.add(backendOf(response, backendNames, `${peer.name} first visit`));
    if (!routeCookieFrom(response.headers, peer.cookieName)) {
      throw new Error(`${peer.name}: expected a ${peer.cookieName} cookie on a first visit but received Set-Cookie ${JSON.stringify(response.headers['set-cookie'] ?? null)}`);
    }
  }
  return { cookies: [], checks: { issuedCookieOn: `${CHECKS}/${CHECKS}`, backendsSeen: [...seen] } };
}
