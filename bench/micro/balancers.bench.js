// Micro-benchmarks for the per-request hot path of balancing and sticky cookies: each
// balancer's pick on a 10-backend pool, and the Cookie header scan. Needs `npm run build:ts`
// (imports from dist/). Run alone: `node bench/micro/balancers.bench.js`.

import Benchmark from 'benchmark';
import { pathToFileURL } from 'node:url';
import { runSuite } from './harness.js';
import { createBalancer } from '../../dist/data-plane/balancers/index.js';
import { getCookie, mapCookie, removeCookie, splitPrefixed } from '../../dist/sticky/cookies.js';

const BACKENDS = 10;
const KEYS = 1024; // power of two: cheap rotation through pre-built keys

/** Builds the suite; results go to `sink` so V8 cannot drop the work. */
export function buildSuite() {
  const slots = Array.from({ length: BACKENDS }, (_, i) => ({ id: `backend-${i}`, weight: 1 + (i % 3) }));
  const up = new Uint8Array(BACKENDS).fill(1);
  up[4] = 0; // one down backend, as in a real pool
  const active = new Int32Array(BACKENDS);
  for (let i = 0; i < BACKENDS; i++) active[i] = (i * 7) % 5;
  const deps = { isUp: (i) => up[i] === 1, active: (i) => active[i] };

  const keys = Array.from({ length: KEYS }, (_, k) => `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`);
  const ctxNoKey = {};
  const ctxKey = { hashKey: keys[0] };
  let n = 0;
  let sink = 0;

  const token = 'AQFhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODlfLWFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6';
  const tenCookies = [
    '_ga=GA1.2.1234567890.1600000000',
    '_gid=GA1.2.987654321.1600000000',
    'lang=en-US',
    'theme=dark',
    'consent=yes',
    'csrftoken=Xc8v0xYb7RkqZ1Lw3nM2',
    'SID=' + token + '~s%3Aabcdef0123456789',
    'cart=empty',
    'tz=Europe%2FBerlin',
    'TETHER=' + token,
  ].join('; ');
  const noTether = tenCookies.replace('; TETHER=' + token, '; other=1');
  const stripPrefix = (v) => splitPrefixed(v)?.appValue ?? v;

  const suite = new Benchmark.Suite('balancers + cookies');
  for (const kind of ['round-robin', 'weighted', 'least-connections']) {
    const b = createBalancer(kind, slots, deps);
    suite.add(`pick ${kind} (10 backends, 1 down)`, () => {
      sink += b.pick(ctxNoKey, -1);
    });
  }
  const ring = createBalancer('consistent-hash', slots, deps);
  suite.add('pick consistent-hash (10 backends, 1 down, IP key)', () => {
    ctxKey.hashKey = keys[n++ & (KEYS - 1)];
    sink += ring.pick(ctxKey, -1);
  });
  suite.add('pick consistent-hash, failover via exclude', () => {
    ctxKey.hashKey = keys[n++ & (KEYS - 1)];
    sink += ring.pick(ctxKey, ring.pick(ctxKey, -1));
  });
  suite.add('getCookie TETHER (10-cookie header, last)', () => {
    sink += getCookie(tenCookies, 'TETHER').length;
  });
  suite.add('getCookie TETHER (10-cookie header, absent)', () => {
    sink += getCookie(noTether, 'TETHER') === undefined ? 1 : 0;
  });
  suite.add('removeCookie TETHER (10-cookie header)', () => {
    sink += removeCookie(tenCookies, 'TETHER').length;
  });
  suite.add('mapCookie SID strip prefix (10-cookie header)', () => {
    sink += mapCookie(tenCookies, 'SID', stripPrefix).length;
  });
  suite.sink = () => sink;
  return suite;
}

/** Runs the suite and returns [{name, nsPerOp, rme, samples}]. */
export function run({ log = true } = {}) {
  return runSuite(buildSuite(), { log });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
