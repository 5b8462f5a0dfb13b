// Certificate store for HTTPS termination: loads certificates the way HAProxy's `crt` does (a PEM
// file with the chain and its key, or a directory of them), reports every problem of every file
// at once, and picks the certificate for a ClientHello's server name with two Map look-ups.
//
// What a certificate file may hold (RFC 7468 PEM, read leniently):
//
//   anything outside a block is ignored (`openssl x509 -text` output, PKCS#12 "Bag Attributes")
//   -----BEGIN <label>-----
//   Proc-Type: 4,ENCRYPTED          header lines, then a blank line: legacy encrypted keys only
//   DEK-Info: AES-256-CBC,<iv>
//   <base64, any line length; whitespace around lines ignored>
//   -----END <label>-----
//
//   CERTIFICATE                     the chain, leaf first, then each issuer, in file order
//   PRIVATE KEY                     PKCS#8  ┐
//   EC PRIVATE KEY                  SEC1    ├ exactly one, in the file or in a <name>.key beside it
//   RSA PRIVATE KEY                 PKCS#1  ┘
//   EC PARAMETERS, DH PARAMETERS    ignored (`openssl ecparam -genkey` writes the first; HAProxy reads the second)
//   ENCRYPTED PRIVATE KEY, Proc-Type: 4,ENCRYPTED   refused: nobody is there to type a passphrase
//   any other label                 refused, by name
//
// A directory contributes each regular file (symbolic links followed, as Kubernetes secret
// volumes need) whose name ends in .pem or .crt, in code-point order of the names, not its
// subdirectories. A file without a key takes it from `<name without extension>.key` (nginx,
// Kubernetes `tls.crt`/`tls.key`), else `<name>.key` (HAProxy's default naming).
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, readdirSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import tls from 'node:tls';

import { TetherError } from '../errors.js';

/**
 * TLS 1.2 suites offered: forward-secret ECDHE key exchange with AEAD ciphers only (AES-GCM and
 * ChaCha20-Poly1305), ECDSA before RSA, as Mozilla's "intermediate" profile (v5.7). No CBC, no
 * static RSA, no DHE. TLS 1.3 suites are not named here, so OpenSSL's defaults apply
 * (TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256).
 */
export const MODERN_CIPHERS =
  'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:' +
  'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:' +
  'ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305';

const ECDH_CURVES = 'X25519:P-256:P-384';
/** Far above any real chain (a few KiB); keeps a mistaken path to a large file from being read whole. */
const MAX_FILE_BYTES = 1024 * 1024;
const MIN_RSA_BITS = 2048;
/** ECDSA curves with a TLS 1.3 signature scheme; OpenSSL's name → the name people know. */
const TLS_EC_CURVES: ReadonlyMap<string, string> = new Map([
  ['prime256v1', 'P-256'],
  ['secp384r1', 'P-384'],
  ['secp521r1', 'P-521'],
]);
/** Key types OpenSSL can sign a handshake with; the last three work with OpenSSL clients, not browsers. */
const BROWSER_KEY_TYPES: ReadonlySet<string> = new Set(['ec', 'rsa']);
const OTHER_TLS_KEY_TYPES: ReadonlySet<string> = new Set(['rsa-pss', 'ed25519', 'ed448']);
const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';
const ANY_EXTENDED_KEY_USAGE_OID = '2.5.29.37.0';
const KEY_FORMATS: ReadonlyMap<string, 'pkcs8' | 'sec1' | 'pkcs1'> = new Map([
  ['PRIVATE KEY', 'pkcs8'],
  ['EC PRIVATE KEY', 'sec1'],
  ['RSA PRIVATE KEY', 'pkcs1'],
]);
const IGNORED_LABELS: ReadonlySet<string> = new Set(['EC PARAMETERS', 'DH PARAMETERS']);

export type CertificateKeyType = 'ec' | 'rsa' | 'rsa-pss' | 'ed25519' | 'ed448';

