// HTTPS termination with real clients: curl and openssl s_client against Tether's https://
// listeners, certificates made per run by a test CA. SNI picks the certificate (exact name, then
// wildcard, else the first, or a refusal under --strict-sni); sticky sessions roam over HTTPS as
// over HTTP, with a Secure route cookie and X-Forwarded-Proto: https; a plain-HTTP request on
// the TLS port and a client that never finishes its handshake are cut and counted.
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, type Handler, type TestBackend } from '../helpers/backends.js';
import { adminToken, runToExit, startTether, type TetherProcess } from '../helpers/tether.js';
import { makeCertFactory } from '../helpers/certs.js';
import { makePki, type TestPki } from '../helpers/tls.js';

const NAMES = ['a.test', 'b.test', '*.wild.test'];

interface Curl {
  status: number;
  headers: Record<string, string[]>;
  body: string;
}

/** curl over HTTPS to `name` (resolved to 127.0.0.1), verifying against the test CA. */
function curl(pki: TestPki, name: string, port: number, path = '/', extra: string[] = []): Promise<Curl> {
  const args = ['-sS', '--max-time', '10', '--cacert', pki.caFile, '--resolve', `${name}:${port}:127.0.0.1`, '-D', '-', ...extra, `https://${name}:${port}${path}`];
  return new Promise((resolve, reject) => {
    execFile('curl', args, { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`curl ${args.join(' ')}: ${stderr || err.message}`));
      resolve(parseCurl(stdout));
    });
  });
}

function parseCurl(out: string): Curl {
  const split = out.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = out.slice(0, split).split('\r\n');
  const headers: Record<string, string[]> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    (headers[l.slice(0, i).toLowerCase()] ??= []).push(l.slice(i + 1).trim());
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, body: out.slice(split + 4) };
}

/** The subject CN of the certificate `openssl s_client` was served for `servername` (null: no SNI sent); '' when the handshake failed. */
async function servedCertificate(pki: TestPki, port: number, servername: string | null): Promise<{ cn: string; output: string }> {
  const { output } = await sClient(pki.caFile, port, servername === null ? ['-noservername'] : ['-servername', servername]);
  const m = /subject=.*?CN ?= ?([^\s,/]+)/.exec(output);
  return { cn: m ? m[1]! : '', output };
}

/** `openssl s_client` to 127.0.0.1:port, stdin closed at once: everything it printed. */
function sClient(caFile: string, port: number, extra: string[]): Promise<{ output: string }> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', caFile, ...extra];
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`openssl s_client did not finish: ${output}`));
    }, 15_000);
    child.on('close', () => {
      clearTimeout(timer);
      resolve({ output });
    });
    child.stdin.end();
  });
}

/** Connects to `port`, writes `bytes` (if any), and resolves with what came back once the server closed. */
function rawExchange(port: number, bytes: string | null): Promise<{ received: Buffer }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect(port, '127.0.0.1', () => {
      if (bytes !== null) s.write(bytes);
    });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('the server did not close the connection within 10 s'));
    }, 10_000);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks) });
    });
  });
}

