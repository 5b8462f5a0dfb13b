// Raw libuv TCP handles for the passthrough relay, from Node's own `tcp_wrap` and
// `stream_wrap` bindings: the same objects node:net wraps, without net.Socket's stream
// machinery (two Duplex streams, two pipes and a dozen listeners per relayed connection).
// Measured on the passthrough-handshakes path: the net.Socket relay spent more time in V8's
// stream bookkeeping (megamorphic loads, maps, GC) than in the kernel; on the same loopback
// relay this layer uses ~40% less CPU per connection. See DESIGN.md "TLS passthrough path".
//
// These bindings are Node internals (reached through process.binding, which Node 20 still
// allows for exactly these modules). Everything that depends on their shape is in this file,
// checked once at load with a message that names what changed, and pinned by
// test/unit/raw-tcp.test.ts, so a Node upgrade that moves them fails loudly, not silently.
//
// Contract, as node:net uses it (lib/net.js, lib/internal/stream_base_commons.js):
// - `handle.onread(arrayBuffer)`: bytes or status in streamBaseState[kReadBytesOrError]
//   (> 0 bytes at [kArrayBufferOffset]; UV_EOF; other negatives are errors). The ArrayBuffer
//   is fresh per read and belongs to the callee.
// - `handle.useUserBuffer(buffer)` (net.Socket's `onread: { buffer }` option): reads land in
//   `buffer` instead, `onread` gets no ArrayBuffer, and a Uint8Array it returns becomes the
//   buffer of the next reads (src/stream_wrap.cc CustomBufferJSListener).
// - `writeBuffer(req, buf)` returns an error code; streamBaseState[kLastWriteWasAsync] says
//   whether the bytes went out now or `req.oncomplete(status)` will follow (req.buffer keeps
//   them alive until then).
// - `shutdown(req)` sends FIN after queued writes; `close(cb)` releases the handle.
import { closeSync } from 'node:fs';
import { getSystemErrorName } from 'node:util';

const UV_EOF = -4095;

export interface TcpHandle {
  /** May return the buffer the next reads land in (after useUserBuffer). */
  onread: ((arrayBuffer: ArrayBuffer | undefined) => Uint8Array | undefined | void) | null;
  onconnection: ((status: number, handle: TcpHandle | undefined) => void) | null;
  readonly writeQueueSize: number;
  readStart(): number;
  useUserBuffer(buffer: Uint8Array): void;
  readStop(): number;
  writeBuffer(req: WriteReq, data: Uint8Array): number;
  shutdown(req: ShutdownReq): number;
  close(callback?: () => void): void;
  setNoDelay(enable: boolean): number;
  getpeername(out: Record<string, unknown>): number;
  getsockname(out: Record<string, unknown>): number;
  connect(req: ConnectReq, address: string, port: number): number;
  connect6(req: ConnectReq, address: string, port: number): number;
  open(fd: number): number;
  listen(backlog: number): number;
  ref(): void;
  unref(): void;
}

interface WriteReq {
  handle: TcpHandle;
  buffer: Uint8Array | null;
  oncomplete: (status: number) => void;
}
interface ShutdownReq {
  handle: TcpHandle;
  oncomplete: (status: number) => void;
}
interface ConnectReq {
  oncomplete: (status: number) => void;
  address: string;
  port: number;
}

interface Bindings {
  TCP: new (type: number) => TcpHandle;
  TCPConnectWrap: new () => ConnectReq;
  WriteWrap: new () => WriteReq;
  ShutdownWrap: new () => ShutdownReq;
  SOCKET: number;
  SERVER: number;
  state: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
}

