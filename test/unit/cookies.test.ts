// Cookie / Set-Cookie handling for the sticky modes, including hostile request headers.
// Each expectation pins one documented rule from src/sticky/cookies.ts.

import { describe, expect, it } from 'vitest';
import {
  getCookie,
  joinPrefixed,
  mapCookie,
  parseSetCookie,
  removeCookie,
  replaceSetCookieValue,
  serializeSetCookie,
  splitPrefixed,
} from '../../src/sticky/cookies.js';

describe('getCookie', () => {
  it('finds a cookie at the start, middle and end', () => {
    const h = 'TETHER=tok; a=1; b=2';
    expect(getCookie(h, 'TETHER')).toBe('tok');
    expect(getCookie(h, 'a')).toBe('1');
    expect(getCookie(h, 'b')).toBe('2');
    expect(getCookie(h, 'c')).toBeUndefined();
    expect(getCookie('', 'a')).toBeUndefined();
  });

  it('tolerates missing or extra whitespace and tabs around names, values and separators', () => {
    expect(getCookie('a=1;TETHER=tok;b=2', 'TETHER')).toBe('tok');
    expect(getCookie('a=1 ;  \tTETHER = tok \t; b=2', 'TETHER')).toBe('tok');
    expect(getCookie('   TETHER=tok', 'TETHER')).toBe('tok');
    expect(getCookie('TETHER=tok   ', 'TETHER')).toBe('tok');
  });

  it('does not match a name that merely ends or starts with the wanted one', () => {
    expect(getCookie('XTETHER=1; TETHERX=2; X_TETHER=3', 'TETHER')).toBeUndefined();
    expect(getCookie('XTETHER=1; TETHERX=2; TETHER=3', 'TETHER')).toBe('3');
    expect(getCookie('ab=1; a=2; b=3', 'a')).toBe('2');
    expect(getCookie('ab=1; b=3', 'a')).toBeUndefined();
  });

  it('does not match the name inside another cookie value', () => {
    expect(getCookie('a=TETHER=evil; TETHER=good', 'TETHER')).toBe('good');
    expect(getCookie('a=x TETHER=evil', 'TETHER')).toBeUndefined();
    expect(getCookie('a="TETHER=evil"', 'TETHER')).toBeUndefined();
  });

  it('first occurrence wins with duplicate names', () => {
    expect(getCookie('TETHER=first; TETHER=second', 'TETHER')).toBe('first');
    expect(getCookie('TETHER=; TETHER=second', 'TETHER')).toBe('');
  });

  it('treats a segment without "=" as a nameless value, not as the cookie', () => {
    expect(getCookie('TETHER; a=1', 'TETHER')).toBeUndefined();
    expect(getCookie('TETHER', 'TETHER')).toBeUndefined();
    expect(getCookie('TETHER; TETHER=v', 'TETHER')).toBe('v');
  });

  it('returns empty values as "" (present), not undefined', () => {
    expect(getCookie('TETHER=', 'TETHER')).toBe('');
    expect(getCookie('TETHER=; a=1', 'TETHER')).toBe('');
    expect(getCookie('TETHER=   ;a=1', 'TETHER')).toBe('');
  });

  it('returns quoted values raw, quotes included, and keeps "=" inside values', () => {
    expect(getCookie('TETHER="abc"; a=1', 'TETHER')).toBe('"abc"');
    expect(getCookie('a=b=c==', 'a')).toBe('b=c==');
    expect(getCookie('a=""', 'a')).toBe('""');
  });

  it('survives stray semicolons', () => {
    expect(getCookie(';;; ;TETHER=tok;;;', 'TETHER')).toBe('tok');
    expect(getCookie('a=1;;TETHER=tok', 'TETHER')).toBe('tok');
    expect(getCookie(';', 'TETHER')).toBeUndefined();
    expect(getCookie('=;=;=', 'TETHER')).toBeUndefined();
  });

  it('handles unicode names and values by UTF-16 code units', () => {
    expect(getCookie('ç=é✓😀; TETHER=tok', 'ç')).toBe('é✓😀');
    expect(getCookie('😀=1; TETHER=😀', 'TETHER')).toBe('😀');
    expect(getCookie('xç=1', 'ç')).toBeUndefined();
  });

  it('finds the cookie among hundreds, and in a very long header', () => {
    const many = Array.from({ length: 500 }, (_, i) => `c${i}=v${i}`);
    const h = [...many, 'TETHER=last'].join('; ');
    expect(getCookie(h, 'TETHER')).toBe('last');
    expect(getCookie(h, 'c499')).toBe('v499');
    expect(getCookie(h, 'c4')).toBe('v4');
    expect(getCookie(h, 'c500')).toBeUndefined();

    const huge = `a=${'x'.repeat(1_000_000)}; TETHER=tok`;
    expect(getCookie(huge, 'TETHER')).toBe('tok');
    // Many near-misses: every "TETHER" is a suffix of another name or inside a value.
    const traps = `${'XTETHER=1; a=TETHER; '.repeat(20_000)}TETHER=found`;
    expect(getCookie(traps, 'TETHER')).toBe('found');
    expect(getCookie('TETHER'.repeat(50_000), 'TETHER')).toBeUndefined();
    const spaces = ' '.repeat(100_000);
    expect(getCookie(`a=1;${spaces}TETHER${spaces}=${spaces}tok${spaces};b=2`, 'TETHER')).toBe('tok');
    expect(getCookie(`${spaces}TETHER${spaces}`.repeat(20), 'TETHER')).toBeUndefined();
  });

  it('returns undefined for an empty name', () => {
    expect(getCookie('=v; a=1', '')).toBeUndefined();
  });
});

