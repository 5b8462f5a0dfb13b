// A latency histogram that worker threads fill and the main thread merges: fixed log-scale
// buckets in microseconds, so merging is adding counts, and a histogram is a plain object
// (structured-clone safe across threads) with a bounded size whatever the request count.
//
// Bucket layout (SUB_BITS = 5, i.e. 32 buckets per power of two, ≤ 3.2 % relative error):
//
//   value v (µs, clamped to [0, MAX_MICROS])
//   v < 64               → index v                      (exact, 1 µs wide)
//   v ≥ 64, e = ⌊log2 v⌋ → index 64 + (e − 6)·32 + s    where s = the 5 bits after v's top bit
//                          (bucket width 2^(e−5) µs)
//
// MAX_MICROS (2^26 − 1 µs ≈ 67 s) is above every deadline the load generator uses.

const SUB_BITS = 5;
const SUB_BUCKETS = 1 << SUB_BITS;
const LINEAR_LIMIT = 2 * SUB_BUCKETS; // 64: below this, one bucket per microsecond
const MAX_EXPONENT = 25;
export const MAX_MICROS = 2 ** (MAX_EXPONENT + 1) - 1;
const BUCKETS = LINEAR_LIMIT + (MAX_EXPONENT - SUB_BITS) * SUB_BUCKETS;

/** An empty histogram: { counts: number[BUCKETS], total, maxMicros }. */
export function createHistogram() {
  return { counts: new Array(BUCKETS).fill(0), total: 0, maxMicros: 0 };
}

function bucketOf(micros) {
  const v = Math.min(MAX_MICROS, Math.max(0, Math.floor(micros)));
  if (v < LINEAR_LIMIT) return v;
  const exponent = 31 - Math.clz32(v);
  const sub = (v >>> (exponent - SUB_BITS)) & (SUB_BUCKETS - 1);
  return LINEAR_LIMIT + (exponent - SUB_BITS - 1) * SUB_BUCKETS + sub;
}

/** [lowest, highest] microseconds that fall in bucket `index`. */
function boundsOf(index) {
  if (index < LINEAR_LIMIT) return [index, index];
  const exponent = Math.floor((index - LINEAR_LIMIT) / SUB_BUCKETS) + SUB_BITS + 1;
  const sub = (index - LINEAR_LIMIT) % SUB_BUCKETS;
  const width = 2 ** (exponent - SUB_BITS);
  const low = 2 ** exponent + sub * width;
  return [low, low + width - 1];
}

export function recordMicros(histogram, micros) {
  histogram.counts[bucketOf(micros)] += 1;
  histogram.total += 1;
  if (micros > histogram.maxMicros) histogram.maxMicros = micros;
}

/** Adds `from` into `into` (same layout: both made by createHistogram); returns `into`. */
export function mergeHistogram(into, from) {
  if (from.counts.length !== into.counts.length) {
    throw new Error(`expected a histogram of ${into.counts.length} buckets but received ${from.counts.length}`);
  }
  for (let i = 0; i < from.counts.length; i += 1) into.counts[i] += from.counts[i];
  into.total += from.total;
  into.maxMicros = Math.max(into.maxMicros, from.maxMicros);
  return into;
}

/**
 * The `p`-th percentile (0 < p ≤ 100) in microseconds: the midpoint of the bucket holding
 * the ⌈p/100 · total⌉-th smallest value, never above the largest value seen. null when empty.
 */
export function percentileMicros(histogram, p) {
  if (histogram.total === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * histogram.total));
  let seen = 0;
  for (let i = 0; i < histogram.counts.length; i += 1) {
    seen += histogram.counts[i];
    if (seen >= rank) {
      const [low, high] = boundsOf(i);
      return Math.min((low + high) / 2, histogram.maxMicros);
    }
  }
  return histogram.maxMicros;
}
