// Issue #17 (2, 3): the client-facing HTTP server as real networks and real clients use it.
// On uWebSockets.js 20.30 a head over 4 KiB that arrived in pieces got no answer, 49+ headers
// hung for ~10 s, NUL/CR/LF/obs-fold/space-before-colon and an HTTP/2 preface waited ~10 s for
// nothing, and valid HTTP/1.1 (absolute-form, HTTP/1.0, OPTIONS *, pipelining) was refused.
// Every case runs at the segmentations a network produces: one write, 1,448-byte segments,
// and 1-byte writes.
import net from 'node:net';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { startBackend, type TestBackend } from '../helpers/backends.js';

type Segmentation = 'one write' | '1448-byte segments' | '1-byte writes';
const SEGMENTATIONS: Segmentation[] = ['one write', '1448-byte segments', '1-byte writes'];

let backend: TestBackend;
let raw: { port: number; got: Buffer[]; close(): Promise<void> };
let t: TetherProcess;

beforeAll(async () => {
  backend = await startBackend('b', (req, res) => {
    if (req.url === '/stream') {
      // A body of unknown length: chunked to Tether, which must frame it for each client.
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part one, ');
      setImmediate(() => res.end('part two'));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('latin1');
      const json = JSON.stringify({ method: req.method, url: req.url, host: req.headers.host, headers: req.rawHeaders.length / 2, body });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
      res.end(json);
    });
  });
  raw = await startRawBackend();
  t = await startTether(
    ['--no-demo', '--backend', `b=127.0.0.1:${backend.port}`, '--backend', `raw/r=127.0.0.1:${raw.port}`, '--sticky', 'none', '--sticky', 'raw/none', '--route', '/raw=raw', '--request-head-timeout', '5000', '--keepalive-timeout', '1500'],
    { workers: 2 },
  );
});
afterAll(async () => {
  expect(await t.stop()).toBe(0);
  await backend.close();
  await raw.close();
});

/** A backend that answers 200 and records the raw bytes of each request it got. */
async function startRawBackend(): Promise<{ port: number; got: Buffer[]; close(): Promise<void> }> {
  const got: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined); // Tether may close a pooled connection at its exit
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      // A chunked body ends with its last chunk; a sized one here always ends with "END".
      const text = buf.toString('latin1');
      const chunked = /transfer-encoding: chunked/i.test(text);
      const sized = /content-length/i.test(text);
      if (/\r\n\r\n/.test(text) && (chunked ? text.endsWith('\r\n0\r\n\r\n') : !sized || text.endsWith('END'))) {
        got.push(buf);
        buf = Buffer.alloc(0);
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    got,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

interface Exchange {
  /** Everything received, as latin1. */
  text: string;
  /** The server closed the connection. */
  closed: boolean;
  /** Bytes of the request the client had written when the first response byte arrived. */
  sentWhenAnswered: number;
}

/**
 * Writes `bytes` as `seg` says (each piece its own write, the next only once the previous left,
 * so the pieces reach the server as separate reads), and resolves once `until(text)` holds, the
 * server closes, or 8 s pass (then `closed` is false and the test fails on what it expected).
 */
function converse(bytes: Buffer, seg: Segmentation, until: (text: string) => boolean = () => false, keepSending = true): Promise<Exchange> {
  return new Promise((resolve) => {
    const s = net.connect(t.port, '127.0.0.1');
    s.setNoDelay(true);
    let text = '';
    let sent = 0;
    let answeredAt = -1;
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closed, sentWhenAnswered: answeredAt });
    };
    const timer = setTimeout(() => finish(false), 8_000);
    s.on('data', (d: Buffer) => {
      if (answeredAt < 0) answeredAt = sent;
      text += d.toString('latin1');
      if (until(text)) finish(false);
    });
    s.on('error', () => undefined); // a reset after a refusal is an ending like a close
    s.on('close', () => finish(true));
    const size = seg === 'one write' ? bytes.length : seg === '1448-byte segments' ? 1448 : 1;
    const next = () => {
      if (done || sent >= bytes.length || (!keepSending && answeredAt >= 0)) return;
      const piece = bytes.subarray(sent, sent + size);
      sent += piece.length;
      s.write(piece, () => setImmediate(next));
    };
    s.on('connect', next);
  });
}

