/**
 * model 'auto' (issue 15): the backtest inside the training data chooses the variant and the fusion weight together.
 * On generated data where an item's text names its topic, a weight > 0 is chosen; the real model is the chosen
 * variant fitted with the chosen weight (the same scores as fitting that variant directly), and the table is kept.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { evaluate, fit, load, save, type FitOptions } from '../src/api.js';
import type { PreparedSplit } from '../src/data/types.js';
import { autoFitOptions, topicTextData } from './auto-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-model-auto-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const GRID = [0, 2, 8];

function setup(): { split: PreparedSplit; o: FitOptions } {
  const { split, o } = autoFitOptions(topicTextData(), GRID);
  return { split, o: { ...o, model: 'auto', autoModels: ['content-init', 'content-delta'] } };
}

test('model auto compares every variant and weight on the backtest and fits the best one', async () => {
  const { split, o } = setup();
  let reported = 0;
  const model = await fit(split, { ...o, onLexicalChoice: () => reported++ });
  const choice = model.lexicalChoice!;
  assert.equal(reported, 1);
  assert.deepEqual(
    choice.table.map((r) => `${r.model}:${r.weight}`),
    [
      'content-init:0',
      'content-init:2',
      'content-init:8',
      'content-delta:0',
      'content-delta:2',
      'content-delta:8',
    ],
  );
  const best = choice.table.reduce((a, b) => (b.ndcg10 > a.ndcg10 ? b : a));
  assert.equal(choice.model, best.model, JSON.stringify(choice.table));
  assert.equal(choice.weight, best.weight);
  assert.ok(choice.weight > 0, `text names the topic, so fusion helps: ${JSON.stringify(choice.table)}`);
  // cold and warm cases are reported too; all cases lie between them
  for (const r of choice.table) {
    assert.ok(r.ndcg10 >= Math.min(r.cold, r.warm) - 1e-9 && r.ndcg10 <= Math.max(r.cold, r.warm) + 1e-9);
  }
  assert.equal(choice.backtest.items, o.lexicalBacktest!.split.numItems);
  assert.ok(choice.backtest.epochs >= 2, 'one training per candidate');

  // The real model is the chosen variant with the chosen weight: the same as fitting it directly.
  assert.equal(model.kind, choice.model);
  assert.equal(model.lexical?.weight, choice.weight);
  const direct = await fit(split, {
    ...o,
    model: choice.model,
    autoModels: undefined,
    lexicalWeight: choice.weight,
  });
  assert.deepEqual(evaluate(model, split).ranks, evaluate(direct, split).ranks);

  await save(model, join(dir, 'auto'));
  const manifest = JSON.parse(readFileSync(join(dir, 'auto', 'manifest.json'), 'utf8'));
  assert.deepEqual(manifest.lexical_choice, JSON.parse(JSON.stringify(choice)));
  const loaded = await load(join(dir, 'auto'));
  assert.equal(loaded.kind, choice.model);
  assert.equal(loaded.lexicalChoice!.model, choice.model);
  assert.deepEqual(evaluate(loaded, split).ranks, evaluate(model, split).ranks);
});

test('model auto with a fixed lexicalWeight chooses only the variant', async () => {
  const { split, o } = setup();
  const model = await fit(split, { ...o, lexicalGrid: undefined, lexicalWeight: 0 });
  const choice = model.lexicalChoice!;
  assert.deepEqual(
    choice.table.map((r) => `${r.model}:${r.weight}`),
    ['content-init:0', 'content-delta:0'],
  );
  assert.equal(choice.weight, 0);
  assert.equal(model.lexical, null);
});

test('model auto and autoModels refuse bad values', async () => {
  const { split, o } = setup();
  await assert.rejects(
    fit(split, { ...o, lexicalBacktest: undefined }),
    /^Error: fit: model 'auto' needs lexicalBacktest \(the backtest split of the training data, with its content and sparse rows\)$/,
  );
  await assert.rejects(
    fit(split, { ...o, lexicalRows: undefined }),
    /^Error: fit: model 'auto' needs lexicalRows \(sparse TF-IDF rows of every item\)$/,
  );
  await assert.rejects(fit(split, { ...o, autoModels: [] }), /^Error: fit: autoModels is empty$/);
  for (const bad of ['knn', 'sasrec', 'auto', 'bert'] as const) {
    await assert.rejects(
      fit(split, { ...o, autoModels: [bad as 'knn'] }),
      new RegExp(
        `^Error: fit: autoModels must list content SASRec variants \\(content-init, content-delta, content-frozen, content-map\\), got '${bad}'$`,
      ),
    );
  }
  await assert.rejects(
    fit(split, { ...o, autoModels: ['content-delta', 'content-delta'] }),
    /^Error: fit: autoModels lists a model twice$/,
  );
  await assert.rejects(
    fit(split, { ...o, model: 'content-delta' }),
    /^Error: fit: autoModels applies to model 'auto'$/,
  );
  await assert.rejects(
    fit(split, { ...o, model: 'content-delta', lexicalWeight: 'auto' }),
    /^Error: fit: autoModels applies to model 'auto'$/,
  );
  await assert.rejects(fit(split, { ...o, lexicalGrid: [] }), /^Error: fit: lexicalGrid is empty$/);
  await assert.rejects(
    fit(split, { ...o, lexicalGrid: [0, Number.NaN] }),
    /^Error: fit: lexicalWeight must be a finite number >= 0, got NaN$/,
  );
});
