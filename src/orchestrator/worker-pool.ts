// The worker threads, one slot each: started with a WorkerInit, restarted with backoff when one
// that has served dies, told of changes by message (src/protocol/worker-messages.ts) and waited
// for against a deadline, and stopped by asking: a thread terminated with uWS sockets open
// aborts the whole process, so terminate() is only ever a backstop.
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { TetherError } from '../errors.js';
import type { Config } from '../config/schema.js';
import type { CounterReader } from '../shared-memory/counters.js';
import { decode, encode, type FromWorker, type GrantToPush, type ToWorker, type WorkerInit } from '../protocol/worker-messages.js';

/** Longest a change (registry snapshot, access-log reopen) waits for every worker to confirm it. */
const CONFIRM_DEADLINE_MS = 2_000;
const WORKER_START_DEADLINE_MS = 15_000;
/** A draining worker that has not exited this long after its drain deadline is terminated. */
const EXIT_BACKSTOP_AFTER_DRAIN_MS = 5_000;
/** A second signal waits at most this long for workers to close their sockets. */
const STOP_NOW_BACKSTOP_MS = 1_000;
/** Restart backoff: the first restart after this long, doubling per consecutive failure up to the cap. */
const RESTART_FIRST_DELAY_MS = 100;
const RESTART_MAX_DELAY_MS = 5_000;
const WORKER_URL = new URL('../data-plane/worker.js', import.meta.url);

interface WorkerSlot {
  index: number;
  worker: Worker | null;
  listening: boolean;
  /** Registry version this worker routes by. */
  appliedVersion: number;
  /** The last access-log reopen this worker has carried out. */
  logGeneration: number;
  /** Certificate reloads this worker has carried out. */
  certGeneration: number;
  /** Has listened at least once: only such a slot is restarted when its worker exits. */
  served: boolean;
  consecutiveFailures: number;
}

export interface WorkerPoolDeps {
  /** How many worker threads (--workers). */
  size: number;
  log: Logger;
  /** The shared counters: a slot's gauges are zeroed before its worker (re)starts. */
  reader: Pick<CounterReader, 'clearGauges'>;
  /** What a worker starting now is given: the state in force, so a restarted one misses nothing. */
  init(workerIndex: number): WorkerInit;
  /** Authorization grants a worker sealed, to be pushed to their backends' agents. */
  onGrants(grants: GrantToPush[]): void;
}

/**
 * Owns the worker threads. Decides when a worker has started (it listened within 15 s; failing
 * that, or exiting first, rejects with TETHER_ERR_WORKER or TETHER_ERR_LISTEN), which exits are
 * restarted (a worker that has listened, unless stopping; 100 ms doubling to 5 s, reset once it
 * listens again), and when a change counts as applied (every listening worker confirmed it, or
 * 2 s passed and a warning names the laggards: a stuck worker must not stall the control plane).
 */
export class WorkerPool {
  /** Workers that died after serving and were restarted (tether_worker_restarts_total). */
  restarts = 0;
  private readonly slots: WorkerSlot[];
  /** Called whenever a worker confirms a change (a registry version, an access-log generation). */
  private readonly confirmWaiters: (() => void)[] = [];
  /** Access-log reopens asked of the workers (each confirms the generation it carried out). */
  private logGeneration = 0;
  private certGeneration = 0;
  #stopping = false;

  constructor(private readonly d: WorkerPoolDeps) {
    this.slots = Array.from({ length: d.size }, (_, index) => ({ index, worker: null, listening: false, appliedVersion: 0, logGeneration: 0, certGeneration: 0, served: false, consecutiveFailures: 0 }));
  }

  /** Set by stop() or stopNow(): no worker is restarted from then on. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Workers listening now (tether_workers_running). */
  get listening(): number {
    return this.slots.filter((w) => w.listening).length;
  }

  /** /readyz: every worker listening, and not stopping. */
  ready(): boolean {
    return !this.#stopping && this.slots.every((w) => w.listening);
  }

