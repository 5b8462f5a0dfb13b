// Scenario learn-hit: a returning client of an application that issues its own session
// cookie (JSESSIONID), through a balancer that learned which backend set it. Every request
// carries a session the backend issued through the peer; the balancer's work is: read the
// cookie, look the session up in its shared table (Tether) or stick table (HAProxy), route to
// the backend that owns it, add nothing. Runs the peers with a learn mode (their
// `stickinessModes`): nginx OSS has none (nginx Plus `sticky learn`), node-http-proxy none.
//
// prepare() logs in (GET /login, the bench backend sets JSESSIONID=<name>.<n>) until it holds
// one session per backend, then checks that each session pins its backend and that the peer
// added no cookie of its own.

import { httpGet } from '../processes.js';
import { backendOf } from './cookies.js';

export const name = 'learn-hit';
export const description = 'every request carries an application session (JSESSIONID) the peer learned from the backend that set it';
export const stickiness = 'learn';

const APP_COOKIE = 'JSESSIONID';
const MAX_LOGIN_ATTEMPTS = 20;
const PIN_CHECKS = 5;

function sessionCookie(headers) {
  const setCookie = headers['set-cookie'] ?? [];
  const lines = Array.isArray(setCookie) ? setCookie : [setCookie];
  for (const line of lines) {
    const pair = line.split(';', 1)[0].trim();
    if (pair.startsWith(`${APP_COOKIE}=`) && pair.length > APP_COOKIE.length + 1) return { pair, lines };
  }
  return { pair: null, lines };
}

export async function prepare({ url, peer, backendNames }) {
  const loginUrl = new URL('/login', url).href;
  const cookieByBackend = new Map();
  for (let attempt = 0; attempt < MAX_LOGIN_ATTEMPTS && cookieByBackend.size < backendNames.length; attempt += 1) {
    const response = await httpGet(loginUrl);
    const backend = backendOf(response, backendNames, `${peer.name} login`);
    const { pair, lines } = sessionCookie(response.headers);
    if (!pair) throw new Error(`${peer.name}: the backend's ${APP_COOKIE} did not come through (Set-Cookie ${JSON.stringify(lines)})`);
    if (lines.length !== 1) throw new Error(`${peer.name}: learn mode must add no cookie, but the login answer set ${JSON.stringify(lines)}`);
    if (!cookieByBackend.has(backend)) cookieByBackend.set(backend, pair);
  }
  if (cookieByBackend.size < backendNames.length) {
    throw new Error(`${peer.name}: ${MAX_LOGIN_ATTEMPTS} logins reached only ${[...cookieByBackend.keys()].join(', ')}`);
  }
  for (const [backend, cookie] of cookieByBackend) {
    for (let i = 0; i < PIN_CHECKS; i += 1) {
      const response = await httpGet(url, { headers: { Cookie: cookie } });
      const got = backendOf(response, backendNames, `${peer.name} with ${cookie}`);
      if (got !== backend) throw new Error(`${peer.name}: session ${cookie} was issued by ${backend} but routed to ${got}: the peer did not learn it`);
      if (response.headers['set-cookie']) throw new Error(`${peer.name}: learn mode must add no cookie, but a request set ${JSON.stringify(response.headers['set-cookie'])}`);
    }
  }
  return {
    cookies: [...cookieByBackend.values()],
    checks: { backendsPinned: [...cookieByBackend.keys()], pinChecksPerBackend: PIN_CHECKS },
  };
}
