/**
 * Trainer behaviour on a small generated task (a noisy Markov chain over 40 items): the loss falls and ranking beats
 * random, runs are reproducible, early stopping and aborts keep the best weights, content-delta stays within its
 * bound, and both kernel implementations train.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Sequences } from '../src/data/types.js';
import { loadNativeKernels, referenceKernels } from '../src/kernels/index.js';
import type { Kernels } from '../src/kernels/types.js';
import { SASRec, sasrecConfig, type SASRecConfig } from '../src/model/sasrec.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { BatchBuilder, createOptimizer, replayOrder, train, trainStep } from '../src/train/trainer.js';
import { Random } from '../src/util/random.js';

const NUM_ITEMS = 40;
const D = 16;

/** Sequences where each item is followed by next[item] with probability 0.85, else by a random item. */
function markovSequences(count: number, seed: number): Sequences {
  const rng = new Random(seed);
  const next = new Int32Array(NUM_ITEMS + 1);
  const perm = rng.shuffle(Int32Array.from({ length: NUM_ITEMS }, (_, i) => i + 1));
  for (let i = 1; i <= NUM_ITEMS; i++) next[i] = perm[i - 1];
  const offsets = new Int32Array(count + 1);
  const items: number[] = [];
  for (let s = 0; s < count; s++) {
    const len = 4 + rng.nextInt(9);
    let item = 1 + rng.nextInt(NUM_ITEMS);
    for (let i = 0; i < len; i++) {
      items.push(item);
      item = rng.nextFloat() < 0.85 ? next[item] : 1 + rng.nextInt(NUM_ITEMS);
    }
    offsets[s + 1] = items.length;
  }
  return { offsets, items: Int32Array.from(items) };
}

const trainData = markovSequences(300, 1);

/** Held-out cases from the same chain as trainData: the last item of each unseen sequence is the target. */
function testCases(): { inputs: Int32Array[]; targets: Int32Array } {
  const data = markovSequences(400, 1); // same seed => same chain; sequences 300..399 are unseen
  const inputs: Int32Array[] = [];
  const targets: number[] = [];
  for (let s = 300; s < 400; s++) {
    const seq = data.items.subarray(data.offsets[s], data.offsets[s + 1]);
    inputs.push(seq.subarray(0, seq.length - 1));
    targets.push(seq[seq.length - 1]);
  }
  return { inputs, targets: Int32Array.from(targets) };
}

function content(): Float32Array {
  const rng = new Random(7);
  const c = new Float32Array((NUM_ITEMS + 1) * D);
  for (let i = 1; i <= NUM_ITEMS; i++) {
    let s = 0;
    for (let j = 0; j < D; j++) s += (c[i * D + j] = rng.nextGaussian()) ** 2;
    for (let j = 0; j < D; j++) c[i * D + j] /= Math.sqrt(s);
  }
  return c;
}

function makeModel(overrides: Partial<SASRecConfig> = {}, kernels: Kernels = referenceKernels): SASRec {
  const config = sasrecConfig({
    numItems: NUM_ITEMS,
    d: D,
    blocks: 1,
    heads: 1,
    dropout: 0.1,
    maxLength: 12,
    strategy: 'id',
    seed: 4,
    ...overrides,
  });
  return new SASRec(config, config.strategy === 'id' ? undefined : content(), kernels);
}

/** HR@5 over the held-out cases. */
function hitRate(model: SASRec): number {
  const { inputs, targets } = testCases();
  const scores = new Float32Array(inputs.length * (NUM_ITEMS + 1));
  model.score(inputs, scores);
  let hits = 0;
  for (let r = 0; r < inputs.length; r++) {
    const row = scores.subarray(r * (NUM_ITEMS + 1), (r + 1) * (NUM_ITEMS + 1));
    let better = 0;
    for (let j = 1; j <= NUM_ITEMS; j++) if (row[j] > row[targets[r]]) better++;
    if (better < 5) hits++;
  }
  return hits / inputs.length;
}

function snapshot(model: SASRec): Float32Array[] {
  return model.parameters().map((t) => Float32Array.from(t.data));
}

