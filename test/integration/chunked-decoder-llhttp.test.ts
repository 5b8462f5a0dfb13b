// The chunked request-body decoder of the front door (src/data-plane/front-door/chunked.ts)
// against node:http (llhttp) on a loopback server as the oracle: the same body bytes out of
// generated chunked bodies, and the same refusals. The decoder's own rules are unit-tested in
// test/unit/chunked-decoder.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { bytes, decodeAll, type Outcome } from '../helpers/chunked.js';
import { prng } from '../helpers/sticky.js';

interface NodeAnswer {
  status: number; // 0: closed without an answer
  text: string;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

describe('ChunkedDecoder vs node:http (llhttp)', () => {
  let server: http.Server;
  let port = 0;
  const clientErrors: string[] = [];
  const sockets = new Set<net.Socket>();

  beforeAll(async () => {
    // insecureHTTPParser: false pins llhttp's strict mode even if NODE_OPTIONS asks for lenient.
    server = http.createServer({ insecureHTTPParser: false }, (req, res) => {
      const h = createHash('sha256');
      let n = 0;
      req.on('data', (d: Buffer) => {
        h.update(d);
        n += d.length;
      });
      req.on('error', () => {}); // an aborted body: clientError below answers
      req.on('end', () => {
        const answer = `${n} ${h.digest('hex')}`;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': answer.length, connection: 'close' });
        res.end(answer);
      });
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
      clientErrors.push(String(err.code));
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    await withTimeout(new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)), 5000, 'listen');
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    server.closeAllConnections();
    await withTimeout(new Promise<void>((resolve) => server.close(() => resolve())), 5000, 'server close');
  });

  async function sendToNode(body: Buffer): Promise<NodeAnswer> {
    const socket = net.connect(port, '127.0.0.1');
    sockets.add(socket);
    try {
      const raw = await withTimeout(
        new Promise<Buffer>((resolve, reject) => {
          const got: Buffer[] = [];
          socket.on('data', (d: Buffer) => got.push(d));
          socket.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve(Buffer.concat(got)) : reject(e)));
          socket.on('close', () => resolve(Buffer.concat(got)));
          socket.write(Buffer.concat([bytes('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'), body]));
        }),
        10_000,
        'node:http answer',
      );
      const text = raw.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      const sep = text.indexOf('\r\n\r\n');
      return { status: m ? Number(m[1]) : 0, text: sep >= 0 ? text.slice(sep + 4) : '' };
    } finally {
      socket.destroy();
      sockets.delete(socket);
    }
  }

  function ours(body: Buffer): { outcome: Outcome; digest: string } {
    const outcome = decodeAll(body);
    return { outcome, digest: `${outcome.data.length} ${createHash('sha256').update(outcome.data).digest('hex')}` };
  }

  function randomBody(rnd: () => number): Buffer {
    const pick = (s: string): string => s[Math.floor(rnd() * s.length)]!;
    const token = (): string => {
      let t = '';
      for (let k = 1 + Math.floor(rnd() * 8); k > 0; k--) t += pick("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~");
      return t;
    };
    const quoted = (): string => {
      let q = '"';
      for (let k = Math.floor(rnd() * 10); k > 0; k--) {
        const r = rnd();
        if (r < 0.15) q += '\\' + pick('"\\a \t');
        else if (r < 0.2) q += String.fromCharCode(0x80 + Math.floor(rnd() * 128));
        else q += pick('abc xyz;=,/\t{}');
      }
      return q + '"';
    };
    // No BWS around ';' and '=' here: RFC 9112 allows it but llhttp refuses it (checked below).
    const exts = (): string => {
      let e = '';
      while (rnd() < 0.3) {
        e += ';' + token();
        const r = rnd();
        if (r < 0.4) e += '=' + token();
        else if (r < 0.7) e += '=' + quoted();
      }
      return e;
    };
    const hex = (n: number): string => {
      const h = n.toString(16);
      const s = rnd() < 0.5 ? h : h.toUpperCase();
      return rnd() < 0.2 ? '0'.repeat(Math.floor(rnd() * 3)) + s : s;
    };
    const parts: Buffer[] = [];
    for (let c = Math.floor(rnd() * 6); c > 0; c--) {
      const n = 1 + Math.floor(rnd() * 5000);
      const data = Buffer.alloc(n);
      for (let k = 0; k < n; k++) data[k] = Math.floor(rnd() * 256);
      parts.push(bytes(hex(n) + exts() + '\r\n'), data, bytes('\r\n'));
    }
    let tail = (rnd() < 0.3 ? '00' : '0') + exts() + '\r\n';
    // Trailer names avoid framing fields: llhttp refuses Content-Length in trailers.
    if (rnd() < 0.5) {
      for (let k = 1 + Math.floor(rnd() * 3); k > 0; k--) tail += `X-${token()}:${rnd() < 0.5 ? ' ' : ''}${token()}${rnd() < 0.3 ? ' \t' : ''}\r\n`;
    }
    parts.push(bytes(tail + '\r\n'));
    return Buffer.concat(parts);
  }

  it('reads the same body bytes as node:http out of 60 generated chunked bodies', async () => {
    const rnd = prng(20250);
    for (let n = 0; n < 60; n++) {
      const body = randomBody(rnd);
      const mine = ours(body);
      expect(mine.outcome).toMatchObject({ done: true, consumed: body.length, error: '' });
      const node = await sendToNode(body);
      expect({ n, status: node.status, digest: node.text }).toEqual({ n, status: 200, digest: mine.digest });
    }
  });

  it('refuses what node:http refuses (strict llhttp)', async () => {
    const both = [
      '5\r\nhelloXX\r\n0\r\n\r\n', // no CRLF after data
      '5\rhello\r\n0\r\n\r\n', // CR without LF
      '0x5\r\nhello\r\n0\r\n\r\n',
      ' 5\r\nhello\r\n0\r\n\r\n',
      '-1\r\nhello\r\n0\r\n\r\n',
      '\r\nhello\r\n0\r\n\r\n', // empty size
      '5 x\r\nhello\r\n0\r\n\r\n',
      '5;\r\nhello\r\n0\r\n\r\n',
      '5;a="x"y\r\nhello\r\n0\r\n\r\n',
      '5;a="\\\x01"\r\nhello\r\n0\r\n\r\n',
      'fffffffffffffffff\r\nhello\r\n0\r\n\r\n', // overflows even llhttp's uint64
      '5\r\nhello\r\n0\r\nA: b\r\n c\r\n\r\n', // obs-fold
      '5\r\nhello\r\n0\r\nA: b\x00c\r\n\r\n', // NUL
      '5\r\nhello\r\n0\r\nA : b\r\n\r\n',
      // Bare LF: llhttp refuses it only in strict mode (pinned above); with --insecure-http-parser
      // it takes LF alone as a line end.
      '5\nhello\r\n0\r\n\r\n',
      '5\r\nhello\n0\r\n\r\n',
      '5\r\nhello\r\n0\r\nA: b\n\r\n',
      '5\r\nhello\r\n0\r\n\n',
    ];
    for (const b of both) {
      const body = bytes(b);
      expect({ b, consumed: ours(body).outcome.consumed }).toEqual({ b, consumed: -1 });
      const before = clientErrors.length;
      const node = await sendToNode(body);
      expect({ b, status: node.status }).toEqual({ b, status: 400 });
      expect(clientErrors.length).toBe(before + 1);
    }
  });
});
