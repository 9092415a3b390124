/**
 * The split of PROTOCOL.md: a hand-computed case, the protocol's invariants on MovieLens-100K (rating filter 4) and on
 * the synthetic data (checked against a naive reference implementation written from the protocol text), seed
 * determinism, the leave-last-out fallback, and the Beauty reference figures.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { makeIdMap } from '../src/data/intern.js';
import { readInteractions } from '../src/data/readers.js';
import {
  alignCatalog,
  prepareSplit,
  selectKth,
  type SplitOptions,
  DEFAULT_SPLIT_OPTIONS,
} from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import type { Interactions, PreparedSplit, Sequences } from '../src/data/types.js';
import { DataError } from '../src/data/errors.js';

const DATA = fileURLToPath(new URL('../../shared/data/', import.meta.url));
const ML100K = join(DATA, 'ml-100k', 'interactions.csv');
const BEAUTY = join(DATA, 'amazon-beauty', 'interactions.csv.gz');

function seqAt(s: Sequences, k: number): number[] {
  return Array.from(s.items.subarray(s.offsets[k], s.offsets[k + 1]));
}

/** Interactions from rows [user, item, timestamp, rating?] (in file order). */
function fromRows(rows: [string, string, number | null, number?][]): Interactions {
  const users: string[] = [];
  const items: string[] = [];
  const u = new Map<string, number>();
  const i = new Map<string, number>();
  const intern = (map: Map<string, number>, list: string[], id: string, base: number) => {
    if (!map.has(id)) {
      map.set(id, list.length + base);
      list.push(id);
    }
    return map.get(id)!;
  };
  const hasTime = rows.every((r) => r[2] !== null);
  const hasRating = rows.every((r) => r[3] !== undefined);
  return {
    users: Int32Array.from(rows, (r) => intern(u, users, r[0], 0)),
    items: Int32Array.from(rows, (r) => intern(i, items, r[1], 1)),
    timestamps: hasTime ? Float64Array.from(rows, (r) => r[2]!) : null,
    ratings: hasRating ? Float32Array.from(rows, (r) => r[3]!) : null,
    userIds: makeIdMap(users, false),
    itemIds: makeIdMap(items, true),
    source: 'rows',
  };
}

interface Event {
  item: string;
  ts: number;
}

/**
 * A deliberately naive implementation of PROTOCOL.md steps 1-5 and 8 with plain objects: per-user filtered, time-
 * ordered events, the threshold, the n-core of train_val (by repeated full passes) and the test-period events.
 */
function reference(data: Interactions, opts: SplitOptions) {
  const byUser = new Map<string, Event[]>();
  for (let k = 0; k < data.users.length; k++) {
    const user = data.userIds.ids[data.users[k]];
    if (!byUser.has(user)) byUser.set(user, []);
    if (data.ratings && opts.minRating !== null && data.ratings[k] < opts.minRating) continue;
    byUser.get(user)!.push({ item: data.itemIds.ids[data.items[k]], ts: data.timestamps![k] });
  }
  for (const [user, events] of byUser) {
    events.sort((a, b) => a.ts - b.ts); // Array.prototype.sort is stable
    byUser.set(
      user,
      events.filter((e, j) => j === 0 || e.item !== events[j - 1].item),
    );
  }
  const all = [...byUser.values()]
    .flat()
    .map((e) => e.ts)
    .sort((a, b) => a - b);
  const T = all[Math.round(opts.quantile * (all.length - 1))];
  let core = new Map<string, Event[]>();
  for (const [user, events] of byUser)
    core.set(
      user,
      events.filter((e) => e.ts <= T),
    );
  for (;;) {
    const itemCount = new Map<string, number>();
    for (const events of core.values())
      for (const e of events) itemCount.set(e.item, (itemCount.get(e.item) ?? 0) + 1);
    const next = new Map<string, Event[]>();
    let changed = false;
    for (const [user, events] of core) {
      const kept =
        events.length < opts.nCore ? [] : events.filter((e) => itemCount.get(e.item)! >= opts.nCore);
      if (kept.length !== events.length) changed = true;
      if (kept.length > 0) next.set(user, kept);
    }
    core = next;
    if (!changed) break;
  }
  const testPeriod = new Map<string, Event[]>();
  for (const [user, events] of byUser) {
    const after = events.filter((e) => e.ts > T);
    if (after.length > 0) testPeriod.set(user, after);
  }
  return { byUser, T, core, testPeriod, total: all.length };
}

