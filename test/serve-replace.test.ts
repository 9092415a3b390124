/**
 * Updating an added item re-encodes its row in place (issue 12: replacements must not grow the item table): the
 * replaced row must be exactly what appending the new content would have given, for every content strategy, the
 * KNN model and the lexical index.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CsrMatrix } from '../src/content/sparse.js';
import { referenceKernels } from '../src/kernels/reference.js';
import { LexicalIndex } from '../src/model/fusion.js';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { KnnScoringModel } from '../src/serve/models.js';
import { LiveCatalog } from '../src/serve/catalog.js';
import { InlineBackend, ScoringEngine } from '../src/serve/engine.js';
import { Scorer } from '../src/serve/scorer.js';
import { unitContent } from './tiny-model.js';

function close(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue; // also -Infinity (padding)
    assert.ok(Math.abs(a[i] - b[i]) <= 1e-5 * (1 + Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

test('replaceItems gives a row exactly what appendItems would have given it', () => {
  const d = 8;
  const h = 12;
  for (const strategy of ['content-init', 'content-delta', 'content-frozen', 'content-map'] as const) {
    const width = strategy === 'content-map' ? h : d;
    const make = () =>
      new SASRec(
        sasrecConfig({
          numItems: 20,
          d,
          heads: 2,
          maxLength: 6,
          dropout: 0,
          strategy,
          contentDim: h,
          seed: 4,
        }),
        unitContent(20, width, 3),
        referenceKernels,
      );
    const first = unitContent(2, width, 5).subarray(width);
    const second = unitContent(1, width, 6)
      .subarray(width)
      .map((v) => v * 3); // not unit: normalized like append
    const replaced = make();
    replaced.appendItems(first, 2);
    replaced.replaceItems(Int32Array.of(22), second);
    const appended = make();
    appended.appendItems(Float32Array.of(...first.subarray(0, width), ...second), 2);
    close(replaced.itemEmbeddings(), appended.itemEmbeddings(), `${strategy} item table`);
    const inputs = [Int32Array.of(3, 22, 21), Int32Array.of(22)];
    const a = new Float32Array(2 * 23);
    const b = new Float32Array(2 * 23);
    replaced.score(inputs, a);
    appended.score(inputs, b);
    close(a, b, `${strategy} scores`);
    assert.throws(() => replaced.replaceItems(Int32Array.of(23), second), /row 23 does not exist/);
  }
  const id = new SASRec(
    sasrecConfig({ numItems: 5, d, strategy: 'id', seed: 1 }),
    undefined,
    referenceKernels,
  );
  assert.throws(() => id.replaceItems(Int32Array.of(1), new Float32Array(d)), /'id' strategy/);
});

test('KNN rows and lexical rows are replaced in place', () => {
  const vectors = unitContent(4, 6, 1);
  const knn = new KnnScoringModel(vectors, 6, 4);
  const fresh = unitContent(1, 6, 2)
    .subarray(6)
    .map((v) => v * 2);
  knn.replaceItems(Int32Array.of(2), fresh);
  const expected = Float32Array.from(vectors);
  expected.set(unitContent(1, 6, 2).subarray(6), 12);
  close(knn.itemEmbeddings(), expected, 'knn rows');

  const csr = (rows: number[][]): CsrMatrix => {
    const indptr = new Int32Array(rows.length + 1);
    const indices: number[] = [];
    const values: number[] = [];
    rows.forEach((row, r) => {
      row.forEach((v, c) => {
        if (v !== 0) {
          indices.push(c);
          values.push(v);
        }
      });
      indptr[r + 1] = indices.length;
    });
    return {
      rows: rows.length,
      cols: 3,
      indptr,
      indices: Int32Array.from(indices),
      values: Float32Array.from(values),
    };
  };
  const index = new LexicalIndex(
    csr([
      [0, 0, 0],
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ]),
    4,
  );
  index.replace(
    Int32Array.of(1, 3),
    csr([
      [0, 2, 1],
      [1, 0, 0],
    ]),
  );
  const target = new LexicalIndex(
    csr([
      [0, 0, 0],
      [0, 2, 1],
      [0, 1, 0],
      [1, 0, 0],
    ]),
    4,
  );
  const inputs = [Int32Array.of(1), Int32Array.of(3, 2)];
  const a = new Float32Array(2 * 4);
  const b = new Float32Array(2 * 4);
  index.score(inputs, a);
  target.score(inputs, b);
  close(a, b, 'lexical scores');
});

test('the live catalog reuses the row of an added or cold item and appends one for a warm item', () => {
  const catalog = new LiveCatalog(['', 'w1', 'w2', 'c1'], 2); // w1, w2 warm; c1 cold
  assert.deepEqual(catalog.put('n1'), { index: 4, reused: false, retired: 0 });
  for (let i = 0; i < 100; i++) assert.deepEqual(catalog.put('n1'), { index: 4, reused: true, retired: 0 });
  assert.deepEqual(catalog.put('c1'), { index: 3, reused: true, retired: 0 });
  // A trained item's update leaves the warm range: a new row, the warm one retired; later updates reuse it.
  assert.deepEqual(catalog.put('w1'), { index: 5, reused: false, retired: 1 });
  assert.deepEqual(catalog.put('w1'), { index: 5, reused: true, retired: 0 });
  assert.equal(catalog.numRows, 6);
  assert.equal(catalog.activeCount, 4);
  // Deleted: the row stays for histories; adding the id again gets that row back, however often.
  for (let i = 0; i < 50; i++) {
    assert.equal(catalog.remove('n1'), 4);
    assert.equal(catalog.historyIndex('n1'), 4);
    assert.equal(catalog.get('n1'), undefined);
    assert.deepEqual(catalog.put('n1'), { index: 4, reused: true, retired: 0 });
  }
  assert.equal(catalog.numRows, 6);
  assert.equal(catalog.activeCount, 4);
  // A deleted warm item added again leaves the warm range (a new row, as its update), then keeps that row.
  assert.equal(catalog.remove('w2'), 2);
  assert.deepEqual(catalog.put('w2'), { index: 6, reused: false, retired: 0 });
  assert.equal(catalog.remove('w2'), 6);
  assert.deepEqual(catalog.put('w2'), { index: 6, reused: true, retired: 0 });
  assert.equal(catalog.numRows, 7);
  assert.equal(catalog.activeCount, 4);
});

test('a retired row reused in the same burst of changes is recommendable again, in the scorer and its replay', async () => {
  const d = 8;
  const model = new SASRec(
    sasrecConfig({ numItems: 6, d, heads: 2, maxLength: 4, strategy: 'content-delta', seed: 2 }),
    unitContent(6, d, 1),
    referenceKernels,
  );
  const engine = new ScoringEngine([new InlineBackend(new Scorer(model, 6))]);
  const request = {
    history: Int32Array.of(1),
    exclude: new Int32Array(0),
    k: 10,
    includeCold: true,
    excludeSeen: false,
  };
  const rows = async () => Array.from((await engine.recommend(request)).indices).sort((a, b) => a - b);
  assert.deepEqual(await rows(), [1, 2, 3, 4, 5, 6]);
  // Delete row 5 and add it again within one tick: the retirement is queued before the replacement.
  engine.retire(5);
  engine.replace(5, unitContent(1, d, 9).subarray(d));
  engine.retire(6);
  assert.deepEqual(await rows(), [1, 2, 3, 4, 5]);
  engine.retire(5);
  assert.deepEqual(await rows(), [1, 2, 3, 4]);
  engine.replace(5, unitContent(1, d, 9).subarray(d));
  assert.deepEqual(await rows(), [1, 2, 3, 4, 5]);
  await engine.close();
});
