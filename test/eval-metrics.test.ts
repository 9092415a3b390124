import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PreparedSplit, Sequences } from '../src/data/types.js';
import { evaluate, validationNdcg } from '../src/eval/evaluate.js';
import {
  analyzeCases,
  bucketMetrics,
  COLD_SHARE_LABELS,
  coldInputShareBuckets,
  targetFrequencyBuckets,
} from '../src/experiment/analyses.js';
import { MISS, meanStd, ndcgAt, rankOfTarget, summarizeRanks } from '../src/eval/metrics.js';
import type { Recommender } from '../src/model/types.js';
import { Random } from '../src/util/random.js';

function sequences(lists: number[][]): Sequences {
  const offsets = new Int32Array(lists.length + 1);
  lists.forEach((l, i) => (offsets[i + 1] = offsets[i] + l.length));
  return { offsets, items: Int32Array.from(lists.flat()) };
}

/** Scores each item with a fixed table, whatever the input; records the inputs it was given. */
class TableRecommender implements Recommender {
  seen: number[][] = [];
  constructor(readonly table: number[]) {}
  get numItems(): number {
    return this.table.length - 1;
  }
  score(inputs: readonly Int32Array[], out: Float32Array): void {
    const w = this.table.length;
    inputs.forEach((input, r) => {
      this.seen.push([...input]);
      for (let j = 0; j < w; j++) out[r * w + j] = j === 0 ? -Infinity : this.table[j];
    });
  }
}

// Warm items 1..4, cold items 5, 6. Scores: 1 .9, 2 .8, 3 .5, 4 .5 (tie with 3), 5 .7, 6 .6.
const TABLE = [0, 0.9, 0.8, 0.5, 0.5, 0.7, 0.6];
function handSplit(): PreparedSplit {
  const inputs = [[1, 2], [1, 5], [5], [2], [1]];
  const targets = [3, 6, 2, 2, 4];
  return {
    protocol: 'temporal',
    itemIds: ['', 'a', 'b', 'c', 'd', 'e', 'f'],
    numWarm: 4,
    numItems: 6,
    train: sequences([[1, 2, 3, 4]]),
    validation: { inputs: sequences([[1, 2], [4]]), targets: Int32Array.from([3, 1]) },
    test: {
      inputs: sequences(inputs),
      targets: Int32Array.from(targets),
      cold: Uint8Array.from(targets.map((t) => (t > 4 ? 1 : 0))),
      users: inputs.map((_, i) => `u${i}`),
    },
    trainItemCounts: Int32Array.from([0, 1, 1, 1, 1, 0, 0]),
    stats: {} as PreparedSplit['stats'],
  };
}

const near = (a: number, b: number, msg?: string) =>
  assert.ok(Math.abs(a - b) < 1e-12, `${msg}: ${a} vs ${b}`);

test('rank counts strictly higher scores plus equal scores at lower indices; -Infinity target is a miss', () => {
  const row = Float32Array.from([-Infinity, 0.5, 0.9, 0.5, 0.5, -Infinity]);
  assert.equal(rankOfTarget(row, 0, 6, 2), 0);
  assert.equal(rankOfTarget(row, 0, 6, 1), 1); // behind 2 only; ties at higher indices stay below
  assert.equal(rankOfTarget(row, 0, 6, 3), 2); // behind 2 and the tied item 1
  assert.equal(rankOfTarget(row, 0, 6, 4), 3);
  assert.equal(rankOfTarget(row, 0, 6, 5), MISS);
  assert.throws(() => rankOfTarget(Float32Array.from([0, NaN]), 0, 2, 1), /NaN/);
});

test('metric formulas: NDCG@K = 1/log2(rank+2), HR, MRR, misses count as zero', () => {
  const m = summarizeRanks(Int32Array.from([0, 1, 9, 10, MISS]), [1, 10]);
  assert.equal(m.count, 5);
  near(m['hr@1'], 1 / 5, 'hr@1');
  near(m['hr@10'], 3 / 5, 'hr@10');
  near(m['ndcg@10'], (1 + 1 / Math.log2(3) + 1 / Math.log2(11)) / 5, 'ndcg@10');
  near(m.mrr, (1 + 1 / 2 + 1 / 10 + 1 / 11) / 5, 'mrr');
  assert.equal(ndcgAt(0, 1), 1);
  assert.equal(summarizeRanks(new Int32Array(0), [10])['ndcg@10'], 0);
});

