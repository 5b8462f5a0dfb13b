// The answer the HTTP path composes itself for a request it cannot serve: a short plain-text
// error naming the cause. (A refused session's 403 is the binding phase's.)
import { C } from '../../shared-memory/counters.js';
import type { ClientResponse } from '../front-door/client.js';
import { statusLine } from '../status.js';
import type { ListenerContext } from './context.js';

/** `NNN Reason` and `tether: <why>`; `close` ends the connection after it (a request body left unread). */
export function respondError(ctx: ListenerContext, res: ClientResponse, status: number, why: string, close: boolean): void {
  ctx.counters.inc(status >= 500 ? C.responses_5xx : C.responses_4xx);
  res.cork(() => {
    res.writeStatus(statusLine(status));
    res.writeHeader('content-type', 'text/plain; charset=utf-8');
    res.end(`tether: ${why}\n`, close);
  });
}
