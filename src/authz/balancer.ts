// The balancer's side of the authorization handshake (protocol.ts), run by every worker:
// `hello` mints a stateless challenge; `proof` checks the challenge, the terminal's HMAC (native,
// constant time) and that the challenge was not used before (shared table: any worker), picks an
// app server connected to the control channel, and issues the grant twice — sealed to the
// server (pushed over its control connection by the orchestrator) and to the terminal (the reply).
//
// A terminal is told only `denied` for every failed proof: which part was wrong (user, MAC,
// challenge, replay) goes to the counters and the log, never to the client. Failed proofs are
// limited per user and per client IP (counted in the shared table, so across all workers):
// past the limit they are answered 429.
import { randomBytes } from 'node:crypto';
import { takeRandom } from './random-pool.js';
import { pack, unpack } from 'msgpackr';
import {
  CHALLENGE_BYTES,
  CODE_BYTES,
  NONCE_T_BYTES,
  PROOF_BYTES,
  SALT_BYTES,
  b64u,
  checkChallenge,
  fromB64u,
  isUserId,
  mintChallenge,
  proofInput,
  seal,
  serverBoxInfo,
  terminalBoxInfo,
  type AeadSealInto,
  type Sign,
  type Verify,
} from './protocol.js';

/** Outcomes, counted (tether_authz_total{outcome}); only the HTTP answer is coarser. */
export type AuthzOutcome =
  | 'challenge_issued'
  | 'granted'
  | 'bad_request'
  | 'unknown_user'
  | 'bad_proof'
  | 'forged_challenge'
  | 'stale_challenge'
  | 'replayed'
  | 'rate_limited'
  | 'no_server';

export interface AuthzAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** A server chosen for a grant, as the worker's runtime knows it now. */
interface ChosenServer {
  pool: string;
  id: string;
  address: string;
  port: number;
}

export interface AuthzDeps {
  /** user → K_T (hot-reloaded). */
  terminalKeys(): ReadonlyMap<string, Uint8Array>;
  /** Secrets that may have minted a challenge; the first mints. */
  challengeSecrets(): readonly Uint8Array[];
  /** The pool's agent key K_S (the servers' key), or null. */
  serverKey(pool: string): Uint8Array | null;
  sign: Sign;
  verify: Verify;
  /** The boxes' AES-256-GCM (the addon's); node:crypto when absent. */
  aead?: AeadSealInto;
  /** Records a used challenge; false when it was already used (a replayed proof). */
  markUsed(nB: Uint8Array, expiresAtMs: number): boolean;
  /** A server for a new grant, or null when none is connected. */
  pickServer(): ChosenServer | null;
  /** Hands the server's sealed grant to the orchestrator, which pushes it over the control channel. */
  push(server: ChosenServer, f: Uint8Array, box: Uint8Array): void;
  count(outcome: AuthzOutcome): void;
  log(level: 'warn', msg: string, fields: Record<string, unknown>): void;
  windowMs: number;
  /** Failed proofs allowed per user and per client IP per minute (0: unlimited). */
  failLimit: number;
  /**
   * Where failed proofs are counted. Default: this thread's memory (so per worker); the
   * workers pass the shared table, which makes the limit hold across all of them.
   */
  failures?: FailureCounts;
  now(): number;
}

/** Failed proofs per user and per client IP, in windows of LIMIT_WINDOW_MS from the first. */
export interface FailureCounts {
  /** Failures in the current window. */
  get(kind: 'user' | 'ip', key: string, now: number): number;
  /** One more failure (a new window if the last one has ended). */
  strike(kind: 'user' | 'ip', key: string, now: number): void;
}

const DENIED: AuthzAnswer = { status: 403, body: { error: 'denied', message: 'authorization denied' } };
export const LIMIT_WINDOW_MS = 60_000;
const MAX_TRACKED = 100_000;
/** Verified against when the user is unknown, so an unknown user costs what a known one does. */
const DUMMY_KEY = randomBytes(32);