describe('removeCookie', () => {
  it('removes the cookie wherever it is, keeping the others byte for byte', () => {
    expect(removeCookie('TETHER=t; a=1; b=2', 'TETHER')).toBe('a=1; b=2');
    expect(removeCookie('a=1; TETHER=t; b=2', 'TETHER')).toBe('a=1; b=2');
    expect(removeCookie('a=1; TETHER=t', 'TETHER')).toBe('a=1');
    expect(removeCookie('a=1;TETHER=t;b="x y"', 'TETHER')).toBe('a=1;b="x y"');
  });

  it('removes every duplicate', () => {
    expect(removeCookie('TETHER=1; a=1; TETHER=2; b=2; TETHER=3', 'TETHER')).toBe('a=1; b=2');
    expect(removeCookie('TETHER=1;TETHER=2', 'TETHER')).toBe('');
  });

  it("returns '' when nothing is left", () => {
    expect(removeCookie('TETHER=t', 'TETHER')).toBe('');
    expect(removeCookie(' TETHER=t ; ', 'TETHER')).toBe('');
  });

  it('returns the header itself when the cookie is absent, and leaves look-alikes alone', () => {
    const h = 'XTETHER=1; TETHERX=2; a=TETHER=3; TETHER';
    expect(removeCookie(h, 'TETHER')).toBe(h);
    expect(removeCookie('XTETHER=1; TETHER=2; TETHERX=3', 'TETHER')).toBe('XTETHER=1; TETHERX=3');
  });

  it('copes with stray semicolons and empty values', () => {
    expect(removeCookie(';;TETHER=;; a=1;;', 'TETHER')).toBe('a=1');
    // Separators between surviving pairs are not normalised.
    expect(removeCookie('a=1;;TETHER=x;;b=2', 'TETHER')).toBe('a=1;;;b=2');
    expect(removeCookie('a=;TETHER=;b=', 'TETHER')).toBe('a=;b=');
  });

  it('handles hundreds of cookies', () => {
    const others = Array.from({ length: 300 }, (_, i) => `c${i}=${i}`);
    const mixed = others.flatMap((c, i) => (i % 3 === 0 ? [c, `TETHER=${i}`] : [c]));
    expect(removeCookie(mixed.join('; '), 'TETHER')).toBe(others.join('; '));
  });
});

describe('mapCookie', () => {
  const strip = (v: string) => splitPrefixed(v)?.appValue ?? v;

  it('rewrites only the value of every matching cookie', () => {
    expect(mapCookie('a=1; SID=tok~abc; b=2', 'SID', strip)).toBe('a=1; SID=abc; b=2');
    expect(mapCookie('SID=t1~x;SID = t2~y ', 'SID', strip)).toBe('SID=x;SID = y ');
    expect(mapCookie('SID=; a=1', 'SID', (v) => `[${v}]`)).toBe('SID=[]; a=1');
  });

  it('passes the raw value, quotes included', () => {
    const seen: string[] = [];
    mapCookie('SID=tok~"abc"; SID="q"', 'SID', (v) => (seen.push(v), v));
    expect(seen).toEqual(['tok~"abc"', '"q"']);
    expect(mapCookie('SID=tok~"abc"', 'SID', strip)).toBe('SID="abc"');
  });

  it('returns the header itself when the cookie is absent, and leaves look-alikes alone', () => {
    const h = 'XSID=tok~a; SIDX=tok~b; a=SID=tok~c';
    expect(mapCookie(h, 'SID', () => 'changed')).toBe(h);
  });

  it('is safe when the mapper itself parses cookies', () => {
    const h = 'SID=t~a; other=1; SID=t~b';
    expect(mapCookie(h, 'SID', (v) => `${getCookie(h, 'other') ?? ''}${strip(v)}`)).toBe('SID=1a; other=1; SID=1b');
  });
});

