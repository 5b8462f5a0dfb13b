// The control-channel SDK: an application announces itself to a Tether balancer's pool over
// the /control WebSocket, heartbeats, moves, drains and leaves, and reconnects on its own.
// Frames are signed with node:crypto (src/native/reference.ts), so no native addon is needed.
//
//   import { startAgent } from './control/sdk.js';
//
//   const agent = startAgent({
//     url: 'ws://balancer:9090/control', pool: 'web', id: 'app1', key, port: 8000,
//     onEvent: (e) => console.log(e), // 'connected' | 'announced' | 'refused' | 'disconnected' | 'error'
//   });
//   await agent.ready;                 // the first announce was acked: { state, address, port }
//   // onMessage: (m) => …              // unsolicited balancer frames, e.g. authz grants (src/authz/server.ts)
//   await agent.move({ port: 8001 });  // resolves once every balancer worker routes to :8001
//   await agent.drain();               // no new sessions
//   await agent.leave();               // gone from the pool; heartbeats and reconnects stop
//   await agent.close();
//
// Every request has a reply deadline: the balancer drops a frame it cannot authenticate without
// an answer, so silence is the only sign of a wrong key. A reply deadline missed on the agent's
// own traffic also ends the connection (it may be half-open) and the agent reconnects.
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import WebSocket from 'ws';

import { describeValue } from '../native/index.js';
import { referenceHmacSha256, referenceHmacVerify } from '../native/reference.js';
import {
  AGENT_KEY_BYTES,
  MAX_FRAME_BYTES,
  NONCE_BYTES,
  encodeFrame,
  framePool,
  openFrame,
  FrameError,
  type AgentMessage,
} from './frames.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const DEFAULT_HEARTBEAT_MS = 5_000;
export const DEFAULT_REPLY_TIMEOUT_MS = 5_000;
export const DEFAULT_RECONNECT = Object.freeze({ minMs: 250, maxMs: 10_000 });
export const MIN_HEARTBEAT_MS = 10;
export const MAX_HEARTBEAT_MS = 3_600_000;
const MAX_TIMEOUT_MS = 600_000;
/** Backend weight range of the config schema (src/config/schema.ts). */
export const MAX_WEIGHT = 1000;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** An agent message before the client stamps it: `pool`, `ts` and `nonce` are the client's. */
export type AgentRequest = DistributiveOmit<AgentMessage, 'pool' | 'ts' | 'nonce'>;
export type AgentRequestType = AgentRequest['type'];

/**
 * An authenticated balancer frame that answers no request of ours (e.g. an authz `grant`): its
 * MAC verified under the pool key; everything beyond `type`, `ts` and `nonce` is unchecked. The
 * frame's ts and nonce are not checked against a window here: a handler that must not act twice
 * on a replayed frame keeps its own record (the authz verifier keys grants by their code).
 */
export type BalancerPush = Record<string, unknown> & { type: string; ts: number; nonce: Uint8Array };

/** The balancer's `ack`. */
export interface AckInfo {
  state: string;
  address?: string;
  port?: number;
}

/** An acked announce: where the balancer now routes to (the ack's address/port, else ours). */
export interface Announced {
  state: string;
  address: string;
  port: number;
}

/**
 * Why a request failed. `refused` is true when the balancer answered `refused`; `code` is then
 * its code ('address_conflict', 'unknown_pool', 'unknown_backend', 'invalid', 'stale',
 * 'replayed', 'rate_limited', …). Otherwise `code` is the SDK's own: 'reply_timeout',
 * 'connect_timeout', 'connect_failed', 'connect_aborted', 'connection_closed', 'bad_reply',
 * 'not_connected', 'agent_left', 'agent_closed'.
 */
