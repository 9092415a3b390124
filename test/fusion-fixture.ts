/** Shared by the lexical fusion tests: a recommender with fixed scores and four items' unit TF-IDF rows. */
import type { CsrMatrix } from '../src/content/sparse.js';
import type { Recommender } from '../src/model/types.js';
import { packBatch } from '../src/serve/engine.js';
import type { Scorer } from '../src/serve/scorer.js';

/** A recommender that returns fixed scores for every input. */
export function fixed(scores: number[]): Recommender {
  return {
    numItems: scores.length - 1,
    score(inputs, out) {
      for (let b = 0; b < inputs.length; b++) out.set(scores, b * scores.length);
    },
  };
}

// Four items over three terms, unit rows: 1 = t0, 2 = t1, 3 = (t0 + t1) / sqrt 2, 4 = t2. Row 0 is padding.
export const rows: CsrMatrix = {
  rows: 5,
  cols: 3,
  indptr: Int32Array.from([0, 0, 1, 2, 4, 5]),
  indices: Int32Array.from([0, 1, 0, 1, 2]),
  values: Float32Array.from([1, 1, Math.SQRT1_2, Math.SQRT1_2, 1]),
};

/** The served score of every item 1..items for one history (NaN for items not returned). */
export function servedScores(scorer: Scorer, history: Int32Array, items: number): Float64Array {
  const request = { history, exclude: new Int32Array(0), k: items, includeCold: true, excludeSeen: false };
  const result = scorer.score(packBatch([request]));
  const byItem = new Float64Array(items + 1).fill(NaN);
  result.indices.forEach((item, i) => (byItem[item] = result.scores[i]));
  return byItem;
}
