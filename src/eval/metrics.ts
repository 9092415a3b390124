/**
 * Ranking metrics from exact ranks of the ground truth (PROTOCOL.md "Metrics").
 *
 * A rank is 0-based: the number of candidate items ranked above the ground truth. MISS (-1) means the ground truth
 * cannot be ranked at all (it is not a candidate, the model gives it -Infinity, it was removed as seen, or the
 * input was empty); a miss scores 0 on every metric.
 *
 * Tie rule: candidates with a score equal to the ground truth's score rank above it when their item index is
 * lower. This is the order `kernels.topK` uses, so "rank < K" and "the ground truth is in the top-K list" always agree.
 */

export const MISS = -1;

/** Metric name -> value, e.g. { count: 6110, 'ndcg@10': 0.046, 'hr@10': 0.078, mrr: 0.04, 'coverage@10': 0.31 }. */
export type MetricValues = Record<string, number>;

export function hitAt(rank: number, k: number): number {
  return rank >= 0 && rank < k ? 1 : 0;
}

export function ndcgAt(rank: number, k: number): number {
  return rank >= 0 && rank < k ? 1 / Math.log2(rank + 2) : 0;
}

export function reciprocalRank(rank: number): number {
  return rank >= 0 ? 1 / (rank + 1) : 0;
}

/**
 * Exact rank of item `target` in one score row (row[offset + item] is item's score for item 1..width-1).
 * Items with score -Infinity are not candidates. Returns MISS when the target itself is not a candidate.
 */
export function rankOfTarget(row: Float32Array, offset: number, width: number, target: number): number {
  const s = row[offset + target];
  if (Number.isNaN(s)) throw new Error(`evaluate: the model scored item ${target} as NaN`);
  if (s === -Infinity) return MISS;
  let rank = 0;
  for (let j = 1; j < target; j++) if (row[offset + j] >= s) rank++;
  for (let j = target + 1; j < width; j++) if (row[offset + j] > s) rank++;
  return rank;
}

/**
 * Mean HR@K and NDCG@K for each K, and MRR, over the cases whose `select` flag equals `want` (every case when
 * select is null). `count` is the number of cases; all means are 0 when there are none.
 */
export function summarizeRanks(
  ranks: Int32Array,
  ks: readonly number[],
  select: Uint8Array | null = null,
  want = 1,
): MetricValues {
  const hr = new Float64Array(ks.length);
  const ndcg = new Float64Array(ks.length);
  let rr = 0;
  let count = 0;
  for (let c = 0; c < ranks.length; c++) {
    if (select && select[c] !== want) continue;
    count++;
    const r = ranks[c];
    if (r < 0) continue;
    rr += 1 / (r + 1);
    for (let i = 0; i < ks.length; i++) {
      hr[i] += hitAt(r, ks[i]);
      ndcg[i] += ndcgAt(r, ks[i]);
    }
  }
  const out: MetricValues = { count };
  const denominator = Math.max(count, 1);
  for (let i = 0; i < ks.length; i++) {
    out[`ndcg@${ks[i]}`] = ndcg[i] / denominator;
    out[`hr@${ks[i]}`] = hr[i] / denominator;
  }
  out.mrr = rr / denominator;
  return out;
}

/** Mean and (sample, n-1) standard deviation; std is 0 for fewer than two values. */
export function meanStd(values: readonly number[]): { mean: number; std: number } {
  const n = values.length;
  if (n === 0) return { mean: 0, std: 0 };
  let mean = 0;
  for (const v of values) mean += v;
  mean /= n;
  if (n < 2) return { mean, std: 0 };
  let ss = 0;
  for (const v of values) ss += (v - mean) * (v - mean);
  return { mean, std: Math.sqrt(ss / (n - 1)) };
}
