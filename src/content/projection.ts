/**
 * The paper's content projection: per-component standardization (optional, on by default), PCA to the model
 * dimension d, L2 normalization. Fitted on warm items only, saved, and applied unchanged to any item later.
 *
 * PCA is the exact eigendecomposition of the (dim x dim) covariance in float64 up to EXACT_MAX_DIM input
 * components, and a seeded randomized SVD of the centered data above that. All-zero input rows (items without
 * content) are left out of the fit and stay zero in the output.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { productNT, randomizedSvd, symmetricEigen, transpose, type LinearOperator } from './linalg.js';
import { writeAtomic } from './tfidf.js';

export interface ProjectionOptions {
  /** Divide each centered component by its standard deviation before PCA (the paper's scaler). Default true. */
  standardize?: boolean;
  /** Seed of the randomized SVD. */
  seed?: number;
  /** 'exact' eigendecomposition of the covariance, 'randomized' SVD of the centered data, or 'auto' (default:
   * exact up to EXACT_MAX_DIM input components). */
  method?: 'auto' | 'exact' | 'randomized';
}

export interface ProjectionState {
  inputDim: number;
  outputDim: number;
  standardize: boolean;
  /** Per input component (length inputDim). scale is the standard deviation, or 1 without standardization. */
  mean: Float64Array;
  scale: Float64Array;
  /** outputDim x inputDim, row k is principal axis k. */
  components: Float64Array;
  /** Variance along each principal axis (sample variance, n - 1). */
  explainedVariance: Float64Array;
  /** explainedVariance / total variance of the (standardized) input. */
  explainedVarianceRatio: Float64Array;
  fittedRows: number;
}

export const EXACT_MAX_DIM = 2048;

function isZeroRow(vectors: Float32Array, row: number, dim: number): boolean {
  for (let j = 0; j < dim; j++) if (vectors[row * dim + j] !== 0) return false;
  return true;
}

/**
 * Fits the projection on the listed rows of vectors (rows x dim, row-major), e.g. the warm item rows 1..numWarm of
 * an aligned content matrix. d must not exceed dim or the number of fitted rows.
 */
export function fitProjection(
  vectors: Float32Array,
  rows: number,
  dim: number,
  warmRows: ArrayLike<number>,
  d: number,
  options: ProjectionOptions = {},
): ProjectionState {
  const standardize = options.standardize ?? true;
  if (vectors.length !== rows * dim)
    throw new Error(`fitProjection: ${vectors.length} values are not ${rows} x ${dim}`);
  const fitted: number[] = [];
  for (let i = 0; i < warmRows.length; i++) {
    const r = warmRows[i];
    if (!(Number.isInteger(r) && r >= 0 && r < rows))
      throw new Error(`fitProjection: row ${r} is outside 0..${rows - 1}`);
    if (!isZeroRow(vectors, r, dim)) fitted.push(r);
  }
  const n = fitted.length;
  if (!(Number.isInteger(d) && d >= 1 && d <= dim))
    throw new Error(`fitProjection: output dimension ${d} must be in 1..${dim} (the input dimension)`);
  if (n < 2 || d > n)
    throw new Error(`fitProjection: ${n} non-zero rows to fit on; need at least max(2, d = ${d})`);

  const mean = new Float64Array(dim);
  for (const r of fitted) for (let j = 0; j < dim; j++) mean[j] += vectors[r * dim + j];
  for (let j = 0; j < dim; j++) mean[j] /= n;
  const scale = new Float64Array(dim).fill(1);
  if (standardize) {
    const variance = new Float64Array(dim);
    for (const r of fitted)
      for (let j = 0; j < dim; j++) variance[j] += (vectors[r * dim + j] - mean[j]) ** 2;
    for (let j = 0; j < dim; j++) {
      const std = Math.sqrt(variance[j] / n); // population std, like scikit-learn's StandardScaler
      scale[j] = std > 0 ? std : 1;
    }
  }
  // Zt (dim x n): standardized fitted rows, transposed so covariance entries are contiguous dot products.
  const zt = new Float64Array(dim * n);
  for (let i = 0; i < n; i++) {
    const r = fitted[i];
    for (let j = 0; j < dim; j++) zt[j * n + i] = (vectors[r * dim + j] - mean[j]) / scale[j];
  }
  let totalVariance = 0;
  for (let k = 0; k < dim * n; k++) totalVariance += zt[k] * zt[k];
  totalVariance /= n - 1;

  const components = new Float64Array(d * dim);
  const explainedVariance = new Float64Array(d);
  const method = options.method ?? 'auto';
  if (method === 'exact' || (method === 'auto' && dim <= EXACT_MAX_DIM)) {
    const covariance = productNT(zt, zt, dim, dim, n, true);
    for (let k = 0; k < covariance.length; k++) covariance[k] /= n - 1;
    const eig = symmetricEigen(covariance, dim);
    components.set(eig.vectors.subarray(0, d * dim));
    for (let k = 0; k < d; k++) explainedVariance[k] = Math.max(eig.values[k], 0);
  } else {
    const z = transpose(zt, dim, n); // n x dim
    const svd = randomizedSvd(denseOperator(z, n, dim), d, { seed: options.seed ?? 0, powerIterations: 3 });
    for (let k = 0; k < d; k++) {
      explainedVariance[k] = (svd.values[k] * svd.values[k]) / (n - 1);
      for (let j = 0; j < dim; j++) components[k * dim + j] = svd.right[j * d + k];
    }
  }
  const explainedVarianceRatio = explainedVariance.map((v) => (totalVariance > 0 ? v / totalVariance : 0));
  return {
    inputDim: dim,
    outputDim: d,
    standardize,
    mean,
    scale,
    components,
    explainedVariance,
    explainedVarianceRatio,
    fittedRows: n,
  };
}

