/**
 * Full-catalog evaluation of any Recommender on a PreparedSplit (PROTOCOL.md "Ranking" and "Metrics").
 *
 * Every test case's input is scored against the whole catalog in batches; the exact rank of the ground truth is
 * counted over all candidates (see metrics.ts for the tie rule) and top-K lists from `kernels.topK` give catalog
 * coverage. Nothing is sampled.
 */
import type { PreparedSplit, Sequences } from '../data/types.js';
import { kernels } from '../kernels/index.js';
import type { Recommender } from '../model/types.js';
import { MISS, rankOfTarget, summarizeRanks, type MetricValues } from './metrics.js';

export interface EvaluateOptions {
  /** Cold items are candidates (true, the headline mode) or only warm items are (false). */
  recommendColdItems?: boolean;
  /** Cold items are dropped from the input sequences before scoring. */
  filterColdInputs?: boolean;
  /** Items in the user's input (the whole history before the ground truth) are removed from the ranking. */
  removeSeen?: boolean;
  /** Cutoffs for HR@K, NDCG@K and coverage@K. */
  ks?: number[];
  /** Inputs are truncated to their last maxLength items (after cold filtering); models also truncate themselves. */
  maxLength?: number;
  /** Test cases scored per recommender.score call. */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface EvaluationResult {
  /** Each segment: count, ndcg@K, hr@K for every K, mrr, coverage@K (distinct top-K items / candidate items). */
  cold: MetricValues;
  warm: MetricValues;
  all: MetricValues;
  /** Per test case, the 0-based rank of the ground truth or -1 (MISS). Aligned with split.test. */
  ranks: Int32Array;
  /** Cases whose input was empty after filtering cold inputs (scored as misses). */
  emptyInputs: number;
  options: { recommendColdItems: boolean; filterColdInputs: boolean; removeSeen: boolean; ks: number[] };
}

interface CaseSet {
  inputs: Sequences;
  targets: Int32Array;
}

interface RankOptions {
  numWarm: number;
  numItems: number;
  recommendColdItems: boolean;
  filterColdInputs: boolean;
  removeSeen: boolean;
  maxLength: number;
  batchSize: number;
  /** When > 0, top-topK lists (at most as long as the catalog) are computed and passed to onTopK. */
  topK: number;
  onTopK?: (caseIndex: number, indices: Int32Array, offset: number, length: number) => void;
  onProgress?: (done: number, total: number) => void;
}

/** Most floats of one score buffer (128 MB): large catalogs get fewer cases per batch (1M items: 33). */
const SCORE_BUFFER_FLOATS = 1 << 25;

/**
 * Ranks every case's target. Returns the ranks and the number of cases left with an empty input.
 * The score buffer is (batch x (recommender.numItems + 1)), batch at most SCORE_BUFFER_FLOATS / that width; items
 * beyond recommender.numItems are unscorable.
 */
function rankCases(
  recommender: Recommender,
  cases: CaseSet,
  o: RankOptions,
): { ranks: Int32Array; empty: number } {
  const count = cases.targets.length;
  const width = recommender.numItems + 1;
  if (recommender.numItems > o.numItems) {
    throw new Error(
      `evaluate: the model scores ${recommender.numItems} items but the split has ${o.numItems}`,
    );
  }
  const batch = Math.max(1, Math.min(o.batchSize, count, Math.floor(SCORE_BUFFER_FLOATS / width)));
  const scores = new Float32Array(batch * width);
  const k = Math.min(o.topK, width);
  const topIndices = new Int32Array(batch * Math.max(k, 1));
  const topScores = new Float32Array(batch * Math.max(k, 1));
  const ranks = new Int32Array(count).fill(MISS);
  const { offsets, items } = cases.inputs;
  let empty = 0;
  const batchInputs: Int32Array[] = [];
  const batchCases: number[] = [];

  const flush = (): void => {
    const rows = batchInputs.length;
    if (rows === 0) return;
    recommender.score(batchInputs, scores);
    for (let r = 0; r < rows; r++) {
      const c = batchCases[r];
      const base = r * width;
      scores[base] = -Infinity;
      if (!o.recommendColdItems) scores.fill(-Infinity, base + Math.min(o.numWarm + 1, width), base + width);
      if (o.removeSeen) {
        for (let p = offsets[c]; p < offsets[c + 1]; p++)
          if (items[p] < width) scores[base + items[p]] = -Infinity;
      }
      const target = cases.targets[c];
      ranks[c] = target < width ? rankOfTarget(scores, base, width, target) : MISS;
    }
    if (k > 0 && o.onTopK) {
      kernels.topK(topIndices, topScores, scores, rows, width, k);
      for (let r = 0; r < rows; r++) o.onTopK(batchCases[r], topIndices, r * k, k);
    }
    batchInputs.length = 0;
    batchCases.length = 0;
  };

  for (let c = 0; c < count; c++) {
    let input = items.subarray(offsets[c], offsets[c + 1]);
    if (o.filterColdInputs) input = input.filter((item) => item <= o.numWarm);
    if (input.length > o.maxLength) input = input.subarray(input.length - o.maxLength);
    if (input.length === 0) {
      empty++;
      continue;
    }
    batchInputs.push(input);
    batchCases.push(c);
    if (batchInputs.length === batch) {
      flush();
      o.onProgress?.(c + 1, count);
    }
  }
  flush();
  o.onProgress?.(count, count);
  return { ranks, empty };
}

/** HR@K, NDCG@K, MRR and coverage@K on the split's test cases, for cold, warm and all cases. */
export function evaluate(
  recommender: Recommender,
  split: PreparedSplit,
  options: EvaluateOptions = {},
): EvaluationResult {
  const recommendColdItems = options.recommendColdItems ?? true;
  const filterColdInputs = options.filterColdInputs ?? false;
  const removeSeen = options.removeSeen ?? true;
  const ks = [...(options.ks ?? [10])].sort((a, b) => a - b);
  if (ks.length === 0 || ks.some((k) => !Number.isInteger(k) || k < 1)) {
    throw new Error(`evaluate: ks must be positive integers, got [${ks.join(', ')}]`);
  }
  const maxK = ks[ks.length - 1];
  const cold = split.test.cold;
  const numItems = split.numItems;

  // covered[(segment * ks.length + i) * (numItems + 1) + item] = 1 when item is in some top-ks[i] list of the
  // segment (0 cold, 1 warm, 2 all).
  const covered = new Uint8Array(3 * ks.length * (numItems + 1));
  const onTopK = (c: number, indices: Int32Array, offset: number, length: number): void => {
    const segment = cold[c] ? 0 : 1;
    for (let j = 0; j < length; j++) {
      const item = indices[offset + j];
      if (item < 0) break;
      for (let i = 0; i < ks.length; i++) {
        if (j >= ks[i]) continue;
        covered[(segment * ks.length + i) * (numItems + 1) + item] = 1;
        covered[(2 * ks.length + i) * (numItems + 1) + item] = 1;
      }
    }
  };

  const { ranks, empty } = rankCases(recommender, split.test, {
    numWarm: split.numWarm,
    numItems,
    recommendColdItems,
    filterColdInputs,
    removeSeen,
    maxLength: options.maxLength ?? Number.MAX_SAFE_INTEGER,
    batchSize: options.batchSize ?? 256,
    topK: maxK,
    onTopK,
    onProgress: options.onProgress,
  });

  const candidates = recommendColdItems ? numItems : split.numWarm;
  const segments = [
    summarizeRanks(ranks, ks, cold, 1),
    summarizeRanks(ranks, ks, cold, 0),
    summarizeRanks(ranks, ks),
  ];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < ks.length; i++) {
      let n = 0;
      const base = (s * ks.length + i) * (numItems + 1);
      for (let item = 1; item <= numItems; item++) n += covered[base + item];
      segments[s][`coverage@${ks[i]}`] = candidates > 0 ? n / candidates : 0;
    }
  }
  return {
    cold: segments[0],
    warm: segments[1],
    all: segments[2],
    ranks,
    emptyInputs: empty,
    options: { recommendColdItems, filterColdInputs, removeSeen, ks },
  };
}

/**
 * Validation NDCG@k for early stopping: the split's validation users, warm items as candidates, seen items removed.
 * Synchronous, so it fits the trainer's `validate(model) => number` callback.
 */
export function validationNdcg(
  recommender: Recommender,
  split: PreparedSplit,
  options: { k?: number; maxLength?: number; batchSize?: number } = {},
): number {
  const k = options.k ?? 10;
  const { ranks } = rankCases(recommender, split.validation, {
    numWarm: split.numWarm,
    numItems: split.numItems,
    recommendColdItems: false,
    filterColdInputs: false,
    removeSeen: true,
    maxLength: options.maxLength ?? Number.MAX_SAFE_INTEGER,
    batchSize: options.batchSize ?? 256,
    topK: 0,
  });
  return summarizeRanks(ranks, [k])[`ndcg@${k}`];
}
