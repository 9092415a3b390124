/**
 * The typed library API: fit a model on a prepared split, recommend for sequences of item ids, evaluate, save and
 * load.
 *
 *   const model = await fit(split, { model: 'content-delta', content });
 *   recommend(model, [['B001', 'B002']], { k: 10 });   // [{ items: [...ids], scores: [...] }]
 *   evaluate(model, split).all['ndcg@10'];
 *
 * Models: 'knn' (content KNN), 'sasrec' (ID embeddings, cannot recommend cold items), 'content-init',
 * 'content-delta' (the paper's method), 'content-frozen' and 'content-map' (beyond the paper: a learned map from
 * the full-width content to d, started at the paper's projection, plus the bounded delta; see embeddings.ts). Content models need `content`: one vector per item,
 * (split.numItems + 1) rows aligned with split.itemIds, row 0 zeros, any width (e.g. a 512-d text encoder's
 * output). SASRec variants project it to d (standardize, PCA fitted on warm items, L2); KNN uses it as given.
 */
import type { CsrMatrix } from './content/sparse.js';
import {
  LexicalFusion,
  loadLexicalFusion,
  saveLexicalFusion,
  type LexicalFusionState,
} from './model/fusion.js';
import {
  loadProjection,
  projectContent,
  saveProjection,
  type ProjectionState,
} from './content/projection.js';
import type { PreparedSplit } from './data/types.js';
import {
  evaluate as evaluateRecommender,
  validationNdcg,
  type EvaluateOptions,
  type EvaluationResult,
} from './eval/evaluate.js';
import { kernels } from './kernels/index.js';
import { loadArtifact, loadModel, saveModel, type ContentPart } from './model/artifact.js';

import { ContentKNN } from './model/knn.js';
import { SASRec, sasrecConfig, type EmbeddingStrategy, type SASRecConfig } from './model/sasrec.js';
import type { Recommender } from './model/types.js';
import { train, type EpochProgress, type TrainOptions, type TrainResult } from './train/trainer.js';

export const MODEL_KINDS = [
  'knn',
  'sasrec',
  'content-init',
  'content-delta',
  'content-frozen',
  'content-map',
] as const;
export type ModelKind = (typeof MODEL_KINDS)[number];

export interface FitOptions extends Partial<Omit<SASRecConfig, 'numItems' | 'strategy'>> {
  model: ModelKind;
  /** (split.numItems + 1) x dim content vectors aligned with split.itemIds; required by every model but 'sasrec'. */
  content?: Float32Array;
  /** Standardize content components before the PCA projection (the paper does; default true). */
  standardize?: boolean;
  /** The text encoder that produced `content`, saved with the model so new items are encoded the same way. */
  encoder?: ContentPart | null;
  /**
   * Lexical fusion (fusion.ts, beyond the paper): > 0 adds lexicalWeight x cosine on `lexicalRows` to the model's
   * standardized scores. Default 0 (the paper's scoring).
   */
  lexicalWeight?: number;
  /** (split.numItems + 1) sparse TF-IDF rows aligned with split.itemIds; needed when lexicalWeight > 0. */
  lexicalRows?: CsrMatrix;
  // training (SASRec variants); defaults: the paper's
  epochs?: number;
  batchSize?: number;
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  gradClip?: number;
  patience?: number;
  onProgress?: (progress: EpochProgress) => void;
  signal?: AbortSignal;
  /** Let the trainer stop cleanly on Ctrl-C (default true). */
  handleSigint?: boolean;
}

export interface FittedModel {
  kind: ModelKind;
  recommender: Recommender;
  /** Item id of each recommender row (index 0 = '' padding); warm items first. */
  itemIds: string[];
  numWarm: number;
  /** Inputs are truncated to their last maxLength items. */
  maxLength: number;
  /** The SASRec configuration (SASRec variants). */
  config: SASRecConfig | null;
  /** The fitted content projection (content SASRec variants). */
  projection: ProjectionState | null;
  encoder: ContentPart | null;
  /** KNN only: the content rows it scores with (saved with the model). */
  content: { vectors: Float32Array; dim: number } | null;
  /** Lexical fusion state when the model was fitted with lexicalWeight > 0 (recommender is then a LexicalFusion). */
  lexical: LexicalFusionState | null;
  training: TrainResult | null;
  fitSeconds: number;
}

