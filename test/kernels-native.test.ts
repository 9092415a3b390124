// Every native kernel against the TypeScript reference on random inputs of awkward shapes. The parent run also
// re-runs this file with DELTAREC_ISA=avx2 and =portable so every compiled instruction set is checked.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadNativeAddon, loadNativeKernels, referenceKernels as ref } from '../src/kernels/index.js';
import { packPanels, panelLength } from '../src/kernels/panels.js';
import type { Kernels } from '../src/kernels/types.js';
import { Random } from '../src/util/random.js';

const nat = loadNativeKernels() as Kernels;
const addon = loadNativeAddon();
const skip = nat
  ? false
  : 'native addon not built (build/Release/deltarec_native.node); run `npm run install`';
const TOL = 1e-4;

const rng = new Random(12345);
function rand(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.nextFloat() * 2 - 1) * scale;
  return a;
}
/** A view into a larger buffer (non-zero byteOffset), filled like rand(). */
function randView(n: number, scale = 1): Float32Array {
  const backing = rand(n + 3, scale);
  return backing.subarray(3);
}
/** Normwise relative error max|a - b| / max|b|. */
function relErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let diff = 0;
  let size = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) !== Number.isNaN(b[i])) return Infinity;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    size = Math.max(size, Math.abs(b[i]));
  }
  return size === 0 ? diff : diff / size;
}
function close(a: Float32Array, b: Float32Array, what: string): void {
  const e = relErr(a, b);
  assert.ok(e < TOL, `${what}: relative error ${e.toExponential(2)}`);
}
const copy = (a: Float32Array) => Float32Array.from(a);

test('addon reports its instruction set and threads', { skip }, () => {
  assert.ok(['avx512', 'avx2', 'portable'].includes(addon!.isa()));
  assert.ok(addon!.threads() >= 1);
  if (process.env.DELTAREC_ISA) assert.equal(addon!.isa(), process.env.DELTAREC_ISA);
});

test('matmul: all transpose combinations, accumulate, awkward and empty shapes', { skip }, () => {
  const shapes = [
    [0, 5, 3],
    [4, 0, 3],
    [3, 4, 0],
    [1, 1, 1],
    [1, 17, 3],
    [7, 13, 5],
    [33, 70, 17],
    [6, 64, 64],
    [13, 48, 300],
    [65, 33, 257],
    [300, 64, 64],
  ];
  for (const [m, n, k] of shapes)
    for (const transA of [false, true])
      for (const transB of [false, true])
        for (const accumulate of [false, true]) {
          const a = randView(m * k);
          const b = randView(k * n);
          const expect = randView(m * n);
          const got = copy(expect);
          ref.matmul(expect, a, b, m, n, k, transA, transB, accumulate);
          nat.matmul(got, a, b, m, n, k, transA, transB, accumulate);
          close(got, expect, `matmul m=${m} n=${n} k=${k} tA=${transA} tB=${transB} acc=${accumulate}`);
        }
});

test('matmul: large enough to run on the thread pool', { skip }, () => {
  // Row-tile groups taken dynamically, and (few output tiles, long k) the split-k path with a reduction.
  for (const [m, n, k] of [
    [1500, 131, 129],
    [20, 70, 20000],
  ])
    for (const transA of [false, true])
      for (const transB of [false, true]) {
        const a = rand(m * k);
        const b = rand(k * n);
        const expect = rand(m * n);
        const got = copy(expect);
        ref.matmul(expect, a, b, m, n, k, transA, transB, transA);
        nat.matmul(got, a, b, m, n, k, transA, transB, transA);
        close(got, expect, `matmul ${m}x${n}x${k} transA=${transA} transB=${transB}`);
      }
});

test(
  'softmaxCrossEntropy: loss, dHidden, dItems (accumulated) over chunk and vector-width edges',
  { skip },
  () => {
    const cases = [
      [0, 16, 10],
      [1, 16, 10],
      [1, 1, 2],
      [5, 20, 33],
      [65, 17, 70],
      [70, 64, 500],
      [130, 32, 1001],
      [129, 128, 301],
      [200, 64, 1001], // large enough for the thread pool
    ];
    for (const [rows, d, numItems] of cases) {
      const hidden = randView(rows * d);
      const items = randView(numItems * d);
      const targets = Int32Array.from({ length: rows }, () => 1 + rng.nextInt(numItems - 1));
      const dHidden = [new Float32Array(rows * d), new Float32Array(rows * d).fill(7)];
      const start = rand(numItems * d);
      const dItems = [copy(start), copy(start)];
      const scale = 0.37;
      const lossRef = ref.softmaxCrossEntropy(
        hidden,
        items,
        targets,
        rows,
        d,
        numItems,
        scale,
        dHidden[0],
        dItems[0],
      );
      const lossNat = nat.softmaxCrossEntropy(
        hidden,
        items,
        targets,
        rows,
        d,
        numItems,
        scale,
        dHidden[1],
        dItems[1],
      );
      const what = `softmaxCE rows=${rows} d=${d} items=${numItems}`;
      assert.ok(
        Math.abs(lossNat - lossRef) <= TOL * Math.max(1, Math.abs(lossRef)),
        `${what}: loss ${lossNat} vs ${lossRef}`,
      );
      close(dHidden[1], dHidden[0], `${what} dHidden`);
      close(dItems[1], dItems[0], `${what} dItems`);
    }
  },
);

