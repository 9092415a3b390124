import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cp, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { loadContent } from '../src/content/store.js';
import { writeTinyBertModel } from '../src/content/tiny-bert.js';
import { LocalTransformerEncoder } from '../src/content/transformer.js';

const texts = ['Red nail polish', 'argan hair oil for dry hair', 'shampoo', 'The blue cream, 50 ml!'];

/** Independent reference: the same tokenizer, a direct ONNX Runtime session, pooling and L2 written out here. */
async function referenceVectors(
  dir: string,
  name: string,
  inputs: string[],
  pooling: 'mean' | 'cls',
): Promise<number[][]> {
  env.allowRemoteModels = false;
  env.localModelPath = dir + '/';
  const tokenizer = await AutoTokenizer.from_pretrained(name);
  const encoded = tokenizer(inputs, { padding: true, truncation: true }) as unknown as Record<
    string,
    { data: BigInt64Array; dims: number[] }
  >;
  const session = await ort.InferenceSession.create(join(dir, name, 'onnx', 'model.onnx'));
  const feeds: Record<string, ort.Tensor> = {};
  for (const key of ['input_ids', 'attention_mask', 'token_type_ids']) {
    const t = encoded[key];
    feeds[key] = new ort.Tensor('int64', BigInt64Array.from(t.data), t.dims);
  }
  const result = await session.run(feeds);
  const hidden = result.last_hidden_state;
  const [batch, tokens, dim] = hidden.dims as number[];
  const data = hidden.data as Float32Array;
  const mask = encoded.attention_mask.data;
  const out: number[][] = [];
  for (let b = 0; b < batch; b++) {
    const v = new Array<number>(dim).fill(0);
    if (pooling === 'cls') for (let j = 0; j < dim; j++) v[j] = data[b * tokens * dim + j];
    else {
      let n = 0;
      for (let t = 0; t < tokens; t++)
        if (mask[b * tokens + t] === 1n) {
          n++;
          for (let j = 0; j < dim; j++) v[j] += data[(b * tokens + t) * dim + j];
        }
      for (let j = 0; j < dim; j++) v[j] /= n;
    }
    const norm = Math.hypot(...v);
    out.push(v.map((x) => x / norm));
  }
  return out;
}

function assertClose(actual: Float32Array, expected: number[][], what: string): void {
  const dim = expected[0].length;
  assert.equal(actual.length, expected.length * dim, `${what}: size`);
  for (let i = 0; i < expected.length; i++)
    for (let j = 0; j < dim; j++)
      assert.ok(
        Math.abs(actual[i * dim + j] - expected[i][j]) < 1e-5,
        `${what}: row ${i} component ${j}: ${actual[i * dim + j]} vs ${expected[i][j]}`,
      );
}

