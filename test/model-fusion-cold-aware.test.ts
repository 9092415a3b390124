import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { evaluate, fit, load, save, withLexicalFusion } from '../src/api.js';
import { prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { buildContent } from '../src/eval/data.js';
import { encodeSafetensors } from '../src/model/artifact.js';
import { LexicalFusion, loadLexicalFusion, saveLexicalFusion } from '../src/model/fusion.js';
import { loadContentEncoder } from '../src/serve/content.js';
import { loadScoringModel } from '../src/serve/models.js';
import { Scorer } from '../src/serve/scorer.js';
import { fixed, rows, servedScores } from './fusion-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-fusion-cold-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('cold-aware fusion: profile, cold-item and last-item cosines, computed by hand', () => {
  // Items 1, 2 warm (numWarm 2), 3, 4 cold. Model scores 1..4: mean 2.5, population std sqrt(1.25).
  const state = { rows, weight: 2, coldWeight: 3, lastWeight: 5, numWarm: 2 };
  const out = new Float32Array(5);
  new LexicalFusion(fixed([0, 1, 2, 3, 4]), state).score([Int32Array.from([1, 2])], out);
  const profile = [0, Math.SQRT1_2, Math.SQRT1_2, 1, 0]; // (t0 + t1) / sqrt 2 against each item
  const last = [0, 0, 1, Math.SQRT1_2, 0]; // item 2 = t1 against each item
  const std = Math.sqrt(1.25);
  for (let i = 1; i <= 4; i++) {
    const expected = (i - 2.5) / std + (i > 2 ? 2 + 3 : 2) * profile[i] + 5 * last[i];
    assert.ok(Math.abs(out[i] - expected) < 1e-5, `item ${i}: ${out[i]} vs ${expected}`);
  }
  assert.equal(out[0], -Infinity);
  // The ranking changes as the hand computation says: plain fusion puts item 4 (highest model score) first;
  // the cold-aware terms put item 3 (cold, like the whole history and the last item) first.
  const plain = new Float32Array(5);
  new LexicalFusion(fixed([0, 1, 2, 3, 4]), { rows, weight: 0.5 }).score([Int32Array.from([1, 2])], plain);
  const top = (s: Float32Array) => [1, 2, 3, 4].reduce((a, b) => (s[b] > s[a] ? b : a));
  assert.equal(top(plain), 4);
  assert.equal(top(out), 3);
});

test('cold-aware fusion: only the extra weights given change the scores; bad weights refused', () => {
  const input = [Int32Array.from([1, 2])];
  const scoreWith = (state: object) => {
    const out = new Float32Array(5);
    new LexicalFusion(fixed([0, 1, 2, 3, 4]), { rows, weight: 2, ...state }).score(input, out);
    return out;
  };
  const plain = scoreWith({});
  const cold = scoreWith({ coldWeight: 3, numWarm: 2 });
  const last = scoreWith({ lastWeight: 5 });
  assert.deepEqual([cold[1], cold[2]], [plain[1], plain[2]], 'warm items keep their plain scores');
  assert.ok(Math.abs(cold[3] - plain[3] - 3) < 1e-5, 'the cold item with cosine 1 gains coldWeight');
  assert.ok(Math.abs(last[2] - plain[2] - 5) < 1e-5, 'the last item itself gains lastWeight');
  assert.ok(Math.abs(last[1] - plain[1]) < 1e-6, 'an item orthogonal to the last item gains nothing');
  assert.throws(() => scoreWith({ coldWeight: 1 }), /coldWeight needs numWarm/);
  assert.throws(() => scoreWith({ lastWeight: -1 }), /lastWeight must be a finite number >= 0/);
  assert.throws(() => scoreWith({ coldWeight: Infinity, numWarm: 2 }), /coldWeight must be a finite number/);
});

