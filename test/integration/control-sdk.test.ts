// The control-channel SDK (src/control/sdk.ts) and `tether agent` (src/control/agent.ts) against
// a small fake balancer: a WebSocketServer on loopback that verifies frames with frames.ts and
// answers ack/refused. Tests wait for events (agent events, server messages), never for time.
// The agent's flags, durations and interface snapshots, which need no balancer, are
// test/unit/control-agent.test.ts.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { NetworkInterfaceInfo } from 'node:os';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';

import { runAgent } from '../../src/control/agent.js';
import { encodeFrame, openFrame } from '../../src/control/frames.js';
import { ControlClient, ControlError, startAgent, type Agent, type AgentEvent, type AgentOptions } from '../../src/control/sdk.js';
import { referenceHmacSha256, referenceHmacVerify } from '../../src/native/reference.js';

const POOL = 'web';
const KEY = randomBytes(32);
const WAIT_MS = 5_000;

/** An append-only log whose entries can be awaited (from an index, so nothing is missed). */
class EventLog<T> {
  readonly items: T[] = [];
  #waiters: { from: number; match: (item: T) => boolean; resolve: (item: T) => void }[] = [];

  push(item: T): void {
    this.items.push(item);
    const index = this.items.length - 1;
    this.#waiters = this.#waiters.filter((w) => {
      if (index < w.from || !w.match(item)) return true;
      w.resolve(item);
      return false;
    });
  }

  /** The first entry at or after `from` matching `match`; fails after WAIT_MS naming `what`. */
  waitFor<U extends T>(what: string, match: (item: T) => item is U, from?: number): Promise<U>;
  waitFor(what: string, match: (item: T) => boolean, from?: number): Promise<T>;
  waitFor(what: string, match: (item: T) => boolean, from = 0): Promise<T> {
    const found = this.items.slice(from).find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out waiting for ${what}; saw ${JSON.stringify(this.items.slice(from), (_k, v: unknown) => (v instanceof Error ? v.message : v))}`));
      }, WAIT_MS);
      const waiter = {
        from,
        match,
        resolve: (item: T) => {
          clearTimeout(timer);
          resolve(item);
        },
      };
      this.#waiters.push(waiter);
    });
  }
}

type Msg = Record<string, unknown> & { type: string; ts: number; nonce: Uint8Array };
interface Received {
  conn: number;
  msg: Msg;
  remoteAddress: string;
}
type Reply = { type: 'ack'; state: string; address?: string; port?: number } | { type: 'refused'; code: string; reason: string } | null;

/** The balancer's side of /control, reduced to what the agent needs to be tested against. */
class FakeBalancer {
  readonly received = new EventLog<Received>();
  readonly connections = new EventLog<{ conn: number; socket: WebSocket; remoteAddress: string }>();
  readonly closes = new EventLog<number>();
  readonly dropped: unknown[] = [];
  readonly backends = new Map<string, { address: string; port: number; state: string }>();
  /** Replaces the default answer; return undefined to fall back to it, null for no answer. */
  override: ((m: Msg) => Reply | undefined) | null = null;
  replyKey: Uint8Array = KEY;
  readonly #server: WebSocketServer;

  private constructor(server: WebSocketServer) {
    this.#server = server;
  }

  static async start(): Promise<FakeBalancer> {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/control' });
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    const fake = new FakeBalancer(server);
    server.on('connection', (socket, req) => {
      const conn = fake.connections.items.length + 1;
      const remoteAddress = req.socket.remoteAddress ?? '';
      fake.connections.push({ conn, socket, remoteAddress });
      socket.on('close', () => fake.closes.push(conn));
      socket.on('message', (data, isBinary) => {
        let msg: Msg;
        try {
          if (!isBinary) throw new Error('text message');
          msg = openFrame('A', data as Buffer, KEY, referenceHmacVerify);
        } catch (err) {
          fake.dropped.push(err);
          return;
        }
        fake.received.push({ conn, msg, remoteAddress });
        const custom = fake.override?.(msg);
        const reply = custom === undefined ? fake.answer(msg) : custom;
        if (reply === null) return;
        const frame = encodeFrame('B', POOL, fake.replyKey, { ...reply, ref: msg.nonce, ts: Date.now(), nonce: randomBytes(16) }, referenceHmacSha256);
        socket.send(frame, { binary: true });
      });
    });
    return fake;
  }

  get url(): string {
    const { port } = this.#server.address() as { port: number };
    return `ws://127.0.0.1:${port}/control`;
  }

  /** What a balancer with an empty pool 'web' answers. */
  answer(m: Msg): Reply {
    const id = String(m.id);
    if (m.pool !== POOL) return { type: 'refused', code: 'unknown_pool', reason: `no pool ${String(m.pool)}` };
    if (m.type === 'announce') {
      const b = { address: String(m.address), port: Number(m.port), state: 'up' };
      this.backends.set(id, b);
      return { type: 'ack', ...b };
    }
    const b = this.backends.get(id);
    if (b === undefined) return { type: 'refused', code: 'unknown_backend', reason: `no backend ${id}` };
    if (m.type === 'drain') b.state = 'draining';
    if (m.type === 'leave') this.backends.delete(id);
    return { type: 'ack', state: m.type === 'leave' ? 'gone' : b.state };
  }

  /** Drops every connection without a closing handshake. */
  dropAll(): void {
    for (const c of this.#server.clients) c.terminate();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function balancer(): Promise<FakeBalancer> {
  const fake = await FakeBalancer.start();
  cleanups.push(() => fake.close());
  return fake;
}

function agentFor(fake: FakeBalancer, options: Partial<AgentOptions> = {}): { agent: Agent; events: EventLog<AgentEvent> } {
  const events = new EventLog<AgentEvent>();
  const agent = startAgent({
    url: options.url ?? fake.url,
    pool: POOL,
    id: 'app1',
    key: KEY,
    port: 8000,
    heartbeatMs: 20,
    replyTimeoutMs: 2_000,
    reconnect: { minMs: 5, maxMs: 20 },
    onEvent: (e) => events.push(e),
    ...options,
  });
  cleanups.push(() => agent.close());
  return { agent, events };
}

const ofType =
  <K extends AgentEvent['type']>(type: K) =>
  (e: AgentEvent): e is Extract<AgentEvent, { type: K }> =>
    e.type === type;
const msgOf = (type: string, conn?: number) => (r: Received) => r.msg.type === type && (conn === undefined || r.conn === conn);

async function rejection(promise: Promise<unknown>): Promise<ControlError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ControlError);
    return err as ControlError;
  }
  throw new Error('expected a rejection');
}

