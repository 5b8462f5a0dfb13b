// nginx (open source) peer, in its own prefix directory, in the foreground.
//
// OSS nginx has no `sticky` directive (that is nginx Plus), so stickiness is built from maps:
//
//   request ── $cookie_SRV ──map──▶ $sticky_upstream ∈ { app1, app2, rr }
//                                     app1/app2: a one-server upstream (pinned)
//                                     rr: both servers, round robin (no or unknown cookie)
//   proxy_pass http://$sticky_upstream       (a variable naming an upstream block: no resolver)
//
//   response ── $upstream_addr ──map──▶ $chosen_backend (127.0.0.1:B1 → app1, …)
//            ── $sticky_upstream ──map──▶ $route_cookie = "SRV=$chosen_backend; Path=/" when
//                                          the request went round robin, "" otherwise
//   add_header Set-Cookie $route_cookie      (an empty value adds no header)
//
// Maps are evaluated lazily, at first use; $route_cookie is first used by add_header, after
// the upstream answered, so $upstream_addr is known. This mirrors HAProxy's
// `insert indirect`: a cookie only when the client had no valid one.
// Every upstream keeps idle keep-alive connections; keepalive_requests is raised on both
// sides so nginx does not close connections every 1000 requests (its default) where HAProxy
// would not.
// Bodies stream both ways, in every scenario: no body size limit (client_max_body_size 0),
// no request or response buffering. That is what HAProxy, node-http-proxy and Tether do
// anyway, so every peer does the same job; nginx's defaults would refuse a 100 MiB upload
// (413 above 1 MiB) and spool large bodies to disk. For the small bodies of the other
// scenarios buffering changes nothing measurable (one read, one write either way).
// worker_connections follows the harness's `connections` hint (load + idle connections),
// counting each client twice (its upstream connection), capped by the fd hard limit, and
// worker_rlimit_nofile gives the workers the fds for it.
//
// HTTPS (startHttps): the same server with `listen … ssl`, the run's certificate and key, the
// handshake terms every HTTPS peer gets (./tls-terms.js), and the route cookie `Secure` (as
// Tether's is on HTTPS); X-Forwarded-Proto is $scheme, so https.
//
// Passthrough (startPassthrough): the stream module with ssl_preread — `map
// $ssl_preread_server_name` picks a one-server upstream per name; a name no route serves maps
// to an upstream nothing listens on, so it is closed. Debian ships the stream module as a
// dynamic module in its own package (libnginx-mod-stream), which our config loads with
// `load_module` (we do not read /etc/nginx/modules-enabled); available({ passthrough: true })
// checks it is there.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { execFileSync, spawnSync } from 'node:child_process';
import { startProcess } from '../processes.js';
import { answersOn, findExecutable, firstLineOf, passthroughAnswers } from './common.js';
import { TLS_CIPHERS, TLS_CURVES } from './tls-terms.js';

export const name = 'nginx';
export const cookieName = 'SRV';
export const describe =
  'nginx OSS: worker_processes W, cookie stickiness via map $cookie_SRV → per-server upstream, upstream keepalive 64';

/** What installs nginx with the stream module (passthrough), on Debian. */
export const PASSTHROUGH_INSTALL = 'apt-get update && apt-get install -y nginx libnginx-mod-stream';

export function available({ passthrough = false, https = false } = {}) {
  const binary = findExecutable('nginx');
  if (!binary) {
    return { ok: false, reason: 'nginx not found', install: passthrough ? PASSTHROUGH_INSTALL : 'apt-get update && apt-get install -y nginx' };
  }
  const version = firstLineOf(binary, ['-v']);
  if (https && !/--with-http_ssl_module\b/.test(configureArguments(binary))) {
    return { ok: false, reason: 'nginx built without ngx_http_ssl_module (needed for HTTPS)', install: 'apt-get update && apt-get install -y nginx' };
  }
  if (!passthrough) return { ok: true, version };
  const stream = streamModule(configureArguments(binary));
  if (!stream.ok) return { ok: false, reason: stream.reason, install: PASSTHROUGH_INSTALL };
  return { ok: true, version: `${version} (stream ${stream.loadModule ? `module ${stream.loadModule}` : 'built in'})` };
}

