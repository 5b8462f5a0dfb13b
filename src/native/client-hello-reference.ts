// JS reference ClientHello parser and JA4: the oracle native/src/client_hello.cc is tested
// against. Written plainly from the text in native/include/tether/client_hello.h (wire format,
// order of decisions, reason strings) and FoxIO's JA4.md, for clarity, not speed.
import { createHash } from 'node:crypto';

import {
  CLIENT_HELLO_DEFAULT_MAX_BYTES,
  checkClientHelloArgs,
  type ClientHelloOk,
  type ClientHelloOptions,
  type ClientHelloResult,
} from './index.js';

const RECORD_HEADER = 5;
const MAX_RECORD_PAYLOAD = 16_384;
const TOO_LARGE = 'ClientHello exceeds the size cap';

const EXT_SERVER_NAME = 0x0000;
const EXT_SIGNATURE_ALGORITHMS = 0x000d;
const EXT_ALPN = 0x0010;
const EXT_PRE_SHARED_KEY = 0x0029;
const EXT_SUPPORTED_VERSIONS = 0x002b;

/** A decision other than ok or incomplete, thrown from deep inside and returned at the top. */
class Verdict extends Error {
  constructor(
    readonly status: 'not_tls' | 'too_large' | 'malformed',
    readonly reason: string,
  ) {
    super(reason);
  }
}

const malformed = (reason: string) => new Verdict('malformed', reason);

/** RFC 8701 GREASE values: 0x0a0a, 0x1a1a, … 0xfafa. */
function isGrease(value: number): boolean {
  return (value & 0x0f0f) === 0x0a0a && value >> 8 === (value & 0xff);
}

/**
 * Walks the records from offset 0 and returns the handshake message once every record carrying
 * it is in, with the bytes those records take; null while more bytes are needed.
 */
function collectMessage(input: Uint8Array, cap: number): { message: Buffer; consumed: number } | null {
  const fragments: Uint8Array[] = [];
  let announced = 0; // handshake bytes the record headers read so far promise
  let messageSize: number | undefined;
  let offset = 0;
  for (let index = 0; ; index++) {
    const first = index === 0;
    if (!first && offset + RECORD_HEADER + 1 > cap) throw new Verdict('too_large', TOO_LARGE);
    const header = input.subarray(offset, offset + RECORD_HEADER);
    if (header.length < 1) return null;
    if (header[0] !== 0x16) {
      throw first
        ? new Verdict('not_tls', 'not a TLS handshake record')
        : malformed('non-handshake record inside the ClientHello');
    }
    if (header.length < 2) return null;
    if (header[1] !== 3) {
      throw first ? new Verdict('not_tls', 'record version is not 3.x') : malformed('record version is not 3.x');
    }
    if (header.length < RECORD_HEADER) return null;
    const length = (header[3]! << 8) | header[4]!;
    if (length === 0) throw malformed('empty record');
    if (length > MAX_RECORD_PAYLOAD) throw malformed('record longer than 16384 bytes');
    const end = offset + RECORD_HEADER + length;
    if (end > cap) throw new Verdict('too_large', TOO_LARGE);

    // Whatever part of this record's fragment has arrived counts towards the message header.
    fragments.push(input.subarray(offset + RECORD_HEADER, end));
    announced += length;
    if (messageSize === undefined) {
      const known = Buffer.concat(fragments);
      if (known.length >= 1 && known[0] !== 0x01) throw malformed('handshake message is not a ClientHello');
      if (known.length >= 4) messageSize = 4 + known.readUIntBE(1, 3);
    }
    if (messageSize !== undefined) {
      if (announced > messageSize) throw malformed('ClientHello does not end on a record boundary');
      if (announced < messageSize) {
        // Even if every remaining byte came in full-size records, where would the last one end?
        const missing = messageSize - announced;
        const earliestEnd = end + missing + RECORD_HEADER * Math.ceil(missing / MAX_RECORD_PAYLOAD);
        if (earliestEnd > cap) throw new Verdict('too_large', TOO_LARGE);
      }
    }
    if (end > input.length) return null;
    offset = end;
    if (messageSize !== undefined && announced === messageSize) {
      return { message: Buffer.concat(fragments), consumed: offset };
    }
  }
}

/** Reads the ClientHello body front to back; every read names the field it belongs to. */
class BodyReader {
  #at = 0;
  constructor(private readonly bytes: Buffer) {}

  get remaining(): number {
    return this.bytes.length - this.#at;
  }

