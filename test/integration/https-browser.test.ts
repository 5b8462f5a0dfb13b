/// <reference lib="dom" />
// HTTPS through Tether in a real browser (Debian's chromium, driven by playwright-core): a page
// served by a test CA's ECDSA leaf keeps its backend across reloads on a Secure route cookie, and
// HTTP/2-capable clients (Chromium, curl --http2, openssl s_client -alpn h2,http/1.1) settle on
// HTTP/1.1, the only protocol Tether's ALPN offers.
import { execFile, spawn } from 'node:child_process';
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Response } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { makeCertFactory, type CertFactory, type Leaf } from '../helpers/certs.js';
import { startTether, type TetherProcess } from '../helpers/tether.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const NAV_TIMEOUT = 15_000;

/** An HTML page that names the backend that served it, in `<h1 id=b>`. */
function namedPage(req: http.IncomingMessage, res: http.ServerResponse, name: string): void {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'x-backend': name });
    res.end(`<!doctype html><title>${name}</title><h1 id=b>${name}</h1>`);
  });
}

/** base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: what --ignore-certificate-errors-spki-list takes. */
function spkiHash(certPem: string): string {
  const spki = createPublicKey(certPem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

/** Runs `file args`, killed after 15 s: stdout and stderr, or the failure with what it printed. */
function run(file: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${file} ${args.join(' ')}: ${stderr || err.message}`));
      resolve({ stdout, stderr });
    });
  });
}

/** `openssl s_client` to 127.0.0.1:port, stdin closed at once: everything it printed. */
function sClient(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', ['s_client', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`openssl s_client did not finish within 15 s: ${output}`));
    }, 15_000);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(output);
    });
    child.stdin.end();
  });
}

describe('HTTPS through Tether to Chromium, curl and openssl', () => {
  let factory: CertFactory;
  let site: Leaf;
  let app1: TestBackend;
  let app2: TestBackend;
  let t: TetherProcess;
  let port: number;
  let browser: Browser;
  const backends = () => [app1, app2];

  /** Page loads ("/" from Chromium) each backend has received so far. */
  const pageLoads = () => backends().map((b) => b.received.filter((r) => r.url === '/' && /HeadlessChrome/.test(r.headers['user-agent'] ?? '')).length);

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does`);
    factory = makeCertFactory();
    // site.test: the leaf Chromium is told to accept. other.test: same CA, another key, which
    // Chromium must still refuse: the pin is per key, verification stays on for everything else.
    site = factory.leaf({ san: ['DNS:site.test'], key: 'ec' });
    const other = factory.leaf({ san: ['DNS:other.test'], key: 'ec' });
    writeFileSync(join(factory.dir, 'site.pem'), site.chain + site.key, { mode: 0o600 });
    writeFileSync(join(factory.dir, 'other.pem'), other.chain + other.key, { mode: 0o600 });
    writeFileSync(join(factory.dir, 'root.pem'), factory.root);
    [app1, app2] = await Promise.all([startBackend('app1', namedPage), startBackend('app2', namedPage)]);
    t = await startTether([
      '--listen', 'https://127.0.0.1:0',
      '--cert', join(factory.dir, 'site.pem'),
      '--cert', join(factory.dir, 'other.pem'),
      '--backend', `app1=127.0.0.1:${app1.port}`,
      '--backend', `app2=127.0.0.1:${app2.port}`,
    ]);
    port = t.ports[1]!;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30_000,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--host-resolver-rules=MAP site.test 127.0.0.1, MAP other.test 127.0.0.1',
        `--ignore-certificate-errors-spki-list=${spkiHash(site.cert)}`,
      ],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await t?.stop();
    await Promise.all([app1?.close(), app2?.close()]);
    factory?.cleanup();
  });

  /**
   * Loads https://site.test/ in `context`, then reloads it five times; every answer is checked to
   * come over TLS 1.3 from site.test's certificate, through Tether's port, as HTTP/1.1. Returns
   * the backend each load named and the route cookie the context holds.
   */
  async function loadAndReload(context: BrowserContext): Promise<{ served: string[]; token: string }> {
    const page = await context.newPage();
    const siteX509 = new X509Certificate(site.cert);
    const served: string[] = [];
    let token = '';
    const check = async (response: Response | null, load: number) => {
      expect(response).not.toBeNull();
      expect(response!.status()).toBe(200);
      expect(await response!.securityDetails()).toEqual({
        protocol: 'TLS 1.3',
        subjectName: 'site.test',
        issuer: 'Tether test intermediate',
        validFrom: Date.parse(siteX509.validFrom) / 1000,
        validTo: Date.parse(siteX509.validTo) / 1000,
      });
      expect(await response!.serverAddr()).toEqual({ ipAddress: '127.0.0.1', port });
      expect(await page.evaluate(() => (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).nextHopProtocol)).toBe('http/1.1');
      const name = await page.locator('#b').innerText({ timeout: NAV_TIMEOUT });
      expect(response!.headers()['x-backend']).toBe(name);
      served.push(name);
      if (load === 0) {
        // The first load carries no cookie and is given one ...
        expect(await response!.request().headerValue('cookie')).toBeNull();
        const setCookie = (await response!.headerValue('set-cookie')) ?? '(no Set-Cookie)';
        expect(setCookie).toMatch(/^TETHER=[A-Za-z0-9_-]+; Max-Age=86400; Path=\/; HttpOnly; Secure; SameSite=Lax$/);
        token = /^TETHER=([^;]+)/.exec(setCookie)![1]!;
      } else {
        // ... every reload sends it back, and a valid, fresh token is not re-issued.
        expect(await response!.request().headerValue('cookie')).toBe(`TETHER=${token}`);
        expect(await response!.headerValue('set-cookie')).toBeNull();
      }
    };
    try {
      const before = Math.floor(Date.now() / 1000);
      await check(await page.goto(`https://site.test:${port}/`, { timeout: NAV_TIMEOUT }), 0);
      const after = Math.ceil(Date.now() / 1000);
      const cookies = await context.cookies();
      expect(cookies).toEqual([{ name: 'TETHER', value: token, domain: 'site.test', path: '/', expires: expect.any(Number), httpOnly: true, secure: true, sameSite: 'Lax' }]);
      expect(cookies[0]!.expires).toBeGreaterThanOrEqual(before + 86400 - 1);
      expect(cookies[0]!.expires).toBeLessThanOrEqual(after + 86400 + 1);
      for (let load = 1; load <= 5; load++) await check(await page.reload({ timeout: NAV_TIMEOUT }), load);
    } finally {
      await page.close();
    }
    return { served, token };
  }

  it('Chromium loads site.test over TLS 1.3 and HTTP/1.1 and keeps its backend across 5 reloads on a Secure, HttpOnly route cookie', async () => {
    const context = await browser.newContext();
    try {
      const before = pageLoads();
      const { served } = await loadAndReload(context);
      expect(['app1', 'app2']).toContain(served[0]);
      expect(served).toEqual(Array(6).fill(served[0]));
      // All six loads reached that backend, none the other.
      const chosen = served[0] === 'app1' ? 0 : 1;
      const delta = pageLoads().map((n, i) => n - before[i]!);
      expect(delta).toEqual(chosen === 0 ? [6, 0] : [0, 6]);
    } finally {
      await context.close();
    }
  });

  it('a second browser context, without the first one\'s cookie, lands on either backend and sticks to it', async () => {
    const first = await browser.newContext();
    const second = await browser.newContext();
    try {
      const a = await loadAndReload(first);
      const before = pageLoads();
      const b = await loadAndReload(second);
      expect(b.token).not.toBe(a.token);
      expect(['app1', 'app2']).toContain(b.served[0]);
      expect(b.served).toEqual(Array(6).fill(b.served[0]));
      const delta = pageLoads().map((n, i) => n - before[i]!);
      expect(delta).toEqual(b.served[0] === 'app1' ? [6, 0] : [0, 6]);
      // The contexts do not share cookies: the first still holds only its own.
      expect((await first.cookies()).map((c) => c.value)).toEqual([a.token]);
    } finally {
      await first.close();
      await second.close();
    }
  });

  it('the trust is one pinned key, not verification turned off: another certificate from the same CA is refused', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const before = pageLoads();
      await expect(page.goto(`https://other.test:${port}/`, { timeout: NAV_TIMEOUT })).rejects.toThrow(/net::ERR_CERT_AUTHORITY_INVALID/);
      expect(pageLoads()).toEqual(before);
    } finally {
      await context.close();
    }
  });

  it('the dashboard lists the certificates: names, issuer, expiry, which is the default', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${t.adminPort}/dashboard`, { timeout: 15_000 });
      await page.waitForSelector('#certs tr', { timeout: 15_000 });
      const rows = await page.$$eval('#certs tr', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent)));
      expect(rows.map((r) => [r[0], r[1], r[3], r[4]])).toEqual([
        ['site.test (default)', 'CN=Tether test intermediate', 'ec', join(factory.dir, 'site.pem')],
        ['other.test', 'CN=Tether test intermediate', 'ec', join(factory.dir, 'other.pem')],
      ]);
      // makeCertFactory's leaves live 30 days: not yet within the 14-day warning.
      expect(rows[0]![2]).toMatch(/^\d{4}-\d\d-\d\d \(in (29|30) day\(s\)\)$/);
      expect(await page.$$eval('#certs tr.expiring', (trs) => trs.length)).toBe(0);
    } finally {
      await context.close();
    }
  });

  it('curl --http2 offers h2 and gets HTTP/1.1', async () => {
    const { stdout, stderr } = await run('curl', [
      '--http2', '-sS', '-v', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_version}',
      '--cacert', join(factory.dir, 'root.pem'), '--resolve', `site.test:${port}:127.0.0.1`, `https://site.test:${port}/`,
    ]);
    expect(stdout).toBe('1.1');
    expect(stderr).toMatch(/^\* ALPN: offers h2,http\/1\.1\r?$/m);
    expect(stderr).toMatch(/^\* ALPN: server accepted http\/1\.1\r?$/m);
  });

  it('openssl s_client offering h2,http/1.1 is given http/1.1 by ALPN, on a verified chain', async () => {
    const output = await sClient(['-connect', `127.0.0.1:${port}`, '-servername', 'site.test', '-CAfile', join(factory.dir, 'root.pem'), '-alpn', 'h2,http/1.1']);
    expect([...output.matchAll(/^ALPN protocol: (.*)$/gm)].map((m) => m[1])).toEqual(['http/1.1']);
    expect(output).not.toContain('No ALPN negotiated');
    expect(output).toMatch(/^ *Verify return code: 0 \(ok\)$/m);
    expect(output).toMatch(/^subject=CN ?= ?site\.test$/m);
  });
});