test('local transformer encoder matches a direct ONNX Runtime run (E5: passage prefix + mean; BGE: CLS)', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-tiny-'));
  try {
    await writeTinyBertModel(join(root, 'tiny-e5'), { hidden: 16, seed: 1 });
    await writeTinyBertModel(join(root, 'tiny-bge'), { hidden: 12, seed: 2 });

    const e5 = await LocalTransformerEncoder.load(join(root, 'tiny-e5'));
    assert.equal(e5.family, 'e5');
    assert.equal(e5.pooling, 'mean');
    assert.equal(e5.prefix, 'passage: ');
    const progress: number[] = [];
    const e5Vectors = await e5.encode(texts, { batchSize: 3, onProgress: (done) => progress.push(done) });
    assert.deepEqual(progress, [0, 3, 4]);
    assertClose(
      e5Vectors,
      await referenceVectors(
        root,
        'tiny-e5',
        texts.map((t) => `passage: ${t}`),
        'mean',
      ),
      'e5',
    );

    const bge = await LocalTransformerEncoder.load(join(root, 'tiny-bge'));
    assert.equal(bge.family, 'bge');
    assert.equal(bge.pooling, 'cls');
    assertClose(await bge.encode(texts), await referenceVectors(root, 'tiny-bge', texts, 'cls'), 'bge');

    // Batching does not change the vectors; pooling can be overridden.
    assertClose(
      await e5.encode(texts, { batchSize: 1 }),
      await referenceVectors(
        root,
        'tiny-e5',
        texts.map((t) => `passage: ${t}`),
        'mean',
      ),
      'e5 batch 1',
    );
    const clsE5 = await LocalTransformerEncoder.load(join(root, 'tiny-e5'), { pooling: 'cls', prefix: '' });
    assertClose(
      await clsE5.encode(texts),
      await referenceVectors(root, 'tiny-e5', texts, 'cls'),
      'e5 as cls',
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('the vector cache computes each text once and returns identical vectors', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-tiny-'));
  try {
    await writeTinyBertModel(join(root, 'tiny-e5'), { hidden: 8 });
    const encoder = await LocalTransformerEncoder.load(join(root, 'tiny-e5'));
    const cacheDir = join(root, 'cache');
    const first = await encoder.encode(texts, { cacheDir });
    const record = 32 + 4 * 8;
    const cacheFile = async () => {
      const { readdir } = await import('node:fs/promises');
      const [file] = await readdir(cacheDir);
      return (await stat(join(cacheDir, file))).size;
    };
    assert.equal(await cacheFile(), texts.length * record);
    const progress: number[] = [];
    const again = await encoder.encode(texts, { cacheDir, onProgress: (d) => progress.push(d) });
    assert.deepEqual(again, first);
    assert.deepEqual(progress, [texts.length], 'everything came from the cache');
    const more = await encoder.encode([...texts, 'nail cream'], { cacheDir });
    assert.deepEqual(more.subarray(0, first.length), first);
    assert.equal(await cacheFile(), (texts.length + 1) * record);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('an incomplete model directory fails with a message naming the missing files', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-tiny-'));
  try {
    const full = join(root, 'full-e5');
    await writeTinyBertModel(full, { hidden: 8 });
    const cases: [string, string[], RegExp][] = [
      ['no-tokenizer', ['tokenizer.json'], /incomplete: missing tokenizer\.json \(expected config\.json/],
      ['no-onnx', ['onnx'], /incomplete: missing onnx\/model\.onnx/],
      [
        'no-config',
        ['config.json', 'tokenizer_config.json'],
        /incomplete: missing config\.json, tokenizer_config\.json/,
      ],
    ];
    for (const [name, remove, pattern] of cases) {
      const dir = join(root, name);
      await cp(full, dir, { recursive: true });
      for (const file of remove) await rm(join(dir, file), { recursive: true });
      await assert.rejects(LocalTransformerEncoder.load(dir), pattern, name);
    }
    await assert.rejects(
      LocalTransformerEncoder.load(join(root, 'absent')),
      /absent is incomplete: missing config\.json, tokenizer\.json/,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('deltarec embed --encoder local:DIR encodes a catalog with the model and records how', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-tiny-'));
  try {
    await writeTinyBertModel(join(root, 'tiny-e5'), { hidden: 8 });
    const items = join(root, 'items.csv');
    await writeFile(items, 'item_id,title,brand\na,Red nail polish,Acme\nb,Hair oil,Oilco\n');
    const { run: embed } = await import('../src/cli/commands/embed.js');
    const log = console.log;
    console.log = () => {};
    let code;
    try {
      code = await embed([
        '--items',
        items,
        '--encoder',
        `local:${join(root, 'tiny-e5')}`,
        '--fields',
        'title,brand',
        '--out',
        join(root, 'content'),
      ]);
    } finally {
      console.log = log;
    }
    assert.equal(code, 0);
    const content = await loadContent(join(root, 'content'));
    assert.deepEqual(content.ids, ['a', 'b']);
    assert.equal(content.encoder.kind, 'transformer');
    assert.equal(content.encoder.pooling, 'mean');
    const encoder = await LocalTransformerEncoder.load(join(root, 'tiny-e5'));
    const expected = await encoder.encode(['Red nail polish . Acme', 'Hair oil . Oilco']);
    assertClose(
      content.vectors,
      [0, 1].map((i) => Array.from(expected.subarray(i * 8, (i + 1) * 8))),
      'embed',
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