/** Artifact kind of the content projection (the service reads it back). */
const PROJECTION_KIND = 'pca';
const LEXICAL_KIND = 'lexical-fusion';

const STRATEGY: Record<Exclude<ModelKind, 'knn'>, EmbeddingStrategy> = {
  sasrec: 'id',
  'content-init': 'content-init',
  'content-delta': 'content-delta',
  'content-frozen': 'content-frozen',
  'content-map': 'content-map',
};

function contentWidth(split: PreparedSplit, content: Float32Array | undefined, kind: string): number {
  if (!content) throw new Error(`fit: model '${kind}' needs content vectors (option 'content')`);
  const rows = split.numItems + 1;
  if (content.length === 0 || content.length % rows !== 0) {
    throw new Error(
      `fit: content has ${content.length} values, not a multiple of numItems + 1 = ${rows} rows`,
    );
  }
  return content.length / rows;
}

/** Trains (or builds) a model on split.train; early stopping on the split's validation users. */
export async function fit(split: PreparedSplit, options: FitOptions): Promise<FittedModel> {
  const weight = options.lexicalWeight ?? 0;
  checkLexicalWeight(weight, options.model);
  if (weight > 0 && !options.lexicalRows)
    throw new Error(`fit: lexicalWeight ${weight} needs lexicalRows (sparse TF-IDF rows of every item)`);
  const model = await fitModel(split, options);
  return weight > 0 ? withLexicalFusion(model, options.lexicalRows!, weight) : model;
}

function checkLexicalWeight(weight: number, kind: ModelKind): void {
  if (!(weight >= 0) || !Number.isFinite(weight))
    throw new Error(`fit: lexicalWeight must be a finite number >= 0, got ${weight}`);
  if (weight > 0 && kind === 'knn') throw new Error(`fit: lexicalWeight applies to SASRec models, not knn`);
}

/**
 * The same trained model with lexical fusion (fusion.ts): its scores standardized plus weight x cosine on `rows`
 * ((numItems + 1) sparse TF-IDF rows). Fusion needs no training, so one trained model serves every weight.
 */
export function withLexicalFusion(model: FittedModel, rows: CsrMatrix, weight: number): FittedModel {
  checkLexicalWeight(weight, model.kind);
  const base = unfused(model);
  if (weight === 0) return { ...model, lexical: null, recommender: base };
  const lexical = { rows, weight };
  return { ...model, lexical, recommender: new LexicalFusion(base, lexical, model.maxLength) };
}

/** The model's own recommender, without lexical fusion. */
function unfused(model: FittedModel): Recommender {
  return model.lexical ? (model.recommender as LexicalFusion).model : model.recommender;
}

async function fitModel(split: PreparedSplit, options: FitOptions): Promise<FittedModel> {
  const started = performance.now();
  const kind = options.model;
  if (!(MODEL_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`fit: unknown model '${kind}' (known: ${MODEL_KINDS.join(', ')})`);
  }
  const maxLength = options.maxLength ?? 64;
  if (kind === 'knn') {
    const content = { vectors: options.content!, dim: contentWidth(split, options.content, kind) };
    return {
      kind,
      recommender: new ContentKNN(content, { maxLength }),
      itemIds: split.itemIds,
      numWarm: split.numWarm,
      maxLength,
      config: null,
      projection: null,
      content,
      lexical: null,
      encoder: options.encoder ?? null,
      training: null,
      fitSeconds: (performance.now() - started) / 1000,
    };
  }

  const strategy = STRATEGY[kind];
  const config = sasrecConfig({
    ...pickConfig(options),
    maxLength,
    numItems: split.numWarm,
    strategy,
  });
  if (strategy === 'content-map') return fitContentMap(split, options, config, started);
  let projection: ProjectionState | null = null;
  let projected: Float32Array | null = null;
  if (strategy !== 'id') {
    const dim = contentWidth(split, options.content, kind);
    const result = projectContent(options.content!, dim, split.numWarm, config.d, {
      standardize: options.standardize ?? true,
      seed: config.seed,
    });
    projection = result.state;
    projected = result.vectors;
  }
  const model = new SASRec(config, projected?.subarray(0, (split.numWarm + 1) * config.d), kernels);
  const training = await train(model, split.train, trainOptionsFor(split, options, config, maxLength));
  // Cold items enter with their content vector and zero delta, without retraining.
  if (projected && split.numItems > split.numWarm) {
    model.appendItems(projected.subarray((split.numWarm + 1) * config.d), split.numItems - split.numWarm);
  }
  return {
    kind,
    recommender: model,
    itemIds: split.itemIds.slice(0, model.numItems + 1),
    numWarm: split.numWarm,
    maxLength,
    config: model.config,
    projection,
    encoder: options.encoder ?? null,
    content: null,
    lexical: null,
    training,
    fitSeconds: (performance.now() - started) / 1000,
  };
}

