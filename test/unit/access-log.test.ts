// The access-log writer on its own: every line valid JSON with its fields intact (escaping),
// whole lines per write, everything written by close().
import { readFileSync, readdirSync, readlinkSync, renameSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AccessLog, type AccessRecord } from '../../src/data-plane/access-log.js';
import { tempDir } from '../helpers/sticky.js';

const record = (path: string, i: number): AccessRecord => ({
  worker: i % 2, client: '127.0.0.1', method: 'GET', path, status: 200, bytes: i, upstream: 'app1', upstreamAddr: '10.0.0.5:80', upstreamMs: 1.23456, totalMs: 2.5, sticky: 'hit', tls: '', cipher: '',
});

describe('AccessLog', () => {
  it('writes one parseable line per record, in order, escaping what needs it, all flushed by close()', async () => {
    const dir = tempDir('tether-al-');
    try {
      const file = `${dir.dir}/a.log`;
      const errors: Error[] = [];
      const drops: number[] = [];
      const log = AccessLog.open(file, (e) => errors.push(e), (n) => drops.push(n));
      const paths = ['/plain', '/q?a=1&b="two"', '/back\\slash', '/ünïcode/✓', '/ctl\u0001\u001f', `/${'x'.repeat(5000)}`];
      // Enough lines for several 32 KiB flushes and 64 KiB writes.
      for (let i = 0; i < 3000; i++) log.write(record(paths[i % paths.length]!, i));
      await log.close();
      const lines = readFileSync(file, 'utf8').split('\n');
      expect(lines.pop()).toBe('');
      expect(lines).toHaveLength(3000);
      const seen = lines.map((l) => JSON.parse(l) as AccessRecord & { time: string; upstreamUs: number; totalUs: number });
      // Order within one writer is kept, and every field survives the trip.
      seen.forEach((r, i) => {
        expect(r.bytes).toBe(i);
        expect(r.path).toBe(paths[i % paths.length]);
        expect([r.upstreamUs, r.totalUs]).toEqual([1235, 2500]);
        expect(Number.isNaN(Date.parse(r.time))).toBe(false);
      });
      expect(errors).toEqual([]);
      expect(drops).toEqual([]);
    } finally {
      dir.cleanup();
    }
  });

  it('reopen (log rotation): lines taken before go to the renamed file, after to the new one; the old descriptor is closed', async () => {
    const dir = tempDir('tether-al-');
    const openFds = (path: string) => readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === path;
      } catch {
        return false;
      }
    }).length;
    try {
      const file = `${dir.dir}/a.log`;
      const errors: Error[] = [];
      const log = AccessLog.open(file, (e) => errors.push(e), () => {});
      // Enough that some lines are written and some still buffered when the file is renamed.
      for (let i = 0; i < 2500; i++) log.write(record(`/before/${i}`, i));
      renameSync(file, `${file}.1`);
      log.reopen(file);
      for (let i = 0; i < 700; i++) log.write(record(`/after/${i}`, i));
      await log.close();
      const read = (f: string) => readFileSync(f, 'utf8').trimEnd().split('\n').map((l) => (JSON.parse(l) as AccessRecord).path);
      expect(read(`${file}.1`)).toEqual(Array.from({ length: 2500 }, (_, i) => `/before/${i}`));
      expect(read(file)).toEqual(Array.from({ length: 700 }, (_, i) => `/after/${i}`));
      expect(errors).toEqual([]);
      expect(openFds(`${file}.1`)).toBe(0);
      expect(openFds(file)).toBe(0);
    } finally {
      dir.cleanup();
    }
  });

  it('reopen at a path that cannot be opened throws and keeps writing where it was', async () => {
    const dir = tempDir('tether-al-');
    try {
      const file = `${dir.dir}/a.log`;
      const log = AccessLog.open(file, () => {}, () => {});
      log.write(record('/one', 1));
      expect(() => log.reopen(`${dir.dir}/no/such/dir/a.log`)).toThrow(/ENOENT/);
      log.write(record('/two', 2));
      await log.close();
      expect(readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => (JSON.parse(l) as AccessRecord).path)).toEqual(['/one', '/two']);
    } finally {
      dir.cleanup();
    }
  });
});