test('cold-aware fusion state: saved and loaded exactly; a plain state writes no new keys; bad metadata named', async () => {
  const state = { rows, weight: 6, coldWeight: 8, lastWeight: 4, numWarm: 2 };
  await saveLexicalFusion(join(dir, 'cold'), state);
  assert.deepEqual(await loadLexicalFusion(join(dir, 'cold')), state);
  await saveLexicalFusion(join(dir, 'plain'), { rows, weight: 8 });
  const plain = readFileSync(join(dir, 'plain', 'lexical.safetensors')).toString('latin1');
  assert.ok(!/coldWeight|lastWeight|numWarm/.test(plain), 'the plain state has the keys it always had');
  assert.deepEqual(await loadLexicalFusion(join(dir, 'plain')), { rows, weight: 8 });
  mkdirSync(join(dir, 'bad'));
  const tensors = [
    { name: 'indptr', shape: [rows.indptr.length], data: rows.indptr },
    { name: 'indices', shape: [rows.indices.length], data: rows.indices },
    { name: 'values', shape: [rows.values.length], data: rows.values },
  ];
  const meta = { format: 'deltarec-lexical-fusion', weight: '1', cols: '3', coldWeight: '2' };
  writeFileSync(join(dir, 'bad', 'lexical.safetensors'), encodeSafetensors(tensors, meta));
  await assert.rejects(
    loadLexicalFusion(join(dir, 'bad')),
    /bad\/lexical\.safetensors: coldWeight needs numWarm/,
  );
  writeFileSync(
    join(dir, 'bad', 'lexical.safetensors'),
    encodeSafetensors(tensors, { ...meta, coldWeight: '-2', numWarm: '2' }),
  );
  await assert.rejects(
    loadLexicalFusion(join(dir, 'bad')),
    /coldWeight must be a finite number >= 0, got -2/,
  );
});

test('fit with cold-aware fusion: saved, loaded, served like the library; a new item from text scores like its cold twin', async () => {
  const data = generateSynthetic({ users: 300, items: 150, topics: 6, seed: 4 });
  const split = prepareSplit(data.interactions);
  const fields = ['title', 'description'];
  const built = buildContent(split, { catalog: data.catalog }, { fields, dim: 32, fitOn: 'warm' });
  const encoder = built.encoder!;
  const settings = { d: 16, maxLength: 16, epochs: 2, handleSigint: false, onProgress: () => {} };
  const fused = await fit(split, {
    ...settings,
    model: 'content-delta',
    content: built.content!,
    encoder: { kind: 'tfidf-svd', save: (d: string) => encoder.save(d) },
    lexicalWeight: 3,
    lexicalColdWeight: 2,
    lexicalLastWeight: 1.5,
    lexicalRows: built.lexical!,
  });
  assert.deepEqual(
    { ...fused.lexical, rows: undefined },
    { rows: undefined, weight: 3, coldWeight: 2, lastWeight: 1.5, numWarm: split.numWarm },
  );
  // The same model with plain fusion ranks differently, and withLexicalFusion gives the fitted scores back.
  const plain = withLexicalFusion(fused, built.lexical!, 3);
  assert.notDeepEqual(evaluate(plain, split).ranks, evaluate(fused, split).ranks);
  const again = withLexicalFusion(plain, built.lexical!, 3, { coldWeight: 2, lastWeight: 1.5 });
  assert.deepEqual(evaluate(again, split).ranks, evaluate(fused, split).ranks);

  const modelDir = join(dir, 'served');
  await save(fused, modelDir);
  const reloaded = await load(modelDir);
  assert.deepEqual(evaluate(reloaded, split).ranks, evaluate(fused, split).ranks, 'same ranks after load');
  const loaded = await loadScoringModel(modelDir);
  assert.equal(loaded.fusion?.weights.coldWeight, 2);
  const scorer = new Scorer(loaded.model, loaded.numWarm, loaded.fusion);
  const n = split.numItems;
  const scoresOf = (history: Int32Array, items: number) => servedScores(scorer, history, items);
  const history = split.test.inputs.items.subarray(0, 4);
  const expected = new Float32Array(n + 1);
  fused.recommender.score([history], expected);
  const served = scoresOf(history, n);
  for (let i = 1; i <= n; i++)
    assert.ok(Math.abs(served[i] - expected[i]) < 1e-3, `item ${i}: ${served[i]} vs ${expected[i]}`);
  // A new item from a cold item's text: the same embedding, row and cold weight as that item.
  const cold = split.numWarm + 1;
  const row = data.catalog.ids.indexOf(split.itemIds[cold]);
  const text = Object.fromEntries(fields.map((f) => [f, data.catalog.fields[f][row]]));
  const content = await loadContentEncoder(loaded.artifact);
  scorer.appendItems(content.fromFields(text), 1, [text]);
  const next = scoresOf(history, n + 1);
  assert.ok(Math.abs(next[n + 1] - next[cold]) < 1e-3, `new ${next[n + 1]} vs its cold twin ${next[cold]}`);

  await assert.rejects(
    fit(split, {
      ...settings,
      model: 'content-delta',
      content: built.content!,
      lexicalWeight: 'auto',
      lexicalColdWeight: 1,
    }),
    /need a numeric lexicalWeight/,
  );
  await assert.rejects(
    fit(split, {
      ...settings,
      model: 'content-delta',
      content: built.content!,
      lexicalWeight: 1,
      lexicalLastWeight: -1,
    }),
    /lastWeight must be a finite number >= 0/,
  );
});
