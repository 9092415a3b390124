/**
 * The sampled losses (sampled softmax, gBCE) and lazy Adam (docs/large-catalogs.md):
 * - central-difference gradient checks of the `sampledLoss` kernel, TypeScript and native, both losses, with and
 *   without accidental hits, with a zero (uniform) and a non-zero (popularity, logQ) correction;
 * - exact values: masked negatives leave the loss unchanged, gBCE's beta, no overflow at huge logits;
 * - native vs reference agreement over chunk and vector-width edges;
 * - the grouped kernel (negatives per sequence): gradient checks, equal to one sampledLoss call per group, hits masked
 *   only within their group, native vs reference;
 * - lazy Adam equals dense Adam on rows touched every step (kernels and the optimizer);
 * - model-level gradient checks of SASRec with a sampled loss (compact item gradient included), negatives per batch
 *   and per sequence (rows drawn by several sequences get one summed compact gradient row).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadNativeKernels, referenceKernels } from '../src/kernels/index.js';
import { sigmoid, softplus } from '../src/kernels/reference.js';
import type { Kernels } from '../src/kernels/types.js';
import type { EmbeddingStrategy, ParamGroup } from '../src/model/embeddings.js';
import {
  gbceBeta,
  SASRec,
  sasrecConfig,
  type LossKind,
  type NegativesPer,
  type SamplerKind,
} from '../src/model/sasrec.js';
import { Adam } from '../src/train/optimizer.js';
import { Random } from '../src/util/random.js';
import { centralDifference, tinyBatch, unitContent } from './tiny-model.js';

const native = loadNativeKernels();
const IMPLS: Kernels[] = native ? [referenceKernels, native] : [referenceKernels];
const nativeSkip = native ? false : 'native addon not built; run `npm run install`';

function gaussian(n: number, rng: Random, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.nextGaussian() * scale);
}

interface Case {
  rows: number;
  d: number;
  k: number;
  hidden: Float32Array;
  positives: Float32Array;
  negatives: Float32Array;
  targets: Int32Array;
  negativeIds: Int32Array;
  correction: Float32Array;
}

/** Random inputs; with `hits`, some negatives equal some rows' targets (accidental hits). */
function makeCase(rows: number, d: number, k: number, seed: number, hits: boolean, corrected: boolean): Case {
  const rng = new Random(seed);
  const targets = Int32Array.from({ length: rows }, () => 1 + rng.nextInt(1000));
  const negativeIds = Int32Array.from({ length: k }, () => 1001 + rng.nextInt(1000));
  if (hits) {
    negativeIds[0] = targets[0];
    negativeIds[k - 1] = targets[rows - 1];
    if (k > 2) negativeIds[1] = targets[0]; // the same hit twice
  }
  return {
    rows,
    d,
    k,
    hidden: gaussian(rows * d, rng, 0.7),
    positives: gaussian(rows * d, rng, 0.7),
    negatives: gaussian(k * d, rng, 0.7),
    targets,
    negativeIds,
    correction: corrected ? Float32Array.from({ length: k }, () => rng.nextGaussian()) : new Float32Array(k),
  };
}

function run(kernels: Kernels, c: Case, gbce: boolean, beta: number, scale: number, bias = 0) {
  const dHidden = new Float32Array(c.rows * c.d).fill(9);
  const dPositives = new Float32Array(c.rows * c.d).fill(9);
  const dNegatives = new Float32Array(c.k * c.d).fill(9);
  const dBias = Float32Array.of(9);
  const loss = kernels.sampledLoss(
    c.hidden,
    c.positives,
    c.negatives,
    c.targets,
    c.negativeIds,
    c.correction,
    c.rows,
    c.d,
    c.k,
    gbce,
    beta,
    bias,
    scale,
    dHidden,
    dPositives,
    dNegatives,
    dBias,
  );
  return { loss, dHidden, dPositives, dNegatives, dBias };
}

