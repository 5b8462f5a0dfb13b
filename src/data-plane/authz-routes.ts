// The authorization handshake's HTTP routes on a worker's front door: POST <path>/hello and
// <path>/proof (src/authz/balancer.ts does the work). Bodies are small and bounded; each
// request has a deadline; the answer is JSON or msgpack, like the request.
import { realClient } from './forwarding.js';
import { createHmac } from 'node:crypto';
import type { ClientRequest as HttpRequest, ClientResponse as HttpResponse } from './front-door/client.js';
import { AuthzService, LIMIT_WINDOW_MS, encodeAnswer, parseBody, type AuthzAnswer, type AuthzOutcome, type FailureCounts } from '../authz/balancer.js';
import { b64u } from '../authz/protocol.js';
import type { Config } from '../config/schema.js';
import { aesGcmSealInto, hmacSha256, hmacVerify } from '../native/index.js';
import type { KeyRing } from '../protocol/key-ring.js';
import { C, type WorkerCounters } from '../shared-memory/counters.js';
import type { SessionStore } from '../sticky/sessions.js';
import type { Runtime } from './runtime.js';
import { statusLine } from './status.js';

const MAX_BODY = 2_048;
const BODY_DEADLINE_MS = 5_000;

const OUTCOME_COUNTER: Record<AuthzOutcome, number> = {
  challenge_issued: C.authz_challenge_issued,
  granted: C.authz_granted,
  bad_request: C.authz_bad_request,
  unknown_user: C.authz_unknown_user,
  bad_proof: C.authz_bad_proof,
  forged_challenge: C.authz_forged_challenge,
  stale_challenge: C.authz_stale_challenge,
  replayed: C.authz_replayed,
  rate_limited: C.authz_rate_limited,
  no_server: C.authz_no_server,
};


/** Challenge secrets from the route-token key ring: every node with the same key file checks every node's challenges. */
function challengeSecrets(ring: KeyRing): Buffer[] {
  const keys = [...ring.keys].sort((a, b) => Number(b.id === ring.sealKeyId) - Number(a.id === ring.sealKeyId));
  return keys.map((k) => createHmac('sha256', k.key).update('tether-authz-challenge-secret-v1').digest());
}

interface AuthzRoutes {
  setTerminalKeys(keys: [string, Uint8Array][]): void;
  setKeyRing(ring: KeyRing): void;
  /** The handler for this request if it is POST <path>/hello or <path>/proof, else null. */
  match(method: string, url: string): ((res: HttpResponse, req: HttpRequest) => void) | null;
}

