// Tether's configuration schema: the one place defaults live. Every source (flags, file, env)
// is merged into this shape, validated once (unknown keys rejected, every error reported with
// its path), then frozen into a snapshot that the workers receive.
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { parseBindPolicy } from '../sticky/binding.js';
import { parseCidr } from '../data-plane/forwarding.js';
import { DEFAULT_TABLE_ENTRIES, MAX_TABLE_ENTRIES, MIN_TABLE_ENTRIES } from '../shared-memory/table.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// RFC 9110 token characters: cookie and header names.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export const name = (what: string) =>
  z.string().regex(NAME, `expected a ${what} of 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)`);

const port = z.number().int().min(0).max(65535);
const hostPort = z.object({ host: z.string().min(1), port }).strict();

/**
 * A client-facing HTTP listener: plain HTTP, or HTTPS terminated here (`tls.certs`). A plain one
 * may answer every request with a 308 to HTTPS instead of serving it.
 */
const listenerSchema = z
  .object({
    host: z.string().min(1),
    port,
    protocol: z.enum(['http', 'https']).default('http'),
    /** 'https': answer 308 to the same host and path on HTTPS (plain listeners only). */
    redirect: z.enum(['https']).nullable().default(null),
  })
  .strict()
  .refine((l) => !(l.protocol === 'https' && l.redirect !== null), { message: 'redirect=https is for a plain http:// listener; this one is already HTTPS' });

/** A backend spoken to over TLS (`--backend ID=https://HOST:PORT`): re-encrypted, verified unless told not to. */
const backendTlsSchema = z
  .object({
    /** Verify the backend's certificate against the system CAs (or tls.backendCa) and `servername`. */
    verify: z.boolean().default(true),
    /** SNI and the name verified; null: the backend's address. */
    servername: z.string().min(1).max(253).nullable().default(null),
  })
  .strict();

export type BackendTlsConfig = z.infer<typeof backendTlsSchema>;

const backendSchema = z
  .object({
    id: name('backend id'),
    address: z.string().min(1),
    port: port.min(1),
    weight: z.number().int().min(0).max(1000).default(1),
    /** null: plain HTTP. */
    tls: backendTlsSchema.nullable().default(null),
  })
  .strict();

const stickySchema = z.discriminatedUnion('mode', [
  z
    .object({
      mode: z.literal('cookie'),
      name: z.string().regex(TOKEN, 'expected a cookie name (RFC 6265 token)').default('TETHER'),
      httpOnly: z.boolean().default(true),
      secure: z.boolean().default(false),
      sameSite: z.enum(['Strict', 'Lax', 'None']).default('Lax'),
      path: z.string().default('/'),
      maxAgeSec: z.number().int().min(1).optional(),
    })
    .strict(),
  z.object({ mode: z.literal('prefix'), cookie: z.string().regex(TOKEN, 'expected the application cookie name') }).strict(),
  z.object({ mode: z.literal('header'), name: z.string().regex(TOKEN, 'expected a header name').default('X-Tether-Route') }).strict(),
  z
    .object({
      mode: z.literal('learn'),
      /** The application's session cookie: the backend that sets it owns the session. */
      cookie: z.string().regex(TOKEN, 'expected the application cookie name'),
      /** How long a session cookie without Max-Age/Expires is remembered after its last use. */
      ttlSec: z.number().int().min(1).max(31_536_000).default(3_600),
    })
    .strict(),
  z.object({ mode: z.literal('none') }).strict(),
]);

/** Session ↔ terminal binding policy (src/sticky/binding.ts): none, ip, subnet[:V4[,V6]], header:NAME. */
const bindPolicy = z.string().superRefine((v, ctx) => {
  const p = parseBindPolicy(v);
  if (typeof p === 'string') ctx.addIssue({ code: 'custom', message: p });
});

