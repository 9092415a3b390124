import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { test } from 'node:test';
import { loadArtifact } from '../src/model/artifact.js';
import { LiveCatalog, type ItemInfo } from '../src/serve/catalog.js';
import { hashId, IdTable } from '../src/serve/id-table.js';
import { loadRuntime, modelId } from '../src/serve/runtime.js';
import { Random } from '../src/util/random.js';
import { untrainedFixtureInTemp } from './serve-fixture.js';

test('the id table finds every id it was given, through its growth, and gives each back unchanged', () => {
  const table = new IdTable(); // no room: the arrays and the slot table grow many times
  const ids = Array.from({ length: 50_000 }, (_, i) => `item-${(i * 7919) % 100_003}`);
  for (let i = 0; i < ids.length; i++) assert.equal(table.add(ids[i]), i);
  assert.equal(table.size, ids.length);
  for (let i = 0; i < ids.length; i++) {
    assert.equal(table.find(ids[i]), i);
    assert.equal(table.add(ids[i]), i); // an id added again keeps its key
    assert.equal(table.id(i), ids[i]);
  }
  for (const absent of ['item-', 'item-100003', 'item-1 ', 'Item-1', ''])
    assert.equal(table.find(absent), -1);
});

test('ids with equal hashes are told apart by their bytes', () => {
  // Two strings with the same 32-bit hash, found by the birthday bound among 2^18 short strings.
  const byHash = new Map<number, string>();
  const pairs: [string, string][] = [];
  for (let i = 0; pairs.length < 3 && i < 1 << 20; i++) {
    const id = `x${i.toString(36)}`;
    const other = byHash.get(hashId(id, 0));
    if (other !== undefined) pairs.push([other, id]);
    else byHash.set(hashId(id, 0), id);
  }
  assert.equal(pairs.length, 3, 'found 3 colliding pairs');
  const table = new IdTable(0, 0); // the seed the pairs collide under
  for (const [a, b] of pairs) {
    assert.equal(hashId(a, 0), hashId(b, 0));
    assert.equal(table.find(b), -1);
    const ka = table.add(a);
    assert.equal(table.find(b), -1, `${b} is not ${a}`);
    const kb = table.add(b);
    assert.notEqual(ka, kb);
    assert.equal(table.find(a), ka);
    assert.equal(table.find(b), kb);
    assert.equal(table.id(kb), b);
  }
});

test('the hash is seeded per table: ids that collide under one seed do not under another, and keys do not depend on it', () => {
  const byHash = new Map<number, string>();
  let pair: [string, string] | undefined;
  for (let i = 0; !pair && i < 1 << 20; i++) {
    const id = `x${i.toString(36)}`;
    const other = byHash.get(hashId(id, 0));
    if (other !== undefined) pair = [other, id];
    else byHash.set(hashId(id, 0), id);
  }
  assert.ok(pair, 'found a colliding pair under seed 0');
  const [a, b] = pair;
  assert.equal(hashId(a, 0), hashId(b, 0));
  assert.notEqual(hashId(a, 12345), hashId(b, 12345));
  assert.equal(new IdTable().find('x'), -1); // a fresh table knows no id
  const ids = Array.from({ length: 5000 }, (_, i) => `item-${i}`);
  const tables = [new IdTable(0, 0), new IdTable(0, 0xdeadbeef), new IdTable()];
  const keys = tables.map((table) => ids.map((id) => table.add(id)));
  for (const table of tables) for (let i = 0; i < ids.length; i += 97) assert.equal(table.find(ids[i]), i);
  assert.deepEqual(keys[1], keys[0]);
  assert.deepEqual(keys[2], keys[0]);
});

test('the id table keeps unicode ids exact: 2-, 3- and 4-byte characters, and lone surrogates', () => {
  const ids = [
    'café',
    'cafe\u0301', // same text as 'café' after normalization, but another id
    '商品-42',
    'emoji-😀',
    '😀',
    '\ud83d', // lone high surrogate
    '\ude00', // lone low surrogate
    '\ude00\ud83d', // low then high: two lone surrogates, not a pair
    '\ufffd', // what a lone surrogate becomes in UTF-8: must stay a different id
    'a',
    'ab',
    'ß',
    '\u07ff\u0800\uffff',
    'x'.repeat(256),
  ];
  const table = new IdTable(2);
  const keys = ids.map((id) => table.add(id));
  assert.equal(new Set(keys).size, ids.length);
  ids.forEach((id, i) => {
    assert.equal(table.find(id), keys[i], JSON.stringify(id));
    assert.equal(table.id(keys[i]), id, JSON.stringify(id));
  });
  for (const absent of ['cafe', 'caf', 'café!', '\ud83d\ude00x', '\ud83d\ude01', 'b'])
    assert.equal(table.find(absent), -1, JSON.stringify(absent));
});

/** The catalog as it was held before the id table (one Map entry per id): the oracle of the test below. */
class MapCatalog {
  readonly rowIds: string[];
  readonly items = new Map<string, ItemInfo>();
  readonly deleted = new Map<string, number>();
  readonly saved: Set<string>;
  activeCount: number;

