/**
 * One catalog-scale measurement in its own process (so its peak RSS is its own), for catalog-scale.bench.ts:
 *   node --import tsx bench/catalog-scale-worker.ts NUM_ITEMS LOSS WARMUP STEPS
 * Builds a content-delta SASRec (d = 128, 2 blocks, 1 head, max length 128, dropout 0.3) over NUM_ITEMS items with
 * random unit content, and times WARMUP + STEPS training steps (forward, backward, Adam with the delta projection)
 * on one batch of 128 full-length sequences of uniformly random items. Prints one JSON line: step milliseconds,
 * peak RSS in MB, and the model's bytes per item.
 */
import { kernels } from '../src/kernels/index.js';
import { SASRec, sasrecConfig, type Batch, type LossKind } from '../src/model/sasrec.js';
import { createOptimizer, trainStep } from '../src/train/trainer.js';
import { Random } from '../src/util/random.js';

const [numItems, loss, warmup, steps] = [
  Number(process.argv[2]),
  process.argv[3] as LossKind,
  Number(process.argv[4]),
  Number(process.argv[5]),
];
const D = 128;
const T = 128;
const BATCH = 128;

const rng = new Random(7);
const content = new Float32Array((numItems + 1) * D);
for (let i = 1; i <= numItems; i++) {
  let s = 0;
  for (let j = 0; j < D; j++) s += (content[i * D + j] = rng.nextGaussian()) ** 2;
  const inv = 1 / Math.sqrt(s);
  for (let j = 0; j < D; j++) content[i * D + j] *= inv;
}
const config = sasrecConfig({
  numItems,
  d: D,
  maxLength: T,
  strategy: 'content-delta',
  loss,
  negatives: 256,
});
const model = new SASRec(config, content, kernels);
content.fill(0); // the model keeps its own copy; the pages of this one are released below by the GC
const optimizer = createOptimizer(model, { lr: 1e-3 });
const batch: Batch = {
  size: BATCH,
  T,
  inputs: new Int32Array(BATCH * T),
  targets: new Int32Array(BATCH * T),
  lengths: new Int32Array(BATCH).fill(T),
};
for (let i = 0; i < BATCH * T; i++) {
  batch.inputs[i] = 1 + rng.nextInt(numItems);
  batch.targets[i] = 1 + rng.nextInt(numItems);
}
// Steady state of a long training, where every row has been updated: make every page of the delta and of Adam's
// moments resident (zero-filled arrays cost no memory until written), so peak RSS is not flattered.
const moments = optimizer as unknown as { m: Float32Array[]; v: Float32Array[] };
for (const a of [...model.paramGroups().map((g) => g.param), ...moments.m, ...moments.v]) {
  for (let i = 0; i < a.length; i += 1024) a[i] += 0; // one store per 4 KiB page
}
const ms: number[] = [];
for (let s = 0; s < warmup + steps; s++) {
  const started = performance.now();
  const value = trainStep(model, optimizer, batch);
  if (!Number.isFinite(value)) throw new Error(`loss ${value} at step ${s}`);
  if (s >= warmup) ms.push(performance.now() - started);
}
let bytes = 0;
for (const t of model.parameters())
  if (t.name === 'content' || t.name === 'delta') bytes += t.data.byteLength;
bytes += model.itemEmbeddings().byteLength; // E = C + D, materialized for inference
bytes += 2 * (numItems + 1) * D * 4; // Adam's m and v of the delta
console.log(
  JSON.stringify({ ms, rssMb: process.resourceUsage().maxRSS / 1024, bytesPerItem: bytes / (numItems + 1) }),
);
