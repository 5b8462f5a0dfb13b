// `tether agent`: announces a backend on this host to a balancer's pool over the control channel
// and keeps it announced (heartbeats, reconnects, re-announces when the host's addresses change).
// One JSON log line per event on stdout; SIGTERM/SIGINT leave the pool, then exit 0.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { parseArgs } from 'node:util';
import pino, { type DestinationStream } from 'pino';

import { parseAgentKeys } from './frames.js';
import { MAX_HEARTBEAT_MS, MAX_WEIGHT, MIN_HEARTBEAT_MS, startAgent, type AgentEvent, type AgentOptions } from './sdk.js';

/** How long SIGTERM waits for the balancer to ack `leave` before closing anyway. */
const LEAVE_DEADLINE_MS = 2_000;
const INTERFACE_POLL_MS = 1_000;

const AGENT_HELP = `usage: tether agent --control URL --pool NAME --id ID --port N --key-file FILE [options]

Announces this host's backend to a Tether balancer and keeps it announced.

  --control URL     the balancer's control channel, e.g. ws://balancer:9090/control (required)
  --pool NAME       the pool to join (required)
  --id ID           this backend's id, unique in the pool (required)
  --port N          the port the balancer sends traffic to (required)
  --key-file FILE   agent key file: '<pool> <64 hex>' lines, or one bare key (required)
  --address A       the address to announce; default: the local address of the control
                    connection, re-detected whenever this host's interfaces change
  --weight N        0-${MAX_WEIGHT}, default 1
  --heartbeat T     heartbeat interval: milliseconds, or Ns / Nms (default 5s)
  --help            this text

SIGTERM or SIGINT: leave the pool (waiting at most ${LEAVE_DEADLINE_MS / 1000} s for the balancer), then exit 0.`;

/** Seams for tests; the command itself uses the defaults. */
interface AgentCommandIo {
  /** Where the JSON log lines go; default stdout. */
  log?: DestinationStream;
  stderr?: (text: string) => void;
  networkInterfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  interfacePollMs?: number;
  /** Stops the agent like SIGTERM does. */
  stop?: AbortSignal;
}

class UsageError extends Error {}

/**
 * A normalized, order-independent text of the host's non-loopback addresses, compared between
 * polls to notice a change (DHCP renewal, a VPN coming up, a cable moved, Wi-Fi roaming).
 */
export function interfaceSnapshot(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): string {
  const lines: string[] = [];
  for (const [name, infos] of Object.entries(interfaces)) {
    for (const info of infos ?? []) {
      if (info.internal) continue;
      lines.push(`${name} ${info.family} ${info.cidr ?? `${info.address}/${info.netmask}`}`);
    }
  }
  return lines.sort().join('\n');
}

/** '5s', '250ms', '1.5s' or a bare number of milliseconds → integer milliseconds; null if not one. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (m === null) return null;
  const ms = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
  return Number.isInteger(ms) ? ms : null;
}

function integerFlag(flag: string, text: string, min: number, max: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag}: expected an integer ${min}-${max} but received '${text}'`);
  return n;
}

/** argv → the agent's options (the key is read from `keyFile` later); throws UsageError naming the flag. */
export function parseAgentFlags(argv: readonly string[]): { help: true } | { help: false; options: Omit<AgentOptions, 'key' | 'onEvent'>; keyFile: string } {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        control: { type: 'string' },
        pool: { type: 'string' },
        id: { type: 'string' },
        port: { type: 'string' },
        'key-file': { type: 'string' },
        address: { type: 'string' },
        weight: { type: 'string' },
        heartbeat: { type: 'string' },
        help: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help === true) return { help: true };
  for (const flag of ['control', 'pool', 'id', 'port', 'key-file'] as const) {
    if (values[flag] === undefined) throw new UsageError(`--${flag} is required`);
  }
  const control = values.control!;
  if (!/^wss?:\/\/./.test(control) || !URL.canParse(control)) throw new UsageError(`--control: expected a ws:// or wss:// URL such as ws://balancer:9090/control but received '${control}'`);
  const pool = values.pool!;
  const id = values.id!;
  const name = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
  if (!name.test(pool)) throw new UsageError(`--pool: expected a pool name of 1-64 letters, digits, '.', '_' or '-' but received '${pool}'`);
  if (!name.test(id)) throw new UsageError(`--id: expected a backend id of 1-64 letters, digits, '.', '_' or '-' but received '${id}'`);
  const options: Omit<AgentOptions, 'key' | 'onEvent'> = {
    url: control,
    pool,
    id,
    port: integerFlag('--port', values.port!, 1, 65535),
  };
  if (values.address !== undefined) {
    if (isIP(values.address) === 0) throw new UsageError(`--address: expected an IPv4 or IPv6 address but received '${values.address}'`);
    options.address = values.address;
  }
  if (values.weight !== undefined) options.weight = integerFlag('--weight', values.weight, 0, MAX_WEIGHT);
  if (values.heartbeat !== undefined) {
    const ms = parseDuration(values.heartbeat);
    if (ms === null || ms < MIN_HEARTBEAT_MS || ms > MAX_HEARTBEAT_MS) {
      throw new UsageError(`--heartbeat: expected a duration such as 5s or 500ms (${MIN_HEARTBEAT_MS} ms to ${MAX_HEARTBEAT_MS / 3_600_000} h) but received '${values.heartbeat}'`);
    }
    options.heartbeatMs = ms;
  }
  return { help: false, options, keyFile: values['key-file']! };
}

