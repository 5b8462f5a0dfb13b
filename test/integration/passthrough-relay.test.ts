// The passthrough relay's own machinery, end to end through the real CLI: backpressure (a
// backend that stops reading stops the client, Tether does not buffer for it), the idle
// deadline (a silent relay is cut, a talking one is not), the connect deadline (a backend
// that never answers the SYN), a backend named by host name (resolved per connection), and
// a graceful stop while relays are open. The bytes after the ClientHello need not be TLS:
// the relay never looks at them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import net, { type AddressInfo } from 'node:net';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { captureClientHello } from '../helpers/tls.js';
import { pollMetric } from '../helpers/sticky.js';
import { openReusePortListener } from '../../src/native/index.js';

const IDLE_MS = 400;
const CONNECT_MS = 300;

interface Backend {
  port: number;
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

async function listen(host: string, onSocket: (s: net.Socket) => void): Promise<Backend> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Echoes every chunk at once (the ClientHello included). */
const echoEach = (s: net.Socket) => s.pipe(s);

/** Under the relay's bulk threshold (16 KiB), so a chunk read alone is a small read. */
const DRIP_CHUNK = 12 * 1024;
/**
 * After a ClientHello and an 8-byte id, sends the payload registered under that id in
 * DRIP_CHUNK pieces, one per millisecond; the first time its socket will take no more (a write
 * returns false), calls the id's signalFull(), then carries on as the socket drains; then FIN.
 */
function dripBackend() {
  const expect = new Map<string, { payload: Buffer; full: Promise<void>; signalFull: () => void }>();
  const onSocket = (s: net.Socket) => {
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      if (head.length < 5 || head.length < 5 + head.readUInt16BE(3) + 8) return;
      s.off('data', onData);
      const helloLength = 5 + head.readUInt16BE(3);
      const entry = expect.get(head.subarray(helloLength, helloLength + 8).toString('hex'));
      if (!entry) {
        s.destroy();
        return;
      }
      void (async () => {
        let signalled = false;
        for (let at = 0; at < entry.payload.length && !s.destroyed; at += DRIP_CHUNK) {
          if (!s.write(entry.payload.subarray(at, at + DRIP_CHUNK))) {
            if (!signalled) entry.signalFull();
            signalled = true;
            await new Promise((r) => s.once('drain', r));
          } else await new Promise((r) => setTimeout(r, 1));
        }
        s.end();
        if (!signalled) entry.signalFull(); // never filled: the client reads anyway (the test then proves less)
      })();
    };
    s.on('data', onData);
  };
  return { onSocket, expect };
}

/**
 * Reads until it holds `pauseAfter` bytes, then stops reading (resolving `paused`) until
 * `resume()`; on FIN answers the sha256 of all it received.
 */
function sinkBackend() {
  const pauseAfter = 1024 * 1024;
  let signalPaused!: () => void;
  const paused = new Promise<void>((r) => (signalPaused = r));
  let resume = () => {};
  const onSocket = (s: net.Socket) => {
    const hash = createHash('sha256');
    let received = 0;
    s.on('data', (d: Buffer) => {
      hash.update(d);
      const before = received;
      received += d.length;
      if (before < pauseAfter && received >= pauseAfter) {
        s.pause();
        resume = () => s.resume();
        signalPaused();
      }
    });
    s.on('end', () => s.end(`${received} ${hash.digest('hex')}`));
  };
  return { onSocket, paused, resume: () => resume() };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything the server sends until it closes; destroyed (closed: false) after `ms`. */
function untilClosed(s: net.Socket, ms = 10_000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closed: false });
    }, ms);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true });
    });
  });
}

/** Resolves with the next `n` bytes `s` receives (rejects after `ms`, 5 s by default). */
function readExactly(s: net.Socket, n: number, ms = 5_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => {
      s.off('data', onData);
      reject(new Error(`expected ${n} bytes, received ${got} in ${ms} ms`));
    }, ms);
    const onData = (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= n) {
        clearTimeout(timer);
        s.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    s.on('data', onData);
  });
}

let dir: string;
let t: TetherProcess;
let port: number;
let echo: Backend;
let sink: ReturnType<typeof sinkBackend> & { backend: Backend };
let named: Backend;
let drip: ReturnType<typeof dripBackend> & { backend: Backend };
let blackholeFd = -1;
const blackholeFillers: net.Socket[] = [];
let blackholePort = 0;
const hellos = new Map<string, Buffer>();