export function mountAuthz(
  o: {
    config: Config;
    keyRing: KeyRing;
    terminalKeys: [string, Uint8Array][];
    serverKeys: [string, Uint8Array][];
    runtime: () => Runtime;
    counters: WorkerCounters;
    sessions: SessionStore;
    push(pool: string, id: string, f: Uint8Array, box: Uint8Array): void;
    log: (level: 'warn', msg: string, fields?: Record<string, unknown>) => void;
  },
): AuthzRoutes {
  const cfg = o.config.authz;
  let terminalKeys = new Map(o.terminalKeys);
  let secrets = challengeSecrets(o.keyRing);
  const serverKeys = new Map(o.serverKeys);
  const usedFp = o.sessions.fingerprinter('_authz', 'authz');
  // Failed proofs counted in the shared table: the limit holds across every worker.
  const failFp = o.sessions.fingerprinter('_authz', 'authz-failures');
  const failures: FailureCounts = {
    get: (kind, key, now) => (o.sessions.lookup(failFp, `${kind}|${key}`, Math.floor(now / 1000)) ? o.sessions.entry.value : 0),
    strike: (kind, key, now) => {
      const nowSec = Math.floor(now / 1000);
      o.sessions.count(failFp, `${kind}|${key}`, 1, nowSec + LIMIT_WINDOW_MS / 1000, nowSec);
    },
  };
  const poolName = cfg.pool;
  const service = new AuthzService({
    terminalKeys: () => terminalKeys,
    challengeSecrets: () => secrets,
    serverKey: (pool) => serverKeys.get(pool) ?? serverKeys.get('*') ?? null,
    sign: hmacSha256,
    verify: hmacVerify,
    aead: aesGcmSealInto,
    failures,
    markUsed: (nB, expiresAtMs) => {
      const nowSec = Math.floor(Date.now() / 1000);
      return o.sessions.markUsed(usedFp, b64u(nB), Math.max(nowSec + 1, Math.ceil(expiresAtMs / 1000) + 1), nowSec);
    },
    pickServer: () => {
      const rt = o.runtime();
      const pool = poolName ? rt.pools.get(poolName) : rt.defaultPool;
      if (!pool) return null;
      const i = pool.grantBalancer.pick({}, -1);
      if (i < 0) return null;
      const b = pool.backends[i]!;
      return { pool: pool.name, id: b.id, address: b.host, port: b.port };
    },
    push: (server, f, box) => o.push(server.pool, server.id, f, box),
    count: (outcome) => o.counters.inc(OUTCOME_COUNTER[outcome]),
    log: o.log,
    windowMs: cfg.windowMs,
    failLimit: cfg.failLimit,
    now: Date.now,
  });

  const route = (which: 'hello' | 'proof') => (res: HttpResponse, req: HttpRequest) => {
    const contentType = req.getHeader('content-type');
    let done = false;
    let aborted = false;
    let size = 0;
    const chunks: Buffer[] = [];
    const answer = (a: AuthzAnswer, binary: boolean, close = false) => {
      if (done || aborted) return;
      done = true;
      clearTimeout(deadline);
      const { type, bytes } = encodeAnswer(a, binary);
      res.cork(() => {
        res.writeStatus(statusLine(a.status)).writeHeader('content-type', type).writeHeader('cache-control', 'no-store');
        res.end(bytes, close);
      });
    };
    const binaryRequest = /^application\/(x-)?msgpack\b/i.test(contentType);
    const deadline = setTimeout(() => answer({ status: 408, body: { error: 'bad_request', message: `request body not received within ${BODY_DEADLINE_MS} ms` } }, binaryRequest, true), BODY_DEADLINE_MS);
    res.onAborted(() => {
      aborted = true;
      clearTimeout(deadline);
    });
    // The terminal's address, as a trusted proxy in front vouches for it (./forwarding.ts).
    const clientIp = which === 'proof' ? realClient(res.getRemoteAddress(), req.getHeader('x-forwarded-for'), o.runtime().trustedProxies) : '';
    res.onData((chunk, isLast) => {
      if (done) return;
      size += chunk.byteLength;
      if (size > MAX_BODY) {
        o.counters.inc(C.authz_bad_request);
        answer({ status: 413, body: { error: 'bad_request', message: `request body over ${MAX_BODY} bytes` } }, binaryRequest, true);
        return;
      }
      chunks.push(Buffer.from(chunk)); // a view valid only during this call
      if (!isLast) return;
      const parsed = parseBody(Buffer.concat(chunks), contentType);
      if (typeof parsed === 'string') {
        o.counters.inc(C.authz_bad_request);
        answer({ status: 400, body: { error: 'bad_request', message: parsed } }, binaryRequest);
        return;
      }
      answer(which === 'hello' ? service.hello(parsed.body, parsed.binary) : service.proof(parsed.body, parsed.binary, clientIp), parsed.binary);
    });
  };
  const hello = route('hello');
  const proof = route('proof');
  const helloPath = `${cfg.path}/hello`;
  const proofPath = `${cfg.path}/proof`;
  return {
    setTerminalKeys: (keys) => (terminalKeys = new Map(keys)),
    setKeyRing: (ring) => (secrets = challengeSecrets(ring)),
    match: (method, url) => (method !== 'POST' ? null : url === helloPath ? hello : url === proofPath ? proof : null),
  };
}