function assertSameWeights(a: Float32Array[], b: Float32Array[], what: string): void {
  assert.equal(a.length, b.length);
  for (let t = 0; t < a.length; t++) assert.deepEqual(a[t], b[t], `${what}: tensor ${t}`);
}

const quiet = { onProgress: () => {}, handleSigint: false } as const;

test('training lowers the loss and ranks far better than random', async () => {
  const model = makeModel();
  const before = hitRate(model);
  const result = await train(model, trainData, { ...quiet, epochs: 8, batchSize: 32, lr: 5e-3 });
  const losses = result.history.map((h) => h.loss);
  assert.equal(result.stopReason, 'max-epochs');
  assert.ok(losses[losses.length - 1] < losses[0] - 0.5, `loss ${losses.join(', ')}`);
  assert.ok(losses[0] < Math.log(NUM_ITEMS) + 0.3, `first epoch loss ${losses[0]}`);
  const after = hitRate(model);
  // Random ranking gives HR@5 = 5/40 = 0.125; the chain is 85% deterministic.
  assert.ok(after > 0.5, `HR@5 ${before} -> ${after}`);
});

test('the same seed gives identical weights; another seed does not', async () => {
  const run = async (seed: number) => {
    const model = makeModel({ seed, dropout: 0.2 });
    await train(model, trainData, { ...quiet, epochs: 2, batchSize: 64 });
    return snapshot(model);
  };
  const a = await run(11);
  const b = await run(11);
  assertSameWeights(a, b, 'same seed');
  const c = await run(12);
  assert.notDeepEqual(a[1], c[1]);
});

test('early stopping restores the weights of the best epoch', async () => {
  const metrics = [0.1, 0.5, 0.3, 0.2, 0.4, 0.9];
  const seen: Float32Array[][] = [];
  const model = makeModel();
  const result = await train(model, trainData, {
    ...quiet,
    epochs: 6,
    batchSize: 64,
    patience: 3,
    validate: (m) => {
      seen.push(snapshot(m));
      return metrics[seen.length - 1];
    },
  });
  assert.equal(result.stopReason, 'early-stopping');
  assert.equal(result.history.length, 5);
  assert.equal(result.bestEpoch, 2);
  assert.equal(result.bestMetric, 0.5);
  assertSameWeights(snapshot(model), seen[1], 'restored weights');
  assert.notDeepEqual(seen[4][1], seen[1][1]);
});

test('an abort mid-epoch stops cleanly with the best weights so far, and the checkpoint holds them', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-train-'));
  try {
    const controller = new AbortController();
    const metrics = [0.4, 0.2];
    const seen: Float32Array[][] = [];
    const model = makeModel({ strategy: 'content-delta' });
    const path = join(dir, 'best.safetensors');
    const result = await train(model, trainData, {
      ...quiet,
      epochs: 10,
      batchSize: 32,
      checkpointPath: path,
      signal: controller.signal,
      validate: (m) => {
        seen.push(snapshot(m));
        // After the second validation, abort during the first steps of epoch 3.
        if (seen.length === 2) setImmediate(() => controller.abort());
        return metrics[seen.length - 1];
      },
    });
    assert.equal(result.stopReason, 'aborted');
    assert.equal(result.history.length, 2);
    assert.equal(result.bestEpoch, 1);
    assert.ok(result.steps > 2 * Math.ceil(300 / 32), 'epoch 3 had started');
    assert.ok(result.steps < 3 * Math.ceil(300 / 32), 'epoch 3 did not finish');
    assertSameWeights(snapshot(model), seen[0], 'weights after abort');
    const { model: loaded } = await loadCheckpoint(path, referenceKernels);
    assertSameWeights(snapshot(loaded), seen[0], 'checkpoint');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C (SIGINT) stops training cleanly and keeps the best weights', async () => {
  const seen: Float32Array[][] = [];
  const model = makeModel();
  const listenersBefore = process.listenerCount('SIGINT');
  const result = await train(model, trainData, {
    onProgress: () => {},
    epochs: 10,
    batchSize: 32,
    handleSigint: true,
    validate: (m) => {
      seen.push(snapshot(m));
      if (seen.length === 2) setImmediate(() => process.emit('SIGINT'));
      return seen.length === 1 ? 0.3 : 0.1;
    },
  });
  assert.equal(result.stopReason, 'aborted');
  assert.equal(result.bestEpoch, 1);
  assertSameWeights(snapshot(model), seen[0], 'weights after Ctrl-C');
  assert.equal(process.listenerCount('SIGINT'), listenersBefore, 'the SIGINT handler is removed');
});