function trainOptionsFor(
  split: PreparedSplit,
  options: FitOptions,
  config: SASRecConfig,
  maxLength: number,
): TrainOptions {
  return {
    epochs: options.epochs,
    batchSize: options.batchSize,
    lr: options.lr,
    betas: options.betas,
    eps: options.eps,
    weightDecay: options.weightDecay,
    gradClip: options.gradClip,
    patience: options.patience,
    seed: config.seed,
    validate: (m) => validationNdcg(m, split, { maxLength }),
    onProgress: options.onProgress,
    signal: options.signal,
    handleSigint: options.handleSigint,
  };
}

/**
 * content-map: the model keeps the full-width content (rows L2-normalized) and learns W (H x d) and b, started at
 * the paper's projection without its final L2 step (standardize + PCA as one linear map, scaled so warm rows have
 * mean norm 1). Cold items are appended through the trained map. The artifact carries no projection: the model
 * takes encoder output (L2-normalized) directly.
 */
async function fitContentMap(
  split: PreparedSplit,
  options: FitOptions,
  config: SASRecConfig,
  started: number,
): Promise<FittedModel> {
  const h = contentWidth(split, options.content, 'content-map');
  const rows = split.numItems + 1;
  const content = normalizeRows(options.content!, rows, h);
  const d = config.d;
  const { state } = projectContent(content, h, split.numWarm, d, {
    standardize: options.standardize ?? true,
    seed: config.seed,
  });
  const { weight, bias } = projectionAsMap(state, content, split.numWarm);
  const mapConfig = { ...config, contentDim: h };
  const model = new SASRec(mapConfig, content.subarray(0, (split.numWarm + 1) * h), kernels);
  model.items.initMap(weight, bias);
  model.parametersChanged();
  const training = await train(
    model,
    split.train,
    trainOptionsFor(split, options, mapConfig, config.maxLength),
  );
  if (split.numItems > split.numWarm) {
    model.appendItems(content.subarray((split.numWarm + 1) * h), split.numItems - split.numWarm);
  }
  return {
    kind: 'content-map',
    recommender: model,
    itemIds: split.itemIds.slice(0, model.numItems + 1),
    numWarm: split.numWarm,
    maxLength: config.maxLength,
    config: model.config,
    projection: null,
    encoder: options.encoder ?? null,
    content: null,
    lexical: null,
    training,
    fitSeconds: (performance.now() - started) / 1000,
  };
}

/** Copy of a rows x dim matrix with unit-norm rows (all-zero rows stay zero). */
function normalizeRows(vectors: Float32Array, rows: number, dim: number): Float32Array {
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += vectors[r * dim + j] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < dim; j++) out[r * dim + j] = vectors[r * dim + j] * inv;
  }
  return out;
}

/**
 * The projection's linear part as x W + b: W[p][k] = s * components[k][p] / scale[p], b[k] = -s * sum_p
 * components[k][p] mean[p] / scale[p], with s chosen so warm rows 1..numWarm have mean norm 1 (the paper's L2
 * normalization, applied on average instead of per row).
 */
