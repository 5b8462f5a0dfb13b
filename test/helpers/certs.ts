// Server certificates for the certificate-store tests, made at test time with the openssl CLI:
// a root CA, an intermediate under it, and leaves of any key type, names and lifetime.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

export type LeafKey = 'ec' | 'rsa' | 'ed25519' | 'secp256k1' | 'rsa1024';

export interface LeafOptions {
  /** Subject, in openssl's "/CN=a.example/O=Example" syntax (default "/CN=<first DNS name>"). */
  subject?: string;
  /** subjectAltName entries in openssl's syntax: "DNS:a.example", "IP:10.0.0.1". */
  san?: readonly string[];
  key?: LeafKey;
  days?: number;
  /** Signed by the intermediate (default) or the root. */
  issuer?: 'intermediate' | 'root';
  /** extendedKeyUsage (default serverAuth). */
  extendedKeyUsage?: string;
}

export interface Leaf {
  /** The private key, PEM (PKCS#8: BEGIN PRIVATE KEY). */
  key: string;
  /** The leaf alone, PEM. */
  cert: string;
  /** The leaf then the intermediate that issued it (just the leaf when the root did). */
  chain: string;
}

export interface CertFactory {
  /** A scratch directory, removed by cleanup(). */
  dir: string;
  /** The root CA certificate, PEM: what a client trusts. */
  root: string;
  intermediate: string;
  leaf(options?: LeafOptions): Leaf;
  cleanup(): void;
}

const KEY_ARGS: Record<LeafKey, string[]> = {
  ec: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  secp256k1: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'],
  rsa: ['-newkey', 'rsa:2048'],
  rsa1024: ['-newkey', 'rsa:1024'],
  ed25519: ['-newkey', 'ed25519'],
};

export function makeCertFactory(): CertFactory {
  const dir = mkdtempSync(join(os.tmpdir(), 'tether-certs-'));
  const openssl = (args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  };
  const read = (name: string): string => readFileSync(join(dir, name), 'latin1');
  openssl(['req', '-x509', ...KEY_ARGS.ec, '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-days', '30', '-subj', '/CN=Tether test root']);
  writeFileSync(join(dir, 'intermediate.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  openssl(['req', '-new', ...KEY_ARGS.ec, '-nodes', '-keyout', 'intermediate.key', '-out', 'intermediate.csr', '-subj', '/CN=Tether test intermediate']);
  openssl(['x509', '-req', '-in', 'intermediate.csr', '-CA', 'root.pem', '-CAkey', 'root.key', '-set_serial', '2', '-days', '30', '-extfile', 'intermediate.ext', '-out', 'intermediate.pem']);
  let serial = 100;

  return {
    dir,
    root: read('root.pem'),
    intermediate: read('intermediate.pem'),
    leaf(o = {}) {
      const n = serial++;
      const san = o.san ?? [];
      const firstDns = san.find((s) => s.startsWith('DNS:'))?.slice(4) ?? `leaf-${n}`;
      const ext = [
        'basicConstraints=CA:FALSE',
        `extendedKeyUsage=${o.extendedKeyUsage ?? 'serverAuth'}`,
        ...(san.length > 0 ? [`subjectAltName=${san.join(',')}`] : []),
      ];
      writeFileSync(join(dir, `${n}.ext`), `${ext.join('\n')}\n`);
      openssl(['req', '-new', ...KEY_ARGS[o.key ?? 'ec'], '-nodes', '-keyout', `${n}.key`, '-out', `${n}.csr`, '-subj', o.subject ?? `/CN=${firstDns}`]);
      const ca = o.issuer === 'root' ? 'root' : 'intermediate';
      openssl(['x509', '-req', '-in', `${n}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-set_serial', String(n), '-days', String(o.days ?? 30), '-extfile', `${n}.ext`, '-out', `${n}.pem`]);
      const cert = read(`${n}.pem`);
      return { key: read(`${n}.key`), cert, chain: ca === 'root' ? cert : cert + read('intermediate.pem') };
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** `key` in openssl's legacy encrypted form (BEGIN EC PRIVATE KEY + Proc-Type: 4,ENCRYPTED) or PKCS#8's. */
export function encryptKey(factory: CertFactory, key: string, form: 'pkcs8' | 'legacy'): string {
  const input = join(factory.dir, 'to-encrypt.key');
  writeFileSync(input, key);
  const args = ['pkey', '-in', input, '-aes256', '-passout', 'pass:secret', ...(form === 'legacy' ? ['-traditional'] : [])];
  return execFileSync('openssl', args, { encoding: 'latin1', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
}

/** `key` as openssl's "traditional" PEM: BEGIN EC PRIVATE KEY (SEC1) or BEGIN RSA PRIVATE KEY (PKCS#1). */
export function traditionalKey(factory: CertFactory, key: string): string {
  const input = join(factory.dir, 'to-convert.key');
  writeFileSync(input, key);
  return execFileSync('openssl', ['pkey', '-in', input, '-traditional'], { encoding: 'latin1', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
}
