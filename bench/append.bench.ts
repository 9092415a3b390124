/**
 * Appending one item to a served model (POST /items): Scorer.appendItems on a content-delta SASRec (d = 128) of
 * 12k and 1M items, rebuilt from its tensors as loading a saved model does (timed: the load). The item tables grow by
 * capacity (src/util/growable.ts), so appends only write their own row. Reported: the first append after the load,
 * the RSS after the load and after that append and the peak, then
 * the median and p99 of APPENDS single-item appends, and as the reference measured in the same run what every
 * append used to cost: copying the item table and transposing it into the scorer's matrix. Then the same for the
 * lexical TF-IDF rows of a fused model (LexicalIndex, LEXICAL_NNZ entries per row over LEXICAL_COLS columns), whose
 * reference is what every append used to do: rebuilding the column index of all rows (ContentKNN).
 */
import { Random } from '../src/util/random.js';
import type { CsrMatrix } from '../src/content/sparse.js';
import { LexicalIndex } from '../src/model/fusion.js';
import { ContentKNN } from '../src/model/knn.js';
import { SASRec, sasrecConfig, type SASRecConfig } from '../src/model/sasrec.js';
import { LiveCatalog } from '../src/serve/catalog.js';
import { Scorer } from '../src/serve/scorer.js';
import type { Benchmark } from './index.js';

const SIZES: [string, number][] = [
  ['12k', 12_000],
  ['1m', 1_000_000],
];
const D = 128;
const APPENDS = 500;
const LEXICAL_COLS = 50_000;
const LEXICAL_NNZ = 12;

/** rows sparse rows of LEXICAL_NNZ random entries (row 0 empty when `padding`). */
function sparseRows(rows: number, rng: Random, padding: boolean): CsrMatrix {
  const first = padding ? 1 : 0;
  const indptr = new Int32Array(rows + 1);
  for (let r = 0; r < rows; r++) indptr[r + 1] = indptr[r] + (r < first ? 0 : LEXICAL_NNZ);
  const nnz = indptr[rows];
  const indices = Int32Array.from({ length: nnz }, () => rng.nextInt(LEXICAL_COLS));
  const values = Float32Array.from({ length: nnz }, () => 0.1 + rng.nextFloat());
  return { rows, cols: LEXICAL_COLS, indptr, indices, values };
}

/** Median and p99 (ms) of appending one row at a time, and the reference: a rebuild of the column index. */
function lexicalAppend(n: number, rng: Random): { median: number; p99: number; rebuild: number } {
  const base = sparseRows(n + 1, rng, true);
  const index = new LexicalIndex(base, 64);
  const times: number[] = [];
  for (let i = 0; i < APPENDS; i++) {
    const row = sparseRows(1, rng, false);
    const started = performance.now();
    index.append(row);
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  const started = performance.now();
  new ContentKNN({ sparse: base }, { maxLength: 64 });
  return { median: quantile(times, 0.5), p99: quantile(times, 0.99), rebuild: performance.now() - started };
}

function unitRows(rows: number, d: number, rng: Random): Float32Array {
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += (out[r * d + j] = rng.nextGaussian()) ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < d; j++) out[r * d + j] *= inv;
  }
  return out;
}

/** The live catalog of n ids (as parsed from a manifest): its first put, and the median of APPENDS more (ms). */
function catalogPuts(n: number): { first: number; median: number } {
  const ids = JSON.parse(
    JSON.stringify(['', ...Array.from({ length: n }, (_, i) => `item-${i}`)]),
  ) as string[];
  const catalog = new LiveCatalog(ids, n);
  const times: number[] = [];
  for (let i = 0; i <= APPENDS; i++) {
    const started = performance.now();
    catalog.put(`new-${i}`);
    times.push(performance.now() - started);
  }
  const first = times.shift()!;
  return {
    first,
    median: quantile(
      times.sort((a, b) => a - b),
      0.5,
    ),
  };
}

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(0);
}

