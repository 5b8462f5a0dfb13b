// Child processes for the load bench: every child gets its own process group, is remembered
// until it exits, and is killed by group on stop, on failure, on Ctrl-C and on exit.
//
// Why process groups: nginx forks workers, node:cluster forks workers, and a SIGKILL to the
// parent alone would orphan them on the shared machine. `detached: true` makes the child a
// group leader (setsid), so `kill(-pid)` reaches it and everything it forked.

import { spawn } from 'node:child_process';
import net from 'node:net';
import http from 'node:http';
import https from 'node:https';

/** pid → { name, exited: Promise<{code, signal}> } for every group leader still alive. */
const live = new Map();
let handlersInstalled = false;

/**
 * Starts `command args` in a new process group. stdout/stderr are kept (bounded) for error
 * messages. Returns { pid, name, exited, output(), kill() }.
 */
export function startProcess(name, command, args, { env, cwd, onStdoutLine } = {}) {
  installHandlers();
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const maxKept = 16 * 1024;
  let kept = '';
  const keep = (chunk) => {
    kept = (kept + chunk.toString('utf8')).slice(-maxKept);
  };
  let pending = '';
  child.stdout.on('data', (chunk) => {
    keep(chunk);
    if (!onStdoutLine) return;
    pending += chunk.toString('utf8');
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      onStdoutLine(line);
    }
    if (pending.length > maxKept) pending = pending.slice(-maxKept);
  });
  child.stderr.on('data', keep);

  const exited = new Promise((resolve) => {
    child.once('error', (error) => {
      keep(`spawn error: ${error.message}\n`);
      resolve({ code: null, signal: null, error });
    });
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const handle = {
    pid: child.pid,
    name,
    exited,
    output: () => kept,
    /** SIGTERM to the group, SIGKILL after `graceMs`; resolves when the leader has exited. */
    kill: (graceMs = 3000) => killGroup(handle, graceMs),
  };
  if (child.pid !== undefined) {
    live.set(child.pid, handle);
    void exited.then(() => {
      // The leader is gone; make sure nothing it forked is left behind in its group.
      signalGroup(child.pid, 'SIGKILL');
      live.delete(child.pid);
    });
  }
  return handle;
}

function signalGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // ESRCH: the group is already empty
  }
}

async function killGroup(handle, graceMs) {
  if (handle.pid === undefined) return handle.exited;
  signalGroup(handle.pid, 'SIGTERM');
  const timedOut = await Promise.race([
    handle.exited.then(() => false),
    delay(graceMs).then(() => true),
  ]);
  if (timedOut) signalGroup(handle.pid, 'SIGKILL');
  await Promise.race([handle.exited, delay(graceMs)]);
  signalGroup(handle.pid, 'SIGKILL'); // leftovers (workers of a leader that exited first)
  return handle.exited;
}

/** Kills every group we started. Used on failure and by the signal handlers. */
export async function killAll(graceMs = 2000) {
  await Promise.all([...live.values()].map((h) => killGroup(h, graceMs)));
}

/** Synchronous cleanups (temp dirs) run on exit and on a signal, after the kills. */
const exitCleanups = [];
export function onExit(cleanup) {
  installHandlers();
  exitCleanups.push(cleanup);
}

function killAllSync() {
  for (const pid of live.keys()) signalGroup(pid, 'SIGKILL');
  live.clear();
  for (const cleanup of exitCleanups.splice(0)) {
    try {
      cleanup();
    } catch {
      // best effort: we are exiting
    }
  }
}

function installHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.once('exit', killAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping ${live.size} process group(s)\n`);
      killAllSync();
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  }
}

export function delay(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref?.();
  });
}

/**
 * A free TCP port on 127.0.0.1 (bind port 0, read it, close). Racy in principle; fine on
 * loopback where only this bench allocates ports in the same instant.
 */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * One HTTP/1.1 request on a fresh connection (no agent), bounded by `timeoutMs`. An https:
 * `url` needs `tls` = { ca, servername }: the certificate must verify against `ca` for
 * `servername` (SNI and the name checked), whatever host the URL names.
 * Resolves { status, headers, body } (and for https `tls`: { protocol, cipher, group, resumed });
 * rejects on network error, a certificate that does not verify, or timeout.
 */
export function httpGet(url, { headers = {}, timeoutMs = 2000, tls = null } = {}) {
  const secure = url.startsWith('https:');
  if (secure && !tls?.ca) return Promise.reject(new Error(`expected { ca, servername } to verify GET ${url} but received ${JSON.stringify(tls)}`));
  const client = secure ? https : http;
  const options = secure
    ? { headers, agent: false, timeout: timeoutMs, ca: tls.ca, servername: tls.servername, rejectUnauthorized: true }
    : { headers, agent: false, timeout: timeoutMs };
  return new Promise((resolve, reject) => {
    const req = client.get(url, options, (res) => {
      // Read while the head arrives: once the body has ended the socket may be gone.
      const socket = res.socket;
      const facts = secure
        ? {
            protocol: socket.getProtocol?.() ?? null,
            cipher: socket.getCipher?.()?.name ?? null,
            group: socket.getEphemeralKeyInfo?.()?.name ?? null,
            resumed: socket.isSessionReused?.() ?? null,
          }
        : null;
      const chunks = [];
      let size = 0;
      res.on('data', (chunk) => {
        size += chunk.length;
        if (size <= 64 * 1024) chunks.push(chunk);
      });
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), ...(facts ? { tls: facts } : {}) }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms: GET ${url}`)));
    req.on('error', reject);
  });
}

/**
 * The readiness loop every peer waits in: calls `attempt()` every 50 ms until it returns null
 * (ready: resolves with the ms it took), the process exits, or `deadlineMs` passes, so at most
 * deadlineMs/50 attempts. `attempt` bounds itself and returns why it is not ready yet; the
 * last reason goes into the timeout error. `what` names the wait in errors ("answering URL").
 */
export async function waitUntilReady(handle, deadlineMs, what, attempt) {
  const started = Date.now();
  let exited = null;
  void handle.exited.then((e) => {
    exited = e;
  });
  let lastError = 'no attempt';
  while (Date.now() - started < deadlineMs) {
    if (exited) {
      throw new Error(`${handle.name} exited (code ${exited.code}, signal ${exited.signal}) before ${what}\n${handle.output()}`);
    }
    const notReady = await attempt();
    if (notReady === null) return Date.now() - started;
    lastError = notReady;
    await delay(50);
  }
  throw new Error(`${handle.name} was not ${what} within ${deadlineMs} ms (last: ${lastError})\n${handle.output()}`);
}

/**
 * Polls `url` (each GET bounded to 1 s) until it answers `expectStatus`; see waitUntilReady.
 * An https: `url` takes httpGet's `tls`.
 */
export function waitUntilAnswers(url, handle, { deadlineMs = 15_000, expectStatus = 200, tls = null } = {}) {
  return waitUntilReady(handle, deadlineMs, `answering ${url}`, async () => {
    try {
      const res = await httpGet(url, { timeoutMs: 1000, tls });
      return res.status === expectStatus ? null : `status ${res.status}`;
    } catch (error) {
      return error.message;
    }
  });
}
