// The raw libuv TCP layer under the passthrough relay (src/data-plane/passthrough/raw-tcp.ts)
// over real loopback sockets: it moves bytes and FIN both ways, reads into buffers of ours, and
// names a refused connection. Its shape checks, status reading and fd handling without a socket
// are test/unit/raw-tcp.test.ts.
import { describe, expect, it } from 'vitest';
import net, { type AddressInfo } from 'node:net';
import * as tcp from '../../src/data-plane/passthrough/raw-tcp.js';
import { openReusePortListener } from '../../src/native/index.js';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

describe('raw TCP handles on loopback sockets', () => {
  it('accepts, reads, writes and passes FIN both ways', async () => {
    const port = await freePort();
    const received: Buffer[] = [];
    let sawEof = false;
    const accepted = new Promise<void>((resolve) => {
      const server = tcp.listenOnFd(openReusePortListener('127.0.0.1', port), 16, (status, handle) => {
        expect(status).toBe(0);
        const h = handle!;
        h.onread = (ab) => {
          const bytes = tcp.readBytes(ab);
          if (bytes !== null) {
            received.push(Buffer.from(bytes));
            return;
          }
          if (tcp.readStatus() === tcp.READ_NOTHING) return; // an empty read is not an end
          expect(tcp.readStatus()).toBe(tcp.READ_EOF);
          sawEof = true;
          // Three bytes into an empty loopback send buffer: in the kernel at once (0), not queued (1).
          expect(tcp.write(h, Buffer.from('bye'), () => {})).toBe(0);
          expect(tcp.shutdown(h, () => h.close(() => {
            server.close();
            resolve();
          }))).toBe(0);
        };
        expect(h.readStart()).toBe(0);
      });
    });
    const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const answer = new Promise<string>((resolve) => {
      let text = '';
      client.on('data', (d: Buffer) => (text += d.toString()));
      client.on('end', () => {
        client.end();
        resolve(text);
      });
    });
    client.end('hello raw');
    await accepted;
    expect(Buffer.concat(received).toString()).toBe('hello raw');
    expect(sawEof).toBe(true);
    expect(await answer).toBe('bye');
  });

  it('reads into a buffer of ours, and into the one onread returns from then on', async () => {
    const server = net.createServer((s) => {
      // Two writes the reader sees apart: the second once the first has been read.
      s.write('first');
      s.once('data', () => s.end('second'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const a = Buffer.alloc(32);
    const b = Buffer.alloc(32);
    const seen: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const h = tcp.connect('127.0.0.1', 4, port, (status) => {
        if (status !== 0) return reject(tcp.uvError(status, 'connect'));
        tcp.useBuffer(h, a);
        h.onread = (ab) => {
          expect(ab).toBeUndefined();
          const bytes = seen.length === 0 ? tcp.readInto(a) : tcp.readInto(b);
          if (bytes === null) {
            expect(tcp.readStatus()).toBe(tcp.READ_EOF);
            h.close();
            resolve();
            return undefined;
          }
          seen.push(Buffer.from(bytes).toString());
          tcp.write(h, Buffer.from('ack'), () => {});
          return b;
        };
        h.readStart();
      });
    });
    server.close();
    expect(seen).toEqual(['first', 'second']);
    expect(a.subarray(0, 5).toString()).toBe('first');
    expect(b.subarray(0, 6).toString()).toBe('second');
  });

  it('reports a refused connection with its errno name', async () => {
    const port = await freePort();
    const status = await new Promise<number>((resolve) => {
      const h = tcp.connect('127.0.0.1', 4, port, (s) => {
        h.close();
        resolve(s);
      });
    });
    expect(status).toBeLessThan(0);
    expect(tcp.uvError(status, 'connect').code).toBe('ECONNREFUSED');
    expect(() => tcp.connect('not an address', 4, port, () => {})).toThrow(/connect to not an address:\d+: E/);
  });
});
