// ClientHello parser: the native addon against the JS reference (src/native/client-hello-reference.ts)
// and the expected values of real captures (test/fixtures/client-hello/), fed whole, byte by
// byte, in random segments and re-framed as many records; then crafted bad input for every
// decision in native/include/tether/client_hello.h, and random mutations of the captures.
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';

import {
  CLIENT_HELLO_DEFAULT_MAX_BYTES,
  CLIENT_HELLO_MAX_CAP_BYTES,
  parseClientHello,
  type ClientHelloOk,
  type ClientHelloResult,
} from '../../src/native/index.js';
import { referenceParseClientHello } from '../../src/native/client-hello-reference.js';
import { NATIVE_ADDON_PATH } from '../../src/native/loader.js';
import { prng } from '../helpers/prng.js';

/** Integers in [0, n), replayable from the seed. */
function rng(seed: number): (n: number) => number {
  const r = prng(seed);
  return (n) => Math.floor(r() * n);
}

type Parse = (bytes: Uint8Array, maxBytes?: number) => ClientHelloResult;
const impls: { name: string; parse: Parse }[] = [
  { name: 'native', parse: parseClientHello },
  { name: 'reference', parse: referenceParseClientHello },
];

const fixtureDir = new URL('../fixtures/client-hello/', import.meta.url);
const expected = JSON.parse(readFileSync(new URL('expected.json', fixtureDir), 'utf8')) as Record<string, ClientHelloOk>;
const fixtures = readdirSync(fixtureDir)
  .filter((f) => f.endsWith('.hex'))
  .sort()
  .map((name) => ({ name, bytes: Buffer.from(readFileSync(new URL(name, fixtureDir), 'utf8').trim(), 'hex') }));
const fixture = (name: string): Buffer => fixtures.find((f) => f.name === name)!.bytes;

/** Both implementations, which must agree exactly (reasons included); returns their answer. */
function both(bytes: Uint8Array, maxBytes = CLIENT_HELLO_DEFAULT_MAX_BYTES): ClientHelloResult {
  const native = parseClientHello(bytes, maxBytes);
  const reference = referenceParseClientHello(bytes, maxBytes);
  expect(native, `native vs reference on ${Buffer.from(bytes).subarray(0, 48).toString('hex')}…`).toEqual(reference);
  return native;
}


// ---------------------------------------------------------------------------------------------
// Building ClientHellos by hand (wire format in native/include/tether/client_hello.h).

const u16 = (v: number) => [v >> 8, v & 0xff];
const vec8 = (data: ArrayLike<number>) => Buffer.from([data.length, ...Array.from(data)]);
const vec16 = (data: ArrayLike<number>) => Buffer.from([...u16(data.length), ...Array.from(data)]);
const ext = (type: number, data: ArrayLike<number>) => Buffer.concat([Buffer.from(u16(type)), vec16(data)]);
const latin1 = (s: string) => Buffer.from(s, 'latin1');
const sniExt = (name: string | Buffer) => ext(0x0000, vec16([0, ...vec16(typeof name === 'string' ? latin1(name) : name)]));
const alpnExt = (...names: (string | Buffer)[]) =>
  ext(0x0010, vec16(Buffer.concat(names.map((n) => vec8(typeof n === 'string' ? latin1(n) : n)))));
const versionsExt = (...versions: number[]) => ext(0x002b, vec8(versions.flatMap(u16)));
const sigalgsExt = (...algs: number[]) => ext(0x000d, vec16(algs.flatMap(u16)));

interface HelloSpec {
  legacyVersion?: number;
  sessionId?: Buffer;
  ciphers?: number[];
  compression?: number[];
  /** null: no extensions block at all (allowed up to TLS 1.2). */
  extensions?: Buffer[] | null;
}

/** A handshake message: type 1, u24 length, ClientHello body. */
function message({ legacyVersion = 0x0303, sessionId = Buffer.alloc(32, 7), ciphers = [0x1301, 0x1302], compression = [0], extensions = [sniExt('a.test')] }: HelloSpec = {}): Buffer {
  const body = Buffer.concat([
    Buffer.from(u16(legacyVersion)),
    Buffer.alloc(32, 0x52),
    vec8(sessionId),
    vec16(ciphers.flatMap(u16)),
    vec8(compression),
    extensions === null ? Buffer.alloc(0) : vec16(Buffer.concat(extensions)),
  ]);
  return withLength(body);
}

