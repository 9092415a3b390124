/**
 * model 'auto' and lexicalWeight 'auto' in experiment configs (issue 15): each run makes its choice on the backtest
 * of its own seed, stores the table in its run record, and trains the chosen variant once (reusing the training of
 * an earlier entry of the same variant and seed).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { LexicalChoice } from '../src/api.js';
import { parseExperimentConfig, runExperiment } from '../src/experiment/experiment.js';
import type { RunRecord } from '../src/experiment/report.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-experiment-auto-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('experiment: auto entries choose on the backtest, store the table and reuse the chosen training', async () => {
  const config = parseExperimentConfig(
    {
      name: 'auto',
      data: {
        synthetic: {
          users: 500,
          items: 140,
          topics: 6,
          seed: 5,
          stayProbability: 0.9,
          successorProbability: 0.05,
        },
      },
      content: { fields: ['title', 'description'], dim: 16, fitOn: 'warm' },
      model: { d: 16, maxLength: 12, epochs: 2, patience: 2 },
      seeds: [0],
      models: [
        'content-init',
        'content-delta',
        { name: 'auto', strategy: 'auto', lexicalWeight: 0 },
        { name: 'delta-auto-weight', strategy: 'content-delta', lexicalWeight: 'auto', lexicalGrid: [0, 4] },
      ],
    },
    'auto.json',
  );
  const out = join(dir, 'out');
  const lines: string[] = [];
  const outcome = await runExperiment(config, out, { baseDir: dir, log: (l) => lines.push(l) });
  assert.ok(outcome.completed, lines.join('\n'));
  const read = (name: string) =>
    JSON.parse(readFileSync(join(out, 'runs', `${name}-seed0.json`), 'utf8')) as RunRecord;

  const auto = read('auto');
  const choice = auto.choice as LexicalChoice;
  assert.deepEqual(
    choice.table.map((r) => `${r.model}:${r.weight}`),
    ['content-init:0', 'content-delta:0'],
  );
  const best = choice.table.reduce((a, b) => (b.ndcg10 > a.ndcg10 ? b : a));
  assert.equal(choice.model, best.model);
  assert.equal(auto.strategy, 'auto');
  // The chosen variant was trained for its own entry: reused, and scored exactly like that entry.
  assert.equal(auto.reusedTraining, true, lines.join('\n'));
  assert.deepEqual(auto.metrics, read(choice.model).metrics);

  const weighted = read('delta-auto-weight');
  const weightChoice = weighted.choice as LexicalChoice;
  assert.deepEqual(
    weightChoice.table.map((r) => `${r.model}:${r.weight}`),
    ['content-delta:0', 'content-delta:4'],
  );
  assert.equal(weighted.reusedTraining, true);
  if (weightChoice.weight === 0) assert.deepEqual(weighted.metrics, read('content-delta').metrics);
  else assert.notDeepEqual(weighted.metrics, read('content-delta').metrics);
  assert.ok(
    lines.some((l) => l.startsWith('[3/4] auto seed 0: the backtest chose ')),
    lines.join('\n'),
  );
});

test('experiment config: auto strategies and their settings are checked', () => {
  const c = parseExperimentConfig(
    {
      data: { synthetic: {} },
      models: [
        { name: 'a', strategy: 'auto', autoModels: ['content-init', 'content-map'], lexicalGrid: [0, 8] },
      ],
    },
    'c.json',
  );
  assert.deepEqual(c.models[0].overrides, {
    autoModels: ['content-init', 'content-map'],
    lexicalGrid: [0, 8],
  });
  assert.equal(c.models[0].strategy, 'auto');
  assert.throws(
    () => parseExperimentConfig({ data: {}, models: ['best'] }, 'c.json'),
    /^Error: c\.json: models\[0\]: strategy 'best' is not one of knn, sasrec, content-init, content-delta, content-frozen, content-map, auto$/,
  );
});