describe('HTTPS termination', () => {
  let pki: TestPki;
  let app1: TestBackend;
  let app2: TestBackend;
  let t: TetherProcess;
  let https: number;
  let redirect: number;
  const certFile = (name: string) => join(pki.dir, `combined-${name}.pem`);

  beforeAll(async () => {
    pki = makePki(NAMES);
    for (const name of NAMES) {
      const { key, cert } = pki.leaf(name);
      writeFileSync(certFile(name), Buffer.concat([cert, key]), { mode: 0o600 });
    }
    app1 = await startBackend('app1');
    app2 = await startBackend('app2');
    t = await startTether([
      '--listen', 'https://127.0.0.1:0',
      '--listen', 'http://127.0.0.1:0,redirect=https',
      ...NAMES.flatMap((n) => ['--cert', certFile(n)]),
      '--tls-handshake-timeout', '400',
      '--hsts', '31536000',
      '--backend', `app1=127.0.0.1:${app1.port}`,
      '--backend', `app2=127.0.0.1:${app2.port}`,
    ]);
    https = t.ports[1]!;
    redirect = t.ports[2]!;
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await app1?.close();
    await app2?.close();
    pki?.cleanup();
  });

  it('SNI picks each certificate by exact name and by wildcard; an unknown name or none gets the first', async () => {
    expect((await servedCertificate(pki, https, 'a.test')).cn).toBe('a.test');
    expect((await servedCertificate(pki, https, 'b.test')).cn).toBe('b.test');
    expect((await servedCertificate(pki, https, 'x.wild.test')).cn).toBe('*.wild.test');
    // One label only: a.b.wild.test is not covered by *.wild.test.
    expect((await servedCertificate(pki, https, 'a.b.wild.test')).cn).toBe('a.test');
    expect((await servedCertificate(pki, https, 'unknown.test')).cn).toBe('a.test');
    expect((await servedCertificate(pki, https, null)).cn).toBe('a.test');
  });

  it('serves HTTP/1.1 over TLS to curl, verified against the CA, with a Secure route cookie, HSTS and X-Forwarded-Proto: https', async () => {
    const before = app1.received.length + app2.received.length;
    const r = await curl(pki, 'b.test', https, '/hello?x=1');
    expect(r.status).toBe(200);
    expect(['app1', 'app2']).toContain(r.body);
    const cookie = r.headers['set-cookie']!.find((c) => c.startsWith('TETHER='))!;
    expect(cookie).toMatch(/^TETHER=[A-Za-z0-9_-]+; Max-Age=86400; Path=\/; HttpOnly; Secure; SameSite=Lax$/);
    expect(r.headers['strict-transport-security']).toEqual(['max-age=31536000']);
    const received = [...app1.received, ...app2.received].slice(before);
    expect(received).toHaveLength(1);
    expect(received[0]!.url).toBe('/hello?x=1');
    expect(received[0]!.headers['x-forwarded-proto']).toBe('https');
    expect(received[0]!.headers['forwarded']).toMatch(/proto=https$/);
    expect(received[0]!.headers['host']).toBe(`b.test:${https}`);
  });

  it('the plain listener beside it sends neither Secure nor HSTS', async () => {
    const res = await fetch(t.url('/'), { signal: AbortSignal.timeout(5_000) });
    await res.text();
    expect(res.headers.get('strict-transport-security')).toBeNull();
    expect(res.headers.get('set-cookie')).not.toMatch(/Secure/);
  });

  it('a session roams over HTTPS: the token issued to 127.0.0.2 routes to its backend from .3 to .6', async () => {
    const first = await curl(pki, 'a.test', https, '/', ['--interface', '127.0.0.2']);
    const token = /^TETHER=([^;]+)/.exec(first.headers['set-cookie']!.find((c) => c.startsWith('TETHER='))!)![1]!;
    for (const ip of ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']) {
      for (let i = 0; i < 3; i++) {
        const r = await curl(pki, 'a.test', https, '/', ['--interface', ip, '-b', `TETHER=${token}`]);
        expect(r.body).toBe(first.body);
        // A valid, fresh token is not re-issued.
        expect(r.headers['set-cookie']).toBeUndefined();
      }
    }
  });

  it('redirect=https answers 308 to the same host, path and query on the HTTPS port', async () => {
    const r = await new Promise<Curl>((resolve, reject) => {
      execFile('curl', ['-sS', '--max-time', '10', '-D', '-', '-H', 'Host: a.test:8080', `http://127.0.0.1:${redirect}/some/path?q=1&r=2`], (err, out, stderr) => (err ? reject(new Error(stderr)) : resolve(parseCurl(out))));
    });
    expect(r.status).toBe(308);
    expect(r.headers['location']).toEqual([`https://a.test:${https}/some/path?q=1&r=2`]);
    expect(await t.metric('tether_https_redirects_total')).toBe(1);
  });

  it.each([1, 1448])('a ClientHello and request that arrive %i bytes at a time still pick the certificate and get their answer', async (segment) => {
    // A relay that hands the client's bytes to Tether `segment` at a time, one event-loop turn
    // apart, as a real network splits them; the answer comes back as it is.
    const relay = net.createServer((client) => {
      const upstream = net.connect(https, '127.0.0.1');
      upstream.setNoDelay(true);
      let queue = Buffer.alloc(0);
      let pumping = false;
      const pump = () => {
        if (queue.length === 0 || upstream.destroyed) {
          pumping = false;
          return;
        }
        pumping = true;
        upstream.write(queue.subarray(0, segment));
        queue = queue.subarray(segment);
        setImmediate(pump);
      };
      client.on('data', (d: Buffer) => {
        queue = Buffer.concat([queue, d]);
        if (!pumping) pump();
      });
      upstream.on('data', (d: Buffer) => client.write(d));
      upstream.on('close', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('error', () => {});
      client.on('error', () => {});
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    try {
      const port = (relay.address() as net.AddressInfo).port;
      const { cn, answer } = await new Promise<{ cn: string; answer: string }>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, servername: 'b.test', ca: pki.ca }, () => {
          const cn = String(s.getPeerCertificate().subject.CN);
          let answer = '';
          s.on('data', (d: Buffer) => {
            answer += d.toString('latin1');
            // The test backend answers chunked: its last chunk ends the response.
            if (answer.endsWith('\r\n0\r\n\r\n')) {
              s.destroy();
              resolve({ cn, answer });
            }
          });
          s.write('GET /seg HTTP/1.1\r\nHost: b.test\r\nConnection: keep-alive\r\n\r\n');
        });
        s.on('error', reject);
        setTimeout(() => reject(new Error('no answer within 10 s')), 10_000).unref();
      });
      expect(cn).toBe('b.test');
      expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n4\r\napp[12]\r\n0\r\n\r\n$/);
    } finally {
      relay.close();
    }
  });

  it('lists the certificates at /api/v1/certificates, exports their expiry, and warns of one within 14 days of it', async () => {
    const res = await fetch(`http://127.0.0.1:${t.adminPort}/api/v1/certificates`, { signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(200);
    const { certificates } = (await res.json()) as { certificates: { file: string; names: string[]; subject: string; issuer: string; expiresInSeconds: number; default: boolean; keyType: string }[] };
    expect(certificates.map((c) => ({ file: c.file, names: c.names, subject: c.subject, issuer: c.issuer, default: c.default, keyType: c.keyType }))).toEqual(
      NAMES.map((n, i) => ({ file: certFile(n), names: [n], subject: `CN=${n}`, issuer: 'CN=Tether test CA', default: i === 0, keyType: 'ec' })),
    );
    // The test CA issues for 2 days: less than a day's seconds short of that, and more than one day left.
    for (const name of NAMES) {
      const seconds = await t.metric(`tether_certificate_expiry_seconds{name="${name}"}`);
      expect(seconds).toBeGreaterThan(86_400);
      expect(seconds).toBeLessThanOrEqual(2 * 86_400);
    }
    for (const name of NAMES) {
      const warning = await t.waitForLog((e) => e.event === 'certificate_expiring' && e.file === certFile(name));
      expect(warning.msg).toMatch(/expires in 1 day\(s\): renew it and reload \(SIGHUP\)$/);
    }
  });

  it('closes a plain-HTTP request on the TLS port at once, without an HTTP answer, and counts it', async () => {
    const before = await t.metric(`tether_tls_handshakes_total{listener="127.0.0.1:${https}",outcome="plain_http"}`);
    const { received } = await rawExchange(https, 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
    expect(received.toString('latin1')).not.toContain('HTTP/1.1');
    expect(await t.metric(`tether_tls_handshakes_total{listener="127.0.0.1:${https}",outcome="plain_http"}`)).toBe(before + 1);
  });

  it('cuts a client that opens TCP and never finishes its handshake, at the deadline, and counts it', async () => {
    const before = await t.metric(`tether_tls_handshakes_total{listener="127.0.0.1:${https}",outcome="timeout"}`);
    const { received } = await rawExchange(https, null);
    expect(received.length).toBe(0);
    expect(await t.metric(`tether_tls_handshakes_total{listener="127.0.0.1:${https}",outcome="timeout"}`)).toBe(before + 1);
  });
});

describe('HTTPS with --strict-sni and --bind ip', () => {
  let pki: TestPki;
  let app1: TestBackend;
  let t: TetherProcess;
  let https: number;

  beforeAll(async () => {
    pki = makePki(['a.test']);
    const { key, cert } = pki.leaf('a.test');
    writeFileSync(join(pki.dir, 'a.pem'), Buffer.concat([cert, key]), { mode: 0o600 });
    app1 = await startBackend('app1');
    t = await startTether(['--listen', 'https://127.0.0.1:0', '--cert', join(pki.dir, 'a.pem'), '--strict-sni', '--bind', 'ip', '--backend', `app1=127.0.0.1:${app1.port}`]);
    https = t.ports[1]!;
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await app1?.close();
    pki?.cleanup();
  });

  it('refuses in the handshake a name it has no certificate for, and a client without SNI', async () => {
    expect((await servedCertificate(pki, https, 'a.test')).cn).toBe('a.test');
    const unknown = await servedCertificate(pki, https, 'other.test');
    expect(unknown.cn).toBe('');
    const none = await servedCertificate(pki, https, null);
    expect(none.cn).toBe('');
    expect(await t.metric(`tether_tls_handshakes_total{listener="127.0.0.1:${https}",outcome="unknown_name"}`)).toBe(2);
  });

  it('refuses over HTTPS a session replayed from another address (binding ip)', async () => {
    const first = await curl(pki, 'a.test', https, '/', ['--interface', '127.0.0.2']);
    expect(first.status).toBe(200);
    const token = /^TETHER=([^;]+)/.exec(first.headers['set-cookie']!.find((c) => c.startsWith('TETHER='))!)![1]!;
    expect((await curl(pki, 'a.test', https, '/', ['--interface', '127.0.0.2', '-b', `TETHER=${token}`])).status).toBe(200);
    const replay = await curl(pki, 'a.test', https, '/', ['--interface', '127.0.0.3', '-b', `TETHER=${token}`]);
    expect(replay.status).toBe(403);
    expect(JSON.parse(replay.body)).toEqual({ error: 'terminal_mismatch', message: 'this session was issued to another terminal' });
  });
});

describe('every sticky mode and revocation over HTTPS', () => {
  it('prefix, learn and header modes roam across addresses over HTTPS, and a revoked session is refused there', async () => {
    const pki = makePki(['a.test']);
    const { key, cert } = pki.leaf('a.test');
    writeFileSync(join(pki.dir, 'a.pem'), Buffer.concat([cert, key]), { mode: 0o600 });
    // The app sets JSESSIONID=sess-<name> when the request carries none.
    const handler: Handler = (req, res, name) => {
      req.resume();
      req.on('end', () => {
        const headers: Record<string, string> = { 'content-type': 'text/plain', 'x-backend': name };
        if (!/(^|;\s*)JSESSIONID=/.test(req.headers.cookie ?? '')) headers['set-cookie'] = `JSESSIONID=sess-${name}-${Math.random().toString(36).slice(2)}; Path=/; HttpOnly`;
        res.writeHead(200, headers);
        res.end(name);
      });
    };
    const apps = [await startBackend('app1', handler), await startBackend('app2', handler)];
    const admin = adminToken();
    let t: TetherProcess | null = null;
    try {
      const flags: string[] = [];
      for (const pool of ['prefix', 'learn', 'header']) for (const a of apps) flags.push('--backend', `${pool}/${a.name}=127.0.0.1:${a.port}`);
      t = await startTether([
        '--listen', 'https://127.0.0.1:0', '--cert', join(pki.dir, 'a.pem'), '--admin-token-file', admin.file,
        ...flags,
        '--sticky', 'prefix/prefix:JSESSIONID', '--sticky', 'learn/learn:JSESSIONID', '--sticky', 'header/header:X-Route',
        '--route', '/prefix=prefix', '--route', '/learn=learn', '--route', '/header=header',
      ]);
      const port = t.ports[1]!;
      const from = (ip: string, path: string, extra: string[] = []) => curl(pki, 'a.test', port, path, ['--interface', ip, ...extra]);
      const cookieOf = (r: Curl, name: string) => r.headers['set-cookie']?.map((c) => new RegExp(`^${name}=([^;]+)`).exec(c)?.[1]).find(Boolean);

      // prefix: the app's cookie carries the token in front of its value.
      const p0 = await from('127.0.0.2', '/prefix/a');
      const prefixed = cookieOf(p0, 'JSESSIONID')!;
      expect(prefixed).toMatch(/^[A-Za-z0-9_-]+~sess-app[12]-/);
      expect(p0.headers['set-cookie']!.find((c) => c.startsWith('JSESSIONID='))).toMatch(/; HttpOnly$/);
      for (const ip of ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']) expect((await from(ip, '/prefix/b', ['-b', `JSESSIONID=${prefixed}`])).body).toBe(p0.body);

      // learn: Tether learns the app's own session cookie and routes it from anywhere.
      const l0 = await from('127.0.0.2', '/learn/a');
      const session = cookieOf(l0, 'JSESSIONID')!;
      expect(session).toMatch(/^sess-app[12]-/);
      for (const ip of ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']) expect((await from(ip, '/learn/b', ['-b', `JSESSIONID=${session}`])).body).toBe(l0.body);

      // header: the token travels in X-Route.
      const h0 = await from('127.0.0.2', '/header/a');
      const routeToken = h0.headers['x-route']![0]!;
      for (const ip of ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']) expect((await from(ip, '/header/b', ['-H', `X-Route: ${routeToken}`])).body).toBe(h0.body);

      // Revocation: the learned session, refused over HTTPS from then on.
      const revoked = await fetch(`http://127.0.0.1:${t.adminPort}/api/v1/sessions/revoke`, {
        method: 'POST', headers: { 'content-type': 'application/json', authorization: admin.header }, body: JSON.stringify({ pool: 'learn', session }), signal: AbortSignal.timeout(5_000),
      });
      expect(revoked.status).toBe(200);
      const after = await from('127.0.0.3', '/learn/c', ['-b', `JSESSIONID=${session}`]);
      expect(after.status).toBe(403);
      expect(JSON.parse(after.body)).toEqual({ error: 'revoked', message: 'this session has been revoked' });
    } finally {
      await t?.stop();
      for (const a of apps) await a.close();
      pki.cleanup();
    }
  }, 60_000);
});

describe('HTTPS with an ECDSA and an RSA certificate', () => {
  it('serves each name its own certificate and chain: no default certificate or intermediate leaks into another name', async () => {
    const factory = makeCertFactory();
    const app1 = await startBackend('app1');
    let t: TetherProcess | null = null;
    try {
      // The default (first) certificate: ECDSA, issued by the root directly (a chain of one).
      const ec = factory.leaf({ san: ['DNS:a.test'], key: 'ec', issuer: 'root' });
      // An RSA certificate through the intermediate (a chain of two).
      const rsa = factory.leaf({ san: ['DNS:r.test'], key: 'rsa' });
      writeFileSync(join(factory.dir, 'a.pem'), ec.chain + ec.key, { mode: 0o600 });
      writeFileSync(join(factory.dir, 'r.pem'), rsa.chain + rsa.key, { mode: 0o600 });
      writeFileSync(join(factory.dir, 'root.pem'), factory.root);
      t = await startTether(['--listen', 'https://127.0.0.1:0', '--cert', join(factory.dir, 'a.pem'), '--cert', join(factory.dir, 'r.pem'), '--backend', `app1=127.0.0.1:${app1.port}`]);
      const port = t.ports[1]!;
      const chainOf = async (servername: string) => {
        const { output } = await sClient(join(factory.dir, 'root.pem'), port, ['-servername', servername, '-showcerts']);
        return { subjects: [...output.matchAll(/^ *\d+ s:(.*)$/gm)].map((m) => m[1]!.trim()), verified: /Verify return code: 0 \(ok\)/.test(output) };
      };
      expect(await chainOf('r.test')).toEqual({ subjects: ['CN = r.test', 'CN = Tether test intermediate'], verified: true });
      expect(await chainOf('a.test')).toEqual({ subjects: ['CN = a.test'], verified: true });
    } finally {
      await t?.stop();
      await app1.close();
      factory.cleanup();
    }
  }, 60_000);
});

describe('HTTPS session resumption', () => {
  it('a session resumes on whichever worker the reconnect lands (shared ticket keys), in TLS 1.3 and 1.2; the access log names version and cipher', async () => {
    const pki = makePki(['a.test']);
    const app1 = await startBackend('app1');
    const log = join(pki.dir, 'access.log');
    let t: TetherProcess | null = null;
    try {
      const { key, cert } = pki.leaf('a.test');
      writeFileSync(join(pki.dir, 'a.pem'), Buffer.concat([cert, key]), { mode: 0o600 });
      t = await startTether(['--listen', 'https://127.0.0.1:0', '--cert', join(pki.dir, 'a.pem'), '--access-log', log, '--backend', `app1=127.0.0.1:${app1.port}`], { workers: 2 });
      const port = t.ports[1]!;
      /** One GET over a new TLS connection (resuming `session` if given): whether it resumed, and the session to resume next. */
      const visit = (path: string, version: tls.SecureVersion, session?: Buffer) =>
        new Promise<{ reused: boolean; session: Buffer }>((resolve, reject) => {
          let next: Buffer | undefined;
          let answered = false;
          let reused = false;
          const s = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca: pki.ca, session, minVersion: version, maxVersion: version }, () => {
            reused = s.isSessionReused();
            s.write(`GET ${path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n`);
          });
          // TLS 1.3 tickets arrive after the handshake; TLS 1.2's with it.
          s.on('session', (b: Buffer) => (next = b));
          s.on('data', (d: Buffer) => (answered ||= d.toString('latin1').startsWith('HTTP/1.1 200')));
          s.on('error', reject);
          // A resumed connection may bring no new ticket: the one it used serves again.
          const ticket = () => next ?? session;
          s.on('close', () => {
            const t = ticket();
            if (answered && t) resolve({ reused, session: t });
            else reject(new Error(`no answer or no ticket for ${path}`));
          });
          s.setTimeout(10_000, () => s.destroy(new Error('timed out')));
        });
      for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
        let { session } = await visit(`/${version}/first`, version);
        for (let i = 0; i < 16; i++) {
          const r = await visit(`/${version}/again/${i}`, version, session);
          expect(r.reused).toBe(true);
          session = r.session;
        }
      }
      expect(await t.stop()).toBe(0);
      const lines = readFileSync(log, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { path: string; worker: number; tls: string; cipher: string });
      const resumed = lines.filter((l) => l.path.includes('/again/'));
      expect(resumed).toHaveLength(32);
      // 32 resumed connections spread by the kernel over two workers: both took some (a chance
      // of 2 in 2^32 that one took them all), so tickets one worker issued, the other accepted.
      expect(new Set(resumed.map((l) => l.worker))).toEqual(new Set([0, 1]));
      expect(new Set(lines.map((l) => `${l.path.split('/')[1]} ${l.tls}`))).toEqual(new Set(['TLSv1.3 TLSv1.3', 'TLSv1.2 TLSv1.2']));
      expect(lines.every((l) => /^(TLS_AES_256_GCM_SHA384|ECDHE-ECDSA-AES128-GCM-SHA256)$/.test(l.cipher))).toBe(true);
    } finally {
      await t?.stop();
      await app1.close();
      pki.cleanup();
    }
  }, 60_000);
});

describe('HTTPS certificate rotation', () => {
  it('10 rotations by SIGHUP under load: zero failed requests, new handshakes get the new certificate, an open connection keeps working', async () => {
    const factory = makeCertFactory();
    const app1 = await startBackend('app1');
    let t: TetherProcess | null = null;
    const certPath = join(factory.dir, 'site.pem');
    try {
      const versions = Array.from({ length: 3 }, () => factory.leaf({ san: ['DNS:site.test'] }));
      const fingerprint = (i: number) => new X509Certificate(versions[i]!.cert).fingerprint256;
      const install = (i: number) => {
        // As certbot and friends do: the new file is written aside and renamed over the old.
        writeFileSync(`${certPath}.new`, versions[i]!.chain + versions[i]!.key, { mode: 0o600 });
        renameSync(`${certPath}.new`, certPath);
      };
      install(0);
      t = await startTether(['--listen', 'https://127.0.0.1:0', '--cert', certPath, '--backend', `app1=127.0.0.1:${app1.port}`]);
      const port = t.ports[1]!;
      const ca = factory.root;
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      const get = (opts: https.RequestOptions) =>
        new Promise<{ status: number; fingerprint: string }>((resolve, reject) => {
          const req = https.request({ host: '127.0.0.1', port, servername: 'site.test', ca, path: '/', timeout: 10_000, ...opts }, (res) => {
            const fp = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode!, fingerprint: fp }));
          });
          req.on('error', reject);
          req.on('timeout', () => req.destroy(new Error('timed out')));
          req.end();
        });
      // One keep-alive connection made before any rotation.
      const kept = await get({ agent });
      expect(kept.fingerprint).toBe(fingerprint(0));
      // Load: 4 loops of fresh connections (a handshake each) until the rotations are done.
      let rotating = true;
      const statuses: number[] = [];
      const failures: string[] = [];
      const loops = Array.from({ length: 4 }, async () => {
        for (let n = 0; rotating && n < 5_000; n++) {
          try {
            statuses.push((await get({ agent: false })).status);
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      });
      for (let r = 1; r <= 10; r++) {
        const v = r % versions.length;
        install(v);
        const reloads = t.lines.filter((l) => l.includes('"config_reloaded"')).length;
        process.kill(t.pid, 'SIGHUP');
        await t.waitForLog(() => t!.lines.filter((l) => l.includes('"config_reloaded"')).length > reloads, 10_000);
        // Every worker confirmed before the reload was logged: the next handshake gets the new one.
        expect((await get({ agent: false })).fingerprint).toBe(fingerprint(v));
      }
      rotating = false;
      await Promise.all(loops);
      expect(failures).toEqual([]);
      expect(statuses.length).toBeGreaterThan(10);
      expect(new Set(statuses)).toEqual(new Set([200]));
      // The connection opened before the rotations still answers, on the certificate it began with.
      const again = await get({ agent });
      expect(again).toEqual({ status: 200, fingerprint: fingerprint(0) });
      agent.destroy();
    } finally {
      await t?.stop();
      await app1.close();
      factory.cleanup();
    }
  }, 120_000);

  it('a reload with a broken certificate is refused whole, naming the file; the running certificates stay', async () => {
    const factory = makeCertFactory();
    const app1 = await startBackend('app1');
    let t: TetherProcess | null = null;
    const certPath = join(factory.dir, 'site.pem');
    try {
      const leaf = factory.leaf({ san: ['DNS:site.test'] });
      writeFileSync(certPath, leaf.chain + leaf.key, { mode: 0o600 });
      t = await startTether(['--listen', 'https://127.0.0.1:0', '--cert', certPath, '--backend', `app1=127.0.0.1:${app1.port}`]);
      writeFileSync(certPath, leaf.chain, { mode: 0o600 }); // the key lost
      process.kill(t.pid, 'SIGHUP');
      const refused = await t.waitForLog((e) => e.event === 'reload_refused');
      expect(JSON.stringify(refused.problems)).toContain(certPath);
      expect(JSON.stringify(refused.problems)).toContain('no private key');
      writeFileSync(join(factory.dir, 'root.pem'), factory.root);
      const { output } = await sClient(join(factory.dir, 'root.pem'), t.ports[1]!, ['-servername', 'site.test']);
      expect(output).toMatch(/Verify return code: 0 \(ok\)/);
    } finally {
      await t?.stop();
      await app1.close();
      factory.cleanup();
    }
  }, 60_000);
});

describe('HTTPS start-up refusals', () => {
  it('names the file and the problem: a key that does not match its certificate, and an https listener without --cert', async () => {
    const pki = makePki(['a.test', 'b.test']);
    try {
      const bad = join(pki.dir, 'mismatch.pem');
      writeFileSync(bad, Buffer.concat([pki.leaf('a.test').cert, pki.leaf('b.test').key]), { mode: 0o600 });
      const r = await runToExit(['--listen', 'https://127.0.0.1:0', '--cert', bad, '--admin', 'off', '--no-demo', '--backend', 'app1=127.0.0.1:9']);
      expect(r.code).not.toBe(0);
      expect(r.out).toContain(bad);
      expect(r.out).toMatch(/does not match/);
      const none = await runToExit(['--listen', 'https://127.0.0.1:0', '--admin', 'off', '--backend', 'app1=127.0.0.1:9']);
      expect(none.code).not.toBe(0);
      expect(none.out).toContain('an https:// listener needs a certificate');
    } finally {
      pki.cleanup();
    }
  });
});
