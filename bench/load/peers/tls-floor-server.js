// The floor of Tether's HTTPS path: the least a proxy that terminates TLS the way Tether does
// can do. W worker threads, each with its own SO_REUSEPORT listener on the port (opened by
// Tether's addon, as Tether's workers open theirs: Node 20's net cannot set SO_REUSEPORT); each
// accepted socket wrapped at once in a server-side node:tls TLSSocket on one secure context
// (OpenSSL runs the handshake and the record layer in C++, the proxy sees plaintext), with
// Tether's handshake terms (./tls-terms.js) and ALPN http/1.1, as
// src/data-plane/front-door/tls-listener.ts does after it has picked the certificate. Then the
// uws-floor's proxying, on the TLSSocket's 'data' events instead of uWS: the request head found
// and split in JS, a keep-alive net.Socket per upstream request read through Node's `onread`
// buffer (as Tether's upstream pool does), cookie stickiness the way HAProxy's `insert indirect`
// does it (FLOOR=<backend name>; Path=/; Secure, no crypto), X-Forwarded-For / -Proto https /
// -Host added, the response head and body written back in one write.
//
// Nothing else: no ClientHello read before the handshake (Tether reads it to choose among its
// certificates; one certificate needs no choice), no handshake deadline, no token, no framing
// checks, no counters, no timeouts, no request bodies (501), only Content-Length responses (502
// otherwise), one request at a time per connection. A bench peer, not a product: beside HAProxy
// in the same rounds, tls-floor ÷ HAProxy is what the runtime (Node + node:tls + net.Socket)
// costs by itself, and Tether ÷ tls-floor what Tether's own HTTPS path adds.
//
// Run: node bench/load/peers/tls-floor-server.js PORT WORKERS PEM app1=127.0.0.1:B1 app2=127.0.0.1:B2
// (PEM: the certificate chain and its private key in one file). Prints one JSON line
// {"ready":true} once every worker listens; exits on SIGTERM/SIGINT.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { TLS_CIPHERS, TLS_CURVES, TLS_MAX_VERSION, TLS_MIN_VERSION } from './tls-terms.js';

const COOKIE = 'FLOOR';
/** Tether's addon (dist/): its openReusePortListener is what every Tether worker listens with. */
const NATIVE_URL = new URL('../../../dist/native/index.js', import.meta.url);

if (isMainThread) {
  const [portArg, workersArg, pemPath, ...backendArgs] = process.argv.slice(2);
  const port = Number(portArg);
  const workers = Number(workersArg);
  const backends = backendArgs.map((arg) => {
    const match = /^([\w-]+)=([\d.]+):(\d+)$/.exec(arg);
    if (!match) throw new Error(`expected NAME=HOST:PORT for a backend but received ${JSON.stringify(arg)}`);
    return { name: match[1], host: match[2], port: Number(match[3]) };
  });
  if (!Number.isInteger(port) || !Number.isInteger(workers) || workers < 1 || !pemPath || backends.length === 0) {
    process.stderr.write('usage: tls-floor-server.js PORT WORKERS PEM NAME=HOST:PORT...\n');
    process.exit(2);
  }
  const pem = readFileSync(pemPath, 'utf8');
  let listening = 0;
  for (let i = 0; i < workers; i += 1) {
    const worker = new Worker(new URL(import.meta.url), { workerData: { port, backends, pem } });
    worker.on('message', (m) => {
      if (m === 'listening' && ++listening === workers) process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
    });
    worker.on('error', (error) => {
      process.stderr.write(`tls-floor worker failed: ${error.stack ?? error}\n`);
      process.exit(1);
    });
    worker.on('exit', (code) => {
      process.stderr.write(`tls-floor worker exited (${code})\n`);
      process.exit(1); // a bench with a dead worker is not a fair run: fail loudly
    });
  }
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
} else {
  await serve(workerData);
}

/** The certificates (leaf first) and the key of a PEM holding both. */
function splitPem(pem) {
  const blocks = pem.match(/-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----/g) ?? [];
  const certs = blocks.filter((b) => b.startsWith('-----BEGIN CERTIFICATE-----'));
  const key = blocks.find((b) => /^-----BEGIN (EC |RSA )?PRIVATE KEY-----/.test(b));
  if (certs.length === 0 || !key) throw new Error('tls-floor: expected a PEM with a certificate and its private key');
  return { cert: certs.join('\n'), key };
}

