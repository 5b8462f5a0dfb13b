// Cookie mode: Tether's own cookie (`TETHER=<token>` by default) carries the route token; the
// backend never sees it, and a backend's Set-Cookie of that name is dropped.
import type { StickyConfig } from '../../config/schema.js';
import { getCookie, removeCookie } from '../cookies.js';
import { NO_EXTRAS, type StickyMode, type StickyRequest, type TokenReader } from './mode.js';

type CookieConfig = Extract<StickyConfig, { mode: 'cookie' }>;

export function cookieMode(c: CookieConfig, tokenMaxAgeSec: number): StickyMode {
  const name = c.name;
  // Over HTTPS the cookie is Secure whatever the configuration says (it was set over TLS: it
  // should never travel without it).
  const attributes = (secure: boolean) => `; Max-Age=${c.maxAgeSec ?? tokenMaxAgeSec}; Path=${c.path}${c.httpOnly ? '; HttpOnly' : ''}${secure ? '; Secure' : ''}; SameSite=${c.sameSite}`;
  const plainSuffix = attributes(c.secure);
  const secureSuffix = attributes(true);
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
    tokenHeader: (token, secure) => ['set-cookie', `${name}=${token}${secure ? secureSuffix : plainSuffix}`],
  };
}
