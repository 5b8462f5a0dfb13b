// SNI routing (exact → longest wildcard → default, each tier filtered by ALPN), the PROXY v2
// header, and the passthrough flags and their cross-checks.
import { describe, expect, it } from 'vitest';
import { compileSniRoutes } from '../../src/data-plane/passthrough/router.js';
import { proxyV2Header } from '../../src/data-plane/passthrough/proxy-protocol.js';
import { loadConfig } from '../../src/config/load.js';
import type { SniRouteConfig } from '../../src/config/schema.js';

const r = (sni: string, pool: string, alpn?: string[]): SniRouteConfig => ({ sni, pool, proxyProtocol: false, ...(alpn ? { alpn } : {}) });

describe('compileSniRoutes', () => {
  const routes = [
    r('*', 'fallback'),
    r('*.example.com', 'wide'),
    r('*.api.example.com', 'narrow'),
    r('api.example.com', 'exact-h2', ['h2']),
    r('api.example.com', 'exact'),
    r('www.example.com', 'www'),
  ];
  const router = compileSniRoutes(routes);
  const pool = (sni: string | null, alpn: string[] = []) => routes[router.route(sni, alpn)]?.pool ?? null;

  it('prefers the exact name, then the longest wildcard, then the default', () => {
    expect(pool('www.example.com')).toBe('www');
    expect(pool('v1.api.example.com')).toBe('narrow');
    expect(pool('a.b.example.com')).toBe('wide');
    expect(pool('shop.example.com')).toBe('wide');
    expect(pool('example.com'), 'a wildcard never matches its own base name').toBe('fallback');
    expect(pool('other.test')).toBe('fallback');
    expect(pool(null), 'no SNI: default only').toBe('fallback');
  });

  it('compares names case-insensitively', () => {
    expect(pool('WWW.Example.COM')).toBe('www');
    expect(pool('X.API.EXAMPLE.COM')).toBe('narrow');
  });

  it('applies ALPN conditions within a tier, in configuration order', () => {
    expect(pool('api.example.com', ['h2', 'http/1.1'])).toBe('exact-h2');
    expect(pool('api.example.com', ['http/1.1'])).toBe('exact');
    expect(pool('api.example.com', [])).toBe('exact');
  });

  it('falls through to the next tier when no route of a tier allows the ALPN', () => {
    const only = [r('a.test', 'h2-only', ['h2']), r('*.test', 'wild')];
    const rt = compileSniRoutes(only);
    expect(only[rt.route('a.test', ['http/1.1'])]?.pool).toBe('wild');
    expect(rt.route('a.example', ['http/1.1'])).toBe(-1);
  });
});

describe('proxyV2Header', () => {
  it('encodes a TCP over IPv4 connection', () => {
    const h = proxyV2Header({ sourceAddress: '192.0.2.7', sourcePort: 51234, destAddress: '::ffff:198.51.100.1', destPort: 443 });
    expect(h.length).toBe(28);
    expect(h.subarray(0, 12).toString('latin1')).toBe('\r\n\r\n\0\r\nQUIT\n');
    expect([h[12], h[13], h.readUInt16BE(14)]).toEqual([0x21, 0x11, 12]);
    expect([...h.subarray(16, 20)]).toEqual([192, 0, 2, 7]);
    expect([...h.subarray(20, 24)]).toEqual([198, 51, 100, 1]);
    expect([h.readUInt16BE(24), h.readUInt16BE(26)]).toEqual([51234, 443]);
  });

  it('encodes a TCP over IPv6 connection, expanding ::', () => {
    const h = proxyV2Header({ sourceAddress: '2001:db8::1', sourcePort: 1, destAddress: '::1', destPort: 2 });
    expect(h.length).toBe(52);
    expect([h[12], h[13], h.readUInt16BE(14)]).toEqual([0x21, 0x21, 36]);
    expect(h.subarray(16, 32).toString('hex')).toBe('20010db8000000000000000000000001');
    expect(h.subarray(32, 48).toString('hex')).toBe('00000000000000000000000000000001');
  });

  it('sends LOCAL (no addresses) when the addresses are unknown or of two families', () => {
    for (const e of [
      { sourceAddress: undefined, sourcePort: undefined, destAddress: '127.0.0.1', destPort: 1 },
      { sourceAddress: '127.0.0.1', sourcePort: 1, destAddress: '::1', destPort: 2 },
    ]) {
      const h = proxyV2Header(e);
      expect(h.length).toBe(16);
      expect([h[12], h[13], h.readUInt16BE(14)]).toEqual([0x20, 0x00, 0]);
    }
  });
});

