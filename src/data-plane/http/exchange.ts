// Phase 6, exchange with the upstream: one request's life from its backend's connection to the
// last response byte — the request streamed to a pooled upstream connection, the response back,
// backpressure both ways, retries where nothing reached the backend, and a deadline on every
// wait (the worker sweeps them). The response head itself is shaped by ./response-head.ts.
import { C } from '../../shared-memory/counters.js';
import { clock } from '../clock.js';
import type { AccessLog } from '../access-log.js';
import type { ClientResponse } from '../front-door/client.js';
import type { BackendRuntime, PoolRuntime } from '../runtime.js';
import { chunkHeader, LAST_CHUNK, type ResponseHandlers } from '../upstream/codec.js';
import { acquire, release, type UpstreamConnection, type UpstreamSink } from '../upstream/pool.js';
import { Body, type ListenerContext, type SessionContext, type StickyDecision } from './context.js';
import { pickAnother, pickBackend } from './pick-backend.js';
import { shapeResponseHead, type Shaping } from './response-head.js';
import { respondError } from './respond.js';
import { channels } from '../diagnostics.js';
import { Failure } from '../failure.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** Past this much request body buffered before the upstream is ready, stop reading the client. */
const MAX_QUEUED_BODY = 256 * 1024;
const MAX_ATTEMPTS = 3;

const enum Phase { Connecting, Waiting, Streaming, Done }
const enum Out { None, Length, Stream }

/** One request's life from backend choice to the last response byte. */
export class Exchange implements UpstreamSink, Shaping {
  head = '';
  hashKey = '';
  deadline = 0;
  /** Position in ActiveExchanges, -1 when not in flight. */
  activeIndex = -1;
  phase = Phase.Connecting;
  private backend: BackendRuntime | null = null;
  /** The backend answering (Shaping: read only once its response head is in). */
  get served(): BackendRuntime {
    return this.backend!;
  }
  private conn: UpstreamConnection | null = null;
  private attempts = 0;
  /** Client gone (onAborted) or response finished: `res` must not be touched. */
  private resDone = false;
  private headSent = false;
  private stickyCounted = false;
  private status = 0;
  // Request body.
  private queue: Buffer[] = [];
  private queued = 0;
  private bodyEnded: boolean;
  private bodyStarted = false;
  private clientPaused = false;
  // Response body.
  private out = Out.None;
  private total = 0;
  private pending: Buffer[] = [];
  private pendingOffset = 0;
  /** Body bytes of a length-framed response the client side has taken (the write offset while nothing is pending). */
  private sent = 0;
  private upstreamPaused = false;
  private upstreamEnded = false;
  /** Chunked/close-delimited body parsed under cork, written once the cork scope ends (flushStream). */
  private streamed: Buffer[] = [];
  private streamedBytes = 0;
  private endAfterStream = false;
  private headOnly: boolean;
  // Access log and diagnostics (set only with --access-log or a channel subscriber).
  clientIp = '';
  path = '';
  /** Request in (access log only: 0 without it); request sent and response head (the latency histogram). */
  private startedAt = 0;
  /** What ended the request, if a failure did (diagnostics). */
  private failure: Failure | null = null;
  private sentAt = 0;
  private headAt = 0;
  private bytesOut = 0;

  constructor(
    readonly ctx: ListenerContext,
    private readonly res: ClientResponse,
    readonly pool: PoolRuntime,
    private readonly method: string,
    private readonly body: Body,
    readonly sticky: StickyDecision,
    readonly session: SessionContext,
  ) {
    this.bodyEnded = body === Body.None;
    this.headOnly = method === 'HEAD';
    res.onAborted(() => this.onClientAborted());
    if (body !== Body.None) res.onData((chunk, isLast) => this.onClientData(chunk, isLast));
  }

  /** Picks the backend (phase 5) and connects; 503 when none is up to try. */
  start(): void {
    const pool = this.pool;
    const index = pickBackend(this.ctx, pool, this.sticky, this.hashKey);
    if (index < 0) {
      this.ctx.counters.inc(C.no_backend);
      this.fail(new Failure('TETHER_ERR_NO_BACKEND', `no healthy backend in pool '${pool.name}'`));
      return;
    }
    this.ctx.active.add(this);
    this.ctx.counters.inc(C.active_requests);
    this.connectTo(pool.backends[index]!);
  }

