// Incremental HTTP/1.1 response parser for upstream keep-alive connections, plus the few
// request-side helpers the writer needs. Hot path: byte loops over Buffers, no regexes.
//
// What it reads (RFC 9112), one response after each expect():
//
//   status-line   = "HTTP/1." ("0" / "1") SP 3DIGIT [ SP reason ] CRLF   ; reason may be empty,
//                                                                        ; "HTTP/1.1 200" CRLF accepted
//   field-line    = token ":" OWS [ value ] OWS CRLF                      ; value: HTAB SP VCHAR obs-text
//   head          = status-line *field-line CRLF                         ; ≤ maxHeaderBytes, ≤ maxHeaders
//   1xx (not 101) = head, then another head follows                      ; onInformational
//   body          = nothing            HEAD request, 1xx, 204, 304
//                 / chunked            Transfer-Encoding whose final coding is "chunked"
//                 / until EOF          Transfer-Encoding otherwise, or no Content-Length
//                 / Content-Length bytes
//   chunk         = 1*HEXDIG *chunk-ext CRLF data CRLF                    ; size < 2^53
//   last-chunk    = 1*"0" *chunk-ext CRLF *field-line CRLF                ; trailers checked, dropped
//   chunk-ext     = ";" token [ "=" ( token / quoted-string ) ]           ; checked, ignored
//
// Strictness: llhttp's strict default (what Node's http client applies), tightened where a proxy
// must not guess. Where we differ from llhttp 9 (test/integration/codec-differential.test.ts asserts each):
// - CRLF everywhere: a bare LF, or a CR not followed by LF, is an error (as llhttp).
// - obs-fold, whitespace before ":", empty or non-token names, CTLs or DEL in values: HPE_INVALID_HEADER (as llhttp).
// - Only "HTTP/1.0" and "HTTP/1.1", status 100–999, no CTLs in the reason, no empty line before the
//   status line: HPE_INVALID_STATUS (llhttp also takes HTTP/0.9 and HTTP/2.0, status 000–099,
//   CTLs in the reason, and skips leading CRLFs).
// - Content-Length: repeated fields or a list ("5, 5") are accepted when all values are equal, else
//   HPE_INVALID_CONTENT_LENGTH (llhttp rejects any repeat or list).
// - Transfer-Encoding with Content-Length: Transfer-Encoding frames the body and the connection is not
//   reused (RFC 9112 §6.3; llhttp rejects the response). "chunked" twice, or with parameters:
//   HPE_INVALID_TRANSFER_ENCODING (llhttp frames "chunked, chunked" as chunked, and
//   "chunked;a=b" as close-delimited).
// - HTTP/1.0 with Transfer-Encoding: framed by it, then the connection is closed (RFC 9112 §6.1;
//   llhttp reuses it when the response says keep-alive).
// - A HEAD, 204 or 304 response ends at its empty line whatever its framing fields say, and stays
//   reusable (Node drops the connection after a HEAD response that would be close-delimited).
// - 1xx responses never end the exchange, even as HTTP/1.0 or with "Connection: close" (llhttp
//   then refuses the final response with HPE_CLOSED_CONNECTION).
// - Chunk sizes: hex only, no whitespace, < 2^53; extensions as llhttp's strict grammar except that
//   "=" needs a value; the size line capped at maxHeaderBytes (llhttp has no cap).
// - 101: HPE_UNSUPPORTED_101, upgrades are not proxied through this codec (Node's client, with no
//   'upgrade' listener, delivers nothing either).
// - Errors are reported at the first offending byte (a head outgrowing maxHeaderBytes at that
//   byte's offset), so every split of the input gives the same events and the same error.

/** Stable error codes, named after llhttp's where one exists. */
export type ParseErrorCode =
  | 'HPE_INVALID_STATUS'
  | 'HPE_INVALID_HEADER'
  | 'HPE_HEADER_OVERFLOW'
  | 'HPE_INVALID_CONTENT_LENGTH'
  | 'HPE_INVALID_TRANSFER_ENCODING'
  | 'HPE_INVALID_CHUNK'
  | 'HPE_UNEXPECTED_DATA'
  | 'HPE_PREMATURE_EOF'
  | 'HPE_UNSUPPORTED_101';

export class UpstreamParseError extends Error {
  readonly code: ParseErrorCode;
  constructor(code: ParseErrorCode, message: string) {
    super(message);
    this.name = 'UpstreamParseError';
    this.code = code;
  }
}

type Framing = 'none' | 'length' | 'chunked' | 'close';

export interface HeadInfo {
  /** The connection may carry another request after onEnd. */
  keepAlive: boolean;
  framing: Framing;
  /** -1 unless framing === 'length'. */
  contentLength: number;
  httpMinor: number;
}

