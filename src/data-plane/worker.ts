// Worker thread entry: the HTTP front door listening on every HTTP address (SO_REUSEPORT, so
// the kernel spreads connections over workers), its own native addon instance and upstream
// pools, a sweeper that enforces every deadline, and a message port to the orchestrator.
import { parentPort, workerData } from 'node:worker_threads';
import type { TLSSocket } from 'node:tls';
import { FrontDoor, type FrontDoorSettings, type ListenerTerms } from './front-door/front-door.js';
import type { ClientRequest, ClientResponse } from './front-door/client.js';
import type { FrontExchange } from './front-door/connection.js';
import { TlsListener } from './front-door/tls-listener.js';
import { loadCertificates } from '../tls/certificates.js';
import { hostnameOf } from './http/request-head.js';
import { statusLine } from './status.js';
import type { Config } from '../config/schema.js';
import { ActiveExchanges } from './http/active-exchanges.js';
import type { ListenerContext } from './http/context.js';
import { handleRequest } from './http/handler.js';
import { Runtime } from './runtime.js';
import { decode, encode, type FromWorker, type GrantToPush, type ToWorker, type WorkerInit } from '../protocol/worker-messages.js';
import { sweepIdle } from './upstream/pool.js';
import { clock } from './clock.js';
import { C, WorkerCounters } from '../shared-memory/counters.js';
import { SharedTable } from '../shared-memory/table.js';
import { SessionStore } from '../sticky/sessions.js';
import { createTokenCrypto, openReusePortListener, parseClientHello } from '../native/index.js';
import { compileRouteSet, startPassthrough, type Passthrough, type RouteSet } from './passthrough/listener.js';
import { mountAuthz } from './authz-routes.js';
import { AccessLog } from './access-log.js';
import { RouteTokens } from '../sticky/route-token.js';
import type { KeyRing } from '../protocol/key-ring.js';

const SWEEP_MS = 100;
const NO_FINGERPRINT = { fingerprint: false } as const;

/** The front door's limits and deadlines, as the configuration says (applied again on reload). */
function frontDoorSettings(config: Config): FrontDoorSettings {
  return {
    maxHeadBytes: config.limits.maxRequestHeadBytes,
    maxHeaders: config.limits.maxRequestHeaders,
    headTimeoutMs: config.timeouts.requestHeadMs,
    keepAliveTimeoutMs: config.timeouts.clientKeepAliveMs,
  };
}

function send(msg: FromWorker): void {
  parentPort!.postMessage(encode(msg));
}

function log(level: 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void {
  send({ v: 1, type: 'log', level, msg, fields });
}

/** The worker's HTTPS side, when any listener is https:// (its certificates were checked at start-up). */
function openTlsListener(init: WorkerInit, counters: WorkerCounters, onSecure: (socket: TLSSocket, terms: ListenerTerms) => void): TlsListener | null {
  const t = init.config.tls;
  if (!init.config.listen.some((l) => l.protocol === 'https')) return null;
  return new TlsListener({
    // Warnings (an expired certificate, a readable key) were logged once, by the main thread.
    certificates: loadCertificates(t.certs, { strictSni: t.strictSni, ciphers: t.ciphers ?? undefined }),
    parse: (bytes, maxBytes) => parseClientHello(bytes, maxBytes, NO_FINGERPRINT),
    ticketKeys: Buffer.from(init.ticketKeys),
    handshakeTimeoutMs: t.handshakeTimeoutMs,
    onSecure,
    onHandshake: (outcome, listener) => counters.incTlsHandshake(listener, outcome),
  });
}

/**
 * A redirect=https listener's answer: 308 to the same host and target on HTTPS. A request body
 * is not read: the connection closes after the answer.
 */
function redirectToHttps(res: ClientResponse, req: ClientRequest, port: number): void {
  const host = hostnameOf(req.getHeader('host'));
  if (!/^(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])$/.test(host)) {
    res.cork(() => res.writeStatus(statusLine(400)).writeHeader('content-type', 'text/plain; charset=utf-8').end('tether: no usable Host to redirect to HTTPS\n', true));
    return;
  }
  const query = req.getQuery();
  const location = `https://${host}${port === 443 ? '' : `:${port}`}${req.getUrl()}${query ? `?${query}` : ''}`;
  const hasBody = req.getHeader('content-length') !== '' && req.getHeader('content-length') !== '0' || req.getHeader('transfer-encoding') !== '';
  res.cork(() => {
    res.writeStatus(statusLine(308));
    res.writeHeader('location', location);
    res.writeHeader('content-type', 'text/plain; charset=utf-8');
    res.end(`tether: this site is served over HTTPS: ${location}\n`, hasBody);
  });
}

