// Which forwarding headers to believe. A client can write `X-Forwarded-For: 10.1.2.3` itself;
// passed on (or appended to), that lie reaches the backends as the client's address, and any
// policy that reads it. So by default Tether replaces X-Forwarded-For/-Proto/-Host, X-Real-IP
// and Forwarded with what it saw on the socket. Only peers listed in --trusted-proxies (a CDN,
// a TLS terminator in front of Tether) are believed: their X-Forwarded-For is appended to, their
// X-Forwarded-Proto/-Host kept, and the client they vouch for — the rightmost address in the
// chain that is not itself a trusted proxy, as nginx's real_ip_recursive walks it — becomes the
// request's client address for binding, hashing and the access log.
import { parseIp } from '../sticky/binding.js';

export interface Cidr {
  /** 4 bytes (IPv4) or 16 (IPv6), host bits cleared. */
  readonly bytes: Uint8Array;
  readonly bits: number;
  readonly text: string;
}

/** `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128) → Cidr, or why not. */
export function parseCidr(text: string): Cidr | string {
  const t = text.trim();
  const slash = t.indexOf('/');
  const addr = parseIp(slash < 0 ? t : t.slice(0, slash));
  if (addr === null || (slash >= 0 && t.slice(0, slash).includes('%'))) {
    return `expected an address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32, 192.0.2.7) but received '${text}'`;
  }
  const max = addr.length * 8;
  let bits = max;
  if (slash >= 0) {
    const b = t.slice(slash + 1);
    if (!/^\d{1,3}$/.test(b) || Number(b) > max) return `expected a prefix length 0-${max} in '${text}'`;
    bits = Number(b);
  }
  const bytes = addr.slice();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    bytes[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return { bytes, bits, text: t };
}

function inCidr(addr: Uint8Array, c: Cidr): boolean {
  if (addr.length !== c.bytes.length) return false;
  let bits = c.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const m = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((addr[i]! & m) !== c.bytes[i]) return false;
  }
  return true;
}

/** Answers per address are cached up to this many entries (then the cache starts over). */
const CACHE_LIMIT = 4096;

/** The peers whose forwarding headers are believed. Built once per configuration snapshot. */
export class TrustedProxies {
  private readonly cache = new Map<string, boolean>();

  constructor(private readonly cidrs: readonly Cidr[]) {}

  get none(): boolean {
    return this.cidrs.length === 0;
  }

  /** Is `ip` (text as the socket or a header gives it) one of the trusted proxies? */
  trusts(ip: string): boolean {
    if (this.cidrs.length === 0) return false;
    let v = this.cache.get(ip);
    if (v !== undefined) return v;
    const addr = parseIp(ip);
    v = addr !== null && this.cidrs.some((c) => inCidr(addr, c));
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(ip, v);
    return v;
  }
}

/**
 * One X-Forwarded-For element as an address: whitespace trimmed, a port (`1.2.3.4:80`,
 * `[2001:db8::1]:80`) and brackets dropped; '' when it is not an address at all.
 */
export function forwardedAddress(element: string): string {
  let s = element.trim();
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0) return '';
    s = s.slice(1, end);
  } else if (s.indexOf(':') === s.lastIndexOf(':') && s.includes(':')) {
    s = s.slice(0, s.indexOf(':')); // IPv4 with a port
  }
  return parseIp(s) === null ? '' : s;
}

/**
 * The client a request stands for. `peer` is the socket's address; `xff` the X-Forwarded-For
 * it sent (every copy, comma-joined). An untrusted peer is the client, whatever it claims.
 * From a trusted peer, the chain is walked from the right past trusted proxies; the first
 * address that is not one is the client. An element that is not an address stops the walk
 * (what is left of it cannot be trusted either): the last proxy passed is the client then.
 */
export function realClient(peer: string, xff: string, trusted: TrustedProxies): string {
  if (!xff || !trusted.trusts(peer)) return peer;
  let client = peer;
  let end = xff.length;
  while (end > 0) {
    const start = xff.lastIndexOf(',', end - 1) + 1;
    const addr = forwardedAddress(xff.slice(start, end));
    if (!addr) return client;
    client = addr;
    if (!trusted.trusts(addr)) return client;
    end = start - 1;
  }
  return client;
}

/** A `Forwarded` (RFC 7239) node: IPv6 quoted in brackets, IPv4 as it is. */
export function forwardedNode(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip;
}

/** A `Forwarded` value: a token as it is, anything else as a quoted-string. */
export function forwardedValue(v: string): string {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`;
}
