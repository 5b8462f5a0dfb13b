// Scenario roaming: clients whose address changes mid-session (a phone moving between
// networks, a NAT pool rotating) — what Tether's route token exists for. Each client keeps a
// cookie jar and, every ROTATE_EVERY requests, moves to the next source address in
// 127.0.0.2–127.0.0.254 (a new connection bound with localAddress; Linux routes all of 127/8
// to lo, so no setup). Its first response picks its backend (and, for a cookie peer, carries
// the route cookie); keptPct is the share of its later requests that still reach that backend.
// Cookie stickiness keeps 100 %; stickiness by source address (haproxy-source, nginx-hash)
// loses roughly every other rotation with two backends.
//
// wrk cannot bind a source address per connection, so the load comes from the Node load
// generator (../node-load/): options.connections clients over options.threads threads.
// A peer with no route cookie (cookieName null, or one that never sets it) is fine: the jar
// just stays empty and reissued stays 0.

import { CookieJar, harnessRecord, openConnection, runLoad } from '../node-load/index.js';

export const name = 'roaming';
export const description = `clients change source address every few requests and keep their cookies; kept % = later requests on the first backend`;
export const columns = [{ key: 'keptPct', label: 'kept %', digits: 2 }];

const ROTATE_EVERY = 5;
const FIRST_OCTET = 2; // 127.0.0.2 …
const LAST_OCTET = 254; // … 127.0.0.254
const CONNECT_TIMEOUT_MS = 2000;
const RESPONSE_TIMEOUT_MS = 5000; // as wrk --timeout 5s in the other scenarios

export function loadDescription(options) {
  const threads = Math.min(options.threads, options.connections);
  const low = Math.floor(options.connections / threads);
  const perThread = options.connections % threads === 0 ? `${low}` : `${low}–${low + 1}`;
  return (
    `node clients (piscina, ${threads} threads × ${perThread} clients), source address rotates every ` +
    `${ROTATE_EVERY} requests over 127.0.0.${FIRST_OCTET}–${LAST_OCTET}, ${options.duration}s`
  );
}

/** One request from `localAddress` on a fresh connection; { backend, routeCookie, status }. */
async function probe({ host, port, localAddress, cookie, cookieName }) {
  const connection = await openConnection({ host, port, localAddress, timeoutMs: CONNECT_TIMEOUT_MS });
  try {
    const response = await connection.request({ headers: cookie ? { Cookie: cookie } : {}, timeoutMs: RESPONSE_TIMEOUT_MS });
    const jar = new CookieJar();
    const set = jar.store(response.setCookies);
    const routeCookie = cookieName && set.includes(cookieName) ? `${cookieName}=${jar.get(cookieName)}` : null;
    return { status: response.status, backend: response.body.toString('latin1'), routeCookie };
  } finally {
    connection.close();
  }
}

export async function prepare({ url, peer, backendNames }) {
  const { hostname: host, port } = new URL(url);
  const first = await probe({ host, port: Number(port), localAddress: `127.0.0.${FIRST_OCTET}`, cookieName: peer.cookieName });
  if (first.status !== 200 || !backendNames.includes(first.backend)) {
    throw new Error(`${peer.name} from 127.0.0.${FIRST_OCTET}: expected 200 with a backend name (${backendNames.join('|')}) but received ${first.status} ${JSON.stringify(first.backend.slice(0, 200))}`);
  }
  // The same client from another address: recorded, not enforced (that is what is measured).
  const moved = await probe({ host, port: Number(port), localAddress: `127.0.0.${LAST_OCTET}`, cookie: first.routeCookie, cookieName: peer.cookieName });
  return {
    cookies: [],
    checks: {
      routeCookieIssued: first.routeCookie !== null,
      firstBackend: first.backend,
      fromOtherAddress: { localAddress: `127.0.0.${LAST_OCTET}`, status: moved.status, backend: moved.backend, kept: moved.backend === first.backend },
    },
  };
}

/**
 * Runs roaming clients against host:port and returns runLoad's result plus keptPct,
 * addresses and reissued. The knobs after `durationS` exist for tests (small address range,
 * short deadlines, a request-count bound instead of a time bound).
 */
