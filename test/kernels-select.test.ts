// Kernel selection: DELTAREC_NATIVE=0 forces the TypeScript kernels with one warning line; otherwise the addon is
// used when built. Each case runs in a child process because the choice is made once at import.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { loadNativeKernels } from '../src/kernels/index.js';

const indexUrl = new URL('../src/kernels/index.ts', import.meta.url).href;

function selectedIn(env: Record<string, string | undefined>): { name: string; stderr: string } {
  const script = `import(${JSON.stringify(indexUrl)}).then((m) => console.log(m.kernels.name));`;
  const result = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  assert.equal(result.status, 0, result.stderr);
  return { name: result.stdout.trim(), stderr: result.stderr };
}

test('DELTAREC_NATIVE=0 selects the TypeScript kernels with exactly one warning line', () => {
  const { name, stderr } = selectedIn({ DELTAREC_NATIVE: '0' });
  assert.equal(name, 'typescript');
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `stderr: ${stderr}`);
  assert.match(lines[0], /TypeScript kernels/);
});

test(
  'the native kernels are selected by default when the addon is built',
  {
    skip: loadNativeKernels() ? false : 'native addon not built',
  },
  () => {
    const { name, stderr } = selectedIn({ DELTAREC_NATIVE: undefined });
    assert.equal(name, 'native');
    assert.equal(stderr.trim(), '');
  },
);
