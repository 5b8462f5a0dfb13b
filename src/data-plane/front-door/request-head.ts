// The request head as clients send it (RFC 9112 §2-5), parsed incrementally: a head may arrive
// in any number of reads (a real network splits a 16 KiB head into 1,448-byte segments, a slow
// client sends it byte by byte), and every complete line is checked as soon as it is in, so a
// malformed request is refused at once rather than when (or if) its head ever ends.
//
//   *( CRLF )                                  empty lines before a request are skipped
//   method SP request-target SP HTTP-version CRLF
//   *( field-name ":" OWS field-value OWS CRLF )
//   CRLF
//
// Strict where leniency lets two parsers disagree about where a request ends (request
// smuggling): CRLF only (no bare LF, no CR alone), no obs-fold, no whitespace before the
// colon, no NUL or other control bytes in a field value. Field values may hold obs-text
// (bytes 0x80-0xFF): they are kept as latin1 strings, byte for byte.

/** Why a head was refused: `status` is what the client is answered (0: close without an answer). */
export interface HeadError {
  status: 400 | 431 | 505 | 0;
  /** Metric label (`tether_bad_requests_total{reason}`). */
  reason: HeadErrorReason;
  /** For the 400 body and the log: what was wrong, quoting a little of it. */
  detail: string;
}

export type HeadErrorReason =
  | 'bad_request_line'
  | 'bad_method'
  | 'bad_target'
  | 'bad_version'
  | 'h2_preface'
  | 'bare_lf'
  | 'bare_cr'
  | 'control_byte'
  | 'obs_fold'
  | 'space_before_colon'
  | 'bad_field_name'
  | 'head_too_large'
  | 'too_many_headers';

export interface HeadLimits {
  /** Request line plus fields plus the final CRLF; more is 431. */
  maxHeadBytes: number;
  /** Field lines; more is 431. */
  maxHeaders: number;
}

/** tchar (RFC 9110 §5.6.2): the bytes of a method and a field name. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** A whole field name of tchars, and a byte a field value may not hold (the tables below, as regexes). */
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// eslint-disable-next-line no-control-regex -- control bytes are exactly what it looks for
const BAD_VALUE_RE = /[\x00-\x08\x0a-\x1f\x7f]/;

/** Bytes allowed in a field value: HTAB, SP, VCHAR, obs-text. */
const VALUE_BYTE = new Uint8Array(256);
VALUE_BYTE[0x09] = 1;
for (let c = 0x20; c <= 0x7e; c++) VALUE_BYTE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE_BYTE[c] = 1;

/** Bytes allowed in a request-target: VCHAR and obs-text (raw UTF-8 paths are common). */
const TARGET_BYTE = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) TARGET_BYTE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) TARGET_BYTE[c] = 1;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;

const enum Stage {
  /** Before the request line (skipping empty lines). */
  Start,
  Fields,
  Done,
  Failed,
}