describe('startAgent', () => {
  it("announces the control connection's local address when none is given", async () => {
    const fake = await balancer();
    const { agent, events } = agentFor(fake, { weight: 7 });
    expect(agent.current).toBeNull();
    const ready = await agent.ready;
    const { msg, remoteAddress } = await fake.received.waitFor('announce', msgOf('announce'));
    expect(remoteAddress).toBe('127.0.0.1');
    expect(msg).toMatchObject({ type: 'announce', id: 'app1', pool: POOL, address: remoteAddress, port: 8000, weight: 7 });
    expect(Math.abs(msg.ts - Date.now())).toBeLessThan(5_000);
    expect(ready).toEqual({ state: 'up', address: remoteAddress, port: 8000 });
    expect(agent.current).toEqual({ address: remoteAddress, port: 8000 });
    const connected = await events.waitFor('connected', ofType('connected'));
    expect(connected).toEqual({ type: 'connected', url: fake.url, localAddress: remoteAddress });
    expect(events.items.filter(ofType('announced'))[0]).toEqual({ type: 'announced', state: 'up', address: remoteAddress, port: 8000 });
  });

  it('announces an explicit address as given', async () => {
    const fake = await balancer();
    const { agent } = agentFor(fake, { address: '192.0.2.10' });
    expect(await agent.ready).toEqual({ state: 'up', address: '192.0.2.10', port: 8000 });
  });

  it('heartbeats on the same connection, each with a fresh nonce', async () => {
    const fake = await balancer();
    const { agent } = agentFor(fake);
    await agent.ready;
    const first = await fake.received.waitFor('a heartbeat', msgOf('heartbeat'));
    const second = await fake.received.waitFor('a second heartbeat', msgOf('heartbeat'), fake.received.items.indexOf(first) + 1);
    for (const { msg, conn } of [first, second]) {
      expect(conn).toBe(1);
      expect(msg).toMatchObject({ type: 'heartbeat', id: 'app1', pool: POOL });
    }
    const nonces = new Set(fake.received.items.map((r) => Buffer.from(r.msg.nonce).toString('hex')));
    expect(nonces.size).toBe(fake.received.items.length);
  });

  it("re-announces when a heartbeat is refused as 'unknown_backend' (the balancer restarted)", async () => {
    const fake = await balancer();
    const { agent, events } = agentFor(fake);
    await agent.ready;
    const mark = fake.received.items.length;
    fake.backends.clear();
    const refused = await events.waitFor('a refused heartbeat', (e) => e.type === 'refused' && e.request === 'heartbeat');
    expect(refused).toMatchObject({ code: 'unknown_backend', reason: 'no backend app1' });
    const again = await fake.received.waitFor('a re-announce', msgOf('announce'), mark);
    expect(again.conn).toBe(1);
    expect(fake.backends.get('app1')).toMatchObject({ port: 8000 });
    // The re-announce came straight after the refusal, not a heartbeat tick later.
    const after = fake.received.items.slice(mark);
    const refusedAt = after.findIndex((r) => r.msg.type === 'heartbeat');
    expect(after[refusedAt + 1]?.msg.type).toBe('announce');
  });

  it('reconnects and re-announces after the balancer drops the connection', async () => {
    // The jitter's random draw pinned at 0.5: the first delay after an acked announce is the
    // base one, minMs = 5, jittered down by a quarter: round(5/2 + 0.5 * 5/2) = round(3.75) = 4.
    // (A backoff that did not restart at minMs after the ack would give round(7.5) = 8 or more.)
    const random = vi.spyOn(Math, 'random').mockReturnValue(0.5);
    onTestFinished(() => random.mockRestore());
    const fake = await balancer();
    const { agent, events } = agentFor(fake, { reconnect: { minMs: 5, maxMs: 20 } });
    await agent.ready;
    fake.dropAll();
    const disconnected = await events.waitFor('disconnected', ofType('disconnected'));
    expect(disconnected.retryInMs).toBe(4);
    await fake.received.waitFor('an announce on a second connection', msgOf('announce', 2));
    await events.waitFor('a second announced', ofType('announced'), events.items.indexOf(disconnected));
    expect(fake.connections.items).toHaveLength(2);
  });

  it("reports 'address_conflict' and retries the announce on later heartbeat ticks, not in a loop", async () => {
    const fake = await balancer();
    let conflicts = 3;
    fake.override = (m) => (m.type === 'announce' && conflicts-- > 0 ? { type: 'refused', code: 'address_conflict', reason: '10.0.0.9:8000 is app2' } : undefined);
    const heartbeatMs = 40;
    const { agent, events } = agentFor(fake, { heartbeatMs });
    const ready = await agent.ready;
    expect(ready.state).toBe('up');
    const refusals = events.items.filter(ofType('refused'));
    expect(refusals).toHaveLength(3);
    expect(refusals[0]).toEqual({ type: 'refused', request: 'announce', code: 'address_conflict', reason: '10.0.0.9:8000 is app2' });
    const announces = fake.received.items.filter(msgOf('announce'));
    expect(announces).toHaveLength(4);
    // One retry per tick (the first follows the connect-time announce by less than a tick): a
    // tight loop would send these within a few milliseconds of each other.
    for (let i = 2; i < announces.length; i++) expect(announces[i]!.msg.ts - announces[i - 1]!.msg.ts).toBeGreaterThanOrEqual(heartbeatMs * 0.75);
    // No heartbeat while the balancer does not have us: the tick announces instead.
    const firstHeartbeat = fake.received.items.findIndex(msgOf('heartbeat'));
    expect(firstHeartbeat === -1 || firstHeartbeat > fake.received.items.indexOf(announces[3]!)).toBe(true);
  });

  it('moves to a new port once the balancer acks, and keeps announcing there', async () => {
    const fake = await balancer();
    const { agent, events } = agentFor(fake);
    const first = await agent.ready;
    const moved = await agent.move({ port: 9001 });
    expect(moved).toEqual({ state: 'up', address: first.address, port: 9001 });
    expect(agent.current).toEqual({ address: first.address, port: 9001 });
    expect(fake.backends.get('app1')).toMatchObject({ port: 9001 });
    const mark = events.items.length;
    fake.dropAll();
    await events.waitFor('announced after reconnect', ofType('announced'), mark);
    expect(fake.received.items.filter(msgOf('announce', 2)).map((r) => r.msg.port)).toEqual([9001]);
  });

  it('drains (and drains again after a re-announce), then leaves', async () => {
    const fake = await balancer();
    const { agent } = agentFor(fake);
    await agent.ready;
    expect(await agent.drain()).toEqual({ state: 'draining' });
    const mark = fake.received.items.length;
    fake.backends.clear();
    await fake.received.waitFor('a re-announce', msgOf('announce'), mark);
    await fake.received.waitFor('drain after the re-announce', msgOf('drain'), mark);
    expect(fake.backends.get('app1')?.state).toBe('draining');
    expect(await agent.leave()).toEqual({ state: 'gone' });
    expect(fake.backends.has('app1')).toBe(false);
    expect(agent.current).toBeNull();
    expect((await rejection(agent.drain())).code).toBe('agent_left');
  });

  it('rejects a refused request with the balancer code', async () => {
    const fake = await balancer();
    fake.override = (m) => (m.type === 'drain' ? { type: 'refused', code: 'rate_limited', reason: 'slow down' } : undefined);
    const { agent } = agentFor(fake);
    await agent.ready;
    const err = await rejection(agent.drain());
    expect(err).toMatchObject({ code: 'rate_limited', refused: true, reason: 'slow down' });
    expect(err.message).toBe('the balancer refused drain: rate_limited (slow down)');
  });

  it('fails the announce at the reply deadline when the balancer never answers, then reconnects', async () => {
    const fake = await balancer();
    fake.override = () => null;
    const { agent, events } = agentFor(fake, { replyTimeoutMs: 50 });
    const error = await events.waitFor('a reply timeout', ofType('error'));
    expect(error.during).toBe('announce');
    expect(error.error).toMatchObject({ code: 'reply_timeout', message: expect.stringContaining('within 50 ms') });
    // No answer may mean a half-open connection: the agent starts over on a new one.
    await fake.received.waitFor('an announce on a new connection', msgOf('announce', 2));
    expect((await rejection(agent.move({ port: 8001 }, { timeoutMs: 30 }))).code).toMatch(/^(reply_timeout|not_connected)$/);
  });

  it('drops replies it cannot authenticate (reported), so the request runs into its deadline', async () => {
    const fake = await balancer();
    fake.replyKey = randomBytes(32);
    const { events } = agentFor(fake, { replyTimeoutMs: 50 });
    const dropped = await events.waitFor('a dropped frame', (e) => e.type === 'error' && e.during === 'frame');
    expect((dropped as { error: Error }).error).toMatchObject({ name: 'FrameError', problem: 'bad_mac' });
    const timeout = await events.waitFor('a reply timeout', (e) => e.type === 'error' && e.during === 'announce');
    expect((timeout as { error: Error }).error).toMatchObject({ code: 'reply_timeout' });
  });

  it('hands unsolicited authenticated frames to onMessage; stray replies and forged frames are still dropped', async () => {
    const fake = await balancer();
    const pushed = new EventLog<Record<string, unknown>>();
    const { agent, events } = agentFor(fake, { heartbeatMs: 60_000, onMessage: (m) => pushed.push(m) });
    await agent.ready;
    const { socket } = await fake.connections.waitFor('the connection', () => true);
    const push = (msg: object, key: Uint8Array = KEY): void =>
      socket.send(encodeFrame('B', POOL, key, { ts: Date.now(), nonce: randomBytes(16), ...msg }, referenceHmacSha256), { binary: true });
    const f = randomBytes(16);
    const box = randomBytes(64);
    push({ type: 'ack', ref: randomBytes(16), state: 'up' }); // answers nothing we sent
    push({ type: 'grant', f, box }, randomBytes(32)); // not under the pool key
    push({ type: 'grant', f, box });
    const grant = await pushed.waitFor('the grant', (m) => m.type === 'grant');
    expect(grant).toMatchObject({ type: 'grant', f, box });
    expect(pushed.items).toHaveLength(1);
    // Frames are handled in order, so both drops were reported before the grant arrived.
    const dropped = events.items.filter(ofType('error')).map((e) => e.error);
    expect(dropped).toHaveLength(2);
    expect(dropped[0]).toMatchObject({ code: 'bad_reply', message: "dropped a 'ack' frame that answers no pending request" });
    expect(dropped[1]).toMatchObject({ name: 'FrameError', problem: 'bad_mac' });
  });

  it('reports what an onMessage handler throws and keeps running', async () => {
    const fake = await balancer();
    const { agent, events } = agentFor(fake, {
      heartbeatMs: 60_000,
      onMessage: () => {
        throw new Error('handler bug');
      },
    });
    await agent.ready;
    const { socket } = await fake.connections.waitFor('the connection', () => true);
    socket.send(encodeFrame('B', POOL, KEY, { type: 'grant', ts: Date.now(), nonce: randomBytes(16) }, referenceHmacSha256), { binary: true });
    const error = await events.waitFor('the handler error', ofType('error'));
    expect(error).toMatchObject({ during: 'frame', error: { message: 'handler bug' } });
    expect(await agent.drain()).toEqual({ state: 'draining' });
  });

  it('rejects ready and stops for good on close(), with no reconnect afterwards', async () => {
    const fake = await balancer();
    // A: connected and announced, closed by the application.
    const a = agentFor(fake, { id: 'a', reconnect: { minMs: 1, maxMs: 1 } });
    await a.agent.ready;
    // B: the clock. It reconnects no sooner than 10 ms after a drop; A, had it kept running,
    // would have been back within 1 ms of its own disconnect.
    const b = agentFor(fake, { id: 'b', reconnect: { minMs: 20, maxMs: 20 } });
    await b.agent.ready;
    expect(fake.connections.items).toHaveLength(2);

    await a.agent.close();
    await fake.closes.waitFor("A's connection closing", (conn) => conn === 1);
    const eventsAfterClose = a.events.items.length;
    fake.dropAll();
    await fake.received.waitFor("B's announce on its second connection", (r) => r.msg.type === 'announce' && r.msg.id === 'b' && r.conn === 3);
    expect(fake.connections.items).toHaveLength(3);
    expect(fake.received.items.filter((r) => r.msg.id === 'a' && r.conn !== 1)).toEqual([]);
    expect(a.events.items.length).toBe(eventsAfterClose);
    expect(a.agent.current).toEqual({ address: '127.0.0.1', port: 8000 });
    await a.agent.close(); // idempotent
  });

  it('close() during backoff cancels the reconnect', async () => {
    const fake = await balancer();
    const a = agentFor(fake, { id: 'a', reconnect: { minMs: 1, maxMs: 1 } });
    await a.agent.ready;
    const b = agentFor(fake, { id: 'b', reconnect: { minMs: 20, maxMs: 20 } });
    await b.agent.ready;
    // Close A the moment it reports the drop (its reconnect is then pending in the backoff).
    const closed = a.events.waitFor('A disconnected', ofType('disconnected')).then(() => a.agent.close());
    fake.dropAll();
    await closed;
    await fake.received.waitFor("B's re-announce", (r) => r.msg.type === 'announce' && r.msg.id === 'b' && r.conn > 2);
    expect(fake.connections.items.map((c) => c.conn)).toEqual([1, 2, 3]);
  });

  it('rejects ready when closed before the first announce is acked', async () => {
    const fake = await balancer();
    fake.override = () => null;
    const { agent } = agentFor(fake);
    await fake.received.waitFor('the announce', msgOf('announce'));
    const [err] = await Promise.all([rejection(agent.ready), agent.close()]);
    expect(err.code).toBe('agent_closed');
  });

  it('keeps retrying an unreachable balancer with backoff, reporting each failure', async () => {
    const fake = await balancer();
    const url = fake.url;
    await fake.close();
    const { events } = agentFor(fake, { url, reconnect: { minMs: 2, maxMs: 8 } });
    const failures: Extract<AgentEvent, { type: 'error' }>[] = [];
    for (let i = 0; i < 5; i++) failures.push(await events.waitFor(`connect failure ${i + 1}`, ofType('error'), events.items.indexOf(failures[i - 1]!) + 1));
    for (const f of failures) expect(f).toMatchObject({ during: 'connect', error: { code: 'connect_failed' } });
    expect(Math.max(...failures.map((f) => f.retryInMs!))).toBeLessThanOrEqual(8);
    expect(failures[4]!.retryInMs).toBeGreaterThanOrEqual(4); // capped at 8, jittered down at most by half
  });

  it('ignores an exception thrown by onEvent', async () => {
    const fake = await balancer();
    const { agent } = agentFor(fake, {
      onEvent: () => {
        throw new Error('application bug');
      },
    });
    expect((await agent.ready).state).toBe('up');
  });

  it('validates options up front, naming the option', () => {
    const good: AgentOptions = { url: 'ws://127.0.0.1:1/control', pool: POOL, id: 'app1', key: KEY, port: 8000 };
    const cases: [Partial<Record<keyof AgentOptions, unknown>> & Record<string, unknown>, string | RegExp][] = [
      [{ key: randomBytes(16) }, 'expected a 32-byte key for key but received 16 bytes'],
      [{ key: KEY.toString('hex') }, /^expected a 32-byte key \(Uint8Array\) for key but received string/],
      [{ url: 'http://lb:9090/control' }, 'expected a ws:// or wss:// URL for url but received string "http://lb:9090/control"'],
      [{ url: 'not a url' }, /for url/],
      [{ pool: 'bad pool' }, /for pool but received string "bad pool"/],
      [{ id: '' }, /for id but received string ""/],
      [{ port: 0 }, 'expected an integer 1-65535 for port but received number 0'],
      [{ port: 8000.5 }, /for port/],
      [{ port: '8000' }, /for port but received string "8000"/],
      [{ address: 'example.com' }, 'expected an IPv4 or IPv6 address for address but received string "example.com"'],
      [{ weight: 1001 }, 'expected an integer 0-1000 for weight but received number 1001'],
      [{ heartbeatMs: 5 }, /for heartbeatMs but received number 5/],
      [{ replyTimeoutMs: 0 }, /for replyTimeoutMs/],
      [{ reconnect: { minMs: 100, maxMs: 10 } }, 'expected reconnect.maxMs ≥ reconnect.minMs (100) but received 10'],
      [{ reconnect: { minMs: 100 } }, /for reconnect.maxMs but received undefined/],
      [{ onEvent: 'log' }, /expected a function for onEvent/],
      [{ onMessage: {} }, /expected a function for onMessage/],
      [{ heartbeat: 5000 }, /^unknown option 'heartbeat' in agent options/],
    ];
    for (const [change, message] of cases) {
      expect(() => startAgent({ ...good, ...change } as AgentOptions), JSON.stringify(Object.keys(change))).toThrow(message);
    }
  });
});

