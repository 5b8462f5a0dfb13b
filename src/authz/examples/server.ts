// Example: a TLS echo server that serves only terminals the balancer authorized. It announces
// itself to the balancer's pool, takes the grants pushed to it and checks each connection's code
// (src/authz/server.ts). After `npm run build`:
//
//   node dist/authz/examples/server.js --control ws://balancer:9090/control --pool kiosk --id s1 \
//     --port 7000 --key-file agent.keys --tls-cert server.pem --tls-key server.key
//
// Every flag may come from the environment instead: --tls-cert from TETHER_TLS_CERT, and so on.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { parseAgentKeys } from '../../control/frames.js';
import { startVerifier, type VerifierEvent } from '../server.js';

const FLAGS = ['control', 'pool', 'id', 'port', 'key-file', 'tls-cert', 'tls-key', 'address'] as const;
const { values } = parseArgs({ options: Object.fromEntries(FLAGS.map((f) => [f, { type: 'string' }])) });

function flag(name: (typeof FLAGS)[number], required = true): string | undefined {
  const value = (values[name] as string | undefined) ?? process.env[`TETHER_${name.toUpperCase().replace('-', '_')}`];
  if (value === undefined && required) {
    console.error(`--${name} is required (flags: ${FLAGS.map((f) => `--${f}`).join(' ')})`);
    process.exit(2);
  }
  return value;
}

const pool = flag('pool')!;
const port = Number(flag('port'));
const keyFile = flag('key-file')!;
// The pool's agent key: its own line in the file, else a bare key.
const keys = parseAgentKeys(readFileSync(keyFile, 'utf8'), keyFile);
const key = keys.get(pool) ?? keys.get('*');
if (key === undefined) throw new Error(`${keyFile} has no key for pool '${pool}'`);
const address = flag('address', false);

function log(e: VerifierEvent): void {
  if (e.type === 'agent') console.log(`control: ${e.event.type}${'error' in e.event ? ` ${e.event.error.message}` : ''}`);
  else if (e.type === 'connection_error') console.log(`connection from ${e.remoteAddress || 'a client'}: ${e.error.message}`);
  else console.log(JSON.stringify(e));
}

const verifier = startVerifier({ control: flag('control')!, pool, id: flag('id')!, key, port, ...(address === undefined ? {} : { address }), onEvent: log });

const tlsOptions = { cert: readFileSync(flag('tls-cert')!), key: readFileSync(flag('tls-key')!) };
const server = verifier.tlsServer(tlsOptions, (socket, grant) => {
  console.log(`${grant.user} authorized from ${grant.terminal}`);
  socket.on('error', (err) => console.log(`${grant.user}: ${err.message}`));
  socket.pipe(socket); // the application protocol: echo
});
server.listen(port, () => console.log(`listening on :${port}`));

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close();
    void verifier.close().then(() => process.exit(0));
  });
}
