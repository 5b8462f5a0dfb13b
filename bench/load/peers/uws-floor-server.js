// The floor of Tether's architecture: the least a proxy built the way Tether is built can do.
// uWebSockets.js listeners on W worker threads, a keep-alive net.Socket per upstream request
// read through Node's `onread` buffer (as Tether's upstream pool does), cookie stickiness the
// way HAProxy's `insert indirect` does it (FLOOR=<backend name>, no crypto), X-Forwarded-For /
// -Proto / -Host added, the response head parsed and written back with one writeStatus, one
// writeHeader and end(). Nothing else: no token, no framing checks, no counters, no timeouts,
// no request bodies (501), only Content-Length responses (502 otherwise).
//
// It is a bench peer, not a product: it exists so that a run measures, beside HAProxy in the
// same rounds, what the runtime (Node + uWS + net.Socket) costs by itself. Tether ÷ floor is
// what Tether's own request path costs; floor ÷ HAProxy is what the runtime costs.
//
// Run: node bench/load/peers/uws-floor-server.js PORT WORKERS app1=127.0.0.1:B1 app2=127.0.0.1:B2
// Prints one JSON line {"ready":true} once every worker listens; exits on SIGTERM/SIGINT.

import { createRequire } from 'node:module';
import net from 'node:net';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const COOKIE = 'FLOOR';

if (isMainThread) {
  const [portArg, workersArg, ...backendArgs] = process.argv.slice(2);
  const port = Number(portArg);
  const workers = Number(workersArg);
  const backends = backendArgs.map((arg) => {
    const match = /^([\w-]+)=([\d.]+):(\d+)$/.exec(arg);
    if (!match) throw new Error(`expected NAME=HOST:PORT for a backend but received ${JSON.stringify(arg)}`);
    return { name: match[1], host: match[2], port: Number(match[3]) };
  });
  if (!Number.isInteger(port) || !Number.isInteger(workers) || workers < 1 || backends.length === 0) {
    process.stderr.write('usage: uws-floor-server.js PORT WORKERS NAME=HOST:PORT...\n');
    process.exit(2);
  }
  let listening = 0;
  for (let i = 0; i < workers; i += 1) {
    const worker = new Worker(new URL(import.meta.url), { workerData: { port, backends } });
    worker.on('message', (m) => {
      if (m === 'listening' && ++listening === workers) process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
    });
    worker.on('error', (error) => {
      process.stderr.write(`uws-floor worker failed: ${error.stack ?? error}\n`);
      process.exit(1);
    });
    worker.on('exit', (code) => {
      process.stderr.write(`uws-floor worker exited (${code})\n`);
      process.exit(1); // a bench with a dead worker is not a fair run: fail loudly
    });
  }
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
} else {
  serve(workerData);
}

function serve({ port, backends }) {
  const require = createRequire(import.meta.url);
  const uWS = require(`@trufflesuite/uws-js-unofficial/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);
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
        if (this.exchange) this.finish(502, 'Bad Gateway', '', 'backend closed the connection\n');
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
      const head = data.latin1Slice(0, end);
      const lines = head.split('\r\n');
      const status = lines[0].slice(9);
      let length = -1;
      let headers = '';
      for (let i = 1; i < lines.length; i += 1) {
        const line = lines[i];
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).toLowerCase();
        if (name === 'content-length') length = Number(line.slice(colon + 1));
        else if (name !== 'connection' && name !== 'keep-alive' && name !== 'date' && name !== 'uwebsockets') headers += `${line}\r\n`;
      }
      if (length < 0) {
        this.socket.destroy();
        this.finish(502, 'Bad Gateway', '', 'the floor proxy reads only Content-Length responses\n');
        return;
      }
      if (data.length < end + 4 + length) {
        this.pending = data;
        return;
      }
      this.pending = null;
      this.finish(status, '', headers, data.subarray(end + 4, end + 4 + length));
      this.backend.idle.push(this);
    }

    finish(status, reason, headers, body) {
      const ex = this.exchange;
      this.exchange = null;
      if (ex.aborted) return;
      const res = ex.res;
      res.cork(() => {
        res.writeStatus(reason ? `${status} ${reason}` : status);
        const extra = headers + ex.setCookie;
        // One writeHeader carries every header (`first: v\r\nsecond: v…`), as Tether writes them.
        if (extra) {
          const colon = extra.indexOf(':');
          res.writeHeader(extra.slice(0, colon), extra.slice(colon + 2, extra.length - 2));
        }
        res.end(body);
      });
    }
  }

  for (const b of backends) byName.set(b.name, { ...b, idle: [] });
  const list = [...byName.values()];
  let head = '';
  let cookie = '';
  let host = '';
  const collect = (name, value) => {
    if (name === 'cookie') cookie = value;
    else if (name === 'host') host = value;
    if (name !== 'connection' && name !== 'keep-alive') head += `${name}: ${value}\r\n`;
  };

  uWS
    .App()
    .any('/*', (res, req) => {
      const method = req.getCaseSensitiveMethod();
      const query = req.getQuery();
      const url = query ? `${req.getUrl()}?${query}` : req.getUrl();
      head = '';
      cookie = '';
      host = '';
      req.forEach(collect);
      if (req.getHeader('content-length') || req.getHeader('transfer-encoding')) {
        res.writeStatus('501 Not Implemented').end('the floor proxy forwards no request bodies\n');
        return;
      }
      const ex = { res, aborted: false, setCookie: '' };
      res.onAborted(() => (ex.aborted = true));
      const at = cookie.indexOf(`${COOKIE}=`);
      let backend = at >= 0 ? byName.get(/^[\w-]*/.exec(cookie.slice(at + COOKIE.length + 1))[0]) : undefined;
      if (!backend) {
        backend = list[next++ % list.length];
        ex.setCookie = `set-cookie: ${COOKIE}=${backend.name}; Path=/\r\ncache-control: private\r\n`;
      }
      const clientIp = Buffer.from(res.getRemoteAddressAsText()).latin1Slice();
      const upstream = backend.idle.pop() ?? new Upstream(backend);
      upstream.exchange = ex;
      upstream.socket.write(
        `${method} ${url} HTTP/1.1\r\n${head}x-forwarded-for: ${clientIp}\r\nx-forwarded-proto: http\r\nx-forwarded-host: ${host}\r\n\r\n`,
        'latin1',
      );
    })
    .listen('127.0.0.1', port, (socket) => {
      if (!socket) throw new Error(`uws-floor: cannot listen on 127.0.0.1:${port}`);
      parentPort.postMessage('listening');
    });
}
