import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { parsePythonLiteral, readCsvRecords } from '../src/data/recipes/common.js';
import { loadAmazonM2, parseNumpyStringArray } from '../src/data/recipes/amazon-m2.js';
import { loadAmazonBeauty, loadRecipe, loadZvuk } from '../src/data/recipes/index.js';
import { prepareSplit } from '../src/data/split.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-recipes-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('Python literal parser: dicts, nested lists, tuples, escapes, True/False/None, numbers', () => {
  const v = parsePythonLiteral(
    `{'asin': 'B0', 'title': "L'Oreal \\"Paris\\"", 'categories': [['Beauty', 'Skin Care']], 'price': 12.5, ` +
      `'salesRank': {'Beauty': 3}, 'x': (1, -2e3,), 'ok': True, 'no': False, 'none': None, 'u': 'caf\\xe9 \\u00e9'}`,
  );
  assert.deepEqual(v, {
    asin: 'B0',
    title: `L'Oreal "Paris"`,
    categories: [['Beauty', 'Skin Care']],
    price: 12.5,
    salesRank: { Beauty: 3 },
    x: [1, -2000],
    ok: true,
    no: false,
    none: null,
    u: 'café é',
  });
  assert.throws(() => parsePythonLiteral(`{'a': 1`), /expected/);
  assert.throws(() => parsePythonLiteral(`{'a': 1} x`), /trailing/);
});

test('CSV records: quoted fields with commas, doubled quotes and newlines; gzip', async () => {
  const text = 'a,b,c\n1,"x, ""y""\nz",3\r\n4,,6\n';
  for (const name of ['t.csv', 't.csv.gz']) {
    const path = join(dir, name);
    writeFileSync(path, name.endsWith('.gz') ? gzipSync(text) : text);
    const records = [];
    for await (const r of readCsvRecords(path)) records.push(r);
    assert.deepEqual(records, [
      [1, ['a', 'b', 'c']],
      [2, ['1', 'x, "y"\nz', '3']],
      [4, ['4', '', '6']],
    ]);
  }
});

test('Amazon Beauty recipe: JSON reviews + Python-literal meta, ratings >= 4, text fields', async () => {
  const reviews = [
    { reviewerID: 'U1', asin: 'A', overall: 5.0, unixReviewTime: 100 },
    { reviewerID: 'U1', asin: 'B', overall: 3.0, unixReviewTime: 200 }, // dropped: rating 3
    { reviewerID: 'U2', asin: 'B', overall: 4.0, unixReviewTime: 150 },
    { reviewerID: 'U1', asin: 'C', overall: 4.0, unixReviewTime: 300 },
  ];
  const meta = [
    `{'asin': 'A', 'title': 'Rose Lip Balm', 'brand': 'Acme', 'categories': [['Beauty', 'Lips'], ['Beauty', 'Care']]}`,
    `{'asin': 'B', 'description': 'A "gentle" cleanser', 'categories': [['Beauty', 'Face']], 'price': 3.5}`,
    `{"asin": "C", "title": "Strict JSON line"}`,
  ];
  const reviewsPath = join(dir, 'reviews_Beauty.json.gz');
  const metaPath = join(dir, 'meta_Beauty.json.gz');
  writeFileSync(reviewsPath, gzipSync(reviews.map((r) => JSON.stringify(r)).join('\n') + '\n'));
  writeFileSync(metaPath, gzipSync(meta.join('\n') + '\n'));
  const r = await loadAmazonBeauty({ reviews: reviewsPath, meta: metaPath });
  const { interactions: x, catalog } = r;
  assert.equal(x.users.length, 3);
  assert.deepEqual(
    [...x.items].map((i) => x.itemIds.ids[i]),
    ['A', 'B', 'C'],
  );
  assert.deepEqual(
    [...x.users].map((u) => x.userIds.ids[u]),
    ['U1', 'U2', 'U1'],
  );
  assert.deepEqual([...x.timestamps!], [100, 150, 300]);
  assert.deepEqual([...x.ratings!], [5, 4, 4]);
  assert.deepEqual(catalog!.ids, ['A', 'B', 'C']);
  assert.equal(catalog!.fields.title[0], 'Rose Lip Balm');
  assert.equal(catalog!.fields.categories[0], 'Beauty|Lips|Care');
  assert.equal(catalog!.fields.description[1], 'A "gentle" cleanser');
  assert.equal(catalog!.fields.brand[1], '');
  const all = await loadRecipe('amazon-beauty', { reviews: reviewsPath, meta: metaPath, minRating: 0 });
  assert.equal(all.interactions.users.length, 4);

  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify(reviews[0]) + '\n{"reviewerID": "U3", "asin": "A", "overall": 5}\n');
  await assert.rejects(loadAmazonBeauty({ reviews: bad, meta: metaPath }), /bad\.json:2: .*'unixReviewTime'/);
  await assert.rejects(loadRecipe('amazon-beauty', { reviews: bad }), /needs file paths for: meta/);
});

