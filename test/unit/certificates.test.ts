// Certificate store: HAProxy-style `crt` files and directories, every problem reported at once,
// SNI selection, and a real handshake on the secure contexts it builds. Certificates are made
// with the openssl CLI at test time.
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { TetherError } from '../../src/errors.js';
import { referenceParseClientHello } from '../../src/native/client-hello-reference.js';
import {
  MODERN_CIPHERS,
  loadCertificates,
  type CertificateError,
  type CertificateStore,
  type LoadCertificatesOptions,
} from '../../src/tls/certificates.js';
import { encryptKey, makeCertFactory, traditionalKey, type CertFactory, type Leaf } from '../helpers/certs.js';
import { prng } from '../helpers/prng.js';

let factory: CertFactory;
let a: Leaf; // EC, a.example + WWW.A.Example (lower-cased on load) + two IPs, issued by the intermediate
let rsa: Leaf; // RSA 2048, rsa.example
let wild: Leaf; // *.example.com
let wildSub: Leaf; // *.a.example.com
let exactSub: Leaf; // exact.example.com
let soon: Leaf; // soon.example, one day
let scratchCount = 0;

beforeAll(() => {
  factory = makeCertFactory();
  a = factory.leaf({ san: ['DNS:a.example', 'DNS:WWW.A.Example', 'IP:127.0.0.1', 'IP:::1'] });
  rsa = factory.leaf({ key: 'rsa', san: ['DNS:rsa.example'] });
  wild = factory.leaf({ san: ['DNS:*.example.com'] });
  wildSub = factory.leaf({ san: ['DNS:*.a.example.com'] });
  exactSub = factory.leaf({ san: ['DNS:exact.example.com'] });
  soon = factory.leaf({ san: ['DNS:soon.example'], days: 1 });
});

afterAll(() => factory?.cleanup());

/** A fresh directory under the factory's. */
function scratch(): string {
  const dir = join(factory.dir, `case-${scratchCount++}`);
  mkdirSync(dir);
  return dir;
}

/** Writes `content` with exactly `mode` (whatever the umask). */
function put(dir: string, name: string, content: string | Buffer, mode = 0o600): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

interface Warning {
  msg: string;
  fields: Record<string, unknown>;
}

function load(paths: readonly string[], opts: LoadCertificatesOptions = {}): { store: CertificateStore; warnings: Warning[] } {
  const warnings: Warning[] = [];
  const store = loadCertificates(paths, { ...opts, warn: (msg, fields) => warnings.push({ msg, fields }) });
  return { store, warnings };
}

