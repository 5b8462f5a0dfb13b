// The chunked request-body decoder (src/data-plane/front-door/chunked.ts) driven the way a
// socket would drive it: every segmentation of an input, a reused read buffer, and the outcome
// they must all agree on. Shared by test/unit/chunked-decoder.test.ts and its llhttp differential
// in test/integration/chunked-decoder-llhttp.test.ts.
import { expect } from 'vitest';
import { ChunkedDecoder, type ChunkedLimits } from '../../src/data-plane/front-door/chunked.js';
import { prng } from './sticky.js';

/** What one decode of a whole input came to, whatever its segmentation. */
export interface Outcome {
  /** Bytes consumed (-1: refused). */
  consumed: number;
  done: boolean;
  error: string;
  /** Body bytes delivered, concatenated. */
  data: Buffer;
  bodyBytes: number;
}

export function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/**
 * Feeds input to a fresh decoder in the segments given by `cuts` (ascending offsets) and stops
 * at the end of the body or the first error. With `reuse`, each segment is first copied into one
 * scratch buffer that is overwritten afterwards, as a socket read buffer would be: a decoder that
 * kept a view past onData would deliver garbage.
 */
export function runSplit(input: Uint8Array, cuts: number[], limits?: Partial<ChunkedLimits>, reuse = false): Outcome {
  const d = new ChunkedDecoder(limits);
  const parts: Buffer[] = [];
  // Plain checks, not expect(): this runs per byte in the 1-byte splits.
  const check = (ok: boolean, what: string): void => {
    if (!ok) throw new Error(what);
  };
  const onData = (buf: Uint8Array, from: number, to: number): void => {
    check(to > from, `empty onData run ${from}..${to}`);
    parts.push(Buffer.from(buf.subarray(from, to)));
  };
  const scratch = reuse ? new Uint8Array(input.length + 8) : null;
  let consumed = 0;
  let prev = 0;
  for (const cut of [...cuts, input.length]) {
    if (cut <= prev) continue;
    let r: number;
    if (scratch) {
      // Put the segment at an odd offset so a decoder assuming start === 0 shows up too.
      scratch.set(input.subarray(prev, cut), 3);
      r = d.decode(scratch, 3, 3 + cut - prev, onData);
      scratch.fill(0x58, 3, 3 + cut - prev);
    } else {
      r = d.decode(input, prev, cut, onData);
    }
    if (r === -1) {
      consumed = -1;
      break;
    }
    check(r >= 0 && r <= cut - prev, `decode returned ${r} for ${cut - prev} bytes`);
    consumed += r;
    if (d.done) break;
    check(r === cut - prev, `decode returned ${r} of ${cut - prev} bytes but the body is not done`);
    prev = cut;
  }
  if (consumed === -1) expect(d.error).not.toBe('');
  else expect(d.error).toBe('');
  return { consumed, done: d.done, error: d.error, data: Buffer.concat(parts), bodyBytes: d.bodyBytes };
}

export function everyCut(len: number, step: number): number[] {
  const cuts: number[] = [];
  for (let i = step; i < len; i += step) cuts.push(i);
  return cuts;
}

export function randomCuts(len: number, rnd: () => number): number[] {
  const cuts: number[] = [];
  let i = 0;
  while (i < len) {
    // Mostly small pieces, sometimes big ones, so boundaries land everywhere.
    i += 1 + Math.floor(rnd() < 0.7 ? rnd() * 8 : rnd() * 3000);
    if (i < len) cuts.push(i);
  }
  return cuts;
}

/** Decodes at every segmentation, asserts they all agree, and returns the common outcome. */
export function decodeAll(input: Uint8Array, limits?: Partial<ChunkedLimits>, seed = 1): Outcome {
  const whole = runSplit(input, [], limits);
  const rnd = prng(seed);
  const others: [string, Outcome][] = [
    ['1-byte', runSplit(input, everyCut(input.length, 1), limits)],
    ['1448-byte', runSplit(input, everyCut(input.length, 1448), limits)],
    ['1448-byte reused buffer', runSplit(input, everyCut(input.length, 1448), limits, true)],
    ['1-byte reused buffer', runSplit(input, everyCut(input.length, 1), limits, true)],
  ];
  for (let k = 0; k < 4; k++) others.push([`random #${k}`, runSplit(input, randomCuts(input.length, rnd), limits)]);
  for (const [name, o] of others) {
    expect({ split: name, ...o, data: o.data.toString('hex') }).toEqual({ split: name, ...whole, data: whole.data.toString('hex') });
  }
  return whole;
}
