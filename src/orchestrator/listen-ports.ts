// Listener ports settled on the main thread before any worker binds them. Every worker binds
// the same port with SO_REUSEPORT, and uWS sets that only for an explicit port, so port 0 is
// resolved here. An explicit port is probed without SO_REUSEPORT first: the workers' reuseport
// sockets would otherwise silently share a port with another process (say, a second Tether).
import net from 'node:net';
import type { Config } from '../config/schema.js';
import { TetherError } from '../errors.js';

/**
 * `config` with every HTTP and passthrough listener's port explicit (0: a free port chosen now)
 * and checked free; a port held by another process is TETHER_ERR_LISTEN.
 */
export async function resolveListenPorts(config: Config): Promise<Config> {
  return {
    ...config,
    listen: await Promise.all(config.listen.map(async (l) => ({ ...l, port: await exclusivePort(l.host, l.port) }))),
    // The passthrough sockets are SO_REUSEPORT too (opened by the addon): same rule.
    passthrough: {
      ...config.passthrough,
      listen: await Promise.all(config.passthrough.listen.map(async (l) => ({ host: l.host, port: await exclusivePort(l.host, l.port) }))),
    },
  };
}

/**
 * `port` on `host` if nothing holds it right now (0: any free port), checked by binding it
 * without SO_REUSEPORT and releasing it.
 */
function exclusivePort(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new TetherError(
          'TETHER_ERR_LISTEN',
          err.code === 'EADDRINUSE'
            ? `cannot listen on ${host}:${port}: already in use by another process (another Tether?)`
            : `cannot listen on ${host}:${port}: ${err.message}`,
          { cause: err },
        ),
      ),
    );
    srv.listen({ port, host, exclusive: true }, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
