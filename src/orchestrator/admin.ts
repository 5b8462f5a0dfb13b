// The admin listener (default 127.0.0.1:9090), on the main thread: /healthz (the process
// answers), /readyz (every worker is listening), /metrics (Prometheus text), the JSON API
// (/api/v1/backends, /api/v1/events, /api/v1/sessions/revoke) and the agents' /control
// WebSocket (./control.ts). Reads are open; every change needs `Authorization: Bearer <token>`
// with the token of --admin-token-file, and without that file changes are refused.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from '@trufflesuite/uws-js-unofficial';
import { loadUws } from '../data-plane/uws.js';
import { TetherError } from '../errors.js';
import { MAX_REVOKE_BODY, type ApiAnswer } from './sessions-api.js';
import { statusLine } from '../data-plane/status.js';
import { BadParameter, decodeParams, guardApp, INTERNAL_FAILURE, type AdminFailureLog } from './admin-guard.js';

/** How long a client may take to send an API request body. */
const BODY_DEADLINE_MS = 10_000;
const MAX_API_BODY = Math.max(MAX_REVOKE_BODY, 16 * 1024);
/** uSockets' LIBUS_LISTEN_EXCLUSIVE_PORT: bind without SO_REUSEPORT. */
const LISTEN_EXCLUSIVE_PORT = 1;
/** The listen overload with options that this build has and the package's types omit. */
interface ExclusiveListen {
  listen(host: string, port: number, options: number, cb: (ls: us_listen_socket | false) => void): void;
}

export interface AdminServer {
  readonly port: number;
  close(): void;
}

/** A request as the API handlers see it: already read, already authorised if it mutates. */
export interface ApiRequest {
  method: string;
  /** Path parameters (`:id`). */
  params: Record<string, string>;
  query: URLSearchParams;
  body: string;
}

export interface AdminHandlers {
  ready(): boolean;
  metrics(): Promise<string>;
  contentType: string;
  /** The bearer token changes need, or null when changes are refused. */
  adminToken: string | null;
  revoke(body: string): ApiAnswer;
  listBackends(req: ApiRequest): ApiAnswer;
  addBackend(req: ApiRequest): Promise<ApiAnswer>;
  drainBackend(req: ApiRequest): Promise<ApiAnswer>;
  undrainBackend(req: ApiRequest): Promise<ApiAnswer>;
  removeBackend(req: ApiRequest): Promise<ApiAnswer>;
  events(req: ApiRequest): ApiAnswer;
  /** The HTTPS certificates in force: names, issuer, validity, the file each came from. */
  certificates(): ApiAnswer;
  /** Re-read and apply the configuration (as SIGHUP does). */
  reload(): Promise<ApiAnswer>;
  /** Mounts /control on the app (./control.ts). */
  mountControl?(app: TemplatedApp): void;
  /** Mounts /dashboard and /dashboard/ws (./dashboard.ts). */
  mountDashboard?(app: TemplatedApp): void;
  /** An admin handler failed (answered 500): log it with its stack. */
  failed: AdminFailureLog;
}


