// Config loading: flags, env and file merge with the documented precedence, and every problem
// is reported at once with where it came from.
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, parseHostPort, helpText, FLAGS } from '../../src/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('loadConfig', () => {
  it('builds pools from --backend flags with weights and pool prefixes', () => {
    const { config } = loadConfig(['--backend', 'app1=10.0.0.5:80', '--backend', 'app2=10.0.0.6:80,weight=3', '--backend', 'api/a=[::1]:8000', '--backend', 'api/s=https://10.0.0.7:8443,sni=api.internal', '--backend', 'api/u=https://10.0.0.8:8443,verify=none,weight=2', '--backend-ca', '/etc/ca.pem'], {});
    expect(config.pools.default!.backends).toEqual([
      { id: 'app1', address: '10.0.0.5', port: 80, weight: 1, tls: null },
      { id: 'app2', address: '10.0.0.6', port: 80, weight: 3, tls: null },
    ]);
    expect(config.pools.api!.backends).toEqual([
      { id: 'a', address: '::1', port: 8000, weight: 1, tls: null },
      { id: 's', address: '10.0.0.7', port: 8443, weight: 1, tls: { verify: true, servername: 'api.internal' } },
      { id: 'u', address: '10.0.0.8', port: 8443, weight: 2, tls: { verify: false, servername: null } },
    ]);
    expect(config.tls.backendCa).toBe('/etc/ca.pem');
    expect(Object.isFrozen(config.pools.default!.backends[0])).toBe(true);
  });

  it('parses every sticky mode and balancer flag', () => {
    const { config } = loadConfig(
      ['--backend', 'a=127.0.0.1:1', '--backend', 'web/b=127.0.0.1:2', '--sticky', 'prefix:JSESSIONID', '--sticky', 'web/header:X-Route', '--balance', 'consistent-hash:header:x-user', '--balance', 'web/least-connections'],
      {},
    );
    expect(config.pools.default!.sticky).toEqual({ mode: 'prefix', cookie: 'JSESSIONID' });
    expect(config.pools.web!.sticky).toEqual({ mode: 'header', name: 'X-Route' });
    expect(config.pools.default!.balance).toEqual({ algorithm: 'consistent-hash', hashOn: 'header:x-user' });
    expect(config.pools.web!.balance.algorithm).toBe('least-connections');
    const cookie = loadConfig(['--backend', 'a=127.0.0.1:1', '--sticky', 'cookie:SRV'], {}).config.pools.default!.sticky;
    expect(cookie).toMatchObject({ mode: 'cookie', name: 'SRV', httpOnly: true, sameSite: 'Lax' });
  });

  it('reports every problem at once, each with where it came from', () => {
    let message = '';
    try {
      loadConfig(['--workers', 'x', '--backend', 'nope', '--frobnicate', '--sticky', 'sometimes', '--listen', 'localhost:99999', '--route', 'x.example=missing', '--backend', 'a=127.0.0.1:1'], {});
    } catch (err) {
      expect((err as { code: string }).code).toBe('TETHER_ERR_CONFIG');
      message = (err as Error).message;
    }
    for (const needle of ['--workers', '--backend: expected [POOL/]ID=[https://]HOST:PORT', 'unknown flag --frobnicate', '--sticky: expected cookie', 'expected a port 0-65535', "no pool named 'missing'"]) {
      expect(message).toContain(needle);
    }
  });

  it('reads a YAML file, rejects unknown keys with their path, and lets flags override it', () => {
    const good = file('good.yaml', 'workers: 3\nkeyGraceSec: 60\npools:\n  web:\n    sticky: { mode: header, name: X-Route }\n    backends:\n      - { id: w1, address: 127.0.0.1, port: 81 }\nroutes:\n  - { host: web.example, pool: web }\n');
    const { config } = loadConfig(['--config', good, '--workers', '1'], {});
    expect(config.workers).toBe(1);
    expect(config.keyGraceSec).toBe(60);
    expect(config.routes).toEqual([{ host: 'web.example', pathPrefix: '/', pool: 'web' }]);
    const bad = file('bad.yaml', 'workers: 2\ntimeouts: { conectMs: 5 }\npools:\n  web:\n    backends:\n      - { id: w1, address: 127.0.0.1, port: 0 }\n      - { id: w1, address: 127.0.0.1, port: 82 }\n');
    let message = '';
    try {
      loadConfig(['--config', bad], {});
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/timeouts: Unrecognized key.*conectMs/);
    expect(message).toMatch(/pools\.web\.backends\.0\.port: Too small/);
    expect(message).toMatch(/backend id 'w1' appears twice/);
    const json = file('c.json', '{"listen": [{"host": "127.0.0.1", "port": 8081}], "pools": {"default": {"backends": [{"id": "a", "address": "127.0.0.1", "port": 1}]}}}');
    expect(loadConfig(['--config', json], {}).config.listen).toEqual([{ host: '127.0.0.1', port: 8081, protocol: 'http', redirect: null }]);
    expect(() => loadConfig(['--config', join(dir, 'absent.yaml')], {})).toThrow(/cannot read config file/);
    expect(() => loadConfig(['--config', file('broken.yaml', 'pools: [unclosed')], {})).toThrow(/cannot parse config file/);
  });

  it('takes TETHER_* environment variables below flags', () => {
    const env = { TETHER_WORKERS: '5', TETHER_ADMIN: 'off', TETHER_LISTEN: '127.0.0.1:7000' };
    const fromEnv = loadConfig(['--backend', 'a=127.0.0.1:1'], env).config;
    expect(fromEnv.workers).toBe(5);
    expect(fromEnv.admin).toBeNull();
    expect(fromEnv.listen).toEqual([{ host: '127.0.0.1', port: 7000, protocol: 'http', redirect: null }]);
    expect(loadConfig(['--backend', 'a=127.0.0.1:1', '--workers', '2'], env).config.workers).toBe(2);
  });

  it('allows no backends only when the demo backends will fill the single pool', () => {
    expect(loadConfig([], {}).config.demo).toBe(true);
    expect(() => loadConfig(['--no-demo'], {})).not.toThrow();
    expect(() => loadConfig(['--backend', 'a=127.0.0.1:1', '--sticky', 'web/none'], {})).toThrow(/pools\.web: has no backends/);
  });
});

