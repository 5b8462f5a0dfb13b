// The registry's rules on their own (integration tests drive them through the API and agents),
// and the shared-memory health words the workers read.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { EventLog } from '../../src/orchestrator/events.js';
import { Registry } from '../../src/orchestrator/registry.js';
import { CounterReader, UNAVAILABLE_LOST, WorkerCounters, createSharedState } from '../../src/shared-memory/counters.js';

const layout = { workerCapacity: 2, backendCapacity: 4 };

function setup(capacity = 4) {
  let now = 1_000_000;
  const shared = createSharedState(layout);
  const reader = new CounterReader(shared, layout);
  const worker = new WorkerCounters(shared, layout, 0);
  const events = new EventLog(100, () => now);
  const config = configSchema.parse({
    pools: {
      web: { backends: [{ id: 'app1', address: '10.0.0.1', port: 80 }] },
      api: { backends: [] },
    },
  });
  const registry = new Registry(config, { state: reader, capacity, events, log: pino({ level: 'silent' }), now: () => now });
  return { registry, reader, worker, events, advance: (ms: number) => (now += ms), now: () => now };
}

describe('registry', () => {
  it('adds a new ID, updates a known one in place (same slot), and bumps the version only on change', () => {
    const { registry } = setup();
    const v0 = registry.version;
    const added = registry.announce({ pool: 'web', id: 'app2', address: '10.0.0.2', port: 80 }, 'agent');
    expect(added.ok && added.state).toBe('added');
    expect(registry.version).toBe(v0 + 1);
    const slot = registry.get('web', 'app2')!.slot;
    const same = registry.announce({ pool: 'web', id: 'app2', address: '10.0.0.2', port: 80 }, 'agent');
    expect(same.ok && same.state).toBe('unchanged');
    expect(registry.version).toBe(v0 + 1);
    const moved = registry.announce({ pool: 'web', id: 'app2', address: '10.0.0.9', port: 8080 }, 'agent');
    expect(moved.ok && moved.state).toBe('updated');
    expect(registry.version).toBe(v0 + 2);
    expect(registry.get('web', 'app2')).toMatchObject({ address: '10.0.0.9', port: 8080, slot });
    expect(registry.snapshot().pools.web).toEqual([
      { id: 'app1', address: '10.0.0.1', port: 80, weight: 1, tls: null },
      { id: 'app2', address: '10.0.0.9', port: 8080, weight: 1, tls: null },
    ]);
    expect(registry.snapshot().slots.web).toEqual({ app1: 0, app2: slot });
  });

  it('refuses an address held by another live ID, keeps the holder, and raises one event', () => {
    const { registry, events } = setup();
    const r = registry.announce({ pool: 'web', id: 'app2', address: '10.0.0.1', port: 80 }, 'agent');
    expect(r).toMatchObject({ ok: false, code: 'address_conflict' });
    expect(registry.get('web', 'app2')).toBeUndefined();
    expect(registry.get('web', 'app1')!.address).toBe('10.0.0.1');
    expect(registry.conflicts).toBe(1);
    expect(events.list().filter((e) => e.type === 'address_conflict')).toHaveLength(1);
    // Moving a known ID onto the holder's address is refused too, and it stays where it was.
    registry.announce({ pool: 'web', id: 'app2', address: '10.0.0.2', port: 80 }, 'agent');
    expect(registry.announce({ pool: 'web', id: 'app2', address: '10.0.0.1', port: 80 }, 'agent')).toMatchObject({ ok: false, code: 'address_conflict' });
    expect(registry.get('web', 'app2')!.address).toBe('10.0.0.2');
    // Same port on another address, or the same ID serving another pool, is no conflict.
    expect(registry.announce({ pool: 'web', id: 'app3', address: '10.0.0.3', port: 80 }, 'agent').ok).toBe(true);
    expect(registry.announce({ pool: 'api', id: 'app1', address: '10.0.0.1', port: 80 }, 'agent').ok).toBe(true);
  });

  it('marks a silent agent backend lost (shared memory too), never deletes it, and clears on the next frame', () => {
    const { registry, reader, worker, advance, now } = setup();
    registry.announce({ pool: 'web', id: 'app2', address: '10.0.0.2', port: 80 }, 'agent');
    const slot = registry.get('web', 'app2')!.slot;
    advance(14_000);
    registry.expire(15_000);
    expect(registry.get('web', 'app2')!.lost).toBe(false);
    advance(1_000);
    registry.expire(15_000);
    expect(registry.get('web', 'app2')!.lost).toBe(true);
    expect(reader.backendState(slot).unavailable & UNAVAILABLE_LOST).toBe(UNAVAILABLE_LOST);
    expect(worker.backendPickable(slot, now())).toBe(false);
    expect(reader.downCause(slot, now())).toBe('lost');
    // Config backends have no agent: never lost.
    expect(registry.get('web', 'app1')!.lost).toBe(false);
    // A lost holder does not block its address.
    expect(registry.announce({ pool: 'web', id: 'app9', address: '10.0.0.2', port: 80 }, 'agent').ok).toBe(true);
    expect(registry.heartbeat('web', 'app2').ok).toBe(true);
    expect(registry.get('web', 'app2')!.lost).toBe(false);
    expect(worker.backendPickable(slot, now())).toBe(true);
    expect(reader.downCause(slot, now())).toBeNull();
    // A failing check outranks a passive ejection as the cause shown.
    worker.markBackendFailure(slot, now(), 1_000, 30_000);
    expect(reader.downCause(slot, now())).toBe('ejected');
    registry.setCheck('web', 'app2', false, 'HTTP 503');
    expect(reader.downCause(slot, now())).toBe('check');
    expect(registry.heartbeat('web', 'ghost')).toMatchObject({ ok: false, code: 'unknown_backend' });
  });

  it('drain: not pickable at once; routable for sticky sessions until the deadline', () => {
    const { registry, worker, advance, now } = setup();
    const slot = registry.get('web', 'app1')!.slot;
    registry.drain('web', 'app1', 5_000, 'test');
    expect(worker.backendPickable(slot, now())).toBe(false);
    expect(worker.backendRoutable(slot, now())).toBe(true);
    advance(5_000);
    expect(worker.backendRoutable(slot, now())).toBe(false);
    registry.drain('web', 'app1', null, 'test');
    advance(1e9);
    expect(worker.backendRoutable(slot, now())).toBe(true);
    registry.undrain('web', 'app1', 'test');
    expect(worker.backendPickable(slot, now())).toBe(true);
  });

  it('refuses at capacity; a removed backend’s slot is reused only after a quarantine, zeroed', () => {
    const { registry, worker, reader, advance } = setup(2);
    expect(registry.announce({ pool: 'web', id: 'app2', address: '10.0.0.2', port: 80 }, 'api').ok).toBe(true);
    expect(registry.announce({ pool: 'web', id: 'app3', address: '10.0.0.3', port: 80 }, 'api')).toMatchObject({ ok: false, code: 'capacity' });
    const slot = registry.get('web', 'app2')!.slot;
    worker.incBackend(slot, 'requests', 7);
    expect(registry.remove('web', 'app2', 'test').ok).toBe(true);
    expect(registry.announce({ pool: 'web', id: 'app3', address: '10.0.0.3', port: 80 }, 'api')).toMatchObject({ ok: false, code: 'capacity' });
    advance(60_000);
    expect(registry.announce({ pool: 'web', id: 'app3', address: '10.0.0.3', port: 80 }, 'api').ok).toBe(true);
    expect(registry.get('web', 'app3')!.slot).toBe(slot);
    expect(reader.backendTotal(slot, 'requests')).toBe(0);
  });

  it('explains bad specs', () => {
    const { registry } = setup();
    expect(registry.announce({ pool: 'nope', id: 'x', address: '10.0.0.5', port: 1 }, 'api')).toMatchObject({ ok: false, code: 'unknown_pool' });
    for (const spec of [
      { pool: 'web', id: '', address: '10.0.0.5', port: 1 },
      { pool: 'web', id: 'x', address: '10.0.0.5 ', port: 1 },
      { pool: 'web', id: 'x', address: '10.0.0.5', port: 0 },
      { pool: 'web', id: 'x', address: '10.0.0.5', port: 1, weight: 1.5 },
      { pool: 'web', id: 'x', address: 5 as unknown as string, port: 1 },
    ]) {
      expect(registry.announce(spec, 'api'), JSON.stringify(spec)).toMatchObject({ ok: false, code: 'invalid' });
    }
  });
});

