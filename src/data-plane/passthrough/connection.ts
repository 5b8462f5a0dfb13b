// One TLS passthrough connection (README "TLS passthrough"): a client handle, later a backend
// handle, and the phase it is in (./phase.ts). Reads are dispatched by phase: the ClientHello
// (./client-hello.ts), the connect (./upstream-connect.ts), then the relay, which lives here:
// bytes passed on both ways with backpressure, each FIN passed on as a half-close, both sides
// closed once both are done. A refused client gets its alert and lingers until it closes.
//
// Every deadline is one number on the connection, checked by the listener's sweep
// (./listener.ts, onSweep): no timer per connection, and no timer refresh per chunk relayed (a
// chunk only sets a flag). A connection is one object, two handles and a few closures made
// once; nothing is allocated per chunk relayed but the copy out of the shared read buffer.
import type { SniRouteConfig } from '../../config/schema.js';
import type { BackendRuntime } from '../runtime.js';
import { C, type WorkerCounters } from '../../shared-memory/counters.js';
import type { PassthroughContext, RouteSet } from './listener.js';
import { Phase } from './phase.js';
import { readClientHello } from './client-hello.js';
import { connectFailed, holdEarlyBytes } from './upstream-connect.js';
import { alert } from './tls-alerts.js';
import * as tcp from './raw-tcp.js';
import type { TcpHandle } from './raw-tcp.js';

/** After a refusal, how long the client gets to read the alert and close before it is cut. */
export const LINGER_MS = 1_000;
/** The worker's shared read buffer, and a bulk connection's own, per direction. */
export const READ_BUFFER_BYTES = 64 * 1024;
/** A read at least this large makes a direction bulk: it gets a read buffer of its own. */
const BULK_READ_BYTES = 16 * 1024;

/** What every connection of one worker's passthrough listener shares; the listener owns it. */
export interface ConnectionShared {
  /** The worker's side: current routes and runtime, the ClientHello parser, its index. */
  readonly ctx: Pick<PassthroughContext, 'routes' | 'runtime' | 'parse' | 'workerIndex'>;
  readonly counters: WorkerCounters;
  /**
   * Where reads land first (READ_BUFFER_BYTES), one for every connection of the worker: reads
   * run one at a time on its event loop. What is read there is copied out before the next read,
   * since a write that the kernel does not take at once keeps pointing at its bytes.
   */
  readonly readBuffer: Buffer;
  /** Live connections; each knows its index, so removal is a swap with the last. */
  readonly live: PassthroughConnection[];
  /** Called when the last live connection has closed (set while draining). */
  onEmpty: (() => void) | null;
}

/**
 * A TLS passthrough connection, from accept to close. It decides, per phase, what a read, a
 * write completion, a FIN or a passed deadline means for the connection; the counters of its
 * outcomes (bytes, route and backend) are written once, when it closes.
 */
export class PassthroughConnection {
  phase = Phase.Hello;
  deadline: number;
  index = -1;
  /** Relay: bytes moved since the last sweep (the sweep then pushes the idle deadline on). */
  active = false;
  /** The ClientHello and what followed it, until the backend is connected. */
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

  /**
   * Where each side's reads land: the shared read buffer, or a bulk direction's own. A direction
   * whose read fills BULK_READ_BYTES gets a buffer of its own and is written from it without a
   * copy (a queued write pauses its source, so the buffer is not read into meanwhile). Idle and
   * small connections hold no buffer; a bulk direction holds 64 KiB until the connection ends.
   */
  clientBuf: Uint8Array;
  upstreamBuf: Uint8Array;

  constructor(
    readonly shared: ConnectionShared,
    readonly client: TcpHandle,
    now: number,
  ) {
    this.set = shared.ctx.routes();
    this.deadline = now + this.set.config.clientHelloTimeoutMs;
    this.clientBuf = shared.readBuffer;
    this.upstreamBuf = shared.readBuffer;
    tcp.useBuffer(client, shared.readBuffer);
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
        if (bytes !== null) readClientHello(this, bytes);
        else if (status === tcp.READ_EOF) {
          // FIN before a whole ClientHello: it can never complete.
          this.shared.counters.inc(C.passthrough_malformed);
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
        if (bytes !== null) holdEarlyBytes(this, bytes);
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

  /** Stops reading the client (idempotent): backpressure, its FIN, or a refusal. */
  pauseClient(): void {
    if (!this.clientReading) return;
    this.clientReading = false;
    this.client.readStop();
  }

  /** Reads the client again (idempotent). */
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
    if (buf !== this.shared.readBuffer) {
      this.forward(bytes, fromClient);
      return undefined;
    }
    // In memory of their own (small reads: a slice of Node's buffer pool).
    this.forward(Buffer.from(bytes), fromClient);
    if (bytes.length < BULK_READ_BYTES || this.phase !== Phase.Relay) return undefined;
    const own = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
    if (fromClient) this.clientBuf = own;
    else this.upstreamBuf = own;
    return own;
  }

  /** The client's address and port, read once (when the client has gone: '' and 0). */
  peer(): tcp.SocketAddress {
    return (this.clientAddress ??= tcp.peerAddress(this.client));
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

  /** A queued write completed: failed, close; the queue drained, the held source reads again. */
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

  /** A fatal alert (./tls-alerts.ts), then FIN; cut if the client lingers past LINGER_MS. */
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

  /**
   * The sweep's visit (every tick, `now` its time): a relay that moved bytes since the last
   * visit gets its idle deadline pushed on; otherwise a passed deadline expires it.
   */
  onSweep(now: number): void {
    if (this.phase === Phase.Relay && this.active) {
      this.active = false;
      this.deadline = now + this.set.config.idleTimeoutMs;
    } else if (now >= this.deadline) this.expire();
  }

  /**
   * The deadline passed. A ClientHello or relay timeout is counted and closed; a connect
   * timeout is a failed attempt (the next backend is tried); a lingering client is cut.
   */
  expire(): void {
    switch (this.phase) {
      case Phase.Hello:
        this.shared.counters.inc(C.passthrough_hello_timeouts);
        this.close();
        return;
      case Phase.Connecting: {
        const backend = this.backend!;
        const handle = this.upstream;
        this.upstream = null;
        handle?.close();
        connectFailed(this, backend, 'did not accept the connection in time');
        return;
      }
      case Phase.Relay:
        this.shared.counters.inc(C.passthrough_idle_timeouts);
        this.close();
        return;
      default:
        this.close();
    }
  }

  /**
   * Closes both handles (idempotent), counts a relayed connection's bytes for its route and
   * backend, and leaves the live set; the last one out tells a drain it is done.
   */
  close(): void {
    if (this.phase === Phase.Closed) return;
    const relayed = this.phase === Phase.Relay;
    this.phase = Phase.Closed;
    this.client.close();
    this.upstream?.close();
    this.hello = null;
    const shared = this.shared;
    const counters = shared.counters;
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
    const live = shared.live;
    const last = live.pop()!;
    if (last !== this) {
      live[this.index] = last;
      last.index = this.index;
    }
    this.index = -1;
    if (live.length === 0 && shared.onEmpty !== null) shared.onEmpty();
  }
}
