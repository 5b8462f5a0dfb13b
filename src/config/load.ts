// Builds the configuration from (lowest to highest precedence) defaults, a YAML/JSON file,
// TETHER_* environment variables and command-line flags; validates it once, reporting every
// problem at once with where it came from; returns a deeply frozen snapshot.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseBindPolicy } from '../sticky/binding.js';
import { parse as parseYaml } from 'yaml';
import { TetherError } from '../errors.js';
import { configSchema, type Config } from './schema.js';

type Json = Record<string, unknown>;

interface FlagSpec {
  readonly flag: string;
  readonly arg?: string;
  readonly help: string;
  readonly repeat?: boolean;
  readonly env?: string;
  /** Apply the flag's value to the raw config; return an error message for bad values. */
  readonly apply: (raw: Json, value: string) => string | undefined;
}

const DEFAULT_POOL = 'default';

function pool(raw: Json, poolName: string): Json {
  const pools = (raw.pools ??= {}) as Json;
  return (pools[poolName] ??= {}) as Json;
}

function tls(raw: Json): Json {
  return (raw.tls ??= {}) as Json;
}

/** `HOST:PORT`, `http://HOST:PORT[,redirect=https]` or `https://HOST:PORT`. */
function parseListener(value: string): Json | string {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(value);
  if (scheme && scheme[1] !== 'http' && scheme[1] !== 'https') return `unsupported scheme '${scheme[1]}://' in '${value}' (expected http:// or https://)`;
  const m = /^(?:(https?):\/\/)?([^,]*)((?:,[^,]*)*)$/.exec(value);
  if (!m) return `expected [http://|https://]HOST:PORT but received '${value}'`;
  const hp = parseHostPort(m[2]!.replace(/\/$/, ''));
  if (typeof hp === 'string') return hp;
  const out: Json = { host: hp.host, port: hp.port, protocol: m[1] ?? 'http' };
  for (const opt of (m[3] ?? '').split(',').filter(Boolean)) {
    if (opt === 'redirect=https') {
      if (out.protocol === 'https') return `redirect=https is for a plain http:// listener; '${value}' is already HTTPS`;
      out.redirect = 'https';
    } else return `unknown listener option '${opt}' in '${value}' (known: redirect=https)`;
  }
  return out;
}

function passthrough(raw: Json): Json {
  return (raw.passthrough ??= {}) as Json;
}

/** Splits an optional `pool/` prefix off a flag value. */
function poolPrefix(value: string): [string, string] {
  const m = /^([A-Za-z0-9][A-Za-z0-9._-]{0,63})\/(.*)$/.exec(value);
  return m ? [m[1]!, m[2]!] : [DEFAULT_POOL, value];
}