describe('serializeSetCookie', () => {
  it('writes name=value and attributes in a fixed order', () => {
    expect(serializeSetCookie('TETHER', 'abc-_123', {})).toBe('TETHER=abc-_123');
    expect(
      serializeSetCookie('TETHER', 'tok', { path: '/', domain: 'example.com', maxAge: 3600, httpOnly: true, secure: true, sameSite: 'None' }),
    ).toBe('TETHER=tok; Path=/; Domain=example.com; Max-Age=3600; HttpOnly; Secure; SameSite=None');
    expect(serializeSetCookie('TETHER', '', { maxAge: 0, httpOnly: false, sameSite: 'Lax' })).toBe('TETHER=; Max-Age=0; SameSite=Lax');
    expect(serializeSetCookie('SID', '"quoted"', {})).toBe('SID="quoted"');
  });

  it('rejects names that are not tokens', () => {
    for (const name of ['', 'a b', 'a;b', 'a=b', 'a,b', 'é', 'a\u0000', '(a)']) {
      expect(() => serializeSetCookie(name, 'v', {}), name).toThrow(/cookie name/);
    }
  });

  it('rejects values outside cookie-octets', () => {
    for (const value of ['a b', 'a;b', 'a,b', 'a\\b', 'a"b', '"', 'é', 'a\r\nSet-Cookie: x=y', '\u0000']) {
      expect(() => serializeSetCookie('a', value, {}), value).toThrow(/cookie-octets/);
    }
  });

  it('rejects bad attributes', () => {
    expect(() => serializeSetCookie('a', 'v', { path: '/x;Secure' })).toThrow(/path/);
    expect(() => serializeSetCookie('a', 'v', { path: '' })).toThrow(/path/);
    expect(() => serializeSetCookie('a', 'v', { domain: 'evil.com; Path=/' })).toThrow(/domain/);
    expect(() => serializeSetCookie('a', 'v', { maxAge: 1.5 })).toThrow(/maxAge/);
    expect(() => serializeSetCookie('a', 'v', { maxAge: Number.POSITIVE_INFINITY })).toThrow(/maxAge/);
    expect(() => serializeSetCookie('a', 'v', { sameSite: 'lax' as 'Lax' })).toThrow(/sameSite/);
    expect(() => serializeSetCookie('a', 'v', { sameSite: 'None' })).toThrow(/secure/);
  });

  it('round-trips through parseSetCookie and getCookie', () => {
    const header = serializeSetCookie('TETHER', 'AbC-_09', { path: '/', httpOnly: true });
    const parsed = parseSetCookie(header);
    expect(parsed).toMatchObject({ name: 'TETHER', value: 'AbC-_09', deletes: false });
    expect(getCookie(`a=1; TETHER=${parsed?.value ?? ''}`, 'TETHER')).toBe('AbC-_09');
  });
});

