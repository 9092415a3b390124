/**
 * The paper's breakdowns of test quality (its Figures 4 and 5): NDCG@K and HR@K by the share of cold items in the
 * input sequence, and by the ground-truth item's number of occurrences in training. Both work on the per-case ranks
 * of an EvaluationResult, so they cost nothing extra.
 */
import type { PreparedSplit } from '../data/types.js';
import { hitAt, ndcgAt } from '../eval/metrics.js';

export interface Bucket {
  label: string;
  count: number;
  ndcg: number;
  hr: number;
}

/** Mean NDCG@k and HR@k of the cases in each bucket (bucketOf[c] = bucket index, or -1 to leave a case out). */
export function bucketMetrics(ranks: Int32Array, bucketOf: Int32Array, labels: string[], k = 10): Bucket[] {
  const buckets = labels.map((label) => ({ label, count: 0, ndcg: 0, hr: 0 }));
  for (let c = 0; c < ranks.length; c++) {
    const b = buckets[bucketOf[c]];
    if (!b) continue;
    b.count++;
    b.ndcg += ndcgAt(ranks[c], k);
    b.hr += hitAt(ranks[c], k);
  }
  for (const b of buckets) {
    if (b.count > 0) {
      b.ndcg /= b.count;
      b.hr /= b.count;
    }
  }
  return buckets;
}

export const COLD_SHARE_LABELS = ['0%', '1-25%', '26-50%', '51-75%', '76-100%'];

/** Bucket of each test case by the share of cold items among its input's last maxLength items. */
export function coldInputShareBuckets(split: PreparedSplit, maxLength = Number.MAX_SAFE_INTEGER): Int32Array {
  const { offsets, items } = split.test.inputs;
  const out = new Int32Array(split.test.targets.length);
  for (let c = 0; c < out.length; c++) {
    const start = Math.max(offsets[c], offsets[c + 1] - maxLength);
    const length = offsets[c + 1] - start;
    let cold = 0;
    for (let p = start; p < offsets[c + 1]; p++) if (items[p] > split.numWarm) cold++;
    const share = length > 0 ? cold / length : 0;
    out[c] = share === 0 ? 0 : Math.min(4, Math.ceil(share * 4 - 1e-9));
  }
  return out;
}

/** Frequency buckets: upper bounds (inclusive) of training occurrences; the first bucket (0) is the cold items. */
export const FREQUENCY_BOUNDS = [0, 5, 10, 20, 50, 100, Infinity];
export const FREQUENCY_LABELS = ['0 (cold)', '1-5', '6-10', '11-20', '21-50', '51-100', '>100'];

/** Bucket of each test case by its ground-truth item's occurrences in training. */
export function targetFrequencyBuckets(split: PreparedSplit): Int32Array {
  const out = new Int32Array(split.test.targets.length);
  for (let c = 0; c < out.length; c++) {
    const n = split.trainItemCounts[split.test.targets[c]] ?? 0;
    let b = 0;
    while (n > FREQUENCY_BOUNDS[b]) b++;
    out[c] = b;
  }
  return out;
}

export interface CaseAnalyses {
  coldInputShare: Bucket[];
  targetFrequency: Bucket[];
}

export function analyzeCases(
  ranks: Int32Array,
  split: PreparedSplit,
  maxLength?: number,
  k = 10,
): CaseAnalyses {
  return {
    coldInputShare: bucketMetrics(ranks, coldInputShareBuckets(split, maxLength), COLD_SHARE_LABELS, k),
    targetFrequency: bucketMetrics(ranks, targetFrequencyBuckets(split), FREQUENCY_LABELS, k),
  };
}
