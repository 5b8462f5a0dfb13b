// One client connection of the HTTP front door: bytes in (any segmentation), request heads
// parsed and checked (./request-head.ts), bodies framed (Content-Length or chunked), requests
// handed to the request path one at a time and in order (pipelined requests wait their turn),
// responses framed for the client's HTTP version, keep-alive, and every wait under a deadline.
//
// Reads land in one buffer per worker (no allocation per read); what must outlive a read — a
// head split across reads, pipelined requests waiting their turn, body bytes while the request
// path asked for a pause — is copied into the connection's own `pending` buffer. Writes are
// copied too (the request path hands over views of buffers it reuses, and a write the kernel
// does not take at once keeps pointing at its bytes): one owned Buffer per flush.
import { clock } from '../clock.js';
import { statusLine } from '../status.js';
import { ChunkedDecoder } from './chunked.js';
import type { ClientRequest, ClientResponse } from './client.js';
import { RequestHeadParser } from './request-head.js';
import type { RefusalReason } from './refusals.js';
import type { ClientTransport, TlsFacts, TransportSink } from './transport.js';

export interface FrontDoorSettings {
  maxHeadBytes: number;
  maxHeaders: number;
  /** A request head must be complete this long after its first byte (or after accept, for the first). */
  headTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long. */
  keepAliveTimeoutMs: number;
}

/** What a listener decides for every request it takes. */
export interface ListenerTerms {
  /** The listener's index in config.listen (its counters). */
  readonly index: number;
  /** A plain listener with redirect=https: every request is answered 308 to HTTPS on this port. */
  readonly redirectHttpsPort: number | null;
}

export interface ConnectionOwner {
  readonly settings: FrontDoorSettings;
  /** The request path: called once per request, in order; `req` is valid only during the call. */
  onRequest(res: FrontExchange, req: FrontExchange): void;
  /** `status`: what the client was answered (0: closed without an answer). */
  onRefused(reason: RefusalReason, detail: string, status: number): void;
  /** Shutting down: responses say `Connection: close` and no new request starts. */
  readonly draining: boolean;
  forget(conn: ClientConnection): void;
}

const enum In {
  /** Waiting for (or reading) a request head. */
  Head,
  /** Reading the current request's body. */
  Body,
  /** The current request is read whole; its response is under way. Later bytes wait (pipelining). */
  Wait,
  Closed,
}

const enum BodyKind {
  None,
  Length,
  Chunked,
}

/** Queued response bytes past this are backpressure: the request path waits for onWritable. */
const HIGH_WATER = 64 * 1024;
/** After our FIN, how long (and how many bytes) we keep reading before closing: see closeAfterWrites. */
const LINGER_MS = 2_000;
const LINGER_MAX_BYTES = 256 * 1024;
/** How long an idle connection stays open once shutdown begins (see drain()). */
const DRAIN_GRACE_MS = 100;
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');

let dateSecond = 0;
let dateText = '';
/** The Date header's value, rebuilt once a second. */
function httpDate(): string {
  const now = clock.now;
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}


export class ClientConnection implements TransportSink {
  readonly remote: string;
  /** When the current wait (head, or idle keep-alive) runs out; 0 while a request is in flight. */
  deadline = 0;
  /** Position in the owner's list of connections (O(1) removal). */
  index = -1;
  private state = In.Head;
  /** The current request's head (what FrontExchange's request side reads). */
  readonly parser: RequestHeadParser;
  private pending: Buffer | null = null;
  private pendingLen = 0;
  private current: FrontExchange | null = null;
  private bodyKind = BodyKind.None;
  private bodyLeft = 0;
  private chunked: ChunkedDecoder | null = null;
  private bodyComplete = true;
  /** The request path asked for a pause (request-body backpressure). */
  private paused = false;
  private reading = true;
  private processing = false;
  /** The client half-closed: finish the response in flight, then close. */
  private peerEnded = false;
  /** Writes not yet taken by the kernel. */
  private queuedWrites = 0;
  private readonly onDone: (status: number) => void;

