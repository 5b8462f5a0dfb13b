// The agents' control channel: a WebSocket at /control on the admin listener. Each binary
// message is one frame of src/control/frames.ts, MACed under its pool's agent key and checked
// (natively, in constant time) before anything in it is decoded; then its timestamp must be
// within the window and its nonce unseen in it. Good frames go to the registry and are
// answered (MACed) once every worker routes by the change. Bad frames are dropped and counted;
// a connection that keeps sending them, floods, or never authenticates is closed.
import { randomBytes } from 'node:crypto';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_socket_context_t } from '@trufflesuite/uws-js-unofficial';
import type { Logger } from 'pino';
import { FrameError, MAX_FRAME_BYTES, NONCE_BYTES, encodeFrame, framePool, openFrame, type BalancerMessage } from '../control/frames.js';
import { hmacSha256, hmacVerify } from '../native/index.js';
import type { Registry, RegistryResult } from './registry.js';
import type { GrantToPush } from '../protocol/worker-messages.js';

/** Bad frames a connection may send before it is closed. */
const MAX_BAD_FRAMES = 5;
/** A connection must send one good frame within this. */
const AUTH_DEADLINE_MS = 10_000;
/** Frames per second per connection (token bucket), and the burst. */
const RATE_PER_SEC = 20;
const BURST = 40;
const MAX_CONNECTIONS = 1024;
/** Nonces remembered (2 × window); past this, frames are refused rather than the memory grown. */
const MAX_NONCES = 200_000;

interface Conn {
  closed: boolean;
  authed: boolean;
  openedAt: number;
  bad: number;
  tokens: number;
  refilledAt: number;
  remote: string;
}

interface ControlDeps {
  keys: ReadonlyMap<string, Buffer>;
  registry: Registry;
  /** Sends the current snapshot to workers; resolves once all applied it. */
  publish(): Promise<void>;
  windowMs: number;
  log: Logger;
  /** A backend's agent gained or lost its control connection (grants can reach it, or not). */
  onConnection?: (pool: string, id: string, connected: boolean) => void;
  now?: () => number;
}

