/**
 * The source layout keeps its layers pointing down: a module may import from its own layer and from the layers below
 * it, never from a layer above. The order (lowest first) is what the code needs: data readers use util, content
 * encoders store through data, the model builds on content (projection, sparse rows for fusion), training drives the
 * model, evaluation scores a model, the API (src/api.ts) fits and evaluates, experiments are an application of the
 * API, the service runs saved models, the CLI calls everything, and the package entry points re-export it all.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

const LAYERS = [
  'util',
  'kernels',
  'data',
  'content',
  'model',
  'train',
  'eval',
  'api.ts',
  'experiment',
  'serve',
  'cli',
  'index.ts',
] as const;
/** Entries of src/ that share a layer with another one (internals.ts: the second package entry point). */
const SAME_LAYER_AS: Record<string, (typeof LAYERS)[number]> = { 'internals.ts': 'index.ts' };

const ROOT = resolve(import.meta.dirname, '..');

/** Layer index of a path relative to the repository root (src/<entry>/...), or -1 when it has none. */
function layerOf(path: string): number {
  const entry = path.split('/')[1];
  return LAYERS.indexOf((SAME_LAYER_AS[entry] ?? entry) as (typeof LAYERS)[number]);
}

/** Every `file:line imports target (layer a < layer b)` where a module imports from a higher layer. */
function upwardImports(files: Map<string, string>): string[] {
  const found: string[] = [];
  for (const [path, text] of files) {
    const from = layerOf(path);
    for (const ref of ts.preProcessFile(text, true, true).importedFiles) {
      if (!ref.fileName.startsWith('.')) continue;
      const target = relative(ROOT, resolve(ROOT, dirname(path), ref.fileName))
        .split('\\')
        .join('/')
        .replace(/\.js$/, '.ts');
      const to = layerOf(target);
      if (to < 0) found.push(`${path} imports ${target}, which is in no layer`);
      else if (to > from) {
        const line = text.slice(0, ref.pos).split('\n').length;
        found.push(`${path}:${line} imports ${target} (${LAYERS[from]} is below ${LAYERS[to]})`);
      }
    }
  }
  return found;
}

function sourceFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const path = relative(ROOT, join(entry.parentPath, entry.name)).split('\\').join('/');
    files.set(path, readFileSync(join(ROOT, path), 'utf8'));
  }
  return files;
}

test('every module of src/ belongs to a layer', () => {
  const unplaced = [...sourceFiles('src').keys()].filter((path) => layerOf(path) < 0);
  assert.deepEqual(unplaced, [], `add these to LAYERS in test/layers.test.ts: ${unplaced.join(', ')}`);
});

test('no module of src/ imports from a higher layer', () => {
  assert.deepEqual(upwardImports(sourceFiles('src')), []);
});

test('the check catches an upward import, static, type-only or dynamic', () => {
  // The layout before the experiment runner left src/eval: it imported the API, which imports src/eval.
  const oldLayout = new Map([
    ['src/api.ts', `import { evaluate } from './eval/evaluate.js';\n`],
    [
      'src/eval/experiment.ts',
      `import { kernels } from '../kernels/index.js';\nimport {\n  evaluate,\n  fit,\n} from '../api.js';\n`,
    ],
    [
      'src/model/x.ts',
      `import type { Split } from '../train/trainer.js';\nconst m = await import('../serve/a.js');\n`,
    ],
    ['src/serve/y.ts', `export { run } from '../cli/main.js';\n// import { z } from '../cli/z.js'\n`],
  ]);
  assert.deepEqual(upwardImports(oldLayout), [
    'src/eval/experiment.ts:5 imports src/api.ts (eval is below api.ts)',
    'src/model/x.ts:1 imports src/train/trainer.ts (model is below train)',
    'src/model/x.ts:2 imports src/serve/a.ts (model is below serve)',
    'src/serve/y.ts:1 imports src/cli/main.ts (serve is below cli)',
  ]);
});
