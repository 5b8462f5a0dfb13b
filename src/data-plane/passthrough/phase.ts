// The phases of a passthrough connection (./connection.ts), in the order it goes through them.
// Each phase has one deadline, which the listener's sweep (./listener.ts) enforces; what
// passing it means is the connection's expire().
//
//   Hello ──► Connecting ──► Relay ──► Closed
//     │           │
//     └───────────┴──► Linger ──► Closed       (refused: a TLS alert, then FIN)
export const enum Phase {
  /** Reading the ClientHello (./client-hello.ts); deadline = hello deadline. */
  Hello,
  /** Connecting to a backend, or resolving its name (./upstream-connect.ts); deadline = connect deadline. */
  Connecting,
  /** Relaying both ways; deadline = idle deadline, pushed on by any bytes moved. */
  Relay,
  /** Refused: alert sent with FIN, waiting for the client's FIN; deadline = cut. */
  Linger,
  Closed,
}
