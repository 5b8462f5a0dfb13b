// Scenario many-idle: 50 active wrk connections while 10,000 idle keep-alive connections are
// held open on the balancer, as a busy site's browsers hold them between clicks. What it
// shows: whether holding many idle connections (memory per connection, event-loop and
// timer-wheel size, accept limits) costs the active ones latency, and peak RSS with them.
//
// prepare() opens IDLE_CONNECTIONS raw TCP connections, OPEN_CONCURRENCY at a time; each
// sends one GET / and reads its full response (Content-Length or chunked), then stays open
// and silent. Each has a connect+response deadline; failures are counted, not retried. Unless
// every one is still open afterwards, the run fails (named, with the failure reasons); then
// wrk measures 50 other connections as usual (no cookies). cleanup() closes the idle sockets and adds to the same `checks` object (which the
// harness stores after the run) how many the peer closed meanwhile: a peer whose keep-alive
// timeout is shorter than the run drops them, which the figures must be read with.
//
// The harness sizes the peers' connection limits by `connections` + `idleConnections`.

import net from 'node:net';

export const name = 'many-idle';
export const description = '50 active wrk connections while 10,000 idle keep-alive connections stay open on the balancer';

export const IDLE_CONNECTIONS = 10_000;
export const OPEN_CONCURRENCY = 200;
export const OPEN_DEADLINE_MS = 10_000;
export const idleConnections = IDLE_CONNECTIONS;
export const columns = [{ key: 'idleKeptPct', label: 'idle kept %', digits: 1 }];

export function loadDescription(options) {
  return `wrk -t${options.threads} -c${options.connections} -d${options.duration}s, no cookie, with ${IDLE_CONNECTIONS} idle keep-alive connections held open`;
}

/**
 * Reads one HTTP/1.1 response from `socket`. Resolves { status, keepAlive } once the body is
 * complete; rejects on close, error or unframed bodies. Small responses only (GET /).
 */
function readResponse(socket) {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    let head = null;
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
    };
    const done = (error, value) => {
      cleanup();
      if (error) reject(error);
      else resolve(value);
    };
    const onError = (error) => done(error);
    const onClose = () => done(new Error('closed before the response was complete'));
    const onData = (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!head) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buffered.length > 64 * 1024) done(new Error('response head over 64 KiB'));
          return;
        }
        const lines = buffered.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1] ?? NaN);
        const headers = new Map();
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim().toLowerCase());
        }
        const length = headers.has('content-length') ? Number(headers.get('content-length')) : null;
        const chunked = /\bchunked\b/.test(headers.get('transfer-encoding') ?? '');
        if (length === null && !chunked) return done(new Error(`unframed response body (status ${status}): cannot keep the connection`));
        head = { status, length, chunked, keepAlive: !/\bclose\b/.test(headers.get('connection') ?? ''), bodyStart: end + 4 };
      }
      const body = buffered.length - head.bodyStart;
      // Chunked: the small bodies here end with the last-chunk and no trailers.
      const complete = head.chunked ? buffered.subarray(head.bodyStart).includes('0\r\n\r\n') : body >= head.length;
      if (complete) done(null, { status: head.status, keepAlive: head.keepAlive });
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', onError);
  });
}

/** One idle connection: connect, GET /, read the response. Resolves the socket or rejects. */
function openOne(host, port, deadlineMs) {
  const socket = net.connect({ host, port });
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no complete response within ${deadlineMs} ms`)), deadlineMs);
  });
  const exchange = (async () => {
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.removeAllListeners('error');
    const response = readResponse(socket);
    socket.write(`GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: tether-bench-idle\r\n\r\n`);
    const { status, keepAlive } = await response;
    if (status !== 200) throw new Error(`status ${status}`);
    if (!keepAlive) throw new Error('the peer answered Connection: close');
  })();
  return Promise.race([exchange, deadline])
    .then(() => socket)
    .catch((error) => {
      socket.destroy();
      throw error;
    })
    .finally(() => clearTimeout(timer));
}

/**
 * Opens `count` idle keep-alive connections to `url`, `concurrency` at a time. Returns
 * { sockets, opened, failed, failureSample, closedByPeer(), stillOpen(), close() }.
 * closedByPeer() counts sockets that closed after opening and before close() was called.
 */
export async function openIdleConnections({ url, count, concurrency = OPEN_CONCURRENCY, deadlineMs = OPEN_DEADLINE_MS }) {
  const { hostname, port } = new URL(url);
  const sockets = [];
  let failed = 0;
  const failures = new Map();
  let closedByPeer = 0;
  let closing = false;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next += 1;
      try {
        const socket = await openOne(hostname, Number(port), deadlineMs);
        // From now on the socket is idle: any close before close() is the peer's doing.
        socket.on('error', () => {});
        socket.once('close', () => {
          if (!closing) closedByPeer += 1;
        });
        sockets.push(socket);
      } catch (error) {
        failed += 1;
        const reason = error instanceof Error ? error.message : String(error);
        failures.set(reason, (failures.get(reason) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return {
    sockets,
    opened: sockets.length,
    failed,
    failureSample: Object.fromEntries([...failures].slice(0, 5)),
    closedByPeer: () => closedByPeer,
    stillOpen: () => sockets.filter((s) => !s.destroyed && s.readyState === 'open').length,
    /** Closes every socket; resolves once each has emitted 'close'. */
    close: async () => {
      closing = true;
      await Promise.all(
        sockets.map((s) => {
          if (s.closed) return undefined;
          const closed = new Promise((resolve) => s.once('close', resolve));
          s.destroy();
          return closed;
        }),
      );
    },
  };
}

export async function prepare({ url, peer, idle = IDLE_CONNECTIONS, concurrency = OPEN_CONCURRENCY, deadlineMs = OPEN_DEADLINE_MS }) {
  const started = Date.now();
  const held = await openIdleConnections({ url, count: idle, concurrency, deadlineMs });
  const openMs = Date.now() - started;
  // One turn of the event loop, so FINs that already arrived are seen before counting.
  await new Promise((resolve) => setImmediate(resolve));
  const checks = {
    idleRequested: idle,
    idleOpened: held.opened,
    idleFailed: held.failed,
    ...(held.failed > 0 ? { idleFailures: held.failureSample } : {}),
    idleOpenMs: openMs,
    idleOpenBeforeRun: held.stillOpen(),
  };
  // A run with fewer idle connections than announced would measure something else: fail it,
  // named, after letting go of what we hold (the harness calls cleanup only after a run).
  if (checks.idleOpenBeforeRun < idle) {
    await held.close();
    throw new Error(
      `${peer?.name ?? url}: only ${checks.idleOpenBeforeRun} of ${idle} idle connections open before the run` +
        ` (${held.failed} failed to open${held.failed > 0 ? `: ${JSON.stringify(held.failureSample)}` : ''};` +
        ` ${held.closedByPeer()} closed by the peer after opening)`,
    );
  }
  return {
    cookies: [],
    checks,
    cleanup: async () => {
      // Counted before closing: what the peer itself dropped during warm-up and the run.
      checks.idleClosedByPeer = held.closedByPeer();
      checks.idleOpenAfterRun = held.stillOpen();
      await held.close();
      // In the table: a peer that dropped idle connections mid-run measured a lighter load.
      const dropped = idle - checks.idleOpenAfterRun;
      return {
        extra: { idleKeptPct: (100 * checks.idleOpenAfterRun) / idle },
        ...(dropped > 0 ? { flag: `closed ${dropped} of ${idle} idle connections during the run: measured with fewer held` } : {}),
      };
    },
  };
}