describe('parseSetCookie', () => {
  const NOW = Date.UTC(2025, 0, 1);

  it('returns name, raw value and its offsets', () => {
    const h = 'SID=abc123; Path=/; HttpOnly';
    expect(parseSetCookie(h, NOW)).toEqual({ name: 'SID', value: 'abc123', valueStart: 4, valueEnd: 10, deletes: false });
    const spaced = '  SID =  "q v"  ; Path=/';
    const p = parseSetCookie(spaced, NOW);
    expect(p).toMatchObject({ name: 'SID', value: '"q v"' });
    expect(spaced.slice(p?.valueStart, p?.valueEnd)).toBe('"q v"');
  });

  it('accepts empty values and "=" inside values', () => {
    expect(parseSetCookie('SID=; Path=/', NOW)).toMatchObject({ name: 'SID', value: '', valueStart: 4, valueEnd: 4 });
    expect(parseSetCookie('SID=a=b==', NOW)).toMatchObject({ name: 'SID', value: 'a=b==' });
  });

  it('returns null for malformed pairs', () => {
    expect(parseSetCookie('', NOW)).toBeNull();
    expect(parseSetCookie('SID', NOW)).toBeNull();
    expect(parseSetCookie('SID; Path=/a=b', NOW)).toBeNull();
    expect(parseSetCookie('=abc', NOW)).toBeNull();
    expect(parseSetCookie('  =abc; Path=/', NOW)).toBeNull();
    expect(parseSetCookie(';SID=abc', NOW)).toBeNull();
  });

  it('reports deletion by Max-Age', () => {
    expect(parseSetCookie('SID=x; Max-Age=0', NOW)?.deletes).toBe(true);
    expect(parseSetCookie('SID=x; max-age=-1', NOW)?.deletes).toBe(true);
    expect(parseSetCookie('SID=x; MAX-AGE = 60 ', NOW)?.deletes).toBe(false);
    expect(parseSetCookie('SID=x; Max-Age=0; Max-Age=60', NOW)?.deletes).toBe(false);
    expect(parseSetCookie('SID=x; Max-Age=60; Max-Age=0', NOW)?.deletes).toBe(true);
    // Not -?digits: ignored.
    expect(parseSetCookie('SID=x; Max-Age=0x0', NOW)?.deletes).toBe(false);
    expect(parseSetCookie('SID=x; Max-Age=', NOW)?.deletes).toBe(false);
    expect(parseSetCookie('SID=x; Max-Age', NOW)?.deletes).toBe(false);
  });

  it('reports deletion by Expires relative to now, with Max-Age taking precedence', () => {
    const past = 'Thu, 01 Jan 1970 00:00:00 GMT';
    const future = 'Wed, 01 Jan 2070 00:00:00 GMT';
    expect(parseSetCookie(`SID=x; Expires=${past}`, NOW)?.deletes).toBe(true);
    expect(parseSetCookie(`SID=x; expires=${future}`, NOW)?.deletes).toBe(false);
    expect(parseSetCookie(`SID=x; Expires=${future}`, Date.UTC(2071, 0, 1))?.deletes).toBe(true);
    expect(parseSetCookie(`SID=x; Expires=${past}; Max-Age=60`, NOW)?.deletes).toBe(false);
    expect(parseSetCookie(`SID=x; Max-Age=0; Expires=${future}`, NOW)?.deletes).toBe(true);
    expect(parseSetCookie('SID=x; Expires=not a date', NOW)?.deletes).toBe(false);
  });

  it('does not confuse a value or another attribute with Max-Age', () => {
    expect(parseSetCookie('Max-Age=0', NOW)).toMatchObject({ name: 'Max-Age', value: '0', deletes: false });
    expect(parseSetCookie('SID=x; XMax-Age=0; Max-Agee=0', NOW)?.deletes).toBe(false);
  });

  it('reads attributes of a hostile header (thousands of attributes, stray semicolons)', () => {
    const h = `SID=x${'; HttpOnly'.repeat(50_000)};;; ; Max-Age=0;`;
    expect(parseSetCookie(h, NOW)).toMatchObject({ name: 'SID', value: 'x', deletes: true });
    expect(parseSetCookie(`SID=x${';'.repeat(100_000)}`, NOW)).toMatchObject({ value: 'x', deletes: false });
  });

  it('handles unicode and very long values', () => {
    const long = 'v'.repeat(100_000);
    expect(parseSetCookie(`SID=${long}; Path=/`, NOW)?.value).toBe(long);
    expect(parseSetCookie('ç=é✓😀; Path=/', NOW)).toMatchObject({ name: 'ç', value: 'é✓😀' });
  });
});

describe('replaceSetCookieValue', () => {
  it('replaces the value and leaves attributes untouched', () => {
    const h = 'SID = abc ; Path=/; HttpOnly; Max-Age=60';
    const p = parseSetCookie(h);
    expect(p).not.toBeNull();
    expect(replaceSetCookieValue(h, p!, joinPrefixed('tok', 'abc'))).toBe('SID = tok~abc ; Path=/; HttpOnly; Max-Age=60');
  });

  it('fills an empty value', () => {
    const h = 'SID=; Path=/';
    expect(replaceSetCookieValue(h, parseSetCookie(h)!, 'x')).toBe('SID=x; Path=/');
  });
});

describe('splitPrefixed / joinPrefixed', () => {
  it('splits at the first "~"', () => {
    expect(splitPrefixed('AbC-_9~app')).toEqual({ token: 'AbC-_9', appValue: 'app' });
    expect(splitPrefixed('tok~a~b')).toEqual({ token: 'tok', appValue: 'a~b' });
    expect(splitPrefixed('tok~')).toEqual({ token: 'tok', appValue: '' });
    expect(splitPrefixed('tok~"q"')).toEqual({ token: 'tok', appValue: '"q"' });
  });

  it('returns null without "~" or when the part before it is not base64url', () => {
    expect(splitPrefixed('plain')).toBeNull();
    expect(splitPrefixed('')).toBeNull();
    expect(splitPrefixed('~app')).toBeNull();
    expect(splitPrefixed('a.b~app')).toBeNull();
    expect(splitPrefixed('a+b/~app')).toBeNull();
    expect(splitPrefixed('é~app')).toBeNull();
  });

  it('joinPrefixed is the inverse', () => {
    expect(splitPrefixed(joinPrefixed('tok', 'x~y'))).toEqual({ token: 'tok', appValue: 'x~y' });
  });
});
