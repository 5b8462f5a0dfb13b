// Scenario authz-handshakes: completed authorization handshakes per second (src/authz/protocol.ts)
// and what they cost the balancer, crypto above all. Tether only: no peer implements the
// handshake (`authz`: ../peers/index.js runsIn() runs the peers exporting startAuthz()).
//
// Setting: Tether from ../peers/tether.js startAuthz(): the usual HTTP listener and bench
// backends, plus --pool authz (no backends), --agent-keys (one key for pool authz),
// --terminal-keys (1000 users, random keys) and --authz-pool authz. prepare() connects two app
// servers to the balancer's control channel (ws://ADMIN/control) with the SDK
// (dist/control/sdk.js; pool authz, ids s1 and s2) in the harness process; they count the grant
// frames pushed to them and open one in GRANT_CHECK_EVERY with the pool key to prove they are
// real. Before they connect, prepare() records that a proof is answered 503 no_server.
//
// Load: --connections terminals, each on one keep-alive connection (a new one after a failure),
// looping: random user from the terminal key file → POST hello {user, nT} → proof =
// HMAC-SHA256(K_T, proofInput(user, nT, nB)) → POST proof {user, nT, nB, proof} → 200 {f, box}.
// JSON bodies, byte fields base64url (the terminal SDK's default). The hello answer must echo
// user and nT; one proof answer in OPEN_EVERY per terminal is opened with the user's key and
// must hold user, nT and nB. Anything else is an error, by kind: denied (403), rateLimited (429),
// noServer (503), badRequest (400), status (another status), badChallenge, badGrant, or the
// transport's connect, timeout, closed, parse, socket.
// Two generators do this. The measured run and the warm-up use authz-gen (../authz-gen/, C,
// GEN_THREADS epoll threads): the target counts the load generator's CPU, and the Node one
// spent ~0.1 ms per handshake, as much as the balancer. The Node one (handshakeClient below,
// piscina threads) drives prepare()'s probes and the tests' bounded runs (msgpack, wrong keys),
// and stands in for the measured run when authz-gen cannot be built (checks.generator says so).
//
// Figures (the measured run only; see Warm-up):
//   req/s               completed handshakes/s — hello and proof both answered 200 and checked;
//                       not HTTP requests (two per handshake)
//   handshakes/s/worker req/s ÷ --workers
//   p50/p99 ms          a whole handshake: hello written → proof answer read (connect excluded)
//   CPU ms/1k           the balancer process's CPU time (all its threads, /proc) over the load
//                       window, per 1000 completed handshakes
//   gen CPU ms/1k       authz-gen's own CPU time per 1000 handshakes (n/a with the Node generator)
//   handshakes, grants  counts; grants = grant frames the two servers received, counted once the
//                       run has settled (up to GRANT_SETTLE_MS). grants ≠ handshakes flags the run.
//   native %, OpenSSL % share of the balancer's on-CPU samples (all threads) in the native addon
//                       (any frame in tether_native.node: the addon and the OpenSSL HMAC it calls)
//                       and, of the rest, in OpenSSL inside node (any frame EVP_*, ossl_*, HMAC*,
//                       HKDF*, aes*, gcm*, sha256*, RAND_*, …: node:crypto's HKDF, AES-GCM, random
//                       bytes). From `perf record -F 999 -g -p PID` for up to PERF_SECONDS starting
//                       1 s into the run, read with perf script (../perf-profile.js); the top
//                       self-time symbols go to results.json (load.profile). n/a without perf.
//
// Warm-up: the harness's warm-up run is off (`warmup = false`): prepare() drives --warmup seconds
// of the same load first, so the harness's CPU and RSS figures and the profile cover the measured
// run alone. perf itself takes a little CPU on the same cores while it records.
//
// Caveats. Every client is 127.0.0.1 and Tether limits failed proofs per client IP (default 10
// per minute per worker), so a handful of refusals turns every later proof into 429 for a
// minute: the errors then say rateLimited. On one machine the load generator (which also does
// the terminal's crypto), the two servers (which verify every grant frame) and the balancer share
// the cores: read CPU ms/1k beside the rate.

