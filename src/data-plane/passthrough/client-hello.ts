// The first phases of a passthrough connection: buffer the client's bytes until its whole
// ClientHello is in (capped at maxClientHelloBytes), parse it natively, and route it by SNI and
// ALPN (./router.ts) to a pool, or refuse it. The deadline for all of it is the connection's
// (Phase.Hello, enforced by the listener's sweep).
import { C } from '../../shared-memory/counters.js';
import type { PassthroughConnection } from './connection.js';
import { ALERT_DECODE_ERROR, ALERT_UNRECOGNIZED_NAME } from './tls-alerts.js';
import { connectUpstream } from './upstream-connect.js';

/**
 * Bytes read from the client before its ClientHello is whole. Decides what the connection does
 * next: wait for more (incomplete, within the cap); route it (a whole ClientHello); close it
 * (not TLS, too large, still incomplete past the cap); or refuse it with `decode_error`
 * (malformed). Every outcome but waiting and routing is counted here.
 */
export function readClientHello(conn: PassthroughConnection, bytes: Uint8Array): void {
  const prev = conn.hello;
  let buffered: Uint8Array;
  // A copy: `bytes` are in the shared read buffer.
  if (prev === null) buffered = Buffer.from(bytes);
  else {
    buffered = new Uint8Array(prev.length + bytes.length);
    buffered.set(prev, 0);
    buffered.set(bytes, prev.length);
  }
  conn.hello = buffered;
  const maxBytes = conn.set.config.maxClientHelloBytes;
  const hello = conn.shared.ctx.parse(buffered, maxBytes);
  if (hello.status === 'incomplete' && buffered.length <= maxBytes) return;
  if (hello.status === 'ok') {
    // The client keeps reading while the backend connection is made: what it sends
    // meanwhile joins the ClientHello (holdEarlyBytes). Stopping and restarting it would cost
    // two epoll_ctl calls per connection.
    routeBySni(conn, hello.sni ?? null, hello.alpn ?? []);
    return;
  }
  conn.pauseClient();
  const counters = conn.shared.counters;
  switch (hello.status) {
    case 'not_tls':
      counters.inc(C.passthrough_not_tls);
      conn.close();
      return;
    case 'malformed':
      counters.inc(C.passthrough_malformed);
      conn.refuse(ALERT_DECODE_ERROR);
      return;
    default: // too_large, or still incomplete past the cap
      counters.inc(C.passthrough_too_large);
      conn.close();
  }
}

/**
 * The route for the client's SNI and ALPN, among the routes the connection was accepted under.
 * None: refused with `unrecognized_name`. Otherwise the route's connection is counted and the
 * connect phase starts.
 */
function routeBySni(conn: PassthroughConnection, sni: string | null, alpn: string[]): void {
  const set = conn.set;
  const routeIndex = set.router.route(sni, alpn);
  if (routeIndex < 0) {
    conn.shared.counters.inc(C.passthrough_no_route);
    conn.refuse(ALERT_UNRECOGNIZED_NAME);
    return;
  }
  conn.routed = set.config.routes[routeIndex]!;
  conn.routeSlot = set.slots[routeIndex]!;
  conn.shared.counters.incRoute(conn.routeSlot, 'connections');
  connectUpstream(conn, -1);
}