export class ControlError extends Error {
  readonly code: string;
  readonly refused: boolean;
  /** The balancer's `reason` when refused, else ''. */
  readonly reason: string;
  constructor(code: string, message: string, options: { refused?: boolean; reason?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ControlError';
    this.code = code;
    this.refused = options.refused ?? false;
    this.reason = options.reason ?? '';
  }
}

// ---------------------------------------------------------------------------------------------
// Option checks: "expected … for … but received …", thrown before anything starts.

function expected(what: string, name: string, value: unknown, Err: typeof TypeError = RangeError): Error {
  return new Err(`expected ${what} for ${name} but received ${describeValue(value)}`);
}

function checkUrl(value: unknown, name: string): string {
  if (typeof value !== 'string') throw expected('a ws:// or wss:// URL', name, value, TypeError);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw expected('a ws:// or wss:// URL', name, value);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw expected('a ws:// or wss:// URL', name, value);
  return value;
}

function checkName(value: unknown, name: string): string {
  if (typeof value !== 'string') throw expected(`a ${name} name`, name, value, TypeError);
  if (!NAME.test(value)) throw expected(`a ${name} name of 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)`, name, value);
  return value;
}

function checkKey(value: unknown, name: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw expected(`a ${AGENT_KEY_BYTES}-byte key (Uint8Array)`, name, value, TypeError);
  if (value.length !== AGENT_KEY_BYTES) throw new RangeError(`expected a ${AGENT_KEY_BYTES}-byte key for ${name} but received ${value.length} bytes`);
  return value;
}

function checkInt(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') throw expected(`an integer ${min}-${max}`, name, value, TypeError);
  if (!Number.isInteger(value) || value < min || value > max) throw expected(`an integer ${min}-${max}`, name, value);
  return value;
}

function checkAddress(value: unknown, name: string): string {
  if (typeof value !== 'string') throw expected('an IPv4 or IPv6 address', name, value, TypeError);
  if (isIP(value) === 0) throw expected('an IPv4 or IPv6 address', name, value);
  return value;
}

function checkKeys(value: object, allowed: readonly string[], name: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw new RangeError(`unknown option '${key}' in ${name} (expected one of ${allowed.join(', ')})`);
  }
}

/** `::ffff:10.0.0.5` (an IPv4 peer on a dual-stack socket) → `10.0.0.5`. */
export function normalizeAddress(address: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address;
}

// ---------------------------------------------------------------------------------------------
// ControlClient: one WebSocket, requests matched to replies by nonce.

export interface ControlClientOptions {
  url: string;
  pool: string;
  key: Uint8Array;
  /** Default reply deadline of request(); default 5000. */
  replyTimeoutMs?: number;
  /** TCP + TLS + WebSocket handshake deadline; default replyTimeoutMs. */
  connectTimeoutMs?: number;
  /** Aborting it during connect() fails the connect with 'connect_aborted'. */
  signal?: AbortSignal;
  /**
   * A frame from the balancer that was dropped: unauthenticated, or an ack/refused answering
   * nothing we sent (or any unsolicited frame when there is no onMessage). Also gets what an
   * onMessage handler throws.
   */
  onDroppedFrame?: (err: Error) => void;
  /** Every authenticated frame that is not a reply (`type` other than ack/refused); called synchronously. */
  onMessage?: (msg: BalancerPush) => void;
}

interface Pending {
  type: AgentRequestType;
  resolve: (ack: AckInfo) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const CLIENT_OPTIONS = ['url', 'pool', 'key', 'replyTimeoutMs', 'connectTimeoutMs', 'signal', 'onDroppedFrame', 'onMessage'] as const;

export class ControlClient {
  /** The local address of the connection: the address the balancer reaches us from. */
  readonly localAddress: string;
  /** Resolves (never rejects) with a description once the socket has closed. */
  readonly closed: Promise<string>;
  readonly #ws: WebSocket;
  readonly #url: string;
  readonly #pool: string;
  readonly #key: Uint8Array;
  readonly #replyTimeoutMs: number;
  readonly #onDroppedFrame: (err: Error) => void;
  readonly #onPush: ((msg: BalancerPush) => void) | null;
  readonly #pending = new Map<string, Pending>();

