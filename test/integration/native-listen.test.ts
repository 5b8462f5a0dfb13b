// The addon's SO_REUSEPORT listener: two sockets share a port (that is the point), a port held
// without SO_REUSEPORT is refused with EADDRINUSE naming the address, bad arguments are
// explained, and net.Server adopts the fd (accepts on it, closes it).
import { describe, expect, it } from 'vitest';
import net, { type AddressInfo } from 'node:net';
import { fstatSync } from 'node:fs';
import { openReusePortListener } from '../../src/native/index.js';

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

async function serve(fd: number): Promise<net.Server> {
  const server = net.createServer((s) => s.end('hi'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => resolve());
  });
  return server;
}

describe('openReusePortListener', () => {
  it('opens two listening sockets on one port; net.Server accepts on them and closes the fd', async () => {
    const first = openReusePortListener('127.0.0.1', 0);
    const s1 = await serve(first);
    const port = (s1.address() as AddressInfo).port;
    const second = openReusePortListener('127.0.0.1', port);
    const s2 = await serve(second);
    expect((s2.address() as AddressInfo).port).toBe(port);
    const reply = await new Promise<string>((resolve, reject) => {
      const c = net.connect(port, '127.0.0.1');
      let text = '';
      c.on('data', (d: Buffer) => (text += d.toString()));
      c.on('end', () => resolve(text));
      c.on('error', reject);
    });
    expect(reply).toBe('hi');
    await new Promise<void>((r) => s1.close(() => r()));
    await new Promise<void>((r) => s2.close(() => r()));
    expect(isOpen(first) || isOpen(second), 'closing the server closed the adopted fd').toBe(false);
  });

  it('refuses a port another socket holds without SO_REUSEPORT, with EADDRINUSE and the address', async () => {
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => r()));
    const port = (holder.address() as AddressInfo).port;
    try {
      expect(() => openReusePortListener('127.0.0.1', port)).toThrow(expect.objectContaining({ code: 'EADDRINUSE', message: expect.stringContaining(`bind for 127.0.0.1:${port}`) }));
    } finally {
      await new Promise<void>((r) => holder.close(() => r()));
    }
  });

  it('opens IPv6 and explains bad arguments', () => {
    const fd = openReusePortListener('::1', 0);
    expect(fd).toBeGreaterThan(2);
    new net.Server().listen({ fd }).close();
    expect(() => openReusePortListener('localhost', 1)).toThrow(expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining('address for localhost:1') }));
    expect(() => openReusePortListener('127.0.0.1', 70_000)).toThrow(RangeError);
    expect(() => (openReusePortListener as (h: unknown, p: unknown) => number)(1, 'x')).toThrow(TypeError);
  });
});
