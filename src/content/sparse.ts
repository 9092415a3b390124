/** Sparse row matrices (CSR) for TF-IDF features, and their products with dense row-major blocks. */
import type { LinearOperator } from './linalg.js';

/** Row r has entries (indices[p], values[p]) for p in indptr[r] .. indptr[r+1]; column indices ascend in a row. */
export interface CsrMatrix {
  rows: number;
  cols: number;
  indptr: Int32Array; // length rows + 1
  indices: Int32Array;
  values: Float32Array;
}

/** out (rows x w) = X b, b is cols x w (dense row-major). Overwrites out. */
export function sparseTimesDense(
  x: CsrMatrix,
  b: ArrayLike<number>,
  w: number,
  out: Float64Array | Float32Array,
): void {
  out.fill(0);
  for (let r = 0; r < x.rows; r++) {
    const o = r * w;
    const end = x.indptr[r + 1];
    let p = x.indptr[r];
    // Two non-zeros per pass halve the loads and stores of the output row.
    for (; p + 1 < end; p += 2) {
      const v0 = x.values[p];
      const v1 = x.values[p + 1];
      const s0 = x.indices[p] * w;
      const s1 = x.indices[p + 1] * w;
      for (let j = 0; j < w; j++) out[o + j] += v0 * b[s0 + j] + v1 * b[s1 + j];
    }
    if (p < end) {
      const v = x.values[p];
      const src = x.indices[p] * w;
      for (let j = 0; j < w; j++) out[o + j] += v * b[src + j];
    }
  }
}

/** out (cols x w) = X^T y, y is rows x w. Overwrites out. */
export function sparseTransposedTimesDense(
  x: CsrMatrix,
  y: ArrayLike<number>,
  w: number,
  out: Float64Array,
): void {
  out.fill(0);
  for (let r = 0; r < x.rows; r++) {
    const src = r * w;
    for (let p = x.indptr[r]; p < x.indptr[r + 1]; p++) {
      const v = x.values[p];
      const o = x.indices[p] * w;
      for (let j = 0; j < w; j++) out[o + j] += v * y[src + j];
    }
  }
}

export function sparseOperator(x: CsrMatrix): LinearOperator {
  return {
    rows: x.rows,
    cols: x.cols,
    multiply: (b, w, out) => sparseTimesDense(x, b, w, out),
    multiplyTransposed: (y, w, out) => sparseTransposedTimesDense(x, y, w, out),
  };
}

/** The rows of x listed in rowIds, as a new CSR matrix (same columns). */
export function selectRows(x: CsrMatrix, rowIds: ArrayLike<number>): CsrMatrix {
  const indptr = new Int32Array(rowIds.length + 1);
  for (let i = 0; i < rowIds.length; i++) {
    const r = rowIds[i];
    indptr[i + 1] = indptr[i] + x.indptr[r + 1] - x.indptr[r];
  }
  const indices = new Int32Array(indptr[rowIds.length]);
  const values = new Float32Array(indptr[rowIds.length]);
  for (let i = 0; i < rowIds.length; i++) {
    const r = rowIds[i];
    indices.set(x.indices.subarray(x.indptr[r], x.indptr[r + 1]), indptr[i]);
    values.set(x.values.subarray(x.indptr[r], x.indptr[r + 1]), indptr[i]);
  }
  return { rows: rowIds.length, cols: x.cols, indptr, indices, values };
}
