// The pool's sticky mode from its configuration: the one place that maps a mode name to code.
import type { StickyConfig } from '../../config/schema.js';
import { cookieMode } from './cookie.js';
import { headerMode } from './header.js';
import { learnMode } from './learn.js';
import type { StickyMode } from './mode.js';
import { noneMode } from './none.js';
import { prefixMode } from './prefix.js';

export type { StickyMode, StickyRequest, TokenReader } from './mode.js';

export function createStickyMode(config: StickyConfig, tokenMaxAgeSec: number): StickyMode {
  switch (config.mode) {
    case 'cookie':
      return cookieMode(config, tokenMaxAgeSec);
    case 'header':
      return headerMode(config);
    case 'prefix':
      return prefixMode(config);
    case 'learn':
      return learnMode(config);
    case 'none':
      return noneMode();
  }
}
