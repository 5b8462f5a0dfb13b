// Certificates for the TLS scenarios (passthrough, HTTPS), made at run time with the openssl CLI
// (the bench's own copy of test/helpers/tls.ts's recipe; bench never imports from test/): one
// throw-away CA, and per name an ECDSA P-256 leaf with SAN = that name, signed by it. Clients
// trust only this CA and verify the name they asked for, so a connection the balancer sent to
// the wrong backend fails its handshake (ERR_TLS_CERT_ALTNAME_INVALID) instead of passing.
//
//   makePki(dir, names) → { dir, caFile, ca: PEM string, leaf(name) → { keyFile, certFile },
//                           bundle(name) → path of one PEM: the leaf, then its key (mode 0600) }
//
// bundle() is HAProxy's `crt` file and Tether's `--cert` file: the chain (here the leaf alone:
// the CA is the root clients already hold) followed by the private key.
//
// Everything lives in `dir` (the caller removes it). Bounded: every openssl call has a deadline.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const OPENSSL_DEADLINE_MS = 30_000;
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function openssl(args, cwd) {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: OPENSSL_DEADLINE_MS });
  } catch (error) {
    const stderr = error.stderr?.toString().trim();
    throw new Error(`openssl ${args[0]} failed: ${stderr || error.message} (is the openssl CLI installed? apt-get install -y openssl)`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export function makePki(dir, names) {
  mkdirSync(dir, { recursive: true });
  for (const name of names) {
    if (!NAME.test(name)) throw new Error(`expected a lower-case DNS name for a certificate but received ${JSON.stringify(name)}`);
  }
  openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Tether bench CA'], dir);
  for (const name of names) {
    writeFileSync(
      join(dir, `${name}.ext`),
      `subjectAltName=DNS:${name}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`,
    );
    openssl(['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    openssl(
      ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`],
      dir,
    );
  }
  const caFile = join(dir, 'ca.pem');
  const leaf = (name) => {
    if (!names.includes(name)) throw new Error(`no certificate made for ${JSON.stringify(name)} (made: ${names.join(', ')})`);
    return { keyFile: join(dir, `${name}.key`), certFile: join(dir, `${name}.pem`) };
  };
  return {
    dir,
    caFile,
    ca: readFileSync(caFile, 'utf8'),
    leaf,
    bundle: (name) => {
      const { keyFile, certFile } = leaf(name);
      const path = join(dir, `${name}.bundle.pem`);
      // Tether warns about a key file others can read; so would an operator.
      writeFileSync(path, `${readFileSync(certFile, 'utf8').trimEnd()}\n${readFileSync(keyFile, 'utf8').trimEnd()}\n`, { mode: 0o600 });
      return path;
    },
  };
}