  private connectTo(backend: BackendRuntime): void {
    const ctx = this.ctx;
    const cfg = ctx.runtime().config;
    if (this.backend !== backend) {
      if (this.backend) ctx.counters.incBackend(this.backend.slot, 'active', -1);
      ctx.counters.incBackend(backend.slot, 'active');
      this.backend = backend;
    }
    this.attempts++;
    const conn = acquire(backend, cfg.limits.maxResponseHeaderBytes);
    if (!conn.connected) ctx.counters.inc(C.upstream_connections_opened);
    this.conn = conn;
    conn.sink = this;
    conn.parser.expect(this.method);
    this.phase = Phase.Connecting;
    this.deadline = clock.now + cfg.timeouts.connectMs;
    if (conn.connected) this.onConnected(conn);
  }

  onConnected(conn: UpstreamConnection): void {
    if (conn !== this.conn) return;
    const cfg = this.ctx.runtime().config;
    conn.uses++;
    this.ctx.counters.markBackendSuccess(this.backend!.slot);
    const socket = conn.socket;
    let ok: boolean;
    if (this.body === Body.None) {
      // The common case: one write, no stream cork bookkeeping.
      ok = socket.write(this.head, 'latin1');
    } else {
      socket.cork();
      ok = socket.write(this.head, 'latin1');
      for (const chunk of this.queue) ok = this.writeBody(chunk) && ok;
      this.queue = [];
      this.queued = 0;
      if (this.bodyEnded && this.body === Body.Chunked) ok = socket.write(LAST_CHUNK, 'latin1') && ok;
      socket.uncork();
    }
    this.bodyStarted = true;
    this.sentAt = performance.now();
    this.phase = Phase.Waiting;
    this.deadline = clock.now + (this.bodyEnded ? cfg.timeouts.responseMs : cfg.timeouts.idleMs);
    if (this.clientPaused && ok) this.resumeClient();
  }

  private writeBody(chunk: Buffer): boolean {
    const socket = this.conn!.socket;
    if (this.body === Body.Chunked) {
      socket.write(chunkHeader(chunk.length), 'latin1');
      socket.write(chunk);
      return socket.write('\r\n', 'latin1');
    }
    return socket.write(chunk);
  }

  private onClientData(view: Uint8Array, isLast: boolean): void {
    clock.now = Date.now();
    // Answered already (an error, or the backend replied early): the rest of the body has
    // nowhere to go, and must not pile up here.
    if (this.phase === Phase.Done) return;
    // The view is only valid during this call: copy it.
    const chunk = view.byteLength > 0 ? Buffer.from(view) : null;
    if (isLast) this.bodyEnded = true;
    const cfg = this.ctx.runtime().config;
    if (this.bodyStarted) {
      // Upstream already finished or failed (an early response): the rest is not needed.
      if (!this.conn) return;
      const socket = this.conn.socket;
      let ok = true;
      if (chunk) ok = this.writeBody(chunk);
      if (isLast && this.body === Body.Chunked) ok = socket.write(LAST_CHUNK, 'latin1');
      if (!ok) this.pauseClient();
      if (this.phase === Phase.Waiting) this.deadline = clock.now + (isLast ? cfg.timeouts.responseMs : cfg.timeouts.idleMs);
      return;
    }
    if (chunk) {
      this.queue.push(chunk);
      this.queued += chunk.length;
      if (this.queued > MAX_QUEUED_BODY) this.pauseClient();
    }
  }

  private pauseClient(): void {
    if (!this.clientPaused && !this.resDone) {
      this.clientPaused = true;
      this.res.pause();
    }
  }

  private resumeClient(): void {
    if (this.clientPaused && !this.resDone) {
      this.clientPaused = false;
      this.res.resume();
    }
  }