test('Amazon-M2 recipe: numpy array strings, one locale, seeded session split at the quantile', async () => {
  assert.deepEqual(parseNumpyStringArray("['B09W9FND7K' 'B09JSPLN1M'\n 'B0X']"), [
    'B09W9FND7K',
    'B09JSPLN1M',
    'B0X',
  ]);
  const rows = ['prev_items,next_item,locale'];
  for (let s = 0; s < 40; s++) {
    const items = [`I${s % 7}`, `I${(s + 1) % 7}`, `I${(s + 1) % 7}`, `I${(s + 3) % 7}`];
    rows.push(`"[${items.map((i) => `'${i}'`).join(' ')}]",I${(s + 5) % 7},${s % 4 === 3 ? 'DE' : 'FR'}`);
  }
  const sessions = join(dir, 'sessions_train.csv');
  writeFileSync(sessions, rows.join('\n') + '\n');
  const products = join(dir, 'products_train.csv');
  writeFileSync(
    products,
    'id,locale,title,price,brand,desc\nI0,FR,"Chaise, bois",3.0,Ikea,"Une chaise\nsolide"\nI0,DE,Stuhl,3,Ikea,x\nI1,FR,Table,1,,\n',
  );
  const r = await loadAmazonM2({ sessions, products, testShare: 0.2, seed: 3 });
  const x = r.interactions;
  // 30 FR sessions of 5 items with one consecutive duplicate removed -> 4 interactions each
  assert.equal(x.users.length, 30 * 4);
  assert.equal(x.userIds.ids.length, 30);
  const testSessions = new Set<number>();
  for (let i = 0; i < x.users.length; i++) if (x.timestamps![i] === 2) testSessions.add(x.users[i]);
  assert.equal(testSessions.size, 6);
  // training interactions (timestamp 1) come first, and the quantile's T is the last of them
  const n = x.users.length;
  const q = r.splitOptions!.quantile as number;
  const sorted = [...x.timestamps!].sort((a, b) => a - b);
  assert.equal(sorted[Math.round(q * (n - 1))], 1);
  assert.equal(sorted[Math.round(q * (n - 1)) + 1], 2);
  // the last interaction of each session is its next_item
  const s0 = [...x.users.keys()]
    .filter((i) => x.userIds.ids[x.users[i]] === 'session0')
    .map((i) => x.itemIds.ids[x.items[i]]);
  assert.deepEqual(s0, ['I0', 'I1', 'I3', 'I5']);
  assert.deepEqual(r.catalog!.ids, ['I0', 'I1']);
  assert.equal(r.catalog!.fields.title[0], 'Chaise, bois');
  assert.equal(r.catalog!.fields.desc[0], 'Une chaise\nsolide');
  // another seed picks other test sessions
  const other = await loadAmazonM2({ sessions, products, testShare: 0.2, seed: 4 });
  const otherTest = new Set<string>();
  for (let i = 0; i < n; i++)
    if (other.interactions.timestamps![i] === 2)
      otherTest.add(other.interactions.userIds.ids[other.interactions.users[i]]);
  assert.notDeepEqual([...otherTest].sort(), [...testSessions].map((u) => x.userIds.ids[u]).sort());
  await assert.rejects(loadAmazonM2({ sessions, products, locale: 'JP' }), /no sessions with locale 'JP'/);

  // prepareSplit with the recipe's quantile: T is the training sessions' timestamp, every test session is a case
  const split = prepareSplit(x, { ...r.splitOptions, nCore: 1 });
  assert.equal(split.stats.threshold_timestamp, 1);
  assert.equal(split.test.targets.length, 6);
  const testUsers = new Set([...testSessions].map((u) => x.userIds.ids[u]));
  assert.deepEqual(new Set(split.test.users), testUsers);
});

