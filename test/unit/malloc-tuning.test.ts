// glibc's M_TRIM_THRESHOLD, set once at start (native/include/tether/malloc_tuning.h says why a
// relay needs it): the addon call, its argument checks, the flag and its defaults. A real Tether
// process reporting what it applied is test/integration/malloc-tuning.test.ts. The effect on a relay's page
// faults is shown by the bench (passthrough-bulk), not here: whether glibc's default trims in a
// given run depends on its dynamic thresholds and on GC timing, so no assertion on it could be
// both honest and deterministic.
import { describe, expect, it } from 'vitest';
import { setMallocTrimThreshold } from '../../src/native/index.js';
import { loadConfig } from '../../src/config/load.js';

const glibc = Boolean((process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime);

describe('setMallocTrimThreshold', () => {
  it('applies a threshold on glibc (this machine) and says so', () => {
    expect(glibc).toBe(true);
    // The test process keeps the value Tether would set by default.
    expect(setMallocTrimThreshold(128 * 1024 * 1024)).toBe(true);
  });

  it('refuses anything but a whole number of bytes in 1..2^31-1, naming what it got', () => {
    for (const bad of [0, -1, 1.5, 2 ** 31, Number.NaN]) {
      expect(() => setMallocTrimThreshold(bad)).toThrow(RangeError);
      expect(() => setMallocTrimThreshold(bad)).toThrow(`but received ${String(bad)}`);
    }
  });
});

describe('--malloc-trim-threshold', () => {
  const base = ['--backend', 'a=127.0.0.1:1'];
  it('defaults to 128 MiB, takes the flag, the environment, and 0 for the C library default', () => {
    expect(loadConfig(base, {}).config.limits.mallocTrimThresholdBytes).toBe(128 * 1024 * 1024);
    expect(loadConfig([...base, '--malloc-trim-threshold', '67108864'], {}).config.limits.mallocTrimThresholdBytes).toBe(64 * 1024 * 1024);
    expect(loadConfig(base, { TETHER_MALLOC_TRIM_THRESHOLD: '0' }).config.limits.mallocTrimThresholdBytes).toBe(0);
  });

  it('explains a value that is not a byte count or is over 1 GiB', () => {
    expect(() => loadConfig([...base, '--malloc-trim-threshold', '64m'], {})).toThrow(/--malloc-trim-threshold: expected a number of bytes/);
    expect(() => loadConfig([...base, '--malloc-trim-threshold', String(2 ** 30 + 1)], {})).toThrow(/mallocTrimThresholdBytes/);
  });
});
