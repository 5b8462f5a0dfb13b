// Shared by the micro benchmarks: run a benchmark.js suite synchronously, print one line per
// case as ns/op, and return the rows.

/** Runs `suite` and resolves with [{name, nsPerOp, rme, samples}]. */
export function runSuite(suite, { log = true } = {}) {
  return new Promise((resolve) => {
    const results = [];
    suite.on('cycle', (event) => {
      const t = event.target;
      const row = { name: t.name, nsPerOp: 1e9 / t.hz, rme: t.stats.rme, samples: t.stats.sample.length };
      results.push(row);
      if (log) console.log(`${row.name.padEnd(56)} ${row.nsPerOp.toFixed(1).padStart(8)} ns/op  ±${row.rme.toFixed(1)}%`);
    });
    suite.on('complete', () => resolve(results));
    suite.run({ async: false });
  });
}
