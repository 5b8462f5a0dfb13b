// What the bench's unit tests share: typed access to the bench's JS modules, and its child
// processes (a backend prints {"ready":true,"port":…} once listening) started with a deadline.

export interface Handle {
  pid: number;
  exited: Promise<{ code: number | null; signal: string | null }>;
  output(): string;
  kill(graceMs?: number): Promise<unknown>;
}

/** Imports a module of bench/ (plain JS) under the type the test declares for it. */
export const loadBench = async <T>(relative: string): Promise<T> => (await import(new URL(`../../bench/${relative}`, import.meta.url).href)) as T;

export const processes = await loadBench<{
  startProcess(name: string, command: string, args: string[], o?: { onStdoutLine?: (line: string) => void }): Handle;
  freePort(): Promise<number>;
}>('load/processes.js');

/** Starts `args` under node and waits (10 s at most) for its ready line; its port and handle. */
export async function startReadyProcess(label: string, args: string[]): Promise<{ handle: Handle; port: number }> {
  let announce: (port: number) => void = () => {};
  const listening = new Promise<number>((resolve) => {
    announce = resolve;
  });
  const handle = processes.startProcess(label, process.execPath, args, {
    onStdoutLine: (line) => {
      try {
        const message = JSON.parse(line) as { ready?: boolean; port?: number };
        if (message.ready && message.port) announce(message.port);
      } catch {
        // not our line
      }
    },
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const port = await Promise.race([
      listening,
      handle.exited.then((e) => Promise.reject(new Error(`${label} exited (${e.code ?? e.signal}): ${handle.output()}`))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${label} not listening within 10 s: ${handle.output()}`)), 10_000);
      }),
    ]);
    return { handle, port };
  } catch (err) {
    await handle.kill(2000);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