test('content-delta: every delta row stays within deltaMax and every item within the cosine bound', async () => {
  const deltaMax = 0.3;
  const model = makeModel({ strategy: 'content-delta', deltaMax });
  const c = content();
  await train(model, trainData, { ...quiet, epochs: 4, batchSize: 32, lr: 2e-2 });
  const [contentT, deltaT] = model.parameters();
  assert.equal(contentT.name, 'content');
  assert.equal(deltaT.name, 'delta');
  assert.deepEqual(contentT.data, c, 'content is frozen');
  for (let j = 0; j < D; j++) assert.equal(deltaT.data[j], 0, 'padding delta row unchanged');
  const e = model.itemEmbeddings();
  for (let j = 0; j < D; j++) assert.equal(e[j], 0, 'padding embedding row unchanged');
  let maxNorm = 0;
  const bound = Math.sqrt(1 - deltaMax * deltaMax);
  for (let i = 1; i <= NUM_ITEMS; i++) {
    let dn = 0;
    let dot = 0;
    let en = 0;
    for (let j = 0; j < D; j++) {
      const dv = deltaT.data[i * D + j];
      dn += dv * dv;
      dot += c[i * D + j] * e[i * D + j];
      en += e[i * D + j] ** 2;
    }
    const norm = Math.sqrt(dn);
    maxNorm = Math.max(maxNorm, norm);
    assert.ok(norm <= deltaMax + 1e-6, `item ${i}: |delta| = ${norm}`);
    assert.ok(dot / Math.sqrt(en) >= bound - 1e-6, `item ${i}: cos = ${dot / Math.sqrt(en)} < ${bound}`);
  }
  // The projection was active (otherwise the bound would be checked vacuously).
  assert.ok(maxNorm > deltaMax - 1e-3, `largest delta norm ${maxNorm}`);
});

test('content-frozen trains only the dense weights; content-init moves the item table', async () => {
  const frozen = makeModel({ strategy: 'content-frozen' });
  await train(frozen, trainData, { ...quiet, epochs: 1, batchSize: 64 });
  assert.deepEqual(frozen.itemEmbeddings(), content());
  const init = makeModel({ strategy: 'content-init' });
  await train(init, trainData, { ...quiet, epochs: 1, batchSize: 64 });
  assert.notDeepEqual(init.itemEmbeddings(), content());
  for (let j = 0; j < D; j++) assert.equal(init.itemEmbeddings()[j], 0);
});

const native = loadNativeKernels();
test(
  'reference and native kernels train the same model alike',
  { skip: native ? false : 'native addon not built' },
  async () => {
    const losses: number[][] = [];
    for (const kernels of [referenceKernels, native!]) {
      const model = makeModel({ strategy: 'content-delta', dropout: 0.1 }, kernels);
      const result = await train(model, trainData, { ...quiet, epochs: 3, batchSize: 32, lr: 5e-3 });
      losses.push(result.history.map((h) => h.loss));
      assert.ok(hitRate(model) > 0.3, `${kernels.name}: HR@5 ${hitRate(model)}`);
    }
    // Native runs are reproducible too.
    const again = makeModel({ strategy: 'content-delta', dropout: 0.1 }, native!);
    const repeat = await train(again, trainData, { ...quiet, epochs: 3, batchSize: 32, lr: 5e-3 });
    assert.deepEqual(
      repeat.history.map((h) => h.loss),
      losses[1],
      'native: same seed, same losses',
    );
    for (let e = 0; e < 3; e++)
      assert.ok(
        Math.abs(losses[0][e] - losses[1][e]) < 2e-2,
        `epoch ${e + 1}: ${losses[0][e]} vs ${losses[1][e]}`,
      );
  },
);

