// The TLS side of an HTTPS listener. Each accepted socket's ClientHello is read and parsed first
// (the native parser the passthrough uses), and the certificate is chosen from its SNI before
// the handshake starts: the exact name, then the wildcard, then the first certificate, or, under
// --strict-sni, a refusal with the `unrecognized_name` alert. Only then does node:tls (OpenSSL
// in C++) run the handshake, on the chosen context alone. (Choosing in node:tls's SNICallback
// instead keeps the base context's certificate and chain beside the chosen one, so a client
// could be served the default certificate or its intermediates: see test/unit/certificates.)
//
// Every handshake is held to one deadline from accept to `secure`; the front door's sweep
// enforces it. Session tickets are sealed with keys every worker shares, so a session resumes
// on whichever worker the reconnect lands. The finished connection goes back to the front door.
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { CertificateEntry, CertificateStore } from '../../tls/certificates.js';
import type { ClientHelloStatus } from '../../native/index.js';
import { clock } from '../clock.js';
import type { TlsOutcome } from '../../shared-memory/counters.js';
import type { ListenerTerms } from './connection.js';
import { alert, ALERT_DECODE_ERROR, ALERT_UNRECOGNIZED_NAME } from '../passthrough/tls-alerts.js';

/** How a handshake ended, for tether_tls_handshakes_total{listener,outcome}. */
export type HandshakeOutcome = TlsOutcome;

export interface TlsListenerOptions {
  certificates: CertificateStore;
  /** The ClientHello parser (native): status, SNI. */
  parse: (bytes: Uint8Array, maxBytes: number) => { status: ClientHelloStatus; sni?: string | null };
  /** 48 bytes, the same in every worker: session tickets one worker issues, another accepts. */
  ticketKeys: Buffer;
  handshakeTimeoutMs: number;
  /** A handshake completed: the connection is the front door's now, under its listener's terms. */
  onSecure(socket: TLSSocket, terms: ListenerTerms): void;
  /** `listener`: the index in config.listen of the listener that accepted the connection. */
  onHandshake(outcome: HandshakeOutcome, listener: number): void;
}

/** ClientHellos past this are refused (post-quantum key shares make them ~2 KiB; 16 KiB is one record). */
const MAX_HELLO_BYTES = 16 * 1024;
const IGNORE = (): void => {};
/** HTTP/1.1 only: a client offering h2 falls back to it (README "HTTPS"). */
const ALPN = ['http/1.1'];

export class TlsListener {
  private certificates!: CertificateStore;
  /** Handshakes under way (accept → secure), swept for their deadline. */
  private readonly pending = new Set<Handshake>();

  constructor(readonly o: TlsListenerOptions) {
    this.setCertificates(o.certificates);
  }

  /** A reload's certificates: used from the next ClientHello on; connections already open keep theirs. */
  setCertificates(certificates: CertificateStore): void {
    // Every context seals tickets with the shared keys (a reload's new contexts too).
    for (const e of certificates.entries) ticketKeysOf(e).setTicketKeys(this.o.ticketKeys);
    this.certificates = certificates;
  }

  /** A TCP socket the listener with `terms` accepted: its handshake starts now, under the deadline. */
  accept(socket: net.Socket, terms: ListenerTerms): void {
    const h = new Handshake(this, socket, clock.now + this.o.handshakeTimeoutMs, terms);
    this.pending.add(h);
  }

  /** @internal: the certificate for `sni`, or null (strict SNI, unknown name). */
  select(sni: string | null): CertificateEntry | null {
    return this.certificates.select(sni);
  }

  /** @internal */
  settle(h: Handshake, outcome: HandshakeOutcome): void {
    if (!this.pending.delete(h)) return;
    this.o.onHandshake(outcome, h.terms.index);
  }

  /** Handshakes past their deadline are cut and counted. */
  sweep(now: number): void {
    for (const h of this.pending) if (h.deadline <= now) h.fail('timeout');
  }