import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pack, unpack } from 'msgpackr';
import { delay } from '../processes.js';
import { cpuSecondsBetween, groupCpuTicks } from '../proc-stats.js';
import { parseSamples, readProfile, recordProfile, summarizeSamples } from '../perf-profile.js';
import { harnessRecord, openConnection, runLoad } from '../node-load/index.js';
import { buildAuthzGen, runAuthzGen, DESCRIBE as GEN_DESCRIBE } from '../authz-gen/index.js';

export const name = 'authz-handshakes';
export const description = 'authorization handshakes per second (hello + proof, 1000 users, grants pushed to two app servers over the control channel): Tether only';
export const authz = true;
export const warmup = false;
export const columns = [
  { key: 'perWorker', label: 'hs/s/worker', digits: 0 },
  { key: 'cpuMsPer1k', label: 'CPU ms/1k hs', digits: 1 },
  { key: 'genCpuMsPer1k', label: 'gen CPU ms/1k', digits: 1, missing: 'n/a' },
  { key: 'handshakes', label: 'handshakes', digits: 0 },
  { key: 'grants', label: 'grants', digits: 0 },
  { key: 'nativePct', label: 'native %', digits: 1, missing: 'n/a' },
  { key: 'opensslPct', label: 'OpenSSL %', digits: 1, missing: 'n/a' },
];

/** One proof answer in this many (per client) is opened with the user's key and checked. */
export const OPEN_EVERY = 100;
/** One grant frame in this many (per server) is opened with the pool key and checked. */
export const GRANT_CHECK_EVERY = 100;
/** Deadline of each request (as wrk --timeout 5s in the HTTP scenarios). */
export const REQUEST_TIMEOUT_MS = 5000;
export const CONNECT_TIMEOUT_MS = 2000;
/** How long grants may trail the last handshake before the count is taken as it is. */
export const GRANT_SETTLE_MS = 5000;
/** At most this many seconds of profile, from 1 s into the run. */
export const PERF_SECONDS = 3;
/** authz-gen's threads: one epoll loop keeps up with the balancer on two cores, and leaves it the other. */
export const GEN_THREADS = 1;
const SERVER_IDS = ['s1', 's2'];
/** Announced ports of the two servers: they take no traffic here, only grants. */
const SERVER_PORTS = [9001, 9002];
const AGENT_READY_MS = 10_000;
const AGENT_CLOSE_MS = 3000;

const distUrl = (path) => new URL(`../../../dist/${path}`, import.meta.url).href;
// dist/ is imported when used, not at load: the scenario list must load before a build exists.
let protocolModule = null;
const protocol = () => (protocolModule ??= import(distUrl('authz/protocol.js')));

export function loadDescription(options) {
  return (
    `${GEN_DESCRIBE}, ${GEN_THREADS} thread (the Node clients instead if it cannot be built: checks.generator says which ran), ${options.connections} terminals, each on one keep-alive connection, ` +
    `each looping hello → HMAC proof → proof for a random user of 1000, JSON; ${options.duration}s after ${options.warmup}s unmeasured ` +
    `warm-up; req/s = completed handshakes/s, p50/p99 = whole handshake; native/OpenSSL % = balancer CPU samples (perf -F 999)`
  );
}

// ---------------------------------------------------------------------------------------------
// The servers: two SDK agents counting the grants pushed to them.

/**
 * Connects SERVER_IDS to `authz.control` and resolves { total(), checked, bad, expect(), settle(), close() }
 * once both are announced. `total()` counts grant frames; one in GRANT_CHECK_EVERY is opened with
 * the pool key (`checked`, or `bad` when it does not open as a grant for that server).
 */