export interface CertificateEntry {
  /** The certificate file, as given or joined to its directory. */
  readonly file: string;
  /** Where the private key came from: `file` itself or the .key file beside it. */
  readonly keyFile: string;
  /** Lower-case DNS names (`*.example.com` for wildcards): the SAN's, else the subject CN. */
  readonly names: readonly string[];
  /** IP addresses from the SAN, as node:crypto prints them; never matched against SNI. */
  readonly ipAddresses: readonly string[];
  /** One line, e.g. "CN=a.example, O=Example". */
  readonly subject: string;
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** notAfter had passed when the store was loaded (still served; a warning was given). */
  readonly expired: boolean;
  readonly keyType: CertificateKeyType;
  /** SHA-256 of the leaf's DER, "AB:CD:…" as node:crypto prints it. */
  readonly fingerprint256: string;
  readonly secureContext: tls.SecureContext;
  /** The chain as PEM, leaf first (see `contextTerms` before giving it to a server with an SNICallback). */
  readonly chainPem: string;
  /** The private key as PEM, likewise. Not enumerable, so logging an entry does not print it. */
  readonly keyPem: string;
}

/** One certificate as the admin API shows it (`/api/v1/certificates`): JSON-able, no key material. */
export interface CertificateDescription {
  file: string;
  keyFile: string;
  names: string[];
  ipAddresses: string[];
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  /** Negative once expired. */
  expiresInSeconds: number;
  expired: boolean;
  keyType: CertificateKeyType;
  fingerprint256: string;
  /** Served to clients whose server name matches no certificate (never with strict SNI). */
  default: boolean;
}

export interface CertificateStore {
  /** In load order: the paths in the order given, each directory's files sorted by name. */
  readonly entries: readonly CertificateEntry[];
  /** With strict SNI, a server name that matches no certificate (or none sent) gets none. */
  readonly strictSni: boolean;
  /** What a client without SNI gets: the first entry, or null with strict SNI. */
  readonly defaultEntry: CertificateEntry | null;
  /**
   * The handshake's terms every secureContext was made with (versions, ciphers, curves).
   *
   * Beware node:tls (20.x, pinned by test/unit/certificates.test.ts): a certificate in a server's
   * base context is not replaced by the context its SNICallback returns, only overlaid — OpenSSL
   * keeps one certificate per key type, so an EC default still wins over an RSA (or Ed25519)
   * entry, and an entry without intermediates is sent the default's. So either give a server
   * these terms and no certificate (clients without SNI then fail), or pick the context before
   * the handshake: `new tls.TLSSocket(socket, { isServer: true, secureContext:
   * store.select(sniFromClientHello).secureContext })`.
   */
  readonly contextTerms: Readonly<tls.SecureContextOptions>;
  /**
   * The certificate for a ClientHello's server name (case-insensitive, one trailing dot ignored):
   * the exact name, else the wildcard for the name minus its first label, else the first entry —
   * or null with strict SNI. Runs on every handshake: a lower-casing and at most two Map look-ups.
   */
  select(servername: string | undefined | null): CertificateEntry | null;
  /** The entries for the admin API; `expired` and `expiresInSeconds` as of `now` (ms). */
  describe(now?: number): CertificateDescription[];
}

export type CertificateWarn = (msg: string, fields: Record<string, unknown>) => void;

export interface LoadCertificatesOptions {
  /** The clock for expiry checks, in ms since the epoch (default Date.now()). */
  now?: number;
  /** Where warnings go; without it they are dropped (workers load what the main thread checked). */
  warn?: CertificateWarn;
  /** OpenSSL cipher string for TLS 1.2 (default MODERN_CIPHERS). */
  ciphers?: string;
  /** Refuse handshakes whose server name matches no certificate (HAProxy `strict-sni`). */
  strictSni?: boolean;
  /** How messages name where the paths came from (default "--cert"). */
  source?: string;
}

/** Thrown by loadCertificates: `message` lists every problem; `problems` holds them one by one. */
export interface CertificateError extends TetherError {
  code: 'TETHER_ERR_CONFIG';
  /** Each as "<source> <path>: <problem>". */
  problems: string[];
}

/**
 * Loads and checks every certificate in `paths` (files and directories), synchronously. Throws a
 * CertificateError listing all problems of all files; expired, not-yet-valid or unusual
 * certificates and world-readable keys are warnings only.
 */
