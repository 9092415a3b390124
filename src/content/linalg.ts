/**
 * Dense float64 linear algebra for the content encoders: symmetric eigendecomposition (Householder
 * tridiagonalization + implicit QL, as in EISPACK tred2/tql2), Cholesky-based orthonormalization, and a seeded
 * randomized truncated SVD (Halko, Martinsson & Tropp 2011) over any linear operator.
 * All matrices are row-major.
 */
import { kernels } from '../kernels/index.js';
import { Random } from '../util/random.js';

export interface SymmetricEigen {
  /** Eigenvalues, largest first. */
  values: Float64Array;
  /** n x n, row k is the unit eigenvector of values[k]; sign fixed so its largest-magnitude entry is positive. */
  vectors: Float64Array;
}

/** Eigendecomposition of the symmetric n x n matrix a (a is not modified). */
export function symmetricEigen(a: Float64Array, n: number): SymmetricEigen {
  if (a.length < n * n) throw new Error(`symmetricEigen: matrix has ${a.length} entries, expected ${n * n}`);
  const V = Float64Array.from(a.subarray(0, n * n));
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  tridiagonalize(V, d, e, n);
  // tql2 rotates columns of V; work on the transpose so each rotation touches two contiguous rows.
  const W = transpose(V, n, n);
  tridiagonalQl(W, d, e, n);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x]);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    values[k] = d[order[k]];
    const src = order[k] * n;
    let largest = 0;
    for (let j = 0; j < n; j++) if (Math.abs(W[src + j]) > Math.abs(largest)) largest = W[src + j];
    const sign = largest < 0 ? -1 : 1;
    for (let j = 0; j < n; j++) vectors[k * n + j] = sign * W[src + j];
  }
  return { values, vectors };
}

