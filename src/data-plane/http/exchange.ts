// Phase 6, exchange with the upstream: one request's life from its backend's connection to the
// last response byte — the request streamed to a pooled upstream connection, the response back,
// backpressure both ways, retries where nothing reached the backend, and a deadline on every
// wait (the worker sweeps them). The response head itself is shaped by ./response-head.ts.
import { C } from '../../shared-memory/counters.js';
import type { Socket } from 'node:net';
import { clock } from '../clock.js';
import type { ClientResponse, TlsFacts } from '../front-door/client.js';
import type { BackendRuntime, PoolRuntime } from '../runtime.js';
import type { ResponseHandlers } from '../upstream/codec.js';
import { acquire, release, type UpstreamConnection, type UpstreamSink } from '../upstream/pool.js';
import { Body, type ListenerContext, type SessionContext, type StickyDecision } from './context.js';
import { pickAnother, pickBackend } from './pick-backend.js';
import { shapeResponseHead, type Shaping } from './response-head.js';
import { respondError } from './respond.js';
import { RequestBody, type BodyOwner } from './request-body.js';
import { reportEnd, reportStart, reportUpstreamFailure, type ExchangeRecord } from './exchange-report.js';
import { Failure } from '../failure.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
const MAX_ATTEMPTS = 3;

const enum Phase { Connecting, Waiting, Streaming, Done }

/** A certificate that did not verify, or a TLS protocol failure (not a refused or reset TCP connection). */
function isTlsError(err: Error & { code?: string }): boolean {
  const code = err.code ?? '';
  return code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || /CERT|UNABLE_TO|SELF_SIGNED/.test(code);
}
const enum Out { None, Length, Stream }

/** One request's life from backend choice to the last response byte. */
export class Exchange implements UpstreamSink, Shaping, ExchangeRecord, BodyOwner {
  head = '';
  hashKey = '';
  /** The TLS the request came over (null: plain HTTP). */
  tls: TlsFacts | null = null;
  /** Over HTTPS (Shaping). */
  get secure(): boolean {
    return this.tls !== null;
  }
  deadline = 0;
  /** Position in ActiveExchanges, -1 when not in flight. */
  activeIndex = -1;
  phase = Phase.Connecting;
  private backend: BackendRuntime | null = null;
  /** The backend answering (Shaping: read only once its response head is in). */
  get served(): BackendRuntime {
    return this.backend!;
  }
  /** The backend chosen last, if any (ExchangeRecord). */
  get chosen(): BackendRuntime | null {
    return this.backend;
  }
  private conn: UpstreamConnection | null = null;
  attempts = 0;
  /** Client gone (onAborted) or response finished: `res` must not be touched. */
  private resDone = false;
  private headSent = false;
  private stickyCounted = false;
  status = 0;
  /** The request body's way upstream; null for a request without one (most). */
  private readonly requestBody: RequestBody | null;
  // Response body.
  private out = Out.None;
  /** The response's Content-Length (Out.Length), or a HEAD response's declared length (-1: none). */
  private total = 0;
  private upstreamPaused = false;
  private upstreamEnded = false;
  private headOnly: boolean;
  // Access log and diagnostics (./exchange-report.ts; set only with --access-log or a subscriber).
  clientIp = '';
  path = '';
  /** Request in (0 unless observed); request sent and response head (the latency histogram). */
  startedAt = 0;
  sentAt = 0;
  headAt = 0;
  /** Response body bytes the client side has taken. */
  bytesOut = 0;
  /** What ended the request, if a failure did. */
  failure: Failure | null = null;

  constructor(
    readonly ctx: ListenerContext,
    private readonly res: ClientResponse,
    readonly pool: PoolRuntime,
    readonly method: string,
    body: Body,
    readonly sticky: StickyDecision,
    readonly session: SessionContext,
  ) {
    this.headOnly = method === 'HEAD';
    res.onAborted(() => this.onClientAborted());
    this.requestBody = body === Body.None ? null : new RequestBody(this, res, body === Body.Chunked);
  }

