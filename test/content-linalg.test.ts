import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dotProducts, exactSvd, randomizedSvd, symmetricEigen } from '../src/content/linalg.js';
import {
  applyProjection,
  fitProjection,
  loadProjection,
  projectContent,
  saveProjection,
} from '../src/content/projection.js';
import { sparseOperator, type CsrMatrix } from '../src/content/sparse.js';
import { Random } from '../src/util/random.js';

/** Independent oracle: cyclic Jacobi eigenvalue algorithm (values descending, vectors as rows). */
function jacobiEigen(a: Float64Array, n: number): { values: number[]; vectors: number[][] } {
  const m = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => a[i * n + j]));
  const v = Array.from({ length: n }, (_, i) =>
    Array.from({ length: n }, (_, j): number => (i === j ? 1 : 0)),
  );
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m[p][q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(m[p][q]) < 1e-300) continue;
        const theta = (m[q][q] - m[p][p]) / (2 * m[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const mkp = m[k][p];
          const mkq = m[k][q];
          m[k][p] = c * mkp - s * mkq;
          m[k][q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < n; k++) {
          const mpk = m[p][k];
          const mqk = m[q][k];
          m[p][k] = c * mpk - s * mqk;
          m[q][k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p];
          const vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => m[y][y] - m[x][x]);
  return { values: order.map((i) => m[i][i]), vectors: order.map((i) => v.map((row) => row[i])) };
}

function randomMatrix(rows: number, cols: number, seed: number): Float64Array {
  const r = new Random(seed);
  return Float64Array.from({ length: rows * cols }, () => r.nextGaussian());
}

function assertSameDirection(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  const cos = Math.abs(dot) / Math.sqrt(na * nb);
  assert.ok(Math.abs(cos - 1) < tol, `${what}: |cos| = ${cos}`);
}

test('symmetricEigen matches an independent Jacobi decomposition and reconstructs the matrix', () => {
  const n = 9;
  const x = randomMatrix(20, n, 1);
  const a = dotProducts(transposeOf(x, 20, n), transposeOf(x, 20, n), n, n, 20, true);
  const { values, vectors } = symmetricEigen(a, n);
  const oracle = jacobiEigen(a, n);
  for (let k = 0; k < n; k++) {
    assert.ok(Math.abs(values[k] - oracle.values[k]) < 1e-9 * Math.abs(oracle.values[0]), `eigenvalue ${k}`);
    assertSameDirection(vectors.subarray(k * n, (k + 1) * n), oracle.vectors[k], 1e-9, `eigenvector ${k}`);
  }
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += values[k] * vectors[k * n + i] * vectors[k * n + j];
      assert.ok(Math.abs(s - a[i * n + j]) < 1e-9, `reconstruction (${i}, ${j})`);
    }
  // A matrix with repeated and zero eigenvalues (rank 2).
  const b = new Float64Array([1, 1, 0, 1, 1, 0, 0, 0, 2]);
  assert.deepEqual(
    Array.from(symmetricEigen(b, 3).values, (v) => Math.round(v * 1e9) / 1e9),
    [2, 2, 0],
  );
});

function transposeOf(a: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
  return t;
}

function decayingSparse(
  rows: number,
  cols: number,
  decay: number,
  seed: number,
): { x: CsrMatrix; dense: Float64Array } {
  const r = new Random(seed);
  const indptr = [0];
  const indices: number[] = [];
  const values: number[] = [];
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++)
      if (r.nextFloat() < 0.3) {
        indices.push(j);
        values.push(r.nextGaussian() * Math.exp(-j / decay));
      }
    indptr.push(indices.length);
  }
  const x: CsrMatrix = {
    rows,
    cols,
    indptr: Int32Array.from(indptr),
    indices: Int32Array.from(indices),
    values: Float32Array.from(values),
  };
  const dense = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++)
    for (let p = indptr[i]; p < indptr[i + 1]; p++) dense[i * cols + indices[p]] = x.values[p];
  return { x, dense };
}

test('randomizedSvd re-orthonormalizes a badly conditioned sketch and stays accurate', () => {
  const rows = 80;
  const cols = 60;
  const { x, dense } = decayingSparse(rows, cols, 3, 9);
  const dt = transposeOf(dense, rows, cols);
  const exact = jacobiEigen(dotProducts(dt, dt, cols, cols, rows, true), cols);
  const messages: string[] = [];
  const k = 4;
  const svd = randomizedSvd(sparseOperator(x), k, {
    seed: 2,
    powerIterations: 6,
    onProgress: (m) => messages.push(m),
  });
  assert.ok(
    messages.some((m) => m.includes('re-orthonormalized')),
    messages.join('; '),
  );
  for (let j = 0; j < k; j++) {
    const sigma = Math.sqrt(exact.values[j]);
    assert.ok(
      Math.abs(svd.values[j] - sigma) < 1e-6 * sigma,
      `singular value ${j}: ${svd.values[j]} vs ${sigma}`,
    );
    const v = Array.from({ length: cols }, (_, c) => svd.right[c * k + j]);
    assertSameDirection(v, exact.vectors[j], 1e-6, `right vector ${j}`);
  }
});

