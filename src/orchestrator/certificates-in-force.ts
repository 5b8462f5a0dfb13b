// The HTTPS certificates as the main thread knows them: loaded (and checked) at start and on
// every reload, described for /api/v1/certificates and the dashboard, measured for
// tether_certificate_expiry_seconds, and watched: a certificate within 14 days of its expiry
// (or past it) is logged as a warning at start, on reload, and once a day after.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { loadCertificates, type CertificateDescription, type CertificateStore } from '../tls/certificates.js';

/** How far ahead an expiry is warned about. */
export const EXPIRY_WARNING_SEC = 14 * 86_400;
const WATCH_MS = 86_400_000;

export class CertificatesInForce {
  private store: CertificateStore | null = null;
  private readonly watch: NodeJS.Timeout;

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.watch = setInterval(() => this.warnOfExpiry(), WATCH_MS);
    this.watch.unref();
  }

  /** Reads and checks the certificates `config` names; throws naming every file and problem. Load warnings are logged. */
  check(config: Config): CertificateStore | null {
    if (config.tls.certs.length === 0) return null;
    return loadCertificates(config.tls.certs, {
      strictSni: config.tls.strictSni,
      ciphers: config.tls.ciphers ?? undefined,
      warn: (msg, fields) => this.log.warn({ event: 'certificate_warning', ...fields }, msg),
    });
  }

  /** The certificates in force from now on (start, or a reload that checked them). */
  use(store: CertificateStore | null): void {
    this.store = store;
    this.warnOfExpiry();
  }

  describe(): CertificateDescription[] {
    return this.store?.describe(this.now()) ?? [];
  }

  /** Seconds until each name's certificate expires (negative once expired): the certificate that serves the name. */
  expirySeconds(): { name: string; seconds: number }[] {
    const seen = new Set<string>();
    const out: { name: string; seconds: number }[] = [];
    for (const d of this.describe()) {
      for (const name of d.names) {
        if (seen.has(name) || (this.store !== null && !name.startsWith('*') && this.store.select(name)?.file !== d.file)) continue;
        seen.add(name);
        out.push({ name, seconds: d.expiresInSeconds });
      }
    }
    return out;
  }

  private warnOfExpiry(): void {
    for (const d of this.describe()) {
      if (d.expiresInSeconds > EXPIRY_WARNING_SEC) continue;
      const days = Math.floor(d.expiresInSeconds / 86_400);
      const when = d.expiresInSeconds < 0 ? `expired ${-days} day(s) ago` : `expires in ${days} day(s)`;
      this.log.warn({ event: 'certificate_expiring', file: d.file, names: d.names, notAfter: d.notAfter, expiresInSeconds: d.expiresInSeconds }, `certificate ${d.file} (${d.names.join(', ')}) ${when}: renew it and reload (SIGHUP)`);
    }
  }

  close(): void {
    clearInterval(this.watch);
  }
}
