/**
 * Content-based KNN (the paper's first baseline): an input's profile is the mean of its items' unit-normalized
 * content vectors, and every item is scored by cosine similarity to that profile. Works on dense vectors of any
 * width (the projected d-dim ones, or the encoder's full high-dimensional output) and on sparse TF-IDF rows, which
 * CONTENT.md shows are the strongest for cold items.
 */
import type { CsrMatrix } from '../content/sparse.js';
import { kernels } from '../kernels/index.js';
import { copyWithRoom, extend, withRoom } from '../util/growable.js';
import type { Recommender } from './types.js';

export interface ContentKnnOptions {
  /** Only the last maxLength input items form the profile. Default: all of them. */
  maxLength?: number;
}

/** Either dense rows (numItems + 1) x dim or sparse rows (numItems + 1) x features; row 0 (padding) is ignored. */
export type ContentRows = { vectors: Float32Array; dim: number } | { sparse: CsrMatrix };

export class ContentKNN implements Recommender {
  readonly numItems: number;
  private readonly maxLength: number;
  private readonly dim: number;
  /** Dense: unit-norm rows (zero rows stay zero). */
  private readonly unit: Float32Array | null = null;
  /** Sparse: unit-norm rows with their column index, for profile-driven scoring. */
  private readonly sparse: SparseCosineRows | null = null;

  constructor(content: ContentRows, options: ContentKnnOptions = {}) {
    this.maxLength = options.maxLength ?? Number.MAX_SAFE_INTEGER;
    if (!(this.maxLength >= 1)) throw new Error(`ContentKNN: maxLength must be >= 1`);
    if ('vectors' in content) {
      const { vectors, dim } = content;
      if (!(dim >= 1) || vectors.length % dim !== 0 || vectors.length < 2 * dim)
        throw new Error(`ContentKNN: ${vectors.length} values are not (numItems + 1) rows of width ${dim}`);
      this.dim = dim;
      this.numItems = vectors.length / dim - 1;
      this.unit = new Float32Array(vectors.length);
      for (let r = 1; r <= this.numItems; r++) {
        let norm = 0;
        for (let j = 0; j < dim; j++) norm += vectors[r * dim + j] ** 2;
        const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
        for (let j = 0; j < dim; j++) this.unit[r * dim + j] = vectors[r * dim + j] * inv;
      }
    } else {
      this.sparse = new SparseCosineRows(content.sparse);
      this.dim = content.sparse.cols;
      this.numItems = content.sparse.rows - 1;
    }
  }

  score(inputs: readonly Int32Array[], out: Float32Array): void {
    const width = this.numItems + 1;
    if (out.length < inputs.length * width)
      throw new Error(`ContentKNN.score: out has ${out.length} values, needs ${inputs.length} x ${width}`);
    if (this.unit) this.scoreDense(inputs, out);
    else this.sparse!.score(inputs, out, this.maxLength);
    for (let b = 0; b < inputs.length; b++) out[b * width] = -Infinity;
  }

  private scoreDense(inputs: readonly Int32Array[], out: Float32Array): void {
    const dim = this.dim;
    const unit = this.unit!;
    const profiles = new Float32Array(inputs.length * dim);
    for (let b = 0; b < inputs.length; b++) {
      const items = lastItems(inputs[b], this.maxLength);
      const profile = profiles.subarray(b * dim, (b + 1) * dim);
      for (const item of items) {
        this.checkItem(item);
        for (let j = 0; j < dim; j++) profile[j] += unit[item * dim + j];
      }
      let norm = 0;
      for (let j = 0; j < dim; j++) norm += profile[j] * profile[j];
      const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
      for (let j = 0; j < dim; j++) profile[j] *= inv;
    }
    // out (batch x (numItems + 1)) = profiles (batch x dim) * unit^T.
    kernels.matmul(out, profiles, unit, inputs.length, this.numItems + 1, dim, false, true, false);
  }

  private checkItem(item: number): void {
    checkItem(item, this.numItems);
  }
}

function lastItems(input: Int32Array, maxLength: number): Int32Array {
  return input.length > maxLength ? input.subarray(input.length - maxLength) : input;
}

function checkItem(item: number, numItems: number): void {
  if (!(item >= 1 && item <= numItems))
    throw new Error(`ContentKNN.score: input item index ${item} is outside 1..${numItems}`);
}

/**
 * Sparse rows scaled to unit norm, with a column index (each column's rows and values) for profile-driven scoring,
 * that grow at the cost of the rows changed (the service's live catalog): rows are slices of pooled entry arrays and
 * columns are lists, all growing by capacity (util/growable.ts). Appending a row adds its entries to the pool and to
 * its columns' lists; re-encoding a row in place adds its new entries the same way and zeroes its old ones in their
 * columns (an entry of 0 adds exactly 0 to a score). Each item's score is the same sum, in the same order, as an
 * index built with the final rows from the start.
 */
export class SparseCosineRows {
  readonly cols: number;
  /** Rows, including the padding row 0. */
  numRows: number;
  private rowStart: Int32Array;
  private rowEnd: Int32Array;
  private indices: Int32Array;
  private values: Float32Array;
  private used: number;
  private readonly colRows: Int32Array[];
  private readonly colValues: Float32Array[];
  private readonly colLength: Int32Array;

