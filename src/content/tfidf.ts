/**
 * The built-in text encoder (no downloaded weights): TF-IDF over words and word pairs of chosen text fields,
 * reduced by a seeded randomized truncated SVD. The fitted state (vocabulary, idf, SVD components) is saved so that
 * items added later are encoded exactly like the ones it was fitted on.
 *
 * Conventions follow scikit-learn's TfidfVectorizer(ngram_range=(1, 2), min_df, sublinear_tf=True) with smooth idf
 * (idf = ln((1 + n) / (1 + df)) + 1) and L2-normalized rows; TruncatedSVD's transform (X V, i.e. U Sigma).
 * Differences: word pairs never cross a field boundary, and a field can carry a weight that multiplies its counts.
 * Optional (off by default): character n-grams within word boundaries (scikit-learn's analyzer 'char_wb', alone or
 * next to the words), a cap on the vocabulary, and static word vectors averaged with the TF-IDF weights and
 * concatenated to the SVD output (word-vectors.ts).
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { truncatedSvd } from './linalg.js';
import { sparseOperator, type CsrMatrix } from './sparse.js';
import {
  averageWordVectors,
  wordVectorBlock,
  type WordVectorBlock,
  type WordVectorTable,
} from './word-vectors.js';

/** One document: its field values in the encoder's field order (a plain string is a single field). */
export type TextDocument = string | readonly string[];

export interface TfidfOptions {
  /** Keep terms that occur in at least this many fitted documents. Default 2. */
  minDf?: number;
  /** 1: words only; 2: words and word pairs (bigrams). Default 2. */
  ngramMax?: 1 | 2;
  /** Use 1 + ln(tf) instead of tf. Default true. */
  sublinearTf?: boolean;
  /** Shorter tokens are dropped (scikit-learn's default token pattern keeps 2+ characters). Default 2. */
  minTokenLength?: number;
  /** Multiplier of each field's term counts, in field order (default all 1). */
  fieldWeights?: number[] | null;
  /**
   * Terms: 'word' (words, and word pairs when ngramMax is 2; the default), 'char' (character n-grams of each word
   * padded with one space on each side, like scikit-learn's 'char_wb'), or 'word+char' (both in one row).
   */
  analyzer?: Analyzer;
  /** Smallest and largest character n-gram length (analyzer 'char' or 'word+char'). Default [3, 5]. */
  charNgrams?: [number, number];
  /** Keep at most this many terms, those in the most fitted documents (ties: term order). Default: no cap. */
  maxFeatures?: number | null;
}

export const ANALYZERS = ['word', 'char', 'word+char'] as const;
export type Analyzer = (typeof ANALYZERS)[number];

type ResolvedTfidfOptions = Required<Omit<TfidfOptions, 'fieldWeights' | 'maxFeatures'>> & {
  fieldWeights: number[] | null;
  maxFeatures: number | null;
};

/** Marks character n-gram terms, so they never collide with words or word pairs ('#' is not a word character). */
const CHAR_PREFIX = '#';

function resolveTfidfOptions(options: TfidfOptions): ResolvedTfidfOptions {
  const resolved = {
    minDf: options.minDf ?? 2,
    ngramMax: options.ngramMax ?? 2,
    sublinearTf: options.sublinearTf ?? true,
    minTokenLength: options.minTokenLength ?? 2,
    fieldWeights: options.fieldWeights ?? null,
    analyzer: options.analyzer ?? 'word',
    charNgrams: options.charNgrams ?? [3, 5],
    maxFeatures: options.maxFeatures ?? null,
  };
  if (!(Number.isInteger(resolved.minDf) && resolved.minDf >= 1))
    throw new Error(`tfidf: minDf must be an integer >= 1`);
  if (resolved.ngramMax !== 1 && resolved.ngramMax !== 2) throw new Error(`tfidf: ngramMax must be 1 or 2`);
  if (resolved.fieldWeights?.some((w) => !(w >= 0 && Number.isFinite(w))))
    throw new Error(`tfidf: field weights must be finite and >= 0`);
  if (!ANALYZERS.includes(resolved.analyzer))
    throw new Error(`tfidf: analyzer must be one of ${ANALYZERS.join(', ')} (got '${resolved.analyzer}')`);
  const [lo, hi] = resolved.charNgrams;
  if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 1 && hi >= lo))
    throw new Error(`tfidf: charNgrams must be two integers [min, max] with 1 <= min <= max`);
  if (resolved.maxFeatures !== null && !(Number.isInteger(resolved.maxFeatures) && resolved.maxFeatures >= 1))
    throw new Error(`tfidf: maxFeatures must be an integer >= 1`);
  return resolved;
}