  // BodyOwner, for ./request-body.ts.
  get finished(): boolean {
    return this.phase === Phase.Done;
  }
  get clientGone(): boolean {
    return this.resDone;
  }
  get upstreamSocket(): Socket | null {
    return this.conn?.socket ?? null;
  }
  bodyProgress(last: boolean): void {
    const t = this.ctx.runtime().config.timeouts;
    if (this.phase === Phase.Waiting) this.deadline = clock.now + (last ? t.responseMs : t.idleMs);
  }
  /** The whole request has gone (or is going) upstream. */
  private get requestEnded(): boolean {
    return this.requestBody === null || this.requestBody.ended;
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
    // The common case, no body: one write.
    const body = this.requestBody;
    const ok = body === null ? conn.socket.write(this.head, 'latin1') : body.sendWithHead(conn.socket, this.head);
    this.sentAt = performance.now();
    this.phase = Phase.Waiting;
    this.deadline = clock.now + (this.requestEnded ? cfg.timeouts.responseMs : cfg.timeouts.idleMs);
    if (ok) body?.resumeClient();
  }

  onUpstreamDrain(): void {
    if (this.phase === Phase.Waiting && !this.requestEnded) this.deadline = clock.now + this.ctx.runtime().config.timeouts.idleMs;
    this.requestBody?.resumeClient();
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

  /** A response body chunk (a view of the upstream read buffer: the front door copies what it keeps). */
  onBody(chunk: Buffer): void {
    if (this.resDone) return;
    this.deadline = clock.now + this.ctx.runtime().config.timeouts.idleMs;
    const res = this.res;
    this.bytesOut += chunk.length;
    if (this.out === Out.Length) {
      const [ok, done] = res.tryEnd(chunk, this.total);
      if (done) this.clientFinished();
      else if (!ok) this.waitForClient();
    } else if (this.out === Out.Stream) {
      if (!res.write(chunk)) this.waitForClient();
    }
  }

  /** The client is behind: stop reading the backend until it has taken what is queued. */
  private waitForClient(): void {
    if (this.upstreamPaused || !this.conn) return;
    this.upstreamPaused = true;
    this.conn.socket.pause();
    this.res.onWritable(this.onClientWritable);
  }

  /** Bound once: the client drained its queue, read the backend again. */
  private readonly onClientWritable = (): boolean => {
    this.deadline = (clock.now = Date.now()) + this.ctx.runtime().config.timeouts.idleMs;
    this.resumeUpstream();
    return true;
  };

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
      if (!this.requestEnded) conn.reusable = false;
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
      // A HEAD response repeats the length the backend declared.
      if (this.total >= 0) res.writeHeader('content-length', String(this.total));
      res.endWithoutBody();
      this.clientFinished();
    } else if (this.out === Out.Stream || this.total === 0) {
      res.end();
      this.clientFinished();
    }
    // Out.Length: the body's last byte finished the client side (tryEnd's done).
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
      const what = backend.tls !== null && isTlsError(error) ? 'failed the TLS handshake' : 'refused or dropped the connection';
      this.retryOrFail(backend, new Failure('TETHER_ERR_UPSTREAM_CONNECT', `backend ${backend.id} (${backend.host}:${backend.port}) ${what}: ${error.message}`, true, { cause: error }));
      return;
    }
    // A reused keep-alive socket the backend had closed: safe to replay only if idempotent and
    // no response byte came back and the whole request is still ours to resend.
    const replayable = conn.uses > 1 && !conn.gotBytes && !this.headSent && IDEMPOTENT.has(this.method) && this.requestBody === null;
    const failure = new Failure('TETHER_ERR_UPSTREAM_PROTOCOL', `backend ${backend.id} failed mid-response: ${error.message}`, replayable, { cause: error });
    reportUpstreamFailure(this, backend, failure);
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
    reportUpstreamFailure(this, failed, failure);
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
        if (backend) reportUpstreamFailure(this, backend, failure);
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
          if (backend) reportUpstreamFailure(this, backend, failure);
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
      this.resDone = true;
      // Once a response byte went out it is too late for an error page: cut the connection so
      // the client sees the response truncated.
      if (this.headSent) this.res.close();
      else {
        this.status = failure.status;
        respondError(this.ctx, this.res, failure.status, failure.message, false);
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
    if (this.startedAt !== 0) reportEnd(this);
  }

  /** --access-log or a diagnostics subscriber: remember who asked for what, start the clock, report the start. */
  observe(clientIp: string, target: string): void {
    this.clientIp = clientIp;
    this.path = target;
    this.startedAt = performance.now();
    reportStart(this);
  }
}
