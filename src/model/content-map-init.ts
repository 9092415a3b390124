/**
 * Where a content-map model starts (embeddings.ts, strategy 'content-map'): the frozen content rows at unit norm,
 * and the learned map W, b set to the paper's projection (standardize + PCA fitted on the warm items) without its
 * per-row L2 step, scaled so warm rows have mean norm 1. Training then moves W and b away from it.
 */
import { projectContent, type ProjectionState } from '../content/projection.js';

/**
 * The paper's projection of `content` (rows x h, rows 1..numWarm warm) to d dims, fitted on the warm rows, as the
 * linear map x W + b (W: h x d, b: d) that content-map starts from.
 */
export function initialContentMap(
  content: Float32Array,
  h: number,
  numWarm: number,
  d: number,
  options: { standardize: boolean; seed: number },
): { weight: Float32Array; bias: Float32Array } {
  const { state } = projectContent(content, h, numWarm, d, options);
  return projectionAsMap(state, content, numWarm);
}

/** Copy of a rows x dim matrix with unit-norm rows (all-zero rows stay zero). */
export function normalizeRows(vectors: Float32Array, rows: number, dim: number): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += vectors[r * dim + j] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < dim; j++) out[r * dim + j] = vectors[r * dim + j] * inv;
  }
  return out;
}

/**
 * The projection's linear part as x W + b: W[p][k] = s * components[k][p] / scale[p], b[k] = -s * sum_p
 * components[k][p] mean[p] / scale[p], with s chosen so warm rows 1..numWarm have mean norm 1 (the paper's L2
 * normalization, applied on average instead of per row).
 */
function projectionAsMap(
  state: ProjectionState,
  content: Float32Array,
  numWarm: number,
): { weight: Float32Array; bias: Float32Array } {
  const { inputDim: h, outputDim: d, mean, scale, components } = state;
  const w = new Float64Array(h * d);
  const b = new Float64Array(d);
  for (let k = 0; k < d; k++) {
    for (let p = 0; p < h; p++) {
      const v = components[k * h + p] / scale[p];
      w[p * d + k] = v;
      b[k] -= v * mean[p];
    }
  }
  let normSum = 0;
  let counted = 0;
  const y = new Float64Array(d);
  for (let r = 1; r <= numWarm; r++) {
    y.set(b);
    let nonzero = false;
    for (let p = 0; p < h; p++) {
      const x = content[r * h + p];
      if (x === 0) continue;
      nonzero = true;
      for (let k = 0; k < d; k++) y[k] += x * w[p * d + k];
    }
    if (!nonzero) continue;
    let s = 0;
    for (let k = 0; k < d; k++) s += y[k] * y[k];
    normSum += Math.sqrt(s);
    counted++;
  }
  const scaleToUnit = counted > 0 && normSum > 0 ? counted / normSum : 1;
  return {
    weight: Float32Array.from(w, (v) => v * scaleToUnit),
    bias: Float32Array.from(b, (v) => v * scaleToUnit),
  };
}
