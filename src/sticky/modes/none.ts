// No stickiness: every request is balanced on its own.
import { NO_EXTRAS, type StickyMode, type StickyRequest } from './mode.js';

export function noneMode(): StickyMode {
  return {
    ...NO_EXTRAS,
    name: 'none',
    sticks: false,
    issuesTokens: false,
    readRequest: (req: StickyRequest) => req.cookie,
    appSessionValue: (value) => value,
  };
}
