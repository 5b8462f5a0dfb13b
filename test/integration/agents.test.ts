// Backends that announce themselves: the SDK inside a real backend process, the `tether agent`
// command, and raw frames a hostile or broken client could send over /control.
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pack } from 'msgpackr';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, openFrame, parseAgentKeys } from '../../src/control/frames.js';
import { startAgent, type Agent } from '../../src/control/sdk.js';
import { referenceHmacSha256, referenceHmacVerify } from '../../src/native/reference.js';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue } from '../helpers/client.js';
import { pollUntil, tempDir } from '../helpers/sticky.js';
import { CLI, startTether, type TetherProcess } from '../helpers/tether.js';

const key = randomBytes(32);
const dir = tempDir('tether-agents-');
const keyFile = dir.file('agents.keys', `# test keys\nweb ${key.toString('hex')}\n`);
let t: TetherProcess;
let other: TestBackend;
let url: string;
const agents: Agent[] = [];
const backends: TestBackend[] = [];

beforeAll(async () => {
  other = await startBackend('app2');
  t = await startTether([
    '--backend', `web/app2=127.0.0.1:${other.port}`, '--route', 'web.test=web', '--agent-keys', keyFile, '--heartbeat-timeout', '1500',
  ]);
  url = `ws://127.0.0.1:${t.adminPort}/control`;
});

afterAll(async () => {
  await Promise.all(agents.map((a) => a.close()));
  await t?.stop();
  await Promise.all([other?.close(), ...backends.map((b) => b.close())]);
  dir.cleanup();
});

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms))]);
}

function agent(id: string, port: number, address: string, extra: { heartbeatMs?: number; onEvent?: Parameters<typeof startAgent>[0]['onEvent'] } = {}): Agent {
  const a = startAgent({ url, pool: 'web', id, key, port, address, heartbeatMs: extra.heartbeatMs ?? 500, replyTimeoutMs: 3_000, onEvent: extra.onEvent });
  agents.push(a);
  return a;
}

async function backendView(id: string): Promise<Record<string, unknown> | undefined> {
  const res = await fetch(`http://127.0.0.1:${t.adminPort}/api/v1/backends`, { signal: AbortSignal.timeout(5_000) });
  const body = (await res.json()) as { backends: Record<string, unknown>[] };
  return body.backends.find((b) => b.id === id);
}