  constructor(
    private readonly transport: ClientTransport,
    private readonly owner: ConnectionOwner,
    readonly terms: ListenerTerms,
  ) {
    this.remote = transport.remoteAddress;
    const s = owner.settings;
    this.parser = new RequestHeadParser({ maxHeadBytes: s.maxHeadBytes, maxHeaders: s.maxHeaders });
    this.deadline = clock.now + s.headTimeoutMs;
    this.onDone = (status) => this.onWriteDone(status);
    transport.start(this);
  }

  /** Local address, for an HTTP/1.0 request without Host. */
  localHost(): string {
    return this.transport.localHost();
  }

  /** The TLS the connection arrived over; null on plain HTTP. */
  get tls(): TlsFacts | null {
    return this.transport.tls;
  }

  /** TransportSink: `bytes[0, n)` read (valid during this call only). */
  onBytes(bytes: Buffer, n: number): void {
    clock.now = Date.now();
    if (this.state === In.Closed) {
      this.lingered += n;
      if (this.lingered > LINGER_MAX_BYTES) this.release();
      return;
    }
    if (this.pendingLen > 0 || this.state === In.Wait || (this.paused && this.state === In.Body)) {
      this.append(bytes, 0, n);
      this.drainPending();
      return;
    }
    this.run(bytes, 0, n, false);
  }

  /** TransportSink: the read failed, or the transport went away. */
  onError(): void {
    this.destroy();
  }

  /** Processes buf[start, end); what is left is kept in `pending` (copied unless it already is there). */
  private run(buf: Buffer, start: number, end: number, fromPending: boolean): void {
    this.processing = true;
    let at: number;
    try {
      at = this.process(buf, start, end);
    } finally {
      this.processing = false;
    }
    if (this.state === In.Closed) {
      this.pendingLen = 0;
      return;
    }
    if (fromPending) {
      if (at > 0) {
        this.pending!.copyWithin(0, at, this.pendingLen);
        this.pendingLen -= at;
      }
    } else if (at < end) {
      this.append(buf, at, end);
    }
    this.limitPending();
  }

  private drainPending(): void {
    if (this.pendingLen === 0 || this.processing) return;
    this.run(this.pending!, 0, this.pendingLen, true);
  }

  /** Stop reading while pipelined bytes pile up behind a response in flight; read again when it ends. */
  private limitPending(): void {
    const cap = this.owner.settings.maxHeadBytes + 64 * 1024;
    const want = !this.paused && this.pendingLen <= cap;
    if (want !== this.reading && this.state !== In.Closed) {
      this.reading = want;
      if (want) this.transport.readStart();
      else this.transport.readStop();
    }
  }

  private append(buf: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (n <= 0) return;
    const need = this.pendingLen + n;
    if (this.pending === null || this.pending.length < need) {
      const grown = Buffer.allocUnsafe(Math.max(need, Math.min(2 * (this.pending?.length ?? 0), need + 64 * 1024), 4096));
      if (this.pending !== null) this.pending.copy(grown, 0, 0, this.pendingLen);
      this.pending = grown;
    }
    this.pending.set(buf.subarray(from, to), this.pendingLen);
    this.pendingLen = need;
  }

  /** Returns the offset up to which buf was consumed. */
  private process(buf: Buffer, start: number, end: number): number {
    while (start < end) {
      switch (this.state) {
        case In.Head: {
          if (!this.parser.started) this.deadline = clock.now + this.owner.settings.headTimeoutMs;
          const n = this.parser.parse(buf, start, end);
          if (n === 0) return start;
          if (n < 0) {
            const e = this.parser.error!;
            this.refuse(e.status, e.reason, e.detail);
            return end;
          }
          const bodyAt = start + n;
          if (!this.dispatch()) return end;
          start = bodyAt;
          continue;
        }
        case In.Body:
          if (this.paused) return start;
          start = this.readBody(buf, start, end);
          continue;
        default:
          // A response is in flight (In.Wait): the bytes after it are the next requests.
          return start;
      }
    }
    return start;
  }

