// How a client connection's bytes move, under ./connection.ts: plain TCP on a raw libuv handle
// (reads land in the worker's one shared buffer), or TLS through node:tls (OpenSSL decrypts and
// encrypts in C++; the connection sees plaintext). The connection parses, frames and answers
// the same way over either.
import type { TLSSocket } from 'node:tls';
import * as tcp from '../passthrough/raw-tcp.js';

/** What a transport reports to its connection. */
export interface TransportSink {
  /** `bytes[0, n)` arrived: valid during the call only. */
  onBytes(bytes: Buffer, n: number): void;
  /** The client sent FIN (TLS: close_notify or FIN). */
  onEnd(): void;
  /** A read failed, or the transport was torn down under the connection. */
  onError(): void;
}

/** The TLS a connection arrived over. */
export interface TlsFacts {
  /** `TLSv1.3`, `TLSv1.2`. */
  readonly protocol: string;
  /** OpenSSL's name of the cipher suite. */
  readonly cipher: string;
  /** The SNI name the client sent ('' when none). */
  readonly servername: string;
}

export interface ClientTransport {
  readonly remoteAddress: string;
  /** The local end as `host:port` (`[::1]:443`), for an HTTP/1.0 request without Host. */
  localHost(): string;
  /** Null on plain TCP. */
  readonly tls: TlsFacts | null;
  /** Starts reading into `sink`. */
  start(sink: TransportSink): void;
  readStart(): void;
  readStop(): void;
  /** 0: in the kernel already; 1: queued, `onDone(status)` follows; < 0: failed (a libuv error). */
  write(data: Buffer, onDone: (status: number) => void): number;
  /** Bytes written and not yet taken by the kernel. */
  readonly queuedBytes: number;
  /** FIN (TLS: close_notify, then FIN) after every queued write; 0 or an error. */
  shutdown(onDone: (status: number) => void): number;
  /** Closes now; no callback of the sink runs after this. */
  close(): void;
}

/** Per worker: every plain-TCP client read lands here first. */
const SHARED = Buffer.allocUnsafe(64 * 1024);
/** onread must stay a function (node asserts it); a closed connection's reads go nowhere. */
const IGNORE_READ = (): undefined => undefined;

/** Plain TCP on a raw handle (../passthrough/raw-tcp.ts). */
export class TcpTransport implements ClientTransport {
  readonly remoteAddress: string;
  readonly tls = null;

  constructor(private readonly handle: tcp.TcpHandle) {
    this.remoteAddress = tcp.peerAddress(handle).address;
  }

  localHost(): string {
    return hostPort(tcp.localAddress(this.handle));
  }

  start(sink: TransportSink): void {
    const handle = this.handle;
    handle.onread = () => {
      const bytes = tcp.readInto(SHARED);
      if (bytes !== null) {
        sink.onBytes(SHARED, bytes.length);
        return;
      }
      const status = tcp.readStatus();
      if (status === tcp.READ_NOTHING) return;
      if (status === tcp.READ_EOF) sink.onEnd();
      else sink.onError();
    };
    tcp.useBuffer(handle, SHARED);
    handle.readStart();
  }

  readStart(): void {
    this.handle.readStart();
  }

  readStop(): void {
    this.handle.readStop();
  }

  write(data: Buffer, onDone: (status: number) => void): number {
    return tcp.write(this.handle, data, onDone);
  }

  get queuedBytes(): number {
    return this.handle.writeQueueSize;
  }

  shutdown(onDone: (status: number) => void): number {
    return tcp.shutdown(this.handle, onDone);
  }

  close(): void {
    this.handle.onread = IGNORE_READ;
    this.handle.close();
  }
}

/** TLS: a node:tls socket whose handshake has completed. */
export class TlsTransport implements ClientTransport {
  readonly remoteAddress: string;
  readonly tls: TlsFacts;
  private closed = false;

  constructor(private readonly socket: TLSSocket) {
    this.remoteAddress = normaliseAddress(socket.remoteAddress ?? '');
    this.tls = {
      protocol: socket.getProtocol() ?? '',
      cipher: socket.getCipher()?.name ?? '',
      servername: typeof (socket as { servername?: unknown }).servername === 'string' ? (socket as unknown as { servername: string }).servername : '',
    };
  }

  localHost(): string {
    return hostPort({ address: normaliseAddress(this.socket.localAddress ?? ''), port: this.socket.localPort ?? 0 });
  }

  start(sink: TransportSink): void {
    const s = this.socket;
    s.on('data', (chunk: Buffer) => {
      if (!this.closed) sink.onBytes(chunk, chunk.length);
    });
    s.on('end', () => {
      if (!this.closed) sink.onEnd();
    });
    s.on('error', () => {
      if (!this.closed) sink.onError();
    });
    s.on('close', () => {
      if (!this.closed) sink.onError();
    });
  }

  readStart(): void {
    this.socket.resume();
  }

  readStop(): void {
    this.socket.pause();
  }

  write(data: Buffer, onDone: (status: number) => void): number {
    if (this.closed || this.socket.destroyed) return -32; // EPIPE
    this.socket.write(data, (err) => onDone(err ? -32 : 0));
    return 1;
  }

  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  shutdown(onDone: (status: number) => void): number {
    if (this.closed || this.socket.destroyed) return -32;
    this.socket.end(() => onDone(0));
    return 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }
}

/** `::ffff:127.0.0.1` (a dual-stack socket's IPv4 peer) as `127.0.0.1`, as the raw handle reports it. */
function normaliseAddress(a: string): string {
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

function hostPort(a: { address: string; port: number }): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
