import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { evaluate, fit, load, save, withLexicalFusion } from '../src/api.js';
import { prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { buildContent, prepareData } from '../src/eval/data.js';
import { LexicalFusion, loadLexicalFusion, saveLexicalFusion } from '../src/model/fusion.js';
import { loadContentEncoder } from '../src/serve/content.js';
import { loadScoringModel } from '../src/serve/models.js';
import { Scorer } from '../src/serve/scorer.js';
import { fixed, rows, servedScores } from './fusion-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-fusion-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('LexicalFusion: standardized model scores plus weight x cosine, computed by hand', () => {
  // Model scores over items 1..4: 1, 2, 3, -Infinity (unscorable). Finite mean 2, population std sqrt(2/3).
  const fusion = new LexicalFusion(fixed([0, 1, 2, 3, -Infinity]), { rows, weight: 2 });
  const out = new Float32Array(5);
  fusion.score([Int32Array.from([1])], out); // profile = item 1 = term 0
  const std = Math.sqrt(2 / 3);
  const cos = [0, 1, 0, Math.SQRT1_2, 0]; // cosine of each item with term 0
  assert.equal(out[0], -Infinity, 'padding');
  for (let i = 1; i <= 3; i++) {
    const expected = (i - 2) / std + 2 * cos[i];
    assert.ok(Math.abs(out[i] - expected) < 1e-5, `item ${i}: ${out[i]} vs ${expected}`);
  }
  assert.equal(out[4], -Infinity, 'an unscorable item stays unscorable');
});

test('LexicalFusion: weight 0 keeps the model ranking; a large weight gives the lexical ranking; bad input named', () => {
  const scores = [0, 0.3, 0.1, 0.2, 0.4];
  const input = [Int32Array.from([2])]; // term 1: items 2 (cos 1) and 3 (cos 0.707)
  const rank = (weight: number) => {
    const out = new Float32Array(5);
    new LexicalFusion(fixed(scores), { rows, weight }).score(input, out);
    return [1, 2, 3, 4].sort((a, b) => out[b] - out[a]);
  };
  assert.deepEqual(rank(0), [4, 1, 3, 2]);
  assert.deepEqual(rank(100).slice(0, 2), [2, 3]);
  assert.throws(
    () => new LexicalFusion(fixed(scores), { rows, weight: -1 }),
    /weight must be a finite number >= 0/,
  );
  assert.throws(
    () => new LexicalFusion(fixed([0, 1]), { rows, weight: 1 }),
    /5 lexical rows for a model of 1 items/,
  );
});

test('lexical fusion state: saved and loaded exactly; a corrupt file is named', async () => {
  await saveLexicalFusion(join(dir, 'lex'), { rows, weight: 8 });
  const back = await loadLexicalFusion(join(dir, 'lex'));
  assert.equal(back.weight, 8);
  assert.deepEqual(back.rows, rows);
  writeFileSync(join(dir, 'lex', 'lexical.safetensors'), 'junk');
  await assert.rejects(loadLexicalFusion(join(dir, 'lex')), /lex\/lexical\.safetensors/);
});

test('fit with lexicalWeight: fused scores, same ranking after save and load, weight 0 is the plain model', async () => {
  const data = generateSynthetic({ users: 300, items: 150, topics: 6, seed: 3 });
  const split = prepareSplit(data.interactions);
  const built = buildContent(split, { catalog: data.catalog }, { fields: ['title', 'description'], dim: 32 });
  assert.equal(built.lexical!.rows, split.numItems + 1, 'one sparse row per item plus padding');
  const settings = {
    d: 16,
    maxLength: 16,
    epochs: 2,
    patience: 2,
    handleSigint: false,
    onProgress: () => {},
  };
  const fused = await fit(split, {
    ...settings,
    model: 'content-delta',
    content: built.content!,
    lexicalWeight: 4,
    lexicalRows: built.lexical!,
  });
  assert.ok(fused.recommender instanceof LexicalFusion);
  await save(fused, join(dir, 'fused'));
  const loaded = await load(join(dir, 'fused'));
  assert.equal(loaded.lexical?.weight, 4);
  const inputs = [split.test.inputs.items.subarray(0, 3)];
  const a = new Float32Array(split.numItems + 1);
  const b = new Float32Array(split.numItems + 1);
  fused.recommender.score(inputs, a);
  loaded.recommender.score(inputs, b);
  for (let i = 1; i <= split.numItems; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-4, `item ${i}`);
  // The fused model differs from the plain one, and weight 0 gives back the plain model's evaluation.
  const plain = withLexicalFusion(fused, built.lexical!, 0);
  assert.ok(!(plain.recommender instanceof LexicalFusion));
  const [e0, e4] = [evaluate(plain, split), evaluate(fused, split)];
  assert.notDeepEqual(e0.ranks, e4.ranks);
  await assert.rejects(
    fit(split, { ...settings, model: 'content-delta', content: built.content!, lexicalWeight: 1 }),
    /lexicalWeight 1 needs lexicalRows/,
  );
  await assert.rejects(
    fit(split, { model: 'knn', content: built.content!, lexicalWeight: 1, lexicalRows: built.lexical! }),
    /applies to SASRec models, not knn/,
  );
});

