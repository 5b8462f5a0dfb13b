// What the request path sees of a client request and its response: the small surface the
// handlers use (the shape uWebSockets.js's HttpRequest/HttpResponse gave them, which kept the
// request path unchanged when the front door became our own), served by ./connection.ts.
import type { TlsFacts } from './transport.js';

export type { TlsFacts };

export interface ClientRequest {
  /** The method as sent (`GET`, `PATCH`, …). */
  getCaseSensitiveMethod(): string;
  /** The method lower-cased. */
  getMethod(): string;
  /** The target's path (origin-form, or the path of an absolute-form target; `*` for `OPTIONS *`). */
  getUrl(): string;
  /** The query without its `?`; '' when there is none. */
  getQuery(): string;
  /** The first value of a header (`name` lower-cased), '' when absent. */
  getHeader(name: string): string;
  /** Every header, names lower-cased, in the order received (a synthesised Host included). */
  forEach(cb: (name: string, value: string) => void): void;
  /** The TLS the request came over (an HTTPS listener); null for plain HTTP. */
  getTls(): TlsFacts | null;
}

export interface ClientResponse {
  /** Writes queued in `fn` go out together, in one system call where they fit. */
  cork(fn: () => void): this;
  /** `200 OK`: the status code and reason phrase. Before any other write. */
  writeStatus(status: string): this;
  /**
   * One header (a value may itself hold further `\r\nname: value` lines: the caller vouches
   * that it holds no other CR or LF). A Buffer value's bytes go as they are (latin1).
   */
  writeHeader(name: string, value: string | Uint8Array): this;
  /** A body chunk of unknown total length (chunked, or close-delimited for HTTP/1.0). False: back off until onWritable. */
  write(chunk: Uint8Array | string): boolean;
  /**
   * A body chunk of a response of `totalSize` bytes (Content-Length). Always takes the whole
   * chunk; `[ok, done]`: ok false means back off until onWritable, done that the body is complete.
   */
  tryEnd(chunk: Uint8Array, totalSize: number): [boolean, boolean];
  /** Body bytes taken so far. */
  getWriteOffset(): number;
  /** Called once the bytes written so far have left (the backpressure cleared); return true when done. */
  onWritable(cb: (offset: number) => boolean): this;
  /** The whole body (or none); `closeConnection` ends the connection after it. */
  end(body?: string | Uint8Array, closeConnection?: boolean): this;
  /** A response without a body (HEAD, 204, 304): whatever Content-Length was written stands. */
  endWithoutBody(): this;
  /** Ends the connection now (a response cut short: the client sees it truncated). */
  close(): this;
  /** The client left, or the connection failed, before the response ended. */
  onAborted(cb: () => void): this;
  /**
   * The request body: `chunk` is a view valid only during the call (copy what you keep);
   * `isLast` with the final (possibly empty) chunk. De-chunked already.
   */
  onData(cb: (chunk: Uint8Array, isLast: boolean) => void): this;
  /** Stop reading the client (request-body backpressure) / read again. */
  pause(): void;
  resume(): void;
  /** The client's address as text (`127.0.0.1`, `::1`). */
  getRemoteAddress(): string;
}
