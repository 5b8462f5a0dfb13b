// The keys the workers hold now: the route-token key ring (--key-file, or one random key) and
// the authorization handshake's terminal and agent keys. SIGHUP and a reload re-read the files
// and send the result to every worker; a bad file keeps the keys in force.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { KeyRing } from '../protocol/key-ring.js';
import type { ToWorker, WorkerInit } from '../protocol/worker-messages.js';
import { ephemeralRing, initialRing, readKeyFile, rotate } from './key-ring.js';
import { readTerminalKeys } from './startup-files.js';

/**
 * The route-token key ring to start with: --key-file's keys, or without one a random key made
 * now (with a warning: its tokens outlive neither this process nor this node). A bad key file
 * throws TETHER_ERR_KEY_FILE.
 */
export function loadKeyRing(config: Config, log: Logger): KeyRing {
  if (config.keyFile) {
    const keyRing = initialRing(readKeyFile(config.keyFile), config.keyGraceSec, Date.now());
    log.info(
      { keyFile: config.keyFile, keys: keyRing.keys.length, sealKeyId: keyRing.sealKeyId, v1TokensOpenUntil: new Date(keyRing.v1OpensUntil).toISOString() },
      'route-token keys loaded',
    );
    return keyRing;
  }
  log.warn('no --key-file: route tokens are sealed with a random key made now; they will not survive a restart or route on another balancer node (create one with `tether keygen > keys` and pass --key-file keys)');
  return ephemeralRing();
}

interface KeysDeps {
  ring: KeyRing;
  /** --terminal-keys as read at start (null: no authorization handshake). */
  terminalKeys: Map<string, Buffer> | null;
  /** --agent-keys (fixed while running: control is not reloaded). */
  agentKeys: Map<string, Buffer> | null;
  log: Logger;
  /** Sends a message to every running worker (WorkerPool.broadcast). */
  broadcast(msg: ToWorker): void;
}

/**
 * Owns the keys in force and what re-reading them means. A starting worker takes them from
 * here (`ring`, `workerAuthz()`); `reload` replaces them: a bad terminal key file is logged and
 * the running terminal keys stay; a bad route-token key file throws and the running ring stays.
 * Keys that leave the route-token file keep opening tokens for keyGraceSec (key-ring.ts).
 */
export class KeysInForce {
  #ring: KeyRing;
  #terminalKeys: Map<string, Buffer> | null;
  #reloads = 0;

  constructor(private readonly d: KeysDeps) {
    this.#ring = d.ring;
    this.#terminalKeys = d.terminalKeys;
  }

  /** The route-token key ring in force. */
  get ring(): KeyRing {
    return this.#ring;
  }

  /** Route-token key file re-reads that succeeded (tether_key_reloads_total). */
  get reloads(): number {
    return this.#reloads;
  }

  /** The handshake keys a starting worker is given: null (handshake off) unless both files are set. */
  workerAuthz(): WorkerInit['authz'] {
    const terminalKeys = this.#terminalKeys;
    const agentKeys = this.d.agentKeys;
    return terminalKeys && agentKeys ? { terminalKeys: [...terminalKeys], serverKeys: [...agentKeys] } : null;
  }

  /**
   * Re-reads the key files `config` names (what SIGHUP does) and sends every worker the result.
   * Throws on a bad route-token key file; the old ring stays.
   */
  reload(config: Config): void {
    const { log } = this.d;
    if (config.authz.terminalKeysFile) {
      // A bad terminal key file keeps the running keys, as a bad route-token key file does.
      try {
        const next = readTerminalKeys(config.authz.terminalKeysFile);
        this.#terminalKeys = next;
        this.d.broadcast({ v: 1, type: 'terminal-keys', keys: [...next] });
        log.info({ terminalKeys: next.size }, 'terminal keys reloaded');
      } catch (err) {
        log.error({ err: (err as Error).message }, 'SIGHUP: terminal key file rejected; the running terminal keys stay');
      }
    }
    if (!config.keyFile) {
      log.warn('SIGHUP: no --key-file to re-read; the random key stays');
      return;
    }
    const next = readKeyFile(config.keyFile);
    const { ring, warnings } = rotate(this.#ring, next, config.keyGraceSec, Date.now());
    for (const w of warnings) log.warn(w);
    this.#ring = ring;
    this.d.broadcast({ v: 1, type: 'key-ring', keyRing: ring });

    this.#reloads++;
    log.info(
      { keys: ring.keys.map((k) => ({ id: k.id, retireAt: k.retireAt ? new Date(k.retireAt).toISOString() : undefined })), sealKeyId: ring.sealKeyId },
      'route-token keys reloaded',
    );
  }
}