export async function connectServers(authz) {
  const [{ startAgent }, p] = await Promise.all([import(distUrl('control/sdk.js')), protocol()]);
  const key = Buffer.from(authz.agentKey, 'hex');
  // expected: grants issued so far (proofs answered 200); settled: grants counted by the last settle().
  const state = { grants: 0, checked: 0, bad: 0, expected: 0, settled: 0 };
  const agents = SERVER_IDS.map((id, i) =>
    startAgent({
      url: authz.control,
      pool: authz.pool,
      id,
      key,
      port: SERVER_PORTS[i],
      address: '127.0.0.1',
      onMessage: (m) => {
        if (m.type !== 'grant') return;
        state.grants += 1;
        if (state.grants % GRANT_CHECK_EVERY !== 0) return;
        const grant = m.f instanceof Uint8Array && m.box instanceof Uint8Array ? p.open(key, m.f, p.serverBoxInfo(authz.pool, id), m.box) : null;
        if (grant && grant.server === id && grant.pool === authz.pool) state.checked += 1;
        else state.bad += 1;
      },
    }),
  );
  const close = () => Promise.all(agents.map((a) => Promise.race([a.close(), delay(AGENT_CLOSE_MS)])));
  let timer;
  try {
    await Promise.race([
      Promise.all(agents.map((a) => a.ready)),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`app servers not announced on ${authz.control} within ${AGENT_READY_MS} ms`)), AGENT_READY_MS);
      }),
    ]);
  } catch (error) {
    await close();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return {
    total: () => state.grants,
    get checked() {
      return state.checked;
    },
    get bad() {
      return state.bad;
    },
    /** Adds `granted` (proofs answered 200 in a load run) to the grants the servers should receive. */
    expect(granted) {
      state.expected += granted;
    },
    /**
     * Waits (≤ `deadlineMs`) until every grant expected so far has arrived, and resolves how many
     * arrived since the last settle(). A grant beyond the count (a proof the client gave up on but
     * the balancer granted) travels with the rest, so a short pause catches it too.
     */
    async settle(deadlineMs = GRANT_SETTLE_MS) {
      const until = Date.now() + deadlineMs;
      while (state.grants < state.expected && Date.now() < until) await delay(10);
      await delay(50);
      const arrived = state.grants - state.settled;
      state.settled = state.grants;
      state.expected = state.grants;
      return arrived;
    },
    close,
  };
}

// ---------------------------------------------------------------------------------------------
// The load.

/**
 * Runs `clients` handshake clients over `threads` threads for `durationS` against `authz` (the
 * context's, see ../peers/tether.js). `generator`: 'node' (piscina threads) or the path of a
 * built authz-gen (JSON only). Knobs after `durationS` exist for tests: a handshake bound per
 * client, another key file for the clients (wrong keys), msgpack bodies, deadlines.
 */
export function runAuthzHandshakes({
  authz,
  threads,
  clients,
  durationS,
  generator = 'node',
  maxHandshakesPerClient,
  keysFile = authz.terminalKeysFile,
  format = 'json',
  requestTimeoutMs = REQUEST_TIMEOUT_MS,
  connectTimeoutMs = CONNECT_TIMEOUT_MS,
}) {
  if (generator !== 'node') {
    if (format !== 'json') return Promise.reject(new Error(`authz-gen speaks JSON only, not ${format}`));
    return runAuthzGen({
      binary: generator,
      host: authz.host,
      port: authz.port,
      path: authz.path,
      keysFile,
      connections: clients,
      threads,
      durationS,
      ...(maxHandshakesPerClient === undefined ? {} : { maxPerConnection: maxHandshakesPerClient }),
      openEvery: OPEN_EVERY,
      requestTimeoutMs,
      connectTimeoutMs,
    });
  }
  return runLoad({
    client: import.meta.url,
    clientExport: 'handshakeClient',
    threads,
    clients,
    durationS,
    ...(maxHandshakesPerClient === undefined ? {} : { maxLoopsPerClient: maxHandshakesPerClient }),
    params: { host: authz.host, port: authz.port, path: authz.path, keysFile, format, requestTimeoutMs, connectTimeoutMs },
  });
}