/** Asserts every invariant of the temporal protocol, and agreement with the reference. */
function checkTemporalInvariants(data: Interactions, split: PreparedSplit, opts: SplitOptions): void {
  const ref = reference(data, opts);
  const { stats } = split;
  const id = (k: number) => split.itemIds[k];
  assert.equal(split.protocol, 'temporal');
  assert.equal(stats.protocol, 'temporal');
  assert.equal(stats.threshold_timestamp, ref.T);
  assert.equal(stats.interactions, ref.total);
  assert.equal(split.numItems, split.itemIds.length - 1);
  assert.equal(new Set(split.itemIds).size, split.itemIds.length, 'item ids are unique');

  // The n-core property holds on train_val after filtering, and the split's train_val is exactly that core.
  const coreSize = [...ref.core.values()].reduce((a, e) => a + e.length, 0);
  assert.equal(stats.train_val_interactions, coreSize);
  const itemCount = new Map<string, number>();
  for (const events of ref.core.values()) {
    assert.ok(events.length >= opts.nCore, 'every train_val user has >= n interactions');
    for (const e of events) itemCount.set(e.item, (itemCount.get(e.item) ?? 0) + 1);
  }
  for (const c of itemCount.values())
    assert.ok(c >= opts.nCore, 'every train_val item has >= n interactions');

  // Validation and training users are disjoint and together are the users of train_val.
  const trainUsers = split.trainUsers!;
  const validationUsers = split.validation.users!;
  assert.equal(trainUsers.length, split.train.offsets.length - 1);
  assert.equal(stats.train_users, trainUsers.length);
  const trainSet = new Set(trainUsers);
  assert.equal(trainSet.size, trainUsers.length);
  for (const u of validationUsers)
    assert.ok(!trainSet.has(u), `validation user ${u} is also a training user`);
  assert.equal(trainUsers.length + stats.val_users, ref.core.size);
  assert.equal(stats.val_users, Math.round(opts.validationShare * ref.core.size));
  for (const u of trainUsers) assert.ok(ref.core.has(u));

  // Nothing in training after T: each training sequence is the user's train_val core, all at or before T.
  for (let s = 0; s < trainUsers.length; s++) {
    const events = ref.core.get(trainUsers[s])!;
    assert.ok(events.every((e) => e.ts <= ref.T));
    assert.deepEqual(
      seqAt(split.train, s).map(id),
      events.map((e) => e.item),
    );
  }

  // Warm items are exactly the items of train, numbered 1..numWarm; cold items never occur in training.
  const trainItems = new Set(split.train.items);
  assert.equal(trainItems.size, split.numWarm);
  for (const k of split.train.items) assert.ok(k >= 1 && k <= split.numWarm, 'cold item in training');
  assert.equal(stats.warm_items, split.numWarm);
  assert.equal(stats.cold_items, split.numItems - split.numWarm);
  for (let k = split.numWarm + 1; k <= split.numItems; k++) assert.equal(split.trainItemCounts[k], 0);
  const counts = new Int32Array(split.numItems + 1);
  for (const k of split.train.items) counts[k]++;
  assert.deepEqual(split.trainItemCounts, counts);

  // Validation cases: the user's core restricted to warm items; the target is its last item.
  for (let c = 0; c < validationUsers.length; c++) {
    const warmEvents = ref.core
      .get(validationUsers[c])!
      .filter((e) => trainItems.has(split.itemIds.indexOf(e.item)));
    const sequence = [...seqAt(split.validation.inputs, c), split.validation.targets[c]].map(id);
    assert.deepEqual(
      sequence,
      warmEvents.map((e) => e.item),
    );
  }

  // Test cases: every ground truth is after T; input = core part + test period before the target; cold flags.
  assert.equal(stats.test_users + stats.test_users_without_input, ref.testPeriod.size);
  assert.equal(split.test.users.length, stats.test_users);
  let cold = 0;
  let coldInputs = 0;
  for (let c = 0; c < split.test.users.length; c++) {
    const user = split.test.users[c];
    const after = ref.testPeriod.get(user)!;
    const sequence = [...(ref.core.get(user) ?? []), ...after];
    const target = split.test.targets[c];
    assert.ok(after[after.length - 1].ts > ref.T, 'ground truth after T');
    assert.equal(id(target), sequence[sequence.length - 1].item);
    assert.deepEqual(
      seqAt(split.test.inputs, c).map(id),
      sequence.slice(0, -1).map((e) => e.item),
    );
    assert.equal(split.test.cold[c], target > split.numWarm ? 1 : 0);
    cold += split.test.cold[c];
    for (const k of seqAt(split.test.inputs, c)) if (k > split.numWarm) coldInputs++;
  }
  assert.equal(stats.cold_test_share, cold / stats.test_users);
  assert.equal(stats.cold_input_share, coldInputs / split.test.inputs.items.length);
}

