/**
 * The serving path (latency-aware micro-batching, the scoring worker's per-request answers, last-position
 * inference) against one request at a time through the full forward and a float64 brute-force ranking.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import type { SASRec } from '../src/model/sasrec.js';
import {
  InlineBackend,
  ScoringEngine,
  ScoringUnavailableError,
  WorkerBackend,
  type ScoreBackend,
  type ScoreRequest,
  type ScoreResponse,
} from '../src/serve/engine.js';
import { loadScoringModel } from '../src/serve/models.js';
import { Scorer } from '../src/serve/scorer.js';
import { Random } from '../src/util/random.js';
import { buildFixtureModel } from './serve-fixture.js';

let dir = '';
let model: SASRec;
let numWarm = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'deltarec-batching-'));
  await buildFixtureModel(dir, { epochs: 1 });
  const loaded = await loadScoringModel(dir);
  model = loaded.model as SASRec;
  numWarm = loaded.numWarm;
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** 1,000 requests: histories up to 2.5x the model's length, cold items, exclusions, k and flags varied. */
function randomRequests(count: number, seed: number): ScoreRequest[] {
  const rng = new Random(seed);
  const numItems = model.numItems;
  const longest = Math.ceil(2.5 * model.config.maxLength);
  return Array.from({ length: count }, () => ({
    history: Int32Array.from({ length: 1 + rng.nextInt(longest) }, () =>
      // One item in five is cold (appended after training).
      rng.nextFloat() < 0.2 ? numWarm + 1 + rng.nextInt(numItems - numWarm) : 1 + rng.nextInt(numWarm),
    ),
    exclude: Int32Array.from({ length: rng.nextInt(4) }, () => 1 + rng.nextInt(numItems)),
    k: 1 + rng.nextInt(20),
    includeCold: rng.nextFloat() < 0.7,
    excludeSeen: rng.nextFloat() < 0.8,
  }));
}

/** One request alone: the full forward's state, float64 scores of every row, masked, sorted. */
function reference(request: ScoreRequest): { ids: number[]; scores: Float64Array } {
  return referenceOn(model, request, new Set());
}

/** reference() on a given model, with retired rows. */
function referenceOn(
  model: SASRec,
  request: ScoreRequest,
  retired: Set<number>,
): { ids: number[]; scores: Float64Array } {
  const d = model.config.d;
  const state = new Float32Array(d);
  model.encodeAllPositions([request.history], state);
  const e = model.itemEmbeddings();
  const n = model.numItems + 1;
  const scores = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += state[j] * e[i * d + j];
    scores[i] = s;
  }
  const banned = new Set([
    0,
    ...retired,
    ...request.exclude,
    ...(request.excludeSeen ? request.history : []),
  ]);
  const limit = request.includeCold ? n : numWarm + 1;
  const ids = Array.from({ length: limit }, (_, i) => i)
    .filter((i) => !banned.has(i))
    .sort((a, b) => scores[b] - scores[a] || a - b)
    .slice(0, request.k);
  return { ids, scores };
}

/**
 * Same ids and scores within 1e-5. Where float rounding may legitimately swap two items, an id may differ only
 * if the reference scores it within 1e-5 of the reference's item at that rank (a tie); returns those swaps.
 */
function assertSameAnswer(got: ScoreResponse, request: ScoreRequest, what: string): number {
  const want = reference(request);
  assert.equal(got.indices.length, want.ids.length, `${what}: answer length`);
  let ties = 0;
  for (let i = 0; i < want.ids.length; i++) {
    const wantScore = want.scores[want.ids[i]];
    assert.ok(
      Math.abs(got.scores[i] - wantScore) <= 1e-5,
      `${what} rank ${i}: score ${got.scores[i]} vs ${wantScore}`,
    );
    if (got.indices[i] !== want.ids[i]) {
      assert.ok(
        Math.abs(want.scores[got.indices[i]] - wantScore) <= 1e-5,
        `${what} rank ${i}: row ${got.indices[i]} instead of ${want.ids[i]}`,
      );
      ties++;
    }
  }
  return ties;
}

