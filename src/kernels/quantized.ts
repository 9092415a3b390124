/**
 * Exact top-k with an int8 first pass (`scoreTopKQuantized`, types.ts): a second copy of the item matrix in 8-bit
 * codes (1 byte per value instead of 4) is streamed to get, for every item, an approximate score and a proven
 * bound on its error; only the items whose upper bound can still reach the k-th best lower bound are scored again
 * exactly, from the fp32 matrix, with the same arithmetic as `scoreTopK`. Why the answer is exact is written at
 * `scoreTopKQuantized` below.
 *
 * Item codes. Row j (x, d values) has scale s_j = max |x_p| / 127 and codes c_p = round(x_p / s_j) in -127..127,
 * stored as c_p + 128 (a byte 1..255, so that an x86 VNNI dot product of unsigned item bytes by signed query bytes
 * applies). x^ = s_j c is the quantized row; per row we keep s_j, residuals[j] = ||x - x^|| and norms[j] = ||x^||
 * (norms computed in double, rounded to float32). Codes are in panels of PANEL_WIDTH items like the fp32 panels:
 * panel p holds items p*64 .. p*64 + 63 as dp/4 groups (dp = d rounded up to a multiple of 4, zero codes beyond d),
 * group g being 64 items x 4 bytes (the item's values 4g .. 4g + 3), 256 bytes. Cost per item: dp bytes + 12.
 *
 * Query codes. A user state q gets t = max |q_p| / 127, codes b_p = round(q_p / t) in -127..127 and q^ = t b.
 * Its approximate score against row j is a_j = (t s_j) * (sum_p (c_p + 128) b_p - 128 sum_p b_p) (an exact integer
 * times one float32 product), and since q.x - q^.x^ = q.(x - x^) + (q - q^).x^, Cauchy-Schwarz gives
 *   |q.x - a_j| <= ||q|| residuals[j] + ||q - q^|| norms[j] + (rounding of a_j and of the exact fp32 score).
 */
import { extend, withRoom } from '../util/growable.js';
import { PANEL_WIDTH } from './panels.js';
import { insertRanked, insertTopK, padTopK } from './topk-list.js';

/** Values per code group (one 32-bit lane of the VNNI product). */
export const CODE_GROUP = 4;

/** d rounded up to a whole number of code groups. */
export function codeWidth(d: number): number {
  return Math.ceil(d / CODE_GROUP) * CODE_GROUP;
}

/** Bytes of the code panels of n items of width d. */
export function codePanelLength(n: number, d: number): number {
  return Math.ceil(n / PANEL_WIDTH) * PANEL_WIDTH * codeWidth(d);
}

/** The int8 copy of an item matrix: code panels and per-row scale, residual norm and quantized norm. */
export interface QuantizedItems {
  codes: Uint8Array;
  scales: Float32Array;
  residuals: Float32Array;
  norms: Float32Array;
}

/** Rows of the per-row arrays for n items: whole panels (the native kernel reads them a panel at a time). */
export function paddedRows(n: number): number {
  return Math.ceil(n / PANEL_WIDTH) * PANEL_WIDTH;
}

/** An empty int8 copy, to grow with `growQuantized`. */
export function emptyQuantized(): QuantizedItems {
  return {
    codes: new Uint8Array(0),
    scales: new Float32Array(0),
    residuals: new Float32Array(0),
    norms: new Float32Array(0),
  };
}

/**
 * An int8 copy sized for n items of width d with spare room (util/growable.ts `withRoom`), so that the first
 * appends after a load grow it in place; rows are written by quantizeRows.
 */
export function quantizedWithRoom(n: number, d: number): QuantizedItems {
  const rows = paddedRows(n);
  return {
    codes: withRoom(Uint8Array, codePanelLength(n, d), codeWidth(d)),
    scales: withRoom(Float32Array, rows),
    residuals: withRoom(Float32Array, rows),
    norms: withRoom(Float32Array, rows),
  };
}

/**
 * `q` with room for n items of width d (util/growable.ts: by capacity, so that appending a row costs O(d)
 * amortized); existing rows keep their codes (a panel's position does not depend on n).
 */
export function growQuantized(q: QuantizedItems, n: number, d: number): QuantizedItems {
  const rows = paddedRows(n);
  if (q.scales.length >= rows) return q;
  return {
    codes: extend(q.codes, codePanelLength(n, d)),
    scales: extend(q.scales, rows),
    residuals: extend(q.residuals, rows),
    norms: extend(q.norms, rows),
  };
}

