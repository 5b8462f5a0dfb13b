// Micro-benchmark for the passthrough parser: parseClientHello on real captures (a typical
// curl and node:tls ClientHello, and Chromium's post-quantum one), native addon against the JS
// reference, whole ClientHello in one buffer, result object included. Also the cost of the
// common "not yet" answer: the PQ ClientHello's first 1448 bytes (one TCP segment).
// Needs `npm run build`. Run alone: `node bench/micro/client-hello.bench.js`.

import Benchmark from 'benchmark';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { runSuite } from './harness.js';
import { parseClientHello } from '../../dist/native/index.js';
import { referenceParseClientHello } from '../../dist/native/client-hello-reference.js';

const LEAN = { fingerprint: false };
const IMPLS = {
  native: parseClientHello,
  reference: referenceParseClientHello,
  // What the passthrough listener calls: routing needs SNI and ALPN, not JA4.
  'native, no JA4': (bytes, cap) => parseClientHello(bytes, cap, LEAN),
};

const fixture = (name) =>
  Buffer.from(readFileSync(new URL(`../../test/fixtures/client-hello/${name}.hex`, import.meta.url), 'utf8').trim(), 'hex');

export const CASES = {
  'curl (517 B)': fixture('curl'),
  'node:tls (389 B)': fixture('node-tls'),
  'chromium PQ (1789 B)': fixture('chromium-headless-shell-pq'),
  'PQ, first segment (incomplete)': fixture('chromium-headless-shell-pq').subarray(0, 1448),
};

/** Builds the suite; results go to `sink` so V8 cannot drop the work. */
export function buildSuite() {
  let sink = 0;
  const suite = new Benchmark.Suite('ClientHello');
  for (const [impl, parse] of Object.entries(IMPLS)) {
    for (const [label, bytes] of Object.entries(CASES)) {
      const expected = label.includes('incomplete') ? 'incomplete' : 'ok';
      const r = parse(bytes, 16_384);
      if (r.status !== expected) throw new Error(`pre-flight: ${impl} ${label} gave ${r.status}`);
      suite.add(`${label} ${impl}`, () => {
        sink += parse(bytes, 16_384).status.length;
      });
    }
  }
  suite.sink = () => sink;
  return suite;
}

/** Runs the suite and returns [{name, nsPerOp, rme, samples}]. */
export function run({ log = true } = {}) {
  return runSuite(buildSuite(), { log });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = await run();
  const ns = new Map(results.map((r) => [r.name, r.nsPerOp]));
  console.log(`\n${'ClientHello'.padEnd(32)} ${'native'.padStart(10)} ${'no JA4'.padStart(10)} ${'reference'.padStart(11)} ${'speed-up'.padStart(9)}`);
  for (const label of Object.keys(CASES)) {
    const native = ns.get(`${label} native`);
    const lean = ns.get(`${label} native, no JA4`);
    const js = ns.get(`${label} reference`);
    console.log(
      `${label.padEnd(32)} ${`${native.toFixed(0)} ns`.padStart(10)} ${`${lean.toFixed(0)} ns`.padStart(10)} ${`${js.toFixed(0)} ns`.padStart(11)} ${`${(js / native).toFixed(1)}x`.padStart(9)}`,
    );
  }
}
