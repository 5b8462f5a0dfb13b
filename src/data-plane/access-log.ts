// Access log lines from a worker: JSON, one per request, appended to a file (or stdout) shared by
// every worker. Lines are batched and written off the request path; each write() carries whole
// lines only, and no more than the destination takes atomically (a pipe: PIPE_BUF), so lines
// from different workers never interleave. A balancer must not slow down or block because a disk
// is slow: past a buffer cap, lines are dropped and counted instead.
import fs from 'node:fs';

/** A pipe writes up to this atomically (Linux PIPE_BUF). */
const PIPE_ATOMIC = 4096;
const FILE_CHUNK = 64 * 1024;
const FLUSH_AT = 32 * 1024;
const FLUSH_EVERY_MS = 200;
const MAX_BUFFERED = 16 * 1024 * 1024;

export interface AccessRecord {
  worker: number;
  client: string;
  method: string;
  path: string;
  status: number;
  /** Response body bytes sent to the client. */
  bytes: number;
  /** Backend id, or '' when none was reached. */
  upstream: string;
  upstreamAddr: string;
  /** Request sent → response head, ms (-1: no response head). */
  upstreamMs: number;
  /** Request in → response done, ms. */
  totalMs: number;
  /** hit, failover, miss, invalid, learned, none. */
  sticky: string;
}

export class AccessLog {
  private buf: string[] = [];
  private size = 0;
  private writing = false;
  private closed = false;
  private readonly chunk: number;
  private readonly timer: NodeJS.Timeout;

  private constructor(
    private readonly fd: number,
    private readonly ownsFd: boolean,
    private readonly onError: (err: Error) => void,
    /** Lines dropped because the destination could not keep up (or failed). */
    private readonly onDrop: (lines: number) => void,
  ) {
    this.chunk = fs.fstatSync(fd).isFile() ? FILE_CHUNK : PIPE_ATOMIC;
    this.timer = setInterval(() => this.flush(), FLUSH_EVERY_MS);
    this.timer.unref();
  }

  /** `-`: standard output; otherwise a file opened for appending (created if absent). */
  static open(dest: string, onError: (err: Error) => void, onDrop: (lines: number) => void): AccessLog {
    if (dest === '-') return new AccessLog(1, false, onError, onDrop);
    return new AccessLog(fs.openSync(dest, 'a', 0o640), true, onError, onDrop);
  }

  write(r: AccessRecord): void {
    if (this.closed) return;
    const line = `{"time":"${new Date().toISOString()}","worker":${r.worker},"client":${JSON.stringify(r.client)},"method":${JSON.stringify(r.method)},"path":${JSON.stringify(r.path)},"status":${r.status},"bytes":${r.bytes},"upstream":${JSON.stringify(r.upstream)},"upstreamAddr":${JSON.stringify(r.upstreamAddr)},"upstreamMs":${r.upstreamMs < 0 ? -1 : Math.round(r.upstreamMs * 1000) / 1000},"totalMs":${Math.round(r.totalMs * 1000) / 1000},"sticky":"${r.sticky}"}\n`;
    if (this.size + line.length > MAX_BUFFERED) {
      this.onDrop(1);
      return;
    }
    this.buf.push(line);
    this.size += line.length;
    if (this.size >= FLUSH_AT) this.flush();
  }

  /** Takes whole lines up to the chunk size (a longer single line goes alone). */
  private take(): string {
    let out = '';
    let n = 0;
    while (n < this.buf.length && (out.length === 0 || out.length + this.buf[n]!.length <= this.chunk)) out += this.buf[n++]!;
    this.buf.splice(0, n);
    this.size -= out.length;
    return out;
  }

  private flush(): void {
    if (this.writing || this.size === 0) return;
    this.writing = true;
    const text = this.take();
    const data = Buffer.from(text, 'utf8');
    fs.write(this.fd, data, 0, data.length, null, (err) => {
      this.writing = false;
      if (err) {
        this.onDrop(countLines(text));
        this.onError(err);
      }
      if (this.size >= FLUSH_AT || (this.closed && this.size > 0)) this.flush();
    });
  }

  /** Writes what is buffered, synchronously (the worker is exiting), and closes the file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    try {
      while (this.size > 0) {
        const data = Buffer.from(this.take(), 'utf8');
        let off = 0;
        while (off < data.length) off += fs.writeSync(this.fd, data, off);
      }
    } catch (err) {
      this.onError(err as Error);
    }
    // An async write may still be in flight; its fd stays open until the thread exits.
    if (this.ownsFd && !this.writing) fs.closeSync(this.fd);
  }
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}
