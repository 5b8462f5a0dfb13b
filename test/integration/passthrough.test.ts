// TLS passthrough end to end: real TLS backends with certificates made for this run, real
// clients (curl, openssl s_client, node:tls) verifying the backend's certificate through the
// passthrough, and the ways a client can misbehave: garbage, a ClientHello that never
// finishes, one over the cap, a name nobody serves. Tether never holds a key here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { captureClientHello, makePki, startTlsBackend, type TestPki, type TlsBackend } from '../helpers/tls.js';
import { pollMetric } from '../helpers/sticky.js';

let pki: TestPki;
let a: TlsBackend;
let b: TlsBackend;
let echo: { port: number; got: { header: Buffer; body: Buffer }[]; close(): Promise<void> };
let t: TetherProcess;
let port: number;
let deadPort: number;

/** Runs a command with stdin, resolving { code, stdout, stderr } (killed after 15 s). */
function run(cmd: string, args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // The child may exit before reading its input (openssl s_client does when the connection
    // is refused): the write then fails with EPIPE, which is its exit code's business, not an
    // uncaught error that fails the whole test run.
    p.stdin.on('error', () => undefined);
    p.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: `${stderr}${err.message}` });
    });
    p.stdin.end(input);
  });
}

/** A raw backend for PROXY v2 + relay checks: reads the 28-byte v4 header, then everything until FIN; answers sha256 of the rest, then FIN. */
async function startEchoBackend(): Promise<typeof echo> {
  const got: { header: Buffer; body: Buffer }[] = [];
  const open = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => {});
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => {
      const all = Buffer.concat(chunks);
      const entry = { header: all.subarray(0, 28), body: all.subarray(28) };
      got.push(entry);
      s.end(createHash('sha256').update(entry.body).digest('hex'));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    got,
    close: () => new Promise<void>((r) => {
      for (const s of open) s.destroy();
      server.close(() => r());
    }),
  };
}

/** Resolves once the server closes the connection: { data, closedMs }. Destroys it after 10 s. */
function untilClosed(s: net.Socket): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closed: false });
    }, 10_000);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true });
    });
  });
}

