// Incremental decoder for chunked request bodies (RFC 9112 §7.1) in the raw-TCP front door:
// strict, because any framing a backend could read differently is a request-smuggling vector.
//
//   1a;name=tok;q="a\"b" CRLF     chunk-size (1-16 hex digits) [chunk-ext]: extensions checked, ignored
//   <0x1a bytes of data> CRLF     chunk-data: handed to onData as views into the caller's buffer
//   ...                           more chunks
//   0 CRLF                        last-chunk (1*"0" [chunk-ext])
//   Field: value CRLF             trailer section: field lines checked, then dropped
//   CRLF                          end of body: the next pipelined request starts after this
//
// The framing is a byte-at-a-time state machine that keeps its state between calls, so every
// split of the input gives the same result; data is delivered in bulk, never copied.

export interface ChunkedLimits {
  /** Longest chunk-size line (size + extensions, without CRLF) and longest trailer line. Default 4096. */
  maxLineBytes: number;
  /** Total bytes of the trailer section (after the last chunk, including its CRLFs). Default 16384. */
  maxTrailerBytes: number;
}

const DEFAULT_LIMITS: ChunkedLimits = { maxLineBytes: 4096, maxTrailerBytes: 16384 };

const enum S {
  Size, // reading hex digits of chunk-size
  SizeWs, // BWS after the size or an extension: only more BWS or ';' may follow
  ExtNameStart, // after ';' (and BWS): an ext-name must start
  ExtName,
  ExtNameWs, // BWS after an ext-name: only '=' or ';' may follow
  ExtValStart, // after '=' (and BWS): a token or a quoted-string must start
  ExtToken,
  ExtQuoted,
  ExtQuotedPair, // after '\' inside a quoted-string
  ExtQuotedEnd, // after the closing DQUOTE
  SizeLf, // CR of the size line seen
  Data,
  DataCr, // data done: CR must follow
  DataLf,
  TrailerStart, // start of a trailer line (or of the final empty line)
  TrailerName,
  TrailerValue,
  TrailerLf, // CR of a trailer field line seen
  EndLf, // CR of the final empty line seen
  Done,
  Failed,
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const SEMI = 0x3b;
const EQ = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const MAX_HEX_DIGITS = 16;
const QUOTE_MAX = 32; // bytes of the offending line kept to quote in an error

// Byte classes as lookup tables: one load per byte instead of a chain of comparisons.
const HEX = new Int8Array(256).fill(-1);
const TCHAR = new Uint8Array(256);
const QDTEXT = new Uint8Array(256);
const FIELD_VCHAR = new Uint8Array(256); // HTAB / SP / VCHAR / obs-text: field values and quoted-pairs
for (let c = 0; c < 256; c++) {
  if (c >= 0x30 && c <= 0x39) HEX[c] = c - 0x30;
  else if (c >= 0x41 && c <= 0x46) HEX[c] = c - 0x41 + 10;
  else if (c >= 0x61 && c <= 0x66) HEX[c] = c - 0x61 + 10;
  const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  if (alnum || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c))) TCHAR[c] = 1;
  if (c === HTAB || c === SP || c === 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || c >= 0x80) {
    QDTEXT[c] = 1;
  }
  if (c === HTAB || (c >= SP && c <= 0x7e) || c >= 0x80) FIELD_VCHAR[c] = 1;
}

function positiveLimit(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`ChunkedDecoder: ${name} must be a positive integer, got ${v}`);
  return v;
}

function describeByte(c: number): string {
  return c >= 0x21 && c <= 0x7e ? `'${String.fromCharCode(c)}'` : `0x${c.toString(16).padStart(2, '0')}`;
}

export class ChunkedDecoder {
  /** Why decoding failed ('' while fine): a short human-readable reason naming what was wrong. */
  error = '';
  private readonly maxLine: number;
  private readonly maxTrailer: number;
  private state = S.Size;
  private size = 0; // value of the current chunk-size, then data bytes left in the chunk
  private digits = 0;
  private lineLen = 0; // bytes of the current size or trailer line, CRLF excluded
  private trailerLen = 0;
  private body = 0;
  // The first bytes of the current line, kept only so an error can quote them the same way
  // whatever the split; allocated once per decoder.
  private readonly head = new Uint8Array(QUOTE_MAX);

  constructor(limits?: Partial<ChunkedLimits>) {
    this.maxLine = positiveLimit('maxLineBytes', limits?.maxLineBytes, DEFAULT_LIMITS.maxLineBytes);
    this.maxTrailer = positiveLimit('maxTrailerBytes', limits?.maxTrailerBytes, DEFAULT_LIMITS.maxTrailerBytes);
  }

  /** True once the last chunk and the trailer section (ending in an empty line) have been read. */
  get done(): boolean {
    return this.state === S.Done;
  }

  /** Body bytes delivered so far. */
  get bodyBytes(): number {
    return this.body;
  }

