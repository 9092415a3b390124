import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseExperimentConfig, runExperiment } from '../src/experiment/experiment.js';
import { resultsMarkdown, type RunRecord } from '../src/experiment/report.js';
import { barChart, lineChart } from '../src/experiment/svg.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-experiment-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const base = {
  name: 'tiny',
  data: { synthetic: { users: 250, items: 120, topics: 5, seed: 5 } },
  content: { fields: ['title', 'description'], dim: 24 },
  model: { d: 16, maxLength: 12, epochs: 2, patience: 2 },
  seeds: [0, 1],
  models: ['knn', 'content-delta'],
};
const quiet = { baseDir: dir, log: () => {} };

test('config: defaults, named model entries with overrides, sweeps, and clear errors', () => {
  const c = parseExperimentConfig({ data: { synthetic: {} } }, 'c.json');
  assert.deepEqual(c.seeds, [0, 1, 2, 3, 4]);
  assert.deepEqual(
    c.models.map((m) => m.name),
    ['knn', 'sasrec', 'content-init', 'content-delta'],
  );
  const s = parseExperimentConfig(
    {
      data: { synthetic: {} },
      models: ['content-init', { name: 'wide', strategy: 'content-delta', d: 32 }],
      sweep: { base: 'content-delta', param: 'deltaMax', values: [0.1, 0.3], unbounded: 'content-init' },
    },
    'c.json',
  );
  assert.deepEqual(
    s.models.map((m) => [m.name, m.strategy, m.overrides]),
    [
      ['content-init', 'content-init', {}],
      ['wide', 'content-delta', { d: 32 }],
      ['content-delta-deltaMax0.1', 'content-delta', { deltaMax: 0.1 }],
      ['content-delta-deltaMax0.3', 'content-delta', { deltaMax: 0.3 }],
    ],
  );
  assert.throws(
    () => parseExperimentConfig({ data: {}, models: ['bert'] }, 'c.json'),
    /c\.json: models\[0\]: strategy 'bert'/,
  );
  assert.throws(
    () => parseExperimentConfig({ data: {}, model: { dd: 1 } }, 'c.json'),
    /unknown setting 'dd'/,
  );
  assert.throws(() => parseExperimentConfig({ data: {}, seedz: [1] }, 'c.json'), /unknown field 'seedz'/);
  assert.throws(() => parseExperimentConfig({ data: {}, models: ['knn', 'knn'] }, 'c.json'), /used twice/);
});

test('experiment: runs stored per model and seed, results aggregated, rerun skips finished runs', async () => {
  const out = join(dir, 'exp');
  const config = parseExperimentConfig(base, 'tiny.json');
  const first = await runExperiment(config, out, quiet);
  assert.equal(first.completed, true);
  assert.equal(first.ranRuns, 4);
  for (const name of ['knn-seed0', 'knn-seed1', 'content-delta-seed0', 'content-delta-seed1']) {
    assert.ok(existsSync(join(out, 'runs', `${name}.json`)), name);
  }
  const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  assert.deepEqual(Object.keys(results), ['knn', 'content-delta']);
  for (const segment of ['cold', 'warm', 'all']) {
    for (const metric of ['ndcg@10', 'hr@10']) {
      const v = results['content-delta'][segment][metric];
      assert.ok(v.mean >= 0 && v.mean <= 1 && v.std >= 0, `${segment} ${metric}`);
    }
  }
  // KNN has no randomness: the two seeds agree exactly
  assert.equal(results.knn.all['ndcg@10'].std, 0);
  const md = readFileSync(join(out, 'results.md'), 'utf8');
  assert.match(md, /\| SASRec \+ trainable delta \| 2 \| [0-9.]+ ± [0-9.]+ \|/);
  assert.ok(existsSync(join(out, 'ndcg-by-cold-input-share.svg')));
  assert.ok(existsSync(join(out, 'ndcg-by-target-frequency.svg')));

  // Resume: nothing is rerun and the results are identical.
  const second = await runExperiment(config, out, quiet);
  assert.equal(second.ranRuns, 0);
  assert.equal(second.skippedRuns, 4);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')), results);

  // Report only: nothing runs, the same results are written.
  const report = await runExperiment(config, out, { ...quiet, reportOnly: true });
  assert.equal(report.ranRuns, 0);
  assert.deepEqual(report.results, results);
  assert.match(readFileSync(join(out, 'results.md'), 'utf8'), /content: tfidf-svd/);

  // A deleted run is the only one rerun.
  rmSync(join(out, 'runs', 'content-delta-seed1.json'));
  const third = await runExperiment(config, out, quiet);
  assert.equal(third.ranRuns, 1);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')), results);

  // A changed configuration is not silently mixed with old runs.
  const changed = parseExperimentConfig({ ...base, model: { ...base.model, d: 8 } }, 'tiny.json');
  await assert.rejects(runExperiment(changed, out, quiet), /different configuration/);
});

