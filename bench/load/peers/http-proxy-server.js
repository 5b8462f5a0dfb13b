// A sticky reverse proxy on node-http-proxy, as a typical Node deployment would write it.
// Run: node bench/load/peers/http-proxy-server.js PORT WORKERS app1=127.0.0.1:B1 app2=127.0.0.1:B2
//
// Node's HTTP stack is single-threaded, so to give it the same cores as the others the
// primary forks WORKERS processes with node:cluster (the primary accepts and hands
// connections out round robin; it does not proxy). Each worker: keep-alive agent to the
// backends, round robin for clients without a valid SRV cookie, and Set-Cookie
// `SRV=<backend>` on those responses (as HAProxy's `insert indirect`). The primary prints
// one JSON line {"ready":true} once every worker listens.

import cluster from 'node:cluster';
import http from 'node:http';
import httpProxy from 'http-proxy';

const [portArg, workersArg, ...backendArgs] = process.argv.slice(2);
const port = Number(portArg);
const workers = Number(workersArg);
const backends = backendArgs.map((arg) => {
  const match = /^([\w-]+)=([\d.]+):(\d+)$/.exec(arg);
  if (!match) throw new Error(`expected NAME=HOST:PORT for a backend but received ${JSON.stringify(arg)}`);
  return { name: match[1], target: `http://${match[2]}:${match[3]}` };
});
if (!Number.isInteger(port) || !Number.isInteger(workers) || workers < 1 || backends.length === 0) {
  process.stderr.write('usage: http-proxy-server.js PORT WORKERS NAME=HOST:PORT...\n');
  process.exit(2);
}
const COOKIE = 'SRV';

if (cluster.isPrimary) {
  let listening = 0;
  cluster.on('listening', () => {
    listening += 1;
    if (listening === workers) process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  });
  cluster.on('exit', (worker, code, signal) => {
    process.stderr.write(`http-proxy worker ${worker.process.pid} exited (${code ?? signal})\n`);
    process.exit(1); // a bench with a dead worker is not a fair run: fail loudly
  });
  for (let i = 0; i < workers; i += 1) cluster.fork();
} else {
  const byName = new Map(backends.map((b) => [b.name, b]));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 256 });
  const proxy = httpProxy.createProxyServer({ agent, xfwd: true });
  const cookiePattern = new RegExp(`(?:^|;\\s*)${COOKIE}=([^;]*)`);
  let next = 0;

  proxy.on('proxyRes', (proxyRes, req) => {
    if (!req.routeCookie) return;
    const existing = proxyRes.headers['set-cookie'] ?? [];
    proxyRes.headers['set-cookie'] = [...existing, req.routeCookie];
    proxyRes.headers['cache-control'] = 'private';
  });
  proxy.on('error', (_error, _req, res) => {
    if (res && 'writeHead' in res && !res.headersSent) res.writeHead(502);
    res?.end();
  });

  // Node closes idle keep-alive client connections after 5 s by default; 60 s is what the
  // nginx peer keeps them (HAProxy: 30 s), so many-idle's idle connections outlive the run
  // here too. Connections carrying load never sit idle that long: no effect elsewhere.
  const server = http.createServer((req, res) => {
    const pinned = cookiePattern.exec(req.headers.cookie ?? '');
    let backend = pinned ? byName.get(pinned[1]) : undefined;
    if (!backend) {
      backend = backends[next % backends.length];
      next += 1;
      req.routeCookie = `${COOKIE}=${backend.name}; Path=/`;
    }
    proxy.web(req, res, { target: backend.target });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1');
}
