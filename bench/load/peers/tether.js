// Tether peer: the built CLI (dist/cli.js), cookie stickiness, --workers worker threads.
// Contract used (the CLI is the lead's): --listen, --admin, --backend NAME=HOST:PORT
// (repeated), --sticky cookie, --workers W, --key-file FILE with one line `1 <64 hex>`;
// ready when GET http://ADMIN/readyz answers 200; route cookie `TETHER=<token>`.
// HTTPS (startHttps): the same, with --listen https://127.0.0.1:PORT --cert FILE (the chain,
// then the key); the route cookie is then Secure and the backend gets X-Forwarded-Proto https.
// Passthrough (startPassthrough): --passthrough HOST:PORT and one --sni NAME=POOL per route,
// each pool one backend (--backend POOL/ID=HOST:PORT, --sticky POOL/none: nothing to stick).
// Authorization handshake (startAuthz, scenario authz-handshakes): start()'s flags plus --pool,
// --agent-keys, --terminal-keys and --authz-pool; servers join the pool over ws://ADMIN/control.

import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startProcess, waitUntilAnswers, freePort } from '../processes.js';
import { passthroughAnswers } from './common.js';

export const name = 'tether';
export const cookieName = 'TETHER';
export const describe = 'Tether: node --single-threaded-gc dist/cli.js --sticky cookie --workers W (worker threads), one fresh AES-256 key';

function cliPath(repoRoot) {
  return join(repoRoot, 'dist', 'cli.js');
}

export function available({ repoRoot }) {
  if (!existsSync(cliPath(repoRoot))) {
    return { ok: false, reason: 'not built: dist/cli.js missing', install: 'npm run build' };
  }
  return { ok: true, version: `tether (dist/cli.js) on node ${process.version}` };
}

/** Stickiness modes a scenario may ask for (its `stickiness` export); cookie otherwise. */
export const stickinessModes = ['learn'];

/**
 * `extraArgs`: variants (tether-bound.js) add their flags. With `https` (startHttps), the
 * listener terminates TLS with https.pemFile.
 */
export async function start({ backends, workers, port, dir, repoRoot, stickiness, https = null }, extraArgs = []) {
  const adminPort = await freePort();
  const keyFile = join(dir, 'tether.keys');
  writeFileSync(keyFile, `1 ${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const args = [
    // As the `tether` command runs itself (its shebang): see src/cli.ts.
    '--single-threaded-gc',
    cliPath(repoRoot),
    ...(https ? ['--listen', `https://127.0.0.1:${port}`, '--cert', https.pemFile] : ['--listen', `127.0.0.1:${port}`]),
    '--admin', `127.0.0.1:${adminPort}`,
    ...backends.flatMap((b) => ['--backend', `${b.name}=127.0.0.1:${b.port}`]),
    '--sticky', stickiness === 'learn' ? 'learn:JSESSIONID' : 'cookie',
    '--workers', String(workers),
    '--key-file', keyFile,
    ...extraArgs,
  ];
  const handle = startProcess('tether', process.execPath, args, { cwd: repoRoot });
  const url = `${https ? 'https' : 'http'}://127.0.0.1:${port}/`;
  const readyUrl = `http://127.0.0.1:${adminPort}/readyz`;
  const tls = https ? { ca: https.ca, servername: https.serverName } : null;
  // /readyz says the workers are up; the data port answering is checked too, since the
  // bench is about that port.
  const waitReady = async (deadlineMs) => {
    const started = Date.now();
    await waitUntilAnswers(readyUrl, handle, { deadlineMs });
    return waitUntilAnswers(url, handle, { deadlineMs: Math.max(1000, deadlineMs - (Date.now() - started)), tls });
  };
  return { handle, url, admin: `127.0.0.1:${adminPort}`, waitReady, setup: { command: `node ${args.join(' ')}` } };
}

/** HTTPS: start() with the run's certificate (see ./common.js). */
export function startHttps(options) {
  if (!options.https) throw new Error('tether.startHttps: expected options.https ({ pemFile, ca, serverName })');
  return start(options);
}

