// Message framing through the balancer's own HTTP/1.1 codec: every way a response body can be
// delimited (length, chunked, close, none for HEAD/204/304, after a 1xx), request bodies in each
// framing, and keep-alive reuse on both sides. The oracle is what the backend actually sent/saw.
import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { startBackend, type Handler, type TestBackend } from '../helpers/backends.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function backendAndBalancer(handler: Handler): Promise<{ backend: TestBackend; t: TetherProcess; sockets: () => number }> {
  const backend = await startBackend('b', handler);
  cleanups.push(() => backend.close());
  let sockets = 0;
  backend.server.on('connection', () => sockets++);
  const t = await startTether(['--backend', `b=127.0.0.1:${backend.port}`, '--sticky', 'none'], { workers: 2 });
  cleanups.push(() => t.stop());
  return { backend, t, sockets: () => sockets };
}

/** A backend on a raw socket: `respond` gets each request head (text) and the socket. */
async function startRawBackend(respond: (head: string, socket: net.Socket) => void): Promise<{ port: number; heads: string[]; connections: () => number }> {
  const heads: string[] = [];
  let connections = 0;
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, end + 4);
        buf = buf.slice(end + 4);
        heads.push(head);
        respond(head, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as AddressInfo).port, heads, connections: () => connections };
}

async function balancerFor(port: number): Promise<TetherProcess> {
  const t = await startTether(['--backend', `b=127.0.0.1:${port}`, '--sticky', 'none'], { workers: 2 });
  cleanups.push(() => t.stop());
  return t;
}

/** One keep-alive socket to the balancer, for requests that must share a client connection. */
function keepAliveAgent(): http.Agent {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  cleanups.push(async () => agent.destroy());
  return agent;
}

interface Sent {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The client socket that carried the request (compare identities to prove keep-alive reuse). */
  socket: net.Socket;
  informational: number[];
}

/** node:http request through `agent` that also reports 1xx responses and the socket used. */
function send(port: number, o: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: (Buffer | string)[]; agent?: http.Agent | false }): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const informational: number[] = [];
    let socket: net.Socket | null = null;
    const req = http.request({ host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.path ?? '/', headers: o.headers, agent: o.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), socket: socket!, informational }));
      res.on('aborted', () => reject(new Error('response aborted')));
      res.on('error', reject);
    });
    req.on('socket', (s) => (socket = s));
    req.on('information', (info) => informational.push(info.statusCode));
    req.setTimeout(10_000, () => req.destroy(new Error(`${o.method ?? 'GET'} ${o.path ?? '/'} timed out`)));
    req.on('error', reject);
    for (const piece of o.body ?? []) req.write(piece);
    req.end();
  });
}

function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

