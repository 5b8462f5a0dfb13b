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
  /** Request sent → response head, ms (-1: no response head); logged as whole µs (upstreamUs). */
  upstreamMs: number;
  /** Request in → response done, ms; logged as whole µs (totalUs). */
  totalMs: number;
  /** hit, failover, miss, invalid, learned, none. */
  sticky: string;
  /** Over HTTPS: the TLS version and cipher suite (the fields are left out of a plain request's line). */
  tls: string;
  cipher: string;
}

export class AccessLog {
  /** Filled buffers waiting to be written, oldest first; the one being filled is `cur`. */
  private readonly queue: Buffer[] = [];
  /** The descriptor each queued buffer goes to: lines taken before a reopen go to the old file. */
  private readonly queueFd: number[] = [];
  private queuedBytes = 0;
  private cur: Buffer;
  private used = 0;
  private writing = false;
  private closed = false;
  private chunk: number;
  private readonly timer: NodeJS.Timeout;
  /** Called when the in-flight write completes (close() waits for it to keep lines in order). */
  private idle: (() => void) | null = null;

  private fd: number;
  private ownsFd: boolean;
  /** Descriptors replaced by reopen(), closed once the lines queued for them are written. */
  private readonly retired = new Set<number>();

  private constructor(
    fd: number,
    ownsFd: boolean,
    private readonly onError: (err: Error) => void,
    /** Lines dropped because the destination could not keep up (or failed). */
    private readonly onDrop: (lines: number) => void,
  ) {
    this.fd = fd;
    this.ownsFd = ownsFd;
    this.chunk = chunkFor(fd);
    this.cur = Buffer.allocUnsafe(this.chunk);
    this.timer = setInterval(() => this.flush(), FLUSH_EVERY_MS);
    this.timer.unref();
  }

  /** `-`: standard output; otherwise a file opened for appending (created if absent). */
  static open(dest: string, onError: (err: Error) => void, onDrop: (lines: number) => void): AccessLog {
    const { fd, owns } = openDest(dest);
    return new AccessLog(fd, owns, onError, onDrop);
  }

  /**
   * Opens `dest` again (log rotation: the file was renamed away; or a new path from a reload).
   * Lines taken before this call still go to the old file, in order, as nginx does on reopen;
   * the old file is closed once they are written. Throws (and keeps the current file) if
   * `dest` cannot be opened.
   */
  reopen(dest: string): void {
    if (this.closed) return;
    const { fd, owns } = openDest(dest);
    this.rotate();
    if (this.ownsFd && this.fd !== fd) this.retired.add(this.fd);
    this.fd = fd;
    this.ownsFd = owns;
    const chunk = chunkFor(fd);
    if (chunk !== this.chunk) {
      this.chunk = chunk;
      this.cur = Buffer.allocUnsafe(chunk);
    }
    this.closeRetired();
    this.flush();
  }

  /** Closes replaced descriptors that have nothing left queued or in flight. */
  private closeRetired(): void {
    for (const fd of this.retired) {
      if ((this.writing && this.writingFd === fd) || this.queueFd.includes(fd)) continue;
      this.retired.delete(fd);
      closeQuietly(fd);
    }
  }

  write(r: AccessRecord): void {
    if (this.closed) return;
    // Client, method, upstream id and address are plain ASCII by construction (checked at the
    // request and in the config); the path is the only field that may need escaping. Times are
    // whole microseconds: integers format far faster than fractions.
    const line = `{"time":"${this.isoNow()}","worker":${r.worker},"client":"${r.client}","method":"${r.method}","path":${quote(r.path)},"status":${r.status},"bytes":${r.bytes},"upstream":"${r.upstream}","upstreamAddr":${quote(r.upstreamAddr)},"upstreamUs":${r.upstreamMs < 0 ? -1 : Math.round(r.upstreamMs * 1000)},"totalUs":${Math.round(r.totalMs * 1000)},"sticky":"${r.sticky}"${r.tls ? `,"tls":"${r.tls}","cipher":"${r.cipher}"` : ''}}\n`;
    // Whole lines per buffer: rotate when the worst case (3 UTF-8 bytes per char) may not fit.
    const worst = line.length * 3;
    if (this.used + worst > this.chunk && this.used > 0) this.rotate();
    if (worst > this.chunk) {
      // A line longer than a chunk goes alone, in its own buffer.
      this.enqueue(Buffer.from(line, 'utf8'));
      return;
    }
    this.used += this.cur.write(line, this.used, 'utf8');
    if (this.queuedBytes >= FLUSH_AT) this.flush();
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

  /** The buffer being filled joins the queue; a fresh one takes its place. */
  private rotate(): void {
    if (this.used === 0) return;
    this.enqueue(this.cur.subarray(0, this.used));
    this.cur = Buffer.allocUnsafe(this.chunk);
    this.used = 0;
  }

  private enqueue(b: Buffer): void {
    if (this.queuedBytes + b.length > MAX_BUFFERED) {
      this.onDrop(countLines(b));
      return;
    }
    this.queue.push(b);
    this.queueFd.push(this.fd);
    this.queuedBytes += b.length;
  }

  /** The descriptor of the write in flight. */
  private writingFd = -1;

  private flush(): void {
    if (this.writing) return;
    if (this.queue.length === 0) this.rotate();
    const data = this.queue.shift();
    if (!data) return;
    const fd = this.queueFd.shift()!;
    this.queuedBytes -= data.length;
    this.writing = true;
    this.writingFd = fd;
    fs.write(fd, data, 0, data.length, null, (err) => {
      this.writing = false;
      if (this.retired.size > 0) this.closeRetired();
      if (err) {
        this.onDrop(countLines(data));
        this.onError(err);
      }
      if (this.idle) this.idle();
      // The old file's lines go out promptly, so it can be closed (and compressed by logrotate).
      else if (this.queuedBytes >= FLUSH_AT || this.retired.size > 0) this.flush();
    });
  }

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
    this.rotate();
    const fds = this.queueFd.splice(0);
    try {
      for (const [i, data] of this.queue.splice(0).entries()) {
        let off = 0;
        while (off < data.length) off += fs.writeSync(fds[i]!, data, off);
      }
      this.queuedBytes = 0;
    } catch (err) {
      this.onError(err as Error);
    }
    if (!this.writing) {
      for (const fd of this.retired) closeQuietly(fd);
      this.retired.clear();
      if (this.ownsFd) closeQuietly(this.fd);
    }
  }
}

function openDest(dest: string): { fd: number; owns: boolean } {
  if (dest === '-') return { fd: 1, owns: false };
  return { fd: fs.openSync(dest, 'a', 0o640), owns: true };
}

/** Whole buffers to a file; at most what a pipe (or terminal, socket) takes atomically otherwise. */
function chunkFor(fd: number): number {
  return fs.fstatSync(fd).isFile() ? FILE_CHUNK : PIPE_ATOMIC;
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}

function countLines(data: Buffer): number {
  let n = 0;
  for (let i = data.indexOf(10); i >= 0; i = data.indexOf(10, i + 1)) n++;
  return n;
}

/** Printable ASCII other than quote and backslash: safe inside a JSON string as it is. */
const PLAIN = /^[ !#-[\]-~]*$/;

function quote(s: string): string {
  return PLAIN.test(s) ? `"${s}"` : JSON.stringify(s);
}