/** Householder reduction of the symmetric matrix V (in place, becomes the accumulated transform) to tridiagonal d, e. */
function tridiagonalize(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        V[j * n + i] = f;
        g = e[j] + V[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j] * d[k];
          e[k] += V[k * n + j] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) V[k * n + j] -= f * e[k] + g * d[k];
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i];
    V[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1] * V[k * n + j];
        for (let k = 0; k <= i; k++) V[k * n + j] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j];
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/** Implicit QL on the tridiagonal (d, e); W holds the transposed transform (row k = eigenvector k). */
function tridiagonalQl(W: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]) > eps * tst1) m++;
    if (m > l) {
      let iterations = 0;
      do {
        if (++iterations > 100) throw new Error('symmetricEigen: QL iteration did not converge');
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          const row0 = i * n;
          const row1 = (i + 1) * n;
          for (let k = 0; k < n; k++) {
            h = W[row1 + k];
            W[row1 + k] = s * W[row0 + k] + c * h;
            W[row0 + k] = c * W[row0 + k] - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}

export function transpose(a: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
  return t;
}

/**
 * C (m x n) = A B^T for A (m x k) and B (n x k) in float64: 4 x 2 register blocks of dot products over k-tiles
 * that stay in cache. With symmetric (A = B, or any A, B whose product is known to be symmetric), only the upper
 * triangle is computed and then mirrored.
 */
export function dotProducts(
  a: Float64Array,
  b: Float64Array,
  m: number,
  n: number,
  k: number,
  symmetric = false,
): Float64Array {
  const c = new Float64Array(m * n);
  const TILE = 256;
  const m4 = m - (m % 4);
  const n2 = n - (n % 2);
  // 4 x 2 register blocks over k-tiles for the bulk.
  for (let p0 = 0; p0 < k; p0 += TILE) {
    const p1 = Math.min(p0 + TILE, k);
    for (let i = 0; i < m4; i += 4) {
      const r0 = i * k;
      const r1 = r0 + k;
      const r2 = r1 + k;
      const r3 = r2 + k;
      for (let j = symmetric ? i : 0; j < n2; j += 2) {
        const q0 = j * k;
        const q1 = q0 + k;
        let s00 = 0;
        let s01 = 0;
        let s10 = 0;
        let s11 = 0;
        let s20 = 0;
        let s21 = 0;
        let s30 = 0;
        let s31 = 0;
        for (let p = p0; p < p1; p++) {
          const y0 = b[q0 + p];
          const y1 = b[q1 + p];
          const x0 = a[r0 + p];
          const x1 = a[r1 + p];
          const x2 = a[r2 + p];
          const x3 = a[r3 + p];
          s00 += x0 * y0;
          s01 += x0 * y1;
          s10 += x1 * y0;
          s11 += x1 * y1;
          s20 += x2 * y0;
          s21 += x2 * y1;
          s30 += x3 * y0;
          s31 += x3 * y1;
        }
        const o = i * n + j;
        c[o] += s00;
        c[o + 1] += s01;
        c[o + n] += s10;
        c[o + n + 1] += s11;
        c[o + 2 * n] += s20;
        c[o + 2 * n + 1] += s21;
        c[o + 3 * n] += s30;
        c[o + 3 * n + 1] += s31;
      }
    }
  }
  // Edges: the last column when n is odd, the last rows when m is not a multiple of 4.
  const dot = (i: number, j: number): number => {
    let sum = 0;
    for (let p = 0; p < k; p++) sum += a[i * k + p] * b[j * k + p];
    return sum;
  };
  if (n2 < n) for (let i = 0; i < m4; i++) c[i * n + n2] = dot(i, n2);
  for (let i = m4; i < m; i++) for (let j = symmetric ? i : 0; j < n; j++) c[i * n + j] = dot(i, j);
  if (symmetric) for (let i = 0; i < m; i++) for (let j = 0; j < i; j++) c[i * n + j] = c[j * n + i];
  return c;
}

/**
 * C (m x n) = A B^T for well-conditioned data where float32 accuracy suffices: the active matmul kernel when it is
 * native, otherwise dotProducts in float64 (upper triangle only when symmetric, A = B).
 */
export function productNT(
  a: Float64Array,
  b: Float64Array,
  m: number,
  n: number,
  k: number,
  symmetric = false,
): Float64Array {
  if (kernels.name !== 'native') return dotProducts(a, b, m, n, k, symmetric);
  const out = new Float32Array(m * n);
  const a32 = Float32Array.from(a);
  kernels.matmul(out, a32, symmetric ? a32 : Float32Array.from(b), m, n, k, false, true, false);
  return Float64Array.from(out);
}

/** Lower Cholesky factor of the symmetric positive definite k x k matrix g; null when it is not positive definite. */
export function cholesky(g: Float64Array, k: number): Float64Array | null {
  const L = new Float64Array(k * k);
  for (let j = 0; j < k; j++) {
    let s = g[j * k + j];
    for (let p = 0; p < j; p++) s -= L[j * k + p] * L[j * k + p];
    if (!(s > 0)) return null;
    const ljj = Math.sqrt(s);
    L[j * k + j] = ljj;
    for (let i = j + 1; i < k; i++) {
      let t = g[i * k + j];
      for (let p = 0; p < j; p++) t -= L[i * k + p] * L[j * k + p];
      L[i * k + j] = t / ljj;
    }
  }
  return L;
}

/** Cholesky factor of g, adding a growing diagonal shift when g is numerically rank-deficient. */
function choleskyShifted(g: Float64Array, k: number): Float64Array {
  let trace = 0;
  for (let a = 0; a < k; a++) trace += g[a * k + a];
  let shift = 0;
  let L = cholesky(g, k);
  if (!Number.isFinite(trace))
    throw new Error('randomizedSvd: non-finite values in the sketch (is the input finite?)');
  while (!L) {
    const next = shift === 0 ? 1e-13 * trace + 1e-300 : shift * 100;
    if (next > trace) throw new Error('randomizedSvd: the sketch Gram matrix is not positive semidefinite');
    for (let a = 0; a < k; a++) g[a * k + a] += next - shift;
    shift = next;
    L = cholesky(g, k);
  }
  return L;
}

/** Solves L X = B in place for lower-triangular L (k x k) and B (k x w). */
function solveLower(L: Float64Array, b: Float64Array, k: number, w: number): void {
  for (let i = 0; i < k; i++) {
    const row = i * w;
    for (let p = 0; p < i; p++) {
      const lip = L[i * k + p];
      if (lip === 0) continue;
      const src = p * w;
      for (let j = 0; j < w; j++) b[row + j] -= lip * b[src + j];
    }
    const inv = 1 / L[i * k + i];
    for (let j = 0; j < w; j++) b[row + j] *= inv;
  }
}

/** A linear map A (rows x cols) given by its products with dense row-major blocks of width w. */
export interface LinearOperator {
  rows: number;
  cols: number;
  /** out (rows x w) = A x, x is cols x w. */
  multiply(x: Float64Array, w: number, out: Float64Array): void;
  /** out (cols x w) = A^T y, y is rows x w. */
  multiplyTransposed(y: Float64Array, w: number, out: Float64Array): void;
}

export interface TruncatedSvd {
  k: number;
  /** Singular values, largest first. */
  values: Float64Array;
  /** Right singular vectors, cols x k (column j is vector j), sign fixed so A v_j has a positive largest entry. */
  right: Float64Array;
}

export interface RandomizedSvdOptions {
  seed?: number;
  oversample?: number;
  powerIterations?: number;
  onProgress?: (message: string) => void;
}

/** Problems this small (short side, and dense size) get an exact SVD from the Gram matrix of the short side. */
export const EXACT_SVD_MAX_RANK = 1024;
const EXACT_SVD_MAX_ENTRIES = 5e7;

/**
 * Truncated SVD: exact (eigendecomposition of the short side's Gram matrix) when min(rows, cols) is at most
 * EXACT_SVD_MAX_RANK or the request is close to full rank and the dense matrix is small; randomized otherwise.
 * Numerically null directions (sigma below 1e-6 sigma_1) get zero vectors instead of amplified noise.
 */
export function truncatedSvd(A: LinearOperator, k: number, options: RandomizedSvdOptions = {}): TruncatedSvd {
  const shortSide = Math.min(A.rows, A.cols);
  const l = k + (options.oversample ?? 10);
  const small = shortSide <= EXACT_SVD_MAX_RANK || l >= shortSide;
  const svd =
    small && A.rows * shortSide <= EXACT_SVD_MAX_ENTRIES ? exactSvd(A, k) : randomizedSvd(A, k, options);
  for (let j = 0; j < k; j++) {
    if (svd.values[j] > 1e-6 * svd.values[0]) continue;
    for (let c = 0; c < A.cols; c++) svd.right[c * k + j] = 0;
  }
  return svd;
}

function identity(n: number): Float64Array {
  const eye = new Float64Array(n * n);
  for (let i = 0; i < n; i++) eye[i * n + i] = 1;
  return eye;
}

/** Exact truncated SVD from the dense Gram matrix of the short side (small problems only). */
export function exactSvd(A: LinearOperator, k: number): TruncatedSvd {
  const maxRank = Math.min(A.rows, A.cols);
  if (!(k >= 1 && k <= maxRank)) throw new Error(`exactSvd: k = ${k} must be in 1..${maxRank}`);
  const values = new Float64Array(k);
  const right = new Float64Array(A.cols * k);
  if (A.cols <= A.rows) {
    const dense = new Float64Array(A.rows * A.cols); // A itself
    A.multiply(identity(A.cols), A.cols, dense);
    const dt = transpose(dense, A.rows, A.cols);
    const eig = symmetricEigen(dotProducts(dt, dt, A.cols, A.cols, A.rows, true), A.cols); // A^T A
    for (let j = 0; j < k; j++) {
      values[j] = Math.sqrt(Math.max(eig.values[j], 0));
      for (let c = 0; c < A.cols; c++) right[c * k + j] = eig.vectors[j * A.cols + c];
    }
  } else {
    const z = new Float64Array(A.cols * A.rows); // A^T
    A.multiplyTransposed(identity(A.rows), A.rows, z);
    const zt = transpose(z, A.cols, A.rows);
    const eig = symmetricEigen(dotProducts(zt, zt, A.rows, A.rows, A.cols, true), A.rows); // A A^T
    for (let j = 0; j < k; j++) {
      const sigma = Math.sqrt(Math.max(eig.values[j], 0));
      values[j] = sigma;
      if (sigma === 0) continue;
      // v_j = A^T u_j / sigma_j
      for (let c = 0; c < A.cols; c++) {
        let sum = 0;
        for (let r = 0; r < A.rows; r++) sum += z[c * A.rows + r] * eig.vectors[j * A.rows + r];
        right[c * k + j] = sum / sigma;
      }
    }
  }
  fixSigns(A, right, k);
  return { k, values, right };
}

/** z = A^T Y (written into z), G = Y^T Y and M = Y^T A A^T Y (from the shorter side). */
function sketchGrams(
  A: LinearOperator,
  y: Float64Array,
  z: Float64Array,
  l: number,
  onProgress?: (message: string) => void,
): { g: Float64Array; m: Float64Array } {
  A.multiplyTransposed(y, l, z);
  onProgress?.(`svd: Gram matrices (${l} x ${l})`);
  const yt = transpose(y, A.rows, l);
  const g = dotProducts(yt, yt, l, l, A.rows, true);
  if (A.rows <= A.cols) {
    const w = new Float64Array(A.rows * l);
    A.multiply(z, l, w);
    return { g, m: dotProducts(yt, transpose(w, A.rows, l), l, l, A.rows, true) }; // symmetric: Y^T A A^T Y
  }
  const zt = transpose(z, A.cols, l);
  return { g, m: dotProducts(zt, zt, l, l, A.cols, true) };
}

function diagonalRatio(L: Float64Array, l: number): number {
  let minDiag = Infinity;
  let maxDiag = 0;
  for (let a = 0; a < l; a++) {
    minDiag = Math.min(minDiag, L[a * l + a]);
    maxDiag = Math.max(maxDiag, L[a * l + a]);
  }
  return maxDiag / minDiag;
}

/**
 * Randomized truncated SVD (Halko et al. 2011, Algorithm 4.3 with power iterations): Y = (A A^T)^q A Omega spans
 * the top singular subspace. Y is never orthonormalized explicitly: with G = Y^T Y = L L^T, the basis is
 * Q = Y L^-T, and B B^T = Q^T A A^T Q = L^-1 (Y^T A A^T Y) L^-T is an l x l matrix eigendecomposed exactly. This
 * costs a few l x l Gram products of the short side instead of repeated QR factorizations. Grams are float64, so
 * the conditioning (sigma_1 / sigma_l)^(2q+1) of Y stays far from losing the subspace for q <= 3 on text data.
 */
export function randomizedSvd(
  A: LinearOperator,
  k: number,
  options: RandomizedSvdOptions = {},
): TruncatedSvd {
  const { seed = 0, oversample = 10, powerIterations = 2, onProgress } = options;
  const maxRank = Math.min(A.rows, A.cols);
  if (!(k >= 1 && k <= maxRank)) throw new Error(`randomizedSvd: k = ${k} must be in 1..${maxRank}`);
  const l = Math.min(k + oversample, maxRank);
  // Random signs (Rademacher) sketch as well as Gaussians and are much cheaper to draw.
  const random = new Random(seed);
  const omega = new Float64Array(A.cols * l);
  for (let i = 0; i < omega.length; i += 32) {
    const bits = random.nextUint32();
    for (let b = 0; b < 32 && i + b < omega.length; b++) omega[i + b] = (bits >>> b) & 1 ? 1 : -1;
  }
  const y = new Float64Array(A.rows * l);
  const z = new Float64Array(A.cols * l);
  A.multiply(omega, l, y);
  for (let it = 0; it < powerIterations; it++) {
    onProgress?.(`svd: power iteration ${it + 1}/${powerIterations}`);
    A.multiplyTransposed(y, l, z);
    A.multiply(z, l, y);
    normalizeColumns(y, A.rows, l);
  }
  let { g, m } = sketchGrams(A, y, z, l, onProgress);
  let L = choleskyShifted(g, l);
  let ratio = diagonalRatio(L, l);
  onProgress?.(`svd: sketch Cholesky diagonal ratio ${ratio.toExponential(1)}`);
  if (ratio > 1e5) {
    // Badly conditioned sketch (steep spectrum, many power iterations): orthonormalize explicitly, Y <- Y L^-T,
    // and recompute the Gram matrices from the well-conditioned basis.
    const lInverse = identity(l);
    solveLower(L, lInverse, l, l);
    y.set(dotProducts(y, lInverse, A.rows, l, l)); // float64: the product cancels heavily
    ({ g, m } = sketchGrams(A, y, z, l, onProgress));
    L = choleskyShifted(g, l);
    ratio = diagonalRatio(L, l);
    onProgress?.(`svd: re-orthonormalized, diagonal ratio ${ratio.toExponential(1)}`);
  }
  solveLower(L, m, l, l); // L^-1 M
  const s = transpose(m, l, l);
  solveLower(L, s, l, l); // L^-1 (L^-1 M)^T = L^-1 M L^-T (M symmetric)
  for (let a = 0; a < l; a++)
    for (let b = 0; b < a; b++) s[a * l + b] = s[b * l + a] = 0.5 * (s[a * l + b] + s[b * l + a]);
  onProgress?.(`svd: eigendecomposition (${l} x ${l})`);
  const eig = symmetricEigen(s, l);
  // C (l x k) = L^-T U_B Sigma^-1, stored transposed as Ct (k x l): Ct = Sigma^-1 U_B^T L^-1, i.e. solve L^T c_j = u_j.
  const values = new Float64Array(k);
  const ct = new Float64Array(k * l);
  for (let j = 0; j < k; j++) {
    const sigma = Math.sqrt(Math.max(eig.values[j], 0));
    values[j] = sigma;
    if (sigma === 0) continue;
    const c = ct.subarray(j * l, (j + 1) * l);
    for (let p = l - 1; p >= 0; p--) {
      let t = eig.vectors[j * l + p];
      for (let q = p + 1; q < l; q++) t -= L[q * l + p] * c[q];
      c[p] = t / L[p * l + p];
    }
    for (let p = 0; p < l; p++) c[p] /= sigma;
  }
  onProgress?.(`svd: singular vectors`);
  const right = new Float64Array(A.cols * k);
  if (A.rows <= A.cols) {
    // v_j = A^T (Q u_j) / sigma_j = A^T Y c_j: form Y C on the short side, then one sparse-friendly product.
    // Column j of Y C is the left singular vector u_j / sigma_j = A v_j / sigma_j^2: fixing its sign fixes v_j's.
    const u = productNT(y, ct, A.rows, k, l);
    for (let j = 0; j < k; j++) {
      let largest = 0;
      for (let i = 0; i < A.rows; i++) if (Math.abs(u[i * k + j]) > Math.abs(largest)) largest = u[i * k + j];
      if (largest < 0) for (let i = 0; i < A.rows; i++) u[i * k + j] = -u[i * k + j];
    }
    A.multiplyTransposed(u, k, right);
  } else {
    right.set(productNT(z, ct, A.cols, k, l));
    fixSigns(A, right, k);
  }
  return { k, values, right };
}

function normalizeColumns(y: Float64Array, rows: number, cols: number): void {
  const norms = new Float64Array(cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) norms[j] += y[i * cols + j] * y[i * cols + j];
  for (let j = 0; j < cols; j++) norms[j] = norms[j] > 0 ? 1 / Math.sqrt(norms[j]) : 1;
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) y[i * cols + j] *= norms[j];
}
/** Flips each right vector so that the image A v_j has its largest-magnitude entry positive (deterministic signs). */
function fixSigns(A: LinearOperator, right: Float64Array, k: number): void {
  const image = new Float64Array(A.rows * k);
  A.multiply(right, k, image);
  for (let j = 0; j < k; j++) {
    let largest = 0;
    for (let i = 0; i < A.rows; i++)
      if (Math.abs(image[i * k + j]) > Math.abs(largest)) largest = image[i * k + j];
    if (largest < 0) for (let c = 0; c < A.cols; c++) right[c * k + j] = -right[c * k + j];
  }
}