test('Zvuk recipe: plays over 60 s, seeded user sample, audio vectors from parquet', async () => {
  const users: bigint[] = [];
  const tracks: bigint[] = [];
  const times: Date[] = [];
  const durations: number[] = [];
  for (let u = 0; u < 30; u++) {
    for (let j = 0; j < 4; j++) {
      users.push(BigInt(u));
      tracks.push(BigInt((u + j) % 9));
      times.push(new Date(Date.UTC(2023, 0, 1) + (u * 10 + j) * 1000));
      durations.push(j === 3 ? 30 : 61 + j); // the fourth play of each user is too short
    }
  }
  const interactions = join(dir, 'zvuk-interactions.parquet');
  writeFileSync(
    interactions,
    Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'user_id', data: users, type: 'INT64' },
          { name: 'track_id', data: tracks, type: 'INT64' },
          { name: 'datetime', data: times, type: 'TIMESTAMP' },
          { name: 'play_duration', data: durations, type: 'INT32' },
        ],
        rowGroupSize: 50,
      }),
    ),
  );
  const vectors = join(dir, 'zvuk-vectors.parquet');
  const ids = Array.from({ length: 10 }, (_, i) => BigInt(i));
  writeFileSync(
    vectors,
    Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'track_id', data: ids, type: 'INT64' },
          { name: 'vector', data: ids.map((i) => [Number(i), 0.5, -1]) },
        ],
      }),
    ),
  );
  const r = await loadZvuk({ interactions, vectors, users: 10, seed: 1 });
  const x = r.interactions;
  assert.equal(x.userIds.ids.length, 10);
  assert.equal(x.users.length, 10 * 3);
  const start = Date.UTC(2023, 0, 1) / 1000;
  for (let i = 0; i < x.users.length; i++) {
    const u = Number(x.userIds.ids[x.users[i]]);
    const offset = x.timestamps![i] - start - u * 10;
    assert.ok(offset >= 0 && offset <= 2, 'only the three long plays are kept, with their timestamps');
  }
  const again = await loadZvuk({ interactions, vectors, users: 10, seed: 1 });
  assert.deepEqual(again.interactions.userIds.ids, x.userIds.ids);
  const other = await loadZvuk({ interactions, vectors, users: 10, seed: 2 });
  assert.notDeepEqual([...other.interactions.userIds.ids].sort(), [...x.userIds.ids].sort());
  const v = r.vectors!;
  assert.equal(v.dim, 3);
  assert.equal(v.ids.length, x.itemIds.ids.length - 1); // only tracks that occur (track 9 never does)
  const k = v.ids.indexOf('4');
  assert.deepEqual([...v.data.subarray(k * 3, k * 3 + 3)], [4, 0.5, -1]);

  const badVectors = join(dir, 'bad-vectors.parquet');
  writeFileSync(
    badVectors,
    Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'track_id', data: [1n, 2n], type: 'INT64' },
          {
            name: 'vector',
            data: [
              [1, 2, 3],
              [1, 2],
            ],
          },
        ],
      }),
    ),
  );
  await assert.rejects(
    loadZvuk({ interactions, vectors: badVectors }),
    /row 2 \(item '2'\): vector has 2 values, expected 3/,
  );
  await assert.rejects(
    loadZvuk({ interactions, vectors, columns: { duration: 'seconds' } }),
    /missing column 'seconds'/,
  );
});