/** A chunked body without extensions or trailers (what Tether sends) → its bytes. */
function dechunk(body: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', at);
    const size = parseInt(body.slice(at, eol), 16);
    if (!/^[0-9a-f]+$/i.test(body.slice(at, eol))) throw new Error(`not a bare chunk size: ${JSON.stringify(body.slice(at, eol))}`);
    if (size === 0) {
      expect(body.slice(eol)).toBe('\r\n\r\n');
      return out;
    }
    out += body.slice(eol + 2, eol + 2 + size);
    expect(body.slice(eol + 2 + size, eol + 4 + size)).toBe('\r\n');
    at = eol + 4 + size;
  }
}

const responses = (text: string) => text.split(/(?=HTTP\/1\.1 \d{3} )/).filter((r) => r.startsWith('HTTP/1.1 '));
const statusOf = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
const complete = (n: number) => (text: string) => responses(text).length >= n && /\}$/.test(text);

function head(fields: string[], target = '/'): string {
  return `GET ${target} HTTP/1.1\r\nHost: h\r\n${fields.map((f) => `${f}\r\n`).join('')}Connection: close\r\n\r\n`;
}

describe('request heads up to the limit, at any segmentation', () => {
  for (const seg of SEGMENTATIONS) {
    it(`a 16,000-byte head (${seg}) is served`, async () => {
      const filler = 'c'.repeat(16_000 - head(['Cookie: ']).length);
      const bytes = Buffer.from(head([`Cookie: ${filler}`]), 'latin1');
      expect(bytes.length).toBe(16_000);
      const r = await converse(bytes, seg, complete(1));
      expect(statusOf(r.text), r.text.slice(0, 200)).toBe(200);
    }, 60_000);

    it(`95 header fields (${seg}) are served`, async () => {
      const fields = Array.from({ length: 93 }, (_, i) => `X-Field-${i}: value ${i}`);
      const r = await converse(Buffer.from(head(fields), 'latin1'), seg, complete(1));
      expect(statusOf(r.text), r.text.slice(0, 200)).toBe(200);
      expect(JSON.parse(r.text.slice(r.text.indexOf('{'))).headers).toBeGreaterThanOrEqual(95);
    }, 60_000);

    it(`a head over 16 KiB (${seg}) is answered 431 before it is even complete, and the connection closed`, async () => {
      // 24 KiB of one header and never the end of the head: only an early refusal can answer.
      const bytes = Buffer.from(`GET / HTTP/1.1\r\nHost: h\r\nCookie: ${'c'.repeat(24 * 1024)}`, 'latin1');
      const r = await converse(bytes, seg, () => false, false);
      expect(statusOf(r.text), r.text).toBe(431);
      expect(r.closed).toBe(true);
      // Byte by byte, the answer came while the client was still sending (past the limit, not
      // at the end); in bigger pieces the client's writes all leave before the answer arrives.
      if (seg === '1-byte writes') expect(r.sentWhenAnswered).toBeLessThan(bytes.length);
    }, 60_000);
  }

  it('101 header fields are answered 431 (the limit is --max-request-headers, default 100)', async () => {
    const fields = Array.from({ length: 100 }, (_, i) => `X-F${i}: v`);
    const r = await converse(Buffer.from(head(fields), 'latin1'), 'one write');
    expect(statusOf(r.text), r.text).toBe(431);
    expect(r.text).toContain('more than 100 header fields');
  });

  it('a slow head is cut with 408 after --request-head-timeout, counted', async () => {
    const before = await t.metric('tether_front_door_refusals_total{reason="head_timeout"}');
    const r = await converse(Buffer.from('GET / HTTP/1.1\r\nHost: h\r\n', 'latin1'), 'one write');
    expect(statusOf(r.text), r.text).toBe(408);
    expect(r.closed).toBe(true);
    expect(await t.metric('tether_front_door_refusals_total{reason="head_timeout"}')).toBe(before + 1);
  });
});

