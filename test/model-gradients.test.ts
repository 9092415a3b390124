/**
 * Finite-difference gradient checks of SASRec for every parameter group in every embedding strategy, on a tiny
 * model (d = 8, 2 blocks, 2 heads, T = 5, 20 items) with the reference kernels (and the native ones when built).
 * Central differences with eps = 1e-3 (small enough not to cross ReLU kinks or feel curvature, large enough for
 * float32 forward passes): each checked entry must agree to 1% (+ a small absolute floor for float32 noise), and the
 * directional derivative along each group's gradient must equal the gradient's norm to 1%.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadNativeKernels, referenceKernels } from '../src/kernels/index.js';
import type { Kernels } from '../src/kernels/types.js';
import { EMBEDDING_STRATEGIES, type EmbeddingStrategy } from '../src/model/embeddings.js';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { Random } from '../src/util/random.js';
import { centralDifference, tinyBatch, unitContent } from './tiny-model.js';

const NUM_ITEMS = 20;
const D = 8;

function tinyModel(
  strategy: EmbeddingStrategy,
  kernels: Kernels,
  dropout: number,
  activation: 'relu' | 'gelu' = 'relu',
): SASRec {
  const config = sasrecConfig({
    numItems: NUM_ITEMS,
    d: D,
    blocks: 2,
    heads: 2,
    ffWidth: 12,
    dropout,
    maxLength: 6,
    strategy,
    deltaMax: 0.5,
    activation,
    seed: 3,
  });
  const model = new SASRec(config, strategy === 'id' ? undefined : unitContent(NUM_ITEMS, D, 11), kernels);
  // Move every parameter off its initial value (unit gains, zero biases, zero delta) so no term is trivially 0.
  const rng = new Random(5);
  for (const g of model.paramGroups()) {
    for (let i = g.firstRow * g.rowWidth; i < g.param.length; i++) g.param[i] += 0.15 * rng.nextGaussian();
  }
  model.parametersChanged();
  return model;
}

function checkGradients(
  strategy: EmbeddingStrategy,
  kernels: Kernels,
  dropout: number,
  dropoutSeed: number,
  activation: 'relu' | 'gelu' = 'relu',
): void {
  const model = tinyModel(strategy, kernels, dropout, activation);
  const batch = tinyBatch();
  const loss = () => model.forwardBackward(batch, true, dropoutSeed);
  loss();
  const groups = model.paramGroups();
  const analytic = groups.map((g) => Float32Array.from(g.grad));
  if (strategy === 'content-frozen')
    assert.equal(groups.length, 1, 'content-frozen trains only dense weights');
  else assert.equal(groups.length, 2);
  const eps = 1e-3;
  const tolerance = 1e-2;
  const floor = kernels.name === 'native' ? 1e-3 : 3e-4;

  // Per-tensor entries: the largest gradients of each named tensor plus random ones.
  const tensors = model.parameters().filter((t) => groups.some((g) => sharesBuffer(g.param, t.data)));
  const rng = new Random(17);
  let checked = 0;
  for (const t of tensors) {
    const gi = groups.findIndex((g) => sharesBuffer(g.param, t.data));
    const g = groups[gi];
    const offset = (t.data.byteOffset - g.param.byteOffset) / 4;
    const grad = analytic[gi].subarray(offset, offset + t.data.length);
    const candidates = [...grad.keys()]
      .filter((i) => offset + i >= g.firstRow * g.rowWidth)
      .sort((a, b) => Math.abs(grad[b]) - Math.abs(grad[a]));
    const pick = new Set(candidates.slice(0, 4));
    for (let r = 0; r < 3; r++) pick.add(candidates[rng.nextInt(candidates.length)]);
    let maxAbs = 0;
    for (const i of pick) {
      const numeric = centralDifference(t.data, i, eps, model, loss);
      const a = grad[i];
      maxAbs = Math.max(maxAbs, Math.abs(a));
      assert.ok(
        Math.abs(numeric - a) <= tolerance * Math.max(Math.abs(numeric), Math.abs(a)) + floor,
        `${strategy} ${kernels.name} dropout ${dropout}: ${t.name}[${i}] analytic ${a} vs numeric ${numeric}`,
      );
      checked++;
    }
    if (t.name.endsWith('attn.bk')) {
      // Adding the same vector to every key shifts all of a query's scores equally: softmax ignores it.
      assert.ok(maxAbs < 1e-5, `${strategy}: ${t.name} should have a zero gradient, max ${maxAbs}`);
    } else {
      // An all-zero gradient would make the check vacuous.
      assert.ok(maxAbs > 1e-3, `${strategy}: ${t.name} has an all-zero gradient`);
    }
  }
  assert.ok(checked > 0, 'no entries checked');

  // Directional derivative along each group's gradient: d/ds L(p + s g/|g|) = |g|.
  groups.forEach((g, gi) => {
    const grad = analytic[gi];
    let norm2 = 0;
    for (let i = g.firstRow * g.rowWidth; i < grad.length; i++) norm2 += grad[i] * grad[i];
    const norm = Math.sqrt(norm2);
    const saved = Float32Array.from(g.param);
    const shift = (s: number) => {
      for (let i = g.firstRow * g.rowWidth; i < grad.length; i++)
        g.param[i] = saved[i] + (s * grad[i]) / norm;
      model.parametersChanged();
      return loss();
    };
    const numeric = (shift(eps) - shift(-eps)) / (2 * eps);
    g.param.set(saved);
    assert.ok(
      Math.abs(numeric - norm) <= 1e-2 * norm,
      `${strategy} ${kernels.name}: group ${g.name} directional derivative ${numeric} vs |grad| ${norm}`,
    );
  });
}

function sharesBuffer(a: Float32Array, b: Float32Array): boolean {
  return (
    a.buffer === b.buffer &&
    b.byteOffset >= a.byteOffset &&
    b.byteOffset + b.byteLength <= a.byteOffset + a.byteLength
  );
}

const native = loadNativeKernels();
const implementations: [string, Kernels | null][] = [
  ['typescript', referenceKernels],
  ['native', native],
];

for (const [name, kernels] of implementations) {
  // content-map (a high-dimensional content width and a map) has its own checks in model-content-map.test.ts.
  for (const strategy of EMBEDDING_STRATEGIES.filter((s) => s !== 'content-map')) {
    test(
      `gradients match finite differences: ${strategy}, ${name} kernels`,
      { skip: kernels ? false : 'native addon not built' },
      () => {
        checkGradients(strategy, kernels!, 0, 0);
      },
    );
  }
  test(
    `gradients match finite differences with dropout 0.3 and a fixed seed, ${name} kernels`,
    { skip: kernels ? false : 'native addon not built' },
    () => {
      checkGradients('content-delta', kernels!, 0.3, 12345);
    },
  );
  test(
    `gradients match finite differences with GELU, ${name} kernels`,
    { skip: kernels ? false : 'native addon not built' },
    () => {
      checkGradients('content-init', kernels!, 0, 0, 'gelu');
    },
  );
}

test('gradient check would catch a wrong gradient', () => {
  // Sanity of the harness: the same comparison against a deliberately scaled gradient must fail.
  const model = tinyModel('id', referenceKernels, 0);
  const batch = tinyBatch();
  model.forwardBackward(batch, true, 0);
  const w = model.params.blocks[1].wv;
  const gw = model.grads.blocks[1].wv;
  let i = 0;
  for (let j = 1; j < gw.length; j++) if (Math.abs(gw[j]) > Math.abs(gw[i])) i = j;
  const wrong = gw[i] * 1.03;
  const saved = w[i];
  w[i] = saved + 1e-3;
  const plus = model.forwardBackward(batch, true, 0);
  w[i] = saved - 1e-3;
  const minus = model.forwardBackward(batch, true, 0);
  w[i] = saved;
  const numeric = (plus - minus) / 2e-3;
  assert.ok(Math.abs(numeric - gw[i]) <= 1e-2 * Math.abs(numeric) + 3e-4, 'the true gradient passes');
  assert.ok(
    Math.abs(numeric - wrong) > 1e-2 * Math.max(Math.abs(numeric), Math.abs(wrong)) + 3e-4,
    'a 3% error fails',
  );
});
