// The front door's request-head parser (src/data-plane/front-door/request-head.ts) as the tests
// see it: a parse's outcome, a printable input, and generated valid heads. Shared by
// test/unit/request-head.test.ts and its llhttp differential in
// test/integration/request-head-llhttp.test.ts.
import http from 'node:http';
import { RequestHeadParser, type HeadError, type HeadLimits } from '../../src/data-plane/front-door/request-head.js';
import { below } from './sticky.js';

export const LIMITS: HeadLimits = { maxHeadBytes: 16 * 1024, maxHeaders: 100 };

/** Everything a parse leaves behind; two schedules agree when these are deep-equal. */
export interface Outcome {
  ret: number;
  method: string;
  target: string;
  minor: number;
  names: string[];
  values: string[];
  length: number;
  error: HeadError | null;
}

export function bytes(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

export function snapshot(p: RequestHeadParser, ret: number): Outcome {
  return {
    ret,
    method: p.method,
    target: p.target,
    minor: p.minor,
    names: [...p.names],
    values: [...p.values],
    length: p.length,
    error: p.error === null ? null : { ...p.error },
  };
}

export function show(input: Uint8Array): string {
  return JSON.stringify(Buffer.from(input).toString('latin1').slice(0, 120));
}

/** One call on the whole input with LIMITS. */
export function parseOnce(raw: Uint8Array): Outcome {
  const p = new RequestHeadParser(LIMITS);
  return snapshot(p, p.parse(raw, 0, raw.length));
}

// Generators (differential test and fuzz).

const TCHARS = [..."!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"];
// Names whose meaning would make node:http wait for a body, switch protocols or answer 100.
const SPECIAL = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade', 'expect', 'keep-alive', 'proxy-connection', 'host']);

export function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[below(rand, items.length)]!;
}

/** A value with no OWS at its ends: VCHAR, inner SP/HTAB, obs-text. */
export function randomValue(rand: () => number, max: number): string {
  const n = below(rand, max + 1);
  let s = '';
  for (let i = 0; i < n; i++) {
    const r = rand();
    const inner = i > 0 && i < n - 1;
    if (r < 0.1 && inner) s += rand() < 0.7 ? ' ' : '\t';
    else if (r < 0.25) s += String.fromCharCode(0x80 + below(rand, 0x80));
    else s += String.fromCharCode(0x21 + below(rand, 0x7e - 0x21 + 1));
  }
  return s;
}

function ows(rand: () => number): string {
  return pick(rand, ['', '', ' ', '\t', '  ', ' \t ']);
}

export interface Generated {
  raw: Buffer;
  method: string;
  target: string;
  minor: number;
  names: string[];
  values: string[];
}

// Node's parser knows a fixed list of methods (this one does not care); CONNECT is left out as
// node:http hands it to 'connect' rather than 'request'.
const METHODS = http.METHODS.filter((m) => m !== 'CONNECT');

export function randomHead(rand: () => number): Generated {
  let method = pick(rand, METHODS);
  let target: string;
  const form = rand();
  if (form < 0.05) {
    method = 'OPTIONS';
    target = '*';
  } else {
    const n = below(rand, 40);
    let path = '/';
    for (let i = 0; i < n; i++) path += String.fromCharCode(0x21 + below(rand, 0x7e - 0x21 + 1));
    target = form < 0.2 ? `http://h${below(rand, 100)}.example:${1 + below(rand, 65535)}${path}` : path;
  }
  const minor = below(rand, 2);
  const names: string[] = [];
  const values: string[] = [];
  const lines: string[] = [];
  const count = below(rand, 26);
  const hostAt = below(rand, count + 1);
  for (let i = 0; i <= count; i++) {
    let name: string;
    let value: string;
    if (i === hostAt) {
      name = pick(rand, ['Host', 'host', 'HOST']);
      value = `h.example:${below(rand, 65536)}`;
    } else {
      do {
        name = '';
        const len = 1 + below(rand, 16);
        for (let j = 0; j < len; j++) name += pick(rand, TCHARS);
      } while (SPECIAL.has(name.toLowerCase()));
      value = randomValue(rand, 40);
    }
    names.push(name.toLowerCase());
    values.push(value);
    lines.push(`${name}:${ows(rand)}${value}${value === '' ? '' : ows(rand)}\r\n`);
  }
  const raw = bytes(`${method} ${target} HTTP/1.${minor}\r\n${lines.join('')}\r\n`);
  return { raw, method, target, minor, names, values };
}
