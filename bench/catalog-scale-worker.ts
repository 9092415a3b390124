/**
 * One catalog-size model in its own process (so its peak RSS is its own), driven by catalog-scale.bench.ts:
 *   node --import tsx bench/catalog-scale-worker.ts NUM_ITEMS LOSS [NEGATIVES_PER]
 * Builds a content-delta SASRec (d = 128, 2 blocks, 1 head, max length 128, dropout 0.3, k = 256 negatives for the
 * sampled loss, drawn per batch or, with NEGATIVES_PER = sequence, per sequence) over NUM_ITEMS items with random unit content and one batch of 128 full-length sequences of
 * uniformly random items, prints `ready`, then answers each stdin line: `step` times one training step (forward,
 * backward, Adam with the delta projection) and prints {"ms": ...}; `step ema-lazy` / `step ema-dense` time a step
 * that also updates a weight average of decay 0.999 (--ema): the lazy one of the trainer (touched item rows only) or
 * the dense one of every row (the trainer's average before lazy averaging: the same class given the groups without
 * their sparse rows), and add {"emaMs": ...}, the time spent in the average's updates, and {"rows": ...}, the item rows the lazy average
 * visited; `stats` prints peak RSS (MB) and
 * the bytes of item state per item. The two averages are created on first use; each is updated only in its own
 * steps, which times the same work as updating it in every step.
 */
import { createInterface } from 'node:readline';
import { kernels } from '../src/kernels/index.js';
import { SASRec, sasrecConfig, type Batch, type LossKind, type NegativesPer } from '../src/model/sasrec.js';
import { createOptimizer, trainStep, WeightAverage } from '../src/train/trainer.js';
import { Random } from '../src/util/random.js';

const numItems = Number(process.argv[2]);
const loss = process.argv[3] as LossKind;
const negativesPer = (process.argv[4] ?? 'batch') as NegativesPer;
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
  negativesPer,
});
const model = new SASRec(config, content, kernels);
const optimizer = createOptimizer(model, { lr: 1e-3 });
// Steady state of a long training, where every row has been updated: make every page of the delta and of Adam's
// moments resident (zero-filled arrays cost no memory until written), so peak RSS is not flattered.
const moments = optimizer as unknown as { m: Float32Array[]; v: Float32Array[] };
for (const a of [...model.paramGroups().map((g) => g.param), ...moments.m, ...moments.v]) {
  for (let i = 0; i < a.length; i += 1024) a[i] += 0; // one store per 4 KiB page
}
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

const averages = new Map<string, WeightAverage>();
function average(kind: string): WeightAverage {
  let a = averages.get(kind);
  if (!a) {
    const groups = model.paramGroups();
    a = new WeightAverage(
      kind === 'ema-lazy' ? groups : groups.map((g) => ({ ...g, sparse: undefined })),
      0.999,
    );
    averages.set(kind, a);
  }
  return a;
}

console.log('ready');
for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'step' || line === 'step ema-lazy' || line === 'step ema-dense') {
    const ema = line === 'step' ? null : average(line.slice(5));
    const visits = ema?.lazyRowVisits ?? 0;
    let emaMs = 0;
    const averaging = (update: () => void) => {
      const started = performance.now();
      update();
      emaMs += performance.now() - started;
    };
    const started = performance.now();
    const value = trainStep(
      model,
      optimizer,
      batch,
      undefined,
      ema ? () => averaging(() => ema.beforeStep()) : undefined,
    );
    if (ema) averaging(() => ema.afterStep());
    const ms = performance.now() - started;
    if (!Number.isFinite(value)) throw new Error(`loss ${value}`);
    console.log(JSON.stringify({ ms, emaMs, rows: (ema?.lazyRowVisits ?? 0) - visits }));
  } else if (line === 'stats') {
    let bytes = 0;
    for (const t of model.parameters())
      if (t.name === 'content' || t.name === 'delta') bytes += t.data.byteLength;
    bytes += model.itemEmbeddings().byteLength; // E = C + D, materialized for inference
    bytes += 2 * (numItems + 1) * D * 4; // Adam's m and v of the delta
    console.log(
      JSON.stringify({ rssMb: process.resourceUsage().maxRSS / 1024, bytesPerItem: bytes / (numItems + 1) }),
    );
  }
}
