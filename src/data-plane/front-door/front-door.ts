// The HTTP front door of one worker: its listening sockets (SO_REUSEPORT, one per worker on
// the same port, opened by the addon) and its client connections. It owns the lifecycle:
// accept, deadlines (slow heads, idle keep-alive), drain on shutdown, close.
import * as tcp from '../passthrough/raw-tcp.js';
import { clock } from '../clock.js';
import { ClientConnection, type ConnectionOwner, type FrontDoorSettings, type FrontExchange } from './connection.js';
import type { RefusalReason } from './refusals.js';

export type { FrontDoorSettings };

const BACKLOG = 511;

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

  constructor(
    public settings: FrontDoorSettings,
    private readonly hooks: FrontDoorHooks,
  ) {}

  /** Open connections. */
  get size(): number {
    return this.conns.length;
  }

  /** Listens on an already bound SO_REUSEPORT socket `fd` (consumed); returns the local port. */
  listen(fd: number): number {
    const server = tcp.listenOnFd(fd, BACKLOG, (status, handle) => this.accept(status, handle));
    this.servers.push(server);
    return tcp.localAddress(server).port;
  }

  private accept(status: number, handle: tcp.TcpHandle | undefined): void {
    if (status !== 0 || handle === undefined) {
      this.hooks.onAcceptError?.(tcp.uvError(status, 'accept'));
      return;
    }
    clock.now = Date.now();
    if (this.draining) {
      handle.close();
      return;
    }
    const conn = new ClientConnection(handle, this);
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
    for (const s of this.servers.splice(0)) s.close();
    for (let i = this.conns.length - 1; i >= 0; i--) this.conns[i]?.closeNow();
  }
}
