// `tether agent` (src/control/agent.ts) without a balancer: the interface snapshot it watches,
// durations, its flags, and exit status 2 naming the flag or key file at fault. The agent
// announcing to a balancer over a real WebSocket is in test/integration/control-sdk.test.ts.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { NetworkInterfaceInfo } from 'node:os';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { interfaceSnapshot, parseAgentFlags, parseDuration, runAgent } from '../../src/control/agent.js';

const KEY = randomBytes(32);

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const fn of cleanups.splice(0).reverse()) fn();
});

describe('tether agent', () => {
  const iface = (address: string, family: 'IPv4' | 'IPv6' = 'IPv4', internal = false): NetworkInterfaceInfo =>
    ({ address, family, internal, netmask: family === 'IPv4' ? '255.255.255.0' : 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', cidr: `${address}/${family === 'IPv4' ? 24 : 64}`, ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as NetworkInterfaceInfo;

  it('snapshots interfaces independently of order, ignoring loopback and MAC addresses', () => {
    const a = { lo: [iface('127.0.0.1', 'IPv4', true)], eth0: [iface('10.0.0.5'), iface('fe80::1', 'IPv6')], wlan0: [iface('192.168.1.9')] };
    const b = { wlan0: [iface('192.168.1.9')], eth0: [iface('fe80::1', 'IPv6'), { ...iface('10.0.0.5'), mac: '11:22:33:44:55:66' }] };
    expect(interfaceSnapshot(a)).toBe(interfaceSnapshot(b));
    expect(interfaceSnapshot(a)).toBe('eth0 IPv4 10.0.0.5/24\neth0 IPv6 fe80::1/64\nwlan0 IPv4 192.168.1.9/24');
    expect(interfaceSnapshot({ ...a, eth0: [iface('10.0.0.6')] })).not.toBe(interfaceSnapshot(a));
    expect(interfaceSnapshot({ lo: a.lo })).toBe('');
    expect(interfaceSnapshot({ eth0: [{ ...iface('10.0.0.5'), cidr: null }] })).toBe('eth0 IPv4 10.0.0.5/255.255.255.0');
  });

  it('parses durations', () => {
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('750')).toBe(750);
    for (const bad of ['', 's', '5 m', '-5s', '1.5', '5m', '0x10']) expect(parseDuration(bad), bad).toBeNull();
  });

  it('parses flags and names the bad one', () => {
    const required = ['--control', 'ws://lb:9090/control', '--pool', 'web', '--id', 'app1', '--port', '8000', '--key-file', 'agent.key'];
    expect(parseAgentFlags([...required, '--heartbeat', '2s', '--weight', '3', '--address', '10.0.0.5'])).toMatchObject({
      help: false,
      keyFile: 'agent.key',
      options: { url: 'ws://lb:9090/control', pool: 'web', id: 'app1', port: 8000, heartbeatMs: 2000, weight: 3, address: '10.0.0.5' },
    });
    expect(parseAgentFlags(['--help'])).toEqual({ help: true });
    const bad: [string[], RegExp][] = [
      [required.slice(2), /--control is required/],
      [required.slice(0, 8), /--key-file is required/],
      [[...required, '--port', 'eighty'], /--port: expected an integer 1-65535 but received 'eighty'/],
      [[...required, '--port', '70000'], /--port: expected an integer 1-65535/],
      [[...required, '--heartbeat', '5m'], /--heartbeat: expected a duration/],
      [[...required, '--heartbeat', '1ms'], /--heartbeat: expected a duration/],
      [[...required, '--weight=-1'], /--weight: expected an integer 0-1000/],
      [[...required, '--weight', '1001'], /--weight: expected an integer 0-1000/],
      [[...required, '--address', 'host.example'], /--address: expected an IPv4 or IPv6 address/],
      [[...required, '--control', 'http://lb/control'], /--control: expected a ws:\/\/ or wss:\/\/ URL/],
      [[...required, '--pool', 'a b'], /--pool: expected a pool name/],
      [[...required, '--frobnicate'], /'--frobnicate'/],
      [[...required, 'stray'], /'stray'/],
    ];
    for (const [argv, message] of bad) expect(() => parseAgentFlags(argv), argv.join(' ')).toThrow(message);
  });

  function tempDir(): string {
    const dir = mkdtempSync(path.join(tmpdir(), 'tether-agent-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  it('exits 2 naming the flag for bad flags and key files', async () => {
    const dir = tempDir();
    const otherPool = path.join(dir, 'other.keys');
    writeFileSync(otherPool, `api ${KEY.toString('hex')}\n`);
    const badFile = path.join(dir, 'bad.keys');
    writeFileSync(badFile, 'web nothex\n');
    const base = ['--control', 'ws://127.0.0.1:1/control', '--pool', 'web', '--id', 'app1', '--port', '8000'];
    const cases: [string[], RegExp][] = [
      [['--pool', 'web'], /^tether agent: --control is required/],
      [[...base, '--key-file', path.join(dir, 'missing.keys')], /--key-file: cannot read .*missing\.keys/],
      [[...base, '--key-file', otherPool], /--key-file: .*other\.keys has no key for pool 'web'/],
      [[...base, '--key-file', badFile], /--key-file: agent key file .*bad\.keys is invalid:\n {2}.*bad\.keys:1:/],
    ];
    for (const [argv, message] of cases) {
      let err = '';
      expect(await runAgent(argv, { stderr: (t) => (err += t) }), argv.join(' ')).toBe(2);
      expect(err).toMatch(message);
    }
  });
});
