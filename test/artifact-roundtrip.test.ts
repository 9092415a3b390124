import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  decodeSafetensors,
  encodeSafetensors,
  loadArtifact,
  loadModel,
  saveModel,
} from '../src/model/artifact.js';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { Random } from '../src/util/random.js';

function unitRows(rows: number, d: number, seed: number): Float32Array {
  const rng = new Random(seed);
  const out = new Float32Array((rows + 1) * d);
  for (let r = 1; r <= rows; r++) {
    let norm = 0;
    for (let j = 0; j < d; j++) norm += (out[r * d + j] = rng.nextGaussian()) ** 2;
    for (let j = 0; j < d; j++) out[r * d + j] /= Math.sqrt(norm);
  }
  return out;
}

function smallModel(): { model: SASRec; itemIds: string[] } {
  const numItems = 12;
  const d = 8;
  const model = new SASRec(sasrecConfig({ numItems, d, maxLength: 6, seed: 3 }), unitRows(numItems, d, 1));
  // Non-trivial values in every tensor so the roundtrip checks real data.
  const rng = new Random(5);
  for (const t of model.parameters()) {
    const first = t.name === 'content' || t.name === 'delta' ? d : 0; // padding rows stay zero
    for (let i = first; i < t.data.length; i++) t.data[i] += 0.1 * rng.nextGaussian();
  }
  model.parametersChanged();
  const itemIds = ['', ...Array.from({ length: numItems }, (_, i) => `item-${i + 1}`)];
  return { model, itemIds };
}

const encoderPart = {
  kind: 'test-encoder',
  save: async (dir: string) => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'state.json'), '{"vocabulary":["a","b"]}');
  },
};

