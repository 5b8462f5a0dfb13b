// /api/v1/backends and /api/v1/events: JSON views of the registry and its changes. A change
// answers once every worker routes by it (the registry's `publish`).
import type { CounterReader } from '../shared-memory/counters.js';
import type { ApiRequest } from './admin.js';
import type { EventLog } from './events.js';
import type { Registry, RegistryEntry, RegistryResult } from './registry.js';
import type { ApiAnswer } from './sessions-api.js';

/** Drain deadline when the request names none. */
const DEFAULT_DRAIN_MS = 300_000;

interface BackendsApiDeps {
  registry: Registry;
  reader: CounterReader;
  events: EventLog;
  /** Sends the registry's current snapshot to every worker; resolves once all applied it. */
  publish(): Promise<void>;
  /** Active health-check state of one backend, if its pool has checks. */
  checkState(pool: string, id: string): { up: boolean; lastDetail: string; lastCheckAt: number } | undefined;
  now?: () => number;
}

function view(e: RegistryEntry, d: BackendsApiDeps) {
  const now = (d.now ?? Date.now)();
  const st = d.reader.backendState(e.slot);
  const ejected = st.downUntil > now;
  const draining = e.draining !== null;
  const check = d.checkState(e.pool, e.id);
  const up = d.reader.downCause(e.slot, now) === null;
  return {
    pool: e.pool,
    id: e.id,
    address: e.address,
    port: e.port,
    weight: e.weight,
    source: e.source,
    state: !up ? 'down' : draining ? 'draining' : 'up',
    health: {
      up,
      check: check ? { up: check.up, detail: check.lastDetail, lastCheckAt: check.lastCheckAt ? new Date(check.lastCheckAt).toISOString() : null } : null,
      lost: e.lost,
      ejectedUntil: ejected ? new Date(st.downUntil).toISOString() : null,
      consecutiveFailures: st.failures,
      consecutive5xx: st.errors5xx,
    },
    draining: e.draining ? { since: new Date(e.draining.since).toISOString(), until: Number.isFinite(e.draining.until) ? new Date(e.draining.until).toISOString() : null } : null,
    lastSeen: e.lastSeen === null ? null : new Date(e.lastSeen).toISOString(),
    addedAt: new Date(e.addedAt).toISOString(),
    updatedAt: new Date(e.updatedAt).toISOString(),
    requests: d.reader.backendTotal(e.slot, 'requests'),
    active: d.reader.backendTotal(e.slot, 'active'),
    connectErrors: d.reader.backendTotal(e.slot, 'connect_errors'),
  };
}

const REFUSAL_STATUS: Record<string, number> = { address_conflict: 409, exists: 409, unknown_pool: 404, unknown_backend: 404, capacity: 507, invalid: 400 };

async function answerChange(r: RegistryResult, d: BackendsApiDeps, created = false): Promise<ApiAnswer> {
  if (!r.ok) return { status: REFUSAL_STATUS[r.code] ?? 400, body: { error: r.code, message: r.reason } };
  if (r.state === 'added' || r.state === 'updated' || r.state === 'removed') await d.publish();
  return { status: created ? 201 : 200, body: { result: r.state, backend: view(r.entry, d) } };
}

function parseJson(body: string): Record<string, unknown> | string {
  if (body.trim() === '') return {};
  try {
    const v: unknown = JSON.parse(body);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'expected a JSON object';
    return v as Record<string, unknown>;
  } catch (err) {
    return `request body is not JSON: ${(err as Error).message}`;
  }
}

const bad = (message: string): ApiAnswer => ({ status: 400, body: { error: 'bad_request', message } });

/** `:id` plus `?pool=`; the pool may be omitted when exactly one pool has the ID. */
function locate(req: ApiRequest, d: BackendsApiDeps): { pool: string; id: string } | ApiAnswer {
  const id = req.params.id ?? '';
  const pool = req.query.get('pool');
  if (pool !== null) return { pool, id };
  const pools = d.registry.poolsWith(id);
  if (pools.length === 1) return { pool: pools[0]!, id };
  if (pools.length === 0) return { status: 404, body: { error: 'unknown_backend', message: `no backend '${id}' in any pool` } };
  return bad(`backend '${id}' is in pools ${pools.join(', ')}: add ?pool=NAME`);
}

export function backendsApi(d: BackendsApiDeps) {
  return {
    listBackends(req: ApiRequest): ApiAnswer {
      const pool = req.query.get('pool');
      const entries = d.registry.entries().filter((e) => pool === null || e.pool === pool);
      return { status: 200, body: { version: d.registry.version, backends: entries.map((e) => view(e, d)) } };
    },

    async addBackend(req: ApiRequest): Promise<ApiAnswer> {
      const b = parseJson(req.body);
      if (typeof b === 'string') return bad(b);
      const unknown = Object.keys(b).filter((k) => !['pool', 'id', 'address', 'port', 'weight'].includes(k));
      if (unknown.length > 0) return bad(`unknown field(s) ${unknown.join(', ')} (expected pool, id, address, port, weight)`);
      const pool = b.pool ?? 'default';
      if (typeof pool !== 'string') return bad('expected a string for pool');
      const r = d.registry.announce({ pool, id: b.id as string, address: b.address as string, port: b.port as number, weight: b.weight as number | undefined }, 'api');
      return answerChange(r, d, true);
    },

    async drainBackend(req: ApiRequest): Promise<ApiAnswer> {
      const at = locate(req, d);
      if ('status' in at) return at;
      const b = parseJson(req.body);
      if (typeof b === 'string') return bad(b);
      let deadlineMs: number | null = DEFAULT_DRAIN_MS;
      if ('deadlineSec' in b) {
        const v = b.deadlineSec;
        if (v === null) deadlineMs = null;
        else if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 604_800) deadlineMs = v * 1000;
        else return bad(`expected deadlineSec to be whole seconds 0-604800 or null (no deadline) but received ${JSON.stringify(v)}`);
      }
      return answerChange(d.registry.drain(at.pool, at.id, deadlineMs, 'api'), d);
    },

    async undrainBackend(req: ApiRequest): Promise<ApiAnswer> {
      const at = locate(req, d);
      if ('status' in at) return at;
      return answerChange(d.registry.undrain(at.pool, at.id, 'api'), d);
    },

    async removeBackend(req: ApiRequest): Promise<ApiAnswer> {
      const at = locate(req, d);
      if ('status' in at) return at;
      return answerChange(d.registry.remove(at.pool, at.id, 'api'), d);
    },

    events(req: ApiRequest): ApiAnswer {
      const sinceText = req.query.get('since') ?? '0';
      if (!/^\d{1,15}$/.test(sinceText)) return bad(`expected since to be an event number but received '${sinceText}'`);
      return { status: 200, body: { lastSeq: d.events.lastSeq, events: d.events.list(Number(sinceText)) } };
    },
  };
}