/** The key for `pool` from an agent key file: its pool's line, else the '*' (bare key) line. */
function agentKeyFor(text: string, source: string, pool: string): Buffer {
  let keys;
  try {
    keys = parseAgentKeys(text, source);
  } catch (err) {
    throw new UsageError(`--key-file: ${(err as Error).message}`);
  }
  const key = keys.get(pool) ?? keys.get('*');
  if (key === undefined) throw new UsageError(`--key-file: ${source} has no key for pool '${pool}' and no bare ('*') key`);
  return key;
}

export async function runAgent(argv: readonly string[], io: AgentCommandIo = {}): Promise<number> {
  const stderr = io.stderr ?? ((text: string) => void process.stderr.write(text));
  let options: AgentOptions;
  try {
    const parsed = parseAgentFlags(argv);
    if (parsed.help) {
      process.stdout.write(`${AGENT_HELP}\n`);
      return 0;
    }
    let text: string;
    try {
      text = readFileSync(parsed.keyFile, 'utf8');
    } catch (err) {
      throw new UsageError(`--key-file: cannot read ${parsed.keyFile}: ${(err as Error).message}`);
    }
    options = { ...parsed.options, key: agentKeyFor(text, parsed.keyFile, parsed.options.pool) };
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    stderr(`tether agent: ${err.message}\n\nRun \`tether agent --help\` for the flags.\n`);
    return 2;
  }

  const log = pino({ base: { pid: process.pid } }, io.log ?? pino.destination(1));
  const { pool, id } = options;
  const onEvent = (e: AgentEvent): void => {
    switch (e.type) {
      case 'connected':
        log.info({ event: 'connected', pool, id, url: e.url, localAddress: e.localAddress }, `connected to ${e.url} from ${e.localAddress}`);
        break;
      case 'announced':
        log.info({ event: 'announced', pool, id, address: e.address, port: e.port, state: e.state }, `announced ${e.address}:${e.port} (${e.state})`);
        break;
      case 'refused':
        log.warn({ event: 'refused', pool, id, request: e.request, code: e.code, reason: e.reason }, `the balancer refused ${e.request}: ${e.code}`);
        break;
      case 'disconnected':
        log.warn({ event: 'disconnected', pool, id, reason: e.reason, retryInMs: e.retryInMs }, `disconnected: ${e.reason}`);
        break;
      case 'error':
        log.error({ event: 'error', pool, id, during: e.during, code: (e.error as { code?: unknown }).code, err: e.error.message, retryInMs: e.retryInMs }, `${e.during}: ${e.error.message}`);
        break;
    }
  };
  const agent = startAgent({ ...options, onEvent });

  // Without --address the announced address is the control connection's local address: when
  // the host's addresses change, connect again so the kernel picks the route (and address) anew.
  let watch: NodeJS.Timeout | undefined;
  if (options.address === undefined) {
    const read = io.networkInterfaces ?? networkInterfaces;
    const snapshot = (): string | null => {
      try {
        return interfaceSnapshot(read());
      } catch (err) {
        log.error({ event: 'error', pool, id, during: 'interfaces', err: (err as Error).message }, 'could not list network interfaces');
        return null;
      }
    };
    let last = snapshot();
    watch = setInterval(() => {
      const now = snapshot();
      if (now === null || now === last) return;
      last = now;
      log.info({ event: 'interfaces_changed', pool, id, interfaces: now.split('\n').filter((l) => l !== '') }, 'network interfaces changed: reconnecting');
      agent.reconnect();
    }, io.interfacePollMs ?? INTERFACE_POLL_MS);
  }

  await new Promise<void>((resolve) => {
    const stop = (why: string): void => {
      process.off('SIGTERM', onSigterm);
      process.off('SIGINT', onSigint);
      io.stop?.removeEventListener('abort', onAbort);
      log.info({ event: 'stopping', pool, id, signal: why }, `${why}: leaving the pool`);
      resolve();
    };
    const onSigterm = (): void => stop('SIGTERM');
    const onSigint = (): void => stop('SIGINT');
    const onAbort = (): void => stop('stop');
    process.on('SIGTERM', onSigterm);
    process.on('SIGINT', onSigint);
    if (io.stop?.aborted === true) stop('stop');
    else io.stop?.addEventListener('abort', onAbort, { once: true });
  });

  clearInterval(watch);
  try {
    const ack = await withDeadline(agent.leave({ timeoutMs: LEAVE_DEADLINE_MS }), LEAVE_DEADLINE_MS);
    log.info({ event: 'left', pool, id, state: ack.state }, 'left the pool');
  } catch (err) {
    log.warn({ event: 'leave_failed', pool, id, code: (err as { code?: unknown }).code, err: (err as Error).message }, `could not leave the pool: ${(err as Error).message}`);
  }
  await agent.close();
  log.info({ event: 'stopped', pool, id }, 'stopped');
  return 0;
}

/** `promise`, or a rejection once `ms` have passed (a leave queued behind a slow request). */
function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${ms} ms`), { code: 'reply_timeout' })), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