for (const kernels of IMPLS) {
  for (const gbce of [false, true]) {
    for (const hits of [false, true]) {
      for (const corrected of [false, true]) {
        const name = `${kernels.name} ${gbce ? 'gbce' : 'sampled softmax'}${hits ? ', accidental hits' : ''}${corrected ? ', logQ correction' : ''}`;
        test(`sampledLoss gradient check: ${name}`, () => {
          const c = makeCase(5, 16, 9, 7 + Number(hits) + 2 * Number(corrected), hits, corrected);
          const beta = 0.37;
          const scale = 0.5;
          const bias = Float32Array.of(-0.3);
          const g = run(kernels, c, gbce, beta, scale, bias[0]);
          // Central differences of L = scale * sum CE in every input entry.
          const eps = kernels.name === 'native' ? 1e-2 : 1e-3;
          const tol = kernels.name === 'native' ? 2e-3 : 1e-5;
          const lossOf = () => scale * run(kernels, c, gbce, beta, scale, bias[0]).loss;
          const model = { parametersChanged() {} };
          for (const [param, grad, what] of [
            [bias, g.dBias, 'bias'],
            [c.hidden, g.dHidden, 'hidden'],
            [c.positives, g.dPositives, 'positives'],
            [c.negatives, g.dNegatives, 'negatives'],
          ] as const) {
            for (let i = 0; i < param.length; i++) {
              const numeric = centralDifference(param, i, eps, model, lossOf);
              assert.ok(
                Math.abs(numeric - grad[i]) <= tol + 0.01 * Math.abs(numeric),
                `${name} d${what}[${i}]: analytic ${grad[i]} vs numeric ${numeric}`,
              );
            }
          }
        });
      }
    }
  }

  test(`sampledLoss ${kernels.name}: exact values, masking and huge logits`, () => {
    // One row, d = 1: s+ = 2, negatives' logits 1 and 3 (corrected: 3 - 0.5 = 2.5), the second is a hit.
    const one = {
      rows: 1,
      d: 1,
      k: 3,
      hidden: Float32Array.of(1),
      positives: Float32Array.of(2),
      negatives: Float32Array.of(1, 3, 3),
      targets: Int32Array.of(5),
      negativeIds: Int32Array.of(6, 5, 7),
      correction: Float32Array.of(0, 0, 0.5),
    };
    const softmax = run(kernels, one, false, 1, 1).loss;
    const expected = Math.log(Math.exp(2) + Math.exp(1) + Math.exp(2.5)) - 2;
    assert.ok(Math.abs(softmax - expected) < 1e-6, `sampled softmax ${softmax} vs ${expected}`);
    const bce = run(kernels, one, true, 0.25, 1).loss;
    const expectedBce = 0.25 * softplus(-2) + softplus(1) + softplus(2.5);
    assert.ok(Math.abs(bce - expectedBce) < 1e-6, `gbce ${bce} vs ${expectedBce}`);
    // Huge logits stay finite, and gradients are the limits (softmax: all mass on the largest logit).
    const huge = { ...one, hidden: Float32Array.of(1000), correction: new Float32Array(3) };
    for (const gbce of [false, true]) {
      const r = run(kernels, huge, gbce, 0.25, 1);
      assert.ok(Number.isFinite(r.loss), `${gbce ? 'gbce' : 'softmax'} loss at huge logits: ${r.loss}`);
      for (const a of [r.dHidden, r.dPositives, r.dNegatives])
        for (const x of a) assert.ok(Number.isFinite(x));
      // s+ = 2000, unmasked negatives 1000 and 3000: CE = 1000 (softmax); gbce: 0 + 1000 + 3000.
      const want = gbce ? 4000 : 1000;
      assert.ok(Math.abs(r.loss - want) < 1e-3 * want, `${gbce ? 'gbce' : 'softmax'} ${r.loss} vs ${want}`);
    }
  });
}

