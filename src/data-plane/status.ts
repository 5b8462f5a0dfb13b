// Status lines, one table of RFC 9110 reason phrases: for the answers Tether composes itself
// (admin API, authorization routes, the front door's refusals, the HTTP path's errors) and for
// the backends' responses it relays.

const REASONS: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 206: 'Partial Content',
  301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout',
  409: 'Conflict', 413: 'Content Too Large', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large',
  500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported', 507: 'Insufficient Storage',
};

/** `NNN Reason` for every status of the table, built once: the relay's common case costs a lookup. */
const LINES: Record<number, string> = Object.fromEntries(Object.entries(REASONS).map(([code, text]) => [code, `${code} ${text}`]));

/** `409 Conflict`, for an answer Tether composes; a status without a phrase here reads `NNN Error`. */
export function statusLine(status: number): string {
  return LINES[status] ?? `${status} Error`;
}

/**
 * A backend's status line as relayed: its own reason phrase (RFC 9112 lets it say anything, or
 * nothing), the table's when it sent none.
 */
export function relayedStatusLine(status: number, reason: string): string {
  return reason === REASONS[status] ? LINES[status]! : `${status} ${reason || REASONS[status] || ''}`;
}
