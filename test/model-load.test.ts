/**
 * Loading a saved model without whole-file copies: readSafetensors reads each tensor straight into its own array,
 * loadModel hands the item tables to the model (SASRec.fromParameters `own`), and the result is the saved model
 * bit for bit, for every embedding strategy. Malformed and truncated files are refused naming the file and tensor.
 */
import assert from 'node:assert/strict';
import { statSync, truncateSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { referenceKernels } from '../src/kernels/index.js';
import {
  decodeSafetensors,
  encodeSafetensors,
  loadModel,
  readSafetensors,
  saveModel,
  type TensorData,
} from '../src/model/artifact.js';
import { SASRec, sasrecConfig, type SASRecConfig } from '../src/model/sasrec.js';
import { KnnScoringModel, loadScoringModel } from '../src/serve/models.js';
import { Random } from '../src/util/random.js';
import { unitContent } from './tiny-model.js';

const bytesOf = (a: TensorData) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

const STRATEGIES: SASRecConfig['strategy'][] = [
  'id',
  'content-init',
  'content-delta',
  'content-frozen',
  'content-map',
];

/** A small model of `strategy` with non-trivial values in every tensor (padding rows stay zero). */
function model(strategy: SASRecConfig['strategy']): SASRec {
  const numItems = 20;
  const d = 8;
  const contentDim = strategy === 'content-map' ? 12 : undefined;
  const m = new SASRec(
    sasrecConfig({ numItems, d, maxLength: 6, seed: 4, strategy, contentDim }),
    strategy === 'id' ? undefined : unitContent(numItems, contentDim ?? d, 2),
    referenceKernels,
  );
  const rng = new Random(7);
  for (const t of m.parameters()) {
    const first = ['items', 'content', 'delta'].includes(t.name) ? t.shape[1] : 0;
    for (let i = first; i < t.data.length; i++) t.data[i] += 0.1 * rng.nextGaussian();
  }
  m.parametersChanged();
  return m;
}

const ids = (n: number) => ['', ...Array.from({ length: n }, (_, i) => `item-${i + 1}`)];

test('loadModel gives every strategy its saved parameters bit for bit, the tables it read, and room to append', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-load-'));
  try {
    for (const strategy of STRATEGIES) {
      const saved = model(strategy);
      const dir = join(root, strategy);
      await saveModel(dir, { model: saved, itemIds: ids(saved.numItems), numWarm: 15 });
      const loaded = await loadModel(dir, referenceKernels);
      assert.equal(loaded.weights.size, 0, `${strategy}: the model took the tensors`);
      const expected = new Map(saved.parameters().map((t) => [t.name, t]));
      const got = loaded.model.parameters();
      assert.deepEqual(
        got.map((t) => t.name),
        [...expected.keys()],
      );
      for (const t of got) {
        assert.deepEqual(t.shape, expected.get(t.name)!.shape, `${strategy} ${t.name}: shape`);
        assert.ok(
          bytesOf(t.data).equals(bytesOf(expected.get(t.name)!.data)),
          `${strategy} ${t.name}: bytes`,
        );
      }
      const inputs = [Int32Array.of(1, 2, 3), Int32Array.of(17)];
      const a = new Float32Array(2 * 21);
      const b = new Float32Array(2 * 21);
      saved.score(inputs, a);
      loaded.model.score(inputs, b);
      assert.ok(bytesOf(a).equals(bytesOf(b)), `${strategy}: scores`);
      if (strategy === 'id') continue;
      // The tables read from the file have spare room: the first append writes its row in place.
      const width = strategy === 'content-map' ? 12 : 8;
      const before = loaded.model.parameters().map((t) => t.data.buffer);
      loaded.model.appendItems(unitContent(1, width, 9).subarray(width), 1);
      const after = loaded.model.parameters();
      after.forEach((t, i) => assert.equal(t.data.buffer, before[i], `${strategy} ${t.name} was moved`));
      assert.equal(loaded.model.numItems, 21);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('fromParameters copies each tensor once, or with own: true keeps the item tables themselves', () => {
  for (const strategy of STRATEGIES) {
    const saved = model(strategy);
    const itemNames = ['items', 'content', 'delta'];
    const tensors = () => new Map(saved.parameters().map((t) => [t.name, t.data.slice()]));
    const given = tensors();
    const copied = SASRec.fromParameters(saved.config, given, referenceKernels);
    for (const t of copied.parameters()) {
      assert.notEqual(t.data, given.get(t.name), `${strategy} ${t.name}: copied`);
      assert.ok(bytesOf(t.data).equals(bytesOf(given.get(t.name)!)), `${strategy} ${t.name}: equal`);
    }
    const owned = tensors();
    const kept = SASRec.fromParameters(saved.config, owned, referenceKernels, { own: true });
    for (const t of kept.parameters()) {
      if (itemNames.includes(t.name)) assert.equal(t.data, owned.get(t.name), `${strategy} ${t.name}: kept`);
      else assert.notEqual(t.data, owned.get(t.name), `${strategy} ${t.name}: small tensors are copied`);
      assert.ok(bytesOf(t.data).equals(bytesOf(owned.get(t.name)!)), `${strategy} ${t.name}: equal`);
    }
    // A table that does not start its buffer cannot grow in place: it is copied even with own.
    const offset = tensors();
    const tableOf: Record<string, string> = {
      id: 'items',
      'content-init': 'items',
      'content-frozen': 'content',
    };
    const name = tableOf[strategy] ?? 'delta';
    const table = offset.get(name)!;
    const shifted = new Float32Array(table.length + 1).subarray(1);
    shifted.set(table);
    offset.set(name, shifted);
    const fromShifted = SASRec.fromParameters(saved.config, offset, referenceKernels, { own: true });
    const restored = fromShifted.parameters().find((t) => t.name === name)!;
    assert.notEqual(restored.data, shifted);
    assert.ok(bytesOf(restored.data).equals(bytesOf(table)));
  }
});

test('fromParameters names a missing or wrong-size tensor', () => {
  const saved = model('content-map');
  const tensors = () =>
    new Map<string, Float32Array>(saved.parameters().map((t) => [t.name, t.data.slice()]));
  const cases: [string, Float32Array | null, RegExp][] = [
    [
      'delta',
      new Float32Array(5),
      /fromParameters: tensor 'delta' has 5 values, expected 168 \(shape 21 x 8\)/,
    ],
    ['delta', null, /fromParameters: missing tensor 'delta'/],
    ['map.weight', new Float32Array(3), /tensor 'map.weight' has 3 values, expected 96 \(shape 12 x 8\)/],
    ['blocks.0.attn.wq', new Float32Array(3), /tensor 'blocks.0.attn.wq' has 3 values, expected 64/],
    ['final_ln.beta', null, /missing tensor 'final_ln.beta'/],
  ];
  for (const [name, data, message] of cases) {
    for (const own of [false, true]) {
      const given = tensors();
      if (data) given.set(name, data);
      else given.delete(name);
      assert.throws(() => SASRec.fromParameters(saved.config, given, referenceKernels, { own }), message);
    }
  }
});

test('readSafetensors reads what decodeSafetensors reads, into the arrays its allocator gives', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-load-'));
  try {
    const tensors = [
      { name: 'f', shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 0, Infinity, -0) },
      { name: 'i', shape: [3], data: Int32Array.of(-1, 0, 7) },
      { name: 'u', shape: [5], data: Uint8Array.of(1, 2, 3, 4, 5) },
      { name: 'g', shape: [2], data: Float64Array.of(Math.PI, -1e300) },
      { name: 'e', shape: [0, 4], data: new Float32Array(0) },
    ];
    const bytes = encodeSafetensors(tensors, { note: 'x' });
    const path = join(root, 'm.safetensors');
    await writeFile(path, bytes);
    const fromBytes = decodeSafetensors(bytes, path);
    const given = new Map<string, TensorData>();
    const fromFile = await readSafetensors(path, (name, dtype, shape) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data =
        dtype === 'F32'
          ? new Float32Array(n + 4).subarray(0, n)
          : decodeSafetensors(bytes, path).tensors.get(name)!.data.slice();
      given.set(name, data);
      return data;
    });
    assert.deepEqual(fromFile.metadata, { note: 'x' });
    assert.deepEqual([...fromFile.tensors.keys()], [...fromBytes.tensors.keys()]);
    for (const [name, t] of fromFile.tensors) {
      assert.equal(t.data, given.get(name), `${name}: the allocator's array`);
      assert.deepEqual(t.shape, fromBytes.tensors.get(name)!.shape);
      assert.ok(bytesOf(t.data).equals(bytesOf(fromBytes.tensors.get(name)!.data)), name);
      assert.equal(t.data.constructor, fromBytes.tensors.get(name)!.data.constructor, name);
    }
    // The default allocator: plain arrays of the file's types.
    const plain = await readSafetensors(path);
    for (const [name, t] of plain.tensors)
      assert.ok(bytesOf(t.data).equals(bytesOf(fromBytes.tensors.get(name)!.data)));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('readSafetensors refuses truncated, malformed and wrong-size files, naming the file and tensor', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-load-'));
  try {
    const good = encodeSafetensors([
      { name: 'a', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
      { name: 'b', shape: [3], data: Int32Array.of(-1, 0, 1) },
    ]);
    const path = join(root, 'bad.safetensors');
    const refused = async (bytes: Uint8Array, message: RegExp) => {
      await writeFile(path, bytes);
      await assert.rejects(readSafetensors(path), (error: Error) => {
        assert.match(error.message, /bad\.safetensors: not a valid safetensors file: /);
        assert.match(error.message, message);
        return true;
      });
    };
    await refused(good.subarray(0, 5), /file is 5 bytes, shorter than the 8-byte header length/);
    await refused(good.subarray(0, 0), /file is 0 bytes/);
    await refused(good.subarray(0, 20), /header length \d+ runs past the end of the file/);
    await refused(good.subarray(0, good.length - 4), /tensor 'b': data_offsets \[16, 28\] outside the data/);
    await refused(good.subarray(0, good.length - 12), /tensor 'b': data_offsets \[16, 28\] outside the data/);
    await refused(Buffer.concat([good, Buffer.alloc(4)]), /data holds 32 bytes but tensors index 28/);
    const withHeader = (header: object, dataBytes: number) => {
      const json = Buffer.from(JSON.stringify(header));
      const out = Buffer.alloc(8 + json.length + dataBytes);
      out.writeBigUInt64LE(BigInt(json.length), 0);
      json.copy(out, 8);
      return out;
    };
    await refused(
      withHeader({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8),
      /tensor 'a': 8 bytes do not match shape \[3\] of F32/,
    );
    await refused(
      withHeader({ a: { dtype: 'BF16', shape: [4], data_offsets: [0, 8] } }, 8),
      /tensor 'a': unsupported dtype "BF16"/,
    );
    await refused(
      withHeader(
        {
          a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
          b: { dtype: 'F32', shape: [1], data_offsets: [2, 6] },
        },
        6,
      ),
      /tensor 'b' starts at byte 2, expected 4 \(hole or overlap\)/,
    );
    await refused(withHeader({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /shape must be/);
    await refused(
      Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('[]')]),
      /does not start/,
    );

    // A file that shrinks while it is read (here: as tensor 'b' is about to be read) is refused, not zero-filled.
    await writeFile(path, good);
    await assert.rejects(
      readSafetensors(path, (name, dtype, shape) => {
        if (name === 'b') truncateSync(path, good.length - 6);
        const n = shape.reduce((x, y) => x * y, 1);
        return dtype === 'F32' ? new Float32Array(n) : new Int32Array(n);
      }),
      new RegExp(
        `bad\\.safetensors: not a valid safetensors file: tensor 'b': the file ends at byte ${good.length - 6}, 6 bytes short`,
      ),
    );
    // An allocator that returns the wrong type or length is a programming error, named as such.
    await writeFile(path, good);
    await assert.rejects(
      readSafetensors(path, () => new Float32Array(4)),
      /bad\.safetensors: tensor 'b': the allocator returned the wrong type or length/,
    );
    await assert.rejects(
      readSafetensors(join(root, 'absent.safetensors')),
      /absent\.safetensors: cannot read \(ENOENT\)/,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('loadModel refuses a weights file cut short, naming the file', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-load-'));
  try {
    const saved = model('content-delta');
    const dir = join(root, 'm');
    await saveModel(dir, { model: saved, itemIds: ids(saved.numItems), numWarm: 15 });
    truncateSync(join(dir, 'model.safetensors'), statSync(join(dir, 'model.safetensors')).size - 100);
    await assert.rejects(
      loadModel(dir),
      /m[/\\]model\.safetensors: not a valid safetensors file: tensor '.+': data_offsets \[\d+, \d+\] outside the data/,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('a knn artifact loads for serving into the table it read, normalized in place, as a copy would be', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-load-'));
  try {
    const dim = 6;
    const vectors = unitContent(30, dim, 3).map((v, i) => v * (1 + (i % 5))); // rows of different norms
    const dir = join(root, 'knn');
    await saveModel(dir, {
      kind: 'knn',
      model: {
        config: { dim, maxLength: 10 },
        numItems: 30,
        parameters: () => [{ name: 'content', shape: [31, dim], data: vectors }],
      },
      itemIds: ids(30),
      numWarm: 30,
    });
    const loaded = await loadScoringModel(dir);
    const expected = new KnnScoringModel(vectors.slice(), dim, 10);
    const table = loaded.model.itemEmbeddings();
    assert.ok(bytesOf(table).equals(bytesOf(expected.itemEmbeddings())));
    assert.ok(table.buffer.byteLength > table.byteLength, 'spare room for appended items');
    assert.equal(loaded.artifact.weights.size, 0);
    // own: in place, padding row zeroed, the same rows as a copy; without own the caller's array is untouched.
    const given = vectors.slice();
    given.fill(1, 0, dim);
    const copy = given.slice();
    const copied = new KnnScoringModel(given, dim, 10);
    assert.ok(bytesOf(given).equals(bytesOf(copy)), 'input untouched without own');
    const owned = new KnnScoringModel(given, dim, 10, { own: true });
    assert.equal(owned.itemEmbeddings(), given);
    assert.ok(bytesOf(owned.itemEmbeddings()).equals(bytesOf(copied.itemEmbeddings())));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
