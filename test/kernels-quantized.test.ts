// scoreTopKQuantized (int8 first pass, exact rescore) against scoreTopK: the same items, scores and order, for the
// reference and the native kernels, on random and adversarial data; and the error bound it relies on. The parent
// run re-runs this file with the other instruction sets (and AVX-512 without VNNI).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadNativeAddon, loadNativeKernels, referenceKernels as ref } from '../src/kernels/index.js';
import { packPanels, panelLength } from '../src/kernels/panels.js';
import {
  emptyQuantized,
  growQuantized,
  itemBounds,
  quantizeQuery,
  quantizeRange,
  quantizeRows,
  type QuantizedItems,
} from '../src/kernels/quantized.js';
import type { Kernels } from '../src/kernels/types.js';
import { Random } from '../src/util/random.js';

const nat = loadNativeKernels() as Kernels | null;
const addon = loadNativeAddon();
const skip = nat
  ? false
  : 'native addon not built (build/Release/deltarec_native.node); run `npm run install`';
const rng = new Random(2026);

function gaussian(n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.nextGaussian() * scale);
}

function quantize(items: Float32Array, n: number, d: number): QuantizedItems {
  const q = growQuantized(emptyQuantized(), n, d);
  quantizeRange(items, 0, n, d, q);
  return q;
}

interface Case {
  name: string;
  states: Float32Array;
  items: Float32Array;
  active: Uint8Array;
  limits: Int32Array;
  rows: number;
  n: number;
  d: number;
  k: number;
}

function allActive(n: number): Uint8Array {
  const active = new Uint8Array(n).fill(1);
  active[0] = 0;
  return active;
}

/** Runs the exact and the quantized kernel of `K` on a case; asserts the same answer bit for bit. */
function assertSameAsExact(K: Kernels, c: Case, quantized = quantize(c.items, c.n, c.d)): Int32Array {
  const { states, items, active, limits, rows, n, d, k } = c;
  const panels = new Float32Array(panelLength(n, d));
  packPanels(items, n, d, panels);
  const exactIdx = new Int32Array(rows * k);
  const exactSc = new Float32Array(rows * k);
  K.scoreTopK(exactIdx, exactSc, states, panels, active, limits, rows, n, d, k);
  const idx = new Int32Array(rows * k).fill(7);
  const sc = new Float32Array(rows * k).fill(7);
  const candidates = new Int32Array(rows);
  const { codes, scales, residuals, norms } = quantized;
  K.scoreTopKQuantized(
    idx,
    sc,
    candidates,
    states,
    codes,
    scales,
    residuals,
    norms,
    items,
    active,
    limits,
    rows,
    n,
    d,
    k,
  );
  assert.deepEqual(idx, exactIdx, `${K.name} ${c.name}: indices`);
  assert.deepEqual(sc, exactSc, `${K.name} ${c.name}: scores`);
  return candidates;
}