  /** Starts every worker; resolves once all listen, rejects with the first that cannot. */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((w) => this.spawn(w)));
  }

  /** Posts `msg` to every running worker; a slot between workers gets the state in force at its start. */
  broadcast(msg: ToWorker): void {
    for (const w of this.slots) this.post(w, msg);
  }

  /** Resolves once every running worker routes by registry `version` (or after the deadline). */
  whenBackendsApplied(version: number): Promise<void> {
    return this.confirmed((w) => w.appliedVersion >= version, `registry change ${version}`);
  }

  /** Every worker reopens the access log at `dest` (null: stops logging); resolves when all have. */
  /** Every worker reads the HTTPS certificates again (for its next handshakes) and confirms. */
  reloadCertificates(tls: Config['tls']): Promise<void> {
    const generation = ++this.certGeneration;
    this.broadcast({ v: 1, type: 'certificates', tls, generation });
    return this.confirmed((w) => w.certGeneration >= generation, 'certificate reload');
  }

  reopenAccessLog(dest: string | null): Promise<void> {
    const generation = ++this.logGeneration;
    this.broadcast({ v: 1, type: 'access-log', dest, generation });
    return this.confirmed((w) => w.logGeneration >= generation, 'access log reopen');
  }

  /**
   * Asks every worker to close its listeners and exit once drained (up to `drainMs`); resolves
   * when all have exited.
   */
  async stop(drainMs: number): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.slots.map((w) => this.stopWorker(w, drainMs)));
  }

  /**
   * Cut everything now (a second signal): workers close their own uWS sockets and exit at once.
   * Resolves when they have, or after STOP_NOW_BACKSTOP_MS.
   */
  stopNow(): Promise<void> {
    this.#stopping = true;
    const exits = this.slots.map(
      (w) =>
        new Promise<void>((resolve) => {
          if (!w.worker) return resolve();
          w.worker.once('exit', () => resolve());
          this.post(w, { v: 1, type: 'shutdown', drainMs: 0 });
        }),
    );
    return Promise.race([Promise.all(exits).then(() => undefined), new Promise<void>((r) => setTimeout(r, STOP_NOW_BACKSTOP_MS))]);
  }

  private post(w: WorkerSlot, msg: ToWorker): void {
    w.worker?.postMessage(encode(msg));
  }

  /** Starts the slot's worker; resolves with its ports once it listens. */
  private spawn(slot: WorkerSlot): Promise<number[]> {
    const { log } = this.d;
    return new Promise((resolve, reject) => {
      this.d.reader.clearGauges(slot.index);
      // A (re)started worker begins at the registry's current version.
      const init = this.d.init(slot.index);
      slot.appliedVersion = init.backendsVersion;
      // It opens the access log where the configuration says now.
      slot.logGeneration = this.logGeneration;
      // It reads the certificates the configuration names now.
      slot.certGeneration = this.certGeneration;
      const worker = new Worker(WORKER_URL, { workerData: init, name: `tether-worker-${slot.index}` });
      slot.worker = worker;
      slot.listening = false;
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        void worker.terminate();
        reject(new TetherError('TETHER_ERR_WORKER', `worker ${slot.index} did not start listening within ${WORKER_START_DEADLINE_MS} ms`));
      }, WORKER_START_DEADLINE_MS);
      worker.on('message', (data: unknown) => {
        const msg = decode<FromWorker>(data);
        switch (msg.type) {
          case 'listening':
            slot.listening = true;
            slot.served = true;
            slot.consecutiveFailures = 0;
            if (!settled) {
              settled = true;
              clearTimeout(timer);
              resolve(msg.ports);
            }
            return;
          case 'listen-failed':
            if (!settled) {
              settled = true;
              clearTimeout(timer);
              reject(new TetherError('TETHER_ERR_LISTEN', `cannot listen on ${msg.address} (in use, or not an address of this machine)`));
            }
            return;
          case 'log':
            log[msg.level]({ worker: slot.index, ...msg.fields }, msg.msg);
            return;
          case 'drained':
            return;
          case 'grants':
            this.d.onGrants(msg.grants);
            return;
          case 'backends-applied':
            slot.appliedVersion = Math.max(slot.appliedVersion, msg.version);
            for (const w of this.confirmWaiters.splice(0)) w();
            return;
          case 'certificates-applied':
            slot.certGeneration = Math.max(slot.certGeneration, msg.generation);
            for (const w of this.confirmWaiters.splice(0)) w();
            return;
          case 'access-log-applied':
            slot.logGeneration = Math.max(slot.logGeneration, msg.generation);
            for (const w of this.confirmWaiters.splice(0)) w();
            return;
        }
      });
      worker.on('error', (err) => {
        log.error({ worker: slot.index, err }, 'worker failed');
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          reject(new TetherError('TETHER_ERR_WORKER', `worker ${slot.index} failed to start: ${err.message}`, { cause: err }));
        }
      });
      worker.on('exit', (code) => {
        if (slot.worker !== worker) return;
        slot.worker = null;
        slot.listening = false;
        if (!settled) {
          // Exited before listening (its listen-failed message may not have made it out).
          settled = true;
          clearTimeout(timer);
          reject(new TetherError('TETHER_ERR_WORKER', `worker ${slot.index} exited with code ${code} before listening (address in use?)`));
        }
        // A worker that never listened is a start-up failure (the caller stops everything).
        if (this.#stopping || !slot.served) return;
        this.restarts++;
        slot.consecutiveFailures++;
        const delay = Math.min(RESTART_MAX_DELAY_MS, RESTART_FIRST_DELAY_MS * 2 ** (slot.consecutiveFailures - 1));
        log.error({ worker: slot.index, code, restartInMs: delay }, 'worker exited; restarting');
        setTimeout(() => {
          if (this.#stopping) return;
          this.spawn(slot).catch((err: Error) => log.error({ worker: slot.index, err }, 'worker restart failed'));
        }, delay).unref();
      });
    });
  }

  /**
   * Resolves once every running worker has confirmed (`done`), or after CONFIRM_DEADLINE_MS
   * with a warning naming the laggards. A worker restarted meanwhile starts from the new state.
   */
  private confirmed(done: (w: WorkerSlot) => boolean, what: string): Promise<void> {
    const lagging = () => this.slots.filter((w) => w.worker && w.listening && !done(w));
    return new Promise((resolve) => {
      const check = () => {
        if (lagging().length > 0) {
          this.confirmWaiters.push(check);
          return;
        }
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = this.confirmWaiters.indexOf(check);
        if (i >= 0) this.confirmWaiters.splice(i, 1);
        this.d.log.warn({ workers: lagging().map((w) => w.index) }, `${what} not confirmed by every worker within ${CONFIRM_DEADLINE_MS} ms`);
        resolve();
      }, CONFIRM_DEADLINE_MS);
      check();
    });
  }

  /**
   * Asks a worker to close its listeners and exit once drained. A worker must close its uWS
   * sockets itself: terminating a thread with uWS handles open aborts the whole process, so
   * terminate() is only the backstop for a worker that stopped answering messages.
   */
  private stopWorker(w: WorkerSlot, drainMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const worker = w.worker;
      if (!worker) return resolve();
      const backstop = setTimeout(() => void worker.terminate(), drainMs + EXIT_BACKSTOP_AFTER_DRAIN_MS);
      worker.once('exit', () => {
        clearTimeout(backstop);
        resolve();
      });
      this.post(w, { v: 1, type: 'shutdown', drainMs });
    });
  }
}