describe('prepareSplit on a hand-computed case', () => {
  const rows: [string, string, number][] = [
    ['a', 'p1', 1],
    ['a', 'p2', 2],
    ['a', 'p2', 3], // consecutive duplicate
    ['a', 'p1', 9],
    ['a', 'p3', 4], // out of time order in the file
    ['b', 'p1', 2],
    ['b', 'p2', 3],
    ['b', 'p3', 5],
    ['b', 'p4', 10], // p4 only after T: cold
    ['c', 'p2', 1],
    ['c', 'p3', 2],
    ['c', 'p1', 3],
    ['d', 'p5', 1], // d and p5 fall out of the 2-core
    ['d', 'p1', 11],
  ];
  const split = prepareSplit(fromRows(rows), { quantile: 0.75, nCore: 2, validationShare: 0 });

  test('threshold, duplicates, n-core, warm/cold numbering and test cases', () => {
    // 13 timestamps after duplicate removal: 1,1,1,2,2,2,3,3,4,5,9,10,11; round(0.75 * 12) = 9 -> T = 5.
    assert.equal(split.stats.threshold_timestamp, 5);
    assert.equal(split.stats.interactions, 13);
    assert.equal(split.stats.consecutive_duplicates_removed, 1);
    assert.equal(split.stats.train_val_interactions, 9);
    assert.deepEqual(split.itemIds, ['', 'p1', 'p2', 'p3', 'p4', 'p5']);
    assert.equal(split.numWarm, 3);
    assert.deepEqual(split.trainUsers, ['a', 'b', 'c']);
    assert.deepEqual(
      [0, 1, 2].map((s) => seqAt(split.train, s)),
      [
        [1, 2, 3],
        [1, 2, 3],
        [2, 3, 1],
      ],
    );
    assert.deepEqual(split.test.users, ['a', 'b']);
    assert.deepEqual(
      [0, 1].map((c) => seqAt(split.test.inputs, c)),
      [
        [1, 2, 3],
        [1, 2, 3],
      ],
    );
    assert.deepEqual(Array.from(split.test.targets), [1, 4]);
    assert.deepEqual(Array.from(split.test.cold), [0, 1]);
    assert.equal(split.stats.test_users_without_input, 1); // d: only p1 after T, nothing before it
    assert.equal(split.stats.cold_test_share, 0.5);
    assert.equal(split.stats.cold_input_share, 0);
    assert.deepEqual(Array.from(split.trainItemCounts), [0, 3, 3, 3, 0, 0]);
  });

  test('rating filter applies only with ratings, and can be turned off', () => {
    const rated = fromRows([
      ['a', 'x', 1, 5],
      ['a', 'y', 2, 2],
      ['a', 'z', 3, 4],
    ]);
    assert.equal(prepareSplit(rated, { nCore: 1, quantile: 1 }).stats.interactions, 2);
    assert.equal(prepareSplit(rated, { nCore: 1, quantile: 1 }).stats.rating_filtered, 1);
    assert.equal(prepareSplit(rated, { nCore: 1, quantile: 1, minRating: null }).stats.interactions, 3);
    assert.throws(() => prepareSplit(rated, { minRating: 9 }), DataError);
    assert.throws(() => prepareSplit(rated, { quantile: 2 }), RangeError);
  });

  test('time order is stable: equal timestamps keep file order (long and short sequences)', () => {
    for (const length of [10, 100, 1000]) {
      const rows: [string, string, number][] = [];
      for (let k = 0; k < length; k++) rows.push(['u', `i${k}`, (k * 7919) % 13]);
      const split = prepareSplit(fromRows(rows), {
        quantile: 1,
        nCore: 1,
        validationShare: 0,
        protocol: 'leave-last-out',
      });
      const expected = rows
        .map((r, k) => ({ item: r[1], ts: r[2], k }))
        .sort((a, b) => a.ts - b.ts || a.k - b.k)
        .map((e) => e.item);
      const order = [...seqAt(split.test.inputs, 0), split.test.targets[0]].map((k) => split.itemIds[k]);
      assert.deepEqual(order, expected, `length ${length}`);
    }
  });

  test('quickselect agrees with sorting', () => {
    const values = Float64Array.from({ length: 1001 }, (_, k) => (k * 7919) % 1009);
    const sorted = values.slice().sort();
    for (const k of [0, 1, 500, 900, 1000]) assert.equal(selectKth(values.slice(), k), sorted[k]);
  });

  test('alignCatalog maps item indices to catalog rows and counts missing/extra items', () => {
    const catalog = {
      ids: ['p3', 'zz', 'p1', 'p2', 'p4'],
      fields: { title: ['T3', 'TZ', 'T1', 'T2', 'T4'] },
      source: 'cat.csv',
    };
    const a = alignCatalog(split, catalog);
    assert.deepEqual(Array.from(a.rowOf), [-1, 2, 3, 0, 4, -1]);
    assert.equal(a.missing, 1);
    assert.deepEqual(a.missingExamples, ['p5']);
    assert.equal(a.extra, 1);
    assert.deepEqual(a.fields.title, ['', 'T1', 'T2', 'T3', 'T4', '']);
    assert.throws(
      () => alignCatalog(split, catalog, { strict: true }),
      (e: Error) => e instanceof DataError && /cat\.csv: 1 item/.test(e.message),
    );
  });
});

