// Small helpers shared by the sticky-session integration tests: a deterministic PRNG, polling
// with a deadline (never a sleep as synchronisation), key files in a temporary directory, and
// route-token header inspection.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { TestBackend } from './backends.js';
import type { TetherProcess } from './tether.js';

export { prng } from './prng.js';

/** An integer in [0, n). */
export function below(rand: () => number, n: number): number {
  return Math.floor(rand() * n);
}

/**
 * Calls `probe` until it returns something other than undefined, or throws after `ms` with the
 * last probe's description. The wait between probes is a back-off, not a synchronisation: the
 * condition itself is what the caller waits for.
 */
export async function pollUntil<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  let delay = 10;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(200, delay * 2);
  }
}

/** Polls a metric sample until `pred` holds; returns its value. */
export function pollMetric(t: TetherProcess, sample: string, pred: (v: number) => boolean, ms = 10_000): Promise<number> {
  return pollUntil(`${sample} to satisfy ${pred.toString()}`, async () => {
    const v = await t.metric(sample);
    return pred(v) ? v : undefined;
  }, ms);
}

/** Strict unpadded base64url → bytes, or null (the tests' own decoder, not the product's). */
export function decodeToken(token: string): Buffer | null {
  if (!/^[A-Za-z0-9_-]*$/.test(token) || token.length % 4 === 1) return null;
  const bytes = Buffer.from(token, 'base64url');
  return bytes.toString('base64url') === token ? bytes : null;
}

/** The clear key-id byte of a route token (header: version, keyId, then salt or v1 nonce, …). */
export function tokenKeyId(token: string): number {
  const raw = decodeToken(token);
  if (!raw || raw.length < 30) throw new Error(`not a route token: ${JSON.stringify(token)}`);
  return raw[1]!;
}

export function keyLine(id: number): string {
  return `${id} ${randomBytes(32).toString('hex')}`;
}

/** A temporary directory for key files, removed by `cleanup`. */
export function tempDir(prefix = 'tether-test-'): { dir: string; file(name: string, text: string): string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    file(name, text) {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Backend flag for a test backend, in the default pool unless `pool` is given. */
export function backendFlag(b: TestBackend, pool?: string, weight?: number): string[] {
  return ['--backend', `${pool ? `${pool}/` : ''}${b.name}=127.0.0.1:${b.port}${weight === undefined ? '' : `,weight=${weight}`}`];
}

/** Sum of every tether_sticky_total{outcome="invalid_*"} sample. */
export async function invalidTotal(t: TetherProcess): Promise<number> {
  const text = await t.metrics();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^tether_sticky_total\{outcome="invalid_[a-z_]+"\} (\d+(?:\.\d+)?)$/.exec(line);
    if (m) sum += Number(m[1]);
  }
  return sum;
}

export const sticky = (outcome: string): string => `tether_sticky_total{outcome="${outcome}"}`;