test(
  'native training steps are bit-identical across runs at a realistic output-layer size',
  {
    skip: native ? false : 'native addon not built',
  },
  () => {
    const numItems = 3000;
    const rng = new Random(9);
    const offsets = new Int32Array(129);
    const items = new Int32Array(128 * 12);
    for (let s = 0; s < 128; s++) {
      offsets[s + 1] = (s + 1) * 12;
      for (let i = 0; i < 12; i++) items[s * 12 + i] = 1 + rng.nextInt(numItems);
    }
    const run = () => {
      const config = sasrecConfig({ numItems, d: 32, blocks: 1, maxLength: 16, strategy: 'id', seed: 1 });
      const model = new SASRec(config, undefined, native!);
      const optimizer = createOptimizer(model);
      const batch = new BatchBuilder(128, 16).fill(
        { offsets, items },
        Int32Array.from({ length: 128 }, (_, i) => i),
        0,
        128,
      );
      for (let i = 0; i < 3; i++) trainStep(model, optimizer, batch);
      return snapshot(model);
    };
    assertSameWeights(run(), run(), 'native, same seed');
  },
);

test('trainStep runs one step on a hand-made batch (the benchmark entry point)', () => {
  const model = makeModel({ dropout: 0 });
  const optimizer = createOptimizer(model, { lr: 1e-2 });
  const batch = new BatchBuilder(16, model.config.maxLength).fill(
    trainData,
    Int32Array.from({ length: 16 }, (_, i) => i),
    0,
    16,
  );
  assert.equal(batch.size, 16);
  const first = trainStep(model, optimizer, batch);
  let last = first;
  for (let i = 0; i < 20; i++) last = trainStep(model, optimizer, batch);
  assert.equal(optimizer.stepCount, 21);
  assert.ok(last < first - 0.5, `${first} -> ${last}`);
});

