// Spawns the built `tether` binary as a user would, on loopback port 0, and waits (with a
// deadline) for its structured "listening" log line. Every process is stopped by its pid.
import http from 'node:http';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh admin token in a temporary file, for --admin-token-file. */
export function adminToken(): { file: string; token: string; header: string } {
  const token = randomBytes(24).toString('hex');
  const file = join(mkdtempSync(join(tmpdir(), 'tether-admin-')), 'token');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return { file, token, header: `Bearer ${token}` };
}

/** POST /api/v1/reload on `t`'s admin listener with `authorization`; status and parsed body. */
export function reloadVia(t: { adminPort: number }, authorization: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: t.adminPort, path: '/api/v1/reload', method: 'POST', agent: false, headers: { authorization } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('reload timed out')));
    req.on('error', reject);
    req.end();
  });
}

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** Runs the built CLI with `args` until it exits (killed after `ms`): its exit code and all it printed. */
export function runToExit(args: readonly string[], ms = 20_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--single-threaded-gc', CLI, ...args], { timeout: ms }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, out: stdout + stderr }),
    );
  });
}

export interface TetherProcess {
  proc: ChildProcess;
  pid: number;
  port: number;
  /** Every HTTP/HTTPS listener's port, in --listen order (the first is the helper's own 127.0.0.1:0). */
  ports: number[];
  /** TLS passthrough ports, in --passthrough order (empty without). */
  passthroughPorts: number[];
  adminPort: number;
  /** Every stdout/stderr line so far (pino JSON lines and anything else). */
  lines: string[];
  url(path?: string): string;
  /** Resolves with the first log line (parsed) matching `pred`, or rejects after `ms`. */
  waitForLog(pred: (entry: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  /** Prometheus text from the admin listener. */
  metrics(): Promise<string>;
  /** One metric sample's value (`name{labels}` exactly as printed), or 0 when absent. */
  metric(sample: string): Promise<number>;
  /** SIGTERM, then wait for exit (SIGKILL after `ms`); resolves with the exit code. */
  stop(ms?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

export async function startTether(args: readonly string[], opts: { workers?: number; env?: NodeJS.ProcessEnv; deadlineMs?: number; admin?: string } = {}): Promise<TetherProcess> {
  const full = ['--listen', '127.0.0.1:0', '--admin', opts.admin ?? '127.0.0.1:0', '--workers', String(opts.workers ?? 2), ...args];
  const proc = spawn(process.execPath, ['--single-threaded-gc', CLI, ...full], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  const lines: string[] = [];
  const waiters: { pred: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }[] = [];
  const onLine = (line: string) => {
    lines.push(line);
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    for (const w of waiters.splice(0)) {
      if (w.pred(entry)) w.resolve(entry);
      else waiters.push(w);
    }
  };
  createInterface({ input: proc.stdout! }).on('line', onLine);
  createInterface({ input: proc.stderr! }).on('line', onLine);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));

  const waitForLog = (pred: (e: Record<string, unknown>) => boolean, ms = 10_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      for (const line of lines) {
        try {
          const e = JSON.parse(line) as Record<string, unknown>;
          if (pred(e)) return resolve(e);
        } catch {
          // not JSON
        }
      }
      const timer = setTimeout(() => reject(new Error(`no matching log line within ${ms} ms; output:\n${lines.join('\n')}`)), ms);
      waiters.push({ pred, resolve: (e) => { clearTimeout(timer); resolve(e); } });
      void exited.then((code) => { clearTimeout(timer); reject(new Error(`tether exited (${code}) before the log line; output:\n${lines.join('\n')}`)); });
    });

  const listening = await waitForLog((e) => e.event === 'listening', opts.deadlineMs ?? 20_000);
  const port = (listening.httpPorts as number[])[0]!;
  const adminPort = listening.adminPort as number;
  const metrics = async () => {
    const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(5_000) });
    return res.text();
  };
  return {
    proc,
    pid: proc.pid!,
    port,
    ports: listening.httpPorts as number[],
    passthroughPorts: (listening.passthroughPorts as number[] | undefined) ?? [],
    adminPort,
    lines,
    url: (path = '/') => `http://127.0.0.1:${port}${path}`,
    waitForLog,
    metrics,
    async metric(sample) {
      const text = await metrics();
      for (const line of text.split('\n')) {
        if (line.startsWith(`${sample} `)) return Number(line.slice(sample.length + 1));
      }
      return 0;
    },
    async stop(ms = 15_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), ms);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    exited,
  };
}
