// The TypeScript reference kernels are the oracle for the native ones, so their backward passes are checked here
// against central finite differences of a random linear functional of the forward output.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dropoutHash, referenceKernels as K } from '../src/kernels/index.js';
import { packPanels, panelLength } from '../src/kernels/panels.js';
import { Random } from '../src/util/random.js';

const rng = new Random(777);
function rand(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.nextFloat() * 2 - 1) * scale;
  return a;
}
function weighted(out: Float32Array, w: Float32Array): number {
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i] * w[i];
  return s;
}

/**
 * Compares analytic gradient `grad` of f with respect to x against central differences at every element of x.
 * Inputs are float32, so steps are large (1e-2) and the tolerance is relative to the gradient's size.
 */
function checkGradient(what: string, x: Float32Array, grad: Float32Array, f: () => number, eps = 1e-2): void {
  let worst = 0;
  let size = 1e-3;
  for (let i = 0; i < x.length; i++) size = Math.max(size, Math.abs(grad[i]));
  for (let i = 0; i < x.length; i++) {
    const old = x[i];
    const hi = Math.fround(old + eps);
    const lo = Math.fround(old - eps);
    x[i] = hi;
    const up = f();
    x[i] = lo;
    const down = f();
    x[i] = old;
    const numeric = (up - down) / (hi - lo);
    worst = Math.max(worst, Math.abs(numeric - grad[i]) / size);
  }
  assert.ok(
    worst < 2e-3,
    `${what}: finite-difference mismatch ${worst.toExponential(2)} (relative to max |grad|)`,
  );
}

test('softmaxCrossEntropy gradients match finite differences', () => {
  const [rows, d, numItems, scale] = [5, 6, 9, 0.5];
  const hidden = rand(rows * d);
  const items = rand(numItems * d);
  const targets = Int32Array.from([1, 8, 3, 3, 5]);
  const dHidden = new Float32Array(rows * d);
  const dItems = new Float32Array(numItems * d);
  K.softmaxCrossEntropy(hidden, items, targets, rows, d, numItems, scale, dHidden, dItems);
  const loss = () =>
    scale *
    K.softmaxCrossEntropy(
      hidden,
      items,
      targets,
      rows,
      d,
      numItems,
      scale,
      new Float32Array(rows * d),
      new Float32Array(numItems * d),
    );
  checkGradient('dHidden', hidden, dHidden, loss);
  checkGradient('dItems', items, dItems, loss);
  for (let p = 0; p < d; p++) assert.equal(dItems[p], 0, 'padding row 0 gets no gradient');
});

test('softmaxCrossEntropy loss equals the direct formula and chunks do not matter', () => {
  const [rows, d, numItems] = [70, 3, 12]; // more rows than one chunk
  const hidden = rand(rows * d, 2);
  const items = rand(numItems * d, 2);
  const targets = Int32Array.from({ length: rows }, () => 1 + rng.nextInt(numItems - 1));
  const loss = K.softmaxCrossEntropy(
    hidden,
    items,
    targets,
    rows,
    d,
    numItems,
    1,
    new Float32Array(rows * d),
    new Float32Array(numItems * d),
  );
  let expect = 0;
  for (let r = 0; r < rows; r++) {
    const logit = (j: number) => {
      let s = 0;
      for (let p = 0; p < d; p++) s += hidden[r * d + p] * items[j * d + p];
      return s;
    };
    let z = 0;
    for (let j = 1; j < numItems; j++) z += Math.exp(logit(j));
    expect += Math.log(z) - logit(targets[r]);
  }
  assert.ok(Math.abs(loss - expect) < 1e-4 * Math.abs(expect), `${loss} vs ${expect}`);
});

test('layerNorm gradients match finite differences', () => {
  const [rows, d] = [4, 7];
  const x = rand(rows * d, 2);
  const gamma = rand(d);
  const beta = rand(d);
  const w = rand(rows * d);
  const out = new Float32Array(rows * d);
  const mean = new Float32Array(rows);
  const rstd = new Float32Array(rows);
  const f = () => {
    K.layerNormForward(out, mean, rstd, x, gamma, beta, rows, d, 1e-5);
    return weighted(out, w);
  };
  f();
  const dx = new Float32Array(rows * d);
  const dGamma = new Float32Array(d);
  const dBeta = new Float32Array(d);
  K.layerNormBackward(dx, dGamma, dBeta, w, x, mean, rstd, gamma, rows, d);
  checkGradient('dx', x, dx, f, 1e-3);
  checkGradient('dGamma', gamma, dGamma, f);
  checkGradient('dBeta', beta, dBeta, f);
});

