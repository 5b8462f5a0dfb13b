// Writes the seed corpora for the libFuzzer targets in native/fuzz/, in their input layouts:
//   node native/fuzz/gen-seeds.mjs   →   test/fixtures/fuzz/{token_open,hmac_verify,client_hello}/*
// Tokens (v1 and v2) are sealed here with node:crypto under the ring of
// test/fixtures/token-vectors.txt (keys SHA-256("tether token vector key <id>"), ids 7, 0, 255),
// which token_open_fuzz.cc derives the same way; nonces, salts and payloads come from fixed
// labels, so reruns give identical files.
import { createCipheriv, createHash, createHmac, hkdfSync } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROUTE_PAYLOAD, aadFor, rawToken } from '../../test/fixtures/token-format.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const sha256 = (label) => createHash('sha256').update(label).digest();
const keyFor = (id) => sha256(`tether token vector key ${id}`);
const nonceFor = (label) => sha256(`tether fuzz seed nonce ${label}`).subarray(0, 12);
const saltFor = (label) => sha256(`tether fuzz seed salt ${label}`).subarray(0, 16);

// Wire formats from native/include/tether/token.h, base64url unpadded:
// v1: version(1)=0x01 | keyId(1) | nonce(12) | AES-256-GCM(payload) | tag(16);
//     GCM under the ring key, AAD = version | keyId | caller AAD (rawToken, token-format.mjs).
// v2: version(1)=0x02 | keyId(1) | salt(16) | AES-256-GCM(payload) | tag(16);
//     GCM under K = HKDF-SHA256(salt = "tether route token v2", IKM = ring key,
//     info = 0x02 | keyId | salt | caller AAD, 32 bytes), nonce = 12 zero bytes, no AAD.
function rawTokenV2(keyId, key, salt, payload, aad) {
  const header = Buffer.from([2, keyId]);
  const info = Buffer.concat([header, salt, aad]);
  const k = Buffer.from(hkdfSync('sha256', key, Buffer.from('tether route token v2'), info, 32));
  const cipher = createCipheriv('aes-256-gcm', k, Buffer.alloc(12), { authTagLength: 16 });
  const ciphertext = Buffer.concat([cipher.update(payload), cipher.final()]);
  return Buffer.concat([header, salt, ciphertext, cipher.getAuthTag()]);
}


// token_open input: L (1 byte) | caller AAD (L bytes) | token characters.
function tokenOpenInput(aad, token) {
  if (aad.length > 255) throw new Error('AAD longer than the 1-byte length field');
  return Buffer.concat([Buffer.from([aad.length]), aad, Buffer.from(token, 'latin1')]);
}

// hmac_verify input: K (1 byte) | M (1 byte) | key (K) | candidate mac (M) | data.
function hmacInput(key, mac, data) {
  return Buffer.concat([Buffer.from([key.length, mac.length]), key, mac, data]);
}

function writeCorpus(target, seeds) {
  const dir = join(root, 'test', 'fixtures', 'fuzz', target);
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(seeds)) writeFileSync(join(dir, name), bytes);
  console.log(`wrote ${Object.keys(seeds).length} seeds to ${dir}`);
}

const b64u = (buf) => buf.toString('base64url');
const routePayload = ROUTE_PAYLOAD;
const payloads = {
  empty: Buffer.alloc(0),
  one: Buffer.from([0x2a]),
  two: Buffer.from([0x2a, 0x2b]),
  route: routePayload,
  max: Buffer.from(Array.from({ length: 255 }, (_, i) => (i * 7 + 3) & 0xff)),
};
const aads = {
  empty: Buffer.alloc(0),
  web: aadFor('web', 'cookie'),
  // 254 and 255 bytes straddle the core's joined-AAD stack buffer (256 with the 2-byte header).
  a254: Buffer.alloc(254, 0x61),
  a255: Buffer.alloc(255, 0x62),
};

const token = {};
for (const [pname, payload] of Object.entries(payloads)) {
  for (const [aname, aad] of Object.entries(aads)) {
    if (pname !== 'route' && aname.startsWith('a25')) continue;
    const t = b64u(rawToken(7, keyFor(7), nonceFor(`${pname}/${aname}`), payload, aad));
    token[`ok-key7-${pname}-aad-${aname}`] = tokenOpenInput(aad, t);
    const t2 = b64u(rawTokenV2(7, keyFor(7), saltFor(`${pname}/${aname}`), payload, aad));
    token[`v2-ok-key7-${pname}-aad-${aname}`] = tokenOpenInput(aad, t2);
  }
}
for (const id of [0, 255]) {
  const t = b64u(rawToken(id, keyFor(id), nonceFor(`old key ${id}`), routePayload, aads.web));
  token[`ok-key${id}-route-aad-web`] = tokenOpenInput(aads.web, t);
  const t2 = b64u(rawTokenV2(id, keyFor(id), saltFor(`old key ${id}`), routePayload, aads.web));
  token[`v2-ok-key${id}-route-aad-web`] = tokenOpenInput(aads.web, t2);
}

