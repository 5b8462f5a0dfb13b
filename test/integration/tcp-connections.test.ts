// Counting the HTTP listeners' client connections from /proc/net/tcp{,6} for real loopback
// sockets (the parsing itself, on synthetic lines, is test/unit/tcp-connections.test.ts).
import net, { type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { countEstablished } from '../../src/orchestrator/tcp-connections.js';

describe('HTTP connection count from the kernel socket table', () => {
  it('matches what is open on real loopback sockets', async () => {
    const server = net.createServer(() => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const clients: net.Socket[] = [];
    try {
      expect(await countEstablished([{ host: '127.0.0.1', port }])).toBe(0);
      for (let i = 0; i < 5; i++) {
        const c = net.connect(port, '127.0.0.1');
        await new Promise<void>((r, j) => c.once('connect', r).once('error', j));
        clients.push(c);
      }
      // Counted on the listener's side only: the clients' own sockets have other local ports.
      expect(await countEstablished([{ host: '127.0.0.1', port }])).toBe(5);
      expect(await countEstablished([{ host: '0.0.0.0', port }])).toBe(5);
      expect(await countEstablished([{ host: '127.0.0.9', port }])).toBe(0);
    } finally {
      for (const c of clients) c.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
