// Cookie and Set-Cookie handling for the sticky modes `cookie` (our own cookie, TETHER by
// default) and `prefix` (`<app cookie>=<token>~<app value>`). The request-side scan runs on
// every request, so it is indexOf-based and allocates nothing but the returned substring.
//
// Request header (RFC 6265 §4.2 as sent, §5.2 as parsed leniently):
//
//   Cookie: name1=value1; name2=value2; name3="quoted"
//           └name┘ └value┘└─ "; " separator (a bare ";" or extra spaces/tabs are tolerated)
//
// Rules every function here follows, so results are deterministic on hostile input:
// - A pair's name is the text from the start of the header or just after a ';' up to its '=',
//   with spaces/tabs trimmed. Names compare exactly (case-sensitive). `XTETHER=` and `TETHERX=`
//   are not `TETHER`. A segment without '=' (`TETHER; a=1`) is a nameless value (RFC 6265bis),
//   never a cookie called `TETHER`.
// - The value runs from after the first '=' to the next ';' (or end), spaces/tabs trimmed. It is
//   returned raw: a quoted value keeps its quotes and '=' inside a value is kept. Raw because the
//   browser echoes back exactly what the Set-Cookie carried, and learn/prefix mode compare and
//   rewrite the request value against the Set-Cookie value byte for byte.
// - `name` must be a non-empty RFC 7230 token (config validates it); it is not re-checked per call.

const SEMI = 0x3b; // ;
const EQ = 0x3d; // =
const SP = 0x20;
const TAB = 0x09;

function isOws(c: number): boolean {
  return c === SP || c === TAB;
}

// Result registers of findPair: module-level scratch instead of an object per call (each worker
// thread has its own module instance, and every caller reads them right after the call).
let pairValueStart = 0;
let pairValueEnd = 0;
/** Index just past the pair's ';' (or header.length). */
let pairNext = 0;

/**
 * Finds the next pair named `name` whose name starts at or after `from`. Returns the index where
 * its name starts, or -1; sets pairValueStart/pairValueEnd (trimmed raw value) and pairNext.
 */
function findPair(header: string, name: string, from: number): number {
  const len = header.length;
  const n = name.length;
  if (n === 0) return -1;
  let at = header.indexOf(name, from);
  while (at >= 0) {
    // Left: only spaces/tabs back to the start or to a ';'. Values never contain ';', so a ';'
    // always ends the previous pair and this occurrence is in name position.
    let p = at - 1;
    while (p >= 0 && isOws(header.charCodeAt(p))) p--;
    if (p < 0 || header.charCodeAt(p) === SEMI) {
      // Right: only spaces/tabs up to '='.
      let q = at + n;
      while (q < len && isOws(header.charCodeAt(q))) q++;
      if (q < len && header.charCodeAt(q) === EQ) {
        let vs = q + 1;
        let end = header.indexOf(';', vs);
        if (end < 0) end = len;
        pairNext = end < len ? end + 1 : len;
        while (vs < end && isOws(header.charCodeAt(vs))) vs++;
        let ve = end;
        while (ve > vs && isOws(header.charCodeAt(ve - 1))) ve--;
        pairValueStart = vs;
        pairValueEnd = ve;
        return at;
      }
    }
    at = header.indexOf(name, at + 1);
  }
  return -1;
}

/**
 * Raw value of the first cookie named `name` in a Cookie request header, or undefined if absent.
 * First occurrence wins: browsers send the cookie with the longest (most specific) path first
 * (RFC 6265 §5.4), and a later duplicate is usually a stale cookie from a broader path.
 * `TETHER=` gives '' (present, empty). Quotes are kept (`TETHER="x"` gives `"x"`), see file header.
 */
export function getCookie(header: string, name: string): string | undefined {
  return findPair(header, name, 0) < 0 ? undefined : header.slice(pairValueStart, pairValueEnd);
}