test('softmaxCrossEntropy on the thread pool is bit-identical from run to run', { skip }, () => {
  const [rows, d, numItems] = [300, 64, 3001];
  const hidden = rand(rows * d);
  const items = rand(numItems * d);
  const targets = Int32Array.from({ length: rows }, () => 1 + rng.nextInt(numItems - 1));
  const runs = [0, 1, 2].map(() => {
    const dHidden = new Float32Array(rows * d);
    const dItems = new Float32Array(numItems * d);
    const loss = nat.softmaxCrossEntropy(hidden, items, targets, rows, d, numItems, 0.01, dHidden, dItems);
    return { loss, dHidden: Buffer.from(dHidden.buffer), dItems: Buffer.from(dItems.buffer) };
  });
  for (const run of runs.slice(1)) {
    assert.equal(run.loss, runs[0].loss);
    assert.ok(run.dHidden.equals(runs[0].dHidden), 'dHidden differs between runs');
    assert.ok(run.dItems.equals(runs[0].dItems), 'dItems differs between runs');
  }
});

test('softmaxCrossEntropy: rejects targets outside 1..numItems-1', { skip }, () => {
  const h = rand(2 * 4);
  const e = rand(5 * 4);
  for (const bad of [0, 5, -1]) {
    assert.throws(
      () =>
        nat.softmaxCrossEntropy(
          h,
          e,
          Int32Array.from([1, bad]),
          2,
          4,
          5,
          1,
          new Float32Array(8),
          new Float32Array(20),
        ),
      /targets\[1\]/,
    );
  }
});

test('native kernels reject short arrays with a named argument', { skip }, () => {
  assert.throws(
    () => nat.matmul(new Float32Array(5), rand(6), rand(6), 2, 3, 3, false, false, false),
    /matmul: out/,
  );
  assert.throws(() => nat.reluForward(new Float32Array(3), new Float32Array(3), 4), /reluForward: out/);
});

test('layerNorm forward and backward', { skip }, () => {
  for (const [rows, d] of [
    [0, 8],
    [1, 1],
    [1, 5],
    [7, 64],
    [300, 100],
    [1000, 128],
    [50000, 100], // large enough for the thread pool
  ]) {
    const x = randView(rows * d, 3);
    const gamma = rand(d);
    const beta = rand(d);
    const out = [new Float32Array(rows * d), new Float32Array(rows * d)];
    const mean = [new Float32Array(rows), new Float32Array(rows)];
    const rstd = [new Float32Array(rows), new Float32Array(rows)];
    ref.layerNormForward(out[0], mean[0], rstd[0], x, gamma, beta, rows, d, 1e-5);
    nat.layerNormForward(out[1], mean[1], rstd[1], x, gamma, beta, rows, d, 1e-5);
    const what = `layerNorm rows=${rows} d=${d}`;
    close(out[1], out[0], `${what} out`);
    close(mean[1], mean[0], `${what} mean`);
    close(rstd[1], rstd[0], `${what} rstd`);
    const dOut = rand(rows * d);
    const dx0 = rand(rows * d);
    const dg0 = rand(d);
    const db0 = rand(d);
    const dx = [copy(dx0), copy(dx0)];
    const dg = [copy(dg0), copy(dg0)];
    const db = [copy(db0), copy(db0)];
    ref.layerNormBackward(dx[0], dg[0], db[0], dOut, x, mean[0], rstd[0], gamma, rows, d);
    nat.layerNormBackward(dx[1], dg[1], db[1], dOut, x, mean[0], rstd[0], gamma, rows, d);
    close(dx[1], dx[0], `${what} dx`);
    close(dg[1], dg[0], `${what} dGamma`);
    close(db[1], db[0], `${what} dBeta`);
  }
});