function cases(): Case[] {
  const out: Case[] = [];
  const plain = (
    name: string,
    rows: number,
    n: number,
    d: number,
    k: number,
    items = gaussian(n * d),
  ): Case => ({
    name,
    states: gaussian(rows * d),
    items,
    active: allActive(n),
    limits: new Int32Array(rows).fill(n),
    rows,
    n,
    d,
    k,
  });
  out.push(plain('random d=128', 7, 3000, 128, 10));
  out.push(plain('random odd d', 5, 1001, 37, 25));
  out.push(plain('tiny', 2, 3, 4, 1));
  // 17 rows, d a multiple of 64: AMX tiles of 16 rows where the CPU has them (a full one and a partial one).
  out.push(plain('many rows d=64', 17, 3000, 64, 12));
  out.push(plain('k larger than the catalog', 3, 50, 16, 80));
  // Near-ties: every row is one base row plus a perturbation far below the int8 step; duplicates of some rows.
  {
    const [n, d] = [2000, 64];
    const base = gaussian(d);
    const items = new Float32Array(n * d);
    for (let j = 0; j < n; j++)
      for (let p = 0; p < d; p++) items[j * d + p] = base[p] * (1 + 1e-6 * rng.nextGaussian());
    for (let j = 100; j < 200; j++) items.copyWithin(j * d, 50 * d, 51 * d); // exact duplicates: exact ties
    out.push({ ...plain('near-ties and duplicates', 6, n, d, 30, items), states: gaussian(6 * d) });
  }
  // Many exact duplicates of the best row: the tie order (lower index first) decides the answer.
  {
    const [n, d] = [600, 32];
    const items = gaussian(n * d);
    for (let j = 1; j < n; j += 3) items.copyWithin(j * d, 0, d);
    out.push(plain('exact ties everywhere', 4, n, d, 50, items));
  }
  // Huge and small norms side by side, zero rows, a NaN row and an infinite row.
  {
    const [n, d] = [1500, 48];
    const items = gaussian(n * d);
    for (let j = 0; j < n; j++) {
      const scale = 10 ** (rng.nextInt(61) - 30);
      for (let p = 0; p < d; p++) items[j * d + p] *= scale;
    }
    items.fill(0, 10 * d, 11 * d);
    items[20 * d + 3] = NaN;
    items[30 * d + 5] = Infinity;
    items.fill(3e38, 40 * d, 41 * d); // overflows to Infinity in the dot product
    const c = plain('huge and small norms, NaN and Infinity rows', 5, n, d, 20, items);
    c.states.fill(0, 0, d); // a zero state: every score 0, ties everywhere
    for (let p = 0; p < d; p++) c.states[d + p] *= 1e25; // a huge state
    out.push(c);
  }
  // Few eligible items: limits, inactive rows, k larger than what is eligible.
  {
    const [rows, n, d] = [6, 2500, 64];
    const c = plain('few eligible', rows, n, d, 40);
    c.active = Uint8Array.from({ length: n }, () => (rng.nextFloat() < 0.995 ? 0 : 1));
    c.active[0] = 0;
    c.limits = Int32Array.from({ length: rows }, (_, r) => [n, 0, 1, 70, 1000, n][r]);
    out.push(c);
  }
  // Large enough for the native kernel to split the panels over threads (with AMX tiles where the CPU has them, and
  // with d = 120, which AMX does not take, on VNNI).
  out.push(plain('threads', 16, 60000, 128, 20));
  out.push(plain('threads d=120', 14, 60000, 120, 20));
  return out;
}

test('itemBounds: the exact fp32 scores (reference and native) lie within [lb, ub]', () => {
  for (const [n, d] of [
    [400, 128],
    [300, 5],
    [300, 33],
  ]) {
    const items = gaussian(n * d);
    for (let j = 0; j < n; j++) {
      const scale = 10 ** (rng.nextInt(21) - 10) * (j % 7 === 0 ? 1e-3 : 1);
      for (let p = 0; p < d; p++) items[j * d + p] *= scale * (p % 5 === 0 ? 50 : 1); // spiky rows
    }
    const quantized = quantize(items, n, d);
    const panels = new Float32Array(panelLength(n, d));
    packPanels(items, n, d, panels);
    const active = new Uint8Array(n).fill(1);
    for (let trial = 0; trial < 20; trial++) {
      const q = gaussian(d, 10 ** (rng.nextInt(9) - 4));
      const query = quantizeQuery(q, d);
      for (const K of nat ? [ref, nat] : [ref]) {
        const idx = new Int32Array(n);
        const sc = new Float32Array(n);
        K.scoreTopK(idx, sc, q, panels, active, new Int32Array([n]), 1, n, d, n);
        let width = 0;
        for (let e = 0; e < n; e++) {
          const [lb, ub] = itemBounds(query, quantized, idx[e], d);
          assert.ok(lb <= sc[e] && sc[e] <= ub, `${K.name} item ${idx[e]}: ${lb} <= ${sc[e]} <= ${ub}`);
          const x = items.subarray(idx[e] * d, idx[e] * d + d);
          width = Math.max(width, (ub - lb) / (Math.hypot(...q) * Math.hypot(...x)));
        }
        // Not just infinite: within a small fraction of the Cauchy-Schwarz range [-||q|| ||x||, ||q|| ||x||].
        assert.ok(width < 0.1, `bounds are useful: width ${width} of ||q|| ||x||`);
      }
    }
  }
});

test('scoreTopKQuantized (reference) equals scoreTopK (reference) on random and adversarial data', () => {
  for (const c of cases()) {
    if (c.name.startsWith('threads')) continue; // the reference scores 60k items per row twice: slow, and no threads
    assertSameAsExact(ref, c);
  }
});