export interface ResponseHandlers {
  /** Final (non-1xx) response head. headers: flat [name0, value0, …], names as received, values trimmed of OWS. */
  onHead(status: number, reason: string, headers: string[], info: HeadInfo): void;
  /** 1xx informational responses other than 101 (100 Continue, 103 Early Hints); parsing continues with the next head. */
  onInformational(status: number, headers: string[]): void;
  /** Body bytes, de-chunked. The Buffer may be a view into the input: consume or copy synchronously. */
  onBody(chunk: Buffer): void;
  /** Message complete. After this the connection is reusable iff info.keepAlive. */
  onEnd(): void;
}

export interface ResponseParserOptions {
  /** Limit on the bytes of one head (status line, fields, CRLFs), and separately of one trailer section. Default 64 KiB. */
  maxHeaderBytes?: number;
  /** Limit on the number of fields in one head or trailer section. Default 128. */
  maxHeaders?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const COMMA = 0x2c;
const SEMI = 0x3b;

/** RFC 9110 tchar. */
const TCHAR = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;

/** Bytes allowed inside a field value or reason phrase: HTAB, SP, VCHAR, obs-text. */
const FIELD_BYTE = new Uint8Array(256);
FIELD_BYTE[HTAB] = 1;
for (let c = 0x20; c <= 0x7e; c++) FIELD_BYTE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) FIELD_BYTE[c] = 1;

/** Hex digit value + 1 (0 = not a hex digit). */
const HEX = new Uint8Array(256);
for (let d = 0; d < 10; d++) HEX[0x30 + d] = d + 1;
for (let d = 0; d < 6; d++) {
  HEX[0x41 + d] = d + 11;
  HEX[0x61 + d] = d + 11;
}

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (ch) => ch.charCodeAt(0));
const LOWER_CONTENT_LENGTH = ascii('content-length');
const LOWER_TRANSFER_ENCODING = ascii('transfer-encoding');
const LOWER_CONNECTION = ascii('connection');
const LOWER_CLOSE = ascii('close');
const LOWER_KEEP_ALIVE = ascii('keep-alive');
const LOWER_CHUNKED = ascii('chunked');
const HTTP_1_DOT = ascii('HTTP/1.');
const EMPTY = Buffer.alloc(0);
/** Largest line buffer kept from one response to the next. */
const PENDING_KEEP = 4096;
/** "HTTP/1.1 200 " or "HTTP/1.1 200\r": the status line up to its reason. */
const STATUS_PREFIX = 13;

/** Case-insensitive match of buf[start, end) against a lower-case ASCII literal of letters and "-". */
function matchesLower(buf: Buffer, start: number, end: number, lower: Uint8Array): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    // | 0x20 folds A-Z onto a-z and leaves "-" (0x2d) alone; no other tchar folds onto a letter or "-".
    if ((buf[start + i]! | 0x20) !== lower[i]) return false;
  }
  return true;
}

const isOws = (c: number): boolean => c === SP || c === HTAB;

type LatinSlicer = { latin1Slice(start: number, end: number): string };
// Buffer#latin1Slice skips toString's argument normalisation; fall back if a runtime lacks it.
const latin1: (buf: Buffer, start: number, end: number) => string =
  typeof (Buffer.prototype as unknown as Partial<LatinSlicer>).latin1Slice === 'function'
    ? (buf, start, end) => (buf as unknown as LatinSlicer).latin1Slice(start, end)
    : (buf, start, end) => buf.toString('latin1', start, end);

const byteName = (c: number | undefined): string =>
  c === undefined ? 'end of input' : `0x${c.toString(16).padStart(2, '0')}`;

// Parser states.
const S_IDLE = 0; // no response expected: any byte is an error
const S_HEAD = 1; // reading status line and fields (also the heads of 1xx responses)
const S_BODY_LENGTH = 2;
const S_BODY_CLOSE = 3;
const S_CHUNK_DATA = 4;
const S_TRAILERS = 5; // field lines after the last chunk, up to the empty line
const S_DEAD = 6; // after an error, until reset()
// Chunk framing, byte by byte. S_CHUNK_SIZE..S_CHUNK_EXT_QUOTED_END are the chunk-size line after its first digit.
const S_CHUNK_SIZE_START = 10; // first hex digit of a chunk size
const S_CHUNK_SIZE = 11; // more hex digits, ";" or CR
const S_CHUNK_EXT_NAME_START = 12; // after ";"
const S_CHUNK_EXT_NAME = 13;
const S_CHUNK_EXT_VALUE_START = 14; // after "="
const S_CHUNK_EXT_VALUE = 15; // token value
const S_CHUNK_EXT_QUOTED = 16; // inside a quoted-string value
const S_CHUNK_EXT_QUOTED_PAIR = 17; // after a backslash in a quoted-string
const S_CHUNK_EXT_QUOTED_END = 18; // after the closing quote
const S_CHUNK_SIZE_LF = 19;
const S_CHUNK_DATA_CR = 20;
const S_CHUNK_DATA_LF = 21;

export class ResponseParser {
  private readonly handlers: ResponseHandlers;
  private readonly maxHeaderBytes: number;
  private readonly maxHeaders: number;

