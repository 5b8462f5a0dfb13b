// Helpers shared by the peer modules.
//
// A peer module exports:
//   name         e.g. 'haproxy'
//   cookieName   the sticky cookie it sets ('SRV', 'TETHER')
//   describe     one line: how it is configured for the bench (goes into results.json)
//   available()  → { ok: true, version } | { ok: false, reason, install }
//   start({ backends: [{ name, port }], workers, connections, port, dir, repoRoot })
//                → { handle, url, waitReady(deadlineMs), setup: { command, config? } }
// The runner owns stopping: handle.kill() kills the peer's whole process group.

import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { waitUntilAnswers } from '../processes.js';

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

/** The usual readiness: the listener answers GET / with 200. */
export function answersOn(url, handle) {
  return (deadlineMs) => waitUntilAnswers(url, handle, { deadlineMs });
}