/** The options as saved: the keys added after version 1 only when they differ from their defaults. */
function savedOptions(options: ResolvedTfidfOptions): Record<string, unknown> {
  const { analyzer, charNgrams, maxFeatures, ...original } = options;
  return {
    ...original,
    ...(analyzer !== 'word' ? { analyzer, charNgrams } : {}),
    ...(maxFeatures !== null ? { maxFeatures } : {}),
  };
}

/**
 * Character n-grams of one word within its boundaries: the word padded with a space on each side, every substring
 * of each length from min to max; a padded word no longer than a length is taken whole, once (scikit-learn's
 * 'char_wb'). E.g. 'gel', [3, 4] -> ' ge', 'gel', 'el ', ' gel', 'gel '.
 */
export function charNgrams(word: string, min: number, max: number): string[] {
  const padded = [...` ${word} `]; // code points, so an astral character is never split
  const grams: string[] = [];
  for (let n = min; n <= max; n++) {
    if (padded.length <= n) {
      grams.push(padded.join(''));
      break;
    }
    for (let i = 0; i + n <= padded.length; i++) grams.push(padded.slice(i, i + n).join(''));
  }
  return grams;
}

/**
 * Field specs 'name' or 'name:weight' (e.g. ['title:2', 'brand', 'categories:0.5']) -> the field names and, when
 * any weight is given, one weight per field (1 where none is given). `where` names the option in errors.
 */
export function parseFieldSpecs(
  specs: readonly string[],
  where: string,
): { fields: string[]; weights: number[] | undefined } {
  const fields: string[] = [];
  const weights: number[] = [];
  let weighted = false;
  for (const spec of specs) {
    const colon = spec.lastIndexOf(':');
    const name = (colon >= 0 ? spec.slice(0, colon) : spec).trim();
    const text = colon >= 0 ? spec.slice(colon + 1).trim() : '';
    if (name === '') throw new Error(`${where}: '${spec}' has no field name (expected NAME or NAME:WEIGHT)`);
    const weight = colon >= 0 ? Number(text) : 1;
    if (colon >= 0 && (text === '' || !(weight >= 0) || !Number.isFinite(weight)))
      throw new Error(`${where}: field '${name}' has weight '${text}'; expected a finite number >= 0`);
    if (fields.includes(name)) throw new Error(`${where}: field '${name}' is given twice`);
    weighted ||= colon >= 0;
    fields.push(name);
    weights.push(weight);
  }
  if (weighted && weights.every((w) => w === 0)) throw new Error(`${where}: every field has weight 0`);
  return { fields, weights: weighted ? weights : undefined };
}

const WORD = /[\p{L}\p{N}\p{M}_]+/gu;

/** Lowercased Unicode word tokens (letters, digits, marks, underscore) of at least minLength characters. */
export function tokenize(text: string, minLength = 2): string[] {
  const tokens: string[] = [];
  for (const match of text.toLowerCase().normalize('NFC').matchAll(WORD)) {
    // .length counts UTF-16 units: only a lone astral character could pass a minimum of 2 wrongly.
    if (match[0].length >= minLength) tokens.push(match[0]);
  }
  return tokens;
}

