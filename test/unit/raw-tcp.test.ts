// The raw libuv TCP layer under the passthrough relay (src/data-plane/passthrough/raw-tcp.ts),
// without a network: it loads against this Node's internal bindings (importing it is the shape
// check), reads libuv statuses as Node does, and always consumes the fd it is given to listen on.
// Bytes and FIN over real loopback sockets are test/integration/raw-tcp.test.ts.
import { describe, expect, it } from 'vitest';
import { fstatSync, openSync } from 'node:fs';
import * as tcp from '../../src/data-plane/passthrough/raw-tcp.js';
import { sweepTickMs } from '../../src/data-plane/passthrough/listener.js';

describe('raw TCP handles', () => {
  it('consumes the fd it was given even when listening fails', () => {
    const fd = openSync('/dev/null', 'r');
    expect(() => tcp.listenOnFd(fd, 16, () => {})).toThrow(/fd \d+: E[A-Z]+/);
    expect(() => fstatSync(fd)).toThrow(/EBADF/);
  });

  it('reads libuv statuses as Node does: bytes, EOF, an empty read (not an end), errors', () => {
    const binding = (process as unknown as { binding(n: string): { streamBaseState: Int32Array; kReadBytesOrError: number; kArrayBufferOffset: number } }).binding('stream_wrap');
    const state = binding.streamBaseState;
    const saved = [state[binding.kReadBytesOrError]!, state[binding.kArrayBufferOffset]!];
    try {
      state[binding.kReadBytesOrError] = 3;
      state[binding.kArrayBufferOffset] = 1;
      expect([...tcp.readBytes(Uint8Array.of(9, 1, 2, 3, 9).buffer)!]).toEqual([1, 2, 3]);
      state[binding.kReadBytesOrError] = 0;
      expect(tcp.readBytes(new ArrayBuffer(8))).toBeNull();
      expect(tcp.readStatus()).toBe(tcp.READ_NOTHING);
      state[binding.kReadBytesOrError] = -4095; // UV_EOF
      expect(tcp.readStatus()).toBe(tcp.READ_EOF);
      state[binding.kReadBytesOrError] = -104; // ECONNRESET
      expect(tcp.readStatus()).toBe(-104);
      expect(tcp.uvError(-104, 'read').code).toBe('ECONNRESET');
    } finally {
      state[binding.kReadBytesOrError] = saved[0]!;
      state[binding.kArrayBufferOffset] = saved[1]!;
    }
  });

  it('sweeps at a tenth of the shortest deadline, within 5..100 ms', () => {
    expect(sweepTickMs([5_000, 3_000, 300_000, 1_000])).toBe(100);
    expect(sweepTickMs([5_000, 300, 300_000, 1_000])).toBe(30);
    expect(sweepTickMs([1, 3_000])).toBe(5);
  });
});
