// POST /api/v1/sessions/revoke on the admin listener: refuse a session everywhere, at once.
//
//   {"pool": "shop", "session": "<application session id>"}   learn or prefix mode
//   {"pool": "shop", "token": "<route token>"}                  any token mode
//
// The revocation is an entry in the shared table, which every worker reads on every request
// carrying that session (or token), so it holds from the next request on, on every thread.
// It lasts as long as the session could still be honoured: the pool's learn TTL or the token
// max age, whichever is longer. Answers 200 with what was revoked, 400 with the reason
// otherwise.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { createStickyMode } from '../sticky/modes/index.js';
import { ENTRY_REVOKED, type SessionStore } from '../sticky/sessions.js';

interface RevokeDeps {
  config: Config;
  sessions: SessionStore;
  log: Logger;
}

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** Longest accepted body: a token or session id is far shorter. */
export const MAX_REVOKE_BODY = 16 * 1024;
const MAX_VALUE_CHARS = 8192;

function bad(message: string): ApiAnswer {
  return { status: 400, body: { error: 'bad_request', message } };
}

export function revokeSession(raw: string, deps: RevokeDeps): ApiAnswer {
  let req: unknown;
  try {
    req = JSON.parse(raw);
  } catch (err) {
    return bad(`expected a JSON object like {"pool":"web","session":"…"} but the body is not JSON (${(err as Error).message})`);
  }
  if (typeof req !== 'object' || req === null || Array.isArray(req)) return bad('expected a JSON object like {"pool":"web","session":"…"}');
  const { pool, session, token, ...rest } = req as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) return bad(`unknown field ${extra.map((k) => JSON.stringify(k)).join(', ')}: expected pool and one of session, token`);
  if (typeof pool !== 'string' || pool === '') return bad('expected "pool": the name of a pool');
  const pc = deps.config.pools[pool];
  if (!pc) return bad(`no pool named ${JSON.stringify(pool)} (pools: ${Object.keys(deps.config.pools).join(', ')})`);
  if ((session === undefined) === (token === undefined)) return bad('expected exactly one of "session" (an application session id) or "token" (a route token)');
  const value = session ?? token;
  if (typeof value !== 'string' || value === '' || value.length > MAX_VALUE_CHARS) {
    return bad(`expected ${session !== undefined ? '"session"' : '"token"'} to be a non-empty string of at most ${MAX_VALUE_CHARS} characters`);
  }
  const kind = session !== undefined ? 'session' : 'token';
  // The pool's mode says what it can revoke: application sessions it works with, tokens it issues.
  const mode = createStickyMode(pc.sticky, deps.config.tokenMaxAgeSec);
  if (kind === 'session' && !mode.sessionCookie) {
    return bad(`pool ${pool} uses sticky mode ${mode.name}, which keeps no application sessions: revoke its route token instead ("token")`);
  }
  if (kind === 'token' && !mode.issuesTokens) {
    return bad(`pool ${pool} uses sticky mode ${mode.name}, which issues no route tokens: revoke the application session instead ("session")`);
  }
  const nowSec = Math.floor(Date.now() / 1000);
  const expiresAt = nowSec + Math.max(mode.sessionTtlSec, deps.config.tokenMaxAgeSec);
  const fp = deps.sessions.fingerprinter(pool, kind);
  const existed = deps.sessions.lookup(fp, value, nowSec);
  deps.sessions.put(fp, value, 0, ENTRY_REVOKED, null, expiresAt, nowSec);
  deps.sessions.table.noteRevocation();
  const id = deps.sessions.id(fp, value);
  deps.log.warn({ alert: 'session_revoked_by_admin', pool, kind, session: id, expiresAt: new Date(expiresAt * 1000).toISOString() }, 'session revoked');
  return { status: 200, body: { revoked: true, pool, kind, id, known: existed, until: new Date(expiresAt * 1000).toISOString() } };
}