/** Weighted term counts of one document (words, then word pairs within each field). */
function countTerms(doc: TextDocument, options: ResolvedTfidfOptions): Map<string, number> {
  const fields = typeof doc === 'string' ? [doc] : doc;
  const counts = new Map<string, number>();
  for (let f = 0; f < fields.length; f++) {
    const weight = options.fieldWeights?.[f] ?? 1;
    if (weight === 0 || !fields[f]) continue;
    const tokens = tokenize(fields[f], options.minTokenLength);
    const words = options.analyzer !== 'char';
    const chars = options.analyzer !== 'word';
    for (let i = 0; i < tokens.length; i++) {
      if (words) {
        counts.set(tokens[i], (counts.get(tokens[i]) ?? 0) + weight);
        if (options.ngramMax === 2 && i + 1 < tokens.length) {
          const pair = tokens[i] + ' ' + tokens[i + 1];
          counts.set(pair, (counts.get(pair) ?? 0) + weight);
        }
      }
      if (chars) {
        for (const gram of charNgrams(tokens[i], options.charNgrams[0], options.charNgrams[1])) {
          const term = CHAR_PREFIX + gram;
          counts.set(term, (counts.get(term) ?? 0) + weight);
        }
      }
    }
  }
  return counts;
}

/** A fitted TF-IDF vectorizer. */
export class TfidfVectorizer {
  readonly index: Map<string, number>;

  readonly options: ResolvedTfidfOptions;

  constructor(
    readonly terms: string[],
    readonly idf: Float32Array,
    options: TfidfOptions,
  ) {
    this.options = resolveTfidfOptions(options);
    this.index = new Map(terms.map((t, i) => [t, i]));
  }

  /** The options in the form the encoder state stores them. */
  savedOptions(): Record<string, unknown> {
    return savedOptions(this.options);
  }

  /** True when the term is a single word (not a word pair or a character n-gram). */
  static isWord(term: string): boolean {
    return !term.startsWith(CHAR_PREFIX) && !term.includes(' ');
  }

  static fit(docs: readonly TextDocument[], options: TfidfOptions = {}): TfidfVectorizer {
    return TfidfVectorizer.fitTransform(docs, options).vectorizer;
  }

  /** Fits on docs and returns their TF-IDF rows too (one tokenization pass). */
  static fitTransform(
    docs: readonly TextDocument[],
    options: TfidfOptions = {},
  ): { vectorizer: TfidfVectorizer; matrix: CsrMatrix } {
    const resolved = resolveTfidfOptions(options);
    const counts = docs.map((doc) => countTerms(doc, resolved));
    const df = new Map<string, number>();
    for (const c of counts) for (const term of c.keys()) df.set(term, (df.get(term) ?? 0) + 1);
    let terms = [...df.keys()].filter((t) => df.get(t)! >= resolved.minDf).sort();
    if (resolved.maxFeatures !== null && terms.length > resolved.maxFeatures) {
      const order = terms.map((_, i) => i).sort((a, b) => df.get(terms[b])! - df.get(terms[a])! || a - b);
      const keep = order.slice(0, resolved.maxFeatures).sort((a, b) => a - b);
      terms = keep.map((i) => terms[i]);
    }
    if (terms.length === 0)
      throw new Error(`tfidf: no term occurs in at least ${resolved.minDf} of the ${docs.length} documents`);
    const idf = new Float32Array(terms.length);
    for (let i = 0; i < terms.length; i++) idf[i] = Math.log((1 + docs.length) / (1 + df.get(terms[i])!)) + 1;
    const vectorizer = new TfidfVectorizer(terms, idf, resolved);
    return { vectorizer, matrix: vectorizer.rowsFromCounts(counts) };
  }

  get numFeatures(): number {
    return this.terms.length;
  }

  /** L2-normalized TF-IDF rows; a document without known terms is an empty (zero) row. */
  transform(docs: readonly TextDocument[]): CsrMatrix {
    return this.rowsFromCounts(docs.map((doc) => countTerms(doc, this.options)));
  }