export class ControlServer {
  /** Frames by outcome (tether_control_frames_total{result}). */
  readonly frames: Record<string, number> = {};
  private readonly nonces = new Map<string, number>();
  private readonly conns = new Set<WebSocket<Conn>>();
  /** The connection each backend's agent speaks on (by `pool|id`): where its grants go. */
  private readonly agents = new Map<string, { ws: WebSocket<Conn>; pool: string; id: string }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly d: ControlDeps) {
    this.sweeper = setInterval(() => this.sweep(), 1_000);
    this.sweeper.unref();
  }

  private now(): number {
    return (this.d.now ?? Date.now)();
  }

  private count(result: string): void {
    this.frames[result] = (this.frames[result] ?? 0) + 1;
  }

  mount(app: TemplatedApp): void {
    app.ws<Conn>('/control', {
      maxPayloadLength: MAX_FRAME_BYTES,
      idleTimeout: 120,
      maxBackpressure: 256 * 1024,
      closeOnBackpressureLimit: 1,
      compression: 0,
      upgrade: (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
        if (this.conns.size >= MAX_CONNECTIONS) {
          this.count('rate_limited');
          res.writeStatus('503 Service Unavailable').end(`too many control connections (${MAX_CONNECTIONS})\n`);
          return;
        }
        const now = this.now();
        const remote = Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
        const conn: Conn = { closed: false, authed: false, openedAt: now, bad: 0, tokens: BURST, refilledAt: now, remote };
        res.upgrade(conn, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
      },
      open: (ws) => {
        this.conns.add(ws);
      },
      message: (ws, message, isBinary) => {
        // The ArrayBuffer is only valid during this call: copy before anything async.
        this.onFrame(ws, Buffer.from(message.slice(0)), isBinary);
      },
      close: (ws) => {
        ws.getUserData().closed = true;
        this.conns.delete(ws);
        for (const [k, a] of this.agents) {
          if (a.ws !== ws) continue;
          this.agents.delete(k);
          this.d.onConnection?.(a.pool, a.id, false);
        }
      },
    });
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const ws of this.conns) if (!ws.getUserData().closed) ws.end(1001, 'balancer stopping');
  }

  /** Closes connections that never authenticated; forgets nonces past the replay window. */
  private sweep(): void {
    const now = this.now();
    for (const ws of this.conns) {
      const c = ws.getUserData();
      if (!c.authed && !c.closed && now - c.openedAt > AUTH_DEADLINE_MS) this.drop(ws, 1008, 'no authenticated frame in time');
    }
    for (const [n, until] of this.nonces) if (until <= now) this.nonces.delete(n);
  }

  private drop(ws: WebSocket<Conn>, code: number, why: string): void {
    const c = ws.getUserData();
    if (c.closed) return;
    c.closed = true;
    this.d.log.warn({ event: 'control_closed', remote: c.remote, why }, `control connection from ${c.remote} closed: ${why}`);
    ws.end(code, why);
  }

  /**
   * A frame we could not accept: counted. A strike (a frame we cannot trust: unauthenticated,
   * garbled, stale or replayed) counts towards closing the connection; an authenticated agent's
   * refused request (conflict, unknown backend, bad field) is only answered.
   */
  private reject(ws: WebSocket<Conn>, result: string, why: string, strike = true): void {
    this.count(result);
    const c = ws.getUserData();
    if (!strike) return;
    c.bad++;
    this.d.log.warn({ event: 'control_frame_dropped', remote: c.remote, result, why }, `control frame dropped: ${why}`);
    if (c.bad >= MAX_BAD_FRAMES) this.drop(ws, 1008, `${c.bad} bad frames`);
  }

  private onFrame(ws: WebSocket<Conn>, frame: Buffer, isBinary: boolean): void {
    const c = ws.getUserData();
    if (c.closed) return;
    const now = this.now();
    c.tokens = Math.min(BURST, c.tokens + ((now - c.refilledAt) * RATE_PER_SEC) / 1000);
    c.refilledAt = now;
    if (c.tokens < 1) {
      this.count('rate_limited');
      this.drop(ws, 1008, `more than ${RATE_PER_SEC} frames per second`);
      return;
    }
    c.tokens -= 1;
    if (!isBinary) return this.reject(ws, 'malformed', 'text message (frames are binary)');
    let pool: string;
    let msg: ReturnType<typeof openFrame>;
    let key: Buffer;
    try {
      pool = framePool(frame);
      const k = this.d.keys.get(pool) ?? this.d.keys.get('*');
      if (!k) return this.reject(ws, 'unknown_pool', `no agent key for pool '${pool}'`);
      key = k;
      msg = openFrame('A', frame, key, hmacVerify);
    } catch (err) {
      if (err instanceof FrameError) return this.reject(ws, err.problem, err.message);
      throw err;
    }
    // Authenticated from here on: refusals are answered (MACed) so the agent learns why.
    c.authed = true;
    const refuse = (result: string, code: string, reason: string, strike = false) => {
      this.reject(ws, result, reason, strike);
      this.reply(ws, pool, key, { type: 'refused', ref: msg.nonce, ts: now, nonce: randomBytes(NONCE_BYTES), code, reason });
    };
    if (Math.abs(now - msg.ts) > this.d.windowMs) return refuse('stale', 'stale', `frame stamped ${Math.round((now - msg.ts) / 1000)} s from the balancer's clock (window ±${this.d.windowMs / 1000} s)`, true);
    const nonce = `${pool}|${Buffer.from(msg.nonce).toString('hex')}`;
    if (this.nonces.has(nonce)) return refuse('replayed', 'replayed', 'nonce already seen: a replayed frame', true);
    if (this.nonces.size >= MAX_NONCES) return refuse('rate_limited', 'rate_limited', 'too many frames in the replay window');
    this.nonces.set(nonce, now + 2 * this.d.windowMs);
    if (!['announce', 'heartbeat', 'drain', 'leave'].includes(msg.type)) return refuse('unknown_type', 'invalid', `unknown message type '${msg.type.slice(0, 32)}'`);
    if (msg.pool !== pool) return refuse('invalid', 'invalid', `body names pool ${JSON.stringify(msg.pool)} but the frame is for '${pool}'`);
    if (typeof msg.id !== 'string') return refuse('invalid', 'invalid', 'expected a string id');
    const id = msg.id;
    let r: RegistryResult;
    switch (msg.type) {
      case 'announce':
        if (typeof msg.address !== 'string' || typeof msg.port !== 'number' || (msg.weight !== undefined && typeof msg.weight !== 'number')) {
          return refuse('invalid', 'invalid', 'announce needs a string address, a numeric port and a numeric weight');
        }
        r = this.d.registry.announce({ pool, id, address: msg.address, port: msg.port, weight: msg.weight as number | undefined }, 'agent');
        break;
      case 'heartbeat':
        r = this.d.registry.heartbeat(pool, id);
        break;
      case 'drain':
        this.d.registry.heartbeat(pool, id);
        r = this.d.registry.drain(pool, id, null, 'agent');
        break;
      default:
        r = this.d.registry.remove(pool, id, 'agent');
        break;
    }
    if (!r.ok) return refuse(r.code === 'address_conflict' ? 'conflict' : 'refused', r.code, r.reason);
    this.count('ok');
    this.track(ws, pool, id, msg.type !== 'leave');
    c.bad = 0;
    const ack: BalancerMessage = { type: 'ack', ref: msg.nonce, ts: now, nonce: randomBytes(NONCE_BYTES), state: r.state, address: r.entry.address, port: r.entry.port };
    if (r.state === 'added' || r.state === 'updated' || r.state === 'removed') {
      // Acknowledge once every worker routes by it: the agent may then act on it (close its old listener).
      void this.d.publish().then(
        () => this.reply(ws, pool, key, { ...ack, ts: this.now() }),
        (err: Error) => this.d.log.error({ err: err.message }, 'publishing a registry change failed'),
      );
    } else this.reply(ws, pool, key, ack);
  }

  /** Remembers (or forgets, on leave) which connection speaks for pool/id. */
  private track(ws: WebSocket<Conn>, pool: string, id: string, on: boolean): void {
    const k = `${pool}|${id}`;
    const had = this.agents.get(k);
    if (on) {
      this.agents.set(k, { ws, pool, id });
      // Every time, not only on change: the backend may have been removed and re-added (new slot).
      this.d.onConnection?.(pool, id, true);
    } else if (had) {
      this.agents.delete(k);
      this.d.onConnection?.(pool, id, false);
    }
  }

  /**
   * Sends authorization grants, each to its pool/id over that agent's connection, in order.
   * Grants for the same connection go out corked (one write for all); the frames' nonces come
   * from one random draw. Returns the grants that could not be sent (no connection).
   */
  pushGrants(grants: readonly GrantToPush[]): GrantToPush[] {
    const undelivered: GrantToPush[] = [];
    // An agent's connection may speak for several IDs (and pools, each with its key).
    const byConnection = new Map<WebSocket<Conn>, { grant: GrantToPush; key: Buffer }[]>();
    for (const g of grants) {
      const a = this.agents.get(`${g.pool}|${g.id}`);
      const key = this.d.keys.get(g.pool) ?? this.d.keys.get('*');
      if (!a || a.ws.getUserData().closed || !key) {
        undelivered.push(g);
        continue;
      }
      let batch = byConnection.get(a.ws);
      if (!batch) byConnection.set(a.ws, (batch = []));
      batch.push({ grant: g, key });
    }
    const nonces = randomBytes(NONCE_BYTES * (grants.length - undelivered.length));
    let n = 0;
    const ts = this.now();
    for (const [ws, batch] of byConnection) {
      ws.cork(() => {
        for (const { grant: g, key } of batch) {
          const nonce = nonces.subarray(n, (n += NONCE_BYTES));
          this.reply(ws, g.pool, key, { type: 'grant', ts, nonce, f: g.f, box: g.box });
        }
      });
    }
    return undelivered;
  }

  private reply(ws: WebSocket<Conn>, pool: string, key: Buffer, msg: BalancerMessage): void {
    if (ws.getUserData().closed) return;
    ws.send(encodeFrame('B', pool, key, msg, hmacSha256), true);
  }
}
