// Shared by the micro benchmarks: run a benchmark.js suite synchronously, print one line per
// case as ns/op (mean over benchmark.js's samples, and their median), and return the rows.

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs `suite` and resolves with [{name, nsPerOp, medianNs, rme, samples}]. */
export function runSuite(suite, { log = true } = {}) {
  return new Promise((resolve) => {
    const results = [];
    suite.on('cycle', (event) => {
      const t = event.target;
      // Each sample is one timed cycle's mean seconds per op.
      const row = { name: t.name, nsPerOp: 1e9 / t.hz, medianNs: median(t.stats.sample) * 1e9, rme: t.stats.rme, samples: t.stats.sample.length };
      results.push(row);
      if (log) console.log(`${row.name.padEnd(60)} ${row.nsPerOp.toFixed(1).padStart(8)} ns/op  median ${row.medianNs.toFixed(1).padStart(7)}  ±${row.rme.toFixed(1)}%`);
    });
    suite.on('complete', () => resolve(results));
    suite.run({ async: false });
  });
}
