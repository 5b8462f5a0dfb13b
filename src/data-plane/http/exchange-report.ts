// What an exchange tells the outside when it starts, fails upstream and ends: the access log
// line (--access-log) and the diagnostics channels (../diagnostics.ts). Only ever reached when
// the log is on or a channel has a subscriber; the exchange records, this reports.
import type { AccessLog } from '../access-log.js';
import type { TlsFacts } from '../front-door/client.js';
import { channels } from '../diagnostics.js';
import type { Failure } from '../failure.js';
import type { BackendRuntime, PoolRuntime } from '../runtime.js';
import type { ListenerContext, StickyDecision } from './context.js';

/** The facts of one exchange the reports are made of (Exchange fills them in). */
export interface ExchangeRecord {
  readonly ctx: ListenerContext;
  readonly pool: PoolRuntime;
  readonly sticky: StickyDecision;
  readonly method: string;
  /** The backend chosen last (null: none was). */
  readonly chosen: BackendRuntime | null;
  readonly attempts: number;
  readonly clientIp: string;
  readonly path: string;
  readonly status: number;
  readonly failure: Failure | null;
  /** performance.now() at: request in, request sent upstream (0: not yet), response head in (0: not yet). */
  readonly startedAt: number;
  readonly sentAt: number;
  readonly headAt: number;
  readonly bytesOut: number;
  /** The TLS the request came over, null on plain HTTP. */
  readonly tls: TlsFacts | null;
}

type StickyOutcomeName = 'hit' | 'failover' | 'miss' | 'invalid' | 'none';

/** The session's fate: its backend served it (hit), another did (failover), none was named (miss), the token was unusable (invalid), the pool does not stick (none). */
function stickyOutcome(r: ExchangeRecord): StickyOutcomeName {
  const t = r.sticky.tokenBackend;
  if (t >= 0) return r.chosen !== null && r.chosen.index === t ? 'hit' : 'failover';
  return r.sticky.invalid ? 'invalid' : r.pool.mode.sticks ? 'miss' : 'none';
}

/** tether:request:start, when subscribed. */
export function reportStart(r: ExchangeRecord): void {
  if (!channels.requestStart.hasSubscribers) return;
  channels.requestStart.publish({ worker: r.ctx.workerIndex ?? 0, method: r.method, target: r.path, pool: r.pool.name, client: r.clientIp });
}

/** tether:upstream:failure, when subscribed: `backend` failed this exchange's attempt. */
export function reportUpstreamFailure(r: ExchangeRecord, backend: BackendRuntime, failure: Failure): void {
  if (!channels.upstreamFailure.hasSubscribers) return;
  channels.upstreamFailure.publish({
    worker: r.ctx.workerIndex ?? 0,
    protocol: 'http',
    pool: r.pool.name,
    backend: backend.id,
    address: `${backend.host}:${backend.port}`,
    failure,
    attempt: r.attempts,
  });
}

/** The exchange ended: its access-log line, tether:request:end and tether:sticky:decision. */
export function reportEnd(r: ExchangeRecord): void {
  const log = r.ctx.accessLog;
  if (log) logAccess(r, log);
  const worker = r.ctx.workerIndex ?? 0;
  if (channels.requestEnd.hasSubscribers) {
    channels.requestEnd.publish({
      worker,
      method: r.method,
      target: r.path,
      pool: r.pool.name,
      client: r.clientIp,
      status: r.status,
      backend: r.chosen?.id ?? '',
      failure: r.failure,
      durationMs: performance.now() - r.startedAt,
    });
  }
  if (channels.stickyDecision.hasSubscribers) {
    const t = r.sticky.tokenBackend;
    channels.stickyDecision.publish({ worker, pool: r.pool.name, outcome: stickyOutcome(r), sessionBackend: t >= 0 ? r.pool.backends[t]?.id ?? '' : '' });
  }
}

function logAccess(r: ExchangeRecord, log: AccessLog): void {
  const b = r.chosen;
  log.write({
    worker: r.ctx.workerIndex ?? 0,
    client: r.clientIp,
    method: r.method,
    path: r.path,
    status: r.status,
    bytes: r.bytesOut,
    upstream: b?.id ?? '',
    upstreamAddr: b ? `${b.host}:${b.port}` : '',
    upstreamMs: r.headAt > 0 && r.sentAt > 0 ? r.headAt - r.sentAt : -1,
    totalMs: performance.now() - r.startedAt,
    sticky: stickyOutcome(r),
    tls: r.tls?.protocol ?? '',
    cipher: r.tls?.cipher ?? '',
  });
}
