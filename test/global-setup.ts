// Integration tests run the built binary and addon: say how to build them rather than fail obscurely.
import { existsSync } from 'node:fs';

export default function setup(): void {
  for (const f of ['dist/cli.js', 'build/Release/tether_native.node']) {
    if (!existsSync(new URL(`../${f}`, import.meta.url))) {
      throw new Error(`${f} is missing: run \`npm run build\` (or \`npm test\`, which builds first)`);
    }
  }
}