/** Terminal key files read in this thread: path → [{ user, key }]. */
const keyFiles = new Map();
function usersIn(file) {
  let users = keyFiles.get(file);
  if (!users) {
    users = [];
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [user, hex] = line.trim().split(/\s+/);
      if (user && /^[0-9a-fA-F]{64}$/.test(hex ?? '')) users.push({ user, key: Buffer.from(hex, 'hex') });
    }
    if (users.length === 0) throw new Error(`no '<user> <64 hex>' line in ${file}`);
    keyFiles.set(file, users);
  }
  return users;
}

const ERROR_KIND = { 400: 'badRequest', 403: 'denied', 429: 'rateLimited', 503: 'noServer' };

/** Request body and answer decoding by format: JSON with base64url byte fields, or msgpack with bin. */
function codec(format) {
  if (format === 'msgpack') {
    return {
      type: 'application/msgpack',
      encode: (body) => pack(body),
      decode: (buffer) => unpack(buffer),
      bytes: (v) => (v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.length) : null),
    };
  }
  return {
    type: 'application/json',
    encode: (body) => JSON.stringify(Object.fromEntries(Object.entries(body).map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString('base64url') : v]))),
    decode: (buffer) => JSON.parse(buffer.toString('utf8')),
    bytes: (v) => (typeof v === 'string' ? Buffer.from(v, 'base64url') : null),
  };
}

/** One client (in a load-generator thread; see ../node-load/worker.js for ctx). */
export async function handshakeClient(ctx) {
  const { host, port, path, keysFile, format, requestTimeoutMs, connectTimeoutMs } = ctx.params;
  const p = await protocol();
  const users = usersIn(keysFile);
  const c = codec(format);
  const headers = { 'content-type': c.type };
  const post = (connection, step, body) =>
    connection.request({ method: 'POST', path: `${path}/${step}`, headers, body: c.encode(body), timeoutMs: requestTimeoutMs });
  let connection = null;
  let done = 0;
  while (ctx.running()) {
    if (!connection?.reusable) {
      connection?.close();
      connection = null;
      try {
        connection = await openConnection({ host, port, timeoutMs: connectTimeoutMs });
      } catch (error) {
        ctx.error(error.kind ?? 'connect');
        await delay(10); // a refused connect is instant: do not spin
        continue;
      }
    }
    const { user, key } = users[Math.floor(Math.random() * users.length)];
    const nT = randomBytes(16);
    const startedAt = performance.now();
    let answer;
    try {
      answer = await post(connection, 'hello', { user, nT });
      if (answer.status !== 200) {
        ctx.error(ERROR_KIND[answer.status] ?? 'status');
        continue;
      }
      const challenge = c.decode(answer.body);
      const nB = c.bytes(challenge.nB);
      if (challenge.user !== user || !nT.equals(c.bytes(challenge.nT) ?? Buffer.alloc(0)) || !nB || nB.length !== 56) {
        ctx.error('badChallenge');
        continue;
      }
      const proof = createHmac('sha256', key).update(p.proofInput(user, nT, nB)).digest();
      answer = await post(connection, 'proof', { user, nT, nB, proof });
      if (answer.status !== 200) {
        ctx.error(ERROR_KIND[answer.status] ?? 'status');
        continue;
      }
      const micros = (performance.now() - startedAt) * 1000;
      ctx.count('granted');
      const reply = c.decode(answer.body);
      const f = c.bytes(reply.f);
      const box = c.bytes(reply.box);
      if (!f || f.length !== 16 || !box) {
        ctx.error('badGrant');
        continue;
      }
      done += 1;
      if (done % OPEN_EVERY === 1) {
        const grant = p.open(key, f, p.terminalBoxInfo(), box);
        if (!grant || grant.user !== user || !nT.equals(grant.nT ?? Buffer.alloc(0)) || !nB.equals(grant.nB ?? Buffer.alloc(0))) {
          ctx.error('badGrant');
          continue;
        }
        ctx.count('opened');
      }
      ctx.response(micros);
    } catch (error) {
      // A transport error (the connection is then closed) or an answer that does not parse.
      ctx.error(error.kind ?? 'parse');
    }
  }
  connection?.close();
}