  /** Every handshake under way, cut (shutdown). */
  closeAll(): void {
    for (const h of this.pending) h.fail('failed');
  }
}

/** One connection from accept to the end of its handshake. */
class Handshake {
  private seen: Buffer | null = null;
  private tlsSocket: TLSSocket | null = null;
  private done = false;
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  /** The socket failed or closed before the handshake finished. */
  private readonly onGone = (): void => this.fail('failed');

  constructor(
    private readonly listener: TlsListener,
    private readonly socket: net.Socket,
    readonly deadline: number,
    /** The terms of the listener that accepted it (its index counts the outcome). */
    readonly terms: ListenerTerms,
  ) {
    socket.on('data', this.onData);
    socket.on('error', this.onGone);
    socket.on('close', this.onGone);
  }

  /** Bytes before the ClientHello is whole: wait, refuse, or start the handshake on the chosen certificate. */
  private read(chunk: Buffer): void {
    const seen = (this.seen = this.seen === null ? chunk : Buffer.concat([this.seen, chunk]));
    const hello = this.listener.o.parse(seen, MAX_HELLO_BYTES);
    switch (hello.status) {
      case 'incomplete':
        if (seen.length <= MAX_HELLO_BYTES) return;
        this.fail('failed');
        return;
      case 'not_tls':
        // A plain-HTTP request on the TLS port (or anything else): closed at once, unanswered.
        this.fail(/^[A-Z]{3,7} /.test(seen.toString('latin1', 0, Math.min(8, seen.length))) ? 'plain_http' : 'failed');
        return;
      case 'malformed':
      case 'too_large':
        this.refuse(ALERT_DECODE_ERROR, 'failed');
        return;
      case 'ok':
        break;
    }
    const entry = this.listener.select(hello.sni ?? null);
    if (entry === null) {
      this.refuse(ALERT_UNRECOGNIZED_NAME, 'unknown_name');
      return;
    }
    const socket = this.socket;
    socket.off('data', this.onData);
    socket.pause();
    // node:tls reads what the socket already holds before the handle: the ClientHello goes back.
    socket.unshift(seen);
    this.seen = null;
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: entry.secureContext, ALPNProtocols: ALPN });
    this.tlsSocket = secure;
    secure.on('error', this.onGone);
    secure.once('secure', () => {
      if (this.done) return;
      this.done = true;
      // Only our own listeners go: node:tls keeps its own on both sockets. The front door's
      // transport listens from here on.
      secure.off('error', this.onGone);
      this.socket.off('error', this.onGone);
      this.socket.off('close', this.onGone);
      // The TCP socket's handle is node:tls's now; an error there surfaces on `secure`, which
      // the transport watches. Never an unhandled 'error' on the parent.
      this.socket.on('error', IGNORE);
      this.listener.settle(this, 'ok');
      this.listener.o.onSecure(secure, this.terms);
    });
  }

  /** A fatal alert the client can show, then the end of the connection. */
  private refuse(description: number, outcome: HandshakeOutcome): void {
    if (this.done) return;
    this.socket.off('data', this.onData);
    this.socket.end(alert(description));
    this.finish(outcome, false);
  }

  fail(outcome: HandshakeOutcome): void {
    this.finish(outcome, true);
  }

  private finish(outcome: HandshakeOutcome, destroy: boolean): void {
    if (this.done) return;
    this.done = true;
    this.listener.settle(this, outcome);
    if (destroy) {
      this.tlsSocket?.destroy();
      this.socket.destroy();
    } else {
      // The alert goes out; a client that never reads it is cut by the socket's own timeout.
      this.socket.setTimeout(1_000, () => this.socket.destroy());
    }
  }
}

/** node:tls's native context: where session-ticket keys are set (as tls.Server#setTicketKeys does). */
function ticketKeysOf(e: CertificateEntry): { setTicketKeys(keys: Buffer): void } {
  return (e.secureContext as unknown as { context: { setTicketKeys(keys: Buffer): void } }).context;
}
