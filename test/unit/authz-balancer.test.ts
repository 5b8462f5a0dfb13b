// The balancer's handshake logic on its own: every refusal looks the same to the terminal and
// is counted apart; boxes open only for their recipient; failed proofs are throttled.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuthzService, parseBody, type AuthzDeps, type AuthzOutcome } from '../../src/authz/balancer.js';
import { b64u, fromB64u, open, proofInput, serverBoxInfo, terminalBoxInfo, type ServerGrant, type TerminalGrant } from '../../src/authz/protocol.js';
import { aesGcmSealInto, hmacSha256, hmacVerify } from '../../src/native/index.js';
import { referenceHmacSha256 } from '../../src/native/reference.js';

const kT = randomBytes(32);
const kS = randomBytes(32);

function setup(over: Partial<AuthzDeps> = {}) {
  let now = 1_800_000_000_000;
  const used = new Set<string>();
  const counts = new Map<AuthzOutcome, number>();
  const pushed: { f: Uint8Array; box: Uint8Array }[] = [];
  const service = new AuthzService({
    terminalKeys: () => new Map([['kiosk-7', kT]]),
    challengeSecrets: () => [Buffer.alloc(32, 7)],
    serverKey: () => kS,
    sign: hmacSha256,
    verify: hmacVerify,
    aead: aesGcmSealInto,
    markUsed: (nB) => {
      const k = b64u(nB);
      if (used.has(k)) return false;
      used.add(k);
      return true;
    },
    pickServer: () => ({ pool: 'app', id: 's1', address: '10.0.0.9', port: 8443 }),
    push: (_s, f, box) => pushed.push({ f, box }),
    count: (o) => counts.set(o, (counts.get(o) ?? 0) + 1),
    log: () => {},
    windowMs: 30_000,
    failLimit: 3,
    now: () => now,
    ...over,
  });
  return { service, counts, pushed, advance: (ms: number) => (now += ms) };
}

/** hello, then a proof body made with node:crypto (the terminal's side). */
function handshake(service: AuthzService, user = 'kiosk-7', key: Uint8Array = kT) {
  const nT = randomBytes(16);
  const hello = service.hello({ user, nT: b64u(nT) }, false);
  expect(hello.status).toBe(200);
  const nB = fromB64u(hello.body.nB, 56)!;
  const proof = referenceHmacSha256(key, proofInput(user, nT, nB));
  return { nT, nB, body: { user, nT: b64u(nT), nB: b64u(nB), proof: b64u(proof) } };
}

