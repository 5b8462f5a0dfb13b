// The backend registry (main thread): which backends each pool has, where they are, and their
// administrative state. Config backends, admin-API additions and agent announcements all land
// here under the same rules:
//
//   new ID                                  → added to its pool
//   known ID at a new address               → updated in place (route tokens name the ID, so
//                                             they follow it to the new address)
//   address:port held by another live ID    → the holder keeps it; the newcomer is refused, and
//                                             an alert is raised (error log, metric, event)
//   announced backend silent too long       → marked down (lost), never deleted
//
// Lists change by snapshot (`version`): the supervisor sends each new one to every worker and
// answers the caller once all applied it. Health and drain are not snapshots: they are written
// to shared memory, which every worker reads on each pick.
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { BackendConfig, BackendTlsConfig, Config } from '../config/schema.js';
import { UNAVAILABLE_CHECK, UNAVAILABLE_LOST, type CounterReader } from '../shared-memory/counters.js';
import type { BackendSlots } from '../protocol/worker-messages.js';
import type { EventLog } from './events.js';

type BackendSource = 'config' | 'api' | 'agent';

export interface RegistryEntry {
  readonly pool: string;
  readonly id: string;
  address: string;
  port: number;
  weight: number;
  /** Over TLS (configured backends only; announced ones are plain HTTP). */
  tls: BackendTlsConfig | null;
  source: BackendSource;
  readonly slot: number;
  readonly addedAt: number;
  updatedAt: number;
  /** Agent-managed backends: time of the last authenticated frame; null otherwise. */
  lastSeen: number | null;
  /** No heartbeat within the timeout: down until the agent speaks again. */
  lost: boolean;
  /** Down by the pool's active health check. */
  checkDown: boolean;
  /** Draining since, until (ms; Infinity: no deadline), or null. */
  draining: { since: number; until: number } | null;
}

type RefusalCode = 'address_conflict' | 'unknown_pool' | 'unknown_backend' | 'exists' | 'capacity' | 'invalid';

export type RegistryResult =
  | { ok: true; state: 'added' | 'updated' | 'unchanged' | 'draining' | 'undrained' | 'removed' | 'up'; entry: RegistryEntry; version: number }
  | { ok: false; code: RefusalCode; reason: string };

interface BackendSpec {
  pool: string;
  id: string;
  address: string;
  port: number;
  weight?: number;
}

/** The shared-memory writes the registry makes (CounterReader in production). */
type StateWriter = Pick<CounterReader, 'setUnavailable' | 'setDrainUntil' | 'resetBackend'>;

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
/** A freed slot is not handed out again for this long, so late in-flight counters settle first. */
const SLOT_QUARANTINE_MS = 60_000;
const CONFLICT_REALERT_MS = 60_000;

/** Why `spec` cannot be a backend, or null. */
function checkSpec(spec: BackendSpec): string | null {
  if (typeof spec.id !== 'string' || !ID.test(spec.id)) return `expected a backend id of 1-64 letters, digits, '.', '_' or '-' but received ${JSON.stringify(spec.id)}`;
  if (typeof spec.address !== 'string' || (isIP(spec.address) === 0 && !HOST_NAME.test(spec.address))) {
    return `expected an IP address or host name for address but received ${JSON.stringify(spec.address)}`;
  }
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) return `expected a port 1-65535 but received ${JSON.stringify(spec.port)}`;
  if (spec.weight !== undefined && (!Number.isInteger(spec.weight) || spec.weight < 0 || spec.weight > 1000)) {
    return `expected a weight 0-1000 but received ${JSON.stringify(spec.weight)}`;
  }
  return null;
}

function addressKey(address: string, port: number): string {
  return `${address.toLowerCase()}|${port}`;
}