async function checkEngine(backends: ScoreBackend[], what: string, scans = false): Promise<void> {
  const engine = new ScoringEngine(backends, { maxBatch: 64, batchBudgetMs: 50 });
  try {
    const requests = randomRequests(1000, 11);
    // All at once: the engine batches them (the first alone, the rest as the backend frees up).
    const answers = await Promise.all(requests.map((r) => engine.recommend(r)));
    let ties = 0;
    answers.forEach((answer, r) => (ties += assertSameAnswer(answer, requests[r], `${what} request ${r}`)));
    assert.ok(ties <= 5, `${what}: ${ties} near-tie swaps`);
    assert.equal(engine.stats.requests, 1000);
    if (scans) assert.equal(engine.stats.batches, 1000, `${what}: each request was sent at once`);
    else
      assert.ok(
        engine.stats.maxBatch > 1,
        `${what}: requests were batched (largest batch ${engine.stats.maxBatch})`,
      );
    for (const { stages } of answers) {
      for (const [stage, seconds] of Object.entries(stages))
        assert.ok(seconds >= 0 && seconds < 60, `${what}: stage ${stage} took ${seconds} s`);
    }
    // One request at a time gives the same answers as the batches.
    for (const r of [0, 1, 2, 500, 999])
      assertSameAnswer(await engine.recommend(requests[r]), requests[r], what);
  } finally {
    await engine.close();
  }
}

test('batched answers equal one-at-a-time full-forward answers over 1,000 histories (worker)', async () => {
  const worker = new WorkerBackend(dir);
  await worker.ready;
  await checkEngine([worker], 'worker');
});

test('two scoring workers (native kernels running concurrently in two threads) give the same answers', async () => {
  const workers = [new WorkerBackend(dir), new WorkerBackend(dir)];
  await Promise.all(workers.map((w) => w.ready));
  await checkEngine(workers, 'two workers');
});

test('a worker answering by the shared scan (int8 path, chunks of 64 items) gives the same answers', async () => {
  const worker = new WorkerBackend(dir, { quantized: true, chunk: 64 });
  await worker.ready;
  assert.ok(worker.scans, 'the worker scans');
  await checkEngine([worker], 'scanning worker', true);
});

test('two scanning workers share the requests and give the same answers', async () => {
  const workers = [0, 1].map(() => new WorkerBackend(dir, { quantized: true, chunk: 128 }));
  await Promise.all(workers.map((w) => w.ready));
  await checkEngine(workers, 'two scanning workers', true);
});

test('the shared scan keeps catalog changes in order with requests', async () => {
  // Requests sent before a change do not see it, requests sent after it do, while requests are in the scan.
  const local = (await loadScoringModel(dir)).model as SASRec;
  const worker = new WorkerBackend(dir, { quantized: true, chunk: 64 });
  await worker.ready;
  const engine = new ScoringEngine([worker]);
  try {
    const width = local.config.contentDim ?? local.config.d;
    const rng = new Random(5);
    const expect = (requests: ScoreRequest[], retired: Set<number>) =>
      requests.map((request) => {
        const want = referenceOn(local, request, retired);
        return { request, want };
      });
    const before = expect(randomRequests(60, 21), new Set());
    const pending = before.map(({ request }) => engine.recommend(request));
    // A burst of changes while those are in the scan: 70 rows appended (strong ones), the best row of the first
    // request retired.
    const vectors = Float32Array.from({ length: 70 * width }, () => rng.nextGaussian());
    engine.append(vectors, 70);
    local.appendItems(vectors, 70);
    const retired = new Set([before[0].want.ids[0]]);
    engine.retire(before[0].want.ids[0]);
    const after = expect(
      randomRequests(60, 22).map((r) => ({ ...r, includeCold: true })),
      retired,
    );
    pending.push(...after.map(({ request }) => engine.recommend(request)));
    const answers = await Promise.all(pending);
    let appearsNew = 0;
    [...before, ...after].forEach(({ want }, i) => {
      const got = answers[i];
      assert.deepEqual(Array.from(got.indices), want.ids, `request ${i}: items`);
      for (let e = 0; e < want.ids.length; e++)
        assert.ok(
          Math.abs(got.scores[e] - want.scores[want.ids[e]]) <= 1e-5 * Math.max(1, Math.abs(got.scores[e])),
          `request ${i} rank ${e}: score ${got.scores[e]} vs ${want.scores[want.ids[e]]}`,
        );
      if (i >= before.length && got.indices.some((j) => j > local.numItems - 70)) appearsNew++;
    });
    assert.ok(appearsNew > 0, 'appended rows reach the answers of later requests');
  } finally {
    await engine.close();
  }
});

