// Counting the HTTP listeners' client connections from /proc/net/tcp{,6}: the kernel's text
// format parsed by hand (synthetic lines). The same count for real loopback sockets is
// test/integration/tcp-connections.test.ts.
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { countIn, testing } from '../../src/orchestrator/tcp-connections.js';

const LE = os.endianness() === 'LE';
const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
const line = (local: string, st: string) => `   0: ${local} 0100007F:D431 ${st} 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 30 10 -1\n`;

describe('HTTP connection count from the kernel socket table', () => {
  it('prints addresses as the kernel does (host-order words)', () => {
    expect(testing.procHex4('127.0.0.1')).toBe(LE ? '0100007F' : '7F000001');
    expect(testing.procHex4('0.0.0.0')).toBeNull();
    expect(testing.procHex6('::1')).toBe(LE ? '00000000000000000000000001000000' : '00000000000000000000000000000001');
    expect(testing.procHex6('127.0.0.2')).toBe(LE ? '0000000000000000FFFF00000200007F' : '00000000000000000000FFFF7F000002');
  });

  it('counts ESTABLISHED sockets on the listener address and port only', () => {
    const lo = LE ? '0100007F' : '7F000001';
    const other = LE ? '0200007F' : '7F000002';
    const text = HEADER + line(`${lo}:1F90`, '0A') + line(`${lo}:1F90`, '01') + line(`${lo}:1F90`, '01') + line(`${lo}:1F90`, '06') + line(`${other}:1F90`, '01') + line(`${lo}:1F91`, '01');
    expect(countIn(text, testing.matchers([{ host: '127.0.0.1', port: 8080 }]), false)).toBe(2);
    // A wildcard listener takes any local address on its port.
    expect(countIn(text, testing.matchers([{ host: '0.0.0.0', port: 8080 }]), false)).toBe(3);
    expect(countIn(text, testing.matchers([{ host: '127.0.0.1', port: 8080 }, { host: '127.0.0.1', port: 8081 }]), false)).toBe(3);
    expect(countIn(HEADER, testing.matchers([{ host: '0.0.0.0', port: 8080 }]), false)).toBe(0);
  });
});
