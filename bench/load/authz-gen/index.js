// The C load generator for authz-handshakes (./authz-gen.c says what it does and why): built on
// first use into build/authz-gen (beside the addon; rebuilt when the source is newer), run as a
// child process with a deadline, its JSON result returned in runLoad's shape.
//
//   buildAuthzGen() → { ok: true, path } | { ok: false, reason, install }
//   runAuthzGen({ path, host, port, path, keysFile, connections, threads, durationS, ... })
//     → runLoad-shaped result plus cpuSeconds (the generator's own CPU time)

import { execFile, spawn } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findExecutable } from '../peers/common.js';

const SOURCE = fileURLToPath(new URL('./authz-gen.c', import.meta.url));
export const AUTHZ_GEN_PATH = fileURLToPath(new URL('../../../build/authz-gen', import.meta.url));
const COMPILE_DEADLINE_MS = 60_000;
/** After the run's own duration: how long the generator may take to stop and print. */
const EXIT_GRACE_MS = 15_000;
export const DESCRIBE = 'authz-gen (C: one epoll loop per thread, OpenSSL HMAC and AES-GCM)';

function mtimeMs(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

let building = null;

/** Compiles the generator unless an up-to-date binary exists. Never throws. */
export function buildAuthzGen() {
  if (mtimeMs(AUTHZ_GEN_PATH) >= mtimeMs(SOURCE)) return Promise.resolve({ ok: true, path: AUTHZ_GEN_PATH });
  building ??= compile().finally(() => {
    building = null;
  });
  return building;
}

function compile() {
  const cc = findExecutable('cc') ?? findExecutable('gcc');
  if (!cc) return Promise.resolve({ ok: false, reason: 'no C compiler (cc) on PATH', install: 'apt-get install -y gcc libssl-dev' });
  mkdirSync(dirname(AUTHZ_GEN_PATH), { recursive: true });
  // A private name, renamed into place: two test files may build at once.
  const temp = join(dirname(AUTHZ_GEN_PATH), `.authz-gen-${process.pid}-${Date.now()}`);
  const args = ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', SOURCE, '-o', temp, '-lcrypto', '-lpthread'];
  return new Promise((resolve) => {
    execFile(cc, args, { timeout: COMPILE_DEADLINE_MS }, (error, _stdout, stderr) => {
      if (error) {
        rmSync(temp, { force: true });
        const missingHeaders = /openssl\/\w+\.h/.test(stderr);
        resolve({
          ok: false,
          reason: `${cc} ${args.join(' ')} failed: ${(stderr || error.message).trim().split('\n').slice(0, 5).join(' | ')}`,
          install: missingHeaders ? 'apt-get install -y libssl-dev' : 'apt-get install -y gcc libssl-dev',
        });
        return;
      }
      renameSync(temp, AUTHZ_GEN_PATH);
      resolve({ ok: true, path: AUTHZ_GEN_PATH });
    });
  });
}

/**
 * Runs the generator once. Rejects if it cannot start, exits non-zero, outlives its deadline
 * (durationS + EXIT_GRACE_MS: then it is killed) or prints no JSON result.
 */
export function runAuthzGen({ binary = AUTHZ_GEN_PATH, host, port, path, keysFile, connections, threads = 1, durationS, maxPerConnection, openEvery, requestTimeoutMs, connectTimeoutMs }) {
  const args = ['--host', host, '--port', String(port), '--path', path, '--keys', keysFile, '--connections', String(connections), '--threads', String(threads), '--duration', String(durationS)];
  if (maxPerConnection !== undefined) args.push('--max-per-conn', String(maxPerConnection));
  if (openEvery !== undefined) args.push('--open-every', String(openEvery));
  if (requestTimeoutMs !== undefined) args.push('--timeout-ms', String(requestTimeoutMs));
  if (connectTimeoutMs !== undefined) args.push('--connect-timeout-ms', String(connectTimeoutMs));
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const deadlineMs = durationS * 1000 + EXIT_GRACE_MS;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`authz-gen did not finish within ${deadlineMs} ms (killed)`));
    }, deadlineMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`authz-gen could not start: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`authz-gen exited ${code ?? signal}: ${err.trim() || '(no message)'}`));
        return;
      }
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`authz-gen printed no JSON result: ${JSON.stringify(out.slice(0, 200))}`));
      }
    });
  });
}