async function serve({ port, backends, pem }) {
  const { openReusePortListener } = await import(NATIVE_URL.href);
  const secureContext = tls.createSecureContext({
    ...splitPem(pem),
    minVersion: TLS_MIN_VERSION,
    maxVersion: TLS_MAX_VERSION,
    ciphers: TLS_CIPHERS,
    honorCipherOrder: true,
    ecdhCurve: TLS_CURVES,
  });
  const ALPN = ['http/1.1'];
  const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
  const byName = new Map();
  let next = 0;

  class Upstream {
    constructor(backend) {
      this.backend = backend;
      this.exchange = null;
      this.pending = null;
      this.socket = net.connect({
        host: backend.host,
        port: backend.port,
        noDelay: true,
        onread: { buffer: READ_BUFFER, callback: (n) => this.onData(READ_BUFFER.subarray(0, n)) },
      });
      this.socket.on('error', () => {});
      this.socket.on('close', () => {
        const idle = this.backend.idle;
        const at = idle.indexOf(this);
        if (at >= 0) idle.splice(at, 1);
        const ex = this.exchange;
        this.exchange = null;
        if (ex) ex.client.respond('502 Bad Gateway', '', Buffer.from('backend closed the connection\n'));
      });
    }

    onData(chunk) {
      if (!this.exchange) {
        this.socket.destroy();
        return;
      }
      const data = this.pending ? Buffer.concat([this.pending, chunk]) : Buffer.from(chunk);
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) {
        this.pending = data;
        return;
      }
      const lines = data.latin1Slice(0, end).split('\r\n');
      const status = lines[0].slice(9);
      let length = -1;
      let headers = '';
      for (let i = 1; i < lines.length; i += 1) {
        const line = lines[i];
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).toLowerCase();
        if (name === 'content-length') length = Number(line.slice(colon + 1));
        if (name !== 'connection' && name !== 'keep-alive') headers += `${line}\r\n`;
      }
      const ex = this.exchange;
      if (length < 0) {
        this.exchange = null;
        this.socket.destroy();
        ex.client.respond('502 Bad Gateway', '', Buffer.from('the floor proxy reads only Content-Length responses\n'));
        return;
      }
      if (data.length < end + 4 + length) {
        this.pending = data;
        return;
      }
      this.pending = null;
      this.exchange = null;
      // Idle before the answer goes out: the client's next request may want it at once.
      this.backend.idle.push(this);
      ex.client.respond(status, headers + ex.setCookie, data.subarray(end + 4, end + 4 + length), true);
    }
  }

  /** One TLS client connection after its handshake: one request at a time. */
  class Client {
    constructor(socket) {
      this.socket = socket;
      this.pending = null;
      this.busy = false;
      this.closeAfter = false;
      const ip = socket.remoteAddress ?? '';
      this.ip = ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
      socket.on('data', (chunk) => {
        this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
        if (!this.busy) this.nextRequest();
      });
      socket.on('error', () => socket.destroy());
    }

    nextRequest() {
      const data = this.pending;
      if (data === null) return;
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      this.pending = end + 4 < data.length ? data.subarray(end + 4) : null;
      const lines = data.latin1Slice(0, end).split('\r\n');
      const requestLine = lines[0];
      let head = '';
      let cookie = '';
      let host = '';
      for (let i = 1; i < lines.length; i += 1) {
        const line = lines[i];
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).toLowerCase();
        if (name === 'cookie') cookie = line.slice(colon + 1).trim();
        else if (name === 'host') host = line.slice(colon + 1).trim();
        else if (name === 'content-length' || name === 'transfer-encoding') {
          this.closeAfter = true;
          this.respond('501 Not Implemented', '', Buffer.from('the floor proxy forwards no request bodies\n'));
          return;
        } else if (name === 'connection') {
          if (/close/i.test(line.slice(colon + 1))) this.closeAfter = true;
          continue;
        } else if (name === 'keep-alive') continue;
        head += `${line}\r\n`;
      }
      const ex = { client: this, setCookie: '' };
      const at = cookie.indexOf(`${COOKIE}=`);
      let backend = at >= 0 ? byName.get(/^[\w-]*/.exec(cookie.slice(at + COOKIE.length + 1))[0]) : undefined;
      if (!backend) {
        backend = list[next++ % list.length];
        ex.setCookie = `set-cookie: ${COOKIE}=${backend.name}; Path=/; Secure\r\ncache-control: private\r\n`;
      }
      this.busy = true;
      const upstream = backend.idle.pop() ?? new Upstream(backend);
      upstream.exchange = ex;
      upstream.socket.write(
        `${requestLine.slice(0, requestLine.lastIndexOf(' '))} HTTP/1.1\r\n${head}x-forwarded-for: ${this.ip}\r\nx-forwarded-proto: https\r\nx-forwarded-host: ${host}\r\n\r\n`,
        'latin1',
      );
    }

    /** `headers`: CRLF-terminated lines; `hasLength`: they already carry Content-Length. */
    respond(status, headers, body, hasLength = false) {
      this.busy = false;
      const socket = this.socket;
      if (socket.destroyed) return;
      const head = `HTTP/1.1 ${status}\r\n${headers}${hasLength ? '' : `content-length: ${body.length}\r\n`}${this.closeAfter ? 'connection: close\r\n' : ''}\r\n`;
      socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
      if (this.closeAfter) socket.end();
      else if (this.pending !== null) this.nextRequest();
    }
  }

  for (const b of backends) byName.set(b.name, { ...b, idle: [] });
  const list = [...byName.values()];

  const server = net.createServer({ noDelay: true }, (socket) => {
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: ALPN });
    socket.on('error', () => secure.destroy());
    secure.on('error', () => secure.destroy());
    secure.once('secure', () => new Client(secure));
  });
  server.on('error', (error) => {
    throw error;
  });
  server.listen({ fd: openReusePortListener('127.0.0.1', port) }, () => parentPort.postMessage('listening'));
}