function loadBindings(): Bindings {
  // process.binding is deprecated for new code (DEP0111) but kept for these modules; it is
  // the only way to reach the handles without a native stream layer of our own.
  const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
  const tcp = binding('tcp_wrap');
  const stream = binding('stream_wrap');
  const constants = tcp['constants'] as Record<string, unknown> | undefined;
  const need: Array<[string, unknown, string]> = [
    ['tcp_wrap.TCP', tcp['TCP'], 'function'],
    ['tcp_wrap.TCP.prototype.useUserBuffer', (tcp['TCP'] as { prototype?: Record<string, unknown> } | undefined)?.prototype?.['useUserBuffer'], 'function'],
    ['tcp_wrap.TCPConnectWrap', tcp['TCPConnectWrap'], 'function'],
    ['tcp_wrap.constants.SOCKET', constants?.['SOCKET'], 'number'],
    ['tcp_wrap.constants.SERVER', constants?.['SERVER'], 'number'],
    ['stream_wrap.WriteWrap', stream['WriteWrap'], 'function'],
    ['stream_wrap.ShutdownWrap', stream['ShutdownWrap'], 'function'],
    ['stream_wrap.kReadBytesOrError', stream['kReadBytesOrError'], 'number'],
    ['stream_wrap.kArrayBufferOffset', stream['kArrayBufferOffset'], 'number'],
    ['stream_wrap.kLastWriteWasAsync', stream['kLastWriteWasAsync'], 'number'],
  ];
  for (const [what, value, type] of need) {
    if (typeof value !== type) {
      throw new Error(`Node ${process.version} has no ${what} (${type}) in its internal bindings: the passthrough relay (src/data-plane/passthrough/raw-tcp.ts) needs updating for this Node version`);
    }
  }
  if (!(stream['streamBaseState'] instanceof Int32Array)) {
    throw new Error(`Node ${process.version}: stream_wrap.streamBaseState is not an Int32Array: the passthrough relay (src/data-plane/passthrough/raw-tcp.ts) needs updating for this Node version`);
  }
  return {
    TCP: tcp['TCP'] as Bindings['TCP'],
    TCPConnectWrap: tcp['TCPConnectWrap'] as Bindings['TCPConnectWrap'],
    WriteWrap: stream['WriteWrap'] as Bindings['WriteWrap'],
    ShutdownWrap: stream['ShutdownWrap'] as Bindings['ShutdownWrap'],
    SOCKET: constants!['SOCKET'] as number,
    SERVER: constants!['SERVER'] as number,
    state: stream['streamBaseState'] as Int32Array,
    kReadBytesOrError: stream['kReadBytesOrError'] as number,
    kArrayBufferOffset: stream['kArrayBufferOffset'] as number,
    kLastWriteWasAsync: stream['kLastWriteWasAsync'] as number,
  };
}

const B = loadBindings();
const state = B.state;
const kRead = B.kReadBytesOrError;
const kOffset = B.kArrayBufferOffset;
const kAsync = B.kLastWriteWasAsync;

/** readStatus() after readBytes returned null: end of stream. */
export const READ_EOF = 0;
/** readStatus(): nothing was read (libuv's nread 0, its EAGAIN): not an end, not an error. */
export const READ_NOTHING = 1;
/**
 * Call inside `onread`: the bytes read (a view the caller owns), or null with `readStatus()`
 * telling EOF (READ_EOF) and an empty read (READ_NOTHING) from an error (a negative libuv code).
 */
export function readBytes(arrayBuffer: ArrayBuffer | undefined): Uint8Array | null {
  const n = state[kRead]!;
  if (n > 0 && arrayBuffer !== undefined) return new Uint8Array(arrayBuffer, state[kOffset]!, n);
  return null;
}
/**
 * Makes the reads of `handle` land in `buffer` (no allocation per read). `onread` then gets no
 * ArrayBuffer: `readInto(buffer)` gives the bytes, and a Uint8Array `onread` returns is where the
 * next reads land. Whoever calls this keeps the buffer alive, and does not reuse it while a
 * write of its bytes is queued.
 */
export function useBuffer(handle: TcpHandle, buffer: Uint8Array): void {
  handle.useUserBuffer(buffer);
}
/** Inside `onread` of a handle reading into `buffer` (useBuffer): a view of the bytes read, or null (then readStatus()). */
export function readInto(buffer: Uint8Array): Uint8Array | null {
  const n = state[kRead]!;
  return n > 0 ? buffer.subarray(0, n) : null;
}
/** After readBytes or readInto returned null: READ_EOF, READ_NOTHING, or the (negative) libuv error. */
export function readStatus(): number {
  const n = state[kRead]!;
  if (n === UV_EOF) return READ_EOF;
  return n < 0 ? n : READ_NOTHING;
}

