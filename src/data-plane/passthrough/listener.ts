// The TLS passthrough path of one worker (DESIGN.md "TLS passthrough path"): accept on an
// SO_REUSEPORT socket shared with the other workers, buffer until the whole ClientHello is in
// (capped, with a deadline), parse it natively, route by SNI (and ALPN), connect to a backend
// of the route's pool, optionally send a PROXY v2 header, forward the buffered bytes, then
// relay both ways with backpressure and half-close until both sides are done or the
// connection goes idle. TLS is never terminated; no key is ever held. Bad input is closed and
// counted, never left waiting.
import net from 'node:net';
import { closeSync } from 'node:fs';
import type { Config, SniRouteConfig } from '../../config/schema.js';
import type { BackendRuntime, Runtime } from '../runtime.js';
import { C, type WorkerCounters } from '../../shared-memory/counters.js';
import { compileSniRoutes } from './router.js';
import { proxyV2Header } from './proxy-protocol.js';

export type ClientHelloStatus = 'incomplete' | 'ok' | 'not_tls' | 'too_large' | 'malformed';

export interface ClientHelloInfo {
  status: ClientHelloStatus;
  sni?: string | null;
  alpn?: string[];
  reason?: string;
}

export type ParseClientHello = (bytes: Uint8Array, maxBytes: number) => ClientHelloInfo;

export interface PassthroughContext {
  config: Config;
  runtime: () => Runtime;
  counters: WorkerCounters;
  parse: ParseClientHello;
  /** Opens this worker's SO_REUSEPORT socket on the address (native). */
  openListener: (host: string, port: number) => number;
  log: (level: 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export interface Passthrough {
  /** Stops accepting; resolves once every relayed connection has ended or `drainMs` passed (then cut). */
  close(drainMs: number): Promise<void>;
  readonly active: number;
}

/** TLS alert records (RFC 8446 §6): fatal, with the reason a client can show. */
const ALERT_UNRECOGNIZED_NAME = 112;
const ALERT_DECODE_ERROR = 50;
const ALERT_INTERNAL_ERROR = 80;
/** After a refusal, how long the client gets to read the alert and close before it is cut. */
const LINGER_MS = 1_000;
const MAX_ATTEMPTS = 3;

function alert(description: number): Buffer {
  return Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]);
}