const balanceSchema = z
  .object({
    algorithm: z.enum(['round-robin', 'weighted', 'least-connections', 'consistent-hash']).default('round-robin'),
    /** consistent-hash key: the client's IP, a request header, or a cookie. */
    hashOn: z
      .string()
      .regex(/^(client-ip|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/, "expected 'client-ip', 'header:NAME' or 'cookie:NAME'")
      .default('client-ip'),
  })
  .strict();

const positiveMs = z.number().int().min(1).max(86_400_000);
const checkCommon = {
  /** Time between two checks of one backend. */
  intervalMs: positiveMs.default(2_000),
  /** Deadline of one check, connect and answer included. */
  timeoutMs: positiveMs.default(1_000),
  /** Consecutive passes that bring a down backend back. */
  rise: z.number().int().min(1).max(100).default(2),
  /** Consecutive failures that take an up backend down. */
  fall: z.number().int().min(1).max(100).default(3),
};

/** Active health check of every backend of a pool, run by the orchestrator. */
const healthCheckSchema = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('http'),
      path: z.string().regex(/^\/[\x21-\x7e]*$/, "expected a path starting with '/' without spaces or control characters").default('/'),
      /** Statuses that pass, as 'NNN' or 'NNN-NNN'. */
      expect: z
        .string()
        .regex(/^[1-5][0-9]{2}(-[1-5][0-9]{2})?$/, "expected a status ('200') or a range ('200-399')")
        .refine((v) => v.length === 3 || Number(v.slice(0, 3)) <= Number(v.slice(4)), 'expected a range whose start is not above its end')
        .default('200-399'),
      /** Host header sent; omitted: the backend's address:port. */
      host: z.string().regex(/^[\x21-\x7e]+$/, 'expected a host name without spaces').optional(),
      ...checkCommon,
    })
    .strict(),
  z.object({ type: z.literal('tcp'), ...checkCommon }).strict(),
]);

const passiveHealthSchema = z
  .object({
    /** Consecutive 5xx responses that eject a backend for an exponential backoff (0: never). */
    consecutive5xx: z.number().int().min(0).max(10_000).default(5),
    /** The backoff after a connect failure or an ejection: this long first, doubling per failure in a row… */
    backoffMs: z.number().int().min(10).max(600_000).default(1_000),
    /** …up to this. */
    maxBackoffMs: z.number().int().min(10).max(3_600_000).default(30_000),
  })
  .strict()
  .refine((p) => p.maxBackoffMs >= p.backoffMs, { message: 'expected maxBackoffMs ≥ backoffMs', path: ['maxBackoffMs'] });

export const poolSchema = z
  .object({
    backends: z.array(backendSchema).default([]),
    healthCheck: healthCheckSchema.nullable().default(null),
    passive: passiveHealthSchema.default({ consecutive5xx: 5, backoffMs: 1_000, maxBackoffMs: 30_000 }),
    sticky: stickySchema.default({ mode: 'cookie', name: 'TETHER', httpOnly: true, secure: false, sameSite: 'Lax', path: '/' }),
    balance: balanceSchema.default({ algorithm: 'round-robin', hashOn: 'client-ip' }),
    bind: bindPolicy.default('none'),
    /** On HTTPS listeners: Strict-Transport-Security max-age in seconds; null sends none. */
    hstsSec: z.number().int().min(0).max(63_072_000).nullable().default(null),
  })
  .strict();

const routeSchema = z
  .object({
    /** Host header to match, exact and case-insensitive; omitted = any host. */
    host: z.string().min(1).optional(),
    /** Path prefix to match; omitted = '/'. */
    pathPrefix: z.string().startsWith('/').default('/'),
    pool: name('pool name'),
  })
  .strict();