  /** Back to the start of a new body (limits kept). */
  reset(): void {
    this.error = '';
    this.state = S.Size;
    this.size = 0;
    this.digits = 0;
    this.lineLen = 0;
    this.trailerLen = 0;
    this.body = 0;
  }

  /**
   * Decodes buf[start, end). For each run of body (chunk-data) bytes calls onData(buf, from, to) —
   * a view into the caller's buffer, valid only during the call. Returns the number of bytes
   * consumed from `start`: all of them while the body continues, fewer when the body ended inside
   * this range (the count then ends just after the trailer section's final CRLF), or -1 on a
   * framing error (then `error` says why, and the decoder stays failed until reset()). Calling
   * decode after done returns 0.
   */
  decode(buf: Uint8Array, start: number, end: number, onData: (buf: Uint8Array, from: number, to: number) => void): number {
    let state = this.state;
    if (state === S.Done) return 0;
    if (state === S.Failed) return -1;
    let i = start;
    while (i < end) {
      if (state === S.Data) {
        const n = Math.min(this.size, end - i);
        this.size -= n;
        this.body += n;
        // The state is saved first so a callback that throws leaves the decoder consistent.
        if (this.size === 0) state = S.DataCr;
        this.state = state;
        onData(buf, i, i + n);
        i += n;
        continue;
      }
      const c = buf[i]!;
      i++;
      // Line bytes are kept (counted, and the first few remembered) before the checks below,
      // except the CR that ends a line: limits count a line without its CRLF.
      switch (state) {
        case S.Size: {
          const d = HEX[c]!;
          if (d >= 0) {
            this.keep(c);
            if (++this.digits > MAX_HEX_DIGITS) return this.fail(`chunk size '${this.quote()}' has more than ${MAX_HEX_DIGITS} hex digits`);
            // Exact while within the safe range; past it the float is still > MAX_SAFE_INTEGER.
            this.size = this.size * 16 + d;
            if (this.size > Number.MAX_SAFE_INTEGER) return this.fail(`chunk size '${this.quote()}' exceeds ${Number.MAX_SAFE_INTEGER}`);
            break;
          }
          if (c === LF) return this.fail('bare LF in chunk size line');
          if (this.digits === 0) {
            if (c === CR || c === SEMI) return this.fail('empty chunk size');
            if (c === SP || c === HTAB) return this.fail('whitespace before chunk size');
            this.keep(c);
            return this.fail(`chunk size '${this.quote()}' is not hexadecimal`);
          }
          if (c === CR) {
            state = S.SizeLf;
            break;
          }
          this.keep(c);
          if (c === SEMI) state = S.ExtNameStart;
          else if (c === SP || c === HTAB) state = S.SizeWs;
          else return this.fail(`chunk size '${this.quote()}' is not hexadecimal`);
          break;
        }
        case S.SizeWs:
          if (c === SEMI) state = S.ExtNameStart;
          else if (c !== SP && c !== HTAB) return this.failSizeLine(c, "whitespace not followed by ';'");
          this.keep(c);
          break;
        case S.ExtNameStart:
          if (TCHAR[c] === 1) state = S.ExtName;
          else if (c !== SP && c !== HTAB) return this.failSizeLine(c, 'missing or invalid chunk extension name');
          this.keep(c);
          break;
        case S.ExtName:
          if (c === CR) {
            state = S.SizeLf;
            break;
          }
          if (c === SEMI) state = S.ExtNameStart;
          else if (c === EQ) state = S.ExtValStart;
          else if (c === SP || c === HTAB) state = S.ExtNameWs;
          else if (TCHAR[c] !== 1) return this.failSizeLine(c, 'invalid chunk extension name');
          this.keep(c);
          break;
        case S.ExtNameWs:
          if (c === SEMI) state = S.ExtNameStart;
          else if (c === EQ) state = S.ExtValStart;
          else if (c !== SP && c !== HTAB) return this.failSizeLine(c, "whitespace after a chunk extension name not followed by '=' or ';'");
          this.keep(c);
          break;
        case S.ExtValStart:
          if (TCHAR[c] === 1) state = S.ExtToken;
          else if (c === DQUOTE) state = S.ExtQuoted;
          else if (c !== SP && c !== HTAB) return this.failSizeLine(c, 'missing or invalid chunk extension value');
          this.keep(c);
          break;
        case S.ExtToken:
          if (c === CR) {
            state = S.SizeLf;
            break;
          }
          if (c === SEMI) state = S.ExtNameStart;
          else if (c === SP || c === HTAB) state = S.SizeWs;
          else if (TCHAR[c] !== 1) return this.failSizeLine(c, 'invalid chunk extension value');
          this.keep(c);
          break;
        case S.ExtQuoted:
          if (c === DQUOTE) state = S.ExtQuotedEnd;
          else if (c === BACKSLASH) state = S.ExtQuotedPair;
          else if (QDTEXT[c] !== 1) return this.failSizeLine(c, 'invalid byte in quoted chunk extension value');
          this.keep(c);
          break;
        case S.ExtQuotedPair:
          if (FIELD_VCHAR[c] !== 1) return this.failSizeLine(c, 'invalid quoted-pair in chunk extension value');
          state = S.ExtQuoted;
          this.keep(c);
          break;
        case S.ExtQuotedEnd:
          if (c === CR) {
            state = S.SizeLf;
            break;
          }
          if (c === SEMI) state = S.ExtNameStart;
          else if (c === SP || c === HTAB) state = S.SizeWs;
          else return this.failSizeLine(c, 'junk after quoted chunk extension value');
          this.keep(c);
          break;
        case S.SizeLf:
          if (c !== LF) return this.fail(`CR not followed by LF in chunk size line (got ${describeByte(c)})`);
          this.lineLen = 0;
          this.digits = 0;
          state = this.size === 0 ? S.TrailerStart : S.Data;
          break;
        case S.DataCr:
          if (c === CR) state = S.DataLf;
          else if (c === LF) return this.fail('bare LF after chunk data');
          else return this.fail(`chunk data not followed by CRLF (got ${describeByte(c)})`);
          break;
        case S.DataLf:
          if (c !== LF) return this.fail(`chunk data not followed by CRLF (CR then ${describeByte(c)})`);
          state = S.Size;
          break;
        case S.TrailerStart:
          if (++this.trailerLen > this.maxTrailer) return this.failLongTrailer();
          if (c === CR) {
            state = S.EndLf;
            break;
          }
          this.keep(c);
          if (TCHAR[c] === 1) state = S.TrailerName;
          else if (c === LF) return this.fail('bare LF in trailer section');
          else if (c === SP || c === HTAB) return this.fail('trailer line starts with whitespace (obs-fold)');
          else if (c === COLON) return this.fail('empty trailer field name');
          else return this.fail(`invalid byte ${describeByte(c)} at start of trailer line`);
          break;
        case S.TrailerName:
          if (++this.trailerLen > this.maxTrailer) return this.failLongTrailer();
          if (c === LF) return this.fail('bare LF in trailer section');
          if (c === CR) return this.fail(`trailer line '${this.quote()}' has no colon`);
          this.keep(c);
          if (c === COLON) state = S.TrailerValue;
          else if (c === SP || c === HTAB) return this.fail(`whitespace before colon in trailer field '${this.quote()}'`);
          else if (TCHAR[c] !== 1) return this.fail(`invalid byte ${describeByte(c)} in trailer field name '${this.quote()}'`);
          break;
        case S.TrailerValue:
          if (++this.trailerLen > this.maxTrailer) return this.failLongTrailer();
          if (c === CR) {
            state = S.TrailerLf;
            break;
          }
          if (c === LF) return this.fail('bare LF in trailer section');
          this.keep(c);
          if (FIELD_VCHAR[c] !== 1) return this.fail(`invalid byte ${describeByte(c)} in trailer field '${this.quote()}'`);
          break;
        case S.TrailerLf:
          if (++this.trailerLen > this.maxTrailer) return this.failLongTrailer();
          if (c !== LF) return this.fail(`CR not followed by LF in trailer section (got ${describeByte(c)})`);
          this.lineLen = 0;
          state = S.TrailerStart;
          break;
        case S.EndLf:
          if (++this.trailerLen > this.maxTrailer) return this.failLongTrailer();
          if (c !== LF) return this.fail(`CR not followed by LF at end of trailer section (got ${describeByte(c)})`);
          this.state = S.Done;
          return i - start;
      }
      if (this.lineLen > this.maxLine) {
        return this.fail(`${state >= S.TrailerStart ? 'trailer' : 'chunk size'} line longer than ${this.maxLine} bytes`);
      }
    }
    this.state = state;
    return end - start;
  }

  /** Counts one byte of the current line and keeps it if it is among the first QUOTE_MAX. */
  private keep(c: number): void {
    if (this.lineLen < QUOTE_MAX) this.head[this.lineLen] = c;
    this.lineLen++;
  }

  /** The kept start of the current line, printable. */
  private quote(): string {
    const n = Math.min(this.lineLen, QUOTE_MAX);
    let s = '';
    for (let k = 0; k < n; k++) {
      const c = this.head[k]!;
      s += c >= 0x20 && c <= 0x7e && c !== 0x5c && c !== 0x27 ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
    }
    return this.lineLen > QUOTE_MAX ? `${s}...` : s;
  }

  private failSizeLine(c: number, what: string): number {
    if (c === LF) return this.fail('bare LF in chunk size line');
    if (c === CR) return this.fail(`chunk size line '${this.quote()}' ends early: ${what}`);
    return this.fail(`${what}: unexpected ${describeByte(c)} in chunk size line '${this.quote()}'`);
  }

  private failLongTrailer(): number {
    return this.fail(`trailer section longer than ${this.maxTrailer} bytes`);
  }

  private fail(reason: string): number {
    this.error = reason;
    this.state = S.Failed;
    return -1;
  }
}