export function loadCertificates(paths: readonly string[], opts: LoadCertificatesOptions = {}): CertificateStore {
  const source = opts.source ?? '--cert';
  const ctx: LoadContext = {
    source,
    now: opts.now ?? Date.now(),
    warn: opts.warn ?? (() => {}),
    terms: Object.freeze({
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
      ciphers: opts.ciphers ?? MODERN_CIPHERS,
      honorCipherOrder: true,
      ecdhCurve: ECDH_CURVES,
    }),
    problems: [],
  };
  checkCiphers(ctx);
  if (ctx.problems.length > 0) throwProblems(ctx.problems);
  const entries: CertificateEntry[] = [];
  const seen = new Set<string>();
  if (!Array.isArray(paths) || paths.length === 0) {
    ctx.problems.push(`${source}: expected at least one certificate file or directory`);
  } else {
    for (const path of paths) {
      if (typeof path !== 'string' || path === '' || path.includes('\0')) {
        ctx.problems.push(`${source}: expected a file or directory path but received ${JSON.stringify(path)}`);
        continue;
      }
      for (const file of filesOf(path, seen, ctx)) {
        const entry = loadEntry(file, ctx);
        if (entry !== null) entries.push(entry);
      }
    }
  }
  if (ctx.problems.length > 0) throwProblems(ctx.problems);
  return new Store(Object.freeze(entries), opts.strictSni ?? false, ctx);
}

function throwProblems(problems: string[]): never {
  const message = problems.length === 1 ? problems[0]! : `${problems.length} certificate problems:\n  ${problems.join('\n  ')}`;
  throw Object.assign(new TetherError('TETHER_ERR_CONFIG', message), { problems }) as CertificateError;
}

interface LoadContext {
  readonly source: string;
  readonly now: number;
  readonly warn: CertificateWarn;
  readonly terms: Readonly<tls.SecureContextOptions>;
  readonly problems: string[];
}

/** A bad cipher string is one problem, not one per file. */
function checkCiphers(ctx: LoadContext): void {
  try {
    tls.createSecureContext(ctx.terms);
  } catch (err) {
    ctx.problems.push(`${ctx.source}: ciphers ${JSON.stringify(ctx.terms.ciphers)}: ${reasonOf(err)}`);
  }
}

// ---- Files ------------------------------------------------------------------------------------

interface CertificateFile {
  path: string;
  stats: Stats;
}

const FS_REASONS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a path component is not a directory',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'name too long',
  EISDIR: 'is a directory',
};

function fsReason(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return reasonOf(err);
  const words = FS_REASONS[code];
  return words === undefined ? code : `${code} (${words})`;
}

function isCertificateFileName(name: string): boolean {
  const lower = name.toLowerCase();
  return lower.endsWith('.pem') || lower.endsWith('.crt');
}

/**
 * The files one path stands for: itself, or a directory's .pem and .crt files sorted by name.
 * Problems with the path itself go to ctx.problems; files already in `seen` are left out.
 */
function filesOf(path: string, seen: Set<string>, ctx: LoadContext): CertificateFile[] {
  const files: CertificateFile[] = [];
  const add = (file: string, stats: Stats): void => {
    const key = resolve(file);
    if (seen.has(key)) return;
    seen.add(key);
    files.push({ path: file, stats });
  };
  const problem = (message: string): void => void ctx.problems.push(`${ctx.source} ${path}: ${message}`);
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch (err) {
    problem(`cannot read: ${fsReason(err)}`);
    return files;
  }
  if (stats.isFile()) {
    add(path, stats);
  } else if (stats.isDirectory()) {
    let names: string[];
    try {
      names = readdirSync(path).filter(isCertificateFileName).sort();
    } catch (err) {
      problem(`cannot read: ${fsReason(err)}`);
      return files;
    }
    let found = 0;
    for (const name of names) {
      const file = join(path, name);
      let fileStats: Stats;
      try {
        fileStats = statSync(file);
      } catch (err) {
        ctx.problems.push(`${ctx.source} ${file}: cannot read: ${fsReason(err)}`);
        found++;
        continue;
      }
      if (!fileStats.isFile()) continue; // a subdirectory named x.pem: not ours to descend
      add(file, fileStats);
      found++;
    }
    if (found === 0) problem('no .pem or .crt files in the directory');
  } else {
    problem('not a regular file or a directory');
  }
  return files;
}

