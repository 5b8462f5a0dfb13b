// A minimal HTTP/1.1 client over node:net (or node:tls) for the bench's own load generator. Why not
// node:http or undici: the client must decide exactly which connection — and so which source
// address (`localAddress`) — carries each request, see every Set-Cookie line raw, and cost
// little per request next to the balancer it measures. One request at a time per connection
// (no pipelining), keep-alive, and a deadline on every wait: connect, and the whole response.
//
// The response as read here:
//
//   status-line  = "HTTP/1." DIGIT SP 3DIGIT [ SP reason ] CRLF
//   header-line  = name ":" OWS value OWS CRLF            (head ends at an empty line)
//   1xx (but 101) = an interim head: skipped, the real one follows
//   body         = none     for HEAD, 1xx, 204, 304
//                  chunked  when Transfer-Encoding's last coding is "chunked":
//                           *( HEX-size [ ";" ext ] CRLF data CRLF ) "0" [ ";" ext ] CRLF
//                           *( trailer-line CRLF ) CRLF
//                  N bytes  when Content-Length: N
//                  to EOF   otherwise (the connection is then not reusable)
//
// Errors are HttpError with a `kind` the load generator counts by: connect, timeout,
// closed (the peer closed before the response was complete), parse, socket, busy; and for
// openTlsConnection: handshake (the TLS handshake failed or the connection dropped during
// it), certificate (the server's certificate does not verify against the given CA),
// certName (it verifies but is for another name: the connection reached the wrong server).

import net from 'node:net';
import tls from 'node:tls';

const MAX_HEAD_BYTES = 64 * 1024;
/**
 * Response deadlines: one sweep over the connections with a request outstanding, every
 * SWEEP_MS, instead of a timer set and cleared per request (that pair was ~10% of a load
 * thread's CPU in the authz-handshakes profile). A deadline fires up to SWEEP_MS late.
 */
const SWEEP_MS = 25;
const waiting = new Set();
let sweeper = null;

function sweepDeadlines() {
  const now = performance.now();
  for (const connection of waiting) connection.checkDeadline(now);
  if (waiting.size === 0) {
    clearInterval(sweeper);
    sweeper = null;
  }
}
const MAX_KEPT_BODY_BYTES = 1024 * 1024; // longer bodies are read to the end but not kept
const MAX_CHUNK_LINE_BYTES = 1024;
const EMPTY = Buffer.alloc(0);

export class HttpError extends Error {
  constructor(kind, message, options) {
    super(message, options);
    this.name = 'HttpError';
    this.kind = kind;
  }
}

/**
 * Headers of one head, node:http style: lower-case names, repeated values joined with ', ',
 * except set-cookie, which is always an array of the raw lines.
 */