const withLength = (body: Buffer, type = 1) =>
  Buffer.concat([Buffer.from([type, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);

/** The message in records carrying `sizes` bytes each (the last takes the rest). */
function frame(msg: Buffer, sizes: number[] = [], type = 0x16): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < msg.length; i++) {
    const size = Math.min(sizes[i] ?? 16_384, msg.length - at);
    out.push(Buffer.from([type, 3, 1, ...u16(size)]), msg.subarray(at, at + size));
    at += size;
  }
  return Buffer.concat(out);
}

/** The handshake message inside a capture (its records' fragments joined). */
function messageOf(records: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < records.length; ) {
    const size = records.readUInt16BE(at + 3);
    parts.push(records.subarray(at + 5, at + 5 + size));
    at += 5 + size;
  }
  return Buffer.concat(parts);
}

const ok = (r: ClientHelloResult): ClientHelloOk => {
  expect(r.status, JSON.stringify(r)).toBe('ok');
  return r as ClientHelloOk;
};
const sameExceptConsumed = (r: ClientHelloResult, want: ClientHelloOk, consumed: number) =>
  expect(r).toEqual({ ...want, consumed });

// ---------------------------------------------------------------------------------------------

describe('real ClientHellos (test/fixtures/client-hello)', () => {
  it('come from at least four clients, one of them post-quantum', () => {
    expect(fixtures.map((f) => f.name)).toEqual(Object.keys(expected).sort());
    expect(new Set(fixtures.map((f) => f.name.split(/[-.]/)[0])).size).toBeGreaterThanOrEqual(4);
    // Chromium's key_share holds an X25519MLKEM768 share (group 0x11ec, 1216 bytes).
    const pq = fixture('chromium-headless-shell-pq.hex');
    expect(pq.length).toBeGreaterThan(1500);
    expect(pq.includes(Buffer.from([0x11, 0xec, 0x04, 0xc0]))).toBe(true);
  });

  it('without a fingerprint, both give the same result minus JA4, and the same status on every prefix', () => {
    for (const { name, bytes } of fixtures) {
      const full = parseClientHello(bytes);
      const lean = parseClientHello(bytes, CLIENT_HELLO_DEFAULT_MAX_BYTES, { fingerprint: false });
      expect(lean, name).toEqual({ ...full, ja4: '', ja4r: '' });
      expect(referenceParseClientHello(bytes, CLIENT_HELLO_DEFAULT_MAX_BYTES, { fingerprint: false }), name).toEqual(lean);
      // The workspace is left clean: a fingerprinted parse right after is unchanged.
      expect(parseClientHello(bytes), name).toEqual(full);
      for (let cut = 1; cut < bytes.length; cut += 97) {
        expect(parseClientHello(bytes.subarray(0, cut), CLIENT_HELLO_DEFAULT_MAX_BYTES, { fingerprint: false }).status).toBe('incomplete');
      }
    }
  });

  it.each(impls)('$name parses each to the expected values', ({ parse }) => {
    for (const { name, bytes } of fixtures) {
      expect(parse(bytes), name).toEqual(expected[name]);
      expect(expected[name]!.consumed).toBe(bytes.length);
    }
  });

  it('have the fields their clients were asked for', () => {
    expect(expected['openssl-s_client.hex']).toMatchObject({ sni: 'a.example.com', alpn: ['h2', 'http/1.1'], versions: [0x0304, 0x0303, 0x0302, 0x0301] });
    expect(expected['openssl-s_client-noSNI.hex']).toMatchObject({ sni: null, alpn: [] });
    expect(expected['openssl-s_client-tls12.hex']).toMatchObject({ sni: 'd.example.com', versions: [], legacyVersion: 0x0303 });
    expect(expected['openssl-s_client-tls12.hex']!.ja4).toMatch(/^t12d/);
    expect(expected['curl.hex']).toMatchObject({ sni: 'b.example.com', alpn: ['h2', 'http/1.1'] });
    expect(expected['node-tls.hex']).toMatchObject({ sni: 'c.example.com' });
    // GREASE removed from the versions and from every JA4 list.
    expect(expected['chromium-headless-shell-pq.hex']).toMatchObject({ sni: 'pq.test', versions: [0x0304, 0x0303] });
    for (const { ja4r } of Object.values(expected)) expect(ja4r).not.toMatch(/([0-9a-f])a\1a/);
  });

  it('is incomplete for every proper prefix, fed byte by byte', () => {
    for (const { name, bytes } of fixtures) {
      for (let n = 0; n < bytes.length; n++) {
        for (const { parse } of impls) expect(parse(bytes.subarray(0, n)).status, `${name} at ${n}`).toBe('incomplete');
      }
      expect(both(bytes)).toEqual(expected[name]);
    }
  });

  it('parses identically when the bytes arrive in random segments', () => {
    const random = rng(4);
    for (let round = 0; round < 300; round++) {
      const { name, bytes } = fixtures[round % fixtures.length]!;
      let got = 0;
      let result: ClientHelloResult = { status: 'incomplete' };
      while (got < bytes.length) {
        got = Math.min(bytes.length, got + 1 + random(random(2) === 0 ? 8 : 1500));
        result = both(bytes.subarray(0, got));
        if (got < bytes.length) expect(result.status).toBe('incomplete');
      }
      expect(result, name).toEqual(expected[name]);
    }
  });

  it('parses identically when re-framed as several records, and only once the last is in', () => {
    const random = rng(5);
    for (let round = 0; round < 200; round++) {
      const { name, bytes } = fixtures[round % fixtures.length]!;
      const msg = messageOf(bytes);
      const sizes =
        round % 3 === 0
          ? Array.from({ length: msg.length }, () => 1 + random(4)) // many tiny records
          : Array.from({ length: 8 }, () => 1 + random(msg.length));
      const framed = frame(msg, sizes);
      sameExceptConsumed(both(framed, CLIENT_HELLO_MAX_CAP_BYTES), expected[name]!, framed.length);
      for (let i = 0; i < 20; i++) {
        expect(both(framed.subarray(0, random(framed.length)), CLIENT_HELLO_MAX_CAP_BYTES).status).toBe('incomplete');
      }
    }
    // Every prefix, one-byte records (the handshake header itself spans four records).
    const tiny = frame(messageOf(fixture('curl.hex')), new Array(600).fill(1));
    expect(tiny.length).toBe(512 * 6);
    for (let n = 0; n < tiny.length; n++) expect(both(tiny.subarray(0, n)).status).toBe('incomplete');
    sameExceptConsumed(both(tiny), expected['curl.hex']!, tiny.length);
  });

  it('does not consume what follows the ClientHello', () => {
    const ccs = Buffer.from('140303000101', 'hex');
    const appData = Buffer.concat([Buffer.from('1703030020', 'hex'), Buffer.alloc(32, 0xee)]);
    const random = rng(6);
    for (const { name, bytes } of fixtures) {
      for (const tail of [ccs, appData, Buffer.from('GET / HTTP/1.1\r\n'), Buffer.from([0x16]), Buffer.alloc(20_000, 0x16)]) {
        const r = both(Buffer.concat([bytes, tail]));
        expect(r, name).toEqual(expected[name]);
      }
      const junk = Buffer.from(Array.from({ length: 1 + random(3000) }, () => random(256)));
      expect(both(Buffer.concat([bytes, junk]))).toEqual(expected[name]);
    }
  });
});

