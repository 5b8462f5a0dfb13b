// Micro-benchmarks for the route-token and HMAC hot path: seal, open (hit and forged), HMAC
// sign and verify, and the authorization handshake's box seal (HKDF + AES-256-GCM of a grant),
// native addon against the node:crypto reference, with the speed-up per op.
// Needs `npm run build` (the addon in build/Release and dist/ from tsc).
// Run alone: `node bench/micro/token.bench.js`.

import Benchmark from 'benchmark';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { runSuite } from './harness.js';
import { aesGcmSealInto, createTokenCrypto, hmacSha256, hmacVerify } from '../../dist/native/index.js';
import { seal as sealBox, serverBoxInfo } from '../../dist/authz/protocol.js';
import { createReferenceTokenCrypto, referenceHmacSha256, referenceHmacVerify } from '../../dist/native/reference.js';
import { encodePayload, tokenAad } from '../../dist/sticky/route-token.js';

const IMPLS = {
  native: {
    crypto: createTokenCrypto,
    sign: hmacSha256,
    verify: hmacVerify,
    box: { hmac: hmacSha256, aead: aesGcmSealInto },
  },
  'node:crypto': {
    crypto: createReferenceTokenCrypto,
    sign: referenceHmacSha256,
    verify: referenceHmacVerify,
    box: {},
  },
};

const OPS = ['seal', 'open (hit)', 'open (forged)', 'HMAC sign', 'HMAC verify', 'authz box seal'];

/** Builds the suite; results go to `sink` so V8 cannot drop the work. */
export function buildSuite() {
  // What a sticky request carries: a route payload for "app-1" bound to pool "web", cookie mode.
  const ring = [
    { id: 2, key: randomBytes(32) },
    { id: 1, key: randomBytes(32) },
  ];
  const payload = encodePayload({ backendId: 'app-1', issuedAt: 1_700_000_000, flags: 0, bindingTag: Buffer.alloc(8) });
  const aad = tokenAad('web', 'cookie');
  // A control-channel frame: 32-byte agent key, ~200-byte message.
  const macKey = randomBytes(32);
  const frame = randomBytes(200);
  // A grant as the balancer seals it for a server (src/authz/balancer.ts proof()).
  const boxKey = randomBytes(32);
  const salt = randomBytes(16);
  const nonce = randomBytes(12);
  const grant = { server: 's1', pool: 'authz', user: 'user0001', code: randomBytes(32), terminal: '127.0.0.1', issuedAt: 1_700_000_000_000, expiresAt: 1_700_000_030_000 };
  let sink = 0;

  const suite = new Benchmark.Suite('route token + HMAC');
  for (const [impl, { crypto: make, sign, verify, box }] of Object.entries(IMPLS)) {
    const crypto = make();
    crypto.setKeyRing(ring, 2);
    const token = crypto.seal(payload, aad);
    const last = token.at(-3) === 'A' ? 'B' : 'A';
    const forged = token.slice(0, -3) + last + token.slice(-2);
    const mac = sign(macKey, frame);
    suite.add(`seal ${impl}`, () => {
      sink += crypto.seal(payload, aad).length;
    });
    suite.add(`open (hit) ${impl}`, () => {
      sink += crypto.open(token, aad).payload.length;
    });
    suite.add(`open (forged) ${impl}`, () => {
      sink += crypto.open(forged, aad).status;
    });
    suite.add(`HMAC sign ${impl}`, () => {
      sink += sign(macKey, frame)[0];
    });
    suite.add(`HMAC verify ${impl}`, () => {
      sink += verify(macKey, frame, mac) ? 1 : 0;
    });
    suite.add(`authz box seal ${impl}`, () => {
      sink += sealBox(boxKey, salt, serverBoxInfo('authz', 's1'), grant, { nonce, ...box }).length;
    });
  }
  suite.sink = () => sink;
  return suite;
}

/** Runs the suite and returns [{name, nsPerOp, rme, samples}]. */
export function run({ log = true } = {}) {
  return runSuite(buildSuite(), { log });
}

/** One line per op: native ns/op, node:crypto ns/op, and how many times faster native is. */
export function speedups(results) {
  const ns = new Map(results.map((r) => [r.name, r.nsPerOp]));
  return OPS.map((op) => {
    const native = ns.get(`${op} native`);
    const js = ns.get(`${op} node:crypto`);
    return { op, nativeNs: native, jsNs: js, speedup: js / native };
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await run();
  console.log(`\n${'op'.padEnd(16)} ${'native'.padStart(10)} ${'node:crypto'.padStart(12)} ${'speed-up'.padStart(9)}`);
  for (const { op, nativeNs, jsNs, speedup } of speedups(results)) {
    console.log(
      `${op.padEnd(16)} ${`${nativeNs.toFixed(0)} ns`.padStart(10)} ${`${jsNs.toFixed(0)} ns`.padStart(12)} ${`${speedup.toFixed(2)}x`.padStart(9)}`,
    );
  }
}
