// One failure model for the data plane, HTTP and passthrough alike (Pingora's error type):
// every failure is a TetherError with a stable TETHER_ERR_* code, where it came from
// (`downstream`: the client; `upstream`: a backend; `internal`: Tether itself) and whether the
// request may be retried on another backend. FAILURES is the one table of what a client sees.
import { TetherError, type ErrorCode } from '../errors.js';

export type FailureSource = 'downstream' | 'upstream' | 'internal';

export type FailureCode = Extract<
  ErrorCode,
  | 'TETHER_ERR_BAD_REQUEST'
  | 'TETHER_ERR_SESSION_REFUSED'
  | 'TETHER_ERR_NO_BACKEND'
  | 'TETHER_ERR_UPSTREAM_CONNECT'
  | 'TETHER_ERR_UPSTREAM_TIMEOUT'
  | 'TETHER_ERR_UPSTREAM_PROTOCOL'
  | 'TETHER_ERR_CLIENT_TIMEOUT'
  | 'TETHER_ERR_CLIENT_ABORTED'
>;

/**
 * Per code: its source, and the HTTP status a client gets when the response has not started
 * (after that, the connection is cut and the client sees a truncated response). The body is
 * `tether: <message>`, except a refused session's, which is JSON (README "Session binding").
 */
export const FAILURES: Readonly<Record<FailureCode, { source: FailureSource; status: number }>> = {
  TETHER_ERR_BAD_REQUEST: { source: 'downstream', status: 400 },
  TETHER_ERR_SESSION_REFUSED: { source: 'downstream', status: 403 },
  TETHER_ERR_CLIENT_TIMEOUT: { source: 'downstream', status: 504 },
  TETHER_ERR_CLIENT_ABORTED: { source: 'downstream', status: 499 },
  TETHER_ERR_NO_BACKEND: { source: 'internal', status: 503 },
  TETHER_ERR_UPSTREAM_CONNECT: { source: 'upstream', status: 502 },
  TETHER_ERR_UPSTREAM_TIMEOUT: { source: 'upstream', status: 504 },
  TETHER_ERR_UPSTREAM_PROTOCOL: { source: 'upstream', status: 502 },
};

export class Failure extends TetherError {
  declare readonly code: FailureCode;
  readonly source: FailureSource;
  /** May the request go to another backend (nothing of it reached this one, or it is safe to replay)? */
  readonly retryable: boolean;
  /** What a client gets while no response byte has gone out. */
  readonly status: number;

  constructor(code: FailureCode, message: string, retryable = false, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'Failure';
    const kind = FAILURES[code];
    this.source = kind.source;
    this.status = kind.status;
    this.retryable = retryable;
  }
}
