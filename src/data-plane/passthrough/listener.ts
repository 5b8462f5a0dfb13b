// The TLS passthrough path of one worker (DESIGN.md "TLS passthrough path"): accept on an
// SO_REUSEPORT socket shared with the other workers, buffer until the whole ClientHello is in
// (capped, with a deadline), parse it natively, route by SNI (and ALPN), connect to a backend
// of the route's pool, optionally send a PROXY v2 header, forward the buffered bytes, then
// relay both ways with backpressure and half-close until both sides are done or the
// connection goes idle. TLS is never terminated; no key is ever held. Bad input is closed and
// counted, never left waiting.
//
// Sockets are raw libuv handles (./raw-tcp.ts), not net.Socket: a connection is one Conn
// object, two handles and a few closures. Every deadline (ClientHello, connect, idle, linger
// after a refusal) is one number on the Conn, checked by a sweep over the live connections
// every `tick` ms: no timer per connection, and no timer refresh per chunk relayed (a chunk
// only sets a flag). Deadlines therefore fire up to one tick late; the tick is a tenth of the
// shortest configured deadline, between 5 and 100 ms.
import { isIP } from 'node:net';
import { lookup } from 'node:dns';
import type { Config, PassthroughConfig, SniRouteConfig } from '../../config/schema.js';
import type { BackendRuntime, Runtime } from '../runtime.js';
import { C, type WorkerCounters } from '../../shared-memory/counters.js';
import { compileSniRoutes, type SniRouter } from './router.js';
import { proxyV2Header } from './proxy-protocol.js';
import { channels } from '../diagnostics.js';
import { Failure } from '../failure.js';
import * as tcp from './raw-tcp.js';
import type { TcpHandle } from './raw-tcp.js';
import type { ClientHelloStatus } from '../../native/index.js';

export interface ClientHelloInfo {
  status: ClientHelloStatus;
  sni?: string | null;
  alpn?: string[];
  reason?: string;
}

export type ParseClientHello = (bytes: Uint8Array, maxBytes: number) => ClientHelloInfo;

/**
 * The routes and limits in force, replaced whole by a reload. A connection keeps the set it was
 * accepted under, so a reload never changes the rules halfway through a ClientHello.
 */
export interface RouteSet {
  readonly config: PassthroughConfig;
  readonly router: SniRouter;
  /** Shared-memory counter slot of each route (stable across reloads for the same route). */
  readonly slots: readonly number[];
}

export function compileRouteSet(config: PassthroughConfig, slots: readonly number[]): RouteSet {
  if (slots.length !== config.routes.length) throw new Error(`passthrough: ${config.routes.length} routes but ${slots.length} counter slots`);
  return { config, router: compileSniRoutes(config.routes), slots };
}

export interface PassthroughContext {
  /** At start: the listen addresses. */
  config: Config;
  runtime: () => Runtime;
  /** The current routes (a reload swaps the set). */
  routes: () => RouteSet;
  counters: WorkerCounters;
  parse: ParseClientHello;
  /** Opens this worker's SO_REUSEPORT socket on the address (native). */
  openListener: (host: string, port: number) => number;
  log: (level: 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** This worker's index (diagnostics messages). */
  workerIndex?: number;
}

export interface Passthrough {
  /** Stops accepting; resolves once every relayed connection has ended or `drainMs` passed (then cut). */
  close(drainMs: number): Promise<void>;
  readonly active: number;
}

/** TLS alert records (RFC 8446 §6): fatal, with the reason a client can show. */
const ALERT_UNRECOGNIZED_NAME = 112;
const ALERT_DECODE_ERROR = 50;
const ALERT_INTERNAL_ERROR = 80;
/** After a refusal, how long the client gets to read the alert and close before it is cut. */
const LINGER_MS = 1_000;
const MAX_ATTEMPTS = 3;
/** What a client may send after its ClientHello while the backend connection is made, before it is paused. */
const MAX_EARLY_BYTES = 64 * 1024;
/** node:net's default accept backlog. */
const BACKLOG = 511;
/** The worker's shared read buffer, and a bulk connection's own, per direction. */
const READ_BUFFER_BYTES = 64 * 1024;
/** A read at least this large makes a direction bulk: it gets a read buffer of its own. */
const BULK_READ_BYTES = 16 * 1024;

function alert(description: number): Buffer {
  return Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]);
}

