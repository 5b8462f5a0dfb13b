// Example: a terminal asks the balancer for authorization, connects to the server it was
// granted, sends one line and prints the server's echo (src/authz/terminal.ts). After
// `npm run build`:
//
//   node dist/authz/examples/terminal.js --balancer http://balancer:8080 --user kiosk-7 \
//     --key-file terminals.keys --ca ca.pem [--servername app.internal] [--message hello]
//
// The key file is the balancer's terminal key file format (`<user> <64 hex>` lines); only the
// --user line is used.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { parseTerminalKeys } from '../protocol.js';
import { AuthzError, authorize, connect } from '../terminal.js';

const { values } = parseArgs({
  options: {
    balancer: { type: 'string' },
    user: { type: 'string' },
    'key-file': { type: 'string' },
    ca: { type: 'string' },
    servername: { type: 'string' },
    message: { type: 'string', default: 'hello' },
  },
});
const { balancer, user, ca, servername, message } = values;
const keyFile = values['key-file'];
if (balancer === undefined || user === undefined || keyFile === undefined) {
  console.error('usage: terminal.js --balancer URL --user ID --key-file FILE [--ca FILE] [--servername NAME] [--message TEXT]');
  process.exit(2);
}
const key = parseTerminalKeys(readFileSync(keyFile, 'utf8'), keyFile).get(user);
if (key === undefined) throw new Error(`${keyFile} has no key for user '${user}'`);

try {
  const grant = await authorize({ balancer, userId: user, key });
  console.log(`granted ${grant.server.pool}/${grant.server.id} at ${grant.server.address}:${grant.server.port}`);

  const socket = await connect({ grant, tls: { ...(ca === undefined ? {} : { ca: readFileSync(ca) }), ...(servername === undefined ? {} : { servername }) } });
  socket.setTimeout(5_000, () => socket.destroy(new Error('no echo within 5 s')));
  socket.write(`${message}\n`);
  for await (const line of createInterface({ input: socket })) {
    console.log(`echo: ${line}`);
    break;
  }
  socket.end();
} catch (err) {
  if (!(err instanceof AuthzError)) throw err;
  console.error(`not authorized: ${err.code}${err.status === undefined ? '' : ` (HTTP ${err.status})`}: ${err.message}`);
  process.exit(1);
}