function projectionAsMap(
  state: ProjectionState,
  content: Float32Array,
  numWarm: number,
): { weight: Float32Array; bias: Float32Array } {
  const { inputDim: h, outputDim: d, mean, scale, components } = state;
  const w = new Float64Array(h * d);
  const b = new Float64Array(d);
  for (let k = 0; k < d; k++) {
    for (let p = 0; p < h; p++) {
      const v = components[k * h + p] / scale[p];
      w[p * d + k] = v;
      b[k] -= v * mean[p];
    }
  }
  let normSum = 0;
  let counted = 0;
  const y = new Float64Array(d);
  for (let r = 1; r <= numWarm; r++) {
    y.set(b);
    let nonzero = false;
    for (let p = 0; p < h; p++) {
      const x = content[r * h + p];
      if (x === 0) continue;
      nonzero = true;
      for (let k = 0; k < d; k++) y[k] += x * w[p * d + k];
    }
    if (!nonzero) continue;
    let s = 0;
    for (let k = 0; k < d; k++) s += y[k] * y[k];
    normSum += Math.sqrt(s);
    counted++;
  }
  const scaleToUnit = counted > 0 && normSum > 0 ? counted / normSum : 1;
  return {
    weight: Float32Array.from(w, (v) => v * scaleToUnit),
    bias: Float32Array.from(b, (v) => v * scaleToUnit),
  };
}

function pickConfig(o: FitOptions): Partial<SASRecConfig> {
  const out: Partial<SASRecConfig> = {};
  for (const key of [
    'd',
    'blocks',
    'heads',
    'ffWidth',
    'dropout',
    'deltaMax',
    'deltaDropout',
    'activation',
    'seed',
    'loss',
    'negatives',
    'sampler',
    'samplerPower',
    'gbceT',
  ] as const) {
    if (o[key] !== undefined) (out as Record<string, unknown>)[key] = o[key];
  }
  if (o.ffWidth === undefined && o.d !== undefined) out.ffWidth = o.d;
  return out;
}

/**
 * The evaluation mode a model kind is measured in by default (PROTOCOL.md): content models rank cold items and
 * keep cold inputs; plain SASRec cannot represent cold items, so they are neither candidates nor inputs.
 */
export function defaultMode(kind: ModelKind): { recommendColdItems: boolean; filterColdInputs: boolean } {
  return kind === 'sasrec'
    ? { recommendColdItems: false, filterColdInputs: true }
    : { recommendColdItems: true, filterColdInputs: false };
}

/** Full-catalog evaluation on split.test in the model's default mode (override with options). */
export function evaluate(
  model: FittedModel,
  split: PreparedSplit,
  options: EvaluateOptions = {},
): EvaluationResult {
  if (model.itemIds.length - 1 > split.numItems || model.itemIds.some((id, i) => id !== split.itemIds[i])) {
    throw new Error('evaluate: the model was not fitted on this split (its item ids differ)');
  }
  return evaluateRecommender(model.recommender, split, {
    ...defaultMode(model.kind),
    maxLength: model.maxLength,
    ...options,
  });
}

export interface RecommendOptions {
  k?: number;
  /** Per sequence, item ids never to recommend. */
  exclude?: readonly (readonly string[])[];
  /** Remove the sequence's own items (default true). */
  excludeSeen?: boolean;
  /** Cold items (added after training) are candidates (default true). */
  includeCold?: boolean;
}

export interface Recommendation {
  items: string[];
  scores: number[];
}

/** Top-k item ids for each sequence of item ids (most recent last). Unknown ids in a sequence are ignored. */
export function recommend(
  model: FittedModel,
  sequences: readonly (readonly string[])[],
  options: RecommendOptions = {},
): Recommendation[] {
  const k = options.k ?? 10;
  if (!Number.isInteger(k) || k < 1) throw new Error(`recommend: k must be a positive integer, got ${k}`);
  const index = new Map(model.itemIds.map((id, i) => [id, i]));
  const width = model.recommender.numItems + 1;
  const candidates = options.includeCold === false ? model.numWarm + 1 : width;
  const out: Recommendation[] = [];
  const batch = 256;
  const scores = new Float32Array(Math.min(batch, Math.max(sequences.length, 1)) * width);
  const topIndices = new Int32Array(Math.min(batch, Math.max(sequences.length, 1)) * k);
  const topScores = new Float32Array(topIndices.length);
  for (let start = 0; start < sequences.length; start += batch) {
    const count = Math.min(batch, sequences.length - start);
    const inputs = sequences.slice(start, start + count).map((seq) => {
      const known = seq.map((id) => index.get(id) ?? 0).filter((i) => i > 0);
      return Int32Array.from(known.slice(-model.maxLength));
    });
    const scorable = inputs.map((input) => input.length > 0);
    model.recommender.score(
      inputs.map((input) => (input.length > 0 ? input : Int32Array.of(1))),
      scores,
    );
    for (let r = 0; r < count; r++) {
      const row = r * width;
      scores.fill(-Infinity, row + candidates, row + width);
      scores[row] = -Infinity;
      if (options.excludeSeen ?? true)
        for (const id of sequences[start + r]) {
          const i = index.get(id);
          if (i !== undefined) scores[row + i] = -Infinity;
        }
      for (const id of options.exclude?.[start + r] ?? []) {
        const i = index.get(id);
        if (i !== undefined) scores[row + i] = -Infinity;
      }
      if (!scorable[r]) scores.fill(-Infinity, row, row + width);
    }
    kernels.topK(topIndices, topScores, scores, count, width, k);
    for (let r = 0; r < count; r++) {
      const items: string[] = [];
      const values: number[] = [];
      for (let j = 0; j < k; j++) {
        const i = topIndices[r * k + j];
        if (i < 0) break;
        items.push(model.itemIds[i]);
        values.push(topScores[r * k + j]);
      }
      out.push({ items, scores: values });
    }
  }
  return out;
}

