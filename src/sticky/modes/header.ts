// Header mode: a request header (`X-Tether-Route` by default) carries the route token and the
// response hands a fresh one back in the same header: for API clients that keep no cookies.
// Every copy of the header is Tether's: none reaches the backend, and a backend's is dropped.
import type { StickyConfig } from '../../config/schema.js';
import { NO_EXTRAS, type StickyMode, type StickyRequest, type TokenReader } from './mode.js';

type HeaderConfig = Extract<StickyConfig, { mode: 'header' }>;

export function headerMode(c: HeaderConfig): StickyMode {
  const lower = c.name.toLowerCase();
  return {
    ...NO_EXTRAS,
    name: 'header',
    sticks: true,
    issuesTokens: true,
    ownHeader: lower,
    readRequest(req: StickyRequest, reader: TokenReader): string {
      // The first copy is the token; every copy is ours and none reaches the backend.
      const flat = req.flat;
      let presented = '';
      for (let i = 0; i < flat.length; ) {
        if (flat[i] === lower) {
          presented ||= flat[i + 1]!;
          flat.splice(i, 2);
        } else {
          i += 2;
        }
      }
      if (presented) reader.read(presented);
      return req.cookie;
    },
    appSessionValue: (value) => value,
    tokenHeader: (token) => [c.name, token],
  };
}