test('attention forward and backward with left padding (lengths 0, 1, partial, full)', { skip }, () => {
  for (const [T, heads, d] of [
    [1, 1, 4],
    [5, 1, 18],
    [17, 2, 36],
    [64, 1, 64],
  ]) {
    const lengths = Int32Array.from([0, 1, T, Math.max(1, T >> 1), Math.min(T, 3)]);
    const batch = lengths.length;
    const n = batch * T * d;
    const q = rand(n);
    const k = rand(n);
    const v = rand(n);
    const out = [rand(n), rand(n)];
    const att = [rand(batch * heads * T * T), rand(batch * heads * T * T)];
    ref.attentionForward(out[0], att[0], q, k, v, lengths, batch, T, heads, d);
    nat.attentionForward(out[1], att[1], q, k, v, lengths, batch, T, heads, d);
    const what = `attention T=${T} heads=${heads} d=${d}`;
    close(out[1], out[0], `${what} out`);
    close(att[1], att[0], `${what} att`);
    const dOut = rand(n);
    const grads = [0, 1].map(() => [rand(n), rand(n), rand(n)]);
    ref.attentionBackward(
      grads[0][0],
      grads[0][1],
      grads[0][2],
      dOut,
      att[0],
      q,
      k,
      v,
      lengths,
      batch,
      T,
      heads,
      d,
    );
    nat.attentionBackward(
      grads[1][0],
      grads[1][1],
      grads[1][2],
      dOut,
      att[0],
      q,
      k,
      v,
      lengths,
      batch,
      T,
      heads,
      d,
    );
    close(grads[1][0], grads[0][0], `${what} dq`);
    close(grads[1][1], grads[0][1], `${what} dk`);
    close(grads[1][2], grads[0][2], `${what} dv`);
  }
});

test('relu and gelu forward/backward, including large magnitudes', { skip }, () => {
  for (const n of [0, 1, 17, 1000, 70001]) {
    const x = randView(n, 4);
    if (n > 10) x.set([-30, -12, -0.5, 0, 0.5, 12, 30], 3);
    for (const [fwd, bwd] of [
      ['reluForward', 'reluBackward'],
      ['geluForward', 'geluBackward'],
    ] as const) {
      const out = [new Float32Array(n), new Float32Array(n)];
      ref[fwd](out[0], x, n);
      nat[fwd](out[1], x, n);
      close(out[1], out[0], `${fwd} n=${n}`);
      const dOut = rand(n);
      const dx0 = rand(n);
      const dx = [copy(dx0), copy(dx0)];
      ref[bwd](dx[0], dOut, x, n);
      nat[bwd](dx[1], dOut, x, n);
      close(dx[1], dx[0], `${bwd} n=${n}`);
    }
  }
});

test('dropout draws exactly the same mask as the reference', { skip }, () => {
  for (const n of [0, 1, 33, 100003])
    for (const p of [0, 0.3, 0.9])
      for (const seed of [0, 1, 123456789, 4294967295, -5]) {
        const x = rand(n);
        const out = [new Float32Array(n), new Float32Array(n)];
        const mask = [new Uint8Array(n), new Uint8Array(n)];
        ref.dropoutForward(out[0], mask[0], x, n, p, seed);
        nat.dropoutForward(out[1], mask[1], x, n, p, seed);
        assert.deepEqual(mask[1], mask[0], `dropout mask n=${n} p=${p} seed=${seed}`);
        assert.deepEqual(out[1], out[0], `dropout out n=${n} p=${p} seed=${seed}`);
        const dOut = rand(n);
        const dx = [rand(n), rand(n)];
        ref.dropoutBackward(dx[0], dOut, mask[0], n, p);
        nat.dropoutBackward(dx[1], dOut, mask[0], n, p);
        assert.deepEqual(dx[1], dx[0], `dropout backward n=${n} p=${p}`);
        const inPlace = copy(dOut); // the model calls dropoutBackward with dx === dOut
        nat.dropoutBackward(inPlace, inPlace, mask[0], n, p);
        assert.deepEqual(inPlace, dx[0], `dropout backward in place n=${n} p=${p}`);
      }
});

test('dropout split across the thread pool draws the same mask', { skip }, () => {
  const n = 6_500_001;
  const x = rand(n);
  const out = [new Float32Array(n), new Float32Array(n)];
  const mask = [new Uint8Array(n), new Uint8Array(n)];
  ref.dropoutForward(out[0], mask[0], x, n, 0.3, 9);
  nat.dropoutForward(out[1], mask[1], x, n, 0.3, 9);
  assert.ok(Buffer.from(mask[1]).equals(Buffer.from(mask[0])), 'mask');
  assert.ok(Buffer.from(out[1].buffer).equals(Buffer.from(out[0].buffer)), 'out');
});