  constructor(x: CsrMatrix) {
    if (x.rows < 2) throw new Error(`ContentKNN: the sparse matrix needs numItems + 1 >= 2 rows`);
    this.cols = x.cols;
    this.numRows = x.rows;
    // The row and pool arrays have spare room (util/growable.ts), so the first append does not move them.
    this.rowStart = copyWithRoom(x.indptr.subarray(0, x.rows));
    this.rowEnd = copyWithRoom(x.indptr.subarray(1, x.rows + 1));
    const entriesPerRow = Math.max(1, Math.ceil(x.indptr[x.rows] / x.rows));
    this.indices = copyWithRoom(x.indices.subarray(0, x.indptr[x.rows]), entriesPerRow);
    this.values = withRoom(Float32Array, this.indices.length, entriesPerRow);
    this.used = this.indices.length;
    for (let r = 1; r < x.rows; r++) this.normalize(x.values, r);
    // Columns, excluding the padding row.
    const counts = new Int32Array(x.cols);
    for (let p = x.indptr[1]; p < x.indptr[x.rows]; p++) counts[x.indices[p]]++;
    this.colRows = Array.from(counts, (n) => new Int32Array(n));
    this.colValues = Array.from(counts, (n) => new Float32Array(n));
    this.colLength = new Int32Array(x.cols);
    for (let r = 1; r < x.rows; r++) this.addToColumns(r);
  }

  /** values[p] of row r, scaled to unit norm, into the pool (at the row's slice). */
  private normalize(source: Float32Array, r: number): void {
    let norm = 0;
    for (let p = this.rowStart[r]; p < this.rowEnd[r]; p++) norm += source[p] ** 2;
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let p = this.rowStart[r]; p < this.rowEnd[r]; p++) this.values[p] = source[p] * inv;
  }

  private addToColumns(r: number): void {
    for (let p = this.rowStart[r]; p < this.rowEnd[r]; p++) {
      const c = this.indices[p];
      const at = this.colLength[c]++;
      if (at === this.colRows[c].length) {
        this.colRows[c] = extend(this.colRows[c], at + 1);
        this.colValues[c] = extend(this.colValues[c], at + 1);
      }
      this.colRows[c][at] = r;
      this.colValues[c][at] = this.values[p];
    }
  }

  /** Puts row `from` of x into the pool as row r's entries (normalized) and into its columns. */
  private place(r: number, x: CsrMatrix, from: number): void {
    if (x.cols !== this.cols)
      throw new Error(`sparse rows: the new rows have ${x.cols} columns, the index ${this.cols}`);
    const start = x.indptr[from];
    const count = x.indptr[from + 1] - start;
    this.indices = extend(this.indices, this.used + count);
    this.values = extend(this.values, this.used + count);
    this.indices.set(x.indices.subarray(start, start + count), this.used);
    this.values.set(x.values.subarray(start, start + count), this.used);
    this.rowStart[r] = this.used;
    this.rowEnd[r] = this.used + count;
    this.used += count;
    this.normalize(this.values, r);
    this.addToColumns(r);
  }

  /** Appends the rows of x (same columns) after the existing ones. */
  appendRows(x: CsrMatrix): void {
    const first = this.numRows;
    this.numRows += x.rows;
    this.rowStart = extend(this.rowStart, this.numRows);
    this.rowEnd = extend(this.rowEnd, this.numRows);
    for (let i = 0; i < x.rows; i++) this.place(first + i, x, i);
  }

  /** Re-encodes existing rows in place: rows[i] gets row i of x. */
  replaceRows(rows: Int32Array, x: CsrMatrix): void {
    rows.forEach((r, i) => {
      if (!(r >= 1 && r < this.numRows)) throw new Error(`sparse rows: row ${r} does not exist`);
      for (let p = this.rowStart[r]; p < this.rowEnd[r]; p++) {
        const c = this.indices[p];
        const at = this.colRows[c].subarray(0, this.colLength[c]).lastIndexOf(r);
        this.colValues[c][at] = 0; // a stale entry: adds 0
      }
      this.place(r, x, i);
    });
  }

  /**
   * out (inputs.length x numRows) = cosine of each input's profile (the normalized sum of its last maxLength
   * items' rows) with every row; column 0 is left for the caller.
   */
  score(inputs: readonly Int32Array[], out: Float32Array, maxLength: number): void {
    const width = this.numRows;
    const profile = new Float64Array(this.cols);
    const isTouched = new Uint8Array(this.cols);
    const touched: number[] = [];
    for (let b = 0; b < inputs.length; b++) {
      const row = out.subarray(b * width, (b + 1) * width);
      row.fill(0);
      touched.length = 0;
      for (const item of lastItems(inputs[b], maxLength)) {
        checkItem(item, this.numRows - 1);
        for (let p = this.rowStart[item]; p < this.rowEnd[item]; p++) {
          const c = this.indices[p];
          if (!isTouched[c]) {
            isTouched[c] = 1;
            touched.push(c);
          }
          profile[c] += this.values[p];
        }
      }
      let norm = 0;
      for (const c of touched) norm += profile[c] * profile[c];
      const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
      for (const c of touched) {
        const w = profile[c] * inv;
        profile[c] = 0;
        isTouched[c] = 0;
        const rows = this.colRows[c];
        const values = this.colValues[c];
        for (let p = 0, n = this.colLength[c]; p < n; p++) row[rows[p]] += w * values[p];
      }
    }
  }
}
