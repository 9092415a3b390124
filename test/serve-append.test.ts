/**
 * Appending items one at a time (the service's POST /items): the item tables grow by capacity, so an append writes
 * its own row instead of copying (and re-transposing) the whole table, and the scores are exactly those of a model
 * built with the items from the start.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CsrMatrix } from '../src/content/sparse.js';
import { kernels } from '../src/kernels/index.js';
import { LexicalIndex } from '../src/model/fusion.js';
import { SASRec, sasrecConfig, type SASRecConfig } from '../src/model/sasrec.js';
import { KnnScoringModel } from '../src/serve/models.js';
import { Scorer, type ScoringModel, type ServingFusion } from '../src/serve/scorer.js';
import { packBatch } from '../src/serve/engine.js';
import { Random } from '../src/util/random.js';
import { unitContent } from './tiny-model.js';

const N = 30;
const ADDED = 40;

/** A model of N items with every parameter randomized (deltas too). */
function trained(overrides: Partial<SASRecConfig>, content: Float32Array): SASRec {
  const config = sasrecConfig({ numItems: N, d: 16, maxLength: 8, heads: 2, seed: 3, ...overrides });
  const model = new SASRec(config, content, kernels);
  const rng = new Random(7);
  for (const group of model.paramGroups()) {
    for (let i = group.firstRow * group.rowWidth; i < group.param.length; i++)
      group.param[i] += 0.1 * rng.nextGaussian();
  }
  model.parametersChanged();
  return model;
}

/** The same model saved with the added items from the start (their rows: content, zero delta). */
function builtWith(model: SASRec, extra: Float32Array): SASRec {
  const tensors = new Map<string, Float32Array>();
  for (const t of model.parameters()) {
    const rows = t.name === 'content' || t.name === 'items' || t.name === 'delta';
    const width = t.shape[t.shape.length - 1];
    const data = new Float32Array(t.data.length + (rows ? ADDED * width : 0));
    data.set(t.data);
    if (t.name === 'content' || t.name === 'items') data.set(extra, t.data.length);
    tensors.set(t.name, data);
  }
  return SASRec.fromParameters({ ...model.config, numItems: N + ADDED }, tensors, kernels);
}

function scoreAll(scorer: Scorer, histories: Int32Array[]): Float32Array[] {
  const batch = packBatch(
    histories.map((history) => ({
      history,
      exclude: new Int32Array(0),
      k: N + ADDED,
      includeCold: true,
      excludeSeen: false,
    })),
  );
  const out: Float32Array[] = [];
  scorer.scoreEach(batch, (r, indices, scores) => {
    const byRow = new Float32Array(N + ADDED + 1).fill(NaN);
    indices.forEach((row, i) => (byRow[row] = scores[i]));
    out[r] = byRow;
  });
  return out;
}

function histories(): Int32Array[] {
  const rng = new Random(11);
  return Array.from({ length: 6 }, (_, i) =>
    Int32Array.from({ length: 1 + i * 2 }, () => 1 + rng.nextInt(N + ADDED)),
  );
}

/** The buffer the scorer multiplies by (private: what this test is about is that it is not reallocated). */
function scorerMatrix(scorer: Scorer): ArrayBufferLike {
  return (scorer as unknown as { items: Float32Array }).items.buffer; // panels, or transposed with fusion
}

test('one-at-a-time appends score exactly as a model built with the items from the start', () => {
  for (const strategy of ['content-delta', 'content-map', 'content-frozen', 'content-init'] as const) {
    const width = strategy === 'content-map' ? 24 : 16;
    const model = trained(
      { strategy, contentDim: strategy === 'content-map' ? 24 : undefined },
      unitContent(N, width, 1),
    );
    const extra = unitContent(ADDED, width, 2).subarray(width);
    const reference = builtWith(model, extra);
    const scorer = new Scorer(model, N);
    scorer.scoreEach(packBatch([]), () => {}); // inference tables built before the appends
    model.encode([Int32Array.of(1, 2)], new Float32Array(16));
    for (let i = 0; i < ADDED; i++) scorer.appendItems(extra.subarray(i * width, (i + 1) * width), 1);
    const got = scoreAll(scorer, histories());
    const want = scoreAll(new Scorer(reference, N), histories());
    got.forEach((row, r) => assert.deepEqual(row, want[r], `${strategy}: request ${r}`));
  }
});

