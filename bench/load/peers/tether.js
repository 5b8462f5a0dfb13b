// Tether peer: the built CLI (dist/cli.js), cookie stickiness, --workers worker threads.
// Contract used (the CLI is the lead's): --listen, --admin, --backend NAME=HOST:PORT
// (repeated), --sticky cookie, --workers W, --key-file FILE with one line `1 <64 hex>`;
// ready when GET http://ADMIN/readyz answers 200; route cookie `TETHER=<token>`.

import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startProcess, waitUntilAnswers, freePort } from '../processes.js';

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

export async function start({ backends, workers, port, dir, repoRoot }) {
  const adminPort = await freePort();
  const keyFile = join(dir, 'tether.keys');
  writeFileSync(keyFile, `1 ${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const args = [
    // As the `tether` command runs itself (its shebang): see src/cli.ts.
    '--single-threaded-gc',
    cliPath(repoRoot),
    '--listen', `127.0.0.1:${port}`,
    '--admin', `127.0.0.1:${adminPort}`,
    ...backends.flatMap((b) => ['--backend', `${b.name}=127.0.0.1:${b.port}`]),
    '--sticky', 'cookie',
    '--workers', String(workers),
    '--key-file', keyFile,
  ];
  const handle = startProcess('tether', process.execPath, args, { cwd: repoRoot });
  const url = `http://127.0.0.1:${port}/`;
  const readyUrl = `http://127.0.0.1:${adminPort}/readyz`;
  // /readyz says the workers are up; the data port answering is checked too, since the
  // bench is about that port.
  const waitReady = async (deadlineMs) => {
    const started = Date.now();
    await waitUntilAnswers(readyUrl, handle, { deadlineMs });
    return waitUntilAnswers(url, handle, { deadlineMs: Math.max(1000, deadlineMs - (Date.now() - started)) });
  };
  return { handle, url, waitReady, setup: { command: `node ${args.join(' ')}` } };
}