test('a scanning worker that crashes on a change answers the requests before it first, and is replaced', async () => {
  const start = async () => {
    const worker = new WorkerBackend(dir, { quantized: true, chunk: 64 });
    await worker.ready;
    return worker;
  };
  const first = await start();
  const engine = new ScoringEngine([first], { restart: start });
  try {
    const requests = randomRequests(40, 31);
    const pending = requests.map((r) =>
      engine.recommend(r).then(
        (answer) => answer,
        (error: Error) => error,
      ),
    );
    // A change the worker cannot apply throws in its thread; it waits until the requests in the scan are answered.
    (first as unknown as { worker: Worker }).worker.postMessage({ type: 'changes', changes: null });
    const outcomes = await Promise.all(pending);
    outcomes.forEach((outcome, i) => {
      assert.ok(!(outcome instanceof Error), `request ${i} posted before the change: ${String(outcome)}`);
      assertSameAnswer(outcome as ScoreResponse, requests[i], `before the crash, request ${i}`);
    });
    // Requests sent now reach the crashing worker or its replacement: answered, or 503 (retry).
    const during = await engine.recommend(requests[0]).catch((error: Error) => error);
    if (during instanceof Error) assert.ok(during instanceof ScoringUnavailableError, during.message);
    for (let i = 0; i < 200 && engine.health.restarts < 1; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(engine.health.restarts, 1);
    // The new worker scans too and answers exactly.
    const answers = await Promise.all(requests.slice(0, 10).map((r) => engine.recommend(r)));
    answers.forEach((answer, i) => assertSameAnswer(answer, requests[i], `after the restart, request ${i}`));
  } finally {
    await engine.close();
  }
});

test('batched answers equal one-at-a-time full-forward answers over 1,000 histories (inline)', async () => {
  await checkEngine([new InlineBackend(new Scorer(model, numWarm))], 'inline');
});

test('the time budget caps batches by the measured cost per request', async () => {
  // Cheap batches (a small catalog) under a budget below one request's cost: every batch holds one request.
  const sizes: number[] = [];
  const cheap = new ScoringEngine([modeledBackend(0, 0.01, sizes)], { maxBatch: 64, batchBudgetMs: 1e-6 });
  await Promise.all(randomRequests(30, 12).map((r) => cheap.recommend(r)));
  assert.equal(cheap.stats.maxBatch, 1);
  assert.equal(cheap.stats.batches, 30);
  assert.ok(cheap.stats.requestCostMs > 0, 'the cost estimate follows measurements');
  await cheap.close();
});

test('a batch may take twice the cost of a batch of one when that exceeds the budget (large catalogs)', async () => {
  // A 1M-item catalog: every batch pays a 30 ms pass over the item matrix, plus 2.5 ms per request. With the 2 ms
  // budget alone, batches would stay at one request and pay the pass per request.
  const sizes: number[] = [];
  const engine = new ScoringEngine([modeledBackend(30, 2.5, sizes)], { maxBatch: 64, batchBudgetMs: 2 });
  await Promise.all(randomRequests(100, 12).map((r) => engine.recommend(r)));
  assert.equal(sizes[0], 1, 'the first request goes alone (nothing else queued yet)');
  assert.ok(Math.abs(engine.stats.singleBatchMs - 32.5) < 1e-9, `${engine.stats.singleBatchMs}`);
  assert.ok(engine.stats.maxBatch > 1, `batches form (sizes ${sizes.join(' ')})`);
  for (const size of sizes.slice(1)) {
    // Each batch was sized by the estimate before it: at most 2 x 32.5 ms over the smallest per-request estimate.
    assert.ok(size <= Math.floor(65 / ((30 + 2.5 * 64) / 64)), `batch of ${size}`);
  }
  assert.equal(
    sizes.reduce((a, b) => a + b, 0),
    100,
  );
  await engine.close();
});

/** A backend whose batches "take" fixedMs + perRequestMs x size (reported, not spent), answering every request. */
function modeledBackend(fixedMs: number, perRequestMs: number, sizes: number[]): ScoreBackend {
  return {
    failure: null,
    async score(batch, answer) {
      sizes.push(batch.count);
      await new Promise((resolve) => setImmediate(resolve));
      const times = { encode: 0, score: 0, topk: 0, transfer: 0 };
      for (let r = 0; r < batch.count; r++) answer(r, new Int32Array(0), new Float32Array(0), times);
      return fixedMs + perRequestMs * batch.count;
    },
    apply() {},
    async close() {},
  };
}