describe('JA4', () => {
  // FoxIO JA4.md's worked example, rebuilt as a ClientHello from the lists it gives.
  const specCiphers = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035];
  const specSigalgs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];
  const specOther = [0x0005, 0x000a, 0x000b, 0x0012, 0x0015, 0x0017, 0x001b, 0x0023, 0x002d, 0x0033, 0x4469, 0xff01];
  const specHello = (sigalgs: number[], extra: Buffer[] = []) =>
    frame(
      message({
        ciphers: [0x2a2a, ...specCiphers],
        extensions: [
          ext(0x8a8a, []),
          sniExt('example.com'),
          alpnExt('h2', 'http/1.1'),
          versionsExt(0x5a5a, 0x0304, 0x0303),
          sigalgsExt(...sigalgs),
          ...specOther.map((t) => ext(t, t === 0x0005 ? [1, 0, 0, 0, 0] : [])),
          ...extra,
        ],
      }),
    );

  it('matches the spec’s worked example, GREASE and all', () => {
    const r = ok(both(specHello(specSigalgs)));
    expect(r.ja4).toBe('t13d1516h2_8daaf6152771_e5627efa2ab1');
    expect(r.ja4r).toBe(
      't13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_' +
        '0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601',
    );
  });

  it('leaves out the signature part when every algorithm is GREASE (spec: …,ff01 → 6d807ffa2a79)', () => {
    const r = ok(both(specHello([0x1a1a, 0xbaba])));
    expect(r.ja4).toBe('t13d1516h2_8daaf6152771_6d807ffa2a79');
    expect(r.ja4r.endsWith('_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01')).toBe(true);
  });

  it('encodes version, SNI, counts and ALPN in the a part', () => {
    const a = (spec: HelloSpec) => ok(both(frame(message(spec)))).ja4.slice(0, 10);
    expect(a({ extensions: null })).toBe('t12i020000');
    expect(a({ extensions: [] })).toBe('t12i020000');
    expect(a({ legacyVersion: 0x0301, extensions: [sniExt('x.test')] })).toBe('t10d020100');
    expect(a({ extensions: [versionsExt(0x0302)] })).toBe('t11i020100');
    expect(a({ extensions: [versionsExt(0x0300)] })).toBe('ts3i020100');
    expect(a({ extensions: [versionsExt(0x7f1c)] })).toBe('t00i020100'); // a draft version: unknown
    expect(a({ extensions: [versionsExt(0xfeff)] })).toBe('td1i020100');
    expect(a({ extensions: [versionsExt(0x0a0a, 0x1a1a)] })).toBe('t12i020100'); // only GREASE: legacy
    expect(a({ ciphers: Array.from({ length: 120 }, (_, i) => i + 1) })).toBe('t12d990100');
    expect(a({ ciphers: [0x0a0a], extensions: [ext(0x0a0a, []), ext(0x1a1a, [])] })).toBe('t12i000000');
    expect(a({ extensions: [alpnExt('h2')] })).toBe('t12i0201h2');
    expect(a({ extensions: [alpnExt('http/1.1', 'h2')] })).toBe('t12i0201h1');
    expect(a({ extensions: [alpnExt('x')] })).toBe('t12i0201xx');
    expect(a({ extensions: [alpnExt(Buffer.from([0xab]))] })).toBe('t12i0201ab');
    expect(a({ extensions: [alpnExt(Buffer.from([0x30, 0xab]))] })).toBe('t12i02013b');
    expect(a({ extensions: [alpnExt(Buffer.from([0x30, 0xab, 0xcd, 0x31]))] })).toBe('t12i020101');
    expect(a({ extensions: [alpnExt(Buffer.from([0x0a, 0x0a]), 'h2')] })).toBe('t12i02010a');
    const many = Array.from({ length: 120 }, (_, i) => ext(0x1000 + i, []));
    expect(a({ extensions: many })).toBe('t12i029900');
  });

  it('hashes empty lists as twelve zeros', () => {
    const r = ok(both(frame(message({ ciphers: [0x5a5a], extensions: [sniExt('x.test'), alpnExt('h2')] }))));
    expect(r.ja4).toBe('t12d0002h2_000000000000_000000000000');
    expect(r.ja4r).toBe('t12d0002h2__');
  });
});

