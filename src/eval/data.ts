/**
 * The data side of an experiment: where the interactions come from (files, a recipe, a saved split or the built-in
 * synthetic generator), the split options, and the content vectors (built-in text encoder or precomputed vectors),
 * aligned with the split's item indices.
 */
import { resolve } from 'node:path';
import { parseFieldSpecs, TfidfSvdEncoder, type Analyzer, type TextDocument } from '../content/tfidf.js';
import { loadWordVectors, type WordVectorTable } from '../content/word-vectors.js';
import {
  readCatalog,
  readInteractions,
  type CatalogReadOptions,
  type InteractionReadOptions,
} from '../data/readers.js';
import { loadRecipe } from '../data/recipes/index.js';
import { alignCatalog, prepareSplit, type SplitOptions } from '../data/split.js';
import { loadSplit } from '../data/store.js';
import { generateSynthetic, type SyntheticOptions } from '../data/synthetic.js';
import type { CsrMatrix } from '../content/sparse.js';
import type { Catalog, Interactions, PreparedSplit } from '../data/types.js';

export interface DataConfig {
  /** Interactions file (CSV/TSV/JSONL/Parquet, optionally .gz) and its column options. */
  interactions?: string;
  read?: InteractionReadOptions;
  /** Item catalog with text fields (for the text encoder). */
  items?: string;
  readItems?: CatalogReadOptions;
  /** A dataset recipe (amazon-beauty, amazon-m2, zvuk) with its file paths and options. */
  recipe?: { name: string } & Record<string, unknown>;
  /** The built-in synthetic dataset with these generator options. */
  synthetic?: Partial<SyntheticOptions>;
  /** A split saved by `deltarec prepare` (its catalog, if any, from `items`). */
  prepared?: string;
  /** Options of the protocol (PROTOCOL.md); defaults are the paper's. */
  split?: Partial<SplitOptions>;
  /**
   * Backtest: split, drop every interaction from the threshold T on, and split what is left again with the same
   * options. The inner test period (the last part of the training period) has its own new items, so settings that
   * concern cold items can be chosen on it without looking at the real test period. Needs timestamps.
   */
  backtest?: boolean;
}

export interface ContentConfig {
  /** 'tfidf-svd' (built-in, the default), 'vectors' (precomputed, from a recipe), or 'none'. */
  encoder?: 'tfidf-svd' | 'vectors' | 'none';
  /**
   * Catalog fields that make the item text, in order (default: the recipe's, else title); 'name:weight' multiplies
   * the field's term counts (e.g. ["title:2", "brand", "categories"]; the alternative to fieldWeights).
   */
  fields?: string[];
  /** SVD dimension (0: word vectors alone). */
  dim?: number;
  minDf?: number;
  ngramMax?: 1 | 2;
  fieldWeights?: number[];
  /** 'word' (default), 'char' (character n-grams within words) or 'word+char'. */
  analyzer?: Analyzer;
  /** Character n-gram lengths [min, max] (default [3, 5]). */
  charNgrams?: [number, number];
  /** Vocabulary cap: the terms in the most items. */
  maxFeatures?: number;
  /** Static word vectors appended to the SVD output: 'wink' (optional npm package) or a GloVe text file. */
  wordVectors?: string;
  /** Terms of the sparse rows (lexical fusion) when they should differ from `analyzer`'s (default: the same). */
  lexicalAnalyzer?: Analyzer;
  /** Fit the encoder on every catalog item ('all', like `deltarec embed`) or on warm items only ('warm'). */
  fitOn?: 'all' | 'warm';
  seed?: number;
}

export interface PreparedData extends BuiltContent {
  split: PreparedSplit;
  /**
   * With prepareData's `withBacktest`: the backtest inside this split's training data (backtestSplit) with its own
   * content built the same way (encoder fitted on its own warm items), for choices made on the backtest.
   */
  backtest?: { split: PreparedSplit } & BuiltContent;
}