  constructor(
    ids: readonly string[],
    readonly numWarm: number,
  ) {
    this.rowIds = [...ids];
    for (let i = 1; i < ids.length; i++) this.items.set(ids[i], { index: i, added: false });
    this.activeCount = ids.length - 1;
    this.saved = new Set(ids.slice(1));
  }

  isWarm(index: number): boolean {
    return index >= 1 && index <= this.numWarm;
  }

  put(id: string, fields?: Record<string, string>): { index: number; reused: boolean; retired: number } {
    const previous = this.items.get(id);
    if (previous && !this.isWarm(previous.index)) {
      this.items.set(id, { index: previous.index, fields, added: true });
      return { index: previous.index, reused: true, retired: 0 };
    }
    const deletedRow = previous ? undefined : this.deleted.get(id);
    if (deletedRow !== undefined && !this.isWarm(deletedRow)) {
      this.deleted.delete(id);
      this.items.set(id, { index: deletedRow, fields, added: true });
      this.activeCount++;
      return { index: deletedRow, reused: true, retired: 0 };
    }
    const index = this.rowIds.length;
    this.rowIds.push(id);
    const retired = previous ? previous.index : 0;
    if (!previous) this.activeCount++;
    this.items.set(id, { index, fields, added: true });
    this.deleted.delete(id);
    return { index, reused: false, retired };
  }

  remove(id: string): number {
    const info = this.items.get(id);
    if (!info) return 0;
    this.items.delete(id);
    this.deleted.set(id, info.index);
    this.activeCount--;
    return info.index;
  }
}

test('the live catalog answers as a Map of its ids did, over random puts and deletes', () => {
  const random = new Random(11);
  const saved = ['', ...Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? `ü-${i}` : `w${i}`))];
  const pool = [
    ...saved.slice(1),
    ...Array.from({ length: 200 }, (_, i) => (i % 5 === 0 ? `新${i}😀` : `n${i}`)),
  ];
  const catalog = new LiveCatalog(saved, 200); // rows 1..200 warm, 201..300 cold
  const oracle = new MapCatalog(saved, 200);
  const check = (id: string) => {
    const expected = oracle.items.get(id);
    const got = catalog.get(id);
    assert.deepEqual(
      got && { index: got.index, added: got.added, fields: got.fields },
      expected && { index: expected.index, added: expected.added, fields: expected.fields },
      id,
    );
    assert.equal(catalog.historyIndex(id), expected?.index ?? oracle.deleted.get(id), id);
    assert.equal(catalog.isSaved(id), oracle.saved.has(id), id);
  };
  for (let step = 0; step < 20_000; step++) {
    const id = pool[random.nextInt(pool.length)];
    if (random.nextFloat() < 0.4) {
      assert.equal(catalog.remove(id), oracle.remove(id), `remove ${id} at ${step}`);
    } else {
      const fields = random.nextFloat() < 0.5 ? { title: `t${step}` } : undefined;
      assert.deepEqual(catalog.put(id, fields), oracle.put(id, fields), `put ${id} at ${step}`);
    }
    check(id);
    assert.equal(catalog.activeCount, oracle.activeCount);
    assert.equal(catalog.numRows, oracle.rowIds.length);
  }
  for (const id of [...pool, 'absent', '']) check(id);
  assert.deepEqual(catalog.rowIds(), oracle.rowIds);
  for (let row = 0; row < oracle.rowIds.length; row++) assert.equal(catalog.rowId(row), oracle.rowIds[row]);
});

test('a catalog of 1M ids holds them in array buffers of under 40 bytes per id', () => {
  const ids = ['', ...Array.from({ length: 1_000_000 }, (_, i) => `i${100000 + i}`)];
  const catalog = new LiveCatalog(ids, 900_000);
  assert.equal(catalog.historyIndex('i100000'), 1);
  assert.equal(catalog.get('i1099999')?.index, 1_000_000);
  assert.ok(catalog.byteSize / 1e6 < 40, `${(catalog.byteSize / 1e6).toFixed(1)} MB`);
  // The first put after the load writes into spare room (no copy of every row): a new row, found at once.
  assert.deepEqual(catalog.put('new'), { index: 1_000_001, reused: false, retired: 0 });
  assert.equal(catalog.rowId(1_000_001), 'new');
});

test("the service's artifact reads its item ids from the catalog: the same ids, the same model id", async () => {
  const { root, modelDir } = await untrainedFixtureInTemp('deltarec-idtable-');
  try {
    const saved = await loadArtifact(modelDir, { weights: false });
    const rt = await loadRuntime(modelDir, 0, {});
    try {
      rt.catalog.put('added-later'); // a new row: not one of the artifact's ids
      rt.catalog.remove(saved.manifest.items.ids[1]);
      assert.deepEqual(rt.artifact.manifest.items.ids, saved.manifest.items.ids);
      assert.equal(rt.artifact.manifest.items.num_warm, saved.manifest.items.num_warm);
      assert.equal(JSON.stringify(rt.artifact.manifest), JSON.stringify(saved.manifest));
      assert.equal(modelId(rt.artifact), rt.modelId);
    } finally {
      await rt.engine.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