function parseHead(text) {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!status) throw new HttpError('parse', `expected an HTTP/1.x status line but received ${JSON.stringify(lines[0].slice(0, 100))}`);
  const headers = {};
  const setCookies = [];
  for (let i = 1; i < lines.length; i += 1) {
    const line = lines[i];
    const colon = line.indexOf(':');
    if (colon <= 0) throw new HttpError('parse', `expected a header line but received ${JSON.stringify(line.slice(0, 100))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'set-cookie') {
      setCookies.push(value);
    } else {
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
  }
  if (setCookies.length > 0) headers['set-cookie'] = setCookies;
  return { httpMinor: Number(status[1]), status: Number(status[2]), reason: status[3] ?? '', headers, setCookies };
}

/**
 * Incremental reader of one response. push(chunk) → true once complete; end() → true if EOF
 * completes it (a to-EOF body). Every branch of the loop in push() either consumes bytes,
 * advances the state, or returns, so it ends.
 */
class ResponseReader {
  constructor(method) {
    this.noBody = method === 'HEAD';
    this.endedByClose = false;
    this.pending = EMPTY;
    this.state = 'head';
    this.remaining = 0;
    this.response = null;
    this.bodyChunks = [];
    this.keptBytes = 0;
    this.bodyBytes = 0;
    this.trailerBytes = 0;
  }

  #body(bytes) {
    this.bodyBytes += bytes.length;
    if (this.keptBytes < MAX_KEPT_BODY_BYTES) {
      const kept = bytes.subarray(0, MAX_KEPT_BODY_BYTES - this.keptBytes);
      this.bodyChunks.push(kept);
      this.keptBytes += kept.length;
    }
  }

  /** The bytes up to the next CRLF (consumed with it), or null if it has not arrived. */
  #line(limit, what) {
    const end = this.pending.indexOf('\r\n');
    if (end < 0) {
      if (this.pending.length > limit) throw new HttpError('parse', `${what} longer than ${limit} bytes`);
      return null;
    }
    const line = this.pending.subarray(0, end).toString('latin1');
    this.pending = this.pending.subarray(end + 2);
    return line;
  }

  #startBody(head) {
    this.response = head;
    const te = head.headers['transfer-encoding'];
    const cl = head.headers['content-length'];
    if (this.noBody || head.status === 204 || head.status === 304) {
      this.state = 'done';
    } else if (te !== undefined) {
      if (!/(?:^|,)\s*chunked\s*$/i.test(te)) {
        this.state = 'eof';
      } else {
        this.state = 'chunk-size';
      }
    } else if (cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl)) throw new HttpError('parse', `expected a Content-Length but received ${JSON.stringify(cl)}`);
      this.remaining = Number(cl);
      this.state = this.remaining === 0 ? 'done' : 'length';
    } else {
      this.state = 'eof';
    }
  }

  push(chunk) {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    for (;;) {
      switch (this.state) {
        case 'head': {
          const end = this.pending.indexOf('\r\n\r\n');
          if (end < 0) {
            if (this.pending.length > MAX_HEAD_BYTES) throw new HttpError('parse', `response head longer than ${MAX_HEAD_BYTES} bytes`);
            return false;
          }
          const head = parseHead(this.pending.subarray(0, end).toString('latin1'));
          this.pending = this.pending.subarray(end + 4);
          if (head.status >= 100 && head.status < 200 && head.status !== 101) break; // interim: read the next head
          this.#startBody(head);
          break;
        }
        case 'length': {
          if (this.pending.length === 0) return false;
          const take = Math.min(this.remaining, this.pending.length);
          this.#body(this.pending.subarray(0, take));
          this.pending = this.pending.subarray(take);
          this.remaining -= take;
          if (this.remaining === 0) this.state = 'done';
          break;
        }
        case 'chunk-size': {
          const line = this.#line(MAX_CHUNK_LINE_BYTES, 'chunk-size line');
          if (line === null) return false;
          const size = /^([0-9a-fA-F]{1,12})\s*(?:;.*)?$/.exec(line);
          if (!size) throw new HttpError('parse', `expected a chunk size but received ${JSON.stringify(line.slice(0, 100))}`);
          this.remaining = parseInt(size[1], 16);
          this.state = this.remaining === 0 ? 'trailers' : 'chunk-data';
          break;
        }
        case 'chunk-data': {
          if (this.pending.length === 0) return false;
          const take = Math.min(this.remaining, this.pending.length);
          this.#body(this.pending.subarray(0, take));
          this.pending = this.pending.subarray(take);
          this.remaining -= take;
          if (this.remaining === 0) this.state = 'chunk-end';
          break;
        }
        case 'chunk-end': {
          if (this.pending.length < 2) return false;
          if (this.pending[0] !== 0x0d || this.pending[1] !== 0x0a) throw new HttpError('parse', 'expected CRLF after chunk data');
          this.pending = this.pending.subarray(2);
          this.state = 'chunk-size';
          break;
        }
        case 'trailers': {
          const line = this.#line(MAX_HEAD_BYTES, 'trailer line');
          if (line === null) return false;
          this.trailerBytes += line.length + 2;
          if (this.trailerBytes > MAX_HEAD_BYTES) throw new HttpError('parse', `trailers longer than ${MAX_HEAD_BYTES} bytes`);
          if (line === '') this.state = 'done';
          break;
        }
        case 'eof': {
          if (this.pending.length > 0) this.#body(this.pending);
          this.pending = EMPTY;
          return false;
        }
        case 'done':
          return true;
        default:
          throw new Error(`unreachable reader state ${this.state}`);
      }
    }
  }

  /** The peer closed: true if that completes the response (a to-EOF body). */
  end() {
    if (this.state !== 'eof') return this.state === 'done';
    this.state = 'done';
    this.endedByClose = true;
    return true;
  }

  /** Bytes received after the response ended (a server speaking out of turn). */
  get leftover() {
    return this.pending.length;
  }

  result() {
    const { status, reason, headers, setCookies, httpMinor } = this.response;
    const connection = (headers.connection ?? '').toLowerCase();
    const keepAlive =
      this.state === 'done' &&
      !this.endedByClose &&
      (httpMinor === 1 ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection));
    return {
      status,
      reason,
      headers,
      setCookies,
      body: this.bodyChunks.length === 1 ? this.bodyChunks[0] : Buffer.concat(this.bodyChunks),
      bodyBytes: this.bodyBytes,
      keepAlive,
    };
  }
}

/**
 * One client connection. Made by openConnection(); request() sends one request and resolves
 * its response; close() destroys the socket. `reusable` says whether another request may go
 * on it (open, idle, and the last response allowed keep-alive).
 */
export class Connection {
  #socket;
  #hostHeader;
  #exchange = null; // { reader, resolve, reject, deadline, timeoutMs } while a request is outstanding
  #closed = false;
  #keepAlive = true;

  constructor(socket, hostHeader) {
    this.#socket = socket;
    this.#hostHeader = hostHeader;
    this.localAddress = socket.localAddress;
    this.localPort = socket.localPort;
    socket.on('data', (chunk) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
    socket.on('error', (error) => this.#fail(new HttpError('socket', `socket error: ${error.message}`, { cause: error })));
    socket.on('close', () => {
      this.#closed = true;
      this.#fail(new HttpError('closed', 'connection closed before the response was complete'));
    });
  }

  get reusable() {
    return !this.#closed && this.#exchange === null && this.#keepAlive;
  }

  /**
   * Sends `method path` with `headers` (an object; Host is added unless given) and an
   * optional body; resolves { status, reason, headers, setCookies, body: Buffer, bodyBytes,
   * keepAlive } once the whole response has arrived, rejects HttpError on error or when
   * `timeoutMs` passes first (the connection is then closed).
   */
  request({ method = 'GET', path = '/', headers = {}, body, timeoutMs = 5000 } = {}) {
    if (this.#closed) return Promise.reject(new HttpError('closed', 'connection already closed'));
    if (this.#exchange) return Promise.reject(new HttpError('busy', 'a request is already outstanding on this connection'));
    if (!this.#keepAlive) return Promise.reject(new HttpError('closed', 'the server ended keep-alive on this connection'));
    let head = `${method} ${path} HTTP/1.1\r\n`;
    let hasHost = false;
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined || value === null) continue;
      if (name.toLowerCase() === 'host') hasHost = true;
      head += `${name}: ${value}\r\n`;
    }
    if (!hasHost) head += `Host: ${this.#hostHeader}\r\n`;
    const payload = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(String(body));
    if (payload) head += `Content-Length: ${payload.length}\r\n`;
    head += '\r\n';
    return new Promise((resolve, reject) => {
      this.#exchange = { reader: new ResponseReader(method), resolve, reject, deadline: performance.now() + timeoutMs, timeoutMs };
      waiting.add(this);
      if (sweeper === null) {
        sweeper = setInterval(sweepDeadlines, SWEEP_MS);
        sweeper.unref();
      }
      this.#socket.write(payload ? Buffer.concat([Buffer.from(head, 'latin1'), payload]) : head);
    });
  }

  /** The sweep: fails the outstanding request if its deadline has passed. */
  checkDeadline(now) {
    const exchange = this.#exchange;
    if (exchange === null) waiting.delete(this);
    else if (now >= exchange.deadline) this.#fail(new HttpError('timeout', `no complete response within ${exchange.timeoutMs} ms`));
  }

  close() {
    this.#closed = true;
    this.#socket.destroy();
    this.#fail(new HttpError('closed', 'connection closed by the client'));
  }

  #onData(chunk) {
    const exchange = this.#exchange;
    if (!exchange) {
      // Bytes nobody asked for: the connection can no longer be trusted.
      this.#keepAlive = false;
      this.#socket.destroy();
      return;
    }
    let complete;
    try {
      complete = exchange.reader.push(chunk);
    } catch (error) {
      this.#fail(error instanceof HttpError ? error : new HttpError('parse', String(error)));
      return;
    }
    if (complete) this.#finish(exchange);
  }

  #onEnd() {
    const exchange = this.#exchange;
    this.#keepAlive = false;
    if (exchange && exchange.reader.end()) this.#finish(exchange);
    this.#socket.end();
  }

  #finish(exchange) {
    waiting.delete(this);
    this.#exchange = null;
    const response = exchange.reader.result();
    if (!response.keepAlive || exchange.reader.leftover > 0) {
      this.#keepAlive = false;
      this.#closed = true;
      this.#socket.destroy();
    }
    exchange.resolve(response);
  }

  #fail(error) {
    const exchange = this.#exchange;
    if (!exchange) return;
    waiting.delete(this);
    this.#exchange = null;
    this.#closed = true;
    this.#socket.destroy();
    exchange.reject(error);
  }
}