beforeAll(async () => {
  dir = mkdtempSync(join(os.tmpdir(), 'tether-relay-'));
  echo = await listen('127.0.0.1', echoEach);
  const s = sinkBackend();
  sink = { ...s, backend: await listen('127.0.0.1', s.onSocket) };
  // Dual-stack: `localhost` may resolve to 127.0.0.1 or ::1.
  named = await listen('::', echoEach);
  const d = dripBackend();
  drip = { ...d, backend: await listen('127.0.0.1', d.onSocket) };
  // A listening socket nobody accepts on, its one-slot queue full: SYNs go unanswered.
  blackholePort = (await new Promise<number>((r) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (probe.address() as AddressInfo).port;
      probe.close(() => r(p));
    });
  }));
  blackholeFd = openReusePortListener('127.0.0.1', blackholePort, 1);
  for (let i = 0; i < 4; i++) {
    const f = net.connect(blackholePort, '127.0.0.1');
    f.on('error', () => {});
    blackholeFillers.push(f);
  }
  const config = join(dir, 'tether.yaml');
  writeFileSync(
    config,
    [
      'passthrough:',
      `  idleTimeoutMs: ${IDLE_MS}`,
      '',
    ].join('\n'),
  );
  t = await startTether(
    [
      '--config', config,
      '--backend', `echo/e1=127.0.0.1:${echo.port}`, '--sticky', 'echo/none',
      '--backend', `sink/s1=127.0.0.1:${sink.backend.port}`, '--sticky', 'sink/none',
      '--backend', `named/n1=localhost:${named.port}`, '--sticky', 'named/none',
      '--backend', `hole/h1=127.0.0.1:${blackholePort}`, '--sticky', 'hole/none',
      '--passthrough', '127.0.0.1:0',
      '--sni', 'echo.test=echo',
      '--sni', 'sink.test=sink',
      '--sni', 'named.test=named',
      '--sni', 'hole.test=hole',
      '--connect-timeout', String(CONNECT_MS),
    ],
    { workers: 1 },
  );
  port = t.passthroughPorts[0]!;
  for (const name of ['echo.test', 'sink.test', 'named.test', 'hole.test', 'drip.test']) hellos.set(name, await captureClientHello(name));
}, 60_000);