export function startPassthrough(ctx: PassthroughContext): Promise<Passthrough> {
  const cfg = ctx.config.passthrough;
  const routes = cfg.routes;
  const router = compileSniRoutes(routes);
  const counters = ctx.counters;
  const clients = new Set<net.Socket>();
  const servers: net.Server[] = [];

  const onConnection = (client: net.Socket): void => {
    counters.inc(C.passthrough_connections);
    counters.inc(C.passthrough_active);
    clients.add(client);
    client.setNoDelay(true);
    client.on('error', () => {});
    client.once('close', () => {
      clients.delete(client);
      counters.inc(C.passthrough_active, -1);
    });
    readClientHello(client);
  };

  /** Buffers until the ClientHello parses (or cannot), within the size cap and the deadline. */
  function readClientHello(client: net.Socket): void {
    let buffered: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      counters.inc(C.passthrough_hello_timeouts);
      finish();
      client.destroy();
    }, cfg.clientHelloTimeoutMs);
    const finish = () => {
      clearTimeout(timer);
      client.off('data', onData);
      client.off('end', onEnd);
      client.off('close', finish);
    };
    // The client finished sending (FIN) before a whole ClientHello: it can never complete.
    const onEnd = () => {
      finish();
      counters.inc(C.passthrough_malformed);
      client.destroy();
    };
    const onData = (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const hello = ctx.parse(buffered, cfg.maxClientHelloBytes);
      if (hello.status === 'incomplete' && buffered.length <= cfg.maxClientHelloBytes) return;
      finish();
      client.pause();
      switch (hello.status) {
        case 'ok':
          routeAndConnect(client, buffered, hello.sni ?? null, hello.alpn ?? []);
          return;
        case 'not_tls':
          counters.inc(C.passthrough_not_tls);
          client.destroy();
          return;
        case 'malformed':
          counters.inc(C.passthrough_malformed);
          refuse(client, ALERT_DECODE_ERROR);
          return;
        default: // too_large, or still incomplete past the cap
          counters.inc(C.passthrough_too_large);
          client.destroy();
      }
    };
    client.on('data', onData);
    client.once('end', onEnd);
    client.once('close', finish);
  }

  /** A fatal alert, then FIN; cut if the client lingers. */
  function refuse(client: net.Socket, description: number): void {
    const cut = setTimeout(() => client.destroy(), LINGER_MS);
    client.once('close', () => clearTimeout(cut));
    client.end(alert(description));
  }

  function routeAndConnect(client: net.Socket, hello: Buffer, sni: string | null, alpn: string[]): void {
    const routeIndex = router.route(sni, alpn);
    if (routeIndex < 0) {
      counters.inc(C.passthrough_no_route);
      refuse(client, ALERT_UNRECOGNIZED_NAME);
      return;
    }
    const route = routes[routeIndex]!;
    const pool = ctx.runtime().pools.get(route.pool)!;
    counters.incRoute(routeIndex, 'connections');
    const clientIp = client.remoteAddress ?? '';
    let attempts = 0;
    const tried = new Set<number>();

    const attempt = (exclude: number): void => {
      if (client.destroyed) return;
      const index = pool.balancer.pick({ hashKey: clientIp }, exclude);
      if (index < 0 || attempts >= MAX_ATTEMPTS || tried.has(index)) {
        counters.inc(attempts === 0 ? C.passthrough_no_backend : C.passthrough_upstream_connect_errors);
        refuse(client, ALERT_INTERNAL_ERROR);
        return;
      }
      attempts++;
      tried.add(index);
      const backend = pool.backends[index]!;
      connect(client, hello, route, routeIndex, backend, () => {
        counters.markBackendFailure(backend.slot, Date.now(), 1_000, 30_000);
        counters.incBackend(backend.slot, 'connect_errors');
        attempt(index);
      });
    };
    attempt(-1);
  }

  function connect(
    client: net.Socket,
    hello: Buffer,
    route: SniRouteConfig,
    routeIndex: number,
    backend: BackendRuntime,
    onFailure: () => void,
  ): void {
    const upstream = net.connect({ host: backend.host, port: backend.port, noDelay: true, allowHalfOpen: true });
    let connected = false;
    const deadline = setTimeout(() => upstream.destroy(new Error('connect timeout')), ctx.config.timeouts.connectMs);
    const onEarlyClose = () => {
      // The client left while we were connecting: nothing to relay.
      upstream.destroy();
    };
    client.once('close', onEarlyClose);
    upstream.once('error', () => {});
    upstream.once('close', () => {
      clearTimeout(deadline);
      if (!connected) {
        client.off('close', onEarlyClose);
        if (!client.destroyed) onFailure();
      }
    });
    upstream.once('connect', () => {
      connected = true;
      clearTimeout(deadline);
      client.off('close', onEarlyClose);
      counters.markBackendSuccess(backend.slot);
      counters.inc(C.passthrough_routed);
      counters.incBackend(backend.slot, 'active');
      if (route.proxyProtocol) {
        upstream.write(
          proxyV2Header({ sourceAddress: client.remoteAddress, sourcePort: client.remotePort, destAddress: client.localAddress, destPort: client.localPort }),
        );
      }
      upstream.write(hello);
      relay(client, upstream, routeIndex, backend);
    });
  }

  /** Both ways, with backpressure (pipe) and half-close (allowHalfOpen + end propagation). */
  function relay(client: net.Socket, upstream: net.Socket, routeIndex: number, backend: BackendRuntime): void {
    const idle = cfg.idleTimeoutMs;
    const onIdle = () => {
      counters.inc(C.passthrough_idle_timeouts);
      client.destroy();
      upstream.destroy();
    };
    client.setTimeout(idle, onIdle);
    upstream.setTimeout(idle, onIdle);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
    // Either side failing ends both: a relay with one dead leg would hang the other. A side
    // that pipe has already ended (the other side's FIN) is left to flush what it still
    // buffers; it closes by itself once its peer closes too (or the idle timeout cuts it).
    client.once('close', () => {
      if (!upstream.writableEnded) upstream.destroy();
    });
    upstream.once('close', () => {
      if (!client.writableEnded) client.destroy();
    });
    let counted = false;
    const count = () => {
      if (counted) return;
      counted = true;
      const bytesIn = client.bytesRead;
      const bytesOut = client.bytesWritten;
      counters.inc(C.passthrough_bytes_in, bytesIn);
      counters.inc(C.passthrough_bytes_out, bytesOut);
      counters.incRoute(routeIndex, 'bytes_in', bytesIn);
      counters.incRoute(routeIndex, 'bytes_out', bytesOut);
      counters.incBackend(backend.slot, 'active', -1);
      counters.incBackend(backend.slot, 'requests');
    };
    client.once('close', count);
  }

  return Promise.all(
    cfg.listen.map(
      (addr) =>
        new Promise<net.Server>((resolve, reject) => {
          let fd: number;
          try {
            fd = ctx.openListener(addr.host, addr.port);
          } catch (err) {
            reject(err);
            return;
          }
          const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, onConnection);
          server.once('error', (err) => {
            // listen({ fd }) failed before the handle adopted the fd: it is still ours to close.
            try {
              closeSync(fd);
            } catch {
              // already closed
            }
            reject(err);
          });
          server.listen({ fd }, () => resolve(server));
        }),
    ),
  ).then((list) => {
    servers.push(...list);
    return {
      get active() {
        return clients.size;
      },
      close(drainMs: number): Promise<void> {
        for (const s of servers) s.close();
        if (clients.size === 0) return Promise.resolve();
        return new Promise<void>((resolve) => {
          const cut = setTimeout(() => {
            for (const c of clients) c.destroy();
            resolve();
          }, drainMs);
          const check = () => {
            if (clients.size === 0) {
              clearTimeout(cut);
              resolve();
            }
          };
          for (const c of clients) c.once('close', () => setImmediate(check));
        });
      },
    };
  });
}