describe('an SDK backend announces itself, serves, and moves', () => {
  it('keeps the client on it across an address and port change, with no request failing', async () => {
    const first = await startBackend('app1', undefined, '127.0.0.1');
    backends.push(first);
    const a = agent('app1', first.port, '127.0.0.1');
    expect((await withDeadline(a.ready, 10_000, 'announce')).state).toBe('added');
    // A client pinned to app1 by its route token.
    let cookie = '';
    for (let i = 0; i < 20 && !cookie; i++) {
      const r = await request({ port: t.port, headers: { host: 'web.test' } });
      if (r.body === 'app1') cookie = `TETHER=${setCookieValue(r, 'TETHER')}`;
    }
    expect(cookie, 'the announced backend takes traffic').not.toBe('');

    const moved = await startBackend('app1', undefined, '127.0.0.5');
    backends.push(moved);
    // The client keeps sending (from changing source addresses) while the backend moves.
    const failures: string[] = [];
    let afterMove = -1;
    let sent = 0;
    const loop = (async () => {
      while (afterMove < 0 || sent - afterMove < 40) {
        const from = `127.0.0.${2 + (sent % 3)}`;
        sent++;
        try {
          const r = await request({ port: t.port, headers: { host: 'web.test', cookie }, localAddress: from });
          if (r.status !== 200 || r.body !== 'app1') failures.push(`#${sent} from ${from}: ${r.status} ${r.body}`);
        } catch (err) {
          failures.push(`#${sent} from ${from}: ${(err as Error).message}`);
        }
        if (sent > 2_000) throw new Error('move never completed');
      }
    })();
    await pollUntil('traffic flowing', async () => (sent >= 5 ? true : undefined));
    const ack = await withDeadline(a.move({ address: '127.0.0.5', port: moved.port }), 10_000, 'move');
    expect(ack).toMatchObject({ state: 'updated', address: '127.0.0.5', port: moved.port });
    afterMove = sent;
    const oldCountAtAck = first.received.length;
    // The old address goes away, as it does when a host is re-addressed.
    first.server.close();
    first.server.closeIdleConnections();
    await loop;
    expect(failures).toEqual([]);
    expect(moved.received.length).toBeGreaterThanOrEqual(40);
    // At most the one request that was in flight when the move was acknowledged.
    expect(first.received.length - oldCountAtAck).toBeLessThanOrEqual(1);
    expect(await backendView('app1')).toMatchObject({ address: '127.0.0.5', port: moved.port, source: 'agent', state: 'up' });
    await t.waitForLog((e) => e.event === 'backend_updated' && e.id === 'app1');
  });

  it('a second agent claiming a held address is refused: alert in the log, the metric and /api/v1/events', async () => {
    const holder = (await backendView('app1'))!;
    const refused = new Promise<{ code: string; reason: string }>((resolve) => {
      agent('app9', holder.port as number, holder.address as string, {
        onEvent: (e) => {
          if (e.type === 'refused') resolve(e);
        },
      });
    });
    const r = await withDeadline(refused, 10_000, 'refusal');
    expect(r.code).toBe('address_conflict');
    expect(r.reason).toContain('web/app1');
    const line = await t.waitForLog((e) => e.event === 'address_conflict' && e.id === 'app9');
    expect(line).toMatchObject({ holderId: 'app1', level: 50 });
    expect(await t.metric('tether_address_conflicts_total')).toBeGreaterThanOrEqual(1);
    const events = (await (await fetch(`http://127.0.0.1:${t.adminPort}/api/v1/events`)).json()) as { events: { type: string; fields: Record<string, unknown> }[] };
    expect(events.events.some((e) => e.type === 'address_conflict' && e.fields.id === 'app9' && e.fields.holderId === 'app1')).toBe(true);
    expect(await backendView('app9')).toBeUndefined();
    expect((await backendView('app1'))!.address).toBe(holder.address);
  });

  it('a backend whose agent goes silent is marked down, kept, and back when it speaks again', async () => {
    const b = await startBackend('app5', undefined, '127.0.0.6');
    backends.push(b);
    const a = agent('app5', b.port, '127.0.0.6', { heartbeatMs: 200 });
    await withDeadline(a.ready, 10_000, 'announce');
    await a.close(); // no leave: as if the host died
    await t.waitForLog((e) => e.event === 'backend_lost' && e.id === 'app5', 10_000);
    expect(await backendView('app5')).toMatchObject({ state: 'down', health: expect.objectContaining({ lost: true }) });
    for (let i = 0; i < 10; i++) expect((await request({ port: t.port, headers: { host: 'web.test' } })).body).not.toBe('app5');
    const again = agent('app5', b.port, '127.0.0.6');
    expect((await withDeadline(again.ready, 10_000, 'announce')).state).toBe('unchanged');
    await t.waitForLog((e) => e.event === 'backend_found' && e.id === 'app5');
    expect(await backendView('app5')).toMatchObject({ state: 'up' });
    await again.leave();
    expect(await backendView('app5')).toBeUndefined();
  });
});