/** Reference of `quantizeItems` (types.ts): quantizeRange with the copy's arrays passed one by one. */
export function quantizeItemsReference(
  codes: Uint8Array,
  scales: Float32Array,
  residuals: Float32Array,
  norms: Float32Array,
  matrix: Float32Array,
  from: number,
  to: number,
  d: number,
): void {
  quantizeRange(matrix, from, to, d, { codes, scales, residuals, norms });
}

/** quantizeRows of rows from .. to - 1. */
export function quantizeRange(
  matrix: Float32Array,
  from: number,
  to: number,
  d: number,
  out: QuantizedItems,
): void {
  for (let j = from; j < to; j++) quantizeRow(matrix, j, d, out);
}

/**
 * Quantizes the given rows of the row-major matrix (width d) into `out` (grown by growQuantized to hold them);
 * other rows keep their codes. A row with a non-finite value gets scale NaN: its bounds
 * are then (-Infinity, Infinity) and it is always scored exactly.
 */
export function quantizeRows(
  matrix: Float32Array,
  rows: ArrayLike<number>,
  d: number,
  out: QuantizedItems,
): void {
  for (let i = 0; i < rows.length; i++) quantizeRow(matrix, rows[i], d, out);
}

function quantizeRow(matrix: Float32Array, j: number, d: number, out: QuantizedItems): void {
  const { codes } = out;
  const dp = codeWidth(d);
  const row = j * d;
  let max = 0;
  for (let p = 0; p < d; p++) {
    const x = matrix[row + p];
    if (x > max) max = x;
    else if (-x > max) max = -x;
    else if (Number.isNaN(x)) max = NaN;
  }
  // The row's group 0 byte; value p is at base + (p >> 2) * 256 + (p & 3).
  const base = Math.floor(j / PANEL_WIDTH) * PANEL_WIDTH * dp + (j % PANEL_WIDTH) * CODE_GROUP;
  const stride = PANEL_WIDTH * CODE_GROUP;
  if (!(max < Infinity)) {
    for (let p = 0; p < dp; p++) codes[base + (p >> 2) * stride + (p & 3)] = 128;
    out.scales[j] = NaN;
    out.residuals[j] = Infinity;
    out.norms[j] = Infinity;
    return;
  }
  const scale = Math.fround(max / 127);
  const inverse = scale > 0 ? 1 / scale : 0;
  let residual = 0;
  let norm = 0;
  for (let p = 0; p < dp; p++) {
    const x = p < d ? matrix[row + p] : 0;
    // round(x / scale) clamped to -127..127; x * (1 / scale) may differ from x / scale in the last bit, which only
    // moves a value across a rounding boundary: the residual below is computed from the code actually stored.
    let c = Math.floor(x * inverse + 0.5);
    c = c > 127 ? 127 : c < -127 ? -127 : c;
    codes[base + (p >> 2) * stride + (p & 3)] = c + 128;
    const q = scale * c;
    residual += (x - q) * (x - q);
    norm += q * q;
  }
  out.scales[j] = scale;
  out.residuals[j] = Math.sqrt(residual);
  out.norms[j] = Math.sqrt(norm);
}

/** Byte of value p of the item whose first byte of group 0 is at `base`. */
function codeOffset(base: number, p: number): number {
  return base + Math.floor(p / CODE_GROUP) * PANEL_WIDTH * CODE_GROUP + (p % CODE_GROUP);
}

/**
 * Slack of the bounds, relative to (||q|| + ||q - q^||) (norms[j] + residuals[j]) >= |q|| ||x||, for the float
 * rounding that the Cauchy-Schwarz bound does not see: the exact fp32 score accumulated over d products (at most
 * about d u ||q|| ||x||, u = 2^-24), a_j (3 roundings), the stored norms and the bound arithmetic (a few u each).
 * (d + 16) 2^-22 is four times that sum. TINY covers products that underflow (absolute error < 2^-149 each).
 */
export function boundSlack(d: number): number {
  return (d + 16) * 2 ** -22;
}
export const TINY = 2 ** -120;

/** A user state's codes and the numbers its bounds need. */
export interface QueryCodes {
  codes: Int32Array; // dp signed codes b_p (0 beyond d)
  t: number; // its scale
  norm: number; // ||q||
  error: number; // ||q - q^||
  sum: number; // sum of b_p
  extra: number; // boundSlack(d) (||q|| + ||q - q^||)
}

