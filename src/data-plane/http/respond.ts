// The answers the HTTP path composes itself: a short plain-text error naming the cause, and the
// 400 for framing it will not guess at. (A refused session's 403 is the binding phase's.)
import { C } from '../../shared-memory/counters.js';
import type { ClientResponse } from '../front-door/client.js';
import type { ListenerContext } from './context.js';
import type { Failure } from '../failure.js';

/** Reason phrases for the status lines the HTTP path writes (RFC 9110). */
export const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 204: 'No Content', 301: 'Moved Permanently', 302: 'Found', 304: 'Not Modified',
  400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/**
 * 400 for a request whose framing or Host we will not guess at, and the end of its connection.
 * The front door refuses ambiguous framing itself before dispatch; this is the second line.
 * The answer waits for the next tick, as it had to under uWS (which dispatched pipelined
 * requests synchronously); the front door dispatches one request at a time, so it is only a
 * tick later now. #19 leaves one of the two checks.
 */
export function refuseFraming(ctx: ListenerContext, res: ClientResponse, failure: Failure): void {
  let aborted = false;
  res.onAborted(() => (aborted = true));
  setImmediate(() => {
    if (!aborted) respondError(ctx, res, failure.status, failure.message, true);
  });
}

/** A short plain-text error naming the cause. */
export function respondError(ctx: ListenerContext, res: ClientResponse, status: number, why: string, close: boolean): void {
  ctx.counters.inc(status >= 500 ? C.responses_5xx : C.responses_4xx);
  res.cork(() => {
    res.writeStatus(`${status} ${STATUS_TEXT[status] ?? ''}`);
    res.writeHeader('content-type', 'text/plain; charset=utf-8');
    res.end(`tether: ${why}\n`, close);
  });
}
