// The uws-floor bench peer (bench/load/peers/uws-floor-server.js): the least a proxy built as
// Tether is built can do, run beside Tether and HAProxy to show what the runtime costs. Started
// for real on two real bench backends; the sticky-hit and first-visit scenarios' own prepare()
// checks must pass through it, or its numbers would be those of a proxy doing less work.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBench, processes, startReadyProcess, type Handle } from '../helpers/bench.js';

interface Prepared {
  cookies: string[];
  checks: Record<string, unknown>;
}
type Prepare = (o: { url: string; peer: { name: string; cookieName: string }; backendNames: string[] }) => Promise<Prepared>;

const floor = await loadBench<{
  name: string;
  cookieName: string;
  scenarios: string[];
  start(o: { backends: { name: string; port: number }[]; workers: number; port: number }): {
    handle: Handle;
    url: string;
    waitReady(deadlineMs: number): Promise<unknown>;
  };
}>('load/peers/uws-floor.js');
const stickyHit = await loadBench<{ prepare: Prepare }>('load/scenarios/sticky-hit.js');
const firstVisit = await loadBench<{ prepare: Prepare }>('load/scenarios/first-visit.js');
const peerIndex = await loadBench<{ peers: { name: string }[]; runsIn(p: unknown, s: { name: string }): boolean }>('load/peers/index.js');

const backendPath = fileURLToPath(new URL('../../bench/load/backend.js', import.meta.url));

describe('uws-floor bench peer', () => {
  const handles: Handle[] = [];
  let url = '';
  let dir = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(os.tmpdir(), 'bench-floor-'));
    const backends = [];
    for (const name of ['app1', 'app2']) {
      const { handle, port } = await startReadyProcess(`backend ${name}`, [backendPath, name]);
      handles.push(handle);
      backends.push({ name, port });
    }
    const started = floor.start({ backends, workers: 2, port: await processes.freePort() });
    handles.push(started.handle);
    await started.waitReady(10_000);
    url = started.url;
  }, 30_000);

  afterAll(async () => {
    await Promise.all(handles.map((h) => h.kill(2000)));
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs only where it is comparable: sticky-hit and first-visit', () => {
    const floorPeer = peerIndex.peers.find((p) => p.name === 'uws-floor');
    expect(floorPeer).toBeDefined();
    expect(peerIndex.runsIn(floorPeer, { name: 'sticky-hit' })).toBe(true);
    expect(peerIndex.runsIn(floorPeer, { name: 'first-visit' })).toBe(true);
    expect(peerIndex.runsIn(floorPeer, { name: 'learn-hit' })).toBe(false);
    expect(peerIndex.runsIn(floorPeer, { name: 'large-body' })).toBe(false);
  });

  it('passes sticky-hit’s checks: one cookie per backend, each pins it, none re-issued', async () => {
    const prepared = await stickyHit.prepare({ url, peer: floor, backendNames: ['app1', 'app2'] });
    expect(prepared.cookies.sort()).toEqual(['FLOOR=app1', 'FLOOR=app2']);
    expect(prepared.checks).toMatchObject({ pinChecksPerBackend: 5, responsesReissuingCookie: 0 });
    expect((prepared.checks.backendsPinned as string[]).sort()).toEqual(['app1', 'app2']);
  });

  it('passes first-visit’s checks: every cookie-less response issues a cookie, round robin', async () => {
    const prepared = await firstVisit.prepare({ url, peer: floor, backendNames: ['app1', 'app2'] });
    expect(prepared.checks).toMatchObject({ issuedCookieOn: '4/4' });
    expect((prepared.checks.backendsSeen as string[]).sort()).toEqual(['app1', 'app2']);
  });

  it('refuses a request body with 501 instead of forwarding half a request', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(url, { method: 'POST', agent: false, timeout: 5000, headers: { 'content-length': '5' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end('hello');
    });
    expect(status).toBe(501);
  });
});