/** Parses `host:port`, `[v6]:port` or `:port`. */
export function parseHostPort(value: string, defaultHost = '127.0.0.1'): { host: string; port: number } | string {
  let host: string;
  let portText: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(value);
  if (v6) {
    host = v6[1]!;
    portText = v6[2]!;
    if (isIP(host) !== 6) return `expected an IPv6 address inside [] but received '${host}'`;
  } else {
    const i = value.lastIndexOf(':');
    if (i < 0) return `expected HOST:PORT but received '${value}'`;
    host = value.slice(0, i) || defaultHost;
    portText = value.slice(i + 1);
    if (host.includes(':')) return `expected an IPv6 address in brackets ([::1]:8080) but received '${value}'`;
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return `expected a port 0-65535 but received '${portText}'`;
  return { host, port: Number(portText) };
}

function intValue(value: string, what: string): number | string {
  if (!/^\d+$/.test(value)) return `expected ${what} (a whole number) but received '${value}'`;
  return Number(value);
}

/** `http:/path[,expect=…][,host=…][,interval=…][,timeout=…][,rise=…][,fall=…]`, `tcp[,…]` or `off`. */
function parseHealthCheck(spec: string): Json | null | string {
  if (spec === 'off') return null;
  const [head, ...opts] = spec.split(',');
  const out: Json = {};
  if (head === 'tcp') out.type = 'tcp';
  else if (head!.startsWith('http:')) {
    out.type = 'http';
    out.path = head!.slice(5) || '/';
  } else return `expected 'http:/PATH', 'tcp' or 'off' (then ,OPTION=VALUE…) but received '${spec}'`;
  const numeric: Record<string, string> = { interval: 'intervalMs', timeout: 'timeoutMs', rise: 'rise', fall: 'fall' };
  for (const opt of opts) {
    const eq = opt.indexOf('=');
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const value = eq < 0 ? '' : opt.slice(eq + 1);
    if (key in numeric) {
      const n = intValue(value, key);
      if (typeof n === 'string') return n;
      out[numeric[key]!] = n;
    } else if ((key === 'expect' || key === 'host') && out.type === 'http') out[key] = value;
    else return `unknown health-check option '${key}' (expected ${out.type === 'http' ? 'expect, host, ' : ''}interval, timeout, rise or fall)`;
  }
  return out;
}

/** A text value as given (the schema checks it): never a problem here. */
function setText(target: Json, key: string, value: string): undefined {
  target[key] = value;
  return undefined;
}

function setNumber(target: Json, key: string, value: string, what: string): string | undefined {
  const n = intValue(value, what);
  if (typeof n === 'string') return n;
  target[key] = n;
  return undefined;
}

export const FLAGS: readonly FlagSpec[] = [
  {
    flag: 'listen', arg: '[http://|https://]HOST:PORT[,redirect=https]|off', repeat: true, env: 'TETHER_LISTEN',
    help: 'Client listener; repeat for several. https:// terminates TLS (needs --cert); redirect=https answers a plain one with 308 to HTTPS. Default 127.0.0.1:8080. off: no HTTP listener (TLS passthrough only).',
    apply(raw, v) {
      if (v === 'off') {
        raw.listen = [];
        return undefined;
      }
      const l = parseListener(v);
      if (typeof l === 'string') return l;
      ((raw.listen ??= []) as unknown[]).push(l);
      return undefined;
    },
  },
  {
    flag: 'cert', arg: 'PATH', repeat: true, env: 'TETHER_CERT',
    help: 'HTTPS certificate: a PEM file with the chain and its private key, or a directory of them. The first is the default; SNI picks among the rest by their names.',
    apply(raw, v) {
      ((tls(raw).certs ??= []) as unknown[]).push(v);
      return undefined;
    },
  },
  {
    flag: 'strict-sni',
    help: 'HTTPS: refuse a handshake whose SNI names no certificate (or that sends none) instead of serving the first certificate.',
    apply(raw) {
      tls(raw).strictSni = true;
      return undefined;
    },
  },
  {
    flag: 'tls-handshake-timeout', arg: 'MS', env: 'TETHER_TLS_HANDSHAKE_TIMEOUT',
    help: 'HTTPS: a client must complete its TLS handshake this long after connecting. Default 10000.',
    apply: (raw, v) => setNumber(tls(raw), 'handshakeTimeoutMs', v, 'milliseconds'),
  },
  {
    flag: 'hsts', arg: '[POOL/]SECONDS|off', repeat: true,
    help: 'HTTPS: add Strict-Transport-Security: max-age=SECONDS to the responses of the pool. Default off.',
    apply(raw, v) {
      const [poolName, spec] = poolPrefix(v);
      if (spec === 'off') {
        pool(raw, poolName).hstsSec = null;
        return undefined;
      }
      return setNumber(pool(raw, poolName), 'hstsSec', spec, 'seconds');
    },
  },
  {
    flag: 'backend', arg: '[POOL/]ID=[http://|https://]HOST:PORT[,weight=N][,verify=none][,sni=NAME]', repeat: true,
    help: 'A backend; ID is a stable name that route tokens carry. Pool defaults to "default". https:// re-encrypts to it, verified (system CAs or --backend-ca) unless verify=none; sni= names it (default HOST).',
    apply(raw, v) {
      const [poolName, rest] = poolPrefix(v);
      const m = /^([^=]+)=(?:(https?):\/\/)?([^,]+)((?:,[a-z]+=[^,]*)*)$/.exec(rest);
      if (!m) return `expected [POOL/]ID=[https://]HOST:PORT[,weight=N] but received '${v}'`;
      const hp = parseHostPort(m[3]!.replace(/\/$/, ''));
      if (typeof hp === 'string') return hp;
      const tls: Json | null = m[2] === 'https' ? { verify: true, servername: null } : null;
      const backend: Json = { id: m[1], address: hp.host, port: hp.port, tls };
      for (const opt of (m[4] ?? '').split(',').filter(Boolean)) {
        const [k, val = ''] = opt.split('=');
        if (k === 'weight') {
          const err = setNumber(backend, 'weight', val, 'a weight');
          if (err) return err;
        } else if ((k === 'verify' || k === 'sni') && tls === null) {
          return `backend option '${k}' is for an https:// backend ('${v}' is plain HTTP)`;
        } else if (k === 'verify') {
          if (val !== 'none') return `verify= takes only 'none' (to skip certificate verification) but received '${val}'`;
          tls!.verify = false;
        } else if (k === 'sni') {
          tls!.servername = val;
        } else return `unknown backend option '${k}' in '${v}' (known: weight, verify, sni)`;
      }
      const p = pool(raw, poolName);
      ((p.backends ??= []) as unknown[]).push(backend);
      return undefined;
    },
  },
  {
    flag: 'backend-ca', arg: 'PATH', env: 'TETHER_BACKEND_CA',
    help: 'CA certificates (PEM) that https:// backends are verified against, instead of the system CAs.',
    apply(raw, v) {
      tls(raw).backendCa = v;
      return undefined;
    },
  },
  {
    flag: 'sticky', arg: '[POOL/]MODE', repeat: true, env: 'TETHER_STICKY',
    help: 'cookie[:NAME] | prefix:APP_COOKIE | header[:NAME] | learn:APP_COOKIE | none. Default cookie:TETHER.',
    apply(raw, v) {
      const [poolName, rest] = poolPrefix(v);
      const [mode, arg] = splitOnce(rest, ':');
      const p = pool(raw, poolName);
      switch (mode) {
        case 'cookie': p.sticky = arg ? { mode, name: arg } : { mode }; return undefined;
        case 'header': p.sticky = arg ? { mode, name: arg } : { mode }; return undefined;
        case 'prefix':
          if (!arg) return `prefix mode needs the application's cookie name, e.g. --sticky prefix:JSESSIONID`;
          p.sticky = { mode, cookie: arg };
          return undefined;
        case 'learn':
          if (!arg) return `learn mode needs the application's session cookie name, e.g. --sticky learn:JSESSIONID`;
          p.sticky = { mode, cookie: arg };
          return undefined;
        case 'none': p.sticky = { mode }; return undefined;
        default: return `expected cookie[:NAME], prefix:APP_COOKIE, header[:NAME], learn:APP_COOKIE or none but received '${rest}'`;
      }
    },
  },
  {
    flag: 'bind', arg: '[POOL/]POLICY', repeat: true, env: 'TETHER_BIND',
    help: 'Session binding: none | ip | subnet[:V4BITS[,V6BITS]] | header:NAME. Default none.',
    apply(raw, v) {
      const [poolName, rest] = poolPrefix(v);
      const parsed = parseBindPolicy(rest);
      if (typeof parsed === 'string') return parsed;
      pool(raw, poolName).bind = rest;
      return undefined;
    },
  },
  {
    flag: 'table-size', arg: 'ENTRIES', env: 'TETHER_TABLE_SIZE',
    help: 'Shared session table capacity (learn mode, bindings, revocations). Default 1000000 (96 MiB).',
    apply: (raw, v) => setNumber(raw, 'tableSize', v, 'a number of entries'),
  },
  {
    flag: 'balance', arg: '[POOL/]ALGORITHM', repeat: true, env: 'TETHER_BALANCE',
    help: 'round-robin | weighted | least-connections | consistent-hash[:client-ip|header:NAME|cookie:NAME].',
    apply(raw, v) {
      const [poolName, rest] = poolPrefix(v);
      const [algorithm, hashOn] = splitOnce(rest, ':');
      const balance: Json = { algorithm };
      if (hashOn) {
        if (algorithm !== 'consistent-hash') return `only consistent-hash takes a key, received '${rest}'`;
        balance.hashOn = hashOn;
      }
      pool(raw, poolName).balance = balance;
      return undefined;
    },
  },
  {
    flag: 'route', arg: '[HOST][/PATH]=POOL', repeat: true,
    help: 'Send requests for HOST (and PATH prefix) to POOL. Unmatched requests go to the first pool.',
    apply(raw, v) {
      const eq = v.lastIndexOf('=');
      if (eq <= 0) return `expected [HOST][/PATH]=POOL but received '${v}'`;
      const match = v.slice(0, eq);
      const slash = match.indexOf('/');
      const route: Json = { pool: v.slice(eq + 1) };
      const host = slash < 0 ? match : match.slice(0, slash);
      if (host) route.host = host;
      if (slash >= 0) route.pathPrefix = match.slice(slash);
      ((raw.routes ??= []) as unknown[]).push(route);
      return undefined;
    },
  },
  {
    flag: 'passthrough', arg: 'HOST:PORT', repeat: true, env: 'TETHER_PASSTHROUGH',
    help: 'TLS passthrough listener (routed by SNI, never decrypted); repeat for several. Needs --sni routes.',
    apply(raw, v) {
      const hp = parseHostPort(v);
      if (typeof hp === 'string') return hp;
      (((passthrough(raw).listen ??= []) as unknown[])).push(hp);
      return undefined;
    },
  },
  {
    flag: 'sni', arg: 'NAME=POOL[,proxy-protocol][,alpn=P1+P2]', repeat: true,
    help: "Passthrough route: NAME is a host name, '*.example.com' or '*' (default). Exact beats wildcard beats default.",
    apply(raw, v) {
      const m = /^([^=]+)=([^,]+)((?:,[a-z-]+(?:=[^,]*)?)*)$/.exec(v);
      if (!m) return `expected NAME=POOL[,proxy-protocol][,alpn=P1+P2] but received '${v}'`;
      const route: Json = { sni: m[1]!.toLowerCase(), pool: m[2] };
      for (const opt of (m[3] ?? '').split(',').filter(Boolean)) {
        const [k, val] = splitOnce(opt, '=');
        if (k === 'proxy-protocol' && val === undefined) route.proxyProtocol = true;
        else if (k === 'alpn' && val) route.alpn = val.split('+');
        else return `unknown --sni option '${opt}' in '${v}' (known: proxy-protocol, alpn=P1+P2)`;
      }
      ((passthrough(raw).routes ??= []) as unknown[]).push(route);
      return undefined;
    },
  },
  {
    flag: 'malloc-trim-threshold', arg: 'BYTES', env: 'TETHER_MALLOC_TRIM_THRESHOLD',
    help: 'Free heap memory kept instead of returned to the kernel (glibc M_TRIM_THRESHOLD); 0: the C library default. Default 134217728 (128 MiB).',
    apply: (raw, v) => setNumber((raw.limits ??= {}) as Json, 'mallocTrimThresholdBytes', v, 'a number of bytes'),
  },
  {
    flag: 'client-hello-timeout', arg: 'MS', help: 'Passthrough: deadline for a whole ClientHello. Default 5000.',
    apply: (raw, v) => setNumber(passthrough(raw), 'clientHelloTimeoutMs', v, 'milliseconds'),
  },
  {
    flag: 'workers', arg: 'N', env: 'TETHER_WORKERS',
    help: 'Worker threads carrying traffic. Default: number of cores.',
    apply: (raw, v) => setNumber(raw, 'workers', v, 'a worker count'),
  },
  {
    flag: 'admin', arg: 'HOST:PORT|off', env: 'TETHER_ADMIN',
    help: 'Admin listener: /healthz /readyz /metrics /api/v1/* and the agents\' /control. Default 127.0.0.1:9090.',
    apply(raw, v) {
      if (v === 'off') { raw.admin = null; return undefined; }
      const hp = parseHostPort(v);
      if (typeof hp === 'string') return hp;
      raw.admin = hp;
      return undefined;
    },
  },
  {
    flag: 'key-file', arg: 'PATH', env: 'TETHER_KEY_FILE',
    help: 'Route-token keys ("ID KEY" per line, first seals). Re-read on SIGHUP. Without it a random key is used.',
    apply(raw, v) { raw.keyFile = v; return undefined; },
  },
  {
    flag: 'key-grace', arg: 'SECONDS',
    help: 'How long a key removed from the key file still opens tokens, and how long after start format-v1 tokens (from before the upgrade to v2) still open. Default 86400.',
    apply: (raw, v) => setNumber(raw, 'keyGraceSec', v, 'seconds'),
  },
  {
    flag: 'token-max-age', arg: 'SECONDS',
    help: 'Route tokens older than this are ignored (and re-issued). Default 86400.',
    apply: (raw, v) => setNumber(raw, 'tokenMaxAgeSec', v, 'seconds'),
  },
  {
    flag: 'connect-timeout', arg: 'MS', help: 'Backend connect deadline. Default 3000.',
    apply: (raw, v) => setNumber((raw.timeouts ??= {}) as Json, 'connectMs', v, 'milliseconds'),
  },
  {
    flag: 'response-timeout', arg: 'MS', help: 'Deadline for the backend response head (then 504). Default 60000.',
    apply: (raw, v) => setNumber((raw.timeouts ??= {}) as Json, 'responseMs', v, 'milliseconds'),
  },
  {
    flag: 'idle-timeout', arg: 'MS', help: 'Longest silence while streaming a body. Default 60000.',
    apply: (raw, v) => setNumber((raw.timeouts ??= {}) as Json, 'idleMs', v, 'milliseconds'),
  },
  {
    flag: 'max-request-head-bytes', arg: 'BYTES', help: 'Longest request head (request line and headers) a client may send; more is 431. 1024-65536. Default 16384.',
    apply: (raw, v) => setNumber((raw.limits ??= {}) as Json, 'maxRequestHeadBytes', v, 'bytes'),
  },
  {
    flag: 'max-request-headers', arg: 'N', help: 'Most header fields in a request; more is 431. 16-1000. Default 100.',
    apply: (raw, v) => setNumber((raw.limits ??= {}) as Json, 'maxRequestHeaders', v, 'a count of header fields'),
  },
  {
    flag: 'request-head-timeout', arg: 'MS', help: 'A request head must be complete this long after it starts (slow clients get 408). Default 10000.',
    apply: (raw, v) => setNumber((raw.timeouts ??= {}) as Json, 'requestHeadMs', v, 'milliseconds'),
  },
  {
    flag: 'keepalive-timeout', arg: 'MS', help: 'An idle client keep-alive connection is closed after this long. Default 75000.',
    apply: (raw, v) => setNumber((raw.timeouts ??= {}) as Json, 'clientKeepAliveMs', v, 'milliseconds'),
  },
  {
    flag: 'pool', arg: 'NAME', repeat: true,
    help: 'Declare a pool with default settings and no backends yet (its agents announce them; needs --agent-keys).',
    apply(raw, v) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(v)) return `expected a pool name but received '${v}'`;
      pool(raw, v);
      return undefined;
    },
  },
  {
    flag: 'health-check', arg: '[POOL/]http:PATH[,OPT…]|tcp[,OPT…]|off', repeat: true,
    help: 'Active checks of every backend in POOL. OPT: expect=200-399, host=NAME, interval=MS, timeout=MS, rise=N, fall=N.',
    apply(raw, v) {
      const [poolName, spec] = poolPrefix(v);
      const check = parseHealthCheck(spec);
      if (typeof check === 'string') return check;
      pool(raw, poolName).healthCheck = check;
      return undefined;
    },
  },
  {
    flag: 'eject-5xx', arg: '[POOL/]N', repeat: true,
    help: 'Passive health: N consecutive 5xx responses eject a backend for a growing backoff (0: never). Default 5.',
    apply(raw, v) {
      const [poolName, n] = poolPrefix(v);
      return setNumber((pool(raw, poolName).passive ??= {}) as Json, 'consecutive5xx', n, 'a count of responses');
    },
  },
  {
    flag: 'eject-backoff', arg: '[POOL/]MS[,MAX_MS]', repeat: true,
    help: 'Passive health: a backend that refused a connection or was ejected sits out MS, doubling per failure in a row up to MAX_MS. Default 1000,30000.',
    apply(raw, v) {
      const [poolName, spec] = poolPrefix(v);
      const [first, max, ...rest] = spec.split(',');
      if (rest.length > 0 || !first) return `expected MS or MS,MAX_MS but received ${JSON.stringify(spec)}`;
      const passive = (pool(raw, poolName).passive ??= {}) as Json;
      return setNumber(passive, 'backoffMs', first, 'milliseconds') ?? (max === undefined ? undefined : setNumber(passive, 'maxBackoffMs', max, 'milliseconds'));
    },
  },
  {
    flag: 'admin-token-file', arg: 'PATH', env: 'TETHER_ADMIN_TOKEN_FILE',
    help: 'Bearer token (file contents) that admin API changes require. Without it they are refused.',
    apply: (raw, v) => setText(raw, 'adminTokenFile', v),
  },
  {
    flag: 'agent-keys', arg: 'PATH', env: 'TETHER_AGENT_KEYS',
    help: 'Agent keys ("POOL KEY" per line; `tether keygen --agent POOL`). Opens /control for backend agents.',
    apply: (raw, v) => setText((raw.control ??= {}) as Json, 'agentKeysFile', v),
  },
  {
    flag: 'heartbeat-timeout', arg: 'MS',
    help: 'An announced backend silent for this long is marked down (not removed). Default 15000.',
    apply: (raw, v) => setNumber((raw.control ??= {}) as Json, 'heartbeatTimeoutMs', v, 'milliseconds'),
  },
  {
    flag: 'terminal-keys', arg: 'PATH', env: 'TETHER_TERMINAL_KEYS',
    help: 'Terminal keys ("USER KEY" per line) for the authorization handshake; re-read on SIGHUP. Needs --agent-keys.',
    apply: (raw, v) => setText((raw.authz ??= {}) as Json, 'terminalKeysFile', v),
  },
  {
    flag: 'authz-pool', arg: 'POOL',
    help: 'Pool whose servers (connected over /control) receive authorization grants. Default: the default pool.',
    apply: (raw, v) => setText((raw.authz ??= {}) as Json, 'pool', v),
  },
  {
    flag: 'authz-path', arg: 'PATH', help: 'HTTP path of the handshake (POST PATH/hello, PATH/proof). Default /_tether/authz.',
    apply: (raw, v) => setText((raw.authz ??= {}) as Json, 'path', v),
  },
  {
    flag: 'authz-window', arg: 'MS', help: 'Validity of challenges, grants and codes (and the clock skew tolerated). Default 30000.',
    apply: (raw, v) => setNumber((raw.authz ??= {}) as Json, 'windowMs', v, 'milliseconds'),
  },
  {
    flag: 'authz-fail-limit', arg: 'N', help: 'Failed proofs allowed per user and per client IP per minute, all workers together (0: no limit). Default 10.',
    apply: (raw, v) => setNumber((raw.authz ??= {}) as Json, 'failLimit', v, 'a count'),
  },
  {
    flag: 'access-log', arg: 'FILE|-', env: 'TETHER_ACCESS_LOG',
    help: 'Append one JSON line per request to FILE (- : standard output). Off by default. SIGUSR1 reopens it (log rotation).',
    apply: (raw, v) => setText(raw, 'accessLog', v),
  },
  {
    flag: 'pid-file', arg: 'PATH', env: 'TETHER_PID_FILE',
    help: 'Write the process id to PATH once listening (for kill -HUP / -USR1 / -TERM); removed on exit.',
    apply: (raw, v) => setText(raw, 'pidFile', v),
  },
  {
    flag: 'trusted-proxies', arg: 'CIDR[,CIDR…]', repeat: true, env: 'TETHER_TRUSTED_PROXIES',
    help: 'Peers whose X-Forwarded-*/Forwarded headers are kept and appended to (a CDN, a TLS terminator). From anyone else they are replaced. Default: none.',
    apply(raw, v) {
      const list = (raw.trustedProxies ??= []) as string[];
      for (const part of v.split(',')) {
        if (part.trim() === '') return `expected CIDR[,CIDR…] but received '${v}'`;
        list.push(part.trim());
      }
      return undefined;
    },
  },
  {
    flag: 'drain-timeout', arg: 'MS', env: 'TETHER_DRAIN_TIMEOUT',
    help: 'On SIGTERM, how long in-flight requests and passthrough connections may take to finish. Default 10000.',
    apply: (raw, v) => setNumber(raw, 'drainTimeoutMs', v, 'milliseconds'),
  },
  {
    flag: 'no-demo', help: 'Do not start the built-in demo backends when no backend is configured.',
    apply(raw) { raw.demo = false; return undefined; },
  },
  {
    flag: 'log-level', arg: 'LEVEL', env: 'TETHER_LOG_LEVEL', help: 'fatal|error|warn|info|debug|trace|silent. Default info.',
    apply(raw, v) { raw.logLevel = v; return undefined; },
  },
  {
    flag: 'config', arg: 'FILE', env: 'TETHER_CONFIG',
    help: 'YAML or JSON file with the full configuration (flags override it).',
    apply() { return undefined; }, // read first, in loadConfig
  },
];

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}

