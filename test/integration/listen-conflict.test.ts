// Start-up failure on a port that is already taken: a clean, prompt exit with a message naming
// the address — not a V8/libuv abort (a worker thread exiting with uWS sockets open used to take
// the process down) and not a restart loop.
import net from 'node:net';
import { expect, it } from 'vitest';
import { runToExit } from '../helpers/tether.js';

it('a taken --listen port: exit code 1 within the deadline, TETHER_ERR_LISTEN naming the address', async () => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', () => resolve()));
  const port = (holder.address() as net.AddressInfo).port;
  try {
    const result = await runToExit(['--listen', `127.0.0.1:${port}`, '--admin', 'off', '--workers', '2', '--no-demo', '--backend', 'a=127.0.0.1:1']);
    expect(result.code, result.out).toBe(1);
    expect(result.out).toContain('TETHER_ERR_LISTEN');
    expect(result.out).toContain(`127.0.0.1:${port}`);
    expect(result.out).not.toMatch(/Assertion failed|Aborted|uv_loop_close/);
  } finally {
    holder.close();
  }
});

it('a second Tether on the port a running one holds is refused, not silently sharing it', async () => {
  const { startTether } = await import('../helpers/tether.js');
  const first = await startTether(['--no-demo', '--backend', 'a=127.0.0.1:1'], { workers: 2 });
  try {
    const result = await runToExit(['--listen', `127.0.0.1:${first.port}`, '--admin', 'off', '--workers', '1', '--no-demo', '--backend', 'a=127.0.0.1:1']);
    expect(result.code, result.out).toBe(1);
    expect(result.out).toContain('already in use by another process');
    expect(first.proc.exitCode).toBeNull();
  } finally {
    expect(await first.stop()).toBe(0);
  }
});

// Issue #17 (1b): every kind of listener refuses a port another process holds, with the same
// error. The holder is a plain socket without SO_REUSEPORT, like most other programs' listeners.
it.each([
  ['--listen (HTTP)', (port: number) => ['--listen', `127.0.0.1:${port}`, '--admin', 'off']],
  ['--passthrough', (port: number) => ['--listen', '127.0.0.1:0', '--admin', 'off', '--passthrough', `127.0.0.1:${port}`, '--sni', 'a.test=default']],
  ['--admin', (port: number) => ['--listen', '127.0.0.1:0', '--admin', `127.0.0.1:${port}`]],
])('a port held by another process, given to %s: exit 1 with "already in use by another process"', async (_kind, flags) => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', () => resolve()));
  const port = (holder.address() as net.AddressInfo).port;
  try {
    const result = await runToExit([...flags(port), '--workers', '1', '--no-demo', '--backend', 'a=127.0.0.1:1']);
    expect(result.code, result.out).toBe(1);
    expect(result.out).toContain('TETHER_ERR_LISTEN');
    expect(result.out).toContain(`127.0.0.1:${port}`);
    expect(result.out).toContain('already in use by another process');
  } finally {
    holder.close();
  }
});