  onUpstreamDrain(): void {
    if (this.phase === Phase.Waiting && !this.bodyEnded) this.deadline = clock.now + this.ctx.runtime().config.timeouts.idleMs;
    this.resumeClient();
  }

  cork(fn: () => void): void {
    if (this.resDone) fn();
    else this.res.cork(fn);
  }

  onInformational(): void {
    // 100 Continue and 103 Early Hints are not relayed: the front door already answered Expect itself.
  }

  onHead(status: number, reason: string, headers: string[], info: Parameters<ResponseHandlers['onHead']>[3]): void {
    if (this.resDone) return;
    const cfg = this.ctx.runtime().config;
    const res = this.res;
    this.phase = Phase.Streaming;
    this.deadline = clock.now + cfg.timeouts.idleMs;
    this.status = status;
    this.headSent = true;
    const headAt = (this.headAt = performance.now());
    this.countSticky(this.backend);
    const counters = this.ctx.counters;
    const slot = this.backend!.slot;
    counters.countBackendStatus(slot, status);
    if (this.sentAt !== 0) counters.observeUpstream(slot, headAt - this.sentAt);
    if (counters.markBackendResponse(slot, status, this.pool.eject5xx, clock.now, this.pool.backoffMs, this.pool.maxBackoffMs)) this.ejected5xx();
    const declaredLength = shapeResponseHead(this, res, status, reason, headers);
    if (info.framing === 'none') {
      this.out = Out.None;
      this.total = this.headOnly && declaredLength >= 0 ? declaredLength : -1;
    } else if (info.framing === 'length') {
      this.out = Out.Length;
      this.total = info.contentLength;
    } else {
      this.out = Out.Stream;
    }
  }

  onBody(chunk: Buffer): void {
    if (this.resDone) return;
    const cfg = this.ctx.runtime().config;
    this.deadline = clock.now + cfg.timeouts.idleMs;
    const res = this.res;
    // `chunk` is a view of the upstream read buffer: whatever is kept past this call is copied.
    if (this.out === Out.Length) {
      if (this.pending.length > 0) {
        this.pending.push(Buffer.from(chunk));
        return;
      }
      const [ok, done] = res.tryEnd(chunk, this.total);
      if (done) {
        this.sent = this.total;
        this.clientFinished();
      } else if (!ok) {
        this.pending.push(Buffer.from(chunk));
        // Every earlier chunk went out whole (else this one would have queued behind it), so
        // the body offset where this chunk starts is what we have sent: no getWriteOffset call.
        this.pendingOffset = this.sent;
        this.pauseUpstream();
        res.onWritable((off) => this.onWritable(off));
      } else {
        this.sent += chunk.length;
      }
    } else if (this.out === Out.Stream) {
      // Not written here, under cork: uWS 20.30's corked write() dropped a chunk's data when
      // flushing its cork buffer hit backpressure, so the bytes are written by flushStream once
      // the cork scope has ended. The front door has no such bug; #19 can write them here.
      // Still inside the same read callback when flushStream runs, so a view suffices.
      this.streamed.push(chunk);
      this.streamedBytes += chunk.length;
    }
  }

  /** Writes the chunked/close-delimited body parsed in the last corked scope. */
  flushStream(): void {
    if (this.streamed.length === 0 && !this.endAfterStream) return;
    if (this.resDone) {
      this.streamed = [];
      return;
    }
    const res = this.res;
    const chunks = this.streamed;
    this.streamed = [];
    let ok = true;
    const writeAll = () => {
      for (const chunk of chunks) {
        ok = res.write(chunk) && ok;
        this.bytesOut += chunk.length;
      }
      if (this.endAfterStream) res.end();
    };
    // A small batch goes out corked, in one write; a larger one chunk by chunk (a limit from
    // uWS's 16 KiB cork buffer, kept while the front door replaced it: one copy per write either way).
    if (this.streamedBytes + 16 * chunks.length + 64 < 12 * 1024) res.cork(writeAll);
    else writeAll();
    this.streamedBytes = 0;
    if (this.endAfterStream) {
      this.endAfterStream = false;
      this.clientFinished();
    } else if (!ok) {
      this.pauseUpstream();
      res.onWritable(() => {
        this.deadline = (clock.now = Date.now()) + this.ctx.runtime().config.timeouts.idleMs;
        this.resumeUpstream();
        return true;
      });
    }
  }