  private state = S_IDLE;
  private error: Error | null = null;
  /** Bumped by reset(): lets execute() notice that a handler discarded the connection. */
  private generation = 0;
  private requestWasHead = false;

  // Head (or trailer section) in progress.
  /** Bumped whenever a new head or trailer section starts. */
  private section = 0;
  private lineCount = 0;
  private headBytes = 0;
  /** A line split across execute() calls, copied here until its LF arrives. */
  private pending: Buffer = EMPTY;
  private pendingLen = 0;
  /** The pending line is a field line whose ":" has arrived. */
  private pendingInValue = false;
  /** Lines parsed from one input buffer whose strings are not made yet (see flushStrings). */
  private spanBuf: Buffer | null = null;
  private spanStart = 0;
  private spanEnd = 0;
  /** nameStart, nameEnd, valueStart, valueEnd per field; reused, valid up to spanLen. */
  private readonly spanFields: number[] = [];
  private spanLen = 0;
  private reasonStart = 0;
  private reasonEnd = 0;

  // The response whose head is being read.
  private status = 0;
  private reason = '';
  private httpMinor = 1;
  private headers: string[] = [];
  private fieldCount = 0;
  private contentLength = -1;
  private transferEncoding = false;
  private chunkedCount = 0;
  private chunkedIsFinal = false;
  private connectionClose = false;
  private connectionKeepAlive = false;

  // Body in progress.
  private remaining = 0;
  private chunkLineBytes = 0;

  constructor(handlers: ResponseHandlers, opts: ResponseParserOptions = {}) {
    this.handlers = handlers;
    this.maxHeaderBytes = positiveInt(opts.maxHeaderBytes, 64 * 1024, 'maxHeaderBytes');
    this.maxHeaders = positiveInt(opts.maxHeaders, 128, 'maxHeaders');
  }

  /** True between expect() and onEnd, and after an error until reset(): the connection is not free. */
  get busy(): boolean {
    return this.state !== S_IDLE;
  }

  /** Arms the parser for the response to a request with this method; HEAD means no body whatever the headers say. */
  expect(method: string): void {
    if (this.state !== S_IDLE) {
      throw new Error(
        this.state === S_DEAD
          ? 'ResponseParser.expect() after a parse error: call reset() first'
          : 'ResponseParser.expect() while a response is still in progress',
      );
    }
    this.requestWasHead = method === 'HEAD';
    this.startHead();
    this.state = S_HEAD;
  }

  /** Back to idle, dropping any partial response (the connection is being discarded). */
  reset(): void {
    this.state = S_IDLE;
    this.error = null;
    this.pendingLen = 0;
    this.headers = [];
    this.clearSpan();
    this.generation++;
  }

  /**
   * Feeds bytes from the upstream. Throws UpstreamParseError on malformed input, after which the
   * parser is dead (every call throws the same error) until reset(). A handler that calls reset()
   * stops this call; one that calls expect() from onEnd has the remaining bytes parsed as the next response.
   */
  execute(data: Buffer): void {
    if (this.state === S_DEAD) throw this.error!;
    const generation = this.generation;
    const end = data.length;
    let pos = 0;
    try {
      while (pos < end) {
        switch (this.state) {
          case S_HEAD:
          case S_TRAILERS:
            pos = this.readLines(data, pos, end);
            break;
          case S_BODY_LENGTH:
            pos = this.readLengthBody(data, pos, end);
            break;
          case S_BODY_CLOSE:
            this.handlers.onBody(pos === 0 ? data : data.subarray(pos));
            pos = end;
            break;
          case S_CHUNK_DATA:
            pos = this.readChunkData(data, pos, end);
            break;
          case S_IDLE:
            throw this.fail('HPE_UNEXPECTED_DATA', `${end - pos} bytes received with no response expected`);
          case S_DEAD:
            // A handler threw a parse error of ours? Cannot happen; stop rather than spin.
            throw this.error!;
          default:
            pos = this.readChunkFraming(data, pos, end);
        }
        if (this.generation !== generation) return;
      }
    } catch (err) {
      if (this.generation === generation && this.state !== S_DEAD) {
        this.state = S_DEAD;
        this.error = err as Error;
      }
      throw err;
    }
  }

  /** The upstream sent EOF: ends a close-delimited body; mid-response it throws HPE_PREMATURE_EOF. */
  finish(): void {
    switch (this.state) {
      case S_IDLE:
      case S_DEAD:
        return;
      case S_BODY_CLOSE:
        this.state = S_IDLE;
        this.handlers.onEnd();
        return;
      default: {
        const where =
          this.state === S_HEAD
            ? this.lineCount === 0 && this.pendingLen === 0
              ? 'before the status line'
              : 'in the response head'
            : this.state === S_BODY_LENGTH
              ? `with ${this.remaining} body bytes outstanding`
              : 'in a chunked body';
        throw this.fail('HPE_PREMATURE_EOF', `upstream closed the connection ${where}`);
      }
    }
  }

