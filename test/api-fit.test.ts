import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { evaluate, fit, load, recommend, save } from '../src/api.js';
import { buildContent } from '../src/eval/data.js';
import { prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-api-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const data = generateSynthetic({ users: 300, items: 150, topics: 6, seed: 3 });
const split = prepareSplit(data.interactions);
const built = buildContent(split, { catalog: data.catalog }, { fields: ['title', 'description'], dim: 32 });
const small = { d: 16, maxLength: 16, epochs: 2, patience: 2, handleSigint: false, onProgress: () => {} };

test('the split has cold items and content rows aligned with it', () => {
  assert.ok(split.numItems > split.numWarm, 'synthetic data should have cold items');
  assert.equal(built.content!.length, (split.numItems + 1) * built.contentDim);
});

test('content-delta: cold items appended, recommend honours k, seen items, exclude and includeCold', async () => {
  const model = await fit(split, { ...small, model: 'content-delta', content: built.content! });
  assert.equal(model.recommender.numItems, split.numItems, 'cold items are appended after training');
  assert.ok(model.training && model.training.history.length >= 1);
  const history = [split.itemIds[1], split.itemIds[2], split.itemIds[3]];
  const [withCold, warmOnly, excluded] = [
    recommend(model, [history], { k: 50 })[0],
    recommend(model, [history], { k: 50, includeCold: false })[0],
    recommend(model, [history], { k: 50, exclude: [[split.itemIds[5]]] })[0],
  ];
  assert.equal(withCold.items.length, 50);
  for (const id of history) assert.ok(!withCold.items.includes(id), 'seen items are not recommended');
  const warm = new Set(split.itemIds.slice(1, split.numWarm + 1));
  assert.ok(warmOnly.items.every((id) => warm.has(id)));
  assert.ok(!excluded.items.includes(split.itemIds[5]));
  for (let i = 1; i < withCold.scores.length; i++) assert.ok(withCold.scores[i - 1] >= withCold.scores[i]);
  // an empty or unknown history gives no recommendations rather than an error
  assert.deepEqual(recommend(model, [['no-such-item']])[0].items, []);

  const r = evaluate(model, split);
  assert.equal(r.options.recommendColdItems, true);
  assert.equal(r.all.count, split.test.targets.length);

  await save(model, join(dir, 'delta'));
  const loaded = await load(join(dir, 'delta'));
  assert.equal(loaded.kind, 'content-delta');
  assert.ok(loaded.projection, 'the projection is saved with the model');
  assert.deepEqual(recommend(loaded, [history], { k: 20 }), recommend(model, [history], { k: 20 }));
  assert.deepEqual(evaluate(loaded, split).all, r.all);
});

test('plain SASRec is evaluated without cold candidates and scores 0 on cold cases', async () => {
  const model = await fit(split, { ...small, model: 'sasrec' });
  assert.equal(model.recommender.numItems, split.numWarm);
  const r = evaluate(model, split);
  assert.equal(r.options.recommendColdItems, false);
  assert.equal(r.options.filterColdInputs, true);
  assert.equal(r.cold['ndcg@10'], 0);
  assert.ok(r.warm.count > 0);
});

test('knn: fitted without training, saved and loaded with identical scores', async () => {
  const model = await fit(split, { model: 'knn', content: built.content! });
  assert.equal(model.training, null);
  const r = evaluate(model, split);
  assert.ok(r.all['ndcg@10'] >= 0);
  await save(model, join(dir, 'knn'));
  const loaded = await load(join(dir, 'knn'));
  assert.equal(loaded.kind, 'knn');
  assert.deepEqual(evaluate(loaded, split).all, r.all);
});

test('fit rejects a missing or misaligned content matrix and unknown models', async () => {
  await assert.rejects(fit(split, { model: 'content-init' }), /needs content vectors/);
  await assert.rejects(
    fit(split, { model: 'knn', content: new Float32Array(split.numItems * 3 + 1) }),
    /not a multiple of numItems \+ 1/,
  );
  await assert.rejects(fit(split, { model: 'bert4rec' as never }), /unknown model 'bert4rec'/);
});