describe('fields', () => {
  it('lower-cases the host name and keeps ALPN bytes as latin1', () => {
    const r = ok(both(frame(message({ extensions: [sniExt('WWW.Example.COM'), alpnExt(Buffer.from([0xff, 0x41]), 'h2')] }))));
    expect(r.sni).toBe('www.example.com');
    expect(r.alpn).toEqual(['\u00ffA', 'h2']);
  });

  it('accepts host names up to the limits: 63-byte labels, 253 bytes, _ and -', () => {
    const label = 'a'.repeat(63);
    const long = `${label}.${label}.${label}.${'b'.repeat(61)}`;
    expect(long.length).toBe(253);
    for (const name of [long, 'x', '_dmarc.example.com', 'xn--bcher-kva.example', '1.2.3.4', '-a-.b']) {
      expect(ok(both(frame(message({ extensions: [sniExt(name)] })))).sni).toBe(name);
    }
  });

  it('routes an ECH ClientHello by its outer (public) name; the encrypted inner one stays opaque', () => {
    const ech = ext(0xfe0d, Buffer.concat([Buffer.from([0, 0, 1, 0, 1, 0x2a, 0, 32]), Buffer.alloc(32, 9), vec16(Buffer.alloc(200, 0x33))]));
    const r = ok(both(frame(message({ extensions: [sniExt('public.example.net'), ech, alpnExt('h2'), versionsExt(0x0304)] }))));
    expect(r).toMatchObject({ sni: 'public.example.net', alpn: ['h2'], versions: [0x0304] });
    expect(r.ja4r).toMatch(/_002b,fe0d$/);
  });

  it('accepts a ClientHello with pre_shared_key last, and one without extensions', () => {
    ok(both(frame(message({ extensions: [sniExt('a.test'), ext(0x0029, [0, 0])] }))));
    expect(ok(both(frame(message({ extensions: null })))).sni).toBeNull();
  });
});

