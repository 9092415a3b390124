/**
 * lexicalWeight 'auto' (issue 13): the weight is chosen on a backtest inside the training data. On generated data
 * where an item's text names its topic and the next item mostly stays in the topic, text helps and a weight > 0 is
 * chosen; with the same texts shuffled across items (text unrelated to behaviour), 0 is chosen.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fit, load, save, type FitOptions } from '../src/api.js';
import type { PreparedSplit } from '../src/data/types.js';
import { autoFitOptions, topicTextData } from './auto-fixture.js';
import { Random } from '../src/util/random.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-lexical-auto-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const GRID = [0, 2, 8];

function setup(text: 'topic' | 'random'): { split: PreparedSplit; o: FitOptions } {
  const data = topicTextData();
  if (text === 'random') {
    const order = new Random(1).shuffle(Int32Array.from(data.catalog.ids.keys()));
    for (const [name, values] of Object.entries(data.catalog.fields)) {
      data.catalog.fields[name] = Array.from(order, (r) => values[r]);
    }
  }
  const { split, o } = autoFitOptions(data, GRID);
  return { split, o: { ...o, model: 'content-delta', lexicalWeight: 'auto' } };
}

test('auto picks a weight > 0 when item text predicts the next item, and stores the table', async () => {
  const { split, o } = setup('topic');
  const model = await fit(split, o);
  const choice = model.lexicalChoice!;
  assert.deepEqual(
    choice.table.map((r) => r.weight),
    GRID,
  );
  const best = Math.max(...choice.table.map((r) => r.ndcg10));
  assert.equal(choice.table.find((r) => r.weight === choice.weight)!.ndcg10, best);
  assert.ok(choice.weight > 0, JSON.stringify(choice.table));
  assert.equal(model.lexical?.weight, choice.weight, 'the real model is fused with the chosen weight');
  assert.ok(choice.backtest.epochs >= 1 && choice.backtest.testCases > 0);
  assert.equal(choice.backtest.items, o.lexicalBacktest!.split.numItems);

  await save(model, join(dir, 'topic'));
  const manifest = JSON.parse(readFileSync(join(dir, 'topic', 'manifest.json'), 'utf8'));
  assert.deepEqual(manifest.lexical_choice, JSON.parse(JSON.stringify(choice)));
  const loaded = await load(join(dir, 'topic'));
  assert.equal(loaded.lexicalChoice!.weight, choice.weight);
  assert.equal(loaded.lexical!.weight, choice.weight);
});

test('auto picks 0 when item text is unrelated to behaviour', async () => {
  const { split, o } = setup('random');
  const model = await fit(split, o);
  assert.equal(model.lexicalChoice!.weight, 0, JSON.stringify(model.lexicalChoice!.table));
  assert.equal(model.lexical, null, 'no fusion');
});

test('auto is refused without a backtest, without sparse rows, for knn and with a bad grid', async () => {
  const { split, o } = setup('topic');
  await assert.rejects(
    fit(split, { ...o, lexicalBacktest: undefined }),
    /^Error: fit: lexicalWeight 'auto' needs lexicalBacktest \(the backtest split of the training data, with its content and sparse rows\)$/,
  );
  await assert.rejects(
    fit(split, { ...o, lexicalRows: undefined }),
    /^Error: fit: lexicalWeight 'auto' needs lexicalRows \(sparse TF-IDF rows of every item\)$/,
  );
  await assert.rejects(
    fit(split, { ...o, model: 'knn' }),
    /^Error: fit: lexicalWeight applies to SASRec models, not knn$/,
  );
  await assert.rejects(fit(split, { ...o, lexicalGrid: [] }), /^Error: fit: lexicalGrid is empty$/);
  await assert.rejects(
    fit(split, { ...o, lexicalGrid: [0, -1] }),
    /^Error: fit: lexicalWeight must be a finite number >= 0, got -1$/,
  );
});
