// Loads uWebSockets.js's native binary for this platform directly. The npm package's entry
// point silently falls back to a slow `ws`-based emulation when the binary fails to load; a
// load balancer must fail loudly instead.
import { createRequire } from 'node:module';
import { TetherError } from '../errors.js';
import type * as UwsTypes from '@trufflesuite/uws-js-unofficial';

/**
 * The package's types omit TemplatedApp.close() (close every socket of the app, listeners
 * included), which this build has. Workers depend on it: a thread that ends with uWS sockets
 * open aborts the whole process.
 */
type UwsApp = UwsTypes.TemplatedApp & { close(): void };
type Uws = Omit<typeof UwsTypes, 'App'> & { App(options?: UwsTypes.AppOptions): UwsApp };

const require = createRequire(import.meta.url);

export function loadUws(): Uws {
  const file = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  let path: string;
  try {
    path = require.resolve(`@trufflesuite/uws-js-unofficial/binaries/${file}`);
  } catch (cause) {
    throw new TetherError(
      'TETHER_ERR_UWS_LOAD',
      `uWebSockets.js has no binary ${file} for ${process.platform}/${process.arch} on Node ABI ${process.versions.modules}` +
        ' (supported: Node 18/20 on linux x64/arm64, darwin, win32). Run `npm install` and use Node 20.',
      { cause },
    );
  }
  let uws: Uws;
  try {
    uws = require(path) as Uws;
  } catch (cause) {
    throw new TetherError(
      'TETHER_ERR_UWS_LOAD',
      `uWebSockets.js binary ${path} failed to load: ${(cause as Error).message} (it needs glibc ≥ 2.31 and Node 20)`,
      { cause },
    );
  }
  if (typeof (uws.App() as Partial<UwsApp>).close !== 'function') {
    throw new TetherError('TETHER_ERR_UWS_LOAD', `uWebSockets.js binary ${path} has no App.close(); this Tether needs 20.30.0-unofficial.0`);
  }
  return uws;
}