test('appending one item writes its own row: neither the item table nor the scorer matrix is reallocated', () => {
  const n = 200;
  const model = new SASRec(
    sasrecConfig({ numItems: n, d: 16, maxLength: 8, heads: 2, seed: 3 }),
    unitContent(n, 16, 1),
    kernels,
  );
  const scorer = new Scorer(model, n);
  const extra = unitContent(400, 16, 2).subarray(16);
  const append = (i: number) => scorer.appendItems(extra.subarray(i * 16, (i + 1) * 16), 1);
  // The tables are made with spare room, so the first append after the model is made writes its row like any other.
  const table = model.itemEmbeddings().buffer;
  const matrix = scorerMatrix(scorer);
  for (let i = 0; i < 8; i++) {
    append(i);
    assert.equal(model.itemEmbeddings().buffer, table, `append ${i} moved the item table`);
    assert.equal(scorerMatrix(scorer), matrix, `append ${i} moved the scorer's matrix`);
  }
  // Many appends move them only a logarithmic number of times.
  let moves = 0;
  let last = [model.itemEmbeddings().buffer, scorerMatrix(scorer)];
  for (let i = 8; i < 400; i++) {
    append(i);
    const now = [model.itemEmbeddings().buffer, scorerMatrix(scorer)];
    if (now[0] !== last[0] || now[1] !== last[1]) moves++;
    last = now;
  }
  assert.equal(model.numItems, n + 400);
  assert.ok(moves <= 12, `${moves} reallocations in 392 appends`);
});

/** Every per-row table of a served model and its scorer (private fields read: they are what this test is about). */
function rowTables(model: SASRec, scorer: Scorer, index: LexicalIndex | null): Map<string, ArrayBufferLike> {
  const tables = new Map<string, ArrayBufferLike>();
  for (const t of model.parameters())
    if (t.shape[0] === model.numItems + 1) tables.set(t.name, t.data.buffer);
  tables.set('E', model.itemEmbeddings().buffer);
  const s = scorer as unknown as Record<string, unknown>;
  for (const name of ['items', 'active', 'excluded'])
    tables.set(`scorer.${name}`, (s[name] as Float32Array).buffer);
  const quantized = s.quantized as Record<string, Float32Array> | null;
  if (quantized) for (const [name, a] of Object.entries(quantized)) tables.set(`int8.${name}`, a.buffer);
  if (index) {
    const rows = (index as unknown as { rows: Record<string, Float32Array> }).rows;
    for (const name of ['rowStart', 'rowEnd', 'indices', 'values'])
      tables.set(`lexical.${name}`, rows[name].buffer);
  }
  return tables;
}

test('the first appends after a load move no table: each writes its own row into spare room', () => {
  const n = 1000;
  const cols = 50;
  for (const strategy of ['content-delta', 'content-map', 'content-frozen', 'content-init'] as const) {
    for (const layout of ['panels', 'int8', 'lexical'] as const) {
      const width = strategy === 'content-map' ? 24 : 16;
      const saved = trained(
        { strategy, numItems: n, contentDim: strategy === 'content-map' ? 24 : undefined },
        unitContent(n, width, 1),
      );
      // Loading a saved model: rebuilt from its tensors (copies, as a file read gives).
      const tensors = new Map(saved.parameters().map((t) => [t.name, t.data.slice()]));
      const model = SASRec.fromParameters(saved.config, tensors, kernels);
      const index = layout === 'lexical' ? new LexicalIndex(csr(sparseRows(n + 1, cols, 1), cols), 5) : null;
      const fusion: ServingFusion | null = index && {
        index,
        weights: { weight: 0.5 },
        rowsFor: () => csr([[[3, 1]]], cols),
      };
      const scorer = new Scorer(model, n, fusion, layout === 'int8');
      model.encode([Int32Array.of(1, 2)], new Float32Array(16)); // the inference tables (first-block K/V rows)
      const kv = (model as unknown as { tables: { itemK: Float32Array } }).tables.itemK.buffer;
      const before = rowTables(model, scorer, index);
      assert.ok(before.size >= (layout === 'panels' ? 5 : 7), `${strategy} ${layout}: ${[...before.keys()]}`);
      const extra = unitContent(64, width, 2).subarray(width);
      for (let i = 0; i < 64; i++) {
        scorer.appendItems(extra.subarray(i * width, (i + 1) * width), 1);
        model.encode([Int32Array.of(1, n + 1 + i)], new Float32Array(16));
      }
      for (const [name, buffer] of rowTables(model, scorer, index))
        assert.equal(buffer, before.get(name), `${strategy} ${layout}: ${name} was moved`);
      assert.equal((model as unknown as { tables: { itemK: Float32Array } }).tables.itemK.buffer, kv);
      assert.equal(model.numItems, n + 64);
    }
  }
});