// ---------------------------------------------------------------------------------------------
// The harness's side.

/** Shares of the balancer's CPU samples, first match wins (see ../perf-profile.js). */
const OPENSSL_SYMBOL =
  /^_*(?:EVP|evp|ossl|OSSL|OPENSSL|CRYPTO|HMAC|hmac|HKDF|hkdf|kdf|KDF|SHA\d*|sha\d*|aesni|aes|AES|gcm|GCM|ghash|RAND|rand|drbg|ERR|OBJ|BN|bn)(?:[_A-Z0-9]|$)|(?:^|_)evp_/;
const inNode = (dso) => dso === 'node' || /^lib(?:crypto|ssl)\.so/.test(dso);
export const CPU_CLASSES = [
  { name: 'native', match: (frames) => frames.some((f) => f.dso === 'tether_native.node') },
  { name: 'openssl', match: (frames) => frames.some((f) => inNode(f.dso) && OPENSSL_SYMBOL.test(f.sym)) },
  // node's own crypto binding (argument checks, buffers, jobs) above OpenSSL: crypto overhead, not OpenSSL.
  { name: 'nodeCrypto', match: (frames) => frames.some((f) => f.dso === 'node' && f.sym.startsWith('node::crypto::')) },
  { name: 'kernel', match: (frames) => frames[0]?.dso === '[kernel.kallsyms]' },
];

/** runAuthzHandshakes' threads and generator for a measured or warm-up run: authz-gen's own thread count, or the harness's --threads. */
const loadOptions = (generator, options) => (generator === 'node' ? { threads: options.threads } : { threads: GEN_THREADS, generator });

/** prepare(): the no-server check, the two servers, one checked handshake, the warm-up. */
export async function prepare({ authz: context, options }) {
  if (!context) throw new Error(`scenario ${name}: the peer was not started with startAuthz() (no authz context)`);
  const checks = { users: context.users, pool: context.pool };
  const probe = (durationS) => runAuthzHandshakes({ authz: context, threads: 1, clients: 1, durationS, maxHandshakesPerClient: 1 });
  const before = await probe(10);
  checks.proofWithoutServer = before.errorCount === 1 ? `refused (${Object.keys(before.errors).join(', ')})` : `${before.requests} handshake(s) completed`;
  const servers = await connectServers(context);
  let generator = 'node';
  try {
    const first = await probe(10);
    servers.expect(first.counters.granted ?? 0);
    const arrived = await servers.settle();
    if (first.requests !== 1 || arrived !== 1) {
      throw new Error(`expected one handshake and its grant with two servers connected but received ${first.requests} handshake(s) (errors ${JSON.stringify(first.errors)}) and ${arrived} grant(s)`);
    }
    checks.handshakeWithServers = 'granted, box opened, grant received';
    // The measured run's generator: authz-gen if it builds and completes one checked handshake.
    const built = await buildAuthzGen();
    if (built.ok) {
      const one = await runAuthzHandshakes({ authz: context, threads: 1, clients: 1, durationS: 10, generator: built.path, maxHandshakesPerClient: 1 });
      servers.expect(one.counters.granted ?? 0);
      const grants = await servers.settle();
      if (one.requests !== 1 || one.counters.opened !== 1 || grants !== 1) {
        throw new Error(`authz-gen: expected one handshake with its box opened and its grant but received ${one.requests} handshake(s), ${one.counters.opened ?? 0} opened, ${grants} grant(s) (errors ${JSON.stringify(one.errors)})`);
      }
      generator = built.path;
      checks.generator = `${GEN_DESCRIBE}: one handshake granted, box opened, grant received`;
    } else {
      checks.generator = `node clients: authz-gen unavailable (${built.reason}; ${built.install})`;
    }
    const load = loadOptions(generator, options);
    if (options.warmup > 0) {
      const w = await runAuthzHandshakes({ authz: context, ...load, clients: options.connections, durationS: options.warmup });
      servers.expect(w.counters.granted ?? 0);
      const grants = await servers.settle();
      checks.warmup = { durationS: options.warmup, handshakes: w.requests, grants, errors: w.errors };
    }
  } catch (error) {
    await servers.close();
    throw error;
  }
  return {
    cookies: [],
    checks,
    servers,
    generator,
    cleanup: async () => {
      const checked = { grantsChecked: servers.checked, grantsBad: servers.bad };
      await servers.close();
      return servers.bad > 0 ? { extra: checked, flag: `${servers.bad} grant frame(s) did not open as a grant for their server` } : { extra: checked };
    },
  };
}

