/**
 * The lazy weight average (WeightAverage for item tables trained with sparse updates): it equals the dense average
 * of every step (a float64 reference) after sparse steps with random touched rows, rows never touched, rows touched
 * every step, through the ramp and with decays 0.9 to 0.9999; for the full softmax (dense) and the sampled losses on a
 * real model; what train() validates, keeps and saves is the caught-up average; and a step's work visits only the
 * touched rows.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Sequences } from '../src/data/types.js';
import { referenceKernels } from '../src/kernels/index.js';
import type { ParamGroup, SparseRows } from '../src/model/embeddings.js';
import { SASRec, sasrecConfig, type LossKind } from '../src/model/sasrec.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { BatchBuilder, createOptimizer, train, trainStep, WeightAverage } from '../src/train/trainer.js';
import { Random } from '../src/util/random.js';

const noModel = { parametersChanged: () => {} };

/** The float64 dense average: a += (1 - min(decay, (1 + t) / (10 + t))) (w - a) over every value, step t. */
class DenseReference {
  readonly average: Float64Array[];
  private t = 0;

  constructor(
    private readonly groups: ParamGroup[],
    private readonly decay: number,
  ) {
    this.average = groups.map((g) => Float64Array.from(g.param));
  }

  update(): void {
    this.t++;
    const rate = 1 - Math.min(this.decay, (1 + this.t) / (10 + this.t));
    this.groups.forEach((g, i) =>
      this.average[i].forEach((a, j) => (this.average[i][j] = a + rate * (g.param[j] - a))),
    );
  }
}

/** The average a WeightAverage holds now (caught up), read through swap and restored. */
function readAverage(average: WeightAverage, groups: ParamGroup[]): Float32Array[] {
  average.swap(noModel);
  const values = groups.map((g) => Float32Array.from(g.param));
  average.swap(noModel);
  return values;
}

/** Largest |a - b| / max(1, |b|) over all values. */
function worstError(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let worst = 0;
  a.forEach((x, i) => {
    for (let j = 0; j < x.length; j++)
      worst = Math.max(worst, Math.abs(x[j] - b[i][j]) / Math.max(1, Math.abs(b[i][j])));
  });
  return worst;
}

test('lazy average equals the dense average: random touched rows, rows never or always touched, ramp, decays 0.9 to 0.9999', () => {
  const WIDTH = 4;
  const ROWS = 60; // row 0 padding; 1..5 touched every step; 50..59 never; the rest with probability 0.2
  // Tolerances (relative): the touched rows' average is float32, rounded once per update like the dense average's,
  // so over ~1 / (1 - decay) steps both drift from the float64 reference by a random walk of float32 roundings
  // (measured at 0.9999: lazy 4.7e-6, the dense float32 average 1.4e-5 after 10^5 steps).
  for (const [decay, steps, tolerance] of [
    [0.9, 400, 2e-6],
    [0.999, 3000, 2e-6],
    [0.9999, 100_000, 1e-5], // float64 log-sums over 10^5 steps, decay near 1
  ] as const) {
    const rng = new Random(11);
    const param = new Float32Array(ROWS * WIDTH);
    for (let j = WIDTH; j < param.length; j++) param[j] = rng.nextGaussian();
    const sparse: SparseRows = { rows: new Int32Array(ROWS), grad: new Float32Array(0), count: 0 };
    const dense = Float32Array.from({ length: 7 }, () => rng.nextGaussian());
    const groups: ParamGroup[] = [
      { name: 'dense', param: dense, grad: new Float32Array(7), rowWidth: 7, firstRow: 0 },
      { name: 'delta', param, grad: sparse.grad, rowWidth: WIDTH, firstRow: 1, sparse },
    ];
    const lazy = new WeightAverage(groups, decay);
    // The same tensors without the sparse rows: the dense float32 average of every row in every step.
    const everyRow = new WeightAverage(
      groups.map((g) => ({ ...g, sparse: undefined })),
      decay,
    );
    const reference = new DenseReference(groups, decay);
    const reads = new Set([1, 5, 50, 81, Math.floor(steps / 2), steps - 1]);
    for (let t = 1; t <= steps; t++) {
      sparse.count = 0;
      for (let r = 1; r < 50; r++) if (r <= 5 || rng.nextFloat() < 0.2) sparse.rows[sparse.count++] = r;
      const visits = lazy.lazyRowVisits;
      lazy.beforeStep();
      // The "optimizer": every dense value and the touched rows only move.
      for (let j = 0; j < dense.length; j++) dense[j] += 0.1 * rng.nextGaussian();
      for (let u = 0; u < sparse.count; u++)
        for (let j = 0; j < WIDTH; j++) param[sparse.rows[u] * WIDTH + j] += 0.1 * rng.nextGaussian();
      lazy.afterStep();
      everyRow.afterStep();
      reference.update();
      assert.equal(lazy.lazyRowVisits - visits, sparse.count, `step ${t}: visits only the touched rows`);
      if (reads.has(t)) {
        const before = lazy.lazyRowVisits;
        const live = groups.map((g) => Float32Array.from(g.param));
        const read = readAverage(lazy, groups);
        assert.equal(
          lazy.lazyRowVisits - before,
          2 * ROWS,
          'a read catches up every row (twice: swap and back)',
        );
        const error = worstError(read, reference.average);
        assert.ok(error < tolerance, `decay ${decay}, step ${t}: lazy off the dense average by ${error}`);
        const denseError = worstError(readAverage(everyRow, groups), reference.average);
        assert.ok(
          denseError < 3e-5,
          `decay ${decay}, step ${t}: the float32 dense average off by ${denseError}`,
        );
        // Reading leaves the live weights as they were.
        assert.deepEqual(
          groups.map((g) => g.param),
          live,
        );
      }
    }
    const final = readAverage(lazy, groups);
    // Never-touched rows keep their value; rows touched every step and the random ones moved away from theirs.
    for (let j = 50 * WIDTH; j < ROWS * WIDTH; j++) assert.equal(final[1][j], param[j]);
    assert.notDeepEqual(final[1].subarray(WIDTH, 50 * WIDTH), param.subarray(WIDTH, 50 * WIDTH));
  }
});

