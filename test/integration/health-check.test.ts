// Active health checks (src/orchestrator/health-check.ts) against real loopback servers: the
// request on the wire, every failure detail, the deadline, rise/fall counted check by check,
// target replacement, and close(). Waits are on checker callbacks and socket events, never sleeps.
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import net, { type AddressInfo } from 'node:net';
import { checkOnce, HealthChecker, type CheckResult, type CheckTarget, type HealthCheckConfig } from '../../src/orchestrator/health-check.js';

type HttpCheck = Extract<HealthCheckConfig, { type: 'http' }>;
type TcpCheck = Extract<HealthCheckConfig, { type: 'tcp' }>;

const httpCheck = (over: Partial<HttpCheck> = {}): HttpCheck => ({
  type: 'http', path: '/health', expect: { min: 200, max: 200 }, intervalMs: 20, timeoutMs: 2000, rise: 2, fall: 3, ...over,
});
const tcpCheck = (over: Partial<TcpCheck> = {}): TcpCheck => ({ type: 'tcp', intervalMs: 20, timeoutMs: 2000, rise: 1, fall: 2, ...over });

interface TestServer {
  port: number;
  /** Connections accepted so far. */
  connections: number;
  /** Each connection's request head, in order. */
  requests: string[];
  /** Resolves when the n-th accepted connection (1-based) is closed by the client or destroyed. */
  closedConnection(n: number): Promise<void>;
  /** Resolves when the n-th connection (1-based) has been accepted. */
  accepted(n: number): Promise<void>;
  stopListening(): Promise<void>;
}

/**
 * A loopback server torn down when the test ends. `onRequest` gets each request head (up to the
 * blank line) and the 1-based connection number; `onConnection` runs before any byte is read.
 */
async function serve(
  handlers: { onRequest?: (socket: net.Socket, head: string, n: number) => void; onConnection?: (socket: net.Socket, n: number) => void },
  host = '127.0.0.1',
): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const closed = new Map<number, Promise<void>>();
  const waiters: { n: number; resolve: () => void }[] = [];
  const server = net.createServer((socket) => {
    const n = ++state.connections;
    sockets.add(socket);
    socket.on('error', () => {}); // the checker resets sockets on purpose
    closed.set(n, new Promise((resolve) => socket.once('close', () => { sockets.delete(socket); resolve(); })));
    for (const w of waiters.filter((w) => w.n <= n)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
    handlers.onConnection?.(socket, n);
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      if (head.includes('\r\n\r\n')) return;
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      state.requests.push(head);
      handlers.onRequest?.(socket, head, n);
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  const state: TestServer = {
    port: (server.address() as AddressInfo).port,
    connections: 0,
    requests: [],
    closedConnection: (n) => closed.get(n) ?? Promise.reject(new Error(`connection ${n} was never accepted`)),
    accepted: (n) => (state.connections >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve }))),
    stopListening: () => new Promise((resolve) => { server.close(() => resolve()); for (const s of sockets) s.destroy(); }),
  };
  onTestFinished(() => state.stopListening());
  return state;
}