  /**
   * The head is complete: frame the body, build the request, hand it on. False when refused
   * (the connection is closing).
   */
  private dispatch(): boolean {
    const p = this.parser;
    const names = p.names;
    const values = p.values;
    let te = '';
    let cl = '';
    let clCount = 0;
    let expect = false;
    let connClose = false;
    let connKeepAlive = false;
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      switch (name.length) {
        case 14:
          if (name === 'content-length') {
            cl = values[i]!;
            clCount++;
          }
          break;
        case 17:
          if (name === 'transfer-encoding') te = te ? `${te}, ${values[i]}` : values[i]!;
          break;
        case 10:
          if (name === 'connection') {
            for (const t of values[i]!.split(',')) {
              const token = t.trim().toLowerCase();
              if (token === 'close') connClose = true;
              else if (token === 'keep-alive') connKeepAlive = true;
            }
          }
          break;
        case 6:
          if (name === 'expect' && values[i]!.toLowerCase() === '100-continue') expect = true;
          break;
      }
    }
    // Framing (RFC 9112 §6.3). Anything two parsers could read differently is refused: the
    // request and everything after it on the connection.
    let kind = BodyKind.None;
    let length = 0;
    if (te) {
      if (clCount > 0) return this.refuse(400, 'te_and_content_length', 'both Transfer-Encoding and Content-Length');
      if (p.minor === 0) return this.refuse(400, 'bad_transfer_encoding', 'Transfer-Encoding in an HTTP/1.0 request');
      if (te.trim().toLowerCase() !== 'chunked') return this.refuse(400, 'bad_transfer_encoding', `unsupported Transfer-Encoding '${te.slice(0, 40)}' (only chunked)`);
      kind = BodyKind.Chunked;
    } else if (clCount > 0) {
      if (clCount > 1) return this.refuse(400, 'bad_content_length', 'more than one Content-Length');
      if (!/^\d{1,15}$/.test(cl)) return this.refuse(400, 'bad_content_length', `invalid Content-Length '${cl.slice(0, 40)}'`);
      length = Number(cl);
      kind = length > 0 ? BodyKind.Length : BodyKind.None;
    }
    // The target: origin-form, absolute-form (forwarded in origin form, its authority the
    // Host), '*' for OPTIONS; CONNECT (authority-form) is for forward proxies, not this one.
    const method = p.method;
    let target = p.target;
    let authority = '';
    if (method === 'CONNECT') return this.refuse(405, 'connect_method', 'CONNECT is not served: Tether is a reverse proxy');
    if (target.charCodeAt(0) !== 0x2f) {
      if (target === '*') {
        if (method !== 'OPTIONS') return this.refuse(400, 'bad_target', `'*' is a target for OPTIONS only, not ${method}`);
      } else {
        const m = /^https?:\/\/([^/?#]*)/i.exec(target);
        if (m === null || m[1] === '') return this.refuse(400, 'bad_target', `request target '${target.slice(0, 60)}' is neither a path nor an http(s) URL`);
        authority = m[1]!;
        if (authority.includes('@')) return this.refuse(400, 'bad_target', 'userinfo in the request target');
        target = target.slice(m[0].length);
        if (target.charCodeAt(0) !== 0x2f) target = `/${target}`; // '' or '?q=1': the path is '/'
      }
    }
    if (authority) {
      // RFC 9112 §3.2.2: the target's authority replaces any Host the request carried.
      for (let i = names.length - 1; i >= 0; i--) {
        if (names[i] === 'host') {
          names.splice(i, 1);
          values.splice(i, 1);
        }
      }
      names.push('host');
      values.push(authority);
    } else if (p.minor === 0 && !names.includes('host')) {
      // HTTP/1.0 may omit Host; the backend (spoken to in HTTP/1.1) needs one: the address the
      // client connected to.
      names.push('host');
      values.push(this.localHost());
    }

    this.deadline = 0;
    this.bodyKind = kind;
    this.bodyLeft = length;
    this.bodyComplete = kind === BodyKind.None;
    if (kind === BodyKind.Chunked) {
      this.chunked ??= new ChunkedDecoder({ maxLineBytes: 4096, maxTrailerBytes: this.owner.settings.maxHeadBytes });
      this.chunked.reset();
    }
    const keepAlive = p.minor === 1 ? !connClose : connKeepAlive && !connClose;
    const q = target.indexOf('?');
    const ex = new FrontExchange(this, method, q < 0 ? target : target.slice(0, q), q < 0 ? '' : target.slice(q + 1), p.minor, keepAlive, expect && p.minor === 1 && kind !== BodyKind.None);
    this.current = ex;
    this.state = kind === BodyKind.None ? In.Wait : In.Body;
    this.owner.onRequest(ex, ex);
    return !this.closed;
  }

  private get closed(): boolean {
    return this.state === In.Closed;
  }

  /** Body bytes of the current request in buf[start, end); returns where they ended. */
  private readBody(buf: Buffer, start: number, end: number): number {
    const ex = this.current;
    if (this.bodyKind === BodyKind.Length) {
      const take = Math.min(this.bodyLeft, end - start);
      this.bodyLeft -= take;
      const last = this.bodyLeft === 0;
      if (last) this.bodyDone();
      ex?.deliver(buf.subarray(start, start + take), last);
      return start + take;
    }
    const decoder = this.chunked!;
    const n = decoder.decode(buf, start, end, (b, from, to) => ex?.deliver((b as Buffer).subarray(from, to), false));
    if (n < 0) {
      this.owner.onRefused('bad_chunk', decoder.error, 400);
      ex?.abort();
      this.answerAndClose(400, `tether: malformed chunked request body: ${decoder.error}\n`);
      return end;
    }
    if (decoder.done) {
      this.bodyDone();
      ex?.deliver(buf.subarray(0, 0), true);
    }
    return start + n;
  }

  private bodyDone(): void {
    this.bodyComplete = true;
    if (this.state === In.Body) this.state = In.Wait;
  }

  /** A request refused before the request path saw it: counted, answered (or not, for 0), closed. Returns false. */
  private refuse(status: number, reason: RefusalReason, detail: string): false {
    this.owner.onRefused(reason, detail, status);
    if (status === 0) this.closeNow();
    else this.answerAndClose(status, `tether: ${detail}\n`);
    return false;
  }

  /** A response Tether composes, then the end of the connection (no request on it is trusted after this). */
  private answerAndClose(status: number, body: string): void {
    if (this.state === In.Closed) return;
    if (this.current !== null && this.current.headSent) {
      this.closeNow();
      return;
    }
    // A request the request path still holds (a malformed body mid-way) is over for it.
    const ex = this.current;
    this.current = null;
    ex?.abort();
    const bytes = Buffer.from(body, 'utf8');
    this.send([`HTTP/1.1 ${statusLine(status)}\r\ndate: ${httpDate()}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${bytes.length}\r\nconnection: close\r\n\r\n`, bytes]);
    this.closeAfterWrites();
  }

  /** The request's response is complete: next request (keep-alive) or the end of the connection. */
  finished(ex: FrontExchange, close: boolean): void {
    if (this.current !== ex) return;
    this.current = null;
    if (close || this.state === In.Body || this.peerEnded || this.state === In.Closed) {
      this.closeAfterWrites();
      return;
    }
    this.state = In.Head;
    this.parser.reset();
    this.deadline = clock.now + this.owner.settings.keepAliveTimeoutMs;
    if (this.owner.draining) {
      this.closeAfterWrites();
      return;
    }
    if (this.pendingLen > 0) {
      // Pipelined requests: the next one starts after this call unwinds (the request path is
      // still inside its own callbacks here).
      setImmediate(() => {
        clock.now = Date.now();
        if (this.state === In.Head && this.current === null) this.drainPending();
      });
    }
    this.limitPending();
  }

  /**
   * Shutdown begins. An idle connection closes (after DRAIN_GRACE_MS); one with a request in
   * flight (or with part of a head already in, which started before the signal) closes after
   * that response, which says `Connection: close`. No new request starts: whatever follows is
   * left unread, and the client retries it elsewhere (RFC 9112 §9.3.1: a connection closed
   * before any response).
   */
  drain(): void {
    // A request the client sent just before the signal may still be in the kernel's buffer:
    // an idle connection gets a moment to show one (then served, with Connection: close).
    if (this.current === null && !this.parser.started && this.pendingLen === 0) this.deadline = Math.min(this.deadline || Infinity, clock.now + DRAIN_GRACE_MS);
  }

  /** The sweeper: a head that took too long (408), an idle keep-alive connection past its time. */
  expire(now: number): void {
    if (this.deadline === 0 || this.deadline > now) return;
    if (this.state === In.Closed) {
      // Closing, but the client does not read what is still queued: give up on it.
      this.release();
      return;
    }
    if (this.current !== null) return;
    if (this.parser.started || this.pendingLen > 0) {
      this.owner.onRefused('head_timeout', 'request head not complete in time', 408);
      this.answerAndClose(408, `tether: request head not received within ${this.owner.settings.headTimeoutMs} ms\n`);
    } else {
      this.closeNow();
    }
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.limitPending();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.limitPending();
    if (this.pendingLen > 0) {
      setImmediate(() => {
        clock.now = Date.now();
        this.drainPending();
      });
    }
  }

  /** Writes `data` (copied when it is a view: see the file's header). False when backpressured. */
  send(data: string | Uint8Array | (string | Uint8Array)[]): boolean {
    if (this.state === In.Closed) return false;
    let buf: Buffer;
    if (typeof data === 'string') buf = Buffer.from(data, 'latin1');
    else if (!Array.isArray(data)) buf = Buffer.from(data);
    else {
      let total = 0;
      for (const d of data) total += d.length;
      if (total === 0) return this.transport.queuedBytes < HIGH_WATER;
      buf = Buffer.allocUnsafe(total);
      let at = 0;
      for (const d of data) {
        if (typeof d === 'string') at += buf.write(d, at, 'latin1');
        else {
          buf.set(d, at);
          at += d.length;
        }
      }
    }
    const r = this.transport.write(buf, this.onDone);
    if (r < 0) {
      this.destroy();
      return false;
    }
    if (r === 1) this.queuedWrites++;
    return this.transport.queuedBytes < HIGH_WATER;
  }

  private onWriteDone(status: number): void {
    this.queuedWrites--;
    if (status < 0) {
      this.destroy();
      return;
    }
    clock.now = Date.now();
    if (this.queuedWrites === 0) {
      if (this.closeWhenWritten) {
        this.closeWhenWritten = false;
        this.finishClose();
        return;
      }
      this.current?.writable();
    }
  }

  private closeWhenWritten = false;

  /** FIN once every queued byte is out, then close. */
  closeAfterWrites(): void {
    if (this.state === In.Closed) return;
    this.state = In.Closed;
    // Keep reading (and dropping) what the client still sends: closing a socket with unread
    // bytes makes the kernel answer with RST, which can destroy our last response (a 400, a
    // 431) in the client's receive buffer before it is read. This is nginx's lingering close.
    if (!this.reading) {
      this.reading = true;
      this.transport.readStart();
    }
    // A client that never reads the last bytes must not hold the connection forever.
    this.deadline = clock.now + this.owner.settings.headTimeoutMs;
    if (this.queuedWrites > 0) this.closeWhenWritten = true;
    else this.finishClose();
  }

  private finishClose(): void {
    // FIN after anything still queued; then the client's FIN (or the linger deadline) closes.
    const err = this.transport.shutdown((status) => {
      if (status < 0 || this.peerEnded) this.release();
      else this.deadline = clock.now + LINGER_MS;
    });
    if (err !== 0) this.release();
  }

  /** Ends the connection now (a response cut short, a refused preface). */
  closeNow(): void {
    if (this.state === In.Closed && this.released) return;
    this.state = In.Closed;
    this.release();
  }

  private released = false;
  /** Bytes read and dropped while closing (see closeAfterWrites). */
  private lingered = 0;

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.state = In.Closed;
    const ex = this.current;
    this.current = null;
    ex?.abort();
    this.transport.close();
    this.owner.forget(this);
  }