test('experiment: an aborted run is not stored and the experiment reports itself incomplete', async () => {
  const controller = new AbortController();
  controller.abort();
  const outcome = await runExperiment(parseExperimentConfig(base, 'tiny.json'), join(dir, 'aborted'), {
    ...quiet,
    signal: controller.signal,
  });
  assert.equal(outcome.completed, false);
  assert.equal(outcome.ranRuns, 0);
});

test('experiment: runs locked by a live process are skipped, stale locks are taken over', async () => {
  const out = join(dir, 'locks');
  const config = parseExperimentConfig({ ...base, models: ['knn'] }, 'tiny.json');
  mkdirSync(join(out, 'runs'), { recursive: true });
  writeFileSync(join(out, 'runs', 'knn-seed0.json.lock'), String(process.ppid)); // a live process
  writeFileSync(join(out, 'runs', 'knn-seed1.json.lock'), '999999999'); // no such process
  const outcome = await runExperiment(config, out, quiet);
  assert.equal(outcome.ranRuns, 1);
  assert.equal(outcome.completed, false);
  assert.ok(existsSync(join(out, 'runs', 'knn-seed1.json')));
  assert.ok(!existsSync(join(out, 'runs', 'knn-seed1.json.lock')), 'the lock is released');
  rmSync(join(out, 'runs', 'knn-seed0.json.lock'));
  const rest = await runExperiment(config, out, quiet);
  assert.equal(rest.ranRuns, 1);
  assert.equal(rest.completed, true);
});

