// Key files of `<name> <64 hex digits>` lines (agent keys by pool, terminal keys by user):
// `#` starts a comment, CRLF is fine, every bad line is reported at once with its number.

interface NamedKeysFormat {
  /** What the name is, for messages: 'pool', 'user id'. */
  what: string;
  name: RegExp;
  /** How a valid name looks, for messages. */
  nameHelp: string;
  /** "'x' is not a …": default `what`. */
  nameLabel?: string;
  /** The name given to a line holding only a key (none: such a line is an error). */
  bareName?: string;
}

export function parseNamedKeys(text: string, source: string, f: NamedKeysFormat): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const problems: string[] = [];
  // Split on CRLF too: a '\r' left on the line would stop the comment pattern's `.*` short of `$`.
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') return;
    const at = `${source}:${i + 1}`;
    const parts = line.split(/\s+/);
    const [name, hex] = parts.length === 1 && f.bareName !== undefined ? [f.bareName, parts[0]!] : parts;
    if (parts.length > 2 || name === undefined || !/^[0-9a-fA-F]{64}$/.test(hex ?? '')) {
      problems.push(`${at}: expected '<${f.what}> <64 hex digits>' (a 32-byte key)`);
      return;
    }
    if (name !== f.bareName && !f.name.test(name)) {
      problems.push(`${at}: '${name.slice(0, 40)}' is not a ${f.nameLabel ?? f.what} (${f.nameHelp})`);
      return;
    }
    if (keys.has(name)) {
      problems.push(`${at}: a second key for ${f.what} '${name}'`);
      return;
    }
    keys.set(name, Buffer.from(hex!, 'hex'));
  });
  if (problems.length > 0) throw new Error(`${f.what === 'pool' ? 'agent' : 'terminal'} key file ${source} is invalid:\n  ${problems.join('\n  ')}`);
  return keys;
}