describe('ControlClient', () => {
  const clients: ControlClient[] = [];
  afterEach(() => {
    for (const c of clients.splice(0)) c.terminate();
  });
  async function connect(fake: FakeBalancer, replyTimeoutMs = 2_000): Promise<ControlClient> {
    const client = await ControlClient.connect({ url: fake.url, pool: POOL, key: KEY, replyTimeoutMs });
    clients.push(client);
    return client;
  }

  it('resolves a request with the ack matched to its nonce', async () => {
    const fake = await balancer();
    const client = await connect(fake);
    expect(client.localAddress).toBe('127.0.0.1');
    const [a, b] = await Promise.all([
      client.request({ type: 'announce', id: 'x', address: '192.0.2.1', port: 1, weight: 1 }),
      client.request({ type: 'announce', id: 'y', address: '192.0.2.2', port: 2, weight: 1 }),
    ]);
    expect(a).toEqual({ state: 'up', address: '192.0.2.1', port: 1 });
    expect(b).toEqual({ state: 'up', address: '192.0.2.2', port: 2 });
  });

  it('rejects at the reply deadline when the balancer never answers', async () => {
    const fake = await balancer();
    fake.override = () => null;
    const client = await connect(fake, 40);
    const err = await rejection(client.request({ type: 'heartbeat', id: 'x' }));
    expect(err).toMatchObject({ code: 'reply_timeout', refused: false });
    await fake.received.waitFor('the heartbeat', msgOf('heartbeat'));
    const perCall = await rejection(client.request({ type: 'heartbeat', id: 'x' }, 10));
    expect(perCall.message).toContain('within 10 ms');
  });

  it('rejects pending requests when the connection closes, and requests after it', async () => {
    const fake = await balancer();
    fake.override = () => null;
    const client = await connect(fake);
    const pending = rejection(client.request({ type: 'heartbeat', id: 'x' }));
    await fake.received.waitFor('the heartbeat', msgOf('heartbeat'));
    fake.dropAll();
    expect((await pending).code).toBe('connection_closed');
    expect(await client.closed).toMatch(/^connection closed/);
    expect((await rejection(client.request({ type: 'heartbeat', id: 'x' }))).code).toBe('connection_closed');
  });

  it('fails to connect with a code: nothing listening, or aborted', async () => {
    const fake = await balancer();
    const url = fake.url;
    await fake.close();
    expect((await rejection(ControlClient.connect({ url, pool: POOL, key: KEY }))).code).toBe('connect_failed');
    const abort = new AbortController();
    abort.abort();
    expect((await rejection(ControlClient.connect({ url, pool: POOL, key: KEY, signal: abort.signal }))).code).toBe('connect_aborted');
  });

  it('times out a connect whose handshake never completes', async () => {
    // An HTTP server that takes the upgrade request and never answers it.
    const http = createServer();
    const sockets = new Set<Duplex>();
    http.on('upgrade', (_req, socket) => {
      sockets.add(socket);
      // node:http drops its own 'error' listener when it hands an upgraded socket over, and the
      // client gives up on this handshake by closing: a reset then is expected, not a failure.
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    });
    const { port } = http.address() as { port: number };
    const upgrading = new Promise<void>((resolve) => http.once('upgrade', () => resolve()));
    const err = rejection(ControlClient.connect({ url: `ws://127.0.0.1:${port}/control`, pool: POOL, key: KEY, connectTimeoutMs: 50 }));
    await upgrading;
    expect(await err).toMatchObject({ code: 'connect_timeout', message: expect.stringContaining('within 50 ms') });
  });
});