function readSmallFile(path: string, stats: Stats): Buffer | string {
  if (stats.size > MAX_FILE_BYTES) return `too large for a certificate file (${stats.size} bytes)`;
  try {
    return readFileSync(path);
  } catch (err) {
    return `cannot read: ${fsReason(err)}`;
  }
}

// ---- PEM --------------------------------------------------------------------------------------

interface PemBlock {
  label: string;
  /** 1-based line of the BEGIN line. */
  line: number;
  der: Buffer;
  /** Legacy `Proc-Type: 4,ENCRYPTED` header. */
  encrypted: boolean;
}

const BEGIN_LINE = /^-----BEGIN ([\x20-\x7e]{1,64}?)-----$/;
const END_LINE = /^-----END ([\x20-\x7e]{1,64}?)-----$/;
const BASE64_BODY = /^[A-Za-z0-9+/]*={0,2}$/;

/** Every PEM block in `text`, or the problems that make it unreadable ("line N: …"). */
function parsePem(text: string): { blocks: PemBlock[]; problems: string[] } {
  const blocks: PemBlock[] = [];
  const problems: string[] = [];
  let open: { label: string; line: number; headers: string[]; body: string[]; inHeaders: boolean } | null = null;
  const lines = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.trim();
    const begin = BEGIN_LINE.exec(line);
    const end = begin === null ? END_LINE.exec(line) : null;
    if (open === null) {
      if (begin !== null) open = { label: begin[1]!, line: lineNo, headers: [], body: [], inHeaders: true };
      else if (end !== null) problems.push(`line ${lineNo}: END ${end[1]} without a BEGIN line`);
      continue;
    }
    if (begin !== null) {
      problems.push(`line ${open.line}: BEGIN ${open.label} has no END line before the BEGIN ${begin[1]} of line ${lineNo}`);
      open = { label: begin[1]!, line: lineNo, headers: [], body: [], inHeaders: true };
      continue;
    }
    if (end !== null) {
      if (end[1] !== open.label) {
        problems.push(`line ${lineNo}: END ${end[1]} does not close the BEGIN ${open.label} of line ${open.line}`);
      } else {
        const block = closeBlock(open, problems);
        if (block !== null) blocks.push(block);
      }
      open = null;
      continue;
    }
    if (open.inHeaders && open.body.length === 0 && line.includes(':')) {
      open.headers.push(line);
      continue;
    }
    open.inHeaders = false;
    if (line !== '') open.body.push(line);
  }
  if (open !== null) problems.push(`line ${open.line}: BEGIN ${open.label} has no END line (is the file truncated?)`);
  return { blocks, problems };
}

function closeBlock(
  open: { label: string; line: number; headers: string[]; body: string[] },
  problems: string[],
): PemBlock | null {
  const encrypted = open.headers.some((h) => /^Proc-Type:\s*4\s*,\s*ENCRYPTED\b/i.test(h));
  if (encrypted) return { label: open.label, line: open.line, der: Buffer.alloc(0), encrypted };
  if (open.headers.length > 0) {
    problems.push(`line ${open.line}: BEGIN ${open.label} has unexpected header lines`);
    return null;
  }
  const base64 = open.body.join('');
  if (base64 === '' || base64.length % 4 !== 0 || !BASE64_BODY.test(base64)) {
    problems.push(`line ${open.line}: BEGIN ${open.label}: the body is not valid base64`);
    return null;
  }
  return { label: open.label, line: open.line, der: Buffer.from(base64, 'base64'), encrypted: false };
}

