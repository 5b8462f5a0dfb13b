// Helpers shared by the peer modules.
//
// A peer module exports:
//   name         e.g. 'haproxy'
//   cookieName   the sticky cookie it sets ('SRV', 'TETHER')
//   describe     one line: how it is configured for the bench (goes into results.json)
//   available()  → { ok: true, version } | { ok: false, reason, install }
//   start({ backends: [{ name, port }], workers, connections, port, dir, repoRoot })
//                → { handle, url, waitReady(deadlineMs), setup: { command, config? } }
//                (a peer whose `scenarios` are HTTPS ones only, tls-floor, has startHttps instead)
//   scenarios?   [names]: run only in those scenarios (variants made for one scenario)
//   optIn?       true: left out of the default --peers list, runs only when named
//   startPassthrough?({ tlsBackends: [{ name, port }], routes: [{ serverName, backend }], ca,
//                workers, connections, port, dir, repoRoot })
//                → { handle, host, port, waitReady(deadlineMs), setup: { command, config? } }
//                TLS passthrough by SNI: one route per name to the one-backend pool `backend`,
//                nothing for other names; never terminates TLS. Only peers exporting it run in
//                passthrough scenarios (backendKind 'tls'), and then
//                available({ repoRoot, passthrough: true }) says whether it can here.
//   startHttps?(start()'s options plus `https`: { pemFile, certFile, keyFile, ca, serverName })
//                → start()'s result, its `url` https://127.0.0.1:PORT/: the same HTTP balancing
//                (round robin, cookie stickiness, X-Forwarded-*) behind TLS the peer terminates
//                with the run's certificate (pemFile: the chain then the key, HAProxy's `crt`
//                and Tether's `--cert`; certFile/keyFile: the same apart, for nginx). Only peers
//                exporting it run in `frontend: 'https'` scenarios, and then
//                available({ repoRoot, https: true }) says whether it can here.
//   startAuthz?(same as start) → start()'s result plus `authz`: { host, port, path, pool, control,
//                agentKey, terminalKeysFile, users, pid }: the authorization handshake on (see
//                ./tether.js). Only peers exporting it run in `authz` scenarios (authz-handshakes).
// ./index.js runsIn() is the one place that decides which peer runs in which scenario.
// The runner owns stopping: handle.kill() kills the peer's whole process group.

import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { waitUntilAnswers, waitUntilReady } from '../processes.js';
import { openTlsConnection } from '../node-load/http-client.js';

/** Absolute path of an executable on PATH or in the sbin dirs (not always on a user's PATH). */
export function findExecutable(name) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** First non-empty line a command prints (stdout or stderr); '' if it cannot run. */
export function firstLineOf(command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 5000 });
  const text = `${result.stdout ?? ''}\n${result.stderr ?? ''}`;
  return text.split('\n').map((l) => l.trim()).find((l) => l.length > 0) ?? '';
}

/**
 * Readiness for a peer whose main process prints one line `{"ready":true}` once every worker
 * listens (node-http-proxy's cluster primary, the uws-floor main thread): pass `onStdoutLine` to
 * startProcess, then `waitFor(handle, url, https?)` is its waitReady: that line AND GET / answering
 * (over verified TLS for an https: url, as answersOn), within the deadline, failing early if the
 * process exits.
 */
export function readyLine(label) {
  let announce;
  const ready = new Promise((resolve) => {
    announce = resolve;
  });
  return {
    onStdoutLine: (line) => {
      if (line.includes('"ready":true')) announce();
    },
    waitFor: (handle, url, https = null) => async (deadlineMs) => {
      const started = Date.now();
      let timer;
      const deadline = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${label} workers not listening within ${deadlineMs} ms\n${handle.output()}`)), deadlineMs);
      });
      try {
        await Promise.race([ready, deadline, handle.exited.then(() => Promise.reject(new Error(`${label} exited\n${handle.output()}`)))]);
      } finally {
        clearTimeout(timer);
      }
      const tls = https ? { ca: https.ca, servername: https.serverName } : null;
      return waitUntilAnswers(url, handle, { deadlineMs: Math.max(1000, deadlineMs - (Date.now() - started)), tls });
    },
  };
}

/**
 * The usual readiness: the listener answers GET / with 200. For an https: `url`, `https` (the
 * startHttps option) verifies the certificate: { ca, serverName }.
 */
export function answersOn(url, handle, https = null) {
  const tls = https ? { ca: https.ca, servername: https.serverName } : null;
  return (deadlineMs) => waitUntilAnswers(url, handle, { deadlineMs, tls });
}

/**
 * Passthrough readiness: polls (every 50 ms) until every route answers GET / from its own
 * backend over a verified TLS connection with its SNI, the process exits, or `deadlineMs`
 * passes. Each attempt is bounded (1 s handshake, 1 s response).
 */
export function passthroughAnswers({ host, port, ca, routes }, handle) {
  return (deadlineMs) =>
    waitUntilReady(handle, deadlineMs, `answering every route of its passthrough on ${host}:${port}`, async () => {
      for (const route of routes) {
        let connection = null;
        try {
          connection = await openTlsConnection({ host, port, servername: route.serverName, ca, timeoutMs: 1000 });
          const response = await connection.request({ timeoutMs: 1000 });
          const body = response.body.toString('latin1');
          if (response.status !== 200 || body !== route.backend) return `${route.serverName}: ${response.status} from ${JSON.stringify(body.slice(0, 100))}`;
        } catch (error) {
          return `${route.serverName}: ${error.message}`;
        } finally {
          connection?.close();
        }
      }
      return null;
    });
}