/**
 * Connects to host:port, from `localAddress` when given (the kernel picks the port);
 * resolves a Connection, rejects HttpError('connect') on error or after `timeoutMs`.
 */
export function openConnection({ host, port, localAddress, timeoutMs = 2000 }) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, localAddress, noDelay: true });
    const from = localAddress ? ` from ${localAddress}` : '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new HttpError('connect', `connect to ${host}:${port}${from} took longer than ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new HttpError('connect', `connect to ${host}:${port}${from} failed: ${error.message}`, { cause: error }));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(new Connection(socket, `${host}:${port}`));
    });
  });
}

/** Certificate-name mismatch: a valid certificate, but for another name than the one asked for. */
const NAME_MISMATCH = new Set(['ERR_TLS_CERT_ALTNAME_INVALID', 'HOSTNAME_MISMATCH']);

/**
 * The HttpError kind for an error a TLS client socket emitted (see the header). OpenSSL's X509
 * verification results reach node as bare upper-case codes (UNABLE_TO_VERIFY_LEAF_SIGNATURE,
 * SELF_SIGNED_CERT_IN_CHAIN, CERT_HAS_EXPIRED, …): neither node's ERR_* nor an errno (ECONNRESET).
 */
export function tlsErrorKind(error, { tcpConnected }) {
  const code = typeof error?.code === 'string' ? error.code : '';
  if (NAME_MISMATCH.has(code)) return 'certName';
  if (/^[A-Z][A-Z0-9_]*_[A-Z0-9_]+$/.test(code) && !code.startsWith('ERR_')) return 'certificate';
  return tcpConnected ? 'handshake' : 'connect';
}

