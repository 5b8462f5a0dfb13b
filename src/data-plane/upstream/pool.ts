// Per-worker keep-alive connections to backends. A connection is wired to its socket once and
// dispatches to whichever exchange holds it, so reuse costs no listener churn. Idle
// connections sit on their backend's LIFO stack; the worker's sweeper closes stale ones.
import net from 'node:net';
import tls from 'node:tls';
import { ResponseParser, UpstreamParseError, type ResponseHandlers } from './codec.js';
import type { BackendRuntime } from '../runtime.js';
import { clock } from '../clock.js';

/** What an in-flight exchange must handle from its upstream connection. */
export interface UpstreamSink extends ResponseHandlers {
  /** Run `fn` with the client response corked (several writes, one syscall). */
  cork(fn: () => void): void;
  onConnected(conn: UpstreamConnection): void;
  /** The connection failed. `connected` says whether it was ever established. */
  onUpstreamFailure(conn: UpstreamConnection, error: Error, connected: boolean): void;
  onUpstreamDrain(): void;
}

/**
 * Every upstream socket of this thread reads into this one buffer (Node's `onread`): no
 * allocation and no stream machinery per read. Safe because each read is parsed and handed on
 * synchronously; whoever keeps body bytes past the callback must copy them.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export class UpstreamConnection implements ResponseHandlers {
  readonly socket: net.Socket;
  readonly parser: ResponseParser;
  sink: UpstreamSink | null = null;
  connected = false;
  /** Requests this connection has carried; > 0 means a reused (possibly stale) socket. */
  uses = 0;
  idleSince = 0;
  /** Some response byte arrived for the current exchange. */
  gotBytes = false;
  /** The last response allowed reuse (keep-alive, complete framing). */
  reusable = false;
  private failure: Error | null = null;

  constructor(readonly backend: BackendRuntime, maxHeaderBytes: number) {
    this.parser = new ResponseParser(this, { maxHeaderBytes });
    const t = backend.tls;
    if (t === null) {
      this.socket = net.connect({
        host: backend.host,
        port: backend.port,
        noDelay: true,
        onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => this.onData(Buffer.from(buf.buffer, buf.byteOffset, n)) },
      });
    } else {
      // Re-encrypted: OpenSSL in C++ under node:tls; the plaintext arrives as 'data' (no onread for TLS).
      this.socket = tls.connect({
        host: backend.host,
        port: backend.port,
        servername: net.isIP(t.servername) === 0 ? t.servername : undefined,
        ca: t.ca,
        rejectUnauthorized: t.rejectUnauthorized,
        ALPNProtocols: ['http/1.1'],
        noDelay: true,
      } as tls.ConnectionOptions);
      this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    }
    this.socket.on(t === null ? 'connect' : 'secureConnect', () => {
      clock.now = Date.now();
      this.connected = true;
      this.sink?.onConnected(this);
    });
    this.socket.on('drain', () => {
      clock.now = Date.now();
      this.sink?.onUpstreamDrain();
    });
    this.socket.on('error', (err) => {
      this.failure ??= err;
    });
    this.socket.on('close', () => this.onClose());
  }

  /** `chunk` is a view of READ_BUFFER: valid only until this returns. */
  private onData(chunk: Buffer): boolean {
    const sink = this.sink;
    if (!sink) {
      // Bytes on an idle connection: the backend is confused; never reuse it.
      this.destroy();
      return false;
    }
    this.gotBytes = true;
    clock.now = Date.now();
    this.chunk = chunk;
    sink.cork(this.parseChunk);
    this.chunk = null;
    return true;
  }

  /** The chunk being read, for parseChunk. */
  private chunk: Buffer | null = null;
  /** Parses `chunk` (run corked); bound once rather than a closure per read. */
  private readonly parseChunk = (): void => {
    try {
      this.parser.execute(this.chunk!);
    } catch (err) {
      if (!(err instanceof UpstreamParseError)) throw err;
      this.fail(err);
    }
  };

  private onClose(): void {
    clock.now = Date.now();
    const sink = this.sink;
    if (!sink) {
      removeIdle(this);
      return;
    }
    if (this.connected && this.parser.busy) {
      // EOF completes a close-delimited body; anything else is a premature end.
      try {
        sink.cork(() => this.parser.finish());
        if (!this.parser.busy) return;
      } catch (err) {
        if (!(err instanceof UpstreamParseError)) throw err;
        this.failure = err;
      }
    }
    if (this.sink) this.fail(this.failure ?? new Error('backend closed the connection'));
  }

  private fail(err: Error): void {
    const sink = this.sink;
    this.sink = null;
    this.reusable = false;
    this.socket.destroy();
    sink?.onUpstreamFailure(this, err, this.connected);
  }

  // ResponseHandlers: forwarded to the current exchange.
  onHead(status: number, reason: string, headers: string[], info: Parameters<ResponseHandlers['onHead']>[3]): void {
    this.reusable = info.keepAlive;
    this.sink?.onHead(status, reason, headers, info);
  }
  onInformational(status: number, headers: string[]): void {
    this.sink?.onInformational(status, headers);
  }
  onBody(chunk: Buffer): void {
    this.sink?.onBody(chunk);
  }
  onEnd(): void {
    this.sink?.onEnd();
  }

  destroy(): void {
    this.sink = null;
    this.reusable = false;
    this.socket.destroy();
  }
}

function removeIdle(conn: UpstreamConnection): void {
  const idle = conn.backend.idle;
  const i = idle.indexOf(conn);
  if (i >= 0) idle.splice(i, 1);
}

/** An idle connection to `backend` if one is alive, else a new one (connecting). */
export function acquire(backend: BackendRuntime, maxHeaderBytes: number): UpstreamConnection {
  const idle = backend.idle;
  while (idle.length > 0) {
    const conn = idle.pop()!;
    if (!conn.socket.destroyed && conn.socket.readyState === 'open') return conn;
    conn.destroy();
  }
  return new UpstreamConnection(backend, maxHeaderBytes);
}

/** Back to the idle stack if the last exchange left it clean, else closed. */
export function release(conn: UpstreamConnection, now: number, maxIdle: number): void {
  conn.sink = null;
  conn.gotBytes = false;
  if (!conn.reusable || conn.parser.busy || conn.socket.destroyed || conn.backend.retired || conn.backend.idle.length >= maxIdle) {
    conn.destroy();
    return;
  }
  conn.idleSince = now;
  conn.backend.idle.push(conn);
}

/** Close idle connections older than `keepAliveMs`; oldest sit at the bottom of each stack. */
export function sweepIdle(backend: BackendRuntime, now: number, keepAliveMs: number): void {
  const idle = backend.idle;
  let stale = 0;
  while (stale < idle.length && now - idle[stale]!.idleSince > keepAliveMs) stale++;
  if (stale === 0) return;
  for (const conn of idle.splice(0, stale)) conn.destroy();
}
