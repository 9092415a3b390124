/**
 * Content-based KNN (the paper's first baseline): an input's profile is the mean of its items' unit-normalized
 * content vectors, and every item is scored by cosine similarity to that profile. Works on dense vectors of any
 * width (the projected d-dim ones, or the encoder's full high-dimensional output) and on sparse TF-IDF rows, which
 * CONTENT.md shows are the strongest for cold items.
 */
import type { CsrMatrix } from '../content/sparse.js';
import { kernels } from '../kernels/index.js';
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
  /** Sparse: unit-norm rows (CSR) and the same matrix by columns (CSC) for profile-driven scoring. */
  private readonly rows: CsrMatrix | null = null;
  private readonly colPtr: Int32Array | null = null;
  private readonly colRows: Int32Array | null = null;
  private readonly colValues: Float32Array | null = null;

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
      const x = content.sparse;
      if (x.rows < 2) throw new Error(`ContentKNN: the sparse matrix needs numItems + 1 >= 2 rows`);
      this.dim = x.cols;
      this.numItems = x.rows - 1;
      const values = new Float32Array(x.values.length);
      for (let r = 1; r < x.rows; r++) {
        let norm = 0;
        for (let p = x.indptr[r]; p < x.indptr[r + 1]; p++) norm += x.values[p] ** 2;
        const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
        for (let p = x.indptr[r]; p < x.indptr[r + 1]; p++) values[p] = x.values[p] * inv;
      }
      this.rows = { ...x, values };
      // Column-major copy, excluding the padding row.
      const colPtr = new Int32Array(x.cols + 1);
      for (let p = x.indptr[1]; p < x.indptr[x.rows]; p++) colPtr[x.indices[p] + 1]++;
      for (let c = 0; c < x.cols; c++) colPtr[c + 1] += colPtr[c];
      const fill = colPtr.slice(0, x.cols);
      const colRows = new Int32Array(colPtr[x.cols]);
      const colValues = new Float32Array(colPtr[x.cols]);
      for (let r = 1; r < x.rows; r++) {
        for (let p = x.indptr[r]; p < x.indptr[r + 1]; p++) {
          const at = fill[x.indices[p]]++;
          colRows[at] = r;
          colValues[at] = values[p];
        }
      }
      this.colPtr = colPtr;
      this.colRows = colRows;
      this.colValues = colValues;
    }
  }

  score(inputs: readonly Int32Array[], out: Float32Array): void {
    const width = this.numItems + 1;
    if (out.length < inputs.length * width)
      throw new Error(`ContentKNN.score: out has ${out.length} values, needs ${inputs.length} x ${width}`);
    if (this.unit) this.scoreDense(inputs, out);
    else this.scoreSparse(inputs, out);
    for (let b = 0; b < inputs.length; b++) out[b * width] = -Infinity;
  }

  private lastItems(input: Int32Array): Int32Array {
    return input.length > this.maxLength ? input.subarray(input.length - this.maxLength) : input;
  }

  private scoreDense(inputs: readonly Int32Array[], out: Float32Array): void {
    const dim = this.dim;
    const unit = this.unit!;
    const profiles = new Float32Array(inputs.length * dim);
    for (let b = 0; b < inputs.length; b++) {
      const items = this.lastItems(inputs[b]);
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

  private scoreSparse(inputs: readonly Int32Array[], out: Float32Array): void {
    const x = this.rows!;
    const colPtr = this.colPtr!;
    const colRows = this.colRows!;
    const colValues = this.colValues!;
    const width = this.numItems + 1;
    const profile = new Float64Array(this.dim);
    const isTouched = new Uint8Array(this.dim);
    const touched: number[] = [];
    for (let b = 0; b < inputs.length; b++) {
      const row = out.subarray(b * width, (b + 1) * width);
      row.fill(0);
      touched.length = 0;
      for (const item of this.lastItems(inputs[b])) {
        this.checkItem(item);
        for (let p = x.indptr[item]; p < x.indptr[item + 1]; p++) {
          const c = x.indices[p];
          if (!isTouched[c]) {
            isTouched[c] = 1;
            touched.push(c);
          }
          profile[c] += x.values[p];
        }
      }
      let norm = 0;
      for (const c of touched) norm += profile[c] * profile[c];
      const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
      for (const c of touched) {
        const w = profile[c] * inv;
        profile[c] = 0;
        isTouched[c] = 0;
        for (let p = colPtr[c]; p < colPtr[c + 1]; p++) row[colRows[p]] += w * colValues[p];
      }
    }
  }

  private checkItem(item: number): void {
    if (!(item >= 1 && item <= this.numItems))
      throw new Error(`ContentKNN.score: input item index ${item} is outside 1..${this.numItems}`);
  }
}
