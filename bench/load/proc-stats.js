// CPU time and resident memory of a whole process group, from /proc (Linux only).
//
// A balancer may be one process with threads (HAProxy, Tether), or a master with forked
// workers (nginx, node:cluster). Each peer is started as its own process group, so "the
// balancer" is every process whose pgrp is the leader's pid. Threads are already summed in
// their process's /proc/PID/stat.
//
// /proc/PID/stat, after the `(comm)` field (which may itself contain spaces and parens, so
// split after the LAST ')'):
//
//   ") S ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime …"
//      0 1    2    3       4   5     6     7      8       9      10      11    12    13     14
//
// utime/stime are in clock ticks (sysconf(_SC_CLK_TCK), 100 on Linux x86_64/arm64);
// cutime/cstime hold the ticks of children that exited and were reaped, so a worker that
// dies mid-run is still counted by its parent.

import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let clockTicks = 100;
try {
  clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  // keep the Linux default
}

/** Parses the fields we use from a /proc/PID/stat line; null if it does not look like one. */
export function parseProcStat(text) {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const fields = text.slice(close + 2).trim().split(' ');
  if (fields.length < 15) return null;
  const num = (i) => Number(fields[i]);
  return {
    pgrp: num(2),
    ticks: num(11) + num(12) + num(13) + num(14),
  };
}

function readStat(pid) {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null; // exited between readdir and read
  }
}

/** Pids of every process in process group `pgid`. */
export function groupMembers(pgid) {
  const members = [];
  for (const entry of readdirSync('/proc')) {
    if (entry.charCodeAt(0) < 48 || entry.charCodeAt(0) > 57) continue;
    const stat = readStat(entry);
    if (stat && stat.pgrp === pgid) members.push(Number(entry));
  }
  return members;
}

/** pid → CPU ticks (own + reaped children) for every member of the group. */
export function groupCpuTicks(pgid) {
  const ticks = new Map();
  for (const pid of groupMembers(pgid)) {
    const stat = readStat(pid);
    if (stat && stat.pgrp === pgid) ticks.set(pid, stat.ticks);
  }
  return ticks;
}

/**
 * CPU seconds the group used between two groupCpuTicks snapshots. A process that appeared
 * in between counts from zero; one that vanished is lost unless a member reaped it.
 */
export function cpuSecondsBetween(before, after) {
  let ticks = 0;
  for (const [pid, t] of after) ticks += t - (before.get(pid) ?? 0);
  return Math.max(0, ticks) / clockTicks;
}

/** VmRSS of one process in KiB, 0 if it is gone (kernel threads and zombies have none). */
export function rssKiB(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Samples the group's summed RSS every `intervalMs` until stop() or `maxSamples`.
 * The member list is re-read every 10th sample (a /proc scan is the costly part and must
 * not steal much CPU from the run on a 2-core machine). stop() returns the peak in KiB.
 */
export function sampleGroupRss(pgid, { intervalMs = 100, maxSamples = 10_000 } = {}) {
  let members = groupMembers(pgid);
  let peakKiB = 0;
  let samples = 0;
  const sample = () => {
    if (samples % 10 === 0) members = groupMembers(pgid);
    samples += 1;
    let total = 0;
    for (const pid of members) total += rssKiB(pid);
    if (total > peakKiB) peakKiB = total;
    if (samples >= maxSamples) clearInterval(timer);
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { peakKiB, samples };
    },
  };
}
