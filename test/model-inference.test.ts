/**
 * The inference path (final block at the last position only, first-block keys and values from per-item tables)
 * against the full forward read at the last position (encodeAllPositions).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kernels, referenceKernels, type Kernels } from '../src/kernels/index.js';
import { SASRec, sasrecConfig, type SASRecConfig } from '../src/model/sasrec.js';
import { Random } from '../src/util/random.js';
import { tinyBatch, unitContent } from './tiny-model.js';

const NUM_ITEMS = 40;

/** A model with every dense parameter (biases and layer-norm parameters too) and the deltas randomized. */
function randomModel(overrides: Partial<SASRecConfig>, k: Kernels, seed: number): SASRec {
  const d = overrides.d ?? 16;
  const contentDim = overrides.strategy === 'content-map' ? 24 : undefined;
  const config = sasrecConfig({ numItems: NUM_ITEMS, d, maxLength: 8, seed, contentDim, ...overrides });
  const content = config.strategy === 'id' ? undefined : unitContent(NUM_ITEMS, contentDim ?? d, seed + 1);
  const model = new SASRec(config, content, k);
  const rng = new Random(seed + 2);
  for (const group of model.paramGroups()) {
    for (let i = group.firstRow * group.rowWidth; i < group.param.length; i++)
      group.param[i] += 0.1 * rng.nextGaussian();
  }
  model.parametersChanged();
  return model;
}

/** Histories: empty, unknown items (beyond numItems), longer than maxLength, single items. */
function histories(rng: Random, count: number, numItems: number): Int32Array[] {
  return Array.from({ length: count }, (_, r) => {
    if (r === 0) return new Int32Array(0);
    const length = 1 + rng.nextInt(r % 3 === 0 ? 20 : 8);
    return Int32Array.from({ length }, () =>
      rng.nextFloat() < 0.05 ? numItems + 5 : 1 + rng.nextInt(numItems),
    );
  });
}

function assertClose(got: Float32Array, want: Float32Array, tol: number, what: string): void {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  assert.ok(worst <= tol, `${what}: largest difference ${worst} > ${tol}`);
}

function compare(model: SASRec, inputs: Int32Array[], what: string): void {
  const d = model.config.d;
  const fast = new Float32Array(inputs.length * d).fill(NaN);
  const full = new Float32Array(inputs.length * d);
  model.encode(inputs, fast);
  model.encodeAllPositions(inputs, full);
  assertClose(fast, full, 1e-5, what);
}

test('last-position inference equals the full forward at the last position', () => {
  const cases: Partial<SASRecConfig>[] = [
    { strategy: 'content-delta' },
    { strategy: 'content-delta', blocks: 1 },
    { strategy: 'content-delta', blocks: 3, heads: 2, activation: 'gelu' },
    { strategy: 'id', heads: 4 },
    { strategy: 'content-map' },
    { strategy: 'content-frozen', d: 32, ffWidth: 48 },
  ];
  for (const k of [referenceKernels, kernels]) {
    cases.forEach((overrides, c) => {
      const what = `${k.name} ${JSON.stringify(overrides)}`;
      const model = randomModel(overrides, k, 10 + c);
      const rng = new Random(c);
      compare(model, histories(rng, 50, NUM_ITEMS), what);
      if (overrides.strategy === 'id') return;
      // Appended items extend the key/value tables; their histories still match the full forward.
      const width = overrides.strategy === 'content-map' ? 24 : model.config.d;
      model.appendItems(unitContent(3, width, 99).subarray(width), 3);
      compare(model, histories(rng, 50, NUM_ITEMS + 3), `${what} after appending`);
      // Rows re-encoded in place (an updated item) get their key/value rows recomputed.
      model.replaceItems(Int32Array.of(2, NUM_ITEMS + 1), unitContent(2, width, 7).subarray(width));
      compare(model, histories(rng, 50, NUM_ITEMS + 3), `${what} after replacing rows`);
    });
  }
});

test('without the per-item tables (a catalog over the table budget) inference still equals the full forward', () => {
  const saved = SASRec.kvTableBytes;
  SASRec.kvTableBytes = 0;
  try {
    for (const overrides of [{}, { blocks: 1 }, { blocks: 3, heads: 2 }] as Partial<SASRecConfig>[]) {
      const model = randomModel({ strategy: 'content-delta', ...overrides }, kernels, 21);
      compare(model, histories(new Random(3), 40, NUM_ITEMS), `no tables ${JSON.stringify(overrides)}`);
    }
  } finally {
    SASRec.kvTableBytes = saved;
  }
});

test('a training step invalidates the inference tables', () => {
  const model = randomModel({ strategy: 'content-delta' }, referenceKernels, 5);
  const inputs = histories(new Random(1), 20, NUM_ITEMS);
  const before = new Float32Array(20 * 16);
  model.encode(inputs, before); // builds the tables
  model.forwardBackward(tinyBatch(), true, 3);
  const wk = model.params.blocks[0].wk;
  for (let i = 0; i < wk.length; i++) wk[i] *= 1.5; // an optimizer step would do this
  model.parametersChanged();
  compare(model, inputs, 'after a parameter change');
  const after = new Float32Array(20 * 16);
  model.encode(inputs, after);
  assert.ok(
    after.some((v, i) => Math.abs(v - before[i]) > 1e-3),
    'the changed key weights change the states',
  );
});

test('encodePacked reads histories in place and equals encode', () => {
  const model = randomModel({ strategy: 'content-delta' }, kernels, 7);
  const inputs = histories(new Random(2), 30, NUM_ITEMS);
  const offsets = new Int32Array(inputs.length + 1);
  inputs.forEach((h, r) => (offsets[r + 1] = offsets[r] + h.length));
  const items = new Int32Array(offsets[inputs.length]);
  inputs.forEach((h, r) => items.set(h, offsets[r]));
  const packed = new Float32Array(inputs.length * 16);
  const separate = new Float32Array(inputs.length * 16);
  model.encodePacked(offsets, items, inputs.length, packed);
  model.encode(inputs, separate);
  assert.deepEqual(packed, separate);
  assert.throws(
    () => model.encodePacked(Int32Array.from([0, 2]), Int32Array.from([3, -1]), 1, packed),
    /input 0 has invalid item index -1 at position 1/,
  );
});