test('gbceBeta: the gSASRec formula, stable and capped', () => {
  for (const [k, n, t] of [
    [256, 12102, 0.75],
    [1, 1_000_001, 0.9],
    [64, 100, 0],
    [64, 100, 1],
  ]) {
    const alpha = k / (n - 1);
    const paper = alpha * (t * (1 - 1 / alpha) + 1 / alpha);
    assert.ok(Math.abs(gbceBeta(k, n, t) - paper) < 1e-12, `beta(${k}, ${n}, ${t})`);
  }
  assert.equal(gbceBeta(500, 100, 0.75), 1, 'k >= numItems - 1 is no sampling: plain BCE');
  assert.equal(sigmoid(-1000), 0);
  assert.equal(sigmoid(1000), 1);
  assert.equal(softplus(-1000), 0);
  assert.equal(softplus(1000), 1000);
});

test(
  'sampledLoss: native agrees with the reference over chunk and vector-width edges',
  { skip: nativeSkip },
  () => {
    for (const [rows, d, k, gbce] of [
      [1, 16, 1, false],
      [7, 20, 33, true],
      [130, 64, 256, false],
      [1100, 128, 300, false], // more rows than one chunk
      [1100, 128, 300, true],
      [64, 8, 1024, true],
    ] as const) {
      const c = makeCase(rows, d, k, rows + k, true, true);
      const r = run(referenceKernels, c, gbce, 0.3, 1 / rows, 0.2);
      const n = run(native!, c, gbce, 0.3, 1 / rows, 0.2);
      const what = `rows=${rows} d=${d} k=${k} ${gbce ? 'gbce' : 'softmax'}`;
      assert.ok(
        Math.abs(n.loss - r.loss) <= 1e-4 * Math.max(1, Math.abs(r.loss)),
        `${what}: loss ${n.loss} vs ${r.loss}`,
      );
      for (const key of ['dHidden', 'dPositives', 'dNegatives', 'dBias'] as const) {
        let diff = 0;
        let size = 0;
        for (let i = 0; i < r[key].length; i++) {
          diff = Math.max(diff, Math.abs(n[key][i] - r[key][i]));
          size = Math.max(size, Math.abs(r[key][i]));
        }
        assert.ok(
          diff <= 1e-4 * Math.max(size, 1e-4),
          `${what} ${key}: max diff ${diff} (max |ref| ${size})`,
        );
      }
    }
  },
);

interface GroupedCase extends Case {
  groupStarts: Int32Array;
  groups: number;
}

/**
 * Groups of the given sizes (an empty one allowed), k negatives each. With `hits`: group 0 draws its own first
 * target twice and group g > 0 draws group 0's first target (a hit only in group 0).
 */
function makeGroupedCase(
  sizes: number[],
  d: number,
  k: number,
  seed: number,
  hits: boolean,
  corrected: boolean,
): GroupedCase {
  const rows = sizes.reduce((a, b) => a + b, 0);
  const groups = sizes.length;
  const c = makeCase(rows, d, groups * k, seed, false, corrected);
  const groupStarts = new Int32Array(groups + 1);
  sizes.forEach((n, g) => (groupStarts[g + 1] = groupStarts[g] + n));
  if (hits) {
    c.negativeIds[0] = c.negativeIds[1] = c.targets[0];
    for (let g = 1; g < groups; g++) c.negativeIds[g * k] = c.targets[0];
  }
  return { ...c, k, groupStarts, groups };
}

function runGrouped(kernels: Kernels, c: GroupedCase, gbce: boolean, beta: number, scale: number, bias = 0) {
  const dHidden = new Float32Array(c.rows * c.d).fill(9);
  const dPositives = new Float32Array(c.rows * c.d).fill(9);
  const dNegatives = new Float32Array(c.groups * c.k * c.d).fill(9);
  const dBias = Float32Array.of(9);
  const loss = kernels.sampledLossGrouped(
    c.hidden,
    c.positives,
    c.negatives,
    c.targets,
    c.negativeIds,
    c.correction,
    c.groupStarts,
    c.groups,
    c.d,
    c.k,
    gbce,
    beta,
    bias,
    scale,
    dHidden,
    dPositives,
    dNegatives,
    dBias,
  );
  return { loss, dHidden, dPositives, dNegatives, dBias };
}

