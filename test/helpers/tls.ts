// Real certificates for TLS tests, made at test time with the openssl CLI: one CA, and a leaf
// per name (SAN = that name), so clients verify the backend they reached end to end.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import tls from 'node:tls';
import net, { type AddressInfo } from 'node:net';

export interface TestPki {
  dir: string;
  caFile: string;
  ca: Buffer;
  /** PEM key and certificate for `name`. */
  leaf(name: string): { key: Buffer; cert: Buffer };
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
}

export function makePki(names: readonly string[]): TestPki {
  const dir = mkdtempSync(join(os.tmpdir(), 'tether-pki-'));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Tether test CA'], dir);
  for (const name of names) {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${name}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`], dir);
  }
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    ca: readFileSync(join(dir, 'ca.pem')),
    leaf: (name) => ({ key: readFileSync(join(dir, `${name}.key`)), cert: readFileSync(join(dir, `${name}.pem`)) }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface TlsBackend {
  name: string;
  port: number;
  /** Remote addresses of the TLS connections it accepted. */
  connections: number;
  close(): Promise<void>;
}

/**
 * A TLS server for `name` answering any HTTP/1.1 request with its name as the body (and
 * `GET /bytes/N` with N bytes), then closing. Node's tls, so the handshake is real.
 */
export async function startTlsBackend(pki: TestPki, name: string): Promise<TlsBackend> {
  const { key, cert } = pki.leaf(name);
  const sockets = new Set<tls.TLSSocket>();
  const state = { connections: 0 };
  const server = tls.createServer({ key, cert, ALPNProtocols: ['http/1.1'] }, (s) => {
    state.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let head = '';
    s.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const m = /^GET \/bytes\/(\d+) /.exec(head);
      if (m) {
        const n = Number(m[1]);
        s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${n}\r\nconnection: close\r\n\r\n`);
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        let left = n;
        const pump = () => {
          while (left > 0) {
            const part = chunk.subarray(0, Math.min(chunk.length, left));
            left -= part.length;
            if (!s.write(part)) return void s.once('drain', pump);
          }
          s.end();
        };
        pump();
      } else {
        s.end(`HTTP/1.1 200 OK\r\ncontent-length: ${name.length}\r\nconnection: close\r\n\r\n${name}`);
      }
      head = '';
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    name,
    port: (server.address() as AddressInfo).port,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The first TLS record a node:tls client sends for `servername` (its whole ClientHello). */
export async function captureClientHello(servername: string): Promise<Buffer> {
  let resolveHello!: (b: Buffer) => void;
  const hello = new Promise<Buffer>((r) => (resolveHello = r));
  const server = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        resolveHello(buf.subarray(0, 5 + buf.readUInt16BE(3)));
        s.destroy();
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = tls.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, servername, rejectUnauthorized: false });
  c.on('error', () => {});
  const out = await hello;
  c.destroy();
  server.close();
  return out;
}