test('randomizedSvd recovers the singular values and right vectors of a sparse matrix with a decaying spectrum', () => {
  const rows = 60;
  const cols = 40;
  // Sparse matrix: about 30% non-zeros, column scales decay so the spectrum decays.
  const { x, dense } = decayingSparse(rows, cols, 8, 3);
  const exact = jacobiEigen(
    dotProducts(transposeOf(dense, rows, cols), transposeOf(dense, rows, cols), cols, cols, rows, true),
    cols,
  );
  const k = 5;
  const svd = randomizedSvd(sparseOperator(x), k, { seed: 7, oversample: 10, powerIterations: 3 });
  for (let j = 0; j < k; j++) {
    const sigma = Math.sqrt(exact.values[j]);
    assert.ok(
      Math.abs(svd.values[j] - sigma) < 1e-6 * sigma,
      `singular value ${j}: ${svd.values[j]} vs ${sigma}`,
    );
    const v = Array.from({ length: cols }, (_, c) => svd.right[c * k + j]);
    assertSameDirection(v, exact.vectors[j], 1e-6, `right vector ${j}`);
  }
  const exactResult = exactSvd(sparseOperator(x), k);
  for (let j = 0; j < k; j++) {
    assert.ok(Math.abs(exactResult.values[j] - Math.sqrt(exact.values[j])) < 1e-9, `exact sigma ${j}`);
    const v = Array.from({ length: cols }, (_, c) => exactResult.right[c * k + j]);
    assertSameDirection(v, exact.vectors[j], 1e-9, `exact right vector ${j}`);
  }
  // Same seed, same result; the full-rank case is exact.
  assert.deepEqual(
    randomizedSvd(sparseOperator(x), k, { seed: 7 }).values,
    randomizedSvd(sparseOperator(x), k, { seed: 7 }).values,
  );
  const full = randomizedSvd(sparseOperator(x), cols, { seed: 1, powerIterations: 0 });
  for (let j = 0; j < cols; j++) {
    const error = Math.abs(full.values[j] ** 2 - exact.values[j]);
    assert.ok(
      error < 1e-5 * exact.values[0],
      `full rank: sigma_${j}^2 = ${full.values[j] ** 2} vs ${exact.values[j]}`,
    );
  }
});

test('fitProjection agrees with an exact eigendecomposition of the standardized covariance', () => {
  const rows = 50;
  const dim = 8;
  const d = 2;
  const r = new Random(11);
  const vectors = new Float32Array(rows * dim);
  for (let i = 0; i < rows; i++) {
    const latent = [r.nextGaussian(), r.nextGaussian()];
    for (let j = 0; j < dim; j++) vectors[i * dim + j] = latent[j % 2] * (j + 1) + 0.3 * r.nextGaussian() + j;
  }
  const warm = Array.from({ length: 40 }, (_, i) => i); // fit on the first 40 rows only
  for (const standardize of [true, false]) {
    // Covariances may come from the float32 matmul kernel: tolerances are float32-level.
    const state = fitProjection(vectors, rows, dim, warm, d, { standardize });
    // Oracle: standardize with population std, covariance with n - 1, Jacobi.
    const n = warm.length;
    const z = new Float64Array(n * dim);
    for (let j = 0; j < dim; j++) {
      let mean = 0;
      for (const i of warm) mean += vectors[i * dim + j];
      mean /= n;
      let v = 0;
      for (const i of warm) v += (vectors[i * dim + j] - mean) ** 2;
      const std = standardize ? Math.sqrt(v / n) : 1;
      warm.forEach((i, t) => (z[t * dim + j] = (vectors[i * dim + j] - mean) / std));
      assert.ok(Math.abs(state.mean[j] - mean) < 1e-9, `mean ${j}`);
    }
    const cov = dotProducts(transposeOf(z, n, dim), transposeOf(z, n, dim), dim, dim, n, true).map(
      (c) => c / (n - 1),
    );
    const exact = jacobiEigen(cov, dim);
    const total = exact.values.reduce((a, b) => a + b, 0);
    for (let k = 0; k < d; k++) {
      assert.ok(
        Math.abs(state.explainedVariance[k] - exact.values[k]) < 1e-5 * exact.values[0],
        `variance ${k}`,
      );
      assert.ok(Math.abs(state.explainedVarianceRatio[k] - exact.values[k] / total) < 1e-5, `ratio ${k}`);
      assertSameDirection(
        state.components.subarray(k * dim, (k + 1) * dim),
        exact.vectors[k],
        1e-6,
        `axis ${k}`,
      );
    }
    // Projecting any item (fitted or new) equals the fitted transform, and rows have unit norm.
    const out = applyProjection(state, vectors);
    for (const i of [0, 45, 49]) {
      const y = exact.vectors
        .slice(0, d)
        .map((axis) =>
          axis.reduce((s, a, j) => s + a * ((vectors[i * dim + j] - state.mean[j]) / state.scale[j]), 0),
        );
      const norm = Math.hypot(...y);
      const sign = (k: number) =>
        Math.sign(
          Array.from(state.components.subarray(k * dim, (k + 1) * dim)).reduce(
            (s, a, j) => s + a * exact.vectors[k][j],
            0,
          ),
        );
      for (let k = 0; k < d; k++)
        assert.ok(Math.abs(out[i * d + k] - (sign(k) * y[k]) / norm) < 1e-4, `row ${i} component ${k}`);
      assert.ok(Math.abs(Math.hypot(...out.subarray(i * d, (i + 1) * d)) - 1) < 1e-6, `unit norm ${i}`);
    }
  }
});

