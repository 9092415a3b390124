/**
 * Trains SASRec on the Amazon Beauty split (PROTOCOL.md defaults) with the paper's settings and early stopping on
 * validation NDCG@10, printing the per-epoch progress, then the test metrics. A report, not a test:
 *
 *   node --import tsx bench/beauty-train.ts [--strategy id] [--epochs 200] [--d 128] [--seed 0] [--patience 5]
 *
 * Content strategies need content vectors, which this script does not build: it runs `id` only.
 */
import { parseArgs } from 'node:util';
import { readInteractions } from '../src/data/readers.js';
import { prepareSplit } from '../src/data/split.js';
import { evaluate, validationNdcg } from '../src/eval/evaluate.js';
import { kernels } from '../src/kernels/index.js';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { train } from '../src/train/trainer.js';

const { values } = parseArgs({
  options: {
    epochs: { type: 'string', default: '200' },
    d: { type: 'string', default: '128' },
    'max-length': { type: 'string', default: '64' },
    seed: { type: 'string', default: '0' },
    patience: { type: 'string', default: '5' },
    'batch-size': { type: 'string', default: '128' },
    data: {
      type: 'string',
      default: new URL('../../shared/data/amazon-beauty/interactions.csv.gz', import.meta.url).pathname,
    },
  },
});

const t0 = performance.now();
const interactions = await readInteractions(values.data!);
const split = prepareSplit(interactions);
const maxLength = Number(values['max-length']);
console.log(
  `kernels: ${kernels.name}; split: ${split.stats.train_users} training sequences, ${split.numWarm} warm items, ` +
    `${split.validation.targets.length} validation users, ${split.test.targets.length} test cases ` +
    `(read + split ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
);

const config = sasrecConfig({
  numItems: split.numWarm,
  d: Number(values.d),
  maxLength,
  strategy: 'id',
  seed: Number(values.seed),
});
console.log(`config: ${JSON.stringify(config)}`);
const model = new SASRec(config);
let lastCpu = process.cpuUsage();
const validate = (m: SASRec) => validationNdcg(m, split, { k: 10, maxLength });
const result = await train(model, split.train, {
  epochs: Number(values.epochs),
  patience: Number(values.patience),
  batchSize: Number(values['batch-size']),
  validate,
  // CPU seconds per epoch as well: on a shared machine wall time mostly measures the other processes.
  onProgress: (p) => {
    const cpu = process.cpuUsage(lastCpu);
    lastCpu = process.cpuUsage();
    console.log(`${p.line}  (process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s)`);
  },
});
const first = result.history[0];
console.log(
  `done: ${result.stopReason} after ${result.history.length} epochs (${result.steps} steps) in ${(result.seconds / 60).toFixed(1)} min; ` +
    `best epoch ${result.bestEpoch}, validation NDCG@10 ${result.bestMetric?.toFixed(4)}; ` +
    `first epoch ${first ? first.seconds.toFixed(1) : '-'} s with validation`,
);
const losses = result.history.map((h) => h.loss.toFixed(3)).join(' ');
console.log(`loss per epoch: ${losses}`);
const test = evaluate(model, split, { recommendColdItems: false, filterColdInputs: true, maxLength });
console.log(
  `test (warm candidates, cold inputs dropped): all NDCG@10 ${test.all['ndcg@10'].toFixed(4)} HR@10 ${test.all['hr@10'].toFixed(4)}; ` +
    `warm NDCG@10 ${test.warm['ndcg@10'].toFixed(4)} HR@10 ${test.warm['hr@10'].toFixed(4)}`,
);
