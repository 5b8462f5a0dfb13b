// Request smuggling (CL.TE, TE.CL, TE.TE, duplicate framing fields, requests hidden in bodies):
// raw bytes to the balancer, and for every case exactly what the backend saw. One worker, so a
// canary request sent afterwards is a barrier: once it is answered, anything the attack made the
// balancer forward has reached the backend already.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { startBackend, type TestBackend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';

let backend: TestBackend;
let t: TetherProcess;
/** Body of every request the backend finished reading, keyed by its index in backend.received. */
const bodies: string[] = [];
/** Requests whose body ended early (the upstream connection went away). */
let bodiesCut = 0;
/** Called as each request reaches the backend (its head parsed), before its body is read. */
let onArrival: (() => void) | null = null;

beforeAll(async () => {
  backend = await startBackend('b', (req, res) => {
    const index = backend.received.length - 1;
    onArrival?.();
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      bodies[index] = body;
      res.end('ok');
    });
    req.on('aborted', () => bodiesCut++);
  });
  t = await startTether(['--backend', `b=127.0.0.1:${backend.port}`, '--sticky', 'none'], { workers: 1 });
});
afterAll(async () => {
  await t?.stop();
  await backend?.close();
});
beforeEach(() => {
  backend.received.length = 0;
  bodies.length = 0;
  bodiesCut = 0;
  onArrival = null;
});

interface RawResult {
  text: string;
  closed: boolean;
}

/**
 * Writes `bytes` on a fresh connection; resolves when the balancer closes it, when one complete
 * Content-Length response has arrived, or after `ms` (then `closed` is false).
 */
function raw(bytes: string, ms = 5_000): Promise<RawResult> {
  return new Promise((resolve) => {
    const s = net.connect(t.port, '127.0.0.1');
    let text = '';
    let settled = false;
    const settle = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closed });
    };
    const timer = setTimeout(() => settle(false), ms);
    s.on('data', (d) => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const m = end < 0 ? null : /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
      if (m && text.length - end - 4 >= Number(m[1])) settle(false);
    });
    s.on('error', () => {});
    s.on('close', () => settle(true));
    s.write(bytes, 'latin1');
  });
}

/** `p`, or a failure naming `what` if it has not settled within `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Answered canary: everything forwarded before it has been received by the backend. */
async function barrier(): Promise<void> {
  const r = await request({ port: t.port, path: '/canary' });
  expect(r.status).toBe(200);
}

function seenUrls(): string[] {
  return backend.received.map((r) => `${r.method} ${r.url}`);
}

const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n';

/** Refused (400 or closed without an answer) and nothing at all forwarded. */
async function expectRefusedAndNothingForwarded(r: RawResult, why?: RegExp): Promise<void> {
  if (r.text) {
    expect(r.text).toMatch(/^HTTP\/1\.1 400 /);
    if (why) expect(r.text).toMatch(why);
  } else {
    expect(r.closed, 'no answer, so the connection must be closed').toBe(true);
  }
  await barrier();
  expect(seenUrls()).toEqual(['GET /canary']);
}

