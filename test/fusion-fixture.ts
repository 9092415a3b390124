/** Shared by the lexical fusion tests: a recommender with fixed scores and four items' unit TF-IDF rows. */
import type { CsrMatrix } from '../src/content/sparse.js';
import type { Recommender } from '../src/model/types.js';

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