test('attention gradients match finite differences (lengths 0, 1, partial, full; 2 heads)', () => {
  const [T, heads, d] = [4, 2, 6];
  const lengths = Int32Array.from([0, 1, 3, 4]);
  const batch = lengths.length;
  const n = batch * T * d;
  const q = rand(n);
  const k = rand(n);
  const v = rand(n);
  const w = rand(n);
  const out = new Float32Array(n);
  const att = new Float32Array(batch * heads * T * T);
  const f = () => {
    K.attentionForward(out, att, q, k, v, lengths, batch, T, heads, d);
    return weighted(out, w);
  };
  f();
  // Padding queries produce zeros and every real attention row sums to one.
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < T; t++) {
      const real = t >= T - lengths[b];
      for (let h = 0; h < heads; h++) {
        let s = 0;
        for (let j = 0; j < T; j++) s += att[((b * heads + h) * T + t) * T + j];
        assert.ok(Math.abs(s - (real ? 1 : 0)) < 1e-6);
      }
      if (!real) for (let p = 0; p < d; p++) assert.equal(out[(b * T + t) * d + p], 0);
    }
  const dq = new Float32Array(n);
  const dk = new Float32Array(n);
  const dv = new Float32Array(n);
  K.attentionBackward(dq, dk, dv, w, att, q, k, v, lengths, batch, T, heads, d);
  checkGradient('dq', q, dq, f);
  checkGradient('dk', k, dk, f);
  checkGradient('dv', v, dv, f);
});

test('gelu (tanh form) and relu gradients match finite differences; backward accumulates', () => {
  const n = 40;
  const x = rand(n, 4);
  const w = rand(n);
  const out = new Float32Array(n);
  for (const [fwd, bwd] of [
    ['geluForward', 'geluBackward'],
    ['reluForward', 'reluBackward'],
  ] as const) {
    if (fwd === 'reluForward') for (let i = 0; i < n; i++) if (Math.abs(x[i]) < 0.02) x[i] = 0.5; // keep off the kink
    const f = () => {
      K[fwd](out, x, n);
      return weighted(out, w);
    };
    const dx = new Float32Array(n).fill(1);
    K[bwd](dx, w, x, n);
    for (let i = 0; i < n; i++) dx[i] -= 1;
    checkGradient(bwd, x, dx, f, 1e-3);
  }
  K.geluForward(out, Float32Array.from([0, 1, -1]), 3);
  assert.ok(Math.abs(out[1] - 0.841192) < 1e-5 && Math.abs(out[2] + 0.158808) < 1e-5 && out[0] === 0);
});

test('dropout: keep rate near 1 - p, inverted scaling, deterministic per seed, backward uses the mask', () => {
  const n = 20000;
  const x = new Float32Array(n).fill(1);
  const out = new Float32Array(n);
  const mask = new Uint8Array(n);
  K.dropoutForward(out, mask, x, n, 0.3, 42);
  let kept = 0;
  for (let i = 0; i < n; i++) {
    kept += mask[i];
    assert.equal(out[i], mask[i] ? Math.fround(1 / 0.7) : 0);
  }
  assert.ok(Math.abs(kept / n - 0.7) < 0.02, `keep rate ${kept / n}`);
  const again = new Uint8Array(n);
  K.dropoutForward(new Float32Array(n), again, x, n, 0.3, 42);
  assert.deepEqual(again, mask);
  K.dropoutForward(new Float32Array(n), again, x, n, 0.3, 43);
  assert.notDeepEqual(again, mask);
  assert.equal(dropoutHash(42, 7), dropoutHash(42, 7));
  const dx = new Float32Array(n);
  K.dropoutBackward(dx, x, mask, n, 0.3);
  assert.deepEqual(dx, out);
});

test('adamStep matches the textbook update', () => {
  const param = Float32Array.from([1, -2]);
  const grad = Float32Array.from([0.5, -0.1]);
  const m = new Float32Array(2);
  const v = new Float32Array(2);
  K.adamStep(param, grad, m, v, 2, 0.1, 0.9, 0.999, 1e-8, 1, 0);
  // First step: m_hat = g, v_hat = g^2, update = lr * sign(g).
  assert.ok(Math.abs(param[0] - 0.9) < 1e-6 && Math.abs(param[1] + 1.9) < 1e-6);
  K.adamStep(param, new Float32Array(2), m, v, 2, 0.1, 0.9, 0.999, 1e-8, 2, 0.5);
  assert.ok(param[0] < 0.9 * (1 - 0.05) + 1e-6, 'decoupled weight decay shrinks the parameter');
});