  /** A read or write failed: the client is gone. */
  destroy(): void {
    this.closeNow();
  }

  /** TransportSink: the client sent FIN. */
  onEnd(): void {
    if (this.state === In.Closed) {
      // Lingering (or still flushing): the client is done sending.
      this.peerEnded = true;
      if (!this.closeWhenWritten && this.queuedWrites === 0) this.release();
      return;
    }
    if (this.state === In.Wait && this.current !== null) {
      // Half-closed after sending its request: answer it, then close.
      this.peerEnded = true;
      this.transport.readStop();
      return;
    }
    this.closeNow();
  }

  /** The current request's body has been read whole (so the next request's bytes can be found). */
  get complete(): boolean {
    return this.bodyComplete;
  }

  get draining(): boolean {
    return this.owner.draining;
  }

  /** Below the high-water mark of queued response bytes. */
  get writable(): boolean {
    return this.state !== In.Closed && this.transport.queuedBytes < HIGH_WATER;
  }
}

/**
 * One request and its response: what the request path calls `req` (valid during its handler
 * only, as uWS's HttpRequest was) and `res` (until the response ends or onAborted fires).
 */
export class FrontExchange implements ClientRequest, ClientResponse {
  headSent = false;
  private status = '200 OK';
  private headers = '';
  private hasLength = false;
  private done = false;
  private offset = 0;
  private corked: (string | Uint8Array)[] | null = null;
  private chunkedOut = false;
  private closeDelimited = false;
  private abortedCb: (() => void) | null = null;
  private dataCb: ((chunk: Uint8Array, isLast: boolean) => void) | null = null;
  private writableCb: ((offset: number) => boolean) | null = null;
  private closeAfter = false;