function quote(buf: Uint8Array, from: number, to: number): string {
  const end = Math.min(to, from + 40);
  let s = '';
  for (let i = from; i < end; i++) {
    const c = buf[i]!;
    s += c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : c === 0x5c ? '\\\\' : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return `'${s}${to > end ? '…' : ''}'`;
}

/** latin1 text of buf[from, to): one byte, one char (what Buffer's latin1Slice does, for any Uint8Array). */
function latin1(buf: Uint8Array, from: number, to: number): string {
  // Buffer's latin1Slice (what toString('latin1') calls, minus its argument checks).
  const b = buf as Uint8Array & { latin1Slice?: (from: number, to: number) => string };
  if (typeof b.latin1Slice === 'function') return b.latin1Slice(from, to);
  return Buffer.from(buf.buffer, buf.byteOffset + from, to - from).toString('latin1');
}

/**
 * One request head at a time. Feed it the head's bytes from its first byte: `parse(buf, start,
 * end)` with `start` at the head's first byte every time (more bytes appended after earlier
 * ones, in the same or a new buffer holding the same prefix). Lines already checked are not
 * scanned again, so a head sent byte by byte costs O(length), not O(length²).
 */
export class RequestHeadParser {
  method = '';
  /** The request-target as sent (origin-form, absolute-form, authority-form or '*'). */
  target = '';
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 (and later 1.x, which RFC 9110 says to treat as 1.1). */
  minor = 1;
  /** Field names, lower-cased, and their values (OWS trimmed), in order. */
  readonly names: string[] = [];
  readonly values: string[] = [];
  /** Bytes the head took (leading empty lines, request line, fields, final CRLF). */
  length = 0;
  error: HeadError | null = null;

  private stage = Stage.Start;
  /** Offset (from the head's first byte) of the first byte not yet part of a checked line. */
  private pos = 0;
  /** Where the request line starts (after skipped empty lines). */
  private lineStart = 0;
  /** Part of a line has arrived (see `started`). */
  private partial = false;

  constructor(public limits: HeadLimits) {}

  reset(): void {
    this.method = '';
    this.target = '';
    this.minor = 1;
    this.names.length = 0;
    this.values.length = 0;
    this.length = 0;
    this.error = null;
    this.stage = Stage.Start;
    this.pos = 0;
    this.lineStart = 0;
    this.partial = false;
  }

  /**
   * True once any byte of this head has been seen (empty lines before a request included: a
   * client dripping CRLFs must not keep pushing its head deadline back).
   */
  get started(): boolean {
    return this.stage !== Stage.Start || this.pos > 0 || this.partial;
  }

  /**
   * Parses buf[start, end). Returns the head's length (> 0) once complete, 0 when more bytes
   * are needed, -1 when the head is refused (`error` says how to answer).
   */
  parse(buf: Uint8Array, start: number, end: number): number {
    if (this.stage === Stage.Done) return this.length;
    if (this.stage === Stage.Failed) return -1;
    const limit = this.limits.maxHeadBytes;
    for (;;) {
      const lineAt = start + this.pos;
      // The end of the next line among the bytes not yet checked (memchr; bytes past `end`
      // may be stale, so a hit there is no hit).
      let lf = buf.indexOf(LF, lineAt);
      if (lf >= end) lf = -1;
      if (lf < 0) {
        // Incomplete line: refused at once only when it is already too long (its bytes are
        // checked when it ends, so every split of the input gets the same verdict).
        if (end > lineAt) this.partial = true;
        if (end - (start + this.lineStart) > limit) return this.fail(431, 'head_too_large', `request head over ${limit} bytes (--max-request-head-bytes)`);
        return 0;
      }
      // A line that passed the limit before its end: what a reader fed byte by byte saw first.
      if (lf - (start + this.lineStart) > limit) return this.fail(431, 'head_too_large', `request head over ${limit} bytes (--max-request-head-bytes)`);
      if (lf === lineAt || buf[lf - 1] !== CR) {
        if (lf === lineAt) return this.fail(400, 'bare_lf', 'a line ends in LF without CR');
        // A line ending in a bare LF: refused, never guessed at.
        return this.fail(400, 'bare_lf', `a line ends in LF without CR: ${quote(buf, lineAt, lf)}`);
      }
      const lineEnd = lf - 1; // the CR
      this.pos = lf + 1 - start;
      if (this.pos - this.lineStart > limit) return this.fail(431, 'head_too_large', `request head over ${limit} bytes (--max-request-head-bytes)`);
      if (this.stage === Stage.Start) {
        if (lineEnd === lineAt) {
          // An empty line before the request (RFC 9112 §2.2): skipped, not counted in the head.
          this.lineStart = this.pos;
          continue;
        }
        if (!this.requestLine(buf, lineAt, lineEnd)) return -1;
        this.stage = Stage.Fields;
        continue;
      }
      if (lineEnd === lineAt) {
        this.stage = Stage.Done;
        this.length = this.pos;
        return this.length;
      }
      if (!this.fieldLine(buf, lineAt, lineEnd)) return -1;
    }
  }

  private fail(status: HeadError['status'], reason: HeadErrorReason, detail: string): -1 {
    this.stage = Stage.Failed;
    this.error = { status, reason, detail };
    return -1;
  }

  private bad(status: HeadError['status'], reason: HeadErrorReason, detail: string): false {
    this.fail(status, reason, detail);
    return false;
  }

  /** `method SP target SP HTTP/1.x`, from `from` to the CR at `to`. */
  private requestLine(buf: Uint8Array, from: number, to: number): boolean {
    let i = from;
    while (i < to && TCHAR[buf[i]!] === 1) i++;
    if (i === from || i >= to || buf[i] !== SP) {
      if (i < to && buf[i] === CR) return this.bad(400, 'bare_cr', `CR inside the request line: ${quote(buf, from, to)}`);
      if (i === from || i >= to || buf[i]! < 0x20) return this.bad(400, 'bad_request_line', `not an HTTP request line: ${quote(buf, from, to)}`);
      return this.bad(400, 'bad_method', `invalid method in request line ${quote(buf, from, to)}`);
    }
    const methodEnd = i;
    const targetAt = ++i;
    while (i < to && TARGET_BYTE[buf[i]!] === 1) i++;
    if (i === targetAt || i >= to || buf[i] !== SP) {
      if (i === targetAt) return this.bad(400, 'bad_request_line', `no request target (or more than one space) in ${quote(buf, from, to)}`);
      if (i < to && buf[i] === CR) return this.bad(400, 'bare_cr', `CR inside the request line: ${quote(buf, from, to)}`);
      if (i < to && buf[i] !== SP) return this.bad(400, 'bad_target', `byte 0x${buf[i]!.toString(16).padStart(2, '0')} in the request target ${quote(buf, targetAt, to)}`);
      return this.bad(400, 'bad_request_line', `no HTTP version in ${quote(buf, from, to)}`);
    }
    const targetEnd = i;
    const v = i + 1;
    // HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
    if (to - v !== 8 || buf[v] !== 0x48 || buf[v + 1] !== 0x54 || buf[v + 2] !== 0x54 || buf[v + 3] !== 0x50 || buf[v + 4] !== 0x2f || !isDigit(buf[v + 5]!) || buf[v + 6] !== 0x2e || !isDigit(buf[v + 7]!)) {
      return this.bad(400, 'bad_request_line', `invalid HTTP version in ${quote(buf, from, to)}`);
    }
    const major = buf[v + 5]! - 0x30;
    const minor = buf[v + 7]! - 0x30;
    this.method = latin1(buf, from, methodEnd);
    this.target = latin1(buf, targetAt, targetEnd);
    if (major === 2 && minor === 0 && this.method === 'PRI' && this.target === '*') {
      return this.bad(0, 'h2_preface', 'HTTP/2 connection preface on an HTTP/1.1 listener');
    }
    if (major !== 1) return this.bad(505, 'bad_version', `HTTP/${major}.${minor} is not served here (HTTP/1.0 and HTTP/1.1 are)`);
    this.minor = minor === 0 ? 0 : 1;
    return true;
  }

  /** `name ":" OWS value OWS`, from `from` to the CR at `to`. */
  private fieldLine(buf: Uint8Array, from: number, to: number): boolean {
    const first = buf[from]!;
    if (first === SP || first === HTAB) return this.bad(400, 'obs_fold', `a folded header line (obs-fold): ${quote(buf, from, to)}`);
    if (this.names.length >= this.limits.maxHeaders) return this.bad(431, 'too_many_headers', `more than ${this.limits.maxHeaders} header fields (--max-request-headers)`);
    // The common case, checked by the regex engine on the strings we build anyway instead of a
    // JavaScript loop per byte; anything it does not accept takes the byte loop below, which
    // finds out exactly what is wrong (and accepts the same lines: the two must agree).
    const colon = buf.indexOf(0x3a, from);
    if (colon > from && colon < to) {
      const name = latin1(buf, from, colon);
      if (TOKEN_RE.test(name)) {
        let v = colon + 1;
        while (v < to && (buf[v] === SP || buf[v] === HTAB)) v++;
        let ve = to;
        while (ve > v && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
        const value = v === ve ? '' : latin1(buf, v, ve);
        if (!BAD_VALUE_RE.test(value)) {
          this.names.push(name.toLowerCase());
          this.values.push(value);
          return true;
        }
      }
    }
    let i = from;
    while (i < to && TCHAR[buf[i]!] === 1) i++;
    if (i === to || buf[i] !== 0x3a) {
      if (i < to && (buf[i] === SP || buf[i] === HTAB) && i > from) return this.bad(400, 'space_before_colon', `whitespace between a header name and its colon: ${quote(buf, from, to)}`);
      if (i < to && buf[i] === CR) return this.bad(400, 'bare_cr', `CR inside a header line: ${quote(buf, from, to)}`);
      if (i < to && buf[i]! < 0x20) return this.bad(400, 'control_byte', `control byte 0x${buf[i]!.toString(16).padStart(2, '0')} in a header name: ${quote(buf, from, to)}`);
      return this.bad(400, 'bad_field_name', `invalid header name in ${quote(buf, from, to)}`);
    }
    if (i === from) return this.bad(400, 'bad_field_name', `empty header name in ${quote(buf, from, to)}`);
    const nameEnd = i;
    i++;
    while (i < to && (buf[i] === SP || buf[i] === HTAB)) i++;
    const valueAt = i;
    for (; i < to; i++) {
      const c = buf[i]!;
      if (VALUE_BYTE[c] !== 1) {
        if (c === CR) return this.bad(400, 'bare_cr', `CR inside a header value: ${quote(buf, from, to)}`);
        return this.bad(400, 'control_byte', `control byte 0x${c.toString(16).padStart(2, '0')} in a header value: ${quote(buf, from, to)}`);
      }
    }
    let valueEnd = to;
    while (valueEnd > valueAt && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HTAB)) valueEnd--;
    this.names.push(lowerName(buf, from, nameEnd));
    this.values.push(valueAt === valueEnd ? '' : latin1(buf, valueAt, valueEnd));
    return true;
  }
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** Names are mostly Title-Case: build the lower-cased string straight from the bytes. */
function lowerName(buf: Uint8Array, from: number, to: number): string {
  let upper = false;
  for (let i = from; i < to; i++) {
    const c = buf[i]!;
    if (c >= 0x41 && c <= 0x5a) {
      upper = true;
      break;
    }
  }
  const s = latin1(buf, from, to);
  return upper ? s.toLowerCase() : s;
}
