// Upstream HTTP/1.1 response codec: every framing case and every error code, each fed whole, split at
// every offset, one byte at a time and in 200 random splits — all of which must give the same events.
import { describe, expect, it } from 'vitest';
import {
  LAST_CHUNK,
  ResponseParser,
  UpstreamParseError,
  chunkHeader,
  isFieldValue,
  isToken,
  type HeadInfo,
  type ParseErrorCode,
  type ResponseParserOptions,
} from '../../src/data-plane/upstream/codec.js';
import { prng } from '../helpers/prng.js';

type Event =
  | ['info', number, string[]]
  | ['head', number, string, string[], HeadInfo]
  | ['body', string]
  | ['end']
  | ['error', ParseErrorCode];

interface Case {
  name: string;
  input: string; // latin1
  /** Methods of the requests, in order; the next one is expected from onEnd (an immediately reused connection). */
  methods?: string[];
  /** Upstream closes after the input (finish() is called). */
  eof?: boolean;
  opts?: ResponseParserOptions;
  events: Event[];
}

/** Feeds `pieces` to a fresh parser and records what it reports; consecutive body chunks are merged. */
function run(c: Case, pieces: Buffer[]): Event[] {
  const events: Event[] = [];
  const methods = [...(c.methods ?? ['GET'])];
  const parser: ResponseParser = new ResponseParser(
    {
      onHead: (status, reason, headers, info) => events.push(['head', status, reason, headers, { ...info }]),
      onInformational: (status, headers) => events.push(['info', status, headers]),
      onBody: (chunk) => {
        const last = events[events.length - 1];
        if (last?.[0] === 'body') last[1] += chunk.toString('latin1');
        else events.push(['body', chunk.toString('latin1')]);
      },
      onEnd: () => {
        events.push(['end']);
        const next = methods.shift();
        if (next !== undefined) parser.expect(next);
      },
    },
    c.opts,
  );
  parser.expect(methods.shift()!);
  try {
    for (const piece of pieces) parser.execute(piece);
    if (c.eof) parser.finish();
  } catch (err) {
    if (!(err instanceof UpstreamParseError)) throw err;
    events.push(['error', err.code]);
  }
  return events;
}


function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  let prev = 0;
  for (const cut of [...cuts, buf.length]) {
    // Copies, so a parser that keeps a view past execute() or reads beyond a piece is caught.
    pieces.push(Buffer.from(buf.subarray(prev, cut)));
    prev = cut;
  }
  return pieces;
}

/** Asserts the expected events for the whole input and the same events for every split of it. */
function checkCase(c: Case): void {
  const input = Buffer.from(c.input, 'latin1');
  expect(run(c, [input])).toEqual(c.events);
  for (let cut = 0; cut <= input.length; cut++) {
    const events = run(c, [input.subarray(0, cut), input.subarray(cut)]);
    if (JSON.stringify(events) !== JSON.stringify(c.events)) expect({ cut, events }).toEqual({ cut, events: c.events });
  }
  const bytes = Array.from({ length: input.length }, (_, i) => i + 1).slice(0, -1);
  expect(run(c, splitAt(input, bytes))).toEqual(c.events);
  const random = prng(0xc0dec);
  for (let round = 0; round < 200; round++) {
    const cuts = new Set<number>();
    const count = 1 + Math.floor(random() * Math.min(12, input.length));
    for (let k = 0; k < count; k++) cuts.add(Math.floor(random() * (input.length + 1)));
    const sorted = [...cuts].sort((a, b) => a - b);
    const events = run(c, splitAt(input, sorted));
    if (JSON.stringify(events) !== JSON.stringify(c.events)) expect({ sorted, events }).toEqual({ sorted, events: c.events });
  }
}

const info = (framing: HeadInfo['framing'], contentLength = -1, keepAlive = true, httpMinor = 1): HeadInfo => ({
  keepAlive,
  framing,
  contentLength,
  httpMinor,
});