/**
 * The inner split of a backtest (DataConfig.backtest): the interactions before the threshold T of `outer` (their
 * split with `options`), split again with the same options. Needs timestamps. `sameValidationUsers`: the inner
 * validation users are the outer split's (instead of a new seeded share), so a model trained on the inner split never
 * trains on an outer validation user, and a model warm-started from it is validated on users it never saw.
 */
export function backtestSplit(
  interactions: Interactions,
  outer: PreparedSplit,
  options: Partial<SplitOptions>,
  { sameValidationUsers = false }: { sameValidationUsers?: boolean } = {},
): { split: PreparedSplit; interactions: Interactions; note: string } {
  const threshold = outer.stats.threshold_timestamp;
  if (threshold === null || !interactions.timestamps) {
    throw new Error(`backtest: needs the temporal protocol (interactions with timestamps)`);
  }
  const before = beforeTime(interactions, threshold);
  const outerValidation = outer.validation.users;
  if (sameValidationUsers && !outerValidation)
    throw new Error(`backtest: the split names no validation users`);
  const split = prepareSplit(
    before,
    sameValidationUsers ? { ...options, validationUsers: new Set(outerValidation) } : options,
  );
  const note =
    `backtest: interactions before T = ${threshold} split again (inner T = ${split.stats.threshold_timestamp})` +
    (sameValidationUsers
      ? `, validation users: the full split's (${split.validation.targets.length} validation cases here)`
      : '');
  return { split, interactions: before, note };
}

/** The interactions with a timestamp before `threshold`. */
function beforeTime(x: Interactions, threshold: number): Interactions {
  const keep: number[] = [];
  for (let i = 0; i < x.users.length; i++) if (x.timestamps![i] < threshold) keep.push(i);
  return {
    ...x,
    users: Int32Array.from(keep, (i) => x.users[i]),
    items: Int32Array.from(keep, (i) => x.items[i]),
    timestamps: Float64Array.from(keep, (i) => x.timestamps![i]),
    ratings: x.ratings ? Float32Array.from(keep, (i) => x.ratings![i]) : null,
  };
}

