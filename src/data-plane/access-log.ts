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
    // Client, method, upstream id and address are plain ASCII by construction (checked at the
    // request and in the config); the path is the only field that may need escaping.
    const line = `{"time":"${this.isoNow()}","worker":${r.worker},"client":"${r.client}","method":"${r.method}","path":${quote(r.path)},"status":${r.status},"bytes":${r.bytes},"upstream":"${r.upstream}","upstreamAddr":${quote(r.upstreamAddr)},"upstreamMs":${r.upstreamMs < 0 ? -1 : Math.round(r.upstreamMs * 1000) / 1000},"totalMs":${Math.round(r.totalMs * 1000) / 1000},"sticky":"${r.sticky}"}\n`;
    if (this.size + line.length > MAX_BUFFERED) {
      this.onDrop(1);
      return;
    }
    this.buf.push(line);
    this.size += line.length;
    if (this.size >= FLUSH_AT) this.flush();
  }

  private isoMs = 0;
  private iso = '';
  /** The time as ISO 8601, formatted once per millisecond. */
  private isoNow(): string {
    const now = Date.now();
    if (now !== this.isoMs) {
      this.isoMs = now;
      this.iso = new Date(now).toISOString();
    }
    return this.iso;
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
      if (this.idle) this.idle();
      else if (this.size >= FLUSH_AT) this.flush();
    });
  }

  /** Called when the in-flight write completes (close() waits for it to keep lines in order). */
  private idle: (() => void) | null = null;

  /**
   * Stops taking lines and writes what is buffered, after any write in flight so lines stay in
   * order; resolves once the file is closed.
   */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    clearInterval(this.timer);
    if (!this.writing) {
      this.finish();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.idle = () => {
        this.finish();
        resolve();
      };
    });
  }

  /** Best effort when the thread is dying: everything buffered, now (a write in flight may land after it). */
  closeNow(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.finish();
  }

  private finish(): void {
    try {
      while (this.size > 0) {
        const data = Buffer.from(this.take(), 'utf8');
        let off = 0;
        while (off < data.length) off += fs.writeSync(this.fd, data, off);
      }
    } catch (err) {
      this.onError(err as Error);
    }
    if (this.ownsFd && !this.writing) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // already closed
      }
    }
  }
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** Printable ASCII other than quote and backslash: safe inside a JSON string as it is. */
const PLAIN = /^[ !#-[\]-~]*$/;

function quote(s: string): string {
  return PLAIN.test(s) ? `"${s}"` : JSON.stringify(s);
}