/**
 * Raw values of every cookie named `name`, in header order ([] when absent). Routing takes the
 * first (see getCookie); checks that must not be bypassed by a duplicate (session binding,
 * revocation) look at all of them.
 */
export function getAllCookies(header: string, name: string): string[] {
  const out: string[] = [];
  let at = findPair(header, name, 0);
  while (at >= 0) {
    out.push(header.slice(pairValueStart, pairValueEnd));
    at = findPair(header, name, pairNext);
  }
  return out;
}

/**
 * The Cookie header with every cookie named `name` removed (with the separator after it);
 * '' if nothing is left. Other pairs keep their exact bytes; leading/trailing spaces, tabs
 * and ';' of the result are trimmed. Returns `header` itself when `name` is absent.
 */
export function removeCookie(header: string, name: string): string {
  let start = findPair(header, name, 0);
  if (start < 0) return header;
  let out = '';
  let copied = 0;
  while (start >= 0) {
    out += header.slice(copied, start);
    copied = pairNext;
    while (copied < header.length && isOws(header.charCodeAt(copied))) copied++;
    start = findPair(header, name, copied);
  }
  out += header.slice(copied);
  return trimSeparators(out);
}

/**
 * Replaces the value of every cookie named `name` with `mapValue(rawValue)` (prefix mode strips
 * `<token>~` this way). Only the value bytes change; names, separators and other pairs are kept.
 * Returns `header` itself when `name` is absent. `mapValue`'s result is inserted as is.
 */
export function mapCookie(header: string, name: string, mapValue: (v: string) => string): string {
  let start = findPair(header, name, 0);
  if (start < 0) return header;
  let out = '';
  let copied = 0;
  while (start >= 0) {
    const vs = pairValueStart;
    const ve = pairValueEnd;
    const next = pairNext;
    out += header.slice(copied, vs) + mapValue(header.slice(vs, ve));
    copied = ve;
    start = findPair(header, name, next);
  }
  return out + header.slice(copied);
}

function trimSeparators(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b) {
    const c = s.charCodeAt(a);
    if (c !== SEMI && !isOws(c)) break;
    a++;
  }
  while (b > a) {
    const c = s.charCodeAt(b - 1);
    if (c !== SEMI && !isOws(c)) break;
    b--;
  }
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

interface CookieAttributes {
  path?: string;
  domain?: string;
  /** Seconds, integer. ≤ 0 tells the browser to delete the cookie now. */
  maxAge?: number;
  httpOnly?: boolean;
  secure?: boolean;
  /** 'None' requires `secure: true` (browsers drop SameSite=None cookies without Secure). */
  sameSite?: 'Strict' | 'Lax' | 'None';
}

// RFC 7230 tchar: ! # $ % & ' * + - . ^ _ ` | ~ DIGIT ALPHA
function isTchar(c: number): boolean {
  if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) return true;
  switch (c) {
    case 0x21: case 0x23: case 0x24: case 0x25: case 0x26: case 0x27: case 0x2a:
    case 0x2b: case 0x2d: case 0x2e: case 0x5e: case 0x5f: case 0x60: case 0x7c: case 0x7e:
      return true;
    default:
      return false;
  }
}

// RFC 6265 cookie-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E (no space, '"', ',', ';', '\').
function isCookieOctet(c: number): boolean {
  return c === 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) || (c >= 0x3c && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isTchar(s.charCodeAt(i))) return false;
  return true;
}

/** cookie-value = *cookie-octet / ( DQUOTE *cookie-octet DQUOTE ) */
function isCookieValue(s: string): boolean {
  let a = 0;
  let b = s.length;
  if (b >= 2 && s.charCodeAt(0) === 0x22 && s.charCodeAt(b - 1) === 0x22) {
    a = 1;
    b--;
  }
  for (let i = a; i < b; i++) if (!isCookieOctet(s.charCodeAt(i))) return false;
  return true;
}

