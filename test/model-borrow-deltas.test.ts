/**
 * Borrowed deltas for cold items (issue 15): a cold item's delta is the similarity-weighted mean of its k nearest
 * warm items' deltas by content cosine, clipped to deltaMax; off by default; saved with the model so that the
 * service gives a new item the same row as the library.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fit, load, save, withBorrowedDeltas } from '../src/api.js';
import { prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { buildContent } from '../src/eval/data.js';
import { kernels as activeKernels } from '../src/kernels/index.js';
import { referenceKernels } from '../src/kernels/reference.js';
import { ItemEmbeddings } from '../src/model/embeddings.js';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { loadScoringModel } from '../src/serve/models.js';
import { Scorer } from '../src/serve/scorer.js';
import { unitContent } from './tiny-model.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-borrow-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function close(a: ArrayLike<number>, b: ArrayLike<number>, what: string, tolerance = 1e-5): void {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    assert.ok(Math.abs(a[i] - b[i]) <= tolerance * (1 + Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

/**
 * Four warm items and one cold item in d = 2. Cosines of the cold row (0.8, 0.6) with the warm rows: 0.8, 0.6,
 * 0.96 and -0.8.
 */
function tinyTable(deltaMax: number, deltas: number[][]): ItemEmbeddings {
  const content = Float32Array.of(0, 0, 1, 0, 0, 1, 0.6, 0.8, -1, 0, 0.8, 0.6);
  const items = new ItemEmbeddings('content-delta', 5, 2, deltaMax, 0, content);
  deltas.forEach((row, i) => items.weight!.set(row, (i + 1) * 2));
  return items;
}

const row = (items: ItemEmbeddings, r: number) => Array.from(items.weight!.subarray(r * 2, r * 2 + 2));

test('a borrowed delta is the similarity-weighted mean of the k nearest warm deltas', () => {
  const deltas = [
    [0.1, 0],
    [0.3, 0.3],
    [0, 0.2],
    [0.4, 0],
  ];
  for (const kernels of [referenceKernels, activeKernels]) {
    // k = 2: rows 3 (cosine 0.96) and 1 (0.8).
    const two = tinyTable(0.5, deltas);
    two.borrowDeltas([5], 4, 2, kernels);
    close(row(two, 5), [(0.8 * 0.1) / 1.76, (0.96 * 0.2) / 1.76], `${kernels.name} k = 2`);
    // k = 10: every warm row with a positive cosine (1, 2, 3); row 4 (cosine -0.8) is left out.
    const all = tinyTable(0.5, deltas);
    all.borrowDeltas([5], 4, 10, kernels);
    close(row(all, 5), [(0.08 + 0.6 * 0.3) / 2.36, (0.192 + 0.6 * 0.3) / 2.36], `${kernels.name} k = 10`);
    // The warm rows themselves are not changed, and E is C + D once refreshed.
    close(row(all, 1), [0.1, 0], 'warm delta kept');
    all.refresh();
    close(all.matrix.subarray(10, 12), [0.8 + 0.26 / 2.36, 0.6 + 0.372 / 2.36], 'E = C + D');
  }
});

