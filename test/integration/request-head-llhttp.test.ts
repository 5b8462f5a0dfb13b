// The front door's request-head parser (src/data-plane/front-door/request-head.ts) against Node's
// llhttp (node:http, strict) on a loopback server: generated valid heads parse the same, and
// malformed ones are refused by both. Where the two part on purpose is asserted (ours only) in
// test/unit/request-head.test.ts, with the grammar, limits and fuzz.
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, parseOnce, randomHead, show } from '../helpers/request-head.js';
import { prng } from '../helpers/sticky.js';

type NodeVerdict =
  | { accepted: true; method: string; target: string; major: number; minor: number; names: string[]; values: string[] }
  | { accepted: false; code: string };

describe('differential: node:http (llhttp, strict) sees the same heads', () => {
  let server: http.Server;
  let port = 0;
  /** Keyed by the client's local port (the server side's remote port). */
  const waiting = new Map<number, (v: NodeVerdict) => void>();
  const remotePorts = new WeakMap<object, number>();

  beforeAll(async () => {
    server = http.createServer({ insecureHTTPParser: false, requireHostHeader: false }, (req, res) => {
      const names: string[] = [];
      const values: string[] = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        names.push(req.rawHeaders[i]!.toLowerCase());
        values.push(req.rawHeaders[i + 1]!);
      }
      waiting.get(remotePorts.get(req.socket) ?? -1)?.({ accepted: true, method: req.method!, target: req.url!, major: req.httpVersionMajor, minor: req.httpVersionMinor, names, values });
      res.end();
    });
    server.on('connection', (socket: net.Socket) => remotePorts.set(socket, socket.remotePort ?? -1));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      waiting.get(remotePorts.get(socket) ?? -1)?.({ accepted: false, code: err.code ?? err.message });
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    port = (server.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      server.close(() => {
        clearTimeout(t);
        resolve();
      });
    });
  });

  /** Writes the bytes raw on a new connection (then half-closes: no verdict hangs on more bytes). */
  function nodeVerdict(raw: Uint8Array): Promise<NodeVerdict> {
    return new Promise<NodeVerdict>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      let key = -1;
      let done = false;
      let grace: NodeJS.Timeout | undefined;
      const finish = (v: NodeVerdict | Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearTimeout(grace);
        waiting.delete(key);
        socket.destroy();
        if (v instanceof Error) reject(v);
        else resolve(v);
      };
      const timer = setTimeout(() => finish(new Error(`node:http gave no verdict within 3 s on ${show(raw)}`)), 3000);
      socket.on('error', () => {}); // the server resets connections it refuses
      socket.on('connect', () => {
        key = socket.localPort!;
        waiting.set(key, finish);
        socket.end(raw);
      });
      // Closed without 'request' or 'clientError': refused all the same (a short grace for the event).
      socket.on('close', () => (grace = setTimeout(() => finish({ accepted: false, code: 'closed' }), 50)));
    });
  }

  it('60 generated valid heads: same method, target, version and fields', async () => {
    const rand = prng(2024);
    for (let i = 0; i < 60; i++) {
      const g = randomHead(rand);
      const label = `#${i} ${show(g.raw)}`;
      const mine = parseOnce(g.raw);
      expect(mine, label).toEqual({ ret: g.raw.length, method: g.method, target: g.target, minor: g.minor, names: g.names, values: g.values, length: g.raw.length, error: null });
      const theirs = await nodeVerdict(g.raw);
      expect(theirs, label).toEqual({ accepted: true, method: mine.method, target: mine.target, major: 1, minor: mine.minor, names: mine.names, values: mine.values });
    }
  });

  // Malformed heads both parsers refuse.
  const BOTH_REFUSE = [
    'GET / HTTP/1.1\nHost: a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\n\n',
    'GET / HTTP/1.1\r\nHost: a\r\n\r\r\n',
    'GET / HTTP/1.1\r\nA: x\ry\r\n\r\n',
    'GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n',
    'GET / HTTP/1.1\r\n A: b\r\n\r\n',
    'GET / HTTP/1.1\r\nA : b\r\n\r\n',
    'GET / HTTP/1.1\r\nA\t: b\r\n\r\n',
    'GET / HTTP/1.1\r\n: b\r\n\r\n',
    'GET / HTTP/1.1\r\nA(: b\r\n\r\n',
    'GET / HTTP/1.1\r\nA: x\0y\r\n\r\n',
    'GET / HTTP/1.1\r\nA: x\x01y\r\n\r\n',
    'GET / HTTP/1.1\r\nA: x\x7fy\r\n\r\n',
    'GET / http/1.1\r\n\r\n',
    'GET / HTTP/1.10\r\n\r\n',
    'GET / HTTP/3.0\r\n\r\n',
    'GET / HTTP/1.1 \r\n\r\n',
    'GET /\x01 HTTP/1.1\r\n\r\n',
    'GET /a\tb HTTP/1.1\r\n\r\n',
    'GET /a\rb HTTP/1.1\r\n\r\n',
    'GE\rT / HTTP/1.1\r\n\r\n',
    'GET\t/ HTTP/1.1\r\n\r\n',
    'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
  ];

  it(`${BOTH_REFUSE.length} malformed heads: both refuse`, async () => {
    for (const s of BOTH_REFUSE) {
      const raw = bytes(s);
      expect(parseOnce(raw).ret, show(raw)).toBe(-1);
      expect((await nodeVerdict(raw)).accepted, show(raw)).toBe(false);
    }
  });
});
