// Session binding policies (src/sticky/binding.ts) and their configuration: parsing with
// clear errors, addresses (IPv4, IPv6, IPv4-mapped, zones), masks, the token and table tags
// and their comparisons, and the flags/config file that set them.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import {
  compareTableTag,
  compareTokenTag,
  describeTableTag,
  describeTokenTag,
  formatBindPolicy,
  parseBindPolicy,
  parseIp,
  tableBindFlags,
  TerminalCache,
  terminalOf,
  type BindPolicy,
} from '../../src/sticky/binding.js';
import { loadConfig } from '../../src/config/load.js';

const policy = (text: string): BindPolicy => {
  const p = parseBindPolicy(text);
  if (typeof p === 'string') throw new Error(p);
  return p;
};

describe('bind policies', () => {
  it('parses every form, with the documented defaults', () => {
    expect(policy('none')).toEqual({ kind: 'none', v4Bits: 32, v6Bits: 128, header: '' });
    expect(policy('ip')).toEqual({ kind: 'ip', v4Bits: 32, v6Bits: 128, header: '' });
    expect(policy('subnet')).toEqual({ kind: 'subnet', v4Bits: 24, v6Bits: 64, header: '' });
    expect(policy('subnet:16')).toEqual({ kind: 'subnet', v4Bits: 16, v6Bits: 64, header: '' });
    expect(policy('subnet:16,48')).toEqual({ kind: 'subnet', v4Bits: 16, v6Bits: 48, header: '' });
    expect(policy('header:X-Device-Id')).toEqual({ kind: 'header', v4Bits: 32, v6Bits: 128, header: 'x-device-id' });
    expect(formatBindPolicy(policy('subnet'))).toBe('subnet:24,64');
    expect(formatBindPolicy(policy('header:X-Device-Id'))).toBe('header:x-device-id');
  });

  it('explains what is wrong with a bad one', () => {
    expect(parseBindPolicy('ipv4')).toMatch(/expected a bind policy none, ip, subnet\[:V4\[,V6\]\] or header:NAME but received 'ipv4'/);
    expect(parseBindPolicy('ip:1')).toMatch(/'ip' takes no argument/);
    expect(parseBindPolicy('subnet:33')).toMatch(/1-32 and 1-128 bits .* received 'subnet:33'/);
    expect(parseBindPolicy('subnet:24,129')).toMatch(/received 'subnet:24,129'/);
    expect(parseBindPolicy('subnet:x')).toMatch(/received 'subnet:x'/);
    expect(parseBindPolicy('header:')).toMatch(/expected header:NAME/);
    expect(parseBindPolicy('header:a b')).toMatch(/expected header:NAME/);
  });
});

