// The HTTP front door of one worker: its listening sockets (SO_REUSEPORT, one per worker on
// the same port, opened by the addon) and its client connections. It owns the lifecycle:
// accept, deadlines (slow heads, idle keep-alive), drain on shutdown, close.
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import * as tcp from '../passthrough/raw-tcp.js';
import { clock } from '../clock.js';
import { ClientConnection, type ConnectionOwner, type FrontDoorSettings, type FrontExchange, type ListenerTerms } from './connection.js';
import type { RefusalReason } from './refusals.js';
import type { TlsListener } from './tls-listener.js';
import { TcpTransport, TlsTransport, type ClientTransport } from './transport.js';

export type { FrontDoorSettings, ListenerTerms };

const BACKLOG = 511;
const PLAIN: ListenerTerms = Object.freeze({ index: -1, redirectHttpsPort: null });

interface FrontDoorHooks {
  /** The request path: `res` and `req` are the same object; `req` is valid during the call only. */
  onRequest(res: FrontExchange, req: FrontExchange): void;
  /** A request refused before the request path saw it. */
  onRefused(reason: RefusalReason, detail: string, status: number): void;
  /** A socket that could not be accepted (EMFILE…). */
  onAcceptError?(err: Error): void;
}

export class FrontDoor implements ConnectionOwner {
  draining = false;
  private readonly servers: tcp.TcpHandle[] = [];
  private readonly conns: ClientConnection[] = [];
  private readonly tlsListeners: TlsListener[] = [];

  constructor(
    public settings: FrontDoorSettings,
    private readonly hooks: FrontDoorHooks,
  ) {}

  /** Open connections. */
  get size(): number {
    return this.conns.length;
  }

  /**
   * Listens on an already bound SO_REUSEPORT socket `fd` (consumed); returns the local port.
   * With `tls`, each accepted socket goes through that listener's handshake first (see
   * ./tls-listener.ts), which hands the connection back through `adoptTls`.
   */
  listen(fd: number, tls: TlsListener | null = null, terms: ListenerTerms = PLAIN): number {
    if (tls !== null && !this.tlsListeners.includes(tls)) this.tlsListeners.push(tls);
    const server = tcp.listenOnFd(fd, BACKLOG, (status, handle) => this.accept(status, handle, tls, terms));
    this.servers.push(server);
    return tcp.localAddress(server).port;
  }

  private accept(status: number, handle: tcp.TcpHandle | undefined, tls: TlsListener | null, terms: ListenerTerms): void {
    if (status !== 0 || handle === undefined) {
      this.hooks.onAcceptError?.(tcp.uvError(status, 'accept'));
      return;
    }
    clock.now = Date.now();
    if (this.draining) {
      handle.close();
      return;
    }
    if (tls === null) {
      this.adopt(new TcpTransport(handle), terms);
      return;
    }
    // The handshake is node:tls's (OpenSSL in C++) on a socket over the same handle.
    tls.accept(new net.Socket({ handle, allowHalfOpen: true } as net.SocketConstructorOpts), terms);
  }

  /** A TLS connection whose handshake completed, on the listener with `terms`. */
  adoptTls(socket: TLSSocket, terms: ListenerTerms): void {
    clock.now = Date.now();
    if (this.draining) {
      socket.destroy();
      return;
    }
    this.adopt(new TlsTransport(socket), terms);
  }

  private adopt(transport: ClientTransport, terms: ListenerTerms): void {
    const conn = new ClientConnection(transport, this, terms);
    conn.index = this.conns.length;
    this.conns.push(conn);
  }

  onRequest(res: FrontExchange, req: FrontExchange): void {
    this.hooks.onRequest(res, req);
  }

  onRefused(reason: RefusalReason, detail: string, status: number): void {
    this.hooks.onRefused(reason, detail, status);
  }

  forget(conn: ClientConnection): void {
    const i = conn.index;
    if (i < 0 || this.conns[i] !== conn) return;
    const last = this.conns.pop()!;
    if (last !== conn) {
      this.conns[i] = last;
      last.index = i;
    }
    conn.index = -1;
  }

  /** Deadlines of heads and idle connections; call every few hundred ms. */
  sweep(now: number): void {
    for (const t of this.tlsListeners) t.sweep(now);
    // Backwards: a connection that closes swaps the last one into its place, already visited.
    for (let i = this.conns.length - 1; i >= 0; i--) this.conns[i]?.expire(now);
  }

  /** Stop accepting; idle connections close now, busy ones after their response. */
  drain(): void {
    this.draining = true;
    for (const s of this.servers.splice(0)) s.close();
    for (let i = this.conns.length - 1; i >= 0; i--) this.conns[i]?.drain();
  }

  /** Everything closed now (the process is exiting). */
  closeAll(): void {
    this.draining = true;
    for (const t of this.tlsListeners) t.closeAll();
    for (const s of this.servers.splice(0)) s.close();
    for (let i = this.conns.length - 1; i >= 0; i--) this.conns[i]?.closeNow();
  }
}