function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Constant-time check of `Authorization: Bearer <token>`; null when allowed, else the refusal. */
function authorise(header: string, token: string | null): ApiAnswer | null {
  if (token === null) {
    return { status: 403, body: { error: 'changes_disabled', message: 'admin API changes are disabled: start tether with --admin-token-file FILE and send Authorization: Bearer <token>' } };
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return { status: 401, body: { error: 'unauthorized', message: 'this change needs Authorization: Bearer <admin token>' } };
  if (!timingSafeEqual(digest(m[1]!), digest(token))) return { status: 401, body: { error: 'unauthorized', message: 'wrong admin token' } };
  return null;
}

export function startAdmin(address: { host: string; port: number }, h: AdminHandlers): Promise<AdminServer> {
  const uws = loadUws();
  const raw = uws.App();
  // Every handler below, and those control and dashboard mount, run guarded (./admin-guard.ts).
  const app = guardApp(raw, h.failed);
  app.get('/healthz', (res) => {
    res.writeHeader('content-type', 'text/plain').end('ok\n');
  });
  app.get('/readyz', (res) => {
    if (h.ready()) res.writeHeader('content-type', 'text/plain').end('ready\n');
    else res.writeStatus('503 Service Unavailable').writeHeader('content-type', 'text/plain').end('not ready\n');
  });
  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => (aborted = true));
    h.metrics().then(
      (text) => {
        if (!aborted) res.cork(() => res.writeHeader('content-type', h.contentType).end(text));
      },
      (err: Error) => {
        if (!aborted) res.cork(() => res.writeStatus('500 Internal Server Error').end(`metrics failed: ${err.message}\n`));
      },
    );
  });

  /**
   * One API route: reads the body (bounded in size and time), checks the token for changes,
   * runs the handler, answers JSON. `params` names the path segments captured by uWS.
   */
  const route = (
    method: 'get' | 'post' | 'del',
    pattern: string,
    params: string[],
    mutates: boolean,
    handler: (req: ApiRequest) => ApiAnswer | Promise<ApiAnswer>,
  ) => {
    app[method](pattern, (res: HttpResponse, req: HttpRequest) => {
      // HttpRequest lives only until this returns: copy everything now.
      let badInput: ApiAnswer | null = null;
      let decoded: Record<string, string> = {};
      try {
        decoded = decodeParams(params, params.map((_, i) => req.getParameter(i) ?? ''));
      } catch (err) {
        if (!(err instanceof BadParameter)) throw err;
        badInput = { status: 400, body: { error: 'bad_request', message: err.message } };
      }
      const api: ApiRequest = {
        method: req.getMethod(),
        params: decoded,
        query: new URLSearchParams(req.getQuery() ?? ''),
        body: '',
      };
      const auth = mutates ? authorise(req.getHeader('authorization'), h.adminToken) : null;
      let aborted = false;
      let done = false;
      const chunks: Buffer[] = [];
      let size = 0;
      const answer = (a: ApiAnswer, close = false) => {
        if (aborted || done) return;
        done = true;
        clearTimeout(deadline);
        let text: string;
        try {
          text = `${JSON.stringify(a.body)}\n`;
        } catch (err) {
          h.failed(err, `${api.method.toUpperCase()} ${pattern}: answer not serialisable`);
          a = { status: 500, body: INTERNAL_FAILURE };
          text = `${JSON.stringify(INTERNAL_FAILURE)}\n`;
        }
        res.cork(() => {
          res.writeStatus(statusLine(a.status));
          res.writeHeader('content-type', 'application/json');
          res.end(text, close);
        });
      };
      const failed = (err: unknown) => {
        h.failed(err, `${api.method.toUpperCase()} ${pattern}`);
        answer({ status: 500, body: INTERNAL_FAILURE });
      };
      const run = () => {
        if (auth) return answer(auth);
        if (badInput) return answer(badInput);
        try {
          const out = handler(api);
          if (out instanceof Promise) {
            out.then((a) => {
              try {
                answer(a);
              } catch (err) {
                failed(err);
              }
            }, failed);
          } else answer(out);
        } catch (err) {
          failed(err);
        }
      };
      const deadline = setTimeout(() => answer({ status: 408, body: { error: 'timeout', message: `request body not received within ${BODY_DEADLINE_MS} ms` } }, true), BODY_DEADLINE_MS);
      res.onAborted(() => {
        aborted = true;
        clearTimeout(deadline);
      });
      if (method === 'get' || method === 'del') {
        run();
        return;
      }
      res.onData((chunk, isLast) => {
        if (done) return;
        size += chunk.byteLength;
        if (size > MAX_API_BODY) {
          answer({ status: 413, body: { error: 'too_large', message: `request body over ${MAX_API_BODY} bytes` } }, true);
          return;
        }
        chunks.push(Buffer.from(chunk.slice(0)));
        if (isLast) {
          api.body = Buffer.concat(chunks).toString('utf8');
          run();
        }
      });
    });
  };

  route('post', '/api/v1/sessions/revoke', [], true, (req) => h.revoke(req.body));
  route('get', '/api/v1/backends', [], false, (req) => h.listBackends(req));
  route('post', '/api/v1/backends', [], true, (req) => h.addBackend(req));
  route('post', '/api/v1/backends/:id/drain', ['id'], true, (req) => h.drainBackend(req));
  route('post', '/api/v1/backends/:id/undrain', ['id'], true, (req) => h.undrainBackend(req));
  route('del', '/api/v1/backends/:id', ['id'], true, (req) => h.removeBackend(req));
  route('get', '/api/v1/events', [], false, (req) => h.events(req));
  route('get', '/api/v1/certificates', [], false, () => h.certificates());
  route('post', '/api/v1/reload', [], true, () => h.reload());
  h.mountControl?.(app);
  h.mountDashboard?.(app);
  app.any('/*', (res) => {
    res
      .writeStatus('404 Not Found')
      .writeHeader('content-type', 'text/plain')
      .end('not found: try /dashboard, /healthz, /readyz, /metrics, GET /api/v1/backends, GET /api/v1/events, GET /api/v1/certificates, POST /api/v1/reload, POST /api/v1/sessions/revoke\n');
  });
  return new Promise((resolve, reject) => {
    // Exclusive (no SO_REUSEPORT): uWS would otherwise let a second process bind the same
    // admin port and answer part of the API in this one's place.
    (raw as unknown as ExclusiveListen).listen(address.host, address.port, LISTEN_EXCLUSIVE_PORT, (ls: us_listen_socket | false) => {
      if (!ls) {
        reject(new TetherError('TETHER_ERR_LISTEN', `cannot listen on ${address.host}:${address.port} (--admin): already in use by another process (another Tether?), or not an address of this machine`));
        return;
      }
      resolve({
        port: uws.us_socket_local_port(ls as never),
        close: () => {
          uws.us_listen_socket_close(ls);
          raw.close?.();
        },
      });
    });
  });
}