const framingCases: Case[] = [
  {
    name: 'content-length',
    input: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello',
    events: [['head', 200, 'OK', ['Content-Type', 'text/plain', 'Content-Length', '5'], info('length', 5)], ['body', 'hello'], ['end']],
  },
  {
    name: 'content-length 0',
    input: 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n',
    events: [['head', 200, 'OK', ['content-length', '0'], info('length', 0)], ['end']],
  },
  {
    name: 'content-length repeated with equal values, and as an equal list',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nCONTENT-LENGTH: 003 ,3\r\n\r\nabc',
    events: [['head', 200, 'OK', ['Content-Length', '3', 'CONTENT-LENGTH', '003 ,3'], info('length', 3)], ['body', 'abc'], ['end']],
  },
  {
    name: 'binary body with CRLFs and obs-text',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n\r\n\x00\xff\r\n',
    events: [['head', 200, 'OK', ['Content-Length', '6'], info('length', 6)], ['body', '\r\n\x00\xff\r\n'], ['end']],
  },
  {
    name: 'chunked with extensions and trailers',
    input:
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5;name=val\r\nhello\r\n6;a;b="q\\"x;y"\r\n world\r\n000a\r\n0123456789\r\n' +
      '0;last\r\nX-Trailer: t\r\nX-Other:  v \r\n\r\n',
    events: [['head', 200, 'OK', ['Transfer-Encoding', 'chunked'], info('chunked')], ['body', 'hello world0123456789'], ['end']],
  },
  {
    name: 'chunked, upper-case hex and a body containing chunk-like bytes',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\nA\r\n0\r\n\r\n0\r\n\r\n\r\n0\r\n\r\n',
    events: [['head', 200, 'OK', ['Transfer-Encoding', 'gzip, Chunked'], info('chunked')], ['body', '0\r\n\r\n0\r\n\r\n'], ['end']],
  },
  {
    name: 'chunked across two Transfer-Encoding fields',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n',
    events: [['head', 200, 'OK', ['Transfer-Encoding', 'gzip', 'Transfer-Encoding', 'chunked'], info('chunked')], ['body', 'x'], ['end']],
  },
  {
    name: 'close-delimited (no length)',
    input: 'HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil the end\r\n',
    eof: true,
    events: [['head', 200, 'OK', ['Server', 'x'], info('close', -1, false)], ['body', 'until the end\r\n'], ['end']],
  },
  {
    name: 'close-delimited: chunked is not the final coding',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n1\r\nx\r\n0\r\n\r\n',
    eof: true,
    events: [['head', 200, 'OK', ['Transfer-Encoding', 'chunked, gzip'], info('close', -1, false)], ['body', '1\r\nx\r\n0\r\n\r\n'], ['end']],
  },
  {
    name: 'close-delimited with an empty body',
    input: 'HTTP/1.1 500 Internal Server Error\r\n\r\n',
    eof: true,
    events: [['head', 500, 'Internal Server Error', [], info('close', -1, false)], ['end']],
  },
  {
    name: 'Transfer-Encoding wins over Content-Length, connection not reused',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
    events: [['head', 200, 'OK', ['Content-Length', '100', 'Transfer-Encoding', 'chunked'], info('chunked', -1, false)], ['body', 'hi'], ['end']],
  },
  {
    name: 'HEAD with Content-Length',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n',
    methods: ['HEAD'],
    events: [['head', 200, 'OK', ['Content-Length', '1234'], info('none')], ['end']],
  },
  {
    name: 'HEAD with chunked',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n',
    methods: ['HEAD'],
    events: [['head', 200, 'OK', ['Transfer-Encoding', 'chunked'], info('none')], ['end']],
  },
  {
    name: 'HEAD without any length stays reusable',
    input: 'HTTP/1.1 404 Not Found\r\n\r\n',
    methods: ['HEAD'],
    events: [['head', 404, 'Not Found', [], info('none')], ['end']],
  },
  {
    name: '204 with Content-Length',
    input: 'HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n',
    events: [['head', 204, 'No Content', ['Content-Length', '10'], info('none')], ['end']],
  },
  {
    name: '304 with Content-Length',
    input: 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 10\r\n\r\n',
    events: [['head', 304, 'Not Modified', ['ETag', '"x"', 'Content-Length', '10'], info('none')], ['end']],
  },
  {
    name: '304 with chunked',
    input: 'HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n',
    events: [['head', 304, 'Not Modified', ['Transfer-Encoding', 'chunked'], info('none')], ['end']],
  },
  {
    name: '100 Continue then 200',
    input: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    events: [['info', 100, []], ['head', 200, 'OK', ['Content-Length', '2'], info('length', 2)], ['body', 'ok'], ['end']],
  },
  {
    name: '103 Early Hints (twice, one with a Content-Length) then 200',
    input:
      'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n' +
      'HTTP/1.1 103 Early Hints\r\nLink: </b.js>; rel=preload\r\nContent-Length: 5\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    events: [
      ['info', 103, ['Link', '</a.css>; rel=preload']],
      ['info', 103, ['Link', '</b.js>; rel=preload', 'Content-Length', '5']],
      ['head', 200, 'OK', ['Content-Length', '2'], info('length', 2)],
      ['body', 'ok'],
      ['end'],
    ],
  },
  {
    name: 'keep-alive reuse: two responses on one connection, expect() from onEnd',
    input:
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none' +
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n' +
      'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n',
    methods: ['GET', 'HEAD', 'POST'],
    events: [
      ['head', 200, 'OK', ['Content-Length', '3'], info('length', 3)],
      ['body', 'one'],
      ['end'],
      ['head', 200, 'OK', ['Content-Length', '3'], info('none')],
      ['end'],
      ['head', 201, 'Created', ['Transfer-Encoding', 'chunked'], info('chunked')],
      ['body', 'two'],
      ['end'],
    ],
  },
  {
    name: 'HTTP/1.0 close-delimited',
    input: 'HTTP/1.0 200 OK\r\n\r\nold',
    eof: true,
    events: [['head', 200, 'OK', [], info('close', -1, false, 0)], ['body', 'old'], ['end']],
  },
  {
    name: 'HTTP/1.0 with Content-Length but no keep-alive',
    input: 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok',
    events: [['head', 200, 'OK', ['Content-Length', '2'], info('length', 2, false, 0)], ['body', 'ok'], ['end']],
  },
  {
    name: 'HTTP/1.0 keep-alive (token list, any case)',
    input: 'HTTP/1.0 200 OK\r\nConnection: foo,  Keep-Alive \r\nContent-Length: 2\r\n\r\nok',
    events: [['head', 200, 'OK', ['Connection', 'foo,  Keep-Alive', 'Content-Length', '2'], info('length', 2, true, 0)], ['body', 'ok'], ['end']],
  },
  {
    name: 'HTTP/1.0 keep-alive and close: close wins',
    input: 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', ['Connection', 'keep-alive', 'Connection', 'close', 'Content-Length', '0'], info('length', 0, false, 0)], ['end']],
  },
  {
    name: 'HTTP/1.0 chunked: framed, then closed',
    input: 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
    events: [['head', 200, 'OK', ['Connection', 'keep-alive', 'Transfer-Encoding', 'chunked'], info('chunked', -1, false, 0)], ['body', 'hi'], ['end']],
  },
  {
    name: 'HTTP/1.1 Connection: close in a token list',
    input: 'HTTP/1.1 200 OK\r\nConnection: TE, CLOSE\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', ['Connection', 'TE, CLOSE', 'Content-Length', '0'], info('length', 0, false)], ['end']],
  },
  {
    name: 'HTTP/1.1 "closed" is not "close"',
    input: 'HTTP/1.1 200 OK\r\nConnection: closed, keep-alive-ish\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 200, 'OK', ['Connection', 'closed, keep-alive-ish', 'Content-Length', '0'], info('length', 0)], ['end']],
  },
  {
    name: 'values trimmed of OWS, names as received, empty values, obs-text',
    input: 'HTTP/1.1 200 OK\r\nX-Ws: \t a  b \t\r\nX-Empty:\r\nX-Spaces:   \r\nx-LaTiN: caf\xe9\r\n!#$%&\'*+-.^_`|~09: t\r\nContent-Length: 0\r\n\r\n',
    events: [
      [
        'head',
        200,
        'OK',
        ['X-Ws', 'a  b', 'X-Empty', '', 'X-Spaces', '', 'x-LaTiN', 'caf\xe9', "!#$%&'*+-.^_`|~09", 't', 'Content-Length', '0'],
        info('length', 0),
      ],
      ['end'],
    ],
  },
  {
    name: 'empty reason, with and without the SP',
    input: 'HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\nHTTP/1.1 404\r\nContent-Length: 0\r\n\r\n',
    methods: ['GET', 'GET'],
    events: [
      ['head', 200, '', ['Content-Length', '0'], info('length', 0)],
      ['end'],
      ['head', 404, '', ['Content-Length', '0'], info('length', 0)],
      ['end'],
    ],
  },
  {
    name: 'reason with spaces, tabs and obs-text; unusual status',
    input: 'HTTP/1.1 599 Not\tso  OK \xe9\r\nContent-Length: 0\r\n\r\n',
    events: [['head', 599, 'Not\tso  OK \xe9', ['Content-Length', '0'], info('length', 0)], ['end']],
  },
  {
    name: 'head of exactly maxHeaderBytes is accepted',
    input: 'HTTP/1.1 200 OK\r\nX-A: 12345\r\n\r\n', // 17 + 12 + 2 = 31 bytes
    opts: { maxHeaderBytes: 31 },
    eof: true,
    events: [['head', 200, 'OK', ['X-A', '12345'], info('close', -1, false)], ['end']],
  },
  {
    name: 'exactly maxHeaders fields and trailers are accepted',
    input: 'HTTP/1.1 200 OK\r\nA: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\nU: 2\r\n\r\n',
    opts: { maxHeaders: 2 },
    events: [['head', 200, 'OK', ['A', '1', 'Transfer-Encoding', 'chunked'], info('chunked')], ['end']],
  },
];