/** av-octet (RFC 6265 §4.1.1): any CHAR except CTLs or ';'. Used for Path. */
function isAttributeValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === SEMI) return false;
  }
  return true;
}

/** Domain: LDH labels separated by dots, optional leading dot (ignored by browsers). */
function isDomain(s: string): boolean {
  if (s.length === 0 || s.length > 254) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e;
    if (!ok) return false;
  }
  return true;
}

/**
 * `name=value` plus attributes in a fixed order (Path, Domain, Max-Age, HttpOnly, Secure,
 * SameSite). Throws TypeError/RangeError on a name that is not a token, a value that is not
 * cookie-octets (optionally in double quotes), or a bad attribute — these come from config or
 * from our own base64url tokens, so a failure is a bug to surface, not input to tolerate.
 */
export function serializeSetCookie(name: string, value: string, attrs: CookieAttributes): string {
  if (typeof name !== 'string' || !isToken(name)) {
    throw new TypeError(`expected an RFC 7230 token for cookie name but received ${JSON.stringify(name)}`);
  }
  if (typeof value !== 'string' || !isCookieValue(value)) {
    throw new TypeError(`expected RFC 6265 cookie-octets for the value of cookie ${name} but received ${JSON.stringify(value)}`);
  }
  let out = `${name}=${value}`;
  if (attrs.path !== undefined) {
    if (typeof attrs.path !== 'string' || !isAttributeValue(attrs.path) || attrs.path.length === 0) {
      throw new TypeError(`expected a non-empty path without control characters or ';' for cookie ${name} but received ${JSON.stringify(attrs.path)}`);
    }
    out += `; Path=${attrs.path}`;
  }
  if (attrs.domain !== undefined) {
    if (typeof attrs.domain !== 'string' || !isDomain(attrs.domain)) {
      throw new TypeError(`expected a domain name for cookie ${name} but received ${JSON.stringify(attrs.domain)}`);
    }
    out += `; Domain=${attrs.domain}`;
  }
  if (attrs.maxAge !== undefined) {
    if (!Number.isSafeInteger(attrs.maxAge)) {
      throw new RangeError(`expected an integer number of seconds for maxAge of cookie ${name} but received ${String(attrs.maxAge)}`);
    }
    out += `; Max-Age=${attrs.maxAge}`;
  }
  if (attrs.httpOnly === true) out += '; HttpOnly';
  if (attrs.secure === true) out += '; Secure';
  if (attrs.sameSite !== undefined) {
    if (attrs.sameSite !== 'Strict' && attrs.sameSite !== 'Lax' && attrs.sameSite !== 'None') {
      throw new TypeError(`expected Strict, Lax or None for sameSite of cookie ${name} but received ${JSON.stringify(attrs.sameSite)}`);
    }
    if (attrs.sameSite === 'None' && attrs.secure !== true) {
      throw new TypeError(`expected secure: true with sameSite None for cookie ${name} (browsers reject it otherwise)`);
    }
    out += `; SameSite=${attrs.sameSite}`;
  }
  return out;
}

interface ParsedSetCookie {
  name: string;
  /** Raw value (quotes kept), spaces/tabs trimmed: header.slice(valueStart, valueEnd). */
  value: string;
  valueStart: number;
  valueEnd: number;
  /** Max-Age ≤ 0, or (without Max-Age) Expires at or before `now`. */
  deletes: boolean;
  /** When the cookie expires (ms since the epoch) from Max-Age or Expires; undefined for a session cookie. */
  expiresAt?: number;
}