describe('request smuggling', () => {
  // Alone on its connection, each refused request gets a 400 naming why, and Connection: close.
  for (const [name, bytes, why] of [
    ['two different Content-Length fields', 'POST /lone HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello', /more than one Content-Length/],
    ['Transfer-Encoding: gzip, chunked', 'POST /lone HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', /unsupported Transfer-Encoding/],
    ['duplicate Host', 'GET /lone HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n', /exactly one Host/],
  ] as const) {
    it(`${name}, alone on its connection: 400 naming the reason, connection closed, nothing forwarded`, async () => {
      const r = await raw(bytes);
      expect(r.text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
      expect(r.text).toMatch(/\r\nConnection: close\r\n/i);
      expect(r.text).toMatch(why);
      await barrier();
      expect(seenUrls()).toEqual(['GET /canary']);
    });
  }

  it('CL.TE: Transfer-Encoding with Content-Length is refused, nothing forwarded', async () => {
    const body = `0\r\n\r\n${SMUGGLED}`;
    const r = await raw(`POST /te-cl HTTP/1.1\r\nHost: h\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body}`);
    await expectRefusedAndNothingForwarded(r);
  });

  it('TE.CL: Content-Length after Transfer-Encoding is refused, nothing forwarded', async () => {
    const r = await raw(`POST /cl-te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${(SMUGGLED.length).toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`);
    await expectRefusedAndNothingForwarded(r);
  });

  it('two different Content-Length fields: 400, nothing forwarded', async () => {
    const r = await raw(`POST /two-cl HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: ${5 + SMUGGLED.length}\r\n\r\nhello${SMUGGLED}`);
    // A request pipelined behind a refused one dies with its connection, never dispatched.
    await expectRefusedAndNothingForwarded(r);
  });

  it('a Content-Length list ("5, 40"): refused, nothing forwarded', async () => {
    const r = await raw(`POST /cl-list HTTP/1.1\r\nHost: h\r\nContent-Length: 5, ${5 + SMUGGLED.length}\r\n\r\nhello${SMUGGLED}`);
    await expectRefusedAndNothingForwarded(r);
  });

  for (const te of ['gzip, chunked', 'chunked, identity', 'xchunked', 'chunked;q=1']) {
    it(`Transfer-Encoding: ${te} → 400, nothing forwarded`, async () => {
      const r = await raw(`POST /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ${te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`);
      await expectRefusedAndNothingForwarded(r, /Transfer-Encoding/);
    });
  }

  it('Transfer-Encoding split over two fields (chunked + identity) → 400, nothing forwarded', async () => {
    const r = await raw(`POST /te2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`);
    await expectRefusedAndNothingForwarded(r);
  });

  it('duplicate Host → 400, nothing forwarded', async () => {
    const r = await raw(`GET /dup-host HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n${SMUGGLED}`);
    await expectRefusedAndNothingForwarded(r);
  });

  it('a request inside a Content-Length body stays body', async () => {
    const body = `x=1&${SMUGGLED}`;
    const r = await raw(`POST /cl-hidden HTTP/1.1\r\nHost: h\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
    await barrier();
    expect(seenUrls()).toEqual(['POST /cl-hidden', 'GET /canary']);
    expect(bodies[0]).toBe(body);
  });

  it('a last-chunk and request inside chunk data stay data (the balancer re-frames them)', async () => {
    const data = `0\r\n\r\n${SMUGGLED}`;
    const r = await raw(`POST /chunk-hidden HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n${data.length.toString(16)}\r\n${data}\r\n0\r\n\r\n`);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
    await barrier();
    expect(seenUrls()).toEqual(['POST /chunk-hidden', 'GET /canary']);
    expect(bodies[0]).toBe(data);
  });

  for (const [name, head, rest] of [
    ['a Content-Length longer than the bytes sent', `POST /cl-long HTTP/1.1\r\nHost: h\r\nContent-Length: 500\r\n\r\n`, SMUGGLED],
    ['a chunk size longer than the data sent', `POST /chunk-long HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n`, `${SMUGGLED}0\r\n\r\n`],
  ] as const) {
    it(`a request hidden behind ${name} never reaches the backend as a request`, async () => {
      const post = head.slice(0, head.indexOf(' HTTP/1.1'));
      const arrived = new Promise<void>((resolve) => (onArrival = resolve));
      const s = net.connect(t.port, '127.0.0.1');
      s.on('error', () => {});
      await new Promise<void>((r) => s.once('connect', () => r()));
      s.write(head + rest, 'latin1');
      // The partial POST reaches the backend; its body holds the "request". Then the client leaves.
      await within(arrived, 5_000, `${post} to reach the backend`);
      expect(seenUrls()).toEqual([post]);
      s.destroy();
      await barrier();
      expect(seenUrls()).toEqual([post, 'GET /canary']);
    });
  }

  it('a chunk size that overflows 64 bits is refused, and the request after it is not forwarded', async () => {
    // 0x1_0000_0000_0000_0005 truncated to 64 bits is 5: a lax parser takes "hello" as the chunk
    // and the smuggled GET as the next request.
    const r = await raw(`POST /overflow HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n${SMUGGLED}`, 3_000);
    await barrier();
    expect(seenUrls(), `client got ${JSON.stringify(r.text.slice(0, 60))}`).not.toContain('GET /smuggled');
  });
});