const head200 = (body = 'ok') => ['head', 200, 'OK', ['Content-Length', String(body.length)], info('length', body.length)] as Event;
const chunkedHead: Event = ['head', 200, 'OK', ['Transfer-Encoding', 'chunked'], info('chunked')];
const TE = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';

const errorCases: Case[] = [
  // HPE_INVALID_STATUS
  { name: 'HTTP/2.0', input: 'HTTP/2.0 200 OK\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'HTTP/1.2', input: 'HTTP/1.2 200 OK\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'lower-case protocol', input: 'http/1.1 200 OK\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'not HTTP at all', input: 'SSH-2.0-OpenSSH_9.6\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'two-digit status', input: 'HTTP/1.1 20 OK\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'four-digit status', input: 'HTTP/1.1 2000 OK\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'status below 100', input: 'HTTP/1.1 099 OK\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'two spaces before the status', input: 'HTTP/1.1  200 OK\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'control byte in the reason', input: 'HTTP/1.1 200 O\x01K\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'bare LF after the status line', input: 'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'CR without LF in the status line', input: 'HTTP/1.1 200 OK\rX\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  { name: 'empty line before the status line', input: '\r\nHTTP/1.1 200 OK\r\n\r\n', events: [['error', 'HPE_INVALID_STATUS']] },
  // HPE_INVALID_HEADER
  { name: 'obs-fold', input: 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'obs-fold with HTAB', input: 'HTTP/1.1 200 OK\r\nX-A: a\r\n\tb\r\n\r\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'whitespace before the colon', input: 'HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'empty field name', input: 'HTTP/1.1 200 OK\r\n: x\r\n\r\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'no colon', input: 'HTTP/1.1 200 OK\r\nX-A\r\n\r\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'non-token name', input: 'HTTP/1.1 200 OK\r\nX@A: 1\r\n\r\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'obs-text in a name', input: 'HTTP/1.1 200 OK\r\nX\xe9: 1\r\n\r\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'NUL in a value', input: 'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'DEL in a value', input: 'HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\n\r\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'CR inside a value', input: 'HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'bare LF ending a field line', input: 'HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\n\r\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'bare LF ending the head', input: 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'CR then junk ending the head', input: 'HTTP/1.1 200 OK\r\n\rX', events: [['error', 'HPE_INVALID_HEADER']] },
  { name: 'bad trailer', input: TE + '0\r\nX T: 1\r\n\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_HEADER']] },
  { name: 'obs-fold in trailers', input: TE + '0\r\nX-T: 1\r\n 2\r\n\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_HEADER']] },
  // HPE_HEADER_OVERFLOW
  {
    name: 'head one byte over maxHeaderBytes',
    input: 'HTTP/1.1 200 OK\r\nX-A: 123456\r\n\r\n',
    opts: { maxHeaderBytes: 31 },
    events: [['error', 'HPE_HEADER_OVERFLOW']],
  },
  {
    name: 'status line alone over maxHeaderBytes',
    input: 'HTTP/1.1 200 ' + 'x'.repeat(100) + '\r\n\r\n',
    opts: { maxHeaderBytes: 64 },
    events: [['error', 'HPE_HEADER_OVERFLOW']],
  },
  {
    name: 'never-ending field line',
    input: 'HTTP/1.1 200 OK\r\nX-A: ' + 'y'.repeat(200),
    opts: { maxHeaderBytes: 100 },
    events: [['error', 'HPE_HEADER_OVERFLOW']],
  },
  {
    name: 'a bad byte before the limit wins over the overflow',
    input: 'HTTP/1.1 200 OK\r\nX-A: a\x00' + 'y'.repeat(200),
    opts: { maxHeaderBytes: 100 },
    events: [['error', 'HPE_INVALID_HEADER']],
  },
  {
    name: 'a bad byte past the limit is an overflow',
    input: 'HTTP/1.1 200 OK\r\nX-A: ' + 'y'.repeat(200) + '\x00\r\n\r\n',
    opts: { maxHeaderBytes: 100 },
    events: [['error', 'HPE_HEADER_OVERFLOW']],
  },
  {
    name: 'too many fields',
    input: 'HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n',
    opts: { maxHeaders: 2 },
    events: [['error', 'HPE_HEADER_OVERFLOW']],
  },
  {
    name: 'trailers over maxHeaderBytes',
    input: TE + '1\r\nx\r\n0\r\nX-T: ' + 'z'.repeat(80) + '\r\n\r\n',
    opts: { maxHeaderBytes: 64 },
    events: [chunkedHead, ['body', 'x'], ['error', 'HPE_HEADER_OVERFLOW']],
  },
  {
    name: 'too many trailers',
    input: TE + '0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n',
    opts: { maxHeaders: 2 },
    events: [chunkedHead, ['error', 'HPE_HEADER_OVERFLOW']],
  },
  // HPE_INVALID_CONTENT_LENGTH
  ...['+5', '-1', '5 5', '0x5', '5a', '', ' , ', '5,', '1.0', '9007199254740992'].map(
    (cl): Case => ({
      name: `Content-Length ${JSON.stringify(cl)}`,
      input: `HTTP/1.1 200 OK\r\nContent-Length: ${cl}\r\n\r\n`,
      events: [['error', 'HPE_INVALID_CONTENT_LENGTH']],
    }),
  ),
  { name: 'Content-Length list of different values', input: 'HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n', events: [['error', 'HPE_INVALID_CONTENT_LENGTH']] },
  {
    name: 'two different Content-Length fields',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n',
    events: [['error', 'HPE_INVALID_CONTENT_LENGTH']],
  },
  {
    name: 'bad Content-Length even beside Transfer-Encoding',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n',
    events: [['error', 'HPE_INVALID_CONTENT_LENGTH']],
  },
  {
    name: 'bad Content-Length even on a 304',
    input: 'HTTP/1.1 304 Not Modified\r\nContent-Length: -1\r\n\r\n',
    events: [['error', 'HPE_INVALID_CONTENT_LENGTH']],
  },
  // HPE_INVALID_TRANSFER_ENCODING
  { name: 'chunked twice', input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n', events: [['error', 'HPE_INVALID_TRANSFER_ENCODING']] },
  {
    name: 'chunked in two fields',
    input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
    events: [['error', 'HPE_INVALID_TRANSFER_ENCODING']],
  },
  { name: 'chunked with parameters', input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=1\r\n\r\n', events: [['error', 'HPE_INVALID_TRANSFER_ENCODING']] },
  { name: 'non-token coding', input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked x\r\n\r\n', events: [['error', 'HPE_INVALID_TRANSFER_ENCODING']] },
  { name: 'quoted coding', input: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: "chunked"\r\n\r\n', events: [['error', 'HPE_INVALID_TRANSFER_ENCODING']] },
  // HPE_INVALID_CHUNK
  { name: 'empty chunk size', input: TE + '\r\nhi\r\n0\r\n\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'non-hex chunk size', input: TE + 'g\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'signed chunk size', input: TE + '-1\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'whitespace after chunk size', input: TE + '2 \r\nhi\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'whitespace before chunk size', input: TE + ' 2\r\nhi\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'chunk size of 2^53', input: TE + '20000000000000\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'chunk size of 2^64', input: TE + '10000000000000000\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'bare LF after chunk size', input: TE + '2\nhi\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'CR without LF after chunk size', input: TE + '2\rhi\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'chunk data longer than its size', input: TE + '2\r\nhiX\r\n0\r\n\r\n', events: [chunkedHead, ['body', 'hi'], ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'bare LF after chunk data', input: TE + '2\r\nhi\n0\r\n\r\n', events: [chunkedHead, ['body', 'hi'], ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'extension with BWS', input: TE + '2 ;a=b\r\nhi\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'extension without a name', input: TE + '2;=b\r\nhi\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'extension without a value', input: TE + '2;a=\r\nhi\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'extension value with junk after the quote', input: TE + '2;a="b"c\r\nhi\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'control byte in a quoted extension', input: TE + '2;a="\x01"\r\nhi\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  { name: 'bare LF inside an extension', input: TE + '2;a\nhi\r\n', events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']] },
  {
    name: 'chunk-size line over maxHeaderBytes',
    input: TE + '2;' + 'a'.repeat(100) + '\r\nhi\r\n0\r\n\r\n',
    opts: { maxHeaderBytes: 64 },
    events: [chunkedHead, ['error', 'HPE_INVALID_CHUNK']],
  },
  // HPE_UNEXPECTED_DATA
  { name: 'bytes after a complete message', input: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokX', events: [head200(), ['body', 'ok'], ['end'], ['error', 'HPE_UNEXPECTED_DATA']] },
  {
    name: 'CRLF after a complete message',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n',
    events: [head200(), ['body', 'ok'], ['end'], ['error', 'HPE_UNEXPECTED_DATA']],
  },
  {
    name: 'a body after a HEAD response',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    methods: ['HEAD'],
    events: [['head', 200, 'OK', ['Content-Length', '2'], info('none')], ['end'], ['error', 'HPE_UNEXPECTED_DATA']],
  },
  {
    name: 'a body after a 204',
    input: 'HTTP/1.1 204 No Content\r\n\r\nx',
    events: [['head', 204, 'No Content', [], info('none')], ['end'], ['error', 'HPE_UNEXPECTED_DATA']],
  },
  {
    name: 'a second response nobody asked for',
    input: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    events: [head200(), ['body', 'ok'], ['end'], ['error', 'HPE_UNEXPECTED_DATA']],
  },
  // HPE_PREMATURE_EOF
  { name: 'EOF before any byte', input: '', eof: true, events: [['error', 'HPE_PREMATURE_EOF']] },
  { name: 'EOF in the status line', input: 'HTTP/1.1 20', eof: true, events: [['error', 'HPE_PREMATURE_EOF']] },
  { name: 'EOF in the head', input: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n', eof: true, events: [['error', 'HPE_PREMATURE_EOF']] },
  { name: 'EOF after a 100 Continue', input: 'HTTP/1.1 100 Continue\r\n\r\n', eof: true, events: [['info', 100, []], ['error', 'HPE_PREMATURE_EOF']] },
  { name: 'EOF in a Content-Length body', input: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel', eof: true, events: [head200('hello'), ['body', 'hel'], ['error', 'HPE_PREMATURE_EOF']] },
  { name: 'EOF in a chunk', input: TE + '5\r\nhel', eof: true, events: [chunkedHead, ['body', 'hel'], ['error', 'HPE_PREMATURE_EOF']] },
  { name: 'EOF before the last chunk', input: TE + '2\r\nhi\r\n', eof: true, events: [chunkedHead, ['body', 'hi'], ['error', 'HPE_PREMATURE_EOF']] },
  { name: 'EOF in the trailers', input: TE + '0\r\nX-T: 1\r\n', eof: true, events: [chunkedHead, ['error', 'HPE_PREMATURE_EOF']] },
  // HPE_UNSUPPORTED_101
  { name: '101 Switching Protocols', input: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', events: [['error', 'HPE_UNSUPPORTED_101']] },
  { name: '101 after a 100', input: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n', events: [['info', 100, []], ['error', 'HPE_UNSUPPORTED_101']] },
];

describe('ResponseParser framing', () => {
  for (const c of framingCases) it(c.name, () => checkCase(c));
});

describe('ResponseParser errors', () => {
  for (const c of errorCases) it(`${c.events[c.events.length - 1]![1] as string}: ${c.name}`, () => checkCase(c));

  it('covers every error code', () => {
    const codes = new Set(errorCases.map((c) => c.events[c.events.length - 1]![1]));
    const all: ParseErrorCode[] = [
      'HPE_INVALID_STATUS',
      'HPE_INVALID_HEADER',
      'HPE_HEADER_OVERFLOW',
      'HPE_INVALID_CONTENT_LENGTH',
      'HPE_INVALID_TRANSFER_ENCODING',
      'HPE_INVALID_CHUNK',
      'HPE_UNEXPECTED_DATA',
      'HPE_PREMATURE_EOF',
      'HPE_UNSUPPORTED_101',
    ];
    expect([...codes].sort()).toEqual([...all].sort());
  });
});

describe('ResponseParser split invariance on mutated input', () => {
  // Valid responses with a few bytes replaced, inserted or dropped: whatever the parser makes of
  // them (mostly errors), it must make the same of every split.
  const interesting = Buffer.from('\r\n: \t\x00\x7f\x01a0F;=",\xe9-', 'latin1');
  it('gives the same events for the whole input, byte by byte and in random splits', () => {
    const random = prng(0x5eed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    for (let round = 0; round < 600; round++) {
      const base = pick(framingCases);
      const bytes = [...Buffer.from(base.input, 'latin1')];
      const edits = 1 + Math.floor(random() * 3);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(random() * (bytes.length + 1));
        const op = random();
        if (op < 0.4) bytes[at] = interesting[Math.floor(random() * interesting.length)]!;
        else if (op < 0.8) bytes.splice(at, 0, interesting[Math.floor(random() * interesting.length)]!);
        else bytes.splice(at, 1);
      }
      const input = Buffer.from(bytes);
      const c: Case = { ...base, input: input.toString('latin1'), events: [] };
      const whole = JSON.stringify(run(c, [input]));
      const cuts = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
      expect(JSON.stringify(run(c, splitAt(input, cuts))), `byte by byte: ${JSON.stringify(c.input)}`).toBe(whole);
      for (let k = 0; k < 5; k++) {
        const some = cuts.filter(() => random() < 0.15);
        expect(JSON.stringify(run(c, splitAt(input, some))), `split at ${some.join(',')}: ${JSON.stringify(c.input)}`).toBe(whole);
      }
    }
  });
});

describe('ResponseParser lifecycle', () => {
  const sink = () => {
    const events: string[] = [];
    return {
      events,
      handlers: {
        onHead: (status: number) => events.push(`head ${status}`),
        onInformational: (status: number) => events.push(`info ${status}`),
        onBody: (chunk: Buffer) => events.push(`body ${chunk.toString('latin1')}`),
        onEnd: () => events.push('end'),
      },
    };
  };
  const ok = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');

  it('is reused across responses with expect() between execute() calls', () => {
    const { events, handlers } = sink();
    const parser = new ResponseParser(handlers);
    expect(parser.busy).toBe(false);
    parser.expect('GET');
    expect(parser.busy).toBe(true);
    parser.execute(ok);
    expect(parser.busy).toBe(false);
    parser.finish(); // EOF while idle is fine
    parser.expect('GET');
    parser.execute(ok.subarray(0, 20));
    expect(parser.busy).toBe(true);
    parser.execute(ok.subarray(20));
    expect(events).toEqual(['head 200', 'body ok', 'end', 'head 200', 'body ok', 'end']);
  });

  it('is dead after an error until reset(), and busy meanwhile', () => {
    const { handlers } = sink();
    const parser = new ResponseParser(handlers);
    parser.expect('GET');
    let first: unknown;
    try {
      parser.execute(Buffer.from('HTTP/9 200 OK\r\n\r\n'));
    } catch (err) {
      first = err;
    }
    expect(first).toBeInstanceOf(UpstreamParseError);
    expect((first as UpstreamParseError).code).toBe('HPE_INVALID_STATUS');
    expect((first as UpstreamParseError).message).toMatch(/expected "HTTP\/1.0" or "HTTP\/1.1"/);
    expect(() => parser.execute(ok)).toThrow(first as Error);
    expect(parser.busy).toBe(true);
    expect(() => parser.expect('GET')).toThrow(/reset\(\)/);
    parser.finish(); // nothing more to report
    parser.reset();
    expect(parser.busy).toBe(false);
    parser.expect('GET');
    parser.execute(ok);
    expect(parser.busy).toBe(false);
  });

  it('reset() drops a partial response, including a partial line', () => {
    const { events, handlers } = sink();
    const parser = new ResponseParser(handlers);
    parser.expect('GET');
    parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Le'));
    parser.reset();
    parser.finish();
    parser.expect('GET');
    parser.execute(ok);
    expect(events).toEqual(['head 200', 'body ok', 'end']);
  });

  it('refuses expect() while a response is in progress', () => {
    const parser = new ResponseParser(sink().handlers);
    parser.expect('GET');
    expect(() => parser.expect('GET')).toThrow(/in progress/);
  });

  it('stops at once when a handler calls reset()', () => {
    const events: string[] = [];
    const parser: ResponseParser = new ResponseParser({
      onHead: () => events.push('head'),
      onInformational: () => events.push('info'),
      onBody: (chunk) => {
        events.push(`body ${chunk.toString()}`);
        parser.reset();
      },
      onEnd: () => events.push('end'),
    });
    parser.expect('GET');
    parser.execute(Buffer.from(TE + '2\r\nhi\r\n0\r\n\r\nnot parsed'));
    expect(events).toEqual(['head', 'body hi']);
    expect(parser.busy).toBe(false);
  });

  it('a handler exception kills the parser', () => {
    const parser = new ResponseParser({
      onHead: () => {
        throw new Error('boom');
      },
      onInformational: () => {},
      onBody: () => {},
      onEnd: () => {},
    });
    parser.expect('GET');
    expect(() => parser.execute(ok)).toThrow('boom');
    expect(() => parser.execute(ok)).toThrow('boom');
    expect(parser.busy).toBe(true);
  });

  it('hands a Content-Length body over without copying', () => {
    const seen: Buffer[] = [];
    const parser = new ResponseParser({ onHead: () => {}, onInformational: () => {}, onBody: (b) => seen.push(b), onEnd: () => {} });
    parser.expect('GET');
    parser.execute(ok);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.buffer).toBe(ok.buffer);
    parser.expect('GET');
    const body = Buffer.from('ok');
    parser.execute(ok.subarray(0, ok.length - 2));
    parser.execute(body);
    expect(seen[1]).toBe(body);
  });

  it('copies what it keeps before execute() returns: the caller may overwrite its Buffer', () => {
    const c = framingCases.find((x) => x.name.startsWith('values trimmed'))!;
    const input = Buffer.from(c.input, 'latin1');
    const lineEnds = [...c.input.matchAll(/\n/g)].map((m) => m.index + 1).slice(0, -1);
    const fixed = (size: number) => Array.from({ length: Math.floor((input.length - 1) / size) }, (_, i) => (i + 1) * size);
    for (const cuts of [lineEnds, fixed(7), fixed(23), fixed(40)]) {
      const events: Event[] = [];
      const parser = new ResponseParser({
        onHead: (status, reason, headers, info) => events.push(['head', status, reason, headers, { ...info }]),
        onInformational: () => {},
        onBody: (chunk) => events.push(['body', chunk.toString('latin1')]),
        onEnd: () => events.push(['end']),
      });
      parser.expect('GET');
      for (const piece of splitAt(input, cuts)) {
        parser.execute(piece);
        piece.fill(0x21); // the next read lands in the same memory
      }
      expect(events, `cuts ${cuts.join(',')}`).toEqual(c.events);
    }
  });

  it('validates its options', () => {
    const { handlers } = sink();
    expect(() => new ResponseParser(handlers, { maxHeaderBytes: 0 })).toThrow(/expected a positive integer for ResponseParser option maxHeaderBytes but received 0/);
    expect(() => new ResponseParser(handlers, { maxHeaders: 1.5 })).toThrow(RangeError);
  });

  it('accepts a 64 KiB head by default and rejects one byte more', () => {
    const build = (size: number) => {
      const fixed = 'HTTP/1.1 200 OK\r\nX-Big: \r\n\r\n'.length;
      return Buffer.from(`HTTP/1.1 200 OK\r\nX-Big: ${'b'.repeat(size - fixed)}\r\n\r\n`);
    };
    const { events, handlers } = sink();
    const parser = new ResponseParser(handlers);
    parser.expect('HEAD');
    parser.execute(build(64 * 1024));
    expect(events).toEqual(['head 200', 'end']);
    parser.expect('HEAD');
    expect(() => parser.execute(build(64 * 1024 + 1))).toThrow(expect.objectContaining({ code: 'HPE_HEADER_OVERFLOW' }));
  });

  it('handles a head fed one byte at a time without quadratic copying', () => {
    // 64 KiB of header bytes, one execute() per byte: must finish promptly (vitest's timeout is the bound).
    const size = 64 * 1024;
    const input = Buffer.from(`HTTP/1.1 204 No Content\r\nX-Big: ${'b'.repeat(size - 36)}\r\n\r\n`);
    const { events, handlers } = sink();
    const parser = new ResponseParser(handlers);
    parser.expect('GET');
    for (let i = 0; i < input.length; i++) parser.execute(input.subarray(i, i + 1));
    expect(events).toEqual(['head 204', 'end']);
  });
});

describe('request helpers', () => {
  it('isToken', () => {
    for (const s of ['GET', 'M-SEARCH', 'x', "!#$%&'*+-.^_`|~", 'Content-Type', '09az']) expect(isToken(s), s).toBe(true);
    for (const s of ['', 'GE T', 'a:b', 'a\r', 'caf\xe9', 'a"b', '(x)', 'a/b', 'a\u0100', 'a\tb', '[]', '{}', 'a,b', 'a;b', 'a=b', 'a?', 'a@b', '\\']) {
      expect(isToken(s), JSON.stringify(s)).toBe(false);
    }
  });

  it('isFieldValue', () => {
    for (const s of ['', 'text/html; charset=utf-8', 'a\tb', ' padded ', 'caf\xe9', '"quoted"', '~!@#$%^&*()']) expect(isFieldValue(s), s).toBe(true);
    for (const s of ['a\rb', 'a\nb', 'a\r\nX-Injected: 1', 'a\x00', '\x01', '\x1f', 'a\x7f', 'snow\u2603']) {
      expect(isFieldValue(s), JSON.stringify(s)).toBe(false);
    }
  });

  it('chunkHeader and LAST_CHUNK', () => {
    expect(chunkHeader(1)).toBe('1\r\n');
    expect(chunkHeader(255)).toBe('ff\r\n');
    expect(chunkHeader(65536)).toBe('10000\r\n');
    expect(LAST_CHUNK).toBe('0\r\n\r\n');
    for (const bad of [0, -1, 1.5, NaN, Infinity]) expect(() => chunkHeader(bad)).toThrow(RangeError);
  });

  it('chunkHeader output round-trips through the parser', () => {
    const pieces = ['a', 'x'.repeat(300), 'yz'];
    const wire = TE + pieces.map((p) => chunkHeader(p.length) + p + '\r\n').join('') + LAST_CHUNK;
    const events = run({ name: 'roundtrip', input: wire, events: [] }, [Buffer.from(wire)]);
    expect(events).toEqual([chunkedHead, ['body', pieces.join('')], ['end']]);
  });
});