test(
  'scoreTopKQuantized (native) equals scoreTopK (native); candidates are few on random data',
  { skip },
  () => {
    for (const c of cases()) {
      const candidates = assertSameAsExact(nat!, c);
      if (c.name.startsWith('threads')) {
        for (const count of candidates) assert.ok(count >= c.k && count < c.n / 20, `candidates ${count}`);
      }
    }
  },
);

test(
  'native and reference quantized kernels agree bit for bit where the dot products are exact',
  { skip },
  () => {
    const [rows, n, d, k] = [9, 5000, 40, 15];
    // Small integers: exact in float and double, so both exact paths give the same scores and tie order.
    const items = Float32Array.from({ length: n * d }, () => rng.nextInt(5) - 2);
    const states = Float32Array.from({ length: rows * d }, () => rng.nextInt(5) - 2);
    const active = allActive(n);
    const limits = Int32Array.from({ length: rows }, () => 1 + rng.nextInt(n));
    const q = quantize(items, n, d);
    const out = [0, 1].map(() => ({
      idx: new Int32Array(rows * k),
      sc: new Float32Array(rows * k),
      cand: new Int32Array(rows),
    }));
    [ref, nat!].forEach((K, i) =>
      K.scoreTopKQuantized(
        out[i].idx,
        out[i].sc,
        out[i].cand,
        states,
        q.codes,
        q.scales,
        q.residuals,
        q.norms,
        items,
        active,
        limits,
        rows,
        n,
        d,
        k,
      ),
    );
    assert.deepEqual(out[1].idx, out[0].idx);
    assert.deepEqual(out[1].sc, out[0].sc);
  },
);

test(
  'quantized rows: appended and re-encoded rows equal a fresh quantization; the kernel checks lengths',
  { skip },
  () => {
    const [n, d] = [300, 24];
    const items = gaussian(n * d);
    let grown = growQuantized(emptyQuantized(), 100, d);
    quantizeRange(items, 0, 100, d, grown);
    grown = growQuantized(grown, n, d); // an append: earlier rows keep their codes
    quantizeRange(items, 100, n, d, grown);
    items.set(gaussian(d), 42 * d); // a row updated in place
    quantizeRows(items, [42], d, grown);
    const fresh = quantize(items, n, d);
    assert.deepEqual(grown.codes.subarray(0, fresh.codes.length), fresh.codes);
    assert.deepEqual(grown.scales.subarray(0, n), fresh.scales.subarray(0, n));
    assert.deepEqual(grown.residuals.subarray(0, n), fresh.residuals.subarray(0, n));
    const c: Case = {
      name: 'grown',
      states: gaussian(3 * d),
      items,
      active: allActive(n),
      limits: new Int32Array(3).fill(n),
      rows: 3,
      n,
      d,
      k: 7,
    };
    assertSameAsExact(nat!, c, grown);
    const idx = new Int32Array(3 * 7);
    const sc = new Float32Array(3 * 7);
    assert.throws(
      () =>
        nat!.scoreTopKQuantized(
          idx,
          sc,
          new Int32Array(3),
          c.states,
          fresh.codes.subarray(64),
          fresh.scales,
          fresh.residuals,
          fresh.norms,
          items,
          c.active,
          c.limits,
          3,
          n,
          d,
          7,
        ),
      /codes has length/,
    );
    assert.throws(
      () =>
        nat!.scoreTopKQuantized(
          idx,
          sc,
          new Int32Array(3),
          c.states,
          fresh.codes,
          fresh.scales.subarray(0, n),
          fresh.residuals,
          fresh.norms,
          items,
          c.active,
          c.limits,
          3,
          n,
          d,
          7,
        ),
      /scales has length/,
    );
  },
);