function main(): void {
  const init = workerData as WorkerInit;
  const counters = new WorkerCounters(init.shared, init.layout, init.workerIndex);
  const tokens = new RouteTokens(createTokenCrypto(), { maxAgeSec: init.config.tokenMaxAgeSec, now: () => clock.now });
  const applyKeyRing = (ring: KeyRing) => tokens.setKeyRing(ring.keys, ring.sealKeyId, ring.v1OpensUntil);
  applyKeyRing(init.keyRing);
  // Lock owner ids: 1 is the orchestrator, workers count from 2.
  const sessions = new SessionStore(SharedTable.attach(init.table, init.workerIndex + 2), init.sessionKey);
  let runtime = new Runtime(init.config, init.slots, counters, () => clock.now, sessions);
  let backendsVersion = init.backendsVersion;
  let routeSet: RouteSet = compileRouteSet(init.config.passthrough, init.routeSlots);
  const active = new ActiveExchanges();
  let accessLogDest: string | null = null;
  let accessLogReported = false;
  const openAccessLog = (dest: string) =>
    AccessLog.open(dest, (err) => {
      // Once per file: a full disk must not turn into a log line per request.
      if (!accessLogReported) log('error', `access log ${accessLogDest}: ${err.message} (lines are dropped while it fails)`);
      accessLogReported = true;
    }, (lines) => counters.inc(C.access_log_dropped, lines));
  const ctx: ListenerContext = { runtime: () => runtime, tokens, counters, active, log, sessions, accessLog: null, workerIndex: init.workerIndex };
  if (init.config.accessLog) {
    ctx.accessLog = openAccessLog(init.config.accessLog);
    accessLogDest = init.config.accessLog;
  }
  /** Log rotation (SIGUSR1) and reloads: reopen, switch files, or turn the log on or off. */
  const setAccessLog = (dest: string | null) => {
    const current = ctx.accessLog;
    try {
      if (dest === null) {
        ctx.accessLog = null;
        void current?.close();
      } else if (current) current.reopen(dest);
      else ctx.accessLog = openAccessLog(dest);
      accessLogDest = dest;
      accessLogReported = false;
    } catch (err) {
      log('error', `access log ${dest}: cannot open (${(err as Error).message}); still writing to ${accessLogDest}`);
    }
  };

  // Every way out of a worker closes its sockets first; the orchestrator then replaces this
  // worker and counts it.
  let frontDoor: FrontDoor | null = null;
  const die = (why: string, err: unknown) => {
    log('error', `worker ${init.workerIndex} failed: ${why}`, { err: String((err as Error)?.stack ?? err) });
    ctx.accessLog?.closeNow();
    frontDoor?.closeAll();
    process.exit(70);
  };
  process.on('uncaughtException', (err) => die('uncaught exception', err));
  process.on('unhandledRejection', (err) => die('unhandled rejection', err));
  // Test-only (TETHER_FAULT_INJECTION=1): a request with `x-tether-fault: crash-worker` makes
  // this worker fail the way a bug would, so tests can watch it being replaced.
  const faultInjection = process.env.TETHER_FAULT_INJECTION === '1';

  let pendingGrants: GrantToPush[] = [];
  const flushGrants = () => {
    const grants = pendingGrants;
    pendingGrants = [];
    if (grants.length > 0) send({ v: 1, type: 'grants', grants });
  };
  const authz = init.authz
    ? mountAuthz({
        config: init.config,
        keyRing: init.keyRing,
        terminalKeys: init.authz.terminalKeys,
        serverKeys: init.authz.serverKeys,
        runtime: () => runtime,
        counters,
        sessions,
        push: (pool, id, f, box) => {
          // Grants go to the orchestrator once per event-loop turn, together: one message (and
          // one wake-up of the main thread) for every handshake this turn completed.
          pendingGrants.push({ pool, id, f, box });
          if (pendingGrants.length === 1) setImmediate(flushGrants);
        },
        log,
      })
    : null;

  let tlsListener: TlsListener | null = null;
  frontDoor = new FrontDoor(frontDoorSettings(init.config), {
    onRequest: (res, req) => serve(res, req),
    // Counted, not logged: a client sending garbage must not become a log line per request
    // (the client itself is told what was wrong).
    onRefused: (reason, _detail, status) => {
      counters.inc(C[`refused_${reason}`]);
      if (status === 400) counters.inc(C.bad_requests);
      if (status >= 400) counters.inc(status >= 500 ? C.responses_5xx : C.responses_4xx);
    },
    onAcceptError: (err) => log('warn', `accept failed: ${err.message}`),
  });
  const serve = (res: ClientResponse, req: FrontExchange) => {
    if (req.redirectHttpsPort !== null) {
      redirectToHttps(res, req, req.redirectHttpsPort);
      counters.inc(C.https_redirects);
      counters.inc(C.responses_3xx);
      return;
    }
    if (faultInjection && req.getHeader('x-tether-fault') === 'crash-worker') {
      res.onAborted(() => {});
      setImmediate(() => {
        throw new Error('injected fault: crash-worker');
      });
      return;
    }
    try {
      const authzRoute = authz?.match(req.getCaseSensitiveMethod(), req.getUrl());
      if (authzRoute) authzRoute(res, req);
      else handleRequest(ctx, res, req);
    } catch (err) {
      // A bug must cost one request, not the worker and every connection on it.
      log('error', 'request handler failed', { err: String((err as Error)?.stack ?? err) });
      try {
        res.cork(() => res.writeStatus('500 Internal Server Error').end('tether: internal error\n', true));
      } catch {
        // Already answered or aborted.
      }
    }
  };

  const sweeper = setInterval(() => {
    const now = (clock.now = Date.now());
    active.expire(now);
    frontDoor?.sweep(now);
    for (const pool of runtime.pools.values()) for (const b of pool.backends) sweepIdle(b, now, runtime.config.timeouts.keepAliveMs);
  }, SWEEP_MS);

  // TLS passthrough listeners (if any) open after the HTTP ones; the worker reports itself
  // listening once both are up.
  let passthrough: Passthrough | null = null;
  const startTls = () => {
    if (init.config.passthrough.listen.length === 0) {
      send({ v: 1, type: 'listening', workerIndex: init.workerIndex, ports });
      return;
    }
    startPassthrough({
      config: init.config,
      runtime: () => runtime,
      routes: () => routeSet,
      counters,
      // Routing needs SNI and ALPN only: no JA4 per connection.
      parse: (bytes, maxBytes) => parseClientHello(bytes, maxBytes, NO_FINGERPRINT),
      openListener: (host, port) => openReusePortListener(host, port),
      log,
      workerIndex: init.workerIndex,
    }).then(
      (p) => {
        passthrough = p;
        send({ v: 1, type: 'listening', workerIndex: init.workerIndex, ports });
      },
      (err: Error & { code?: string }) => {
        frontDoor?.closeAll();
        log('error', `passthrough listener failed: ${err.message}`, { code: err.code });
        send({ v: 1, type: 'listen-failed', workerIndex: init.workerIndex, address: init.config.passthrough.listen.map((a) => `${a.host}:${a.port}`).join(', ') });
        clearInterval(sweeper);
        process.exit(3);
      },
    );
  };
  const ports: number[] = [];
  // TLS passthrough only (--listen off): no HTTP listener to open.
  try {
    tlsListener = openTlsListener(init, counters, (socket, terms) => frontDoor?.adoptTls(socket, terms));
    // redirect=https sends a client to the first HTTPS listener's port.
    const httpsPort = init.config.listen.find((l) => l.protocol === 'https')?.port ?? 443;
    for (const [index, addr] of init.config.listen.entries()) {
      const fd = openReusePortListener(addr.host, addr.port);
      const tls = addr.protocol === 'https' ? tlsListener : null;
      ports.push(frontDoor.listen(fd, tls, { index, redirectHttpsPort: addr.redirect === 'https' ? httpsPort : null }));
    }
  } catch (err) {
    frontDoor.closeAll();
    log('error', `HTTP listener failed: ${(err as Error).message}`, { code: (err as { code?: string }).code });
    send({ v: 1, type: 'listen-failed', workerIndex: init.workerIndex, address: init.config.listen.map((a) => `${a.host}:${a.port}`).join(', ') });
    // Exit so the orchestrator can retry this worker (with backoff) or stop, as it decides.
    clearInterval(sweeper);
    process.exit(3);
  }
  startTls();

  parentPort!.on('message', (data: unknown) => {
    const msg = decode<ToWorker>(data);
    switch (msg.type) {
      case 'key-ring':
        applyKeyRing(msg.keyRing);
        authz?.setKeyRing(msg.keyRing);
        return;
      case 'access-log':
        setAccessLog(msg.dest);
        send({ v: 1, type: 'access-log-applied', workerIndex: init.workerIndex, generation: msg.generation });
        return;
      case 'certificates': {
        let ok = true;
        try {
          tlsListener?.setCertificates(loadCertificates(msg.tls.certs, { strictSni: msg.tls.strictSni, ciphers: msg.tls.ciphers ?? undefined }));
        } catch (err) {
          // Checked by the main thread a moment ago: a file changed again in between.
          ok = false;
          log('error', `certificates not reloaded; this worker keeps serving the ones it had: ${(err as Error).message}`);
        }
        send({ v: 1, type: 'certificates-applied', workerIndex: init.workerIndex, generation: msg.generation, ok });
        return;
      }
      case 'terminal-keys':
        authz?.setTerminalKeys(msg.keys);
        return;
      case 'backends': {
        // Registry change: swap in a new snapshot. In-flight exchanges keep the one they started
        // with; backends dropped or moved lose their idle connections now.
        const snap = msg.snapshot;
        if (snap.version > backendsVersion) {
          const base = snap.config ?? runtime.config;
          const config = { ...base, pools: Object.fromEntries(Object.entries(base.pools).map(([name, pc]) => [name, { ...pc, backends: snap.pools[name] ?? [] }])) };
          const next = new Runtime(config, snap.slots, counters, () => clock.now, sessions, runtime);
          if (config.tokenMaxAgeSec !== runtime.config.tokenMaxAgeSec) tokens.setMaxAgeSec(config.tokenMaxAgeSec);
          // New routes apply to connections accepted from now on.
          if (snap.config && snap.routeSlots) routeSet = compileRouteSet(config.passthrough, snap.routeSlots);
          for (const b of Runtime.retire(runtime, next)) for (const conn of b.idle.splice(0)) conn.destroy();
          runtime = next;
          if (frontDoor) frontDoor.settings = frontDoorSettings(config);
          backendsVersion = snap.version;
        }
        send({ v: 1, type: 'backends-applied', workerIndex: init.workerIndex, version: backendsVersion });
        return;
      }
      case 'shutdown': {
        // Stop accepting; idle connections close now, busy ones after their response; in-flight
        // exchanges finish until the drain deadline.
        frontDoor?.drain();
        const deadline = Date.now() + msg.drainMs;
        let tlsDrained = passthrough === null;
        void passthrough?.close(msg.drainMs).then(() => (tlsDrained = true));
        const check = setInterval(() => {
          if ((active.size === 0 && tlsDrained) || Date.now() >= deadline) {
            clearInterval(check);
            clearInterval(sweeper);
            send({ v: 1, type: 'drained', workerIndex: init.workerIndex });
            // The access log's last lines first (bounded: a stuck disk must not hold the exit).
            const exit = () => {
              frontDoor?.closeAll();
              process.exit(0);
            };
            const accessLog = ctx.accessLog;
            if (!accessLog) return exit();
            setTimeout(exit, 2_000);
            void accessLog.close().then(exit);
          }
        }, 20);
        return;
      }
    }
  });
}

main();
