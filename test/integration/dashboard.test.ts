/// <reference lib="dom" />
// The live dashboard in a real browser (Debian's chromium, driven by playwright-core): the
// charts move under load, an injected address conflict appears in the alerts feed, and a
// screenshot is kept in test-artifacts/ for people to look at.
import { existsSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { adminToken, startTether, type TetherProcess } from '../helpers/tether.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url);
const admin = adminToken();
let browser: Browser;
let t: TetherProcess;
let a: TestBackend;
let b: TestBackend;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does`);
  [a, b] = await Promise.all([startBackend('app1'), startBackend('app2')]);
  t = await startTether(['--backend', `web/app1=127.0.0.1:${a.port}`, '--backend', `web/app2=127.0.0.1:${b.port}`, '--admin-token-file', admin.file]);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'], timeout: 30_000 });
});

afterAll(async () => {
  await browser?.close();
  await t?.stop();
  await Promise.all([a?.close(), b?.close()]);
});

describe('dashboard', () => {
  it('shows live charts that move under load, the backends, and an injected conflict in the feed', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`http://127.0.0.1:${t.adminPort}/dashboard`, { timeout: 15_000 });
    await page.waitForFunction(() => (window as unknown as { tetherDashboard: { ticks: number } }).tetherDashboard.ticks >= 1, undefined, { timeout: 10_000 });
    const chartBefore = await page.evaluate(() => (document.getElementById('rps') as HTMLCanvasElement).toDataURL());

    // Load: sequential requests for a bounded count, while the page keeps receiving frames.
    let stop = false;
    let sent = 0;
    const load = (async () => {
      for (let i = 0; i < 20_000 && !stop; i++) {
        await request({ port: t.port, path: `/load/${i}` });
        sent++;
      }
    })();
    await page.waitForFunction(
      () => {
        const s = (window as unknown as { tetherDashboard: { series: Record<string, { rps: number[] }> } }).tetherDashboard.series;
        return Object.values(s).some((x) => x.rps.some((v) => v > 0)) && Object.keys(s).length === 2;
      },
      undefined,
      { timeout: 15_000 },
    );
    stop = true;
    await load;
    const chartAfter = await page.evaluate(() => (document.getElementById('rps') as HTMLCanvasElement).toDataURL());
    expect(chartAfter).not.toBe(chartBefore);
    expect(await page.locator('#backends tr').count()).toBe(2);
    expect(await page.locator('#backends').innerText()).toMatch(/app1[\s\S]*up[\s\S]*app2[\s\S]*up/);
    // No request carried a token: each started a session, and the table counts every one.
    await page.waitForFunction(
      (n) => Array.from(document.querySelectorAll('[data-sessions]')).reduce((sum, td) => sum + Number((td as HTMLElement).innerText), 0) === n,
      sent,
      { timeout: 10_000 },
    );
    // The rate is per tick, not a running average: once the load has stopped, a tick with no
    // request in it shows exactly 0 for each backend, in the table and on the chart. That frame
    // sessions were all counted in above was computed after the last request's session; a
    // request is counted as it completes, just after, so the next tick may still hold the last
    // one, and the one after it holds none.
    const ticks = await page.evaluate(() => (window as unknown as { tetherDashboard: { ticks: number } }).tetherDashboard.ticks);
    await page.waitForFunction((n) => (window as unknown as { tetherDashboard: { ticks: number } }).tetherDashboard.ticks >= n, ticks + 2, { timeout: 10_000 });
    expect(await page.locator('[data-rps="web/app1"]').innerText()).toBe('0.0');
    expect(await page.locator('[data-rps="web/app2"]').innerText()).toBe('0.0');
    expect(await page.evaluate(() => Object.entries((window as unknown as { tetherDashboard: { series: Record<string, { rps: number[] }> } }).tetherDashboard.series).map(([k, x]) => [k, x.rps.at(-1)]))).toEqual([
      ['web/app1', 0],
      ['web/app2', 0],
    ]);

    // Inject an address conflict through the admin API: the feed shows it.
    const status = await new Promise<number>((resolve, reject) => {
      const body = JSON.stringify({ pool: 'web', id: 'intruder', address: '127.0.0.1', port: a.port });
      const req = http.request({ host: '127.0.0.1', port: t.adminPort, path: '/api/v1/backends', method: 'POST', agent: false, headers: { authorization: admin.header, 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end(body);
    });
    expect(status).toBe(409);
    const alert = page.locator('#feed li[data-type="address_conflict"]');
    await alert.waitFor({ timeout: 10_000 });
    expect(await alert.innerText()).toContain('intruder');

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL('dashboard.png', ARTIFACTS).pathname, fullPage: true });
    await page.close();
  });
});