test('clipRowNorms, gather, scatterAdd, topK semantics', () => {
  const x = Float32Array.from([3, 4, 0.3, 0.4, 6, 8]);
  K.clipRowNorms(x, 3, 2, 1, 1);
  assert.deepEqual(
    Array.from(x).map((a) => Math.round(a * 1e6) / 1e6),
    [3, 4, 0.3, 0.4, 0.6, 0.8],
  );
  const table = Float32Array.from([0, 0, 1, 2, 3, 4]);
  const out = new Float32Array(6);
  K.gather(out, table, Int32Array.from([2, 1, 2]), 3, 2);
  assert.deepEqual(Array.from(out), [3, 4, 1, 2, 3, 4]);
  const dTable = new Float32Array(6);
  K.scatterAdd(dTable, out, Int32Array.from([2, 1, 2]), 3, 2);
  assert.deepEqual(Array.from(dTable), [0, 0, 1, 2, 6, 8]);
  const idx = new Int32Array(8);
  const sc = new Float32Array(8);
  const scores = Float32Array.from([1, 3, -Infinity, 3, 2, NaN, -Infinity, -Infinity, -Infinity, 5]);
  K.topK(idx, sc, scores, 2, 5, 4);
  assert.deepEqual(Array.from(idx), [1, 3, 4, 0, 4, -1, -1, -1]);
  assert.deepEqual(Array.from(sc), [3, 3, 2, 1, 5, -Infinity, -Infinity, -Infinity]);
});

test('scoreTopK: the top-k of the full product over each row limit and the active items, from the panels', () => {
  const rng = new Random(3);
  const [rows, n, d, k] = [5, 150, 3, 12];
  // Small integers: every score is exact, so ties are real and the order is fully determined.
  const states = Float32Array.from({ length: rows * d }, () => rng.nextInt(5) - 2);
  const items = Float32Array.from({ length: n * d }, () => rng.nextInt(5) - 2);
  const active = Uint8Array.from({ length: n }, (_, j) => (j === 0 || j % 7 === 3 ? 0 : 1));
  const limits = Int32Array.from([n, 0, 64, 65, n + 10]);
  const panels = new Float32Array(panelLength(n, d)).fill(NaN); // padding must never be read as an item
  packPanels(items, n, d, panels);
  for (let j = n; j < Math.ceil(n / 64) * 64; j++)
    for (let p = 0; p < d; p++) panels[Math.floor(j / 64) * 64 * d + p * 64 + (j % 64)] = 0;
  const idx = new Int32Array(rows * k);
  const sc = new Float32Array(rows * k);
  K.scoreTopK(idx, sc, states, panels, active, limits, rows, n, d, k);
  for (let r = 0; r < rows; r++) {
    const scores = new Float32Array(n).fill(-Infinity);
    for (let j = 0; j < Math.min(limits[r], n); j++) {
      if (!active[j]) continue;
      let s = 0;
      for (let p = 0; p < d; p++) s += states[r * d + p] * items[j * d + p];
      scores[j] = s;
    }
    const want = new Int32Array(k);
    const wantScores = new Float32Array(k);
    K.topK(want, wantScores, scores, 1, n, k);
    assert.deepEqual(idx.subarray(r * k, (r + 1) * k), want, `row ${r} (limit ${limits[r]})`);
    assert.deepEqual(sc.subarray(r * k, (r + 1) * k), wantScores);
  }
  assert.deepEqual(Array.from(idx.subarray(k, 2 * k)), new Array(k).fill(-1), 'limit 0: nothing');
});

test('matmul: all transpose combinations against a direct triple loop', () => {
  const [m, n, k] = [3, 5, 4];
  const a = rand(m * k);
  const b = rand(k * n);
  for (const transA of [false, true])
    for (const transB of [false, true]) {
      const out = new Float32Array(m * n).fill(1);
      K.matmul(out, a, b, m, n, k, transA, transB, true);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = 1;
          for (let p = 0; p < k; p++)
            s += (transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]);
          assert.ok(Math.abs(out[i * n + j] - s) < 1e-5);
        }
    }
});
