// `npm run bench:micro`: every micro benchmark, one after another (each prints its own table).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

for (const file of ['token.bench.js', 'client-hello.bench.js', 'codec.bench.js', 'front-door.bench.js', 'balancers.bench.js', 'request-path.bench.js', 'table.bench.js']) {
  console.log(`\n== ${file}`);
  const r = spawnSync(process.execPath, ['--single-threaded-gc', fileURLToPath(new URL(file, import.meta.url))], { stdio: 'inherit', timeout: 600_000 });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
