// One table of stable error codes (TETHER_ERR_*). Messages may change; codes may not.
// Every error Tether raises to a user carries one of these codes and, where it wraps another, `cause`.

export const ErrorCodes = {
  TETHER_ERR_CONFIG: 'invalid configuration',
  TETHER_ERR_CONFIG_FILE: 'configuration file unreadable or unparsable',
  TETHER_ERR_KEY_FILE: 'route-token key file invalid',
  TETHER_ERR_NATIVE_LOAD: 'native addon could not be loaded',
  TETHER_ERR_INVALID_ARG_TYPE: 'a native function received an argument of the wrong type',
  TETHER_ERR_INVALID_ARG_VALUE: 'a native function received an out-of-range argument',
  TETHER_ERR_NO_SEAL_KEY: 'the key ring has no sealing key',
  TETHER_ERR_SEAL_KEY_RETIRED: 'the sealing key has retired',
  TETHER_ERR_CRYPTO: 'OpenSSL reported an error',
  TETHER_ERR_UWS_LOAD: 'uWebSockets.js binary could not be loaded',
  TETHER_ERR_LISTEN: 'could not listen on an address',
  TETHER_ERR_WORKER: 'worker thread failed',
  // Data-plane failures (src/data-plane/failure.ts has their source, and the status a client sees).
  TETHER_ERR_UPSTREAM_CONNECT: 'backend connection failed',
  TETHER_ERR_UPSTREAM_TIMEOUT: 'backend timed out',
  TETHER_ERR_UPSTREAM_PROTOCOL: 'backend sent an invalid response',
  TETHER_ERR_NO_BACKEND: 'no healthy backend',
  TETHER_ERR_BAD_REQUEST: 'request refused: framing or Host that cannot be trusted',
  TETHER_ERR_SESSION_REFUSED: 'session refused: revoked, or presented from another terminal',
  TETHER_ERR_CLIENT_TIMEOUT: 'client stopped reading',
  TETHER_ERR_CLIENT_ABORTED: 'client went away',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class TetherError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TetherError';
    this.code = code;
  }
}
