import { parseArgs } from 'node:util';
import { evaluate, fit, MODEL_KINDS, withLexicalFusion, type ModelKind } from '../../api.js';
import { floatOption, intOption, listOption, withNegativeNumbers } from '../options.js';
import { prepareData } from '../../eval/data.js';
import { displayName, resultsText, type Aggregated } from '../../experiment/report.js';
import { toAggregated } from './train.js';

export const summary =
  'train the four variants on the built-in synthetic dataset and print the cold/warm/all table';

const HELP = `usage: deltarec demo [options]

The paper in a few minutes, with nothing to download: generates the built-in synthetic dataset (items with text
from latent topics, users following topic transitions, new items arriving over time), splits it as in PROTOCOL.md,
embeds item text with the built-in TF-IDF + SVD encoder, trains content KNN, SASRec, SASRec + content init and
SASRec + trainable delta, and prints NDCG@10 and HR@10 for cold, warm and all test cases, a row of the trained delta
model with lexical fusion (docs/cold-start.md), whether the paper's orderings hold on this run, and the commands to run
next on real data.

  --users N      synthetic users (default 2000)
  --items N      synthetic items (default 1000)
  --seed N       data and model seed (default 42)
  --d N          model dimension (default 64)
  --epochs N     most training epochs per model (default 40; early stopping on validation NDCG@10, patience 5)
  --lr X         Adam learning rate (default 0.005: on this small dataset plain SASRec needs it to leave its early
                 plateau within the epoch budget; the paper's 0.001 is the library default)
  --models A,B   models to train (default knn,sasrec,content-init,content-delta; also content-frozen)
  --lexical-weight W  weight of the fused row on the trained content-delta model (default 4, fixed in advance;
                 on real data choose it with a backtest); 0 leaves the row out
  --no-standardize  skip the per-component standardization before the PCA projection of content
`;

const MODELS: ModelKind[] = ['knn', 'sasrec', 'content-init', 'content-delta'];

const NEXT_STEPS = `Next, on real data (README.md, docs/experiments.md):
  deltarec prepare --interactions interactions.csv.gz --items items.csv --out runs/split
  deltarec train --split runs/split --items items.csv --fields title --model content-delta --out runs/model
  deltarec evaluate --model runs/model --split runs/split
  deltarec serve --model runs/model --ui          # the explorer page at http://127.0.0.1:8080/
  deltarec experiment --config experiments/beauty.json --out runs/beauty   # the paper's table, with report.html`;

/** The paper's orderings that this run's models allow checking, each with whether it holds. */
function paperOrderings(results: Aggregated): { text: string; holds: boolean }[] {
  const ndcg = (model: string, segment: 'cold' | 'all') => results[model]?.[segment]['ndcg@10']?.mean;
  const out: { text: string; holds: boolean }[] = [];
  const compare = (a: string, b: string, segment: 'cold' | 'all') => {
    const x = ndcg(a, segment);
    const y = ndcg(b, segment);
    if (x === undefined || y === undefined) return;
    const text = `${displayName(a)} above ${displayName(b)} on ${segment} cases: ${x.toFixed(4)} vs ${y.toFixed(4)}`;
    out.push({ text, holds: x > y });
  };
  compare('content-delta', 'content-init', 'cold');
  for (const content of ['content-init', 'content-delta']) compare(content, 'sasrec', 'all');
  for (const sasrec of ['sasrec', 'content-init', 'content-delta']) compare(sasrec, 'knn', 'all');
  return out;
}

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: withNegativeNumbers(args),
      options: {
        users: { type: 'string' },
        items: { type: 'string' },
        seed: { type: 'string' },
        d: { type: 'string' },
        epochs: { type: 'string' },
        lr: { type: 'string' },
        models: { type: 'string' },
        'lexical-weight': { type: 'string' },
        'no-standardize': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    console.error(`deltarec demo: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const started = performance.now();
  const log = (line: string) => console.error(line);
  try {
    // Every option is checked before any work starts.
    const seed = intOption(values.seed, 'seed') ?? 42;
    const d = intOption(values.d, 'd', 1) ?? 64;
    const users = intOption(values.users, 'users', 10) ?? 2000;
    const items = intOption(values.items, 'items', 10) ?? 1000;
    const epochs = intOption(values.epochs, 'epochs', 1) ?? 40;
    const lr = floatOption(values.lr, 'lr', 0, true) ?? 0.005;
    const lexicalWeight = floatOption(values['lexical-weight'], 'lexical-weight') ?? 4;
    const models = (listOption(values.models) ?? MODELS) as ModelKind[];
    for (const kind of models) {
      if (!(MODEL_KINDS as readonly string[]).includes(kind)) {
        throw new Error(`--models: unknown model '${kind}' (known: ${MODEL_KINDS.join(', ')})`);
      }
    }
    // The encoder is fitted on warm items only, so words of cold items do not shape it (docs/content-format.md).
    const data = await prepareData(
      { synthetic: { users, items, seed } },
      { fields: ['title', 'description'], dim: 256, fitOn: 'warm' },
      process.cwd(),
      log,
    );
    const fusedName = `SASRec + trainable delta + lexical (weight ${lexicalWeight})`;
    const results: Aggregated = {};
    for (const kind of models) {
      const t = performance.now();
      const model = await fit(data.split, {
        model: kind,
        content: data.content ?? undefined,
        d,
        maxLength: 32,
        epochs,
        patience: 5,
        lr,
        standardize: !values['no-standardize'],
        seed,
        onProgress: (p) => log(`  ${kind}: ${p.line}`),
      });
      const r = evaluate(model, data.split);
      results[kind] = toAggregated(r);
      log(
        `${displayName(kind)}: all NDCG@10 ${r.all['ndcg@10'].toFixed(4)} (${((performance.now() - t) / 1000).toFixed(1)} s)`,
      );
      if (kind === 'content-delta' && lexicalWeight > 0 && data.lexical) {
        // The same trained model, its scores fused with the TF-IDF cosine to the history (nothing is retrained).
        results[fusedName] = toAggregated(
          evaluate(withLexicalFusion(model, data.lexical, lexicalWeight), data.split),
        );
      }
    }
    const s = data.split.stats;
    console.log(
      `\nSynthetic dataset: ${data.split.numItems} items (${data.split.numWarm} warm), ${data.split.test.targets.length} test cases, ` +
        `${(100 * s.cold_test_share).toFixed(1)}% with a cold ground truth. Full-catalog ranking, seen items removed.\n`,
    );
    console.log(resultsText(results));
    const orderings = paperOrderings(results);
    if (orderings.length) {
      console.log("The paper's orderings (NDCG@10) on this run:");
      for (const o of orderings) console.log(`  [${o.holds ? 'holds' : 'FAILS'}] ${o.text}`);
    }
    console.log(`\ndone in ${((performance.now() - started) / 1000).toFixed(0)} s\n\n${NEXT_STEPS}`);
    return 0;
  } catch (error) {
    console.error(`deltarec demo: ${(error as Error).message}`);
    return 1;
  }
}
