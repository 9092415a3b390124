import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { CsvScanner, parseNumberBytes } from '../src/data/csv.js';
import { DataError } from '../src/data/errors.js';
import {
  isoToSeconds,
  numberToSeconds,
  readCatalog,
  readInteractions,
  textToSeconds,
} from '../src/data/readers.js';
import type { Interactions } from '../src/data/types.js';
import { writeCatalogCsv, writeInteractionsCsv } from '../src/data/writers.js';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'deltarec-readers-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string | Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

/** Rows as [user, item, timestamp, rating] with ids resolved, for comparisons. */
function rows(data: Interactions): [string, string, number | null, number | null][] {
  return Array.from(data.users, (u, k) => [
    data.userIds.ids[u],
    data.itemIds.ids[data.items[k]],
    data.timestamps ? data.timestamps[k] : null,
    data.ratings ? data.ratings[k] : null,
  ]);
}

/** Asserts that fn rejects with a DataError whose message names all the given parts. */
async function rejectsNaming(fn: () => Promise<unknown>, parts: (string | RegExp)[]): Promise<DataError> {
  let caught: unknown;
  try {
    await fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof DataError, `expected a DataError, got ${String(caught)}`);
  for (const part of parts) {
    if (typeof part === 'string')
      assert.ok(caught.message.includes(part), `'${caught.message}' should name '${part}'`);
    else assert.match(caught.message, part);
  }
  return caught;
}

const EXPECTED: [string, string, number, number][] = [
  ['alice', 'x1', 1000, 5],
  ['bob', 'x2', 2000, 3],
  ['alice', 'x2', 3000, 4],
];