/** A raw control connection: frames in order, and how it closed. */
async function raw(): Promise<{ ws: WebSocket; next(): Promise<Record<string, unknown>>; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(url);
  const queue: Buffer[] = [];
  const waiting: ((b: Buffer) => void)[] = [];
  ws.on('message', (data: Buffer) => {
    const w = waiting.shift();
    if (w) w(data);
    else queue.push(data);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await withDeadline(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), 5_000, 'ws open');
  return {
    ws,
    closed,
    next: async () => {
      const frame = queue.shift() ?? (await withDeadline(new Promise<Buffer>((r) => waiting.push(r)), 5_000, 'reply'));
      return openFrame('B', frame, key, referenceHmacVerify);
    },
  };
}

const frame = (msg: Record<string, unknown>, k: Uint8Array = key) =>
  encodeFrame('A', 'web', k, { ts: Date.now(), nonce: randomBytes(16), ...msg }, referenceHmacSha256);

/** A frame with an arbitrary body, MACed correctly (the format spelt out independently of frames.ts). */
function rawFrame(body: Buffer): Buffer {
  const head = Buffer.concat([Buffer.from([1, 3]), Buffer.from('web')]);
  const mac = createHmac('sha256', key).update(Buffer.concat([Buffer.from('tether-controlA'), head, body])).digest();
  return Buffer.concat([head, mac, body]);
}

async function frames(result: string): Promise<number> {
  return t.metric(`tether_control_frames_total{result="${result}"}`);
}

describe('control frames a balancer must refuse', () => {
  it('forged (wrong key) announcements change nothing and get no answer', async () => {
    const c = await raw();
    const before = await frames('bad_mac');
    c.ws.send(frame({ type: 'announce', id: 'evil', pool: 'web', address: '127.0.0.9', port: 9 }, randomBytes(32)));
    // The next good frame's answer shows the forged one was processed (and dropped) before it.
    c.ws.send(frame({ type: 'heartbeat', id: 'app1', pool: 'web' }));
    expect(await c.next()).toMatchObject({ type: 'ack', state: 'up' });
    expect(await frames('bad_mac')).toBe(before + 1);
    expect(await backendView('evil')).toBeUndefined();
    c.ws.close();
  });

  it('a replayed frame is refused, on the same connection or another', async () => {
    const b = await startBackend('app7', undefined, '127.0.0.7');
    backends.push(b);
    const c = await raw();
    const f = frame({ type: 'announce', id: 'app7', pool: 'web', address: '127.0.0.7', port: b.port });
    c.ws.send(f);
    expect(await c.next()).toMatchObject({ type: 'ack', state: 'added' });
    c.ws.send(f);
    expect(await c.next()).toMatchObject({ type: 'refused', code: 'replayed' });
    const d = await raw();
    d.ws.send(f);
    expect(await d.next()).toMatchObject({ type: 'refused', code: 'replayed' });
    // A replayed leave cannot remove it either: the first leave works, its replay is refused.
    const leave = frame({ type: 'leave', id: 'app7', pool: 'web' });
    d.ws.send(leave);
    expect(await d.next()).toMatchObject({ type: 'ack', state: 'removed' });
    c.ws.send(f);
    expect(await c.next()).toMatchObject({ type: 'refused', code: 'replayed' });
    expect(await backendView('app7')).toBeUndefined();
    c.ws.close();
    d.ws.close();
  });

  it('stale and future-dated frames are refused', async () => {
    const c = await raw();
    c.ws.send(frame({ type: 'announce', id: 'late', pool: 'web', address: '127.0.0.8', port: 8, ts: Date.now() - 60_000 }));
    expect(await c.next()).toMatchObject({ type: 'refused', code: 'stale' });
    c.ws.send(frame({ type: 'announce', id: 'early', pool: 'web', address: '127.0.0.8', port: 8, ts: Date.now() + 60_000 }));
    expect(await c.next()).toMatchObject({ type: 'refused', code: 'stale' });
    expect(await backendView('late')).toBeUndefined();
    expect(await backendView('early')).toBeUndefined();
    c.ws.close();
  });

  it('unknown types and bad fields are refused with a reason; garbled bodies are dropped', async () => {
    const c = await raw();
    c.ws.send(frame({ type: 'reboot', id: 'app1', pool: 'web' }));
    expect(await c.next()).toMatchObject({ type: 'refused', code: 'invalid', reason: expect.stringContaining('reboot') });
    c.ws.send(frame({ type: 'announce', id: 'x', pool: 'web', address: '127.0.0.8', port: 'eighty' }));
    expect(await c.next()).toMatchObject({ type: 'refused', code: 'invalid' });
    c.ws.send(frame({ type: 'announce', id: 'x', pool: 'api', address: '127.0.0.8', port: 80 }));
    expect(await c.next()).toMatchObject({ type: 'refused', code: 'invalid', reason: expect.stringContaining('pool') });
    const before = await frames('bad_body');
    c.ws.send(rawFrame(Buffer.from([0xc1, 0xc1, 0xc1]))); // 0xc1 is never valid msgpack
    c.ws.send(rawFrame(pack([1, 2, 3]) as Buffer));
    c.ws.send(frame({ type: 'heartbeat', id: 'app1', pool: 'web' }));
    expect(await c.next()).toMatchObject({ type: 'ack' });
    expect(await frames('bad_body')).toBe(before + 2);
    c.ws.close();
  });

  it('a connection that keeps sending bad frames, floods, or sends an oversized frame is closed', async () => {
    const bad = await raw();
    for (let i = 0; i < 5; i++) bad.ws.send(frame({ type: 'heartbeat', id: 'app1', pool: 'web' }, randomBytes(32)));
    expect((await withDeadline(bad.closed, 5_000, 'close')).code).toBe(1008);

    const flood = await raw();
    const before = await frames('rate_limited');
    for (let i = 0; i < 100; i++) flood.ws.send(frame({ type: 'heartbeat', id: 'app1', pool: 'web' }));
    expect((await withDeadline(flood.closed, 5_000, 'close')).code).toBe(1008);
    expect(await frames('rate_limited')).toBeGreaterThan(before);

    const big = await raw();
    big.ws.send(Buffer.alloc(8_192, 1));
    expect((await withDeadline(big.closed, 5_000, 'close')).code).not.toBe(1000);
    // And nothing reached the routing table.
    expect((await backendView('app1'))!.state).toBe('up');
  });

  it('/control is closed when the balancer has no agent keys', async () => {
    const a = await startBackend('solo');
    const plain = await startTether(['--backend', `solo=127.0.0.1:${a.port}`], { workers: 1 });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${plain.adminPort}/control`);
      ws.on('error', () => {}); // terminate() before open reports one
      const status = await withDeadline(new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res: http.IncomingMessage) => resolve(res.statusCode!)).once('open', () => resolve(101))), 5_000, 'upgrade');
      expect(status).toBe(404);
      ws.terminate();
    } finally {
      await plain.stop();
      await a.close();
    }
  });
});

describe('tether agent (the command)', () => {
  it('announces, heartbeats, serves traffic, and leaves on SIGTERM', async () => {
    const b = await startBackend('app4', undefined, '127.0.0.4');
    backends.push(b);
    const proc = spawn(process.execPath, [CLI, 'agent', '--control', url, '--pool', 'web', '--id', 'app4', '--port', String(b.port), '--key-file', keyFile, '--address', '127.0.0.4', '--heartbeat', '300ms'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: Record<string, unknown>[] = [];
    const announced = new Promise<Record<string, unknown>>((resolve) => {
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        const e = JSON.parse(line) as Record<string, unknown>;
        lines.push(e);
        if (e.event === 'announced') resolve(e);
      });
    });
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    try {
      expect(await withDeadline(announced, 10_000, 'agent announce')).toMatchObject({ address: '127.0.0.4', port: b.port });
      expect(await backendView('app4')).toMatchObject({ source: 'agent', address: '127.0.0.4', state: 'up' });
      await pollUntil('traffic to app4', async () => ((await request({ port: t.port, headers: { host: 'web.test' } })).body === 'app4' ? true : undefined));
      proc.kill('SIGTERM');
      expect(await withDeadline(exited, 10_000, 'agent exit')).toBe(0);
      expect(lines.some((e) => e.event === 'left')).toBe(true);
      expect(await backendView('app4')).toBeUndefined();
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
  });

  it('keygen --agent prints a line both sides read; the SDK is the package entry point', async () => {
    const run = (args: string[], cwd?: string) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], cwd });
        let out = '';
        p.stdout!.on('data', (d: Buffer) => (out += d));
        p.once('exit', (code) => resolve({ code, out }));
      });
    const gen = await withDeadline(run([CLI, 'keygen', '--agent', 'web']), 10_000, 'keygen');
    expect(gen.code).toBe(0);
    const parsed = parseAgentKeys(gen.out, 'keygen output');
    expect([...parsed.keys()]).toEqual(['web']);
    expect(parsed.get('web')!.length).toBe(32);
    const sdk = await withDeadline(run(['--input-type=module', '-e', "const m = await import('tether/sdk'); const r = await import('tether'); console.log(typeof m.startAgent, m.startAgent === r.startAgent)"], fileURLToPath(new URL('../..', import.meta.url))), 10_000, 'import');
    expect(sdk.out.trim()).toBe('function true');
  });

  it('refuses bad flags with the flag named', async () => {
    const proc = spawn(process.execPath, [CLI, 'agent', '--control', url, '--pool', 'web', '--id', 'x', '--port', 'eighty', '--key-file', keyFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err += d));
    const code = await withDeadline(new Promise<number | null>((resolve) => proc.once('exit', resolve)), 10_000, 'exit');
    expect(code).toBe(2);
    expect(err).toContain('--port');
  });
});
