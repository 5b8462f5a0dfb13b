// The HTTP path's phases 1-5 driven directly, with no listener, socket or front door: a plain
// object presents the request, as an HTTPS listener or a WebSocket upgrade will. Each phase's
// decision is checked on its own: the head read and refused, the route by Host and path, the
// client behind a trusted proxy, the token read per sticky mode (and what the backend is left
// of Tether's cookie or header), the binding check's 403, and the backend picked.
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import type { ClientRequest, ClientResponse } from '../../src/data-plane/front-door/client.js';
import { ActiveExchanges } from '../../src/data-plane/http/active-exchanges.js';
import { checkBinding } from '../../src/data-plane/http/binding.js';
import { Body, NO_SESSION, type ListenerContext } from '../../src/data-plane/http/context.js';
import { hashKeyFor, pickBackend } from '../../src/data-plane/http/pick-backend.js';
import { readRequestHead } from '../../src/data-plane/http/request-head.js';
import { chooseRoute, identifyClient, viaTrustedProxy } from '../../src/data-plane/http/route.js';
import { resolveSticky } from '../../src/data-plane/http/sticky.js';
import { upstreamHead } from '../../src/data-plane/http/upstream-head.js';
import { Runtime } from '../../src/data-plane/runtime.js';
import { createTokenCrypto } from '../../src/native/index.js';
import { C, CounterReader, WorkerCounters, createSharedState } from '../../src/shared-memory/counters.js';
import { SharedTable } from '../../src/shared-memory/table.js';
import { RouteTokens } from '../../src/sticky/route-token.js';
import { SessionStore } from '../../src/sticky/sessions.js';

const backends = (prefix: string, port: number) => [
  { id: `${prefix}1`, address: '127.0.0.1', port },
  { id: `${prefix}2`, address: '127.0.0.1', port: port + 1 },
];

function world() {
  const config = configSchema.parse({
    workers: 1,
    trustedProxies: ['10.0.0.0/8'],
    pools: {
      default: { backends: backends('web', 10) },
      api: { sticky: { mode: 'header', name: 'X-Route' }, backends: backends('api', 20) },
      shop: { sticky: { mode: 'prefix', cookie: 'SID' }, bind: 'ip', backends: backends('shop', 30) },
    },
    routes: [
      { host: 'api.test', pool: 'api' },
      { pathPrefix: '/shop', pool: 'shop' },
    ],
  });
  const layout = { workerCapacity: 1, backendCapacity: 8 };
  const shared = createSharedState(layout);
  const counters = new WorkerCounters(shared, layout, 0);
  const sessions = new SessionStore(SharedTable.create(1024), new Uint8Array(32));
  const runtime = new Runtime(config, { default: { web1: 0, web2: 1 }, api: { api1: 2, api2: 3 }, shop: { shop1: 4, shop2: 5 } }, counters, Date.now, sessions);
  const tokens = new RouteTokens(createTokenCrypto(), { maxAgeSec: 86_400 });
  tokens.setKeyRing([{ id: 1, key: Buffer.alloc(32, 3) }], 1);
  const ctx: ListenerContext = { runtime: () => runtime, tokens, counters, active: new ActiveExchanges(), log: () => {}, sessions };
  return { ctx, runtime, tokens, reader: new CounterReader(shared, layout) };
}

/** A request as any listener would present it: method, target and headers, nothing else. */
function request(method: string, target: string, headers: [string, string][], tls: ReturnType<ClientRequest['getTls']> = null): ClientRequest {
  const [path, query = ''] = target.split('?') as [string, string?];
  return {
    getCaseSensitiveMethod: () => method,
    getMethod: () => method.toLowerCase(),
    getUrl: () => path,
    getQuery: () => query,
    getHeader: (name) => headers.find(([n]) => n === name)?.[1] ?? '',
    forEach: (cb) => headers.forEach(([n, v]) => cb(n, v)),
    getTls: () => tls,
  };
}

/** A response that records what the phases answered (only the binding phase answers: 403). */
function recorder(peer: string) {
  const out = { status: '', headers: [] as [string, string][], body: '' };
  const res = {
    cork(fn: () => void) { fn(); return res; },
    writeStatus(s: string) { out.status = s; return res; },
    writeHeader(n: string, v: string | Uint8Array) { out.headers.push([n, String(v)]); return res; },
    end(body?: string | Uint8Array) { out.body = String(body ?? ''); return res; },
    onAborted() { return res; },
    getRemoteAddress: () => peer,
  } as unknown as ClientResponse;
  return { res, out };
}

