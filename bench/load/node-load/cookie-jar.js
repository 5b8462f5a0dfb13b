// A cookie jar for one bench client talking to one site: what a browser would send back, minus
// what does not matter on a single loopback host (Domain, Path, Secure are ignored). A
// Set-Cookie with Max-Age ≤ 0 or an Expires in the past deletes the cookie, as in a browser.
// Bounded: at most MAX_COOKIES cookies of at most MAX_VALUE_BYTES each; more are dropped.

const MAX_COOKIES = 50;
const MAX_VALUE_BYTES = 4096;

export class CookieJar {
  #cookies = new Map();

  /** Applies Set-Cookie lines; returns the names set (not deleted) by them. */
  store(setCookieLines) {
    const set = [];
    for (const line of setCookieLines ?? []) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (name === '' || value.length > MAX_VALUE_BYTES) continue;
      if (isExpired(attributes)) {
        this.#cookies.delete(name);
        continue;
      }
      if (!this.#cookies.has(name) && this.#cookies.size >= MAX_COOKIES) continue;
      this.#cookies.set(name, value);
      set.push(name);
    }
    return set;
  }

  /** The Cookie header value to send ('' when the jar is empty). */
  header() {
    let out = '';
    for (const [name, value] of this.#cookies) out += `${out ? '; ' : ''}${name}=${value}`;
    return out;
  }

  get(name) {
    return this.#cookies.get(name) ?? null;
  }

  get size() {
    return this.#cookies.size;
  }
}

/** Max-Age wins over Expires (RFC 6265 §5.3). */
function isExpired(attributes) {
  let expired = false;
  for (const attribute of attributes) {
    const eq = attribute.indexOf('=');
    if (eq < 0) continue;
    const key = attribute.slice(0, eq).trim().toLowerCase();
    const value = attribute.slice(eq + 1).trim();
    if (key === 'max-age' && /^-?\d+$/.test(value)) return Number(value) <= 0;
    if (key === 'expires') {
      const at = Date.parse(value);
      if (Number.isFinite(at)) expired = at <= Date.now();
    }
  }
  return expired;
}
