// Graceful shutdown under load: SIGTERM closes the listeners (new connections are refused from
// then on, not before), every request in flight completes, then the process exits 0; a second
// SIGTERM exits at once; --drain-timeout bounds the wait.
import type http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startBackend } from '../helpers/backends.js';
import { request, type Reply } from '../helpers/client.js';
import { pollUntil } from '../helpers/sticky.js';
import { startTether } from '../helpers/tether.js';

/** A backend that holds every response until the test releases it. */
async function holdingBackend() {
  const held: http.ServerResponse[] = [];
  const b = await startBackend('app1', (req, res) => {
    req.resume();
    held.push(res);
  });
  return {
    b,
    held,
    release: () => {
      for (const res of held.splice(0)) res.writeHead(200, { 'content-type': 'text/plain' }).end('done after drain');
    },
  };
}

/**
 * 'reset': the connection landed in the accept queue of a worker's listener as it closed (with
 * SO_REUSEPORT each worker has its own), and the kernel reset it. That happens only in the
 * moment the listeners close, so a caller waiting for 'refused' polls on.
 */
function tryConnect(port: number): Promise<'connected' | 'refused' | 'reset'> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNREFUSED' ? resolve('refused') : err.code === 'ECONNRESET' ? resolve('reset') : reject(err)));
  });
}

describe('graceful shutdown', () => {
  it('under load: in-flight requests complete, new connections are refused once the listener closes, exit 0', async () => {
    const { b, held, release } = await holdingBackend();
    const t = await startTether(['--backend', `app1=127.0.0.1:${b.port}`, '--drain-timeout', '20000'], { workers: 2 });
    try {
      const inFlight: Promise<Reply>[] = [];
      for (let i = 0; i < 20; i++) inFlight.push(request({ port: t.port, path: `/r/${i}`, timeoutMs: 30_000 }));
      await pollUntil('20 requests at the backend', async () => (held.length === 20 ? true : undefined));
      expect(await tryConnect(t.port)).toBe('connected');
      t.proc.kill('SIGTERM');
      // The listeners close; the process keeps running for the requests in flight.
      await pollUntil('the listener to close', async () => ((await tryConnect(t.port)) === 'refused' ? true : undefined));
      expect(t.proc.exitCode).toBeNull();
      release();
      const replies = await Promise.all(inFlight);
      for (const r of replies) expect([r.status, r.body]).toEqual([200, 'done after drain']);
      expect(await t.exited).toBe(0);
    } finally {
      await t.stop();
      await b.close();
    }
  });

  it('a second SIGTERM exits at once, without waiting for the drain', async () => {
    const { b, held, release } = await holdingBackend();
    const t = await startTether(['--backend', `app1=127.0.0.1:${b.port}`, '--drain-timeout', '60000'], { workers: 1 });
    try {
      const pending = request({ port: t.port, timeoutMs: 30_000 }).catch((err: Error) => err);
      await pollUntil('the request at the backend', async () => (held.length === 1 ? true : undefined));
      t.proc.kill('SIGTERM');
      await t.waitForLog((e) => e.msg === 'stopping: draining in-flight requests');
      t.proc.kill('SIGTERM');
      expect(await t.exited).toBe(1);
      expect(await pending).toBeInstanceOf(Error);
    } finally {
      release();
      await t.stop();
      await b.close();
    }
  });

  it('--drain-timeout bounds the wait: a request still running then is cut and the process exits 0', async () => {
    const { b, held, release } = await holdingBackend();
    const t = await startTether(['--backend', `app1=127.0.0.1:${b.port}`, '--drain-timeout', '300'], { workers: 1 });
    try {
      const pending = request({ port: t.port, timeoutMs: 30_000 }).catch((err: Error) => err);
      await pollUntil('the request at the backend', async () => (held.length === 1 ? true : undefined));
      t.proc.kill('SIGTERM');
      expect(await t.exited).toBe(0);
      expect(await pending).toBeInstanceOf(Error);
    } finally {
      release();
      await t.stop();
      await b.close();
    }
  });
});