function problemsOf(paths: readonly string[], opts: LoadCertificatesOptions = {}): string[] {
  try {
    loadCertificates(paths, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(TetherError);
    const { code, problems, message } = err as CertificateError;
    expect(code).toBe('TETHER_ERR_CONFIG');
    if (problems.length === 1) expect(message).toBe(problems[0]);
    else expect(message).toBe(`${problems.length} certificate problems:\n  ${problems.join('\n  ')}`);
    return problems;
  }
  throw new Error('expected loadCertificates to throw');
}

/** The 1-based line a block starts on when appended after `before`. */
function lineAfter(before: string): number {
  return before.split('\n').length;
}

function dates(cert: string): { notBefore: Date; notAfter: Date } {
  const x = new X509Certificate(cert);
  return { notBefore: new Date(x.validFrom), notAfter: new Date(x.validTo) };
}

describe('loadCertificates: reading files', () => {
  it('reads a combined PEM: EC leaf, intermediate, then the key', () => {
    const file = put(scratch(), 'a.pem', a.chain + a.key);
    const { store, warnings } = load([file]);
    expect(warnings).toEqual([]);
    expect(store.entries).toHaveLength(1);
    const entry = store.entries[0]!;
    expect(entry).toEqual({
      file,
      keyFile: file,
      names: ['a.example', 'www.a.example'],
      ipAddresses: ['127.0.0.1', '0:0:0:0:0:0:0:1'],
      subject: 'CN=a.example',
      issuer: 'CN=Tether test intermediate',
      ...dates(a.cert),
      expired: false,
      keyType: 'ec',
      fingerprint256: new X509Certificate(a.cert).fingerprint256,
      secureContext: expect.any(Object),
      chainPem: a.chain,
    });
    expect(entry.secureContext).toBeInstanceOf(tls.createSecureContext().constructor);
    expect(entry.keyPem).toBe(a.key);
    // The key never leaks through logging or JSON.
    expect(Object.keys(entry)).not.toContain('keyPem');
    expect(JSON.stringify(entry)).not.toContain('PRIVATE KEY');
    expect(Object.isFrozen(entry)).toBe(true);
    expect(store.strictSni).toBe(false);
    expect(store.defaultEntry).toBe(entry);
    expect(store.contextTerms).toEqual({
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
      ciphers: MODERN_CIPHERS,
      honorCipherOrder: true,
      ecdhCurve: 'X25519:P-256:P-384',
    });
  });

  it('reads an RSA key first, in PKCS#1, with CRLF lines and text around the blocks', () => {
    const text = `Bag Attributes\n    friendlyName: rsa\n${traditionalKey(factory, rsa.key)}subject=CN = rsa.example\n${rsa.chain}`;
    expect(text).toContain('-----BEGIN RSA PRIVATE KEY-----');
    const file = put(scratch(), 'rsa.pem', text.replace(/\n/g, '\r\n'));
    const { store, warnings } = load([file]);
    expect(warnings).toEqual([]);
    expect(store.entries.map((e) => [e.names, e.keyType, e.subject, e.chainPem])).toEqual([[['rsa.example'], 'rsa', 'CN=rsa.example', rsa.chain]]);
  });

  it('reads an SEC1 EC key after EC PARAMETERS, as `openssl ecparam -genkey` writes it', () => {
    const params = '-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n';
    const sec1 = traditionalKey(factory, a.key);
    expect(sec1).toContain('-----BEGIN EC PRIVATE KEY-----');
    const file = put(scratch(), 'a.pem', a.chain + params + sec1);
    const { store } = load([file]);
    expect(store.entries.map((e) => [e.names, e.keyType])).toEqual([[['a.example', 'www.a.example'], 'ec']]);
  });

  it('reads a directory: .pem and .crt files sorted by name, nothing else, no recursion', () => {
    const dir = scratch();
    put(dir, 'b-wild.pem', wild.chain + wild.key);
    put(dir, 'a-rsa.crt', rsa.chain);
    put(dir, 'a-rsa.key', rsa.key);
    put(dir, 'c-a.PEM', a.chain + a.key);
    put(dir, 'README.txt', 'not a certificate');
    put(dir, 'stray.key', a.key);
    mkdirSync(join(dir, 'nested.pem'));
    put(join(dir, 'nested.pem'), 'x.pem', 'ignored: not descended into');
    const { store, warnings } = load([dir]);
    expect(warnings).toEqual([]);
    expect(store.entries.map((e) => [e.file, e.keyFile, e.names])).toEqual([
      [join(dir, 'a-rsa.crt'), join(dir, 'a-rsa.key'), ['rsa.example']],
      [join(dir, 'b-wild.pem'), join(dir, 'b-wild.pem'), ['*.example.com']],
      [join(dir, 'c-a.PEM'), join(dir, 'c-a.PEM'), ['a.example', 'www.a.example']],
    ]);
  });

  it('takes files and directories in the order given, each file once', () => {
    const dir = scratch();
    const wildFile = put(dir, 'wild.pem', wild.chain + wild.key);
    const single = put(scratch(), 'a.pem', a.chain + a.key);
    const { store } = load([single, dir, wildFile, single]);
    expect(store.entries.map((e) => e.file)).toEqual([single, wildFile]);
  });

  it('finds a separate key as <name>.key, else as <name>.pem.key (HAProxy); a key in the file wins', () => {
    const dir = scratch();
    const nginxStyle = put(dir, 'x.pem', a.chain);
    put(dir, 'x.key', a.key);
    const haproxyStyle = put(dir, 'y.crt', rsa.chain);
    put(dir, 'y.crt.key', rsa.key);
    const inFile = put(dir, 'z.pem', wild.chain + wild.key);
    put(dir, 'z.key', rsa.key); // not z's key: never read
    const { store } = load([nginxStyle, haproxyStyle, inFile]);
    expect(store.entries.map((e) => [e.file, e.keyFile, e.keyType])).toEqual([
      [nginxStyle, join(dir, 'x.key'), 'ec'],
      [haproxyStyle, join(dir, 'y.crt.key'), 'rsa'],
      [inFile, inFile, 'ec'],
    ]);
  });

  it('takes DNS names from the SAN, lower-cased, and the CN only when the SAN has none', () => {
    const dir = scratch();
    const both = factory.leaf({ subject: '/CN=cn.example', san: ['DNS:San.Example.', 'DNS:san.example', 'email:x@san.example', 'URI:https://san.example/'] });
    const cnOnly = factory.leaf({ subject: '/CN=CN-Only.Example/O=Example, Inc.' });
    const ipOnly = factory.leaf({ subject: '/CN=ip.example', san: ['IP:10.0.0.1'] });
    const files = [put(dir, '1.pem', both.chain + both.key), put(dir, '2.pem', cnOnly.chain + cnOnly.key), put(dir, '3.pem', ipOnly.chain + ipOnly.key)];
    const { store, warnings } = load(files);
    expect(warnings).toEqual([]);
    expect(store.entries.map((e) => [e.names, e.ipAddresses, e.subject])).toEqual([
      [['san.example'], [], 'CN=cn.example'],
      [['cn-only.example'], [], 'CN=CN-Only.Example, O=Example\\, Inc.'],
      [['ip.example'], ['10.0.0.1'], 'CN=ip.example'],
    ]);
  });

  it('ignores, with a warning, names that are not host names or put the wildcard elsewhere', () => {
    const odd = factory.leaf({ san: ['DNS:ok.example', 'DNS:a*.example', 'DNS:*.*.example', 'DNS:x.*.example', 'DNS:*', 'DNS:bad name.example'] });
    const file = put(scratch(), 'odd.pem', odd.chain + odd.key);
    const { store, warnings } = load([file]);
    expect(store.entries[0]!.names).toEqual(['ok.example']);
    expect(warnings).toEqual(
      ['a*.example', '*.*.example', 'x.*.example', '*', 'bad name.example'].map((name) => ({
        msg: `--cert ${file}: ignoring the name ${JSON.stringify(name)}: not a host name, or a wildcard that is not the whole left-most label`,
        fields: { file, name },
      })),
    );
  });

  it('warns when a certificate names no host: it can only be the default', () => {
    const anonymous = factory.leaf({ subject: '/O=No Name', san: ['IP:10.0.0.2'] });
    const file = put(scratch(), 'anon.pem', anonymous.chain + anonymous.key);
    const { store, warnings } = load([file]);
    expect(store.entries[0]!.names).toEqual([]);
    expect(store.entries[0]!.ipAddresses).toEqual(['10.0.0.2']);
    expect(warnings).toEqual([{ msg: `--cert ${file}: the certificate names no host (O=No Name): it can only be the default certificate`, fields: { file } }]);
  });

  it('names its source as told (a config file key rather than the flag)', () => {
    const missing = join(scratch(), 'missing.pem');
    expect(problemsOf([missing], { source: 'tls.certs' })).toEqual([`tls.certs ${missing}: cannot read: ENOENT (no such file or directory)`]);
  });
});

describe('loadCertificates: key types', () => {
  it('accepts Ed25519 (OpenSSL clients only) with a warning', () => {
    const ed = factory.leaf({ key: 'ed25519', san: ['DNS:ed.example'] });
    const file = put(scratch(), 'ed.pem', ed.chain + ed.key);
    const { store, warnings } = load([file]);
    expect(store.entries.map((e) => [e.names, e.keyType])).toEqual([[['ed.example'], 'ed25519']]);
    expect(warnings).toEqual([
      {
        msg: `--cert ${file}: ed25519 certificates work with OpenSSL clients but not with web browsers; use ECDSA P-256 or RSA for them`,
        fields: { file, keyType: 'ed25519' },
      },
    ]);
  });

  it('refuses ECDSA keys on a curve TLS cannot sign with, and RSA keys under 2048 bits', () => {
    const dir = scratch();
    const k1 = factory.leaf({ key: 'secp256k1', san: ['DNS:k1.example'] });
    const small = factory.leaf({ key: 'rsa1024', san: ['DNS:small.example'] });
    const k1File = put(dir, 'k1.pem', k1.chain + k1.key);
    const smallFile = put(dir, 'small.pem', small.chain + small.key);
    expect(problemsOf([dir])).toEqual([
      `--cert ${k1File}: the ECDSA key is on curve secp256k1, which TLS cannot sign with; use P-256 or P-384`,
      `--cert ${smallFile}: the RSA key has 1024 bits; at least 2048 are needed`,
    ]);
  });

  it('warns about a certificate that is not for TLS servers', () => {
    const client = factory.leaf({ san: ['DNS:client.example'], extendedKeyUsage: 'clientAuth' });
    const file = put(scratch(), 'client.pem', client.chain + client.key);
    const { warnings } = load([file]);
    expect(warnings).toEqual([
      {
        msg: `--cert ${file}: the certificate is not for TLS servers (extended key usage 1.3.6.1.5.5.7.3.2); clients will refuse it`,
        fields: { file, extendedKeyUsage: ['1.3.6.1.5.5.7.3.2'] },
      },
    ]);
  });
});

describe('loadCertificates: problems', () => {
  it('names the file and the certificate when the key does not match', () => {
    const file = put(scratch(), 'x.pem', a.chain + rsa.key);
    expect(problemsOf([file])).toEqual([`--cert ${file}: the private key does not match the certificate (CN=a.example)`]);
  });

  it('says which certificate the key belongs to when the chain is upside down', () => {
    const file = put(scratch(), 'x.pem', factory.intermediate + a.cert + a.key);
    expect(problemsOf([file])).toEqual([
      `--cert ${file}: the private key does not match the certificate (CN=Tether test intermediate); ` +
        'it matches certificate 2 of the chain (CN=a.example): put the leaf first',
    ]);
  });

  it('warns when the chain after the leaf is not its issuer', () => {
    const file = put(scratch(), 'x.pem', a.cert + rsa.cert + a.key);
    const { warnings } = load([file]);
    expect(warnings).toEqual([
      {
        msg: `--cert ${file}: certificate 2 of the chain (CN=rsa.example) did not issue certificate 1 (CN=a.example): a chain runs leaf first, then each issuer`,
        fields: { file },
      },
    ]);
  });

  it('reports a missing key with both places it looked', () => {
    const dir = scratch();
    const file = put(dir, 'x.pem', a.chain);
    expect(problemsOf([file])).toEqual([`--cert ${file}: no private key (looked in the file and in ${join(dir, 'x.key')} and ${join(dir, 'x.pem.key')})`]);
    const bare = put(dir, 'bare', a.chain);
    expect(problemsOf([bare])).toEqual([`--cert ${bare}: no private key (looked in the file and in ${join(dir, 'bare.key')})`]);
  });

  it('refuses encrypted keys, PKCS#8 and legacy, in the file or beside it', () => {
    const dir = scratch();
    const keyLine = lineAfter(a.chain);
    const pkcs8 = put(dir, 'p8.pem', a.chain + encryptKey(factory, a.key, 'pkcs8'));
    const legacy = put(dir, 'legacy.pem', a.chain + encryptKey(factory, a.key, 'legacy'));
    const beside = put(dir, 'beside.pem', a.chain);
    put(dir, 'beside.key', encryptKey(factory, a.key, 'pkcs8'));
    const advice = 'encrypted keys are not supported: decrypt it with `openssl pkey` and chmod 600 the file';
    expect(problemsOf([pkcs8, legacy, beside])).toEqual([
      `--cert ${pkcs8}: line ${keyLine}: the private key is encrypted (BEGIN ENCRYPTED PRIVATE KEY); ${advice}`,
      `--cert ${legacy}: line ${keyLine}: the private key is encrypted (BEGIN EC PRIVATE KEY, Proc-Type: 4,ENCRYPTED); ${advice}`,
      `--cert ${beside}: key file ${join(dir, 'beside.key')}: line 1: the private key is encrypted (BEGIN ENCRYPTED PRIVATE KEY); ${advice}`,
    ]);
  });

  it('explains files that are not certificates', () => {
    const dir = scratch();
    const der = new X509Certificate(a.cert).raw;
    const text = put(dir, 'text.pem', 'hello, world\n');
    const empty = put(dir, 'empty.pem', '');
    const binary = put(dir, 'binary.crt', der);
    const keyOnly = put(dir, 'key-only.pem', a.key);
    const request = put(dir, 'request.pem', `${a.chain}-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n${a.key}`);
    const dsa = put(dir, 'dsa.pem', `${a.chain}-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----\n`);
    const requestLine = lineAfter(a.chain);
    expect(problemsOf([dir])).toEqual([
      `--cert ${binary}: not PEM: the file looks like DER; convert it with \`openssl x509 -inform der\``,
      `--cert ${dsa}: line ${requestLine}: BEGIN DSA PRIVATE KEY: unsupported key format (expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)`,
      `--cert ${empty}: no certificate (expected -----BEGIN CERTIFICATE-----)`,
      `--cert ${keyOnly}: no certificate, only a private key (expected -----BEGIN CERTIFICATE-----)`,
      `--cert ${request}: line ${requestLine}: unexpected BEGIN CERTIFICATE REQUEST block (expected CERTIFICATE and a private key)`,
      `--cert ${text}: no certificate (expected -----BEGIN CERTIFICATE-----)`,
    ]);
  });

  it('reports broken PEM with line numbers: truncation, bad base64, stray END, two keys', () => {
    const dir = scratch();
    const keyLine = lineAfter(a.chain);
    const truncated = put(dir, 'truncated.pem', (a.chain + a.key).slice(0, a.chain.length + 60));
    const badBase64 = put(dir, 'bad-base64.pem', a.chain.replace(/^M/m, '!') + a.key);
    const strayEnd = put(dir, 'stray-end.pem', `-----END CERTIFICATE-----\n${a.chain}${a.key}`);
    const unclosed = put(dir, 'unclosed.pem', a.cert.replace('-----END CERTIFICATE-----\n', '') + a.key);
    const mismatchedEnd = put(dir, 'mismatched-end.pem', a.chain + a.key.replace('END PRIVATE KEY', 'END EC PRIVATE KEY'));
    const twoKeys = put(dir, 'two-keys.pem', a.chain + a.key + a.key);
    const headers = put(dir, 'headers.pem', a.chain.replace('-----BEGIN CERTIFICATE-----\n', '-----BEGIN CERTIFICATE-----\nComment: hi\n\n') + a.key);
    const garbledDer = put(dir, 'garbled-der.pem', `-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n${a.key}`);
    let reason = '';
    try {
      new X509Certificate('-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n');
    } catch (err) {
      reason = (err as Error).message;
    }
    expect(reason).toMatch(/^error:[0-9A-F]+:asn1 encoding routines::/);
    const aCertLines = lineAfter(a.cert) - 1;
    expect(problemsOf([dir])).toEqual([
      `--cert ${badBase64}: line 1: BEGIN CERTIFICATE: the body is not valid base64`,
      `--cert ${garbledDer}: line 1: not a certificate: ${reason}`,
      `--cert ${headers}: line 1: BEGIN CERTIFICATE has unexpected header lines`,
      `--cert ${mismatchedEnd}: line ${lineAfter(a.chain + a.key) - 1}: END EC PRIVATE KEY does not close the BEGIN PRIVATE KEY of line ${keyLine}`,
      `--cert ${strayEnd}: line 1: END CERTIFICATE without a BEGIN line`,
      `--cert ${truncated}: line ${keyLine}: BEGIN PRIVATE KEY has no END line (is the file truncated?)`,
      `--cert ${twoKeys}: 2 private keys (lines ${keyLine}, ${lineAfter(a.chain + a.key)}); a file holds one chain and its one key`,
      `--cert ${unclosed}: line 1: BEGIN CERTIFICATE has no END line before the BEGIN PRIVATE KEY of line ${aCertLines}`,
    ]);
  });

  it('reports paths it cannot use', () => {
    const dir = scratch();
    const missing = join(dir, 'missing.pem');
    const emptyDir = join(dir, 'empty');
    mkdirSync(emptyDir);
    const onlyOthers = join(dir, 'others');
    mkdirSync(onlyOthers);
    put(onlyOthers, 'tls.key', a.key);
    mkdirSync(join(onlyOthers, 'sub.pem'));
    const certDir = join(dir, 'certs');
    mkdirSync(certDir);
    const dangling = join(certDir, 'gone.pem');
    symlinkSync(join(dir, 'nowhere.pem'), dangling);
    expect(problemsOf([missing, emptyDir, onlyOthers, '/dev/null', certDir, ''])).toEqual([
      `--cert ${missing}: cannot read: ENOENT (no such file or directory)`,
      `--cert ${emptyDir}: no .pem or .crt files in the directory`,
      `--cert ${onlyOthers}: no .pem or .crt files in the directory`,
      '--cert /dev/null: not a regular file or a directory',
      `--cert ${dangling}: cannot read: ENOENT (no such file or directory)`,
      '--cert: expected a file or directory path but received ""',
    ]);
    expect(problemsOf([])).toEqual(['--cert: expected at least one certificate file or directory']);
  });

  it('reports every problem of every file in one error, and no store', () => {
    const dir = scratch();
    const good = put(dir, 'good.pem', a.chain + a.key);
    const mismatch = put(dir, 'mismatch.pem', a.chain + rsa.key);
    const noKey = put(dir, 'no-key.pem', rsa.chain);
    const missing = join(dir, 'missing');
    expect(problemsOf([good, mismatch, missing, noKey])).toEqual([
      `--cert ${mismatch}: the private key does not match the certificate (CN=a.example)`,
      `--cert ${missing}: cannot read: ENOENT (no such file or directory)`,
      `--cert ${noKey}: no private key (looked in the file and in ${join(dir, 'no-key.key')} and ${join(dir, 'no-key.pem.key')})`,
    ]);
  });

  it('reports a cipher string OpenSSL cannot use once', () => {
    const file = put(scratch(), 'a.pem', a.chain + a.key);
    const [problem, ...rest] = problemsOf([file], { ciphers: 'NOT-A-CIPHER' });
    expect(rest).toEqual([]);
    expect(problem).toMatch(/^--cert: ciphers "NOT-A-CIPHER": .*no cipher match$/);
  });
});

describe('loadCertificates: warnings', () => {
  it('serves an expired certificate, flagged, with a loud warning', () => {
    const file = put(scratch(), 'soon.pem', soon.chain + soon.key);
    const { notBefore, notAfter } = dates(soon.cert);
    const now = notAfter.getTime() + 1000;
    const { store, warnings } = load([file], { now });
    expect(store.entries.map((e) => e.expired)).toEqual([true]);
    expect(warnings).toEqual([
      {
        msg: `--cert ${file}: the certificate EXPIRED on ${notAfter.toISOString()} (CN=soon.example); clients will refuse it until it is renewed`,
        fields: { file, notAfter: notAfter.toISOString() },
      },
    ]);
    expect(store.select('soon.example')).toBe(store.entries[0]);
    expect(store.describe(now)).toEqual([
      {
        file,
        keyFile: file,
        names: ['soon.example'],
        ipAddresses: [],
        subject: 'CN=soon.example',
        issuer: 'CN=Tether test intermediate',
        notBefore: notBefore.toISOString(),
        notAfter: notAfter.toISOString(),
        expiresInSeconds: -1,
        expired: true,
        keyType: 'ec',
        fingerprint256: new X509Certificate(soon.cert).fingerprint256,
        default: true,
      },
    ]);
    // At the load's clock it was one second from expiry the other way round.
    expect(store.describe(notAfter.getTime() - 1000)[0]).toMatchObject({ expiresInSeconds: 1, expired: false });
    expect(load([file], { now: notAfter.getTime() }).store.entries[0]!.expired).toBe(false);
  });

  it('warns about a certificate not valid yet (but does not flag it expired)', () => {
    const file = put(scratch(), 'soon.pem', soon.chain + soon.key);
    const { notBefore } = dates(soon.cert);
    const { store, warnings } = load([file], { now: notBefore.getTime() - 1000 });
    expect(store.entries[0]!.expired).toBe(false);
    expect(warnings).toEqual([
      {
        msg: `--cert ${file}: the certificate is NOT VALID YET: it starts on ${notBefore.toISOString()} (CN=soon.example); check the clock`,
        fields: { file, notBefore: notBefore.toISOString() },
      },
    ]);
  });

  it('warns about a key file every user can read, naming that file', () => {
    const dir = scratch();
    const combined = put(dir, 'combined.pem', a.chain + a.key, 0o644);
    const cert = put(dir, 'split.pem', rsa.chain, 0o644);
    const keyFile = put(dir, 'split.key', rsa.key, 0o604);
    const groupOnly = put(dir, 'group.pem', wild.chain + wild.key, 0o640);
    const { warnings } = load([combined, cert, groupOnly]);
    expect(warnings).toEqual([
      {
        msg: `--cert ${combined}: the private key file ${combined} is readable by every user (mode 0644): chmod 600 it`,
        fields: { file: combined, keyFile: combined, mode: '0644' },
      },
      {
        msg: `--cert ${cert}: the private key file ${keyFile} is readable by every user (mode 0604): chmod 600 it`,
        fields: { file: cert, keyFile, mode: '0604' },
      },
    ]);
  });

  it('gives a name in two files to the first unexpired one, and says so', () => {
    const dir = scratch();
    const renewed = factory.leaf({ san: ['DNS:soon.example'] });
    const old = put(dir, '1-old.pem', soon.chain + soon.key);
    const fresh = put(dir, '2-new.pem', renewed.chain + renewed.key);
    const copy = put(dir, '3-copy.pem', renewed.chain + renewed.key);
    const now = dates(soon.cert).notAfter.getTime() + 1000;
    const { store, warnings } = load([dir], { now });
    expect(store.select('soon.example')?.file).toBe(fresh);
    expect(store.defaultEntry?.file).toBe(old); // the default is still simply the first
    expect(warnings.slice(1)).toEqual([
      { msg: `--cert ${copy}: soon.example is also in ${fresh}, which serves it`, fields: { file: copy, name: 'soon.example', servedBy: fresh } },
      { msg: `--cert ${old}: soon.example is also in ${fresh}, which serves it`, fields: { file: old, name: 'soon.example', servedBy: fresh } },
    ]);
    expect(warnings[0]!.msg).toContain(`--cert ${old}: the certificate EXPIRED`);
  });

  it('drops warnings when given no warn function', () => {
    const file = put(scratch(), 'soon.pem', soon.chain + soon.key, 0o644);
    expect(loadCertificates([file], { now: Date.parse('2999-01-01T00:00:00Z') }).entries[0]!.expired).toBe(true);
  });
});

describe('CertificateStore.select', () => {
  let dir: string;
  let files: Record<'a' | 'wild' | 'wildSub' | 'exact' | 'rsa', string>;

  beforeAll(() => {
    dir = scratch();
    files = {
      a: put(dir, '1-a.pem', a.chain + a.key),
      wild: put(dir, '2-wild.pem', wild.chain + wild.key),
      wildSub: put(dir, '3-wild-sub.pem', wildSub.chain + wildSub.key),
      exact: put(dir, '4-exact.pem', exactSub.chain + exactSub.key),
      rsa: put(dir, '5-rsa.pem', rsa.chain + rsa.key),
    };
  });

  const cases: [string | undefined | null, keyof typeof files | 'default'][] = [
    ['a.example', 'a'],
    ['www.a.example', 'a'],
    ['A.Example', 'a'],
    ['a.example.', 'a'],
    ['WWW.A.EXAMPLE.', 'a'],
    ['rsa.example', 'rsa'],
    ['exact.example.com', 'exact'], // the exact name before the wildcard
    ['other.example.com', 'wild'],
    ['Other.Example.Com.', 'wild'],
    ['a.example.com', 'wild'], // *.a.example.com does not cover a.example.com itself
    ['x.a.example.com', 'wildSub'], // the longer wildcard
    ['y.x.a.example.com', 'default'], // a wildcard covers one label only
    ['example.com', 'default'],
    ['.example.com', 'default'],
    ['*.example.com', 'wild'],
    ['unknown.test', 'default'],
    ['a.example..', 'default'],
    ['', 'default'],
    [undefined, 'default'],
    [null, 'default'],
  ];

  it.each(cases)('select(%j) → %s', (servername, expected) => {
    const { store } = load([dir]);
    const entry = store.select(servername);
    expect(entry?.file).toBe(files[expected === 'default' ? 'a' : expected]);
  });

  it.each(cases)('with strict SNI, select(%j) → %s, or null for the default', (servername, expected) => {
    const { store } = load([dir], { strictSni: true });
    expect(store.strictSni).toBe(true);
    expect(store.defaultEntry).toBeNull();
    const entry = store.select(servername);
    expect(entry === null ? null : entry.file).toBe(expected === 'default' ? null : files[expected]);
  });

  it('describes each entry; the default only without strict SNI', () => {
    const now = Date.now();
    const { store } = load([dir]);
    const described = store.describe(now);
    expect(described.map((d) => [d.file, d.names, d.default])).toEqual([
      [files.a, ['a.example', 'www.a.example'], true],
      [files.wild, ['*.example.com'], false],
      [files.wildSub, ['*.a.example.com'], false],
      [files.exact, ['exact.example.com'], false],
      [files.rsa, ['rsa.example'], false],
    ]);
    expect(described[0]!.expiresInSeconds).toBe(Math.floor((dates(a.cert).notAfter.getTime() - now) / 1000));
    expect(JSON.parse(JSON.stringify(described))).toEqual(described);
    expect(load([dir], { strictSni: true }).store.describe(now).map((d) => d.default)).toEqual([false, false, false, false, false]);
  });
});

describe('the secure contexts, in real handshakes', () => {
  interface Handshake {
    protocol: string | null;
    cipher: string;
    subjectaltname: string | undefined;
    authorized: boolean;
  }

  /**
   * A TLS server that picks the context before the handshake, from the ClientHello's SNI (the
   * shape node:tls gets right; see the next describe): the context alone decides what is served.
   */
  async function withServer<T>(store: CertificateStore, run: (port: number) => Promise<T>): Promise<T> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      let seen = Buffer.alloc(0);
      const onData = (chunk: Buffer): void => {
        seen = Buffer.concat([seen, chunk]);
        const hello = referenceParseClientHello(seen);
        if (hello.status === 'incomplete') return;
        socket.off('data', onData);
        socket.pause();
        const entry = store.select(hello.status === 'ok' ? hello.sni : null);
        if (entry === null) {
          socket.destroy();
          return;
        }
        socket.unshift(seen);
        const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: entry.secureContext });
        secure.on('error', () => {});
        secure.on('secure', () => secure.end());
      };
      socket.on('data', onData);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      return await run((server.address() as AddressInfo).port);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  function connect(port: number, opts: tls.ConnectionOptions): Promise<Handshake> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ca: factory.root, ...opts }, () => {
        const result = {
          protocol: socket.getProtocol(),
          cipher: socket.getCipher().name,
          subjectaltname: socket.getPeerCertificate().subjectaltname,
          authorized: socket.authorized,
        };
        socket.destroy();
        resolve(result);
      });
      socket.on('error', reject);
    });
  }

  /** The subjects of the certificates the server sends, leaf first, as OpenSSL's s_client sees them. */
  function sentChain(port: number, servername: string): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const client = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername, '-showcerts'], {
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 30_000,
      });
      let out = '';
      client.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
      client.on('error', reject);
      client.on('close', () => resolve([...out.matchAll(/^ *\d+ s:CN = (.*)$/gm)].map((m) => m[1]!)));
    });
  }

  const aAltNames = 'DNS:a.example, DNS:WWW.A.Example, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1';

  it('serves the chain for the name asked, verified against the root alone', async () => {
    const dir = scratch();
    put(dir, '1-a.pem', a.chain + a.key);
    put(dir, '2-rsa.pem', rsa.chain + rsa.key);
    put(dir, '3-wild.pem', wild.chain + wild.key);
    const { store } = load([dir]);
    await withServer(store, async (port) => {
      expect(await connect(port, { servername: 'www.a.example' })).toEqual({
        protocol: 'TLSv1.3',
        cipher: 'TLS_AES_256_GCM_SHA384',
        subjectaltname: aAltNames,
        authorized: true,
      });
      expect(await connect(port, { servername: 'rsa.example', maxVersion: 'TLSv1.2' })).toEqual({
        protocol: 'TLSv1.2',
        cipher: 'ECDHE-RSA-AES128-GCM-SHA256',
        subjectaltname: 'DNS:rsa.example',
        authorized: true,
      });
      expect(await connect(port, { servername: 'Any.Example.Com', maxVersion: 'TLSv1.2' })).toEqual({
        protocol: 'TLSv1.2',
        cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256',
        subjectaltname: 'DNS:*.example.com',
        authorized: true,
      });
      expect(await sentChain(port, 'www.a.example')).toEqual(['a.example', 'Tether test intermediate']);
      expect(await sentChain(port, 'rsa.example')).toEqual(['rsa.example', 'Tether test intermediate']);
      // No SNI (node sends none to an IP address): the default certificate, valid for 127.0.0.1.
      expect(await connect(port, {})).toMatchObject({ subjectaltname: aAltNames, authorized: true });
    });
  });

  it('serves a chain that lacks its intermediate as it is: clients then refuse it', async () => {
    const file = put(scratch(), 'a.pem', a.cert + a.key);
    await withServer(load([file]).store, async (port) => {
      await expect(connect(port, { servername: 'a.example' })).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    });
  });

  it('refuses TLS 1.1 and TLS 1.2 suites outside MODERN_CIPHERS', async () => {
    const { store } = load([put(scratch(), 'rsa.pem', rsa.chain + rsa.key)]);
    await withServer(store, async (port) => {
      const tls12 = { servername: 'rsa.example', maxVersion: 'TLSv1.2' } as const;
      await expect(connect(port, { ...tls12, ciphers: 'AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA:DHE-RSA-AES128-GCM-SHA256' })).rejects.toThrow(/handshake failure/);
      await expect(connect(port, { ...tls12, minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })).rejects.toThrow(/protocol version/);
      expect((await connect(port, { ...tls12, ciphers: 'ECDHE-RSA-CHACHA20-POLY1305' })).cipher).toBe('ECDHE-RSA-CHACHA20-POLY1305');
    });
  });

  it('honours the ciphers option', async () => {
    const { store } = load([put(scratch(), 'rsa.pem', rsa.chain + rsa.key)], { ciphers: 'ECDHE-RSA-AES256-GCM-SHA384' });
    await withServer(store, async (port) => {
      const tls12 = { servername: 'rsa.example', maxVersion: 'TLSv1.2' } as const;
      expect((await connect(port, tls12)).cipher).toBe('ECDHE-RSA-AES256-GCM-SHA384');
      await expect(connect(port, { ...tls12, ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' })).rejects.toThrow(/handshake failure/);
    });
  });

  it('with strict SNI, an unknown name gets no certificate', async () => {
    const { store } = load([put(scratch(), 'a.pem', a.chain + a.key)], { strictSni: true });
    await withServer(store, async (port) => {
      expect((await connect(port, { servername: 'a.example' })).authorized).toBe(true);
      await expect(connect(port, { servername: 'unknown.example' })).rejects.toMatchObject({ code: 'ECONNRESET' });
      await expect(connect(port, {})).rejects.toMatchObject({ code: 'ECONNRESET' });
    });
  });

  describe('node:tls pitfall: a base certificate is overlaid, not replaced, by the SNICallback context', () => {
    // Pinned so that a change in node shows up here: it decides how a server may use the store
    // (CertificateStore.contextTerms says why a certificate must not sit in the base context).
    async function withSniServer<T>(store: CertificateStore, run: (port: number) => Promise<T>): Promise<T> {
      const first = store.defaultEntry!;
      const server = tls.createServer({
        ...store.contextTerms,
        key: first.keyPem,
        cert: first.chainPem,
        SNICallback: (servername, cb) => cb(null, store.select(servername)!.secureContext),
      });
      server.on('secureConnection', (s) => s.end());
      server.on('tlsClientError', () => {});
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        return await run((server.address() as AddressInfo).port);
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    }

    it('an EC default wins over an RSA entry, and lends its chain to an entry without one', async () => {
      const dir = scratch();
      const rootIssued = factory.leaf({ issuer: 'root', san: ['DNS:direct.example'] });
      put(dir, '1-a.pem', a.chain + a.key);
      put(dir, '2-rsa.pem', rsa.chain + rsa.key);
      put(dir, '3-direct.pem', rootIssued.chain + rootIssued.key);
      const { store } = load([dir]);
      await withServer(store, async (port) => {
        expect(await connect(port, { servername: 'rsa.example' })).toMatchObject({ subjectaltname: 'DNS:rsa.example' });
        expect(await sentChain(port, 'direct.example')).toEqual(['direct.example']);
      });
      await withSniServer(store, async (port) => {
        expect((await connect(port, { servername: 'rsa.example', checkServerIdentity: () => undefined })).subjectaltname).toBe(aAltNames);
        expect(await sentChain(port, 'direct.example')).toEqual(['direct.example', 'Tether test intermediate']);
      });
    });
  });
});

describe('loadCertificates: hostile bytes', () => {
  it('never throws anything but a TetherError naming the file, for random and damaged files', () => {
    const random = prng(0x5eed);
    const dir = mkdtempSync(join(factory.dir, 'fuzz-'));
    const file = join(dir, 'fuzz.pem');
    const valid = a.chain + a.key;
    const inputs: Buffer[] = [Buffer.from(valid)];
    for (let i = 0; i < 60; i++) {
      inputs.push(Buffer.from(Array.from({ length: Math.floor(random() * 4096) }, () => Math.floor(random() * 256))));
    }
    for (let cut = 0; cut < valid.length; cut += 37) inputs.push(Buffer.from(valid.slice(0, cut)));
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-\n: ';
    for (let i = 0; i < 300; i++) {
      const chars = [...valid];
      const edits = 1 + Math.floor(random() * 4);
      for (let e = 0; e < edits; e++) chars[Math.floor(random() * chars.length)] = alphabet[Math.floor(random() * alphabet.length)]!;
      inputs.push(Buffer.from(chars.join('')));
    }
    for (let i = 0; i < 60; i++) {
      const lines = valid.split('\n');
      const at = Math.floor(random() * lines.length);
      if (random() < 0.5) lines.splice(at, 1);
      else lines.splice(at, 0, lines[Math.floor(random() * lines.length)]!);
      inputs.push(Buffer.from(lines.join('\n')));
    }
    let loaded = 0;
    for (const input of inputs) {
      writeFileSync(file, input, { mode: 0o600 });
      try {
        loadCertificates([file]);
        loaded++;
      } catch (err) {
        expect(err).toBeInstanceOf(TetherError);
        const { problems } = err as CertificateError;
        expect(problems.length).toBeGreaterThan(0);
        for (const p of problems) {
          expect(p.startsWith(`--cert ${file}: `)).toBe(true);
          expect(p).not.toContain('unexpected error');
        }
      }
    }
    expect(loaded).toBeGreaterThanOrEqual(1); // the undamaged file, at least
    expect(loaded).toBeLessThan(inputs.length / 2);
  });
});