  constructor(
    private readonly conn: ClientConnection,
    private readonly method: string,
    private readonly path: string,
    private readonly query: string,
    private readonly minor: number,
    private readonly keepAlive: boolean,
    private expectContinue: boolean,
  ) {}

  // --- ClientRequest ---------------------------------------------------------------------
  getCaseSensitiveMethod(): string {
    return this.method;
  }
  getMethod(): string {
    return this.method.toLowerCase();
  }
  getUrl(): string {
    return this.path;
  }
  getQuery(): string {
    return this.query;
  }
  getHeader(name: string): string {
    const p = this.conn.parser;
    const i = p.names.indexOf(name);
    return i < 0 ? '' : p.values[i]!;
  }
  forEach(cb: (name: string, value: string) => void): void {
    const p = this.conn.parser;
    const names = p.names;
    const values = p.values;
    for (let i = 0; i < names.length; i++) cb(names[i]!, values[i]!);
  }

  getTls(): TlsFacts | null {
    return this.conn.tls;
  }

  /** The listener answers every request with a 308 to HTTPS on this port (null: it serves them). */
  get redirectHttpsPort(): number | null {
    return this.conn.terms.redirectHttpsPort;
  }

  // --- ClientResponse --------------------------------------------------------------------
  getRemoteAddress(): string {
    return this.conn.remote;
  }