test('a borrowed delta is clipped to deltaMax; no positive neighbour gives a zero delta', () => {
  // Warm deltas over the bound (as a hand-set or foreign table may have): the mean (0.8, 0.96) / 1.76 has norm 0.71.
  const items = tinyTable(0.5, [
    [1, 0],
    [0, 0],
    [0, 1],
    [0, 0],
  ]);
  items.borrowDeltas([5], 4, 2);
  const expected = [0.8 / 1.76, 0.96 / 1.76];
  const norm = Math.hypot(expected[0], expected[1]);
  close(row(items, 5), [(expected[0] * 0.5) / norm, (expected[1] * 0.5) / norm], 'clipped');
  assert.ok(Math.abs(Math.hypot(...row(items, 5)) - 0.5) < 1e-6);

  // Only row 4 points the cold row's way: (-0.8, -0.6) has cosine -0.8..-0.96 with rows 1 to 3 and 0.8 with row 4.
  const lonely = new ItemEmbeddings(
    'content-delta',
    4,
    2,
    0.5,
    0,
    Float32Array.of(0, 0, 1, 0, 0, 1, 0.6, 0.8, -0.8, -0.6),
  );
  lonely.weight!.set([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4], 2);
  lonely.borrowDeltas([4], 3, 3);
  assert.deepEqual(row(lonely, 4), [0, 0], 'no neighbour with a positive cosine: zero delta');
  assert.throws(() => lonely.borrowDeltas([4], 3, 0), /k must be a positive integer/);
  assert.throws(() => lonely.borrowDeltas([9], 3, 2), /row 9 does not exist/);
  const init = new ItemEmbeddings(
    'content-init',
    4,
    2,
    0.5,
    0,
    Float32Array.of(0, 0, 1, 0, 0, 1, 1, 0, 0, 1),
  );
  assert.throws(() => init.borrowDeltas([4], 3, 2), /has no delta/);
});

function tinyModel(strategy: 'content-delta' | 'content-map'): SASRec {
  const h = strategy === 'content-map' ? 12 : 8;
  const model = new SASRec(
    sasrecConfig({
      numItems: 20,
      d: 8,
      heads: 2,
      maxLength: 6,
      dropout: 0,
      strategy,
      contentDim: h,
      seed: 4,
    }),
    unitContent(20, h, 3),
    referenceKernels,
  );
  // Trained-looking deltas on the warm rows, within the bound.
  const delta = model.items.weight!;
  for (let i = 8; i < delta.length; i++) delta[i] = 0.1 * Math.sin(i);
  model.parametersChanged();
  return model;
}

test('SASRec: off by default (zero delta), on it borrows at append, replace and for existing cold rows', () => {
  for (const strategy of ['content-delta', 'content-map'] as const) {
    const width = strategy === 'content-map' ? 12 : 8;
    const fresh = unitContent(3, width, 7).subarray(width);
    const plain = tinyModel(strategy);
    plain.appendItems(fresh, 3);
    assert.ok(
      plain.items.weight!.subarray(21 * 8).every((v) => v === 0),
      `${strategy}: without the option new items have a zero delta`,
    );

    const borrowing = tinyModel(strategy);
    const inputs = [Int32Array.of(3, 22, 21), Int32Array.of(23)];
    borrowing.setBorrowDeltas(4, 20);
    assert.equal(borrowing.config.borrowDeltas, 4);
    assert.equal(borrowing.config.warmItems, 20);
    borrowing.appendItems(fresh, 3);
    const expected = tinyModel(strategy);
    expected.appendItems(fresh, 3);
    expected.items.borrowDeltas([21, 22, 23], 20, 4);
    expected.parametersChanged();
    close(borrowing.itemEmbeddings(), expected.itemEmbeddings(), `${strategy}: appended rows borrow`);
    assert.ok(borrowing.items.weight!.subarray(21 * 8).some((v) => v !== 0));
    const a = new Float32Array(2 * 24);
    const b = new Float32Array(2 * 24);
    borrowing.score(inputs, a);
    expected.score(inputs, b);
    close(a, b, `${strategy}: scores`);

    // replaceItems gives what appendItems would have given (the borrowed delta of the new content).
    borrowing.replaceItems(Int32Array.of(22), fresh.subarray(0, width));
    const again = tinyModel(strategy);
    again.setBorrowDeltas(4, 20);
    again.appendItems(
      Float32Array.of(...fresh.subarray(0, width), ...fresh.subarray(0, width), ...fresh.subarray(2 * width)),
      3,
    );
    close(borrowing.itemEmbeddings(), again.itemEmbeddings(), `${strategy}: replaced row borrows`);
    borrowing.score(inputs, a);
    again.score(inputs, b);
    close(a, b, `${strategy}: scores after replace (inference tables refreshed)`);

    // Turning it on for a model that already holds cold rows (a loaded model) borrows for them; 0 zeroes them.
    plain.score(inputs, a); // builds the inference tables, which must then be refreshed
    plain.setBorrowDeltas(4, 20);
    close(plain.itemEmbeddings(), expected.itemEmbeddings(), `${strategy}: existing cold rows borrow`);
    plain.score(inputs, a);
    expected.score(inputs, b);
    close(a, b, `${strategy}: scores after turning it on`);
    plain.setBorrowDeltas(0, 20);
    assert.ok(
      plain.items.weight!.subarray(21 * 8).every((v) => v === 0),
      'k = 0 zeroes cold deltas again',
    );
    assert.equal(plain.config.borrowDeltas, undefined);
  }
});

