// Load-balancing algorithms on the real binary with --sticky none: smooth weighted round robin
// hits its weights exactly, least-connections steers away from a backend holding requests
// open, consistent hashing on a header is stable per value and agrees with the balancer's own
// ring, and round robin alternates.
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { startBackend, type Handler } from '../helpers/backends.js';
import { request, type Reply } from '../helpers/client.js';
import { startTether } from '../helpers/tether.js';
import { backendFlag, pollMetric, pollUntil } from '../helpers/sticky.js';
import { ConsistentHashBalancer } from '../../src/data-plane/balancers/index.js';

describe('balancing', () => {
  const cleanups: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  const backend = async (name: string, handler?: Handler) => {
    const b = await startBackend(name, handler);
    cleanups.push(() => b.close());
    return b;
  };
  const tether = async (args: string[]) => {
    const t = await startTether(args, { workers: 2 });
    cleanups.push(() => t.stop());
    return t;
  };
  /** One keep-alive connection: every request on the same worker, in order. */
  const oneConnection = () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    return agent;
  };
  const count = (replies: Reply[]) => {
    const c: Record<string, number> = {};
    for (const r of replies) c[r.body] = (c[r.body] ?? 0) + 1;
    return c;
  };

  it('weighted 3:1 gives exactly 300/100 over 400 cookie-less requests, interleaved', async () => {
    const heavy = await backend('heavy');
    const light = await backend('light');
    const t = await tether([...backendFlag(heavy, undefined, 3), ...backendFlag(light, undefined, 1), '--sticky', 'none', '--balance', 'weighted']);
    const agent = oneConnection();
    const replies: Reply[] = [];
    for (let i = 0; i < 400; i++) replies.push(await request({ port: t.port, agent }));
    for (const r of replies) {
      expect(r.status).toBe(200);
      expect(r.headers['set-cookie'], 'sticky none issues no token').toBeUndefined();
    }
    expect(count(replies)).toEqual({ heavy: 300, light: 100 });
    expect(heavy.received).toHaveLength(300);
    expect(light.received).toHaveLength(100);
    // Smooth, not bursty: every window of 4 consecutive picks holds exactly one 'light'.
    for (let i = 0; i + 4 <= replies.length; i += 4) {
      expect(replies.slice(i, i + 4).filter((r) => r.body === 'light'), `window at ${i}`).toHaveLength(1);
    }
    expect(await t.metric('tether_backend_requests_total{pool="default",backend="heavy"}')).toBe(300);
    expect(await t.metric('tether_backend_requests_total{pool="default",backend="light"}')).toBe(100);
  });

  it('weighted over fresh connections (both workers) stays within one request per worker of 3:1', async () => {
    const heavy = await backend('heavy');
    const light = await backend('light');
    const t = await tether([...backendFlag(heavy, undefined, 3), ...backendFlag(light, undefined, 1), '--sticky', 'none', '--balance', 'weighted']);
    const replies: Reply[] = [];
    for (let i = 0; i < 200; i++) replies.push(await request({ port: t.port, agent: false }));
    const c = count(replies);
    // Each worker's smooth WRR is within 1 of its exact share; two workers: within 2.
    expect(Math.abs((c.light ?? 0) - 50)).toBeLessThanOrEqual(2);
    expect((c.heavy ?? 0) + (c.light ?? 0)).toBe(200);
  });

  it('least-connections sends new requests away from a backend holding requests open', async () => {
    const held: http.ServerResponse[] = [];
    const slowHandler: Handler = (req, res) => {
      req.resume();
      held.push(res);
    };
    // slow first, so every tie-break (each worker's first pick) would favour it.
    const slow = await backend('slow', slowHandler);
    const fast = await backend('fast');
    const t = await tether([...backendFlag(slow), ...backendFlag(fast), '--sticky', 'none', '--balance', 'least-connections']);
    // Runs before the tether stops (cleanups run in reverse), so its drain does not wait on them.
    cleanups.push(() => {
      for (const res of held.splice(0)) res.end('slow');
    });
    const activeFast = 'tether_backend_active_requests{pool="default",backend="fast"}';

    const pending: Promise<Reply>[] = [];
    const served: string[] = [];
    for (let i = 0; i < 20; i++) {
      const slowBefore = slow.received.length;
      const p = request({ port: t.port, agent: false, timeoutMs: 30_000 });
      pending.push(p);
      let answered: string | undefined;
      p.then((r) => (answered = r.body), () => (answered = 'error'));
      // Wait until the request is either held by slow or answered by fast (and no longer
      // counted active there), so the balancer sees settled counts on the next pick.
      const where = await pollUntil(`request ${i} to land`, async () => (slow.received.length > slowBefore ? 'slow' : answered));
      if (where === 'fast') await pollMetric(t, activeFast, (v) => v === 0);
      served.push(where);
    }
    // Round robin would have given slow 10 of 20. With one request held there, slow is never
    // the least loaded again.
    expect(served.filter((s) => s === 'slow'), served.join(',')).toHaveLength(1);
    expect(fast.received).toHaveLength(19);
    expect(await t.metric('tether_backend_active_requests{pool="default",backend="slow"}')).toBe(1);

    for (const res of held.splice(0)) res.end('slow');
    const replies = await Promise.all(pending);
    expect(count(replies)).toEqual({ slow: 1, fast: 19 });
  });

  it('consistent hash on a header: one value, one backend, on every worker; values spread as the ring says', async () => {
    const app1 = await backend('app1');
    const app2 = await backend('app2');
    const app3 = await backend('app3');
    const t = await tether([...backendFlag(app1), ...backendFlag(app2), ...backendFlag(app3), '--sticky', 'none', '--balance', 'consistent-hash:header:X-User']);
    const ring = new ConsistentHashBalancer(
      ['app1', 'app2', 'app3'].map((id) => ({ id, weight: 1 })),
      { isUp: () => true, active: () => 0 },
    );
    const names = ['app1', 'app2', 'app3'];
    const spread: Record<string, number> = {};
    for (let u = 0; u < 60; u++) {
      const user = `user-${u}`;
      const expected = names[ring.pick({ hashKey: user }, -1)]!;
      for (let k = 0; k < 4; k++) {
        const reply = await request({ port: t.port, agent: false, headers: { 'x-user': user } });
        expect(reply.status).toBe(200);
        expect(reply.body, `${user}, request ${k}`).toBe(expected);
      }
      spread[expected] = (spread[expected] ?? 0) + 1;
    }
    // Different values spread: every backend owns some of 60 users.
    for (const n of names) expect(spread[n] ?? 0, JSON.stringify(spread)).toBeGreaterThan(0);
    // The header name is case-insensitive on the wire.
    const a = await request({ port: t.port, headers: { 'X-USER': 'user-7' } });
    expect(a.body).toBe(names[ring.pick({ hashKey: 'user-7' }, -1)]);
  });

  it('round robin alternates on one connection and hands out no token with --sticky none', async () => {
    const app1 = await backend('app1');
    const app2 = await backend('app2');
    const t = await tether([...backendFlag(app1), ...backendFlag(app2), '--sticky', 'none', '--balance', 'round-robin']);
    const agent = oneConnection();
    const bodies: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await request({ port: t.port, agent });
      expect(r.headers['set-cookie']).toBeUndefined();
      bodies.push(r.body);
    }
    for (let i = 1; i < bodies.length; i++) expect(bodies[i], bodies.join(',')).not.toBe(bodies[i - 1]);
    expect(count(bodies.map((body) => ({ body }) as Reply))).toEqual({ app1: 10, app2: 10 });
  });
});
