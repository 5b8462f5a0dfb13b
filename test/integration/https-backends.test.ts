// Backends over TLS: `--backend ID=https://HOST:PORT` re-encrypts to the backend, verifying its
// certificate (against --backend-ca here, the system CAs otherwise) for the name sent as SNI,
// pools the TLS connections as it pools plain ones, and answers 502 naming the failure when the
// certificate does not verify — unless verify=none was written.
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../helpers/client.js';
import { runToExit, startTether, type TetherProcess } from '../helpers/tether.js';
import { makePki, type TestPki } from '../helpers/tls.js';

interface HttpsBackend {
  port: number;
  /** TLS connections accepted, and the SNI each asked for. */
  servernames: string[];
  protos: string[];
  close(): Promise<void>;
}

/** A keep-alive HTTPS backend answering its name, with the certificate for `certName`. */
async function startHttpsBackend(pki: TestPki, certName: string, name: string): Promise<HttpsBackend> {
  const { key, cert } = pki.leaf(certName);
  const servernames: string[] = [];
  const protos: string[] = [];
  const server = https.createServer({ key, cert, keepAliveTimeout: 60_000 }, (req, res) => {
    protos.push(String(req.headers['x-forwarded-proto']));
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
      res.end(name);
    });
  });
  server.on('secureConnection', (s: TLSSocket) => servernames.push(String((s as { servername?: unknown }).servername)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    servernames,
    protos,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('backends over TLS', () => {
  let pki: TestPki;
  let good: HttpsBackend;
  let wrongName: HttpsBackend;
  let t: TetherProcess;

  beforeAll(async () => {
    pki = makePki(['app.test', 'other.test']);
    good = await startHttpsBackend(pki, 'app.test', 'app1');
    wrongName = await startHttpsBackend(pki, 'other.test', 'app2');
    t = await startTether([
      '--backend', `app1=https://127.0.0.1:${good.port},sni=app.test`,
      '--backend', `wrong/app2=https://127.0.0.1:${wrongName.port},sni=app.test`,
      '--backend', `unverified/app3=https://127.0.0.1:${wrongName.port},sni=app.test,verify=none`,
      '--route', 'wrong.test=wrong', '--route', 'unverified.test=unverified',
      '--backend-ca', pki.caFile,
      '--sticky', 'none',
    ], { workers: 1 });
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await good?.close();
    await wrongName?.close();
    pki?.cleanup();
  });

  it('re-encrypts with SNI, verified against --backend-ca, and reuses one TLS connection for keep-alive traffic', async () => {
    const before = good.servernames.length;
    for (let i = 0; i < 10; i++) {
      const r = await request({ port: t.port, path: `/r${i}`, headers: { host: 'good.test' } });
      expect([r.status, r.body]).toEqual([200, 'app1']);
    }
    // One worker, requests one after another: one pooled TLS connection carried all ten.
    expect(good.servernames.slice(before)).toEqual(['app.test']);
    expect(good.protos.slice(-10)).toEqual(Array(10).fill('http'));
  });

  it('answers 502 naming the failure when the certificate is for another name, and no request reaches that backend', async () => {
    const r = await request({ port: t.port, path: '/', headers: { host: 'wrong.test' } });
    expect(r.status).toBe(502);
    expect(r.body).toMatch(/^tether: backend app2 \(127\.0\.0\.1:\d+\) failed the TLS handshake: Hostname\/IP does not match certificate's altnames/);
    expect(wrongName.protos).toEqual([]);
  });

  it('verify=none, written explicitly, talks to it anyway', async () => {
    const r = await request({ port: t.port, path: '/', headers: { host: 'unverified.test' } });
    expect([r.status, r.body]).toEqual([200, 'app2']);
  });

  it('refuses bad backend TLS settings at start, saying why', async () => {
    const bad = await runToExit(['--backend', 'a=https://127.0.0.1:1,verify=sometimes', '--admin', 'off']);
    expect(bad.code).not.toBe(0);
    expect(bad.out).toContain("verify= takes only 'none'");
    const plain = await runToExit(['--backend', 'a=127.0.0.1:1,sni=x.test', '--admin', 'off']);
    expect(plain.out).toContain("backend option 'sni' is for an https:// backend");
    const ca = await runToExit(['--backend', 'a=https://127.0.0.1:1', '--backend-ca', '/nonexistent/ca.pem', '--admin', 'off']);
    expect(ca.code).not.toBe(0);
    expect(ca.out).toContain('cannot read --backend-ca /nonexistent/ca.pem');
  });
});

describe('health checks to backends over TLS', () => {
  it('check over TLS under the same terms: a verified backend passes, one whose certificate names another host fails, saying why', async () => {
    const pki = makePki(['app.test', 'other.test']);
    const good = await startHttpsBackend(pki, 'app.test', 'app1');
    const wrong = await startHttpsBackend(pki, 'other.test', 'app2');
    const t = await startTether([
      '--backend', `app1=https://127.0.0.1:${good.port},sni=app.test`,
      '--backend', `app2=https://127.0.0.1:${wrong.port},sni=app.test`,
      '--backend-ca', pki.caFile,
      '--health-check', 'http:/health,interval=100,timeout=2000,rise=1,fall=1',
    ], { workers: 1 });
    try {
      const down = await t.waitForLog((e) => e.event === 'backend_check_down' && e.id === 'app2');
      expect(String(down.detail)).toMatch(/altnames/);
      // The passing backend's check has a result of its own (each target keeps its own schedule).
      let check: { up: boolean; detail: string } | null = null;
      for (let i = 0; i < 100 && check === null; i++) {
        const res = await fetch(`http://127.0.0.1:${t.adminPort}/api/v1/backends`, { signal: AbortSignal.timeout(5_000) });
        const { backends } = (await res.json()) as { backends: { id: string; health: { check: { up: boolean; detail: string; lastCheckAt: string | null } | null } }[] };
        const c = backends.find((b) => b.id === 'app1')!.health.check;
        if (c?.lastCheckAt) check = { up: c.up, detail: c.detail };
        else await new Promise((r) => setTimeout(r, 50)); // the next scheduled check, 100 ms apart
      }
      expect(check).toEqual({ up: true, detail: 'HTTP 200' });
      expect(good.servernames.every((n) => n === 'app.test')).toBe(true);
    } finally {
      await t.stop();
      await good.close();
      await wrong.close();
      pki.cleanup();
    }
  }, 60_000);
});

describe('backends over TLS, against the system CAs', () => {
  it('does not trust a private CA unless --backend-ca names it: 502 naming the verification failure', async () => {
    const pki = makePki(['app.test']);
    const b = await startHttpsBackend(pki, 'app.test', 'app1');
    const t = await startTether(['--backend', `app1=https://127.0.0.1:${b.port},sni=app.test`], { workers: 1 });
    try {
      const r = await request({ port: t.port, path: '/' });
      expect(r.status).toBe(502);
      expect(r.body).toMatch(/^tether: backend app1 \(127\.0\.0\.1:\d+\) failed the TLS handshake: unable to verify the first certificate\n$/);
      expect(b.protos).toEqual([]);
    } finally {
      await t.stop();
      await b.close();
      pki.cleanup();
    }
  }, 60_000);
});
