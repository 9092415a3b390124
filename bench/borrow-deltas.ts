/**
 * Borrowed deltas for cold items (issue 15, docs/cold-start.md): evaluates one trained content-delta model with
 * borrowed deltas off (k = 0) and on for each k, each without and with lexical fusion, on the split it was trained
 * on. No training: borrowing and fusion are both applied to the trained model. The sparse TF-IDF rows for fusion
 * come from the model's own text encoder applied to the catalog. --neighbours lexical picks the k nearest warm items
 * by the sparse TF-IDF cosine instead of the content cosine (an experiment: the library and the service borrow by
 * content cosine). --center borrows the neighbours' deltas minus the mean warm delta (their shared direction; an
 * experiment too).
 *
 *   node --import tsx bench/borrow-deltas.ts --model runs/beauty-bt-model --split runs/beauty-bt-split \
 *     --items ../shared/data/amazon-beauty/items.csv --ks 0,5,10,20 --lexical-weight 8 [--json out.json]
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { evaluate, load, withBorrowedDeltas, withLexicalFusion, type FittedModel } from '../src/api.js';
import type { CsrMatrix } from '../src/content/sparse.js';
import { LexicalIndex } from '../src/model/fusion.js';
import type { SASRec } from '../src/model/sasrec.js';
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
    neighbours: { type: 'string', default: 'content' },
    center: { type: 'boolean', default: false },
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
const out: Record<string, unknown>[] = [];
/** Cold rows' deltas from their k nearest warm items by sparse TF-IDF cosine (ItemEmbeddings.borrowDeltas). */
function borrowByLexicalCosine(fitted: FittedModel, sparse: CsrMatrix, k: number): void {
  withBorrowedDeltas(fitted, 0);
  if (k === 0) return;
  const sasrec = fitted.recommender as SASRec;
  const index = new LexicalIndex(sparse);
  const width = sasrec.numItems + 1;
  const scores = new Float32Array(width);
  const cold = Int32Array.from(
    { length: sasrec.numItems - fitted.numWarm },
    (_, i) => fitted.numWarm + 1 + i,
  );
  sasrec.items.borrowDeltas(cold, fitted.numWarm, k, undefined, (chunk, out, warmItems) => {
    chunk.forEach((row, i) => {
      index.score([Int32Array.of(row)], scores);
      out.set(scores.subarray(1, warmItems + 1), i * warmItems);
    });
  });
  sasrec.parametersChanged();
}

/**
 * Why borrowing behaves as it does: the trained deltas of the less-trained half of the warm items (by training
 * interactions) and of the 10% most-trained: mean row norm, and the norm of their mean (near the row norm when the
 * rows share one direction).
 */
function deltaStatistics(fitted: FittedModel): string {
  const sasrec = fitted.recommender as SASRec;
  const d = sasrec.config.d;
  const delta = sasrec.items.weight!;
  const counts = split.trainItemCounts;
  const warm = Array.from({ length: fitted.numWarm }, (_, i) => i + 1).sort((a, b) => counts[a] - counts[b]);
  const describe = (rows: number[], what: string) => {
    const mean = new Float64Array(d);
    let norms = 0;
    for (const r of rows) {
      let s = 0;
      for (let j = 0; j < d; j++) {
        mean[j] += delta[r * d + j] / rows.length;
        s += delta[r * d + j] ** 2;
      }
      norms += Math.sqrt(s) / rows.length;
    }
    const median = counts[rows[rows.length >> 1]];
    return `${what} (${rows.length}, median ${median} training interactions): mean delta norm ${norms.toFixed(3)}, norm of the mean delta ${Math.hypot(...mean).toFixed(3)}`;
  };
  return [
    describe(warm.slice(0, warm.length >> 1), 'less-trained half of the warm items'),
    describe(warm.slice(-Math.floor(warm.length / 10)), '10% most-trained warm items'),
  ].join('\n');
}

console.log(deltaStatistics(model));
const lexicalNeighbours = values.neighbours === 'lexical';
if (!lexicalNeighbours && values.neighbours !== 'content')
  throw new Error('--neighbours must be content or lexical');
console.log(
  `neighbours by ${lexicalNeighbours ? 'sparse TF-IDF' : 'content'} cosine` +
    (values.center ? ', centered deltas (the mean warm delta taken out)' : ''),
);
const metrics = ['ndcg@10', 'hr@10'] as const;
const segments = ['cold', 'warm', 'all'] as const;
console.log(
  ['borrow k', 'lexical', ...metrics.flatMap((m) => segments.map((s) => `${s} ${m}`))]
    .map((h) => h.padStart(13))
    .join(''),
);
/** Borrows with the mean warm delta taken out of the warm rows for the time of the borrowing. */
function centered(fitted: FittedModel, borrow: () => void): void {
  const sasrec = fitted.recommender as SASRec;
  const d = sasrec.config.d;
  const warm = sasrec.items.weight!.subarray(d, (fitted.numWarm + 1) * d);
  const saved = Float32Array.from(warm);
  const mean = new Float64Array(d);
  for (let i = 0; i < warm.length; i++) mean[i % d] += warm[i] / fitted.numWarm;
  for (let i = 0; i < warm.length; i++) warm[i] -= mean[i % d];
  borrow();
  warm.set(saved);
  sasrec.parametersChanged();
}

for (const k of ks) {
  const borrow = () =>
    lexicalNeighbours ? borrowByLexicalCosine(model, rows, k) : withBorrowedDeltas(model, k);
  if (values.center && k > 0) centered(model, borrow);
  else borrow();
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
