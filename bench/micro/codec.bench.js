// Micro-benchmark of the upstream response codec on typical keep-alive responses, with Node's own
// llhttp binding (the parser behind http.request) on the same bytes as a yardstick.
// Run: npm run build && node bench/micro/codec.bench.js
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import Benchmark from 'benchmark';
import { ResponseParser } from '../../dist/data-plane/upstream/codec.js';

const TYPICAL = Buffer.from(
  'HTTP/1.1 200 OK\r\n' +
    'Date: Mon, 01 Sep 2025 12:00:00 GMT\r\n' +
    'Server: nginx/1.24.0\r\n' +
    'Content-Type: application/json; charset=utf-8\r\n' +
    'Content-Length: 13\r\n' +
    'Connection: keep-alive\r\n' +
    'Cache-Control: no-store\r\n' +
    'ETag: "5f3a-1b2c"\r\n' +
    'X-Request-Id: 8d9f2c1e-4b7a-4c3e-9f1d-2a6b8c0e1f3a\r\n' +
    '\r\n' +
    '{"ok":true}\r\n',
);
const SPLIT_AT = TYPICAL.indexOf('Cache-Control') + 5; // mid-field: exercises the partial-line path
const TYPICAL_HEAD = TYPICAL.subarray(0, SPLIT_AT);
const TYPICAL_TAIL = TYPICAL.subarray(SPLIT_AT);
const CHUNKED = Buffer.from(
  'HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n' +
    '10\r\n<!doctype html>\n\r\n' +
    '19;ext=1\r\n<html><body>hello</body>\n\r\n' +
    '8\r\n</html>\n\r\n' +
    '0\r\n\r\n',
);

let sink = 0;
const handlers = {
  onHead(status, _reason, headers, info) {
    sink += status + headers.length + info.contentLength;
  },
  onInformational() {},
  onBody(chunk) {
    sink += chunk.length;
  },
  onEnd() {
    sink++;
  },
};

/** Node's llhttp binding, driven the way _http_client drives it; null where the internals moved. */
function llhttpParser() {
  try {
    const { HTTPParser } = createRequire(import.meta.url)('_http_common');
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.RESPONSE, {}, 0, 0);
    parser[HTTPParser.kOnHeadersComplete] = (_maj, _min, headers, _m, _u, status) => {
      sink += status + headers.length;
      return 0;
    };
    parser[HTTPParser.kOnBody] = (chunk) => {
      sink += chunk.length;
    };
    parser[HTTPParser.kOnMessageComplete] = () => {
      sink++;
    };
    parser.execute(TYPICAL);
    return parser;
  } catch {
    return null;
  }
}

export function codecSuite() {
  const parser = new ResponseParser(handlers);
  const suite = new Benchmark.Suite('upstream codec');
  suite
    .add('codec: 200, 8 headers, 13-byte body, one buffer', () => {
      parser.expect('GET');
      parser.execute(TYPICAL);
    })
    .add('codec: same, split mid-header in two buffers', () => {
      parser.expect('GET');
      parser.execute(TYPICAL_HEAD);
      parser.execute(TYPICAL_TAIL);
    })
    .add('codec: chunked, 3 chunks + last chunk', () => {
      parser.expect('GET');
      parser.execute(CHUNKED);
    });
  const llhttp = llhttpParser();
  if (llhttp) {
    suite.add('llhttp (node binding): 200, 8 headers, 13-byte body', () => {
      llhttp.execute(TYPICAL);
    });
  }
  return suite;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  codecSuite()
    .on('cycle', (event) => {
      const t = event.target;
      const ns = (1e9 / t.hz).toFixed(0);
      console.log(`${t.name.padEnd(55)} ${ns.padStart(6)} ns/op  ±${t.stats.rme.toFixed(1)}%  (${t.stats.sample.length} runs)`);
    })
    .on('complete', () => {
      if (sink === 0) console.log('(sink)');
    })
    .run();
}
