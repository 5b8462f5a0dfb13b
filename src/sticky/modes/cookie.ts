// Cookie mode: Tether's own cookie (`TETHER=<token>` by default) carries the route token; the
// backend never sees it, and a backend's Set-Cookie of that name is dropped.
import type { StickyConfig } from '../../config/schema.js';
import { getCookie, removeCookie } from '../cookies.js';
import { NO_EXTRAS, type StickyMode, type StickyRequest, type TokenReader } from './mode.js';

type CookieConfig = Extract<StickyConfig, { mode: 'cookie' }>;

export function cookieMode(c: CookieConfig, tokenMaxAgeSec: number): StickyMode {
  const name = c.name;
  const suffix = `; Max-Age=${c.maxAgeSec ?? tokenMaxAgeSec}; Path=${c.path}${c.httpOnly ? '; HttpOnly' : ''}${c.secure ? '; Secure' : ''}; SameSite=${c.sameSite}`;
  return {
    ...NO_EXTRAS,
    name: 'cookie',
    sticks: true,
    issuesTokens: true,
    readRequest(req: StickyRequest, reader: TokenReader): string {
      const cookie = req.cookie;
      if (!cookie) return cookie;
      const v = getCookie(cookie, name);
      if (v === undefined) return cookie;
      if (v) reader.read(v);
      return removeCookie(cookie, name);
    },
    appSessionValue: (value) => value,
    ownCookie: name,
    tokenHeader: (token) => ['set-cookie', `${name}=${token}${suffix}`],
  };
}