describe('malformed requests are refused at once, counted by reason', () => {
  const cases: [string, string, string, number][] = [
    ['NUL in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n', 'control_byte', 400],
    ['CR in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n', 'bare_cr', 400],
    ['a bare LF line end', 'GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n', 'bare_lf', 400],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n', 'obs_fold', 400],
    ['space before the colon', 'GET / HTTP/1.1\r\nHost: h\r\nX-A : a\r\n', 'space_before_colon', 400],
    ['HTTP/3.0', 'GET / HTTP/3.0\r\n', 'bad_version', 505],
    ['no version', 'GET /\r\n', 'bad_request_line', 400],
  ];
  for (const [name, text, reason, status] of cases) {
    for (const seg of SEGMENTATIONS) {
      it(`${name} (${seg}): ${status} before the head ends, then closed`, async () => {
        const before = await t.metric(`tether_front_door_refusals_total{reason="${reason}"}`);
        // No final empty line is ever sent: an answer can only come from checking each line.
        const r = await converse(Buffer.from(text, 'latin1'), seg);
        expect(statusOf(r.text), JSON.stringify(r.text)).toBe(status);
        expect(r.closed).toBe(true);
        expect(await t.metric(`tether_front_door_refusals_total{reason="${reason}"}`)).toBe(before + 1);
      });
    }
  }

  it('an HTTP/2 preface is closed without an answer, counted', async () => {
    const before = await t.metric('tether_front_door_refusals_total{reason="h2_preface"}');
    const r = await converse(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), '1-byte writes');
    expect(r).toMatchObject({ text: '', closed: true });
    expect(await t.metric('tether_front_door_refusals_total{reason="h2_preface"}')).toBe(before + 1);
  });

  it('curl --http2-prior-knowledge fails at once (not after an idle timeout)', async () => {
    const result = await new Promise<{ code: number | null; err: string }>((resolve) => {
      execFile('curl', ['-sS', '--http2-prior-knowledge', '--max-time', '5', t.url('/')], (err, _out, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, err: stderr }));
    });
    expect(result.code, result.err).not.toBe(0);
    expect(result.code, `curl timed out: ${result.err}`).not.toBe(28);
  });
});