/** Users in the terminal key file startAuthz() writes (`user0000` … `user0999`). */
export const AUTHZ_USERS = 1000;
/** The pool whose servers receive grants, and the handshake's path (the CLI's default). */
export const AUTHZ_POOL = 'authz';
export const AUTHZ_PATH = '/_tether/authz';

/**
 * The authorization handshake on (scenario authz-handshakes): start()'s setup plus a declared
 * pool AUTHZ_POOL with no backends (app servers join it over the control channel), its agent
 * key (--agent-keys: one line `authz <hex>`), AUTHZ_USERS terminal keys (--terminal-keys: lines
 * `<user> <hex>`), and --authz-pool authz. `authz` in the result is what the scenario needs.
 */
export async function startAuthz(options) {
  const { dir } = options;
  const agentKey = randomBytes(32).toString('hex');
  const agentKeysFile = join(dir, 'tether.agent-keys');
  const terminalKeysFile = join(dir, 'tether.terminal-keys');
  writeFileSync(agentKeysFile, `${AUTHZ_POOL} ${agentKey}\n`, { mode: 0o600 });
  const users = Array.from({ length: AUTHZ_USERS }, (_, i) => `user${String(i).padStart(4, '0')} ${randomBytes(32).toString('hex')}\n`);
  writeFileSync(terminalKeysFile, users.join(''), { mode: 0o600 });
  const started = await start(options, [
    '--pool', AUTHZ_POOL,
    '--agent-keys', agentKeysFile,
    '--terminal-keys', terminalKeysFile,
    '--authz-pool', AUTHZ_POOL,
  ]);
  const [host, port] = new URL(started.url).host.split(':');
  return {
    ...started,
    authz: {
      host,
      port: Number(port),
      path: AUTHZ_PATH,
      pool: AUTHZ_POOL,
      control: `ws://${started.admin}/control`,
      agentKey,
      terminalKeysFile,
      users: AUTHZ_USERS,
      pid: started.handle.pid,
    },
  };
}

/**
 * The CLI arguments (after `node`) for TLS passthrough on `port`: one pool per TLS backend,
 * named after it, and one SNI route per name; no HTTP listener (`--listen off`), as HAProxy
 * and nginx run only their TCP frontends here.
 */
export function passthroughArgs({ tlsBackends, routes, workers, port, adminPort, repoRoot }) {
  return [
    '--single-threaded-gc',
    cliPath(repoRoot),
    '--listen', 'off',
    '--admin', `127.0.0.1:${adminPort}`,
    ...tlsBackends.flatMap((b) => ['--backend', `${b.name}/${b.name}=127.0.0.1:${b.port}`, '--sticky', `${b.name}/none`]),
    '--passthrough', `127.0.0.1:${port}`,
    ...routes.flatMap((r) => ['--sni', `${r.serverName}=${r.backend}`]),
    '--workers', String(workers),
  ];
}

export async function startPassthrough({ tlsBackends, routes, ca, workers, port, repoRoot }) {
  let adminPort = await freePort();
  // Ports bound and released one after another: make sure they differ (they nearly always do).
  while (adminPort === port) adminPort = await freePort();
  const args = passthroughArgs({ tlsBackends, routes, workers, port, adminPort, repoRoot });
  const handle = startProcess('tether', process.execPath, args, { cwd: repoRoot });
  const readyUrl = `http://127.0.0.1:${adminPort}/readyz`;
  const routesAnswer = passthroughAnswers({ host: '127.0.0.1', port, ca, routes }, handle);
  const waitReady = async (deadlineMs) => {
    const started = Date.now();
    await waitUntilAnswers(readyUrl, handle, { deadlineMs });
    return routesAnswer(Math.max(1000, deadlineMs - (Date.now() - started)));
  };
  return { handle, host: '127.0.0.1', port, waitReady, setup: { command: `node ${args.join(' ')}` } };
}
