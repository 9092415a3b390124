/**
 * Plain TypeScript kernels: the test oracle for the native addon and the fallback when it is not built.
 * Loops accumulate in float64 (JS numbers) and round once when storing, so they are slightly more accurate than the
 * native float32 kernels; that is what the comparison tests rely on.
 */
import { PANEL_WIDTH } from './panels.js';
import { quantizeItemsReference, scanQuantizedReference, scoreTopKQuantizedReference } from './quantized.js';
import { insertTopK, padTopK } from './topk-list.js';
import type { Kernels } from './types.js';

/** Rows of the output layer processed together: scratch is CE_CHUNK x numItems floats. */
const CE_CHUNK = 64;
const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

let scratch64 = new Float64Array(0);
let scratch32 = new Float32Array(0);
function f64(n: number): Float64Array {
  if (scratch64.length < n) scratch64 = new Float64Array(n);
  return scratch64;
}
function f32(n: number): Float32Array {
  if (scratch32.length < n) scratch32 = new Float32Array(n);
  return scratch32;
}

/**
 * Counter-based dropout hash of (seed, index) -> uint32 (murmur3 finalizer of a Weyl step). The native addon
 * implements the same function bit for bit; element i is kept when (hash >>> 8) / 2^24 >= p.
 */
export function dropoutHash(seed: number, index: number): number {
  let s = (seed >>> 0) ^ 0x5bd1e995;
  s ^= s >>> 16;
  s = Math.imul(s, 0x85ebca6b);
  s ^= s >>> 13;
  s = Math.imul(s, 0xc2b2ae35);
  s ^= s >>> 16;
  let x = (Math.imul(index >>> 0, 0x9e3779b1) + s) | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

function matmul(
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  accumulate: boolean,
): void {
  if (transB) {
    // out[i][j] = sum_p A(i,p) * b[j][p]: contiguous dot products along p.
    const rowA = f64(k);
    for (let i = 0; i < m; i++) {
      for (let p = 0; p < k; p++) rowA[p] = transA ? a[p * m + i] : a[i * k + p];
      for (let j = 0; j < n; j++) {
        const bj = j * k;
        let s = 0;
        for (let p = 0; p < k; p++) s += rowA[p] * b[bj + p];
        const o = i * n + j;
        out[o] = accumulate ? out[o] + s : s;
      }
    }
    return;
  }
  // out[i][:] = sum_p A(i,p) * b[p][:]: axpy over contiguous rows of b into a float64 row.
  const acc = f64(n);
  for (let i = 0; i < m; i++) {
    acc.fill(0, 0, n);
    for (let p = 0; p < k; p++) {
      const aip = transA ? a[p * m + i] : a[i * k + p];
      if (aip === 0) continue;
      const bp = p * n;
      for (let j = 0; j < n; j++) acc[j] += aip * b[bp + j];
    }
    const o = i * n;
    if (accumulate) for (let j = 0; j < n; j++) out[o + j] += acc[j];
    else for (let j = 0; j < n; j++) out[o + j] = acc[j];
  }
}

function softmaxCrossEntropy(
  hidden: Float32Array,
  items: Float32Array,
  targets: Int32Array,
  rows: number,
  d: number,
  numItems: number,
  scale: number,
  dHidden: Float32Array,
  dItems: Float32Array,
): number {
  const logits = f32(CE_CHUNK * numItems);
  const acc = f64(d);
  let total = 0;
  for (let r0 = 0; r0 < rows; r0 += CE_CHUNK) {
    const chunk = Math.min(CE_CHUNK, rows - r0);
    for (let c = 0; c < chunk; c++) {
      const r = r0 + c;
      const target = targets[r];
      if (target < 1 || target >= numItems) {
        throw new RangeError(
          `softmaxCrossEntropy: target ${target} of row ${r} is outside 1..${numItems - 1}`,
        );
      }
      const h = r * d;
      const lrow = c * numItems;
      let max = -Infinity;
      for (let j = 1; j < numItems; j++) {
        const e = j * d;
        let s = 0;
        for (let p = 0; p < d; p++) s += hidden[h + p] * items[e + p];
        logits[lrow + j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 1; j < numItems; j++) sum += Math.exp(logits[lrow + j] - max);
      const lse = max + Math.log(sum);
      total += lse - logits[lrow + target];
      // dlogits = scale * (softmax - onehot), stored in place of the logits; column 0 gets no gradient.
      logits[lrow] = 0;
      for (let j = 1; j < numItems; j++) {
        const p = Math.exp(logits[lrow + j] - lse);
        logits[lrow + j] = scale * (j === target ? p - 1 : p);
      }
      // dHidden[r] = dlogits[r] * items.
      acc.fill(0, 0, d);
      for (let j = 1; j < numItems; j++) {
        const g = logits[lrow + j];
        const e = j * d;
        for (let p = 0; p < d; p++) acc[p] += g * items[e + p];
      }
      for (let p = 0; p < d; p++) dHidden[h + p] = acc[p];
    }
    // dItems[j] += sum_c dlogits[c][j] * hidden[r0 + c].
    for (let j = 1; j < numItems; j++) {
      acc.fill(0, 0, d);
      for (let c = 0; c < chunk; c++) {
        const g = logits[c * numItems + j];
        const h = (r0 + c) * d;
        for (let p = 0; p < d; p++) acc[p] += g * hidden[h + p];
      }
      const e = j * d;
      for (let p = 0; p < d; p++) dItems[e + p] += acc[p];
    }
  }
  return total;
}

/** log(1 + e^x) without overflow or loss of precision for large |x|. */
export function softplus(x: number): number {
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

/** 1 / (1 + e^-x), evaluated so that exp never overflows. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

function sampledLoss(
  hidden: Float32Array,
  positives: Float32Array,
  negatives: Float32Array,
  targets: Int32Array,
  negativeIds: Int32Array,
  correction: Float32Array,
  rows: number,
  d: number,
  k: number,
  gbce: boolean,
  beta: number,
  bias: number,
  scale: number,
  dHidden: Float32Array,
  dPositives: Float32Array,
  dNegatives: Float32Array,
  dBias: Float32Array,
): number {
  const logits = new Float64Array(k);
  let biasGrad = 0;
  const grads = new Float64Array(k);
  const dNeg = new Float64Array(k * d);
  const acc = new Float64Array(d);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const h = r * d;
    const target = targets[r];
    let pos = bias;
    for (let p = 0; p < d; p++) pos += hidden[h + p] * positives[h + p];
    for (let j = 0; j < k; j++) {
      let s = bias;
      for (let p = 0; p < d; p++) s += hidden[h + p] * negatives[j * d + p];
      logits[j] = s - correction[j];
    }
    let gPos: number;
    if (gbce) {
      let loss = beta * softplus(-pos);
      gPos = -scale * beta * sigmoid(-pos);
      for (let j = 0; j < k; j++) {
        if (negativeIds[j] === target) {
          grads[j] = 0;
          continue;
        }
        loss += softplus(logits[j]);
        grads[j] = scale * sigmoid(logits[j]);
      }
      total += loss;
    } else {
      let max = pos;
      for (let j = 0; j < k; j++) if (negativeIds[j] !== target && logits[j] > max) max = logits[j];
      let sum = Math.exp(pos - max);
      for (let j = 0; j < k; j++) if (negativeIds[j] !== target) sum += Math.exp(logits[j] - max);
      const lse = max + Math.log(sum);
      total += lse - pos;
      gPos = scale * (Math.exp(pos - lse) - 1);
      for (let j = 0; j < k; j++)
        grads[j] = negativeIds[j] === target ? 0 : scale * Math.exp(logits[j] - lse);
    }
    biasGrad += gPos;
    for (let p = 0; p < d; p++) acc[p] = gPos * positives[h + p];
    for (let j = 0; j < k; j++) {
      const g = grads[j];
      if (g === 0) continue;
      biasGrad += g;
      const o = j * d;
      for (let p = 0; p < d; p++) {
        acc[p] += g * negatives[o + p];
        dNeg[o + p] += g * hidden[h + p];
      }
    }
    for (let p = 0; p < d; p++) {
      dHidden[h + p] = acc[p];
      dPositives[h + p] = gPos * hidden[h + p];
    }
  }
  for (let i = 0; i < k * d; i++) dNegatives[i] = dNeg[i];
  dBias[0] = biasGrad;
  return total;
}

function sampledLossGrouped(
  hidden: Float32Array,
  positives: Float32Array,
  negatives: Float32Array,
  targets: Int32Array,
  negativeIds: Int32Array,
  correction: Float32Array,
  groupStarts: Int32Array,
  groups: number,
  d: number,
  k: number,
  gbce: boolean,
  beta: number,
  bias: number,
  scale: number,
  dHidden: Float32Array,
  dPositives: Float32Array,
  dNegatives: Float32Array,
  dBias: Float32Array,
): number {
  if (groupStarts[0] !== 0) throw new RangeError('sampledLossGrouped: groupStarts[0] must be 0');
  const groupBias = new Float32Array(1);
  let total = 0;
  let biasGrad = 0;
  for (let g = 0; g < groups; g++) {
    const r0 = groupStarts[g];
    const r1 = groupStarts[g + 1];
    if (r1 < r0) throw new RangeError(`sampledLossGrouped: groupStarts decreases at group ${g}`);
    const rows = (a: Float32Array) => a.subarray(r0 * d, r1 * d);
    const negs = (a: Float32Array) => a.subarray(g * k * d, (g + 1) * k * d);
    total += sampledLoss(
      rows(hidden),
      rows(positives),
      negs(negatives),
      targets.subarray(r0, r1),
      negativeIds.subarray(g * k, (g + 1) * k),
      correction.subarray(g * k, (g + 1) * k),
      r1 - r0,
      d,
      k,
      gbce,
      beta,
      bias,
      scale,
      rows(dHidden),
      rows(dPositives),
      negs(dNegatives),
      groupBias,
    );
    biasGrad += groupBias[0];
  }
  dBias[0] = biasGrad;
  return total;
}

function layerNormForward(
  out: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  x: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  rows: number,
  d: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let s = 0;
    for (let p = 0; p < d; p++) s += x[o + p];
    const mu = s / d;
    let v = 0;
    for (let p = 0; p < d; p++) {
      const c = x[o + p] - mu;
      v += c * c;
    }
    const rs = 1 / Math.sqrt(v / d + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let p = 0; p < d; p++) out[o + p] = (x[o + p] - mu) * rs * gamma[p] + beta[p];
  }
}

function layerNormBackward(
  dx: Float32Array,
  dGamma: Float32Array,
  dBeta: Float32Array,
  dOut: Float32Array,
  x: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  gamma: Float32Array,
  rows: number,
  d: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    const mu = mean[r];
    const rs = rstd[r];
    let sumG = 0;
    let sumGX = 0;
    for (let p = 0; p < d; p++) {
      const g = dOut[o + p] * gamma[p];
      const xhat = (x[o + p] - mu) * rs;
      sumG += g;
      sumGX += g * xhat;
      dGamma[p] += dOut[o + p] * xhat;
      dBeta[p] += dOut[o + p];
    }
    const meanG = sumG / d;
    const meanGX = sumGX / d;
    for (let p = 0; p < d; p++) {
      const xhat = (x[o + p] - mu) * rs;
      dx[o + p] += rs * (dOut[o + p] * gamma[p] - meanG - xhat * meanGX);
    }
  }
}

function attentionForward(
  out: Float32Array,
  att: Float32Array,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  lengths: Int32Array,
  batch: number,
  T: number,
  heads: number,
  d: number,
): void {
  const dh = d / heads;
  if (!Number.isInteger(dh)) throw new RangeError(`attention: d = ${d} is not divisible by heads = ${heads}`);
  const scale = 1 / Math.sqrt(dh);
  const acc = f64(dh);
  out.fill(0, 0, batch * T * d);
  att.fill(0, 0, batch * heads * T * T);
  for (let b = 0; b < batch; b++) {
    const start = T - Math.min(Math.max(lengths[b], 0), T);
    for (let h = 0; h < heads; h++) {
      const off = h * dh;
      const attBase = (b * heads + h) * T * T;
      for (let t = start; t < T; t++) {
        const qo = (b * T + t) * d + off;
        const arow = attBase + t * T;
        let max = -Infinity;
        for (let j = start; j <= t; j++) {
          const ko = (b * T + j) * d + off;
          let s = 0;
          for (let p = 0; p < dh; p++) s += q[qo + p] * k[ko + p];
          s *= scale;
          att[arow + j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = start; j <= t; j++) sum += Math.exp(att[arow + j] - max);
        acc.fill(0, 0, dh);
        for (let j = start; j <= t; j++) {
          const pj = Math.exp(att[arow + j] - max) / sum;
          att[arow + j] = pj;
          const vo = (b * T + j) * d + off;
          for (let p = 0; p < dh; p++) acc[p] += pj * v[vo + p];
        }
        for (let p = 0; p < dh; p++) out[qo + p] = acc[p];
      }
    }
  }
}

function attentionBackward(
  dq: Float32Array,
  dk: Float32Array,
  dv: Float32Array,
  dOut: Float32Array,
  att: Float32Array,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  lengths: Int32Array,
  batch: number,
  T: number,
  heads: number,
  d: number,
): void {
  const dh = d / heads;
  const scale = 1 / Math.sqrt(dh);
  const dp = f64(T);
  const size = batch * T * d;
  dq.fill(0, 0, size);
  dk.fill(0, 0, size);
  dv.fill(0, 0, size);
  for (let b = 0; b < batch; b++) {
    const start = T - Math.min(Math.max(lengths[b], 0), T);
    for (let h = 0; h < heads; h++) {
      const off = h * dh;
      const attBase = (b * heads + h) * T * T;
      for (let t = start; t < T; t++) {
        const qo = (b * T + t) * d + off;
        const arow = attBase + t * T;
        // dP[j] = dOut_t . v_j; dv_j += P[j] dOut_t.
        let dot = 0;
        for (let j = start; j <= t; j++) {
          const vo = (b * T + j) * d + off;
          const pj = att[arow + j];
          let s = 0;
          for (let p = 0; p < dh; p++) {
            s += dOut[qo + p] * v[vo + p];
            dv[vo + p] += pj * dOut[qo + p];
          }
          dp[j] = s;
          dot += pj * s;
        }
        // dS[j] = P[j] (dP[j] - sum P dP); scores were scale * q.k.
        for (let j = start; j <= t; j++) {
          const ds = att[arow + j] * (dp[j] - dot) * scale;
          if (ds === 0) continue;
          const ko = (b * T + j) * d + off;
          for (let p = 0; p < dh; p++) {
            dq[qo + p] += ds * k[ko + p];
            dk[ko + p] += ds * q[qo + p];
          }
        }
      }
    }
  }
}

function reluForward(out: Float32Array, x: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = x[i] > 0 ? x[i] : 0;
}
function reluBackward(dx: Float32Array, dOut: Float32Array, x: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) if (x[i] > 0) dx[i] += dOut[i];
}
/** GELU, tanh approximation (as GPT-2 and torch's `approximate='tanh'`). */
function geluForward(out: Float32Array, x: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const xi = x[i];
    out[i] = 0.5 * xi * (1 + Math.tanh(GELU_C * (xi + GELU_A * xi * xi * xi)));
  }
}
function geluBackward(dx: Float32Array, dOut: Float32Array, x: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const xi = x[i];
    const t = Math.tanh(GELU_C * (xi + GELU_A * xi * xi * xi));
    const grad = 0.5 * (1 + t) + 0.5 * xi * (1 - t * t) * GELU_C * (1 + 3 * GELU_A * xi * xi);
    dx[i] += dOut[i] * grad;
  }
}

function dropoutForward(
  out: Float32Array,
  mask: Uint8Array,
  x: Float32Array,
  n: number,
  p: number,
  seed: number,
): void {
  if (!(p >= 0 && p < 1)) throw new RangeError(`dropout: p = ${p} must be in [0, 1)`);
  const keepScale = Math.fround(1 / (1 - p));
  for (let i = 0; i < n; i++) {
    const keep = (dropoutHash(seed, i) >>> 8) / 16777216 >= p;
    mask[i] = keep ? 1 : 0;
    out[i] = keep ? x[i] * keepScale : 0;
  }
}
function dropoutBackward(dx: Float32Array, dOut: Float32Array, mask: Uint8Array, n: number, p: number): void {
  const keepScale = Math.fround(1 / (1 - p));
  for (let i = 0; i < n; i++) dx[i] = mask[i] ? dOut[i] * keepScale : 0;
}

function gather(out: Float32Array, table: Float32Array, indices: Int32Array, rows: number, d: number): void {
  for (let r = 0; r < rows; r++) {
    const src = indices[r] * d;
    out.set(table.subarray(src, src + d), r * d);
  }
}
function scatterAdd(
  dTable: Float32Array,
  dOut: Float32Array,
  indices: Int32Array,
  rows: number,
  d: number,
): void {
  for (let r = 0; r < rows; r++) {
    const dst = indices[r] * d;
    const src = r * d;
    for (let p = 0; p < d; p++) dTable[dst + p] += dOut[src + p];
  }
}

function adamStep(
  param: Float32Array,
  grad: Float32Array,
  m: Float32Array,
  v: Float32Array,
  n: number,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  step: number,
  weightDecay: number,
): void {
  const c1 = 1 / (1 - Math.pow(beta1, step));
  const c2 = 1 / (1 - Math.pow(beta2, step));
  const decay = 1 - lr * weightDecay;
  for (let i = 0; i < n; i++) {
    const g = grad[i];
    const mi = beta1 * m[i] + (1 - beta1) * g;
    const vi = beta2 * v[i] + (1 - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - (lr * (mi * c1)) / (Math.sqrt(vi * c2) + eps);
  }
}

function sparseAdamStep(
  param: Float32Array,
  grad: Float32Array,
  m: Float32Array,
  v: Float32Array,
  rows: Int32Array,
  count: number,
  d: number,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  step: number,
  weightDecay: number,
  maxNorm: number,
): void {
  for (let u = 0; u < count; u++) {
    const o = rows[u] * d;
    adamStep(
      param.subarray(o, o + d),
      grad.subarray(u * d, (u + 1) * d),
      m.subarray(o, o + d),
      v.subarray(o, o + d),
      d,
      lr,
      beta1,
      beta2,
      eps,
      step,
      weightDecay,
    );
    if (maxNorm > 0) clipRowNorms(param.subarray(o, o + d), 1, d, maxNorm, 0);
  }
}

function clipRowNorms(x: Float32Array, rows: number, d: number, maxNorm: number, firstRow: number): void {
  for (let r = firstRow; r < rows; r++) {
    const o = r * d;
    let s = 0;
    for (let p = 0; p < d; p++) s += x[o + p] * x[o + p];
    const norm = Math.sqrt(s);
    if (norm > maxNorm) {
      const f = maxNorm / norm;
      for (let p = 0; p < d; p++) x[o + p] *= f;
    }
  }
}

function topK(
  outIndices: Int32Array,
  outScores: Float32Array,
  scores: Float32Array,
  rows: number,
  n: number,
  k: number,
): void {
  if (k <= 0) return;
  for (let r = 0; r < rows; r++) {
    const oi = r * k;
    let count = 0;
    for (let j = 0; j < n; j++) count = insertTopK(outIndices, outScores, oi, count, k, scores[r * n + j], j);
    padTopK(outIndices, outScores, oi, count, k);
  }
}

function scoreTopK(
  outIndices: Int32Array,
  outScores: Float32Array,
  states: Float32Array,
  items: Float32Array,
  active: Uint8Array,
  limits: Int32Array,
  rows: number,
  n: number,
  d: number,
  k: number,
): void {
  if (k <= 0) return;
  const scores = new Float32Array(n);
  const oi = new Int32Array(k);
  const os = new Float32Array(k);
  for (let r = 0; r < rows; r++) {
    const limit = Math.min(Math.max(limits[r], 0), n);
    scores.fill(-Infinity);
    for (let j = 0; j < limit; j++) {
      if (!active[j]) continue;
      const base = Math.floor(j / PANEL_WIDTH) * d * PANEL_WIDTH + (j % PANEL_WIDTH);
      let s = 0;
      for (let p = 0; p < d; p++) s += states[r * d + p] * items[base + p * PANEL_WIDTH];
      scores[j] = s;
    }
    topK(oi, os, scores, 1, n, k);
    outIndices.set(oi, r * k);
    outScores.set(os, r * k);
  }
}

export const referenceKernels: Kernels = {
  name: 'typescript',
  matmul,
  softmaxCrossEntropy,
  sampledLoss,
  sampledLossGrouped,
  layerNormForward,
  layerNormBackward,
  attentionForward,
  attentionBackward,
  reluForward,
  reluBackward,
  geluForward,
  geluBackward,
  dropoutForward,
  dropoutBackward,
  gather,
  scatterAdd,
  adamStep,
  sparseAdamStep,
  clipRowNorms,
  topK,
  scoreTopK,
  scoreTopKQuantized: scoreTopKQuantizedReference,
  quantizeItems: quantizeItemsReference,
  scanQuantized: scanQuantizedReference,
};