  cork(fn: () => void): this {
    if (this.corked !== null || this.done) {
      fn();
      return this;
    }
    this.corked = [];
    try {
      fn();
    } finally {
      const parts = this.corked;
      this.corked = null;
      if (parts.length > 0) this.flush(parts);
    }
    return this;
  }

  writeStatus(status: string): this {
    this.status = status;
    return this;
  }

  writeHeader(name: string, value: string | Uint8Array): this {
    const v = typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1');
    if (name.length === 14 && name.toLowerCase() === 'content-length') this.hasLength = true;
    this.headers += `${name}: ${v}\r\n`;
    return this;
  }

  write(chunk: Uint8Array | string): boolean {
    if (this.done) return false;
    const data = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
    if (!this.headSent) this.emitHead(this.minor === 1 ? 'chunked' : 'close', 0);
    if (data.length === 0) return this.out([]);
    this.offset += data.length;
    if (this.chunkedOut) return this.out([`${data.length.toString(16)}\r\n`, data, '\r\n']);
    return this.out([data]);
  }

  tryEnd(chunk: Uint8Array, totalSize: number): [boolean, boolean] {
    if (this.done) return [true, true];
    if (!this.headSent) this.emitHead('length', totalSize);
    const isHead = this.method === 'HEAD';
    const take = Math.min(chunk.length, totalSize - this.offset);
    this.offset += take;
    let ok = true;
    if (take > 0 && !isHead) ok = this.out([take === chunk.length ? chunk : chunk.subarray(0, take)]);
    const complete = this.offset >= totalSize;
    if (complete) this.finish(false);
    return [ok || complete, complete];
  }

