/**
 * Learned fusion (issue 15 item 3, docs/cold-start.md): does a fusion weight that depends on the input beat one
 * fixed weight? For one variant and seed of an experiment config, the model is trained on the backtest's training
 * period (and, with --test, on the real one), scored with every weight of the grid, and a gate is fitted from the
 * per-case ranks: one weight per bucket of an input feature (share of cold items in the input, input length, last
 * input item cold or not), each bucket's weight the best of the grid on that bucket's cases. Fusion scores each
 * input on its own, so a gated model's rank of a case is the rank under its bucket's weight: no extra scoring.
 *
 * The backtest decides, by 2-fold cross-fitting over users (weights fitted on one half of the inner test users,
 * scored on the other half, both ways): a gate is worth keeping only if it beats the fixed weight there. With --test
 * the gate and the fixed weight fitted on the whole inner test period are applied to the real test period.
 * Trained models are saved under --models DIR and loaded from there on the next run.
 *
 *   DELTAREC_THREADS=1 node --import tsx bench/fusion-gate.ts --config experiments/ml100k-cold.json \
 *     --variant content-delta --seed 0 --models runs/gate-ml100k [--test] [--json out.json]
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  DEFAULT_LEXICAL_GRID,
  evaluate,
  fit,
  load,
  save,
  withLexicalFusion,
  type FitOptions,
  type FittedModel,
  type ModelKind,
} from '../src/api.js';
import type { CsrMatrix } from '../src/content/sparse.js';
import type { PreparedSplit } from '../src/data/types.js';
import { prepareData } from '../src/eval/data.js';
import { readExperimentConfig } from '../src/experiment/experiment.js';
import { ndcgAt } from '../src/eval/metrics.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    variant: { type: 'string', default: 'content-delta' },
    seed: { type: 'string', default: '0' },
    grid: { type: 'string', default: DEFAULT_LEXICAL_GRID.join(',') },
    models: { type: 'string' },
    test: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
if (!values.config || !values.models) {
  console.error(
    'usage: bench/fusion-gate.ts --config EXPERIMENT.json --models DIR [--variant content-delta] [--seed 0] [--grid 0,1,2,4,8,16,32] [--test] [--json F]',
  );
  process.exit(2);
}
const config = await readExperimentConfig(values.config);
const variant = values.variant as ModelKind;
const seed = Number(values.seed);
const grid = values.grid.split(',').map(Number);
const log = (line: string) => console.error(line);
const data = await prepareData(config.data, config.content, dirname(values.config), log, true);

/** The variant trained on `split` (loaded from DIR/name when saved there by an earlier run). */
async function trained(name: string, split: PreparedSplit, content: Float32Array): Promise<FittedModel> {
  const dir = join(values.models!, `${name}-${variant}-seed${seed}`);
  if (existsSync(join(dir, 'manifest.json'))) {
    log(`loading ${dir}`);
    return load(dir);
  }
  const model = await fit(split, {
    ...(config.model as Partial<FitOptions>),
    lexicalWeight: 0,
    model: variant,
    seed,
    content,
    handleSigint: false,
    onProgress: (p) => log(`${name}: ${p.line}`),
  });
  await save(model, dir);
  return model;
}

interface Period {
  split: PreparedSplit;
  /** gain[w][c]: NDCG@10 of case c with weight grid[w]. */
  gain: Float64Array[];
  /** Per-case input features. */
  features: { coldShare: Float64Array; length: Int32Array; lastCold: Uint8Array };
}

function period(model: FittedModel, split: PreparedSplit, rows: CsrMatrix): Period {
  const gain = grid.map((w) => {
    const { ranks } = evaluate(withLexicalFusion(model, rows, w), split);
    return Float64Array.from(ranks, (r) => ndcgAt(r, 10));
  });
  const n = split.test.targets.length;
  const coldShare = new Float64Array(n);
  const length = new Int32Array(n);
  const lastCold = new Uint8Array(n);
  const { offsets, items } = split.test.inputs;
  for (let c = 0; c < n; c++) {
    const start = Math.max(offsets[c], offsets[c + 1] - model.maxLength);
    let cold = 0;
    for (let p = start; p < offsets[c + 1]; p++) if (items[p] > split.numWarm) cold++;
    length[c] = offsets[c + 1] - start;
    coldShare[c] = length[c] > 0 ? cold / length[c] : 0;
    lastCold[c] = length[c] > 0 && items[offsets[c + 1] - 1] > split.numWarm ? 1 : 0;
  }
  return { split, gain, features: { coldShare, length, lastCold } };
}

