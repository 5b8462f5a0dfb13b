// The handshake terms every HTTPS peer is given, so that they all negotiate the same thing:
// Tether's own (src/tls/certificates.ts: Mozilla "intermediate", TLS 1.2 and 1.3, ECDHE with
// AEAD ciphers only, curves X25519, P-256, P-384; TLS 1.3 suites left to OpenSSL's defaults),
// copied here because the bench does not import Tether's sources; test/bench/bench-https.test.ts
// checks the copy against them. With these, every peer and every client here (wrk, node:tls:
// OpenSSL 3) settles on TLS 1.3, TLS_AES_256_GCM_SHA384, X25519, and an ECDSA P-256 signature.

/** TLS 1.2 cipher suites, in preference order (the server's order is honoured). */
export const TLS_CIPHERS =
  'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:' +
  'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:' +
  'ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305';

/** Key-exchange groups, as OpenSSL's curves list reads them. */
export const TLS_CURVES = 'X25519:P-256:P-384';

export const TLS_MIN_VERSION = 'TLSv1.2';
export const TLS_MAX_VERSION = 'TLSv1.3';