test('without validate the epoch with the lowest training loss is kept (weights and checkpoint)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-train-'));
  try {
    const model = makeModel();
    const checkpointPath = join(dir, 'best.safetensors');
    const lines: string[] = [];
    // A learning rate this high makes the loss rise again after a few epochs.
    const result = await train(model, trainData, {
      ...quiet,
      onProgress: (p) => lines.push(p.line),
      epochs: 12,
      patience: 3,
      batchSize: 32,
      lr: 0.3,
      checkpointPath,
    });
    const losses = result.history.map((p) => p.loss);
    const lowest = losses.indexOf(Math.min(...losses)) + 1;
    assert.ok(lowest < losses.length, `the loss should rise at the end: ${losses.join(', ')}`);
    assert.equal(result.bestEpoch, lowest);
    assert.equal(result.stopReason, 'early-stopping');
    assert.equal(losses.length, lowest + 3);
    const saved = await loadCheckpoint(checkpointPath);
    assertSameWeights(snapshot(model), snapshot(saved.model), 'kept weights = best checkpoint');
    assert.match(
      lines[0],
      /^epoch 1\/12 · loss \d+\.\d{4} \(best \d+\.\d{4} @ 1\) · [\d,]+ seq\/s · \d+s · stops in >= 3 epochs/,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('training continues after appendItems: the optimizer follows the grown item table', async () => {
  const full = content();
  const warm = 30;
  const config = sasrecConfig({
    numItems: warm,
    d: D,
    blocks: 1,
    maxLength: 12,
    strategy: 'content-delta',
    seed: 4,
  });
  const model = new SASRec(config, full.subarray(0, (warm + 1) * D), referenceKernels);
  const optimizer = createOptimizer(model, { lr: 1e-2 });
  const builder = new BatchBuilder(16, 12);
  const order = Int32Array.from({ length: 16 }, (_, i) => i);
  const warmOnly: Sequences = {
    offsets: Int32Array.from({ length: 17 }, (_, s) => s * 6),
    items: Int32Array.from({ length: 96 }, (_, i) => 1 + ((i * 7) % warm)),
  };
  for (let i = 0; i < 3; i++) trainStep(model, optimizer, builder.fill(warmOnly, order, 0, 16));
  model.appendItems(full.subarray((warm + 1) * D), NUM_ITEMS - warm);
  const withNew: Sequences = {
    offsets: warmOnly.offsets,
    items: Int32Array.from({ length: 96 }, (_, i) => 1 + ((i * 7) % NUM_ITEMS)),
  };
  const before = Float32Array.from(model.items.weight!);
  const first = trainStep(model, optimizer, builder.fill(withNew, order, 0, 16));
  let last = first;
  for (let i = 0; i < 10; i++) last = trainStep(model, optimizer, builder.fill(withNew, order, 0, 16));
  const delta = model.items.weight!;
  const moved = (row: number) =>
    delta.subarray(row * D, (row + 1) * D).some((v, j) => v !== before[row * D + j]);
  assert.ok(moved(5), 'an old item keeps training');
  assert.ok(moved(warm + 3), 'an appended item trains');
  assert.ok(last < first, `${first} -> ${last}`);
});

test('warmupSteps scales the learning rate linearly: the first of 4 warmup steps moves every weight a quarter as far', async () => {
  const firstStep = async (warmupSteps: number) => {
    const model = makeModel();
    const before = model.parameters().map((t) => Float32Array.from(t.data));
    // One batch holds every sequence: one epoch is one step.
    await train(model, trainData, { ...quiet, epochs: 1, batchSize: 300, warmupSteps });
    return model.parameters().flatMap((t, i) => Array.from(t.data, (v, j) => v - before[i][j]));
  };
  const plain = await firstStep(0);
  assert.deepEqual(await firstStep(1), plain, 'warmupSteps 1: the full rate from the first step');
  const warm = await firstStep(4);
  let compared = 0;
  plain.forEach((step, i) => {
    if (Math.abs(step) < 1e-5) return;
    compared++;
    assert.ok(Math.abs(warm[i] / step - 0.25) < 1e-2, `weight ${i}: ${warm[i]} vs ${step}`);
  });
  assert.ok(compared > 1000, `${compared} weights moved`);
  for (const bad of [-1, 1.5])
    await assert.rejects(
      train(makeModel(), trainData, { ...quiet, epochs: 1, warmupSteps: bad }),
      new RegExp(`^Error: train: warmupSteps must be an integer >= 0 \\(got ${bad}\\)$`),
    );
});

test("lrSchedule 'cosine' decays the rate over all epochs: of 2 one-step epochs, the second moves half as far", async () => {
  const steps = async (lrSchedule: 'constant' | 'cosine') => {
    const model = makeModel();
    const flat = () => model.parameters().flatMap((t) => Array.from(t.data));
    const snapshots = [flat()];
    // One batch holds every sequence: each epoch is one step.
    await train(model, trainData, {
      ...quiet,
      epochs: 2,
      batchSize: 300,
      lrSchedule,
      onProgress: () => snapshots.push(flat()),
    });
    return [1, 2].map((e) => snapshots[e].map((v, i) => v - snapshots[e - 1][i]));
  };
  const [constant1, constant2] = await steps('constant');
  const [cosine1, cosine2] = await steps('cosine');
  assert.deepEqual(cosine1, constant1, 'the first step has the full rate');
  let compared = 0;
  constant2.forEach((step, i) => {
    if (Math.abs(step) < 1e-5) return;
    compared++;
    // Step 2 of 2: (1 + cos(pi / 2)) / 2 = 0.5; the same weights, batch and moments before it.
    assert.ok(Math.abs(cosine2[i] / step - 0.5) < 1e-2, `weight ${i}: ${cosine2[i]} vs ${step}`);
  });
  assert.ok(compared > 1000, `${compared} weights moved`);
  await assert.rejects(
    train(makeModel(), trainData, { ...quiet, epochs: 1, lrSchedule: 'step' as 'cosine' }),
    /^Error: train: lrSchedule must be constant or cosine \(got 'step'\)$/,
  );
});

/** Every trainable value of the model, group by group, as one flat array per group. */
function groupValues(model: SASRec): Float32Array[] {
  return model.paramGroups().map((g) => Float32Array.from(g.param));
}

test('lrScales: a group scaled by 0.5 takes half the first step, 0 freezes it, the others step as with no scales', async () => {
  const firstStep = async (lrScales?: Record<string, number>) => {
    const model = makeModel({ strategy: 'content-delta' });
    const before = groupValues(model);
    // One batch holds every sequence: one epoch is one step.
    await train(model, trainData, { ...quiet, epochs: 1, batchSize: 300, lrScales });
    return groupValues(model).map((after, i) => after.map((v, j) => v - before[i][j]));
  };
  const [plainDense, plainDelta] = await firstStep();
  const [sameDense, sameDelta] = await firstStep({});
  assert.deepEqual([sameDense, sameDelta], [plainDense, plainDelta], 'no scales: the default, bit for bit');
  const [halfDense, halfDelta] = await firstStep({ dense: 0.5 });
  assert.deepEqual(halfDelta, plainDelta, 'the delta steps at the full rate');
  let compared = 0;
  plainDense.forEach((step, i) => {
    if (Math.abs(step) < 1e-5) return;
    compared++;
    assert.ok(Math.abs(halfDense[i] / step - 0.5) < 1e-2, `dense weight ${i}: ${halfDense[i]} vs ${step}`);
  });
  assert.ok(compared > 1000, `${compared} dense weights moved`);
  const [frozenDense, frozenDelta] = await firstStep({ dense: 0 });
  assert.ok(
    frozenDense.every((v) => v === 0),
    'dense weights frozen',
  );
  assert.ok(
    frozenDelta.some((v) => v !== 0),
    'the delta still learns',
  );
  await assert.rejects(
    train(makeModel(), trainData, { ...quiet, epochs: 1, lrScales: { dense: -1 } }),
    /^Error: Adam: the lr scale of group 'dense' must be a number >= 0 \(got -1\)$/,
  );
  await assert.rejects(
    train(makeModel(), trainData, { ...quiet, epochs: 1, lrScales: { blocks: 0.5 } }),
    /^Error: Adam: lr scale for 'blocks', which is not a parameter group \(dense, items\)$/,
  );
});

test('ema: validation, the kept weights and the checkpoint are the running average; the live training is unchanged', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-ema-'));
  try {
    const run = async (ema: number) => {
      const model = makeModel({ strategy: 'content-delta' });
      const live = [groupValues(model)];
      const validated: Float32Array[][] = [];
      const losses: number[] = [];
      const checkpointPath = join(dir, `ema-${ema}.safetensors`);
      // One step per epoch; the validation score rises every epoch, so the last epoch is the best.
      const result = await train(model, trainData, {
        ...quiet,
        epochs: 3,
        batchSize: 300,
        ema,
        checkpointPath,
        validate: (m) => {
          validated.push(groupValues(m));
          return validated.length;
        },
        onProgress: (p) => {
          live.push(groupValues(model));
          losses.push(p.loss);
        },
      });
      return { model, live, validated, losses, result, checkpointPath };
    };
    const plain = await run(0);
    plain.validated.forEach((v, e) =>
      assertSameWeights(v, plain.live[e + 1], `ema 0: epoch ${e + 1} validates the live weights`),
    );
    const averaged = await run(0.5);
    assert.deepEqual(averaged.losses, plain.losses, 'the same live training');
    averaged.live.forEach((w, e) => assertSameWeights(w, plain.live[e], `live weights after epoch ${e}`));
    // average_t = average_{t-1} + (1 - min(0.5, (1 + t) / (10 + t))) (live_t - average_{t-1}), average_0 = start.
    let expected = plain.live[0].map((g) => Float64Array.from(g));
    for (let t = 1; t <= 3; t++) {
      const rate = 1 - Math.min(0.5, (1 + t) / (10 + t));
      expected = expected.map((a, i) => a.map((v, j) => v + rate * (plain.live[t][i][j] - v)));
      averaged.validated[t - 1].forEach((g, i) => {
        let worst = 0;
        g.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - expected[i][j]))));
        assert.ok(worst < 1e-6, `epoch ${t}, group ${i}: off by ${worst}`);
      });
    }
    assert.ok(
      averaged.validated[2].some((g, i) => g.some((v, j) => v !== plain.live[3][i][j])),
      'the average differs from the live weights',
    );
    assert.equal(averaged.result.bestEpoch, 3);
    assertSameWeights(groupValues(averaged.model), averaged.validated[2], 'the model keeps the best average');
    const { model: saved } = await loadCheckpoint(averaged.checkpointPath, referenceKernels);
    assertSameWeights(groupValues(saved), averaged.validated[2], 'the checkpoint holds the average');
    for (const bad of [-0.1, 1])
      await assert.rejects(
        train(makeModel(), trainData, { ...quiet, epochs: 1, ema: bad }),
        new RegExp(`^Error: train: ema must be a decay in \\[0, 1\\) \\(got ${bad}\\)$`),
      );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('replayOrder: every always-id each epoch plus a new sample of the others, without repeats', () => {
  const always = Int32Array.from([3, 7, 9]);
  const others = Int32Array.from({ length: 20 }, (_, i) => 100 + i);
  const rng = new Random(5);
  const order = new Int32Array(always.length + 4);
  const sampled = new Set<number>();
  for (let epoch = 0; epoch < 5; epoch++) {
    replayOrder(always, others, rng, order);
    assert.deepEqual(Array.from(order.subarray(0, 3)), [3, 7, 9]);
    const sample = Array.from(order.subarray(3));
    assert.equal(new Set(sample).size, 4, `epoch ${epoch}: no repeats`);
    for (const id of sample) {
      assert.ok(id >= 100 && id < 120, `epoch ${epoch}: ${id} is one of the others`);
      sampled.add(id);
    }
  }
  assert.ok(sampled.size > 4, `a new sample each epoch (${sampled.size} distinct ids in 5 epochs)`);
});