/** One sampledLoss call per group: the definition the grouped kernel must match. */
function perGroup(
  kernels: Kernels,
  c: GroupedCase,
  gbce: boolean,
  beta: number,
  scale: number,
  bias: number,
) {
  const out = {
    loss: 0,
    dHidden: new Float32Array(c.rows * c.d),
    dPositives: new Float32Array(c.rows * c.d),
    dNegatives: new Float32Array(c.groups * c.k * c.d),
    dBias: new Float32Array(1),
  };
  const { d, k } = c;
  for (let g = 0; g < c.groups; g++) {
    const [r0, r1] = [c.groupStarts[g], c.groupStarts[g + 1]];
    const part: Case = {
      rows: r1 - r0,
      d,
      k,
      hidden: c.hidden.subarray(r0 * d, r1 * d),
      positives: c.positives.subarray(r0 * d, r1 * d),
      negatives: c.negatives.subarray(g * k * d, (g + 1) * k * d),
      targets: c.targets.subarray(r0, r1),
      negativeIds: c.negativeIds.subarray(g * k, (g + 1) * k),
      correction: c.correction.subarray(g * k, (g + 1) * k),
    };
    const r = run(kernels, part, gbce, beta, scale, bias);
    out.loss += r.loss;
    out.dHidden.set(r.dHidden, r0 * d);
    out.dPositives.set(r.dPositives, r0 * d);
    out.dNegatives.set(r.dNegatives, g * k * d);
    out.dBias[0] += r.dBias[0];
  }
  return out;
}

function assertClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, rel: number): void {
  let diff = 0;
  let size = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    size = Math.max(size, Math.abs(want[i]));
  }
  assert.ok(diff <= rel * Math.max(size, 1e-4), `${what}: max diff ${diff} (max |want| ${size})`);
}