/** Saves a fitted model as an artifact directory (manifest + safetensors). */
export async function save(model: FittedModel, dir: string): Promise<void> {
  if (model.kind === 'knn') {
    const { vectors, dim } = model.content!;
    const numItems = vectors.length / dim - 1;
    await saveModel(dir, {
      kind: 'knn',
      model: {
        config: { dim, maxLength: model.maxLength },
        numItems,
        parameters: () => [{ name: 'content', shape: [numItems + 1, dim], data: vectors }],
      },
      itemIds: model.itemIds,
      numWarm: model.numWarm,
      encoder: model.encoder,
    });
    return;
  }
  const sasrec = unfused(model) as SASRec;
  const lexical = model.lexical;
  await saveModel(dir, {
    kind: 'sasrec',
    model: sasrec,
    itemIds: model.itemIds,
    numWarm: model.numWarm,
    encoder: model.encoder,
    projection: model.projection
      ? { kind: PROJECTION_KIND, save: (path: string) => saveProjection(path, model.projection!) }
      : null,
    lexical: lexical
      ? { kind: LEXICAL_KIND, save: (path: string) => saveLexicalFusion(path, lexical) }
      : null,
  });
}

/** Loads a model saved by `save` (or by `deltarec train`). */
export async function load(dir: string): Promise<FittedModel> {
  const artifact = await loadArtifact(dir);
  const { manifest } = artifact;
  if (manifest.model.kind === 'knn') {
    const dim = Number(manifest.model.config.dim);
    const vectors = artifact.weights.get('content');
    if (!vectors) throw new Error(`${dir}: knn artifact has no 'content' tensor`);
    const maxLength = Number(manifest.model.config.maxLength ?? 64);
    return {
      kind: 'knn',
      recommender: new ContentKNN({ vectors, dim }, { maxLength }),
      itemIds: manifest.items.ids,
      numWarm: manifest.items.num_warm,
      maxLength,
      config: null,
      projection: null,
      encoder: null,
      content: { vectors, dim },
      lexical: null,
      training: null,
      fitSeconds: 0,
    };
  }
  const loaded = await loadModel(dir);
  const strategy = loaded.model.config.strategy;
  const kind = (Object.keys(STRATEGY) as (keyof typeof STRATEGY)[]).find((k) => STRATEGY[k] === strategy)!;
  const lexical = loaded.lexical ? await loadLexicalFusion(loaded.lexical.dir) : null;
  return {
    kind,
    recommender: lexical
      ? new LexicalFusion(loaded.model, lexical, loaded.model.config.maxLength)
      : loaded.model,
    lexical,
    itemIds: loaded.itemIds,
    numWarm: loaded.numWarm,
    maxLength: loaded.model.config.maxLength,
    config: loaded.model.config,
    projection: loaded.projection ? await loadProjection(loaded.projection.dir) : null,
    encoder: null,
    content: null,
    training: null,
    fitSeconds: 0,
  };
}

export type { EvaluateOptions, EvaluationResult } from './eval/evaluate.js';
