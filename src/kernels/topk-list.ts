/**
 * The top-k list the selection kernels fill (topK, scoreTopK and scoreTopKQuantized references): entries oi ..
 * oi + k - 1 of outIndices / outScores, best first.
 */

/**
 * Inserts score x of item j into the list of `count` entries and returns the new count. A later item only displaces
 * strictly lower scores, so ties keep lower indices; -Infinity and NaN are never inserted.
 */
export function insertTopK(
  outIndices: Int32Array,
  outScores: Float32Array,
  oi: number,
  count: number,
  k: number,
  x: number,
  j: number,
): number {
  if (!(x > -Infinity) || (count === k && !(x > outScores[oi + k - 1]))) return count;
  let pos = count < k ? count++ : k - 1;
  while (pos > 0 && x > outScores[oi + pos - 1]) {
    outScores[oi + pos] = outScores[oi + pos - 1];
    outIndices[oi + pos] = outIndices[oi + pos - 1];
    pos--;
  }
  outScores[oi + pos] = x;
  outIndices[oi + pos] = j;
  return count;
}

/** Fills the list's entries from `count` on with -Infinity and index -1. */
export function padTopK(
  outIndices: Int32Array,
  outScores: Float32Array,
  oi: number,
  count: number,
  k: number,
): void {
  for (let c = count; c < k; c++) {
    outScores[oi + c] = -Infinity;
    outIndices[oi + c] = -1;
  }
}

/**
 * Inserts score x of item j into the list of `count` entries, ranked by score descending and then index ascending,
 * and returns the new count: the list `insertTopK` gives in item order, whatever order the items come in.
 * -Infinity and NaN are never inserted.
 */
export function insertRanked(
  outIndices: Int32Array,
  outScores: Float32Array,
  oi: number,
  count: number,
  k: number,
  x: number,
  j: number,
): number {
  const before = (e: number) => x > outScores[e] || (x === outScores[e] && j < outIndices[e]);
  if (!(x > -Infinity) || (count === k && !before(oi + k - 1))) return count;
  let pos = count < k ? count++ : k - 1;
  while (pos > 0 && before(oi + pos - 1)) {
    outScores[oi + pos] = outScores[oi + pos - 1];
    outIndices[oi + pos] = outIndices[oi + pos - 1];
    pos--;
  }
  outScores[oi + pos] = x;
  outIndices[oi + pos] = j;
  return count;
}
