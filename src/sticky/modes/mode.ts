// What a sticky mode is (README "Sticky modes"): where a request carries its session, what the
// backend is left of it, and how a fresh route token reaches the client. One file per mode
// implements it; the HTTP path asks the pool's mode and never branches on a mode's name.
import type { StickyConfig } from '../../config/schema.js';

/** The parts of a request head a mode reads: the joined Cookie header and the other headers. */
export interface StickyRequest {
  cookie: string;
  /** name, value, … (names lower-cased): the headers forwarded as they are. */
  flat: string[];
}

/** Opens a presented token for the request (counting and deciding); false when it is not shaped like a token at all. */
export interface TokenReader {
  read(token: string): boolean;
}

export interface StickyMode {
  /** The mode's name: bound into every token it issues (so a token is useless in another mode) and shown in logs. */
  readonly name: StickyConfig['mode'];
  /** Does the mode keep requests on a backend at all? ('none' does not, so nothing counts as a miss.) */
  readonly sticks: boolean;
  /** Does it issue route tokens (so a token of its pool can be revoked)? */
  readonly issuesTokens: boolean;
  /** The application's session cookie it works with (prefix, learn), '' when none. */
  readonly sessionCookie: string;
  /** Learn mode: the application session, looked up in the shared table, names the backend. */
  readonly routesBySession: boolean;
  /** Learn mode: how long a session cookie without its own lifetime is kept past its last use (s); else 0. */
  readonly sessionTtlSec: number;
  /** Prefix mode: the application's Set-Cookie carries the token in front of its value. */
  readonly prefixesSessionCookie: boolean;
  /** The lower-cased response header that is Tether's own (header mode), '' when none. */
  readonly ownHeader: string;
  /** The cookie that is Tether's own (cookie mode; a backend's Set-Cookie of it is dropped), '' when none. */
  readonly ownCookie: string;

  /**
   * Hands the token the request presents, if any, to `reader`, and returns the Cookie header
   * the backend gets: without Tether's own cookie, with the application's own value only, or
   * as it came. May remove the mode's own headers from `req.flat`.
   */
  readRequest(req: StickyRequest, reader: TokenReader): string;
  /** The application session id in one value of its cookie (prefix mode strips the token). */
  appSessionValue(value: string): string;
  /** The response header that hands a fresh token to the client; null when the mode issues none that way. */
  readonly tokenHeader: ((token: string, secure: boolean) => [name: string, value: string]) | null;
}

/** Defaults for the members most modes do not use. */
export const NO_EXTRAS = {
  sessionCookie: '',
  routesBySession: false,
  sessionTtlSec: 0,
  prefixesSessionCookie: false,
  ownHeader: '',
  ownCookie: '',
  tokenHeader: null,
} as const;