describe('authorization, balancer side', () => {
  it('grants: the terminal box opens only under K_T and the server box only under K_S for that server', () => {
    const { service, pushed, counts } = setup();
    const h = handshake(service);
    const r = service.proof(h.body, false, '127.0.0.9');
    expect(r.status).toBe(200);
    const f = fromB64u(r.body.f, 16)!;
    const box = Buffer.from(r.body.box as string, 'base64url');
    const t = open(kT, f, terminalBoxInfo(), box) as TerminalGrant;
    expect(t.user).toBe('kiosk-7');
    expect(Buffer.from(t.nT).equals(h.nT)).toBe(true);
    expect(t.server).toEqual({ pool: 'app', id: 's1', address: '10.0.0.9', port: 8443 });
    expect(t.code.length).toBe(32);
    expect(pushed).toHaveLength(1);
    const s = open(kS, pushed[0]!.f, serverBoxInfo('app', 's1'), pushed[0]!.box) as ServerGrant;
    expect(s).toMatchObject({ server: 's1', pool: 'app', user: 'kiosk-7', terminal: '127.0.0.9' });
    expect(Buffer.from(s.code).equals(Buffer.from(t.code))).toBe(true);
    // Not under the other party's key, nor for another server.
    expect(open(kS, f, terminalBoxInfo(), box)).toBeNull();
    expect(open(kS, pushed[0]!.f, serverBoxInfo('app', 's2'), pushed[0]!.box)).toBeNull();
    expect(counts.get('granted')).toBe(1);
  });

  it('every failed proof answers the same "denied", counted by its real cause', () => {
    const { service, counts, advance } = setup({ failLimit: 0 });
    const answers: unknown[] = [];
    // Unknown user.
    answers.push(service.proof(handshake(service, 'nobody', kT).body, false, '127.0.0.2').body);
    // Wrong key.
    answers.push(service.proof(handshake(service, 'kiosk-7', randomBytes(32)).body, false, '127.0.0.2').body);
    // Forged challenge: a random nB the terminal MACs correctly.
    const nT = randomBytes(16);
    const nB = randomBytes(56);
    answers.push(service.proof({ user: 'kiosk-7', nT: b64u(nT), nB: b64u(nB), proof: b64u(referenceHmacSha256(kT, proofInput('kiosk-7', nT, nB))) }, false, '127.0.0.2').body);
    // Replayed proof.
    const h = handshake(service);
    expect(service.proof(h.body, false, '127.0.0.2').status).toBe(200);
    answers.push(service.proof(h.body, false, '127.0.0.2').body);
    // Stale challenge (beyond the window).
    const late = handshake(service);
    advance(30_001);
    answers.push(service.proof(late.body, false, '127.0.0.2').body);
    for (const a of answers) expect(a).toEqual({ error: 'denied', message: 'authorization denied' });
    expect(Object.fromEntries(counts)).toMatchObject({ unknown_user: 1, bad_proof: 1, forged_challenge: 1, replayed: 1, stale_challenge: 1, granted: 1 });
  });

  it('accepts clock skew within the window either way, refuses beyond it', () => {
    const a = setup();
    const early = handshake(a.service);
    a.advance(29_000);
    expect(a.service.proof(early.body, false, '127.0.0.2').status).toBe(200);
    // A proof arriving "before" its challenge (another node's clock ahead).
    const b = setup();
    const h = handshake(b.service);
    b.advance(-29_000);
    expect(b.service.proof(h.body, false, '127.0.0.2').status).toBe(200);
    const c = setup();
    const h2 = handshake(c.service);
    c.advance(-31_000);
    expect(c.service.proof(h2.body, false, '127.0.0.2').status).toBe(403);
  });

  it('throttles failed proofs per user and per IP; a good proof still passes (no lockout by strangers)', () => {
    const { service, counts } = setup({ failLimit: 3 });
    for (let i = 0; i < 3; i++) expect(service.proof(handshake(service, 'kiosk-7', randomBytes(32)).body, false, '127.0.0.5').status).toBe(403);
    // Past the limit a failed proof is answered 429, from that address and for that user anywhere…
    expect(service.proof(handshake(service, 'kiosk-7', randomBytes(32)).body, false, '127.0.0.5').status).toBe(429);
    expect(service.proof(handshake(service, 'kiosk-7', randomBytes(32)).body, false, '127.0.0.6').status).toBe(429);
    expect(counts.get('rate_limited')).toBe(2);
    // …but the terminal holding the key is not locked out.
    expect(service.proof(handshake(service).body, false, '127.0.0.5').status).toBe(200);
    // Another user's failures from a fresh address are counted apart.
    const other = setup({ failLimit: 3, terminalKeys: () => new Map([['kiosk-7', kT], ['kiosk-8', kT]]) });
    for (let i = 0; i < 3; i++) other.service.proof(handshake(other.service, 'ghost').body, false, '127.0.0.7');
    expect(other.service.proof(handshake(other.service, 'kiosk-8', randomBytes(32)).body, false, '127.0.0.8').status).toBe(403);
    expect(other.service.proof(handshake(other.service, 'kiosk-8', randomBytes(32)).body, false, '127.0.0.7').status).toBe(429);
  });

  it('answers 503 no_server when no server is connected, and 400 for garbled input', () => {
    const { service } = setup({ pickServer: () => null });
    expect(service.proof(handshake(service).body, false, '127.0.0.2')).toMatchObject({ status: 503, body: { error: 'no_server' } });
    expect(service.hello({ user: 'bad user', nT: b64u(randomBytes(16)) }, false).status).toBe(400);
    expect(service.hello({ user: 'kiosk-7', nT: 'short' }, false).status).toBe(400);
    expect(service.proof({ user: 'kiosk-7' }, false, '127.0.0.2').status).toBe(400);
    expect(parseBody(Buffer.from('{nope'), 'application/json')).toMatch(/not JSON/);
    expect(parseBody(Buffer.from([0xc1]), 'application/msgpack')).toMatch(/msgpack map/);
    expect(parseBody(Buffer.from([0x92, 0x01]), 'application/msgpack')).toMatch(/not msgpack/);
    expect(parseBody(Buffer.from('[1]'), 'application/json')).toMatch(/JSON object/);
  });

  it('speaks msgpack with byte fields as bin', () => {
    const { service } = setup();
    const nT = randomBytes(16);
    const hello = service.hello({ user: 'kiosk-7', nT }, true);
    expect(hello.body.nB).toBeInstanceOf(Uint8Array);
    const nB = hello.body.nB as Uint8Array;
    const r = service.proof({ user: 'kiosk-7', nT, nB, proof: referenceHmacSha256(kT, proofInput('kiosk-7', nT, nB)) }, true, '127.0.0.2');
    expect(r.status).toBe(200);
    expect(open(kT, r.body.f as Uint8Array, terminalBoxInfo(), r.body.box as Uint8Array)).toMatchObject({ user: 'kiosk-7' });
  });
});

describe('protocol crypto: the balancer\'s HKDF on the native HMAC against node:crypto', () => {
  it('derives the same keys and seals boxes the reference opens, on random inputs', async () => {
    const { deriveKey, seal, open: openBox } = await import('../../src/authz/protocol.js');
    for (let i = 0; i < 200; i++) {
      const key = randomBytes(32);
      const salt = randomBytes(16);
      const info = `tether-authz-server-v1|pool-${i}|s${randomBytes(4).toString('hex')}`;
      expect(deriveKey(key, salt, info, hmacSha256).equals(deriveKey(key, salt, info))).toBe(true);
      const value = { n: i, bytes: randomBytes(i % 40) };
      const nonce = randomBytes(12);
      const box = seal(key, salt, info, value, { hmac: hmacSha256, nonce });
      expect(openBox(key, salt, info, box)).toEqual(value);
      // The balancer's native AES-GCM seals the very same bytes.
      expect(seal(key, salt, info, value, { hmac: hmacSha256, nonce, aead: aesGcmSealInto }).equals(box)).toBe(true);
    }
    expect(() => seal(kT, randomBytes(16), 'x', {}, { nonce: randomBytes(8) })).toThrow(/12-byte nonce/);
  });
});
