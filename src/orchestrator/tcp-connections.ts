// Client connections open on the HTTP listeners, counted from the kernel's socket table.
// uWebSockets.js tells JavaScript nothing about HTTP connections that come and go (only about
// requests), so the count comes from where the connections are: /proc/net/tcp and tcp6, one
// line per socket of this network namespace:
//
//   sl  local_address                         rem_address   st  ...
//    0: 0100007F:1F90                         ...           01  ...     IPv4: one u32, hex
//    1: 00000000000000000000000001000000:1F90 ...           01  ...     IPv6: four u32s, hex
//
// Addresses are printed as host-order u32 words (so 127.0.0.1 reads 0100007F on x86), ports as
// big hex, st 01 = ESTABLISHED. A connection counts when its local address and port are a
// listener's (any address for 0.0.0.0 and ::; an IPv4 listener also sees v4-mapped IPv6
// sockets). Reading costs time in proportion to every socket on the machine, so it is done at
// scrape time only, never per request.
import { readFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import os from 'node:os';
import { parseIp } from '../sticky/binding.js';

interface ListenAddress {
  host: string;
  port: number;
}

const ESTABLISHED = '01';

/** `host` as /proc/net/tcp6 prints it (32 hex digits), or null for any address. */
function procHex6(host: string): string | null {
  const bytes = listenBytes(host);
  if (bytes === null) return null;
  let out = '';
  for (let w = 0; w < 16; w += 4) out += wordHex(bytes.subarray(w, w + 4));
  return out;
}

/** `host` as /proc/net/tcp prints it (8 hex digits), or null for any address. */
function procHex4(host: string): string | null {
  const bytes = listenBytes(host);
  if (bytes === null) return null;
  return wordHex(bytes.subarray(12, 16));
}

/** A u32 word of the address as the kernel prints it: the word in host order, %08X. */
function wordHex(b: Uint8Array): string {
  const word = os.endianness() === 'LE' ? [b[3]!, b[2]!, b[1]!, b[0]!] : [b[0]!, b[1]!, b[2]!, b[3]!];
  return word.map((x) => x.toString(16).padStart(2, '0')).join('').toUpperCase();
}

/** The listen address as 16 bytes (IPv4 as v4-mapped), or null for a wildcard or a name. */
function listenBytes(host: string): Uint8Array | null {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === '0.0.0.0' || h === '::') return null;
  const ip = parseIp(h);
  if (ip === null || ip.length === 16) return ip;
  const mapped = new Uint8Array(16);
  mapped[10] = 0xff;
  mapped[11] = 0xff;
  mapped.set(ip, 12);
  return mapped;
}

interface Matcher {
  port: string;
  v4: string | null | undefined; // undefined: does not take IPv4; null: any
  v6: string | null | undefined;
}

function matchers(listen: readonly ListenAddress[]): Matcher[] {
  return listen.map((l) => {
    const h = l.host.replace(/^\[|\]$/g, '');
    const port = l.port.toString(16).toUpperCase().padStart(4, '0');
    if (isIPv4(h) || h === '0.0.0.0') {
      // IPv4 sockets, and v4-mapped ones on a dual-stack socket.
      return { port, v4: procHex4(h), v6: h === '0.0.0.0' ? undefined : procHex6(h) };
    }
    if (h === '::') return { port, v4: null, v6: null }; // dual stack: both
    if (isIPv6(h)) return { port, v4: undefined, v6: procHex6(h) };
    return { port, v4: null, v6: null };
  });
}

/** Established connections in `text` (a /proc/net/tcp or tcp6 file) to any of `ms`. */
export function countIn(text: string, ms: readonly Matcher[], six: boolean): number {
  let n = 0;
  let pos = text.indexOf('\n') + 1; // past the header line
  while (pos > 0 && pos < text.length) {
    const end = text.indexOf('\n', pos);
    const line = text.slice(pos, end < 0 ? text.length : end);
    pos = end < 0 ? text.length : end + 1;
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== ESTABLISHED) continue;
    const local = f[1]!;
    const colon = local.indexOf(':');
    const addr = local.slice(0, colon);
    const port = local.slice(colon + 1);
    for (const m of ms) {
      if (m.port !== port) continue;
      const want = six ? m.v6 : m.v4;
      if (want === undefined) continue;
      if (want === null || want === addr) {
        n++;
        break;
      }
    }
  }
  return n;
}

/** Established client connections to the listeners, from the kernel; null if it cannot tell. */
export async function countEstablished(listen: readonly ListenAddress[], files = ['/proc/net/tcp', '/proc/net/tcp6']): Promise<number | null> {
  if (listen.length === 0) return 0;
  const ms = matchers(listen);
  let total = 0;
  let read = 0;
  for (const [i, file] of files.entries()) {
    let text: string;
    try {
      text = await readFile(file, 'latin1');
    } catch {
      continue; // no IPv6, or not Linux
    }
    read++;
    total += countIn(text, ms, i === 1);
  }
  return read === 0 ? null : total;
}

export const testing = { matchers, procHex4, procHex6 };