describe('addresses', () => {
  it('parses IPv4, IPv6 (compressed, full, zoned) and treats IPv4-mapped IPv6 as IPv4', () => {
    expect([...parseIp('10.1.2.3')!]).toEqual([10, 1, 2, 3]);
    expect([...parseIp('::ffff:10.1.2.3')!]).toEqual([10, 1, 2, 3]);
    expect([...parseIp('0000:0000:0000:0000:0000:ffff:0a01:0203')!]).toEqual([10, 1, 2, 3]);
    expect([...parseIp('::1')!]).toEqual([...Array(15).fill(0), 1]);
    expect([...parseIp('2001:db8::1:2')!]).toEqual([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
    expect([...parseIp('fe80::1%eth0')!].slice(0, 2)).toEqual([0xfe, 0x80]);
    expect(parseIp('not an ip')).toBeNull();
    expect(parseIp('')).toBeNull();
  });
});

describe('terminals and tags', () => {
  it('ip: an IPv4 client is recorded raw, readable, and compared exactly', () => {
    const p = policy('ip');
    const a = terminalOf(p, '127.0.0.2', '');
    expect(a.label).toBe('127.0.0.2');
    expect(describeTokenTag(a.tokenFlags, a.tokenTag)).toBe('127.0.0.2');
    expect(describeTableTag(tableBindFlags(p), a.tableTag)).toBe('127.0.0.2');
    expect(compareTokenTag(p, a.tokenFlags, a.tokenTag, terminalOf(p, '127.0.0.2', ''))).toBe('match');
    expect(compareTokenTag(p, a.tokenFlags, a.tokenTag, terminalOf(p, '127.0.0.3', ''))).toBe('mismatch');
    expect(compareTableTag(p, tableBindFlags(p), a.tableTag, terminalOf(p, '127.0.0.3', ''))).toBe('mismatch');
    expect(compareTableTag(p, tableBindFlags(p), a.tableTag, terminalOf(p, '127.0.0.2', ''))).toBe('match');
  });

  it('subnet: the same /24 (or /64) matches, the next one does not', () => {
    const p = policy('subnet');
    const a = terminalOf(p, '10.1.2.3', '');
    expect(a.label).toBe('10.1.2.0/24');
    expect(describeTokenTag(a.tokenFlags, a.tokenTag)).toBe('10.1.2.0/24');
    expect(compareTokenTag(p, a.tokenFlags, a.tokenTag, terminalOf(p, '10.1.2.250', ''))).toBe('match');
    expect(compareTokenTag(p, a.tokenFlags, a.tokenTag, terminalOf(p, '10.1.3.3', ''))).toBe('mismatch');
    const v6 = terminalOf(p, '2001:db8:0:1::5', '');
    expect(v6.label).toBe('2001:db8:0:1::/64');
    expect(compareTokenTag(p, v6.tokenFlags, v6.tokenTag, terminalOf(p, '2001:db8:0:1:ffff::9', ''))).toBe('match');
    expect(compareTokenTag(p, v6.tokenFlags, v6.tokenTag, terminalOf(p, '2001:db8:0:2::5', ''))).toBe('mismatch');
    expect(compareTableTag(p, tableBindFlags(p), v6.tableTag, terminalOf(p, '2001:db8:0:1::77', ''))).toBe('match');
    // Recorded from IPv4, presented from IPv6: another terminal.
    expect(compareTokenTag(p, a.tokenFlags, a.tokenTag, v6)).toBe('mismatch');
    const narrow = policy('subnet:16,48');
    expect(terminalOf(narrow, '10.1.2.3', '').label).toBe('10.1.0.0/16');
  });

  it('header: the device id decides, whatever the address; absent is a value of its own', () => {
    const p = policy('header:X-Device-Id');
    const a = terminalOf(p, '127.0.0.2', 'phone-A');
    expect(a.label).toBe('x-device-id=phone-A');
    expect(compareTokenTag(p, a.tokenFlags, a.tokenTag, terminalOf(p, '10.9.9.9', 'phone-A'))).toBe('match');
    expect(compareTokenTag(p, a.tokenFlags, a.tokenTag, terminalOf(p, '127.0.0.2', 'phone-B'))).toBe('mismatch');
    expect(compareTokenTag(p, a.tokenFlags, a.tokenTag, terminalOf(p, '127.0.0.2', ''))).toBe('mismatch');
    expect(terminalOf(p, '127.0.0.2', '').label).toBe('x-device-id=(absent)');
    expect(terminalOf(p, '127.0.0.2', 'x'.repeat(100)).label).toBe(`x-device-id=${'x'.repeat(64)}…`);
    expect(describeTokenTag(a.tokenFlags, a.tokenTag)).toMatch(/^header hash [0-9a-f]{16}$/);
  });

  it('does not compare a session recorded under no policy or another one', () => {
    const ip = policy('ip');
    const subnet = policy('subnet');
    const a = terminalOf(ip, '127.0.0.2', '');
    expect(compareTokenTag(ip, 0, new Uint8Array(8), terminalOf(ip, '127.0.0.3', ''))).toBe('unbound');
    expect(compareTokenTag(subnet, a.tokenFlags, a.tokenTag, terminalOf(subnet, '127.0.0.3', ''))).toBe('unbound');
    expect(compareTableTag(subnet, tableBindFlags(ip), a.tableTag, terminalOf(subnet, '127.0.0.3', ''))).toBe('unbound');
    expect(compareTableTag(ip, 0, a.tableTag, terminalOf(ip, '127.0.0.3', ''))).toBe('unbound');
  });

  it('caches terminals per client address (or device id), same answers', () => {
    const cache = new TerminalCache(policy('ip'));
    const first = cache.get('127.0.0.2', '');
    expect(cache.get('127.0.0.2', '')).toBe(first);
    expect(cache.get('127.0.0.3', '').label).toBe('127.0.0.3');
    const devices = new TerminalCache(policy('header:x-device-id'));
    expect(devices.get('127.0.0.2', 'a')).toBe(devices.get('127.0.0.9', 'a'));
  });
});

describe('listeners', () => {
  it('--listen off leaves only the passthrough listener, and refuses to listen on nothing', () => {
    const { config } = loadConfig(['--listen', 'off', '--backend', 'tls/t1=10.0.0.5:443', '--passthrough', '127.0.0.1:8443', '--sni', '*=tls'], {});
    expect(config.listen).toEqual([]);
    expect(config.passthrough.listen).toEqual([{ host: '127.0.0.1', port: 8443 }]);
    expect(() => loadConfig(['--listen', 'off', '--backend', 'a=10.0.0.5:80'], {})).toThrow(/nothing to listen on: --listen off needs a passthrough listener/);
    // off, then an address: the address.
    expect(loadConfig(['--listen', 'off', '--listen', '127.0.0.1:81', '--backend', 'a=10.0.0.5:80'], {}).config.listen).toEqual([{ host: '127.0.0.1', port: 81, protocol: 'http', redirect: null }]);
  });
});

describe('session configuration', () => {
  it('reads --sticky learn:, --bind and --table-size, and explains mistakes', () => {
    const { config } = loadConfig(['--backend', 'shop/s1=10.0.0.5:80', '--sticky', 'shop/learn:JSESSIONID', '--bind', 'shop/subnet:16', '--table-size', '5000'], {});
    expect(config.pools.shop!.sticky).toEqual({ mode: 'learn', cookie: 'JSESSIONID', ttlSec: 3600 });
    expect(config.pools.shop!.bind).toBe('subnet:16');
    expect(config.tableSize).toBe(5000);
    expect(() => loadConfig(['--backend', 'a=10.0.0.5:80', '--sticky', 'learn'], {})).toThrow(/learn mode needs the application's session cookie name/);
    expect(() => loadConfig(['--backend', 'a=10.0.0.5:80', '--bind', 'subnet:40'], {})).toThrow(/--bind: .*1-32 and 1-128 bits/);
    expect(() => loadConfig(['--backend', 'a=10.0.0.5:80', '--table-size', '10'], {})).toThrow(/tableSize: Too small: expected number to be >=1024/);
  });

  it('reads them from the config file, where a bad policy is refused with its path', () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'tether-bind-config-'));
    try {
      const path = join(dir, 'tether.yaml');
      writeFileSync(path, 'tableSize: 2000\npools:\n  shop:\n    sticky: { mode: learn, cookie: SID, ttlSec: 600 }\n    bind: "header:X-Device-Id"\n    backends: [{ id: s1, address: 10.0.0.5, port: 80 }]\n');
      const { config } = loadConfig(['--config', path], {});
      expect(config.pools.shop).toMatchObject({ sticky: { mode: 'learn', cookie: 'SID', ttlSec: 600 }, bind: 'header:X-Device-Id' });
      writeFileSync(path, 'pools:\n  shop:\n    bind: sometimes\n    backends: [{ id: s1, address: 10.0.0.5, port: 80 }]\n');
      expect(() => loadConfig(['--config', path], {})).toThrow(/pools\.shop\.bind: expected a bind policy .* received 'sometimes'/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