describe('protocol invariants', () => {
  test(
    'MovieLens-100K with the rating filter at 4',
    { skip: existsSync(ML100K) ? false : `no ${ML100K}` },
    async () => {
      const data = await readInteractions(ML100K);
      assert.ok(data.ratings, 'ML-100K has ratings');
      const opts = { ...DEFAULT_SPLIT_OPTIONS, minRating: 4 };
      const split = prepareSplit(data, opts);
      assert.ok(split.stats.rating_filtered! > 40000, 'ratings below 4 are removed');
      assert.ok(split.stats.test_users > 100 && split.numWarm > 1000);
      checkTemporalInvariants(data, split, opts);
    },
  );

  test('synthetic data', () => {
    const { interactions } = generateSynthetic({ users: 1500, items: 800, seed: 3 });
    const opts = { ...DEFAULT_SPLIT_OPTIONS, seed: 5 };
    const split = prepareSplit(interactions, opts);
    assert.ok(split.stats.cold_test_share > 0.05, 'cold items appear as test targets');
    checkTemporalInvariants(interactions, split, opts);
  });

  test('the same seed gives the same split; another seed another validation set', () => {
    const { interactions } = generateSynthetic({ users: 1000, items: 500, seed: 4 });
    const a = prepareSplit(interactions, { seed: 1 });
    const b = prepareSplit(interactions, { seed: 1 });
    assert.deepEqual(a, b);
    const c = prepareSplit(interactions, { seed: 2 });
    assert.notDeepEqual(new Set(c.validation.users), new Set(a.validation.users));
    assert.equal(c.stats.val_users, a.stats.val_users);
    assert.equal(c.stats.threshold_timestamp, a.stats.threshold_timestamp);
    assert.equal(c.stats.train_val_interactions, a.stats.train_val_interactions);
  });
});

