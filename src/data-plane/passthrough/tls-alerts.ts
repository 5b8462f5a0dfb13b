// The TLS alerts a passthrough connection refuses a client with, before any backend sees it:
// fatal, with the reason a client can show (RFC 8446 §6). One alert is a whole record:
//
//   0x15        content type: alert
//   0x03 0x03   legacy record version (TLS 1.2, as TLS 1.3 records say)
//   0x00 0x02   length
//   0x02        level: fatal
//   description one of the codes below
/** No route for the name the client asked for (SNI), nor a default route. */
export const ALERT_UNRECOGNIZED_NAME = 112;
/** The ClientHello could not be parsed. */
export const ALERT_DECODE_ERROR = 50;
/** No backend of the route's pool could be connected to. */
export const ALERT_INTERNAL_ERROR = 80;

/** A fatal alert record carrying `description`. */
export function alert(description: number): Buffer {
  return Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]);
}