const good = rawToken(7, keyFor(7), nonceFor('negative'), routePayload, aads.web);
const goodToken = b64u(good);
const edit = (fn) => {
  const copy = Buffer.from(good);
  fn(copy);
  return b64u(copy);
};
const bad = {
  'auth-other-aad': [aadFor('api', 'cookie'), goodToken],
  'auth-tag-flip': [aads.web, edit((b) => (b[b.length - 1] ^= 1))],
  'auth-key-swapped-to-0': [aads.web, edit((b) => (b[1] = 0))],
  'unknown-key-9': [aads.web, edit((b) => (b[1] = 9))],
  // A v1 token relabelled 2 reads as a v2 token, whose tag then fails.
  'v1-auth-read-as-v2': [aads.web, edit((b) => (b[0] = 2))],
  'bad-version-0': [aads.web, edit((b) => (b[0] = 0))],
  'bad-version-3': [aads.web, edit((b) => (b[0] = 3))],
  'malformed-raw-29-bytes': [aads.web, b64u(good.subarray(0, 29))],
  'malformed-raw-286-bytes': [aads.web, b64u(Buffer.concat([good, Buffer.alloc(286 - good.length)]))],
  'malformed-padding': [aads.web, `${goodToken}==`],
  'malformed-standard-base64': [aads.web, `${goodToken.slice(0, 10)}+${goodToken.slice(11)}`],
  'malformed-length-mod-4-is-1': [aads.web, `${goodToken}A`.padEnd(((goodToken.length >> 2) + 1) * 4 + 1, 'A')],
  'malformed-513-chars': [aads.empty, 'A'.repeat(513)],
  'bad-version-512-chars': [aads.empty, 'A'.repeat(512)],
};
const last = goodToken.length % 4 === 0 ? null : goodToken.at(-1);
if (last === null) throw new Error('negative seed token must have spare bits');
const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
bad['malformed-noncanonical-trailing-bits'] = [aads.web, goodToken.slice(0, -1) + alphabet[alphabet.indexOf(last) | 1]];
for (const [name, [aad, t]] of Object.entries(bad)) token[name] = tokenOpenInput(aad, t);

// The same negatives for v2, and each version's token presented as the other.
const good2 = rawTokenV2(7, keyFor(7), saltFor('negative'), routePayload, aads.web);
const good2Token = b64u(good2);
const edit2 = (fn) => {
  const copy = Buffer.from(good2);
  fn(copy);
  return b64u(copy);
};
const bad2 = {
  'auth-other-aad': [aadFor('api', 'cookie'), good2Token],
  'auth-tag-flip': [aads.web, edit2((b) => (b[b.length - 1] ^= 1))],
  'auth-salt-flip': [aads.web, edit2((b) => (b[2] ^= 0x80))],
  'auth-key-swapped-to-0': [aads.web, edit2((b) => (b[1] = 0))],
  'auth-read-as-v1': [aads.web, edit2((b) => (b[0] = 1))],
  'unknown-key-9': [aads.web, edit2((b) => (b[1] = 9))],
  'bad-version-3': [aads.web, edit2((b) => (b[0] = 3))],
  'malformed-raw-33-bytes': [aads.web, b64u(good2.subarray(0, 33))],
  'malformed-raw-290-bytes': [aads.web, b64u(Buffer.concat([good2, Buffer.alloc(290 - good2.length)]))],
  // 30..33 raw bytes: a valid v1 length, too short for v2.
  'malformed-raw-30-bytes': [aads.web, b64u(good2.subarray(0, 30))],
};
const last2 = good2Token.length % 4 === 0 ? null : good2Token.at(-1);
if (last2 === null) throw new Error('negative v2 seed token must have spare bits');
bad2['malformed-noncanonical-trailing-bits'] = [aads.web, good2Token.slice(0, -1) + alphabet[alphabet.indexOf(last2) | 1]];
for (const [name, [aad, t]] of Object.entries(bad2)) token[`v2-${name}`] = tokenOpenInput(aad, t);
token['empty-token'] = tokenOpenInput(aads.web, '');
writeCorpus('token_open', token);