  private rowsFromCounts(counts: readonly Map<string, number>[]): CsrMatrix {
    const n = counts.length;
    const indptr = new Int32Array(n + 1);
    const rowIndices: Int32Array[] = [];
    const rowValues: Float32Array[] = [];
    for (let r = 0; r < n; r++) {
      const entries: [number, number][] = [];
      for (const [term, count] of counts[r]) {
        const col = this.index.get(term);
        if (col === undefined) continue;
        const tf = this.options.sublinearTf ? 1 + Math.log(count) : count;
        if (tf > 0) entries.push([col, tf * this.idf[col]]);
      }
      entries.sort((a, b) => a[0] - b[0]);
      let norm = 0;
      for (const [, v] of entries) norm += v * v;
      norm = Math.sqrt(norm) || 1;
      rowIndices.push(Int32Array.from(entries, (e) => e[0]));
      rowValues.push(Float32Array.from(entries, (e) => e[1] / norm));
      indptr[r + 1] = indptr[r] + entries.length;
    }
    const indices = new Int32Array(indptr[n]);
    const values = new Float32Array(indptr[n]);
    for (let r = 0; r < n; r++) {
      indices.set(rowIndices[r], indptr[r]);
      values.set(rowValues[r], indptr[r]);
    }
    return { rows: n, cols: this.terms.length, indptr, indices, values };
  }
}

export interface TfidfSvdOptions extends TfidfOptions {
  /** SVD dimension (clamped to the rank the data allows). Default 512; 0 (word vectors alone) needs wordVectors. */
  dim?: number;
  /**
   * Static word vectors: each item also gets its TF-IDF-weighted mean word vector (unit length), appended after the
   * SVD components (word-vectors.ts). The vectors of the vocabulary's words are kept in the encoder state.
   */
  wordVectors?: WordVectorTable | null;
  /**
   * Terms of the sparse rows (encodeSparse: lexical fusion, sparse KNN) when they should differ from the dense
   * vectors' (e.g. character n-grams for the SVD, words for the fusion cosine). Default: the same vectorizer.
   */
  lexicalAnalyzer?: Analyzer | null;
  seed?: number;
  powerIterations?: number;
  oversample?: number;
  /** Names of the catalog fields the documents are made of (recorded in the saved state). */
  fields?: string[];
  onProgress?: (message: string) => void;
}

export interface TfidfSvdInfo {
  fields: string[];
  numDocuments: number;
  numFeatures: number;
  dim: number;
  singularValues: number[];
  /** Share of the TF-IDF matrix's squared Frobenius norm kept by the SVD (uncentered explained variance). */
  energyKept: number;
  seed: number;
  powerIterations: number;
  oversample: number;
}

const STATE_FILE = 'tfidf-svd.json';
const IDF_FILE = 'idf.f32';
const COMPONENTS_FILE = 'components.f32';
const WORD_VECTORS_FILE = 'word-vectors.f32';
const LEXICAL_IDF_FILE = 'lexical-idf.f32';

/**
 * TF-IDF followed by a truncated SVD: encode(docs) = tfidf(docs) V, rows of length info.dim; with word vectors,
 * each row continues with the item's mean word vector (wordVectors.dim more values).
 */
export class TfidfSvdEncoder {
  constructor(
    readonly vectorizer: TfidfVectorizer,
    /** numFeatures x info.dim, row-major. */
    readonly components: Float32Array,
    readonly info: TfidfSvdInfo,
    readonly wordVectors: WordVectorBlock | null = null,
    /** The vectorizer of the sparse rows, when it is not `vectorizer` (TfidfSvdOptions.lexicalAnalyzer). */
    readonly lexicalVectorizer: TfidfVectorizer | null = null,
  ) {}

  /** Output width: the SVD dimension plus the word-vector dimension. */
  get dim(): number {
    return this.info.dim + (this.wordVectors?.dim ?? 0);
  }