describe('decisions on bad input', () => {
  const good = message();

  it('not_tls: from the first byte or the first record version', () => {
    const cases: [string, Buffer, string][] = [
      ['HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n'), 'not a TLS handshake record'],
      ['SSH', Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'), 'not a TLS handshake record'],
      ['SSLv2-compatible hello', Buffer.from('802e0103010015000000100700c0', 'hex'), 'not a TLS handshake record'],
      ['alert record', Buffer.from('15030100020228', 'hex'), 'not a TLS handshake record'],
      ['one byte', Buffer.from([0x00]), 'not a TLS handshake record'],
      ['version 2.x', Buffer.from('160200', 'hex'), 'record version is not 3.x'],
      ['version 0x16 0x16', Buffer.from('1616', 'hex'), 'record version is not 3.x'],
    ];
    for (const [label, bytes, reason] of cases) {
      expect(both(bytes), label).toEqual({ status: 'not_tls', reason });
    }
    expect(both(Buffer.alloc(0))).toEqual({ status: 'incomplete' });
    expect(both(Buffer.from([0x16]))).toEqual({ status: 'incomplete' });
    expect(both(Buffer.from([0x16, 0x03, 0x01, 0x00]))).toEqual({ status: 'incomplete' });
  });

  it('too_large: as soon as the lengths say so, for every cap below the real size', () => {
    const tooLarge = { status: 'too_large', reason: 'ClientHello exceeds the size cap' };
    // A record announcing more than the cap: decided from its 5-byte header.
    expect(both(Buffer.from('1603014000', 'hex'), 1000)).toEqual(tooLarge);
    // A handshake header announcing 16 MiB: decided from 9 bytes.
    const huge = Buffer.from('1603010064' + '01ffffff', 'hex');
    expect(both(huge.subarray(0, 8))).toEqual({ status: 'incomplete' });
    expect(both(huge)).toEqual(tooLarge);
    // The post-quantum hello: fits at its size, not one byte less (decided from the record header).
    const pq = fixture('chromium-headless-shell-pq.hex');
    expect(both(pq, pq.length).status).toBe('ok');
    expect(both(pq.subarray(0, 5), pq.length - 1)).toEqual(tooLarge);
    // Every cap below the size of a many-record hello is too_large, decided at the latest by the
    // record that crosses it; every prefix is incomplete or already too_large.
    const framed = frame(messageOf(fixture('curl.hex')), new Array(20).fill(40));
    const random = rng(7);
    for (let cap = 6; cap < framed.length; cap++) {
      expect(both(framed, cap), `cap ${cap}`).toEqual(tooLarge);
      const n = random(framed.length);
      const early = both(framed.subarray(0, n), cap);
      expect(early.status === 'incomplete' || early.status === 'too_large', `cap ${cap} at ${n}`).toBe(true);
      if (early.status === 'incomplete') expect(n).toBeLessThan(cap);
    }
    sameExceptConsumed(both(framed, framed.length), expected['curl.hex']!, framed.length);
  });

  it('too_large: a further record that cannot fit is refused before it arrives', () => {
    // Header of 4 bytes split over 1-byte records: after the first record (6 bytes) another one
    // is needed, and a cap of 11 leaves no room for even a 1-byte one.
    const framed = frame(good, [1, 1, 1, 1]);
    expect(both(framed.subarray(0, 6), 11)).toEqual({ status: 'too_large', reason: 'ClientHello exceeds the size cap' });
    expect(both(framed.subarray(0, 6), 12)).toEqual({ status: 'incomplete' });
  });

  const bodyOf = (msg: Buffer) => msg.subarray(4);
  const sessionAt = 4 + 2 + 32;
  const malformedCases: [string, Buffer, string][] = [
    ['a non-handshake record between fragments', Buffer.concat([frame(good.subarray(0, 10)), Buffer.from('1503030002022a', 'hex'), frame(good.subarray(10))]), 'non-handshake record inside the ClientHello'],
    ['a later record of version 4.x', Buffer.concat([frame(good.subarray(0, 10)), Buffer.from([0x16, 4, 1, ...u16(good.length - 10)]), good.subarray(10)]), 'record version is not 3.x'],
    ['an empty record', Buffer.from('1603010000', 'hex'), 'empty record'],
    ['an empty record after the first', Buffer.concat([frame(good.subarray(0, 10)), Buffer.from('1603010000', 'hex')]), 'empty record'],
    ['a record over 2^14', Buffer.from('1603014001', 'hex'), 'record longer than 16384 bytes'],
    ['a ServerHello', frame(withLength(bodyOf(good), 2)), 'handshake message is not a ClientHello'],
    ['a second message in the last record', frame(Buffer.concat([good, Buffer.from('01000000', 'hex')])), 'ClientHello does not end on a record boundary'],
    ['a record reaching past the message', Buffer.concat([frame(good.subarray(0, 10)), Buffer.from([0x16, 3, 1, ...u16(good.length - 10 + 1)]), good.subarray(10)]), 'ClientHello does not end on a record boundary'],
    ['an empty body', frame(withLength(Buffer.alloc(0))), 'ClientHello truncated in legacy_version'],
    ['legacy_version 2.3', frame(withLength(Buffer.concat([Buffer.from([2, 3]), bodyOf(good).subarray(2)]))), 'legacy_version is not 3.x'],
    ['a short random', frame(withLength(bodyOf(good).subarray(0, 20))), 'ClientHello truncated in random'],
    ['no session id length', frame(withLength(bodyOf(good).subarray(0, 34))), 'ClientHello truncated in legacy_session_id'],
    ['a 33-byte session id', frame(message({ sessionId: Buffer.alloc(33) })), 'legacy_session_id longer than 32 bytes'],
    ['a short session id', frame(withLength(bodyOf(good).subarray(0, 40))), 'ClientHello truncated in legacy_session_id'],
    ['no cipher_suites', frame(withLength(bodyOf(good).subarray(0, sessionAt - 4 + 33))), 'ClientHello truncated in cipher_suites'],
    ['odd cipher_suites', frame(message({ ciphers: [] }).fill(3, sessionAt + 33 + 1, sessionAt + 33 + 2)), 'cipher_suites length is zero or odd'],
    ['empty cipher_suites', frame(message({ ciphers: [] })), 'cipher_suites length is zero or odd'],
    ['short cipher_suites', frame(withLength(bodyOf(good).subarray(0, 2 + 32 + 33 + 2 + 3))), 'ClientHello truncated in cipher_suites'],
    ['no compression_methods', frame(withLength(bodyOf(good).subarray(0, 2 + 32 + 33 + 2 + 4))), 'ClientHello truncated in legacy_compression_methods'],
    ['empty compression_methods', frame(message({ compression: [] })), 'legacy_compression_methods is empty'],
    ['short compression_methods', frame(withLength(Buffer.concat([bodyOf(message({ extensions: null })).subarray(0, -2), Buffer.from([2, 0])]))), 'ClientHello truncated in legacy_compression_methods'],
    ['one byte of extensions length', frame(withLength(Buffer.concat([bodyOf(message({ extensions: null })), Buffer.from([0])]))), 'ClientHello truncated in extensions'],
    ['an extensions block short of the end', frame(withLength(Buffer.concat([bodyOf(message({ extensions: [] })), Buffer.from([0])]))), 'extensions block does not fill the ClientHello'],
    ['an extensions block past the end', frame(withLength(Buffer.concat([bodyOf(message({ extensions: null })), Buffer.from([0, 4, 0, 0, 0])]))), 'extensions block does not fill the ClientHello'],
    ['a 3-byte extension header', frame(message({ extensions: [Buffer.from([0, 0x17, 0])] })), 'extension header truncated'],
    ['extension data past the block', frame(message({ extensions: [Buffer.from([0, 0x17, 0, 5, 1, 2])] })), 'extension data overruns the extensions block'],
    ['a duplicate extension', frame(message({ extensions: [ext(0x17, []), sniExt('a.test'), ext(0x17, [])] })), 'duplicate extension'],
    ['a duplicate GREASE extension', frame(message({ extensions: [ext(0x3a3a, []), ext(0x3a3a, [0])] })), 'duplicate extension'],
    ['a duplicate before a bad server_name', frame(message({ extensions: [ext(0x17, []), ext(0x17, []), sniExt('')] })), 'duplicate extension'],
    ['pre_shared_key before another extension', frame(message({ extensions: [ext(0x29, [0, 0]), ext(0x17, [])] })), 'pre_shared_key is not the last extension'],
    ['an empty server_name (ServerHello form)', frame(message({ extensions: [ext(0, [])] })), 'malformed server_name extension'],
    ['a server_name list of the wrong length', frame(message({ extensions: [ext(0, [0, 9, 0, 0, 1, 0x61])] })), 'malformed server_name extension'],
    ['a server_name list with a short entry', frame(message({ extensions: [ext(0, [0, 2, 0, 0])] })), 'server_name must hold exactly one host_name'],
    ['a server_name of type 1', frame(message({ extensions: [ext(0, vec16([1, ...vec16(latin1('a.test'))]))] })), 'server_name must hold exactly one host_name'],
    ['two host names', frame(message({ extensions: [ext(0, vec16([0, ...vec16(latin1('a.test')), 0, ...vec16(latin1('b.test'))]))] })), 'server_name must hold exactly one host_name'],
    ['a host name overrunning its list', frame(message({ extensions: [ext(0, vec16([0, 0, 9, 0x61]))] })), 'server_name must hold exactly one host_name'],
    ['an empty host name', frame(message({ extensions: [sniExt('')] })), 'empty host name'],
    ['an ALPN list of the wrong length', frame(message({ extensions: [ext(0x10, [0, 5, 2, 0x68, 0x32])] })), 'malformed ALPN extension'],
    ['an ALPN list of one byte', frame(message({ extensions: [ext(0x10, [0, 1, 0])] })), 'malformed ALPN extension'],
    ['an ALPN name overrunning the list', frame(message({ extensions: [ext(0x10, vec16([2, 0x68, 0x32, 5, 0x61]))] })), 'malformed ALPN extension'],
    ['an empty extension ALPN', frame(message({ extensions: [ext(0x10, [])] })), 'malformed ALPN extension'],
    ['an empty ALPN name', frame(message({ extensions: [ext(0x10, vec16([2, 0x68, 0x32, 0]))] })), 'empty ALPN protocol name'],
    ['odd signature_algorithms', frame(message({ extensions: [ext(0x0d, vec16([4, 3, 8]))] })), 'malformed signature_algorithms extension'],
    ['empty signature_algorithms', frame(message({ extensions: [ext(0x0d, [0, 0])] })), 'malformed signature_algorithms extension'],
    ['signature_algorithms of the wrong length', frame(message({ extensions: [ext(0x0d, [0, 4, 4, 3])] })), 'malformed signature_algorithms extension'],
    ['odd supported_versions', frame(message({ extensions: [ext(0x2b, [3, 3, 4, 3])] })), 'malformed supported_versions extension'],
    ['empty supported_versions', frame(message({ extensions: [ext(0x2b, [0])] })), 'malformed supported_versions extension'],
    ['no supported_versions length', frame(message({ extensions: [ext(0x2b, [])] })), 'malformed supported_versions extension'],
    ['supported_versions of the wrong length', frame(message({ extensions: [ext(0x2b, [4, 3, 4])] })), 'malformed supported_versions extension'],
  ];
  for (const bad of ['a\u0000b.test', 'a b.test', 'a.test.', '.a.test', 'a..test', '*.a.test', 'caf\u00e9.test', 'a\u007f.test', 'a/b', `${'a'.repeat(64)}.test`, `${'a.'.repeat(126)}ab`]) {
    malformedCases.push([`host name ${JSON.stringify(bad)}`, frame(message({ extensions: [sniExt(bad)] })), 'host name is not a valid DNS name']);
  }

  it.each(malformedCases)('malformed: %s', (_label, bytes, reason) => {
    expect(both(bytes)).toEqual({ status: 'malformed', reason });
    // A decision stands whatever follows.
    expect(both(Buffer.concat([bytes, Buffer.alloc(100, 0x16)]))).toEqual({ status: 'malformed', reason });
  });

  it('every reason in the header is exercised here', () => {
    const header = readFileSync(new URL('../../native/include/tether/client_hello.h', import.meta.url), 'utf8');
    const reasons = new Set(malformedCases.map(([, , reason]) => reason));
    const documented = [...header.matchAll(/"([^"]+)"/g)].map((m) => m[1]!).filter((r) => !r.includes('<') && r.includes(' '));
    for (const r of documented.filter((r) => !['not a TLS handshake record', 'ClientHello exceeds the size cap'].includes(r))) {
      expect(reasons.has(r), r).toBe(true);
    }
    for (const field of ['legacy_version', 'random', 'legacy_session_id', 'cipher_suites', 'legacy_compression_methods', 'extensions']) {
      expect(reasons.has(`ClientHello truncated in ${field}`), field).toBe(true);
    }
  });
});