describe('passthrough flags', () => {
  const base = ['--backend', 'a/a1=127.0.0.1:1', '--backend', 'b/b1=127.0.0.1:2'];

  it('parses --passthrough and --sni with options', () => {
    const { config } = loadConfig([...base, '--passthrough', '127.0.0.1:8443', '--sni', 'A.Example.com=a,proxy-protocol', '--sni', '*.example.com=b,alpn=h2+http/1.1', '--sni', '*=a', '--client-hello-timeout', '2500'], {});
    expect(config.passthrough.listen).toEqual([{ host: '127.0.0.1', port: 8443 }]);
    expect(config.passthrough.routes).toEqual([
      { sni: 'a.example.com', pool: 'a', proxyProtocol: true },
      { sni: '*.example.com', pool: 'b', alpn: ['h2', 'http/1.1'], proxyProtocol: false },
      { sni: '*', pool: 'a', proxyProtocol: false },
    ]);
    expect(config.passthrough.clientHelloTimeoutMs).toBe(2500);
    expect(config.passthrough.maxClientHelloBytes).toBe(16_384);
  });

  it('reports every passthrough mistake at once, clearly', () => {
    const attempt = () => loadConfig([...base, '--sni', 'bad_name!=a', '--sni', 'x.test=nope', '--sni', 'y.test=a,turbo', '--sni', 'z.test=a', '--sni', 'z.test=b'], {});
    expect(attempt).toThrow(/--sni option 'turbo'/);
    try {
      loadConfig([...base, '--sni', 'bad_name!=a', '--sni', 'x.test=nope', '--sni', 'z.test=a', '--sni', 'z.test=b'], {});
    } catch (err) {
      const msg = (err as Error).message;
      expect(msg).toMatch(/passthrough\.routes\.0\.sni: expected a lower-case host name/);
      expect(msg).toMatch(/passthrough\.routes\.1\.pool: no pool named 'nope'/);
      expect(msg).toMatch(/'z\.test' is routed twice/);
      expect(msg).toMatch(/SNI routes given but no passthrough listener/);
      return;
    }
    throw new Error('expected the configuration to be refused');
  });

  it('refuses a passthrough listener without routes', () => {
    expect(() => loadConfig([...base, '--passthrough', '127.0.0.1:0'], {})).toThrow(/needs at least one SNI route/);
  });
});

describe('passthrough in the config file', () => {
  it('reads listeners, routes with ALPN and PROXY v2, and limits; flags add to it', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const os = await import('node:os');
    const dir = mkdtempSync(join(os.tmpdir(), 'tether-pt-config-'));
    try {
      const path = join(dir, 'tether.yaml');
      writeFileSync(
        path,
        [
          'pools:',
          '  shop: { backends: [{ id: s1, address: 127.0.0.1, port: 9443 }] }',
          '  grpc: { backends: [{ id: g1, address: 127.0.0.1, port: 9444 }] }',
          'passthrough:',
          '  listen: [{ host: 127.0.0.1, port: 8443 }]',
          '  clientHelloTimeoutMs: 2000',
          '  maxClientHelloBytes: 8192',
          '  idleTimeoutMs: 60000',
          '  routes:',
          '    - { sni: grpc.example.com, alpn: [h2], pool: grpc, proxyProtocol: true }',
          '    - { sni: "*", pool: shop }',
          '',
        ].join('\n'),
      );
      const { config } = loadConfig(['--config', path, '--client-hello-timeout', '1500'], {});
      expect(config.passthrough).toEqual({
        listen: [{ host: '127.0.0.1', port: 8443 }],
        clientHelloTimeoutMs: 1500,
        maxClientHelloBytes: 8192,
        idleTimeoutMs: 60000,
        routes: [
          { sni: 'grpc.example.com', alpn: ['h2'], pool: 'grpc', proxyProtocol: true },
          { sni: '*', pool: 'shop', proxyProtocol: false },
        ],
      });
      writeFileSync(path, 'pools:\n  shop: { backends: [{ id: s1, address: 127.0.0.1, port: 9443 }] }\npassthrough:\n  listen: [{ host: 127.0.0.1, port: 8443 }]\n  maxClientHelloBytes: 100\n  routes: [{ sni: "*", pool: shop, tls: true }]\n');
      expect(() => loadConfig(['--config', path], {})).toThrow(/passthrough\.maxClientHelloBytes: Too small: expected number to be >=512/);
      expect(() => loadConfig(['--config', path], {})).toThrow(/passthrough\.routes\.0: Unrecognized key: "tls"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
