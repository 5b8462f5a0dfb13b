// Status lines for the answers Tether composes itself (admin API, authorization routes, the
// front door's refusals): one table, RFC 9110 reason phrases.

const REASONS: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
  404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout', 409: 'Conflict', 413: 'Content Too Large', 429: 'Too Many Requests',
  431: 'Request Header Fields Too Large', 500: 'Internal Server Error', 503: 'Service Unavailable',
  505: 'HTTP Version Not Supported', 507: 'Insufficient Storage',
};

/** `409 Conflict`; a status without a phrase here reads `NNN Error`. */
export function statusLine(status: number): string {
  return `${status} ${REASONS[status] ?? 'Error'}`;
}
