// Active health checks, run by the main thread: an HTTP status probe or a TCP connect per backend,
// with HAProxy's rise/fall hysteresis, so a backend is marked down (or up) only on a sustained change.
//
// Config shape: `expect` is an inclusive status range, {min:200,max:200} for "200 only" or
// {min:200,max:399} for "any 2xx/3xx". `host` overrides the Host header (default host:port).
// Timing: the first check of a new target comes after a random delay in [0, intervalMs) so
// N backends do not fire together; each later check starts `intervalMs` after the previous
// one finished, so there is never more than one check in flight per target.
import net from 'node:net';
import tls from 'node:tls';
import { TetherError } from '../errors.js';

interface Timing { intervalMs: number; timeoutMs: number; rise: number; fall: number }
export type HealthCheckConfig =
  | ({ type: 'http'; path: string; expect: { min: number; max: number }; host?: string } & Timing)
  | ({ type: 'tcp' } & Timing);

/** A backend over TLS is checked over TLS, under the terms traffic to it uses. */
export interface CheckTls { servername: string; rejectUnauthorized: boolean; ca?: Buffer }
export interface CheckTarget { key: string; host: string; port: number; check: HealthCheckConfig; tls?: CheckTls | null }
export interface CheckResult {
  ok: boolean;
  /** Short human reason: 'HTTP 200', 'HTTP 503 (expected 200)', 'connect refused (ECONNREFUSED)', 'timed out after 1000 ms', 'not HTTP: ...'. */
  detail: string;
}
interface TargetState { up: boolean; successes: number; failures: number; lastDetail: string; lastCheckAt: number }

/** A status line longer than this without a CRLF is not HTTP (HAProxy's default is similar). */
const MAX_STATUS_LINE = 8 * 1024;
const USER_AGENT = 'tether-health-check';
/** Header-safe text: visible ASCII and spaces, so nothing can smuggle a CRLF into the request. */
const HEADER_SAFE = /^[\x21-\x7e]+$/;

const ERROR_PHRASES: Record<string, string> = {
  ECONNREFUSED: 'connect refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host lookup failed',
  ETIMEDOUT: 'connect timed out',
  EPIPE: 'connection closed while sending',
};

/** Throws a TETHER_ERR_CONFIG explaining the first bad field of a target. */
function validateTarget(t: { host: string; port: number; check: HealthCheckConfig }): void {
  const bad = (what: string, expected: string, got: unknown): never => {
    throw new TetherError('TETHER_ERR_CONFIG', `health check: expected ${expected} for ${what} but received ${JSON.stringify(got)}`);
  };
  const c = t.check;
  if (typeof t.host !== 'string' || t.host === '') bad('host', 'a non-empty string', t.host);
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) bad('port', 'an integer 1-65535', t.port);
  for (const k of ['intervalMs', 'timeoutMs', 'rise', 'fall'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) bad(k, 'an integer >= 1', c[k]);
  }
  if (c.type === 'tcp') return;
  if (c.type !== 'http') bad('type', "'http' or 'tcp'", (c as { type: unknown }).type);
  if (typeof c.path !== 'string' || !c.path.startsWith('/') || !HEADER_SAFE.test(c.path)) bad('path', "a path starting with '/' in visible ASCII", c.path);
  if (c.host !== undefined && (typeof c.host !== 'string' || !HEADER_SAFE.test(c.host))) bad('check host', 'a Host header value in visible ASCII', c.host);
  const e = c.expect as { min: unknown; max: unknown } | undefined;
  if (!e || !Number.isInteger(e.min) || !Number.isInteger(e.max) || (e.min as number) < 100 || (e.max as number) > 599 || (e.min as number) > (e.max as number)) {
    bad('expect', '{min, max} with 100 <= min <= max <= 599', e);
  }
}

function describeError(err: NodeJS.ErrnoException): string {
  const code = err.code ?? 'EUNKNOWN';
  return `${ERROR_PHRASES[code] ?? err.message} (${code})`;
}