/** Codes of state q (d values). A non-finite q gets infinite norms: every bound is then infinite. */
export function quantizeQuery(q: Float32Array, d: number): QueryCodes {
  const codes = new Int32Array(codeWidth(d));
  let max = 0;
  for (let p = 0; p < d; p++) max = Math.max(max, Math.abs(q[p]));
  if (!Number.isFinite(max)) return { codes, t: 0, norm: Infinity, error: Infinity, sum: 0, extra: Infinity };
  const t = Math.fround(max / 127);
  let norm = 0;
  let error = 0;
  let sum = 0;
  for (let p = 0; p < d; p++) {
    const b = t > 0 ? Math.min(127, Math.max(-127, Math.floor(q[p] / t + 0.5))) : 0;
    codes[p] = b;
    sum += b;
    norm += q[p] * q[p];
    error += (q[p] - t * b) * (q[p] - t * b);
  }
  const f = Math.fround;
  const [qNorm, qError] = [f(Math.sqrt(norm)), f(Math.sqrt(error))];
  return { codes, t, norm: qNorm, error: qError, sum, extra: f(boundSlack(d) * f(qNorm + qError)) };
}

/**
 * [lb, ub] of item j's exact score against the query (NaN mapped to -Infinity and Infinity), in float32 steps as
 * the native kernel computes them.
 */
export function itemBounds(query: QueryCodes, items: QuantizedItems, j: number, d: number): [number, number] {
  const f = Math.fround;
  const dp = codeWidth(d);
  const base = Math.floor(j / PANEL_WIDTH) * PANEL_WIDTH * dp + (j % PANEL_WIDTH) * CODE_GROUP;
  let dot = 0;
  for (let p = 0; p < dp; p++) dot += items.codes[codeOffset(base, p)] * query.codes[p];
  dot -= 128 * query.sum;
  const a = f(dot * f(query.t * items.scales[j]));
  const residual = items.residuals[j];
  const norm = items.norms[j];
  const e = f(
    f(f(f(query.norm * residual) + f(query.error * norm)) + f(query.extra * f(norm + residual))) + TINY,
  );
  const lb = f(a - e);
  const ub = f(a + e);
  // (||q|| + ||q - q^||) (norms + residuals) >= ||q|| ||x|| bounds every product and partial sum of the exact
  // score: at 2^126 and above one could overflow (the bound above assumes none does), so there is no bound.
  const fits = f(norm + residual) < f(2 ** 126 / f(query.norm + query.error));
  return [fits && !Number.isNaN(lb) ? lb : -Infinity, fits && !Number.isNaN(ub) ? ub : Infinity];
}

/** Inserts x into the descending list list[o .. o + count) of at most k values; returns the new count. */
function insertLower(list: Float32Array, o: number, count: number, k: number, x: number): number {
  if (!(x > -Infinity) || (count === k && !(x > list[o + k - 1]))) return count;
  let pos = count < k ? count++ : k - 1;
  while (pos > 0 && x > list[o + pos - 1]) {
    list[o + pos] = list[o + pos - 1];
    pos--;
  }
  list[o + pos] = x;
  return count;
}

/**
 * Reference of `scoreTopKQuantized` (types.ts). Per row r of states, over the eligible items (j < limits[r],
 * active[j] != 0):
 *   1. lb_j = a_j - e_j and ub_j = a_j + e_j (-Infinity and Infinity instead of NaN, and where the exact score
 *      could overflow: see itemBounds), with
 *      e_j = ||q|| residuals[j] + ||q - q^|| norms[j] + slack (||q|| + ||q - q^||) (norms[j] + residuals[j]) + TINY
 *      >= |score_j - a_j|, score_j being the exact path's fp32 score (see the file comment and boundSlack).
 *   2. t = the k-th largest lb_j (-Infinity when fewer than k are finite).
 *   3. Candidates = eligible j with ub_j >= t, scored exactly (as `scoreTopK` scores them) and ranked as
 *      `scoreTopK` ranks (score descending, lower index first, NaN and -Infinity never returned).
 * Why this is exact: k eligible items have lb >= t, hence exact scores >= t, so the k-th best exact score S_k is
 * >= t. An item left out has score <= ub < t <= S_k, strictly below the k-th best, so it is not in the exact top-k
 * whatever the tie rule; every item scoring >= t is a candidate, so the candidates hold the exact top-k together
 * with every item tied with its last entry, and ranking them by the same rule gives the same list.
 * outCandidates[r] = the number of candidates rescored for row r.
 */