  take(count: number, field: string): Buffer {
    if (count > this.remaining) throw malformed(`ClientHello truncated in ${field}`);
    const part = this.bytes.subarray(this.#at, this.#at + count);
    this.#at += count;
    return part;
  }

  uint8(field: string): number {
    return this.take(1, field)[0]!;
  }

  uint16(field: string): number {
    return this.take(2, field).readUInt16BE(0);
  }
}

function uint16List(bytes: Buffer): number[] {
  const values: number[] = [];
  for (let i = 0; i + 1 < bytes.length; i += 2) values.push(bytes.readUInt16BE(i));
  return values;
}

const HOST_LABEL = /^[A-Za-z0-9_-]{1,63}$/;

function readServerName(data: Buffer): string {
  if (data.length < 2 || data.readUInt16BE(0) !== data.length - 2) throw malformed('malformed server_name extension');
  const list = data.subarray(2);
  // Exactly one entry, of type host_name (0), filling the list.
  if (list.length < 3 || list[0] !== 0 || list.readUInt16BE(1) !== list.length - 3) {
    throw malformed('server_name must hold exactly one host_name');
  }
  const name = list.subarray(3).toString('latin1');
  if (name.length === 0) throw malformed('empty host name');
  if (name.length > 253 || !name.split('.').every((label) => HOST_LABEL.test(label))) {
    throw malformed('host name is not a valid DNS name');
  }
  return name.toLowerCase();
}

function readAlpn(data: Buffer): string[] {
  if (data.length < 2 || data.readUInt16BE(0) !== data.length - 2 || data.length - 2 < 2) {
    throw malformed('malformed ALPN extension');
  }
  const names: string[] = [];
  let at = 2;
  while (at < data.length) {
    const size = data[at]!;
    if (size === 0) throw malformed('empty ALPN protocol name');
    if (at + 1 + size > data.length) throw malformed('malformed ALPN extension');
    names.push(data.subarray(at + 1, at + 1 + size).toString('latin1'));
    at += 1 + size;
  }
  return names;
}

function readSupportedVersions(data: Buffer): number[] {
  const size = data.length >= 1 ? data[0]! : -1;
  if (size < 2 || size % 2 !== 0 || size + 1 !== data.length) throw malformed('malformed supported_versions extension');
  return uint16List(data.subarray(1));
}

function readSignatureAlgorithms(data: Buffer): number[] {
  const size = data.length >= 2 ? data.readUInt16BE(0) : -1;
  if (size < 2 || size % 2 !== 0 || size + 2 !== data.length) {
    throw malformed('malformed signature_algorithms extension');
  }
  return uint16List(data.subarray(2));
}

interface Hello {
  legacyVersion: number;
  ciphers: number[];
  extensions: number[]; // types, wire order
  sni: string | null;
  alpn: string[];
  supportedVersions: number[] | null; // raw, GREASE included
  signatureAlgorithms: number[];
}

function parseBody(message: Buffer): Hello {
  const body = new BodyReader(message.subarray(4));
  const legacyVersion = body.uint16('legacy_version');
  if (legacyVersion >> 8 !== 3) throw malformed('legacy_version is not 3.x');
  body.take(32, 'random');
  const sessionIdLength = body.uint8('legacy_session_id');
  if (sessionIdLength > 32) throw malformed('legacy_session_id longer than 32 bytes');
  body.take(sessionIdLength, 'legacy_session_id');
  const cipherBytes = body.uint16('cipher_suites');
  if (cipherBytes === 0 || cipherBytes % 2 === 1) throw malformed('cipher_suites length is zero or odd');
  const ciphers = uint16List(body.take(cipherBytes, 'cipher_suites'));
  const compressionCount = body.uint8('legacy_compression_methods');
  if (compressionCount === 0) throw malformed('legacy_compression_methods is empty');
  body.take(compressionCount, 'legacy_compression_methods');

  const hello: Hello = {
    legacyVersion,
    ciphers,
    extensions: [],
    sni: null,
    alpn: [],
    supportedVersions: null,
    signatureAlgorithms: [],
  };
  if (body.remaining === 0) return hello; // TLS <= 1.2 may leave the extensions out altogether
  const blockLength = body.uint16('extensions');
  if (blockLength !== body.remaining) throw malformed('extensions block does not fill the ClientHello');
  const block = body.take(blockLength, 'extensions');

  const seen = new Set<number>();
  let at = 0;
  while (at < block.length) {
    if (block.length - at < 4) throw malformed('extension header truncated');
    const type = block.readUInt16BE(at);
    const length = block.readUInt16BE(at + 2);
    at += 4;
    if (at + length > block.length) throw malformed('extension data overruns the extensions block');
    const data = block.subarray(at, at + length);
    at += length;
    if (seen.has(type)) throw malformed('duplicate extension');
    seen.add(type);
    hello.extensions.push(type);
    if (type === EXT_SERVER_NAME) hello.sni = readServerName(data);
    else if (type === EXT_ALPN) hello.alpn = readAlpn(data);
    else if (type === EXT_SUPPORTED_VERSIONS) hello.supportedVersions = readSupportedVersions(data);
    else if (type === EXT_SIGNATURE_ALGORITHMS) hello.signatureAlgorithms = readSignatureAlgorithms(data);
    else if (type === EXT_PRE_SHARED_KEY && at !== block.length) {
      throw malformed('pre_shared_key is not the last extension');
    }
  }
  return hello;
}

// ---------------------------------------------------------------------------------------------
// JA4 (FoxIO JA4.md), TLS over TCP.

const JA4_VERSION = new Map<number, string>([
  [0x0304, '13'],
  [0x0303, '12'],
  [0x0302, '11'],
  [0x0301, '10'],
  [0x0300, 's3'],
  [0x0002, 's2'],
  [0xfeff, 'd1'],
  [0xfefd, 'd2'],
  [0xfefc, 'd3'],
]);

const hex4 = (value: number) => value.toString(16).padStart(4, '0');
const twoDigits = (count: number) => String(Math.min(count, 99)).padStart(2, '0');
const truncatedSha256 = (text: string) =>
  text === '' ? '000000000000' : createHash('sha256').update(text).digest('hex').slice(0, 12);
const ALPHANUMERIC = /^[0-9A-Za-z]$/;

function alpnPart(first: string | undefined): string {
  if (first === undefined) return '00';
  const a = first[0]!;
  const z = first[first.length - 1]!;
  if (ALPHANUMERIC.test(a) && ALPHANUMERIC.test(z)) return a + z;
  const hex = Buffer.from(first, 'latin1').toString('hex');
  return hex[0]! + hex[hex.length - 1]!;
}

function ja4Of(hello: Hello): { ja4: string; ja4r: string } {
  const ciphers = hello.ciphers.filter((v) => !isGrease(v));
  const extensions = hello.extensions.filter((v) => !isGrease(v));
  const versions = (hello.supportedVersions ?? []).filter((v) => !isGrease(v));
  const version = versions.length > 0 ? Math.max(...versions) : hello.legacyVersion;
  const a =
    't' +
    (JA4_VERSION.get(version) ?? '00') +
    (hello.extensions.includes(EXT_SERVER_NAME) ? 'd' : 'i') +
    twoDigits(ciphers.length) +
    twoDigits(extensions.length) +
    alpnPart(hello.alpn[0]);
  const cipherList = ciphers.map(hex4).sort().join(',');
  const extensionList = extensions
    .filter((v) => v !== EXT_SERVER_NAME && v !== EXT_ALPN)
    .map(hex4)
    .sort()
    .join(',');
  const signatureList = hello.signatureAlgorithms.filter((v) => !isGrease(v)).map(hex4).join(',');
  const c = signatureList === '' ? extensionList : `${extensionList}_${signatureList}`;
  return {
    ja4: `${a}_${truncatedSha256(cipherList)}_${truncatedSha256(extensionList === '' ? '' : c)}`,
    ja4r: `${a}_${cipherList}_${c}`,
  };
}

/** Same contract as parseClientHello in ./index.ts. */
export function referenceParseClientHello(
  bytes: Uint8Array,
  maxBytes: number = CLIENT_HELLO_DEFAULT_MAX_BYTES,
  options: ClientHelloOptions = {},
): ClientHelloResult {
  checkClientHelloArgs(bytes, maxBytes);
  try {
    const collected = collectMessage(bytes, maxBytes);
    if (collected === null) return { status: 'incomplete' };
    const hello = parseBody(collected.message);
    const result: ClientHelloOk = {
      status: 'ok',
      consumed: collected.consumed,
      sni: hello.sni,
      alpn: hello.alpn,
      versions: (hello.supportedVersions ?? []).filter((v) => !isGrease(v)),
      legacyVersion: hello.legacyVersion,
      ...(options.fingerprint === false ? { ja4: '', ja4r: '' } : ja4Of(hello)),
    };
    return result;
  } catch (err) {
    if (err instanceof Verdict) return { status: err.status, reason: err.reason };
    throw err;
  }
}