test('replay: with fraction 0 an epoch trains exactly the flagged sequences; the epoch size counts the sample', async () => {
  const flagged = Uint8Array.from({ length: 300 }, (_, s) => (s % 3 === 0 ? 1 : 0));
  const keep = Array.from(flagged.keys()).filter((s) => flagged[s] === 1);
  const offsets = new Int32Array(keep.length + 1);
  const items: number[] = [];
  keep.forEach((s, r) => {
    items.push(...trainData.items.subarray(trainData.offsets[s], trainData.offsets[s + 1]));
    offsets[r + 1] = items.length;
  });
  const restricted = { offsets, items: Int32Array.from(items) };
  const a = makeModel();
  const b = makeModel();
  await train(a, trainData, { ...quiet, epochs: 1, replay: { always: flagged, fraction: 0 } });
  const onSubset = await train(b, restricted, { ...quiet, epochs: 1 });
  assertSameWeights(snapshot(a), snapshot(b), 'replay with fraction 0 = training on the flagged sequences');
  const half = await train(makeModel(), trainData, {
    ...quiet,
    epochs: 1,
    replay: { always: flagged, fraction: 0.5 },
  });
  assert.equal(onSubset.sequences, 100);
  assert.equal(half.sequences, 100 + 100, '100 flagged + half of the 200 others');
  await assert.rejects(
    train(makeModel(), trainData, {
      ...quiet,
      epochs: 1,
      replay: { always: flagged.subarray(1), fraction: 0 },
    }),
    /^Error: train: replay.always has 299 flags for 300 sequences$/,
  );
  await assert.rejects(
    train(makeModel(), trainData, { ...quiet, epochs: 1, replay: { always: flagged, fraction: 2 } }),
    /^Error: train: replay.fraction must be in \[0, 1\] \(got 2\)$/,
  );
});
