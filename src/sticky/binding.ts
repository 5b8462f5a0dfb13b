// Session ↔ terminal binding (DESIGN.md feature 3): which terminal a session was issued to,
// recorded when it is issued, and compared on every later request of that session.
//
// Policies (per pool): `none` (roaming allowed), `ip` (the client address), `subnet[:V4[,V6]]`
// (the address masked to /V4 for IPv4, /V6 for IPv6; default /24 and /64), `header:NAME` (a
// device id header; a request without it is the terminal "no header").
//
// Two places keep the recorded terminal:
// - a route token carries it sealed in its payload (8-byte tag + binding bits in the flags
//   byte), so no table is needed and every node with the key ring can check it;
// - the shared table (learn mode, and prefix-mode sessions) keeps it in the entry's 16-byte
//   tag with the policy in the entry's flags.
//
// Token tag forms (the payload's flags byte says which, bits 0-2 kind, bit 3 raw):
// - raw IPv4 (`ip`, `subnet` on an IPv4 client): [prefix bits, a, b, c, d, 0, 0, 0], exact
//   and readable in alerts;
// - hashed (IPv6 clients, `header`): the 64-bit HalfSipHash of "kind|bits|value" under a
//   fixed public key. The tag is inside an authenticated encryption, so it needs no secret;
//   matching it from another terminal would take a 64-bit second preimage.
// A recorded terminal bound under another policy than the pool's current one (the policy
// changed since) is not compared: the request passes and is counted as unverifiable.
import { isIPv4, isIPv6 } from 'node:net';
import { halfSipHash } from '../shared-memory/fingerprint.js';

type BindKind = 'none' | 'ip' | 'subnet' | 'header';

export interface BindPolicy {
  kind: BindKind;
  /** Prefix lengths for `subnet` (and 32/128 for `ip`). */
  v4Bits: number;
  v6Bits: number;
  /** Lower-cased header name for `header`. */
  header: string;
}

const KIND_CODE: Record<BindKind, number> = { none: 0, ip: 1, subnet: 2, header: 3 };
const CODE_KIND: BindKind[] = ['none', 'ip', 'subnet', 'header'];
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Token flags: binding kind in bits 0-2, raw IPv4 form in bit 3. */
const FLAG_RAW = 0x08;
const TAG_KEY = new TextEncoder().encode('tetherbd'); // fixed, public (see above)

/** `none`, `ip`, `subnet`, `subnet:16`, `subnet:16,48`, `header:X-Device-Id` → policy, or an explanation. */
export function parseBindPolicy(text: string): BindPolicy | string {
  const [kind, arg] = splitOnce(text, ':');
  switch (kind) {
    case 'none':
    case 'ip':
      if (arg !== undefined) return `bind policy '${kind}' takes no argument but received '${text}'`;
      return { kind, v4Bits: 32, v6Bits: 128, header: '' };
    case 'subnet': {
      if (arg === undefined) return { kind, v4Bits: 24, v6Bits: 64, header: '' };
      const m = /^(\d{1,2})(?:,(\d{1,3}))?$/.exec(arg);
      const v4 = m ? Number(m[1]) : NaN;
      const v6 = m?.[2] !== undefined ? Number(m[2]) : 64;
      if (!m || v4 < 1 || v4 > 32 || v6 < 1 || v6 > 128) {
        return `expected subnet[:V4BITS[,V6BITS]] with 1-32 and 1-128 bits (e.g. subnet:24,64) but received '${text}'`;
      }
      return { kind, v4Bits: v4, v6Bits: v6, header: '' };
    }
    case 'header':
      if (!arg || !HEADER_NAME.test(arg)) return `expected header:NAME with a header name (e.g. header:X-Device-Id) but received '${text}'`;
      return { kind, v4Bits: 32, v6Bits: 128, header: arg.toLowerCase() };
    default:
      return `expected a bind policy none, ip, subnet[:V4[,V6]] or header:NAME but received '${text}'`;
  }
}

/** The policy as written in config and logs. */
export function formatBindPolicy(p: BindPolicy): string {
  if (p.kind === 'subnet') return `subnet:${p.v4Bits},${p.v6Bits}`;
  if (p.kind === 'header') return `header:${p.header}`;
  return p.kind;
}

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}

/** A terminal as the policy sees it: what is compared, and how to show it. */
export interface Terminal {
  /** 16 bytes for the table tag (IPv6-mapped address, masked; or the header's hash). */
  tableTag: Int32Array;
  /** 8 bytes + flags for a token. */
  tokenTag: Uint8Array;
  tokenFlags: number;
  /** Human-readable: `127.0.0.2`, `10.1.2.0/24`, `x-device-id=abc` (value cut at 64 chars). */
  readonly label: string;
}

