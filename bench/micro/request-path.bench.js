// The whole JS request path of a worker — handleRequest, sticky token read, backend pick, head
// serialization, the upstream response parse and the response write — driven through stand-ins
// for uWS's HttpRequest/HttpResponse and an upstream socket, so it measures only the user-space
// CPU a request costs Tether, without syscalls or the machine's noise. Run after `npm run build`:
//   node bench/micro/request-path.bench.js
import { createRequire } from 'node:module';
import { ActiveExchanges, handleRequest } from '../../dist/data-plane/http-listener.js';
import { Runtime } from '../../dist/data-plane/runtime.js';
import { UpstreamConnection } from '../../dist/data-plane/upstream/pool.js';
import { ResponseParser } from '../../dist/data-plane/upstream/codec.js';
import { WorkerCounters, createSharedState } from '../../dist/shared-memory/counters.js';
import { createTokenCrypto } from '../../dist/native/index.js';
import { RouteTokens } from '../../dist/sticky/route-token.js';
import { configSchema } from '../../dist/config/schema.js';
import { SharedTable } from '../../dist/shared-memory/table.js';
import { SessionStore } from '../../dist/sticky/sessions.js';

const require = createRequire(import.meta.url);
const Benchmark = require('benchmark');

const config = configSchema.parse({
  workers: 1,
  pools: { default: { backends: [{ id: 'app1', address: '127.0.0.1', port: 1 }, { id: 'app2', address: '127.0.0.1', port: 2 }] } },
});
const layout = { workerCapacity: 1, backendCapacity: 4 };
const counters = new WorkerCounters(createSharedState(layout), layout, 0);
// The session table as a worker has it (nothing learned, nothing revoked: its cost here is
// the per-request check that there is nothing to look up).
const sessions = new SessionStore(SharedTable.create(1024), new Uint8Array(32));
const runtime = new Runtime(config, { default: { app1: 0, app2: 1 } }, counters, Date.now, sessions);
const tokens = new RouteTokens(createTokenCrypto(), { maxAgeSec: 86_400 });
tokens.setKeyRing([{ id: 1, key: Buffer.alloc(32, 7) }], 1);
const ctx = { runtime: () => runtime, tokens, counters, active: new ActiveExchanges(), log: () => {}, sessions };
const token = tokens.issue('default', 'cookie', 'app1');

// An upstream connection whose socket only accepts writes; responses are fed to it by hand.
function fakeConnection(backend) {
  const conn = Object.create(UpstreamConnection.prototype);
  Object.assign(conn, { backend, sink: null, connected: true, uses: 1, idleSince: 0, gotBytes: false, reusable: false, failure: null });
  conn.parser = new ResponseParser(conn, { maxHeaderBytes: 65_536 });
  // Class fields the constructor would have made (it also opens a real socket, which this skips).
  conn.chunk = null;
  conn.parseChunk = () => conn.parser.execute(conn.chunk);
  conn.socket = { destroyed: false, readyState: 'open', write: () => true, cork() {}, uncork() {}, pause() {}, resume() {}, destroy() {} };
  return conn;
}
for (const b of runtime.pools.get('default').backends) b.idle.push(fakeConnection(b));

const REMOTE = new TextEncoder().encode('127.0.0.2').buffer;
const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 22 Nov 2026 20:00:00 GMT\r\nuWebSockets: 20\r\nContent-Length: 4\r\n\r\napp1', 'latin1');
let written = 0;
const res = {
  onAborted() { return this; }, onData() { return this; }, onWritable() { return this; },
  getRemoteAddressAsText: () => REMOTE.slice(0),
  cork(fn) { fn(); return this; },
  writeStatus(s) { written += s.length; return this; },
  writeHeader(k, v) { written += k.length + v.length; return this; },
  getWriteOffset: () => 0,
  tryEnd(c) { written += c.length; return [true, true]; },
  end() { return this; }, endWithoutBody() { return this; }, write() { return true; }, pause() {}, resume() {}, close() {},
};
function request(cookie) {
  return {
    getCaseSensitiveMethod: () => 'GET', getQuery: () => '', getUrl: () => '/',
    forEach(cb) { cb('host', '127.0.0.1:8080'); cb('user-agent', 'wrk'); if (cookie) cb('cookie', cookie); },
    getHeader: () => '',
  };
}
const withToken = request(`TETHER=${token}`);
const without = request('');

/** One full request: the handler, then the backend's response through the upstream connection. */
function cycle(req) {
  handleRequest(ctx, res, req);
  // The exchange took the backend's idle connection; answer on it.
  for (const b of runtime.pools.get('default').backends) {
    const busy = busyConnection(b);
    if (busy) busy.onData(Buffer.from(RESPONSE));
  }
}
const all = runtime.pools.get('default').backends.map((b) => b.idle[0]);
function busyConnection(b) {
  for (const c of all) if (c.backend === b && c.sink) return c;
  return null;
}

// Pre-flight: each case must complete a whole exchange, or the suite would time a failure
// (benchmark.js reports a throwing case as Infinity ns, not as an error).
for (const [label, req] of [['sticky hit', withToken], ['first visit', without]]) {
  const before = written;
  cycle(req);
  if (ctx.active.size !== 0 || written === before) {
    throw new Error(`bench harness broken: '${label}' left ${ctx.active.size} exchange(s) open, wrote ${written - before} bytes`);
  }
}
// BENCH_SMOKE=1: the pre-flight only (test/unit/bench-micro.test.ts keeps this file working).
if (process.env.BENCH_SMOKE === '1') {
  console.log('request-path bench: pre-flight ok');
  process.exit(0);
}

const suite = new Benchmark.Suite('request path');
suite
  .add('sticky hit (valid TETHER cookie)', () => cycle(withToken))
  .add('first visit (no cookie: balance + seal + Set-Cookie)', () => cycle(without))
  .on('cycle', (e) => {
    const t = e.target;
    console.log(`${t.name.padEnd(56)} ${(1e9 / t.hz).toFixed(0).padStart(6)} ns/request  ±${t.stats.rme.toFixed(1)}%`);
  })
  .run();
if (ctx.active.size !== 0 || written === 0) throw new Error(`bench harness broken: ${ctx.active.size} exchanges left open`);