  /** The client side drained: resend what tryEnd did not take of each pending chunk (none, on the front door, which takes whole chunks). */
  private onWritable(offset: number): boolean {
    clock.now = Date.now();
    const res = this.res;
    while (this.pending.length > 0) {
      const chunk = this.pending[0]!;
      const [ok, done] = res.tryEnd(chunk.subarray(offset - this.pendingOffset), this.total);
      if (done) {
        this.pending = [];
        this.sent = this.total;
        this.clientFinished();
        return true;
      }
      this.deadline = clock.now + this.ctx.runtime().config.timeouts.idleMs;
      if (!ok) return false;
      this.pending.shift();
      offset = res.getWriteOffset();
      this.pendingOffset = offset;
      this.sent = offset;
    }
    this.resumeUpstream();
    return true;
  }

  private pauseUpstream(): void {
    if (!this.upstreamPaused && this.conn) {
      this.upstreamPaused = true;
      this.conn.socket.pause();
    }
  }

  private resumeUpstream(): void {
    if (this.upstreamPaused) {
      this.upstreamPaused = false;
      if (this.conn) this.conn.socket.resume();
    }
  }

  onEnd(): void {
    this.upstreamEnded = true;
    const conn = this.conn;
    // Reusable only if the backend also got our whole request.
    if (conn) {
      if (!this.bodyEnded) conn.reusable = false;
      this.conn = null;
      if (this.upstreamPaused) {
        this.upstreamPaused = false;
        conn.socket.resume();
      }
      release(conn, clock.now, this.ctx.runtime().config.limits.maxIdlePerBackend);
    }
    if (this.resDone) {
      this.complete();
      return;
    }
    const res = this.res;
    if (this.out === Out.None) {
      // HEAD's length as a header (uWS's endWithoutBody(n) wedged keep-alive; the front door's
      // takes no length at all).
      if (this.total >= 0) res.writeHeader('content-length', String(this.total));
      res.endWithoutBody();
      this.clientFinished();
    } else if (this.out === Out.Stream) {
      this.endAfterStream = true; // flushStream ends the response after the last bytes
    } else if (this.total === 0) {
      res.end();
      this.clientFinished();
    }
    // Out.Length with bytes still pending: onWritable finishes the client side.
  }

  onUpstreamFailure(conn: UpstreamConnection, error: Error, connected: boolean): void {
    if (conn !== this.conn) return;
    this.conn = null;
    const ctx = this.ctx;
    const backend = this.backend!;
    if (!connected) {
      ctx.counters.inc(C.upstream_connect_errors);
      ctx.counters.incBackend(backend.slot, 'connect_errors');
      ctx.counters.markBackendFailure(backend.slot, clock.now, this.pool.backoffMs, this.pool.maxBackoffMs);
      this.retryOrFail(backend, new Failure('TETHER_ERR_UPSTREAM_CONNECT', `backend ${backend.id} (${backend.host}:${backend.port}) refused or dropped the connection: ${error.message}`, true, { cause: error }));
      return;
    }
    // A reused keep-alive socket the backend had closed: safe to replay only if idempotent and
    // no response byte came back and the whole request is still ours to resend.
    const replayable = conn.uses > 1 && !conn.gotBytes && !this.headSent && IDEMPOTENT.has(this.method) && this.body === Body.None;
    const failure = new Failure('TETHER_ERR_UPSTREAM_PROTOCOL', `backend ${backend.id} failed mid-response: ${error.message}`, replayable, { cause: error });
    this.publishUpstreamFailure(backend, failure);
    if (replayable) {
      ctx.counters.inc(C.upstream_retries);
      this.connectTo(backend);
      return;
    }
    ctx.counters.inc(C.upstream_protocol_errors);
    this.fail(failure);
  }