describe('random mutations of the captures', () => {
  it('never crash, and native and reference agree on all 10,000', () => {
    const random = rng(2024);
    const counts = new Map<string, number>();
    const messages = fixtures.map((f) => messageOf(f.bytes));
    for (let i = 0; i < 10_000; i++) {
      const source = random(3) === 0 ? frame(messages[random(messages.length)]!, [1 + random(600), 1 + random(600)]) : fixtures[random(fixtures.length)]!.bytes;
      const bytes = Array.from(source);
      const edits = 1 + random(4);
      for (let e = 0; e < edits; e++) {
        const at = random(bytes.length + 1);
        switch (random(8)) {
          case 0: bytes[at] = random(256); break;
          case 1: bytes[at] = (bytes[at] ?? 0) ^ (1 << random(8)); break;
          case 2: bytes.splice(at, 1 + random(4)); break;
          case 3: bytes.splice(at, 0, ...Array.from({ length: 1 + random(8) }, () => random(256))); break;
          case 4: bytes.length = Math.min(bytes.length, at); break;
          case 5: { // nudge a 16-bit length-looking field by ±1..4
            const delta = (random(2) === 0 ? -1 : 1) * (1 + random(4));
            const v = (((bytes[at] ?? 0) << 8) | (bytes[at + 1] ?? 0)) + delta;
            bytes[at] = (v >> 8) & 0xff;
            bytes[at + 1] = v & 0xff;
            break;
          }
          case 6: { // copy a slice elsewhere (duplicates extensions now and then)
            const from = random(bytes.length);
            bytes.splice(at, 0, ...bytes.slice(from, from + 1 + random(40)));
            break;
          }
          default: bytes.push(...Array.from({ length: random(64) }, () => random(256)));
        }
      }
      const input = Buffer.from(bytes.map((b) => b & 0xff));
      const cap = random(4) === 0 ? 6 + random(4000) : CLIENT_HELLO_DEFAULT_MAX_BYTES;
      const r = both(input, cap);
      // Without the fingerprint: the same verdict and fields, interleaved with fingerprinted
      // parses, so a workspace left dirty by the short path would show up in the next one.
      if (i % 4 === 0) {
        const lean = parseClientHello(input, cap, { fingerprint: false });
        expect(lean).toEqual(r.status === 'ok' ? { ...r, ja4: '', ja4r: '' } : r);
      }
      if (r.status === 'incomplete') expect(input.length).toBeLessThan(cap);
      if (r.status === 'ok') expect(r.consumed).toBeLessThanOrEqual(Math.min(input.length, cap));
      counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
    }
    for (const status of ['ok', 'incomplete', 'not_tls', 'too_large', 'malformed']) {
      expect(counts.get(status) ?? 0, `${status}: ${JSON.stringify([...counts])}`).toBeGreaterThan(20);
    }
  });
});

