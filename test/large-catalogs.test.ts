/**
 * Large-catalog features end to end on small data: the generate presets (zvuk vectors with cluster structure, read
 * back by the zvuk recipe; the shop preset's parquet files read back by the readers), and the loss options of fit()
 * saved in the model manifest and loaded back (docs/large-catalogs.md).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fit, load, recommend, save } from '../src/api.js';
import { readCatalog, readInteractions } from '../src/data/readers.js';
import { loadZvuk } from '../src/data/recipes/zvuk.js';
import { prepareSplit } from '../src/data/split.js';
import { generatePreset, topicVectors, writeDataset } from '../src/data/synthetic-presets.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { modelSettings } from '../src/cli/options.js';
import { buildContent } from '../src/eval/data.js';

const dir = mkdtempSync(join(tmpdir(), 'deltarec-large-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('topic vectors: unit norm, similar within a topic, unrelated across topics', () => {
  const topics = Int32Array.from({ length: 400 }, (_, i) => i % 4);
  const v = topicVectors(topics, 4, 128, 1);
  const dot = (a: number, b: number) => {
    let s = 0;
    for (let j = 0; j < 128; j++) s += v[a * 128 + j] * v[b * 128 + j];
    return s;
  };
  let same = 0;
  let other = 0;
  for (let i = 0; i < 100; i++) {
    assert.ok(Math.abs(dot(i, i) - 1) < 1e-5);
    same += dot(i, i + 4) / 100;
    other += dot(i, i + 1) / 100;
  }
  assert.ok(same > 0.35 && same < 0.65, `within-topic cosine ${same}`);
  assert.ok(Math.abs(other) < 0.1, `across-topic cosine ${other}`);
});

test('zvuk preset (scaled down): the zvuk recipe reads the parquet files back unchanged', async () => {
  const { data, vectors } = generatePreset('zvuk', { users: 60, items: 500, topics: 8, meanLength: 30 });
  assert.ok(vectors && vectors.length === 500 * 128);
  const out = join(dir, 'zvuk');
  mkdirSync(out);
  const files = await writeDataset(out, data, 'parquet', vectors);
  assert.deepEqual(files, ['zvuk-interactions.parquet', 'zvuk-track-vectors.parquet']);
  const r = await loadZvuk({
    interactions: join(out, 'zvuk-interactions.parquet'),
    vectors: join(out, 'zvuk-track-vectors.parquet'),
    users: 1000,
  });
  assert.equal(r.interactions.users.length, data.interactions.users.length, 'every play is over 60 s');
  assert.equal(r.interactions.userIds.ids.length, 60);
  // Track ids are the generator's item numbers; vectors round-trip to 6 significant digits.
  const read = r.vectors!;
  const id = read.ids[0];
  const row = Number(id) - 1;
  for (let j = 0; j < 128; j++) {
    assert.ok(Math.abs(read.data[j] - vectors[row * 128 + j]) < 1e-5);
  }
  assert.equal(read.dim, 128);
});

test('shop-like data as parquet: interactions and text catalog read back', async () => {
  const data = generateSynthetic({ users: 80, items: 300, topics: 6, seed: 2 });
  const out = join(dir, 'shop');
  mkdirSync(out);
  await writeDataset(out, data, 'parquet', null);
  const x = await readInteractions(join(out, 'interactions.parquet'));
  assert.equal(x.users.length, data.interactions.users.length);
  const catalog = await readCatalog(join(out, 'items.parquet'), {
    fields: ['title', 'description', 'category'],
  });
  assert.deepEqual(catalog.ids, data.catalog.ids);
  assert.deepEqual(catalog.fields.title, data.catalog.fields.title);
});

test('loss options: fit with gbce and the popularity sampler, saved in the manifest and loaded back', async () => {
  const data = generateSynthetic({ users: 300, items: 150, topics: 6, seed: 3 });
  const split = prepareSplit(data.interactions);
  const built = buildContent(split, { catalog: data.catalog }, { fields: ['title'], dim: 16 });
  const options = {
    d: 16,
    maxLength: 16,
    epochs: 2,
    patience: 2,
    handleSigint: false,
    onProgress: () => {},
    model: 'content-delta' as const,
    content: built.content!,
    loss: 'gbce' as const,
    negatives: 24,
    negativesPer: 'sequence' as const,
    sampler: 'popularity' as const,
    samplerPower: 0.5,
    gbceT: 0.6,
  };
  const model = await fit(split, options);
  assert.ok(model.training!.history.every((h) => Number.isFinite(h.loss)));
  await save(model, join(dir, 'gbce'));
  const manifest = JSON.parse(readFileSync(join(dir, 'gbce', 'manifest.json'), 'utf8'));
  for (const key of ['loss', 'negatives', 'negativesPer', 'sampler', 'samplerPower', 'gbceT'] as const) {
    assert.equal(manifest.model.config[key], options[key], `manifest model.config.${key}`);
  }
  const loaded = await load(join(dir, 'gbce'));
  assert.equal(loaded.config!.loss, 'gbce');
  assert.equal(loaded.config!.negatives, 24);
  assert.equal(loaded.config!.negativesPer, 'sequence');
  const history = [split.itemIds[1], split.itemIds[2]];
  assert.deepEqual(recommend(loaded, [history], { k: 10 }), recommend(model, [history], { k: 10 }));
  await assert.rejects(
    fit(split, { ...options, loss: 'softmax' as never }),
    /loss must be one of full, sampled, gbce/,
  );
  await assert.rejects(fit(split, { ...options, gbceT: 2 }), /gbceT must be in \[0, 1\]/);
  await assert.rejects(
    fit(split, { ...options, negativesPer: 'position' as never }),
    /negativesPer must be one of batch, sequence/,
  );
});

test('deltarec train options: --loss, --negatives, --negatives-per, --sampler, --sampler-power, --gbce-t', () => {
  assert.deepEqual(
    modelSettings({
      loss: 'gbce',
      negatives: '512',
      'negatives-per': 'sequence',
      sampler: 'popularity',
      'sampler-power': '0.75',
      'gbce-t': '0.5',
    }),
    {
      loss: 'gbce',
      negatives: 512,
      negativesPer: 'sequence',
      sampler: 'popularity',
      samplerPower: 0.75,
      gbceT: 0.5,
    },
  );
  assert.throws(
    () => modelSettings({ 'negatives-per': 'position' }),
    /--negatives-per must be one of batch, sequence/,
  );
  assert.throws(() => modelSettings({ loss: 'softmax' }), /--loss must be one of full, sampled, gbce/);
  assert.throws(() => modelSettings({ negatives: '0' }), /--negatives must be an integer >= 1/);
  assert.throws(() => modelSettings({ sampler: 'zipf' }), /--sampler must be one of uniform, popularity/);
  assert.throws(() => modelSettings({ 'gbce-t': '1.5' }), /--gbce-t must be in \[0, 1\]/);
});
