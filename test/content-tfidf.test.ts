import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run as embed } from '../src/cli/commands/embed.js';
import { alignContent, alignSparse, loadContent, loadContentEncoder } from '../src/content/store.js';
import { TfidfSvdEncoder, TfidfVectorizer, tokenize } from '../src/content/tfidf.js';
import { ContentKNN } from '../src/model/knn.js';

test('tokenize lowercases, splits on non-word characters (Unicode-aware) and drops 1-character tokens', () => {
  assert.deepEqual(tokenize("L'Oréal Crème-Brûlée 50ml, x 2 ΑΒΓ_δ"), [
    'oréal',
    'crème',
    'brûlée',
    '50ml',
    'αβγ_δ',
  ]);
  assert.deepEqual(tokenize('a b c', 1), ['a', 'b', 'c']);
});

test('TF-IDF rows follow the smooth-idf, sublinear-tf, L2 convention over words and word pairs', () => {
  const docs = ['red nail polish red', 'red lipstick', 'nail polish remover'];
  const v = TfidfVectorizer.fit(docs, { minDf: 1 });
  assert.deepEqual(v.terms, [
    'lipstick',
    'nail',
    'nail polish',
    'polish',
    'polish red',
    'polish remover',
    'red',
    'red lipstick',
    'red nail',
    'remover',
  ]);
  const idf = (df: number) => Math.log(4 / (1 + df)) + 1;
  const x = v.transform([docs[0]]);
  // doc 0: red x2 (df 2), nail, polish, 'nail polish' (df 2), 'red nail', 'polish red' (df 1).
  const raw: Record<string, number> = {
    red: (1 + Math.log(2)) * idf(2),
    nail: idf(2),
    polish: idf(2),
    'nail polish': idf(2),
    'red nail': idf(1),
    'polish red': idf(1),
  };
  const norm = Math.hypot(...Object.values(raw));
  const got = Object.fromEntries(Array.from(x.indices, (c, p) => [v.terms[c], x.values[p]]));
  assert.deepEqual(Object.keys(got).sort(), Object.keys(raw).sort());
  for (const [term, value] of Object.entries(raw)) assert.ok(Math.abs(got[term] - value / norm) < 1e-6, term);
  // min_df 2 keeps only terms in two or more documents; unknown words are ignored at transform time.
  assert.deepEqual(TfidfVectorizer.fit(docs).terms, ['nail', 'nail polish', 'polish', 'red']);
  assert.equal(TfidfVectorizer.fit(docs).transform(['completely unknown']).values.length, 0);
  // Word pairs never cross fields; a zero field weight ignores the field.
  const fielded = TfidfVectorizer.fit(
    [
      ['red', 'nail'],
      ['red', 'nail'],
    ],
    { minDf: 1 },
  );
  assert.deepEqual(fielded.terms, ['nail', 'red']);
  const weighted = TfidfVectorizer.fit([['red', 'nail']], { minDf: 1, fieldWeights: [1, 0] });
  assert.deepEqual(weighted.terms, ['red']);
});

const catalogTitles = [
  'red nail polish',
  'nail polish remover',
  'pink nail polish set',
  'argan hair oil',
  'hair oil for dry hair',
  'coconut hair oil',
  'red lipstick matte',
  'pink lipstick',
  'matte lipstick set',
  'shampoo for dry hair',
  'anti dandruff shampoo',
  'shampoo and conditioner set',
];