test('quantizeItems: native codes, scales and norms equal the reference bit for bit', { skip }, () => {
  for (const [n, d] of [
    [300, 128],
    [130, 37],
  ]) {
    const items = gaussian(n * d);
    for (let j = 0; j < n; j++) {
      const scale = 10 ** (rng.nextInt(41) - 20);
      for (let p = 0; p < d; p++) items[j * d + p] *= scale;
    }
    items.fill(0, 3 * d, 4 * d);
    items[5 * d + 2] = NaN;
    items[6 * d] = -Infinity;
    for (let p = 0; p < d; p += 3) items[7 * d + p] = 127.5 * 2 ** -10; // exactly half-way codes
    items[7 * d + 1] = -127 * 2 ** -10;
    const [a, b] = [ref, nat!].map((K) => {
      const q = growQuantized(emptyQuantized(), n, d);
      K.quantizeItems(q.codes, q.scales, q.residuals, q.norms, items, 0, 100, d);
      K.quantizeItems(q.codes, q.scales, q.residuals, q.norms, items, 100, n, d);
      return q;
    });
    assert.deepEqual(b.codes, a.codes, `codes n=${n} d=${d}`);
    assert.deepEqual(b.scales, a.scales, `scales n=${n} d=${d}`);
    assert.deepEqual(b.residuals, a.residuals, `residuals n=${n} d=${d}`);
    assert.deepEqual(b.norms, a.norms, `norms n=${n} d=${d}`);
  }
  const q = growQuantized(emptyQuantized(), 10, 8);
  assert.throws(
    () =>
      nat!.quantizeItems(q.codes.subarray(1), q.scales, q.residuals, q.norms, new Float32Array(80), 0, 10, 8),
    /codes has length/,
  );
  assert.throws(
    () => nat!.quantizeItems(q.codes, q.scales, q.residuals, q.norms, new Float32Array(79), 0, 10, 8),
    /matrix has length/,
  );
});

/**
 * Runs `scanQuantized` of K over the case in chunks of `chunk` items (a multiple of 64), starting at chunk `start`
 * and wrapping around, with row r's width ks[r]; returns each row's list padded to its width.
 */
function scanInChunks(
  K: Kernels,
  c: Case,
  ks: number[],
  chunk: number,
  start: number,
  q = quantize(c.items, c.n, c.d),
) {
  const { states, items, active, limits, rows, n, d } = c;
  const offsets = new Int32Array(rows + 1);
  ks.forEach((k, r) => (offsets[r + 1] = offsets[r] + k));
  const total = offsets[rows];
  const lower = new Float32Array(total).fill(5);
  const idx = new Int32Array(total).fill(7);
  const sc = new Float32Array(total).fill(7);
  const [lowerCount, count, candidates] = [0, 0, 0].map(() => new Int32Array(rows));
  const chunks = Math.ceil(n / chunk);
  for (let i = 0; i < chunks; i++) {
    const from = ((start + i) % chunks) * chunk;
    const to = Math.min(n, from + chunk);
    K.scanQuantized(
      lower,
      lowerCount,
      idx,
      sc,
      count,
      candidates,
      offsets,
      states,
      q.codes,
      q.scales,
      q.residuals,
      q.norms,
      items,
      active,
      limits,
      rows,
      n,
      d,
      from,
      to,
    );
  }
  return ks.map((k, r) => {
    const o = offsets[r];
    for (let e = count[r]; e < k; e++) [idx[o + e], sc[o + e]] = [-1, -Infinity];
    return { indices: idx.subarray(o, o + k), scores: sc.subarray(o, o + k), candidates: candidates[r] };
  });
}

/** scanQuantized in chunks from several starts, rows of different widths: each row's list is scoreTopK's. */
function assertScanSameAsExact(K: Kernels, c: Case): void {
  const { states, items, active, limits, rows, n, d } = c;
  const ks = Array.from({ length: rows }, (_, r) => Math.max(1, c.k - 3 * r));
  const kmax = Math.max(...ks);
  const panels = new Float32Array(panelLength(n, d));
  packPanels(items, n, d, panels);
  const exactIdx = new Int32Array(rows * kmax);
  const exactSc = new Float32Array(rows * kmax);
  K.scoreTopK(exactIdx, exactSc, states, panels, active, limits, rows, n, d, kmax);
  const q = quantize(items, n, d);
  const panelsTotal = Math.ceil(n / 64);
  for (const chunkPanels of [1, 3, Math.max(1, Math.ceil(panelsTotal / 2)), panelsTotal]) {
    const chunks = Math.ceil(panelsTotal / chunkPanels);
    for (const start of new Set([0, chunks - 1, rng.nextInt(chunks)])) {
      const lists = scanInChunks(K, c, ks, chunkPanels * 64, start, q);
      lists.forEach((list, r) => {
        const label = `${K.name} ${c.name}, chunks of ${chunkPanels * 64} from ${start}, row ${r}`;
        assert.deepEqual(list.indices, exactIdx.subarray(r * kmax, r * kmax + ks[r]), `${label}: indices`);
        assert.deepEqual(list.scores, exactSc.subarray(r * kmax, r * kmax + ks[r]), `${label}: scores`);
      });
    }
  }
}

