/**
 * Fusion candidates on saved models (issue 15, docs/cold-start.md "Cold-aware fusion"): for one saved content model
 * and period, every combination of a grid of post-hoc scoring terms is ranked per test case, and the capped ranks
 * (0..9, 255 = not in the top 10) are written to a binary file for bench/fusion-choose.ts. The terms, for item i:
 *
 *   score_i = z_i + w * cos(profile, x_i) + v * cos(last, x_i) + cold_i * (b + wc * cos(profile, x_i))
 *
 * z: the model's scores standardized per input (as in lexical fusion); profile: the normalized sum of the input's
 * sparse TF-IDF rows (the model's max length); last: the last input item's row alone; cold_i: 1 for an item without
 * a trained delta (index > numWarm). Ranks follow evaluate(): seen items and padding excluded, ties as rankOfTarget.
 * A --model directory without a saved model gets the config's content-delta model trained on the period's training
 * data with --seed (the names bench/fusion-gate.ts and bench/fusion-report.ts use: DIR/backtest-content-delta-seed0).
 *
 *   DELTAREC_THREADS=1 node --import tsx bench/fusion-candidates.ts --config experiments/beauty-cold.json \
 *     --model runs/cold2-models/test-content-delta-seed0 --period test --out runs/cand/test-seed0.bin \
 *     [--w 4,6,8 --wc 0,8 --b 0 --v 0,4 | --combos 8:0:0:0,6:8:0:4]
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { fit, load, save, type FitOptions } from '../src/api.js';
import { prepareData } from '../src/eval/data.js';
import { readExperimentConfig } from '../src/experiment/experiment.js';
import { LexicalIndex } from '../src/model/fusion.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    model: { type: 'string' },
    period: { type: 'string', default: 'test' },
    w: { type: 'string', default: '4,6,8,12,16' },
    wc: { type: 'string', default: '0,4,8,16' },
    b: { type: 'string', default: '0,0.5,1,2' },
    v: { type: 'string', default: '0,2,4,8' },
    combos: { type: 'string' },
    seed: { type: 'string', default: '0' },
    out: { type: 'string' },
  },
});
if (!values.config || !values.model || !values.out) {
  console.error(
    'usage: bench/fusion-candidates.ts --config C --model DIR --period test|backtest --out F.bin',
  );
  process.exit(2);
}
const list = (s: string) => s.split(',').map(Number);
const combos: { w: number; wc: number; b: number; v: number }[] = [];
// --combos w:wc:b:v,...: only these combinations (e.g. the ones bench/fusion-choose.ts fitted), else the grid.
if (values.combos)
  for (const spec of values.combos.split(',')) {
    const [w, wc, b, v] = spec.split(':').map(Number);
    combos.push({ w, wc, b, v });
  }
else
  for (const w of list(values.w))
    for (const wc of list(values.wc))
      for (const b of list(values.b)) for (const v of list(values.v)) combos.push({ w, wc, b, v });

const config = await readExperimentConfig(values.config);
const log = (line: string) => console.error(line);
const data = await prepareData(
  config.data,
  config.content,
  dirname(values.config),
  log,
  values.period === 'backtest',
);
const period =
  values.period === 'backtest'
    ? data.backtest!
    : { split: data.split, lexical: data.lexical, content: data.content };
const split = period.split;
if (!existsSync(join(values.model, 'manifest.json'))) {
  // Not saved yet: the config's content-delta model, trained on this period's training data (seed --seed).
  const trained = await fit(split, {
    ...(config.model as Partial<FitOptions>),
    model: 'content-delta',
    seed: Number(values.seed),
    content: period.content!,
    handleSigint: false,
    onProgress: (p) => log(p.line),
  });
  await save(trained, values.model);
}
const model = await load(values.model);
if (model.recommender.numItems !== split.numItems)
  throw new Error(`${values.model}: ${model.recommender.numItems} items, the split has ${split.numItems}`);
const profileIndex = new LexicalIndex(period.lexical!, model.maxLength);
const lastIndex = new LexicalIndex(period.lexical!, 1);
const width = split.numItems + 1;
const numWarm = split.numWarm;
const { offsets, items } = split.test.inputs;
const count = split.test.targets.length;
const ranks = new Uint8Array(combos.length * count).fill(255);
const batch = 256;
const z = new Float32Array(batch * width);
const cu = new Float32Array(batch * width);
const cl = new Float32Array(batch * width);
const started = performance.now();

for (let start = 0; start < count; start += batch) {
  const cases: number[] = [];
  const inputs: Int32Array[] = [];
  for (let c = start; c < Math.min(count, start + batch); c++) {
    if (offsets[c + 1] === offsets[c]) continue;
    cases.push(c);
    inputs.push(items.subarray(offsets[c], offsets[c + 1]));
  }
  if (inputs.length === 0) continue;
  model.recommender.score(inputs, z);
  profileIndex.score(inputs, cu);
  lastIndex.score(inputs, cl);
  for (let r = 0; r < cases.length; r++) {
    const c = cases[r];
    const base = r * width;
    standardize(z, base, width);
    z[base] = -Infinity;
    for (let p = offsets[c]; p < offsets[c + 1]; p++) z[base + items[p]] = -Infinity;
    const target = split.test.targets[c];
    if (z[base + target] === -Infinity) continue;
    for (let k = 0; k < combos.length; k++) {
      const { w, wc, b, v } = combos[k];
      const at = (i: number) =>
        z[base + i] + w * cu[base + i] + v * cl[base + i] + (i > numWarm ? b + wc * cu[base + i] : 0);
      const s = at(target);
      let rank = 0;
      for (let i = 1; i < width && rank < 10; i++) {
        if (i === target) continue;
        const x = at(i);
        if (x > s || (i < target && x >= s)) rank++;
      }
      if (rank < 10) ranks[k * count + c] = rank;
    }
  }
  if ((start / batch) % 4 === 0)
    log(`${start + inputs.length}/${count} cases, ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

/** (s - mean) / std over the finite entries 1 .. width - 1 of one row (lexical fusion's standardization). */
function standardize(s: Float32Array, base: number, n: number): void {
  let m = 0;
  let k = 0;
  for (let i = 1; i < n; i++) {
    if (!Number.isFinite(s[base + i])) continue;
    m += s[base + i];
    k++;
  }
  m = k > 0 ? m / k : 0;
  let q = 0;
  for (let i = 1; i < n; i++) if (Number.isFinite(s[base + i])) q += (s[base + i] - m) ** 2;
  const std = Math.sqrt(q / Math.max(k, 1));
  const inv = std > 0 ? 1 / std : 1;
  for (let i = 1; i < n; i++) s[base + i] = (s[base + i] - m) * inv;
}

const header = JSON.stringify({
  model: values.model,
  period: values.period,
  count,
  numWarm,
  combos,
  cold: Array.from(split.test.cold),
  users: split.test.users,
  coldInputShare: Array.from({ length: count }, (_, c) => {
    const from = Math.max(offsets[c], offsets[c + 1] - model.maxLength);
    let n = 0;
    for (let p = from; p < offsets[c + 1]; p++) if (items[p] > numWarm) n++;
    return offsets[c + 1] > from ? n / (offsets[c + 1] - from) : 0;
  }),
  length: Array.from({ length: count }, (_, c) => Math.min(offsets[c + 1] - offsets[c], model.maxLength)),
});
const head = Buffer.from(header);
const size = Buffer.alloc(4);
size.writeUInt32LE(head.length);
await writeFile(values.out, Buffer.concat([size, head, Buffer.from(ranks.buffer)]));
log(
  `wrote ${values.out}: ${combos.length} combinations x ${count} cases in ${((performance.now() - started) / 1000).toFixed(0)} s`,
);
