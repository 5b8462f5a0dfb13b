// glibc's M_TRIM_THRESHOLD as a running Tether applies it: the value from --malloc-trim-threshold
// is reported in the "listening" line, and 0 leaves the C library's default. The addon call and
// the flag's parsing are unit-tested in test/unit/malloc-tuning.test.ts.
import { describe, expect, it } from 'vitest';
import { startTether } from '../helpers/tether.js';

describe('--malloc-trim-threshold in a running Tether', () => {
  it('a running Tether reports the threshold it applied, or that it left the default', async () => {
    const set = await startTether(['--backend', 'a=127.0.0.1:1', '--malloc-trim-threshold', '67108864'], { workers: 1 });
    const unset = await startTether(['--backend', 'a=127.0.0.1:1', '--malloc-trim-threshold', '0'], { workers: 1 });
    try {
      const listening = (t: typeof set) => t.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.event === 'listening')!;
      expect(listening(set).mallocTrimThreshold).toBe(67108864);
      expect(listening(unset).mallocTrimThreshold).toBe('default');
    } finally {
      await Promise.all([set.stop(), unset.stop()]);
    }
  });
});
