// SNI routing for the passthrough listener (DESIGN.md "TLS passthrough path"): exact name,
// then the longest matching wildcard, then the default route; within each tier the first route
// (in configuration order) whose ALPN condition the client meets. Compiled once per config.
import type { SniRouteConfig } from '../../config/schema.js';

export interface SniRouter {
  /** Index into the configured routes, or -1 when nothing matches. */
  route(sni: string | null, alpn: readonly string[]): number;
}

interface Candidate {
  index: number;
  alpn: readonly string[] | undefined;
}

/**
 * `*.example.com` matches any name ending in `.example.com` (one label or more before it, like
 * HAProxy's `req.ssl_sni -m end .example.com`), never `example.com` itself. `*` matches every
 * name and a ClientHello without SNI. Names compare case-insensitively.
 */
export function compileSniRoutes(routes: readonly SniRouteConfig[]): SniRouter {
  const exact = new Map<string, Candidate[]>();
  const wildcards = new Map<string, Candidate[]>(); // suffix ".example.com" → candidates
  const defaults: Candidate[] = [];
  routes.forEach((r, index) => {
    const c: Candidate = { index, alpn: r.alpn };
    const name = r.sni.toLowerCase();
    if (name === '*') defaults.push(c);
    else if (name.startsWith('*.')) push(wildcards, name.slice(1), c);
    else push(exact, name, c);
  });
  // Longest suffix first, so the most specific wildcard wins.
  const suffixes = [...wildcards.keys()].sort((a, b) => b.length - a.length);

  return {
    route(sni, alpn) {
      if (sni) {
        const name = sni.toLowerCase();
        const e = exact.get(name);
        const hit = e ? firstAllowed(e, alpn) : -1;
        if (hit >= 0) return hit;
        for (const suffix of suffixes) {
          if (name.length > suffix.length && name.endsWith(suffix)) {
            const w = firstAllowed(wildcards.get(suffix)!, alpn);
            if (w >= 0) return w;
          }
        }
      }
      return firstAllowed(defaults, alpn);
    },
  };
}

function push(map: Map<string, Candidate[]>, key: string, c: Candidate): void {
  const list = map.get(key);
  if (list) list.push(c);
  else map.set(key, [c]);
}

function firstAllowed(candidates: readonly Candidate[], alpn: readonly string[]): number {
  for (const c of candidates) {
    if (!c.alpn || c.alpn.some((p) => alpn.includes(p))) return c.index;
  }
  return -1;
}
