// One thread of the shared-table stress test (test/unit/shared-table.test.ts), on the built
// table (dist/). It owns keys [from, to) of the shared key list: inserts them while reading
// random keys of every thread, then keeps rewriting its own (each write stamped: flags = tag[3] = a new number)
// and reading everyone's until the deadline — half of it on a hot set (the first 16 keys of
// each thread), so readers meet writers on the same slots often enough to catch a torn read. Every entry it reads must be self-consistent:
// value and tag derived from the key, flags equal to tag[3] (a mix of two writes would not
// be). Reports counts; any inconsistency is reported, never thrown away.
import { parentPort, workerData } from 'node:worker_threads';
import { SharedTable, TableEntry } from '../../dist/shared-memory/table.js';

const { buffer, keys, from, to, owner, deadline, nowSec, expiresAt, threads } = workerData;
const HOT = 16;
const table = SharedTable.attach(buffer, owner);
const k = new Int32Array(keys);
const total = k.length / 3;
const out = new TableEntry();
const tag = new Int32Array(4);
let reads = 0;
let hits = 0;
let writes = 0;
const torn = [];
let rng = owner * 2654435761;
const random = () => {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return (rng >>> 0) % total;
};

// Every write carries a new stamp (flags = tag[3] = a per-thread counter), so any read that
// mixes two writes is visible.
function write(i) {
  const k0 = k[3 * i], k1 = k[3 * i + 1], k2 = k[3 * i + 2];
  const stamp = ++writes;
  tag[0] = k1;
  tag[1] = k2;
  tag[2] = ~k0;
  tag[3] = stamp;
  table.put(k0, k1, k2, k0 ^ 0x5bd1e995, stamp, tag, expiresAt, nowSec);
}

function check(i) {
  const k0 = k[3 * i], k1 = k[3 * i + 1], k2 = k[3 * i + 2];
  reads++;
  if (!table.get(k0, k1, k2, nowSec, out)) return false;
  hits++;
  const t = out.tag;
  if (out.value !== (k0 ^ 0x5bd1e995) || t[0] !== k1 || t[1] !== k2 || t[2] !== ~k0 || t[3] !== out.flags) {
    if (torn.length < 10) torn.push({ i, value: out.value, flags: out.flags, tag: [...t] });
  }
  return true;
}

for (let i = from; i < to; i++) {
  write(i);
  check(random());
}
let round = 1;
while (Date.now() < deadline) {
  const perThread = total / threads;
  for (let n = 0; n < 10_000; n++) {
    write(from + ((n * 7919 + round) % (to - from)));
    check(random());
    write(from + (n % HOT));
    const r = random();
    check(Math.floor(r / perThread) * perThread + (r % HOT));
  }
  round++;
}
parentPort.postMessage({ reads, hits, writes, torn });