describe('HTTP phases without a listener', () => {
  it('1 read the head: framing decided, and refusals say why', () => {
    const h = readRequestHead(request('POST', '/up?x=1', [['host', 'a.test'], ['content-length', '5'], ['x-other', 'v']]));
    expect({ method: h.method, target: h.target, path: h.path, body: h.body, length: h.length, bad: h.bad, flat: h.flat }).toEqual({
      method: 'POST', target: '/up?x=1', path: '/up', body: Body.Length, length: 5, bad: '', flat: ['host', 'a.test', 'x-other', 'v'],
    });
    expect(readRequestHead(request('GET', '/', [])).bad).toBe('exactly one Host header is required');
    expect(readRequestHead(request('GET', '/', [['host', 'a'], ['transfer-encoding', 'gzip']])).bad).toBe("unsupported Transfer-Encoding 'gzip'");
    expect(readRequestHead(request('GET', '/', [['host', 'a'], ['content-length', '1'], ['content-length', '1']])).bad).toBe('more than one Content-Length');
    expect(readRequestHead(request('G T', '/', [['host', 'a']])).bad).toBe('invalid method');
  });

  it('2 choose the route: by Host, by path prefix, else the default pool; the client behind a trusted proxy', () => {
    const { runtime } = world();
    const route = (host: string, target: string) => chooseRoute(runtime, readRequestHead(request('GET', target, [['host', host]]))).name;
    expect([route('API.test:8080', '/'), route('www.test', '/shop/cart'), route('www.test', '/'), route('api.test', '/shop')]).toEqual(['api', 'shop', 'default', 'api']);
    const head = readRequestHead(request('GET', '/', [['host', 'a'], ['x-forwarded-for', '198.51.100.7, 10.1.2.3']]));
    expect(viaTrustedProxy(runtime, '10.9.9.9')).toBe(true);
    expect(identifyClient(runtime, '10.9.9.9', head, true)).toBe('198.51.100.7');
    expect(viaTrustedProxy(runtime, '192.0.2.1')).toBe(false);
    expect(identifyClient(runtime, '192.0.2.1', head, false)).toBe('192.0.2.1');
    const upstream = upstreamHead(head, '', '192.0.2.1', '192.0.2.1', false);
    expect(upstream).toContain('x-forwarded-for: 192.0.2.1\r\n');
    expect(upstream).not.toContain('198.51.100.7');
    expect(upstream).toContain('x-forwarded-proto: http\r\n');
    // The same phases behind an HTTPS listener: the request says so, and the backend is told.
    const secure = readRequestHead(request('GET', '/', [['host', 'a']], { protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', servername: 'a' }));
    expect(secure.tls).toEqual({ protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', servername: 'a' });
    const secureUpstream = upstreamHead(secure, '', '192.0.2.1', '192.0.2.1', false);
    expect(secureUpstream).toContain('x-forwarded-proto: https\r\n');
    expect(secureUpstream).toContain('forwarded: for=192.0.2.1;host=a;proto=https\r\n');
  });

  it('3 resolve stickiness: each mode reads its token and hides it from the backend; 5 picks its backend', () => {
    const { ctx, runtime, tokens, reader } = world();
    // Cookie mode (default pool): the token routes to web2; the backend keeps only the other cookie.
    const web = runtime.defaultPool;
    const head = readRequestHead(request('GET', '/', [['host', 'a'], ['cookie', `a=1; TETHER=${tokens.issue('default', 'cookie', 'web2')}`]]));
    const sticky = resolveSticky(ctx, web, head);
    expect(sticky.forwardCookie).toBe('a=1');
    expect(sticky.tokenBackend).toBe(web.byId.get('web2'));
    expect(checkBinding(ctx, recorder('127.0.0.1').res, web, head, sticky, '127.0.0.1')).toBe(NO_SESSION);
    expect(web.backends[pickBackend(ctx, web, sticky, hashKeyFor(web, '127.0.0.1', head))]!.id).toBe('web2');

    // Header mode: every copy of the header is Tether's and leaves the forwarded headers.
    const api = runtime.pools.get('api')!;
    const apiHead = readRequestHead(request('GET', '/', [['host', 'api.test'], ['x-route', tokens.issue('api', 'header', 'api1')], ['x-route', 'second'], ['accept', '*/*']]));
    const apiSticky = resolveSticky(ctx, api, apiHead);
    expect(apiHead.flat).toEqual(['host', 'api.test', 'accept', '*/*']);
    expect(api.backends[apiSticky.tokenBackend]!.id).toBe('api1');

    // A token for another pool is a forgery here: counted, and the request is balanced as new.
    const forged = readRequestHead(request('GET', '/', [['host', 'a'], ['cookie', `TETHER=${tokens.issue('api', 'cookie', 'web2')}`]]));
    const none = resolveSticky(ctx, web, forged);
    expect({ backend: none.tokenBackend, invalid: none.invalid, forged: reader.total('sticky_invalid_forged') }).toEqual({ backend: -1, invalid: true, forged: 1 });
    const missesBefore = reader.total('sticky_misses');
    expect(pickBackend(ctx, web, none, '')).toBeGreaterThanOrEqual(0);
    expect(reader.total('sticky_misses')).toBe(missesBefore + 1);
    expect(C.sticky_misses).toBeGreaterThan(0);
  });

  it('4 check the binding: a bound prefix-mode token presented from another address is refused with 403', () => {
    const { ctx, runtime, tokens, reader } = world();
    const shop = runtime.pools.get('shop')!;
    const issuedTo = shop.terminals.get('192.0.2.10', '');
    const token = tokens.issue('shop', 'prefix', 'shop2', issuedTo.tokenTag, issuedTo.tokenFlags);
    const head = () => readRequestHead(request('GET', '/shop', [['host', 'a'], ['cookie', `SID=${token}~app-session`]]));
    const h = head();
    const sticky = resolveSticky(ctx, shop, h);
    // Prefix mode: the backend sees exactly the value it set.
    expect(sticky.forwardCookie).toBe('SID=app-session');
    const home = recorder('192.0.2.10');
    const session = checkBinding(ctx, home.res, shop, h, sticky, '192.0.2.10');
    expect(session?.terminal).not.toBeNull();
    expect(session?.values).toEqual(['app-session']);
    expect(home.out.status).toBe('');

    const away = recorder('203.0.113.5');
    const h2 = head();
    const sticky2 = resolveSticky(ctx, shop, h2);
    expect(checkBinding(ctx, away.res, shop, h2, sticky2, '203.0.113.5')).toBeNull();
    expect(away.out.status).toBe('403 Forbidden');
    expect(JSON.parse(away.out.body)).toEqual({ error: 'terminal_mismatch', message: 'this session was issued to another terminal' });
    expect(reader.total('binding_refused_terminal')).toBe(1);
  });
});
