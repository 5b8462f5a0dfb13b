// Regression: a request answered before its body arrived (here 503, no backend up) must not
// buffer the rest of the body. It used to queue every remaining byte the client still sent.
// uWS may either keep reading the body after the answer (the client then gets its 503) or close
// the connection (the client's next write fails): both are fine, growing by the upload is not.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { request } from '../helpers/client.js';
import { pollUntil } from '../helpers/sticky.js';

const MiB = 1024 * 1024;
let t: TetherProcess;

function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

beforeAll(async () => {
  // A backend address nothing listens on: after the first refused connect it is in backoff.
  t = await startTether(['--backend', 'gone=127.0.0.1:1', '--sticky', 'none'], { workers: 1 });
  expect((await request({ port: t.port })).status).toBe(502);
  await pollUntil('the backend to be marked down', async () => ((await t.metric('tether_backend_up{pool="default",backend="gone"}')) === 0 ? true : undefined));
});
afterAll(async () => {
  await t?.stop();
});

it('a 256 MiB upload answered 503 up front does not grow the balancer by the upload', { timeout: 120_000 }, async () => {
  const total = 256 * MiB;
  const before = rss(t.pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rss(t.pid))), 50);
  const block = Buffer.alloc(64 * 1024, 0x61);
  const outcome = await new Promise<{ status?: number; error?: string; sent: number }>((resolve) => {
    let sent = 0;
    let status: number | undefined;
    const req = http.request({ host: '127.0.0.1', port: t.port, method: 'POST', path: '/upload', headers: { 'content-length': total }, agent: false }, (res) => {
      status = res.statusCode;
      res.resume();
    });
    const timer = setTimeout(() => req.destroy(new Error('upload did not finish within 100 s')), 100_000);
    const done = (error?: string) => {
      clearTimeout(timer);
      resolve({ status, error, sent });
    };
    req.on('error', (err) => done(err.message));
    req.on('close', () => done());
    const pump = () => {
      while (sent < total) {
        sent += block.length;
        if (!req.write(block)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  clearInterval(sampler);
  if (outcome.status === undefined) {
    expect(outcome.error, JSON.stringify(outcome)).toMatch(/EPIPE|ECONNRESET|socket hang up/);
  } else {
    expect(outcome.status, JSON.stringify(outcome)).toBe(503);
  }
  expect(peak - before, `balancer RSS grew ${((peak - before) / MiB).toFixed(1)} MiB`).toBeLessThan(64 * MiB);
  // And it still answers.
  expect((await request({ port: t.port })).status).toBe(503);
});