interface ParsedArgs {
  values: Map<string, string[]>;
  help: boolean;
  version: boolean;
  errors: string[];
}

/** Splits argv into flag values; unknown flags and missing values are errors, all collected. */
function parseArgv(argv: readonly string[]): ParsedArgs {
  const out: ParsedArgs = { values: new Map(), help: false, version: false, errors: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') { out.help = true; continue; }
    if (arg === '--version' || arg === '-v') { out.version = true; continue; }
    if (!arg.startsWith('--')) { out.errors.push(`unexpected argument '${arg}' (flags start with --; see --help)`); continue; }
    const [flagName, inline] = splitOnce(arg.slice(2), '=');
    const spec = FLAGS.find((f) => f.flag === flagName);
    if (!spec) { out.errors.push(`unknown flag --${flagName} (see --help)`); continue; }
    let value: string;
    if (!spec.arg) {
      if (inline !== undefined) { out.errors.push(`--${flagName} takes no value`); continue; }
      value = '';
    } else if (inline !== undefined) {
      value = inline;
    } else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) {
      value = argv[++i]!;
    } else {
      out.errors.push(`--${flagName} needs a value: ${spec.arg}`);
      continue;
    }
    const list = out.values.get(flagName) ?? [];
    if (list.length > 0 && !spec.repeat) { out.errors.push(`--${flagName} given more than once`); continue; }
    list.push(value);
    out.values.set(flagName, list);
  }
  return out;
}