test('TfidfSvdEncoder: encode = TF-IDF x components, deterministic, and identical after save/load for new items', async () => {
  const encoder = TfidfSvdEncoder.fit(catalogTitles, { dim: 6, seed: 3, fields: ['title'] });
  assert.equal(encoder.dim, 6);
  const vectors = encoder.encode(catalogTitles);
  const x = encoder.encodeSparse(catalogTitles);
  for (let r = 0; r < x.rows; r++)
    for (let j = 0; j < 6; j++) {
      let s = 0;
      for (let p = x.indptr[r]; p < x.indptr[r + 1]; p++)
        s += x.values[p] * encoder.components[x.indices[p] * 6 + j];
      assert.ok(Math.abs(vectors[r * 6 + j] - s) < 1e-5, `row ${r} component ${j}`);
    }
  assert.deepEqual(TfidfSvdEncoder.fit(catalogTitles, { dim: 6, seed: 3 }).encode(catalogTitles), vectors);
  assert.ok(encoder.info.energyKept > 0 && encoder.info.energyKept <= 1 + 1e-9);
  // Similar titles end up closer than unrelated ones.
  const cos = (a: number, b: number) => {
    const u = vectors.subarray(a * 6, a * 6 + 6);
    const w = vectors.subarray(b * 6, b * 6 + 6);
    return u.reduce((s, v, i) => s + v * w[i], 0) / Math.hypot(...u) / Math.hypot(...w);
  };
  assert.ok(cos(3, 5) > cos(3, 0), 'hair oils are closer to each other than to nail polish');

  const dir = await mkdtemp(join(tmpdir(), 'deltarec-tfidf-'));
  try {
    await encoder.save(dir);
    const loaded = await TfidfSvdEncoder.load(dir);
    const newItems = ['red matte nail polish', 'dry hair shampoo', 'nothing known here'];
    assert.deepEqual(loaded.encode(newItems), encoder.encode(newItems));
    assert.deepEqual(loaded.info.fields, ['title']);
    assert.deepEqual(Array.from(loaded.encode([newItems[2]])), new Array(6).fill(0));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  // dim above the rank bound is clamped.
  // A rank-deficient corpus (6 words, 200 titles, dim above the rank): no amplified noise directions, so every
  // unit TF-IDF row keeps norm <= 1 after the (orthonormal) projection.
  const words = ['red', 'blue', 'green', 'nail', 'hair', 'oil'];
  const repetitive = Array.from(
    { length: 200 },
    (_, i) => `${words[i % 6]} ${words[(i * 7) % 6]} ${words[(i * 5 + 1) % 6]}`,
  );
  const lowRank = TfidfSvdEncoder.fit(repetitive, { dim: 512 });
  const encoded = lowRank.encode(repetitive);
  for (let r = 0; r < repetitive.length; r++) {
    const norm = Math.hypot(...encoded.subarray(r * lowRank.dim, (r + 1) * lowRank.dim));
    assert.ok(Math.abs(norm - 1) < 1e-4, `row ${r} norm ${norm}`);
  }
  const small = TfidfSvdEncoder.fit(catalogTitles.slice(0, 4), { dim: 50 });
  assert.equal(small.dim, Math.min(4, small.info.numFeatures));
});

test('deltarec embed writes a content directory that loads, aligns and re-encodes identically', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-embed-'));
  try {
    const items = join(dir, 'items.csv');
    const lines = catalogTitles.map((t, i) => `i${i},"${t}",brand${i % 3}`);
    await writeFile(items, ['item_id,title,brand', ...lines].join('\n') + '\n');
    const out = join(dir, 'content');
    const silence = console.log;
    console.log = () => {};
    let code;
    try {
      code = await embed([
        '--items',
        items,
        '--encoder',
        'tfidf-svd',
        '--dim',
        '5',
        '--sparse',
        '--out',
        out,
      ]);
    } finally {
      console.log = silence;
    }
    assert.equal(code, 0);
    const content = await loadContent(out);
    assert.equal(content.dim, 5);
    assert.deepEqual(
      content.ids,
      catalogTitles.map((_, i) => `i${i}`),
    );
    assert.equal(content.encoder.kind, 'tfidf-svd');
    assert.deepEqual(content.encoder.fields, ['title']);
    const encoder = (await loadContentEncoder(content))!;
    assert.deepEqual(encoder.encode(catalogTitles.map((t) => [t])), content.vectors);
    const aligned = alignContent(content, ['', 'i3', 'i0'], { missing: 'error' });
    assert.deepEqual(aligned.subarray(5, 10), content.vectors.subarray(15, 20));
    assert.equal(alignSparse(content, ['', 'i3', 'i0'])!.rows, 3);

    // vectors:FILE with the catalog check; usage errors exit with 2, data errors with 1.
    const vectors = join(dir, 'v.jsonl');
    await writeFile(vectors, '{"item_id":"i0","vector":[1,2]}\n{"item_id":"zz","vector":[3,4]}\n');
    const quiet = console.error;
    console.error = () => {};
    try {
      assert.equal(
        await embed(['--items', items, '--encoder', `vectors:${vectors}`, '--out', join(dir, 'v')]),
        1,
      );
      assert.equal(
        await embed([
          '--items',
          items,
          '--encoder',
          'tfidf-svd',
          '--fields',
          'color',
          '--out',
          join(dir, 'x'),
        ]),
        2,
      );
      assert.equal(await embed(['--items', items, '--encoder', 'magic', '--out', join(dir, 'x')]), 2);
    } finally {
      console.error = quiet;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('ContentKNN scores cosine similarity to the mean input vector, dense and sparse alike', () => {
  const encoder = TfidfSvdEncoder.fit(catalogTitles, { dim: 8 });
  const x = encoder.encodeSparse(['', ...catalogTitles]); // row 0 = padding (empty)
  const dense = new Float32Array(x.rows * x.cols);
  for (let r = 0; r < x.rows; r++)
    for (let p = x.indptr[r]; p < x.indptr[r + 1]; p++) dense[r * x.cols + x.indices[p]] = x.values[p] * 3; // scale-free
  const sparseKnn = new ContentKNN({ sparse: x });
  const denseKnn = new ContentKNN({ vectors: dense, dim: x.cols });
  const inputs = [Int32Array.from([4, 5]), Int32Array.from([1]), Int32Array.from([7, 8, 1])];
  const width = catalogTitles.length + 1;
  const a = new Float32Array(inputs.length * width);
  const b = new Float32Array(inputs.length * width);
  sparseKnn.score(inputs, a);
  denseKnn.score(inputs, b);
  for (let i = 0; i < a.length; i++) {
    if (i % width === 0) {
      assert.equal(a[i], -Infinity);
      assert.equal(b[i], -Infinity);
    } else assert.ok(Math.abs(a[i] - b[i]) < 1e-5, `score ${i}: ${a[i]} vs ${b[i]}`);
  }
  // Input 1 is item 1 alone: its own score is cosine 1, the best; hair oils (items 4-6) rank first for input 0.
  assert.ok(Math.abs(a[width + 1] - 1) < 1e-6);
  const top = Array.from(a.subarray(1, width))
    .map((s, i) => [s, i + 1])
    .sort((p, q) => q[0] - p[0])
    .slice(0, 3)
    .map((p) => p[1]);
  assert.deepEqual(top.sort(), [4, 5, 6]);
  // maxLength keeps only the last items of the input.
  const last = new Float32Array(width);
  new ContentKNN({ sparse: x }, { maxLength: 1 }).score([Int32Array.from([7, 8, 1])], last);
  assert.deepEqual(last, a.subarray(width, 2 * width));
  assert.throws(
    () => sparseKnn.score([Int32Array.from([99])], last),
    /input item index 99 is outside 1\.\.12/,
  );
});

test('deltarec embed --fit-split fits the encoder on the split warm items only (synthetic data)', async () => {
  const { generateSynthetic } = await import('../src/data/synthetic.js');
  const { prepareSplit } = await import('../src/data/split.js');
  const { saveSplit } = await import('../src/data/store.js');
  const { writeCatalogCsv } = await import('../src/data/writers.js');
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-embed-split-'));
  try {
    const data = generateSynthetic({ users: 300, items: 200, seed: 5 });
    const split = prepareSplit(data.interactions, { minRating: null });
    await saveSplit(join(dir, 'split'), split);
    await writeCatalogCsv(join(dir, 'items.csv'), data.catalog);
    const log = console.log;
    console.log = () => {};
    const stderrWrite = process.stderr.write.bind(process.stderr);
    const messages: string[] = [];
    process.stderr.write = ((chunk: string) =>
      messages.push(String(chunk)) > 0) as typeof process.stderr.write;
    let code;
    try {
      code = await embed([
        '--items',
        join(dir, 'items.csv'),
        '--encoder',
        'tfidf-svd',
        '--dim',
        '16',
        '--fit-split',
        join(dir, 'split'),
        '--pca-report',
        '4,8',
        '--out',
        join(dir, 'content'),
      ]);
    } finally {
      console.log = log;
      process.stderr.write = stderrWrite;
    }
    assert.equal(code, 0, messages.join(''));
    // --pca-report: standardized and plain PCA for d = 4 and 8, fitted on the warm items.
    const reports = messages.filter((m) => m.includes('projection 16 -> '));
    assert.equal(reports.length, 4, messages.join(''));
    const kept = (m: string) => Number(/keeps ([\d.]+)%/.exec(m)![1]);
    assert.ok(kept(reports[0]) < kept(reports[2]), 'PCA to 8 keeps more variance than PCA to 4');
    assert.ok(reports[0].includes('warm items'), reports[0]);
    const content = await loadContent(join(dir, 'content'));
    const catalogIds = new Set(data.catalog.ids);
    const warmInCatalog = split.itemIds.slice(1, split.numWarm + 1).filter((id) => catalogIds.has(id)).length;
    assert.ok(split.numItems > split.numWarm, 'the synthetic split has cold items');
    assert.equal(content.encoder.fitted_items, warmInCatalog);
    assert.equal(content.ids.length, data.catalog.ids.length, 'every catalog item is still encoded');
    const aligned = alignContent(content, split.itemIds);
    assert.equal(aligned.length, (split.numItems + 1) * 16);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