/**
 * The load record from a run: runLoad's result `r`, the grants that arrived, the balancer's CPU
 * seconds over the run and the profile summary (or why there is none). Flags grants ≠ handshakes.
 */
export function authzRecord(r, { workers, grants, cpuSeconds, profile }) {
  const handshakes = r.requests;
  const shares = profile?.ok ? profile.summary.shares : null;
  const record = harnessRecord(r, {
    perWorker: r.rps / workers,
    cpuMsPer1k: handshakes > 0 ? (cpuSeconds * 1e6) / handshakes : null,
    genCpuMsPer1k: typeof r.cpuSeconds === 'number' && handshakes > 0 ? (r.cpuSeconds * 1e6) / handshakes : 'n/a',
    handshakes,
    grants,
    opened: r.counters.opened ?? 0,
    nativePct: shares ? shares.native : 'n/a',
    opensslPct: shares ? shares.openssl : 'n/a',
  });
  record.profile = profile?.ok ? { tool: `perf record -F 999 -g, ${profile.seconds} s`, ...profile.summary } : { unavailable: profile?.reason ?? 'not recorded' };
  const flags = [];
  if (grants !== handshakes) flags.push(`servers received ${grants} grant(s) for ${handshakes} completed handshake(s)${(r.counters.granted ?? 0) !== handshakes ? ` (${r.counters.granted ?? 0} proofs answered 200)` : ''}`);
  if (r.overran > 0) flags.push(`${r.overran} client(s) overran the run's deadline`);
  if (flags.length > 0) record.flag = flags.join('; ');
  return record;
}

/** Profiles `pid` during the run: PERF_SECONDS from 1 s in (less on a short run). */
async function profileDuring({ pid, durationS, dir }) {
  const afterS = Math.min(1, durationS / 5);
  const seconds = Math.max(0.5, Math.min(PERF_SECONDS, durationS - 2 * afterS));
  const recorded = await recordProfile({ pid, seconds, afterS, file: join(dir, 'authz-perf.data') });
  if (!recorded.ok) return recorded;
  try {
    const samples = parseSamples(await readProfile(recorded.file));
    if (samples.length === 0) return { ok: false, reason: 'perf recorded no samples of the balancer' };
    return { ok: true, seconds, summary: summarizeSamples(samples, CPU_CLASSES) };
  } catch (error) {
    return { ok: false, reason: error.message };
  }
}

export async function measure({ authz: context, options, durationS, prepared, dir }) {
  const { pid } = context;
  const cpuBefore = groupCpuTicks(pid);
  const profiling = profileDuring({ pid, durationS, dir });
  const generator = prepared.generator ?? 'node';
  const load = loadOptions(generator, options);
  const r = await runAuthzHandshakes({ authz: context, ...load, clients: options.connections, durationS });
  const cpuSeconds = cpuSecondsBetween(cpuBefore, groupCpuTicks(pid));
  prepared.servers.expect(r.counters.granted ?? 0);
  const [grants, profile] = await Promise.all([prepared.servers.settle(), profiling]);
  return authzRecord(r, { workers: options.workers, grants, cpuSeconds, profile });
}