  /** Connect failed: nothing reached the backend, so any method may go to another one. */
  private retryOrFail(failed: BackendRuntime, failure: Failure): void {
    this.publishUpstreamFailure(failed, failure);
    const pool = this.pool;
    const failedIndex = failed.index;
    if (this.attempts < MAX_ATTEMPTS && !this.resDone) {
      const next = pickAnother(pool, this.hashKey, failedIndex);
      if (next >= 0) {
        this.ctx.counters.inc(C.upstream_retries);
        this.connectTo(pool.backends[next]!);
        return;
      }
    }
    // This request did reach for backends and every attempt failed: that is a 502 naming the
    // failure. (503 is for a request that found no backend up to try at all.)
    this.fail(failure);
  }

  private publishUpstreamFailure(backend: BackendRuntime, failure: Failure): void {
    if (!channels.upstreamFailure.hasSubscribers) return;
    channels.upstreamFailure.publish({
      worker: this.ctx.workerIndex ?? 0,
      protocol: 'http',
      pool: this.pool.name,
      backend: backend.id,
      address: `${backend.host}:${backend.port}`,
      failure,
      attempt: this.attempts,
    });
  }

  /** Called by the worker's sweeper when `deadline` has passed. */
  onDeadline(): void {
    const backend = this.backend;
    const where = backend ? `backend ${backend.id}` : 'backend';
    switch (this.phase) {
      case Phase.Connecting: {
        this.ctx.counters.inc(C.upstream_connect_errors);
        this.conn?.destroy();
        this.conn = null;
        if (backend) {
          this.ctx.counters.markBackendFailure(backend.slot, clock.now, this.pool.backoffMs, this.pool.maxBackoffMs);
          this.retryOrFail(backend, new Failure('TETHER_ERR_UPSTREAM_CONNECT', `${where} did not accept the connection in time`, true));
        } else this.fail(new Failure('TETHER_ERR_UPSTREAM_TIMEOUT', 'timed out'));
        return;
      }
      case Phase.Waiting: {
        this.ctx.counters.inc(C.upstream_timeouts);
        const failure = new Failure('TETHER_ERR_UPSTREAM_TIMEOUT', `${where} did not answer in time`);
        if (backend) this.publishUpstreamFailure(backend, failure);
        this.fail(failure);
        return;
      }
      case Phase.Streaming:
        // Paused upstream means we were waiting for the client to read, not for the backend.
        if (this.upstreamPaused || this.upstreamEnded) {
          this.ctx.counters.inc(C.client_timeouts);
          this.fail(new Failure('TETHER_ERR_CLIENT_TIMEOUT', 'client stopped reading'));
        } else {
          this.ctx.counters.inc(C.upstream_timeouts);
          const failure = new Failure('TETHER_ERR_UPSTREAM_TIMEOUT', `${where} stalled mid-response`);
          if (backend) this.publishUpstreamFailure(backend, failure);
          this.fail(failure);
        }
        return;
      case Phase.Done:
        return;
    }
  }

  /** This response completed a run of 5xx: the backend sits out its backoff (all workers see it). */
  private ejected5xx(): void {
    const b = this.backend!;
    this.ctx.counters.inc(C.backend_ejections_5xx);
    this.ctx.log('warn', `backend ${this.pool.name}/${b.id} ejected after ${this.pool.eject5xx} consecutive 5xx responses`, { pool: this.pool.name, backend: b.id, address: `${b.host}:${b.port}`, event: 'backend_ejected' });
  }

  /** Sticky outcome, once per request: the token's backend served it (hit) or another did (failover). */
  private countSticky(served: BackendRuntime | null): void {
    const t = this.sticky.tokenBackend;
    if (t < 0 || this.stickyCounted) return;
    this.stickyCounted = true;
    if (served && served.index === t) {
      this.ctx.counters.inc(C.sticky_hits);
      this.ctx.counters.incBackend(served.slot, 'sticky_hits');
    } else this.ctx.counters.inc(C.sticky_failovers);
  }