function describeExpect(e: { min: number; max: number }): string {
  return e.min === e.max ? `${e.min}` : `${e.min}-${e.max}`;
}

/**
 * Reads the response head as it arrives. Wire format (RFC 9112 §4), the only part read:
 *
 *   HTTP/1.x SP DIGIT DIGIT DIGIT [SP reason-phrase] CRLF      (then headers and body, ignored)
 *
 * Returns null while more bytes are needed, else the verdict. Bytes that cannot begin
 * "HTTP/" are rejected at once rather than waiting for a CRLF that may never come.
 */
function judgeStatusLine(head: Buffer, expect: { min: number; max: number }): CheckResult | null {
  const prefix = head.subarray(0, 5).toString('latin1');
  const eol = head.indexOf('\r\n');
  const line = head.subarray(0, eol === -1 ? Math.min(head.length, 64) : eol).toString('latin1');
  const notHttp = (): CheckResult => ({ ok: false, detail: `not HTTP: ${JSON.stringify(line.slice(0, 64))}` });
  if (!'HTTP/'.startsWith(prefix)) return notHttp();
  if (eol === -1) return head.length >= MAX_STATUS_LINE ? { ok: false, detail: `not HTTP: no status line in the first ${MAX_STATUS_LINE} bytes` } : null;
  const m = /^HTTP\/1\.[01] ([1-5]\d\d)(?: |$)/.exec(line);
  if (!m) return notHttp();
  const status = Number(m[1]);
  if (status >= expect.min && status <= expect.max) return { ok: true, detail: `HTTP ${status}` };
  return { ok: false, detail: `HTTP ${status} (expected ${describeExpect(expect)})` };
}