export function helpText(): string {
  const lines = [
    'Usage: tether [flags]            run the balancer',
    '       tether keygen [--id N]    print a new route-token key line for a key file',
    '       tether keygen --agent POOL  print a new agent key line (for --agent-keys and agents)',
    '       tether agent --help       announce a backend to a balancer (see its help)',
    '',
    'With no --backend, two demo backends start on loopback so that `curl -i localhost:8080` works at once.',
    '',
    'Flags:',
  ];
  for (const f of FLAGS) {
    const left = `  --${f.flag}${f.arg ? ` ${f.arg}` : ''}`;
    lines.push(`${left.padEnd(46)}${f.help}${f.repeat ? ' (repeatable)' : ''}${f.env ? ` [env ${f.env}]` : ''}`);
  }
  lines.push('  --help, --version', '');
  lines.push('Examples:');
  lines.push('  tether --listen 0.0.0.0:80 --backend app1=10.0.0.5:80 --backend app2=10.0.0.6:80 --key-file /etc/tether/keys');
  lines.push('  tether --backend api/a=10.0.1.1:8000 --sticky api/header:X-Route --route api.example.com=api');
  return lines.join('\n');
}

function readConfigFile(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new TetherError('TETHER_ERR_CONFIG_FILE', `cannot read config file ${path}: ${(cause as Error).message}`, { cause });
  }
  try {
    const parsed: unknown = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
    if (parsed === null || parsed === undefined) return {};
    if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('expected a mapping at the top level');
    return parsed as Json;
  } catch (cause) {
    throw new TetherError('TETHER_ERR_CONFIG_FILE', `cannot parse config file ${path}: ${(cause as Error).message}`, { cause });
  }
}

