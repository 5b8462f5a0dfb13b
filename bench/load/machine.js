// What the numbers were measured on: kernel, CPU, load, tool versions, commit. Stored in
// results.json so a result can be compared with another only when this matches.

import os from 'node:os';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { findExecutable, firstLineOf } from './peers/common.js';

function cpuModel() {
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match) return match[1].trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

function versionOf(binaryName, args) {
  const binary = findExecutable(binaryName);
  return binary ? firstLineOf(binary, args) : 'not installed';
}

function gitCommit(repoRoot) {
  const result = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot, encoding: 'utf8', timeout: 5000 });
  const status = spawnSync('git', ['status', '--porcelain'], { cwd: repoRoot, encoding: 'utf8', timeout: 5000 });
  const commit = result.status === 0 ? result.stdout.trim() : 'unknown';
  return status.status === 0 && status.stdout.trim() !== '' ? `${commit} (dirty)` : commit;
}

export function machineInfo(repoRoot) {
  return {
    date: new Date().toISOString(),
    kernel: firstLineOf('uname', ['-r']),
    cpuModel: cpuModel(),
    cpus: os.cpus().length,
    memoryMiB: Math.round(os.totalmem() / 1048576),
    loadAverageAtStart: os.loadavg().map((l) => Number(l.toFixed(2))),
    node: process.version,
    haproxy: versionOf('haproxy', ['-v']),
    nginx: versionOf('nginx', ['-v']),
    wrk: versionOf('wrk', ['-v']),
    commit: gitCommit(repoRoot),
  };
}
