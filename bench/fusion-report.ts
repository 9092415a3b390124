/**
 * The test-period report of fusion methods on saved models (issue 15, docs/cold-start.md "Cold-aware fusion"): each
 * saved model of --models (DIR/test-content-delta-seed<s>, as bench/fusion-gate.ts and runs of this bench save them)
 * is scored through the library (withLexicalFusion, evaluate) with each method, and cold / warm / all NDCG@10 and
 * HR@10 are printed per seed and as mean ± std over seeds. A seed without a saved model is trained and saved first.
 *
 *   DELTAREC_THREADS=1 node --import tsx bench/fusion-report.ts --config experiments/beauty-cold.json \
 *     --models runs/cold2-models --seeds 0,1,2,3,4 --methods '0;8;6,8,4' [--json out.json]
 *
 * A method is "weight[,coldWeight[,lastWeight]]"; "0" is the model's own (paper-faithful) scoring. --merge A.json,B.json
 * prints the table over the seeds of earlier runs' --json files (same methods) without scoring anything.
 */
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { evaluate, fit, load, save, withLexicalFusion, type FitOptions } from '../src/api.js';
import { prepareData } from '../src/eval/data.js';
import { meanStd } from '../src/eval/metrics.js';
import { readExperimentConfig } from '../src/experiment/experiment.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    models: { type: 'string' },
    seeds: { type: 'string', default: '0,1,2,3,4' },
    methods: { type: 'string', default: '0;8' },
    json: { type: 'string' },
    merge: { type: 'string' },
  },
});
const segments = ['cold', 'warm', 'all'] as const;
type Row = Record<(typeof segments)[number], [number, number]>;
interface Saved {
  seeds: number[];
  methods: { name: string; weight: number; coldWeight: number; lastWeight: number }[];
  perSeed: Row[][];
}
const fmt = ({ mean, std }: { mean: number; std: number }) => `${mean.toFixed(4)} ± ${std.toFixed(4)}`;

/** The mean ± std table over seeds (rows[method][seed]). */
function printTable(seeds: number[], methods: Saved['methods'], rows: Row[][]): void {
  console.log(`\n${seeds.length} seeds (${seeds.join(', ')}); method = weight, coldWeight, lastWeight`);
  console.log('| method | cold NDCG@10 | warm NDCG@10 | all NDCG@10 | cold HR@10 | warm HR@10 | all HR@10 |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  methods.forEach((m, i) => {
    const col = (s: (typeof segments)[number], k: 0 | 1) => fmt(meanStd(rows[i].map((r) => r[s][k])));
    console.log(
      `| ${m.name} | ${segments.map((s) => col(s, 0)).join(' | ')} | ${segments.map((s) => col(s, 1)).join(' | ')} |`,
    );
  });
}

if (values.merge) {
  const parts = values.merge.split(',').map((f) => JSON.parse(readFileSync(f, 'utf8')) as Saved);
  const names = parts[0].methods.map((m) => m.name).join(';');
  for (const [i, p] of parts.entries())
    if (p.methods.map((m) => m.name).join(';') !== names)
      throw new Error(
        `--merge: file ${i + 1} has methods ${p.methods.map((m) => m.name).join(';')}, not ${names}`,
      );
  const seeds = parts.flatMap((p) => p.seeds);
  const rows = parts[0].methods.map((_, i) => parts.flatMap((p) => p.perSeed[i]));
  seeds.forEach((seed, j) =>
    parts[0].methods.forEach((m, i) =>
      console.log(
        `seed ${seed}, method ${m.name}: NDCG@10 cold / warm / all ` +
          segments.map((s) => rows[i][j][s][0].toFixed(4)).join(' / '),
      ),
    ),
  );
  printTable(seeds, parts[0].methods, rows);
  process.exit(0);
}
if (!values.config || !values.models) {
  console.error(
    'usage: bench/fusion-report.ts --config C --models DIR [--seeds 0,1] [--methods "0;8;6,8,4"]',
  );
  process.exit(2);
}
const config = await readExperimentConfig(values.config);
const log = (line: string) => console.error(line);
const data = await prepareData(config.data, config.content, dirname(values.config), log);
const seeds = values.seeds.split(',').map(Number);
const methods = values.methods.split(';').map((m) => {
  const [weight, coldWeight = 0, lastWeight = 0] = m.split(',').map(Number);
  return { name: m, weight, coldWeight, lastWeight };
});
/** rows[method][seed] = { cold: [ndcg, hr], warm: ..., all: ... } */
const rows = methods.map(() => [] as Row[]);
for (const seed of seeds) {
  const dir = join(values.models, `test-content-delta-seed${seed}`);
  if (!existsSync(join(dir, 'manifest.json'))) {
    const trained = await fit(data.split, {
      ...(config.model as Partial<FitOptions>),
      model: 'content-delta',
      seed,
      content: data.content!,
      handleSigint: false,
      onProgress: (p) => log(`seed ${seed}: ${p.line}`),
    });
    await save(trained, dir);
  }
  const model = await load(dir);
  methods.forEach((m, i) => {
    const fused = withLexicalFusion(model, data.lexical!, m.weight, m);
    const r = evaluate(fused, data.split);
    const row = Object.fromEntries(segments.map((s) => [s, [r[s]['ndcg@10'], r[s]['hr@10']]]));
    rows[i].push(row as Row);
    const shown = segments.map((s) => row[s][0].toFixed(4)).join(' / ');
    console.log(`seed ${seed}, method ${m.name}: NDCG@10 cold / warm / all ${shown}`);
  });
}
printTable(seeds, methods, rows);
if (values.json)
  await writeFile(values.json, JSON.stringify({ seeds, methods, perSeed: rows }, null, 1) + '\n');
