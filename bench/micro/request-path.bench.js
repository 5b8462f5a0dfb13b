// The whole JS request path of a worker — handleRequest, sticky token read, backend pick, head
// serialization, the upstream response parse and the response write — driven through stand-ins
// for the front door's request/response (src/data-plane/front-door/client.ts) and an upstream socket, so it measures only the user-space
// CPU a request costs Tether, without syscalls or the machine's noise. Run after `npm run build`:
//   node bench/micro/request-path.bench.js
import { createRequire } from 'node:module';
import { ActiveExchanges } from '../../dist/data-plane/http/active-exchanges.js';
import { handleRequest } from '../../dist/data-plane/http/handler.js';
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

const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 22 Nov 2026 20:00:00 GMT\r\nuWebSockets: 20\r\nContent-Length: 4\r\n\r\napp1', 'latin1');
let written = 0;
let lastSetCookie = '';
const res = {
  onAborted() { return this; }, onData() { return this; }, onWritable() { return this; },
  getRemoteAddress: () => '127.0.0.2',
  cork(fn) { fn(); return this; },
  writeStatus(s) { written += s.length; return this; },
  writeHeader(k, v) {
    written += k.length + v.length;
    const text = String(v);
    if (k === 'set-cookie' || text.includes('set-cookie')) lastSetCookie = text;
    return this;
  },
  getWriteOffset: () => 0,
  tryEnd(c) { written += c.length; return [true, true]; },
  end() { return this; }, endWithoutBody() { return this; }, write() { return true; }, pause() {}, resume() {}, close() {},
};
function request(cookie) {
  return {
    getCaseSensitiveMethod: () => 'GET', getQuery: () => '', getUrl: () => '/',
    forEach(cb) { cb('host', '127.0.0.1:8080'); cb('user-agent', 'wrk'); if (cookie) cb('cookie', cookie); },
    getHeader: () => '',
    getTls: () => null,
  };
}

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

/**
 * One worker's request path for a default pool configured with `pool` (sticky mode, binding),
 * over a session table as a worker has it. Returns its context and `cycle(req)`: the handler,
 * then the backend's response through the upstream connection.
 */
function harness(pool) {
  const config = configSchema.parse({
    workers: 1,
    pools: { default: { ...pool, backends: [{ id: 'app1', address: '127.0.0.1', port: 1 }, { id: 'app2', address: '127.0.0.1', port: 2 }] } },
  });
  const layout = { workerCapacity: 1, backendCapacity: 4 };
  const counters = new WorkerCounters(createSharedState(layout), layout, 0);
  const sessions = new SessionStore(SharedTable.create(1024), new Uint8Array(32));
  const runtime = new Runtime(config, { default: { app1: 0, app2: 1 } }, counters, Date.now, sessions);
  const tokens = new RouteTokens(createTokenCrypto(), { maxAgeSec: 86_400 });
  tokens.setKeyRing([{ id: 1, key: Buffer.alloc(32, 7) }], 1);
  const ctx = { runtime: () => runtime, tokens, counters, active: new ActiveExchanges(), log: () => {}, sessions };
  const backends = runtime.pools.get('default').backends;
  for (const b of backends) b.idle.push(fakeConnection(b));
  const all = backends.map((b) => b.idle[0]);
  const cycle = (req, response = RESPONSE) => {
    handleRequest(ctx, res, req);
    // The exchange took a backend's idle connection; answer on it.
    for (const c of all) if (c.sink) c.onData(Buffer.from(response));
  };
  return { ctx, runtime, tokens, sessions, cycle };
}

// sticky-hit and first-visit: cookie mode, no binding (the default).
const plain = harness({});
const withToken = request(`TETHER=${plain.tokens.issue('default', 'cookie', 'app1')}`);
const without = request('');
// The same sticky hit on a pool that binds sessions to the client address (the token was
// issued to 127.0.0.2, the bench's client): what binding adds to every request.
const bound = harness({ bind: 'ip' });
const boundFirst = request('');
bound.cycle(boundFirst);
const boundToken = /TETHER=([^;]+)/.exec(lastSetCookie)?.[1];
const withBoundToken = request(`TETHER=${boundToken}`);
// learn-hit: the backend set JSESSIONID through the balancer once; later requests carry it.
const learn = harness({ sticky: { mode: 'learn', cookie: 'JSESSIONID' } });
const LOGIN = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: JSESSIONID=app1.0123456789abcdef0123456789abcdef; Path=/\r\nContent-Length: 4\r\n\r\napp1', 'latin1');
learn.cycle(request(''), LOGIN);
const withSession = request('JSESSIONID=app1.0123456789abcdef0123456789abcdef');
const cases = [
  ['sticky hit (valid TETHER cookie)', () => plain.cycle(withToken), plain.ctx],
  ['first visit (no cookie: balance + seal + Set-Cookie)', () => plain.cycle(without), plain.ctx],
  ['sticky hit, bound to ip (valid TETHER cookie)', () => bound.cycle(withBoundToken), bound.ctx],
  ['learn hit (JSESSIONID learned in the table)', () => learn.cycle(withSession), learn.ctx],
];

// Pre-flight: each case must complete a whole exchange, or the suite would time a failure
// (benchmark.js reports a throwing case as Infinity ns, not as an error).
if (!boundToken) throw new Error('bench harness broken: the bound pool issued no token');
if (learn.sessions.table.stats().occupied !== 1) throw new Error('bench harness broken: learn mode did not record the session');
for (const [label, run, ctx] of cases) {
  const before = written;
  run();
  if (ctx.active.size !== 0 || written === before) {
    throw new Error(`bench harness broken: '${label}' left ${ctx.active.size} exchange(s) open, wrote ${written - before} bytes`);
  }
}
// BENCH_SMOKE=1: the pre-flight only (test/bench/bench-micro.test.ts keeps this file working).
if (process.env.BENCH_SMOKE === '1') {
  console.log('request-path bench: pre-flight ok');
  process.exit(0);
}

const suite = new Benchmark.Suite('request path');
for (const [label, run] of cases) suite.add(label, run);
suite
  .on('cycle', (e) => {
    const t = e.target;
    console.log(`${t.name.padEnd(56)} ${(1e9 / t.hz).toFixed(0).padStart(6)} ns/request  ±${t.stats.rme.toFixed(1)}%`);
  })
  .run();
for (const [, , ctx] of cases) if (ctx.active.size !== 0) throw new Error(`bench harness broken: ${ctx.active.size} exchanges left open`);