/** Paths in a config are relative to the config file's directory. */
export async function prepareData(
  data: DataConfig,
  content: ContentConfig,
  baseDir: string,
  log: (line: string) => void = () => {},
  withBacktest = false,
): Promise<PreparedData> {
  const path = (p: string) => resolve(baseDir, p);
  const notes: string[] = [];
  let interactions: Interactions | null = null;
  let catalog: Catalog | null = null;
  let vectors: { ids: string[]; dim: number; data: Float32Array } | null = null;
  let textFields: string[] | undefined;
  let splitDefaults: Partial<SplitOptions> = {};
  let split: PreparedSplit;
  let inner: PreparedSplit | null = null;
  const sources = ['interactions', 'recipe', 'synthetic', 'prepared'].filter(
    (k) => data[k as keyof DataConfig] !== undefined,
  );
  if (sources.length !== 1) {
    throw new Error(
      `data: give exactly one of interactions, recipe, synthetic, prepared (got ${sources.join(', ') || 'none'})`,
    );
  }
  const started = performance.now();
  if (data.synthetic) {
    const generated = generateSynthetic(data.synthetic);
    interactions = generated.interactions;
    catalog = generated.catalog;
    notes.push(`synthetic dataset (${JSON.stringify(data.synthetic)})`);
  } else if (data.recipe) {
    const { name, ...rest } = data.recipe;
    const options: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(rest)) {
      options[k] =
        typeof v === 'string' &&
        ['reviews', 'meta', 'sessions', 'products', 'interactions', 'vectors'].includes(k)
          ? path(v)
          : v;
    }
    const result = await loadRecipe(name, options);
    interactions = result.interactions;
    catalog = result.catalog ?? null;
    vectors = result.vectors ?? null;
    textFields = result.textFields;
    splitDefaults = (result.splitOptions ?? {}) as Partial<SplitOptions>;
    notes.push(`recipe ${name}`, ...result.notes);
  } else if (data.interactions) {
    interactions = await readInteractions(path(data.interactions), data.read ?? {});
  }
  if (data.items) catalog = await readCatalog(path(data.items), data.readItems ?? {});
  if (data.prepared) {
    if (data.backtest) throw new Error(`data: 'backtest' needs raw interactions, not a prepared split`);
    if (withBacktest)
      throw new Error(`data: a choice on the backtest needs raw interactions, not a prepared split`);
    split = await loadSplit(path(data.prepared));
  } else {
    const options = { ...splitDefaults, ...data.split };
    split = prepareSplit(interactions!, options);
    if (data.backtest) {
      const backtest = backtestSplit(interactions!, split, options);
      split = backtest.split;
      notes.push(backtest.note);
    }
    if (withBacktest) {
      const backtest = backtestSplit(interactions!, split, options);
      inner = backtest.split;
      notes.push(`choices on the ${backtest.note}`);
    }
  }
  const s = split.stats;
  log(
    `data: ${split.numItems} items (${split.numWarm} warm), ${split.train.offsets.length - 1} training users, ` +
      `${split.test.targets.length} test cases (${(100 * (s.cold_test_share ?? 0)).toFixed(1)}% cold) ` +
      `in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );

  const wordVectors = await contentWordVectors(content, baseDir);
  const built = buildContent(split, { catalog, vectors, textFields, wordVectors }, content, log);
  const backtest = inner
    ? {
        split: inner,
        ...buildContent(inner, { catalog, vectors, textFields, wordVectors }, content, (l) =>
          log(`backtest: ${l}`),
        ),
      }
    : undefined;
  return { split, ...built, backtest, notes: [...notes, ...built.notes] };
}

/** The word-vector table a content config names (a file path relative to baseDir), or null. */
export async function contentWordVectors(
  content: ContentConfig,
  baseDir: string,
): Promise<WordVectorTable | null> {
  const spec = content.wordVectors;
  if (spec === undefined) return null;
  return loadWordVectors(spec === 'wink' ? spec : resolve(baseDir, spec));
}

export interface ContentSource {
  catalog?: Catalog | null;
  vectors?: { ids: string[]; dim: number; data: Float32Array } | null;
  /** Default text fields (a recipe's). */
  textFields?: string[];
  /** A fitted text encoder to use instead of fitting one (a warm start keeps the old model's). */
  encoder?: TfidfSvdEncoder | null;
  /** The table ContentConfig.wordVectors names (contentWordVectors). */
  wordVectors?: WordVectorTable | null;
}

export interface BuiltContent {
  content: Float32Array | null;
  contentDim: number;
  /** The fitted text encoder (saved with models so new items are encoded the same way). */
  encoder: TfidfSvdEncoder | null;
  /** The text encoder's sparse TF-IDF rows, (numItems + 1) rows, row 0 empty (lexical fusion, KNN); else null. */
  lexical: CsrMatrix | null;
  notes: string[];
}

/** Content vectors aligned with the split's item indices: (numItems + 1) x dim, row 0 zeros. */
export function buildContent(
  split: PreparedSplit,
  source: ContentSource,
  content: ContentConfig,
  log: (line: string) => void = () => {},
): BuiltContent {
  const { catalog, vectors } = source;
  const notes: string[] = [];
  const encoder = content.encoder ?? (vectors ? 'vectors' : catalog ? 'tfidf-svd' : 'none');
  if (encoder === 'none') return { content: null, contentDim: 0, encoder: null, lexical: null, notes };
  const rows = split.numItems + 1;
  if (encoder === 'vectors') {
    if (!vectors)
      throw new Error(`content: encoder 'vectors' needs precomputed vectors (a recipe that provides them)`);
    const out = new Float32Array(rows * vectors.dim);
    const rowOf = new Map(vectors.ids.map((id, i) => [id, i]));
    let missing = 0;
    for (let k = 1; k < rows; k++) {
      const r = rowOf.get(split.itemIds[k]);
      if (r === undefined) missing++;
      else out.set(vectors.data.subarray(r * vectors.dim, (r + 1) * vectors.dim), k * vectors.dim);
    }
    if (missing) notes.push(`${missing} items have no content vector (zeros)`);
    return { content: out, contentDim: vectors.dim, encoder: null, lexical: null, notes };
  }
  if (!catalog) throw new Error(`content: the text encoder needs an item catalog (data.items or a recipe)`);
  const aligned = alignCatalog(split, catalog);
  const encoderFields = source.encoder?.info.fields;
  const specs = parseFieldSpecs(content.fields ?? source.textFields ?? ['title'], 'content.fields');
  if (specs.weights && content.fieldWeights)
    throw new Error(
      `content: give field weights either in fields ('name:weight') or in fieldWeights, not both`,
    );
  const fieldWeights = specs.weights ?? content.fieldWeights;
  if (fieldWeights && fieldWeights.length !== specs.fields.length)
    throw new Error(
      `content: fieldWeights has ${fieldWeights.length} weights for ${specs.fields.length} fields`,
    );
  if (content.wordVectors !== undefined && !source.wordVectors && !source.encoder)
    throw new Error(`content: wordVectors '${content.wordVectors}' was not loaded (contentWordVectors)`);
  const fields = encoderFields?.length ? encoderFields : specs.fields;
  for (const f of fields) {
    if (!aligned.fields[f]) {
      throw new Error(
        `content: the catalog has no field '${f}' (fields: ${Object.keys(aligned.fields).join(', ')})`,
      );
    }
  }
  if (aligned.missing) notes.push(`${aligned.missing} items are missing from the catalog (zero content)`);
  const docs: TextDocument[] = [];
  for (let k = 1; k < rows; k++) docs.push(fields.map((f) => aligned.fields[f][k]));
  const t = performance.now();
  const fitDocs = content.fitOn === 'warm' ? docs.slice(0, split.numWarm) : docs;
  const model =
    source.encoder ??
    TfidfSvdEncoder.fit(fitDocs, {
      dim: content.dim ?? 512,
      minDf: content.minDf,
      ngramMax: content.ngramMax,
      fieldWeights,
      analyzer: content.analyzer,
      charNgrams: content.charNgrams,
      maxFeatures: content.maxFeatures,
      wordVectors: source.wordVectors,
      lexicalAnalyzer: content.lexicalAnalyzer,
      seed: content.seed ?? 0,
      fields,
    });
  const dim = model.dim;
  const out = new Float32Array(rows * dim);
  out.set(model.encode(docs), dim);
  const lexical = model.encodeSparse([[''], ...docs]);
  const fitted = source.encoder ? 'the given encoder' : `fitted on ${content.fitOn ?? 'all'} items`;
  const options = model.vectorizer.options;
  const lexicalOptions = model.lexicalVectorizer?.options;
  const terms =
    (options.analyzer === 'word' ? '' : `, ${options.analyzer} ${options.charNgrams.join('-')}`) +
    (lexicalOptions ? `, sparse rows ${lexicalOptions.analyzer}` : '');
  const weights = options.fieldWeights ? ` (weights ${options.fieldWeights.join(', ')})` : '';
  const vectorsOf = model.wordVectors
    ? ` + ${model.wordVectors.dim}-d word vectors (${model.wordVectors.source})`
    : '';
  const what = `tfidf-svd on ${fields.join('+')}${weights}${terms}, ${model.info.dim} dims${vectorsOf}, ${fitted}`;
  log(`content: ${what} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  notes.push(`content: ${what}`);
  return { content: out, contentDim: dim, encoder: model, lexical, notes };
}