describe('leave-last-out fallback', () => {
  test('data without timestamps: last item = test target, the one before = validation target', () => {
    const rows: [string, string, null][] = [];
    const lists: Record<string, string[]> = {
      u1: ['a', 'b', 'c', 'd'],
      u2: ['b', 'c', 'a', 'a', 'e'], // one consecutive duplicate
      u3: ['c', 'a', 'b'],
      u4: ['d', 'x'], // x occurs once, so u4 and then d fall out of the 2-core
    };
    for (const [u, items] of Object.entries(lists)) for (const i of items) rows.push([u, i, null]);
    const data = fromRows(rows);
    const split = prepareSplit(data, { nCore: 2 });
    assert.equal(split.protocol, 'leave-last-out');
    assert.equal(split.stats.protocol, 'leave-last-out');
    assert.equal(split.stats.threshold_timestamp, null);
    assert.equal(split.stats.consecutive_duplicates_removed, 1);
    // 2-core: e and x occur once -> removed; then u4 has only d -> removed; d then occurs once (u1) -> removed.
    const id = (k: number) => split.itemIds[k];
    assert.deepEqual(split.test.users, ['u1', 'u2', 'u3']);
    assert.deepEqual(
      [0, 1, 2].map((c) => id(split.test.targets[c])),
      ['c', 'a', 'b'],
    );
    assert.deepEqual(
      [0, 1, 2].map((c) => seqAt(split.test.inputs, c).map(id)),
      [
        ['a', 'b'],
        ['b', 'c'],
        ['c', 'a'],
      ],
    );
    assert.deepEqual(split.trainUsers, ['u1', 'u2', 'u3']);
    assert.deepEqual(
      [0, 1, 2].map((s) => seqAt(split.train, s).map(id)),
      [['a'], ['b'], ['c']],
    );
    assert.deepEqual(split.validation.users, ['u1', 'u2', 'u3']);
    assert.deepEqual(Array.from(split.validation.targets, id), ['b', 'c', 'a']);
    assert.deepEqual(Array.from(split.test.cold), [0, 0, 0]);
    for (const k of split.train.items) assert.ok(k <= split.numWarm);
  });

  test('a CSV without a time column is split leave-last-out; protocol can be forced', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'deltarec-split-'));
    try {
      const path = join(dir, 'x.csv');
      await writeFile(
        path,
        'user_id,item_id\n' +
          ['a', 'b', 'c'].flatMap((u) => ['1', '2', '3'].map((i) => `${u},${i}`)).join('\n'),
      );
      const data = await readInteractions(path);
      const split = prepareSplit(data);
      assert.equal(split.stats.protocol, 'leave-last-out');
      assert.deepEqual(
        Array.from(split.test.targets, (k) => split.itemIds[k]),
        ['3', '3', '3'],
      );
      assert.throws(() => prepareSplit(data, { protocol: 'temporal' }), /needs a time column/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const { interactions } = generateSynthetic({ users: 300, items: 200, seed: 1 });
    // nCore 1: no user loses every interaction to the n-core filter, so each one is a test case or has no input.
    const forced = prepareSplit(interactions, { protocol: 'leave-last-out', nCore: 1 });
    assert.equal(forced.stats.protocol, 'leave-last-out');
    assert.equal(forced.stats.test_users, forced.stats.users - forced.stats.test_users_without_input);
  });
});

test(
  'Amazon Beauty reproduces the reference figures of PROTOCOL.md',
  { skip: existsSync(BEAUTY) ? false : `no ${BEAUTY}` },
  async () => {
    const split = prepareSplit(await readInteractions(BEAUTY));
    const s = split.stats;
    assert.equal(s.interactions, 198502);
    assert.equal(s.consecutive_duplicates_removed, 0);
    assert.equal(s.threshold_timestamp, 1399939200);
    assert.equal(s.train_val_interactions, 177387);
    assert.equal(s.test_users, 6110);
    assert.ok(Math.abs(s.warm_items - 11840) < 100, `warm items ${s.warm_items}`);
    assert.ok(s.cold_test_share >= 0.19 && s.cold_test_share <= 0.22, `cold share ${s.cold_test_share}`);
    assert.ok(Math.abs(s.cold_input_share - 0.046) < 0.005, `cold input share ${s.cold_input_share}`);
  },
);
