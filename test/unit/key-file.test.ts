// Key file parsing (every problem at once, with line numbers) and key generation.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import { generateKeyLine, parseKeyFile } from '../../src/config/key-file.js';

const key = randomBytes(32);
const other = randomBytes(32);

function problemsOf(text: string, source?: string): string[] {
  try {
    parseKeyFile(text, source);
  } catch (err) {
    expect(err).toMatchObject({ code: 'TETHER_ERR_KEY_FILE' });
    const { problems, message } = err as { problems: string[]; message: string };
    for (const p of problems) expect(message).toContain(p);
    return problems;
  }
  throw new Error('expected parseKeyFile to throw');
}

describe('parseKeyFile', () => {
  it('reads hex, base64 and base64url keys; the first key line seals', () => {
    const third = randomBytes(32);
    const text = [
      '\uFEFF# Tether route-token keys',
      '',
      `  12 ${key.toString('hex')}   # newest: seals`,
      `3\t${other.toString('base64')}`,
      `255 ${third.toString('base64url')}`,
      '   # trailing comment',
      '',
    ].join('\r\n');
    expect(parseKeyFile(text)).toEqual({
      keys: [
        { id: 12, key },
        { id: 3, key: other },
        { id: 255, key: third },
      ],
      sealKeyId: 12,
    });
  });

  it('accepts base64 with and without padding and upper-case hex', () => {
    const padded = key.toString('base64');
    expect(padded).toHaveLength(44);
    expect(parseKeyFile(`0 ${padded}`).keys[0]!.key).toEqual(key);
    expect(parseKeyFile(`0 ${padded.slice(0, 43)}`).keys[0]!.key).toEqual(key);
    expect(parseKeyFile(`0 ${key.toString('base64url')}=`).keys[0]!.key).toEqual(key);
    expect(parseKeyFile(`0 ${key.toString('hex').toUpperCase()}`).keys[0]!.key).toEqual(key);
  });

  it('reports every problem with its source and line number', () => {
    const text = [
      `1 ${key.toString('hex')}`, // 1 ok
      `1 ${other.toString('hex')}`, // 2 duplicate id
      `256 ${randomBytes(32).toString('hex')}`, // 3 id out of range
      `abc ${randomBytes(32).toString('hex')}`, // 4 id not decimal
      `4 ${randomBytes(31).toString('hex')}`, // 5 short hex
      `5 ${randomBytes(33).toString('base64')}`, // 6 long base64
      `6`, // 7 missing key
      `7 ${randomBytes(32).toString('hex')} extra`, // 8 extra field
      `8 ${'00'.repeat(32)}`, // 9 all zeros
      `9 ${key.toString('base64')}`, // 10 same key as line 1
      `-1 ${randomBytes(32).toString('hex')}`, // 11 negative id
      `1.5 zz`, // 12 bad id and bad key
    ].join('\n');
    expect(problemsOf(text, '/etc/tether/keys')).toEqual([
      '/etc/tether/keys:2: duplicate key id 1 (first on line 1)',
      '/etc/tether/keys:3: expected a key id 0..255 but received "256"',
      '/etc/tether/keys:4: expected a key id 0..255 but received "abc"',
      '/etc/tether/keys:5: expected a 32-byte key as 64 hex digits or 43/44 base64 characters but received 62 characters',
      '/etc/tether/keys:6: expected a 32-byte key as 64 hex digits or 43/44 base64 characters but received 44 characters',
      '/etc/tether/keys:7: expected "<id> <key>" but received 1 field',
      '/etc/tether/keys:8: expected "<id> <key>" but received 3 fields',
      '/etc/tether/keys:9: key is all zeros: generate one with `generateKeyLine`',
      '/etc/tether/keys:10: same key as line 1: every id needs its own key',
      '/etc/tether/keys:11: expected a key id 0..255 but received "-1"',
      '/etc/tether/keys:12: expected a key id 0..255 but received "1.5"',
      '/etc/tether/keys:12: expected a 32-byte key as 64 hex digits or 43/44 base64 characters but received 2 characters',
    ]);
  });

  it('refuses non-canonical base64 (non-zero spare bits), so one key has one spelling', () => {
    const text = key.toString('base64url');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const alt = text.slice(0, -1) + alphabet[alphabet.indexOf(text.at(-1)!) | 1]!;
    expect(Buffer.from(alt, 'base64url').equals(key)).toBe(true); // node's lenient decoder agrees...
    expect(problemsOf(`1 ${alt}`)).toEqual([
      '<key file>:1: expected a canonical base64 key (the last character has non-zero spare bits)',
    ]);
  });

  it('refuses a file without keys, and non-text', () => {
    expect(problemsOf('# nothing here\n\n', 'keys.txt')).toEqual(['keys.txt:0: no keys: expected at least one "<id> <key>" line']);
    expect(problemsOf('')).toHaveLength(1);
    expect(problemsOf(42 as unknown as string)).toEqual(['<key file>:0: expected the key file as text but received number']);
  });
});

describe('generateKeyLine', () => {
  it('makes a fresh key line that parses back', () => {
    const line = generateKeyLine(42);
    expect(line).toMatch(/^42 [0-9a-f]{64}$/);
    expect(generateKeyLine(42)).not.toBe(line);
    const parsed = parseKeyFile(`${generateKeyLine(7)}\n${line}\n`);
    expect(parsed.sealKeyId).toBe(7);
    expect(parsed.keys.map((k) => k.id)).toEqual([7, 42]);
    expect(parsed.keys[1]!.key.toString('hex')).toBe(line.split(' ')[1]);
  });

  it('refuses ids outside 0..255', () => {
    for (const id of [-1, 256, 1.5, NaN, '1' as unknown as number]) {
      expect(() => generateKeyLine(id)).toThrow(expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(/^expected a key id 0\.\.255 but received/) }));
    }
    expect(generateKeyLine(0)).toMatch(/^0 /);
    expect(generateKeyLine(255)).toMatch(/^255 /);
  });
});
