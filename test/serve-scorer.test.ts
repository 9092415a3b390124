import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { packBatch, ScoringEngine, InlineBackend, type ScoreRequest } from '../src/serve/engine.js';
import { SharedScan } from '../src/serve/scan.js';
import { Scorer } from '../src/serve/scorer.js';
import { Random } from '../src/util/random.js';

const d = 16;

function unitRows(rows: number, rng: Random): Float32Array {
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    let norm = 0;
    for (let j = 0; j < d; j++) norm += (out[r * d + j] = rng.nextGaussian()) ** 2;
    for (let j = 0; j < d; j++) out[r * d + j] /= Math.sqrt(norm);
  }
  return out;
}

function model(numItems: number, rng: Random): SASRec {
  const content = new Float32Array((numItems + 1) * d);
  content.set(unitRows(numItems, rng), d);
  return new SASRec(sasrecConfig({ numItems, d, maxLength: 8, seed: 2 }), content);
}

/** Top-k by brute force from the model's own full scores. */
function bruteForce(m: SASRec, numWarm: number, request: ScoreRequest, retired: Set<number>): number[] {
  const n = m.numItems + 1;
  const scores = new Float32Array(n);
  m.score([request.history], scores);
  const banned = new Set([
    0,
    ...retired,
    ...request.exclude,
    ...(request.excludeSeen ? request.history : []),
  ]);
  const limit = request.includeCold ? n : numWarm + 1;
  return Array.from({ length: limit }, (_, i) => i)
    .filter((i) => !banned.has(i))
    .sort((a, b) => scores[b] - scores[a] || a - b)
    .slice(0, request.k);
}

test('batched scoring equals per-request brute force, through appends and retirements', async () => {
  const rng = new Random(4);
  const numWarm = 70; // 70 warm rows + 3 cold rows: 74 rows, not a multiple of the column padding
  const m = model(numWarm, rng);
  m.appendItems(unitRows(3, rng), 3);
  const scorer = new Scorer(m, numWarm);
  const requests: ScoreRequest[] = Array.from({ length: 9 }, (_, r) => ({
    history: Int32Array.from({ length: 1 + (r % 12) }, () => 1 + rng.nextInt(m.numItems)),
    exclude: Int32Array.from({ length: r % 3 }, () => 1 + rng.nextInt(m.numItems)),
    k: 1 + ((r * 5) % 20),
    includeCold: r % 2 === 0,
    excludeSeen: r % 4 !== 3,
  }));
  const check = (retired: Set<number>) => {
    const result = scorer.score(packBatch(requests));
    requests.forEach((request, r) => {
      const got = Array.from(result.indices.subarray(result.resultOffsets[r], result.resultOffsets[r + 1]));
      assert.deepEqual(got, bruteForce(m, numWarm, request, retired), `request ${r}`);
    });
  };
  check(new Set());
  // New rows are scored at once; retired rows never come back.
  scorer.appendItems(unitRows(2, rng), 2);
  scorer.retire([5, 72]);
  check(new Set([5, 72]));
  // Rows re-encoded in place, and enough new rows to open another panel of the item matrix (64 items each).
  scorer.replaceItems(Int32Array.from([2, 40]), unitRows(2, rng));
  scorer.appendItems(unitRows(60, rng), 60);
  check(new Set([5, 72]));

  // The engine (inline backend) batches concurrent requests and returns the same answers.
  const engine = new ScoringEngine([new InlineBackend(scorer)], { maxBatch: 4 });
  const answers = await Promise.all(requests.map((request) => engine.recommend(request)));
  answers.forEach((answer, r) =>
    assert.deepEqual(Array.from(answer.indices), bruteForce(m, numWarm, requests[r], new Set([5, 72]))),
  );
  assert.equal(engine.stats.requests, requests.length);
  // Changes queued through the engine (an update: append + retire, and a delete) apply before the next batch.
  engine.append(unitRows(1, rng), 1);
  engine.retire(3);
  engine.retire(10);
  const wide = { ...requests[0], k: 100, includeCold: true };
  const changed = await engine.recommend(wide);
  assert.deepEqual(Array.from(changed.indices), bruteForce(m, numWarm, wide, new Set([5, 72, 3, 10])));
  assert.ok(changed.indices.includes(m.numItems), 'the appended row is ranked');
  assert.ok(
    engine.stats.maxBatch > 1 && engine.stats.maxBatch <= 4,
    `batches of at most 4 (got ${engine.stats.maxBatch})`,
  );
});