test('the service scores a fused model like the library, and a new item from text like the same cold item', async () => {
  const data = generateSynthetic({ users: 300, items: 150, topics: 6, seed: 4 });
  const split = prepareSplit(data.interactions);
  const fields = ['title', 'description'];
  const built = buildContent(split, { catalog: data.catalog }, { fields, dim: 32, fitOn: 'warm' });
  const encoder = built.encoder!;
  const fused = await fit(split, {
    d: 16,
    maxLength: 16,
    epochs: 2,
    handleSigint: false,
    onProgress: () => {},
    model: 'content-delta',
    content: built.content!,
    encoder: { kind: 'tfidf-svd', save: (d: string) => encoder.save(d) },
    lexicalWeight: 3,
    lexicalRows: built.lexical!,
  });
  const modelDir = join(dir, 'served');
  await save(fused, modelDir);
  const loaded = await loadScoringModel(modelDir);
  assert.equal(loaded.fusion?.weights.weight, 3);
  const scorer = new Scorer(loaded.model, loaded.numWarm, loaded.fusion);
  const n = split.numItems;
  const scoresOf = (history: Int32Array, items: number) => servedScores(scorer, history, items);
  const history = split.test.inputs.items.subarray(0, 4);
  const expected = new Float32Array(n + 1);
  fused.recommender.score([history], expected);
  const served = scoresOf(history, n);
  for (let i = 1; i <= n; i++) {
    assert.ok(Math.abs(served[i] - expected[i]) < 1e-3, `item ${i}: ${served[i]} vs ${expected[i]}`);
  }
  // A new item added from the text of a cold item (no delta) gets that item's embedding and sparse row.
  const cold = split.numWarm + 1;
  assert.ok(built.lexical!.indptr[cold + 1] > built.lexical!.indptr[cold], 'the cold item has words');
  const row = data.catalog.ids.indexOf(split.itemIds[cold]);
  const text = Object.fromEntries(fields.map((f) => [f, data.catalog.fields[f][row]]));
  const content = await loadContentEncoder(loaded.artifact);
  scorer.appendItems(content.fromFields(text), 1, [text]);
  const after = scoresOf(history, n + 1);
  assert.ok(
    Math.abs(after[n + 1] - after[cold]) < 1e-3,
    `new ${after[n + 1]} vs its cold twin ${after[cold]}`,
  );
  // The same vector without text has no lexical term: it differs from its twin by weight x cosine.
  scorer.appendItems(content.fromFields(text), 1, [undefined]);
  const third = scoresOf(history, n + 2);
  const cosine = (third[n + 1] - third[n + 2]) / 3;
  assert.ok(cosine >= -1e-4 && cosine <= 1 + 1e-4, `cosine ${cosine}`);
});

test('backtest data: only interactions before the outer threshold, split again with an earlier threshold', async () => {
  const synthetic = { users: 400, items: 150, topics: 6, seed: 9 };
  const outer = await prepareData({ synthetic }, { dim: 16 }, dir);
  const inner = await prepareData({ synthetic, backtest: true }, { dim: 16 }, dir);
  const T = outer.split.stats.threshold_timestamp!;
  assert.ok(inner.split.stats.threshold_timestamp! < T);
  assert.ok(inner.split.stats.interactions < outer.split.stats.interactions);
  assert.ok(inner.split.numItems > inner.split.numWarm, 'the inner test period has its own new items');
  assert.ok(inner.notes.some((n) => n.startsWith('backtest:')));
  await assert.rejects(
    prepareData({ prepared: 'x', backtest: true }, {}, dir),
    /'backtest' needs raw interactions/,
  );
});