/** The tensors of a saved content-delta model of random unit content (delta zero), as loadModel reads them. */
function savedTensors(config: SASRecConfig, rng: Random): Map<string, Float32Array> {
  const content = unitRows(config.numItems + 1, D, rng);
  content.fill(0, 0, D);
  const saved = new SASRec(config, content);
  return new Map(saved.parameters().map((t) => [t.name, t.data]));
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** What an append cost before capacity growth: a copy of E and its transposition into a d x columns matrix. */
function fullCopyMs(items: Float32Array, rows: number): number {
  const started = performance.now();
  const copy = new Float32Array(items.length + D);
  copy.set(items);
  const columns = Math.ceil((rows + 1) / 64) * 64;
  const t = new Float32Array(D * columns);
  for (let r = 0; r < rows; r++) for (let j = 0; j < D; j++) t[j * columns + r] = copy[r * D + j];
  return performance.now() - started;
}

export const benchmark: Benchmark = {
  name: 'append',
  async run() {
    const results: Record<string, number | string> = {};
    for (const [label, n] of SIZES) {
      const rng = new Random(1);
      const config = sasrecConfig({ numItems: n, d: D, maxLength: 64, strategy: 'content-delta', seed: 1 });
      const tensors = savedTensors(config, rng);
      // What loading a saved model does once the file is read: rebuilding the model from its tensors, and the scorer.
      let started = performance.now();
      const model = SASRec.fromParameters(config, tensors);
      const scorer = new Scorer(model, n);
      const load = performance.now() - started;
      tensors.clear();
      const fresh = unitRows(APPENDS + 1, D, rng);
      const history = [Int32Array.of(1, 2, 3)];
      const state = new Float32Array(D);
      model.encode(history, state); // builds the inference tables (first-block K/V rows, while they fit)
      const rssLoaded = process.memoryUsage().rss;
      started = performance.now();
      scorer.appendItems(fresh.subarray(0, D), 1);
      const first = performance.now() - started;
      const rssFirst = process.memoryUsage().rss;
      const times: number[] = [];
      for (let i = 1; i <= APPENDS; i++) {
        started = performance.now();
        scorer.appendItems(fresh.subarray(i * D, (i + 1) * D), 1);
        times.push(performance.now() - started);
        if (i % 50 === 0) model.encode(history, state); // the K/V tables take the new rows as the service would
      }
      times.sort((a, b) => a - b);
      const reference = fullCopyMs(model.itemEmbeddings(), model.numItems + 1);
      const median = quantile(times, 0.5);
      const p99 = quantile(times, 0.99);
      const peak = process.resourceUsage().maxRSS / 1024;
      console.log(
        `${label}: load (model from its tensors + scorer) ${load.toFixed(1)} ms; RSS ${mb(rssLoaded)} MB after load, ` +
          `${mb(rssFirst)} MB after the first append, peak ${peak.toFixed(0)} MB so far`,
      );
      console.log(
        `${label}: first append ${first.toFixed(1)} ms; ` +
          `then one append median ${(median * 1000).toFixed(1)} us, p99 ${(p99 * 1000).toFixed(1)} us ` +
          `(${APPENDS} appends); reference, a full copy + transpose of the table: ${reference.toFixed(1)} ms ` +
          `(${(reference / median).toFixed(0)}x the median append)`,
      );
      const lexical = lexicalAppend(n, rng);
      console.log(
        `${label}: lexical rows (${LEXICAL_NNZ} entries each): one append median ${(lexical.median * 1000).toFixed(1)} us, ` +
          `p99 ${(lexical.p99 * 1000).toFixed(1)} us; reference, rebuilding the column index: ${lexical.rebuild.toFixed(1)} ms`,
      );
      const ids = catalogPuts(n);
      console.log(
        `${label}: catalog ids: first put after load ${ids.first.toFixed(3)} ms, then median ${(ids.median * 1000).toFixed(1)} us`,
      );
      Object.assign(results, {
        [`append_${label}_ids_first_ms`]: ids.first,
        [`append_${label}_lexical_median_us`]: lexical.median * 1000,
        [`append_${label}_lexical_p99_us`]: lexical.p99 * 1000,
        [`append_${label}_lexical_rebuild_ms`]: lexical.rebuild,
        [`append_${label}_load_ms`]: load,
        [`append_${label}_first_ms`]: first,
        [`append_${label}_peak_rss_mb`]: peak,
        [`append_${label}_median_us`]: median * 1000,
        [`append_${label}_p99_us`]: p99 * 1000,
        [`append_${label}_full_copy_ms`]: reference,
      });
    }
    return results;
  },
};
