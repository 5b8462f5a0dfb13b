// The request head the backend gets: the client's headers minus hop-by-hop ones and the ones
// Tether owns (framing, forwarding), then Tether's forwarding headers and the body's framing.
import { forwardedNode, forwardedValue } from '../forwarding.js';
import { Body } from './context.js';
import { connectionListed, type RequestHead } from './request-head.js';

/** Request headers a proxy must not forward (RFC 9110 §7.6.1), plus the ones we rewrite. Names arrive lower-cased. */
function droppedRequestHeader(name: string): boolean {
  switch (name) {
    case 'te': case 'expect': case 'upgrade': case 'trailer': case 'keep-alive': case 'connection':
    case 'content-length': case 'proxy-connection': case 'transfer-encoding':
    case 'x-forwarded-for': case 'x-forwarded-host': case 'x-forwarded-proto': case 'x-real-ip': case 'forwarded':
      return true;
    default:
      return false;
  }
}

/**
 * The whole upstream request head, built once for every attempt. Forwarding headers are
 * replaced, or from a trusted proxy (`viaProxy`) extended with the peer (README "What the
 * backend is told about the client").
 */
export function upstreamHead(head: RequestHead, forwardCookie: string, peerIp: string, clientIp: string, viaProxy: boolean): string {
  const { flat, connection, host } = head;
  let out = '';
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!;
    if (droppedRequestHeader(name)) continue;
    if (connection && connectionListed(connection, name)) continue;
    out += `${name}: ${flat[i + 1]}\r\n`;
  }
  if (forwardCookie) out += `cookie: ${forwardCookie}\r\n`;
  // The scheme of this hop: https on an HTTPS listener (the trusted proxy's own X-Forwarded-Proto
  // wins for the client's hop, as it saw it).
  const proto = head.tls === null ? 'http' : 'https';
  if (viaProxy) {
    const xff = head.xff;
    out += `x-forwarded-for: ${xff ? `${xff}, ${peerIp}` : peerIp}\r\nx-forwarded-proto: ${head.xfProto || proto}\r\nx-forwarded-host: ${head.xfHost || host}\r\n`;
    out += `forwarded: ${head.forwarded ? `${head.forwarded}, ` : ''}for=${forwardedNode(peerIp)};host=${forwardedValue(host)};proto=${proto}\r\n`;
  } else {
    out += `x-forwarded-for: ${peerIp}\r\nx-forwarded-proto: ${proto}\r\nx-forwarded-host: ${host}\r\nforwarded: for=${forwardedNode(peerIp)};host=${forwardedValue(host)};proto=${proto}\r\n`;
  }
  out += `x-real-ip: ${clientIp}\r\n`;
  if (head.body === Body.Length) out += `content-length: ${head.length}\r\n`;
  else if (head.body === Body.Chunked) out += 'transfer-encoding: chunked\r\n';
  else if (head.clCount === 1) out += 'content-length: 0\r\n';
  return `${head.method} ${head.target} HTTP/1.1\r\n${out}\r\n`;
}
