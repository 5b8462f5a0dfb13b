// Sticky failover on the real binary: when the token's backend stops accepting connections,
// the request goes to another backend (even a POST: a refused connect means nothing reached
// the old one), the client gets a token for its new home and stays there; with every backend
// down the answer is a prompt 502 (attempted) or 503 (nothing to attempt) that says why. No request may hang.
import http from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBackend, type Handler, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue, type Reply } from '../helpers/client.js';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { backendFlag, pollUntil, sticky } from '../helpers/sticky.js';

/** Deadline for any single request in this file: a hang fails the test, not the suite timeout. */
const DEADLINE_MS = 8_000;

describe('sticky failover', () => {
  const bodies = new Map<string, string[]>();
  /** Records each request body per backend, then answers with the backend's name. */
  const echo: Handler = (req, res, name) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (!bodies.has(name)) bodies.set(name, []);
      bodies.get(name)!.push(Buffer.concat(chunks).toString());
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(name);
    });
  };
  let app1: TestBackend;
  let app2: TestBackend;
  let tether: TetherProcess;
  let app1Port = 0;

  beforeEach(async () => {
    bodies.clear();
    app1 = await startBackend('app1', echo);
    app2 = await startBackend('app2', echo);
    app1Port = app1.port;
    tether = await startTether([...backendFlag(app1), ...backendFlag(app2)], { workers: 2 });
  });

  afterEach(async () => {
    await tether?.stop();
    await Promise.all([app1?.close(), app2?.close()]);
  });

  const send = (headers: http.OutgoingHttpHeaders = {}, extra: Partial<Parameters<typeof request>[0]> = {}) =>
    request({ port: tether.port, headers, timeoutMs: DEADLINE_MS, ...extra });

  /** A token for app1 (round robin hands one out within a few requests). */
  const tokenForApp1 = async () => {
    for (let i = 0; i < 10; i++) {
      const reply = await send();
      const token = setCookieValue(reply, 'TETHER');
      expect(token).toBeTruthy();
      if (reply.body === 'app1') return token!;
    }
    throw new Error('no token for app1 in 10 requests');
  };

  const withToken = (token: string) => ({ cookie: `TETHER=${token}` });

  it('the request after the sticky backend dies lands on app2 with a new token, and the client stays there', async () => {
    const token = await tokenForApp1();
    for (let i = 0; i < 4; i++) expect((await send(withToken(token), { agent: false })).body).toBe('app1');

    const before = {
      hit: await tether.metric(sticky('hit')),
      failover: await tether.metric(sticky('failover')),
      connectErrors: await tether.metric('tether_upstream_connect_errors_total'),
      app1ConnectErrors: await tether.metric('tether_backend_connect_errors_total{pool="default",backend="app1"}'),
      fivexx: await tether.metric('tether_responses_total{class="5xx"}'),
    };
    await app1.close();

    const moved = await send(withToken(token));
    expect(moved.status).toBe(200);
    expect(moved.body).toBe('app2');
    const newToken = setCookieValue(moved, 'TETHER');
    expect(newToken, 'the failed-over client gets a token for app2').toBeTruthy();
    expect(newToken).not.toBe(token);
    // That request's token named a dead backend: it is a failover, not a hit.
    expect(await tether.metric(sticky('failover')), 'failover counted for the request that failed over').toBe(before.failover + 1);
    expect(await tether.metric(sticky('hit')), 'a request that did not reach its token backend is no hit').toBe(before.hit);
    expect(await tether.metric('tether_upstream_connect_errors_total')).toBeGreaterThan(before.connectErrors);
    expect(await tether.metric('tether_backend_connect_errors_total{pool="default",backend="app1"}')).toBeGreaterThan(before.app1ConnectErrors);

    // The new token sticks to app2 on every worker.
    for (let i = 0; i < 12; i++) {
      const reply = await send(withToken(newToken!), { agent: false });
      expect(reply.status).toBe(200);
      expect(reply.body).toBe('app2');
      expect(setCookieValue(reply, 'TETHER'), `request ${i} with the new token`).toBeUndefined();
    }
    // The old token, presented again, also ends up on app2 and is replaced again.
    const stale = await send(withToken(token), { agent: false });
    expect(stale.body).toBe('app2');
    expect(setCookieValue(stale, 'TETHER')).toBeTruthy();
    expect(await tether.metric('tether_responses_total{class="5xx"}')).toBe(before.fivexx);
  });

  it('a POST with a body fails over too, and the body reaches app2 intact', async () => {
    const token = await tokenForApp1();
    await app1.close();
    const payload = JSON.stringify({ order: 42, items: Array.from({ length: 200 }, (_, i) => `item-${i}`) });
    const reply = await send({ ...withToken(token), 'content-type': 'application/json' }, { method: 'POST', path: '/orders', body: payload });
    expect(reply.status, reply.body).toBe(200);
    expect(reply.body).toBe('app2');
    expect(setCookieValue(reply, 'TETHER')).toBeTruthy();
    expect(bodies.get('app2')).toEqual([payload]);
    const got = app2.received.at(-1)!;
    expect(got.method).toBe('POST');
    expect(got.url).toBe('/orders');
    expect(got.headers['content-length']).toBe(String(Buffer.byteLength(payload)));

    // Chunked request bodies too.
    const chunked = await new Promise<Reply>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: tether.port, method: 'POST', path: '/chunked', headers: withToken(token), agent: false },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body }));
        },
      );
      req.setTimeout(DEADLINE_MS, () => req.destroy(new Error('chunked POST timed out')));
      req.on('error', reject);
      req.write('part one, ');
      req.end('part two');
    });
    expect(chunked.status, chunked.body).toBe(200);
    expect(chunked.body).toBe('app2');
    expect(bodies.get('app2')!.at(-1)).toBe('part one, part two');
  });

  it('with every backend down: the request that tried them gets 502 naming the failure, later ones a prompt 503', async () => {
    const token = await tokenForApp1();
    await Promise.all([app1.close(), app2.close()]);
    const replies: Reply[] = [];
    for (let i = 0; i < 6; i++) {
      // Alternate: with the old token, without, and a POST.
      const reply =
        i % 3 === 0 ? await send(withToken(token)) : i % 3 === 1 ? await send() : await send({}, { method: 'POST', body: 'x'.repeat(100) });
      replies.push(reply);
    }
    // The first request still believes the backends are up, tries both and reports the connect
    // failure (502); both are then in backoff, so every later request finds none to try (503).
    expect(replies[0]!.status, replies[0]!.body).toBe(502);
    expect(replies[0]!.body).toMatch(/^tether: backend app[12] .*refused/);
    for (const [i, r] of replies.entries()) {
      if (i > 0) {
        expect(r.status, `request ${i}: ${r.body}`).toBe(503);
        expect(r.body).toMatch(/^tether: no healthy backend in pool 'default'/);
      }
      expect(r.headers['set-cookie'], 'no token for a request no backend served').toBeUndefined();
    }
    expect(await tether.metric('tether_no_backend_total')).toBeGreaterThan(0);
    expect(await tether.metric('tether_backend_up{pool="default",backend="app1"}')).toBe(0);
  });

  it('a backend that comes back receives new clients again, and failed-over clients stay put', async () => {
    const token = await tokenForApp1();
    await app1.close();
    const moved = await send(withToken(token));
    expect(moved.body).toBe('app2');
    const app2Token = setCookieValue(moved, 'TETHER')!;
    expect(app2Token).toBeTruthy();

    // app1 returns on the same port after its backoff; new clients find it again.
    app1 = await startBackend('app1', echo, '127.0.0.1', app1Port);
    await pollUntil(
      'a token-less request to reach the recovered app1',
      async () => ((await send({}, { agent: false })).body === 'app1' ? true : undefined),
      15_000,
    );
    for (let i = 0; i < 6; i++) {
      const reply = await send(withToken(app2Token), { agent: false });
      expect(reply.body).toBe('app2');
      expect(setCookieValue(reply, 'TETHER')).toBeUndefined();
    }
  });
});

