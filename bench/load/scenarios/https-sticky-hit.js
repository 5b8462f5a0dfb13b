// Scenario https-sticky-hit: sticky-hit over HTTPS. Keep-alive connections, so a handshake per
// connection and then only the record layer: every request carries a valid route cookie the
// peer itself issued (over HTTPS), and the peer's work is decrypting the request, reading and
// checking the cookie, routing to the named backend and encrypting the answer. What it shows
// beside sticky-hit: what TLS termination adds per request. See ./https-common.js for the
// setting and the checks.
//
// The load is wrk on the https:// url (wrk is built with OpenSSL; it sends SNI 127.0.0.1 and
// does not verify the certificate, which prepare() has verified for https.bench.test).

export { frontend, prepareHttps as prepare } from './https-common.js';

export const name = 'https-sticky-hit';
export const description = 'keep-alive HTTPS, TLS terminated by the peer (ECDSA P-256); every request carries the peer\'s own valid sticky cookie (one per backend, per wrk thread)';

export function loadDescription(options) {
  return `wrk -t${options.threads} -c${options.connections} -d${options.duration}s on https://, keep-alive (one handshake per connection)`;
}
