// Route-token key file: parse (every problem reported at once, with line numbers) and generate.
//
// Format — UTF-8 text, one key per line:
//
//   # comment lines and blank lines are ignored; so is anything after " #" on a key line
//   <id> <key>
//
//   id   decimal 0..255; goes into every token header in clear, so it must be unique
//   key  32 random bytes, as 64 hex digits, or base64 / base64url (44 chars padded, 43 unpadded)
//
// The FIRST key line seals new tokens; every line opens (as nginx's ssl_session_ticket_key).
// To rotate: put the new key first, keep the old one below it for the grace period, reload.
//
//   # rotated 2025-01-10: key 7 seals, key 6 still opens
//   7 <64 hex digits>
//   6 <43 base64url characters>
import { randomBytes } from 'node:crypto';

import { TetherError } from '../errors.js';

const KEY_FILE_KEY_BYTES = 32;

interface ParsedKeyFile {
  keys: { id: number; key: Buffer }[];
  sealKeyId: number;
}

interface KeyFileError extends TetherError {
  code: 'TETHER_ERR_KEY_FILE';
  /** Each problem as "<source>:<line>: <problem>" (line 0 for whole-file problems). */
  problems: string[];
}

const HEX_KEY = /^[0-9a-fA-F]{64}$/;
const BASE64_KEY = /^[A-Za-z0-9+/]{43}=?$/;
const BASE64URL_KEY = /^[A-Za-z0-9_-]{43}=?$/;
const DECIMAL_ID = /^[0-9]{1,3}$/;

/** 32 bytes from hex, base64 or base64url, in its canonical spelling only; else a problem. */
function decodeKey(text: string): Buffer | string {
  if (HEX_KEY.test(text)) return Buffer.from(text, 'hex');
  const isBase64 = BASE64_KEY.test(text);
  const isBase64Url = BASE64URL_KEY.test(text);
  if (!isBase64 && !isBase64Url) {
    return (
      `expected a ${KEY_FILE_KEY_BYTES}-byte key as 64 hex digits or 43/44 base64 characters ` +
      `but received ${text.length} characters`
    );
  }
  const unpadded = text.endsWith('=') ? text.slice(0, -1) : text;
  const key = Buffer.from(unpadded, isBase64 ? 'base64' : 'base64url');
  const canonical = key.toString(isBase64 ? 'base64' : 'base64url').replace(/=+$/, '');
  if (key.length !== KEY_FILE_KEY_BYTES || canonical !== unpadded) {
    // 43 characters carry 258 bits: the last character's 2 spare bits must be zero.
    return 'expected a canonical base64 key (the last character has non-zero spare bits)';
  }
  return key;
}

export function parseKeyFile(text: string, source = '<key file>'): ParsedKeyFile {
  const problems: string[] = [];
  const keys: ParsedKeyFile['keys'] = [];
  const lineOfId = new Map<number, number>();
  const lineOfKey = new Map<string, number>();

  if (typeof text !== 'string') {
    problems.push(`${source}:0: expected the key file as text but received ${typeof text}`);
  } else {
    const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
    lines.forEach((rawLine, index) => {
      const lineNo = index + 1;
      const problem = (message: string): void => {
        problems.push(`${source}:${lineNo}: ${message}`);
      };
      const hash = rawLine.search(/(^|\s)#/);
      const line = (hash === -1 ? rawLine : rawLine.slice(0, hash)).trim();
      if (line === '') return;
      const fields = line.split(/\s+/);
      if (fields.length !== 2) {
        problem(`expected "<id> <key>" but received ${fields.length} field${fields.length === 1 ? '' : 's'}`);
        return;
      }
      const [idText, keyText] = fields as [string, string];
      let id: number | undefined;
      if (!DECIMAL_ID.test(idText) || Number(idText) > 255) {
        problem(`expected a key id 0..255 but received ${JSON.stringify(idText.slice(0, 20))}`);
      } else {
        id = Number(idText);
        const first = lineOfId.get(id);
        if (first !== undefined) {
          problem(`duplicate key id ${id} (first on line ${first})`);
          id = undefined;
        } else {
          lineOfId.set(id, lineNo);
        }
      }
      const key = decodeKey(keyText);
      if (typeof key === 'string') {
        problem(key);
        return;
      }
      if (key.every((b) => b === 0)) {
        problem('key is all zeros: generate one with `generateKeyLine`');
        return;
      }
      const hex = key.toString('hex');
      const sameKeyLine = lineOfKey.get(hex);
      if (sameKeyLine !== undefined) {
        problem(`same key as line ${sameKeyLine}: every id needs its own key`);
        return;
      }
      lineOfKey.set(hex, lineNo);
      if (id !== undefined) keys.push({ id, key });
    });
    if (problems.length === 0 && keys.length === 0) {
      problems.push(`${source}:0: no keys: expected at least one "<id> <key>" line`);
    }
  }

  if (problems.length > 0) {
    const message = `invalid key file ${source}:\n  ${problems.join('\n  ')}`;
    throw Object.assign(new TetherError('TETHER_ERR_KEY_FILE', message), { problems }) as KeyFileError;
  }
  return { keys, sealKeyId: keys[0]!.id };
}

/** A fresh key line, "<id> <64 hex digits>", for the top of a key file. */
export function generateKeyLine(id: number): string {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 255) {
    throw Object.assign(new RangeError(`expected a key id 0..255 but received ${String(id)}`), {
      code: 'TETHER_ERR_INVALID_ARG_VALUE',
    });
  }
  return `${id} ${randomBytes(KEY_FILE_KEY_BYTES).toString('hex')}`;
}
