// `npm ci` / `npm install` hook: builds the addon with node-gyp. A failed build only warns, because every kernel
// has a TypeScript fallback (src/kernels/reference.ts).
import { spawnSync } from 'node:child_process';

const gyp = process.env.npm_config_node_gyp;
const result = gyp
  ? spawnSync(process.execPath, [gyp, 'rebuild'], { stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild'], { stdio: 'inherit', shell: true });
if (result.status !== 0) {
  console.warn(
    'deltarec: building the native kernels failed (see above); deltarec will run on the slower TypeScript kernels.',
  );
}