/** Starts one check; `done` is called exactly once unless the returned abort function is called first. */
function probe(target: { host: string; port: number; check: HealthCheckConfig; tls?: CheckTls | null }, done: (r: CheckResult) => void): () => void {
  const { host, port, check } = target;
  const t = target.tls ?? null;
  let settled = false;
  const socket = t === null
    ? net.connect({ host, port })
    : tls.connect({ host, port, servername: net.isIP(t.servername) === 0 ? t.servername : undefined, rejectUnauthorized: t.rejectUnauthorized, ca: t.ca, ALPNProtocols: ['http/1.1'] });
  const connected = t === null ? 'connect' : 'secureConnect';
  const finish = (r: CheckResult | null): void => {
    if (settled) return;
    settled = true;
    clearTimeout(deadline);
    socket.destroy();
    if (r) done(r);
  };
  const deadline = setTimeout(() => finish({ ok: false, detail: `timed out after ${check.timeoutMs} ms` }), check.timeoutMs);
  deadline.unref();
  socket.on('error', (err) => finish({ ok: false, detail: describeError(err) }));
  if (check.type === 'tcp') {
    socket.on(connected, () => finish({ ok: true, detail: t === null ? 'connected' : 'TLS handshake completed' }));
    return () => finish(null);
  }
  const hostHeader = check.host ?? (net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`);
  let head = Buffer.alloc(0);
  socket.on(connected, () => {
    socket.write(`GET ${check.path} HTTP/1.1\r\nHost: ${hostHeader}\r\nUser-Agent: ${USER_AGENT}\r\nConnection: close\r\nAccept: */*\r\n\r\n`);
  });
  socket.on('data', (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const verdict = judgeStatusLine(head, check.expect);
    if (verdict) finish(verdict);
  });
  socket.on('end', () => finish({ ok: false, detail: `connection closed before a status line (after ${head.length} bytes)` }));
  return () => finish(null);
}

/** One check of one target, outside any schedule (for the CLI or an admin "check now"). */
export function checkOnce(target: { host: string; port: number; check: HealthCheckConfig }): Promise<CheckResult> {
  try {
    validateTarget(target);
  } catch (err) {
    return Promise.reject(err as Error);
  }
  return new Promise((resolve) => probe(target, resolve));
}

interface Entry extends TargetState {
  target: CheckTarget;
  identity: string;
  timer: NodeJS.Timeout | null;
  abort: (() => void) | null;
  stopped: boolean;
}

/** JSON with sorted keys, so a config rebuilt with its keys in another order is still "unchanged". */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export class HealthChecker {
  private readonly entries = new Map<string, Entry>();
  private readonly onChange: (key: string, up: boolean, detail: string) => void;
  private readonly onResult: ((key: string, result: CheckResult) => void) | undefined;
  private readonly now: () => number;
  private closed = false;

  constructor(opts: { onChange: (key: string, up: boolean, detail: string) => void; onResult?: (key: string, result: CheckResult) => void; now?: () => number }) {
    this.onChange = opts.onChange;
    this.onResult = opts.onResult;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Replace the set of targets. Unchanged ones (same key, host, port and check) keep their state
   * and schedule; new or changed ones start UP with zeroed counters and a first check within one
   * interval; removed ones stop, and a check they have in flight is aborted and its result dropped.
   * Throws TETHER_ERR_CONFIG (changing nothing) on an invalid target or a repeated key.
   */
  setTargets(targets: CheckTarget[]): void {
    if (this.closed) throw new Error('HealthChecker.setTargets after close()');
    const next = new Map<string, string>();
    for (const t of targets) {
      validateTarget(t);
      if (next.has(t.key)) throw new TetherError('TETHER_ERR_CONFIG', `health check: target key ${JSON.stringify(t.key)} appears twice`);
      next.set(t.key, canonical({ host: t.host, port: t.port, check: t.check, tls: t.tls ? { ...t.tls, ca: t.tls.ca?.toString('base64') } : null }));
    }
    for (const [key, e] of this.entries) {
      if (next.get(key) !== e.identity) this.stop(e);
    }
    for (const t of targets) {
      if (this.entries.has(t.key)) continue;
      const e: Entry = {
        target: structuredClone(t), identity: next.get(t.key)!, timer: null, abort: null, stopped: false,
        up: true, successes: 0, failures: 0, lastDetail: 'not checked yet', lastCheckAt: 0,
      };
      this.entries.set(t.key, e);
      this.schedule(e, Math.floor(Math.random() * t.check.intervalMs));
    }
  }

  /** Current state of one target (lastCheckAt is 0 until its first check completes), or undefined if unknown. */
  state(key: string): TargetState | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    return { up: e.up, successes: e.successes, failures: e.failures, lastDetail: e.lastDetail, lastCheckAt: e.lastCheckAt };
  }

  /** Stop every timer and close every socket; afterwards no callback fires. */
  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) this.stop(e);
  }

  private stop(e: Entry): void {
    e.stopped = true;
    if (e.timer) clearTimeout(e.timer);
    e.timer = null;
    e.abort?.();
    e.abort = null;
    this.entries.delete(e.target.key);
  }

  private schedule(e: Entry, delayMs: number): void {
    e.timer = setTimeout(() => {
      e.timer = null;
      e.abort = probe(e.target, (r) => this.record(e, r));
    }, delayMs);
    e.timer.unref();
  }

  /** Counts a result, schedules the next check, then tells the callbacks (which may call setTargets or close). */
  private record(e: Entry, r: CheckResult): void {
    if (e.stopped) return;
    e.abort = null;
    e.lastDetail = r.detail;
    e.lastCheckAt = this.now();
    if (r.ok) {
      e.successes++;
      e.failures = 0;
    } else {
      e.failures++;
      e.successes = 0;
    }
    const { rise, fall, intervalMs } = e.target.check;
    const flipped = e.up ? e.failures >= fall : e.successes >= rise;
    if (flipped) e.up = !e.up;
    this.schedule(e, intervalMs);
    this.onResult?.(e.target.key, r);
    if (flipped && !e.stopped) this.onChange(e.target.key, e.up, r.detail);
  }
}