function connectRaw(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

beforeAll(async () => {
  pki = makePki(['a.test', 'x.b.test']);
  a = await startTlsBackend(pki, 'a.test');
  b = await startTlsBackend(pki, 'x.b.test');
  echo = await startEchoBackend();
  const dead = net.createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  deadPort = (dead.address() as AddressInfo).port;
  await new Promise<void>((r) => dead.close(() => r()));
  t = await startTether(
    [
      '--backend', `a/a1=127.0.0.1:${a.port}`, '--sticky', 'a/none',
      '--backend', `b/b1=127.0.0.1:${b.port}`, '--sticky', 'b/none',
      '--backend', `echo/e1=127.0.0.1:${echo.port}`, '--sticky', 'echo/none',
      '--backend', `dead/d1=127.0.0.1:${deadPort}`, '--sticky', 'dead/none',
      '--passthrough', '127.0.0.1:0',
      '--sni', 'a.test=a',
      '--sni', '*.b.test=b',
      '--sni', 'echo.test=echo,proxy-protocol',
      '--sni', 'dead.test=dead',
      '--client-hello-timeout', '600',
      '--connect-timeout', '1000',
    ],
    { workers: 2 },
  );
  port = t.passthroughPorts[0]!;
}, 60_000);

afterAll(async () => {
  await t?.stop();
  await Promise.all([a?.close(), b?.close(), echo?.close()]);
  pki?.cleanup();
});

describe('TLS passthrough', () => {
  it('curl reaches the backend named by SNI (exact and wildcard) and verifies its certificate', async () => {
    const one = await run('curl', ['-sS', '--max-time', '10', '--cacert', pki.caFile, '--resolve', `a.test:${port}:127.0.0.1`, `https://a.test:${port}/`]);
    expect(one.stderr).toBe('');
    expect(one.stdout).toBe('a.test');
    const two = await run('curl', ['-sS', '--max-time', '10', '--cacert', pki.caFile, '--resolve', `x.b.test:${port}:127.0.0.1`, `https://x.b.test:${port}/`]);
    expect(two.stdout).toBe('x.b.test');
  });

  it('openssl s_client -servername completes a verified handshake with the right backend', async () => {
    const r = await run(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'a.test', '-CAfile', pki.caFile, '-verify_return_error', '-verify_hostname', 'a.test', '-quiet'],
      'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n',
    );
    expect(r.stdout).toContain('\r\n\r\na.test');
    expect(r.stderr).toMatch(/verify return:1/);
    expect(r.code).toBe(0);
  });

  it('streams a 32 MiB response through unchanged', async () => {
    const n = 32 * 1024 * 1024;
    const r = await run('curl', ['-sS', '--max-time', '60', '--cacert', pki.caFile, '--resolve', `a.test:${port}:127.0.0.1`, '-o', '/dev/null', '-w', '%{size_download} %{http_code}', `https://a.test:${port}/bytes/${n}`]);
    expect(r.stdout).toBe(`${n} 200`);
  });

  it('spreads connections over the worker threads (one SO_REUSEPORT socket each)', async () => {
    for (let i = 0; i < 40; i++) {
      await new Promise<void>((resolve, reject) => {
        const c = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca: pki.ca }, () => {
          c.end();
          resolve();
        });
        c.on('error', reject);
      });
    }
    const w0 = await t.metric('tether_passthrough_connections_total{worker="0"}');
    const w1 = await t.metric('tether_passthrough_connections_total{worker="1"}');
    expect(w0 + w1).toBeGreaterThanOrEqual(40);
    expect(w0, 'worker 0 accepted some').toBeGreaterThan(0);
    expect(w1, 'worker 1 accepted some').toBeGreaterThan(0);
  });

  it('relays bytes after the ClientHello, half-close both ways, and a PROXY v2 header naming the client', async () => {
    const hello = await captureClientHello('echo.test');
    const payload = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) & 0xff;
    const s = await connectRaw();
    const localPort = s.localPort;
    const closed = untilClosed(s);
    // The ClientHello in three writes, the payload right behind it, then FIN: the backend
    // answers only after it saw our FIN, so the answer proves the half-close was relayed.
    s.write(hello.subarray(0, 3));
    s.write(hello.subarray(3, 40));
    s.write(Buffer.concat([hello.subarray(40), payload]));
    s.end();
    const { data } = await closed;
    const expected = createHash('sha256').update(Buffer.concat([hello, payload])).digest('hex');
    expect(data.toString()).toBe(expected);
    const header = echo.got.at(-1)!.header;
    expect(header.subarray(0, 12).toString('latin1')).toBe('\r\n\r\n\0\r\nQUIT\n');
    expect(header[12]).toBe(0x21);
    expect(header[13]).toBe(0x11);
    expect([...header.subarray(16, 20)].join('.')).toBe('127.0.0.1');
    expect(header.readUInt16BE(24)).toBe(localPort);
    expect(header.readUInt16BE(26)).toBe(port);
    // Per-route counters: the relay's bytes are counted once the connection has closed.
    // Polled: the test client can see its close a moment before the worker handles our FIN.
    const route = '{sni="echo.test",pool="echo"}';
    expect(await t.metric(`tether_passthrough_route_connections_total${route}`)).toBeGreaterThanOrEqual(1);
    await pollMetric(t, `tether_passthrough_route_bytes_in_total${route}`, (v) => v >= hello.length + payload.length);
    await pollMetric(t, `tether_passthrough_route_bytes_out_total${route}`, (v) => v >= 64);
  });

  it('closes a client that sends no TLS, at once, and counts it', async () => {
    const before = await t.metric('tether_passthrough_outcomes_total{outcome="not_tls"}');
    const s = await connectRaw();
    const closed = untilClosed(s);
    s.write('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
    const r = await closed;
    expect(r.closed).toBe(true);
    expect(r.data.length).toBe(0);
    expect(await t.metric('tether_passthrough_outcomes_total{outcome="not_tls"}')).toBe(before + 1);
  });

  it('cuts a client that stops mid-ClientHello at the deadline, while others are served', async () => {
    const hello = await captureClientHello('a.test');
    const before = await t.metric('tether_passthrough_outcomes_total{outcome="client_hello_timeout"}');
    const s = await connectRaw();
    const closed = untilClosed(s);
    s.write(hello.subarray(0, 20));
    // Meanwhile another client is unaffected.
    const other = await run('curl', ['-sS', '--max-time', '10', '--cacert', pki.caFile, '--resolve', `a.test:${port}:127.0.0.1`, `https://a.test:${port}/`]);
    expect(other.stdout).toBe('a.test');
    const r = await closed;
    expect(r.closed, 'closed by the deadline, not left hanging').toBe(true);
    expect(await t.metric('tether_passthrough_outcomes_total{outcome="client_hello_timeout"}')).toBe(before + 1);
  });

  it('refuses a ClientHello larger than the cap as soon as its length says so', async () => {
    const before = await t.metric('tether_passthrough_outcomes_total{outcome="too_large"}');
    const s = await connectRaw();
    const closed = untilClosed(s);
    // A handshake record announcing a 60,000-byte ClientHello (cap: 16 KiB).
    const record = Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xea, 0x60, 0x03, 0x03]);
    s.write(record);
    const r = await closed;
    expect(r.closed).toBe(true);
    expect(await t.metric('tether_passthrough_outcomes_total{outcome="too_large"}')).toBe(before + 1);
  });

  it('answers a name nobody serves with an unrecognized_name alert and closes', async () => {
    const before = await t.metric('tether_passthrough_outcomes_total{outcome="no_route"}');
    const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'nobody.test', '-CAfile', pki.caFile, '-quiet'], '');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unrecognized name/i);
    expect(await t.metric('tether_passthrough_outcomes_total{outcome="no_route"}')).toBe(before + 1);
  });

  it('closes the client (internal_error alert) when the route’s backend refuses, without hanging', async () => {
    const before = await t.metric('tether_passthrough_outcomes_total{outcome="upstream_connect_error"}');
    const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'dead.test', '-quiet'], '');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/internal error/i);
    expect(await t.metric('tether_passthrough_outcomes_total{outcome="upstream_connect_error"}')).toBe(before + 1);
  });
});