/** A model with near-ties and exact ties: blocks of duplicated and barely perturbed rows. */
function tiedModel(): SASRec {
  const rng = new Random(8);
  const numItems = 300;
  const content = new Float32Array((numItems + 1) * d);
  content.set(unitRows(numItems, rng), d);
  for (let j = 100; j < 160; j++) content.copyWithin(j * d, 99 * d, 100 * d);
  for (let j = 160; j < 220; j++)
    for (let p = 0; p < d; p++) content[j * d + p] = content[99 * d + p] * (1 + 1e-7 * (j - 160));
  return new SASRec(sasrecConfig({ numItems, d, maxLength: 8, seed: 2 }), content);
}

function tiedRequests(): ScoreRequest[] {
  const rng = new Random(9);
  return Array.from({ length: 12 }, (_, r) => ({
    history: Int32Array.from({ length: 1 + (r % 8) }, () => 1 + rng.nextInt(300)),
    exclude: Int32Array.from({ length: r % 4 }, () => 1 + rng.nextInt(300)),
    k: [1, 5, 20, 80, 400][r % 5], // 400: more than the eligible items
    includeCold: r % 3 !== 0,
    excludeSeen: r % 2 === 0,
  }));
}

/** The same catalog changes on every scorer: appends and retirements, then re-encodings and mass retirements. */
const changes = [
  (s: Scorer) => {
    s.appendItems(unitRows(70, new Random(10)), 70); // opens another panel
    s.retire([5, 100, 101, 301]);
  },
  (s: Scorer) => {
    s.replaceItems(Int32Array.from([2, 100, 350]), unitRows(3, new Random(11))); // 100 retired: back again
    s.retire(Array.from({ length: 360 }, (_, i) => i).filter((i) => i % 50 !== 7)); // all but a few
  },
];

test('the int8 first pass answers exactly as the fp32 path: same items, scores and order, through appends, retirements and re-encodings', () => {
  // Two identical models (the scorers change their model on append), one scorer per path.
  const exact = new Scorer(tiedModel(), 280, null, false);
  const quantized = new Scorer(tiedModel(), 280, null, true);
  const requests = tiedRequests();
  const check = (label: string) => {
    const want = exact.score(packBatch(requests));
    const got = quantized.score(packBatch(requests));
    assert.deepEqual(got.resultOffsets, want.resultOffsets, `${label}: lengths`);
    assert.deepEqual(got.indices, want.indices, `${label}: items`);
    assert.deepEqual(got.scores, want.scores, `${label}: scores`);
    const wanted = requests.map((q) => q.k).reduce((a, b) => a + b, 0);
    assert.ok(
      want.indices.length > 0 && want.indices.length < wanted,
      `${label}: some requests run out of items`,
    );
    assert.equal(quantized.candidates.length, requests.length, `${label}: the quantized path was used`);
  };
  check('at load');
  for (const s of [exact, quantized]) changes[0](s);
  check('after appends and retirements');
  for (const s of [exact, quantized]) changes[1](s);
  check('after re-encodings, and with all but a few items retired');
});

test('the shared scan answers exactly as the fp32 path, whichever chunk a request joins at, through catalog changes', () => {
  const exact = new Scorer(tiedModel(), 280, null, false);
  const quantized = new Scorer(tiedModel(), 280, null, true);
  const scan = new SharedScan(quantized, 64); // 5 to 6 chunks
  const requests = tiedRequests();
  const check = (label: string, perStep: number) => {
    const want = exact.score(packBatch(requests));
    const got: [Int32Array, Float32Array][] = [];
    // perStep requests join before each step: they start at different chunks and overlap in the scan.
    let steps = 0;
    for (let r = 0; r < requests.length; r += perStep) {
      const group = requests.slice(r, r + perStep);
      scan.join(packBatch(group), (i, indices, scores) => (got[r + i] = [indices, scores]));
      scan.step();
      steps++;
    }
    assert.ok(scan.size > 1, `${label}: requests overlap in the scan (${scan.size} in it)`);
    while (scan.size > 0) {
      scan.step();
      steps++;
    }
    const chunks = Math.ceil(quantized.rows / 64);
    assert.ok(steps < chunks + requests.length, `${label}: ${steps} steps for ${chunks} chunks`);
    requests.forEach((_, r) => {
      const [from, to] = [want.resultOffsets[r], want.resultOffsets[r + 1]];
      assert.deepEqual(got[r][0], want.indices.subarray(from, to), `${label}, request ${r}: items`);
      assert.deepEqual(got[r][1], want.scores.subarray(from, to), `${label}, request ${r}: scores`);
    });
  };
  check('at load, one request per step', 1);
  check('at load, three per step', 3);
  for (const s of [exact, quantized]) changes[0](s);
  check('after appends and retirements', 2);
  for (const s of [exact, quantized]) changes[1](s);
  check('after re-encodings, and with all but a few items retired', 1);
  assert.throws(() => new SharedScan(exact), /not on the int8 path/);
});