export function scoreTopKQuantizedReference(
  outIndices: Int32Array,
  outScores: Float32Array,
  outCandidates: Int32Array,
  states: Float32Array,
  codes: Uint8Array,
  scales: Float32Array,
  residuals: Float32Array,
  norms: Float32Array,
  items: Float32Array,
  active: Uint8Array,
  limits: Int32Array,
  rows: number,
  n: number,
  d: number,
  k: number,
): void {
  if (k <= 0) return;
  const quantized: QuantizedItems = { codes, scales, residuals, norms };
  const lower = new Float32Array(n);
  const upper = new Float32Array(n);
  const best = new Float32Array(k);
  for (let r = 0; r < rows; r++) {
    const q = states.subarray(r * d, r * d + d);
    const query = quantizeQuery(q, d);
    const limit = Math.min(Math.max(limits[r], 0), n);
    let count = 0;
    for (let j = 0; j < limit; j++) {
      if (!active[j]) continue;
      [lower[j], upper[j]] = itemBounds(query, quantized, j, d);
      count = insertLower(best, 0, count, k, lower[j]); // the k largest lower bounds so far, best first
    }
    const threshold = count === k ? best[k - 1] : -Infinity;
    const oi = r * k;
    let found = 0;
    let candidates = 0;
    for (let j = 0; j < limit; j++) {
      if (!active[j] || !(upper[j] >= threshold)) continue;
      candidates++;
      let s = 0;
      for (let p = 0; p < d; p++) s += q[p] * items[j * d + p];
      found = insertTopK(outIndices, outScores, oi, found, k, Math.fround(s), j);
    }
    padTopK(outIndices, outScores, oi, found, k);
    outCandidates[r] = candidates;
  }
}

/**
 * Reference of `scanQuantized` (types.ts): one step of scoreTopKQuantizedReference over items from .. to - 1 for
 * requests whose state persists between calls. Per row r (width k = offsets[r + 1] - offsets[r]) the state is the k
 * largest lower bounds seen so far (`lower`, lowerCount[r] of them, descending; once full, its k-th is the running
 * threshold w) and the best exact scores so far (outIndices / outScores, outCount[r], ranked by insertRanked).
 * Each eligible item in the range gets its bounds (itemBounds); its lb joins `lower` when it beats w; at the end of
 * the call, the items of the range with ub >= w (w as it stands then) are scored exactly and join the exact list.
 * Why the list is exact once every eligible item has been covered, in any order: w only rises and never exceeds
 * the final t (the k-th largest lb of all eligible items), so every item with ub >= t was scored exactly, and those
 * include the exact top k and every item tied with its last entry (scoreTopKQuantizedReference); the exact list is
 * the top k of a set of items that holds them all, ranked by score and then index, which is scoreTopK's answer
 * whatever else the set holds.
 */
export function scanQuantizedReference(
  lower: Float32Array,
  lowerCount: Int32Array,
  outIndices: Int32Array,
  outScores: Float32Array,
  outCount: Int32Array,
  outCandidates: Int32Array,
  offsets: Int32Array,
  states: Float32Array,
  codes: Uint8Array,
  scales: Float32Array,
  residuals: Float32Array,
  norms: Float32Array,
  items: Float32Array,
  active: Uint8Array,
  limits: Int32Array,
  rows: number,
  n: number,
  d: number,
  from: number,
  to: number,
): void {
  const quantized: QuantizedItems = { codes, scales, residuals, norms };
  for (let r = 0; r < rows; r++) {
    const [o, k] = [offsets[r], offsets[r + 1] - offsets[r]];
    const end = Math.min(Math.max(limits[r], 0), n, to);
    if (k === 0 || end <= from) continue;
    const q = states.subarray(r * d, r * d + d);
    const query = quantizeQuery(q, d);
    let [count, found] = [lowerCount[r], outCount[r]];
    const upper = new Float32Array(end - from).fill(NaN); // NaN: not eligible (never >= w)
    for (let j = from; j < end; j++) {
      if (!active[j]) continue;
      const [lb, ub] = itemBounds(query, quantized, j, d);
      count = insertLower(lower, o, count, k, lb);
      upper[j - from] = ub;
    }
    const worst = count === k ? lower[o + k - 1] : -Infinity;
    for (let j = from; j < end; j++) {
      if (!(upper[j - from] >= worst)) continue;
      outCandidates[r]++;
      let s = 0;
      for (let p = 0; p < d; p++) s += q[p] * items[j * d + p];
      found = insertRanked(outIndices, outScores, o, found, k, Math.fround(s), j);
    }
    lowerCount[r] = count;
    outCount[r] = found;
  }
}