function toPem(label: string, der: Buffer): string {
  const base64 = der.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < base64.length; i += 64) lines.push(base64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The blocks of one file sorted into certificates and keys; problems as "line N: …". */
function classifyBlocks(blocks: readonly PemBlock[], problems: string[]): { certificates: PemBlock[]; keys: PemBlock[] } {
  const certificates: PemBlock[] = [];
  const keys: PemBlock[] = [];
  for (const block of blocks) {
    if (block.label === 'CERTIFICATE' && !block.encrypted) certificates.push(block);
    else if (KEY_FORMATS.has(block.label) || block.label === 'ENCRYPTED PRIVATE KEY') keys.push(block);
    else if (IGNORED_LABELS.has(block.label) && !block.encrypted) continue;
    else if (block.label.endsWith('PRIVATE KEY')) {
      problems.push(
        `line ${block.line}: BEGIN ${block.label}: unsupported key format (expected PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)`,
      );
    } else if (block.encrypted) {
      problems.push(`line ${block.line}: BEGIN ${block.label} has unexpected header lines`);
    } else {
      problems.push(`line ${block.line}: unexpected BEGIN ${block.label} block (expected CERTIFICATE and a private key)`);
    }
  }
  return { certificates, keys };
}

// ---- One certificate file ---------------------------------------------------------------------

interface KeySource {
  file: string;
  stats: Stats;
  block: PemBlock;
}

function loadEntry(file: CertificateFile, ctx: LoadContext): CertificateEntry | null {
  const problemsBefore = ctx.problems.length;
  const problem = (message: string): void => void ctx.problems.push(`${ctx.source} ${file.path}: ${message}`);
  try {
    const bytes = readSmallFile(file.path, file.stats);
    if (typeof bytes === 'string') {
      problem(bytes);
      return null;
    }
    const pem = parsePem(bytes.toString('latin1'));
    const blockProblems = [...pem.problems];
    const { certificates, keys } = classifyBlocks(pem.blocks, blockProblems);
    for (const p of blockProblems) problem(p);
    if (blockProblems.length > 0) return null;
    if (certificates.length === 0) {
      if (keys.length > 0) problem('no certificate, only a private key (expected -----BEGIN CERTIFICATE-----)');
      else if (pem.blocks.length === 0 && bytes[0] === 0x30) problem('not PEM: the file looks like DER; convert it with `openssl x509 -inform der`');
      else problem('no certificate (expected -----BEGIN CERTIFICATE-----)');
      return null;
    }
    const key = findKey(file, keys, problem);
    if (key === null) return null;

    const chain: X509Certificate[] = [];
    for (const [index, block] of certificates.entries()) {
      try {
        chain.push(new X509Certificate(toPem('CERTIFICATE', block.der)));
      } catch (err) {
        const which = index === 0 ? '' : ` (certificate ${index + 1} of the chain)`;
        problem(`line ${block.line}: not a certificate${which}: ${reasonOf(err)}`);
      }
    }
    const privateKey = parseKey(key, file.path, problem);
    if (chain.length !== certificates.length || privateKey === null) return null;
    const leaf = chain[0]!;
    if (!keyMatches(leaf, privateKey)) {
      const owner = chain.findIndex((cert) => keyMatches(cert, privateKey));
      const hint = owner > 0 ? `; it matches certificate ${owner + 1} of the chain (${oneLine(chain[owner]!.subject)}): put the leaf first` : '';
      problem(`the private key does not match the certificate (${oneLine(leaf.subject)})${hint}`);
      return null;
    }
    const keyType = checkKeyType(privateKey, problem);
    const notBefore = parseValidity(leaf.validFrom);
    const notAfter = parseValidity(leaf.validTo);
    if (notBefore === null || notAfter === null) problem(`unreadable validity dates "${leaf.validFrom}" – "${leaf.validTo}"`);
    if (keyType === null || notBefore === null || notAfter === null) return null;

    const keyPem = toPem(key.block.label, key.block.der);
    const chainPem = certificates.map((c) => toPem('CERTIFICATE', c.der)).join('');
    let secureContext: tls.SecureContext;
    try {
      secureContext = tls.createSecureContext({ ...ctx.terms, key: keyPem, cert: chainPem });
    } catch (err) {
      problem(`refused by OpenSSL: ${reasonOf(err)}`);
      return null;
    }

    const warn = (message: string, fields: Record<string, unknown> = {}): void =>
      ctx.warn(`${ctx.source} ${file.path}: ${message}`, { file: file.path, ...fields });
    const subject = oneLine(leaf.subject);
    const expired = notAfter.getTime() < ctx.now;
    if (expired) {
      warn(`the certificate EXPIRED on ${notAfter.toISOString()} (${subject}); clients will refuse it until it is renewed`, {
        notAfter: notAfter.toISOString(),
      });
    } else if (notBefore.getTime() > ctx.now) {
      warn(`the certificate is NOT VALID YET: it starts on ${notBefore.toISOString()} (${subject}); check the clock`, {
        notBefore: notBefore.toISOString(),
      });
    }
    if (!BROWSER_KEY_TYPES.has(keyType)) {
      warn(`${keyType} certificates work with OpenSSL clients but not with web browsers; use ECDSA P-256 or RSA for them`, { keyType });
    }
    const usages = leaf.keyUsage as string[] | undefined; // node:crypto names the extended key usage OIDs "keyUsage"
    if (Array.isArray(usages) && !usages.includes(SERVER_AUTH_OID) && !usages.includes(ANY_EXTENDED_KEY_USAGE_OID)) {
      warn(`the certificate is not for TLS servers (extended key usage ${usages.join(', ')}); clients will refuse it`, { extendedKeyUsage: usages });
    }
    for (let i = 0; i + 1 < chain.length; i++) {
      if (!chain[i]!.checkIssued(chain[i + 1]!)) {
        warn(
          `certificate ${i + 2} of the chain (${oneLine(chain[i + 1]!.subject)}) did not issue certificate ${i + 1} ` +
            `(${oneLine(chain[i]!.subject)}): a chain runs leaf first, then each issuer`,
        );
        break;
      }
    }
    if ((key.stats.mode & 0o004) !== 0) {
      const mode = `0${(key.stats.mode & 0o777).toString(8)}`;
      warn(`the private key file ${key.file} is readable by every user (mode ${mode}): chmod 600 it`, { keyFile: key.file, mode });
    }
    const { names, ipAddresses } = namesOf(leaf, warn);
    if (names.length === 0) warn(`the certificate names no host (${subject}): it can only be the default certificate`);

    const entry: Omit<CertificateEntry, 'keyPem'> = {
      file: file.path,
      keyFile: key.file,
      names: Object.freeze(names),
      ipAddresses: Object.freeze(ipAddresses),
      subject,
      issuer: oneLine(leaf.issuer),
      notBefore,
      notAfter,
      expired,
      keyType,
      fingerprint256: leaf.fingerprint256,
      secureContext,
      chainPem,
    };
    return Object.freeze(Object.defineProperty(entry, 'keyPem', { value: keyPem, enumerable: false }) as CertificateEntry);
  } catch (err) {
    // A bug, not a user's mistake, but the user still needs to know which file triggered it.
    if (ctx.problems.length === problemsBefore) problem(`unexpected error while loading: ${reasonOf(err)}`);
    return null;
  }
}

/** The one private key: in the file, else in the .key file beside it. */
function findKey(file: CertificateFile, keys: readonly PemBlock[], problem: (m: string) => void): KeySource | null {
  if (keys.length === 1) return { file: file.path, stats: file.stats, block: keys[0]! };
  if (keys.length > 1) {
    problem(`${keys.length} private keys (lines ${keys.map((k) => k.line).join(', ')}); a file holds one chain and its one key`);
    return null;
  }
  const candidates = [...new Set([join(dirname(file.path), `${basename(file.path, extname(file.path))}.key`), `${file.path}.key`])];
  for (const candidate of candidates) {
    let stats: Stats | undefined;
    try {
      stats = statSync(candidate, { throwIfNoEntry: false });
    } catch (err) {
      problem(`key file ${candidate}: cannot read: ${fsReason(err)}`);
      return null;
    }
    if (stats === undefined) continue;
    const keyProblem = (message: string): void => problem(`key file ${candidate}: ${message}`);
    if (!stats.isFile()) {
      keyProblem('not a regular file');
      return null;
    }
    const bytes = readSmallFile(candidate, stats);
    if (typeof bytes === 'string') {
      keyProblem(bytes);
      return null;
    }
    const pem = parsePem(bytes.toString('latin1'));
    const blockProblems = [...pem.problems];
    // Certificates in a .key file are ignored: the chain comes from the certificate file.
    const { keys: found } = classifyBlocks(pem.blocks, blockProblems);
    for (const p of blockProblems) keyProblem(p);
    if (blockProblems.length > 0) return null;
    if (found.length !== 1) {
      keyProblem(found.length === 0 ? 'no private key (expected -----BEGIN PRIVATE KEY-----)' : `${found.length} private keys (lines ${found.map((k) => k.line).join(', ')})`);
      return null;
    }
    return { file: candidate, stats, block: found[0]! };
  }
  problem(`no private key (looked in the file and in ${candidates.join(' and ')})`);
  return null;
}

function parseKey(key: KeySource, certificateFile: string, problem: (m: string) => void): KeyObject | null {
  const where = key.file === certificateFile ? `line ${key.block.line}` : `key file ${key.file}: line ${key.block.line}`;
  const format = KEY_FORMATS.get(key.block.label);
  if (key.block.encrypted || format === undefined) {
    problem(
      `${where}: the private key is encrypted (BEGIN ${key.block.label}${key.block.encrypted ? ', Proc-Type: 4,ENCRYPTED' : ''}); ` +
        'encrypted keys are not supported: decrypt it with `openssl pkey` and chmod 600 the file',
    );
    return null;
  }
  try {
    return createPrivateKey({ key: key.block.der, format: 'der', type: format });
  } catch (err) {
    problem(`${where}: not a valid private key: ${reasonOf(err)}`);
    return null;
  }
}

function keyMatches(cert: X509Certificate, key: KeyObject): boolean {
  try {
    return cert.checkPrivateKey(key);
  } catch {
    return false;
  }
}

function checkKeyType(key: KeyObject, problem: (m: string) => void): CertificateKeyType | null {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'ec') {
    const curve = details.namedCurve ?? 'unknown';
    if (TLS_EC_CURVES.has(curve)) return 'ec';
    problem(`the ECDSA key is on curve ${curve}, which TLS cannot sign with; use P-256 or P-384`);
    return null;
  }
  if (type === 'rsa' || type === 'rsa-pss') {
    const bits = details.modulusLength ?? 0;
    if (bits >= MIN_RSA_BITS) return type;
    problem(`the RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are needed`);
    return null;
  }
  if (type !== undefined && OTHER_TLS_KEY_TYPES.has(type)) return type as CertificateKeyType;
  problem(`the private key is of type ${type ?? 'unknown'}; a TLS certificate key must be ECDSA, RSA or Ed25519`);
  return null;
}

