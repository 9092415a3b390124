import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { alignContent, alignSparse, loadContent, saveContent } from '../src/content/store.js';
import { readVectors } from '../src/content/vectors.js';

const ids = ['a', 'b', 'c'];
const rows = [
  [0.5, -1, 2],
  [1.25, 0, -3.5],
  [4, 5, 6],
];

function npy(data: number[][], dtype: '<f4' | '<f8'): Uint8Array {
  let header = `{'descr': '${dtype}', 'fortran_order': False, 'shape': (${data.length}, ${data[0].length}), }`;
  while ((10 + header.length + 1) % 64 !== 0) header += ' ';
  header += '\n';
  const width = dtype === '<f4' ? 4 : 8;
  const out = new Uint8Array(10 + header.length + data.length * data[0].length * width);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  data.flat().forEach((v, i) => {
    const at = 10 + header.length + i * width;
    if (width === 4) view.setFloat32(at, v, true);
    else view.setFloat64(at, v, true);
  });
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-vectors-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function assertRows(vectors: Float32Array, expected: number[][]): void {
  assert.deepEqual(Array.from(vectors), expected.flat());
}

test('reads the same vectors from .npy (f4, f8), CSV columns, CSV/TSV vector cells, JSON Lines and Parquet', async () => {
  await withDir(async (dir) => {
    await writeFile(join(dir, 'v4.npy'), npy(rows, '<f4'));
    await writeFile(join(dir, 'v4.ids.txt'), ids.join('\n') + '\n');
    await writeFile(join(dir, 'v8.npy'), npy(rows, '<f8'));
    await writeFile(join(dir, 'names.txt'), ids.join('\n'));
    await writeFile(
      join(dir, 'cols.csv'),
      'item_id,x0,x1,x2\n' + ids.map((id, i) => `${id},${rows[i].join(',')}`).join('\n') + '\n',
    );
    await writeFile(
      join(dir, 'cell.csv'),
      'id,vector\n' + ids.map((id, i) => `${id},"${JSON.stringify(rows[i])}"`).join('\r\n'),
    );
    await writeFile(
      join(dir, 'cell.tsv'),
      'item_id\tembedding\n' + ids.map((id, i) => `${id}\t${rows[i].join(' ')}`).join('\n'),
    );
    await writeFile(
      join(dir, 'v.jsonl'),
      ids.map((id, i) => JSON.stringify({ item_id: id, vector: rows[i] })).join('\n') + '\n',
    );
    await writeFile(
      join(dir, 'v.parquet'),
      new Uint8Array(
        parquetWriteBuffer({
          columnData: [
            { name: 'item_id', data: ids, type: 'STRING' },
            { name: 'vector', data: rows },
          ],
        }),
      ),
    );
    const files: [string, Parameters<typeof readVectors>[1]][] = [
      ['v4.npy', {}],
      ['v8.npy', { idsPath: join(dir, 'names.txt') }],
      ['cols.csv', {}],
      ['cell.csv', {}],
      ['cell.tsv', {}],
      ['v.jsonl', {}],
      ['v.parquet', {}],
    ];
    for (const [file, options] of files) {
      const content = await readVectors(join(dir, file), { ...options, knownIds: ['a', 'b', 'c', 'd'] });
      assert.deepEqual(content.ids, ids, file);
      assert.equal(content.dim, 3, file);
      assertRows(content.vectors, rows);
    }
  });
});

test('bad vector files fail with errors naming the file and the line or item', async () => {
  await withDir(async (dir) => {
    const cases: [string, string, RegExp][] = [
      [
        'dim.csv',
        'item_id,vector\na,"[1,2,3]"\nb,"[1,2]"\n',
        /dim\.csv: line 3: item 'b' has 2 values, expected 3/,
      ],
      ['nan.csv', 'item_id,x0,x1\na,1,2\nb,NaN,2\n', /nan\.csv: line 3: field 'x0' of item 'b' is 'NaN'/],
      [
        'inf.jsonl',
        '{"item_id":"a","vector":[1,2]}\n{"item_id":"b","vector":[1,Infinity]}\n',
        /inf\.jsonl: line 2: item 'b' component 1 is NaN|inf\.jsonl: line 2: item 'b' component 1 is Infinity/,
      ],
      ['nan.jsonl', '{"item_id":"a","vector":[NaN,2]}\n', /nan\.jsonl: line 1: item 'a' component 0 is NaN/],
      [
        'dup.tsv',
        'item_id\tvector\na\t1 2\nb\t3 4\na\t5 6\n',
        /dup\.tsv: line 4: duplicate item id 'a' \(first at line 2\)/,
      ],
      [
        'unknown.jsonl',
        '{"item_id":"a","vector":[1]}\n{"item_id":"zz","vector":[2]}\n',
        /unknown\.jsonl: 1 vector id\(s\) are not in the catalog, e\.g\. 'zz' \(line 2\)/,
      ],
      ['fields.csv', 'item_id,x0,x1\na,1\n', /fields\.csv: line 2: 2 fields, the header has 3/],
      ['bad.jsonl', '{"item_id":"a","vector":[1]}\n{oops\n', /bad\.jsonl: line 2: not valid JSON/],
    ];
    for (const [file, text, pattern] of cases) {
      await writeFile(join(dir, file), text);
      await assert.rejects(readVectors(join(dir, file), { knownIds: ['a', 'b'] }), pattern, file);
    }
    await writeFile(join(dir, 'x.npy'), npy([[1, Number.POSITIVE_INFINITY]], '<f8'));
    await writeFile(join(dir, 'x.ids.txt'), 'a\n');
    await assert.rejects(
      readVectors(join(dir, 'x.npy')),
      /x\.ids\.txt: line 1: item 'a' component 1 is Infinity/,
    );
    await writeFile(join(dir, 'y.npy'), npy(rows, '<f4'));
    await assert.rejects(readVectors(join(dir, 'y.npy')), /cannot read its ids file .*y\.ids\.txt/);
    await writeFile(join(dir, 'y.ids.txt'), 'a\nb\n');
    await assert.rejects(readVectors(join(dir, 'y.npy')), /y\.ids\.txt: 2 ids for the 3 rows/);
    await writeFile(
      join(dir, 'p.parquet'),
      new Uint8Array(
        parquetWriteBuffer({
          columnData: [
            { name: 'item_id', data: ['a', 'a'], type: 'STRING' },
            { name: 'vector', data: [[1], [2]] },
          ],
        }),
      ),
    );
    await assert.rejects(
      readVectors(join(dir, 'p.parquet')),
      /p\.parquet: row 2: duplicate item id 'a' \(first at row 1\)/,
    );
  });
});

test('content directories round-trip and align to item indices with zero rows for items without vectors', async () => {
  await withDir(async (dir) => {
    const out = join(dir, 'content');
    const sparse = {
      rows: 3,
      cols: 4,
      indptr: Int32Array.from([0, 1, 1, 3]),
      indices: Int32Array.from([2, 0, 3]),
      values: Float32Array.from([1, 0.6, 0.8]),
    };
    await saveContent(out, {
      ids,
      dim: 3,
      vectors: Float32Array.from(rows.flat()),
      encoder: { kind: 'vectors' },
      sparse,
    });
    assert.deepEqual((await readdir(dir)).sort(), ['content']); // no temporary leftovers
    const loaded = await loadContent(out);
    assert.deepEqual(loaded.ids, ids);
    assertRows(loaded.vectors, rows);
    assert.equal(loaded.encoder.kind, 'vectors');
    // Split order: padding, c, a, x (no vector).
    const itemIds = ['', 'c', 'a', 'x'];
    assert.throws(
      () => alignContent(loaded, itemIds, { missing: 'error' }),
      /1 of 3 items have no content vector \(e\.g\. 'x'\)/,
    );
    const aligned = alignContent(loaded, itemIds, { missing: 'ignore' });
    assert.deepEqual(Array.from(aligned), [0, 0, 0, ...rows[2], ...rows[0], 0, 0, 0]);
    const s = alignSparse(loaded, itemIds)!;
    assert.deepEqual(Array.from(s.indptr), [0, 0, 2, 3, 3]);
    assert.deepEqual(Array.from(s.indices), [0, 3, 2]);
    await assert.rejects(
      saveContent(out, {
        ids: ['a', 'a'],
        dim: 1,
        vectors: Float32Array.from([1, 2]),
        encoder: { kind: 'vectors' },
      }),
      /duplicate item id 'a'/,
    );
    assert.deepEqual((await loadContent(out)).ids, ids, 'a failed save leaves the old directory intact');
    // A vector file loads directly too.
    await writeFile(join(dir, 'v.jsonl'), '{"item_id":"a","vector":[1,2]}\n');
    const file = await loadContent(join(dir, 'v.jsonl'));
    assert.deepEqual([file.ids, file.dim, Array.from(file.vectors)], [['a'], 2, [1, 2]]);
  });
});