export class Registry {
  private readonly pools = new Map<string, Map<string, RegistryEntry>>();
  private readonly free: { slot: number; at: number }[] = [];
  private nextSlot = 0;
  private versionNo = 1;
  /** Address conflicts refused since start (tether_address_conflicts_total). */
  conflicts = 0;
  /** When each conflict was last alerted. */
  private readonly alerted = new Map<string, number>();

  constructor(
    config: Config,
    private readonly deps: { state: StateWriter; capacity: number; events: EventLog; log: Logger; now?: () => number },
  ) {
    const now = this.now();
    for (const [pool, pc] of Object.entries(config.pools)) {
      const m = new Map<string, RegistryEntry>();
      this.pools.set(pool, m);
      for (const b of pc.backends) {
        m.set(b.id, this.entry(pool, b, 'config', this.nextSlot++, now));
      }
    }
    if (this.nextSlot > deps.capacity) throw new RangeError(`at most ${deps.capacity} backends are supported, ${this.nextSlot} configured`);
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  private entry(pool: string, b: { id: string; address: string; port: number; weight?: number; tls?: BackendTlsConfig | null }, source: BackendSource, slot: number, now: number): RegistryEntry {
    return {
      pool, id: b.id, address: b.address, port: b.port, weight: b.weight ?? 1, tls: b.tls ?? null, source, slot,
      addedAt: now, updatedAt: now, lastSeen: source === 'agent' ? now : null, lost: false, checkDown: false, draining: null,
    };
  }

  /** Bumped whenever a pool's backend list changes (add, move, reweight, remove). */
  get version(): number {
    return this.versionNo;
  }

  /** Backend lists and shared-memory slots of the current version, for workers. */
  snapshot(): { version: number; pools: Record<string, BackendConfig[]>; slots: BackendSlots } {
    const pools: Record<string, BackendConfig[]> = {};
    const slots: BackendSlots = {};
    for (const [pool, m] of this.pools) {
      pools[pool] = [...m.values()].map((e) => ({ id: e.id, address: e.address, port: e.port, weight: e.weight, tls: e.tls }));
      slots[pool] = Object.fromEntries([...m.values()].map((e) => [e.id, e.slot]));
    }
    return { version: this.versionNo, pools, slots };
  }

  entries(): RegistryEntry[] {
    return [...this.pools.values()].flatMap((m) => [...m.values()]);
  }

  get(pool: string, id: string): RegistryEntry | undefined {
    return this.pools.get(pool)?.get(id);
  }

  /** Pools holding a backend with this ID. */
  poolsWith(id: string): string[] {
    return [...this.pools].filter(([, m]) => m.has(id)).map(([p]) => p);
  }

  hasPool(pool: string): boolean {
    return this.pools.has(pool);
  }

  /** The live backend (other than pool/id) that holds address:port, if any. */
  private holder(id: string, address: string, port: number): RegistryEntry | null {
    const key = addressKey(address, port);
    for (const e of this.entries()) {
      if (e.id === id) continue; // the same server may serve several pools under one ID
      if (!e.lost && addressKey(e.address, e.port) === key) return e;
    }
    return null;
  }

  /**
   * Agent announcement (source 'agent') or admin addition (source 'api', which refuses an ID
   * that exists). Returns what happened; a refusal says why.
   */
  announce(spec: BackendSpec, source: 'agent' | 'api'): RegistryResult {
    const bad = checkSpec(spec);
    if (bad) return { ok: false, code: 'invalid', reason: bad };
    const pool = this.pools.get(spec.pool);
    if (!pool) return { ok: false, code: 'unknown_pool', reason: `no pool '${spec.pool}' (pools: ${[...this.pools.keys()].join(', ')})` };
    const now = this.now();
    const existing = pool.get(spec.id);
    if (existing && source === 'api') return { ok: false, code: 'exists', reason: `backend ${spec.pool}/${spec.id} exists (at ${existing.address}:${existing.port})` };
    const holder = this.holder(spec.id, spec.address, spec.port);
    if (holder) {
      this.conflicts++;
      const reason = `address ${spec.address}:${spec.port} is held by backend ${holder.pool}/${holder.id}`;
      // An agent retries every heartbeat: one alert per conflict per minute, every refusal counted.
      const conflictKey = `${spec.pool}|${spec.id}|${addressKey(spec.address, spec.port)}|${holder.pool}|${holder.id}`;
      const last = this.alerted.get(conflictKey);
      if (last !== undefined && now - last < CONFLICT_REALERT_MS) return { ok: false, code: 'address_conflict', reason };
      this.alerted.set(conflictKey, now);
      if (this.alerted.size > 10_000) for (const [k, at] of this.alerted) if (now - at >= CONFLICT_REALERT_MS) this.alerted.delete(k);
      this.deps.log.error(
        { event: 'address_conflict', pool: spec.pool, id: spec.id, address: `${spec.address}:${spec.port}`, holderPool: holder.pool, holderId: holder.id, source },
        `address conflict: ${spec.pool}/${spec.id} claims ${spec.address}:${spec.port}, held by ${holder.pool}/${holder.id}; ${spec.pool}/${spec.id} refused`,
      );
      this.deps.events.add('address_conflict', 'error', `${spec.pool}/${spec.id} refused: ${reason}`, {
        pool: spec.pool, id: spec.id, address: spec.address, port: spec.port, holderPool: holder.pool, holderId: holder.id, source,
      });
      return { ok: false, code: 'address_conflict', reason };
    }
    const weight = spec.weight ?? existing?.weight ?? 1;
    if (existing) {
      this.seen(existing, now, source);
      if (existing.address === spec.address && existing.port === spec.port && existing.weight === weight) {
        return { ok: true, state: 'unchanged', entry: existing, version: this.versionNo };
      }
      const from = `${existing.address}:${existing.port}`;
      existing.address = spec.address;
      existing.port = spec.port;
      existing.weight = weight;
      existing.updatedAt = now;
      this.versionNo++;
      this.deps.events.add('backend_updated', 'info', `${spec.pool}/${spec.id} moved from ${from} to ${spec.address}:${spec.port}`, {
        pool: spec.pool, id: spec.id, from, to: `${spec.address}:${spec.port}`, weight, source,
      });
      this.deps.log.info({ event: 'backend_updated', pool: spec.pool, id: spec.id, from, to: `${spec.address}:${spec.port}`, weight, source }, 'backend updated');
      return { ok: true, state: 'updated', entry: existing, version: this.versionNo };
    }
    const slot = this.allocSlot(now);
    if (slot < 0) return { ok: false, code: 'capacity', reason: `at most ${this.deps.capacity} backends are supported` };
    const e = this.entry(spec.pool, { ...spec, weight }, source, slot, now);
    pool.set(spec.id, e);
    this.versionNo++;
    this.deps.events.add('backend_added', 'info', `${spec.pool}/${spec.id} added at ${spec.address}:${spec.port}`, { pool: spec.pool, id: spec.id, address: spec.address, port: spec.port, weight, source });
    this.deps.log.info({ event: 'backend_added', pool: spec.pool, id: spec.id, address: `${spec.address}:${spec.port}`, weight, source }, 'backend added');
    return { ok: true, state: 'added', entry: e, version: this.versionNo };
  }

  /** An authenticated frame from the backend's agent: it is alive. */
  heartbeat(pool: string, id: string): RegistryResult {
    const e = this.get(pool, id);
    if (!e) return { ok: false, code: 'unknown_backend', reason: `no backend ${pool}/${id}: announce first` };
    this.seen(e, this.now(), 'agent');
    return { ok: true, state: 'up', entry: e, version: this.versionNo };
  }

  private seen(e: RegistryEntry, now: number, source: BackendSource): void {
    if (source !== 'agent') return;
    e.source = 'agent';
    e.lastSeen = now;
    if (e.lost) {
      e.lost = false;
      this.deps.state.setUnavailable(e.slot, UNAVAILABLE_LOST, false);
      this.deps.events.add('backend_found', 'info', `${e.pool}/${e.id} is heard from again`, { pool: e.pool, id: e.id });
      this.deps.log.info({ event: 'backend_found', pool: e.pool, id: e.id }, 'backend heard from again');
    }
  }

  /**
   * No new sessions; sticky ones keep going until `deadlineMs` from now (null: until they end).
   * Draining again moves the deadline.
   */
  drain(pool: string, id: string, deadlineMs: number | null, by: string): RegistryResult {
    const e = this.get(pool, id);
    if (!e) return { ok: false, code: 'unknown_backend', reason: `no backend ${pool}/${id}` };
    const now = this.now();
    const until = deadlineMs === null ? Infinity : now + deadlineMs;
    e.draining = { since: e.draining?.since ?? now, until };
    this.deps.state.setDrainUntil(e.slot, until);
    const when = deadlineMs === null ? 'until its sessions end' : `for up to ${deadlineMs} ms`;
    this.deps.events.add('backend_draining', 'info', `${pool}/${id} draining ${when}`, { pool, id, deadlineMs, by });
    this.deps.log.info({ event: 'backend_draining', pool, id, deadlineMs, by }, `backend draining ${when}`);
    return { ok: true, state: 'draining', entry: e, version: this.versionNo };
  }

  undrain(pool: string, id: string, by: string): RegistryResult {
    const e = this.get(pool, id);
    if (!e) return { ok: false, code: 'unknown_backend', reason: `no backend ${pool}/${id}` };
    e.draining = null;
    this.deps.state.setDrainUntil(e.slot, 0);
    this.deps.events.add('backend_undrained', 'info', `${pool}/${id} takes new sessions again`, { pool, id, by });
    return { ok: true, state: 'undrained', entry: e, version: this.versionNo };
  }

  remove(pool: string, id: string, by: string): RegistryResult {
    const m = this.pools.get(pool);
    const e = m?.get(id);
    if (!m || !e) return { ok: false, code: 'unknown_backend', reason: `no backend ${pool}/${id}` };
    m.delete(id);
    this.free.push({ slot: e.slot, at: this.now() });
    this.versionNo++;
    this.deps.events.add('backend_removed', 'info', `${pool}/${id} removed (was at ${e.address}:${e.port})`, { pool, id, address: e.address, port: e.port, by });
    this.deps.log.info({ event: 'backend_removed', pool, id, by }, 'backend removed');
    return { ok: true, state: 'removed', entry: e, version: this.versionNo };
  }

  /**
   * What a reloaded config would change in the backend lists, without changing anything: the
   * config's backends replace the config-sourced ones (API and agent backends stay); pools may
   * come and go. Problems (an address another live backend holds, capacity) refuse the reload.
   */
  planReload(config: Config): { problems: string[]; apply: () => void } {
    const problems: string[] = [];
    const wanted = new Map<string, BackendConfig>();
    for (const [pool, pc] of Object.entries(config.pools)) {
      for (const b of pc.backends) {
        // An ID its agent has taken over keeps the agent's address: it is fresher than a file.
        const e = this.get(pool, b.id);
        if (!e || e.source === 'config') wanted.set(`${pool}|${b.id}`, b);
      }
    }
    // Addresses held after the reload: every surviving entry, then the config's.
    const held = new Map<string, string>();
    for (const e of this.entries()) {
      const k = `${e.pool}|${e.id}`;
      if (!(e.pool in config.pools) || wanted.has(k)) continue;
      if (e.source === 'config' && !config.pools[e.pool]!.backends.some((b) => b.id === e.id)) continue;
      if (!e.lost) held.set(addressKey(e.address, e.port), k);
    }
    let added = 0;
    for (const [k, b] of wanted) {
      const ak = addressKey(b.address, b.port);
      const holder = held.get(ak);
      if (holder !== undefined && holder.split('|')[1] !== b.id) problems.push(`pools.${k.split('|')[0]}.backends: ${b.id} at ${b.address}:${b.port} is an address ${holder.replace('|', '/')} holds`);
      held.set(ak, k);
      if (!this.get(k.split('|')[0]!, b.id)) added++;
    }
    // Slots freed by this reload are quarantined, so only what is free already counts.
    const now0 = this.now();
    const available = this.deps.capacity - this.nextSlot + this.free.filter((f) => now0 - f.at >= SLOT_QUARANTINE_MS).length;
    if (added > available) problems.push(`the reload adds ${added} backends but only ${available} more fit (at most ${this.deps.capacity})`);
    const apply = () => {
      const now = this.now();
      for (const e of this.entries()) {
        if (!(e.pool in config.pools) || (e.source === 'config' && !wanted.has(`${e.pool}|${e.id}`))) this.remove(e.pool, e.id, 'reload');
      }
      for (const pool of Object.keys(config.pools)) if (!this.pools.has(pool)) this.pools.set(pool, new Map());
      for (const [pool] of this.pools) if (!(pool in config.pools)) this.pools.delete(pool);
      for (const [k, b] of wanted) {
        const [pool] = k.split('|') as [string];
        const e = this.get(pool, b.id);
        if (!e) {
          const slot = this.allocSlot(now);
          if (slot < 0) continue; // checked above
          this.pools.get(pool)!.set(b.id, this.entry(pool, b, 'config', slot, now));
          this.versionNo++;
        } else if (e.address !== b.address || e.port !== b.port || e.weight !== b.weight || JSON.stringify(e.tls) !== JSON.stringify(b.tls)) {
          e.address = b.address;
          e.port = b.port;
          e.weight = b.weight;
          e.tls = b.tls;
          e.updatedAt = now;
          this.versionNo++;
        }
      }
      // Pool policies may have changed even when no list did: workers need the new config.
      this.versionNo++;
    };
    return { problems, apply };
  }

  /** Active health-check transition. */
  setCheck(pool: string, id: string, up: boolean, detail: string): void {
    const e = this.get(pool, id);
    if (!e || e.checkDown === !up) return;
    e.checkDown = !up;
    this.deps.state.setUnavailable(e.slot, UNAVAILABLE_CHECK, !up);
    const msg = `${pool}/${id} ${up ? 'passes its health check again' : 'failed its health check'}: ${detail}`;
    this.deps.events.add(up ? 'backend_check_up' : 'backend_check_down', up ? 'info' : 'warn', msg, { pool, id, detail });
    this.deps.log[up ? 'info' : 'warn']({ event: up ? 'backend_check_up' : 'backend_check_down', pool, id, detail }, msg);
  }

  /** Marks agent-managed backends silent for `timeoutMs` as lost (down, kept). */
  expire(timeoutMs: number): void {
    const now = this.now();
    for (const e of this.entries()) {
      if (e.lastSeen === null || e.lost || now - e.lastSeen < timeoutMs) continue;
      e.lost = true;
      this.deps.state.setUnavailable(e.slot, UNAVAILABLE_LOST, true);
      const msg = `${e.pool}/${e.id} missed its heartbeats for ${now - e.lastSeen} ms: marked down`;
      this.deps.events.add('backend_lost', 'warn', msg, { pool: e.pool, id: e.id, silentMs: now - e.lastSeen });
      this.deps.log.warn({ event: 'backend_lost', pool: e.pool, id: e.id, silentMs: now - e.lastSeen }, msg);
    }
  }

  private allocSlot(now: number): number {
    if (this.nextSlot < this.deps.capacity) return this.nextSlot++;
    const i = this.free.findIndex((f) => now - f.at >= SLOT_QUARANTINE_MS);
    if (i < 0) return -1;
    const slot = this.free.splice(i, 1)[0]!.slot;
    this.deps.state.resetBackend(slot);
    return slot;
  }
}
