// /metrics after a deterministic run: every counter equals what the test sent, summed over both
// workers through shared memory; the upstream latency histogram holds every response, in order.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue } from '../helpers/client.js';
import { startTether, type TetherProcess } from '../helpers/tether.js';

let app: TestBackend;
let t: TetherProcess;

beforeAll(async () => {
  app = await startBackend('app1', (req, res) => {
    req.resume();
    const status = req.url === '/nf' ? 404 : req.url === '/err' ? 500 : 200;
    const answer = () => res.writeHead(status, { 'content-type': 'text/plain' }).end('x');
    // The slow one answers after at least 60 ms: a lower bound the histogram must show.
    if (req.url === '/slow') setTimeout(answer, 60);
    else answer();
  });
  t = await startTether(['--backend', `app1=127.0.0.1:${app.port}`, '--eject-5xx', '0'], { workers: 2 });
});

afterAll(async () => {
  await t?.stop();
  await app?.close();
});

describe('metrics', () => {
  it('match what was sent, exactly, across workers', async () => {
    const paths = [...Array<string>(7).fill('/ok'), ...Array<string>(3).fill('/nf'), ...Array<string>(2).fill('/err'), '/slow'];
    let cookie = '';
    for (const path of paths) cookie = `TETHER=${setCookieValue(await request({ port: t.port, path }), 'TETHER')}`;
    let text = await t.metrics();
    const value = (sample: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
      return line === undefined ? undefined : Number(line.slice(sample.length + 1));
    };
    expect(value('tether_requests_total')).toBe(13);
    expect(value('tether_responses_total{class="2xx"}')).toBe(8);
    expect(value('tether_responses_total{class="4xx"}')).toBe(3);
    expect(value('tether_responses_total{class="5xx"}')).toBe(2);
    const b = 'pool="default",backend="app1"';
    expect(value(`tether_backend_requests_total{${b}}`)).toBe(13);
    expect(value(`tether_backend_responses_total{${b},class="2xx"}`)).toBe(8);
    expect(value(`tether_backend_responses_total{${b},class="4xx"}`)).toBe(3);
    expect(value(`tether_backend_responses_total{${b},class="5xx"}`)).toBe(2);
    expect(value(`tether_backend_responses_total{${b},class="3xx"}`)).toBe(0);
    // Every request came without a token: 13 misses, 13 tokens issued.
    expect(value('tether_sticky_total{outcome="miss"}')).toBe(13);
    expect(value('tether_tokens_issued_total')).toBe(13);
    expect(value(`tether_backend_sessions_total{${b}}`)).toBe(13);
    expect(value(`tether_backend_sticky_hits_total{${b}}`)).toBe(0);
    // The histogram: 13 observations, buckets cumulative, the slow one above 50 ms.
    const h = 'tether_upstream_response_seconds';
    expect(value(`${h}_count{${b}}`)).toBe(13);
    expect(value(`${h}_bucket{${b},le="+Inf"}`)).toBe(13);
    expect(value(`${h}_bucket{${b},le="0.05"}`)).toBeLessThanOrEqual(12);
    expect(value(`${h}_sum{${b}}`)).toBeGreaterThanOrEqual(0.06);
    const buckets = text.split('\n').filter((l) => l.startsWith(`${h}_bucket{${b},`)).map((l) => Number(l.split(' ')[1]));
    expect(buckets).toHaveLength(15);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]).toBeGreaterThanOrEqual(buckets[i - 1]!);
    expect(text).toMatch(/# TYPE tether_upstream_response_seconds histogram/);

    // Four requests back with the last token: sticky hits on app1, no new session (a fresh
    // token is not re-issued).
    for (let i = 0; i < 4; i++) expect((await request({ port: t.port, path: '/ok', headers: { cookie } })).status).toBe(200);
    text = await t.metrics();
    expect(value('tether_sticky_total{outcome="hit"}')).toBe(4);
    expect(value(`tether_backend_sticky_hits_total{${b}}`)).toBe(4);
    expect(value(`tether_backend_sessions_total{${b}}`)).toBe(13);
    expect(value('tether_tokens_issued_total')).toBe(13);
  });
});