export interface LoadResult {
  config: Readonly<Config>;
  help: boolean;
  version: boolean;
}

/**
 * The whole configuration from argv + env (+ the file they name). Throws one TetherError
 * (TETHER_ERR_CONFIG) whose message lists every problem, one per line.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): LoadResult {
  const args = parseArgv(argv);
  const errors = [...args.errors];
  const configPath = args.values.get('config')?.[0] ?? env.TETHER_CONFIG;
  const raw: Json = configPath ? readConfigFile(configPath) : {};

  // Flags replace what the file says for repeatable lists, rather than appending to it.
  const fromFlags: Json = {};
  const sources: [FlagSpec, string, string][] = [];
  for (const spec of FLAGS) {
    const fromArgv = args.values.get(spec.flag);
    if (fromArgv) for (const v of fromArgv) sources.push([spec, v, `--${spec.flag}`]);
    else if (spec.env && env[spec.env] !== undefined && spec.flag !== 'config') sources.push([spec, env[spec.env]!, spec.env]);
  }
  for (const [spec, value, origin] of sources) {
    const err = spec.apply(fromFlags, value);
    if (err) errors.push(`${origin}: ${err}`);
  }
  mergeInto(raw, fromFlags);

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const at = issue.path.length ? issue.path.join('.') : '(top level)';
      errors.push(`${at}: ${issue.message}`);
    }
  }
  // On the raw input, so these are reported together with any schema errors.
  errors.push(...crossCheck(raw));
  if (errors.length > 0 && !args.help && !args.version) {
    throw new TetherError('TETHER_ERR_CONFIG', `invalid configuration:\n  ${errors.join('\n  ')}`);
  }
  const config = parsed.success ? parsed.data : configSchema.parse({});
  return { config: deepFreeze(config), help: args.help, version: args.version };
}

/** Flag values override file values; pools merge by name, and within a pool by key. */
function mergeInto(base: Json, over: Json): void {
  for (const [k, v] of Object.entries(over)) {
    const cur = base[k];
    if (k !== 'listen' && k !== 'routes' && k !== 'backends' && isPlainObject(v) && isPlainObject(cur)) mergeInto(cur, v);
    else base[k] = v;
  }
}

