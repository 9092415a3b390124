/**
 * Richer free-text signal (issue 15 item 4, docs/cold-start.md): scores text-encoder variants against one trained
 * model, without retraining for each variant.
 *
 * - Lexical fusion: the model (trained once per period and seed on the config's content, saved to --model and
 *   reused on the next call) is fused with the sparse TF-IDF rows of each variant, for every weight of --weights.
 * - Content KNN: each variant's dense content vectors (SVD, word vectors, or both) rank items by cosine to the mean
 *   of the input's vectors (the experiment runner's `knn`), a training-free screen for the content vectors.
 *
 * Variants are TF-IDF / encoder options as in an experiment's `content` block (fields with weights "title:2",
 * analyzer, charNgrams, maxFeatures, wordVectors, dim); the rows are fitted on warm items like the config's encoder.
 *
 *   DELTAREC_THREADS=1 node --import tsx bench/text-signal.ts --config experiments/beauty-backtest.json \
 *     --model runs/text-bt-model --variants bench/text-variants.json [--backtest true|false] [--seed 0] \
 *     [--weights 0,2,4,8,16] [--knn] [--content '{"analyzer":"char"}'] [--json out.json]
 *
 * --content: the trained model's content options on top of the config's (e.g. character n-gram vectors for the
 * model while the variants give the lexical rows).
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { evaluate, fit, load, save, withLexicalFusion, type FitOptions } from '../src/api.js';
import { buildContent, contentWordVectors, prepareData, type ContentConfig } from '../src/eval/data.js';
import { readExperimentConfig } from '../src/experiment/experiment.js';
import { readCatalog } from '../src/data/readers.js';
import { loadRecipe } from '../src/data/recipes/index.js';
import { ContentKNN } from '../src/model/knn.js';
import { evaluate as evaluateRecommender } from '../src/eval/evaluate.js';
import type { Catalog } from '../src/data/types.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' },
    model: { type: 'string' },
    variants: { type: 'string' },
    backtest: { type: 'string' },
    seed: { type: 'string', default: '0' },
    weights: { type: 'string', default: '0,2,4,8,16' },
    knn: { type: 'boolean', default: false },
    content: { type: 'string', default: '{}' },
    json: { type: 'string' },
  },
});
if (!values.config || !values.model || !values.variants) {
  console.error(
    'usage: bench/text-signal.ts --config EXPERIMENT.json --model DIR --variants VARIANTS.json [--backtest true|false] [--seed N] [--weights 0,4,8] [--knn] [--json F]',
  );
  process.exit(2);
}
const log = (line: string) => console.error(line);
const config = await readExperimentConfig(values.config);
const baseDir = dirname(values.config);
if (values.backtest !== undefined) config.data.backtest = values.backtest === 'true';
const seed = Number(values.seed);
const weights = values.weights.split(',').map(Number);
const variants = JSON.parse(await readFile(values.variants, 'utf8')) as Record<string, ContentConfig>;

// The model's content: the config's, with --content's options on top (variants apply to the config's).
const modelContent = { ...config.content, ...(JSON.parse(values.content) as ContentConfig) };
const data = await prepareData(
  config.data,
  existsSync(values.model) ? { encoder: 'none' } : modelContent,
  baseDir,
  log,
);
const split = data.split;
let model;
if (existsSync(values.model)) {
  model = await load(values.model);
  log(`loaded ${values.model}`);
} else {
  const settings = config.model as Partial<FitOptions>;
  model = await fit(split, {
    ...settings,
    model: 'content-delta',
    seed,
    content: data.content!,
    encoder: null,
    onProgress: (p) => log(`fit: ${p.line}`),
  });
  await save(model, values.model);
  log(`trained in ${model.fitSeconds?.toFixed(0)} s, saved ${values.model}`);
}

const catalog: Catalog = config.data.items
  ? await readCatalog(`${baseDir}/${config.data.items}`)
  : (await loadRecipe(config.data.recipe!.name, config.data.recipe!)).catalog!;

const fmt = (m: Record<string, number>) => `${m['ndcg@10'].toFixed(4)} (HR ${m['hr@10'].toFixed(4)})`;
const out: Record<string, unknown>[] = [];
console.log(
  `${values.model} (content ${JSON.stringify(modelContent)}), ${config.data.backtest ? 'backtest' : 'test'} period: ${split.test.targets.length} cases`,
);
console.log('variant | weight | cold NDCG@10 | warm | all');
for (const [name, variant] of Object.entries(variants)) {
  const t = performance.now();
  const content = { ...config.content, ...variant };
  const wordVectors = await contentWordVectors(content, baseDir);
  const built = buildContent(split, { catalog, wordVectors }, content, log);
  const seconds = (performance.now() - t) / 1000;
  if (values.knn) {
    const knn = new ContentKNN(
      { vectors: built.content!, dim: built.contentDim },
      { maxLength: model.maxLength },
    );
    const r = evaluateRecommender(knn, split, {
      recommendColdItems: true,
      filterColdInputs: false,
      maxLength: model.maxLength,
    });
    console.log(`${name} | knn | ${fmt(r.cold)} | ${fmt(r.warm)} | ${fmt(r.all)}`);
    out.push({ variant: name, weight: 'knn', seconds, cold: r.cold, warm: r.warm, all: r.all });
  }
  for (const w of weights) {
    const r = evaluate(withLexicalFusion(model, built.lexical!, w), split);
    console.log(`${name} | ${w} | ${fmt(r.cold)} | ${fmt(r.warm)} | ${fmt(r.all)}`);
    out.push({ variant: name, weight: w, seconds, cold: r.cold, warm: r.warm, all: r.all });
  }
}
if (values.json) await writeFile(values.json, JSON.stringify(out, null, 1) + '\n');