for (const kernels of IMPLS) {
  for (const gbce of [false, true]) {
    for (const hits of [false, true]) {
      for (const corrected of [false, true]) {
        const name = `${kernels.name} ${gbce ? 'gbce' : 'sampled softmax'}${hits ? ', accidental hits' : ''}${corrected ? ', logQ correction' : ''}`;
        test(`sampledLossGrouped gradient check and per-group definition: ${name}`, () => {
          const c = makeGroupedCase(
            [2, 0, 3, 1],
            8,
            5,
            31 + Number(hits) + 2 * Number(corrected),
            hits,
            corrected,
          );
          const beta = 0.37;
          const scale = 0.5;
          const bias = Float32Array.of(0.2);
          const g = runGrouped(kernels, c, gbce, beta, scale, bias[0]);
          const want = perGroup(kernels, c, gbce, beta, scale, bias[0]);
          assert.ok(
            Math.abs(g.loss - want.loss) <= 1e-6 * Math.abs(want.loss),
            `loss ${g.loss} vs ${want.loss}`,
          );
          for (const key of ['dHidden', 'dPositives', 'dNegatives', 'dBias'] as const)
            assertClose(`${name} ${key} vs per-group calls`, g[key], want[key], 1e-6);
          const eps = kernels.name === 'native' ? 1e-2 : 1e-3;
          const tol = kernels.name === 'native' ? 2e-3 : 1e-5;
          const lossOf = () => scale * runGrouped(kernels, c, gbce, beta, scale, bias[0]).loss;
          const model = { parametersChanged() {} };
          for (const [param, grad, what] of [
            [bias, g.dBias, 'bias'],
            [c.hidden, g.dHidden, 'hidden'],
            [c.positives, g.dPositives, 'positives'],
            [c.negatives, g.dNegatives, 'negatives'],
          ] as const) {
            for (let i = 0; i < param.length; i++) {
              const numeric = centralDifference(param, i, eps, model, lossOf);
              assert.ok(
                Math.abs(numeric - grad[i]) <= tol + 0.01 * Math.abs(numeric),
                `${name} d${what}[${i}]: analytic ${grad[i]} vs numeric ${numeric}`,
              );
            }
          }
        });
      }
    }
  }

  test(`sampledLossGrouped ${kernels.name}: a hit is masked only in its own group`, () => {
    // Two groups of one row, d = 1, k = 1: s+ = 2, the negative's logit 1. Group 0 draws group 1's target (6) and
    // group 1 draws group 0's target (5): no hits. Then group 0 draws its own target: its negative is masked.
    const c: GroupedCase = {
      rows: 2,
      d: 1,
      k: 1,
      groups: 2,
      groupStarts: Int32Array.of(0, 1, 2),
      hidden: Float32Array.of(1, 1),
      positives: Float32Array.of(2, 2),
      negatives: Float32Array.of(1, 1),
      targets: Int32Array.of(5, 6),
      negativeIds: Int32Array.of(6, 5),
      correction: new Float32Array(2),
    };
    const one = Math.log(Math.exp(2) + Math.exp(1)) - 2;
    const crossed = runGrouped(kernels, c, false, 1, 1);
    assert.ok(Math.abs(crossed.loss - 2 * one) < 1e-6, `no hits: ${crossed.loss} vs ${2 * one}`);
    const hit = runGrouped(kernels, { ...c, negativeIds: Int32Array.of(5, 5) }, false, 1, 1);
    assert.ok(Math.abs(hit.loss - one) < 1e-6, `group 0 masked, group 1 not: ${hit.loss} vs ${one}`);
    assert.equal(hit.dNegatives[0], 0, 'a masked negative gets no gradient');
    assert.throws(
      () => runGrouped(kernels, { ...c, groupStarts: Int32Array.of(0, 2, 1) }, false, 1, 1),
      /groupStarts decreases at group 1/,
    );
  });
}

test(
  'sampledLossGrouped: native agrees with the reference (a group over one chunk, an empty group)',
  { skip: nativeSkip },
  () => {
    for (const gbce of [false, true]) {
      const c = makeGroupedCase([1100, 0, 64, 7], 128, 300, 41, true, true);
      const r = runGrouped(referenceKernels, c, gbce, 0.3, 1 / c.rows, 0.2);
      const n = runGrouped(native!, c, gbce, 0.3, 1 / c.rows, 0.2);
      const what = `${gbce ? 'gbce' : 'softmax'}`;
      assert.ok(
        Math.abs(n.loss - r.loss) <= 1e-4 * Math.max(1, Math.abs(r.loss)),
        `${what}: loss ${n.loss} vs ${r.loss}`,
      );
      for (const key of ['dHidden', 'dPositives', 'dNegatives', 'dBias'] as const)
        assertClose(`${what} ${key}`, n[key], r[key], 1e-4);
    }
  },
);