/** ASCII case-insensitive compare of s[start, end) with a lower-case literal. */
function equalsLower(s: string, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    let c = s.charCodeAt(start + i);
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * Name and raw value of a Set-Cookie header value, following RFC 6265 §5.2: the pair is the text
 * before the first ';', split at its first '='; name and value are trimmed of spaces/tabs.
 * null when there is no '=' or the name is empty (browsers ignore such cookies).
 * Attributes are read only to decide `deletes`: the last Max-Age wins and overrides Expires;
 * a Max-Age that is not `-?digits` and an Expires that Date.parse cannot read are ignored.
 * Linear in the header length whatever its content (backends are not trusted to be sane).
 * `now` in ms since the epoch (default Date.now()).
 */
export function parseSetCookie(header: string, now?: number): ParsedSetCookie | null {
  const len = header.length;
  let pairEnd = header.indexOf(';');
  if (pairEnd < 0) pairEnd = len;
  const eq = header.indexOf('=');
  if (eq < 0 || eq > pairEnd) return null;

  let ns = 0;
  while (ns < eq && isOws(header.charCodeAt(ns))) ns++;
  let ne = eq;
  while (ne > ns && isOws(header.charCodeAt(ne - 1))) ne--;
  if (ne === ns) return null;

  let vs = eq + 1;
  while (vs < pairEnd && isOws(header.charCodeAt(vs))) vs++;
  let ve = pairEnd;
  while (ve > vs && isOws(header.charCodeAt(ve - 1))) ve--;

  let maxAge: number | undefined;
  let expires: number | undefined;
  let pos = pairEnd + 1;
  while (pos < len) {
    let end = header.indexOf(';', pos);
    if (end < 0) end = len;
    let as = pos;
    while (as < end && isOws(header.charCodeAt(as))) as++;
    // Bounded to this attribute: an unbounded indexOf would make many '='-less attributes quadratic.
    let aeq = as;
    while (aeq < end && header.charCodeAt(aeq) !== EQ) aeq++;
    let an = aeq;
    while (an > as && isOws(header.charCodeAt(an - 1))) an--;
    if (aeq < end) {
      const isMaxAge = equalsLower(header, as, an, 'max-age');
      if (isMaxAge || equalsLower(header, as, an, 'expires')) {
        const raw = header.slice(aeq + 1, end).trim();
        if (isMaxAge) {
          if (/^-?\d+$/.test(raw)) maxAge = Number(raw);
        } else {
          const t = Date.parse(raw);
          if (!Number.isNaN(t)) expires = t;
        }
      }
    }
    pos = end + 1;
  }
  const at = now ?? Date.now();
  const expiresAt = maxAge !== undefined ? at + maxAge * 1000 : expires;
  const deletes = expiresAt !== undefined && expiresAt <= at;
  const parsed: ParsedSetCookie = { name: header.slice(ns, ne), value: header.slice(vs, ve), valueStart: vs, valueEnd: ve, deletes };
  if (expiresAt !== undefined) parsed.expiresAt = expiresAt;
  return parsed;
}

/** The Set-Cookie header with bytes [valueStart, valueEnd) replaced by `newValue`; attributes untouched. */
export function replaceSetCookieValue(header: string, parsed: { valueStart: number; valueEnd: number }, newValue: string): string {
  return header.slice(0, parsed.valueStart) + newValue + header.slice(parsed.valueEnd);
}

/**
 * prefix mode: "<token>~<app value>" → {token, appValue}, split at the first '~' (base64url
 * tokens never contain one; the app value may). null when there is no '~' or when the part
 * before it is not non-empty base64url ([A-Za-z0-9_-]+): then it cannot be our prefix and the
 * value must reach the backend untouched. A '~' in an app's own value can still look like a
 * prefix ("abc~def"), so callers strip only when the token authenticates.
 */
export function splitPrefixed(v: string): { token: string; appValue: string } | null {
  const tilde = v.indexOf('~');
  if (tilde <= 0) return null;
  for (let i = 0; i < tilde; i++) {
    const c = v.charCodeAt(i);
    const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x5f;
    if (!ok) return null;
  }
  return { token: v.slice(0, tilde), appValue: v.slice(tilde + 1) };
}

/** The cookie value prefix mode sends to the client: "<token>~<app value>". */
export function joinPrefixed(token: string, appValue: string): string {
  return `${token}~${appValue}`;
}