/** A server answering every request with the status `statusFor` picks (and a short body). */
function statusServer(statusFor: (head: string, n: number) => number, host?: string): Promise<TestServer> {
  return serve({ onRequest: (s, head, n) => { s.end(`HTTP/1.1 ${statusFor(head, n)} X\r\nContent-Length: 2\r\n\r\nok`); } }, host);
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** A checker closed when the test ends, whose callbacks are recorded and can be awaited. */
function watchedChecker(opts: { now?: () => number; onResult?: (key: string, r: CheckResult) => void; onChange?: (key: string, up: boolean, detail: string) => void } = {}) {
  const results: { key: string; result: CheckResult }[] = [];
  const changes: { key: string; up: boolean; detail: string }[] = [];
  const waiters = new Set<() => void>();
  const poke = (): void => { for (const w of [...waiters]) w(); };
  const checker = new HealthChecker({
    now: opts.now,
    onResult: (key, result) => { results.push({ key, result }); opts.onResult?.(key, result); poke(); },
    onChange: (key, up, detail) => { changes.push({ key, up, detail }); opts.onChange?.(key, up, detail); poke(); },
  });
  onTestFinished(() => checker.close());
  const until = (pred: () => boolean): Promise<void> => new Promise((resolve) => {
    if (pred()) return resolve();
    const w = (): void => { if (pred()) { waiters.delete(w); resolve(); } };
    waiters.add(w);
  });
  const resultsFor = (key: string): CheckResult[] => results.filter((r) => r.key === key).map((r) => r.result);
  return { checker, results, changes, until, resultsFor };
}

const refTimeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('checkOnce: HTTP', () => {
  it('sends the documented request and passes on the expected status', async () => {
    const srv = await statusServer(() => 200);
    await expect(checkOnce({ host: '127.0.0.1', port: srv.port, check: httpCheck({ path: '/ready?deep=1' }) })).resolves.toEqual({ ok: true, detail: 'HTTP 200' });
    await expect(checkOnce({ host: '127.0.0.1', port: srv.port, check: httpCheck({ host: 'app.example' }) })).resolves.toEqual({ ok: true, detail: 'HTTP 200' });
    expect(srv.requests).toEqual([
      `GET /ready?deep=1 HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nUser-Agent: tether-health-check\r\nConnection: close\r\nAccept: */*\r\n\r\n`,
      'GET /health HTTP/1.1\r\nHost: app.example\r\nUser-Agent: tether-health-check\r\nConnection: close\r\nAccept: */*\r\n\r\n',
    ]);
  });

  it('fails on another status, naming what it got and what it expected', async () => {
    const srv = await statusServer(() => 503);
    await expect(checkOnce({ host: '127.0.0.1', port: srv.port, check: httpCheck() })).resolves.toEqual({ ok: false, detail: 'HTTP 503 (expected 200)' });
  });

  it('a range expectation includes both bounds and nothing outside them', async () => {
    const srv = await statusServer((head) => Number(/^GET \/s\/(\d+)/.exec(head)![1]));
    const at = (status: number) => checkOnce({ host: '127.0.0.1', port: srv.port, check: httpCheck({ path: `/s/${status}`, expect: { min: 200, max: 399 } }) });
    expect(await at(200)).toEqual({ ok: true, detail: 'HTTP 200' });
    expect(await at(301)).toEqual({ ok: true, detail: 'HTTP 301' });
    expect(await at(399)).toEqual({ ok: true, detail: 'HTTP 399' });
    expect(await at(400)).toEqual({ ok: false, detail: 'HTTP 400 (expected 200-399)' });
    expect(await at(199)).toEqual({ ok: false, detail: 'HTTP 199 (expected 200-399)' });
  });

  it('decides on the status line alone: a split status line, then a body that never ends', async () => {
    const srv = await serve({
      onRequest: (s) => {
        s.write('HTTP/1.1 20');
        setImmediate(() => s.write('0 OK\r\nContent-Length: 1000000\r\n\r\npartial'));
      },
    });
    const result = await checkOnce({ host: '127.0.0.1', port: srv.port, check: httpCheck({ timeoutMs: 30_000 }) });
    expect(result).toEqual({ ok: true, detail: 'HTTP 200' });
    await srv.closedConnection(1); // the checker hung up instead of reading the body
  }, 5000);

  it('times out a server that accepts but never answers, at the deadline and not before, and hangs up', async () => {
    let requestIn!: () => void;
    const requested = new Promise<void>((resolve) => (requestIn = resolve));
    const srv = await serve({ onRequest: () => requestIn() });
    // The deadline runs on a fake clock that moves only when told: the sockets stay real, and
    // the verdict is observed at the exact step of that clock rather than in wall-clock bounds.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    onTestFinished(() => void vi.useRealTimers());
    let result: CheckResult | undefined;
    const pending = checkOnce({ host: '127.0.0.1', port: srv.port, check: httpCheck({ timeoutMs: 200 }) }).then((r) => (result = r));
    await requested; // the request is on the wire, and no time has passed on the deadline's clock
    expect(srv.requests).toHaveLength(1); // the deadline covers the response, not just the connect
    await vi.advanceTimersByTimeAsync(199);
    expect(result).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(result).toEqual({ ok: false, detail: 'timed out after 200 ms' });
    await pending;
    await srv.closedConnection(1);
  });

  it('names a refused connection', async () => {
    const port = await freePort();
    await expect(checkOnce({ host: '127.0.0.1', port, check: httpCheck() })).resolves.toEqual({ ok: false, detail: 'connect refused (ECONNREFUSED)' });
  });

  it('rejects a non-HTTP reply at once, with or without a line end', async () => {
    const ssh = await serve({ onConnection: (s) => s.write('SSH-2.0-OpenSSH_9.6\r\n') });
    await expect(checkOnce({ host: '127.0.0.1', port: ssh.port, check: httpCheck({ timeoutMs: 30_000 }) }))
      .resolves.toEqual({ ok: false, detail: 'not HTTP: "SSH-2.0-OpenSSH_9.6"' });
    const partial = await serve({ onConnection: (s) => s.write('SSH-2.0') });
    await expect(checkOnce({ host: '127.0.0.1', port: partial.port, check: httpCheck({ timeoutMs: 30_000 }) }))
      .resolves.toEqual({ ok: false, detail: 'not HTTP: "SSH-2.0"' });
  }, 5000);

  it('rejects a status line with no CRLF in 8 KiB, and a malformed one', async () => {
    const endless = await serve({ onRequest: (s) => s.write(`HTTP/1.1 200 ${'x'.repeat(9000)}`) });
    await expect(checkOnce({ host: '127.0.0.1', port: endless.port, check: httpCheck({ timeoutMs: 30_000 }) }))
      .resolves.toEqual({ ok: false, detail: 'not HTTP: no status line in the first 8192 bytes' });
    const http2 = await serve({ onRequest: (s) => s.write('HTTP/2 200\r\n\r\n') });
    await expect(checkOnce({ host: '127.0.0.1', port: http2.port, check: httpCheck({ timeoutMs: 30_000 }) }))
      .resolves.toEqual({ ok: false, detail: 'not HTTP: "HTTP/2 200"' });
  }, 5000);

  it('fails when the server closes before a status line', async () => {
    const srv = await serve({ onRequest: (s) => s.end() });
    await expect(checkOnce({ host: '127.0.0.1', port: srv.port, check: httpCheck({ timeoutMs: 30_000 }) }))
      .resolves.toEqual({ ok: false, detail: 'connection closed before a status line (after 0 bytes)' });
  }, 5000);

  it('works on an IPv6 literal, bracketing it in the Host header', async () => {
    // The machines Tether is tested on have ::1; a missing one fails here rather than skipping.
    const srv = await statusServer(() => 204, '::1');
    await expect(checkOnce({ host: '::1', port: srv.port, check: httpCheck({ expect: { min: 200, max: 299 } }) })).resolves.toEqual({ ok: true, detail: 'HTTP 204' });
    expect(srv.requests[0]).toContain(`\r\nHost: [::1]:${srv.port}\r\n`);
  });

  it('refuses a check that could inject header lines, before touching the network', async () => {
    await expect(checkOnce({ host: '127.0.0.1', port: 1, check: httpCheck({ path: '/x HTTP/1.1\r\nX-Evil: 1\r\n' }) }))
      .rejects.toMatchObject({ code: 'TETHER_ERR_CONFIG' });
    await expect(checkOnce({ host: '127.0.0.1', port: 1, check: httpCheck({ host: 'a\r\nb' }) })).rejects.toMatchObject({ code: 'TETHER_ERR_CONFIG' });
  });

  it('holds its deadline on an unref()d timer', async () => {
    const srv = await serve({});
    const before = refTimeouts();
    const pending = checkOnce({ host: '127.0.0.1', port: srv.port, check: httpCheck({ timeoutMs: 100 }) });
    expect(refTimeouts()).toBe(before);
    await expect(pending).resolves.toEqual({ ok: false, detail: 'timed out after 100 ms' });
  });
});

describe('checkOnce: TCP', () => {
  it('passes when the connection is accepted, then hangs up', async () => {
    const srv = await serve({});
    await expect(checkOnce({ host: '127.0.0.1', port: srv.port, check: tcpCheck() })).resolves.toEqual({ ok: true, detail: 'connected' });
    await srv.closedConnection(1);
  }, 5000);

  it('fails on a refused connection', async () => {
    const port = await freePort();
    await expect(checkOnce({ host: '127.0.0.1', port, check: tcpCheck() })).resolves.toEqual({ ok: false, detail: 'connect refused (ECONNREFUSED)' });
  });
});

describe('HealthChecker', () => {
  it('goes down after exactly `fall` consecutive failures and up after exactly `rise` successes', async () => {
    // fall = 3, rise = 2. An interrupted streak must not count: the lone 200 at 4 resets the
    // failures, the lone 503 at 10 resets the successes. Down is due at request 7, up at 12;
    // request 8 (a failure while already down) must not fire again.
    const script = [200, 503, 503, 200, 503, 503, 503, 503, 200, 503, 200, 200];
    const srv = await statusServer((_head, n) => script[n - 1] ?? 200);
    const seen: { up: boolean; servedSoFar: number; successes: number; failures: number }[] = [];
    const w = watchedChecker({
      onChange: (key, up) => {
        const s = w.checker.state(key)!;
        seen.push({ up, servedSoFar: srv.requests.length, successes: s.successes, failures: s.failures });
      },
    });
    w.checker.setTargets([{ key: 'b1', host: '127.0.0.1', port: srv.port, check: httpCheck({ fall: 3, rise: 2 }) }]);
    await w.until(() => w.changes.length === 2);
    expect(seen).toEqual([
      { up: false, servedSoFar: 7, successes: 0, failures: 3 },
      { up: true, servedSoFar: 12, successes: 2, failures: 0 },
    ]);
    expect(w.changes).toEqual([
      { key: 'b1', up: false, detail: 'HTTP 503 (expected 200)' },
      { key: 'b1', up: true, detail: 'HTTP 200' },
    ]);
    expect(w.resultsFor('b1').slice(0, 12).map((r) => r.ok)).toEqual(script.map((s) => s === 200));
  });

  it('runs one check at a time: a slow check delays the next instead of overlapping it', async () => {
    const srv = await serve({}); // never answers: every check runs to its 150 ms deadline, far past the 20 ms interval
    const connectionsAtResult: number[] = [];
    const w = watchedChecker({ onResult: () => connectionsAtResult.push(srv.connections) });
    w.checker.setTargets([{ key: 'slow', host: '127.0.0.1', port: srv.port, check: httpCheck({ intervalMs: 20, timeoutMs: 150 }) }]);
    await w.until(() => w.results.length === 3);
    expect(connectionsAtResult).toEqual([1, 2, 3]);
    expect(w.resultsFor('slow').every((r) => r.detail === 'timed out after 150 ms')).toBe(true);
  });

  it('tcp: down when the port stops listening, up again when it listens', async () => {
    const srv = await serve({});
    const port = srv.port;
    let relisten: net.Server | undefined;
    onTestFinished(() => new Promise<void>((resolve) => (relisten ? relisten.close(() => resolve()) : resolve())));
    // Listening again on a fixed port can fail (another test file may have taken the port
    // meanwhile): that fails the test with the reason rather than as an uncaught error.
    let relistenFailed!: (err: Error) => void;
    const relistenError = new Promise<never>((_resolve, reject) => (relistenFailed = reject));
    const w = watchedChecker({
      // Callbacks run between checks, so each server change lands before the next check starts.
      onResult: (_key, r) => { if (r.ok && w.results.length === 1) void srv.stopListening(); },
      onChange: (_key, up) => { if (!up) relisten = net.createServer((s) => s.destroy()).on('error', relistenFailed).listen(port, '127.0.0.1'); },
    });
    w.checker.setTargets([{ key: 't', host: '127.0.0.1', port, check: tcpCheck({ fall: 2, rise: 1 }) }]);
    await Promise.race([w.until(() => w.changes.length === 2), relistenError]);
    expect(w.changes).toEqual([
      { key: 't', up: false, detail: 'connect refused (ECONNREFUSED)' },
      { key: 't', up: true, detail: 'connected' },
    ]);
    const okUntilDown = w.resultsFor('t').slice(0, 3).map((r) => r.ok);
    expect(okUntilDown).toEqual([true, false, false]); // exactly `fall` = 2 failures
  });

  it('setTargets keeps state for unchanged targets and resets changed or new ones', async () => {
    const failing = await statusServer(() => 503);
    const healthy = await statusServer(() => 200);
    const w = watchedChecker({ now: () => 42_000 });
    const keep: CheckTarget = { key: 'keep', host: '127.0.0.1', port: failing.port, check: httpCheck({ fall: 1 }) };
    const move: CheckTarget = { key: 'move', host: '127.0.0.1', port: failing.port, check: httpCheck({ fall: 1 }) };
    const edit: CheckTarget = { key: 'edit', host: '127.0.0.1', port: failing.port, check: httpCheck({ fall: 1 }) };
    w.checker.setTargets([keep, move, edit]);
    expect(w.checker.state('keep')).toEqual({ up: true, successes: 0, failures: 0, lastDetail: 'not checked yet', lastCheckAt: 0 });
    await w.until(() => w.changes.length === 3);
    const keptBefore = w.checker.state('keep')!;
    expect(keptBefore).toMatchObject({ up: false, lastDetail: 'HTTP 503 (expected 200)', lastCheckAt: 42_000 });
    expect(keptBefore.failures).toBeGreaterThanOrEqual(1);

    // The same config rebuilt with its keys in another order is unchanged; a new port or a new
    // check path is a new target; a key never seen is new too.
    const reordered = { fall: 1, rise: 2, timeoutMs: 2000, intervalMs: 20, expect: { max: 200, min: 200 }, path: '/health', type: 'http' } as const;
    w.checker.setTargets([
      { host: '127.0.0.1', key: 'keep', check: reordered, port: failing.port },
      { ...move, port: healthy.port },
      { ...edit, check: httpCheck({ fall: 1, path: '/v2/health' }) },
      { key: 'new', host: '127.0.0.1', port: healthy.port, check: httpCheck() },
    ]);
    expect(w.checker.state('keep')).toEqual(keptBefore);
    const fresh = { up: true, successes: 0, failures: 0, lastDetail: 'not checked yet', lastCheckAt: 0 };
    expect(w.checker.state('move')).toEqual(fresh);
    expect(w.checker.state('edit')).toEqual(fresh);
    expect(w.checker.state('new')).toEqual(fresh);

    // 'edit' started up again, so it goes down again (a second change); 'move' now passes.
    await w.until(() => w.changes.filter((c) => c.key === 'edit').length === 2 && w.checker.state('move')!.successes > 0);
    expect(failing.requests.some((r) => r.startsWith('GET /v2/health '))).toBe(true);
    expect(w.changes.filter((c) => c.key === 'move')).toEqual([{ key: 'move', up: false, detail: 'HTTP 503 (expected 200)' }]);
  });

  it('setTargets rejects a bad target or a repeated key without changing anything', async () => {
    const srv = await statusServer(() => 200);
    const w = watchedChecker({ now: () => 42_000 });
    const good: CheckTarget = { key: 'a', host: '127.0.0.1', port: srv.port, check: httpCheck() };
    w.checker.setTargets([good]);
    // One check done (the next is an interval away): 'a' has state a reset or a new entry would lose.
    await w.until(() => w.results.length === 1);
    const checkedOnce = { up: true, successes: 1, failures: 0, lastDetail: 'HTTP 200', lastCheckAt: 42_000 };
    expect(w.checker.state('a')).toEqual(checkedOnce);
    expect(() => w.checker.setTargets([{ ...good, key: 'b', check: httpCheck({ fall: 0 }) }])).toThrow(/expected an integer >= 1 for fall but received 0/);
    expect(() => w.checker.setTargets([{ ...good, key: 'b', check: httpCheck({ expect: { min: 400, max: 200 } }) }])).toThrow(/for expect/);
    expect(() => w.checker.setTargets([good, { ...good }])).toThrow(/"a" appears twice/);
    expect(w.checker.state('a')).toEqual(checkedOnce);
    expect(w.checker.state('b')).toBeUndefined();
    await w.until(() => w.results.length === 2); // 'a' still runs, on the schedule it had
    expect(w.checker.state('a')).toEqual({ ...checkedOnce, successes: 2 });
    expect(srv.requests).toHaveLength(2);
  });

  it('checks a new target within its first interval', async () => {
    // Timers fire in expiry order, so a first check due within 100 ms comes before a 20 ms
    // target has finished ten checks (which takes at least nine full intervals, 180 ms).
    const srv = await statusServer(() => 200);
    const w = watchedChecker();
    w.checker.setTargets([
      { key: 'slow', host: '127.0.0.1', port: srv.port, check: httpCheck({ intervalMs: 100 }) },
      { key: 'fast', host: '127.0.0.1', port: srv.port, check: httpCheck({ intervalMs: 20 }) },
    ]);
    await w.until(() => w.resultsFor('slow').length > 0 || w.resultsFor('fast').length >= 10);
    expect(w.resultsFor('slow')).toHaveLength(1);
    expect(w.resultsFor('fast').length).toBeLessThan(10);
  });

  it('waits a full interval after each check', async () => {
    // Five 20 ms checks of 'fast' after the first of 'slow' take ~100 ms; 'slow' is not due for 500 ms.
    const srv = await statusServer(() => 200);
    const w = watchedChecker();
    w.checker.setTargets([
      { key: 'slow', host: '127.0.0.1', port: srv.port, check: httpCheck({ intervalMs: 500 }) },
      { key: 'fast', host: '127.0.0.1', port: srv.port, check: httpCheck({ intervalMs: 20 }) },
    ]);
    await w.until(() => w.resultsFor('slow').length > 0);
    const fastThen = w.resultsFor('fast').length;
    await w.until(() => w.resultsFor('fast').length >= fastThen + 5);
    expect(w.resultsFor('slow')).toHaveLength(1);
  });

  it('schedules on unref()d timers', async () => {
    const srv = await statusServer(() => 200);
    const w = watchedChecker();
    const before = refTimeouts();
    w.checker.setTargets(['a', 'b', 'c'].map((key) => ({ key, host: '127.0.0.1', port: srv.port, check: httpCheck({ intervalMs: 50 }) })));
    expect(refTimeouts()).toBe(before);
    await w.until(() => w.results.length >= 3);
  });

  it('removing a target aborts its check in flight and drops its result', async () => {
    const hang = await serve({}); // never answers; the deadline is longer than the test may take
    const ok = await statusServer(() => 200);
    const w = watchedChecker();
    const clock: CheckTarget = { key: 'clock', host: '127.0.0.1', port: ok.port, check: httpCheck() };
    w.checker.setTargets([clock, { key: 'hang', host: '127.0.0.1', port: hang.port, check: httpCheck({ timeoutMs: 60_000 }) }]);
    await hang.accepted(1);
    w.checker.setTargets([clock]);
    expect(w.checker.state('hang')).toBeUndefined();
    await hang.closedConnection(1);
    const clockTicks = w.resultsFor('clock').length;
    await w.until(() => w.resultsFor('clock').length >= clockTicks + 3);
    expect(w.resultsFor('hang')).toEqual([]);
    expect(hang.connections).toBe(1);
  }, 5000);

  it('close() stops every check and closes every socket; nothing fires afterwards', async () => {
    const busy = await statusServer(() => 503);
    const hang = await serve({});
    const w = watchedChecker();
    w.checker.setTargets([
      { key: 'busy', host: '127.0.0.1', port: busy.port, check: httpCheck({ fall: 1 }) },
      { key: 'hang', host: '127.0.0.1', port: hang.port, check: httpCheck({ timeoutMs: 60_000 }) },
    ]);
    await hang.accepted(1);
    await w.until(() => w.resultsFor('busy').length >= 2);
    w.checker.close();
    await hang.closedConnection(1);
    const busySeen = busy.connections;
    const fired = w.results.length + w.changes.length;

    // "Nothing happens" is measured against a second checker's clock: by its third result,
    // the closed one would have run several more 20 ms checks against `busy`.
    const clockServer = await statusServer(() => 200);
    const clock = watchedChecker();
    clock.checker.setTargets([{ key: 'clock', host: '127.0.0.1', port: clockServer.port, check: httpCheck() }]);
    await clock.until(() => clock.results.length >= 3);
    expect(busy.connections).toBe(busySeen);
    expect(hang.connections).toBe(1);
    expect(w.results.length + w.changes.length).toBe(fired);
    expect(w.checker.state('busy')).toBeUndefined();
    expect(() => w.checker.setTargets([])).toThrow(/after close/);
  }, 5000);
});