const NUM_ITEMS = 200; // the data uses items 1..40 only: rows 41..200 are touched only as negatives, if ever

function sequences(count: number, seed: number): Sequences {
  const rng = new Random(seed);
  const offsets = new Int32Array(count + 1);
  const items: number[] = [];
  for (let s = 0; s < count; s++) {
    const len = 3 + rng.nextInt(8);
    let item = 1 + rng.nextInt(40);
    for (let i = 0; i < len; i++) {
      items.push(item);
      item = rng.nextFloat() < 0.8 ? (item % 40) + 1 : 1 + rng.nextInt(40);
    }
    offsets[s + 1] = items.length;
  }
  return { offsets, items: Int32Array.from(items) };
}

const data = sequences(120, 3);

function makeModel(loss: LossKind): SASRec {
  const config = sasrecConfig({
    numItems: NUM_ITEMS,
    d: 8,
    blocks: 1,
    heads: 1,
    dropout: 0.1,
    maxLength: 10,
    strategy: 'content-delta',
    loss,
    negatives: 6,
    seed: 5,
  });
  const rng = new Random(2);
  const content = new Float32Array((NUM_ITEMS + 1) * 8); // row 0: padding, zeros
  for (let j = 8; j < content.length; j++) content[j] = 0.3 * rng.nextGaussian();
  return new SASRec(config, content, referenceKernels);
}

test('trainStep with the lazy average: equals the dense average for the full softmax and the sampled losses', () => {
  for (const loss of ['full', 'sampled', 'gbce'] as const) {
    for (const decay of [0.9, 0.999]) {
      const model = makeModel(loss);
      const optimizer = createOptimizer(model, { lr: 1e-2 });
      const groups = model.paramGroups();
      const table = groups.find((g) => g.name === 'delta')!;
      assert.equal(table.sparse !== undefined, loss !== 'full', `${loss}: the delta table is lazy`);
      const lazy = new WeightAverage(groups, decay);
      const reference = new DenseReference(groups, decay);
      const builder = new BatchBuilder(12, model.config.maxLength);
      const order = Int32Array.from({ length: 120 }, (_, s) => s);
      const rng = new Random(9);
      const touched = new Int32Array(NUM_ITEMS + 1);
      const STEPS = 40;
      for (let t = 1; t <= STEPS; t++) {
        rng.shuffle(order);
        const visits = lazy.lazyRowVisits;
        trainStep(model, optimizer, builder.fill(data, order, 0, 12), undefined, () => lazy.beforeStep());
        lazy.afterStep();
        reference.update();
        if (table.sparse) {
          const { rows, count } = table.sparse;
          for (let u = 0; u < count; u++) touched[rows[u]]++;
          assert.ok(count < NUM_ITEMS / 2, `${loss}: ${count} touched rows`);
          assert.equal(lazy.lazyRowVisits - visits, count, `${loss}, step ${t}: only the touched rows`);
        } else assert.equal(lazy.lazyRowVisits, 0);
      }
      if (table.sparse) {
        const never = touched.filter((n, r) => r > 0 && n === 0).length;
        const always = touched.filter((n) => n === STEPS).length;
        assert.ok(
          never > 0 && always > 0,
          `${loss}: ${never} rows never touched, ${always} touched every step`,
        );
      }
      const error = worstError(readAverage(lazy, groups), reference.average);
      assert.ok(error < 1e-6, `${loss}, decay ${decay}: off the dense average by ${error}`);
    }
  }
});