describe('tether agent', () => {
  const iface = (address: string, family: 'IPv4' | 'IPv6' = 'IPv4', internal = false): NetworkInterfaceInfo =>
    ({ address, family, internal, netmask: family === 'IPv4' ? '255.255.255.0' : 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', cidr: `${address}/${family === 'IPv4' ? 24 : 64}`, ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as NetworkInterfaceInfo;

  function tempDir(): string {
    const dir = mkdtempSync(path.join(tmpdir(), 'tether-agent-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  it('announces, re-announces when the interfaces change, and leaves on stop', async () => {
    const fake = await balancer();
    const dir = tempDir();
    const keyFile = path.join(dir, 'agent.keys');
    writeFileSync(keyFile, `# keys\napi ${randomBytes(32).toString('hex')}\n* ${KEY.toString('hex')}\n`);
    const lines = new EventLog<Record<string, unknown>>();
    const log = { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) };
    let interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = { eth0: [iface('10.0.0.5')] };
    const stop = new AbortController();
    const argv = ['--control', fake.url, '--pool', POOL, '--id', 'app1', '--port', '8000', '--key-file', keyFile, '--heartbeat', '50ms'];
    const exit = runAgent(argv, { log, stderr: () => {}, networkInterfaces: () => interfaces, interfacePollMs: 5, stop: stop.signal });
    cleanups.push(async () => {
      stop.abort();
      await exit;
    });

    const announced = await lines.waitFor('an announced line', (l) => l.event === 'announced');
    expect(announced).toMatchObject({ level: 30, pid: process.pid, pool: POOL, id: 'app1', address: '127.0.0.1', port: 8000, state: 'up' });
    expect(fake.connections.items).toHaveLength(1);

    interfaces = { eth0: [iface('10.0.0.6')] };
    const changed = await lines.waitFor('interfaces_changed', (l) => l.event === 'interfaces_changed');
    expect(changed.interfaces).toEqual(['eth0 IPv4 10.0.0.6/24']);
    await fake.received.waitFor('an announce on a new connection', msgOf('announce', 2));
    await lines.waitFor('announced again', (l) => l.event === 'announced', lines.items.indexOf(changed));

    stop.abort();
    expect(await exit).toBe(0);
    const leave = await fake.received.waitFor('leave', msgOf('leave'));
    expect(leave.msg).toMatchObject({ id: 'app1', pool: POOL });
    expect(lines.items.map((l) => l.event).slice(-3)).toEqual(['stopping', 'left', 'stopped']);
    await fake.closes.waitFor('the agent closing its connection', (conn) => conn === 2);
  });
});