  private constructor(ws: WebSocket, localAddress: string, o: Required<Pick<ControlClientOptions, 'url' | 'pool' | 'key' | 'replyTimeoutMs'>> & ControlClientOptions) {
    this.#ws = ws;
    this.localAddress = localAddress;
    this.#url = o.url;
    this.#pool = o.pool;
    this.#key = o.key;
    this.#replyTimeoutMs = o.replyTimeoutMs;
    this.#onDroppedFrame = o.onDroppedFrame ?? (() => {});
    this.#onPush = o.onMessage ?? null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        const why = `connection closed (${code}${reason.length > 0 ? ` ${reason.toString('utf8')}` : ''})`;
        for (const p of this.#pending.values()) {
          clearTimeout(p.timer);
          p.reject(new ControlError('connection_closed', `${p.type} to ${this.#url} got no reply: ${why}`));
        }
        this.#pending.clear();
        resolve(why);
      });
    });
    // After 'open', errors are followed by 'close', which is where pending requests fail.
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
  }

  /** Opens the WebSocket; rejects with a ControlError ('connect_*') by the connect deadline. */
  static connect(options: ControlClientOptions): Promise<ControlClient> {
    if (options === null || typeof options !== 'object') throw expected('an options object', 'options', options, TypeError);
    checkKeys(options, CLIENT_OPTIONS, 'ControlClient options');
    const url = checkUrl(options.url, 'url');
    const pool = checkName(options.pool, 'pool');
    const key = checkKey(options.key, 'key');
    const replyTimeoutMs = checkInt(options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS, 'replyTimeoutMs', 1, MAX_TIMEOUT_MS);
    const connectTimeoutMs = checkInt(options.connectTimeoutMs ?? replyTimeoutMs, 'connectTimeoutMs', 1, MAX_TIMEOUT_MS);
    if (options.onDroppedFrame !== undefined && typeof options.onDroppedFrame !== 'function') throw expected('a function', 'onDroppedFrame', options.onDroppedFrame, TypeError);
    if (options.onMessage !== undefined && typeof options.onMessage !== 'function') throw expected('a function', 'onMessage', options.onMessage, TypeError);
    const resolved = { ...options, url, pool, key, replyTimeoutMs };
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(new ControlError('connect_aborted', `connect to ${url} aborted`));

    return new Promise((resolve, reject) => {
      // The deadline is our timer (not ws's handshakeTimeout), so it fails as 'connect_timeout'.
      const ws = new WebSocket(url, { maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
      let localAddress: string | undefined;
      let settled = false;
      const fail = (err: ControlError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        ws.terminate();
        reject(err);
      };
      const onAbort = (): void => fail(new ControlError('connect_aborted', `connect to ${url} aborted`));
      const onError = (err: Error): void => fail(new ControlError('connect_failed', `could not connect to ${url}: ${err.message}`, { cause: err }));
      const timer = setTimeout(() => fail(new ControlError('connect_timeout', `could not connect to ${url} within ${connectTimeoutMs} ms`)), connectTimeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      ws.on('error', onError);
      ws.once('upgrade', (res) => {
        localAddress = res.socket.localAddress;
      });
      const onClose = (code: number): void => fail(new ControlError('connect_failed', `could not connect to ${url}: closed (${code}) during the handshake`));
      ws.once('close', onClose);
      ws.once('open', () => {
        if (settled) return;
        if (localAddress === undefined) {
          fail(new ControlError('connect_failed', `connected to ${url} but could not learn the connection's local address`));
          return;
        }
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        ws.off('close', onClose);
        const client = new ControlClient(ws, normalizeAddress(localAddress), resolved);
        ws.off('error', onError);
        resolve(client);
      });
    });
  }

  get isOpen(): boolean {
    return this.#ws.readyState === WebSocket.OPEN;
  }

  /**
   * Sends `req` (stamped with pool, ts and a fresh nonce) and resolves with the balancer's ack.
   * Rejects with a ControlError: `refused` (the balancer's code), 'reply_timeout' after
   * `timeoutMs` (default: the client's replyTimeoutMs), 'connection_closed', 'bad_reply'.
   */
  request(req: AgentRequest, timeoutMs = this.#replyTimeoutMs): Promise<AckInfo> {
    if (!this.isOpen) return Promise.reject(new ControlError('connection_closed', `cannot send ${req.type}: the connection to ${this.#url} is not open`));
    const nonce = randomBytes(NONCE_BYTES);
    let frame: Buffer;
    try {
      frame = encodeFrame('A', this.#pool, this.#key, { ...req, pool: this.#pool, ts: Date.now(), nonce }, referenceHmacSha256);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const ref = nonce.toString('hex');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(ref);
        reject(new ControlError('reply_timeout', `no reply to ${req.type} from ${this.#url} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(ref, { type: req.type, resolve, reject, timer });
      this.#ws.send(frame, { binary: true }, (err) => {
        const p = this.#pending.get(ref);
        if (err === undefined || err === null || p === undefined) return;
        this.#pending.delete(ref);
        clearTimeout(p.timer);
        p.reject(new ControlError('connection_closed', `could not send ${req.type} to ${this.#url}: ${err.message}`, { cause: err }));
      });
    });
  }

  /** Closing handshake, then terminate if it takes longer than `timeoutMs`; pending requests fail. */
  async close(timeoutMs = this.#replyTimeoutMs): Promise<void> {
    if (this.#ws.readyState !== WebSocket.CLOSED) {
      this.#ws.close(1000, 'agent closing');
      const timer = setTimeout(() => this.#ws.terminate(), timeoutMs);
      await this.closed;
      clearTimeout(timer);
    }
  }

  /** Drops the connection at once (no closing handshake): for a connection that may be dead. */
  terminate(): void {
    this.#ws.terminate();
  }

  #onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (!isBinary) {
      this.#onDroppedFrame(new ControlError('bad_reply', 'dropped a text message on the control channel (frames are binary)'));
      return;
    }
    const frame = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    let msg: ReturnType<typeof openFrame>;
    try {
      const pool = framePool(frame);
      if (pool !== this.#pool) throw new FrameError('unknown_pool', `frame for pool '${pool}' on pool '${this.#pool}''s connection`);
      msg = openFrame('B', frame, this.#key, referenceHmacVerify);
    } catch (err) {
      this.#onDroppedFrame(err as Error);
      return;
    }
    // A reply is accepted once, for a nonce we sent and are still waiting on: replays and late
    // replies find nothing pending, so the reply's own ts and nonce need no window.
    const ref = msg.ref instanceof Uint8Array && msg.ref.length === NONCE_BYTES ? Buffer.from(msg.ref).toString('hex') : '';
    const pending = this.#pending.get(ref);
    if (pending === undefined) {
      if (msg.type !== 'ack' && msg.type !== 'refused' && this.#onPush !== null) {
        try {
          this.#onPush(msg);
        } catch (err) {
          this.#onDroppedFrame(err instanceof Error ? err : new Error(String(err)));
        }
        return;
      }
      this.#onDroppedFrame(new ControlError('bad_reply', `dropped a '${msg.type}' frame that answers no pending request`));
      return;
    }
    this.#pending.delete(ref);
    clearTimeout(pending.timer);
    const reply = readReply(msg, pending.type);
    if (reply instanceof Error) pending.reject(reply);
    else pending.resolve(reply);
  }
}

/** An authenticated reply → AckInfo, or the error the request fails with. */
function readReply(msg: Record<string, unknown>, request: AgentRequestType): AckInfo | ControlError {
  if (msg.type === 'refused') {
    const code = typeof msg.code === 'string' && msg.code !== '' ? msg.code : 'refused';
    const reason = typeof msg.reason === 'string' ? msg.reason : '';
    return new ControlError(code, `the balancer refused ${request}: ${code}${reason === '' ? '' : ` (${reason})`}`, { refused: true, reason });
  }
  if (msg.type !== 'ack') return new ControlError('bad_reply', `the balancer answered ${request} with an unknown '${String(msg.type)}' frame`);
  if (typeof msg.state !== 'string') return new ControlError('bad_reply', `the balancer's ack of ${request} has no string state`);
  const ack: AckInfo = { state: msg.state };
  if (msg.address !== undefined && msg.address !== null) {
    if (typeof msg.address !== 'string') return new ControlError('bad_reply', `the balancer's ack of ${request} has a non-string address`);
    ack.address = msg.address;
  }
  if (msg.port !== undefined && msg.port !== null) {
    if (typeof msg.port !== 'number' || !Number.isInteger(msg.port) || msg.port < 1 || msg.port > 65535) return new ControlError('bad_reply', `the balancer's ack of ${request} has a bad port`);
    ack.port = msg.port;
  }
  return ack;
}

// ---------------------------------------------------------------------------------------------
// The agent: connect → announce → heartbeat, reconnecting with backoff until close().

export type AgentEvent =
  /** A connection is open; `localAddress` is what an announce without `address` sends. */
  | { type: 'connected'; url: string; localAddress: string }
  /** An announce (first, re-announce, move) was acked. */
  | { type: 'announced'; state: string; address: string; port: number }
  /** The balancer refused a request. An announce is retried on the next heartbeat tick. */
  | { type: 'refused'; request: AgentRequestType; code: string; reason: string }
  /** The connection closed; `retryInMs` null: not reconnecting (the agent left). */
  | { type: 'disconnected'; reason: string; retryInMs: number | null }
  /** A failure that did not stop the agent: connect, a request, or a dropped frame. */
  | { type: 'error'; during: 'connect' | 'frame' | AgentRequestType; error: Error; retryInMs?: number };

export interface AgentOptions {
  /** ws://balancer:9090/control */
  url: string;
  pool: string;
  /** The backend id, unique in the pool. */
  id: string;
  /** The pool's 32-byte agent key. */
  key: Uint8Array;
  /** The port the balancer should send traffic to. */
  port: number;
  /** Default: the local address of the control connection (the address the balancer reaches us from). */
  address?: string;
  /** 0-1000; default 1. */
  weight?: number;
  /** Default 5000. */
  heartbeatMs?: number;
  /** Deadline of every reply and of each connect; default 5000. */
  replyTimeoutMs?: number;
  /** Reconnect delay, doubling from minMs up to maxMs (each delay jittered down by up to half); default 250..10000. */
  reconnect?: { minMs: number; maxMs: number };
  /** Called synchronously; an exception thrown by it is ignored. */
  onEvent?: (event: AgentEvent) => void;
  /**
   * Every authenticated balancer frame that is not a reply to one of the agent's requests (e.g.
   * an authz `grant`); called synchronously. An exception it throws is reported as an 'error'
   * event during 'frame'.
   */
  onMessage?: (msg: BalancerPush) => void;
}

export interface Agent {
  /** The first acked announce. Rejects ('agent_closed') only if close() comes first; race it with your own deadline. */
  readonly ready: Promise<Announced>;
  /**
   * Re-announces at a new address and/or port; resolves once the balancer acked (it acks only
   * after every worker applied the change). The new target is kept even if this rejects: it is
   * what every later announce (retry, reconnect) sends.
   */
  move(to: { address?: string; port?: number }, options?: { timeoutMs?: number }): Promise<Announced>;
  /** No new sessions for this backend; kept across re-announces. */
  drain(options?: { timeoutMs?: number }): Promise<AckInfo>;
  /** Leaves the pool; once acked the agent stops heartbeating and reconnecting (close() remains). */
  leave(options?: { timeoutMs?: number }): Promise<AckInfo>;
  /** Drops the connection and connects again at once (e.g. the host's addresses changed). */
  reconnect(): void;
  /** Stops timers, closes the socket (closing handshake within replyTimeoutMs), never reconnects. */
  close(): Promise<void>;
  /** What the balancer last acked; null before the first announce and after leave. */
  readonly current: { address: string; port: number } | null;
}

interface ResolvedAgentOptions {
  url: string;
  pool: string;
  id: string;
  key: Uint8Array;
  port: number;
  address: string | null;
  weight: number;
  heartbeatMs: number;
  replyTimeoutMs: number;
  reconnect: { minMs: number; maxMs: number };
  onEvent: (event: AgentEvent) => void;
  onMessage: ((msg: BalancerPush) => void) | undefined;
}

const AGENT_OPTIONS = ['url', 'pool', 'id', 'key', 'port', 'address', 'weight', 'heartbeatMs', 'replyTimeoutMs', 'reconnect', 'onEvent', 'onMessage'] as const;

/** Checks every option (throwing a TypeError/RangeError naming it) and fills the defaults. */
function resolveAgentOptions(opts: AgentOptions): ResolvedAgentOptions {
  if (opts === null || typeof opts !== 'object') throw expected('an options object', 'options', opts, TypeError);
  checkKeys(opts, AGENT_OPTIONS, 'agent options');
  const reconnect = opts.reconnect ?? DEFAULT_RECONNECT;
  if (reconnect === null || typeof reconnect !== 'object') throw expected('{ minMs, maxMs }', 'reconnect', reconnect, TypeError);
  checkKeys(reconnect, ['minMs', 'maxMs'], 'reconnect');
  const minMs = checkInt(reconnect.minMs, 'reconnect.minMs', 1, MAX_TIMEOUT_MS);
  const maxMs = checkInt(reconnect.maxMs, 'reconnect.maxMs', 1, MAX_TIMEOUT_MS);
  if (maxMs < minMs) throw new RangeError(`expected reconnect.maxMs ≥ reconnect.minMs (${minMs}) but received ${maxMs}`);
  if (opts.onEvent !== undefined && typeof opts.onEvent !== 'function') throw expected('a function', 'onEvent', opts.onEvent, TypeError);
  if (opts.onMessage !== undefined && typeof opts.onMessage !== 'function') throw expected('a function', 'onMessage', opts.onMessage, TypeError);
  return {
    url: checkUrl(opts.url, 'url'),
    pool: checkName(opts.pool, 'pool'),
    id: checkName(opts.id, 'id'),
    key: Buffer.from(checkKey(opts.key, 'key')),
    port: checkInt(opts.port, 'port', 1, 65535),
    address: opts.address === undefined ? null : checkAddress(opts.address, 'address'),
    weight: checkInt(opts.weight ?? 1, 'weight', 0, MAX_WEIGHT),
    heartbeatMs: checkInt(opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS, 'heartbeatMs', MIN_HEARTBEAT_MS, MAX_HEARTBEAT_MS),
    replyTimeoutMs: checkInt(opts.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS, 'replyTimeoutMs', 1, MAX_TIMEOUT_MS),
    reconnect: { minMs, maxMs },
    onEvent: opts.onEvent ?? (() => {}),
    onMessage: opts.onMessage,
  };
}

/** Validates `opts` (throws on bad options) and starts connecting; see the top of this file. */
export function startAgent(opts: AgentOptions): Agent {
  return new ControlAgent(resolveAgentOptions(opts));
}

function swallow(): void {}

class ControlAgent implements Agent {
  readonly ready: Promise<Announced>;
  readonly #o: ResolvedAgentOptions;
  #life: 'running' | 'left' | 'closed' = 'running';
  /** #life, unnarrowed: it changes while #run() awaits. */
  #lifeNow(): 'running' | 'left' | 'closed' {
    return this.#life;
  }
  #client: ControlClient | null = null;
  /** The balancer acked our latest announce on this connection; false: the next tick announces. */
  #announced = false;
  #draining = false;
  #target: { address: string | null; port: number };
  #current: { address: string; port: number } | null = null;
  #attempt = 0;
  #reconnectNow = false;
  #connecting: AbortController | null = null;
  #wake: (() => void) | null = null;
  #heartbeat: NodeJS.Timeout;
  #chain: Promise<unknown> = Promise.resolve();
  #busy = 0;
  #resolveReady: (a: Announced) => void = swallow;
  #rejectReady: (err: Error) => void = swallow;
  #isReady = false;
  #loop: Promise<void>;
  #closing: Promise<void> | null = null;

  constructor(o: ResolvedAgentOptions) {
    this.#o = o;
    this.#target = { address: o.address, port: o.port };
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.ready.catch(swallow); // a caller who never awaits ready must not see an unhandled rejection
    this.#heartbeat = setInterval(() => this.#tick(), o.heartbeatMs);
    this.#loop = this.#run().catch((err: unknown) => this.#emit({ type: 'error', during: 'connect', error: err as Error }));
  }

  get current(): { address: string; port: number } | null {
    return this.#current === null ? null : { ...this.#current };
  }

  move(to: { address?: string; port?: number }, options?: { timeoutMs?: number }): Promise<Announced> {
    try {
      if (to === null || typeof to !== 'object') throw expected('{ address?, port? }', 'move()', to, TypeError);
      checkKeys(to, ['address', 'port'], 'move()');
      const address = to.address === undefined ? this.#target.address : checkAddress(to.address, 'address');
      const port = to.port === undefined ? this.#target.port : checkInt(to.port, 'port', 1, 65535);
      const timeoutMs = this.#timeout(options);
      this.#usable('move');
      this.#target = { address, port };
      this.#announced = false; // until acked, every tick retries the new target
      return this.#exclusive(() => this.#announce(timeoutMs));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  drain(options?: { timeoutMs?: number }): Promise<AckInfo> {
    try {
      const timeoutMs = this.#timeout(options);
      this.#usable('drain');
      this.#draining = true;
      return this.#exclusive(async () => {
        try {
          return await this.#send({ type: 'drain', id: this.#o.id }, timeoutMs);
        } catch (err) {
          if (!(err instanceof ControlError && err.code === 'unknown_backend')) throw err;
          // The balancer forgot us (restarted): announce, then drain again.
          await this.#announce(timeoutMs);
          return await this.#send({ type: 'drain', id: this.#o.id }, timeoutMs);
        }
      });
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  leave(options?: { timeoutMs?: number }): Promise<AckInfo> {
    try {
      const timeoutMs = this.#timeout(options);
      this.#usable('leave');
      return this.#exclusive(async () => {
        const ack = await this.#send({ type: 'leave', id: this.#o.id }, timeoutMs);
        if (this.#life === 'running') this.#life = 'left';
        clearInterval(this.#heartbeat);
        this.#current = null;
        this.#announced = false;
        return ack;
      });
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  reconnect(): void {
    if (this.#life !== 'running') return;
    this.#reconnectNow = true;
    this.#attempt = 0;
    this.#connecting?.abort();
    this.#client?.terminate();
    this.#wake?.();
  }

  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    this.#life = 'closed';
    clearInterval(this.#heartbeat);
    if (!this.#isReady) {
      this.#isReady = true;
      this.#rejectReady(new ControlError('agent_closed', 'the agent was closed before its first announce was acked'));
    }
    this.#connecting?.abort();
    this.#wake?.();
    const client = this.#client;
    this.#closing = (async () => {
      if (client !== null) await client.close(this.#o.replyTimeoutMs);
      await this.#loop;
    })();
    return this.#closing;
  }

  // --- the connection loop -------------------------------------------------------------------

  async #run(): Promise<void> {
    while (this.#lifeNow() === 'running') {
      this.#reconnectNow = false; // a reconnect() that cut the last backoff short is done
      this.#connecting = new AbortController();
      let client: ControlClient;
      try {
        client = await ControlClient.connect({
          url: this.#o.url,
          pool: this.#o.pool,
          key: this.#o.key,
          replyTimeoutMs: this.#o.replyTimeoutMs,
          signal: this.#connecting.signal,
          onDroppedFrame: (error) => this.#emit({ type: 'error', during: 'frame', error }),
          ...(this.#o.onMessage === undefined ? {} : { onMessage: this.#o.onMessage }),
        });
      } catch (err) {
        if (this.#lifeNow() !== 'running') return;
        const retryInMs = this.#nextDelay();
        if (!(err instanceof ControlError && err.code === 'connect_aborted')) this.#emit({ type: 'error', during: 'connect', error: err as Error, retryInMs });
        await this.#sleep(retryInMs);
        continue;
      } finally {
        this.#connecting = null;
      }
      if (this.#lifeNow() !== 'running') {
        client.terminate();
        return;
      }
      this.#client = client;
      this.#announced = false;
      this.#emit({ type: 'connected', url: this.#o.url, localAddress: client.localAddress });
      this.#exclusive(() => this.#establish()).catch(swallow);
      const reason = await client.closed;
      this.#client = null;
      this.#announced = false;
      const life = this.#lifeNow();
      if (life === 'closed') return;
      if (life === 'left') {
        this.#emit({ type: 'disconnected', reason, retryInMs: null });
        return;
      }
      const retryInMs = this.#nextDelay();
      this.#emit({ type: 'disconnected', reason, retryInMs });
      await this.#sleep(retryInMs);
    }
  }

  /** Exponential from minMs, capped at maxMs, jittered down by up to half; 0 after reconnect(). */
  #nextDelay(): number {
    if (this.#reconnectNow) {
      this.#reconnectNow = false;
      return 0;
    }
    const { minMs, maxMs } = this.#o.reconnect;
    const full = Math.min(maxMs, minMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.round(full / 2 + (Math.random() * full) / 2);
  }

  /** Waits `ms`, or less if reconnect() or close() wakes it. */
  #sleep(ms: number): Promise<void> {
    if (ms === 0 || this.#life !== 'running') return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  // --- requests ------------------------------------------------------------------------------

  /** One request at a time, in call order, so a re-announce never overtakes a move. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.#busy++;
    const run = this.#chain.then(fn).finally(() => this.#busy--);
    this.#chain = run.catch(swallow);
    return run;
  }

  /** Heartbeat tick: announce if the balancer does not have our latest announce, else heartbeat. */
  #tick(): void {
    if (this.#life !== 'running' || this.#client === null || this.#busy > 0) return;
    const step = this.#announced ? () => this.#sendHeartbeat() : () => this.#establish();
    this.#exclusive(step).catch(swallow);
  }

  async #sendHeartbeat(): Promise<void> {
    try {
      await this.#send({ type: 'heartbeat', id: this.#o.id });
    } catch (err) {
      // The balancer restarted or dropped us: announce again now, not on the next tick.
      if (err instanceof ControlError && err.code === 'unknown_backend') await this.#establish();
    }
  }

  /** Announce, then drain again if we were draining: the state the application asked for. */
  async #establish(): Promise<void> {
    await this.#announce();
    if (this.#draining) await this.#send({ type: 'drain', id: this.#o.id });
  }

  async #announce(timeoutMs?: number): Promise<Announced> {
    const client = this.#requireClient('announce');
    const address = this.#target.address ?? client.localAddress;
    const { port } = this.#target;
    const ack = await this.#send({ type: 'announce', id: this.#o.id, address, port, weight: this.#o.weight }, timeoutMs);
    const announced: Announced = { state: ack.state, address: ack.address ?? address, port: ack.port ?? port };
    if (client === this.#client && this.#target.port === port && (this.#target.address ?? address) === address) this.#announced = true;
    this.#current = { address: announced.address, port: announced.port };
    this.#attempt = 0;
    this.#emit({ type: 'announced', ...announced });
    if (!this.#isReady) {
      this.#isReady = true;
      this.#resolveReady(announced);
    }
    return announced;
  }

  /** Sends on the current connection; reports failures through onEvent and rethrows them. */
  async #send(req: AgentRequest, timeoutMs?: number): Promise<AckInfo> {
    const client = this.#requireClient(req.type);
    try {
      return await client.request(req, timeoutMs);
    } catch (err) {
      if (req.type === 'announce') this.#announced = false;
      if (err instanceof ControlError && err.refused) {
        this.#emit({ type: 'refused', request: req.type, code: err.code, reason: err.reason });
      } else {
        this.#emit({ type: 'error', during: req.type, error: err as Error });
        // No reply: the key may be wrong or the connection half-open. Start over on a new one.
        if (err instanceof ControlError && err.code === 'reply_timeout') client.terminate();
      }
      throw err;
    }
  }

  #requireClient(request: AgentRequestType): ControlClient {
    if (this.#life === 'closed') throw new ControlError('agent_closed', `cannot send ${request}: the agent is closed`);
    const client = this.#client;
    if (client === null || !client.isOpen) throw new ControlError('not_connected', `cannot send ${request}: not connected to ${this.#o.url}`);
    return client;
  }

  #usable(request: string): void {
    if (this.#life === 'closed') throw new ControlError('agent_closed', `cannot ${request}: the agent is closed`);
    if (this.#life === 'left') throw new ControlError('agent_left', `cannot ${request}: the agent has left the pool`);
  }

  #timeout(options: { timeoutMs?: number } | undefined): number {
    if (options === undefined) return this.#o.replyTimeoutMs;
    if (options === null || typeof options !== 'object') throw expected('{ timeoutMs? }', 'options', options, TypeError);
    return options.timeoutMs === undefined ? this.#o.replyTimeoutMs : checkInt(options.timeoutMs, 'timeoutMs', 1, MAX_TIMEOUT_MS);
  }

  #emit(event: AgentEvent): void {
    if (this.#life === 'closed') return;
    try {
      this.#o.onEvent(event);
    } catch {
      // The application's handler failed; the agent must keep running regardless.
    }
  }
}