  private fail(code: ParseErrorCode, message: string): UpstreamParseError {
    const err = new UpstreamParseError(code, message);
    this.state = S_DEAD;
    this.error = err;
    return err;
  }

  private startHead(): void {
    this.section++;
    this.lineCount = 0;
    this.headBytes = 0;
    this.pendingLen = 0;
    // Don't keep a large head's buffer alive on every idle pooled connection.
    if (this.pending.length > PENDING_KEEP) this.pending = EMPTY;
    this.status = 0;
    this.reason = '';
    this.httpMinor = 1;
    this.headers = [];
    this.clearSpan();
    this.fieldCount = 0;
    this.contentLength = -1;
    this.transferEncoding = false;
    this.chunkedCount = 0;
    this.chunkedIsFinal = false;
    this.connectionClose = false;
    this.connectionKeepAlive = false;
  }

  // ---- head and trailer lines ------------------------------------------------------------

  /**
   * Consumes whole lines of a head or trailer section from data[pos, end). A line cut off by
   * the end of data is copied to `pending` and finished on the next call. Each line is parsed
   * only up to the section's byte budget, so the first bad byte decides the error wherever the
   * input was split.
   */
  private readLines(data: Buffer, pos: number, end: number): number {
    const state = this.state;
    if (this.pendingLen > 0) {
      pos = this.finishPendingLine(data, pos, end);
      if (this.pendingLen > 0 || this.state !== state) return pos;
    }
    while (pos < end) {
      const budgetEnd = pos + this.maxHeaderBytes - this.headBytes;
      const limit = budgetEnd < end ? budgetEnd : end;
      const section = this.section;
      const next = this.parseLine(data, pos, limit);
      if (next < 0) {
        if (limit < end) throw this.overflow();
        this.flushStrings();
        this.appendPending(data, pos, end);
        this.pendingInValue = !this.inStatusLine() && data.indexOf(COLON, pos) >= 0;
        return end;
      }
      // A section ended (head, 1xx head or trailers): let execute() look at the new state.
      if (this.section !== section || this.state !== state) return next;
      this.headBytes += next - pos;
      pos = next;
    }
    this.flushStrings();
    return pos;
  }

  /**
   * Makes the strings of the lines parsed so far from one input buffer: one latin1 decode of
   * their span, then a slice per name and value (17 native decodes cost ~4x as much). Runs
   * before execute() returns, as the caller may reuse the buffer.
   */
  private flushStrings(): void {
    const buf = this.spanBuf;
    if (buf === null) return;
    const base = this.spanStart;
    const text = latin1(buf, base, this.spanEnd);
    if (this.reasonEnd > this.reasonStart) this.reason = text.slice(this.reasonStart - base, this.reasonEnd - base);
    const offsets = this.spanFields;
    const headers = this.headers;
    for (let k = 0; k < this.spanLen; k += 4) {
      const valueStart = offsets[k + 2]!;
      const valueEnd = offsets[k + 3]!;
      headers.push(text.slice(offsets[k]! - base, offsets[k + 1]! - base), valueEnd > valueStart ? text.slice(valueStart - base, valueEnd - base) : '');
    }
    this.clearSpan();
  }

  private clearSpan(): void {
    this.spanBuf = null;
    this.spanLen = 0;
    this.reasonStart = this.reasonEnd = 0;
  }

  private finishPendingLine(data: Buffer, pos: number, end: number): number {
    const lf = data.indexOf(LF, pos);
    const take = (lf < 0 ? end : lf + 1) - pos;
    const budget = this.maxHeaderBytes - this.headBytes;
    if (this.pendingLen + take > budget) {
      // The line outgrows the budget: report an earlier bad byte if there is one, else overflow.
      this.appendPending(data, pos, pos + budget - this.pendingLen);
      this.parseLine(this.pending, 0, this.pendingLen);
      throw this.overflow();
    }
    const before = this.pendingLen;
    this.appendPending(data, pos, pos + take);
    if (lf < 0) {
      this.checkPending(before);
      return end;
    }
    const len = this.pendingLen;
    this.pendingLen = 0;
    this.headBytes += len;
    this.parseLine(this.pending, 0, len);
    return lf + 1;
  }

  /**
   * Finds a bad byte in a still incomplete pending line as soon as it arrives, as parsing the
   * whole input at once would. Bytes that cannot be wrong where they are (tchar in a name,
   * field bytes in a value or reason) are skipped; anything else re-parses the line, which
   * happens a bounded number of times per line (the ":", a CR, the fixed status-line prefix).
   */
  private checkPending(checked: number): void {
    const buf = this.pending;
    const len = this.pendingLen;
    let reparse = checked < STATUS_PREFIX || buf[checked - 1] === CR;
    if (!reparse) {
      const allowed = this.pendingInValue || this.inStatusLine() ? FIELD_BYTE : TCHAR;
      for (let i = checked; i < len; i++) {
        if (allowed[buf[i]!] === 0) {
          reparse = true;
          break;
        }
      }
    }
    if (!reparse) return;
    this.parseLine(buf, 0, len); // throws at a bad byte, else -1: there is no LF in it
    if (!this.pendingInValue && !this.inStatusLine()) this.pendingInValue = buf.subarray(0, len).indexOf(COLON) >= 0;
  }