// ---- Names and dates --------------------------------------------------------------------------

// One DNS label: letters, digits, hyphens inside, underscores tolerated (they exist in the wild).
const LABEL = '[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?';
const HOST_NAME = new RegExp(`^(?:\\*\\.)?(?:${LABEL}\\.)*${LABEL}$`);

/** Lower-cased, trailing dot dropped; null unless a host name or a whole-left-label wildcard. */
function normalizeCertificateName(name: string): string | null {
  let lower = name.toLowerCase();
  if (lower.endsWith('.')) lower = lower.slice(0, -1);
  return lower.length <= 253 && HOST_NAME.test(lower) ? lower : null;
}

/**
 * node:crypto's subjectAltName: "DNS:a.example, IP Address:10.0.0.1, email:x@y" — entries split by
 * ", ", each "<type>:<value>", and a value holding a comma, quote or other unsafe character is
 * written as a JSON string: DNS:"a\u002cb".
 */
function parseSubjectAltName(text: string): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon === -1) break;
    const type = text.slice(i, colon);
    let end: number;
    let value: string;
    if (text[colon + 1] === '"') {
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      end = j + 1;
      try {
        value = String(JSON.parse(text.slice(colon + 1, end)));
      } catch {
        value = text.slice(colon + 1, end);
      }
    } else {
      end = text.indexOf(', ', colon + 1);
      if (end === -1) end = text.length;
      value = text.slice(colon + 1, end);
    }
    out.push({ type, value });
    i = text.startsWith(', ', end) ? end + 2 : end;
  }
  return out;
}

