// Micro-benchmark of the HTTP front door's parsers on what browsers and API clients send: the
// request-head parser on a typical browser GET (one read, and split into 1,448-byte segments as
// a network delivers a large head), and the chunked decoder on an upload, with Node's own
// llhttp binding (the parser behind node:http servers) on the same bytes as a yardstick.
// Run: npm run build && node bench/micro/front-door.bench.js
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import Benchmark from 'benchmark';
import { RequestHeadParser } from '../../dist/data-plane/front-door/request-head.js';
import { ChunkedDecoder } from '../../dist/data-plane/front-door/chunked.js';

const BROWSER_GET = Buffer.from(
  'GET /shop/cart?item=42&ref=home HTTP/1.1\r\n' +
    'Host: shop.example.com\r\n' +
    'Connection: keep-alive\r\n' +
    'sec-ch-ua: "Chromium";v="156", "Not;A=Brand";v="24"\r\n' +
    'sec-ch-ua-mobile: ?0\r\n' +
    'Upgrade-Insecure-Requests: 1\r\n' +
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36\r\n' +
    'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n' +
    'Sec-Fetch-Site: same-origin\r\n' +
    'Sec-Fetch-Mode: navigate\r\n' +
    'Referer: https://shop.example.com/\r\n' +
    'Accept-Encoding: gzip, deflate, br, zstd\r\n' +
    'Accept-Language: en-GB,en;q=0.9\r\n' +
    'Cookie: TETHER=AQCB4VYp8VVVPHEy1edMkNuoMnSy4CdsI1mX0aXfX5dXpewktsx_PG9iz83tIctywbU; _ga=GA1.1.123456789.1700000000\r\n' +
    '\r\n',
  'latin1',
);
/** A 12 KiB head (many cookies), as a network delivers it: 1,448-byte segments, each parse resumed. */
const BIG_HEAD = Buffer.from(
  `GET / HTTP/1.1\r\nHost: shop.example.com\r\n${Array.from({ length: 40 }, (_, i) => `Cookie: c${i}=${'v'.repeat(280)}\r\n`).join('')}\r\n`,
  'latin1',
);
const CHUNKED_BODY = Buffer.concat([...Array.from({ length: 16 }, () => Buffer.from(`400;ext=1\r\n${'x'.repeat(1024)}\r\n`, 'latin1')), Buffer.from('0\r\n\r\n', 'latin1')]);

const LIMITS = { maxHeadBytes: 65_536, maxHeaders: 100 };
let sink = 0;

/** Node's llhttp binding, driven the way node:http's server drives it; null where the internals moved. */
function llhttpRequestParser() {
  try {
    const { HTTPParser } = createRequire(import.meta.url)('_http_common');
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
    parser[HTTPParser.kOnHeadersComplete] = (_maj, _min, headers) => {
      sink += headers.length;
      return 0;
    };
    parser[HTTPParser.kOnBody] = (chunk) => {
      sink += chunk.length;
    };
    parser[HTTPParser.kOnMessageComplete] = () => {
      sink++;
    };
    parser.execute(BROWSER_GET);
    return parser;
  } catch {
    return null;
  }
}

export function frontDoorSuite() {
  const head = new RequestHeadParser(LIMITS);
  const decoder = new ChunkedDecoder();
  const onData = (_buf, from, to) => {
    sink += to - from;
  };
  const suite = new Benchmark.Suite('front door');
  suite
    .add(`head: browser GET, 14 headers, ${BROWSER_GET.length} bytes, one read`, () => {
      head.reset();
      sink += head.parse(BROWSER_GET, 0, BROWSER_GET.length) + head.names.length;
    })
    .add(`head: ${BIG_HEAD.length}-byte head in 1,448-byte segments`, () => {
      head.reset();
      let n = 0;
      for (let end = Math.min(1448, BIG_HEAD.length); n === 0; end = Math.min(end + 1448, BIG_HEAD.length)) n = head.parse(BIG_HEAD, 0, end);
      sink += n;
    })
    .add('chunked: 16 KiB upload in 1 KiB chunks with extensions, one read', () => {
      decoder.reset();
      sink += decoder.decode(CHUNKED_BODY, 0, CHUNKED_BODY.length, onData);
    });
  const llhttp = llhttpRequestParser();
  if (llhttp) {
    suite.add('llhttp (node binding): the same browser GET', () => {
      llhttp.execute(BROWSER_GET);
    });
  }
  return suite;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  frontDoorSuite()
    .on('cycle', (event) => {
      const t = event.target;
      const ns = (1e9 / t.hz).toFixed(0);
      console.log(`${t.name.padEnd(62)} ${ns.padStart(6)} ns/op  ±${t.stats.rme.toFixed(1)}%  (${t.stats.sample.length} runs)`);
    })
    .on('complete', () => {
      if (sink === 0) console.log('(sink)');
    })
    .run();
}