/**
 * Writes `data`. Returns 0 when the bytes are already in the kernel, 1 when they are queued
 * (`onDone(status)` follows once they are written or failed), or a negative libuv error.
 */
export function write(handle: TcpHandle, data: Uint8Array, onDone: (status: number) => void): number {
  const req = new B.WriteWrap();
  req.handle = handle;
  req.buffer = data;
  req.oncomplete = onDone;
  const err = handle.writeBuffer(req, data);
  if (err !== 0) return err < 0 ? err : -err;
  return state[kAsync] !== 0 ? 1 : 0;
}

/** FIN after every queued write; `onDone(status)` when sent (or failed). Returns 0 or an error. */
export function shutdown(handle: TcpHandle, onDone: (status: number) => void): number {
  const req = new B.ShutdownWrap();
  req.handle = handle;
  req.oncomplete = onDone;
  return handle.shutdown(req);
}

/**
 * A listening handle over an already bound socket `fd`. The fd is always consumed: adopted by
 * the handle on success, closed here on failure (exactly once: worker threads share the fd
 * table, so a second close could hit another thread's newly opened file).
 */
export function listenOnFd(fd: number, backlog: number, onConnection: (status: number, handle: TcpHandle | undefined) => void): TcpHandle {
  const server = new B.TCP(B.SERVER);
  const openErr = server.open(fd);
  if (openErr !== 0) {
    server.close();
    try {
      closeSync(fd);
    } catch {
      // not a descriptor we could close: nothing more to release
    }
    throw uvError(openErr, `adopt listening fd ${fd}`);
  }
  server.onconnection = onConnection;
  const err = server.listen(backlog);
  if (err !== 0) {
    server.close(); // closes the adopted fd
    throw uvError(err, `listen on fd ${fd}`);
  }
  return server;
}

/**
 * Starts a connection to `address` (an IP literal of `family` 4 or 6). `onDone(status)` gets
 * 0 or a negative libuv error; a handle closed before then reports a cancellation (< 0).
 * Throws only for errors known at once (e.g. an invalid address).
 */
export function connect(address: string, family: 4 | 6, port: number, onDone: (status: number) => void): TcpHandle {
  const handle = new B.TCP(B.SOCKET);
  const req = new B.TCPConnectWrap();
  req.oncomplete = onDone;
  req.address = address;
  req.port = port;
  const err = family === 6 ? handle.connect6(req, address, port) : handle.connect(req, address, port);
  if (err !== 0) {
    handle.close();
    throw uvError(err, `connect to ${address}:${port}`);
  }
  return handle;
}

export interface SocketAddress {
  address: string;
  port: number;
}

const NO_ADDRESS: SocketAddress = { address: '', port: 0 };

/** The peer's address, or '' / 0 if the socket no longer has one. */
export function peerAddress(handle: TcpHandle): SocketAddress {
  const out: Record<string, unknown> = {};
  if (handle.getpeername(out) !== 0) return NO_ADDRESS;
  return { address: String(out['address'] ?? ''), port: Number(out['port'] ?? 0) };
}

/** The local address, or '' / 0 if the socket no longer has one. */
export function localAddress(handle: TcpHandle): SocketAddress {
  const out: Record<string, unknown> = {};
  if (handle.getsockname(out) !== 0) return NO_ADDRESS;
  return { address: String(out['address'] ?? ''), port: Number(out['port'] ?? 0) };
}

/** An Error for a libuv status, with Node's errno name (ECONNREFUSED, …) as its code. */
export function uvError(status: number, what: string): Error & { code: string } {
  let code = `UV_${-status}`;
  try {
    // util.getSystemErrorName maps libuv codes to names; it throws on non-negative input.
    code = getSystemErrorName(status);
  } catch {
    // keep the numeric form
  }
  return Object.assign(new Error(`${what}: ${code}`), { code });
}