function bad(message: string): AuthzAnswer {
  return { status: 400, body: { error: 'bad_request', message } };
}

interface Failures {
  count: number;
  since: number;
}

/** Failure counts in this thread's memory, bounded (the oldest are forgotten under a flood). */
class LocalFailureCounts implements FailureCounts {
  private readonly byUser = new Map<string, Failures>();
  private readonly byIp = new Map<string, Failures>();

  get(kind: 'user' | 'ip', key: string, now: number): number {
    const f = (kind === 'user' ? this.byUser : this.byIp).get(key);
    return f !== undefined && now - f.since < LIMIT_WINDOW_MS ? f.count : 0;
  }

  strike(kind: 'user' | 'ip', key: string, now: number): void {
    const m = kind === 'user' ? this.byUser : this.byIp;
    const f = m.get(key);
    if (f === undefined || now - f.since >= LIMIT_WINDOW_MS) {
      if (m.size >= MAX_TRACKED) this.forgetOld(m, now);
      m.set(key, { count: 1, since: now });
    } else f.count++;
  }

  private forgetOld(m: Map<string, Failures>, now: number): void {
    for (const [k, f] of m) if (now - f.since >= LIMIT_WINDOW_MS) m.delete(k);
    // Still full (a flood of fresh sources): forget the oldest half rather than grow.
    if (m.size >= MAX_TRACKED) {
      let n = m.size / 2;
      for (const k of m.keys()) {
        if (n-- <= 0) break;
        m.delete(k);
      }
    }
  }
}

export class AuthzService {
  private readonly failures: FailureCounts;

  constructor(private readonly d: AuthzDeps) {
    this.failures = d.failures ?? new LocalFailureCounts();
  }

  /** `POST <path>/hello {user, nT}` → `{user, nT, nB}`. */
  hello(body: Record<string, unknown>, binary: boolean): AuthzAnswer {
    const user = body.user;
    const nT = bytes(body.nT, NONCE_T_BYTES, binary);
    if (!isUserId(user)) return this.fail('bad_request', bad('expected user: 1-128 letters, digits, ".", "_", "@" or "-"'));
    if (!nT) return this.fail('bad_request', bad(`expected nT: ${NONCE_T_BYTES} bytes${binary ? '' : ' as base64url'}`));
    const nB = mintChallenge(this.d.challengeSecrets()[0]!, user, nT, this.d.now(), this.d.sign);
    this.d.count('challenge_issued');
    return { status: 200, body: { user, nT: out(nT, binary), nB: out(nB, binary) } };
  }