test('KNN rows appended one at a time equal KNN built with them', () => {
  const width = 6;
  const all = unitContent(N + ADDED, width, 5).map((v) => v * 2);
  const knn = new KnnScoringModel(all.slice(0, (N + 1) * width), width, 8);
  const scorer = new Scorer(knn as ScoringModel, N);
  let moves = 0;
  for (let i = 0; i < ADDED; i++) {
    const row = N + 1 + i;
    const before = knn.itemEmbeddings().buffer;
    scorer.appendItems(all.subarray(row * width, (row + 1) * width), 1);
    if (knn.itemEmbeddings().buffer !== before) moves++;
  }
  assert.ok(moves <= 6, `${moves} reallocations of the KNN rows in ${ADDED} appends`);
  const reference = new Scorer(new KnnScoringModel(all, width, 8), N);
  const got = scoreAll(scorer, histories());
  const want = scoreAll(reference, histories());
  got.forEach((row, r) => assert.deepEqual(row, want[r], `knn request ${r}`));
});

/** Random sparse rows (row 0 empty) over `cols` columns. */
function sparseRows(rows: number, cols: number, seed: number): number[][][] {
  const rng = new Random(seed);
  return Array.from({ length: rows }, (_, r) =>
    r === 0
      ? []
      : Array.from({ length: 1 + rng.nextInt(4) }, () => [rng.nextInt(cols), 0.1 + rng.nextFloat()]),
  ).map((row) => [...new Map(row.map(([c, v]) => [c, v])).entries()].sort((a, b) => a[0] - b[0]));
}

function csr(rows: number[][][], cols: number): CsrMatrix {
  const indptr = new Int32Array(rows.length + 1);
  rows.forEach((row, r) => (indptr[r + 1] = indptr[r] + row.length));
  return {
    rows: rows.length,
    cols,
    indptr,
    indices: Int32Array.from(rows.flat(), ([c]) => c),
    values: Float32Array.from(rows.flat(), ([, v]) => v),
  };
}

test('lexical rows appended and re-encoded one at a time score exactly as an index built with them', () => {
  const cols = 12;
  const base = sparseRows(N + 1, cols, 1);
  const added = sparseRows(ADDED + 1, cols, 2).slice(1);
  const replacements = sparseRows(4, cols, 3).slice(1);
  const index = new LexicalIndex(csr(base, cols), 5);
  for (const row of added) index.append(csr([row], cols));
  const replaced = [2, N + 3, N + 3]; // a saved row, an added row, the same added row again
  replaced.forEach((r, i) => index.replace(Int32Array.of(r), csr([replacements[i]], cols)));
  const final = [...base, ...added];
  replaced.forEach((r, i) => (final[r] = replacements[i]));
  const reference = new LexicalIndex(csr(final, cols), 5);
  const inputs = histories();
  const width = N + ADDED + 1;
  const got = new Float32Array(inputs.length * width);
  const want = new Float32Array(inputs.length * width);
  index.score(inputs, got);
  reference.score(inputs, want);
  assert.deepEqual(got, want);
  assert.ok(want.some((v) => v > 0));
});
