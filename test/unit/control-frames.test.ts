// Control-channel frames (src/control/frames.ts): round trips, the MAC over every byte, the
// direction bit, truncation and size limits, body checks after the MAC, native/reference
// interchangeability, and the agent key file.
import { randomBytes } from 'node:crypto';
import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';

import {
  FrameError,
  MAC_BYTES,
  MAX_FRAME_BYTES,
  NONCE_BYTES,
  encodeFrame,
  framePool,
  openFrame,
  parseAgentKeys,
  type AgentMessage,
  type BalancerMessage,
  type Direction,
} from '../../src/control/frames.js';
import { hmacSha256, hmacVerify } from '../../src/native/index.js';
import { referenceHmacSha256, referenceHmacVerify } from '../../src/native/reference.js';

const key = randomBytes(32);
const otherKey = randomBytes(32);
const sign = referenceHmacSha256;
const verify = referenceHmacVerify;

function announce(): AgentMessage {
  return { type: 'announce', id: 'app1', pool: 'web', address: '10.0.0.5', port: 8000, weight: 3, ts: Date.now(), nonce: randomBytes(NONCE_BYTES) };
}

function ack(ref: Uint8Array): BalancerMessage {
  return { type: 'ack', ref, ts: Date.now(), nonce: randomBytes(NONCE_BYTES), state: 'active', address: '10.0.0.5', port: 8000 };
}

/** The FrameError `fn` throws; fails the test on success or on any other exception. */
function frameErrorOf(fn: () => unknown): FrameError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  if (thrown === undefined) throw new Error('expected a FrameError but nothing was thrown');
  if (!(thrown instanceof FrameError)) throw new Error(`expected a FrameError but got ${String(thrown)}`, { cause: thrown });
  return thrown;
}

/** A frame with a valid MAC over an arbitrary body, to reach the checks made after the MAC. */
function frameWithBody(dir: Direction, pool: string, body: Uint8Array): Buffer {
  const poolBytes = Buffer.from(pool, 'latin1');
  const head = Buffer.from([1, poolBytes.length, ...poolBytes]);
  const mac = sign(key, Buffer.concat([Buffer.from('tether-control', 'latin1'), Buffer.from(dir, 'latin1'), head, body]));
  return Buffer.concat([head, mac, body]);
}