describe('interaction readers', () => {
  test('CSV with header mapping, interning and typed arrays', async () => {
    const path = await file(
      'a.csv',
      'user_id,item_id,timestamp,rating\nalice,x1,1000,5\nbob,x2,2000,3\nalice,x2,3000,4\n',
    );
    const data = await readInteractions(path);
    assert.deepEqual(rows(data), EXPECTED);
    assert.ok(data.users instanceof Int32Array && data.items instanceof Int32Array);
    assert.ok(data.timestamps instanceof Float64Array && data.ratings instanceof Float32Array);
    assert.deepEqual(data.userIds.ids, ['alice', 'bob']);
    assert.deepEqual(data.itemIds.ids, ['', 'x1', 'x2']);
    assert.equal(data.itemIds.index.get('x2'), 2);
    assert.equal(data.itemIds.index.has(''), false);
    assert.equal(data.source, path);
  });

  test('TSV, gzip, CRLF, BOM, quoted fields and explicit column names', async () => {
    const text =
      '\ufeffwho\tn\twhat\twhen\r\n"alice"\t1\tx1\t1000\r\n\r\nbob\t2\t"x2"\t2000\r\nalice\t3\tx2\t3000';
    const tsv = await file('b.tsv.gz', gzipSync(Buffer.from(text)));
    const data = await readInteractions(tsv, { userCol: 'WHO', itemCol: 'what', timeCol: 'when' });
    assert.deepEqual(
      rows(data),
      EXPECTED.map(([u, i, t]) => [u, i, t, null]),
    );
    const csv = await file('c.csv', 'user,item,time\n"al""ice",x1,1\n"b,o\nb",x2,2\n');
    const quoted = await readInteractions(csv);
    assert.deepEqual(quoted.userIds.ids, ['al"ice', 'b,o\nb']);
  });

  test('JSON Lines (plain and gzip) with numbers, strings and ISO dates', async () => {
    const lines = [
      { user_id: 'alice', item_id: 'x1', timestamp: 1000, rating: 5 },
      { user_id: 'bob', item_id: 'x2', timestamp: '1970-01-01T00:33:20Z', rating: '3' },
      { user_id: 'alice', item_id: 'x2', timestamp: 3000000, rating: 4 },
    ];
    const text = lines.map((l) => JSON.stringify(l)).join('\n') + '\n\n';
    const expected = [...EXPECTED];
    expected[2] = ['alice', 'x2', 3000000, 4];
    assert.deepEqual(rows(await readInteractions(await file('d.jsonl', text))), expected);
    assert.deepEqual(rows(await readInteractions(await file('e.jsonl.gz', gzipSync(text)))), expected);
    const numeric = await readInteractions(
      await file('f.ndjson', '{"user":7,"item":8}\n{"user":7,"item":9}\n'),
    );
    assert.deepEqual(numeric.userIds.ids, ['7']);
    assert.equal(numeric.timestamps, null);
  });

  test('Parquet with string, int64 and double columns', async () => {
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: 'user_id', data: ['alice', 'bob', 'alice'], type: 'STRING' },
        { name: 'item_id', data: ['x1', 'x2', 'x2'], type: 'STRING' },
        { name: 'timestamp', data: [1000n, 2000n, 3000n], type: 'INT64' },
        { name: 'rating', data: [5, 3, 4], type: 'DOUBLE' },
      ],
    });
    const path = await file('g.parquet', Buffer.from(buffer));
    assert.deepEqual(rows(await readInteractions(path)), EXPECTED);
    const items = parquetWriteBuffer({
      columnData: [
        { name: 'item_id', data: ['x1', 'x2'], type: 'STRING' },
        { name: 'title', data: ['One, first', 'Two'], type: 'STRING' },
        { name: 'price', data: [1.5, 2], type: 'DOUBLE' },
      ],
    });
    const catalog = await readCatalog(await file('items.parquet', Buffer.from(items)), {
      fields: ['title', 'price'],
    });
    assert.deepEqual(catalog, {
      ids: ['x1', 'x2'],
      fields: { title: ['One, first', 'Two'], price: ['1.5', '2'] },
      source: join(dir, 'items.parquet'),
    });
    // Parquet has no lines: the error names the row.
    await rejectsNaming(() => readCatalog(path), [`${path}:3:`, "field 'item_id'", "duplicate item id 'x2'"]);
  });

  test('timestamps: seconds, milliseconds and microseconds by magnitude; ISO-8601 with and without zone', async () => {
    assert.equal(numberToSeconds(1399939200), 1399939200);
    assert.equal(numberToSeconds(1399939200123), 1399939200.123);
    assert.equal(numberToSeconds(1399939200123456), 1399939200.123456);
    assert.equal(numberToSeconds(874724710), 874724710);
    assert.equal(isoToSeconds('2014-05-13'), 1399939200);
    assert.equal(isoToSeconds('2014-05-13T00:00:00Z'), 1399939200);
    assert.equal(isoToSeconds('2014-05-13 02:00:00+02:00'), 1399939200);
    assert.equal(isoToSeconds('2014-05-13T00:00:01.5'), 1399939201.5);
    assert.ok(Number.isNaN(textToSeconds('yesterday')));
    const path = await file(
      'h.csv',
      'user_id,item_id,timestamp\na,x,1399939200000\nb,y,2014-05-13\nc,z,1399939200\n',
    );
    assert.deepEqual(
      Array.from((await readInteractions(path)).timestamps!),
      [1399939200, 1399939200, 1399939200],
    );
  });

  test('the fast path and the general path (quoted fields, CRLF, ISO dates) read the same data', async () => {
    const lines: string[][] = [];
    for (let k = 0; k < 3000; k++)
      lines.push([`user${k % 97}`, `item${(k * 7919) % 501}`, String(1e9 + k * 37), String(1 + (k % 5))]);
    const plain = lines.map((l) => l.join(',')).join('\n');
    const quoted = lines.map(([u, i, t, r]) => `"${u}",${i},${t},"${r}.0"`).join('\n');
    const crlf = lines.map((l) => l.join(',')).join('\r\n') + '\r\n';
    const iso = lines
      .map(([u, i, t, r]) => `${u},${i},${new Date(Number(t) * 1000).toISOString()},${r}`)
      .join('\n');
    const header = 'user_id,item_id,timestamp,rating\n';
    const expected = rows(await readInteractions(await file('p.csv', header + plain)));
    assert.equal(expected.length, 3000);
    assert.deepEqual(expected[5], ['user5', `item${(5 * 7919) % 501}`, 1e9 + 185, 1]);
    for (const [name, text] of Object.entries({ quoted, crlf, iso })) {
      assert.deepEqual(
        rows(await readInteractions(await file(`p-${name}.csv`, header + text))),
        expected,
        name,
      );
    }
    // a 4 MB+ file crosses chunk boundaries mid-record
    const big = Array.from({ length: 60 }, () => plain).join('\n');
    const data = await readInteractions(await file('p-big.csv', header + big));
    assert.equal(data.users.length, 180000);
    assert.deepEqual(rows(data).slice(-3000), expected);
  });

  test('no time column: timestamps are null; a named but absent time column is an error', async () => {
    const path = await file('i.csv', 'user_id,item_id\na,x\nb,y\n');
    assert.equal((await readInteractions(path)).timestamps, null);
    await rejectsNaming(
      () => readInteractions(path, { timeCol: 'ts' }),
      [path, ':1:', "field 'ts'", 'missing time column'],
    );
  });
});

