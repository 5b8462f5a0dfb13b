// The connect phase of a passthrough connection: a backend of the routed pool picked by its
// balancer, its name resolved when it is not an address, a connection made under the connect
// deadline, retried on another backend when it fails (at most MAX_ATTEMPTS in all). Once
// connected: the PROXY v2 header if the route asks for it, then the buffered ClientHello and
// whatever the client sent meanwhile, and the connection relays (./connection.ts).
import { isIP } from 'node:net';
import { lookup } from 'node:dns';
import { C } from '../../shared-memory/counters.js';
import type { BackendRuntime } from '../runtime.js';
import { channels } from '../diagnostics.js';
import { Failure } from '../failure.js';
import type { PassthroughConnection } from './connection.js';
import { Phase } from './phase.js';
import { proxyV2Header } from './proxy-protocol.js';
import { ALERT_INTERNAL_ERROR } from './tls-alerts.js';
import * as tcp from './raw-tcp.js';
import type { TcpHandle } from './raw-tcp.js';

const MAX_ATTEMPTS = 3;
/** What a client may send after its ClientHello while the backend connection is made, before it is paused. */
const MAX_EARLY_BYTES = 64 * 1024;

/**
 * Connects to the next backend of the route's pool, never one already tried (`exclude`: the
 * one that just failed, or -1). No backend to pick, or MAX_ATTEMPTS tried: refused with
 * `internal_error`, counted as no backend (nothing tried) or as a connect error.
 */
export function connectUpstream(conn: PassthroughConnection, exclude: number): void {
  const counters = conn.shared.counters;
  // The pool as it is now; a reload may have removed it since this connection was routed.
  const runtime = conn.shared.ctx.runtime();
  const pool = runtime.pools.get(conn.routed!.pool);
  // The client's address costs a getpeername(2): asked only by what uses it.
  const hashKey = pool?.balancer.kind === 'consistent-hash' ? conn.peer().address : '';
  const index = pool ? pool.balancer.pick({ hashKey }, exclude) : -1;
  const tried = conn.tried;
  if (index < 0 || tried.length >= MAX_ATTEMPTS || tried.includes(index)) {
    counters.inc(tried.length === 0 ? C.passthrough_no_backend : C.passthrough_upstream_connect_errors);
    conn.refuse(ALERT_INTERNAL_ERROR);
    return;
  }
  tried.push(index);
  const backend = pool!.backends[index]!;
  conn.backend = backend;
  conn.phase = Phase.Connecting;
  conn.deadline = Date.now() + runtime.config.timeouts.connectMs;
  const family = isIP(backend.host);
  if (family === 4 || family === 6) {
    dial(conn, backend, backend.host, family);
    return;
  }
  lookup(backend.host, (err, address, resolvedFamily) => {
    if (conn.phase !== Phase.Connecting || conn.backend !== backend) return; // closed or timed out meanwhile
    if (err !== null || (resolvedFamily !== 4 && resolvedFamily !== 6)) connectFailed(conn, backend, `cannot resolve ${backend.host}: ${err?.message ?? 'no address'}`);
    else dial(conn, backend, address, resolvedFamily);
  });
}

/** Opens the backend connection; a connect that throws at once is a failed attempt. */
function dial(conn: PassthroughConnection, backend: BackendRuntime, address: string, family: 4 | 6): void {
  let handle: TcpHandle;
  try {
    handle = tcp.connect(address, family, backend.port, (status) => onConnect(conn, handle, backend, status));
  } catch (err) {
    connectFailed(conn, backend, `connect failed: ${(err as Error).message}`);
    return;
  }
  conn.upstream = handle;
  // Reading starts now, not once connected: libuv then registers the socket for reading and
  // writing at once, and only narrows it when the connect completes (one epoll_ctl instead
  // of three). It reports the connect before any read, and nothing is read before Relay.
  tcp.useBuffer(handle, conn.shared.readBuffer);
  handle.onread = () => conn.onUpstreamRead();
  handle.readStart();
}

/**
 * The connect's outcome. Failed: another attempt. Connected: the backend is marked healthy and
 * counted active, the connection relays under the idle deadline, and the backend receives the
 * PROXY v2 header (if the route asks for it), then the ClientHello and what followed it.
 */
function onConnect(conn: PassthroughConnection, handle: TcpHandle, backend: BackendRuntime, status: number): void {
  // A handle closed by a timeout or by close() reports a cancellation: already handled.
  if (conn.upstream !== handle || conn.phase !== Phase.Connecting) return;
  if (status !== 0) {
    conn.upstream = null;
    handle.close();
    connectFailed(conn, backend, `connect failed (libuv status ${status})`);
    return;
  }
  const counters = conn.shared.counters;
  handle.setNoDelay(true);
  counters.markBackendSuccess(backend.slot);
  counters.inc(C.passthrough_routed);
  counters.incBackend(backend.slot, 'active');
  conn.phase = Phase.Relay;
  conn.deadline = Date.now() + conn.set.config.idleTimeoutMs;
  if (conn.routed!.proxyProtocol) {
    const local = tcp.localAddress(conn.client);
    const source = conn.peer();
    const header = proxyV2Header({
      sourceAddress: source.address,
      sourcePort: source.port,
      destAddress: local.address,
      destPort: local.port,
    });
    conn.forward(header, true);
  }
  const hello = conn.hello!;
  conn.hello = null;
  conn.bytesIn = hello.length;
  conn.forward(hello, true);
  if (conn.phase !== Phase.Relay) return; // a write failed
  if (conn.clientEndedEarly) conn.finishDirection(true);
  // Paused while connecting (too many early bytes): read again, unless the write above
  // is queued (then onWritten resumes it once drained).
  else if (!conn.clientHeld) conn.resumeClient();
}

/**
 * An attempt failed (`why`, for the diagnostics channel): the backend is marked down for its
 * backoff, the failure published as TETHER_ERR_UPSTREAM_CONNECT (retryable), and the next
 * backend tried.
 */
export function connectFailed(conn: PassthroughConnection, backend: BackendRuntime, why: string): void {
  const counters = conn.shared.counters;
  counters.markBackendFailure(backend.slot, Date.now(), backend.pool.backoffMs, backend.pool.maxBackoffMs);
  if (channels.upstreamFailure.hasSubscribers) {
    channels.upstreamFailure.publish({
      worker: conn.shared.ctx.workerIndex ?? 0,
      protocol: 'passthrough',
      pool: backend.pool.name,
      backend: backend.id,
      address: `${backend.host}:${backend.port}`,
      failure: new Failure('TETHER_ERR_UPSTREAM_CONNECT', `backend ${backend.id} (${backend.host}:${backend.port}): ${why}`, true),
      attempt: conn.tried.length,
    });
  }
  counters.incBackend(backend.slot, 'connect_errors');
  connectUpstream(conn, backend.index);
}

/**
 * Bytes the client sends after its ClientHello, before the backend is connected: they join the
 * buffered ClientHello and are sent after it. Past MAX_EARLY_BYTES the client is paused until
 * the backend is connected (backpressure before the relay exists).
 */
export function holdEarlyBytes(conn: PassthroughConnection, bytes: Uint8Array): void {
  const prev = conn.hello!;
  const joined = new Uint8Array(prev.length + bytes.length);
  joined.set(prev, 0);
  joined.set(bytes, prev.length);
  conn.hello = joined;
  conn.earlyBytes += bytes.length;
  if (conn.earlyBytes >= MAX_EARLY_BYTES) conn.pauseClient();
}
