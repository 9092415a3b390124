/**
 * Borrowed deltas for cold items (issue 15, docs/cold-start.md): evaluates one trained content-delta model with
 * borrowed deltas off (k = 0) and on for each k, each without and with lexical fusion, on the split it was trained
 * on. No training: borrowing and fusion are both applied to the trained model. The sparse TF-IDF rows for fusion
 * come from the model's own text encoder applied to the catalog.
 *
 *   node --import tsx bench/borrow-deltas.ts --model runs/beauty-bt-model --split runs/beauty-bt-split \
 *     --items ../shared/data/amazon-beauty/items.csv --ks 0,5,10,20 --lexical-weight 8 [--json out.json]
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { evaluate, load, withBorrowedDeltas, withLexicalFusion } from '../src/api.js';
import { TfidfSvdEncoder } from '../src/content/tfidf.js';
import { readCatalog } from '../src/data/readers.js';
import { loadSplit } from '../src/data/store.js';
import { buildContent } from '../src/eval/data.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    split: { type: 'string' },
    items: { type: 'string' },
    ks: { type: 'string', default: '0,5,10,20' },
    'lexical-weight': { type: 'string', default: '8' },
    json: { type: 'string' },
  },
});
if (!values.model || !values.split || !values.items) {
  console.error(
    'usage: bench/borrow-deltas.ts --model DIR --split DIR --items CATALOG [--ks 0,5,10,20] [--lexical-weight W] [--json F]',
  );
  process.exit(2);
}
const ks = values.ks.split(',').map(Number);
const weight = Number(values['lexical-weight']);
const model = await load(values.model);
const split = await loadSplit(values.split);
const encoder = await TfidfSvdEncoder.load(join(values.model, 'encoder'));
const built = buildContent(split, { catalog: await readCatalog(values.items), encoder }, { fitOn: 'warm' });
const rows = built.lexical!;
console.log(
  `${values.model} on ${values.split}: ${split.numItems} items (${split.numWarm} warm), ${split.test.targets.length} test cases`,
);
const metrics = ['ndcg@10', 'hr@10'] as const;
const segments = ['cold', 'warm', 'all'] as const;
console.log(
  ['borrow k', 'lexical', ...metrics.flatMap((m) => segments.map((s) => `${s} ${m}`))]
    .map((h) => h.padStart(13))
    .join(''),
);
const out: Record<string, unknown>[] = [];
for (const k of ks) {
  withBorrowedDeltas(model, k);
  for (const w of weight > 0 ? [0, weight] : [0]) {
    const started = performance.now();
    const r = evaluate(withLexicalFusion(model, rows, w), split);
    const cells = metrics.flatMap((m) => segments.map((s) => r[s][m].toFixed(4)));
    console.log([String(k), String(w), ...cells].map((c) => c.padStart(13)).join(''));
    console.error(`  (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    out.push({ k, lexicalWeight: w, cold: r.cold, warm: r.warm, all: r.all });
  }
}
if (values.json) await writeFile(values.json, JSON.stringify(out, null, 2) + '\n');