afterAll(async () => {
  await t?.stop();
  for (const f of blackholeFillers) f.destroy();
  if (blackholeFd >= 0) closeSync(blackholeFd);
  await Promise.all([echo?.close(), sink?.backend.close(), named?.close(), drip?.backend.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('passthrough relay', () => {
  it('stops reading from the client while the backend reads nothing, then delivers every byte', async () => {
    const hello = hellos.get('sink.test')!;
    const s = await connect(port);
    const closed = untilClosed(s, 30_000);
    const payload = Buffer.alloc(128 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4096) payload[i] = (i >> 12) & 0xff;
    // The payload goes out one piece at a time, the next once the client's kernel has taken the
    // last: `handedOver` counts what left the client. (One 128 MiB write would not show it: a
    // write's queue only shrinks when all of it is taken.) FIN follows the last piece.
    const PIECE = 256 * 1024;
    let handedOver = 0;
    const pump = (at: number): void => {
      if (at >= payload.length) {
        s.end();
        return;
      }
      const piece = payload.subarray(at, at + PIECE);
      s.write(piece, (err) => {
        if (err) return;
        handedOver += piece.length;
        pump(at + piece.length);
      });
    };
    s.write(hello);
    pump(0);
    await sink.paused;
    // The backend holds 1 MiB and reads no more. With backpressure, what the client can hand
    // to its kernel is bounded by socket buffers (a few MiB each hop); without it Tether would
    // read all 128 MiB into memory. The test's Tether runs one worker, and each round trip
    // through another relay (echo.test) takes turns of that worker's event loop, turns in which
    // it would be reading this client if it still were: the client has stopped draining when
    // `handedOver` stays put over five such round trips in a row.
    const probeHello = hellos.get('echo.test')!;
    const probe = await connect(port);
    const probeClosed = untilClosed(probe);
    probe.write(probeHello);
    await readExactly(probe, probeHello.length);
    let steady = 0;
    for (let round = 0, last = handedOver; steady < 5; round++) {
      if (round === 2_000) throw new Error(`the client never stopped draining: ${handedOver} bytes handed over`);
      probe.write('.');
      await readExactly(probe, 1);
      steady = handedOver === last ? steady + 1 : 0;
      last = handedOver;
    }
    probe.end();
    expect((await probeClosed).closed).toBe(true);
    expect(payload.length - handedOver, 'bytes the client could not hand over').toBeGreaterThan(64 * 1024 * 1024);
    sink.resume();
    const { data, closed: wasClosed } = await closed;
    expect(wasClosed).toBe(true);
    const expected = createHash('sha256').update(hello).update(payload).digest('hex');
    expect(data.toString()).toBe(`${hello.length + payload.length} ${expected}`);
  }, 60_000);

  it('keeps the bytes of every connection apart when a small read meets a full socket, six at a time', async () => {
    // Tether reads every connection into one buffer shared by its worker and copies small reads
    // out of it before writing them on (connection.ts). Here the backend drips 12 KiB chunks, one
    // per millisecond, so each is read alone (a small read), and the client reads nothing until
    // the backend's socket is full: by then the write of a small read to the client was queued,
    // and the other five connections kept being read into the same buffer. Every client must
    // get exactly its own bytes: a queued write left pointing into the shared buffer would carry
    // another connection's (this fails that way when the copy is taken out). Its own Tether:
    // the client waits longer than this file's idle deadline for the backend's socket to fill.
    const own = await startTether(
      ['--listen', 'off', '--backend', `drip/d1=127.0.0.1:${drip.backend.port}`, '--sticky', 'drip/none', '--sni', 'drip.test=drip', '--passthrough', '127.0.0.1:0'],
      { workers: 1 },
    );
    const hello = hellos.get('drip.test')!;
    const results = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const id = randomBytes(8).toString('hex');
        // ~12 MB: the path's socket buffers filled at ~8.6 MB on this machine.
        const payload = randomBytes(DRIP_CHUNK * 1000);
        let full!: () => void;
        drip.expect.set(id, { payload, full: new Promise<void>((r) => (full = r)), signalFull: () => full() });
        const s = await connect(own.passthroughPorts[0]!);
        s.pause();
        const received = readExactly(s, payload.length, 60_000);
        s.write(Buffer.concat([hello, Buffer.from(id, 'hex')]));
        await drip.expect.get(id)!.full;
        s.resume();
        const got = await received;
        s.destroy();
        return got.equals(payload);
      }),
    ).finally(() => own.stop());
    expect(results).toEqual([true, true, true, true, true, true]);
  }, 90_000);

  it('cuts a relay that stays silent past the idle deadline, and counts it', async () => {
    const before = await t.metric('tether_passthrough_idle_timeouts_total');
    const hello = hellos.get('echo.test')!;
    const s = await connect(port);
    const closed = untilClosed(s);
    const started = Date.now();
    s.write(hello);
    await readExactly(s, hello.length); // relayed, echoed: the relay is up
    const r = await closed;
    expect(r.closed, 'closed by the idle deadline, not left open').toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(IDLE_MS - 50);
    await pollMetric(t, 'tether_passthrough_idle_timeouts_total', (v) => v === before + 1);
  });

  it('keeps a relay that keeps talking open past the idle deadline', async () => {
    const hello = hellos.get('echo.test')!;
    const s = await connect(port);
    const closed = untilClosed(s);
    s.write(hello);
    await readExactly(s, hello.length);
    // Ten round trips, one every IDLE_MS / 4: 2.5 idle periods of a relay that is never idle
    // for one. The pace is the test's subject, not synchronisation: each step awaits its echo.
    const started = Date.now();
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, IDLE_MS / 4));
      s.write(`ping ${i}\n`);
      expect((await readExactly(s, `ping ${i}\n`.length)).toString()).toBe(`ping ${i}\n`);
    }
    expect(Date.now() - started).toBeGreaterThan(2 * IDLE_MS);
    expect(s.destroyed).toBe(false);
    s.end();
    expect((await closed).closed).toBe(true);
  });

  it('resolves a backend given by host name, per connection', async () => {
    const hello = hellos.get('named.test')!;
    const s = await connect(port);
    const closed = untilClosed(s);
    s.write(hello);
    expect((await readExactly(s, hello.length)).equals(hello)).toBe(true);
    s.end();
    expect((await closed).closed).toBe(true);
  });

  it('gives up on a backend that never answers the SYN at the connect deadline, with an alert', async () => {
    const before = await t.metric('tether_passthrough_outcomes_total{outcome="upstream_connect_error"}');
    const s = await connect(port);
    const closed = untilClosed(s);
    const started = Date.now();
    s.write(hellos.get('hole.test')!);
    const r = await closed;
    expect(r.closed).toBe(true);
    // A fatal internal_error alert record: content type 21, level 2, description 80.
    expect([...r.data.subarray(0, 7)]).toEqual([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 80]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(CONNECT_MS - 50);
    expect(await t.metric('tether_passthrough_outcomes_total{outcome="upstream_connect_error"}')).toBe(before + 1);
  });

  it('runs TLS passthrough only (--listen off): no HTTP port, the relay works', async () => {
    const only = await startTether(
      ['--listen', 'off', '--backend', `echo/e1=127.0.0.1:${echo.port}`, '--sticky', 'echo/none', '--passthrough', '127.0.0.1:0', '--sni', 'echo.test=echo'],
      { workers: 1 },
    );
    try {
      const listening = await only.waitForLog((e) => e.event === 'listening');
      expect(listening.httpPorts).toEqual([]);
      expect(listening.http).toEqual([]);
      const hello = hellos.get('echo.test')!;
      const s = await connect(only.passthroughPorts[0]!);
      const closed = untilClosed(s);
      s.write(hello);
      expect((await readExactly(s, hello.length)).equals(hello)).toBe(true);
      s.end();
      expect((await closed).closed).toBe(true);
    } finally {
      expect(await only.stop()).toBe(0);
    }
  });

  it('relays what the client sends while the backend connection is still being made, its FIN too', async () => {
    // Pools whose first backend drops SYNs (the full queue above) for a whole connect deadline,
    // then an echo backend: a connection routed to the hole first waits CONNECT_WAIT_MS with
    // the client still being read. Two kinds of client must go that way: a small tail with its
    // FIN (read while connecting, passed on after the connect), and more than the 64 KiB a
    // client may send before the backend answers (paused, then resumed). One pool per kind: a
    // failed connect takes the hole out of its pool for a while. Round robin sends the first or
    // the second connection of a pool to the hole; its connect-error count says which.
    const CONNECT_WAIT_MS = 1500;
    const kinds = [
      { pool: 'tail', sni: 'echo.test', tail: Buffer.from('early bytes, then FIN\n') },
      { pool: 'bulk', sni: 'sink.test', tail: Buffer.alloc(200 * 1024, 0x5a) },
    ];
    const slow = await startTether(
      [
        '--listen', 'off',
        ...kinds.flatMap((k) => [
          '--backend', `${k.pool}/h1=127.0.0.1:${blackholePort}`, '--backend', `${k.pool}/e1=127.0.0.1:${echo.port}`, '--sticky', `${k.pool}/none`,
          '--sni', `${k.sni}=${k.pool}`,
        ]),
        '--passthrough', '127.0.0.1:0',
        '--connect-timeout', String(CONNECT_WAIT_MS),
      ],
      { workers: 1 },
    );
    try {
      for (const k of kinds) {
        const holeErrors = () => slow.metric(`tether_backend_connect_errors_total{pool="${k.pool}",backend="h1"}`);
        const hello = hellos.get(k.sni)!;
        let waited = false;
        for (let n = 1; n <= 2 && !waited; n++) {
          const errorsBefore = await holeErrors();
          const s = await connect(slow.passthroughPorts[0]!);
          const closed = untilClosed(s);
          s.write(hello);
          // Routed: from here the connection is connecting (to the hole, or at once to the echo).
          await pollMetric(slow, `tether_passthrough_route_connections_total{sni="${k.sni}",pool="${k.pool}"}`, (v) => v === n);
          s.end(k.tail);
          const r = await closed;
          expect(r.closed).toBe(true);
          expect(r.data.length).toBe(hello.length + k.tail.length);
          expect(r.data.equals(Buffer.concat([hello, k.tail]))).toBe(true);
          waited = (await holeErrors()) > errorsBefore;
        }
        expect(waited, `${k.pool}: no connection waited on the hole`).toBe(true);
      }
    } finally {
      expect(await slow.stop()).toBe(0);
    }
  });

  it('lets open relays finish on SIGTERM, then exits', async () => {
    const hello = hellos.get('echo.test')!;
    const s = await connect(port);
    const closed = untilClosed(s);
    s.write(hello);
    await readExactly(s, hello.length);
    const stopping = t.stop(10_000);
    // Still relaying while the worker drains (the listener is closed by now or soon).
    s.write('still here\n');
    expect((await readExactly(s, 'still here\n'.length)).toString()).toBe('still here\n');
    s.end();
    expect((await closed).closed).toBe(true);
    expect(await stopping).toBe(0);
  });
});
