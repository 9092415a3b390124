// `npm ci` / `npm install` hook (also `npm run install`): builds the addon with node-gyp. A failed build only warns,
// because every kernel has a TypeScript fallback (src/kernels/reference.ts).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

// npm passes its bundled node-gyp; outside npm, look for the one next to this node's npm.
const bundled = join(
  dirname(process.execPath),
  '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
);
const gyp = process.env.npm_config_node_gyp ?? (existsSync(bundled) ? bundled : null);
// Build against this node's own headers when they are installed (no download), unless npm already says where.
const prefix = join(dirname(process.execPath), '..');
const args = ['rebuild'];
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include/node/node_api.h')))
  args.push(`--nodedir=${prefix}`);
const result = gyp
  ? spawnSync(process.execPath, [gyp, ...args], { stdio: 'inherit' })
  : spawnSync('node-gyp', args, { stdio: 'inherit', shell: true });
if (result.status !== 0) {
  console.warn(
    'deltarec: building the native kernels failed (see above); deltarec will run on the slower TypeScript kernels.',
  );
}