describe('passive 5xx ejection (shared memory)', () => {
  it('ejects after `limit` consecutive 5xx; on probation one more 5xx re-ejects for twice as long; a good answer clears', () => {
    const shared = createSharedState(layout);
    const w = new WorkerCounters(shared, layout, 0);
    const other = new WorkerCounters(shared, layout, 1);
    expect(w.markBackendResponse(1, 500, 3, 0, 1_000, 30_000)).toBe(false);
    expect(other.markBackendResponse(1, 502, 3, 0, 1_000, 30_000)).toBe(false); // the run is shared by workers
    expect(w.markBackendResponse(1, 503, 3, 0, 1_000, 30_000)).toBe(true);
    expect(w.backendDownUntil(1)).toBe(1_000);
    w.markBackendSuccess(1); // connecting again proves nothing after a 5xx ejection
    expect(w.backendDownUntil(1)).toBe(1_000);
    expect(w.markBackendResponse(1, 500, 3, 1_000, 1_000, 30_000)).toBe(true);
    expect(w.backendDownUntil(1)).toBe(3_000);
    expect(w.markBackendResponse(1, 200, 3, 3_000, 1_000, 30_000)).toBe(false);
    expect(w.markBackendResponse(1, 500, 3, 3_000, 1_000, 30_000)).toBe(false);
    expect(w.markBackendResponse(1, 404, 3, 3_000, 1_000, 30_000)).toBe(false);
    expect(w.markBackendResponse(1, 500, 3, 3_000, 1_000, 30_000)).toBe(false);
    expect(w.markBackendResponse(1, 500, 3, 3_000, 1_000, 30_000)).toBe(false);
    expect(w.markBackendResponse(1, 500, 3, 3_000, 1_000, 30_000)).toBe(true);
    expect(w.backendDownUntil(1)).toBe(4_000);
    // limit 0: never.
    for (let i = 0; i < 100; i++) expect(w.markBackendResponse(2, 500, 0, 0, 1_000, 30_000)).toBe(false);
    expect(w.backendDownUntil(2)).toBe(0);
  });
});