  /** Ends the request with `failure`: its status and `tether: <message>` while no response byte went out, else a cut connection. */
  private fail(failure: Failure): void {
    this.failure = failure;
    this.countSticky(null);
    this.conn?.destroy();
    this.conn = null;
    if (!this.resDone) {
      if (this.headSent) {
        // Too late for an error page: cut the connection so the client sees a truncated response.
        this.resDone = true;
        this.res.close();
      } else {
        this.status = failure.status;
        this.resDone = true;
        respondError(this.ctx, this.res, failure.status, failure.message, false);
        this.complete();
        return;
      }
    }
    this.complete();
  }

  private clientFinished(): void {
    if (this.resDone) return;
    this.resDone = true;
    const c = this.ctx.counters;
    const s = this.status;
    c.inc(s < 200 ? C.responses_1xx : s < 300 ? C.responses_2xx : s < 400 ? C.responses_3xx : s < 500 ? C.responses_4xx : C.responses_5xx);
    if (this.upstreamEnded) this.complete();
  }

  private onClientAborted(): void {
    if (this.resDone) return;
    this.resDone = true;
    this.failure = new Failure('TETHER_ERR_CLIENT_ABORTED', 'the client went away before its response ended');
    this.ctx.counters.inc(C.client_aborts);
    this.conn?.destroy();
    this.conn = null;
    this.complete();
  }

  private complete(): void {
    if (this.phase === Phase.Done) return;
    this.phase = Phase.Done;
    if (this.ctx.active.delete(this)) this.ctx.counters.inc(C.active_requests, -1);
    if (this.backend) {
      this.ctx.counters.incBackend(this.backend.slot, 'requests');
      this.ctx.counters.incBackend(this.backend.slot, 'active', -1);
    }
    // An exchange begun before the log (or a subscriber) was there has nothing to report.
    if (this.startedAt === 0) return;
    if (this.ctx.accessLog) this.logAccess(this.ctx.accessLog);
    if (channels.requestEnd.hasSubscribers) this.publishEnd();
    if (channels.stickyDecision.hasSubscribers) {
      const t = this.sticky.tokenBackend;
      channels.stickyDecision.publish({ worker: this.ctx.workerIndex ?? 0, pool: this.pool.name, outcome: this.stickyOutcome(), sessionBackend: t >= 0 ? this.pool.backends[t]?.id ?? '' : '' });
    }
  }

  /**
   * --access-log or a diagnostics subscriber: remember who asked for what, and start the clock;
   * publishes the request's start.
   */
  observe(clientIp: string, target: string): void {
    this.clientIp = clientIp;
    this.path = target;
    this.startedAt = performance.now();
    if (channels.requestStart.hasSubscribers) {
      channels.requestStart.publish({ worker: this.ctx.workerIndex ?? 0, method: this.method, target, pool: this.pool.name, client: clientIp });
    }
  }

  private stickyOutcome(): 'hit' | 'failover' | 'miss' | 'invalid' | 'none' {
    const b = this.backend;
    const t = this.sticky.tokenBackend;
    return t >= 0 ? (b && b.index === t ? 'hit' : 'failover') : this.sticky.invalid ? 'invalid' : !this.pool.mode.sticks ? 'none' : 'miss';
  }

  private publishEnd(): void {
    channels.requestEnd.publish({
      worker: this.ctx.workerIndex ?? 0,
      method: this.method,
      target: this.path,
      pool: this.pool.name,
      client: this.clientIp,
      status: this.status,
      backend: this.backend?.id ?? '',
      failure: this.failure,
      durationMs: performance.now() - this.startedAt,
    });
  }

  private logAccess(log: AccessLog): void {
    const b = this.backend;
    const sticky = this.stickyOutcome();
    log.write({
      worker: this.ctx.workerIndex ?? 0,
      client: this.clientIp,
      method: this.method,
      path: this.path,
      status: this.status,
      bytes: this.out === Out.Length ? this.sent : this.bytesOut,
      upstream: b?.id ?? '',
      upstreamAddr: b ? `${b.host}:${b.port}` : '',
      upstreamMs: this.headAt > 0 && this.sentAt > 0 ? this.headAt - this.sentAt : -1,
      totalMs: performance.now() - this.startedAt,
      sticky,
    });
  }
}
