// The request body on its way upstream (phase 6, for requests that have one): queued while the
// upstream connection is being made, then streamed as it arrives, re-chunked when the client
// sent it chunked, with backpressure from the upstream socket to the client.
import type { Socket } from 'node:net';
import { clock } from '../clock.js';
import type { ClientResponse } from '../front-door/client.js';
import { chunkHeader, LAST_CHUNK } from '../upstream/codec.js';

/** Past this much request body buffered before the upstream is ready, stop reading the client. */
const MAX_QUEUED_BODY = 256 * 1024;

/** What the body needs of the exchange it belongs to. */
export interface BodyOwner {
  /** The exchange is over (answered, failed or aborted): the rest of the body is dropped. */
  readonly finished: boolean;
  /** The response is done or the client gone: its connection must not be paused or resumed from here. */
  readonly clientGone: boolean;
  /** The upstream socket carrying the request (null: none now, e.g. the backend answered early). */
  readonly upstreamSocket: Socket | null;
  /** More of the body went upstream (`last`: all of it): the exchange moves its deadline. */
  bodyProgress(last: boolean): void;
}

/** One request's body, from the client's reads to the upstream socket. */
export class RequestBody {
  /** The client has sent the last byte. */
  ended = false;
  /** The request head went upstream: chunks now go straight to the socket. */
  private started = false;
  private queue: Buffer[] = [];
  private queued = 0;
  private clientPaused = false;

  constructor(
    private readonly owner: BodyOwner,
    private readonly res: ClientResponse,
    /** Re-chunk on the way up (the client sent it chunked: its length is unknown). */
    private readonly chunked: boolean,
  ) {
    res.onData((chunk, isLast) => this.onData(chunk, isLast));
  }

  /** Writes the request head and the body queued so far, in one corked batch; false when the socket is behind. */
  sendWithHead(socket: Socket, head: string): boolean {
    socket.cork();
    let ok = socket.write(head, 'latin1');
    for (const chunk of this.queue) ok = this.write(socket, chunk) && ok;
    this.queue = [];
    this.queued = 0;
    if (this.ended && this.chunked) ok = socket.write(LAST_CHUNK, 'latin1') && ok;
    socket.uncork();
    this.started = true;
    return ok;
  }

  /** The upstream socket drained (or the head went out without backpressure): read the client again. */
  resumeClient(): void {
    if (this.clientPaused && !this.owner.clientGone) {
      this.clientPaused = false;
      this.res.resume();
    }
  }

  private pauseClient(): void {
    if (!this.clientPaused && !this.owner.clientGone) {
      this.clientPaused = true;
      this.res.pause();
    }
  }

  private write(socket: Socket, chunk: Buffer): boolean {
    if (!this.chunked) return socket.write(chunk);
    socket.write(chunkHeader(chunk.length), 'latin1');
    socket.write(chunk);
    return socket.write('\r\n', 'latin1');
  }

  private onData(view: Uint8Array, isLast: boolean): void {
    clock.now = Date.now();
    // Answered already (an error, or the backend replied early): the rest of the body has
    // nowhere to go, and must not pile up here.
    if (this.owner.finished) return;
    // The view is only valid during this call, and the socket keeps what it is given: copy.
    const chunk = view.byteLength > 0 ? Buffer.from(view) : null;
    if (isLast) this.ended = true;
    if (this.started) {
      const socket = this.owner.upstreamSocket;
      // Upstream already finished or failed (an early response): the rest is not needed.
      if (!socket) return;
      let ok = true;
      if (chunk) ok = this.write(socket, chunk);
      if (isLast && this.chunked) ok = socket.write(LAST_CHUNK, 'latin1');
      if (!ok) this.pauseClient();
      this.owner.bodyProgress(isLast);
      return;
    }
    if (chunk) {
      this.queue.push(chunk);
      this.queued += chunk.length;
      if (this.queued > MAX_QUEUED_BODY) this.pauseClient();
    }
  }
}
