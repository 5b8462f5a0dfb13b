// The `tether` command as a user meets it: --help, bad flags (every problem reported at once,
// exit 2), keygen, the embedded demo default driven by real curl with a cookie jar, SIGTERM,
// and a missing key file. Every child process has a timeout.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { request, setCookieValue } from '../helpers/client.js';
import { CLI, startTether, type TetherProcess } from '../helpers/tether.js';
import { tempDir, tokenKeyId } from '../helpers/sticky.js';
import { startBackend, type TestBackend } from '../helpers/backends.js';

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: readonly string[], timeout = 20_000): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
      resolve({
        code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
        signal: e?.signal ?? null,
        stdout,
        stderr,
      });
    });
  });
}

const tether = (args: readonly string[], timeout?: number) => run(process.execPath, [CLI, ...args], timeout);

const FLAGS = [
  '--listen', '--backend', '--sticky', '--balance', '--route', '--workers', '--admin', '--key-file', '--key-grace',
  '--token-max-age', '--connect-timeout', '--response-timeout', '--idle-timeout', '--no-demo', '--log-level', '--config',
  '--help', '--version',
];

describe('tether CLI', () => {
  const cleanups: (() => Promise<unknown> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('--help exits 0 and documents every flag, mode and algorithm', async () => {
    const r = await tether(['--help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    for (const flag of FLAGS) expect(r.stdout, flag).toMatch(new RegExp(`(^|[\\s,])${flag}([\\s,=]|$)`, 'm'));
    for (const word of ['keygen', 'cookie', 'prefix:', 'header', 'none', 'round-robin', 'weighted', 'least-connections', 'consistent-hash']) {
      expect(r.stdout, word).toContain(word);
    }
  });

  it('several bad flags at once: exit 2 and every problem on stderr', async () => {
    const r = await tether(['--workers', 'x', '--backend', 'nope', '--frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('--frobnicate');
    expect(r.stderr).toMatch(/--workers.*'x'/);
    expect(r.stderr).toMatch(/--backend.*'nope'/);
    // One line per problem, not just the first.
    expect(r.stderr.split('\n').filter((l) => /frobnicate|'x'|'nope'/.test(l))).toHaveLength(3);
  });

  it('keygen prints a key line that a key file accepts, and refuses a bad id', async () => {
    const r = await tether(['keygen']);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^1 [0-9a-f]{64}$/);
    const again = await tether(['keygen']);
    expect(again.stdout.split('\n').find((l) => /^1 /.test(l))).not.toBe(lines[0]);

    const seven = await tether(['keygen', '--id', '7']);
    expect(seven.code).toBe(0);
    expect(seven.stdout).toMatch(/^7 [0-9a-f]{64}$/m);
    const bad = await tether(['keygen', '--id', '256']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('256');

    // The whole output (comment included) is a working key file: tokens carry key id 7.
    const tmp = tempDir();
    cleanups.push(() => tmp.cleanup());
    const keyFile = tmp.file('keys', seven.stdout);
    const backend: TestBackend = await startBackend('app1');
    cleanups.push(() => backend.close());
    const t = await startTether(['--backend', `app1=127.0.0.1:${backend.port}`, '--key-file', keyFile], { workers: 1 });
    cleanups.push(() => t.stop());
    const reply = await request({ port: t.port });
    expect(tokenKeyId(setCookieValue(reply, 'TETHER')!)).toBe(7);
  });

  it('with no --backend the demo backends start; real curl with a cookie jar sticks; SIGTERM exits 0', async () => {
    const t: TetherProcess = await startTether([], { workers: 2 });
    let stopped = false;
    cleanups.push(() => (stopped ? undefined : t.stop()));
    const tmp = tempDir();
    cleanups.push(() => tmp.cleanup());
    const jar = `${tmp.dir}/jar`;
    const url = `http://127.0.0.1:${t.port}/`;

    const first = await run('curl', ['-s', '-S', '--max-time', '10', '-c', jar, '-b', jar, url]);
    expect(first.code, first.stderr).toBe(0);
    const demo = /Hello from (demo-\d)/.exec(first.stdout)?.[1];
    expect(demo, first.stdout).toBeTruthy();
    expect(readFileSync(jar, 'utf8')).toMatch(/\tTETHER\t[A-Za-z0-9_-]{40,}/);

    const second = await run('curl', ['-s', '-S', '--max-time', '10', '-c', jar, '-b', jar, url]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`Hello from ${demo} `);
    // Roaming: the same jar from another source address still lands there.
    const roamed = await run('curl', ['-s', '-S', '--max-time', '10', '--interface', '127.0.0.3', '-b', jar, url]);
    expect(roamed.code, roamed.stderr).toBe(0);
    expect(roamed.stdout).toContain(`Hello from ${demo} `);

    // Control: without the jar, two requests on one curl connection go to both demo backends.
    const control = await run('curl', ['-s', '-S', '--max-time', '10', url, url]);
    expect(control.code, control.stderr).toBe(0);
    const seen = [...control.stdout.matchAll(/Hello from (demo-\d)/g)].map((m) => m[1]);
    expect(seen).toHaveLength(2);
    expect(new Set(seen).size).toBe(2);

    stopped = true;
    expect(await t.stop()).toBe(0);
    expect(t.lines.some((l) => l.includes('"event":"stopped"'))).toBe(true);
  });

  it('--pid-file names the process once it listens, takes signals sent to that pid, and is removed on a clean exit', async () => {
    const tmp = tempDir();
    cleanups.push(() => tmp.cleanup());
    const pidFile = `${tmp.dir}/tether.pid`;
    const log = `${tmp.dir}/access.log`;
    const t = await startTether(['--pid-file', pidFile, '--access-log', log], { workers: 1 });
    let stopped = false;
    cleanups.push(() => (stopped ? undefined : t.stop()));
    expect(readFileSync(pidFile, 'utf8')).toBe(`${t.pid}\n`);
    // What a logrotate postrotate script does: signal the pid the file names.
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGUSR1');
    await t.waitForLog((e) => e.event === 'access_log_reopened' && e.by === 'SIGUSR1');
    expect(await t.stop()).toBe(0);
    stopped = true;
    expect(existsSync(pidFile)).toBe(false);

    // A pid file that cannot be written stops the start (exit 1) with the reason.
    const r = await tether(['--listen', '127.0.0.1:0', '--admin', 'off', '--no-demo', '--backend', 'a=127.0.0.1:9', '--pid-file', `${tmp.dir}/no/such/dir/tether.pid`]);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toMatch(/cannot write --pid-file [^"]*no\/such\/dir\/tether\.pid/);
    expect(r.stdout + r.stderr).toContain('ENOENT');
  });

  it('a missing --key-file stops the start with a non-zero exit and a clear message', async () => {
    const tmp = tempDir();
    cleanups.push(() => tmp.cleanup());
    const missing = `${tmp.dir}/no-such-keys`;
    const r = await tether(['--listen', '127.0.0.1:0', '--admin', 'off', '--workers', '2', '--backend', 'app1=127.0.0.1:9', '--key-file', missing]);
    expect(r.signal).toBeNull();
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    const out = r.stdout + r.stderr;
    expect(out).toContain(missing);
    expect(out).toMatch(/cannot read key file/);
    expect(out).toMatch(/ENOENT|no such file/);
    expect(out).not.toMatch(/"event":"listening"/);

    // A key file that exists but is wrong says which line and why.
    const bad = tmp.file('bad-keys', '1 not-a-key\n');
    const r2 = await tether(['--listen', '127.0.0.1:0', '--admin', 'off', '--workers', '1', '--backend', 'app1=127.0.0.1:9', '--key-file', bad]);
    expect(r2.code).not.toBe(0);
    expect(r2.code).not.toBeNull();
    expect(r2.stdout + r2.stderr).toContain(`${bad}:1:`);
  });
});