test('headline mode: full catalog, seen removed, cold/warm/all segments, coverage', () => {
  const split = handSplit();
  const rec = new TableRecommender(TABLE);
  const r = evaluate(rec, split, { ks: [1, 2, 10] });
  // case0 input [1,2] target 3: above it 5 (.7), 6 (.6); 4 ties but has a higher index -> rank 2
  // case1 input [1,5] target 6 (cold): above it 2 -> rank 1
  // case2 input [5] target 2: above it 1 -> rank 1
  // case3 input [2] target 2: the target was seen and removed -> miss
  // case4 input [1] target 4: above it 2, 5, 6 and the tied 3 (lower index) -> rank 4
  assert.deepEqual([...r.ranks], [2, 1, 1, MISS, 4]);
  assert.equal(r.cold.count, 1);
  assert.equal(r.warm.count, 4);
  assert.equal(r.all.count, 5);
  near(r.cold['ndcg@10'], 1 / Math.log2(3), 'cold ndcg');
  const warmNdcg = (1 / Math.log2(4) + 1 / Math.log2(3) + 1 / Math.log2(6)) / 4;
  near(r.warm['ndcg@10'], warmNdcg, 'warm ndcg');
  // all is the case-weighted mean of cold and warm
  near(r.all['ndcg@10'], (1 * r.cold['ndcg@10'] + 4 * r.warm['ndcg@10']) / 5, 'all ndcg');
  near(r.warm['hr@2'], 1 / 4, 'warm hr@2');
  near(r.cold['hr@2'], 1, 'cold hr@2');
  near(r.warm['hr@1'], 0, 'warm hr@1');
  // top-1 lists: case0 5, case1 2, case2 1, case3 1, case4 2 -> {1, 2, 5} of 6 candidates
  near(r.all['coverage@1'], 3 / 6, 'all coverage@1');
  near(r.cold['coverage@1'], 1 / 6, 'cold coverage@1');
  near(r.warm['coverage@1'], 3 / 6, 'warm coverage@1');
  assert.equal(r.emptyInputs, 0);
});

test('K larger than the catalog: every rankable case is a hit, coverage is the union of candidates', () => {
  const r = evaluate(new TableRecommender(TABLE), handSplit(), { ks: [100] });
  near(r.warm['hr@100'], 3 / 4, 'warm hr@100'); // the removed seen target stays a miss
  near(r.cold['hr@100'], 1, 'cold hr@100');
  near(r.all['coverage@100'], 1, 'coverage@100');
});

test('coverage with K larger than the catalog and full rows reads only each row own list', () => {
  // every item is a candidate for case3 with removeSeen=false; top-100 lists hold all 6 items per row
  const split = handSplit();
  const r = evaluate(new TableRecommender(TABLE), split, { ks: [1, 100], removeSeen: false });
  near(r.cold['coverage@1'], 1 / 6, 'cold coverage@1'); // the single cold case's top-1 is item 1
  near(r.all['coverage@100'], 1, 'all coverage@100');
  near(r.all['hr@100'], 1, 'all hr@100');
});

test('removeSeen=false keeps history items in the ranking', () => {
  const r = evaluate(new TableRecommender(TABLE), handSplit(), { removeSeen: false, ks: [10] });
  // case0 target 3: above it 1, 2, 5, 6 -> 4; case3 target 2: above it 1 -> 1
  assert.deepEqual([...r.ranks], [4, 3, 1, 1, 5]);
});

test('recommendColdItems=false: only warm candidates, cold targets are misses', () => {
  const r = evaluate(new TableRecommender(TABLE), handSplit(), { recommendColdItems: false });
  // case0 candidates 3, 4 -> target 3 rank 0; case2 item 1 above 2 -> 1; case4 candidates 2, 3, 4 -> rank 2
  assert.deepEqual([...r.ranks], [0, MISS, 1, MISS, 2]);
  assert.equal(r.cold['ndcg@10'], 0);
  // coverage is relative to the 4 warm candidates: top-10 lists cover 1, 2, 3, 4
  near(r.all['coverage@10'], 1, 'coverage@10');
});

test('filterColdInputs=true drops cold items from inputs; empty inputs are misses and counted', () => {
  const rec = new TableRecommender(TABLE);
  const r = evaluate(rec, handSplit(), { filterColdInputs: true });
  assert.deepEqual(rec.seen, [[1, 2], [1], [2], [1]]); // case2's input [5] became empty and was not scored
  assert.equal(r.emptyInputs, 1);
  // seen removal still uses the whole history: case1 still excludes item 5 -> same rank as before
  assert.deepEqual([...r.ranks], [2, 1, MISS, MISS, 4]);
  const both = evaluate(new TableRecommender(TABLE), handSplit(), {
    filterColdInputs: true,
    recommendColdItems: false,
  });
  assert.deepEqual([...both.ranks], [0, MISS, MISS, MISS, 2]);
});

test('a model that scores fewer items (ID-only) gets misses on cold targets in every mode', () => {
  const r = evaluate(new TableRecommender(TABLE.slice(0, 5)), handSplit());
  assert.deepEqual([...r.ranks], [0, MISS, 1, MISS, 2]);
  assert.equal(r.cold['hr@10'], 0);
  assert.throws(() => evaluate(new TableRecommender([...TABLE, 1]), handSplit()), /scores 7 items/);
});

test('maxLength truncates inputs to their most recent items; a constant model ranks by index', () => {
  const split = handSplit();
  const rec = new TableRecommender([0, 1, 1, 1, 1, 1, 1]);
  const r = evaluate(rec, split, { maxLength: 1 });
  assert.deepEqual(rec.seen, [[2], [5], [5], [2], [1]]);
  // all scores tie: rank = candidates with a lower index. case0 (seen 1,2) target 3 -> 0; case1 (seen 1,5) target
  // 6 -> 2,3,4 -> 3; case2 (seen 5) target 2 -> 1; case4 (seen 1) target 4 -> 2, 3 -> 2
  assert.deepEqual([...r.ranks], [0, 3, 1, MISS, 2]);
});