function namesOf(leaf: X509Certificate, warn: (m: string, f?: Record<string, unknown>) => void): { names: string[]; ipAddresses: string[] } {
  const names: string[] = [];
  const ipAddresses: string[] = [];
  let dnsEntries = 0;
  for (const { type, value } of parseSubjectAltName(leaf.subjectAltName ?? '')) {
    if (type === 'IP Address') {
      ipAddresses.push(value.toLowerCase());
    } else if (type === 'DNS') {
      dnsEntries++;
      const name = normalizeCertificateName(value);
      if (name === null) {
        warn(`ignoring the name ${JSON.stringify(value)}: not a host name, or a wildcard that is not the whole left-most label`, {
          name: value,
        });
      } else if (!names.includes(name)) {
        names.push(name);
      }
    }
  }
  if (dnsEntries === 0) {
    // No DNS SAN: fall back to the subject CN (the most specific one, printed last), as clients do.
    const cn = leaf.subject
      .split('\n')
      .filter((rdn) => rdn.startsWith('CN='))
      .map((rdn) => rdn.slice(3))
      .pop();
    const name = cn === undefined ? null : normalizeCertificateName(cn);
    if (name !== null) names.push(name);
  }
  return { names, ipAddresses };
}

/** node:crypto prints a subject or issuer one RDN per line; messages and the API want one line. */
function oneLine(dn: string): string {
  return dn.split('\n').join(', ');
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const VALIDITY = /^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4}) GMT$/;