test('gather and scatterAdd with repeated indices', { skip }, () => {
  for (const [rows, d, tableRows] of [
    [0, 4, 3],
    [1, 1, 1],
    [50, 17, 7],
    [1000, 64, 300],
  ]) {
    const table = rand(tableRows * d);
    const indices = Int32Array.from({ length: rows }, () => rng.nextInt(tableRows));
    const out = [new Float32Array(rows * d), new Float32Array(rows * d)];
    ref.gather(out[0], table, indices, rows, d);
    nat.gather(out[1], table, indices, rows, d);
    assert.deepEqual(out[1], out[0], `gather rows=${rows} d=${d}`);
    const dOut = rand(rows * d);
    const dTable = [copy(table), copy(table)];
    ref.scatterAdd(dTable[0], dOut, indices, rows, d);
    nat.scatterAdd(dTable[1], dOut, indices, rows, d);
    close(dTable[1], dTable[0], `scatterAdd rows=${rows} d=${d}`);
  }
  assert.throws(
    () => nat.gather(new Float32Array(4), rand(8), Int32Array.from([2]), 1, 4),
    /indices\[0\] = 2/,
  );
});

test('adamStep, with and without weight decay', { skip }, () => {
  for (const n of [0, 1, 1000, 100003])
    for (const [step, weightDecay] of [
      [1, 0],
      [10, 0.01],
    ]) {
      const param = [rand(n), rand(n)];
      param[1].set(param[0]);
      const grad = rand(n);
      const m0 = rand(n, 0.1);
      const v0 = rand(n, 0.1).map(Math.abs);
      const m = [copy(m0), copy(m0)];
      const v = [copy(v0), copy(v0)];
      ref.adamStep(param[0], grad, m[0], v[0], n, 1e-3, 0.9, 0.98, 1e-8, step, weightDecay);
      nat.adamStep(param[1], grad, m[1], v[1], n, 1e-3, 0.9, 0.98, 1e-8, step, weightDecay);
      const what = `adam n=${n} step=${step}`;
      close(param[1], param[0], `${what} param`);
      close(m[1], m[0], `${what} m`);
      close(v[1], v[0], `${what} v`);
    }
});

test('clipRowNorms from firstRow', { skip }, () => {
  for (const [rows, d] of [
    [0, 3],
    [1, 1],
    [40, 17],
    [5000, 64],
  ]) {
    const x = [rand(rows * d, 0.3), new Float32Array(rows * d)];
    x[1].set(x[0]);
    ref.clipRowNorms(x[0], rows, d, 0.5, 1);
    nat.clipRowNorms(x[1], rows, d, 0.5, 1);
    close(x[1], x[0], `clipRowNorms rows=${rows} d=${d}`);
  }
});

test('topK: ties by lower index, -Infinity and NaN skipped, short rows padded', { skip }, () => {
  for (const [rows, n, k] of [
    [0, 5, 3],
    [1, 1, 1],
    [3, 10, 0],
    [4, 7, 10],
    [20, 1000, 10],
    [300, 12001, 100],
  ]) {
    const scores = rand(rows * n);
    for (let i = 0; i < scores.length; i++) {
      const u = rng.nextFloat();
      if (u < 0.1) scores[i] = -Infinity;
      else if (u < 0.12) scores[i] = NaN;
      else if (u < 0.3) scores[i] = Math.round(scores[i] * 4) / 4; // many ties
    }
    const idx = [new Int32Array(rows * k), new Int32Array(rows * k)];
    const sc = [new Float32Array(rows * k), new Float32Array(rows * k)];
    ref.topK(idx[0], sc[0], scores, rows, n, k);
    nat.topK(idx[1], sc[1], scores, rows, n, k);
    assert.deepEqual(idx[1], idx[0], `topK indices rows=${rows} n=${n} k=${k}`);
    assert.deepEqual(sc[1], sc[0], `topK scores rows=${rows} n=${n} k=${k}`);
  }
});