export async function runRoaming({
  host,
  port,
  cookieName,
  backendNames,
  threads = 2,
  clients,
  durationS,
  rotateEvery = ROTATE_EVERY,
  firstOctet = FIRST_OCTET,
  lastOctet = LAST_OCTET,
  connectTimeoutMs = CONNECT_TIMEOUT_MS,
  responseTimeoutMs = RESPONSE_TIMEOUT_MS,
  maxRequestsPerClient,
}) {
  const load = await runLoad({
    client: import.meta.url,
    clientExport: 'roamingClient',
    threads,
    clients,
    durationS,
    ...(maxRequestsPerClient === undefined ? {} : { maxLoopsPerClient: maxRequestsPerClient }),
    params: { host, port, cookieName: cookieName ?? null, backendNames, rotateEvery, firstOctet, lastOctet, connectTimeoutMs, responseTimeoutMs },
  });
  const later = load.counters.laterRequests ?? 0;
  const kept = load.counters.kept ?? 0;
  return {
    ...load,
    keptPct: later > 0 ? (100 * kept) / later : null,
    addresses: load.distinct.addresses ?? 0,
    reissued: load.counters.reissued ?? 0,
  };
}

export async function measure({ url, peer, backendNames, options, durationS }) {
  const { hostname: host, port } = new URL(url);
  const r = await runRoaming({
    host,
    port: Number(port),
    cookieName: peer.cookieName,
    backendNames,
    threads: options.threads,
    clients: options.connections,
    durationS,
  });
  return harnessRecord(r, { keptPct: r.keptPct, addresses: r.addresses, reissued: r.reissued });
}

/**
 * One roaming client (runs in a load-generator thread; see ../node-load/worker.js for ctx).
 * Starts at address firstOctet + (index mod span), so clients spread over the range, and
 * moves to the next address after every `rotateEvery` attempts, failed ones included (an
 * error never pins a client to an address). A failed request closes the connection; the
 * next attempt reconnects from the same address.
 */
export async function roamingClient(ctx) {
  const { host, port, cookieName, backendNames, rotateEvery, firstOctet, lastOctet, connectTimeoutMs, responseTimeoutMs } = ctx.params;
  const span = lastOctet - firstOctet + 1;
  let octet = firstOctet + (ctx.index % span);
  let attemptsHere = 0;
  let connection = null;
  let firstBackend = null;
  const jar = new CookieJar();
  try {
    while (ctx.running()) {
      if (attemptsHere >= rotateEvery) {
        connection?.close();
        connection = null;
        octet = octet === lastOctet ? firstOctet : octet + 1;
        attemptsHere = 0;
      }
      attemptsHere += 1;
      const localAddress = `127.0.0.${octet}`;
      if (connection === null || !connection.reusable) {
        connection?.close();
        connection = null;
        try {
          connection = await openConnection({ host, port, localAddress, timeoutMs: connectTimeoutMs });
        } catch (error) {
          ctx.error(error.kind ?? 'connect');
          continue;
        }
        ctx.distinct('addresses', localAddress);
      }
      const cookie = jar.header();
      const sentAt = performance.now();
      let response;
      try {
        response = await connection.request({ headers: cookie ? { Cookie: cookie } : {}, timeoutMs: responseTimeoutMs });
      } catch (error) {
        ctx.error(error.kind ?? 'socket');
        connection.close();
        connection = null;
        continue;
      }
      ctx.response((performance.now() - sentAt) * 1000);
      if (cookie) ctx.count('withCookie');
      const setNames = jar.store(response.setCookies);
      if (response.status < 200 || response.status > 399) {
        ctx.error('non2xx3xx');
        continue;
      }
      const backend = response.body.toString('latin1');
      if (!backendNames.includes(backend)) {
        ctx.error('unknownBackend');
        continue;
      }
      const routeCookieSet = cookieName !== null && setNames.includes(cookieName);
      if (firstBackend === null) {
        firstBackend = backend;
        ctx.count('firstRequests');
        if (routeCookieSet) ctx.count('routeCookieOnFirst');
      } else {
        ctx.count('laterRequests');
        if (backend === firstBackend) ctx.count('kept');
        if (routeCookieSet) ctx.count('reissued');
      }
    }
  } finally {
    connection?.close();
  }
}
