// Learn mode: no token at all. The backend that sets the application's session cookie owns that
// session; the shared table remembers it (every worker and, with a cluster, every node) and the
// binding phase routes later requests carrying the cookie there.
import type { StickyConfig } from '../../config/schema.js';
import { NO_EXTRAS, type StickyMode, type StickyRequest } from './mode.js';

type LearnConfig = Extract<StickyConfig, { mode: 'learn' }>;

export function learnMode(c: LearnConfig): StickyMode {
  return {
    ...NO_EXTRAS,
    name: 'learn',
    sticks: true,
    issuesTokens: false,
    sessionCookie: c.cookie,
    routesBySession: true,
    sessionTtlSec: c.ttlSec,
    readRequest: (req: StickyRequest) => req.cookie,
    appSessionValue: (value) => value,
  };
}