  /** `POST <path>/proof {user, nT, nB, proof}` → `{f, box}` or a refusal. */
  proof(body: Record<string, unknown>, binary: boolean, clientIp: string): AuthzAnswer {
    const now = this.d.now();
    const user = body.user;
    const nT = bytes(body.nT, NONCE_T_BYTES, binary);
    const nB = bytes(body.nB, CHALLENGE_BYTES, binary);
    const proof = bytes(body.proof, PROOF_BYTES, binary);
    if (!isUserId(user) || !nT || !nB || !proof) return this.fail('bad_request', bad('expected user, nT (16 bytes), nB (56 bytes) and proof (32 bytes)'));
    // Past the limit, failed proofs get 429 instead of 403, and are not logged one by one. A good
    // proof still passes: otherwise anyone could lock a user (or everyone behind one NAT) out by
    // sending bad proofs in their name. Guessing a 256-bit key gains nothing from getting through.
    const limit = this.d.failLimit;
    const limited = limit > 0 && (this.failures.get('ip', clientIp, now) >= limit || this.failures.get('user', user, now) >= limit);
    const key = this.d.terminalKeys().get(user);
    const proofOk = this.d.verify(key ?? DUMMY_KEY, proofInput(user, nT, nB), proof);
    let why: AuthzOutcome | null = key ? (proofOk ? null : 'bad_proof') : 'unknown_user';
    let issuedAt = 0;
    if (why === null) {
      why = 'forged_challenge';
      for (const secret of this.d.challengeSecrets()) {
        const c = checkChallenge(secret, user, nT, nB, now, this.d.windowMs, this.d.verify);
        if (c.ok) {
          why = null;
          issuedAt = c.issuedAt;
          break;
        }
        if (c.why === 'stale') {
          why = 'stale_challenge';
          break;
        }
      }
    }
    if (why === null && !this.d.markUsed(nB, issuedAt + this.d.windowMs)) why = 'replayed';
    if (why !== null) {
      if (limit > 0) {
        this.failures.strike('ip', clientIp, now);
        this.failures.strike('user', user, now);
      }
      if (limited) {
        this.d.count('rate_limited');
        return { status: 429, body: { error: 'rate_limited', message: 'too many failed proofs: try again later' } };
      }
      this.d.log('warn', `authorization refused for ${user} from ${clientIp}: ${why}`, { event: 'authz_refused', user, clientIp, why });
      return this.fail(why, DENIED);
    }
    const server = this.d.pickServer();
    const serverKey = server && this.d.serverKey(server.pool);
    if (!server || !serverKey) {
      this.d.count('no_server');
      return { status: 503, body: { error: 'no_server', message: 'no application server is connected to take the terminal' } };
    }
    // One random draw for the code, the salt and both boxes' nonces.
    const random = takeRandom(CODE_BYTES + SALT_BYTES + 24);
    const code = random.subarray(0, CODE_BYTES);
    const f = random.subarray(CODE_BYTES, CODE_BYTES + SALT_BYTES);
    const nonces = CODE_BYTES + SALT_BYTES;
    const expiresAt = now + this.d.windowMs;
    const hmac = this.d.sign;
    const serverGrant = { server: server.id, pool: server.pool, user, code, terminal: clientIp, issuedAt: now, expiresAt };
    const aead = this.d.aead;
    this.d.push(server, f, seal(serverKey, f, serverBoxInfo(server.pool, server.id), serverGrant, { nonce: random.subarray(nonces, nonces + 12), hmac, aead }));
    const box = seal(key!, f, terminalBoxInfo(), { user, nT, nB, code, server, expiresAt }, { nonce: random.subarray(nonces + 12), hmac, aead });
    this.d.count('granted');
    return { status: 200, body: { f: out(f, binary), box: out(box, binary) } };
  }

  private fail(outcome: AuthzOutcome, answer: AuthzAnswer): AuthzAnswer {
    this.d.count(outcome);
    return answer;
  }
}

/** A byte field: base64url text in JSON, bin in msgpack. */
function bytes(v: unknown, len: number, binary: boolean): Buffer | null {
  if (binary) return v instanceof Uint8Array && v.length === len ? Buffer.from(v.buffer, v.byteOffset, v.length) : null;
  return fromB64u(v, len);
}

function out(b: Uint8Array, binary: boolean): Uint8Array | string {
  return binary ? b : b64u(b);
}

/** Request body → object, by content type; a string explains what is wrong. */
export function parseBody(raw: Buffer, contentType: string): { body: Record<string, unknown>; binary: boolean } | string {
  const binary = /^application\/(x-)?msgpack\b/i.test(contentType);
  let v: unknown;
  try {
    v = binary ? unpack(raw) : JSON.parse(raw.toString('utf8'));
  } catch (err) {
    return `request body is not ${binary ? 'msgpack' : 'JSON'}: ${(err as Error).message.slice(0, 100)}`;
  }
  // Plain maps only (msgpackr also decodes extension types into class instances).
  if (v === null || typeof v !== 'object' || Object.getPrototypeOf(v) !== Object.prototype) return `expected a ${binary ? 'msgpack map' : 'JSON object'}`;
  return { body: v as Record<string, unknown>, binary };
}

export function encodeAnswer(a: AuthzAnswer, binary: boolean): { type: string; bytes: Buffer | string } {
  return binary ? { type: 'application/msgpack', bytes: pack(a.body) } : { type: 'application/json', bytes: `${JSON.stringify(a.body)}\n` };
}