describe('fuzz fixtures (test/fixtures/fuzz/client_hello, crash inputs included)', () => {
  it('parse alike in native and reference', () => {
    const dir = new URL('../fixtures/fuzz/client_hello/', import.meta.url);
    const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(files.length).toBeGreaterThanOrEqual(30);
    for (const entry of files) {
      const input = readFileSync(`${entry.parentPath}/${entry.name}`);
      if (input.length === 0) continue;
      // Layout of native/fuzz/client_hello_fuzz.cc: cap selector, then the bytes.
      const cap = input[0] === 0 ? 16_384 : input[0] === 255 ? 65_536 : 6 + 16 * input[0]!;
      both(input.subarray(1), cap);
    }
  });
});

describe('arguments', () => {
  it.each(impls)('$name explains bad arguments, "expected … but received …"', ({ parse }) => {
    expect(() => parse('hello' as unknown as Uint8Array)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'TETHER_ERR_INVALID_ARG_TYPE', message: 'expected a Uint8Array for ClientHello bytes but received string "hello"' }),
    );
    for (const bad of [0, 5, 65_537, 100.5, Number.NaN]) {
      expect(() => parse(Buffer.alloc(1), bad)).toThrow(
        expect.objectContaining({ name: 'RangeError', code: 'TETHER_ERR_INVALID_ARG_VALUE', message: `expected an integer 6..65536 for maxBytes but received ${bad}` }),
      );
    }
    expect(() => parse(Buffer.alloc(1), '100' as unknown as number)).toThrow(/expected a number for maxBytes but received string "100"/);
  });

  it('the raw addon refuses an out buffer too small for the result, rather than writing past it', () => {
    const addon = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as {
      parseClientHello(bytes: Uint8Array, maxBytes: number, out: Uint8Array): number;
    };
    const curl = fixture('curl.hex');
    const need = 52 + 'b.example.com'.length + 12 + 8 + expected['curl.hex']!.ja4r.length;
    expect(addon.parseClientHello(curl, 16_384, Buffer.alloc(need))).toBe(0);
    expect(() => addon.parseClientHello(curl, 16_384, Buffer.alloc(need - 1))).toThrow(
      expect.objectContaining({ name: 'RangeError', code: 'TETHER_ERR_INVALID_ARG_VALUE' }),
    );
    expect(() => addon.parseClientHello(curl, 16_384, undefined as unknown as Uint8Array)).toThrow(
      expect.objectContaining({ name: 'TypeError', code: 'TETHER_ERR_INVALID_ARG_TYPE' }),
    );
    expect(addon.parseClientHello(curl.subarray(0, 10), 16_384, Buffer.alloc(0))).toBe(1);
  });

  it('accepts Uint8Array views at an offset', () => {
    const bytes = fixture('node-tls.hex');
    const backing = Buffer.concat([Buffer.alloc(7, 0xaa), bytes, Buffer.alloc(3)]);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 7, bytes.length);
    expect(both(view)).toEqual(expected['node-tls.hex']);
  });

  it('works in worker threads alongside the main thread (one workspace per thread)', async () => {
    // The raw addon (workers cannot load the TS facade): status 0 and the ja4 at out[16, 52).
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData.path);
      const out = Buffer.alloc(300000);
      let same = 0;
      for (let i = 0; i < 2000; i++) {
        const n = i % workerData.bytes.length;
        const status = addon.parseClientHello(workerData.bytes[n], 16384, out);
        if (status === 0 && out.toString('latin1', 16, 52) === workerData.ja4[n]) same++;
      }
      parentPort.postMessage(same);
    `;
    const bytes = fixtures.map((f) => new Uint8Array(f.bytes));
    const ja4 = fixtures.map((f) => expected[f.name]!.ja4);
    const results = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<number>((resolve, reject) => {
            const worker = new Worker(code, { eval: true, workerData: { path: NATIVE_ADDON_PATH, bytes, ja4 } });
            worker.once('message', (n: number) => void worker.terminate().then(() => resolve(n)));
            worker.once('error', reject);
          }),
      ),
    );
    expect(results).toEqual([2000, 2000, 2000]);
    for (const f of fixtures) expect(parseClientHello(f.bytes)).toEqual(expected[f.name]);
  });
});
