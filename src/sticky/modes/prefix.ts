// Prefix mode: the application's own session cookie carries the token in front of its value
// (`SID=<token>~<app value>`), for clients that keep only the cookies the application sets.
// The backend always sees exactly the value it set; a token is issued (and prefixed) whenever
// the application sets its cookie.
import type { StickyConfig } from '../../config/schema.js';
import { getCookie, mapCookie, splitPrefixed } from '../cookies.js';
import { NO_EXTRAS, type StickyMode, type StickyRequest, type TokenReader } from './mode.js';

type PrefixConfig = Extract<StickyConfig, { mode: 'prefix' }>;

export function prefixMode(c: PrefixConfig): StickyMode {
  const name = c.cookie;
  return {
    ...NO_EXTRAS,
    name: 'prefix',
    sticks: true,
    issuesTokens: true,
    sessionCookie: name,
    prefixesSessionCookie: true,
    readRequest(req: StickyRequest, reader: TokenReader): string {
      const cookie = req.cookie;
      if (!cookie) return cookie;
      const v = getCookie(cookie, name);
      const split = v === undefined ? null : splitPrefixed(v);
      // Strip only what is structurally one of our tokens (even an expired one): an app value
      // that merely contains '~' reaches the backend untouched.
      if (!split || !reader.read(split.token)) return cookie;
      return mapCookie(cookie, name, (val) => {
        const s = splitPrefixed(val);
        return s && s.token === split.token ? s.appValue : val;
      });
    },
    appSessionValue(value) {
      const split = splitPrefixed(value);
      return split ? split.appValue : value;
    },
  };
}