for (const kernels of IMPLS) {
  test(`lazy Adam (${kernels.name}): rows touched every step match dense Adam; untouched rows stay put`, () => {
    const rows = 12;
    const d = 5;
    const rng = new Random(21);
    const start = gaussian(rows * d, rng, 0.3);
    const dense = Float32Array.from(start);
    const lazy = Float32Array.from(start);
    const denseGrad = new Float32Array(rows * d);
    const sparse = { rows: new Int32Array(rows), grad: new Float32Array(rows * d), count: 0 };
    const group = (param: Float32Array, sparseRows?: typeof sparse): ParamGroup => ({
      name: 'delta',
      param,
      grad: sparseRows ? sparseRows.grad : denseGrad,
      rowWidth: d,
      firstRow: 1,
      maxRowNorm: 0.4,
      sparse: sparseRows,
    });
    const options = { lr: 0.05, weightDecay: 0.01 };
    const denseAdam = new Adam([group(dense)], kernels, options);
    const lazyAdam = new Adam([group(lazy, sparse)], kernels, options);
    const always = [1, 4, 9]; // touched every step
    const never = [2, 11];
    for (let step = 0; step < 25; step++) {
      const touched = new Set(always);
      for (const r of [3, 5, 6, 7, 8, 10]) if (rng.nextFloat() < 0.4) touched.add(r);
      denseGrad.fill(0);
      sparse.count = 0;
      for (const r of touched) {
        const g = gaussian(d, rng);
        denseGrad.set(g, r * d);
        sparse.rows[sparse.count] = r;
        sparse.grad.set(g, sparse.count * d);
        sparse.count++;
      }
      denseAdam.step();
      lazyAdam.step();
    }
    for (const r of always) {
      assert.deepEqual(lazy.subarray(r * d, (r + 1) * d), dense.subarray(r * d, (r + 1) * d), `row ${r}`);
      let norm = 0;
      for (let p = 0; p < d; p++) norm += lazy[r * d + p] ** 2;
      assert.ok(Math.sqrt(norm) <= 0.4 + 1e-6, 'the projection applies to updated rows');
    }
    for (const r of [0, ...never]) {
      assert.deepEqual(
        lazy.subarray(r * d, (r + 1) * d),
        start.subarray(r * d, (r + 1) * d),
        `row ${r} untouched`,
      );
    }
    // Where it differs: dense AdamW decays never-touched rows; occasionally touched rows follow other paths.
    assert.notDeepEqual(dense.subarray(2 * d, 3 * d), start.subarray(2 * d, 3 * d));
    const sometimes = [3, 5, 6, 7, 8, 10].some(
      (r) => lazy.subarray(r * d, (r + 1) * d).join() !== dense.subarray(r * d, (r + 1) * d).join(),
    );
    assert.ok(
      sometimes,
      'rows skipped in some steps differ from dense Adam (momentum is not applied lazily)',
    );
  });
}

const NUM_ITEMS = 20;
const D = 8;

function tinySampledModel(
  strategy: EmbeddingStrategy,
  kernels: Kernels,
  loss: LossKind,
  sampler: SamplerKind,
  deltaDropout = 0,
  negativesPer: NegativesPer = 'batch',
): SASRec {
  const config = sasrecConfig({
    numItems: NUM_ITEMS,
    d: D,
    blocks: 1,
    heads: 2,
    ffWidth: 12,
    dropout: 0.2,
    maxLength: 6,
    strategy,
    deltaMax: 0.5,
    seed: 3,
    loss,
    negatives: 12, // from 20 items: accidental hits and repeated negatives are certain
    negativesPer,
    sampler,
    contentDim: strategy === 'content-map' ? 10 : undefined,
    deltaDropout,
    activation: 'gelu', // smooth: no ReLU kink for the finite differences to cross
  });
  const content =
    strategy === 'id' ? undefined : unitContent(NUM_ITEMS, strategy === 'content-map' ? 10 : D, 11);
  const model = new SASRec(config, content, kernels);
  model.setItemFrequencies(
    Float64Array.from({ length: NUM_ITEMS + 1 }, (_, i) => (i === 0 ? 0 : 1 + (i % 5))),
  );
  const rng = new Random(5);
  for (const g of model.paramGroups()) {
    for (let i = g.firstRow * g.rowWidth; i < g.param.length; i++) g.param[i] += 0.15 * rng.nextGaussian();
  }
  model.parametersChanged();
  return model;
}