test('train with ema and a sampled loss: validation, the kept weights and the checkpoint are the caught-up average', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-lazy-ema-'));
  const EPOCHS = 3;
  const BATCH = 20; // 6 steps per epoch: rows untouched for several steps are caught up when validation reads them
  try {
    for (const loss of ['sampled', 'gbce'] as const) {
      // The same training by hand (train's shuffles, batches and dropout seeds), with the float64 dense average.
      const manual = makeModel(loss);
      const optimizer = createOptimizer(manual, { lr: 1e-2 });
      const reference = new DenseReference(manual.paramGroups(), 0.9);
      const start = manual.paramGroups().map((g) => Float32Array.from(g.param));
      const rng = new Random(manual.config.seed);
      const order = Int32Array.from({ length: 120 }, (_, s) => s);
      const builder = new BatchBuilder(BATCH, manual.config.maxLength);
      const live: Float32Array[][] = [];
      const expected: Float64Array[][] = [];
      for (let epoch = 1; epoch <= EPOCHS; epoch++) {
        rng.shuffle(order);
        for (let b = 0; b < 120; b += BATCH) {
          trainStep(manual, optimizer, builder.fill(data, order, b, BATCH));
          reference.update();
        }
        live.push(manual.paramGroups().map((g) => Float32Array.from(g.param)));
        expected.push(reference.average.map((a) => Float64Array.from(a)));
      }

      const model = makeModel(loss);
      const validated: Float32Array[][] = [];
      const liveSeen: Float32Array[][] = [];
      const checkpointPath = join(dir, `${loss}.safetensors`);
      // The score rises every epoch, so the last epoch is the best.
      const result = await train(model, data, {
        onProgress: () => liveSeen.push(model.paramGroups().map((g) => Float32Array.from(g.param))),
        handleSigint: false,
        epochs: EPOCHS,
        batchSize: BATCH,
        lr: 1e-2,
        ema: 0.9,
        checkpointPath,
        validate: (m) => {
          validated.push(m.paramGroups().map((g) => Float32Array.from(g.param)));
          return validated.length;
        },
      });
      assert.deepEqual(liveSeen, live, `${loss}: train takes the same live steps as the manual loop`);
      for (let e = 0; e < EPOCHS; e++) {
        const error = worstError(validated[e], expected[e]);
        assert.ok(
          error < 1e-6,
          `${loss}, epoch ${e + 1}: validated weights off the dense average by ${error}`,
        );
      }
      const delta = model.paramGroups().findIndex((g) => g.name === 'delta');
      const final = live[EPOCHS - 1][delta];
      let untouched = 0;
      for (let r = 41; r <= NUM_ITEMS; r++)
        if (final.subarray(r * 8, r * 8 + 8).every((v, j) => v === start[delta][r * 8 + j])) untouched++;
      assert.ok(untouched > 0, `${loss}: some rows never touched`);
      assert.ok(
        validated[EPOCHS - 1][delta].some((v, j) => v !== final[j]),
        `${loss}: the average differs from the live delta`,
      );
      assert.equal(result.bestEpoch, EPOCHS);
      const kept = model.paramGroups().map((g) => Float32Array.from(g.param));
      assert.deepEqual(kept, validated[EPOCHS - 1], `${loss}: the model keeps the best average`);
      const { model: saved } = await loadCheckpoint(checkpointPath, referenceKernels);
      assert.deepEqual(
        saved.paramGroups().map((g) => Float32Array.from(g.param)),
        validated[EPOCHS - 1],
        `${loss}: the checkpoint holds the average`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