test('experiment: a sweep writes its plot and table', async () => {
  const out = join(dir, 'sweep');
  const config = parseExperimentConfig(
    {
      ...base,
      seeds: [0],
      models: ['content-init'],
      sweep: { base: 'content-delta', param: 'deltaMax', values: [0.1, 1], unbounded: 'content-init' },
    },
    'sweep.json',
  );
  await runExperiment(config, out, quiet);
  const svg = readFileSync(join(out, 'ndcg-vs-deltaMax.svg'), 'utf8');
  assert.match(svg, /^<svg[^]*<\/svg>\n$/);
  assert.match(svg, /∞ \(content-init\)/);
  assert.match(readFileSync(join(out, 'results.md'), 'utf8'), /## deltaMax sweep/);
});

test('experiment: runs that differ only in lexicalWeight share one training per process', async () => {
  const lines: string[] = [];
  const config = parseExperimentConfig(
    {
      ...base,
      seeds: [0],
      models: [
        'content-delta',
        { name: 'content-delta-lexical', strategy: 'content-delta', lexicalWeight: 4 },
        {
          name: 'cold-aware',
          strategy: 'content-delta',
          lexicalWeight: 4,
          lexicalColdWeight: 8,
          lexicalLastWeight: 2,
        },
      ],
    },
    'lexical.json',
  );
  const outcome = await runExperiment(config, join(dir, 'lexical'), {
    baseDir: dir,
    log: (l) => lines.push(l),
  });
  assert.equal(outcome.ranRuns, 3);
  assert.equal(lines.filter((l) => l.endsWith(': fitting')).length, 1, lines.join('\n'));
  assert.ok(lines.some((l) => /content-delta-lexical seed 0: reusing the model trained/.test(l)));
  assert.ok(lines.some((l) => /cold-aware seed 0: reusing the model trained/.test(l)));
  const run = (name: string) =>
    JSON.parse(readFileSync(join(dir, 'lexical', 'runs', `${name}-seed0.json`), 'utf8'));
  const [plain, fused, coldAware] = [run('content-delta'), run('content-delta-lexical'), run('cold-aware')];
  assert.deepEqual(fused.training, plain.training, 'the same trained model');
  assert.deepEqual(coldAware.training, plain.training, 'the same trained model');
  assert.notDeepEqual(fused.metrics, plain.metrics, 'scored differently');
  assert.notDeepEqual(coldAware.metrics, fused.metrics, 'the cold-aware terms score differently');
  const bad = parseExperimentConfig(
    { ...base, seeds: [0], models: [{ name: 'x', strategy: 'content-delta', lexicalColdWeight: 1 }] },
    'bad.json',
  );
  await assert.rejects(
    runExperiment(bad, join(dir, 'bad-cold'), { baseDir: dir, log: () => {} }),
    /x: lexicalColdWeight needs a numeric lexicalWeight/,
  );
});

/** Runs `deltarec experiment ARGS` from source in a child process with one kernel thread; resolves with its exit code and output. */
function cli(args: string[]): Promise<{ code: number; output: string }> {
  const entry = new URL('../src/cli/cli.ts', import.meta.url).pathname;
  const child = spawn(process.execPath, ['--import', 'tsx', entry, 'experiment', ...args], {
    env: { ...process.env, DELTAREC_THREADS: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  return new Promise((done) => child.on('close', (code) => done({ code: code ?? 1, output })));
}

test('experiment --jobs 2: each run done once by one of two processes, results identical to one process', async (t) => {
  const configFile = join(dir, 'jobs.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      ...base,
      models: [
        'knn',
        'content-delta',
        'content-init',
        { name: 'lexical', strategy: 'content-delta', lexicalWeight: 2 },
      ],
    }),
  );
  const sequential = await cli(['--config', configFile, '--out', join(dir, 'jobs1')]);
  assert.equal(sequential.code, 0, sequential.output);
  const parallel = await cli(['--config', configFile, '--out', join(dir, 'jobs2'), '--jobs', '2']);
  assert.equal(parallel.code, 0, parallel.output);
  const fitted = (job: number) =>
    parallel.output.split('\n').filter((l) => l.startsWith(`[job ${job}]`) && l.endsWith(': fitting')).length;
  // Which job claims which run depends on process start-up; on a loaded machine one job can claim them all.
  t.diagnostic(`trainings per job: ${fitted(1)} and ${fitted(2)}`);
  assert.equal(fitted(1) + fitted(2), 6, 'three trainings x two seeds, each done once');
  // The process that trained content-delta also claimed its lexical twin and reused the model for it.
  assert.equal(parallel.output.match(/lexical seed \d: reusing the model/g)?.length, 2, parallel.output);
  const results = (name: string) => JSON.parse(readFileSync(join(dir, name, 'results.json'), 'utf8'));
  assert.deepEqual(results('jobs2'), results('jobs1'));
  const bad = await cli(['--config', configFile, '--out', join(dir, 'jobs3'), '--jobs', 'two']);
  assert.equal(bad.code, 2);
  assert.match(bad.output, /--jobs must be an integer >= 1 \(got 'two'\)/);
});

test('report and SVG writers: table cells and chart structure', () => {
  const run = (model: string, seed: number, v: number): RunRecord => ({
    model,
    strategy: model,
    seed,
    fingerprint: '',
    metrics: {
      cold: { count: 1, 'ndcg@10': v, 'hr@10': v },
      warm: { count: 1, 'ndcg@10': v, 'hr@10': v },
      all: { count: 2, 'ndcg@10': v, 'hr@10': v },
    },
    analyses: { coldInputShare: [], targetFrequency: [] },
    emptyInputs: 0,
    training: null,
    fitSeconds: 1,
    evalSeconds: 0,
    finishedAt: '',
  });
  const md = resultsMarkdown(
    'T',
    { knn: { cold: { 'ndcg@10': { mean: 0.02, std: 0.001 } }, warm: {}, all: {} } },
    [run('knn', 0, 0.02)],
  );
  assert.match(md, /\| Content KNN \| 1 \| 0\.0200 ± 0\.0010 \| - \|/);
  const chart = lineChart({
    title: 'a<b',
    xLabel: 'x',
    yLabel: 'y',
    labels: ['1', '2'],
    series: [{ name: 's', values: [0.1, NaN] }],
  });
  assert.match(chart, /a&lt;b/);
  assert.equal((chart.match(/<circle/g) ?? []).length, 1, 'NaN points are gaps');
  const bars = barChart({
    title: 't',
    xLabel: 'x',
    yLabel: 'y',
    labels: ['a', 'b'],
    series: [
      { name: 's', values: [1, 2] },
      { name: 'u', values: [3, 4] },
    ],
  });
  assert.equal((bars.match(/<rect x=/g) ?? []).length, 4 + 2, 'four bars and two legend swatches');
  writeFileSync(join(dir, 'chart.svg'), bars);
});