test('validationNdcg: validation users, warm candidates, seen removed', () => {
  // val case0 input [1,2] target 3: candidates 3, 4 -> rank 0; case1 input [4] target 1: rank 0
  near(validationNdcg(new TableRecommender(TABLE), handSplit()), 1, 'val ndcg');
  // 4 above 3 (rank 1); 2 and 3 above 1 (rank 2)
  near(
    validationNdcg(new TableRecommender([0, 0.1, 0.8, 0.5, 0.6, 0.9, 0.9]), handSplit()),
    (1 / Math.log2(3) + 1 / Math.log2(4)) / 2,
    'val ndcg 2',
  );
});

test('random scores: ranks equal a brute-force sort; batch size does not change results', () => {
  const rng = new Random(7);
  const numItems = 40;
  const numWarm = 30;
  const cases = 57;
  // scores depend on the input (its first item) and have many ties (values on a coarse grid)
  const tables = Array.from({ length: numItems + 1 }, () =>
    Array.from({ length: numItems + 1 }, (_, j) => (j === 0 ? -Infinity : Math.floor(rng.nextFloat() * 8))),
  );
  const rec: Recommender = {
    numItems,
    score(inputs, out) {
      inputs.forEach((input, r) => out.set(tables[input[0]], r * (numItems + 1)));
    },
  };
  const lists = Array.from({ length: cases }, () =>
    Array.from({ length: 1 + rng.nextInt(6) }, () => 1 + rng.nextInt(numItems)),
  );
  const targets = Int32Array.from({ length: cases }, () => 1 + rng.nextInt(numItems));
  const split: PreparedSplit = {
    ...handSplit(),
    itemIds: Array.from({ length: numItems + 1 }, (_, i) => String(i)),
    numWarm,
    numItems,
    test: {
      inputs: sequences(lists),
      targets,
      cold: Uint8Array.from(targets, (t) => (t > numWarm ? 1 : 0)),
      users: lists.map((_, i) => String(i)),
    },
  };
  for (const recommendColdItems of [true, false]) {
    const a = evaluate(rec, split, { recommendColdItems, batchSize: 5, ks: [1, 10, 50] });
    const b = evaluate(rec, split, { recommendColdItems, batchSize: 256, ks: [1, 10, 50] });
    assert.deepEqual(a.all, b.all);
    assert.deepEqual(a.cold, b.cold);
    for (let c = 0; c < cases; c++) {
      const seen = new Set(lists[c]);
      const t = targets[c];
      const candidates = [];
      for (let j = 1; j <= numItems; j++) {
        if (seen.has(j) || (!recommendColdItems && j > numWarm)) continue;
        candidates.push({ j, s: tables[lists[c][0]][j] });
      }
      candidates.sort((x, y) => y.s - x.s || x.j - y.j);
      const expected = candidates.findIndex((x) => x.j === t);
      assert.equal(a.ranks[c], expected, `case ${c}`);
    }
  }
});

test('meanStd uses the sample standard deviation', () => {
  const { mean, std } = meanStd([1, 2, 3, 4]);
  near(mean, 2.5, 'mean');
  near(std, Math.sqrt(5 / 3), 'std');
  assert.deepEqual(meanStd([3]), { mean: 3, std: 0 });
});

test('analyses: buckets by cold share of the input and by the target training frequency', () => {
  const split = handSplit();
  // inputs [1,2] [1,5] [5] [2] [1] with warm items 1..4: cold shares 0, 1/2, 1, 0, 0
  assert.deepEqual([...coldInputShareBuckets(split)], [0, 2, 4, 0, 0]);
  // with maxLength 1 only the last item counts: [2] [5] [5] [2] [1]
  assert.deepEqual([...coldInputShareBuckets(split, 1)], [0, 4, 4, 0, 0]);
  // targets 3, 6, 2, 2, 4 occur 1, 0, 1, 1, 1 times in training
  assert.deepEqual([...targetFrequencyBuckets(split)], [1, 0, 1, 1, 1]);
  const ranks = Int32Array.from([2, 1, 1, MISS, 4]);
  const byShare = bucketMetrics(ranks, coldInputShareBuckets(split), COLD_SHARE_LABELS);
  assert.deepEqual(
    byShare.map((b) => b.count),
    [3, 0, 1, 0, 1],
  );
  near(byShare[0].ndcg, (1 / Math.log2(4) + 0 + 1 / Math.log2(6)) / 3, 'share 0% ndcg');
  near(byShare[2].hr, 1, 'share 26-50% hr');
  const byFrequency = analyzeCases(ranks, split).targetFrequency;
  assert.equal(byFrequency[0].label, '0 (cold)');
  near(byFrequency[0].ndcg, 1 / Math.log2(3), 'cold bucket');
  assert.equal(byFrequency[1].count, 4);
});