for (const kernels of IMPLS) {
  for (const [strategy, loss, sampler, deltaDropout, per] of [
    ['content-delta', 'sampled', 'uniform', 0, 'batch'],
    ['content-delta', 'gbce', 'popularity', 0.3, 'batch'],
    ['id', 'sampled', 'popularity', 0, 'batch'],
    ['content-map', 'gbce', 'uniform', 0, 'batch'],
    ['id', 'sampled', 'uniform', 0, 'sequence'],
    ['id', 'gbce', 'popularity', 0, 'sequence'],
    ['content-delta', 'sampled', 'popularity', 0.3, 'sequence'],
  ] as const) {
    test(`SASRec ${strategy} with ${loss} loss, ${sampler} sampler, negatives per ${per} (${kernels.name}): gradients match central differences`, () => {
      const model = tinySampledModel(strategy, kernels, loss, sampler, deltaDropout, per);
      const batch = tinyBatch();
      const seed = 17;
      const lossOf = () => model.forwardBackward(batch, true, seed);
      lossOf();
      if (per === 'sequence') {
        // The precondition of the lazy-update check below: some item is a negative of several sequences this step,
        // so its one compact gradient row sums their contributions.
        const drawn = (model as unknown as { sampled: { negatives: Int32Array } }).sampled.negatives;
        assert.equal(drawn.length, batch.size * 12, 'k negatives per sequence');
        const bySequence = Array.from(
          { length: batch.size },
          (_, b) => new Set(drawn.subarray(b * 12, (b + 1) * 12)),
        );
        assert.ok(
          bySequence[0].size > 0 &&
            [...bySequence[0]].some((i) => bySequence[1].has(i) || bySequence[2].has(i)),
          'an item drawn by two sequences',
        );
      }
      const groups = model.paramGroups();
      const snapshot = groups.map((g) => {
        if (!g.sparse) return Float64Array.from(g.grad);
        // The compact item gradient, spread over table rows: rows not touched have gradient 0.
        const full = new Float64Array(g.param.length);
        for (let u = 0; u < g.sparse.count; u++) {
          for (let p = 0; p < g.rowWidth; p++)
            full[g.sparse.rows[u] * g.rowWidth + p] = g.sparse.grad[u * g.rowWidth + p];
        }
        return full;
      });
      const sparseGroup = groups.find((g) => g.sparse);
      assert.ok(sparseGroup, 'the item table is updated lazily');
      assert.ok(sparseGroup.sparse!.count < NUM_ITEMS + 1 || NUM_ITEMS < 30);
      const eps = 3e-3;
      const rng = new Random(9);
      groups.forEach((g, gi) => {
        // Every item row (touched or not), a sample of the dense entries.
        const entries =
          g.name === 'dense'
            ? [...Array.from({ length: 40 }, () => rng.nextInt(g.param.length)), g.param.length - 1]
            : Array.from(
                { length: g.param.length - g.firstRow * g.rowWidth },
                (_, i) => g.firstRow * g.rowWidth + i,
              );
        for (const i of entries) {
          const numeric = centralDifference(g.param, i, eps, model, lossOf);
          const analytic = snapshot[gi][i];
          assert.ok(
            Math.abs(numeric - analytic) <= 2e-3 + 0.02 * Math.abs(numeric),
            `${g.name}[${i}]: analytic ${analytic} vs numeric ${numeric}`,
          );
        }
      });
    });
  }
}

test('a sampled step touches only the batch rows and its negatives', () => {
  const model = tinySampledModel('content-delta', referenceKernels, 'sampled', 'uniform');
  const batch = tinyBatch();
  model.forwardBackward(batch, true, 4);
  const sparse = model.paramGroups().find((g) => g.sparse)!.sparse!;
  const expected = new Set<number>();
  for (let i = 0; i < batch.size * batch.T; i++) {
    if (batch.inputs[i] > 0) expected.add(batch.inputs[i]);
    if (batch.targets[i] > 0) expected.add(batch.targets[i]);
  }
  const rows = new Set(sparse.rows.subarray(0, sparse.count));
  assert.equal(rows.size, sparse.count, 'rows are distinct');
  for (const r of expected) assert.ok(rows.has(r), `batch item ${r} is touched`);
  assert.ok(!rows.has(0), 'never the padding row');
  assert.ok(sparse.count <= expected.size + 12, 'at most the batch items plus k negatives');
});
