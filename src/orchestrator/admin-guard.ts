// Keeps the admin listener's failures inside the request that caused them. The admin listener
// shares the main thread with the orchestrator: an exception escaping a uWS handler would end
// the process and every worker with it, so one hostile or unlucky admin request could take all
// traffic down. Every handler mounted through guardApp() answers 500 (logged with its stack)
// instead, and path parameters are decoded in one place that answers 400 for bad escapes.
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocketBehavior } from '@trufflesuite/uws-js-unofficial';

/** Where an admin failure is reported: the error (with its stack) and what was being served. */
export type AdminFailureLog = (err: unknown, where: string) => void;

const HTTP_METHODS = new Set(['get', 'post', 'put', 'del', 'patch', 'options', 'head', 'connect', 'trace', 'any']);
const WS_CALLBACKS = ['open', 'message', 'drain', 'close', 'ping', 'pong', 'subscription'] as const;

/** What a client is told when an admin handler failed (the details go to the log, not to it). */
export const INTERNAL_FAILURE = Object.freeze({ error: 'internal', message: 'the admin request failed; the balancer is unaffected (see its log)' });
const INTERNAL_FAILURE_JSON = `${JSON.stringify(INTERNAL_FAILURE)}\n`;

/**
 * Ends `res` with a short error, or does nothing if it can no longer be answered (already
 * answered, or the client left: uWS throws on any access to such a response).
 */
function answerIfOpen(res: HttpResponse, statusLine: string, contentType: string, body: string): void {
  try {
    res.cork(() => {
      res.writeStatus(statusLine);
      res.writeHeader('content-type', contentType);
      res.end(body, true);
    });
  } catch {
    // Answered or aborted already: nothing to tell the client.
  }
}

function where(req: HttpRequest): string {
  try {
    return `${req.getCaseSensitiveMethod()} ${req.getUrl()}`;
  } catch {
    return 'admin request';
  }
}

function guardHttp(handler: (res: HttpResponse, req: HttpRequest) => void | Promise<void>, log: AdminFailureLog) {
  return (res: HttpResponse, req: HttpRequest): void => {
    const fail = (err: unknown, at: string) => {
      log(err, at);
      answerIfOpen(res, '500 Internal Server Error', 'application/json', INTERNAL_FAILURE_JSON);
    };
    try {
      const out = handler(res, req);
      if (out instanceof Promise) {
        const at = where(req);
        out.catch((err: unknown) => fail(err, at));
      }
    } catch (err) {
      fail(err, where(req));
    }
  };
}

function guardBehavior<U>(pattern: string, behavior: WebSocketBehavior<U>, log: AdminFailureLog): WebSocketBehavior<U> {
  const out: WebSocketBehavior<U> = { ...behavior };
  if (behavior.upgrade) {
    const upgrade = behavior.upgrade;
    out.upgrade = (res, req, context) => {
      const fail = (err: unknown) => {
        log(err, `upgrade ${pattern}`);
        answerIfOpen(res, '500 Internal Server Error', 'application/json', INTERNAL_FAILURE_JSON);
      };
      try {
        const out: unknown = upgrade(res, req, context);
        if (out instanceof Promise) out.catch(fail);
      } catch (err) {
        fail(err);
      }
    };
  }
  for (const name of WS_CALLBACKS) {
    const fn = behavior[name] as ((...args: unknown[]) => unknown) | undefined;
    if (!fn) continue;
    (out as Record<string, unknown>)[name] = (...args: unknown[]) => {
      try {
        const out = fn(...args);
        if (out instanceof Promise) out.catch((err: unknown) => log(err, `${name} ${pattern}`));
        return out;
      } catch (err) {
        log(err, `${name} ${pattern}`);
        return undefined;
      }
    };
  }
  return out;
}

/**
 * `app`, with every HTTP handler and WebSocket callback mounted through it guarded: an
 * exception (thrown, or a rejected promise a handler returns) is logged and answered 500 for
 * that request alone; the process and its traffic go on.
 */
export function guardApp(app: TemplatedApp, log: AdminFailureLog): TemplatedApp {
  return new Proxy(app, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (typeof prop === 'string' && HTTP_METHODS.has(prop)) {
        return (pattern: string, handler: (res: HttpResponse, req: HttpRequest) => void) => {
          (value as (p: string, h: unknown) => unknown).call(target, pattern, guardHttp(handler, log));
          return receiver as TemplatedApp;
        };
      }
      if (prop === 'ws') {
        return (pattern: string, behavior: WebSocketBehavior<unknown>) => {
          (value as (p: string, b: unknown) => unknown).call(target, pattern, guardBehavior(pattern, behavior, log));
          return receiver as TemplatedApp;
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

/** A path parameter that is not valid percent-encoded UTF-8, named for the 400 answer. */
export class BadParameter extends Error {
  constructor(readonly parameter: string, readonly raw: string) {
    super(`path parameter ${parameter} is not valid percent-encoded UTF-8: ${JSON.stringify(raw.length > 64 ? `${raw.slice(0, 64)}…` : raw)}`);
  }
}

/**
 * Path parameters by name, percent-decoded: the one place admin input is decoded. A malformed
 * escape (`%ZZ`, a truncated UTF-8 sequence) throws BadParameter, which callers answer with 400.
 */
export function decodeParams(names: readonly string[], raw: readonly string[]): Record<string, string> {
  const params: Record<string, string> = {};
  for (let i = 0; i < names.length; i++) {
    const text = raw[i] ?? '';
    try {
      params[names[i]!] = decodeURIComponent(text);
    } catch {
      throw new BadParameter(names[i]!, text);
    }
  }
  return params;
}
