// Sticky sessions survive roaming: a client that got a route token keeps landing on the same
// backend from any source address, over fresh connections spread by the kernel across both
// worker threads, in each token mode (own cookie, prefix on the app's cookie, header). The
// control proves it is the token that sticks, not the address or the connection.
import http from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startBackend, type Handler, type TestBackend } from '../helpers/backends.js';
import { request, setCookieValue, type Reply } from '../helpers/client.js';
import { startTether, type TetherProcess } from '../helpers/tether.js';
import { backendFlag, sticky } from '../helpers/sticky.js';

const ROAMING_ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
const PER_ADDRESS = 12;
const APP_COOKIE = 'JSESSIONID';

/** A backend that, like a Java app server, sets JSESSIONID=sess-<name> when the request has none. */
const sessionHandler: Handler = (req, res, name) => {
  req.resume();
  req.on('end', () => {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain', 'x-backend': name };
    if (!/(^|;\s*)JSESSIONID=/.test(req.headers.cookie ?? '')) headers['set-cookie'] = `${APP_COOKIE}=sess-${name}; Path=/; HttpOnly`;
    res.writeHead(200, headers);
    res.end(name);
  });
};

type Mode = 'cookie' | 'prefix' | 'header';

interface ModeSpec {
  flags: string[];
  handler?: Handler;
  /** Request headers that present the token. */
  present(token: string): http.OutgoingHttpHeaders;
  /** The token a reply carries, if it issued one. */
  issued(reply: Reply): string | undefined;
  /** What the backend must have received for a request made with `present(token)`. */
  checkForwarded(received: http.IncomingHttpHeaders, token: string): void;
}

const MODES: Record<Mode, ModeSpec> = {
  cookie: {
    flags: ['--sticky', 'cookie'],
    present: (token) => ({ cookie: `a=1; TETHER=${token}; b=2` }),
    issued: (reply) => setCookieValue(reply, 'TETHER'),
    checkForwarded(received, token) {
      // Our cookie is stripped, the application's cookies reach the backend untouched.
      expect(received.cookie).toBe('a=1; b=2');
      expect(JSON.stringify(received)).not.toContain(token);
    },
  },
  prefix: {
    flags: ['--sticky', `prefix:${APP_COOKIE}`],
    handler: sessionHandler,
    present: (value) => ({ cookie: `${APP_COOKIE}=${value}` }),
    issued: (reply) => setCookieValue(reply, APP_COOKIE),
    checkForwarded(received, value) {
      // The backend sees exactly the value it set, never our prefix.
      const appValue = value.slice(value.indexOf('~') + 1);
      expect(appValue).toMatch(/^sess-app[12]$/);
      expect(received.cookie).toBe(`${APP_COOKIE}=${appValue}`);
      expect(JSON.stringify(received)).not.toContain(value.slice(0, value.indexOf('~')));
    },
  },
  header: {
    flags: ['--sticky', 'header'],
    present: (token) => ({ 'x-tether-route': token }),
    issued(reply) {
      const v = reply.headers['x-tether-route'];
      return typeof v === 'string' ? v : undefined;
    },
    checkForwarded(received, token) {
      expect(received['x-tether-route']).toBeUndefined();
      expect(JSON.stringify(received)).not.toContain(token);
    },
  },
};

describe.each(Object.keys(MODES) as Mode[])('sticky %s mode: the token routes, whatever the source address', (mode) => {
  const spec = MODES[mode];
  let app1: TestBackend;
  let app2: TestBackend;
  let tether: TetherProcess;

  beforeEach(async () => {
    app1 = await startBackend('app1', spec.handler);
    app2 = await startBackend('app2', spec.handler);
    tether = await startTether([...backendFlag(app1), ...backendFlag(app2), ...spec.flags], { workers: 2 });
  });

  afterEach(async () => {
    await tether?.stop();
    await Promise.all([app1?.close(), app2?.close()]);
  });

  it('every request carrying the token lands on the same backend, from 127.0.0.2-4, with no new token', async () => {
    const first = await request({ port: tether.port, localAddress: '127.0.0.1' });
    expect(first.status).toBe(200);
    const token = spec.issued(first);
    expect(token, `a ${mode}-mode token on the first reply`).toBeTruthy();
    if (mode === 'prefix') expect(token).toMatch(/^[A-Za-z0-9_-]{40,}~sess-app[12]$/);
    const home = first.body;
    const other = home === 'app1' ? app2 : app1;
    const homeBackend = home === 'app1' ? app1 : app2;
    const homeBefore = homeBackend.received.length;
    const otherBefore = other.received.length;
    const hitsBefore = await tether.metric(sticky('hit'));

    let sent = 0;
    for (const localAddress of ROAMING_ADDRESSES) {
      for (let i = 0; i < PER_ADDRESS; i++) {
        // agent: false → a new TCP connection each time, from a new source port.
        const reply = await request({ port: tether.port, localAddress, agent: false, headers: spec.present(token!) });
        sent++;
        expect(reply.status).toBe(200);
        expect(reply.body, `request ${i} from ${localAddress}`).toBe(home);
        expect(spec.issued(reply), `no new token for request ${i} from ${localAddress}`).toBeUndefined();
        const got = homeBackend.received.at(-1)!;
        // The balancer really saw the roaming address (the test is not fooling itself).
        expect(got.headers['x-forwarded-for']).toBe(localAddress);
        spec.checkForwarded(got.headers, token!);
      }
    }
    expect(homeBackend.received.length - homeBefore).toBe(sent);
    expect(other.received.length - otherBefore, `requests that reached ${other.name}`).toBe(0);
    expect(await tether.metric(sticky('hit'))).toBe(hitsBefore + sent);
  });

  it('control: without the token the same roaming requests are balanced over both backends', async () => {
    // Fresh connections are spread over the two workers, each with its own round-robin cursor
    // that alternates strictly; so each backend gets at least floor(k/2) of each worker's k
    // requests, i.e. at least (n - 2) / 2 of n. A sticky-by-address or sticky-by-connection
    // bug would give one backend (nearly) all of them.
    const seen = { app1: 0, app2: 0 };
    let n = 0;
    for (const localAddress of ROAMING_ADDRESSES) {
      for (let i = 0; i < PER_ADDRESS; i++) {
        const reply = await request({ port: tether.port, localAddress, agent: false, headers: mode === 'cookie' ? { cookie: 'a=1' } : {} });
        n++;
        expect(reply.status).toBe(200);
        seen[reply.body as 'app1' | 'app2']++;
        if (mode !== 'prefix') expect(spec.issued(reply), 'a token for every token-less request').toBeTruthy();
      }
    }
    expect(seen.app1 + seen.app2).toBe(n);
    expect(seen.app1).toBeGreaterThanOrEqual((n - 2) / 2);
    expect(seen.app2).toBeGreaterThanOrEqual((n - 2) / 2);
  });

  it('control on one connection: token-less requests alternate strictly (round robin)', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const bodies: string[] = [];
      for (let i = 0; i < 10; i++) {
        const reply = await request({ port: tether.port, agent });
        expect(reply.status).toBe(200);
        bodies.push(reply.body);
      }
      for (let i = 1; i < bodies.length; i++) expect(bodies[i], `request ${i} of ${bodies.join(',')}`).not.toBe(bodies[i - 1]);
    } finally {
      agent.destroy();
    }
  });
});