/** Packs the items into panels; runs scoreTopK of the reference (idx[0], sc[0]) and native (idx[1], sc[1]) on them. */
function bothScoreTopK(
  states: Float32Array,
  items: Float32Array,
  active: Uint8Array,
  limits: Int32Array,
  rows: number,
  n: number,
  d: number,
  k: number,
): { panels: Float32Array; idx: Int32Array[]; sc: Float32Array[] } {
  const panels = new Float32Array(panelLength(n, d));
  packPanels(items, n, d, panels);
  const idx = [new Int32Array(rows * k), new Int32Array(rows * k)];
  const sc = [new Float32Array(rows * k), new Float32Array(rows * k)];
  ref.scoreTopK(idx[0], sc[0], states, panels, active, limits, rows, n, d, k);
  nat.scoreTopK(idx[1], sc[1], states, panels, active, limits, rows, n, d, k);
  return { panels, idx, sc };
}

test(
  'scoreTopK: native equals the reference (exact scores, ties, k > n, limits, inactive and NaN items, threads)',
  { skip },
  () => {
    // [rows, n, d, k]; the last shapes are large enough for the kernel to split the panels over threads.
    for (const [rows, n, d, k] of [
      [0, 5, 8, 3],
      [1, 1, 4, 1],
      [3, 70, 5, 0],
      [4, 7, 16, 10],
      [7, 130, 33, 5],
      [13, 1000, 128, 10],
      [24, 4000, 128, 50],
      [2, 100000, 128, 10],
    ]) {
      // Small integers: every dot product is exact in both, so scores and the tie order must agree bit for bit.
      const states = Float32Array.from({ length: rows * d }, () => rng.nextInt(3) - 1);
      const items = Float32Array.from({ length: n * d }, () => rng.nextInt(3) - 1);
      if (n > 10) items[5 * d] = NaN; // item 5 scores NaN for every user: never returned
      const active = Uint8Array.from({ length: n }, () => (rng.nextFloat() < 0.05 ? 0 : 1));
      active[0] = 0;
      const limits = Int32Array.from({ length: rows }, (_, r) => (r % 3 === 0 ? n : rng.nextInt(n + 1)));
      const { idx, sc } = bothScoreTopK(states, items, active, limits, rows, n, d, k);
      assert.deepEqual(idx[1], idx[0], `scoreTopK indices rows=${rows} n=${n} d=${d} k=${k}`);
      assert.deepEqual(sc[1], sc[0], `scoreTopK scores rows=${rows} n=${n} d=${d} k=${k}`);
      for (const s of sc[1]) assert.ok(!Number.isNaN(s), 'no NaN returned');
    }
  },
);

test(
  'scoreTopK: random real scores agree with the reference up to rounding; argument checks',
  { skip },
  () => {
    const [rows, n, d, k] = [9, 3001, 64, 20];
    const states = rand(rows * d);
    const items = rand(n * d);
    const active = new Uint8Array(n).fill(1);
    active[0] = 0;
    const limits = new Int32Array(rows).fill(n);
    const { panels, idx, sc } = bothScoreTopK(states, items, active, limits, rows, n, d, k);
    close(sc[1], sc[0], 'scoreTopK scores');
    for (let e = 0; e < rows * k; e++) {
      // An index may differ only where the two candidates score the same within rounding (a near-tie).
      if (idx[1][e] !== idx[0][e]) assert.ok(Math.abs(sc[0][e] - sc[1][e]) < 1e-4, `entry ${e}`);
    }
    assert.throws(
      () => nat.scoreTopK(idx[1], sc[1], states, panels.subarray(64), active, limits, rows, n, d, k),
      /items has length/,
    );
  },
);

test('fmaPeak measures a positive rate', { skip }, () => {
  assert.ok(addon!.fmaPeak(1, 0.01) > 0);
});

// Re-run this file once per other instruction set compiled into the addon (the current CPU must support it).
for (const isa of ['avx2', 'portable']) {
  const childSkip =
    skip ||
    (process.env.DELTAREC_ISA ? 'already a per-ISA child run' : false) ||
    (isa === 'avx2' && addon?.isa() === 'portable' ? 'CPU lacks AVX2' : false);
  test(`the ${isa} build agrees with the reference too`, { skip: childSkip }, () => {
    const file = fileURLToPath(import.meta.url);
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', file], {
      // Without NODE_TEST_CONTEXT (set by a parent `node --test`): with it the child reports to the parent's
      // protocol and runs nothing of its own, so these checks passed without running.
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, DELTAREC_ISA: isa, DELTAREC_NATIVE: '1' },
      encoding: 'utf8',
    });
    assert.equal(
      result.status,
      0,
      `child run with DELTAREC_ISA=${isa} failed:\n${result.stdout}\n${result.stderr}`,
    );
    assert.match(result.stdout, /# pass [1-9]/, 'the child ran the tests');
  });
}
