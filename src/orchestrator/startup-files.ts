// The files the flags name, read on the main thread before any worker starts: the admin token,
// the agent and terminal key files, whether the access log opens (the last two again on a
// reload). Every problem is a TETHER_ERR_CONFIG naming the flag and the file.
import { X509Certificate } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { parseTerminalKeys } from '../authz/protocol.js';
import { parseAgentKeys } from '../control/frames.js';
import { TetherError } from '../errors.js';

const MIN_ADMIN_TOKEN_CHARS = 16;

/** The contents of the file a flag names; an unreadable file is a TETHER_ERR_CONFIG naming both. */
function readFlagFile(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new TetherError('TETHER_ERR_CONFIG', `cannot read ${flag} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The bearer token of --admin-token-file: one word of at least 16 characters (surrounding
 * whitespace ignored); anything else is refused rather than accepted as a guessable token.
 */
export function readAdminToken(path: string): string {
  const text = readFlagFile(path, '--admin-token-file').trim();
  if (text.length < MIN_ADMIN_TOKEN_CHARS || /\s/.test(text)) {
    throw new TetherError('TETHER_ERR_CONFIG', `--admin-token-file ${path} must hold one token of at least ${MIN_ADMIN_TOKEN_CHARS} characters without spaces (e.g. \`openssl rand -hex 32\`)`);
  }
  return text;
}

/** Reads a key file for `flag`; any problem becomes a TETHER_ERR_CONFIG naming the file. */
function readKeys(path: string, flag: string, parse: (text: string, source: string) => Map<string, Buffer>): Map<string, Buffer> {
  const text = readFlagFile(path, flag);
  try {
    return parse(text, path);
  } catch (err) {
    throw new TetherError('TETHER_ERR_CONFIG', (err as Error).message, { cause: err });
  }
}

/** The authorization handshake's terminal keys (--terminal-keys), by user. */
export const readTerminalKeys = (path: string): Map<string, Buffer> => readKeys(path, '--terminal-keys', parseTerminalKeys);

/** The agents' keys (--agent-keys), by pool ('*': any pool). */
export const readAgentKeys = (path: string): Map<string, Buffer> => readKeys(path, '--agent-keys', parseAgentKeys);

/** Fails start-up with a clear message when the access log cannot be opened (workers open it themselves). */
export function checkAppendable(path: string): void {
  try {
    closeSync(openSync(path, 'a', 0o640));
  } catch (err) {
    throw new TetherError('TETHER_ERR_CONFIG', `cannot open --access-log ${path} for appending: ${(err as Error).message}`, { cause: err });
  }
}

/** --backend-ca: readable, and every PEM block in it a certificate (at least one). */
export function checkBackendCa(path: string): void {
  const text = readFlagFile(path, '--backend-ca');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new TetherError('TETHER_ERR_CONFIG', `--backend-ca ${path}: no PEM certificate in the file`);
  for (const [i, pem] of blocks.entries()) {
    try {
      new X509Certificate(pem);
    } catch (err) {
      throw new TetherError('TETHER_ERR_CONFIG', `--backend-ca ${path}: certificate ${i + 1} cannot be parsed: ${(err as Error).message}`, { cause: err });
    }
  }
}
