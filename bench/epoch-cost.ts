/**
 * Per-epoch cost of the full softmax against a sampled loss on an experiment's own data:
 *   node --import tsx bench/epoch-cost.ts --config experiments/zvuk-synthetic.json [--steps 3] [--json FILE]
 *
 * Loads the config's data and content as `deltarec experiment` does, builds the config's content-delta SASRec
 * (its `model` settings: d, maxLength, negatives) once per loss, and times training steps on the epoch's first
 * shuffled batches, the losses alternating step by step after one warm-up step each, then one validation pass
 * (validation NDCG@10 on the split's validation users, as after every epoch). An epoch is extrapolated as
 * steps per epoch x mean step time + the validation time: the full softmax costs minutes per step at 131k
 * items, so a whole epoch of it is not run. Single thread with DELTAREC_THREADS=1, as the experiments. Times are
 * CPU seconds of this process (one thread: what the work costs, whatever else runs on the machine; the wall
 * times are printed too).
 */
import { writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readExperimentConfig } from '../src/index.js';
import { kernels, loadNativeAddon } from '../src/kernels/index.js';
import { prepareData } from '../src/internals.js';
import { validationNdcg } from '../src/eval/evaluate.js';
import { SASRec, sasrecConfig, type LossKind } from '../src/model/sasrec.js';
import { BatchBuilder, createOptimizer, trainStep } from '../src/train/trainer.js';
import { Random } from '../src/util/random.js';

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    steps: { type: 'string', default: '3' },
    json: { type: 'string' },
  },
});
if (!values.config) throw new Error('usage: bench/epoch-cost.ts --config FILE [--steps N] [--json FILE]');
const configPath = resolve(values.config);
const config = await readExperimentConfig(configPath);
const log = (line: string) => process.stderr.write(`[epoch-cost] ${line}\n`);
const data = await prepareData(config.data, config.content, dirname(configPath), log);
const { split, content } = data;
const settings = config.model as Record<string, unknown>;
const d = Number(settings.d ?? 128);
const maxLength = Number(settings.maxLength ?? 200);
const negatives = Number(settings.negatives ?? 256);
const batchSize = 128;

// Unit content rows projected to d as fit() does is not needed for timing: any unit rows cost the same.
const rows = split.numItems + 1;
const width = content!.length / rows;
if (width !== d)
  throw new Error(`content has ${width} dims, the model d = ${d}: this bench needs them equal`);
const unit = Float32Array.from(content!);
for (let r = 1; r < rows; r++) {
  let s = 0;
  for (let j = 0; j < d; j++) s += unit[r * d + j] ** 2;
  const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
  for (let j = 0; j < d; j++) unit[r * d + j] *= inv;
}

const usable: number[] = [];
const { offsets } = split.train;
for (let s = 0; s + 1 < offsets.length; s++) if (offsets[s + 1] - offsets[s] >= 2) usable.push(s);
const order = Int32Array.from(usable);
new Random(0).shuffle(order);
const stepsPerEpoch = Math.ceil(order.length / batchSize);
const losses: LossKind[] = ['sampled', 'full'];
const runs = losses.map((loss) => {
  const model = new SASRec(
    sasrecConfig({ numItems: split.numItems, d, maxLength, strategy: 'content-delta', loss, negatives }),
    unit,
    kernels,
  );
  return {
    loss,
    model,
    optimizer: createOptimizer(model, { lr: 1e-3 }),
    builder: new BatchBuilder(batchSize, maxLength),
    ms: [] as number[],
  };
});
const steps = Number(values.steps);
log(
  `${split.numItems} items, ${order.length} training sequences (${stepsPerEpoch} steps of ${batchSize} per epoch), d = ${d}, length ${maxLength}, ${loadNativeAddon()?.threads() ?? 1} thread(s); ${steps} timed steps per loss after a warm-up step`,
);
for (let s = 0; s <= steps; s++) {
  for (const run of runs) {
    const batch = run.builder.fill(
      split.train,
      order,
      s * batchSize,
      Math.min(batchSize, order.length - s * batchSize),
    );
    const started = performance.now();
    const cpu = cpuMs();
    trainStep(run.model, run.optimizer, batch);
    const ms = cpuMs() - cpu;
    if (s > 0) run.ms.push(ms);
    log(
      `${run.loss} step ${s}${s === 0 ? ' (warm-up)' : ''}: CPU ${(ms / 1000).toFixed(2)} s (wall ${((performance.now() - started) / 1000).toFixed(2)} s)`,
    );
  }
}
const results: Record<string, number | string> = {
  config: values.config,
  items: split.numItems,
  sequences: order.length,
  steps_per_epoch: stepsPerEpoch,
  threads: loadNativeAddon()?.threads() ?? 1,
};
for (const run of runs) {
  const cpu = cpuMs();
  validationNdcg(run.model, split, { maxLength });
  const validationS = (cpuMs() - cpu) / 1000;
  const stepS = run.ms.reduce((a, b) => a + b, 0) / run.ms.length / 1000;
  const epochS = stepS * stepsPerEpoch + validationS;
  log(
    `${run.loss}: step ${stepS.toFixed(2)} s CPU (mean of ${run.ms.map((x) => (x / 1000).toFixed(2)).join(', ')}), validation ${validationS.toFixed(1)} s CPU, epoch ${epochS.toFixed(0)} s CPU (extrapolated)`,
  );
  Object.assign(results, {
    [`${run.loss}_step_s`]: Number(stepS.toFixed(3)),
    [`${run.loss}_validation_s`]: Number(validationS.toFixed(2)),
    [`${run.loss}_epoch_s`]: Number(epochS.toFixed(1)),
  });
}
results.full_over_sampled_epoch = Number(
  ((results.full_epoch_s as number) / (results.sampled_epoch_s as number)).toFixed(1),
);
results.load_average = (await import('node:os')).loadavg()[0].toFixed(1);
console.log(JSON.stringify(results, null, 2));
if (values.json) await writeFile(values.json, JSON.stringify(results, null, 2) + '\n');
