// Sticky modes as strategies (src/sticky/modes/): what each reads of a request, what it leaves
// the backend, what it owns in a response and how it hands out a token — each mode on its own,
// through the one interface the HTTP path uses.
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { createStickyMode, type TokenReader } from '../../src/sticky/modes/index.js';

function modeOf(sticky: unknown) {
  const config = configSchema.parse({ workers: 1, pools: { p: { sticky, backends: [{ id: 'a', address: '127.0.0.1', port: 1 }] } } });
  return createStickyMode(config.pools.p!.sticky, 3600);
}

/** Records the tokens a mode hands over; `shaped` says whether they look like tokens. */
function reader(shaped = true): TokenReader & { seen: string[] } {
  const seen: string[] = [];
  return { seen, read: (t) => (seen.push(t), shaped) };
}

describe('sticky modes', () => {
  it('cookie: reads its cookie, never forwards it, owns it in responses, issues it with its attributes', () => {
    const m = modeOf({ mode: 'cookie', name: 'RT', secure: true });
    const r = reader();
    expect(m.readRequest({ cookie: 'a=1; RT=tok; b=2', flat: [] }, r)).toBe('a=1; b=2');
    expect(r.seen).toEqual(['tok']);
    expect(m.readRequest({ cookie: 'a=1', flat: [] }, r)).toBe('a=1');
    // An empty value is not a token, but it is still Tether's cookie: not forwarded.
    expect(m.readRequest({ cookie: 'RT=; a=1', flat: [] }, r)).toBe('a=1');
    expect(r.seen).toEqual(['tok']);
    expect(m.tokenHeader!('tok2', false)).toEqual(['set-cookie', 'RT=tok2; Max-Age=3600; Path=/; HttpOnly; Secure; SameSite=Lax']);
    expect({ name: m.name, sticks: m.sticks, issuesTokens: m.issuesTokens, ownCookie: m.ownCookie, ownHeader: m.ownHeader, sessionCookie: m.sessionCookie }).toEqual({
      name: 'cookie', sticks: true, issuesTokens: true, ownCookie: 'RT', ownHeader: '', sessionCookie: '',
    });
  });

  it('cookie: over HTTPS the route cookie is Secure even when the configuration does not ask for it', () => {
    const m = modeOf({ mode: 'cookie', name: 'RT' });
    expect(m.tokenHeader!('t', false)).toEqual(['set-cookie', 'RT=t; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax']);
    expect(m.tokenHeader!('t', true)).toEqual(['set-cookie', 'RT=t; Max-Age=3600; Path=/; HttpOnly; Secure; SameSite=Lax']);
  });

  it('header: the first copy is the token, every copy is removed, the response carries the new one', () => {
    const m = modeOf({ mode: 'header', name: 'X-Route' });
    const r = reader();
    const flat = ['x-route', 't1', 'accept', '*/*', 'x-route', 't2'];
    expect(m.readRequest({ cookie: 'c=1', flat }, r)).toBe('c=1');
    expect(flat).toEqual(['accept', '*/*']);
    expect(r.seen).toEqual(['t1']);
    expect(m.tokenHeader!('t3', false)).toEqual(['X-Route', 't3']);
    expect(m.tokenHeader!('t3', true)).toEqual(['X-Route', 't3']);
    expect([m.ownHeader, m.ownCookie, m.issuesTokens]).toEqual(['x-route', '', true]);
  });

  it('prefix: strips only what is shaped like a token; the backend gets exactly its own value', () => {
    const m = modeOf({ mode: 'prefix', cookie: 'SID' });
    const r = reader();
    expect(m.readRequest({ cookie: 'SID=tok~app; x=1', flat: [] }, r)).toBe('SID=app; x=1');
    expect(r.seen).toEqual(['tok']);
    // Not shaped like a token: the application value stays whole.
    const not = reader(false);
    expect(m.readRequest({ cookie: 'SID=a~b', flat: [] }, not)).toBe('SID=a~b');
    expect(m.appSessionValue('tok~app')).toBe('app');
    expect(m.appSessionValue('plain')).toBe('plain');
    expect([m.sessionCookie, m.prefixesSessionCookie, m.tokenHeader, m.issuesTokens]).toEqual(['SID', true, null, true]);
  });

  it('learn and none read no token; learn routes by the application session', () => {
    const learn = modeOf({ mode: 'learn', cookie: 'JSESSIONID', ttlSec: 600 });
    const none = modeOf({ mode: 'none' });
    for (const m of [learn, none]) {
      const r = reader();
      expect(m.readRequest({ cookie: 'JSESSIONID=x; TETHER=y', flat: ['x-tether-route', 'z'] }, r)).toBe('JSESSIONID=x; TETHER=y');
      expect(r.seen).toEqual([]);
      expect([m.issuesTokens, m.tokenHeader, m.ownCookie, m.ownHeader]).toEqual([false, null, '', '']);
    }
    expect([learn.routesBySession, learn.sessionTtlSec, learn.sessionCookie, learn.sticks]).toEqual([true, 600, 'JSESSIONID', true]);
    expect([none.routesBySession, none.sticks, none.sessionCookie]).toEqual([false, false, '']);
  });
});
