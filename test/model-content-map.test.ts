/**
 * The `content-map` item embedding (E = C_hi W + b + D): finite-difference gradients of the map, its bias, the
 * delta and a dense tensor; the delta bound and fixed padding row under training; new items mapped by the trained
 * map; and a parameters() round trip. Tiny model (d = 8, H = 12, 20 items) with the reference kernels.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadNativeKernels, referenceKernels } from '../src/kernels/index.js';
import type { Kernels } from '../src/kernels/types.js';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { createOptimizer, trainStep } from '../src/train/trainer.js';
import { Random } from '../src/util/random.js';
import { centralDifference, tinyBatch, unitContent } from './tiny-model.js';

const NUM_ITEMS = 20;
const D = 8;
const H = 12;

function tinyModel(
  deltaMax = 0.5,
  activation: 'relu' | 'gelu' = 'relu',
  kernels: Kernels = referenceKernels,
  deltaDropout = 0,
): SASRec {
  const config = sasrecConfig({
    numItems: NUM_ITEMS,
    d: D,
    blocks: 2,
    heads: 2,
    ffWidth: 12,
    dropout: 0,
    maxLength: 6,
    strategy: 'content-map',
    deltaMax,
    contentDim: H,
    activation,
    deltaDropout,
    seed: 3,
  });
  return new SASRec(config, unitContent(NUM_ITEMS, H, 11), kernels);
}

function checkGradients(kernels: Kernels, deltaDropout = 0): void {
  // GELU: the map bias moves every item embedding at once, enough for a 1e-3 step to cross ReLU kinks.
  const model = tinyModel(0.5, 'gelu', kernels, deltaDropout);
  const floor = kernels.name === 'native' ? 1e-3 : 3e-4;
  const rng = new Random(5);
  for (const g of model.paramGroups()) {
    for (let i = g.firstRow * g.rowWidth; i < g.param.length; i++) g.param[i] += 0.15 * rng.nextGaussian();
  }
  model.parametersChanged();
  const batch = tinyBatch();
  // A fixed dropout seed: the same delta-dropout mask in every evaluation.
  const loss = () => model.forwardBackward(batch, true, 7);
  loss();
  const groups = model.paramGroups();
  assert.deepEqual(
    groups.map((g) => g.name),
    ['dense', 'delta', 'map.weight', 'map.bias'],
  );
  const analytic = groups.map((g) => Float32Array.from(g.grad));
  const eps = 1e-3;
  groups.forEach((g, gi) => {
    const grad = analytic[gi];
    const from = g.firstRow * g.rowWidth;
    const order = [...grad.keys()]
      .filter((i) => i >= from)
      .sort((a, b) => Math.abs(grad[b]) - Math.abs(grad[a]));
    const pick = new Set(order.slice(0, 4));
    for (let r = 0; r < 3; r++) pick.add(order[rng.nextInt(order.length)]);
    assert.ok(Math.abs(grad[order[0]]) > 1e-3, `${g.name}: all-zero gradient`);
    for (const i of pick) {
      const numeric = centralDifference(g.param, i, eps, model, loss);
      assert.ok(
        Math.abs(numeric - grad[i]) <= 1e-2 * Math.max(Math.abs(numeric), Math.abs(grad[i])) + floor,
        `${kernels.name} ${g.name}[${i}]: analytic ${grad[i]} vs numeric ${numeric}`,
      );
    }
    // Directional derivative along the whole group's gradient equals its norm.
    let norm2 = 0;
    for (let i = from; i < grad.length; i++) norm2 += grad[i] * grad[i];
    const norm = Math.sqrt(norm2);
    const saved = Float32Array.from(g.param);
    const shift = (s: number) => {
      for (let i = from; i < grad.length; i++) g.param[i] = saved[i] + (s * grad[i]) / norm;
      model.parametersChanged();
      return loss();
    };
    const numeric = (shift(eps) - shift(-eps)) / (2 * eps);
    g.param.set(saved);
    model.parametersChanged();
    assert.ok(
      Math.abs(numeric - norm) <= 1e-2 * norm,
      `${kernels.name} ${g.name}: directional ${numeric} vs |grad| ${norm}`,
    );
  });
}

test('content-map with delta dropout 0.5: gradients match finite differences (dropped rows get none)', () =>
  checkGradients(referenceKernels, 0.5));

test('delta dropout: a training step drops some deltas, inference uses all of them', () => {
  const model = tinyModel(0.5, 'relu', referenceKernels, 0.5);
  const rng = new Random(8);
  const delta = model.items.weight!;
  for (let i = D; i < delta.length; i++) delta[i] = 0.1 * rng.nextGaussian();
  model.parametersChanged();
  const full = Float32Array.from(model.itemEmbeddings());
  model.forwardBackward(tinyBatch(), true, 7);
  const trained = model.items.matrix;
  let dropped = 0;
  for (let r = 1; r <= NUM_ITEMS; r++) {
    let same = true;
    for (let j = 0; j < D; j++) if (Math.abs(trained[r * D + j] - full[r * D + j]) > 1e-6) same = false;
    if (!same) {
      dropped++;
      for (let j = 0; j < D; j++) {
        assert.ok(Math.abs(trained[r * D + j] + delta[r * D + j] - full[r * D + j]) < 1e-5, `row ${r}`);
        assert.equal(model.items.grad![r * D + j], 0, `dropped row ${r} gets no delta gradient`);
      }
    }
  }
  assert.ok(dropped > 0 && dropped < NUM_ITEMS, `some rows dropped (got ${dropped} of ${NUM_ITEMS})`);
  assert.deepEqual(model.itemEmbeddings(), full, 'inference rebuilds E with every delta');
  // Over many steps about half of the rows are dropped.
  let total = 0;
  for (let seed = 1; seed <= 20; seed++) {
    model.items.refresh(referenceKernels, seed);
    const e = model.items.matrix;
    for (let r = 1; r <= NUM_ITEMS; r++) if (Math.abs(e[r * D] - full[r * D]) > 1e-6) total++;
  }
  assert.ok(total > 160 && total < 240, `about half of 400 row-steps dropped (got ${total})`);
  assert.throws(
    () =>
      new SASRec(
        sasrecConfig({ numItems: 3, d: 4, strategy: 'content-init', deltaDropout: 0.3 }),
        new Float32Array(16),
      ),
    /deltaDropout needs a strategy with a delta/,
  );
});

const native = loadNativeKernels();
test('content-map: gradients of map, bias, delta and dense weights match finite differences, typescript kernels', () =>
  checkGradients(referenceKernels));
test(
  'content-map: gradients match finite differences, native kernels',
  { skip: native ? false : 'native addon not built' },
  () => checkGradients(native!),
);

test('content-map: delta rows stay within deltaMax and the padding rows stay zero while training', () => {
  const deltaMax = 0.05;
  const model = tinyModel(deltaMax);
  const optimizer = createOptimizer(model, { lr: 0.05 });
  const batch = tinyBatch();
  const mapBefore = Float32Array.from(model.items.mapWeight!);
  let first = 0;
  let last = 0;
  for (let step = 0; step < 30; step++) {
    last = trainStep(model, optimizer, batch);
    if (step === 0) first = last;
  }
  assert.ok(last < first, `loss should fall (${first} -> ${last})`);
  const delta = model.items.weight!;
  let maxNorm = 0;
  for (let r = 1; r <= NUM_ITEMS; r++) {
    let s = 0;
    for (let j = 0; j < D; j++) s += delta[r * D + j] ** 2;
    maxNorm = Math.max(maxNorm, Math.sqrt(s));
  }
  assert.ok(maxNorm <= deltaMax * (1 + 1e-5), `delta row norm ${maxNorm} > ${deltaMax}`);
  assert.ok(maxNorm > deltaMax * 0.9, `with lr 0.05 some delta row should reach the bound (max ${maxNorm})`);
  for (let j = 0; j < D; j++) assert.equal(delta[j], 0, 'padding delta row');
  const e = model.itemEmbeddings();
  for (let j = 0; j < D; j++) assert.equal(e[j], 0, 'padding embedding row');
  let moved = 0;
  for (let i = 0; i < mapBefore.length; i++)
    moved = Math.max(moved, Math.abs(mapBefore[i] - model.items.mapWeight![i]));
  assert.ok(moved > 1e-3, 'the shared map is trained');
});

test('content-map: new items get C_hi W + b from the trained map; parameters() restores the model', () => {
  const model = tinyModel();
  const optimizer = createOptimizer(model, { lr: 0.02 });
  for (let step = 0; step < 5; step++) trainStep(model, optimizer, tinyBatch());
  const extra = unitContent(2, H, 99).subarray(H); // two new rows
  // Raw (not unit-norm) content is normalized on the way in.
  model.appendItems(
    extra.map((v) => v * 2.5),
    2,
  );
  assert.equal(model.numItems, NUM_ITEMS + 2);
  const e = model.itemEmbeddings();
  const w = model.items.mapWeight!;
  const b = model.items.mapBias!;
  for (let r = 0; r < 2; r++) {
    for (let j = 0; j < D; j++) {
      let expected = b[j];
      for (let p = 0; p < H; p++) expected += extra[r * H + p] * w[p * D + j];
      assert.ok(Math.abs(e[(NUM_ITEMS + 1 + r) * D + j] - expected) < 1e-5, `new item ${r} component ${j}`);
    }
  }
  assert.throws(() => model.appendItems(new Float32Array(D), 1), /expected count x 12/);

  const inputs = [Int32Array.of(3, 7, 21), Int32Array.of(22), Int32Array.of(5)];
  const cols = model.numItems + 1;
  const before = new Float32Array(inputs.length * cols);
  model.score(inputs, before);
  const tensors = new Map(model.parameters().map((t) => [t.name, Float32Array.from(t.data)]));
  assert.deepEqual([...tensors.keys()].slice(0, 4), ['content', 'delta', 'map.weight', 'map.bias']);
  const restored = SASRec.fromParameters(model.config, tensors, referenceKernels);
  assert.equal(restored.numItems, NUM_ITEMS + 2);
  const after = new Float32Array(inputs.length * cols);
  restored.score(inputs, after);
  assert.deepEqual(after, before);
});

test('content-map: config errors are clear', () => {
  assert.throws(
    () => new SASRec(sasrecConfig({ numItems: 3, d: 4, strategy: 'content-map' }), new Float32Array(16)),
    /contentDim/,
  );
  assert.throws(
    () =>
      new SASRec(
        sasrecConfig({ numItems: 3, d: 4, strategy: 'content-map', contentDim: 6 }),
        new Float32Array(16),
      ),
    /content: 16 values, expected/,
  );
});