test('projectContent fits on warm rows, applies unchanged to new items, and survives save/load', async () => {
  const numItems = 30;
  const numWarm = 20;
  const dim = 6;
  const r = new Random(5);
  const aligned = new Float32Array((numItems + 1) * dim);
  for (let i = dim; i < aligned.length; i++) aligned[i] = r.nextGaussian();
  aligned.fill(0, 7 * dim, 8 * dim); // warm item 7 has no content: excluded from the fit, stays zero
  const { vectors, state } = projectContent(aligned, dim, numWarm, 4);
  assert.equal(state.fittedRows, numWarm - 1);
  assert.deepEqual(Array.from(vectors.subarray(0, 4)), [0, 0, 0, 0]);
  assert.deepEqual(Array.from(vectors.subarray(7 * 4, 8 * 4)), [0, 0, 0, 0]);
  // Cold items do not influence the fit: changing them changes nothing for warm rows.
  const changed = aligned.slice();
  for (let i = (numWarm + 1) * dim; i < changed.length; i++) changed[i] *= 3;
  const again = projectContent(changed, dim, numWarm, 4);
  assert.deepEqual(again.vectors.subarray(0, (numWarm + 1) * 4), vectors.subarray(0, (numWarm + 1) * 4));
  // A new item projected alone equals its row in the batch; saved and loaded state gives identical outputs.
  const newItem = aligned.slice(25 * dim, 26 * dim);
  assert.deepEqual(applyProjection(state, newItem), vectors.slice(25 * 4, 26 * 4));
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-proj-'));
  try {
    await saveProjection(dir, state);
    const loaded = await loadProjection(dir);
    assert.deepEqual(applyProjection(loaded, aligned), applyProjection(state, aligned));
    assert.equal(loaded.explainedVarianceRatio.length, 4);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  for (let i = 1; i <= numItems; i++) {
    if (i === 7) continue;
    assert.ok(Math.abs(Math.hypot(...vectors.subarray(i * 4, (i + 1) * 4)) - 1) < 1e-6, `row ${i} unit norm`);
  }
  assert.throws(() => projectContent(aligned, dim, numWarm, 7), /output dimension 7 must be in 1..6/);
});

test('dotProducts equals naive A B^T for every edge shape, symmetric or not', () => {
  for (const [m, n, k] of [
    [1, 1, 1],
    [5, 3, 7],
    [8, 6, 300],
    [7, 7, 5],
  ]) {
    const a = randomMatrix(m, k, m * 31 + k);
    const b = randomMatrix(n, k, n * 17 + k);
    const c = dotProducts(a, b, m, n, k);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
        assert.ok(Math.abs(c[i * n + j] - s) < 1e-9, `${m}x${n}x${k} (${i}, ${j})`);
      }
    if (m === n) {
      const g = dotProducts(a, a, m, m, k, true);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < m; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += a[i * k + p] * a[j * k + p];
          assert.ok(Math.abs(g[i * m + j] - s) < 1e-9, `gram ${m}x${k} (${i}, ${j})`);
        }
    }
  }
});

test('the randomized PCA path agrees with the exact one on data with a clear spectrum', () => {
  const rows = 200;
  const dim = 30;
  const r = new Random(21);
  const vectors = new Float32Array(rows * dim);
  for (let i = 0; i < rows; i++) {
    const latent = [3 * r.nextGaussian(), 2 * r.nextGaussian(), r.nextGaussian()];
    for (let j = 0; j < dim; j++)
      vectors[i * dim + j] = latent[j % 3] * (1 + j / dim) + 0.05 * r.nextGaussian();
  }
  const warm = Array.from({ length: rows }, (_, i) => i);
  const exact = fitProjection(vectors, rows, dim, warm, 3, { standardize: false, method: 'exact' });
  const randomized = fitProjection(vectors, rows, dim, warm, 3, { standardize: false, method: 'randomized' });
  for (let k = 0; k < 3; k++) {
    assert.ok(
      Math.abs(randomized.explainedVariance[k] - exact.explainedVariance[k]) <
        1e-4 * exact.explainedVariance[0],
      `variance ${k}: ${randomized.explainedVariance[k]} vs ${exact.explainedVariance[k]}`,
    );
    assertSameDirection(
      randomized.components.subarray(k * dim, (k + 1) * dim),
      exact.components.subarray(k * dim, (k + 1) * dim),
      1e-4,
      `axis ${k}`,
    );
  }
});