/** A gate: input features -> bucket (0 .. buckets - 1). */
interface Gate {
  name: string;
  labels: string[];
  bucket: (p: Period, c: number) => number;
}
const GATES: Gate[] = [
  { name: 'fixed', labels: ['all'], bucket: () => 0 },
  {
    name: 'cold share of the input',
    labels: ['0', '(0, 0.5)', '[0.5, 1]'],
    bucket: (p, c) => (p.features.coldShare[c] === 0 ? 0 : p.features.coldShare[c] < 0.5 ? 1 : 2),
  },
  {
    name: 'last input item cold',
    labels: ['warm', 'cold'],
    bucket: (p, c) => p.features.lastCold[c],
  },
  {
    name: 'input length',
    labels: ['1', '2-3', '4-7', '8+'],
    bucket: (p, c) => {
      const l = p.features.length[c];
      return l <= 1 ? 0 : l <= 3 ? 1 : l <= 7 ? 2 : 3;
    },
  },
];

/** Per bucket, the grid index with the largest NDCG sum over the cases `use` selects (ties: the smaller weight). */
function fitGate(p: Period, gate: Gate, use: (c: number) => boolean): number[] {
  const sums = gate.labels.map(() => new Float64Array(grid.length));
  for (let c = 0; c < p.gain[0].length; c++) {
    if (!use(c)) continue;
    const b = gate.bucket(p, c);
    for (let w = 0; w < grid.length; w++) sums[b][w] += p.gain[w][c];
  }
  return sums.map((s) => s.reduce((best, v, w) => (v > s[best] ? w : best), 0));
}

/** Mean NDCG@10 (all, cold, warm cases) of the gated weights over the cases `use` selects. */
function score(p: Period, gate: Gate, weights: number[], use: (c: number) => boolean) {
  const sum = [0, 0, 0];
  const count = [0, 0, 0];
  for (let c = 0; c < p.gain[0].length; c++) {
    if (!use(c)) continue;
    const g = p.gain[weights[gate.bucket(p, c)]][c];
    const seg = p.split.test.cold[c] ? 1 : 2;
    sum[0] += g;
    count[0]++;
    sum[seg] += g;
    count[seg]++;
  }
  return sum.map((s, i) => (count[i] > 0 ? s / count[i] : 0));
}

/** 2 folds by user (a hash of the user id), so one user's cases stay together. */
function foldOf(user: string): number {
  let h = 2166136261;
  for (let i = 0; i < user.length; i++) h = Math.imul(h ^ user.charCodeAt(i), 16777619);
  return (h >>> 0) & 1;
}

const backtest = data.backtest!;
const inner = period(
  await trained('backtest', backtest.split, backtest.content!),
  backtest.split,
  backtest.lexical!,
);
const folds = Uint8Array.from(backtest.split.test.users, foldOf);
const outer = values.test
  ? period(await trained('test', data.split, data.content!), data.split, data.lexical!)
  : null;
const fmt = (v: number) => v.toFixed(4);
const result: Record<string, unknown>[] = [];
console.log(
  `${variant}, seed ${seed}, grid ${grid.join(',')}; backtest: ${backtest.split.test.targets.length} test cases` +
    (outer ? `; test: ${data.split.test.targets.length} test cases` : ''),
);
console.log(
  '| gate | weights per bucket (fitted on the whole backtest) | backtest in-sample all | backtest 2-fold all | ' +
    (outer ? 'test cold / warm / all |' : ''),
);
console.log(`| --- | --- | --- | --- |${outer ? ' --- |' : ''}`);
for (const gate of GATES) {
  const weights = fitGate(inner, gate, () => true);
  const inSample = score(inner, gate, weights, () => true)[0];
  let crossSum = 0;
  for (const f of [0, 1]) {
    const fitted = fitGate(inner, gate, (c) => folds[c] !== f);
    crossSum += score(inner, gate, fitted, (c) => folds[c] === f)[0] * folds.filter((x) => x === f).length;
  }
  const cross = crossSum / folds.length;
  const test = outer ? score(outer, gate, weights, () => true) : null;
  const shown = gate.labels.map((l, b) => `${l}: ${grid[weights[b]]}`).join(', ');
  console.log(
    `| ${gate.name} | ${shown} | ${fmt(inSample)} | ${fmt(cross)} |` +
      (test ? ` ${fmt(test[1])} / ${fmt(test[2])} / ${fmt(test[0])} |` : ''),
  );
  result.push({
    gate: gate.name,
    buckets: gate.labels,
    weights: weights.map((w) => grid[w]),
    backtestInSample: inSample,
    backtestCrossFitted: cross,
    test: test ? { all: test[0], cold: test[1], warm: test[2] } : null,
  });
}
if (values.json)
  await writeFile(values.json, JSON.stringify({ variant, seed, grid, gates: result }, null, 1) + '\n');
