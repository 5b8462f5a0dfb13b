// A load-bench backend: a uWebSockets.js app that answers every request with its own name
// (e.g. `app1`), so a client can tell which backend a balancer chose. Keep-alive is uWS's
// default for HTTP/1.1. Run: node bench/load/backend.js NAME [PORT]; prints one JSON line
// {"ready":true,"name":…,"port":…} once listening, exits on SIGTERM/SIGINT.
//
// Two routes for the large-body scenario (every other path and method: the name, as above):
//   GET /large?bytes=N   N bytes with Content-Length, streamed from one preallocated buffer
//                        with uWS backpressure (tryEnd/onWritable): flat backend memory for any
//                        N, and bytes leave only as fast as the balancer reads them.
//   POST /upload         reads the body (Content-Length or chunked; uWS de-chunks) and answers
//                        the number of bytes it received, as decimal text.
//   GET /login           sets an application session cookie, `JSESSIONID=<name>.<n>; Path=/`,
//                        as a Java app server would (the learn-hit scenario's balancers learn it).
//
// The native binary is loaded directly: the package main silently falls back to a `ws`-based
// emulation when the binary does not load, and that would bench the emulation instead.

import { createRequire } from 'node:module';
import { pumpBytes } from './uws-body.js';

const require = createRequire(import.meta.url);
const uWS = require(
  `@trufflesuite/uws-js-unofficial/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`,
);

const USAGE = 'usage: node bench/load/backend.js NAME [PORT]   (NAME: a letter, then letters, digits, _ or -)\n';
const name = process.argv[2];
const requestedPort = Number(process.argv[3] ?? 0);
if (name === '--help' || name === '-h') {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (!name || !/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(name) || !Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  process.stderr.write(USAGE);
  process.exit(2);
}

const MAX_LARGE_BYTES = Number.MAX_SAFE_INTEGER;

let listenSocket = null;
let sessions = 0;

uWS
  .App()
  .get('/large', (res, req) => {
    const text = req.getQuery('bytes') ?? '';
    const total = /^\d{1,16}$/.test(text) ? Number(text) : -1;
    if (total < 0 || total > MAX_LARGE_BYTES) {
      res.writeStatus('400 Bad Request').end('expected GET /large?bytes=N with N a whole number of bytes\n');
      return;
    }
    if (total === 0) {
      res.end();
      return;
    }
    // Nothing to clean up on abort (no timers, no streams), but uWS requires the handler.
    res.onAborted(() => {});
    res.writeHeader('Content-Type', 'application/octet-stream');
    if (!pumpBytes(res, 0, total)) res.onWritable((offset) => pumpBytes(res, offset, total));
  })
  .post('/upload', (res) => {
    let received = 0;
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    // Counted, never copied: uWS neuters `chunk` on return, which is fine for a length.
    res.onData((chunk, isLast) => {
      received += chunk.byteLength;
      if (isLast && !aborted) {
        res.cork(() => {
          res.writeHeader('Content-Type', 'text/plain').end(String(received));
        });
      }
    });
  })
  .get('/login', (res) => {
    sessions += 1;
    res.cork(() => {
      res.writeHeader('Content-Type', 'text/plain').writeHeader('Set-Cookie', `JSESSIONID=${name}.${sessions}; Path=/`).end(name);
    });
  })
  .any('/*', (res) => {
    // Nothing is read from the request and nothing is awaited: answer at once.
    res.cork(() => {
      res.writeHeader('Content-Type', 'text/plain').end(name);
    });
  })
  .listen('127.0.0.1', requestedPort, (socket) => {
    if (!socket) {
      process.stderr.write(`backend ${name}: cannot listen on 127.0.0.1:${requestedPort}\n`);
      process.exit(1);
    }
    listenSocket = socket;
    const port = uWS.us_socket_local_port(socket);
    process.stdout.write(`${JSON.stringify({ ready: true, name, port })}\n`);
  });

function stop() {
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  listenSocket = null;
  // Keep-alive connections would keep the loop alive; this is a bench backend, just go.
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