it('alerts a repeated conflict once a minute but counts every refusal', () => {
  const { registry, events, advance } = setup();
  for (let i = 0; i < 5; i++) expect(registry.announce({ pool: 'web', id: 'dup', address: '10.0.0.1', port: 80 }, 'agent').ok).toBe(false);
  expect(registry.conflicts).toBe(5);
  expect(events.list().filter((e) => e.type === 'address_conflict')).toHaveLength(1);
  advance(60_000);
  registry.announce({ pool: 'web', id: 'dup', address: '10.0.0.1', port: 80 }, 'agent');
  expect(events.list().filter((e) => e.type === 'address_conflict')).toHaveLength(2);
});

describe('registry reload plan', () => {
  it('replaces config backends, keeps API and agent ones, refuses a conflicting address, changes nothing until applied', () => {
    const { registry } = setup(8);
    registry.announce({ pool: 'web', id: 'agent1', address: '10.0.0.7', port: 80 }, 'agent');
    registry.announce({ pool: 'api', id: 'added', address: '10.0.0.8', port: 80 }, 'api');
    const next = configSchema.parse({
      pools: { web: { backends: [{ id: 'app2', address: '10.0.0.2', port: 80 }] }, api: { backends: [] } },
    });
    const plan = registry.planReload(next);
    expect(plan.problems).toEqual([]);
    // Nothing changes until applied.
    expect(registry.entries().map((e) => `${e.pool}/${e.id}@${e.address}:${e.port}:${e.source}`).sort()).toEqual(['api/added@10.0.0.8:80:api', 'web/agent1@10.0.0.7:80:agent', 'web/app1@10.0.0.1:80:config']);
    const v = registry.version;
    plan.apply();
    expect(registry.version).toBeGreaterThan(v);
    expect(registry.entries().map((e) => `${e.pool}/${e.id}:${e.source}`).sort()).toEqual(['api/added:api', 'web/agent1:agent', 'web/app2:config']);
    // A config backend at the agent's address: refused whole.
    const clash = configSchema.parse({ pools: { web: { backends: [{ id: 'app9', address: '10.0.0.7', port: 80 }] }, api: { backends: [] } } });
    const bad = registry.planReload(clash);
    expect(bad.problems.join('\n')).toMatch(/app9 at 10\.0\.0\.7:80 is an address web\/agent1 holds/);
    // Dropping a pool drops its backends.
    registry.planReload(configSchema.parse({ pools: { web: { backends: [{ id: 'app2', address: '10.0.0.2', port: 80 }] } } })).apply();
    expect(registry.hasPool('api')).toBe(false);
    expect(registry.get('api', 'added')).toBeUndefined();
  });
});