const macOf = (key, data) => createHmac('sha256', key).update(data).digest();
const hmacSeeds = {};
const hmacCases = {
  'rfc4231-1': [Buffer.alloc(20, 0x0b), Buffer.from('Hi There')],
  'rfc4231-2': [Buffer.from('Jefe'), Buffer.from('what do ya want for nothing?')],
  'rfc4231-6-long-key': [Buffer.alloc(131, 0xaa), Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First')],
  'block-size-key': [Buffer.alloc(64, 0x11), Buffer.from('frame')],
  'empty-key': [Buffer.alloc(0), Buffer.from('data')],
  'empty-key-empty-data': [Buffer.alloc(0), Buffer.alloc(0)],
};
for (const [name, [key, data]] of Object.entries(hmacCases)) {
  const mac = macOf(key, data);
  hmacSeeds[`${name}-good-mac`] = hmacInput(key, mac, data);
  const flipped = Buffer.from(mac);
  flipped[31] ^= 0x80;
  hmacSeeds[`${name}-bad-mac`] = hmacInput(key, flipped, data);
}
const [k1, d1] = hmacCases['rfc4231-1'];
hmacSeeds['short-mac-31'] = hmacInput(k1, macOf(k1, d1).subarray(0, 31), d1);
hmacSeeds['long-mac-33'] = hmacInput(k1, Buffer.concat([macOf(k1, d1), Buffer.from([0])]), d1);
writeCorpus('hmac_verify', hmacSeeds);

// client_hello input: cap selector (1 byte: 0 → 16384, 255 → 65536, else 6 + 16 × value) | bytes.
// Seeds: every captured ClientHello in test/fixtures/client-hello/ as it came, re-framed into
// several records, under a cap just too small, followed by a ChangeCipherSpec record; plus a few
// inputs for the early decisions.
const helloDir = join(root, 'test', 'fixtures', 'client-hello');
const helloInput = (cap, bytes) => Buffer.concat([Buffer.from([cap]), bytes]);
const recordsOf = (message, size) => {
  const out = [];
  for (let at = 0; at < message.length; at += size) {
    const part = message.subarray(at, at + size);
    out.push(Buffer.from([0x16, 0x03, 0x01, part.length >> 8, part.length & 0xff]), part);
  }
  return Buffer.concat(out);
};
const messageOf = (records) => {
  const parts = [];
  for (let at = 0; at < records.length; at += 5 + records.readUInt16BE(at + 3)) {
    parts.push(records.subarray(at + 5, at + 5 + records.readUInt16BE(at + 3)));
  }
  return Buffer.concat(parts);
};
const helloSeeds = {};
for (const file of readdirSync(helloDir).filter((f) => f.endsWith('.hex')).sort()) {
  const name = file.replace(/\.hex$/, '');
  const bytes = Buffer.from(readFileSync(join(helloDir, file), 'utf8').trim(), 'hex');
  const message = messageOf(bytes);
  helloSeeds[`${name}`] = helloInput(0, bytes);
  helloSeeds[`${name}-records-of-100`] = helloInput(0, recordsOf(message, 100));
  helloSeeds[`${name}-records-of-7`] = helloInput(255, recordsOf(message, 7));
  helloSeeds[`${name}-then-ccs`] = helloInput(0, Buffer.concat([bytes, Buffer.from('140303000101', 'hex')]));
  // The largest selectable cap below the ClientHello's size (6 + 16 × value < length).
  const tight = Math.floor((bytes.length - 7) / 16);
  if (tight >= 1 && tight <= 254) helloSeeds[`${name}-cap-${6 + 16 * tight}`] = helloInput(tight, bytes);
}
// Bodies cut short inside each field (lengths kept consistent), so the fuzzer starts next to
// every "truncated in" decision; and the TLS 1.2 capture with a supported_versions extension
// added for each version JA4 names.
const curlMessage = messageOf(Buffer.from(readFileSync(join(helloDir, 'curl.hex'), 'utf8').trim(), 'hex'));
const withBody = (body) => Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
for (const cut of [0, 1, 20, 34, 40, 67, 68, 70, 131, 132]) {
  helloSeeds[`truncated-body-at-${cut}`] = helloInput(0, recordsOf(withBody(curlMessage.subarray(4, 4 + cut)), 16_384));
}
const tls12 = messageOf(Buffer.from(readFileSync(join(helloDir, 'openssl-s_client-tls12.hex'), 'utf8').trim(), 'hex'));
const extensionsAt = (message) => {
  let at = 4 + 2 + 32;
  at += 1 + message[at];
  at += 2 + message.readUInt16BE(at);
  at += 1 + message[at];
  return at; // the u16 length of the extensions block
};
for (const version of [0x0002, 0x0300, 0x0301, 0x0302, 0x7f1c, 0xfeff, 0xfefd, 0xfefc]) {
  const at = extensionsAt(tls12);
  const extension = Buffer.from([0x00, 0x2b, 0x00, 0x03, 0x02, version >> 8, version & 0xff]);
  const block = Buffer.concat([tls12.subarray(at + 2), extension]);
  const body = Buffer.concat([tls12.subarray(4, at), Buffer.from([block.length >> 8, block.length & 0xff]), block]);
  helloSeeds[`tls12-with-version-${version.toString(16).padStart(4, '0')}`] = helloInput(0, recordsOf(withBody(body), 16_384));
}
// One-byte records under a cap of 22: the third record cannot fit before it arrives.
helloSeeds['one-byte-records-cap-22'] = helloInput(1, recordsOf(curlMessage, 1).subarray(0, 40));

Object.assign(helloSeeds, {
  'not-tls-http': helloInput(0, Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')),
  'not-tls-sslv2': helloInput(0, Buffer.from('802e0103010015000000100700c0', 'hex')),
  'malformed-empty-record': helloInput(0, Buffer.from('1603010000', 'hex')),
  'too-large-16m-message': helloInput(0, Buffer.from('160301006401ffffff', 'hex')),
  'incomplete-record-header': helloInput(0, Buffer.from('160301', 'hex')),
});
writeCorpus('client_hello', helloSeeds);