  private inStatusLine(): boolean {
    return this.state === S_HEAD && this.lineCount === 0;
  }

  private appendPending(data: Buffer, start: number, end: number): void {
    const need = this.pendingLen + end - start;
    if (need > this.pending.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.pending.length * 2, 256));
      this.pending.copy(grown, 0, 0, this.pendingLen);
      this.pending = grown;
    }
    data.copy(this.pending, this.pendingLen, start, end);
    this.pendingLen = need;
  }

  private overflow(): UpstreamParseError {
    const what = this.state === S_TRAILERS ? 'trailer section' : 'response head';
    return this.fail('HPE_HEADER_OVERFLOW', `${what} exceeds maxHeaderBytes (${this.maxHeaderBytes})`);
  }

  /**
   * Parses the line starting at buf[start]. Returns the index after its LF, or -1 if the line
   * does not end before `end` (every byte before `end` was valid). Throws at the first bad byte.
   */
  private parseLine(buf: Buffer, start: number, end: number): number {
    if (this.inStatusLine()) return this.parseStatusLine(buf, start, end);
    if (start >= end) return -1;
    if (buf[start] === CR) {
      if (start + 1 >= end) return -1;
      if (buf[start + 1] !== LF) throw this.badHeader('CR not followed by LF', buf[start + 1]);
      this.endOfSection();
      return start + 2;
    }
    return this.parseFieldLine(buf, start, end);
  }

  private parseStatusLine(buf: Buffer, start: number, end: number): number {
    let i = start;
    for (let k = 0; k < HTTP_1_DOT.length; k++, i++) {
      if (i >= end) return -1;
      if (buf[i] !== HTTP_1_DOT[k]) throw this.badStatus('expected "HTTP/1.0" or "HTTP/1.1"', buf, i, start);
    }
    if (i >= end) return -1;
    const minor = buf[i]! - 0x30;
    if (minor !== 0 && minor !== 1) throw this.badStatus('expected "HTTP/1.0" or "HTTP/1.1"', buf, i, start);
    i++;
    if (i >= end) return -1;
    if (buf[i] !== SP) throw this.badStatus('expected SP after the version', buf, i, start);
    i++;
    let status = 0;
    for (let k = 0; k < 3; k++, i++) {
      if (i >= end) return -1;
      const d = buf[i]! - 0x30;
      if (d < 0 || d > 9) throw this.badStatus('expected a 3-digit status code', buf, i, start);
      status = status * 10 + d;
    }
    if (status < 100) throw this.fail('HPE_INVALID_STATUS', `invalid status line: status code ${latin1(buf, i - 3, i)} is below 100`);
    if (status === 101) {
      throw this.fail('HPE_UNSUPPORTED_101', '101 Switching Protocols: upgrades are not proxied by this codec');
    }
    if (i >= end) return -1;
    let reasonStart = i;
    if (buf[i] === SP) {
      reasonStart = ++i;
      while (true) {
        if (i >= end) return -1;
        if (FIELD_BYTE[buf[i]!] === 0) break;
        i++;
      }
    }
    if (buf[i] !== CR) throw this.badStatus('expected a reason phrase or CRLF', buf, i, start);
    if (i + 1 >= end) return -1;
    if (buf[i + 1] !== LF) throw this.badStatus('CR not followed by LF', buf, i + 1, start);
    this.status = status;
    this.httpMinor = minor;
    this.reason = '';
    if (buf === this.pending) {
      if (i > reasonStart) this.reason = latin1(buf, reasonStart, i);
    } else {
      this.spanBuf = buf;
      this.spanStart = start;
      this.spanEnd = i;
      this.reasonStart = reasonStart;
      this.reasonEnd = i;
    }
    this.lineCount = 1;
    return i + 2;
  }

  private parseFieldLine(buf: Buffer, start: number, end: number): number {
    let i = start;
    while (true) {
      if (i >= end) return -1;
      const c = buf[i]!;
      if (c === COLON) break;
      if (TCHAR[c] === 0) {
        if (i === start && isOws(c)) throw this.badHeader('obs-fold (line starting with whitespace)', c);
        if (isOws(c)) throw this.badHeader('whitespace before ":"', c);
        throw this.badHeader('invalid character in field name', c);
      }
      i++;
    }
    const nameEnd = i;
    if (nameEnd === start) throw this.badHeader('empty field name', COLON);
    i++;
    while (true) {
      if (i >= end) return -1;
      const c = buf[i]!;
      if (c !== SP && c !== HTAB) break;
      i++;
    }
    const valueStart = i;
    while (true) {
      if (i >= end) return -1;
      if (FIELD_BYTE[buf[i]!] === 0) break;
      i++;
    }
    if (buf[i] !== CR) throw this.badHeader('invalid character in field value', buf[i]);
    if (i + 1 >= end) return -1;
    if (buf[i + 1] !== LF) throw this.badHeader('CR not followed by LF', buf[i + 1]);
    let valueEnd = i;
    while (valueEnd > valueStart && isOws(buf[valueEnd - 1]!)) valueEnd--;

    if (++this.fieldCount > this.maxHeaders) {
      const what = this.state === S_TRAILERS ? 'trailer section' : 'response head';
      throw this.fail('HPE_HEADER_OVERFLOW', `${what} has more than maxHeaders (${this.maxHeaders}) fields`);
    }
    this.lineCount++;
    if (this.state === S_HEAD) {
      if (buf === this.pending) {
        this.flushStrings();
        this.headers.push(latin1(buf, start, nameEnd), valueEnd > valueStart ? latin1(buf, valueStart, valueEnd) : '');
      } else {
        if (this.spanBuf !== buf) {
          this.flushStrings();
          this.spanBuf = buf;
          this.spanStart = start;
        }
        const offsets = this.spanFields;
        const k = this.spanLen;
        offsets[k] = start;
        offsets[k + 1] = nameEnd;
        offsets[k + 2] = valueStart;
        offsets[k + 3] = valueEnd;
        this.spanLen = k + 4;
        this.spanEnd = valueEnd;
      }
      const nameLen = nameEnd - start;
      if (nameLen === 14) {
        if (matchesLower(buf, start, nameEnd, LOWER_CONTENT_LENGTH)) this.onContentLength(buf, valueStart, valueEnd);
      } else if (nameLen === 17) {
        if (matchesLower(buf, start, nameEnd, LOWER_TRANSFER_ENCODING)) this.onTransferEncoding(buf, valueStart, valueEnd);
      } else if (nameLen === 10) {
        if (matchesLower(buf, start, nameEnd, LOWER_CONNECTION)) this.onConnection(buf, valueStart, valueEnd);
      }
    }
    return i + 2;
  }

  private badHeader(what: string, c: number | undefined): UpstreamParseError {
    const where = this.state === S_TRAILERS ? 'trailer' : 'header';
    return this.fail('HPE_INVALID_HEADER', `invalid ${where} line ${this.lineCount}: ${what} (byte ${byteName(c)})`);
  }

  private badStatus(what: string, buf: Buffer, at: number, start: number): UpstreamParseError {
    return this.fail('HPE_INVALID_STATUS', `invalid status line: ${what} at offset ${at - start} but received ${byteName(buf[at])}`);
  }

  // ---- framing fields (RFC 9112 §6.3) ----------------------------------------------------

  /** Content-Length: 1*DIGIT, or a list of equal values ("5, 5"), across any number of fields. */
  private onContentLength(buf: Buffer, start: number, end: number): void {
    let i = start;
    do {
      while (i < end && isOws(buf[i]!)) i++;
      let value = 0;
      const digitsStart = i;
      while (i < end) {
        const d = buf[i]! - 0x30;
        if (d < 0 || d > 9) break;
        value = value * 10 + d;
        if (value > Number.MAX_SAFE_INTEGER) throw this.badLength(buf, start, end, 'too large');
        i++;
      }
      if (i === digitsStart) throw this.badLength(buf, start, end, 'expected digits');
      while (i < end && isOws(buf[i]!)) i++;
      if (i < end && buf[i] !== COMMA) throw this.badLength(buf, start, end, 'expected digits');
      if (this.contentLength >= 0 && this.contentLength !== value) {
        throw this.badLength(buf, start, end, `conflicts with ${this.contentLength}`);
      }
      this.contentLength = value;
    } while (i++ < end);
  }

  private badLength(buf: Buffer, start: number, end: number, why: string): UpstreamParseError {
    return this.fail('HPE_INVALID_CONTENT_LENGTH', `invalid Content-Length ${JSON.stringify(latin1(buf, start, end))}: ${why}`);
  }

  /**
   * Transfer-Encoding: #( token *( OWS ";" OWS param ) ). Remembers whether "chunked" is the final
   * coding so far. Parameters of other codings are skipped up to the next comma.
   */
  private onTransferEncoding(buf: Buffer, start: number, end: number): void {
    this.transferEncoding = true;
    let i = start;
    while (i < end) {
      while (i < end && (isOws(buf[i]!) || buf[i] === COMMA)) i++;
      if (i >= end) break;
      const nameStart = i;
      while (i < end && TCHAR[buf[i]!] === 1) i++;
      const nameEnd = i;
      while (i < end && isOws(buf[i]!)) i++;
      const hasParams = i < end && buf[i] === SEMI;
      if (nameEnd === nameStart || (i < end && !hasParams && buf[i] !== COMMA)) {
        throw this.badTransferEncoding(buf, start, end, 'expected a transfer-coding token');
      }
      const chunked = matchesLower(buf, nameStart, nameEnd, LOWER_CHUNKED);
      if (chunked) {
        if (hasParams) throw this.badTransferEncoding(buf, start, end, '"chunked" takes no parameters');
        if (++this.chunkedCount > 1) throw this.badTransferEncoding(buf, start, end, '"chunked" applied twice');
      }
      this.chunkedIsFinal = chunked;
      if (hasParams) while (i < end && buf[i] !== COMMA) i++;
    }
  }

  private badTransferEncoding(buf: Buffer, start: number, end: number, why: string): UpstreamParseError {
    return this.fail('HPE_INVALID_TRANSFER_ENCODING', `invalid Transfer-Encoding ${JSON.stringify(latin1(buf, start, end))}: ${why}`);
  }

  /** Connection: a comma list of tokens; only "close" and "keep-alive" matter, in any case. */
  private onConnection(buf: Buffer, start: number, end: number): void {
    let i = start;
    while (i < end) {
      while (i < end && (isOws(buf[i]!) || buf[i] === COMMA)) i++;
      const tokenStart = i;
      while (i < end && buf[i] !== COMMA) i++;
      let tokenEnd = i;
      while (tokenEnd > tokenStart && isOws(buf[tokenEnd - 1]!)) tokenEnd--;
      const len = tokenEnd - tokenStart;
      if (len === 5) {
        if (matchesLower(buf, tokenStart, tokenEnd, LOWER_CLOSE)) this.connectionClose = true;
      } else if (len === 10) {
        if (matchesLower(buf, tokenStart, tokenEnd, LOWER_KEEP_ALIVE)) this.connectionKeepAlive = true;
      }
    }
  }

  /** The empty line ending a head or the trailer section. */
  private endOfSection(): void {
    if (this.state === S_TRAILERS) {
      this.completeMessage();
      return;
    }
    this.flushStrings();
    const status = this.status;
    if (status < 200) {
      const headers = this.headers;
      this.startHead();
      this.handlers.onInformational(status, headers);
      return;
    }

    let framing: Framing;
    let keepAlive = this.httpMinor === 1 ? !this.connectionClose : this.connectionKeepAlive && !this.connectionClose;
    if (this.transferEncoding) {
      framing = this.chunkedIsFinal ? 'chunked' : 'close';
      // TE with CL smells of smuggling; TE in HTTP/1.0 is faulty framing (RFC 9112 §6.1, §6.3).
      if (this.contentLength >= 0 || this.httpMinor === 0) keepAlive = false;
    } else {
      framing = this.contentLength >= 0 ? 'length' : 'close';
    }
    if (this.requestWasHead || status === 204 || status === 304) framing = 'none';
    if (framing === 'close') keepAlive = false;
    const contentLength = framing === 'length' ? this.contentLength : -1;

    const generation = this.generation;
    if (framing === 'chunked') {
      this.state = S_CHUNK_SIZE_START;
      this.chunkLineBytes = 0;
    } else if (framing === 'close') {
      this.state = S_BODY_CLOSE;
    } else {
      this.state = S_BODY_LENGTH;
      this.remaining = framing === 'length' ? contentLength : 0;
    }
    this.handlers.onHead(status, this.reason, this.headers, { keepAlive, framing, contentLength, httpMinor: this.httpMinor });
    if (this.generation === generation && this.state === S_BODY_LENGTH && this.remaining === 0) this.completeMessage();
  }

  private completeMessage(): void {
    this.state = S_IDLE;
    this.headers = [];
    this.handlers.onEnd();
  }

  // ---- bodies ------------------------------------------------------------------------------

  private readLengthBody(data: Buffer, pos: number, end: number): number {
    const available = end - pos;
    const n = available < this.remaining ? available : this.remaining;
    this.remaining -= n;
    const generation = this.generation;
    this.handlers.onBody(n === end ? data : data.subarray(pos, pos + n));
    if (this.generation === generation && this.remaining === 0) this.completeMessage();
    return pos + n;
  }

  private readChunkData(data: Buffer, pos: number, end: number): number {
    const available = end - pos;
    const n = available < this.remaining ? available : this.remaining;
    this.remaining -= n;
    if (this.remaining === 0) this.state = S_CHUNK_DATA_CR;
    this.handlers.onBody(n === end ? data : data.subarray(pos, pos + n));
    return pos + n;
  }

  /**
   * Chunk-size lines and the CRLF after chunk data, byte by byte (they are short). Extensions
   * follow llhttp's strict grammar: *( ";" token [ "=" ( token / quoted-string ) ] ), no BWS.
   */
  private readChunkFraming(data: Buffer, pos: number, end: number): number {
    let state = this.state;
    while (pos < end) {
      const c = data[pos]!;
      switch (state) {
        case S_CHUNK_SIZE_START: {
          const h = HEX[c]!;
          if (h === 0) throw this.badChunk('expected a hex chunk size', c);
          this.remaining = h - 1;
          this.chunkLineBytes = 0;
          state = S_CHUNK_SIZE;
          break;
        }
        case S_CHUNK_SIZE: {
          const h = HEX[c]!;
          if (h !== 0) {
            this.remaining = this.remaining * 16 + (h - 1);
            if (this.remaining > Number.MAX_SAFE_INTEGER) throw this.badChunk('chunk size too large', c);
          } else if (c === CR) state = S_CHUNK_SIZE_LF;
          else if (c === SEMI) state = S_CHUNK_EXT_NAME_START;
          else throw this.badChunk('invalid character in chunk size', c);
          break;
        }
        case S_CHUNK_EXT_NAME_START:
          if (TCHAR[c] === 0) throw this.badChunk('expected a chunk extension name', c);
          state = S_CHUNK_EXT_NAME;
          break;
        case S_CHUNK_EXT_NAME:
        case S_CHUNK_EXT_VALUE:
          if (TCHAR[c] === 1) break;
          if (c === CR) state = S_CHUNK_SIZE_LF;
          else if (c === SEMI) state = S_CHUNK_EXT_NAME_START;
          else if (c === 0x3d /* = */ && state === S_CHUNK_EXT_NAME) state = S_CHUNK_EXT_VALUE_START;
          else throw this.badChunk('invalid character in chunk extension', c);
          break;
        case S_CHUNK_EXT_VALUE_START:
          if (c === 0x22 /* " */) state = S_CHUNK_EXT_QUOTED;
          else if (TCHAR[c] === 1) state = S_CHUNK_EXT_VALUE;
          else throw this.badChunk('expected a chunk extension value', c);
          break;
        case S_CHUNK_EXT_QUOTED:
          if (c === 0x22) state = S_CHUNK_EXT_QUOTED_END;
          else if (c === 0x5c /* \ */) state = S_CHUNK_EXT_QUOTED_PAIR;
          else if (FIELD_BYTE[c] === 0) throw this.badChunk('invalid character in a quoted chunk extension', c);
          break;
        case S_CHUNK_EXT_QUOTED_PAIR:
          if (FIELD_BYTE[c] === 0) throw this.badChunk('invalid character in a quoted chunk extension', c);
          state = S_CHUNK_EXT_QUOTED;
          break;
        case S_CHUNK_EXT_QUOTED_END:
          if (c === CR) state = S_CHUNK_SIZE_LF;
          else if (c === SEMI) state = S_CHUNK_EXT_NAME_START;
          else throw this.badChunk('expected ";" or CRLF after a quoted chunk extension', c);
          break;
        case S_CHUNK_SIZE_LF:
          if (c !== LF) throw this.badChunk('CR not followed by LF', c);
          pos++;
          if (this.remaining === 0) {
            this.state = S_TRAILERS;
            this.section++;
            this.lineCount = 1;
            this.headBytes = 0;
            this.fieldCount = 0;
            this.pendingLen = 0;
          } else {
            this.state = S_CHUNK_DATA;
          }
          return pos;
        case S_CHUNK_DATA_CR:
          if (c !== CR) throw this.badChunk('expected CRLF after chunk data', c);
          state = S_CHUNK_DATA_LF;
          break;
        case S_CHUNK_DATA_LF:
          if (c !== LF) throw this.badChunk('expected CRLF after chunk data', c);
          state = S_CHUNK_SIZE_START;
          break;
      }
      pos++;
      if (state >= S_CHUNK_SIZE && state <= S_CHUNK_EXT_QUOTED_END && ++this.chunkLineBytes > this.maxHeaderBytes) {
        throw this.fail('HPE_INVALID_CHUNK', `chunk-size line exceeds maxHeaderBytes (${this.maxHeaderBytes})`);
      }
    }
    this.state = state;
    return pos;
  }

  private badChunk(what: string, c: number): UpstreamParseError {
    return this.fail('HPE_INVALID_CHUNK', `invalid chunked body: ${what} (byte ${byteName(c)})`);
  }
}

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new RangeError(`expected a positive integer for ResponseParser option ${name} but received ${String(value)}`);
  }
  return value;
}

// ---- request side ----------------------------------------------------------------------------

/** RFC 9110 token (1*tchar): methods and field names. */
export function isToken(s: string): boolean {
  const n = s.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || TCHAR[c] === 0) return false;
  }
  return true;
}

/** A field value we may write: HTAB, SP, VCHAR, obs-text; never CR, LF, NUL or another control. */
export function isFieldValue(s: string): boolean {
  for (let i = 0, n = s.length; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || FIELD_BYTE[c] === 0) return false;
  }
  return true;
}

/** The size line before a chunk of `length` bytes (length > 0; end the body with LAST_CHUNK). */
export function chunkHeader(length: number): string {
  if (!Number.isSafeInteger(length) || length <= 0) {
    throw new RangeError(`expected a positive integer chunk length but received ${String(length)} (end a body with LAST_CHUNK)`);
  }
  return length.toString(16) + '\r\n';
}

/** The last chunk with an empty trailer section. */
export const LAST_CHUNK = '0\r\n\r\n';