describe('control frames', () => {
  it('round-trips an agent message and a balancer reply', () => {
    const msg = announce();
    const frame = encodeFrame('A', 'web', key, msg, sign);
    expect(framePool(frame)).toBe('web');
    const opened = openFrame('A', frame, key, verify);
    expect(opened).toEqual({ ...msg, nonce: Buffer.from(msg.nonce) });
    expect(typeof opened.ts).toBe('number');

    const reply = ack(msg.nonce);
    const replyFrame = encodeFrame('B', 'web', key, reply, sign);
    const openedReply = openFrame('B', replyFrame, key, verify);
    expect(openedReply).toEqual({ ...reply, ref: Buffer.from(msg.nonce), nonce: Buffer.from(reply.nonce) });

    // A plain Uint8Array view (not a Buffer, not at offset 0) opens the same way (byte fields
    // then come back as Uint8Array rather than Buffer).
    const copy = new Uint8Array(frame.length + 7);
    copy.set(frame, 7);
    const fromView = openFrame('A', copy.subarray(7), key, verify);
    expect(fromView.nonce).toBeInstanceOf(Uint8Array);
    expect({ ...fromView, nonce: Buffer.from(fromView.nonce) }).toEqual(opened);
  });

  it('draws the header as documented: version, pool length, pool, 32-byte MAC, body', () => {
    const frame = encodeFrame('A', 'pool-9', key, announce(), sign);
    expect(frame[0]).toBe(1);
    expect(frame[1]).toBe(6);
    expect(frame.subarray(2, 8).toString('latin1')).toBe('pool-9');
    expect(frame.length).toBeGreaterThan(2 + 6 + MAC_BYTES);
  });

  it('rejects a change to any byte, as bad_mac or malformed', () => {
    const frame = encodeFrame('A', 'web', key, announce(), sign);
    const problems = new Set<string>();
    for (let i = 0; i < frame.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = Buffer.from(frame);
        bad[i]! ^= mask;
        const err = frameErrorOf(() => openFrame('A', bad, key, verify));
        expect(['bad_mac', 'malformed'], `byte ${i} ^ ${mask}`).toContain(err.problem);
        problems.add(err.problem);
      }
    }
    // Both outcomes occur: header damage is malformed, the rest fails the MAC.
    expect([...problems].sort()).toEqual(['bad_mac', 'malformed']);
  });

  it("never accepts an agent's frame as the balancer's, or the reverse", () => {
    const a = encodeFrame('A', 'web', key, announce(), sign);
    const b = encodeFrame('B', 'web', key, ack(randomBytes(16)), sign);
    expect(frameErrorOf(() => openFrame('B', a, key, verify)).problem).toBe('bad_mac');
    expect(frameErrorOf(() => openFrame('A', b, key, verify)).problem).toBe('bad_mac');
  });

  it('rejects a frame under another key as bad_mac', () => {
    const frame = encodeFrame('A', 'web', key, announce(), sign);
    expect(frameErrorOf(() => openFrame('A', frame, otherKey, verify)).problem).toBe('bad_mac');
  });

  it('refuses to build an oversized frame and rejects receiving one before reading it', () => {
    const big = { ...announce(), address: 'x'.repeat(MAX_FRAME_BYTES) };
    expect(() => encodeFrame('A', 'web', key, big, sign)).toThrow(RangeError);
    // The largest body that fits is accepted; one byte more is oversized.
    const fitting = frameWithBody('A', 'web', Buffer.from(pack({ ...announce(), pad: '' })));
    const room = MAX_FRAME_BYTES - fitting.length;
    const atLimit = frameWithBody('A', 'web', Buffer.from(pack({ ...announce(), pad: 'p'.repeat(room - 2) })));
    expect(atLimit.length).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    expect(openFrame('A', atLimit, key, verify).type).toBe('announce');
    const over = Buffer.concat([atLimit, Buffer.alloc(MAX_FRAME_BYTES + 1 - atLimit.length)]);
    expect(over.length).toBe(MAX_FRAME_BYTES + 1);
    expect(frameErrorOf(() => framePool(over)).problem).toBe('oversized');
    expect(frameErrorOf(() => openFrame('A', over, key, verify)).problem).toBe('oversized');
  });

  it('rejects every truncation with a FrameError, never another exception', () => {
    const frame = encodeFrame('A', 'web', key, announce(), sign);
    for (let len = 0; len < frame.length; len++) {
      const err = frameErrorOf(() => openFrame('A', frame.subarray(0, len), key, verify));
      expect(err.problem, `length ${len}`).toBe(len < 2 + 3 + MAC_BYTES + 1 ? 'malformed' : 'bad_mac');
    }
  });

  it('rejects headers it cannot read: version, pool length, pool name', () => {
    const frame = encodeFrame('A', 'web', key, announce(), sign);
    const withByte = (i: number, v: number): Buffer => {
      const b = Buffer.from(frame);
      b[i] = v;
      return b;
    };
    expect(frameErrorOf(() => framePool(withByte(0, 2))).message).toMatch(/version 2/);
    expect(frameErrorOf(() => framePool(withByte(1, 0))).problem).toBe('malformed');
    expect(frameErrorOf(() => framePool(withByte(1, 65))).problem).toBe('malformed');
    expect(frameErrorOf(() => framePool(withByte(2, '-'.charCodeAt(0)))).problem).toBe('malformed');
    expect(frameErrorOf(() => framePool(withByte(3, 0xe9))).problem).toBe('malformed');
  });

  it('rejects authenticated bodies that are not a map with type, ts and a 16-byte nonce (bad_body)', () => {
    const nonce = randomBytes(NONCE_BYTES);
    const bodies: [string, Uint8Array][] = [
      ['not msgpack (truncated map)', Buffer.from([0x83, 0xa4])],
      ['trailing bytes', Buffer.concat([pack({ type: 'heartbeat', ts: 1, nonce }), Buffer.from([0xc0])])],
      ['an array', pack(['heartbeat', 1, nonce])],
      ['a string', pack('heartbeat')],
      ['nil', pack(null)],
      ['bytes', pack(randomBytes(20))],
      ['no type', pack({ ts: 1, nonce })],
      ['numeric type', pack({ type: 7, ts: 1, nonce })],
      ['no ts', pack({ type: 'heartbeat', nonce })],
      ['string ts', pack({ type: 'heartbeat', ts: '1', nonce })],
      ['NaN ts', pack({ type: 'heartbeat', ts: NaN, nonce })],
      ['no nonce', pack({ type: 'heartbeat', ts: 1 })],
      ['15-byte nonce', pack({ type: 'heartbeat', ts: 1, nonce: nonce.subarray(0, 15) })],
      ['17-byte nonce', pack({ type: 'heartbeat', ts: 1, nonce: Buffer.concat([nonce, Buffer.from([0])]) })],
      ['string nonce', pack({ type: 'heartbeat', ts: 1, nonce: nonce.toString('hex') })],
    ];
    for (const [what, body] of bodies) {
      const err = frameErrorOf(() => openFrame('A', frameWithBody('A', 'web', body), key, verify));
      expect(err.problem, what).toBe('bad_body');
    }
    // The same bodies under a wrong MAC fail the MAC first: nothing is decoded unauthenticated.
    for (const [what, body] of bodies) {
      const err = frameErrorOf(() => openFrame('A', frameWithBody('A', 'web', body), otherKey, verify));
      expect(err.problem, what).toBe('bad_mac');
    }
    expect(openFrame('A', frameWithBody('A', 'web', pack({ type: 'heartbeat', ts: 1, nonce })), key, verify).type).toBe('heartbeat');
  });

  it('frames from the native and reference HMAC are identical and open under either', () => {
    for (let i = 0; i < 50; i++) {
      const msg = { ...announce(), port: 1 + i };
      const native = encodeFrame('A', 'web', key, msg, hmacSha256);
      const reference = encodeFrame('A', 'web', key, msg, referenceHmacSha256);
      expect(native.equals(reference)).toBe(true);
      expect(openFrame('A', native, key, referenceHmacVerify)).toEqual(openFrame('A', reference, key, hmacVerify));
      const reply = encodeFrame('B', 'web', key, ack(msg.nonce), hmacSha256);
      expect(openFrame('B', reply, key, referenceHmacVerify).type).toBe('ack');
      const bad = Buffer.from(reply);
      bad[bad.length - 1]! ^= 1;
      expect(frameErrorOf(() => openFrame('B', bad, key, hmacVerify)).problem).toBe('bad_mac');
      expect(frameErrorOf(() => openFrame('B', bad, key, referenceHmacVerify)).problem).toBe('bad_mac');
    }
  });
});