test('scanQuantized (reference) in chunks, from any start, equals scoreTopK (reference)', () => {
  for (const c of cases()) {
    if (c.name.startsWith('threads')) continue;
    assertScanSameAsExact(ref, c);
  }
});

test(
  'scanQuantized (native) in chunks, from any start, equals scoreTopK (native); candidates are few',
  { skip },
  () => {
    for (const c of cases()) {
      assertScanSameAsExact(nat!, c);
      if (c.name.startsWith('threads')) {
        for (const list of scanInChunks(nat!, c, new Array<number>(c.rows).fill(c.k), 4096, 5))
          assert.ok(list.candidates >= c.k && list.candidates < c.n / 20, `candidates ${list.candidates}`);
      }
    }
  },
);

test(
  'scanQuantized (native): rows appended, re-encoded and retired between two scans are in the second',
  { skip },
  () => {
    // Rows appended after a request started are beyond its limit; a request started after a change sees it.
    const [n0, n1, d, k] = [3000, 3500, 32, 12];
    const items = gaussian(n1 * d);
    let q = growQuantized(emptyQuantized(), n0, d);
    quantizeRange(items, 0, n0, d, q);
    const active = allActive(n1);
    const base: Case = {
      name: 'changes',
      states: gaussian(2 * d),
      items,
      active,
      limits: new Int32Array([n0, n0]),
      rows: 2,
      n: n0,
      d,
      k,
    };
    const before = scanInChunks(nat!, base, [k, k], 640, 2, q);
    q = growQuantized(q, n1, d);
    quantizeRange(items, n0, n1, d, q);
    items.set(gaussian(d, 4), 17 * d); // re-encoded: likely in the top now
    quantizeRows(items, [17], d, q);
    active[before[0].indices[0]] = 0; // the old best retired
    const after: Case = { ...base, limits: new Int32Array([n1, n1]), n: n1 };
    assertSameAsExact(nat!, after, q);
    assertScanSameAsExact(nat!, after); // from a fresh quantization, which the grown one equals
    const lists = scanInChunks(nat!, after, [k, k], 640, 3, q);
    const panels = new Float32Array(panelLength(n1, d));
    packPanels(items, n1, d, panels);
    const [idx, sc] = [new Int32Array(2 * k), new Float32Array(2 * k)];
    nat!.scoreTopK(idx, sc, after.states, panels, active, after.limits, 2, n1, d, k);
    lists.forEach((list, r) => {
      assert.deepEqual(list.indices, idx.subarray(r * k, r * k + k));
      assert.deepEqual(list.scores, sc.subarray(r * k, r * k + k));
    });
    assert.ok(!lists[0].indices.includes(before[0].indices[0]), 'the retired row is gone');
  },
);

// Re-run this file with the other compiled instruction sets, and on AVX-512 without the VNNI path and without AMX.
for (const [key, value] of [
  ['DELTAREC_ISA', 'avx2'],
  ['DELTAREC_ISA', 'portable'],
  ['DELTAREC_VNNI', '0'],
  ['DELTAREC_AMX', '0'],
]) {
  const childSkip =
    skip ||
    (process.env.DELTAREC_ISA || process.env.DELTAREC_VNNI || process.env.DELTAREC_AMX
      ? 'already a child run'
      : false) ||
    (value === 'avx2' && addon?.isa() === 'portable' ? 'CPU lacks AVX2' : false);
  test(`the native kernel with ${key}=${value} equals the exact path too`, { skip: childSkip }, () => {
    const file = fileURLToPath(import.meta.url);
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', file], {
      // Without NODE_TEST_CONTEXT (set by a parent `node --test`), which would make the child report to the
      // parent's protocol instead of running as a run of its own.
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, [key]: value, DELTAREC_NATIVE: '1' },
      encoding: 'utf8',
    });
    assert.equal(
      result.status,
      0,
      `child run with ${key}=${value} failed:\n${result.stdout}\n${result.stderr}`,
    );
    assert.match(result.stdout, /# pass [1-9]/, 'the child ran the tests');
  });
}
