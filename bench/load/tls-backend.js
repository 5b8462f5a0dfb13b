// A TLS backend for the passthrough scenarios: a uWebSockets.js SSLApp (TLS and HTTP in C++,
// so the backend costs little next to the balancer being measured) holding the certificate
// for one name. The balancer only relays its bytes; the client verifies this certificate.
//
//   GET /bytes/N   N bytes (Content-Length), streamed from one preallocated buffer with uWS
//                  backpressure (tryEnd/onWritable): flat memory for any N
//   anything else  its NAME as the body (so a client can tell which backend it reached)
//
// Every response also names the backend in an X-Backend header.
//
// Keep-alive is uWS's default for HTTP/1.1.
// Run: node bench/load/tls-backend.js NAME KEY_FILE CERT_FILE [PORT]; prints one JSON line
// {"ready":true,"name":…,"port":…} once listening, exits on SIGTERM/SIGINT.
//
// The native binary is loaded directly (as backend.js does): the package main silently falls
// back to a `ws`-based emulation when the binary does not load.

import { createRequire } from 'node:module';
import { pumpBytes } from './uws-body.js';
import { existsSync } from 'node:fs';

const require = createRequire(import.meta.url);
const uWS = require(
  `@trufflesuite/uws-js-unofficial/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`,
);

const USAGE = 'usage: node bench/load/tls-backend.js NAME KEY_FILE CERT_FILE [PORT]   (NAME: a letter, then letters, digits, _ or -)\n';
const [name, keyFile, certFile, portText = '0'] = process.argv.slice(2);
if (name === '--help' || name === '-h') {
  process.stdout.write(USAGE);
  process.exit(0);
}
const requestedPort = Number(portText);
if (
  !name ||
  !/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(name) ||
  !keyFile ||
  !certFile ||
  !Number.isInteger(requestedPort) ||
  requestedPort < 0 ||
  requestedPort > 65535
) {
  process.stderr.write(USAGE);
  process.exit(2);
}
for (const file of [keyFile, certFile]) {
  // uSockets would only say "cannot listen": name the missing file instead.
  if (!existsSync(file)) {
    process.stderr.write(`tls-backend ${name}: ${file} does not exist\n`);
    process.exit(2);
  }
}

let listenSocket = null;

uWS
  .SSLApp({ key_file_name: keyFile, cert_file_name: certFile })
  .get('/bytes/:n', (res, req) => {
    const text = req.getParameter(0);
    const total = /^\d{1,15}$/.test(text) ? Number(text) : -1;
    if (total < 0) {
      res.writeStatus('400 Bad Request').writeHeader('X-Backend', name).end('expected GET /bytes/N with N a whole number of bytes\n');
      return;
    }
    if (total === 0) {
      res.writeHeader('X-Backend', name).end();
      return;
    }
    res.onAborted(() => {});
    res.writeHeader('Content-Type', 'application/octet-stream').writeHeader('X-Backend', name);
    if (!pumpBytes(res, 0, total)) res.onWritable((offset) => pumpBytes(res, offset, total));
  })
  .any('/*', (res) => {
    res.cork(() => {
      res.writeHeader('Content-Type', 'text/plain').writeHeader('X-Backend', name).end(name);
    });
  })
  .listen('127.0.0.1', requestedPort, (socket) => {
    if (!socket) {
      process.stderr.write(`tls-backend ${name}: cannot listen on 127.0.0.1:${requestedPort} (or the key/certificate did not load)\n`);
      process.exit(1);
    }
    listenSocket = socket;
    process.stdout.write(`${JSON.stringify({ ready: true, name, port: uWS.us_socket_local_port(socket) })}\n`);
  });

function stop() {
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  listenSocket = null;
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