test('saveModel/loadModel roundtrip keeps tensors, item map and scores', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-artifact-'));
  try {
    const { model, itemIds } = smallModel();
    const dir = join(root, 'model');
    await saveModel(dir, { model, itemIds, numWarm: 10, encoder: encoderPart });
    const loaded = await loadModel(dir);
    assert.deepEqual(loaded.itemIds, itemIds);
    assert.equal(loaded.numWarm, 10);
    assert.equal(loaded.manifest.model.kind, 'sasrec');
    assert.equal(loaded.manifest.model.config.d, 8);
    assert.equal(loaded.encoder?.kind, 'test-encoder');
    assert.equal(await readFile(join(loaded.encoder!.dir, 'state.json'), 'utf8'), '{"vocabulary":["a","b"]}');
    assert.equal(loaded.projection, null);
    const original = new Map(model.parameters().map((t) => [t.name, t.data]));
    for (const t of loaded.model.parameters()) assert.deepEqual(t.data, original.get(t.name), t.name);

    const inputs = [Int32Array.of(1, 2, 3), Int32Array.of(7)];
    const a = new Float32Array(2 * 13);
    const b = new Float32Array(2 * 13);
    model.score(inputs, a);
    loaded.model.score(inputs, b);
    assert.deepEqual(b, a);

    // Appended (cold) items are part of the saved model and map.
    loaded.model.appendItems(unitRows(1, 8, 9).subarray(8), 1);
    await saveModel(dir, { model: loaded.model, itemIds: [...itemIds, 'new'], numWarm: 10 });
    const again = await loadModel(dir);
    assert.equal(again.model.numItems, 13);
    assert.equal(again.itemIds[13], 'new');
    assert.equal(again.encoder, null);
    // The replaced artifact left no temporary directories behind.
    assert.deepEqual(await readdir(root), ['model']);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('model.safetensors follows the safetensors layout', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-artifact-'));
  try {
    const { model, itemIds } = smallModel();
    await saveModel(root + '/m', { model, itemIds, numWarm: 12 });
    const bytes = await readFile(join(root, 'm', 'model.safetensors'));
    const headerLength = Number(bytes.readBigUInt64LE(0));
    assert.equal((8 + headerLength) % 8, 0, 'data starts 8-byte aligned');
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
    assert.equal(header.__metadata__.format, 'pt');
    const entries = Object.entries(header).filter(([name]) => name !== '__metadata__') as [
      string,
      { dtype: string; shape: number[]; data_offsets: [number, number] },
    ][];
    assert.equal(entries.length, model.parameters().length);
    let end = 0;
    for (const [name, info] of entries.sort((x, y) => x[1].data_offsets[0] - y[1].data_offsets[0])) {
      assert.equal(info.dtype, 'F32');
      assert.equal(info.data_offsets[0], end, `${name} follows the previous tensor`);
      end = info.data_offsets[1];
      const expected = model.parameters().find((t) => t.name === name)!;
      assert.deepEqual(info.shape, expected.shape);
      const start = 8 + headerLength + info.data_offsets[0];
      const values = new Float32Array(
        bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + 8 + headerLength + end),
      );
      assert.deepEqual(values, expected.data);
    }
    assert.equal(8 + headerLength + end, bytes.length, 'no bytes after the last tensor');

    // Readable from Python (numpy) by following the same spec, when python3 with numpy is installed.
    const script = `
import json, struct, sys, numpy as np
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
header = json.loads(raw[8:8 + n])
out = {}
for name, info in header.items():
    if name == '__metadata__': continue
    a, b = info['data_offsets']
    arr = np.frombuffer(raw[8 + n + a: 8 + n + b], dtype='<f4').reshape(info['shape'])
    out[name] = [list(arr.shape), float(arr.astype(np.float64).sum())]
print(json.dumps(out))`;
    let python: string | null = null;
    try {
      python = execFileSync('python3', ['-c', script, join(root, 'm', 'model.safetensors')], {
        encoding: 'utf8',
      });
    } catch {
      python = null; // python3 or numpy absent: the JavaScript checks above still ran
    }
    if (python !== null) {
      const sums = JSON.parse(python) as Record<string, [number[], number]>;
      for (const t of model.parameters()) {
        assert.deepEqual(sums[t.name][0], t.shape);
        let sum = 0;
        for (const v of t.data) sum += v;
        assert.ok(
          Math.abs(sums[t.name][1] - sum) < 1e-3,
          `${t.name}: python sum ${sums[t.name][1]} vs ${sum}`,
        );
      }
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('safetensors decoder rejects malformed files with clear messages', () => {
  const good = encodeSafetensors(
    [
      { name: 'a', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
      { name: 'b', shape: [3], data: Int32Array.of(-1, 0, 1) },
    ],
    { note: 'x' },
  );
  const decoded = decodeSafetensors(good, 'good');
  assert.deepEqual(decoded.metadata, { note: 'x' });
  assert.deepEqual(decoded.tensors.get('a')!.data, Float32Array.of(1, 2, 3, 4));
  assert.deepEqual(decoded.tensors.get('b')!.data, Int32Array.of(-1, 0, 1));
  assert.throws(() => decodeSafetensors(good.subarray(0, 5), 'f'), /shorter than the 8-byte header/);
  assert.throws(
    () => decodeSafetensors(good.subarray(0, good.length - 4), 'f'),
    /data_offsets \[16, 28\] outside the data/,
  );
  const huge = Buffer.from(good);
  huge.writeBigUInt64LE(BigInt(good.length), 0);
  assert.throws(() => decodeSafetensors(huge, 'f'), /runs past the end/);
  const withHeader = (header: object) => {
    const json = Buffer.from(JSON.stringify(header));
    const out = Buffer.alloc(8 + json.length + 8);
    out.writeBigUInt64LE(BigInt(json.length), 0);
    json.copy(out, 8);
    return out;
  };
  assert.throws(
    () => decodeSafetensors(withHeader({ a: { dtype: 'BF16', shape: [4], data_offsets: [0, 8] } }), 'f'),
    /tensor 'a': unsupported dtype "BF16"/,
  );
  assert.throws(
    () => decodeSafetensors(withHeader({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }), 'f'),
    /8 bytes do not match shape \[3\]/,
  );
  assert.throws(
    () =>
      decodeSafetensors(
        withHeader({
          a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
          b: { dtype: 'F32', shape: [1], data_offsets: [2, 6] },
        }),
        'f',
      ),
    /hole or overlap/,
  );
});

test('loadArtifact names the problem', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-artifact-'));
  try {
    await assert.rejects(loadArtifact(join(root, 'absent')), /model directory does not exist/);
    const { model, itemIds } = smallModel();
    const dir = join(root, 'm');
    await saveModel(dir, { model, itemIds, numWarm: 12 });
    const manifestPath = join(dir, 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
    await writeFile(manifestPath, JSON.stringify({ ...manifest, format_version: 99 }));
    await assert.rejects(loadArtifact(dir), /format_version' is 99/);
    await writeFile(
      manifestPath,
      JSON.stringify({ ...manifest, items: { ids: ['', 'a', 'a'], num_warm: 1 } }),
    );
    await assert.rejects(loadArtifact(dir), /empty or duplicate id at index 2/);
    await writeFile(manifestPath, JSON.stringify({ ...manifest, items: { ids: ['', 'a'], num_warm: 1 } }));
    await assert.rejects(loadModel(dir), /lists 1 items but the weights hold 12/);
    await writeFile(manifestPath, JSON.stringify(manifest));
    const weights = await readFile(join(dir, 'model.safetensors'));
    await writeFile(join(dir, 'model.safetensors'), weights.subarray(0, weights.length - 4));
    await assert.rejects(loadArtifact(dir), /model.safetensors: not a valid safetensors file/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