/** "Dec  9 00:22:51 2026 GMT" (OpenSSL's ASN1_TIME_print) → a Date; null for anything else. */
function parseValidity(text: string): Date | null {
  const m = VALIDITY.exec(text);
  if (m === null) return null;
  const month = MONTHS.indexOf(m[1]!);
  const [day, hours, minutes, seconds, year] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
  const date = new Date(Date.UTC(year, month, day, hours, minutes, seconds));
  // Date.UTC rolls Feb 30 into March; a real certificate never has such a date.
  return month === -1 || date.getUTCDate() !== day || hours > 23 || minutes > 59 || seconds > 60 ? null : date;
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---- The store --------------------------------------------------------------------------------

class Store implements CertificateStore {
  readonly entries: readonly CertificateEntry[];
  readonly strictSni: boolean;
  readonly defaultEntry: CertificateEntry | null;
  readonly contextTerms: Readonly<tls.SecureContextOptions>;
  /** Exact name → entry. */
  readonly #exact = new Map<string, CertificateEntry>();
  /** "a.example" → the entry for "*.a.example". */
  readonly #wildcard = new Map<string, CertificateEntry>();

  constructor(entries: readonly CertificateEntry[], strictSni: boolean, ctx: LoadContext) {
    this.entries = entries;
    this.strictSni = strictSni;
    this.defaultEntry = strictSni ? null : (entries[0] ?? null);
    this.contextTerms = ctx.terms;
    // A name in two files goes to the first unexpired one, else the first: renewing by adding a
    // file beside the expired one then works whatever the names sort like.
    const ranked = [...entries.filter((e) => !e.expired), ...entries.filter((e) => e.expired)];
    for (const entry of ranked) {
      for (const name of entry.names) {
        const [map, key] = name.startsWith('*.') ? [this.#wildcard, name.slice(2)] : [this.#exact, name];
        const holder = map.get(key);
        if (holder === undefined) {
          map.set(key, entry);
        } else if (holder !== entry) {
          ctx.warn(`${ctx.source} ${entry.file}: ${name} is also in ${holder.file}, which serves it`, {
            file: entry.file,
            name,
            servedBy: holder.file,
          });
        }
      }
    }
    Object.freeze(this);
  }

  select(servername: string | undefined | null): CertificateEntry | null {
    if (servername) {
      let name = servername.toLowerCase();
      if (name.endsWith('.')) name = name.slice(0, -1);
      const exact = this.#exact.get(name);
      if (exact !== undefined) return exact;
      const dot = name.indexOf('.');
      if (dot > 0) {
        const wildcard = this.#wildcard.get(name.slice(dot + 1));
        if (wildcard !== undefined) return wildcard;
      }
    }
    return this.defaultEntry;
  }

  describe(now: number = Date.now()): CertificateDescription[] {
    return this.entries.map((e) => ({
      file: e.file,
      keyFile: e.keyFile,
      names: [...e.names],
      ipAddresses: [...e.ipAddresses],
      subject: e.subject,
      issuer: e.issuer,
      notBefore: e.notBefore.toISOString(),
      notAfter: e.notAfter.toISOString(),
      expiresInSeconds: Math.floor((e.notAfter.getTime() - now) / 1000),
      expired: e.notAfter.getTime() < now,
      keyType: e.keyType,
      fingerprint256: e.fingerprint256,
      default: e === this.defaultEntry,
    }));
  }
}