const enum Phase {
  /** Reading the ClientHello; deadline = hello deadline. */
  Hello,
  /** Connecting to a backend (or resolving its name); deadline = connect deadline. */
  Connecting,
  /** Relaying both ways; deadline = idle deadline, pushed on by any bytes moved. */
  Relay,
  /** Refused: alert sent with FIN, waiting for the client's FIN; deadline = cut. */
  Linger,
  Closed,
}

/** Sweep period: a tenth of the shortest deadline, within [5, 100] ms. */
export function sweepTickMs(deadlinesMs: readonly number[]): number {
  return Math.min(100, Math.max(5, Math.floor(Math.min(...deadlinesMs) / 10)));
}

export function startPassthrough(ctx: PassthroughContext): Promise<Passthrough> {
  const counters = ctx.counters;
  const tickFor = (set: RouteSet) => sweepTickMs([set.config.clientHelloTimeoutMs, ctx.runtime().config.timeouts.connectMs, set.config.idleTimeoutMs, LINGER_MS]);
  /** Live connections; each knows its index, so removal is a swap with the last. */
  const live: Conn[] = [];
  let onEmpty: (() => void) | null = null;
  // Reads land in one buffer shared by every connection of this worker (reads run one at a time
  // on its event loop), not in the fresh 64 KiB allocation Node makes per read otherwise. What is
  // read there is copied out before the next read (small reads: a slice of Node's buffer pool),
  // since a write that the kernel does not take at once keeps pointing at its bytes. A direction
  // whose read fills BULK_READ_BYTES gets a buffer of its own and is written from it without a
  // copy (a queued write pauses its source, so the buffer is not read into meanwhile). Idle and
  // small connections hold no buffer; a bulk direction holds 64 KiB until the connection ends.
  const shared = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  /** Bytes read into `shared`, in memory of their own. */
  const copyOut = (bytes: Uint8Array): Uint8Array => Buffer.from(bytes);

  class Conn {
    phase = Phase.Hello;
    deadline: number;
    index = -1;
    /** Relay: bytes moved since the last sweep (the sweep then pushes the idle deadline on). */
    active = false;
    hello: Uint8Array | null = null;
    upstream: TcpHandle | null = null;
    /** The routes this connection was accepted under. */
    readonly set: RouteSet;
    routed: SniRouteConfig | null = null;
    routeSlot = -1;
    backend: BackendRuntime | null = null;
    /** Backends tried for this connection, in order (at most MAX_ATTEMPTS). */
    tried: number[] = [];
    clientAddress: tcp.SocketAddress | null = null;
    bytesIn = 0;
    bytesOut = 0;
    /** Per direction: the source sent FIN (and we passed it on with shutdown). */
    clientDone = false;
    upstreamDone = false;
    shutdownsSent = 0;
    /** A source stopped because the other side's write queue is not empty. */
    clientHeld = false;
    upstreamHeld = false;
    /** Whether the client handle is reading (it starts reading once accepted). */
    clientReading = true;
    /** The client sent FIN while the backend connection was being made. */
    clientEndedEarly = false;
    /** Bytes the client sent after its ClientHello, before the backend was connected. */
    earlyBytes = 0;

    /** Where each side's reads land: `shared`, or a bulk direction's own buffer. */
    clientBuf: Uint8Array = shared;
    upstreamBuf: Uint8Array = shared;

    constructor(readonly client: TcpHandle, now: number) {
      this.set = ctx.routes();
      this.deadline = now + this.set.config.clientHelloTimeoutMs;
      tcp.useBuffer(client, shared);
      client.onread = () => this.onClientRead();
    }

    /** Returns the buffer the client's next reads land in when that changes (bulk). */
    onClientRead(): Uint8Array | undefined {
      const buf = this.clientBuf;
      const bytes = tcp.readInto(buf);
      // libuv may report an empty read (its EAGAIN): neither data, nor an end, nor an error.
      const status = bytes === null ? tcp.readStatus() : tcp.READ_NOTHING;
      if (bytes === null && status === tcp.READ_NOTHING) return;
      switch (this.phase) {
        case Phase.Hello:
          if (bytes !== null) this.onHelloBytes(bytes);
          else if (status === tcp.READ_EOF) {
            // FIN before a whole ClientHello: it can never complete.
            counters.inc(C.passthrough_malformed);
            this.close();
          } else this.close();
          return;
        case Phase.Relay:
          if (bytes !== null) {
            this.bytesIn += bytes.length;
            this.active = true;
            return this.relay(bytes, buf, true);
          } else if (status === tcp.READ_EOF) this.finishDirection(true);
          else this.close();
          return;
        case Phase.Linger:
          // Whatever the refused client still sends is dropped; its FIN or error ends it.
          if (bytes === null) this.close();
          return;
        case Phase.Connecting:
          if (bytes !== null) this.onEarlyBytes(bytes);
          else if (status === tcp.READ_EOF) {
            // Passed on once the backend is connected, after the bytes before it.
            this.clientEndedEarly = true;
            this.pauseClient();
          } else this.close();
          return;
        default:
          // Closed: nothing more to do.
          if (bytes === null) this.close();
      }
    }

    /** Bytes after the ClientHello, before the backend is connected: sent with it, bounded. */
    onEarlyBytes(bytes: Uint8Array): void {
      const prev = this.hello!;
      const joined = new Uint8Array(prev.length + bytes.length);
      joined.set(prev, 0);
      joined.set(bytes, prev.length);
      this.hello = joined;
      this.earlyBytes += bytes.length;
      // Backpressure before the relay exists: past this, wait for the backend.
      if (this.earlyBytes >= MAX_EARLY_BYTES) this.pauseClient();
    }

    pauseClient(): void {
      if (!this.clientReading) return;
      this.clientReading = false;
      this.client.readStop();
    }

    resumeClient(): void {
      if (this.clientReading) return;
      this.clientReading = true;
      this.client.readStart();
    }

    /** Returns the buffer the backend's next reads land in when that changes (bulk). */
    onUpstreamRead(): Uint8Array | undefined {
      if (this.phase !== Phase.Relay) return undefined;
      const buf = this.upstreamBuf;
      const bytes = tcp.readInto(buf);
      if (bytes !== null) {
        this.bytesOut += bytes.length;
        this.active = true;
        return this.relay(bytes, buf, false);
      }
      const status = tcp.readStatus();
      if (status === tcp.READ_EOF) this.finishDirection(false);
      else if (status !== tcp.READ_NOTHING) this.close();
    }

    /**
     * Passes on `bytes`, read into `buf`, to the other side: copied out first when `buf` is the
     * shared buffer. A read from the shared buffer that reaches BULK_READ_BYTES gives the
     * direction a buffer of its own, returned for `onread` to hand back to Node.
     */
    relay(bytes: Uint8Array, buf: Uint8Array, fromClient: boolean): Uint8Array | undefined {
      if (buf !== shared) {
        this.forward(bytes, fromClient);
        return undefined;
      }
      this.forward(copyOut(bytes), fromClient);
      if (bytes.length < BULK_READ_BYTES || this.phase !== Phase.Relay) return undefined;
      const own = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
      if (fromClient) this.clientBuf = own;
      else this.upstreamBuf = own;
      return own;
    }

    onHelloBytes(bytes: Uint8Array): void {
      const prev = this.hello;
      let buffered: Uint8Array;
      // A copy: `bytes` are in the shared read buffer.
      if (prev === null) buffered = copyOut(bytes);
      else {
        buffered = new Uint8Array(prev.length + bytes.length);
        buffered.set(prev, 0);
        buffered.set(bytes, prev.length);
      }
      this.hello = buffered;
      const maxBytes = this.set.config.maxClientHelloBytes;
      const hello = ctx.parse(buffered, maxBytes);
      if (hello.status === 'incomplete' && buffered.length <= maxBytes) return;
      if (hello.status === 'ok') {
        // The client keeps reading while the backend connection is made: what it sends
        // meanwhile joins the ClientHello (onEarlyBytes). Stopping and restarting it would cost
        // two epoll_ctl calls per connection.
        this.route(hello.sni ?? null, hello.alpn ?? []);
        return;
      }
      this.pauseClient();
      switch (hello.status) {
        case 'not_tls':
          counters.inc(C.passthrough_not_tls);
          this.close();
          return;
        case 'malformed':
          counters.inc(C.passthrough_malformed);
          this.refuse(ALERT_DECODE_ERROR);
          return;
        default: // too_large, or still incomplete past the cap
          counters.inc(C.passthrough_too_large);
          this.close();
      }
    }

    route(sni: string | null, alpn: string[]): void {
      const routeIndex = this.set.router.route(sni, alpn);
      if (routeIndex < 0) {
        counters.inc(C.passthrough_no_route);
        this.refuse(ALERT_UNRECOGNIZED_NAME);
        return;
      }
      this.routed = this.set.config.routes[routeIndex]!;
      this.routeSlot = this.set.slots[routeIndex]!;
      counters.incRoute(this.routeSlot, 'connections');
      this.attempt(-1);
    }

    /** The client's address and port, read once (when the client has gone: '' and 0). */
    peer(): tcp.SocketAddress {
      return (this.clientAddress ??= tcp.peerAddress(this.client));
    }

    /** The next backend of the route's pool (never one already tried), at most MAX_ATTEMPTS. */
    attempt(exclude: number): void {
      // The pool as it is now; a reload may have removed it since this connection was routed.
      const runtime = ctx.runtime();
      const pool = runtime.pools.get(this.routed!.pool);
      // The client's address costs a getpeername(2): asked only by what uses it.
      const hashKey = pool?.balancer.kind === 'consistent-hash' ? this.peer().address : '';
      const index = pool ? pool.balancer.pick({ hashKey }, exclude) : -1;
      if (index < 0 || this.tried.length >= MAX_ATTEMPTS || this.tried.includes(index)) {
        counters.inc(this.tried.length === 0 ? C.passthrough_no_backend : C.passthrough_upstream_connect_errors);
        this.refuse(ALERT_INTERNAL_ERROR);
        return;
      }
      this.tried.push(index);
      const backend = pool!.backends[index]!;
      this.backend = backend;
      this.phase = Phase.Connecting;
      this.deadline = Date.now() + runtime.config.timeouts.connectMs;
      const family = isIP(backend.host);
      if (family === 4 || family === 6) {
        this.dial(backend, backend.host, family);
        return;
      }
      lookup(backend.host, (err, address, resolvedFamily) => {
        if (this.phase !== Phase.Connecting || this.backend !== backend) return; // closed or timed out meanwhile
        if (err !== null || (resolvedFamily !== 4 && resolvedFamily !== 6)) this.connectFailed(backend, `cannot resolve ${backend.host}: ${err?.message ?? 'no address'}`);
        else this.dial(backend, address, resolvedFamily);
      });
    }

    dial(backend: BackendRuntime, address: string, family: 4 | 6): void {
      let handle: TcpHandle;
      try {
        handle = tcp.connect(address, family, backend.port, (status) => this.onConnect(handle, backend, status));
      } catch (err) {
        this.connectFailed(backend, `connect failed: ${(err as Error).message}`);
        return;
      }
      this.upstream = handle;
      // Reading starts now, not once connected: libuv then registers the socket for reading and
      // writing at once, and only narrows it when the connect completes (one epoll_ctl instead
      // of three). It reports the connect before any read, and nothing is read before Relay.
      tcp.useBuffer(handle, shared);
      handle.onread = () => this.onUpstreamRead();
      handle.readStart();
    }

    onConnect(handle: TcpHandle, backend: BackendRuntime, status: number): void {
      // A handle closed by a timeout or by close() reports a cancellation: already handled.
      if (this.upstream !== handle || this.phase !== Phase.Connecting) return;
      if (status !== 0) {
        this.upstream = null;
        handle.close();
        this.connectFailed(backend, `connect failed (libuv status ${status})`);
        return;
      }
      handle.setNoDelay(true);
      counters.markBackendSuccess(backend.slot);
      counters.inc(C.passthrough_routed);
      counters.incBackend(backend.slot, 'active');
      this.phase = Phase.Relay;
      this.deadline = Date.now() + this.set.config.idleTimeoutMs;
      if (this.routed!.proxyProtocol) {
        const local = tcp.localAddress(this.client);
        const source = this.peer();
        const header = proxyV2Header({
          sourceAddress: source.address,
          sourcePort: source.port,
          destAddress: local.address,
          destPort: local.port,
        });
        this.forward(header, true);
      }
      const hello = this.hello!;
      this.hello = null;
      this.bytesIn = hello.length;
      this.forward(hello, true);
      if (this.phase !== Phase.Relay) return; // a write failed
      if (this.clientEndedEarly) this.finishDirection(true);
      // Paused while connecting (too many early bytes): read again, unless the write above
      // is queued (then onWritten resumes it once drained).
      else if (!this.clientHeld) this.resumeClient();
    }

    connectFailed(backend: BackendRuntime, why: string): void {
      counters.markBackendFailure(backend.slot, Date.now(), backend.pool.backoffMs, backend.pool.maxBackoffMs);
      if (channels.upstreamFailure.hasSubscribers) {
        channels.upstreamFailure.publish({
          worker: ctx.workerIndex ?? 0,
          protocol: 'passthrough',
          pool: backend.pool.name,
          backend: backend.id,
          address: `${backend.host}:${backend.port}`,
          failure: new Failure('TETHER_ERR_UPSTREAM_CONNECT', `backend ${backend.id} (${backend.host}:${backend.port}): ${why}`, true),
          attempt: this.tried.length,
        });
      }
      counters.incBackend(backend.slot, 'connect_errors');
      this.attempt(backend.index);
    }

    /** Write completions, one per direction, made once per connection rather than per chunk. */
    readonly wroteToUpstream = (status: number): void => this.onWritten(status, true);
    readonly wroteToClient = (status: number): void => this.onWritten(status, false);

    /**
     * Writes `bytes` from one side to the other (to the backend when `fromClient`). If they are
     * queued rather than sent, the source stops reading until the queue has drained: backpressure.
     */
    forward(bytes: Uint8Array, fromClient: boolean): void {
      const r = fromClient ? tcp.write(this.upstream!, bytes, this.wroteToUpstream) : tcp.write(this.client, bytes, this.wroteToClient);
      if (r === 0) return;
      if (r < 0) {
        this.close();
        return;
      }
      if (fromClient) {
        if (!this.clientHeld) {
          this.clientHeld = true;
          this.pauseClient();
        }
      } else if (!this.upstreamHeld) {
        this.upstreamHeld = true;
        this.upstream!.readStop();
      }
    }

    onWritten(status: number, fromClient: boolean): void {
      if (this.phase === Phase.Closed) return;
      if (status < 0) {
        this.close();
        return;
      }
      this.active = true;
      if ((fromClient ? this.upstream! : this.client).writeQueueSize !== 0) return;
      if (fromClient && this.clientHeld) {
        this.clientHeld = false;
        if (!this.clientDone && this.phase === Phase.Relay) this.resumeClient();
      } else if (!fromClient && this.upstreamHeld) {
        this.upstreamHeld = false;
        if (!this.upstreamDone) this.upstream!.readStart();
      }
    }

    /** One side sent FIN: pass it on after what is queued; both done and flushed: close. */
    finishDirection(fromClient: boolean): void {
      const from = fromClient ? this.client : this.upstream!;
      const to = fromClient ? this.upstream! : this.client;
      if (fromClient) this.clientDone = true;
      else this.upstreamDone = true;
      if (fromClient) this.pauseClient();
      else from.readStop();
      // Both sides have sent FIN and nothing waits to be written: close both now. close(2) sends
      // the FIN a shutdown would (both receive queues are read to their EOF, so it is never a
      // RST), without libuv's deferred shutdown, its poll for writability and its callback.
      if (this.clientDone && this.upstreamDone && to.writeQueueSize === 0 && from.writeQueueSize === 0) {
        this.close();
        return;
      }
      const err = tcp.shutdown(to, (status) => {
        if (this.phase !== Phase.Relay) return;
        if (status < 0) this.close();
        else if (++this.shutdownsSent === 2) this.close();
      });
      if (err !== 0) this.close();
    }

    /** A fatal alert, then FIN; cut if the client lingers. */
    refuse(description: number): void {
      this.phase = Phase.Linger;
      this.deadline = Date.now() + LINGER_MS;
      const client = this.client;
      if (tcp.write(client, alert(description), () => {}) < 0 || tcp.shutdown(client, () => {}) !== 0) {
        this.close();
        return;
      }
      this.resumeClient();
    }

    /** The sweep found the deadline passed. */
    expire(): void {
      switch (this.phase) {
        case Phase.Hello:
          counters.inc(C.passthrough_hello_timeouts);
          this.close();
          return;
        case Phase.Connecting: {
          const backend = this.backend!;
          const handle = this.upstream;
          this.upstream = null;
          handle?.close();
          this.connectFailed(backend, 'did not accept the connection in time');
          return;
        }
        case Phase.Relay:
          counters.inc(C.passthrough_idle_timeouts);
          this.close();
          return;
        default:
          this.close();
      }
    }

    close(): void {
      if (this.phase === Phase.Closed) return;
      const relayed = this.phase === Phase.Relay;
      this.phase = Phase.Closed;
      this.client.close();
      this.upstream?.close();
      this.hello = null;
      if (relayed) {
        const backend = this.backend!;
        counters.inc(C.passthrough_bytes_in, this.bytesIn);
        counters.inc(C.passthrough_bytes_out, this.bytesOut);
        counters.incRoute(this.routeSlot, 'bytes_in', this.bytesIn);
        counters.incRoute(this.routeSlot, 'bytes_out', this.bytesOut);
        counters.incBackend(backend.slot, 'active', -1);
        counters.incBackend(backend.slot, 'requests');
      }
      counters.inc(C.passthrough_active, -1);
      const last = live.pop()!;
      if (last !== this) {
        live[this.index] = last;
        last.index = this.index;
      }
      this.index = -1;
      if (live.length === 0 && onEmpty !== null) onEmpty();
    }
  }

  const onConnection = (status: number, client: TcpHandle | undefined): void => {
    // A failed accept (EMFILE, ECONNABORTED) leaves nothing to clean up.
    if (status !== 0 || client === undefined) return;
    counters.inc(C.passthrough_connections);
    counters.inc(C.passthrough_active);
    // No setNoDelay: the listening socket has TCP_NODELAY (native/src/listen_socket.cc), and
    // an accepted socket inherits it.
    const conn = new Conn(client, Date.now());
    conn.index = live.length;
    live.push(conn);
    if (client.readStart() !== 0) conn.close();
  };

  const sweep = (): void => {
    const now = Date.now();
    // Backwards: close() moves the last connection into the closed one's slot.
    for (let i = live.length - 1; i >= 0; i--) {
      const conn = live[i]!;
      if (conn.phase === Phase.Relay && conn.active) {
        conn.active = false;
        conn.deadline = now + conn.set.config.idleTimeoutMs;
      } else if (now >= conn.deadline) conn.expire();
    }
    // A reload may have shortened a deadline: the sweep keeps to a tenth of the shortest.
    const set = ctx.routes();
    if (set !== sweptFor) {
      sweptFor = set;
      const next = tickFor(set);
      if (next !== tick) {
        tick = next;
        clearInterval(sweeper);
        sweeper = setInterval(sweep, tick);
        sweeper.unref();
      }
    }
  };
  let sweptFor = ctx.routes();
  let tick = tickFor(sweptFor);
  let sweeper = setInterval(sweep, tick);
  sweeper.unref();

  const servers: TcpHandle[] = [];
  try {
    for (const addr of ctx.config.passthrough.listen) {
      // listenOnFd owns the fd from here, on success and on failure.
      servers.push(tcp.listenOnFd(ctx.openListener(addr.host, addr.port), BACKLOG, onConnection));
    }
  } catch (err) {
    for (const s of servers) s.close();
    clearInterval(sweeper);
    return Promise.reject(err);
  }

  return Promise.resolve({
    get active() {
      return live.length;
    },
    close(drainMs: number): Promise<void> {
      for (const s of servers.splice(0)) s.close();
      return new Promise<void>((resolve) => {
        const done = () => {
          onEmpty = null;
          clearTimeout(cut);
          clearInterval(sweeper);
          resolve();
        };
        const cut = setTimeout(() => {
          for (let i = live.length - 1; i >= 0; i--) live[i]!.close();
          done();
        }, drainMs);
        if (live.length === 0) done();
        else onEmpty = done;
      });
    },
  });
}