describe('parseHostPort', () => {
  it('accepts host:port, [v6]:port and :port, and explains the rest', () => {
    expect(parseHostPort('0.0.0.0:80')).toEqual({ host: '0.0.0.0', port: 80 });
    expect(parseHostPort('[::1]:8080')).toEqual({ host: '::1', port: 8080 });
    expect(parseHostPort(':9000')).toEqual({ host: '127.0.0.1', port: 9000 });
    expect(parseHostPort('::1:80')).toMatch(/IPv6 address in brackets/);
    expect(parseHostPort('[nothost]:80')).toMatch(/expected an IPv6 address/);
    expect(parseHostPort('host')).toMatch(/expected HOST:PORT/);
  });
});

describe('--help', () => {
  it('documents every flag', () => {
    const text = helpText();
    for (const f of FLAGS) expect(text).toContain(`--${f.flag}`);
  });
});

describe('health, admin and agent flags', () => {
  it('parses --eject-backoff per pool, keeps the defaults elsewhere, and explains bad values', () => {
    const { config } = loadConfig(['--backend', 'web/a=127.0.0.1:1', '--backend', 'b=127.0.0.1:2', '--eject-backoff', 'web/250,8000', '--eject-backoff', '400'], {});
    expect(config.pools.web!.passive).toEqual({ consecutive5xx: 5, backoffMs: 250, maxBackoffMs: 8_000 });
    expect(config.pools.default!.passive).toEqual({ consecutive5xx: 5, backoffMs: 400, maxBackoffMs: 30_000 });
    expect(() => loadConfig(['--backend', 'b=127.0.0.1:2', '--eject-backoff', '1,2,3'], {})).toThrow(/expected MS or MS,MAX_MS but received "1,2,3"/);
    expect(() => loadConfig(['--backend', 'b=127.0.0.1:2', '--eject-backoff', '5000,100'], {})).toThrow(/maxBackoffMs: expected maxBackoffMs ≥ backoffMs/);
    expect(() => loadConfig(['--backend', 'b=127.0.0.1:2', '--eject-backoff', 'soon'], {})).toThrow(/eject-backoff/);
  });

  it('parses --health-check, --eject-5xx, --admin-token-file, --agent-keys and --pool', () => {
    const { config } = loadConfig(
      [
        '--backend', 'web/a=127.0.0.1:1', '--health-check', 'web/http:/healthz,expect=200-299,interval=500,timeout=200,rise=3,fall=4,host=app.local',
        '--backend', 'b=127.0.0.1:2', '--health-check', 'tcp', '--eject-5xx', 'web/0',
        '--admin-token-file', '/etc/tether/admin.token', '--agent-keys', '/etc/tether/agents.keys', '--heartbeat-timeout', '9000', '--pool', 'empty',
      ],
      {},
    );
    expect(config.pools.web!.healthCheck).toEqual({ type: 'http', path: '/healthz', expect: '200-299', host: 'app.local', intervalMs: 500, timeoutMs: 200, rise: 3, fall: 4 });
    expect(config.pools.default!.healthCheck).toEqual({ type: 'tcp', intervalMs: 2_000, timeoutMs: 1_000, rise: 2, fall: 3 });
    expect(config.pools.web!.passive.consecutive5xx).toBe(0);
    expect(config.pools.default!.passive.consecutive5xx).toBe(5);
    expect(config.adminTokenFile).toBe('/etc/tether/admin.token');
    expect(config.control).toEqual({ agentKeysFile: '/etc/tether/agents.keys', windowMs: 30_000, heartbeatTimeoutMs: 9_000 });
    expect(config.pools.empty!.backends).toEqual([]);
  });

  it('explains bad health-check specs', () => {
    const bad = (spec: string) => {
      try {
        loadConfig(['--backend', 'a=127.0.0.1:1', '--health-check', spec], {});
      } catch (err) {
        return (err as Error).message;
      }
      return 'accepted';
    };
    expect(bad('udp')).toMatch(/expected 'http:\/PATH', 'tcp' or 'off'/);
    expect(bad('http:/x,colour=red')).toMatch(/unknown health-check option 'colour'/);
    expect(bad('tcp,expect=200')).toMatch(/unknown health-check option 'expect'/);
    expect(bad('http:/x,interval=fast')).toMatch(/interval/);
    expect(bad('http:/x,expect=299-200')).toMatch(/range/);
    expect(bad('http:/x,expect=600')).toMatch(/status/);
    expect(bad('http:/x,fall=0')).toMatch(/fall/);
    expect(bad('http:no-slash')).toMatch(/path/);
  });

  it('an empty pool is an error unless agents may fill it', () => {
    expect(() => loadConfig(['--backend', 'a=127.0.0.1:1', '--pool', 'web'], {})).toThrow(/pools\.web: has no backends/);
    expect(() => loadConfig(['--backend', 'a=127.0.0.1:1', '--pool', 'web', '--agent-keys', '/k'], {})).not.toThrow();
  });
});