/** rows x state.inputDim -> rows x state.outputDim, unit-norm rows; all-zero input rows stay zero. */
export function applyProjection(state: ProjectionState, vectors: Float32Array): Float32Array {
  const { inputDim: dim, outputDim: d, mean, scale, components } = state;
  if (vectors.length % dim !== 0)
    throw new Error(`applyProjection: ${vectors.length} values are not rows of width ${dim}`);
  const rows = vectors.length / dim;
  const out = new Float32Array(rows * d);
  const z = new Float64Array(dim);
  const y = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    if (isZeroRow(vectors, r, dim)) continue;
    for (let j = 0; j < dim; j++) z[j] = (vectors[r * dim + j] - mean[j]) / scale[j];
    let norm = 0;
    for (let k = 0; k < d; k++) {
      let s = 0;
      const c = k * dim;
      for (let j = 0; j < dim; j++) s += components[c + j] * z[j];
      y[k] = s;
      norm += s * s;
    }
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let k = 0; k < d; k++) out[r * d + k] = y[k] * inv;
  }
  return out;
}

/**
 * Projects an aligned content matrix ((numItems + 1) x dim, row 0 padding) to d: fitted on warm rows 1..numWarm,
 * applied to every row. Row 0 stays zero.
 */
export function projectContent(
  aligned: Float32Array,
  dim: number,
  numWarm: number,
  d: number,
  options: ProjectionOptions = {},
): { vectors: Float32Array; state: ProjectionState } {
  const rows = aligned.length / dim;
  const warm = Int32Array.from({ length: numWarm }, (_, i) => i + 1);
  const state = fitProjection(aligned, rows, dim, warm, d, options);
  const vectors = applyProjection(state, aligned);
  vectors.fill(0, 0, d);
  return { vectors, state };
}

function denseOperator(x: Float64Array, rows: number, cols: number): LinearOperator {
  return {
    rows,
    cols,
    multiply(b, w, out) {
      out.fill(0);
      for (let i = 0; i < rows; i++)
        for (let p = 0; p < cols; p++) {
          const v = x[i * cols + p];
          for (let j = 0; j < w; j++) out[i * w + j] += v * b[p * w + j];
        }
    },
    multiplyTransposed(y, w, out) {
      out.fill(0);
      for (let i = 0; i < rows; i++)
        for (let p = 0; p < cols; p++) {
          const v = x[i * cols + p];
          for (let j = 0; j < w; j++) out[p * w + j] += v * y[i * w + j];
        }
    },
  };
}

const STATE_FILE = 'projection.json';
const DATA_FILE = 'projection.f64';

/** Saves into dir: projection.json (sizes, explained variance) and projection.f64 (mean, scale, components). */
export async function saveProjection(dir: string, state: ProjectionState): Promise<void> {
  await mkdir(dir, { recursive: true });
  const { inputDim, outputDim } = state;
  const data = new Float64Array(2 * inputDim + outputDim * inputDim);
  data.set(state.mean, 0);
  data.set(state.scale, inputDim);
  data.set(state.components, 2 * inputDim);
  await writeAtomic(join(dir, DATA_FILE), new Uint8Array(data.buffer));
  const meta = {
    format: 'deltarec-projection',
    version: 1,
    inputDim,
    outputDim,
    standardize: state.standardize,
    fittedRows: state.fittedRows,
    explainedVariance: Array.from(state.explainedVariance),
    explainedVarianceRatio: Array.from(state.explainedVarianceRatio),
    explainedVarianceTotal: state.explainedVarianceRatio.reduce((a, b) => a + b, 0),
    data: DATA_FILE,
  };
  await writeAtomic(join(dir, STATE_FILE), JSON.stringify(meta, null, 1) + '\n');
}

export async function loadProjection(dir: string): Promise<ProjectionState> {
  const path = join(dir, STATE_FILE);
  const meta = JSON.parse(await readFile(path, 'utf8'));
  if (meta.format !== 'deltarec-projection') throw new Error(`${path}: not a deltarec projection state`);
  const { inputDim, outputDim } = meta;
  const bytes = await readFile(join(dir, DATA_FILE));
  const expected = (2 * inputDim + outputDim * inputDim) * 8;
  if (bytes.byteLength !== expected)
    throw new Error(`${join(dir, DATA_FILE)}: expected ${expected} bytes, found ${bytes.byteLength}`);
  const data = new Float64Array(bytes.byteLength / 8);
  new Uint8Array(data.buffer).set(bytes);
  return {
    inputDim,
    outputDim,
    standardize: meta.standardize,
    mean: data.slice(0, inputDim),
    scale: data.slice(inputDim, 2 * inputDim),
    components: data.slice(2 * inputDim),
    explainedVariance: Float64Array.from(meta.explainedVariance),
    explainedVarianceRatio: Float64Array.from(meta.explainedVarianceRatio),
    fittedRows: meta.fittedRows,
  };
}
