// The control channel's wire format (agents ↔ balancer over the admin listener's /control
// WebSocket), shared by the balancer, the agent and the SDK. Nothing is decoded before its MAC
// has been checked: the pool name travels in clear so the receiver can pick the key first.
//
// One WebSocket binary message = one frame:
//
//    0        1        2             2+P          2+P+32
//   +--------+--------+-------------+------------+----------------------------+
//   | ver=1  | P      | pool (P B)  | mac (32 B) | body: msgpack map          |
//   +--------+--------+-------------+------------+----------------------------+
//
//   P     pool name length, 1..64 (the pool name grammar of the config)
//   mac   HMAC-SHA256(pool's agent key, "tether-control" | dir | ver | P | pool | body)
//   dir   'A' (0x41) agent → balancer, 'B' (0x42) balancer → agent: a balancer's reply can
//         never be reflected back at it as an agent's frame
//   body  a msgpack map with at least `type` (string), `ts` (ms since the Unix epoch) and
//         `nonce` (16 random bytes); the receiver refuses a `ts` outside its window and a
//         nonce it has seen within the window (replay)
//
// Whole frame ≤ MAX_FRAME_BYTES.
import { pack, unpack } from 'msgpackr';
import { parseNamedKeys } from '../config/named-keys.js';

const FRAME_VERSION = 1;
export const MAX_FRAME_BYTES = 4096;
export const MAC_BYTES = 32;
export const NONCE_BYTES = 16;
export const AGENT_KEY_BYTES = 32;
const DOMAIN = Buffer.from('tether-control', 'latin1');
const POOL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export type Direction = 'A' | 'B';
type Sign = (key: Uint8Array, data: Uint8Array) => Uint8Array;
type Verify = (key: Uint8Array, data: Uint8Array, mac: Uint8Array) => boolean;

/** Agent → balancer. */
export type AgentMessage =
  | { type: 'announce'; id: string; pool: string; address: string; port: number; weight: number; ts: number; nonce: Uint8Array }
  | { type: 'heartbeat'; id: string; pool: string; ts: number; nonce: Uint8Array }
  | { type: 'drain'; id: string; pool: string; ts: number; nonce: Uint8Array }
  | { type: 'leave'; id: string; pool: string; ts: number; nonce: Uint8Array };

/**
 * Balancer → agent: `ack`/`refused` answer the agent's frame whose nonce is `ref`; `grant` is
 * unsolicited, a one-time code for this server sealed to it (src/authz/protocol.ts: box =
 * seal(agent key, f, serverBoxInfo(pool, id), ServerGrant)).
 */
export type BalancerMessage =
  | { type: 'ack'; ref: Uint8Array; ts: number; nonce: Uint8Array; state: string; address?: string; port?: number }
  | { type: 'refused'; ref: Uint8Array; ts: number; nonce: Uint8Array; code: string; reason: string }
  | { type: 'grant'; ts: number; nonce: Uint8Array; f: Uint8Array; box: Uint8Array };

/** Why a frame was dropped (also the `result` label of tether_control_frames_total). */
type FrameProblem = 'oversized' | 'malformed' | 'unknown_pool' | 'bad_mac' | 'bad_body';

export class FrameError extends Error {
  constructor(readonly problem: FrameProblem, message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

function macInput(dir: Direction, head: Uint8Array, body: Uint8Array): Buffer {
  return Buffer.concat([DOMAIN, Buffer.from(dir, 'latin1'), head, body]);
}

/** Builds a frame: `msg` is msgpack-encoded and MACed under `key` for `pool`. */
export function encodeFrame(dir: Direction, pool: string, key: Uint8Array, msg: object, sign: Sign): Buffer {
  if (!POOL_NAME.test(pool)) throw new RangeError(`expected a pool name of 1-64 letters, digits, '.', '_' or '-' but received ${JSON.stringify(pool)}`);
  const poolBytes = Buffer.from(pool, 'latin1');
  const head = Buffer.concat([Buffer.from([FRAME_VERSION, poolBytes.length]), poolBytes]);
  const body = pack(msg);
  const frame = Buffer.concat([head, sign(key, macInput(dir, head, body)), body]);
  if (frame.length > MAX_FRAME_BYTES) throw new RangeError(`a control frame is at most ${MAX_FRAME_BYTES} bytes but this one is ${frame.length}`);
  return frame;
}

/** The pool a frame claims, read before anything is verified (so the key can be chosen). */
export function framePool(frame: Uint8Array): string {
  if (frame.length > MAX_FRAME_BYTES) throw new FrameError('oversized', `frame of ${frame.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  if (frame.length < 2) throw new FrameError('malformed', 'frame shorter than its 2-byte header');
  if (frame[0] !== FRAME_VERSION) throw new FrameError('malformed', `unknown frame version ${frame[0]} (expected ${FRAME_VERSION})`);
  const p = frame[1]!;
  if (p < 1 || p > 64 || frame.length < 2 + p + MAC_BYTES + 1) throw new FrameError('malformed', 'frame too short for its pool name, MAC and body');
  const pool = Buffer.from(frame.buffer, frame.byteOffset + 2, p).toString('latin1');
  if (!POOL_NAME.test(pool)) throw new FrameError('malformed', 'pool name in the frame header is not a valid pool name');
  return pool;
}

/**
 * Verifies a frame's MAC under `key` and only then decodes its body to a plain object with a
 * string `type`, a finite `ts` and a 16-byte `nonce`. Field checks per type are the caller's.
 */
export function openFrame(dir: Direction, frame: Uint8Array, key: Uint8Array, verify: Verify): Record<string, unknown> & { type: string; ts: number; nonce: Uint8Array } {
  const pool = framePool(frame);
  const headLen = 2 + pool.length;
  const head = frame.subarray(0, headLen);
  const mac = frame.subarray(headLen, headLen + MAC_BYTES);
  const body = frame.subarray(headLen + MAC_BYTES);
  if (!verify(key, macInput(dir, head, body), mac)) throw new FrameError('bad_mac', `frame MAC does not verify under pool '${pool}' agent key`);
  let msg: unknown;
  try {
    msg = unpack(body);
  } catch (err) {
    throw new FrameError('bad_body', `frame body is not msgpack: ${(err as Error).message}`);
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || msg instanceof Uint8Array) throw new FrameError('bad_body', 'frame body is not a msgpack map');
  const m = msg as Record<string, unknown>;
  if (typeof m.type !== 'string') throw new FrameError('bad_body', 'frame body has no string `type`');
  if (typeof m.ts !== 'number' || !Number.isFinite(m.ts)) throw new FrameError('bad_body', 'frame body has no numeric `ts`');
  if (!(m.nonce instanceof Uint8Array) || m.nonce.length !== NONCE_BYTES) throw new FrameError('bad_body', `frame body has no ${NONCE_BYTES}-byte \`nonce\``);
  return m as Record<string, unknown> & { type: string; ts: number; nonce: Uint8Array };
}

/**
 * Agent key file: one `<pool> <key>` per line, key = 32 bytes as 64 hex digits; `#` starts a
 * comment. The balancer reads every line; an agent uses its pool's line (or the only key in a
 * file holding one bare key). Returns the keys or throws naming every bad line.
 */
export function parseAgentKeys(text: string, source: string): Map<string, Buffer> {
  const keys = parseNamedKeys(text, source, { what: 'pool', nameLabel: 'pool name', name: POOL_NAME, nameHelp: "1-64 letters, digits, '.', '_' or '-'", bareName: '*' });
  if (keys.size === 0) throw new Error(`agent key file ${source} holds no key`);
  return keys;
}
