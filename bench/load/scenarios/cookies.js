// Cookie helpers shared by the scenarios: read a peer's route cookie from Set-Cookie.

/** The `name=value` pair for cookie `name` in a response's Set-Cookie headers, or null. */
export function routeCookieFrom(headers, name) {
  const setCookie = headers['set-cookie'] ?? [];
  for (const line of Array.isArray(setCookie) ? setCookie : [setCookie]) {
    const pair = line.split(';', 1)[0].trim();
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq) === name && eq < pair.length - 1) return pair;
  }
  return null;
}

/** The backend name a bench backend put in the body (`app1`), or throws. */
export function backendOf(response, backendNames, context) {
  if (response.status !== 200 || !backendNames.includes(response.body)) {
    throw new Error(`${context}: expected 200 with a backend name (${backendNames.join('|')}) but received ${response.status} ${JSON.stringify(response.body.slice(0, 200))}`);
  }
  return response.body;
}