  /** Fits vocabulary, idf and SVD on docs (e.g. the catalog, or only warm items). */
  static fit(docs: readonly TextDocument[], options: TfidfSvdOptions = {}): TfidfSvdEncoder {
    const { seed = 0, powerIterations = 2, oversample = 10, onProgress } = options;
    const requested = options.dim ?? 512;
    const table = options.wordVectors ?? null;
    if (!(Number.isInteger(requested) && requested >= (table ? 0 : 1)))
      throw new Error(`tfidf-svd: dim must be an integer >= 1 (>= 0 with word vectors)`);
    const { vectorizer, matrix: x } = TfidfVectorizer.fitTransform(docs, options);
    const dim = Math.min(requested, x.rows, x.cols);
    if (dim < requested)
      onProgress?.(
        `tfidf-svd: dim ${requested} exceeds the rank bound min(${x.rows} docs, ${x.cols} terms); using ${dim}`,
      );
    onProgress?.(
      `tfidf-svd: ${x.rows} documents, ${x.cols} terms, ${x.values.length} non-zeros; SVD to ${dim}`,
    );
    const svd =
      dim > 0
        ? truncatedSvd(sparseOperator(x), dim, { seed, powerIterations, oversample, onProgress })
        : { values: new Float64Array(0), right: new Float64Array(0) };
    let total = 0;
    for (const v of x.values) total += v * v;
    let kept = 0;
    for (const s of svd.values) kept += s * s;
    let block: WordVectorBlock | null = null;
    if (table) {
      block = wordVectorBlock(vectorizer.terms, TfidfVectorizer.isWord, table);
      const words = vectorizer.terms.filter(TfidfVectorizer.isWord).length;
      onProgress?.(`tfidf-svd: ${block.features.length} of ${words} words have a vector in ${table.source}`);
      if (block.features.length === 0)
        throw new Error(`tfidf-svd: none of the ${words} words has a vector in ${table.source}`);
    }
    const info: TfidfSvdInfo = {
      fields: options.fields ?? [],
      numDocuments: x.rows,
      numFeatures: x.cols,
      dim,
      singularValues: Array.from(svd.values),
      energyKept: total > 0 ? kept / total : 0,
      seed,
      powerIterations,
      oversample,
    };
    const lexicalAnalyzer = options.lexicalAnalyzer ?? null;
    const lexical =
      lexicalAnalyzer !== null && lexicalAnalyzer !== vectorizer.options.analyzer
        ? TfidfVectorizer.fit(docs, { ...options, analyzer: lexicalAnalyzer })
        : null;
    return new TfidfSvdEncoder(vectorizer, Float32Array.from(svd.right), info, block, lexical);
  }

  /** Sparse L2-normalized TF-IDF rows (the encoder's full-richness representation). */
  encodeSparse(docs: readonly TextDocument[]): CsrMatrix {
    return (this.lexicalVectorizer ?? this.vectorizer).transform(docs);
  }

  /** Dense vectors, docs.length x dim, row-major. */
  encode(docs: readonly TextDocument[]): Float32Array {
    const x = this.vectorizer.transform(docs);
    const width = this.dim;
    const out = new Float32Array(x.rows * width);
    const dim = this.info.dim;
    const comp = this.components;
    for (let r = 0; r < x.rows; r++) {
      const o = r * width;
      for (let p = x.indptr[r]; p < x.indptr[r + 1]; p++) {
        const v = x.values[p];
        const src = x.indices[p] * dim;
        for (let j = 0; j < dim; j++) out[o + j] += v * comp[src + j];
      }
    }
    if (this.wordVectors) averageWordVectors(x, this.wordVectors, out, width, dim);
    return out;
  }