  getWriteOffset(): number {
    return this.offset;
  }

  onWritable(cb: (offset: number) => boolean): this {
    this.writableCb = cb;
    return this;
  }

  /** The connection's queued writes went out. */
  writable(): void {
    const cb = this.writableCb;
    if (cb === null || this.done) return;
    if (cb(this.offset)) this.writableCb = null;
  }

  end(body?: string | Uint8Array, closeConnection = false): this {
    if (this.done) return this;
    if (closeConnection) this.closeAfter = true;
    const data = body === undefined ? null : typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    if (!this.headSent) {
      this.emitHead('length', data?.length ?? 0);
      if (data !== null && data.length > 0 && this.method !== 'HEAD') this.out([data]);
    } else if (this.chunkedOut) {
      this.out(data !== null && data.length > 0 ? [`${data.length.toString(16)}\r\n`, data, '\r\n0\r\n\r\n'] : ['0\r\n\r\n']);
    } else if (data !== null && data.length > 0) {
      this.out([data]);
    }
    this.finish(this.closeAfter || this.closeDelimited);
    return this;
  }

  endWithoutBody(): this {
    if (this.done) return this;
    if (!this.headSent) this.emitHead('none', 0);
    this.finish(this.closeAfter);
    return this;
  }

  close(): this {
    if (this.done) return this;
    this.done = true;
    this.conn.closeNow();
    return this;
  }

  onAborted(cb: () => void): this {
    this.abortedCb = cb;
    return this;
  }

  onData(cb: (chunk: Uint8Array, isLast: boolean) => void): this {
    this.dataCb = cb;
    if (this.expectContinue) {
      // The client waits for this before sending its body (uWS sent it on its own too).
      this.expectContinue = false;
      this.conn.send(CONTINUE);
    }
    return this;
  }

  pause(): void {
    this.conn.pause();
  }

  resume(): void {
    this.conn.resume();
  }

  // --- the connection's side --------------------------------------------------------------
  deliver(chunk: Uint8Array, isLast: boolean): void {
    if (this.done || this.dataCb === null) return;
    this.dataCb(chunk, isLast);
  }

  abort(): void {
    if (this.done) return;
    this.done = true;
    const cb = this.abortedCb;
    this.abortedCb = null;
    cb?.();
  }

  private emitHead(framing: 'length' | 'chunked' | 'close' | 'none', length: number): void {
    this.headSent = true;
    const conn = this.conn;
    let close = this.closeAfter || !this.keepAlive || !conn.complete || conn.draining;
    let head = `HTTP/1.1 ${this.status}\r\n${this.headers}date: ${httpDate()}\r\n`;
    if (framing === 'length') {
      if (!this.hasLength) head += `content-length: ${length}\r\n`;
    } else if (framing === 'chunked') {
      this.chunkedOut = true;
      head += 'transfer-encoding: chunked\r\n';
    } else if (framing === 'close') {
      // HTTP/1.0 client and a body of unknown length: the end of the connection ends it.
      this.closeDelimited = true;
      close = true;
    }
    if (close) {
      this.closeAfter = true;
      head += 'connection: close\r\n\r\n';
    } else head += this.minor === 0 ? 'connection: keep-alive\r\n\r\n' : '\r\n';
    this.out([head]);
  }

  private out(parts: (string | Uint8Array)[]): boolean {
    if (this.corked !== null) {
      for (const p of parts) this.corked.push(p);
      // Taken into the cork; the caller backs off while the socket is already behind.
      return this.conn.writable;
    }
    if (parts.length === 0) return this.conn.send([]);
    return this.conn.send(parts.length === 1 ? parts[0]! : parts);
  }

  private flush(parts: (string | Uint8Array)[]): void {
    this.conn.send(parts.length === 1 ? parts[0]! : parts);
  }

  private finish(close: boolean): void {
    if (this.done) return;
    this.done = true;
    if (this.corked !== null && this.corked.length > 0) {
      const parts = this.corked;
      this.corked = [];
      this.flush(parts);
    }
    this.conn.finished(this, close || this.closeAfter);
  }
}