describe('response framing', () => {
  it('relays a Content-Length body byte for byte', async () => {
    const body = pattern(300_000);
    const { t } = await backendAndBalancer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
      res.end(body);
    });
    const r = await send(t.port, {});
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(body.length));
    expect(r.body.equals(body)).toBe(true);
  });

  it('relays a chunked body written in many pieces, complete and in order', async () => {
    const pieces = Array.from({ length: 20 }, (_, i) => pattern(1 + i * 997, i + 7));
    const { t } = await backendAndBalancer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let i = 0;
      const next = () => {
        if (i === pieces.length) return res.end();
        res.write(pieces[i++]!, () => setImmediate(next));
      };
      next();
    });
    const r = await send(t.port, {});
    expect(r.status).toBe(200);
    expect(r.body.equals(Buffer.concat(pieces))).toBe(true);
  });

  it('relays a close-delimited body complete (EOF ends it), and opens a new upstream connection next time', async () => {
    const body = pattern(1_000_000, 3);
    const backend = await startRawBackend((_head, socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\r\n');
      // Several writes, then FIN: the only end-of-body marker is the close.
      for (let off = 0; off < body.length; off += 100_000) socket.write(body.subarray(off, off + 100_000));
      socket.end();
    });
    const t = await balancerFor(backend.port);
    const agent = keepAliveAgent();
    const first = await send(t.port, { agent });
    expect(first.status).toBe(200);
    expect(first.body.length).toBe(body.length);
    expect(first.body.equals(body)).toBe(true);
    const second = await send(t.port, { agent });
    expect(second.body.equals(body)).toBe(true);
    expect(second.socket === first.socket, 'the same client connection carried both requests').toBe(true); // the client connection survived
    expect(backend.connections()).toBe(2); // a close-delimited response's connection is never reused
  });

  it('answers HEAD with the Content-Length header and no body, and the connection stays usable', async () => {
    const { t, backend } = await backendAndBalancer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': 12_345, 'content-type': 'text/plain' });
      res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(12_345));
    });
    const agent = keepAliveAgent();
    const head = await send(t.port, { method: 'HEAD', agent });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe('12345');
    expect(head.body.length).toBe(0);
    const get = await send(t.port, { agent, path: '/after-head' });
    expect(get.socket === head.socket, 'the same client connection carried both requests').toBe(true);
    expect(get.status).toBe(200);
    expect(get.body.toString()).toBe('x'.repeat(12_345));
    expect(backend.received.map((r) => `${r.method} ${r.url}`)).toEqual(['HEAD /', 'GET /after-head']);
  });

  it('answers HEAD for a chunked resource without a body, and the connection stays usable', async () => {
    // Raw backend: HEAD answered with Transfer-Encoding: chunked and (correctly) no body.
    const backend = await startRawBackend((head, socket) => {
      if (head.startsWith('HEAD')) socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
      else socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nafter');
    });
    const t = await balancerFor(backend.port);
    // Raw client: node:http drops keep-alive after a HEAD answer with neither Content-Length
    // nor Transfer-Encoding (llhttp decides before it knows the body is skipped), which is what
    // the balancer must send here; a raw socket shows whether the connection itself stays usable.
    const text = await new Promise<string>((resolve) => {
      const s = net.connect(t.port, '127.0.0.1');
      let out = '';
      let sentGet = false;
      const timer = setTimeout(() => s.destroy(), 10_000);
      s.on('data', (d) => {
        out += d.toString('latin1');
        if (!sentGet && out.includes('\r\n\r\n')) {
          sentGet = true;
          s.write('GET /after HTTP/1.1\r\nHost: x\r\n\r\n');
        }
        if (out.endsWith('after')) s.end();
      });
      s.on('error', () => {});
      s.on('close', () => {
        clearTimeout(timer);
        resolve(out);
      });
      s.write('HEAD / HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    const [headPart, rest] = [text.slice(0, text.indexOf('\r\n\r\n') + 4), text.slice(text.indexOf('\r\n\r\n') + 4)];
    expect(headPart).toMatch(/^HTTP\/1\.1 200 /);
    expect(rest).toMatch(/^HTTP\/1\.1 200 [^]*\r\n\r\nafter$/); // no body bytes between the two answers
    expect(backend.connections()).toBe(1);
  });

  it('relays 204 with no body and keeps both connections usable', async () => {
    const { t, sockets } = await backendAndBalancer((req, res) => {
      req.resume();
      if (req.url === '/none') {
        res.writeHead(204, { 'x-was': 'empty' });
        res.end();
      } else res.end('next');
    });
    const agent = keepAliveAgent();
    const r = await send(t.port, { path: '/none', agent });
    expect(r.status).toBe(204);
    expect(r.headers['x-was']).toBe('empty');
    expect(r.body.length).toBe(0);
    expect(r.headers['transfer-encoding']).toBeUndefined();
    const next = await send(t.port, { agent });
    expect(next.socket === r.socket, 'the same client connection carried both requests').toBe(true);
    expect(next.body.toString()).toBe('next');
    expect(sockets()).toBe(1);
  });

  it('relays 304 with its ETag and no body, and keeps the connection usable', async () => {
    const etag = '"v42"';
    const { t, backend } = await backendAndBalancer((req, res) => {
      req.resume();
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, { etag, 'cache-control': 'max-age=60' });
        res.end();
      } else {
        res.writeHead(200, { etag, 'content-length': 7 });
        res.end('content');
      }
    });
    const agent = keepAliveAgent();
    const full = await send(t.port, { agent });
    expect(full.headers.etag).toBe(etag);
    expect(full.body.toString()).toBe('content');
    const cached = await send(t.port, { agent, headers: { 'if-none-match': etag } });
    expect(cached.status).toBe(304);
    expect(cached.headers.etag).toBe(etag);
    expect(cached.headers['cache-control']).toBe('max-age=60');
    expect(cached.body.length).toBe(0);
    const again = await send(t.port, { agent });
    expect(again.socket === full.socket, 'the same client connection carried both requests').toBe(true);
    expect(again.body.toString()).toBe('content');
    expect(backend.received[1]!.headers['if-none-match']).toBe(etag);
  });

  it('ignores a 100 Continue from the backend and relays the final 200', async () => {
    const backend = await startRawBackend((_head, socket) => {
      socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      socket.write('HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-final: yes\r\n\r\nhello');
    });
    const t = await balancerFor(backend.port);
    const agent = keepAliveAgent();
    const r = await send(t.port, { agent, method: 'POST', headers: { 'content-length': 3 }, body: ['abc'] });
    expect(r.status).toBe(200);
    expect(r.headers['x-final']).toBe('yes');
    expect(r.body.toString()).toBe('hello');
    expect(r.informational).toEqual([]); // the backend's 1xx are not relayed
    const again = await send(t.port, { agent });
    expect(again.body.toString()).toBe('hello');
    expect(again.socket === r.socket, 'the same client connection carried both requests').toBe(true);
    expect(backend.connections()).toBe(1);
  });

  it('a client sending Expect: 100-continue gets exactly one 100, then the backend answer', async () => {
    const { t, backend } = await backendAndBalancer((req, res) => {
      res.writeContinue(); // a second 100 from the backend must not reach the client
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(`got ${Buffer.concat(chunks).toString()}`));
    });
    const r = await new Promise<{ status: number; body: string; informational: number[] }>((resolve, reject) => {
      const informational: number[] = [];
      const req = http.request({ host: '127.0.0.1', port: t.port, method: 'POST', path: '/', agent: false, headers: { expect: '100-continue', 'content-length': 4 } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body, informational }));
      });
      req.on('information', (i) => informational.push(i.statusCode));
      req.on('continue', () => req.end('data'));
      req.setTimeout(10_000, () => req.destroy(new Error('expect-continue request timed out')));
      req.on('error', reject);
    });
    expect(r.status).toBe(200);
    expect(r.body).toBe('got data');
    expect(r.informational).toEqual([100]);
    expect(backend.received[0]!.headers.expect).toBeUndefined();
  });

  it('frames a response carrying both Transfer-Encoding and Content-Length by the chunking, and does not reuse that connection', async () => {
    const backend = await startRawBackend((_head, socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    });
    const t = await balancerFor(backend.port);
    const agent = keepAliveAgent();
    const r = await send(t.port, { agent });
    expect(r.body.toString()).toBe('hello world');
    const again = await send(t.port, { agent });
    expect(again.body.toString()).toBe('hello world');
    expect(backend.connections()).toBe(2);
  });

  it('never lets bytes past a Content-Length body leak into the next response', async () => {
    let n = 0;
    const backend = await startRawBackend((_head, socket) => {
      n++;
      // Five declared bytes, then junk shaped like a response.
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nreq-${n}HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled`);
    });
    const t = await balancerFor(backend.port);
    const agent = keepAliveAgent();
    const bodies: string[] = [];
    for (let i = 0; i < 3; i++) bodies.push((await send(t.port, { agent, path: `/${i}` })).body.toString());
    expect(bodies).toEqual(['req-1', 'req-2', 'req-3']);
    expect(backend.heads.length).toBe(3);
  });

  it('relays chunked bodies with extensions and trailers as just the data', async () => {
    const backend = await startRawBackend((_head, socket) => {
      socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n4;ext=1\r\nabcd\r\n3;name="q;v"\r\nefg\r\n0\r\nx-sum: 7\r\n\r\n');
    });
    const t = await balancerFor(backend.port);
    const agent = keepAliveAgent();
    const r = await send(t.port, { agent });
    expect(r.body.toString()).toBe('abcdefg');
    const again = await send(t.port, { agent });
    expect(again.body.toString()).toBe('abcdefg');
    expect(backend.connections()).toBe(1);
  });
});

describe('request framing', () => {
  const echo: Handler = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      res.end(body);
    });
  };

  it('delivers a chunked request body intact', async () => {
    const pieces = Array.from({ length: 12 }, (_, i) => pattern(1 + i * 4_099, i + 11));
    const { t, backend } = await backendAndBalancer(echo);
    const r = await send(t.port, { method: 'POST', path: '/chunked', body: pieces });
    expect(r.status).toBe(200);
    expect(r.body.equals(Buffer.concat(pieces))).toBe(true);
    const seen = backend.received[0]!;
    expect(seen.headers['transfer-encoding']).toBe('chunked');
    expect(seen.headers['content-length']).toBeUndefined();
  });

  it('delivers an empty chunked request body as an empty body', async () => {
    const { t, backend } = await backendAndBalancer(echo);
    const r = await send(t.port, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } });
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(0);
    expect(backend.received[0]!.headers['transfer-encoding']).toBe('chunked');
  });

  it('delivers a Content-Length request body intact with its length', async () => {
    const body = pattern(777_777, 5);
    const { t, backend } = await backendAndBalancer(echo);
    const r = await send(t.port, { method: 'POST', headers: { 'content-length': body.length }, body: [body] });
    expect(r.body.equals(body)).toBe(true);
    expect(backend.received[0]!.headers['content-length']).toBe(String(body.length));
    expect(backend.received[0]!.headers['transfer-encoding']).toBeUndefined();
  });

  it('forwards an empty POST with Content-Length: 0', async () => {
    const { t, backend } = await backendAndBalancer(echo);
    const agent = keepAliveAgent();
    const r = await send(t.port, { method: 'POST', path: '/empty', headers: { 'content-length': 0 }, agent });
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(0);
    const seen = backend.received[0]!;
    expect(seen.method).toBe('POST');
    expect(seen.headers['content-length']).toBe('0');
    expect(seen.headers['transfer-encoding']).toBeUndefined();
    // And the connection carries the next request normally.
    const next = await send(t.port, { method: 'POST', headers: { 'content-length': 2 }, body: ['ok'], agent });
    expect(next.body.toString()).toBe('ok');
  });

  it('reuses upstream connections for many sequential requests on one client connection', async () => {
    const { t, backend, sockets } = await backendAndBalancer(echo);
    const agent = keepAliveAgent();
    const clientSockets = new Set<net.Socket>();
    for (let i = 0; i < 50; i++) {
      const body = i % 2 === 0 ? undefined : [`body-${i}`];
      const r = await send(t.port, { method: body ? 'POST' : 'GET', path: `/${i}`, agent, body, headers: body ? { 'content-length': body[0]!.length } : undefined });
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe(body ? body[0] : '');
      clientSockets.add(r.socket);
    }
    expect(clientSockets.size).toBe(1);
    expect(backend.received.length).toBe(50);
    expect(backend.received.map((r) => r.url)).toEqual(Array.from({ length: 50 }, (_, i) => `/${i}`));
    expect(sockets()).toBeLessThanOrEqual(2);
  });
});