/** `nginx -V`'s output (it prints to stderr); '' if it cannot run. */
function configureArguments(binary) {
  const r = spawnSync(binary, ['-V'], { encoding: 'utf8', timeout: 5000 });
  return `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
}

/**
 * Whether this nginx can do SNI passthrough, from its `nginx -V` text `args`: { ok: true, loadModule }
 * (the ngx_stream_module.so to load, or null when the stream module is built in), or
 * { ok: false, reason }. `exists` is for tests.
 */
export function streamModule(args, { exists = existsSync } = {}) {
  if (!/--with-stream_ssl_preread_module\b/.test(args)) {
    return { ok: false, reason: 'nginx built without ngx_stream_ssl_preread_module (needed for SNI passthrough)' };
  }
  if (/--with-stream=dynamic\b/.test(args)) {
    const modulesPath = /--modules-path=(\S+)/.exec(args)?.[1] ?? join(/--prefix=(\S+)/.exec(args)?.[1] ?? '/usr/share/nginx', 'modules');
    const path = join(modulesPath, 'ngx_stream_module.so');
    if (!exists(path)) return { ok: false, reason: `nginx stream module missing (${path}; Debian package libnginx-mod-stream)` };
    return { ok: true, loadModule: path };
  }
  if (/--with-stream(?=\s|$)/.test(args)) return { ok: true, loadModule: null };
  return { ok: false, reason: 'nginx built without the stream module (needed for SNI passthrough)' };
}

/** `user …;` so workers run as the current user even when the bench runs as root. */
export function userDirective() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return ''; // ignored unless root
  const user = os.userInfo().username;
  let group = user;
  try {
    group = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim() || user;
  } catch {
    // use the user name
  }
  return `user ${user} ${group};\n`;
}

/** This process's hard RLIMIT_NOFILE (children cannot go above it without privilege); Infinity if unknown. */
function openFilesHardLimit() {
  try {
    const match = /^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return match ? Number(match[1]) : Infinity;
  } catch {
    return Infinity;
  }
}

/** The upstream block every variant uses: keep-alive to the servers. */
export function upstream(upstreamName, servers, balance = '') {
  return `    upstream ${upstreamName} {
${balance ? `        ${balance};\n` : ''}${servers.map((b) => `        server 127.0.0.1:${b.port};`).join('\n')}
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }`;
}

/**
 * Cookie stickiness (see the header): the http-level upstreams and maps, and what the
 * location adds after the shared proxy settings; the cookie `Secure` on HTTPS. nginx-hash.js
 * passes its own.
 */
function cookieStickiness(backends, { https = null } = {}) {
  return {
    http: `${backends.map((b) => upstream(b.name, [b])).join('\n')}
${upstream('rr', backends)}

    map $cookie_${cookieName} $sticky_upstream {
${backends.map((b) => `        ${b.name} ${b.name};`).join('\n')}
        default rr;
    }
    map $upstream_addr $chosen_backend {
${backends.map((b) => `        127.0.0.1:${b.port} ${b.name};`).join('\n')}
        default "";
    }
    map $sticky_upstream $route_cookie {
        rr "${cookieName}=$chosen_backend; Path=/${https ? '; Secure' : ''}";
        default "";
    }
    # Like HAProxy's \`nocache\`: a response that sets the route cookie must not be cached.
    map $route_cookie $route_cookie_cache_control {
        "" "";
        default "private";
    }`,
    target: 'http://$sticky_upstream',
    location: `
            add_header Set-Cookie $route_cookie;
            add_header Cache-Control $route_cookie_cache_control;`,
  };
}

/** `https` (startHttps): the server terminates TLS with https.certFile / keyFile; plain HTTP otherwise. */
export function config({ backends, workers, port, prefix, connections = 0, https = null }, stickiness = cookieStickiness) {
  const fdLimit = openFilesHardLimit();
  const workerConnections = Math.min(Math.max(4096, 2 * connections + 256), fdLimit - 64);
  const rlimitNofile = Math.min(workerConnections + 64, fdLimit);
  const routing = stickiness(backends, { https });
  const tls = https
    ? `
        ssl_certificate ${https.certFile};
        ssl_certificate_key ${https.keyFile};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ${TLS_CIPHERS};
        ssl_prefer_server_ciphers on;
        ssl_ecdh_curve ${TLS_CURVES};`
    : '';
  return `# generated by bench/load/peers/nginx.js
${userDirective()}worker_processes ${workers};
worker_rlimit_nofile ${rlimitNofile};
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'error.log')} warn;

events {
    worker_connections ${workerConnections};
}

