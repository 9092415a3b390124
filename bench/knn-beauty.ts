/**
 * Content-KNN on the Beauty split (PROTOCOL.md, headline mode: cold items recommended, cold inputs kept, seen items
 * removed, full ranking), with the built-in encoder's vectors, against the exact expectation of a random ranking.
 *
 *   node --import tsx bench/knn-beauty.ts [--fields title] [--dim 512] [--max-length 64] [--project 128]
 *
 * Prints the encoder time for the whole catalog (12,101 items) and NDCG@10 / HR@10 for cold / warm / all cases of:
 * sparse TF-IDF, the SVD vectors, optionally the paper's projection of them, and a random ranking.
 */
import { parseArgs } from 'node:util';
import { readCatalog, readInteractions } from '../src/data/readers.js';
import { alignCatalog, prepareSplit } from '../src/data/split.js';
import type { PreparedSplit } from '../src/data/types.js';
import { evaluate } from '../src/eval/evaluate.js';
import { projectContent } from '../src/content/projection.js';
import { selectRows } from '../src/content/sparse.js';
import { TfidfSvdEncoder } from '../src/content/tfidf.js';
import { ContentKNN, type ContentRows } from '../src/model/knn.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: new URL('../../shared/data/amazon-beauty/', import.meta.url).pathname },
    fields: { type: 'string', default: 'title' },
    dim: { type: 'string', default: '512' },
    'max-length': { type: 'string', default: '64' },
    project: { type: 'string', default: '128' },
    'fit-on': { type: 'string', default: 'all' }, // all catalog items, or only the split's warm items
  },
});
const fields = values.fields!.split(',');
const dim = Number(values.dim);
const maxLength = Number(values['max-length']);

const catalog = await readCatalog(`${values.data}/items.csv`);
const docs = catalog.ids.map((_, row) => fields.map((f) => catalog.fields[f][row]));
let t = performance.now();
let cpu = process.cpuUsage();
let encoder = TfidfSvdEncoder.fit(docs, { dim, fields });
let vectors = encoder.encode(docs);
const wallSeconds = (performance.now() - t) / 1000;
cpu = process.cpuUsage(cpu);
console.log(
  `encoder: tfidf-svd on ${fields.join('+')}: ${catalog.ids.length} items, ${encoder.info.numFeatures} terms -> ` +
    `${encoder.dim} dims in ${wallSeconds.toFixed(1)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s CPU ` +
    `(SVD keeps ${(100 * encoder.info.energyKept).toFixed(1)}% of the TF-IDF energy)`,
);

t = performance.now();
const split = prepareSplit(await readInteractions(`${values.data}/interactions.csv.gz`));
console.log(
  `split: ${split.numItems} items (${split.numWarm} warm), ${split.test.targets.length} test cases, ` +
    `${(100 * split.stats.cold_test_share).toFixed(1)}% cold, in ${((performance.now() - t) / 1000).toFixed(1)} s`,
);
if (values['fit-on'] === 'warm') {
  const catalogRow = new Map(catalog.ids.map((id, row) => [id, row]));
  const warmDocs = split.itemIds
    .slice(1, split.numWarm + 1)
    .filter((id) => catalogRow.has(id))
    .map((id) => docs[catalogRow.get(id)!]);
  encoder = TfidfSvdEncoder.fit(warmDocs, { dim, fields });
  vectors = encoder.encode(docs);
  console.log(`encoder refitted on the ${warmDocs.length} warm items only`);
}
const { rowOf, missing } = alignCatalog(split, catalog);
if (missing) console.log(`warning: ${missing} split items have no catalog row (zero content)`);
const catalogRows = Int32Array.from(rowOf, (r) => Math.max(r, 0)); // missing -> row 0, zeroed below
const aligned = new Float32Array((split.numItems + 1) * dim);
for (let k = 1; k <= split.numItems; k++)
  if (rowOf[k] >= 0) aligned.set(vectors.subarray(rowOf[k] * dim, (rowOf[k] + 1) * dim), k * dim);
const sparse = selectRows(encoder.encodeSparse(docs), catalogRows);
for (let k = 0; k <= split.numItems; k++)
  if (rowOf[k] < 0) sparse.values.fill(0, sparse.indptr[k], sparse.indptr[k + 1]);

function report(name: string, content: ContentRows): void {
  const started = performance.now();
  const result = evaluate(new ContentKNN(content, { maxLength }), split, { ks: [10], batchSize: 256 });
  const line = (['cold', 'warm', 'all'] as const)
    .map((s) => `${s} ${result[s]['ndcg@10'].toFixed(4)} / ${result[s]['hr@10'].toFixed(4)}`)
    .join('   ');
  console.log(`${name.padEnd(34)} ${line}   (${((performance.now() - started) / 1000).toFixed(1)} s)`);
}

console.log(`\nNDCG@10 / HR@10, content KNN (profile = mean of the last ${maxLength} input items):`);
report(`sparse TF-IDF (${fields.join('+')})`, { sparse });
report(`SVD ${dim}`, { vectors: aligned, dim });
if (Number(values.project) > 0) {
  const d = Number(values.project);
  for (const standardize of [true, false]) {
    const { vectors: projected, state } = projectContent(aligned, dim, split.numWarm, d, { standardize });
    const kept = state.explainedVarianceRatio.reduce((a, b) => a + b, 0);
    const name = `SVD ${dim} -> ${standardize ? 'std+' : ''}PCA ${d} (${(100 * kept).toFixed(0)}% var)`;
    report(name, { vectors: projected, dim: d });
  }
}
const random = randomExpectation(split);
console.log(
  `${'random ranking (exact expectation)'.padEnd(34)} cold ${random.cold.toFixed(5)}   warm ${random.warm.toFixed(5)}   all ${random.all.toFixed(5)}`,
);

/**
 * Expected NDCG@10 of a uniformly random ranking under the same protocol: the ground truth's rank is uniform over
 * the candidates (all items minus the distinct seen ones); a ground truth that was itself seen is removed (0).
 */
function randomExpectation(s: PreparedSplit): { cold: number; warm: number; all: number } {
  const discount = (candidates: number): number => {
    let sum = 0;
    for (let r = 0; r < Math.min(10, candidates); r++) sum += 1 / Math.log2(r + 2);
    return sum;
  };
  const sums = [0, 0];
  const counts = [0, 0];
  const { offsets, items } = s.test.inputs;
  for (let c = 0; c < s.test.targets.length; c++) {
    const seen = new Set(items.subarray(offsets[c], offsets[c + 1]));
    const candidates = s.numItems - seen.size;
    const value = seen.has(s.test.targets[c]) ? 0 : discount(candidates) / candidates;
    sums[s.test.cold[c]] += value;
    counts[s.test.cold[c]]++;
  }
  return {
    cold: sums[1] / counts[1],
    warm: sums[0] / counts[0],
    all: (sums[0] + sums[1]) / (counts[0] + counts[1]),
  };
}
