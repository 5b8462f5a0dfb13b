// Phase 1, read the request head: copy what the request path needs out of the client's
// request object (valid only during the dispatch call), and refuse framing we will not guess at.
import type { ClientRequest, TlsFacts } from '../front-door/client.js';
import { isToken } from '../upstream/codec.js';
import { Body } from './context.js';

/**
 * The request head as the later phases read it. One per thread, overwritten by the next
 * readRequestHead(): read it synchronously, keep copies of what outlives the call.
 */
export interface RequestHead {
  method: string;
  /** Path and query, as sent (`/a?b`). */
  target: string;
  path: string;
  /** name, value, name, value… of the headers forwarded as they are (names lower-cased). */
  flat: string[];
  host: string;
  /** Every Cookie header joined with `; `, re-emitted once. */
  cookie: string;
  /** How the body reaches the backend, and its length when Body.Length. */
  body: Body;
  length: number;
  /** Content-Length headers seen (an explicit `0` is forwarded as such). */
  clCount: number;
  xff: string;
  /** The first X-Forwarded-Proto / -Host, and every Forwarded: kept only from a trusted proxy. */
  xfProto: string;
  xfHost: string;
  forwarded: string;
  connection: string;
  /** The TLS it came over (an HTTPS listener); null on plain HTTP. */
  tls: TlsFacts | null;
  /** Why the request is refused (400), '' when it is not. */
  bad: string;
}

const H: RequestHead & { hostCount: number; contentLength: string; transferEncoding: string } = {
  method: '',
  target: '',
  path: '',
  flat: [],
  host: '',
  hostCount: 0,
  cookie: '',
  body: Body.None,
  length: 0,
  contentLength: '',
  clCount: 0,
  transferEncoding: '',
  xff: '',
  xfProto: '',
  xfHost: '',
  forwarded: '',
  connection: '',
  tls: null,
  bad: '',
};

function collectHeader(name: string, value: string): void {
  switch (name) {
    case 'host': H.host = value; H.hostCount++; break;
    case 'cookie': H.cookie = H.cookie ? `${H.cookie}; ${value}` : value; return; // re-emitted once
    case 'content-length': H.contentLength = value; if (++H.clCount > 1) H.bad ||= 'more than one Content-Length'; return;
    case 'transfer-encoding': H.transferEncoding = H.transferEncoding ? `${H.transferEncoding}, ${value}` : value; return;
    case 'x-forwarded-for': H.xff = H.xff ? `${H.xff}, ${value}` : value; return;
    case 'x-forwarded-proto': H.xfProto ||= value; return;
    case 'x-forwarded-host': H.xfHost ||= value; return;
    case 'forwarded': H.forwarded = H.forwarded ? `${H.forwarded}, ${value}` : value; return;
    case 'x-real-ip': return; // never believed: Tether sets its own
    case 'connection': H.connection = H.connection ? `${H.connection}, ${value}` : value; return;
  }
  H.flat.push(name, value);
}

/**
 * Reads the request head into the thread's RequestHead and decides the body's framing. Its
 * `bad` says why the request must be refused with 400 ('' when it may go on): more or fewer
 * than one Host, two Content-Lengths, a Transfer-Encoding other than chunked or beside a
 * Content-Length, an invalid Content-Length or method. The front door refuses most of these
 * before dispatch; this is the second line, for every listener that feeds the phases.
 */
export function readRequestHead(req: ClientRequest): RequestHead {
  const method = req.getCaseSensitiveMethod();
  const query = req.getQuery();
  const path = req.getUrl();
  H.method = method;
  H.path = path;
  H.target = query ? `${path}?${query}` : path;
  H.flat = [];
  H.host = '';
  H.hostCount = 0;
  H.cookie = '';
  H.contentLength = '';
  H.clCount = 0;
  H.transferEncoding = '';
  H.xff = '';
  H.xfProto = '';
  H.xfHost = '';
  H.forwarded = '';
  H.connection = '';
  H.tls = req.getTls();
  H.bad = '';
  H.body = Body.None;
  H.length = 0;
  req.forEach(collectHeader);
  if (H.hostCount !== 1) H.bad ||= 'exactly one Host header is required';
  const te = H.transferEncoding;
  if (te) {
    // The front door de-chunks `chunked`; anything else (gzip, chunked; identity) would leave us and the
    // backend disagreeing about where the body ends.
    if (te.trim().toLowerCase() !== 'chunked') H.bad ||= `unsupported Transfer-Encoding '${te}'`;
    if (H.clCount > 0) H.bad ||= 'both Content-Length and Transfer-Encoding';
    H.body = Body.Chunked;
  } else if (H.clCount === 1) {
    if (!/^\d{1,15}$/.test(H.contentLength)) H.bad ||= `invalid Content-Length '${H.contentLength}'`;
    H.length = Number(H.contentLength);
    H.body = H.length > 0 ? Body.Length : Body.None;
  }
  if (!isToken(method)) H.bad ||= 'invalid method';
  return H;
}

/** The Host header without its port, lower-cased (`[::1]:80` → `[::1]`). */
export function hostnameOf(host: string): string {
  const colon = host.lastIndexOf(':');
  return (colon > 0 && host.indexOf(']') < colon ? host.slice(0, colon) : host).toLowerCase();
}

/** Is `name` (lower-cased) one of the tokens of a Connection header's value? */
export function connectionListed(connection: string, name: string): boolean {
  for (const t of connection.split(',')) if (t.trim().toLowerCase() === name) return true;
  return false;
}

/** The first value of a (lower-cased) request header in `flat`, '' when absent. */
export function headerValue(flat: string[], name: string): string {
  for (let i = 0; i < flat.length; i += 2) if (flat[i] === name) return flat[i + 1]!;
  return '';
}
