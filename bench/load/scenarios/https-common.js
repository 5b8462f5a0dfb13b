// What the HTTPS scenarios share (https-sticky-hit, https-handshakes). Not a scenario itself.
//
// The setting: the peer terminates TLS itself, in front of the same two plain-HTTP backends the
// HTTP scenarios use, with one ECDSA P-256 certificate for https.bench.test made for the run
// and signed by a CA made for the run (../pki.js; the peer gets the leaf and its key, no other
// chain). Each peer is started with its startHttps() (../peers/common.js) on the same handshake
// terms (../peers/tls-terms.js), and the harness's context carries
// `https: { host, port, ca, serverName }` beside the https:// url.
//
// prepare(), shared: sticky-hit's (one cookie per backend from cookie-less requests, each cookie
// pinning its backend, over verified TLS), then on one more first visit the facts the run is
// compared on, kept in `checks`: the negotiated protocol, cipher and key-exchange group, and the route cookie's
// attributes. The cookie must be Secure (Tether's is on HTTPS; the other peers are configured
// so): a peer issuing none, or one without Secure, or a cookie that reaches another backend,
// fails the run.

import { httpGet } from '../processes.js';
import { prepare as stickyHitPrepare } from './sticky-hit.js';
import { backendOf } from './cookies.js';

export const frontend = 'https';

/** The Set-Cookie line for cookie `name` in a response's headers, or null. */
function setCookieLine(headers, name) {
  const lines = headers['set-cookie'] ?? [];
  return (Array.isArray(lines) ? lines : [lines]).find((line) => line.trimStart().startsWith(`${name}=`)) ?? null;
}

/** The HTTPS scenarios' prepare(): see the header. Resolves sticky-hit's { cookies, checks } plus `pins`. */
export async function prepareHttps({ url, peer, backendNames, https }) {
  if (!https) throw new Error(`${peer.name}: an HTTPS scenario needs the harness's https context (url ${url})`);
  const prepared = await stickyHitPrepare({ url, peer, backendNames, https });
  const first = await httpGet(url, { tls: { ca: https.ca, servername: https.serverName } });
  backendOf(first, backendNames, `${peer.name} first visit over HTTPS`);
  const line = setCookieLine(first.headers, peer.cookieName);
  if (!line) throw new Error(`${peer.name}: expected a ${peer.cookieName} cookie on a first visit over HTTPS but received Set-Cookie ${JSON.stringify(first.headers['set-cookie'] ?? null)}`);
  const attributes = line.split(';').slice(1).map((a) => a.trim().split('=', 1)[0].toLowerCase());
  if (!attributes.includes('secure')) throw new Error(`${peer.name}: expected its ${peer.cookieName} cookie to be Secure over HTTPS but received ${JSON.stringify(line)}`);
  const backendsPinned = prepared.checks.backendsPinned;
  return {
    cookies: prepared.cookies,
    // Which backend each cookie pins (the order of `cookies`), for clients that check every answer.
    pins: prepared.cookies.map((cookie, i) => ({ cookie, backend: backendsPinned[i] })),
    checks: {
      ...prepared.checks,
      certificateVerifiedFor: https.serverName,
      tls: `${first.tls.protocol} ${first.tls.cipher} ${first.tls.group}`,
      cookieAttributes: attributes.join(', '),
    },
  };
}