describe('reader errors name file, line and field', () => {
  test('missing column', async () => {
    const path = await file('m1.csv', 'user_id,product,timestamp\na,x,1\n');
    await rejectsNaming(
      () => readInteractions(path),
      [path, ':1:', "field 'item_id'", 'missing item column', "'product'"],
    );
    await rejectsNaming(
      () => readInteractions(path, { userCol: 'customer' }),
      [path, ':1:', "field 'customer'"],
    );
  });

  test('unparsable timestamp', async () => {
    const path = await file('m2.csv', 'user_id,item_id,timestamp\na,x,1\nb,y,2\nc,z,13/05/2014\n');
    await rejectsNaming(
      () => readInteractions(path),
      [`${path}:4:`, "field 'timestamp'", "unparsable timestamp '13/05/2014'"],
    );
    const jsonl = await file(
      'm2.jsonl',
      '{"user_id":"a","item_id":"x","timestamp":1}\n{"user_id":"a","item_id":"x","timestamp":"soon"}\n',
    );
    await rejectsNaming(
      () => readInteractions(jsonl),
      [`${jsonl}:2:`, "field 'timestamp'", 'unparsable timestamp'],
    );
  });

  test('empty file and header without rows', async () => {
    const empty = await file('m3.csv', '');
    await rejectsNaming(() => readInteractions(empty), [empty, 'empty file']);
    await rejectsNaming(() => readCatalog(empty), [empty, 'empty file']);
    const headerOnly = await file('m4.csv', 'user_id,item_id,timestamp\n');
    await rejectsNaming(() => readInteractions(headerOnly), [headerOnly, 'no data rows']);
    const blank = await file('m5.jsonl', '\n\n');
    await rejectsNaming(() => readInteractions(blank), [blank, 'empty file']);
  });

  test('too few fields, empty id, unterminated quote, bad JSON', async () => {
    const short = await file('m6.csv', 'user_id,item_id,timestamp\na,x,1\nb,y\n');
    await rejectsNaming(
      () => readInteractions(short),
      [`${short}:3:`, "field 'timestamp'", 'expected 3 fields (as the header), found 2'],
    );
    const long = await file('m6b.csv', 'user_id,item_id,timestamp\na,x,1\nb,y,2,extra\n');
    await rejectsNaming(
      () => readInteractions(long),
      [`${long}:3:`, 'expected 3 fields (as the header), found 4'],
    );
    const emptyId = await file('m7.csv', 'user_id,item_id\na,x\n,y\n');
    await rejectsNaming(
      () => readInteractions(emptyId),
      [`${emptyId}:3:`, "field 'user_id'", 'empty user id'],
    );
    const quote = await file('m8.csv', 'user_id,item_id\na,"x\n');
    await rejectsNaming(() => readInteractions(quote), [`${quote}:2:`, "field 'item_id'", 'unterminated']);
    const json = await file('m9.jsonl', '{"user_id":"a","item_id":"x"}\n{"user_id":\n');
    await rejectsNaming(() => readInteractions(json), [`${json}:2:`, 'invalid JSON']);
    await rejectsNaming(() => readInteractions(join(dir, 'nope.csv')), ['nope.csv', 'cannot read file']);
    const corrupt = await file('corrupt.csv.gz', Buffer.from('user_id,item_id\na,x\n'));
    await rejectsNaming(() => readInteractions(corrupt), [corrupt, 'cannot decompress']);
    const xlsx = await file('x.xlsx', 'a');
    await rejectsNaming(() => readInteractions(xlsx), ['unknown file format']);
  });

  test('duplicate item ids in a catalog', async () => {
    const path = await file('cat.csv', 'item_id,title\nx1,One\nx2,Two\nx1,Again\n');
    await rejectsNaming(
      () => readCatalog(path),
      [`${path}:4:`, "field 'item_id'", "duplicate item id 'x1' (first on line 2)"],
    );
    const jsonl = await file('cat.jsonl', '{"asin":"x1"}\n{"asin":"x1"}\n');
    await rejectsNaming(() => readCatalog(jsonl), [`${jsonl}:2:`, "field 'asin'", 'duplicate item id']);
  });
});