function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Rules a schema cannot express: references between sections, uniqueness. Reads the raw
 * input defensively (shapes the schema rejects are simply skipped here).
 */
function crossCheck(raw: Json): string[] {
  const errors: string[] = [];
  const pools = isPlainObject(raw.pools) ? raw.pools : {};
  const poolNames = Object.keys(pools);
  const demo = raw.demo !== false;
  const authz = isPlainObject(raw.authz) ? raw.authz : {};
  if (typeof authz.terminalKeysFile === 'string' && !(isPlainObject(raw.control) && typeof raw.control.agentKeysFile === 'string')) {
    errors.push('authz: grants are pushed to servers over the control channel: give --agent-keys too');
  }
  if (typeof authz.pool === 'string' && !(authz.pool in pools)) errors.push(`authz.pool: no pool '${authz.pool}'`);
  const listeners = Array.isArray(raw.listen) ? raw.listen.filter(isPlainObject) : [];
  const https = listeners.some((l) => l.protocol === 'https');
  const certs = isPlainObject(raw.tls) && Array.isArray(raw.tls.certs) ? raw.tls.certs : [];
  if (https && certs.length === 0) errors.push('listen: an https:// listener needs a certificate: give --cert PATH (a PEM file with the chain and its key, or a directory of them)');
  if (!https && certs.length > 0) errors.push('tls.certs: certificates given but no https:// listener (--listen https://HOST:PORT)');
  if (!https && listeners.some((l) => l.redirect === 'https')) errors.push('listen: redirect=https needs an https:// listener to redirect to');
  // With agents, a pool may start empty and fill as its backends announce themselves.
  const agents = isPlainObject(raw.control) && typeof raw.control.agentKeysFile === 'string';
  for (const [poolName, p] of Object.entries(pools)) {
    const backends = isPlainObject(p) && Array.isArray(p.backends) ? (p.backends as unknown[]) : [];
    const seen = new Set<unknown>();
    for (const b of backends) {
      const id = isPlainObject(b) ? b.id : undefined;
      if (typeof id !== 'string') continue;
      if (seen.has(id)) errors.push(`pools.${poolName}.backends: backend id '${id}' appears twice (ids must be unique in a pool)`);
      seen.add(id);
    }
    if (backends.length === 0 && !agents && !(demo && poolNames.length === 1)) errors.push(`pools.${poolName}: has no backends (give --backend, or --agent-keys so agents can announce them)`);
  }
  if (Array.isArray(raw.routes)) {
    raw.routes.forEach((r: unknown, i) => {
      const pool = isPlainObject(r) ? r.pool : undefined;
      if (typeof pool === 'string' && !(pool in pools)) errors.push(`routes.${i}.pool: no pool named '${pool}' (pools: ${poolNames.join(', ') || 'none'})`);
    });
  }
  const pt = isPlainObject(raw.passthrough) ? raw.passthrough : {};
  const ptListen = Array.isArray(pt.listen) ? pt.listen : [];
  const ptRoutes = Array.isArray(pt.routes) ? pt.routes : [];
  if (ptListen.length > 0 && ptRoutes.length === 0) {
    errors.push("passthrough.routes: a passthrough listener needs at least one SNI route (--sni NAME=POOL, or --sni '*=POOL' for every name)");
  }
  if (ptRoutes.length > 0 && ptListen.length === 0) errors.push('passthrough.listen: SNI routes given but no passthrough listener (--passthrough HOST:PORT)');
  if (Array.isArray(raw.listen) && raw.listen.length === 0 && ptListen.length === 0) {
    errors.push('listen: nothing to listen on: --listen off needs a passthrough listener (--passthrough HOST:PORT), or give --listen HOST:PORT');
  }
  const seenSni = new Set<string>();
  ptRoutes.forEach((r: unknown, i) => {
    if (!isPlainObject(r)) return;
    if (typeof r.pool === 'string' && !(r.pool in pools)) {
      errors.push(`passthrough.routes.${i}.pool: no pool named '${r.pool}' (pools: ${poolNames.join(', ') || 'none'})`);
    }
    const key = `${String(r.sni)} ${Array.isArray(r.alpn) ? [...r.alpn].sort().join('+') : '*'}`;
    if (seenSni.has(key)) errors.push(`passthrough.routes.${i}: '${String(r.sni)}' is routed twice for the same ALPN condition (the second would never match)`);
    seenSni.add(key);
  });
  return errors;
}

function deepFreeze<T>(o: T): Readonly<T> {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