  /** Writes the state into dir (created; files replaced atomically). */
  async save(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const state = {
      format: 'deltarec-tfidf-svd',
      version: 1,
      ...this.info,
      options: this.vectorizer.savedOptions(),
      files: {
        idf: IDF_FILE,
        components: COMPONENTS_FILE,
        ...(this.wordVectors ? { wordVectors: WORD_VECTORS_FILE } : {}),
      },
      ...(this.wordVectors
        ? {
            wordVectors: {
              source: this.wordVectors.source,
              dim: this.wordVectors.dim,
              features: Array.from(this.wordVectors.features),
            },
          }
        : {}),
      ...(this.lexicalVectorizer
        ? {
            lexical: {
              options: this.lexicalVectorizer.savedOptions(),
              terms: this.lexicalVectorizer.terms,
              idf: LEXICAL_IDF_FILE,
            },
          }
        : {}),
      terms: this.vectorizer.terms,
    };
    if (this.lexicalVectorizer)
      await writeAtomic(join(dir, LEXICAL_IDF_FILE), float32Bytes(this.lexicalVectorizer.idf));
    await writeAtomic(join(dir, IDF_FILE), float32Bytes(this.vectorizer.idf));
    await writeAtomic(join(dir, COMPONENTS_FILE), float32Bytes(this.components));
    if (this.wordVectors)
      await writeAtomic(join(dir, WORD_VECTORS_FILE), float32Bytes(this.wordVectors.vectors));
    await writeAtomic(join(dir, STATE_FILE), JSON.stringify(state) + '\n');
  }

  static async load(dir: string): Promise<TfidfSvdEncoder> {
    const path = join(dir, STATE_FILE);
    let state;
    try {
      state = JSON.parse(await readFile(path, 'utf8'));
    } catch (error) {
      throw new Error(`tfidf-svd: cannot read encoder state ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (state.format !== 'deltarec-tfidf-svd')
      throw new Error(`tfidf-svd: ${path} is not a tfidf-svd state file`);
    const idf = await readFloat32(join(dir, IDF_FILE), state.numFeatures);
    const components = await readFloat32(join(dir, COMPONENTS_FILE), state.numFeatures * state.dim);
    const info: TfidfSvdInfo = {
      fields: state.fields,
      numDocuments: state.numDocuments,
      numFeatures: state.numFeatures,
      dim: state.dim,
      singularValues: state.singularValues,
      energyKept: state.energyKept,
      seed: state.seed,
      powerIterations: state.powerIterations,
      oversample: state.oversample,
    };
    let wordVectors: WordVectorBlock | null = null;
    if (state.wordVectors) {
      const { source, dim, features } = state.wordVectors;
      if (
        typeof source !== 'string' ||
        !(Number.isInteger(dim) && dim > 0) ||
        !Array.isArray(features) ||
        !features.every(
          (f: unknown) => Number.isInteger(f) && (f as number) >= 0 && (f as number) < state.numFeatures,
        )
      )
        throw new Error(`tfidf-svd: ${path}: 'wordVectors' needs a source, a dim and feature indices`);
      const vectors = await readFloat32(join(dir, WORD_VECTORS_FILE), features.length * dim);
      wordVectors = { source, dim, features: Int32Array.from(features), vectors };
    }
    let vectorizer: TfidfVectorizer;
    let lexical: TfidfVectorizer | null = null;
    try {
      vectorizer = new TfidfVectorizer(state.terms, idf, state.options);
      if (state.lexical) {
        const { terms, options } = state.lexical;
        if (!Array.isArray(terms)) throw new Error(`'lexical' needs its terms`);
        const lexicalIdf = await readFloat32(join(dir, LEXICAL_IDF_FILE), terms.length);
        lexical = new TfidfVectorizer(terms, lexicalIdf, options);
      }
    } catch (error) {
      throw new Error(`${path}: ${(error as Error).message}`, { cause: error });
    }
    return new TfidfSvdEncoder(vectorizer, components, info, wordVectors, lexical);
  }
}

export function float32Bytes(a: Float32Array): Uint8Array {
  // Float32Array is little-endian on every platform Node supports (x64, arm64).
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export async function readFloat32(path: string, expectedLength: number): Promise<Float32Array> {
  const bytes = await readFile(path);
  if (bytes.byteLength !== expectedLength * 4)
    throw new Error(
      `${path}: expected ${expectedLength} float32 values (${expectedLength * 4} bytes), found ${bytes.byteLength} bytes`,
    );
  const out = new Float32Array(expectedLength);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

/** Writes to a temporary sibling and renames, so a reader never sees a partial file. */
export async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}