/** `a.example.com` (exact), `*.example.com` (any name ending in `.example.com`) or `*` (default). */
const SNI_PATTERN = /^(\*|(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*)$/;

export const MAX_PASSTHROUGH_ROUTES = 256;

const sniRouteSchema = z
  .object({
    sni: z
      .string()
      .max(253)
      .regex(SNI_PATTERN, "expected a lower-case host name ('a.example.com'), a wildcard ('*.example.com') or '*' (default)"),
    /** Only for clients offering one of these ALPN protocols; omitted = any (or none). */
    alpn: z.array(z.string().min(1).max(255)).min(1).optional(),
    pool: name('pool name'),
    /** Send a PROXY protocol v2 header first, so the backend learns the client address. */
    proxyProtocol: z.boolean().default(false),
  })
  .strict();

const passthroughSchema = z
  .object({
    listen: z.array(hostPort).default([]),
    routes: z.array(sniRouteSchema).max(MAX_PASSTHROUGH_ROUTES).default([]),
    /** A client must send its whole ClientHello within this. */
    clientHelloTimeoutMs: z.number().int().min(1).default(5_000),
    /** Larger ClientHellos are refused (post-quantum ones are ~2 KiB). */
    maxClientHelloBytes: z.number().int().min(512).max(65_536).default(16_384),
    /** A relayed connection silent both ways for this long is closed. */
    idleTimeoutMs: z.number().int().min(1).default(300_000),
  })
  .strict();

export const configSchema = z
  .object({
    /** HTTP and HTTPS listeners; empty only for a TLS-passthrough-only balancer (load.ts checks). */
    listen: z.array(listenerSchema).max(32).default([{ host: '127.0.0.1', port: 8080, protocol: 'http', redirect: null }]),
    /** HTTPS termination: the certificates (PEM files or directories of them) and the handshake's terms. */
    tls: z
      .object({
        certs: z.array(z.string().min(1)).default([]),
        /** Refuse a handshake whose SNI names no certificate (and one without SNI), instead of serving the first. */
        strictSni: z.boolean().default(false),
        /** A client must finish its TLS handshake this long after connecting. */
        handshakeTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
        /** TLS 1.2 cipher list (OpenSSL syntax); null: the modern default (README "HTTPS"). TLS 1.3 suites are OpenSSL's. */
        ciphers: z.string().min(1).nullable().default(null),
        /** CA certificates (PEM) that https:// backends are verified against instead of the system's. */
        backendCa: z.string().min(1).nullable().default(null),
      })
      .strict()
      .default({ certs: [], strictSni: false, handshakeTimeoutMs: 10_000, ciphers: null, backendCa: null }),
    /** Admin listener (/healthz, /readyz, /metrics); null disables it. */
    admin: hostPort.nullable().default({ host: '127.0.0.1', port: 9090 }),
    workers: z.number().int().min(1).max(256).default(availableParallelism()),
    keyFile: z.string().min(1).nullable().default(null),
    /** After a key leaves the key file it keeps opening tokens for this long. */
    keyGraceSec: z.number().int().min(0).default(86_400),
    /** Route tokens older than this are treated as no token. */
    tokenMaxAgeSec: z.number().int().min(1).default(86_400),
    /** Entries of the shared session table (learn mode, bindings, revocations). */
    tableSize: z.number().int().min(MIN_TABLE_ENTRIES).max(MAX_TABLE_ENTRIES).default(DEFAULT_TABLE_ENTRIES),
    pools: z.record(name('pool name'), poolSchema).default({}),
    routes: z.array(routeSchema).default([]),
    /** TLS passthrough: routed by SNI, never decrypted. */
    passthrough: passthroughSchema.default({ listen: [], routes: [], clientHelloTimeoutMs: 5_000, maxClientHelloBytes: 16_384, idleTimeoutMs: 300_000 }),
    timeouts: z
      .object({
        connectMs: z.number().int().min(1).default(3_000),
        /** From request fully sent to response head received. */
        responseMs: z.number().int().min(1).default(60_000),
        /** Longest silence on an upstream body, either direction. */
        idleMs: z.number().int().min(1).default(60_000),
        /** How long an idle pooled upstream connection is kept. */
        keepAliveMs: z.number().int().min(1).default(30_000),
        /** A client's request head must be complete this long after its first byte (slow heads: 408). */
        requestHeadMs: z.number().int().min(100).max(600_000).default(10_000),
        /** An idle client keep-alive connection is closed after this long. */
        clientKeepAliveMs: z.number().int().min(100).max(3_600_000).default(75_000),
      })
      .strict()
      .default({ connectMs: 3_000, responseMs: 60_000, idleMs: 60_000, keepAliveMs: 30_000, requestHeadMs: 10_000, clientKeepAliveMs: 75_000 }),
    limits: z
      .object({
        maxIdlePerBackend: z.number().int().min(0).default(256),
        maxResponseHeaderBytes: z.number().int().min(1024).default(65_536),
        /** A client's request head (request line, fields, final CRLF) over this is answered 431. */
        maxRequestHeadBytes: z.number().int().min(1024).max(65_536).default(16_384),
        /** More request header fields than this is answered 431. */
        maxRequestHeaders: z.number().int().min(16).max(1_000).default(100),
        /**
         * glibc's M_TRIM_THRESHOLD, set once at start: free memory a heap keeps instead of giving
         * it back to the kernel (native/include/tether/malloc_tuning.h says why a relay needs it).
         * 0: leave the C library's default.
         */
        mallocTrimThresholdBytes: z.number().int().min(0).max(1024 * 1024 * 1024).default(128 * 1024 * 1024),
      })
      .strict()
      .default({ maxIdlePerBackend: 256, maxResponseHeaderBytes: 65_536, maxRequestHeadBytes: 16_384, maxRequestHeaders: 100, mallocTrimThresholdBytes: 128 * 1024 * 1024 }),
    /** Admin API mutations (add, drain, remove backends; revoke sessions) need this bearer token; null: refused. */
    adminTokenFile: z.string().min(1).nullable().default(null),
    /** The agents' control channel (/control on the admin listener). */
    control: z
      .object({
        /** `<pool> <64 hex>` lines (src/control/frames.ts); null: /control is closed. */
        agentKeysFile: z.string().min(1).nullable().default(null),
        /** Frames stamped further than this from the balancer's clock are refused. */
        windowMs: z.number().int().min(1_000).max(600_000).default(30_000),
        /** An announced backend that sends no frame for this long is marked down (not removed). */
        heartbeatTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(15_000),
      })
      .strict()
      .default({ agentKeysFile: null, windowMs: 30_000, heartbeatTimeoutMs: 15_000 }),
    /** Pre-shared-key authorization of terminals (src/authz/): off without terminal keys. */
    authz: z
      .object({
        /** `<user> <64 hex>` lines; re-read on SIGHUP. */
        terminalKeysFile: z.string().min(1).nullable().default(null),
        /** HTTP path prefix of the handshake on the HTTP listeners: POST <path>/hello, <path>/proof. */
        path: z
          .string()
          .regex(/^\/[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*$/, "expected a path like '/_tether/authz' (letters, digits, '.', '_', '~', '-')")
          .default('/_tether/authz'),
        /** Pool whose connected servers receive grants; null: the default pool. */
        pool: name('pool name').nullable().default(null),
        /** Challenges, grants and codes are valid this long (and tolerate this much clock skew). */
        windowMs: z.number().int().min(1_000).max(600_000).default(30_000),
        /** Failed proofs allowed per user and per client IP per minute, across all workers (0: unlimited). */
        failLimit: z.number().int().min(0).max(1_000_000).default(10),
      })
      .strict()
      .default({ terminalKeysFile: null, path: '/_tether/authz', pool: null, windowMs: 30_000, failLimit: 10 }),
    /**
     * Peers (addresses or CIDRs) whose X-Forwarded-For/-Proto/-Host and Forwarded headers are
     * believed and appended to; from anyone else they are replaced (src/data-plane/forwarding.ts).
     */
    trustedProxies: z
      .array(
        z.string().superRefine((v, ctx) => {
          const c = parseCidr(v);
          if (typeof c === 'string') ctx.addIssue({ code: 'custom', message: c });
        }),
      )
      .max(1024)
      .default([]),
    /** SIGTERM: in-flight requests and passthrough connections get this long to finish. */
    drainTimeoutMs: z.number().int().min(0).max(3_600_000).default(10_000),
    /** Access log: a file to append JSON lines to, '-' for standard output, null for none. */
    accessLog: z.string().min(1).nullable().default(null),
    /** A file to write the process id to once listening (for signals: kill -HUP, -USR1), removed on exit. */
    pidFile: z.string().min(1).nullable().default(null),
    /** Start two built-in demo backends when no backend is configured. */
    demo: z.boolean().default(true),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type PoolConfig = z.infer<typeof poolSchema>;
export type HealthCheckConfig = z.infer<typeof healthCheckSchema>;
export type BackendConfig = z.infer<typeof backendSchema>;
export type StickyConfig = z.infer<typeof stickySchema>;
export type RouteConfig = z.infer<typeof routeSchema>;
export type PassthroughConfig = z.infer<typeof passthroughSchema>;
export type SniRouteConfig = z.infer<typeof sniRouteSchema>;