describe('authorization flags', () => {
  it('parses the handshake flags and needs agent keys to deliver grants', () => {
    const { config } = loadConfig(['--pool', 'app', '--agent-keys', '/k/agents', '--terminal-keys', '/k/terminals', '--authz-pool', 'app', '--authz-path', '/auth/v1', '--authz-window', '10000', '--authz-fail-limit', '0'], {});
    expect(config.authz).toEqual({ terminalKeysFile: '/k/terminals', path: '/auth/v1', pool: 'app', windowMs: 10_000, failLimit: 0 });
    expect(() => loadConfig(['--backend', 'a=127.0.0.1:1', '--terminal-keys', '/k/terminals'], {})).toThrow(/give --agent-keys too/);
    expect(() => loadConfig(['--pool', 'app', '--agent-keys', '/k', '--terminal-keys', '/t', '--authz-pool', 'nope'], {})).toThrow(/authz\.pool: no pool 'nope'/);
    expect(() => loadConfig(['--pool', 'app', '--agent-keys', '/k', '--authz-path', 'no-slash'], {})).toThrow(/authz\.path/);
  });
});

describe('HTTPS flags', () => {
  const base = ['--backend', 'a=127.0.0.1:1'];
  it('parses http:// and https:// listeners, redirect=https, certificates, strict SNI, the handshake deadline and HSTS', () => {
    const c = loadConfig(['--listen', 'https://0.0.0.0:443', '--listen', 'http://[::1]:80,redirect=https', '--listen', '127.0.0.1:8080', '--cert', '/etc/a.pem', '--cert', '/etc/certs/', '--strict-sni', '--tls-handshake-timeout', '2500', '--hsts', '31536000', ...base], {}).config;
    expect(c.listen).toEqual([
      { host: '0.0.0.0', port: 443, protocol: 'https', redirect: null },
      { host: '::1', port: 80, protocol: 'http', redirect: 'https' },
      { host: '127.0.0.1', port: 8080, protocol: 'http', redirect: null },
    ]);
    expect(c.tls).toEqual({ certs: ['/etc/a.pem', '/etc/certs/'], strictSni: true, handshakeTimeoutMs: 2500, ciphers: null, backendCa: null });
    expect(c.pools['default']!.hstsSec).toBe(31536000);
    expect(loadConfig(['--listen', 'https://127.0.0.1:443', '--cert', '/x.pem', '--hsts', 'default/off', ...base], {}).config.pools['default']!.hstsSec).toBeNull();
  });

  it('refuses what cannot work, saying why', () => {
    const fails = (argv: string[]) => {
      try {
        loadConfig([...argv, ...base], {});
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error(`accepted: ${argv.join(' ')}`);
    };
    expect(fails(['--listen', 'https://127.0.0.1:443'])).toMatch(/an https:\/\/ listener needs a certificate: give --cert PATH/);
    expect(fails(['--cert', '/x.pem'])).toMatch(/certificates given but no https:\/\/ listener/);
    expect(fails(['--listen', 'http://127.0.0.1:80,redirect=https'])).toMatch(/redirect=https needs an https:\/\/ listener/);
    expect(fails(['--listen', 'https://127.0.0.1:443,redirect=https', '--cert', '/x.pem'])).toMatch(/redirect=https is for a plain http:\/\/ listener/);
    expect(fails(['--listen', 'http://127.0.0.1:80,gzip=on'])).toMatch(/unknown listener option 'gzip=on'/);
    expect(fails(['--listen', 'ftp://127.0.0.1:21'])).toMatch(/unsupported scheme 'ftp:\/\/'/);
    expect(fails(['--listen', 'https://127.0.0.1:443', '--cert', '/x.pem', '--tls-handshake-timeout', 'soon'])).toMatch(/expected milliseconds/);
  });
});