/**
 * One SecureContext per CA, made once: `ca` given to tls.connect would make (and parse) one per
 * connection. `null`: Node's default roots, which do not hold the bench's CA, for clients that do
 * not verify (the chain then fails to build at once, and no signature is checked).
 */
const secureContexts = new Map();
function secureContextFor(ca) {
  let context = secureContexts.get(ca);
  if (!context) {
    if (secureContexts.size >= 8) secureContexts.clear(); // a few CAs per process at most; stay bounded anyway
    context = tls.createSecureContext(ca === null ? {} : { ca });
    secureContexts.set(ca, context);
  }
  return context;
}

/**
 * Connects to host:port and completes a TLS handshake sending SNI `servername`, trusting only
 * `ca` and verifying the certificate (chain and name: rejectUnauthorized); with `verify: false`
 * the certificate is taken unchecked and `ca` is not needed (as wrk does: verifying costs a
 * node:tls client ~0.4 ms of CPU per handshake, for a scenario that checked the certificate
 * once before its load and checks every answer instead). Resolves a
 * Connection (Host header = servername; `tls`: { protocol, cipher, resumed }) once the handshake
 * is done, never offering a session to resume (a full handshake every time); rejects HttpError with
 * kind connect, handshake, certificate or certName, or handshake after `timeoutMs` for the
 * connect and handshake together. Never leaves the socket open on failure.
 */
export function openTlsConnection({ host, port, servername, ca, localAddress, timeoutMs = 2000, verify = true }) {
  return new Promise((resolve, reject) => {
    let tcpConnected = false;
    const socket = tls.connect({
      host,
      port,
      servername,
      secureContext: secureContextFor(verify ? ca : null),
      rejectUnauthorized: verify,
      localAddress,
      noDelay: true,
      ALPNProtocols: ['http/1.1'],
    });
    const what = `TLS to ${host}:${port} as ${servername}`;
    const fail = (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => {
      fail(new HttpError(tcpConnected ? 'handshake' : 'connect', `${what}: no completed handshake within ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (error) => {
      const kind = tlsErrorKind(error, { tcpConnected });
      fail(new HttpError(kind, `${what}: ${error.code ? `${error.code}: ` : ''}${error.message}`, { cause: error }));
    };
    const onClose = () => fail(new HttpError(tcpConnected ? 'handshake' : 'connect', `${what}: closed during the handshake`));
    socket.once('connect', () => {
      tcpConnected = true;
    });
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      // rejectUnauthorized already refused an unverified peer; this is belt and braces.
      if (verify && !socket.authorized) {
        socket.destroy();
        reject(new HttpError('certificate', `${what}: certificate not verified (${socket.authorizationError})`));
        return;
      }
      const connection = new Connection(socket, servername);
      // What was negotiated; `resumed` tells a full handshake from a resumed session (a client
      // here never offers one, so true would mean something reused a session behind our back).
      connection.tls = { protocol: socket.getProtocol(), cipher: socket.getCipher()?.name ?? null, resumed: socket.isSessionReused() };
      resolve(connection);
    });
  });
}