describe('catalog reader', () => {
  test('quoted titles with commas, field selection, JSON arrays', async () => {
    const path = await file(
      'items.csv',
      'item_id,title,brand,categories\n' +
        '9759091062,Xtreme Brite Brightening Gel 1oz.,Xtreme Brite,"Beauty|Hair Care|Creams, Gels & Lotions"\n' +
        '9790790961,"Versace Bright Crystal Eau de Toilette Spray for Women, 3 Ounce",Versace,"""\'Beauty|Fragrance\', """"Women\'s"""""""\n',
    );
    const catalog = await readCatalog(path);
    assert.deepEqual(catalog.ids, ['9759091062', '9790790961']);
    assert.deepEqual(Object.keys(catalog.fields), ['title', 'brand', 'categories']);
    assert.equal(catalog.fields.title[1], 'Versace Bright Crystal Eau de Toilette Spray for Women, 3 Ounce');
    assert.equal(catalog.fields.categories[0], 'Beauty|Hair Care|Creams, Gels & Lotions');
    assert.equal(catalog.fields.categories[1], `"'Beauty|Fragrance', ""Women's"""`);
    const selected = await readCatalog(path, { fields: ['brand'] });
    assert.deepEqual(selected.fields, { brand: ['Xtreme Brite', 'Versace'] });
    await rejectsNaming(() => readCatalog(path, { fields: ['description'] }), [':1:', "field 'description'"]);
    const jsonl = await file('meta.jsonl', '{"asin":"a","categories":[["Beauty","Makeup"]],"price":3.5}\n');
    const meta = await readCatalog(jsonl);
    assert.deepEqual(meta.fields, { categories: ['Beauty|Makeup'], price: ['3.5'] });
  });
});

describe('CSV writers', () => {
  test('interactions and catalogs round-trip through write + read, with quoting', async () => {
    const data = await readInteractions(
      await file(
        'w-src.jsonl',
        [
          '{"user_id":"plain","item_id":"x,1","timestamp":1399939200,"rating":4.5}',
          '{"user_id":"quo\\"te","item_id":"line\\nbreak","timestamp":1399939200.25,"rating":3}',
          '{"user_id":"plain","item_id":"ünï","timestamp":0,"rating":5}',
        ].join('\n'),
      ),
    );
    const path = join(dir, 'w.csv');
    await writeInteractionsCsv(path, data);
    assert.deepEqual(rows(await readInteractions(path)), rows(data));
    assert.deepEqual(rows(data)[1], ['quo"te', 'line\nbreak', 1399939200.25, 3]);
    const catalog = { ids: ['a,1', 'b'], fields: { title: ['Hello, "world"', ''] }, source: 'mem' };
    const catalogPath = join(dir, 'w-items.csv');
    await writeCatalogCsv(catalogPath, catalog);
    assert.deepEqual(await readCatalog(catalogPath), { ...catalog, source: catalogPath });
  });
});

describe('CSV tokenizer', () => {
  test('records split at every possible chunk boundary parse identically', () => {
    const text = 'a,b,c\r\n"x,1","y\n""z""",3\n\n4,,"6"\n7,8,9';
    const whole = tokenize([Buffer.from(text)]);
    assert.deepEqual(whole, [
      ['a', 'b', 'c', 1],
      ['x,1', 'y\n"z"', '3', 2],
      ['4', '', '6', 5],
      ['7', '8', '9', 6],
    ]);
    const bytes = Buffer.from(text);
    for (let cut = 1; cut < bytes.length; cut++) {
      assert.deepEqual(tokenize([bytes.subarray(0, cut), bytes.subarray(cut)]), whole, `cut at ${cut}`);
    }
  });

  test('number parsing from bytes matches Number()', () => {
    for (const text of [
      '0',
      '4',
      '-3',
      '+2',
      '4.5',
      '1399939200',
      '1399939200123',
      '0.1',
      '3.14159',
      '1e3',
      ' 7 ',
      '.5',
    ]) {
      const b = Buffer.from(text);
      assert.equal(parseNumberBytes(b, 0, b.length), Number(text.trim()), text);
    }
    for (const text of ['', 'abc', '1.2.3', '-', '.']) {
      const b = Buffer.from(text);
      assert.ok(Number.isNaN(parseNumberBytes(b, 0, b.length)), text);
    }
  });
});

/** Runs the scanner over chunks like scanFile does; returns [fields..., line] per record. */
function tokenize(chunks: Buffer[]): (string | number)[][] {
  const scanner = new CsvScanner(44, 'mem');
  const out: (string | number)[][] = [];
  const onRecord = (buf: Buffer) => {
    const record: (string | number)[] = [];
    for (let k = 0; k < scanner.nFields; k++) record.push(scanner.fieldString(buf, k));
    record.push(scanner.line);
    out.push(record);
  };
  let tail: Buffer | null = null;
  for (const chunk of chunks) {
    const buf: Buffer = tail ? Buffer.concat([tail, chunk]) : chunk;
    const used = scanner.scan(buf, false, onRecord);
    tail = used < buf.length ? buf.subarray(used) : null;
  }
  if (tail) scanner.scan(tail, true, onRecord);
  return out;
}
