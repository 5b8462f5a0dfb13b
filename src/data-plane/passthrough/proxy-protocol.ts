// PROXY protocol version 2 header (haproxy.org/download/2.6/doc/proxy-protocol.txt §2.2),
// sent to a passthrough backend before the client's bytes so it learns the client address.
import { isIPv4, isIPv6 } from 'node:net';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const CMD_PROXY = 0x21; // version 2, PROXY
const CMD_LOCAL = 0x20; // version 2, LOCAL: no address follows
const TCP4 = 0x11;
const TCP6 = 0x21;

interface Endpoints {
  sourceAddress: string | undefined;
  sourcePort: number | undefined;
  destAddress: string | undefined;
  destPort: number | undefined;
}

/** An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) as plain IPv4. */
function unmap(address: string | undefined): string | undefined {
  return address?.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/**
 * The v2 header for a TCP connection from source to dest. Addresses of different families, or
 * missing ones (the socket already closed), give a LOCAL header: the backend then uses the
 * connection's own addresses rather than wrong ones.
 */
export function proxyV2Header(e: Endpoints): Buffer {
  const src = unmap(e.sourceAddress);
  const dst = unmap(e.destAddress);
  const ports = e.sourcePort !== undefined && e.destPort !== undefined;
  if (ports && src && dst && isIPv4(src) && isIPv4(dst)) return header(TCP4, 4, src, dst, e, writeIPv4);
  if (ports && src && dst && isIPv6(src) && isIPv6(dst)) return header(TCP6, 16, src, dst, e, writeIPv6);
  const out = Buffer.alloc(16);
  SIGNATURE.copy(out, 0);
  out[12] = CMD_LOCAL;
  out[13] = 0x00;
  out.writeUInt16BE(0, 14);
  return out;
}

/** Signature, PROXY command, family, length, then source, destination, source port, destination port. */
function header(
  family: number,
  addressBytes: number,
  src: string,
  dst: string,
  e: Endpoints,
  write: (out: Buffer, at: number, address: string) => void,
): Buffer {
  const length = 2 * addressBytes + 4;
  const out = Buffer.alloc(16 + length);
  SIGNATURE.copy(out, 0);
  out[12] = CMD_PROXY;
  out[13] = family;
  out.writeUInt16BE(length, 14);
  write(out, 16, src);
  write(out, 16 + addressBytes, dst);
  out.writeUInt16BE(e.sourcePort!, 16 + 2 * addressBytes);
  out.writeUInt16BE(e.destPort!, 18 + 2 * addressBytes);
  return out;
}

function writeIPv4(out: Buffer, at: number, address: string): void {
  address.split('.').forEach((octet, i) => (out[at + i] = Number(octet)));
}

/** Expands `::` and an embedded IPv4 tail; `address` is known to be valid IPv6. */
function writeIPv6(out: Buffer, at: number, address: string): void {
  let text = address.split('%')[0]!;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const o = v4[1]!.split('.').map(Number);
    text = `${text.slice(0, -v4[1]!.length)}${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), at + 2 * i));
}
