/**
 * content-map through the library API: the map starts at the paper's projection (every item's embedding points
 * where the projected content vector points), cold items are appended through the trained map, and the model
 * survives save/load with identical scores.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fit, load, save } from '../src/api.js';
import { projectContent } from '../src/content/projection.js';
import { prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { buildContent } from '../src/eval/data.js';
import type { SASRec } from '../src/model/sasrec.js';
import { loadContentEncoder } from '../src/serve/content.js';
import { packBatch } from '../src/serve/engine.js';
import { loadScoringModel } from '../src/serve/models.js';
import { Scorer } from '../src/serve/scorer.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-content-map-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const data = generateSynthetic({ users: 300, items: 150, topics: 6, seed: 3 });
const split = prepareSplit(data.interactions);
const built = buildContent(split, { catalog: data.catalog }, { fields: ['title', 'description'], dim: 32 });
const small = { d: 16, maxLength: 16, patience: 2, handleSigint: false, onProgress: () => {} };

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let j = 0; j < a.length; j++) {
    ab += a[j] * b[j];
    aa += a[j] * a[j];
    bb += b[j] * b[j];
  }
  return ab / Math.sqrt(aa * bb);
}

test('content-map starts at the paper projection: untrained embeddings point along the projected content', async () => {
  const model = await fit(split, { ...small, epochs: 0, model: 'content-map', content: built.content! });
  const sasrec = model.recommender as SASRec;
  assert.equal(sasrec.numItems, split.numItems, 'cold items are appended');
  assert.equal(sasrec.config.contentDim, built.contentDim);
  const d = small.d;
  // The same projection fit() uses (content rows are unit norm either way for the SVD encoder's direction).
  const rows = split.numItems + 1;
  const unit = new Float32Array(built.content!.length);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < built.contentDim; j++) s += built.content![r * built.contentDim + j] ** 2;
    for (let j = 0; j < built.contentDim; j++)
      unit[r * built.contentDim + j] = s > 0 ? built.content![r * built.contentDim + j] / Math.sqrt(s) : 0;
  }
  const projected = projectContent(unit, built.contentDim, split.numWarm, d, { seed: 0 }).vectors;
  const e = sasrec.itemEmbeddings();
  let worst = 1;
  for (let i = 1; i <= split.numItems; i++) {
    worst = Math.min(worst, cosine(e.subarray(i * d, (i + 1) * d), projected.subarray(i * d, (i + 1) * d)));
  }
  assert.ok(worst > 0.999, `every item's embedding is along its projected vector (worst cosine ${worst})`);
});

test('content-map: training moves the map, cold items use it, save/load keeps the scores', async () => {
  const untrained = await fit(split, { ...small, epochs: 0, model: 'content-map', content: built.content! });
  const model = await fit(split, { ...small, epochs: 3, model: 'content-map', content: built.content! });
  const d = small.d;
  const cold = split.numWarm + 1;
  const before = (untrained.recommender as SASRec).itemEmbeddings().subarray(cold * d, (cold + 1) * d);
  const after_ = (model.recommender as SASRec).itemEmbeddings().subarray(cold * d, (cold + 1) * d);
  let moved = 0;
  for (let j = 0; j < d; j++) moved = Math.max(moved, Math.abs(before[j] - after_[j]));
  assert.ok(moved > 1e-3, 'a cold item embedding follows the trained map');

  await save(model, join(dir, 'model'));
  const loaded = await load(join(dir, 'model'));
  assert.equal(loaded.kind, 'content-map');
  const inputs = [Int32Array.of(1, 2, 3), Int32Array.of(cold)];
  const cols = split.numItems + 1;
  const a = new Float32Array(2 * cols);
  const b = new Float32Array(2 * cols);
  model.recommender.score(inputs, a);
  loaded.recommender.score(inputs, b);
  assert.deepEqual(b, a);
});

test('the service takes content-map artifacts: a new item from the text of a cold item scores like that item', async () => {
  const encoder = built.encoder!;
  const model = await fit(split, {
    ...small,
    epochs: 1,
    model: 'content-map',
    content: built.content!,
    encoder: { kind: 'tfidf-svd', save: (d: string) => encoder.save(d) },
  });
  await save(model, join(dir, 'served'));
  const loaded = await loadScoringModel(join(dir, 'served'));
  const scorer = new Scorer(loaded.model, loaded.numWarm, loaded.fusion);
  assert.equal(scorer.inputWidth, built.contentDim, 'new items enter with the full content width');
  const content = await loadContentEncoder(loaded.artifact);
  const cold = split.numWarm + 1;
  const row = data.catalog.ids.indexOf(split.itemIds[cold]);
  const text = { title: data.catalog.fields.title[row], description: data.catalog.fields.description[row] };
  scorer.appendItems(content.fromFields(text), 1, [text]);
  const n = split.numItems + 1;
  const history = split.test.inputs.items.subarray(0, 3);
  const request = { history, exclude: new Int32Array(0), k: n, includeCold: true, excludeSeen: false };
  const result = scorer.score(packBatch([request]));
  const scoreOf = (item: number) => result.scores[Array.from(result.indices).indexOf(item)];
  assert.ok(
    Math.abs(scoreOf(n) - scoreOf(cold)) < 1e-4,
    `new ${scoreOf(n)} vs its cold twin ${scoreOf(cold)}`,
  );
  assert.throws(() => scorer.appendItems(new Float32Array(16), 1), /expected 1 x 32 values/);
});