describe('parseAgentKeys', () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);

  it('reads pool lines, comments, blank lines, CRLF and upper-case hex', () => {
    const text = ['# agent keys', '', `web ${k1.toString('hex')}   # the web pool`, `api.v2\t${k2.toString('hex').toUpperCase()}`, '  # end', ''].join('\r\n');
    const keys = parseAgentKeys(text, 'agent.keys');
    expect([...keys.keys()]).toEqual(['web', 'api.v2']);
    expect(keys.get('web')).toEqual(k1);
    expect(keys.get('api.v2')).toEqual(k2);
  });

  it("reads a bare key as the '*' key", () => {
    const keys = parseAgentKeys(`${k1.toString('hex')}\n`, 'agent.key');
    expect([...keys.entries()]).toEqual([['*', k1]]);
  });

  it('names every bad line: duplicate pool, bad hex, bad pool name, extra fields', () => {
    const text = [
      `web ${k1.toString('hex')}`, // 1 ok
      `web ${k2.toString('hex')}`, // 2 duplicate
      `api ${k1.toString('hex').slice(0, 62)}`, // 3 short
      `api ${k1.toString('hex').slice(0, 63)}g`, // 4 not hex
      `-web ${k1.toString('hex')}`, // 5 bad pool name
      `api ${k1.toString('hex')} extra`, // 6 extra field
      `${k1.toString('hex')}`, // 7 bare: '*' (ok)
      `* ${k2.toString('hex')}`, // 8 a second '*'
    ].join('\n');
    let message = '';
    try {
      parseAgentKeys(text, 'keys.txt');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^agent key file keys\.txt is invalid:/);
    expect(message).toContain("keys.txt:2: a second key for pool 'web'");
    expect(message).toContain('keys.txt:3: expected');
    expect(message).toContain('keys.txt:4: expected');
    expect(message).toContain("keys.txt:5: '-web' is not a pool name");
    expect(message).toContain('keys.txt:6: expected');
    expect(message).toContain("keys.txt:8: a second key for pool '*'");
    expect(message).not.toContain('keys.txt:1:');
    expect(message).not.toContain('keys.txt:7:');
  });

  it('refuses a file without keys', () => {
    expect(() => parseAgentKeys('# nothing here\n\n', 'empty.keys')).toThrow('agent key file empty.keys holds no key');
  });
});