/** IPv4 text → 4 bytes, IPv6 (or IPv4-mapped) → 16 bytes; null if neither. */
export function parseIp(text: string): Uint8Array | null {
  if (isIPv4(text)) return Uint8Array.from(text.split('.').map(Number));
  if (!isIPv6(text)) return null;
  let s = text;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two groups.
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    s = `${s.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = s.includes('::') ? (s.split('::') as [string, string]) : [s, undefined];
  const h = head ? head.split(':') : [];
  const r = rest === undefined ? [] : rest ? rest.split(':') : [];
  const groups = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  // ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket: treat it as IPv4.
  if (out.subarray(0, 10).every((x) => x === 0) && out[10] === 0xff && out[11] === 0xff) return out.slice(12);
  return out;
}

function mask(bytes: Uint8Array, bits: number): Uint8Array {
  const out = bytes.slice();
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    out[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

function formatIp(b: Uint8Array): string {
  if (b.length === 4) return b.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::');
}

/**
 * The terminal of a request under `policy` (not `none`): the client address, or the value
 * of the policy's header ('' when absent).
 */
export function terminalOf(policy: BindPolicy, clientIp: string, headerValue: string): Terminal {
  const tableTag = new Int32Array(4);
  const tableBytes = new Uint8Array(tableTag.buffer);
  const tokenTag = new Uint8Array(8);
  let tokenFlags = KIND_CODE[policy.kind];
  let label: string;
  if (policy.kind === 'header') {
    const value = headerValue;
    const h = halfSipHash(TAG_KEY, new TextEncoder().encode(`header|${policy.header}|${value}`), 12);
    tableBytes.set(h, 0);
    tokenTag.set(h.subarray(0, 8));
    label = `${policy.header}=${value.length > 64 ? `${value.slice(0, 64)}…` : value || '(absent)'}`;
  } else {
    const ip = parseIp(clientIp) ?? new Uint8Array(16);
    const bits = ip.length === 4 ? (policy.kind === 'ip' ? 32 : policy.v4Bits) : policy.kind === 'ip' ? 128 : policy.v6Bits;
    const masked = mask(ip, bits);
    if (ip.length === 4) {
      tableBytes[10] = 0xff;
      tableBytes[11] = 0xff;
      tableBytes.set(masked, 12);
      tokenTag[0] = bits;
      tokenTag.set(masked, 1);
      tokenFlags |= FLAG_RAW;
    } else {
      tableBytes.set(masked, 0);
      tokenTag.set(halfSipHash(TAG_KEY, new TextEncoder().encode(`${policy.kind}|${bits}|${formatIp(masked)}`), 8));
    }
    label = policy.kind === 'ip' ? formatIp(masked) : `${formatIp(masked)}/${bits}`;
  }
  return { tableTag, tokenTag, tokenFlags, label };
}

/** Terminals kept per pool and thread; past this the cache starts over. */
const MAX_CACHED_TERMINALS = 4096;

/**
 * terminalOf, remembered per client address (or header value): a client sends many requests
 * from one address, and deriving a terminal costs more than the rest of a sticky hit's
 * bookkeeping. Terminals are immutable once made. One per pool and thread.
 */
export class TerminalCache {
  readonly #policy: BindPolicy;
  #byKey = new Map<string, Terminal>();

  constructor(policy: BindPolicy) {
    this.#policy = policy;
  }

  get(clientIp: string, headerValue: string): Terminal {
    const key = this.#policy.kind === 'header' ? headerValue : clientIp;
    let t = this.#byKey.get(key);
    if (t === undefined) {
      t = terminalOf(this.#policy, clientIp, headerValue);
      if (this.#byKey.size >= MAX_CACHED_TERMINALS) this.#byKey = new Map();
      this.#byKey.set(key, t);
    }
    return t;
  }
}

/** Token binding check: 'match', 'mismatch', or 'unbound' (no tag, or recorded under another policy). */
export function compareTokenTag(policy: BindPolicy, tokenFlags: number, tokenTag: Uint8Array, now: Terminal): 'match' | 'mismatch' | 'unbound' {
  const kind = tokenFlags & 0x07;
  if (kind === 0 || kind !== KIND_CODE[policy.kind]) return 'unbound';
  if ((tokenFlags & FLAG_RAW) !== (now.tokenFlags & FLAG_RAW)) {
    // Recorded from IPv4, presented from IPv6 (or the reverse): a different terminal.
    return 'mismatch';
  }
  for (let i = 0; i < 8; i++) if (tokenTag[i] !== now.tokenTag[i]) return 'mismatch';
  return 'match';
}

/** A token's recorded terminal, readable when it was stored raw. */
export function describeTokenTag(tokenFlags: number, tokenTag: Uint8Array): string {
  const kind = CODE_KIND[tokenFlags & 0x07] ?? 'unknown';
  if (tokenFlags & FLAG_RAW) {
    const bits = tokenTag[0]!;
    const ip = [...tokenTag.subarray(1, 5)].join('.');
    return bits === 32 && kind === 'ip' ? ip : `${ip}/${bits}`;
  }
  return `${kind} hash ${Buffer.from(tokenTag).toString('hex')}`;
}

/** Table entry flags for a binding: kind in bits 8-11 (the low byte is the entry kind). */
export function tableBindFlags(policy: BindPolicy): number {
  return KIND_CODE[policy.kind] << 8;
}

/** Table binding check, like compareTokenTag. */
export function compareTableTag(policy: BindPolicy, entryFlags: number, entryTag: Int32Array, now: Terminal): 'match' | 'mismatch' | 'unbound' {
  const kind = (entryFlags >> 8) & 0x0f;
  if (kind === 0 || kind !== KIND_CODE[policy.kind]) return 'unbound';
  const t = now.tableTag;
  return entryTag[0] === t[0] && entryTag[1] === t[1] && entryTag[2] === t[2] && entryTag[3] === t[3] ? 'match' : 'mismatch';
}

/** A table entry's recorded terminal, readable for addresses. */
export function describeTableTag(entryFlags: number, entryTag: Int32Array): string {
  const kind = CODE_KIND[(entryFlags >> 8) & 0x0f] ?? 'unknown';
  const b = new Uint8Array(entryTag.buffer, entryTag.byteOffset, 16);
  if (kind === 'header') return `header hash ${Buffer.from(b.subarray(0, 12)).toString('hex')}`;
  const v4 = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return v4 ? formatIp(b.subarray(12)) : formatIp(b);
}
