// Random bytes for the balancer's side of the handshake, drawn from the CSPRNG a page at a time.
// Each randomBytes() call costs a fixed ~1-2 µs (a crypto job, a DRBG lock) however few bytes it
// returns, and a handshake needs two small draws (the challenge's 16 bytes, the grant's 72): the
// authz-handshakes profile showed that overhead at ~6% of a worker's CPU. Bytes handed out are
// never handed out again nor overwritten (a refill allocates a new page), so callers may keep
// the views. Per thread (each worker has its own module instance); the same idea as Node's own
// cache behind crypto.randomUUID().
import { randomBytes } from 'node:crypto';

const PAGE = 4096;

let page: Buffer = Buffer.alloc(0);
let used = 0;

/** `n` fresh CSPRNG bytes (a view into the current page; n ≤ 4096). */
export function takeRandom(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > PAGE) throw new RangeError(`takeRandom: expected 0..${PAGE} bytes but received ${n}`);
  if (used + n > page.length) {
    page = randomBytes(PAGE);
    used = 0;
  }
  const out = page.subarray(used, used + n);
  used += n;
  return out;
}