test('fit and save keep the option; the service gives a new item the same row as the library', async () => {
  const data = generateSynthetic({ users: 300, items: 150, topics: 6, seed: 3 });
  const split = prepareSplit(data.interactions);
  const built = buildContent(split, { catalog: data.catalog }, { fields: ['title', 'description'], dim: 32 });
  const small = { d: 16, maxLength: 16, epochs: 2, patience: 2, handleSigint: false, onProgress: () => {} };
  assert.ok(split.numItems > split.numWarm, 'synthetic data should have cold items');

  const off = await fit(split, { ...small, model: 'content-delta', content: built.content! });
  const model = await fit(split, {
    ...small,
    model: 'content-delta',
    content: built.content!,
    borrowDeltas: 5,
  });
  const d = 16;
  const coldDeltas = (m: typeof model) =>
    (m.recommender as SASRec).items.weight!.subarray((split.numWarm + 1) * d);
  assert.ok(
    coldDeltas(off).every((v) => v === 0),
    'default: the paper, cold items have a zero delta',
  );
  // Same training (borrowing is applied after it): the option only changes the cold rows.
  close(
    (model.recommender as SASRec).items.weight!.subarray(0, (split.numWarm + 1) * d),
    (off.recommender as SASRec).items.weight!.subarray(0, (split.numWarm + 1) * d),
    'warm deltas',
  );
  withBorrowedDeltas(off, 5);
  close(coldDeltas(off), coldDeltas(model), 'withBorrowedDeltas on a fitted model = fit with borrowDeltas');
  for (let r = split.numWarm + 1; r <= split.numItems; r++) {
    const norm = Math.hypot(
      ...coldDeltas(model).subarray((r - split.numWarm - 1) * d, (r - split.numWarm) * d),
    );
    assert.ok(norm <= 0.5 + 1e-6, `cold row ${r}: delta norm ${norm} within deltaMax`);
  }
  assert.ok(
    coldDeltas(model).some((v) => v !== 0),
    'cold items borrowed a delta',
  );

  const modelDir = join(dir, 'borrowing');
  await save(model, modelDir);
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.model.config.borrowDeltas, 5);
  assert.equal(manifest.model.config.warmItems, split.numWarm);

  // A new item: the library (load + appendItems) and the service's scorer give it the same row.
  const vector = unitContent(1, d, 11).subarray(d);
  const library = await load(modelDir);
  (library.recommender as SASRec).appendItems(vector, 1);
  const loaded = await loadScoringModel(modelDir);
  const scorer = new Scorer(loaded.model, loaded.numWarm, loaded.fusion);
  scorer.appendItems(vector, 1);
  const rows = split.numItems + 2;
  const libraryRows = (library.recommender as SASRec).itemEmbeddings();
  close(
    loaded.model.itemEmbeddings().subarray(0, rows * d),
    libraryRows.subarray(0, rows * d),
    'service rows',
  );
  const newDelta = (library.recommender as SASRec).items.weight!.subarray((rows - 1) * d, rows * d);
  assert.ok(
    newDelta.some((v) => v !== 0),
    'the new item borrowed a delta',
  );

  await assert.rejects(
    fit(split, { ...small, model: 'content-init', content: built.content!, borrowDeltas: 5 }),
    /borrowDeltas needs a model with a delta/,
  );
});