http {
    access_log off;
    client_body_temp_path ${join(prefix, 'tmp', 'client_body')};
    proxy_temp_path ${join(prefix, 'tmp', 'proxy')};
    fastcgi_temp_path ${join(prefix, 'tmp', 'fastcgi')};
    uwsgi_temp_path ${join(prefix, 'tmp', 'uwsgi')};
    scgi_temp_path ${join(prefix, 'tmp', 'scgi')};
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    # Stream bodies of any size both ways (see the header).
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;

${routing.http}

    server {
        listen 127.0.0.1:${port}${https ? ' ssl' : ''};${tls}
        location / {
            proxy_pass ${routing.target};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The same job Tether does on every request.
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;${routing.location}
        }
    }
}
`;
}

/** Starts nginx on `makeConfig({ backends, workers, port, prefix, connections })`; variants (nginx-hash.js) pass their own. */
export function start({ backends, workers, port, dir, connections }, makeConfig = config) {
  const prefix = join(dir, 'nginx');
  mkdirSync(join(prefix, 'tmp'), { recursive: true });
  const path = join(prefix, 'nginx.conf');
  const text = makeConfig({ backends, workers, port, prefix, connections });
  writeFileSync(path, text);
  const binary = findExecutable('nginx');
  const handle = startProcess('nginx', binary, ['-p', prefix, '-c', path, '-g', 'daemon off;']);
  const url = `http://127.0.0.1:${port}/`;
  return { handle, url, waitReady: answersOn(url, handle), setup: { command: `nginx -p ${prefix} -c ${path} -g 'daemon off;'`, config: text } };
}

/** HTTPS: config() with the run's certificate on the server (see ./common.js). */
export function startHttps({ backends, workers, port, dir, connections, https }) {
  if (!https) throw new Error('nginx.startHttps: expected options.https ({ certFile, keyFile, ca, serverName })');
  const prefix = join(dir, 'nginx-https');
  mkdirSync(join(prefix, 'tmp'), { recursive: true });
  const path = join(prefix, 'nginx.conf');
  const text = config({ backends, workers, port, prefix, connections, https });
  writeFileSync(path, text);
  const handle = startProcess('nginx', findExecutable('nginx'), ['-p', prefix, '-c', path, '-g', 'daemon off;']);
  const url = `https://127.0.0.1:${port}/`;
  return { handle, url, waitReady: answersOn(url, handle, https), setup: { command: `nginx -p ${prefix} -c ${path} -g 'daemon off;'`, config: text } };
}

/** The passthrough configuration: stream + ssl_preread, routed by SNI (see the header). */
export function passthroughConfig({ tlsBackends, routes, workers, port, prefix, connections = 0, loadModule }) {
  const fdLimit = openFilesHardLimit();
  // Every client connection has its upstream connection: two per client.
  const workerConnections = Math.min(Math.max(4096, 2 * connections + 256), fdLimit - 64);
  const rlimitNofile = Math.min(workerConnections + 64, fdLimit);
  const portOf = (name) => {
    const backend = tlsBackends.find((b) => b.name === name);
    if (!backend) throw new Error(`route to ${JSON.stringify(name)}: no TLS backend of that name`);
    return backend.port;
  };
  const upstreams = [...new Set(routes.map((r) => r.backend))];
  return `# generated by bench/load/peers/nginx.js (passthrough)
${loadModule ? `load_module ${loadModule};\n` : ''}${userDirective()}worker_processes ${workers};
worker_rlimit_nofile ${rlimitNofile};
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'error.log')} warn;

events {
    worker_connections ${workerConnections};
}

stream {
    map $ssl_preread_server_name $sni_upstream {
${routes.map((r) => `        ${r.serverName} ${r.backend};`).join('\n')}
        default sni_reject;
    }
${upstreams.map((name) => `    upstream ${name} {\n        server 127.0.0.1:${portOf(name)};\n    }`).join('\n')}
    # A name no route serves: an address nothing listens on, so the connection is closed.
    upstream sni_reject {
        server 127.0.0.1:1;
    }

    server {
        listen 127.0.0.1:${port};
        ssl_preread on;
        preread_timeout 5s;
        proxy_pass $sni_upstream;
        proxy_connect_timeout 5s;
    }
}
`;
}

export function startPassthrough({ tlsBackends, routes, ca, workers, port, dir, connections }) {
  const binary = findExecutable('nginx');
  const stream = streamModule(configureArguments(binary));
  if (!stream.ok) throw new Error(`nginx cannot do passthrough here: ${stream.reason}; install: ${PASSTHROUGH_INSTALL}`);
  const prefix = join(dir, 'nginx-passthrough');
  mkdirSync(prefix, { recursive: true });
  const path = join(prefix, 'nginx.conf');
  const text = passthroughConfig({ tlsBackends, routes, workers, port, prefix, connections, loadModule: stream.loadModule });
  writeFileSync(path, text);
  const handle = startProcess('nginx', binary, ['-p', prefix, '-c', path, '-g', 'daemon off;']);
  return {
    handle,
    host: '127.0.0.1',
    port,
    waitReady: passthroughAnswers({ host: '127.0.0.1', port, ca, routes }, handle),
    setup: { command: `nginx -p ${prefix} -c ${path} -g 'daemon off;'`, config: text },
  };
}
