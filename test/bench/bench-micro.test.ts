// The request-path micro benchmark drives dist/'s real handler through stand-ins for uWS and an
// upstream socket; when the handler's internals change, the stand-ins must follow. Its
// pre-flight (one whole exchange per case) runs here so a broken bench fails CI instead of
// printing Infinity ns/request.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

describe('bench/micro/request-path.bench.js', () => {
  it('completes one sticky-hit and one first-visit exchange through the built handler', () => {
    const file = fileURLToPath(new URL('../../bench/micro/request-path.bench.js', import.meta.url));
    const r = spawnSync(process.execPath, [file], { env: { ...process.env, BENCH_SMOKE: '1' }, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('pre-flight ok');
  });
});