describe('valid HTTP/1.1 and HTTP/1.0 that uWS refused', () => {
  for (const seg of SEGMENTATIONS) {
    it(`absolute-form (${seg}) is forwarded in origin form, its authority the Host`, async () => {
      const r = await converse(Buffer.from('GET http://shop.example:8080/a/b?q=1 HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n', 'latin1'), seg, complete(1));
      expect(statusOf(r.text)).toBe(200);
      expect(JSON.parse(r.text.slice(r.text.indexOf('{')))).toMatchObject({ method: 'GET', url: '/a/b?q=1', host: 'shop.example:8080' });
    });

    it(`10 pipelined requests, one a POST with a body (${seg}), are answered in order`, async () => {
      let bytes = '';
      for (let i = 0; i < 10; i++) {
        bytes += i === 4 ? `POST /p${i} HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world` : `GET /p${i} HTTP/1.1\r\nHost: h\r\n\r\n`;
      }
      const r = await converse(Buffer.from(bytes, 'latin1'), seg, complete(10));
      const answers = responses(r.text).map((x) => JSON.parse(x.slice(x.indexOf('{'))) as { url: string; body: string });
      expect(answers.map((a) => a.url)).toEqual(Array.from({ length: 10 }, (_, i) => `/p${i}`));
      expect(answers[4]!.body).toBe('hello world');
    }, 60_000);
  }

  it('HTTP/1.0 without Host: served, close-delimited when the client did not ask for keep-alive', async () => {
    const r = await converse(Buffer.from('GET /old HTTP/1.0\r\n\r\n', 'latin1'), 'one write');
    expect(statusOf(r.text)).toBe(200);
    expect(r.closed).toBe(true);
    expect(r.text).toMatch(/\r\nconnection: close\r\n/i);
    expect(JSON.parse(r.text.slice(r.text.indexOf('{'))).host).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('HTTP/1.0 with Host and Connection: keep-alive: two requests on one connection', async () => {
    const one = 'GET /k1 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n';
    const r = await converse(Buffer.from(one + one.replace('/k1', '/k2'), 'latin1'), '1448-byte segments', complete(2));
    const answers = responses(r.text);
    expect(answers).toHaveLength(2);
    expect(answers[0]).toMatch(/\r\nconnection: keep-alive\r\n/i);
    expect(answers[0]).toMatch(/\r\ncontent-length: \d+\r\n/i);
  });

  it('HTTP/1.0 and a body of unknown length: sent close-delimited, without chunk framing', async () => {
    const r = await converse(Buffer.from('GET /stream HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n', 'latin1'), 'one write');
    expect(r.closed).toBe(true);
    expect(r.text).toMatch(/\r\nconnection: close\r\n/i);
    expect(r.text).not.toMatch(/transfer-encoding/i);
    expect(r.text.slice(r.text.indexOf('\r\n\r\n') + 4)).toBe('part one, part two');
  });

  it('HTTP/1.1 and the same body: chunked, and the connection stays open for the next request', async () => {
    const one = 'GET /stream HTTP/1.1\r\nHost: h\r\n\r\n';
    const r = await converse(Buffer.from(one + one, 'latin1'), 'one write', (x) => (x.match(/0\r\n\r\n/g) ?? []).length >= 2);
    expect(r.closed).toBe(false);
    expect(responses(r.text)).toHaveLength(2);
    for (const answer of responses(r.text)) expect(dechunk(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toBe('part one, part two');
  });

  it('an idle keep-alive connection is closed after --keepalive-timeout, with nothing written', async () => {
    const r = await converse(Buffer.from('GET /idle HTTP/1.1\r\nHost: h\r\n\r\n', 'latin1'), 'one write');
    expect(r.closed, 'closed by Tether').toBe(true);
    expect(responses(r.text)).toHaveLength(1);
    expect(statusOf(r.text)).toBe(200);
  });

  it('Expect: 100-continue with curl: 100 Continue, then the upload goes through', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'tether-upload-')), 'body');
    writeFileSync(file, 'x'.repeat(200_000));
    const result = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      execFile(
        'curl',
        ['-sS', '-v', '--max-time', '10', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, '-o', '/dev/null', '-w', '%{http_code}', t.url('/upload')],
        { maxBuffer: 16 * 1024 * 1024 },
        (err, out, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, out, err: stderr }),
      );
    });
    expect(result.code, result.err).toBe(0);
    expect(result.out).toBe('200');
    expect(result.err).toContain('HTTP/1.1 100 Continue');
  });

  it('OPTIONS * is forwarded as OPTIONS *', async () => {
    const r = await converse(Buffer.from('OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', 'latin1'), 'one write', complete(1));
    expect(JSON.parse(r.text.slice(r.text.indexOf('{')))).toMatchObject({ method: 'OPTIONS', url: '*' });
  });

  for (const seg of SEGMENTATIONS) {
    it(`chunk extensions (${seg}) are accepted and not forwarded`, async () => {
      const before = raw.got.length;
      const body = '3;foo=bar\r\nEND\r\n0;last="yes"\r\nX-Trailer: t\r\n\r\n';
      const r = await converse(Buffer.from(`POST /raw/chunks HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body}`, 'latin1'), seg, (x) => x.endsWith('ok'));
      expect(statusOf(r.text), r.text).toBe(200);
      const forwarded = raw.got[before]!.toString('latin1');
      // Re-chunked as it arrived (1-byte reads become 1-byte chunks): decode before comparing.
      expect(dechunk(forwarded.slice(forwarded.indexOf('\r\n\r\n') + 4))).toBe('END');
      expect(forwarded).not.toContain('foo=bar');
      expect(forwarded).not.toContain('X-Trailer');
    });
  }

  it('a CONNECT request is refused 405 (Tether is not a forward proxy)', async () => {
    const r = await converse(Buffer.from('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 'latin1'), 'one write');
    expect(statusOf(r.text)).toBe(405);
  });

  it('a Content-Length of 16 digits is refused 400 and nothing is forwarded', async () => {
    const r = await converse(Buffer.from('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000000\r\n\r\n', 'latin1'), 'one write');
    expect(statusOf(r.text)).toBe(400);
    expect(r.text).toContain('invalid Content-Length');
  });
});
