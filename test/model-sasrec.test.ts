/**
 * SASRec inference behaviour: trimming/padding invariance, scoring layout, cold-item appending, persistence.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { referenceKernels } from '../src/kernels/index.js';
import { SASRec, sasrecConfig, type Batch, type SASRecConfig } from '../src/model/sasrec.js';
import { loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.js';
import { Random } from '../src/util/random.js';

function unitContent(numItems: number, d: number, seed: number): Float32Array {
  const rng = new Random(seed);
  const c = new Float32Array((numItems + 1) * d);
  for (let i = 1; i <= numItems; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += (c[i * d + j] = rng.nextGaussian()) ** 2;
    for (let j = 0; j < d; j++) c[i * d + j] /= Math.sqrt(s);
  }
  return c;
}

function config(overrides: Partial<SASRecConfig> = {}): SASRecConfig {
  return sasrecConfig({ numItems: 30, d: 16, heads: 2, dropout: 0.2, maxLength: 8, seed: 1, ...overrides });
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    assert.ok(Math.abs(a[i] - b[i]) <= tol * (1 + Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

test('a sequence encodes the same alone and next to longer ones (positions count from the end)', () => {
  const model = new SASRec(config(), unitContent(30, 16, 2), referenceKernels);
  const short = Int32Array.from([4, 9, 2]);
  const long = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const alone = new Float32Array(16);
  model.encode([short], alone);
  const together = new Float32Array(32);
  model.encode([long, short], together);
  close(together.subarray(16), alone, 1e-5, 'encoding');
  // Only the last maxLength items matter.
  const truncated = new Float32Array(16);
  model.encode([long.subarray(2)], truncated);
  close(together.subarray(0, 16), truncated, 1e-6, 'truncation');
});

test('extra left padding changes neither the loss nor the gradients', () => {
  const model = new SASRec(config({ dropout: 0 }), unitContent(30, 16, 2), referenceKernels);
  const make = (T: number): Batch => {
    const b: Batch = {
      size: 2,
      T,
      inputs: new Int32Array(2 * T),
      targets: new Int32Array(2 * T),
      lengths: Int32Array.from([3, 2]),
    };
    b.inputs.set([5, 6, 7], T - 3);
    b.targets.set([6, 7, 8], T - 3);
    b.inputs.set([9, 1], 2 * T - 2);
    b.targets.set([1, 30], 2 * T - 2);
    return b;
  };
  const lossA = model.forwardBackward(make(3), false);
  const gradA = Float32Array.from(model.grads.flat);
  const itemsA = Float32Array.from(model.items.grad!);
  const lossB = model.forwardBackward(make(7), false);
  assert.ok(Math.abs(lossA - lossB) < 1e-6, `${lossA} vs ${lossB}`);
  close(model.grads.flat, gradA, 1e-5, 'dense gradients');
  close(model.items.grad!, itemsA, 1e-5, 'item gradients');
});

test('score: padding column is -Infinity, scores are h . e, unknown items in inputs are ignored', () => {
  const model = new SASRec(config({ strategy: 'id' }), undefined, referenceKernels);
  const inputs = [Int32Array.from([3, 4, 5]), Int32Array.from([7])];
  const scores = new Float32Array(2 * 31);
  model.score(inputs, scores);
  const h = new Float32Array(32);
  model.encode(inputs, h);
  const e = model.itemEmbeddings();
  for (let r = 0; r < 2; r++) {
    assert.equal(scores[r * 31], -Infinity);
    for (const item of [1, 17, 30]) {
      let s = 0;
      for (let j = 0; j < 16; j++) s += h[r * 16 + j] * e[item * 16 + j];
      assert.ok(Math.abs(scores[r * 31 + item] - s) < 1e-4, `score of item ${item}`);
    }
  }
  // Item 99 does not exist for this model: it is dropped from the input.
  const withUnknown = new Float32Array(31);
  model.score([Int32Array.from([3, 99, 4, 5])], withUnknown);
  close(withUnknown, scores.subarray(0, 31), 1e-6, 'scores with an unknown item');
  assert.throws(() => model.appendItems(new Float32Array(16), 1), /id/);
  // An empty input (or one with only unknown items) scores with the final layer norm of a zero row: beta . e.
  const empty = new Float32Array(2 * 31);
  model.score([new Int32Array(0), Int32Array.from([99])], empty);
  const beta = model.params.finalBeta;
  for (const item of [1, 30]) {
    let s = 0;
    for (let j = 0; j < 16; j++) s += beta[j] * e[item * 16 + j];
    assert.ok(
      Math.abs(empty[item] - s) < 1e-5 && Math.abs(empty[31 + item] - s) < 1e-5,
      `empty input, item ${item}`,
    );
  }
});

test('appendItems: cold items get their content vector as embedding and are scored without retraining', () => {
  for (const strategy of ['content-init', 'content-delta', 'content-frozen'] as const) {
    const content = unitContent(30, 16, 2);
    const model = new SASRec(config({ strategy }), content, referenceKernels);
    const input = [Int32Array.from([3, 4, 5])];
    const before = new Float32Array(31);
    model.score(input, before);
    const cold = unitContent(2, 16, 9).subarray(16);
    model.appendItems(cold, 2);
    assert.equal(model.numItems, 32);
    const e = model.itemEmbeddings();
    close(e.subarray(31 * 16), cold, 0, `${strategy}: cold rows`);
    const after = new Float32Array(33);
    model.score(input, after);
    close(after.subarray(0, 31), before, 1e-6, `${strategy}: warm scores unchanged`);
    assert.ok(Number.isFinite(after[31]) && Number.isFinite(after[32]), `${strategy}: cold scores finite`);
  }
});

test('parameters() round-trips through fromParameters and a checkpoint file', async () => {
  const model = new SASRec(config({ strategy: 'content-delta' }), unitContent(30, 16, 2), referenceKernels);
  // Non-trivial delta.
  const rng = new Random(3);
  const delta = model.paramGroups()[1].param;
  for (let i = 16; i < delta.length; i++) delta[i] = 0.05 * rng.nextGaussian();
  model.parametersChanged();
  model.appendItems(unitContent(1, 16, 4).subarray(16), 1);
  const inputs = [Int32Array.from([1, 2, 31]), Int32Array.from([30])];
  const expected = new Float32Array(2 * 32);
  model.score(inputs, expected);

  const tensors = new Map(model.parameters().map((t) => [t.name, Float32Array.from(t.data)]));
  const copy = SASRec.fromParameters(model.config, tensors, referenceKernels);
  const got = new Float32Array(2 * 32);
  copy.score(inputs, got);
  close(got, expected, 0, 'fromParameters scores');

  const dir = await mkdtemp(join(tmpdir(), 'deltarec-ckpt-'));
  try {
    await saveCheckpoint(join(dir, 'model.safetensors'), model, { epoch: '3' });
    const { model: loaded, metadata } = await loadCheckpoint(
      join(dir, 'model.safetensors'),
      referenceKernels,
    );
    assert.equal(metadata.epoch, '3');
    assert.equal(loaded.numItems, 31);
    loaded.score(inputs, got);
    close(got, expected, 0, 'checkpoint scores');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  assert.throws(() => SASRec.fromParameters(model.config, new Map()), /missing tensor 'content'/);
});

test('bad configs and batches fail with clear errors', () => {
  assert.throws(() => new SASRec(config({ heads: 3 }), unitContent(30, 16, 2)), /divisible/);
  assert.throws(() => new SASRec(config({ strategy: 'content-delta' })), /needs content/);
  assert.throws(() => new SASRec(config(), new Float32Array(10)), /expected \(numItems \+ 1\) x d/);
  const model = new SASRec(config({ strategy: 'id' }), undefined, referenceKernels);
  const bad: Batch = {
    size: 1,
    T: 2,
    inputs: Int32Array.from([0, 31]),
    targets: Int32Array.from([0, 1]),
    lengths: Int32Array.from([1]),
  };
  assert.throws(() => model.forwardBackward(bad), /input 31/);
});
