// A real HTTP client (node:http) with a deadline on every request and an optional source
// address, so tests can roam a client across 127.0.0.2-127.0.0.254.
import http from 'node:http';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

export interface RequestOptions {
  port: number;
  path?: string;
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: string | Buffer;
  localAddress?: string;
  agent?: http.Agent | false;
  timeoutMs?: number;
}

export function request(o: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: o.port,
        path: o.path ?? '/',
        method: o.method ?? 'GET',
        headers: o.headers,
        localAddress: o.localAddress,
        agent: o.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.setTimeout(o.timeoutMs ?? 10_000, () => req.destroy(new Error(`request ${o.method ?? 'GET'} ${o.path ?? '/'} timed out`)));
    req.on('error', reject);
    req.end(o.body);
  });
}

/** `NAME=value` of the Set-Cookie for `name`, or undefined. */
export function setCookieValue(reply: Reply, name: string): string | undefined {
  for (const sc of reply.headers['set-cookie'] ?? []) {
    const eq = sc.indexOf('=');
    if (sc.slice(0, eq) === name) return sc.slice(eq + 1, sc.indexOf(';') < 0 ? undefined : sc.indexOf(';'));
  }
  return undefined;
}
