// Limits of the client-facing uWebSockets.js build, pinned so an upgrade that lifts them (or a
// change that turns them into hangs or half-forwarded requests) is noticed: each is refused
// cleanly, quickly, and nothing reaches the backend.
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';

let backend: TestBackend;
let t: TetherProcess;

beforeAll(async () => {
  backend = await startBackend('b');
  t = await startTether(['--backend', `b=127.0.0.1:${backend.port}`, '--sticky', 'none'], { workers: 1 });
});
afterAll(async () => {
  await t?.stop();
  await backend?.close();
});

/** Sends raw bytes; resolves with what came back once the balancer closes the connection (deadline 5 s). */
function raw(bytes: string): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(t.port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text, closed: false });
    }, 5_000);
    s.on('data', (d) => (text += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
    s.write(bytes, 'latin1');
  });
}

it('a Content-Length of 10 or more digits (>= 1e9 bytes) is refused by closing the connection; nothing is forwarded', async () => {
  const before = backend.received.length;
  const r = await raw('POST /huge HTTP/1.1\r\nHost: h\r\nContent-Length: 1073741824\r\n\r\nsome body bytes');
  expect(r.closed, 'closed, not left hanging').toBe(true);
  expect(r.text).toBe('');
  // The largest accepted length still works, as a barrier that the refusal forwarded nothing.
  const ok = await raw('POST /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi');
  expect(ok.text).toMatch(/^HTTP\/1\.1 200 /);
  expect(backend.received.slice(before).map((x) => x.url)).toEqual(['/ok']);
});

it('a request head over 16 KiB gets 431 from uWS and is not forwarded', async () => {
  const before = backend.received.length;
  const r = await request({ port: t.port, path: '/big-head', headers: { 'x-big': 'q'.repeat(17 * 1024) } }).catch((err: Error) => err);
  if (r instanceof Error) expect(r.message).toMatch(/socket hang up|ECONNRESET/);
  else expect(r.status).toBe(431);
  const ok = await request({ port: t.port, path: '/after' });
  expect(ok.status).toBe(200);
  expect(backend.received.slice(before).map((x) => x.url)).toEqual(['/after']);
});

it('an idle keep-alive client connection is closed by uWS after its fixed idle timeout (about 10 s, not configurable)', async () => {
  // uWS closes an HTTP connection with no request in flight after HTTP_IDLE_TIMEOUT_S (10 s,
  // a compile-time constant of this build). Pinned so an upgrade that changes it is noticed;
  // the README says what a client or a front proxy should set its own idle timeout to.
  const s = net.connect(t.port, '127.0.0.1');
  s.on('error', () => {});
  let text = '';
  s.on('data', (d) => (text += d.toString('latin1')));
  const closed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 30_000);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  s.write('GET /idle HTTP/1.1\r\nHost: h\r\n\r\n', 'latin1');
  const serverClosed = await closed;
  s.destroy();
  expect(text, 'the request was answered first').toMatch(/^HTTP\/1\.1 200 /);
  expect(serverClosed, 'closed by the server within 30 s of idleness').toBe(true);
}, 40_000);
