// Micro-benchmarks for the route-token and HMAC hot path: seal (v2), open of both formats (a
// valid token, and a forged one), HMAC sign and verify, and the authorization handshake's box
// seal (HKDF + AES-256-GCM of a grant), native addon against the node:crypto reference, with
// the speed-up per op and what v2 costs over v1 on open (the sticky-hit path). v1 is only
// opened now; its tokens come from the fixture implementation (test/fixtures/token-format.mjs),
// which also gives the node:crypto column a "seal v1" row to compare with.
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
import { rawToken as sealV1 } from '../../test/fixtures/token-format.mjs';

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

const OPS = ['seal v2', 'open v2 (hit)', 'open v1 (hit)', 'open v2 (forged)', 'open v1 (forged)', 'HMAC sign', 'HMAC verify', 'authz box seal'];

/** The same token with one character of its tag changed (still canonical base64url). */
function forge(token) {
  const last = token.at(-3) === 'A' ? 'B' : 'A';
  return token.slice(0, -3) + last + token.slice(-2);
}

/** Builds the suite; results go to `sink` so V8 cannot drop the work. */
export function buildSuite() {
  // What a sticky request carries: a route payload for "app-1" bound to pool "web", cookie mode.
  const ring = [
    { id: 2, key: randomBytes(32) },
    { id: 1, key: randomBytes(32) },
  ];
  const payload = encodePayload({ backendId: 'app-1', issuedAt: 1_700_000_000, flags: 0, bindingTag: Buffer.alloc(8) });
  const aad = tokenAad('web', 'cookie');
  const v1 = sealV1(2, ring[0].key, randomBytes(12), payload, aad).toString('base64url');
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
    if (crypto.open(token, aad).version !== 2 || crypto.open(v1, aad).version !== 1) throw new Error('bench tokens are not v2 and v1');
    const forged = forge(token);
    const forgedV1 = forge(v1);
    const mac = sign(macKey, frame);
    suite.add(`seal v2 ${impl}`, () => {
      sink += crypto.seal(payload, aad).length;
    });
    suite.add(`open v2 (hit) ${impl}`, () => {
      sink += crypto.open(token, aad).payload.length;
    });
    suite.add(`open v1 (hit) ${impl}`, () => {
      sink += crypto.open(v1, aad).payload.length;
    });
    suite.add(`open v2 (forged) ${impl}`, () => {
      sink += crypto.open(forged, aad).status;
    });
    suite.add(`open v1 (forged) ${impl}`, () => {
      sink += crypto.open(forgedV1, aad).status;
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
  // v1 sealing on node:crypto, as the fixture does it (no implementation in src/ seals v1 any more).
  const v1Key = ring[0].key;
  suite.add('seal v1 node:crypto (fixture)', () => {
    sink += sealV1(2, v1Key, randomBytes(12), payload, aad).length;
  });
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

/** What v2 costs over v1 on open, per implementation (ns; the design's cache threshold is ~500). */
export function v2OverV1(results) {
  const ns = new Map(results.map((r) => [r.name, r.nsPerOp]));
  return Object.keys(IMPLS).map((impl) => ({
    impl,
    hit: ns.get(`open v2 (hit) ${impl}`) - ns.get(`open v1 (hit) ${impl}`),
    forged: ns.get(`open v2 (forged) ${impl}`) - ns.get(`open v1 (forged) ${impl}`),
  }));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await run();
  console.log(`\n${'op'.padEnd(18)} ${'native'.padStart(10)} ${'node:crypto'.padStart(12)} ${'speed-up'.padStart(9)}`);
  for (const { op, nativeNs, jsNs, speedup } of speedups(results)) {
    console.log(
      `${op.padEnd(18)} ${`${nativeNs.toFixed(0)} ns`.padStart(10)} ${`${jsNs.toFixed(0)} ns`.padStart(12)} ${`${speedup.toFixed(2)}x`.padStart(9)}`,
    );
  }
  const sealV1Js = results.find((r) => r.name === 'seal v1 node:crypto (fixture)');
  console.log(`${'seal v1'.padEnd(18)} ${'—'.padStart(10)} ${`${sealV1Js.nsPerOp.toFixed(0)} ns`.padStart(12)}   (nothing in Tether seals v1 now)`);
  console.log('\nv2 over v1 on open (ns):');
  for (const { impl, hit, forged } of v2OverV1(results)) {
    console.log(`  ${impl.padEnd(12)} valid ${hit.toFixed(0).padStart(6)}   forged ${forged.toFixed(0).padStart(6)}`);
  }
}
