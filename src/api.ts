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
  checkFusionWeights,
  LexicalFusion,
  loadLexicalFusion,
  saveLexicalFusion,
  type LexicalFusionState,
} from './model/fusion.js';
import {
  applyProjection,
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
import { initialContentMap, normalizeRows } from './model/content-map-init.js';
import { ContentKNN } from './model/knn.js';
import { SASRec, sasrecConfig, type EmbeddingStrategy, type SASRecConfig } from './model/sasrec.js';
import type { Recommender } from './model/types.js';
import { architectureOf, checkShrinkPerturb, warmStart, type WarmStartResult } from './model/warm-start.js';
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

export interface FitOptions extends Partial<Omit<SASRecConfig, 'numItems' | 'strategy' | 'warmItems'>> {
  /**
   * The variant, or 'auto': the backtest (`lexicalBacktest`) chooses the variant among `autoModels` and the fusion
   * weight among `lexicalGrid` together (chooseOnBacktest), then the chosen one is fitted on `split`.
   */
  model: ModelKind | 'auto';
  /** model 'auto': the variants compared (content SASRec variants; default DEFAULT_AUTO_MODELS). */
  autoModels?: ModelKind[];
  /** (split.numItems + 1) x dim content vectors aligned with split.itemIds; required by every model but 'sasrec'. */
  content?: Float32Array;
  /** Standardize content components before the PCA projection (the paper does; default true). */
  standardize?: boolean;
  /** The text encoder that produced `content`, saved with the model so new items are encoded the same way. */
  encoder?: ContentPart | null;
  /**
   * Lexical fusion (fusion.ts, beyond the paper): > 0 adds lexicalWeight x cosine on `lexicalRows` to the model's
   * standardized scores. Default 0 (the paper's scoring). 'auto' chooses it on `lexicalBacktest` (chooseOnBacktest);
   * with model 'auto' it is chosen from `lexicalGrid` unless a number is given.
   */
  lexicalWeight?: number | 'auto';
  /** (split.numItems + 1) sparse TF-IDF rows aligned with split.itemIds; needed when lexicalWeight is not 0. */
  lexicalRows?: CsrMatrix;
  /**
   * Cold-aware fusion (fusion.ts, issue 15; default 0; needs a numeric lexicalWeight): the cosine counts
   * lexicalColdWeight more for items without a trained delta (cold at training time or added later).
   */
  lexicalColdWeight?: number;
  /** Cold-aware fusion: adds lexicalLastWeight x cosine with the last input item's row alone (default 0). */
  lexicalLastWeight?: number;
  /**
   * lexicalWeight or model 'auto': the backtest inside the training data (eval/data.ts backtestSplit: the interactions before
   * the split's threshold, split again), with content and sparse rows aligned with its items.
   */
  lexicalBacktest?: { split: PreparedSplit; content?: Float32Array; lexicalRows: CsrMatrix };
  /**
   * Borrowed deltas (beyond the paper, issue 15; content-delta, content-map): k > 0 gives each cold item (the split's
   * cold items at the end of training, and items appended later, in the service too) the similarity-weighted mean
   * of its k nearest warm items' deltas by content cosine, clipped to deltaMax, instead of a zero delta. Saved with
   * the model. Default 0 (off, the paper).
   */
  borrowDeltas?: number;
  /** lexicalWeight or model 'auto': the weights tried (default 0, 1, 2, 4, 8, 16, 32, as experiments/beauty-backtest.json). */
  lexicalGrid?: number[];
  /** lexicalWeight or model 'auto': called with the choice as soon as it is made, before the real model is trained. */
  onLexicalChoice?: (choice: LexicalChoice) => void;
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
  /**
   * Warm start (model/warm-start.ts) from a model of the same kind and architecture (unset architecture options are
   * taken from it): its dense weights and the rows of the items it was trained on, matched by id; other items start
   * from content. The optimizer starts fresh.
   */
  initFrom?: FittedModel;
  /**
   * With initFrom: fit the content projection again on this split's warm items (content-map: start the map there
   * again) instead of keeping the old model's, which keeps every served vector where it was (default false).
   */
  refitProjection?: boolean;
  /**
   * With initFrom: where the trainable item rows of the items the old model was trained on start: 'old' their old
   * rows, 'fresh' as in a new model, so only the dense weights (and content-map's map) are carried. Default: 'fresh'
   * for the models with a delta (content-delta, content-map: every delta starts at zero, which reached the fresh
   * model's validation score sooner on Beauty, docs/retraining.md), 'old' for the others (their rows are the whole
   * item embedding).
   */
  initItems?: 'old' | 'fresh';
  /**
   * With initFrom: shrink and perturb (Ash & Adams 2020): every carried value starts at `shrink * old + perturb *
   * new`, `new` being the value's own seeded initialization in a new model; both in [0, 1], default 1 and 0 (the
   * old values as they are). docs/retraining.md.
   */
  shrink?: number;
  perturb?: number;
  /** Linear learning-rate warmup over this many steps (default 0: off); see TrainOptions.warmupSteps. */
  warmupSteps?: number;
  /** 'cosine': the learning rate decays to 0 over `epochs` (TrainOptions.lrSchedule); default 'constant'. */
  lrSchedule?: 'constant' | 'cosine';
  /** Factors on lr by parameter group, e.g. `{ dense: 0.2 }` (AdamOptions.lrScales); default none (all at lr). */
  lrScales?: Readonly<Record<string, number>>;
  /** Weight averaging: validate, keep and save an EMA of the weights with this decay (TrainOptions.ema); 0: off. */
  ema?: number;
  /**
   * Replay: each epoch trains the sequences flagged in `always` (e.g. `changedSequences(split, old).mask`) plus a new
   * sample of `fraction` of the others (TrainOptions.replay); default: every sequence every epoch.
   */
  replay?: { always: Uint8Array; fraction: number };
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
  /** How a warm start (FitOptions.initFrom) matched the old model's items. */
  warmStart?: WarmStartResult;
  /** lexicalWeight or model 'auto': the variant and weight chosen and the backtest behind them (saved in the manifest). */
  lexicalChoice?: LexicalChoice;
}

export interface LexicalChoice {
  /** The variant chosen (model 'auto'; else the model asked for). */
  model: ModelKind;
  weight: number;
  /**
   * NDCG@10 (all cases, which decides; cold and warm cases) on the backtest's test period of each candidate trained
   * on its training period, per weight.
   */
  table: { model: ModelKind; weight: number; ndcg10: number; cold: number; warm: number }[];
  /** The backtest: its items, training epochs and wall seconds (training and scoring). */
  backtest: { items: number; warm: number; testCases: number; epochs: number; seconds: number };
}

export const DEFAULT_LEXICAL_GRID = [0, 1, 2, 4, 8, 16, 32];
/** model 'auto': the variants compared by default (the paper's content init and trainable delta). */
export const DEFAULT_AUTO_MODELS: ModelKind[] = ['content-init', 'content-delta'];

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
  if (options.lexicalWeight === 'auto' || options.model === 'auto') {
    if (options.lexicalColdWeight || options.lexicalLastWeight)
      throw new Error(
        `fit: lexicalColdWeight and lexicalLastWeight need a numeric lexicalWeight and a named model`,
      );
    return fitChoosingOnBacktest(split, options);
  }
  const weight = options.lexicalWeight ?? 0;
  checkLexicalWeight(weight, options.model);
  const extra = { coldWeight: options.lexicalColdWeight ?? 0, lastWeight: options.lexicalLastWeight ?? 0 };
  checkFusionWeights({ weight, ...extra, numWarm: split.numWarm }, 'fit');
  const fused = weight > 0 || extra.coldWeight > 0 || extra.lastWeight > 0;
  if (fused && !options.lexicalRows)
    throw new Error(`fit: lexicalWeight ${weight} needs lexicalRows (sparse TF-IDF rows of every item)`);
  if (fused && options.model === 'knn')
    throw new Error(`fit: lexical fusion applies to SASRec models, not knn`);
  if (options.autoModels) throw new Error(`fit: autoModels applies to model 'auto'`);
  const model = await fitModel(split, { ...options, model: options.model });
  return fused ? withLexicalFusion(model, options.lexicalRows!, weight, extra) : model;
}

/**
 * The choice on the backtest (lexicalWeight 'auto', model 'auto'): trains each candidate variant on the backtest's
 * training period, scores it with every weight of the grid on the backtest's test period (0 is in the default grid,
 * so fusion is left out when text does not help) and keeps the best all-cases NDCG@10 (ties: the earlier candidate,
 * the smaller weight). The real split is not used. Cost: one training per candidate on the shorter period and one
 * evaluation per candidate and weight.
 */
export async function chooseOnBacktest(options: FitOptions): Promise<LexicalChoice> {
  const backtest = options.lexicalBacktest;
  const what = options.model === 'auto' ? `model 'auto'` : `lexicalWeight 'auto'`;
  if (!backtest) {
    throw new Error(
      `fit: ${what} needs lexicalBacktest (the backtest split of the training data, with its content and sparse rows)`,
    );
  }
  const candidates = candidatesOf(options);
  const grid =
    typeof options.lexicalWeight === 'number'
      ? [options.lexicalWeight]
      : (options.lexicalGrid ?? DEFAULT_LEXICAL_GRID);
  if (grid.length === 0) throw new Error(`fit: lexicalGrid is empty`);
  for (const kind of candidates) for (const w of [1, ...grid]) checkLexicalWeight(w, kind);
  if (grid.some((w) => w > 0) && !options.lexicalRows)
    throw new Error(`fit: ${what} needs lexicalRows (sparse TF-IDF rows of every item)`);
  const started = performance.now();
  const progress = options.onProgress ?? ((p: EpochProgress) => process.stderr.write(p.line + '\n'));
  const table: LexicalChoice['table'] = [];
  let epochs = 0;
  for (const kind of candidates) {
    const inner = await fitModel(backtest.split, {
      ...options,
      model: kind,
      content: backtest.content,
      initFrom: undefined,
      onProgress: (p) => progress({ ...p, line: `backtest ${kind}: ${p.line}` }),
    });
    epochs += inner.training?.history.length ?? 0;
    for (const weight of grid) {
      const r = evaluate(withLexicalFusion(inner, backtest.lexicalRows, weight), backtest.split);
      table.push({
        model: kind,
        weight,
        ndcg10: r.all['ndcg@10'],
        cold: r.cold['ndcg@10'],
        warm: r.warm['ndcg@10'],
      });
    }
  }
  const best = table.reduce((a, b) => (b.ndcg10 > a.ndcg10 ? b : a));
  const choice: LexicalChoice = {
    model: best.model,
    weight: best.weight,
    table,
    backtest: {
      items: backtest.split.numItems,
      warm: backtest.split.numWarm,
      testCases: backtest.split.test.targets.length,
      epochs,
      seconds: (performance.now() - started) / 1000,
    },
  };
  options.onLexicalChoice?.(choice);
  return choice;
}

/** The variants a backtest choice compares: model 'auto' -> autoModels, else the one model. */
function candidatesOf(options: FitOptions): ModelKind[] {
  if (options.model !== 'auto') {
    if (options.autoModels) throw new Error(`fit: autoModels applies to model 'auto'`);
    return [options.model];
  }
  const candidates = options.autoModels ?? DEFAULT_AUTO_MODELS;
  if (candidates.length === 0) throw new Error(`fit: autoModels is empty`);
  for (const kind of candidates) {
    if (!(MODEL_KINDS as readonly string[]).includes(kind) || kind === 'knn' || kind === 'sasrec') {
      throw new Error(
        `fit: autoModels must list content SASRec variants (${MODEL_KINDS.filter((k) => k !== 'knn' && k !== 'sasrec').join(', ')}), got '${kind}'`,
      );
    }
  }
  if (new Set(candidates).size !== candidates.length) throw new Error(`fit: autoModels lists a model twice`);
  return [...candidates];
}

/** lexicalWeight 'auto' or model 'auto': the choice on the backtest, then the real model fitted once with it. */
async function fitChoosingOnBacktest(split: PreparedSplit, options: FitOptions): Promise<FittedModel> {
  const choice = await chooseOnBacktest(options);
  const model = await fit(split, {
    ...options,
    model: choice.model,
    autoModels: undefined,
    lexicalWeight: choice.weight,
  });
  return { ...model, lexicalChoice: choice };
}

function checkLexicalWeight(weight: number, kind: ModelKind): void {
  if (!(weight >= 0) || !Number.isFinite(weight))
    throw new Error(`fit: lexicalWeight must be a finite number >= 0, got ${weight}`);
  if (weight > 0 && kind === 'knn') throw new Error(`fit: lexicalWeight applies to SASRec models, not knn`);
}

/**
 * The same trained model with lexical fusion (fusion.ts): its scores standardized plus weight x cosine on `rows`
 * ((numItems + 1) sparse TF-IDF rows), and the cold-aware terms of `extra` (default 0: plain fusion). Fusion needs
 * no training, so one trained model serves every weight.
 */
export function withLexicalFusion(
  model: FittedModel,
  rows: CsrMatrix,
  weight: number,
  extra: { coldWeight?: number; lastWeight?: number } = {},
): FittedModel {
  checkLexicalWeight(weight, model.kind);
  const coldWeight = extra.coldWeight ?? 0;
  const lastWeight = extra.lastWeight ?? 0;
  checkFusionWeights({ weight, coldWeight, lastWeight, numWarm: model.numWarm }, 'withLexicalFusion');
  const base = unfused(model);
  if (weight === 0 && coldWeight === 0 && lastWeight === 0)
    return { ...model, lexical: null, recommender: base };
  if (model.kind === 'knn')
    throw new Error(`withLexicalFusion: lexical fusion applies to SASRec models, not knn`);
  const lexical: LexicalFusionState = { rows, weight };
  if (coldWeight > 0) {
    lexical.coldWeight = coldWeight;
    lexical.numWarm = model.numWarm;
  }
  if (lastWeight > 0) lexical.lastWeight = lastWeight;
  return { ...model, lexical, recommender: new LexicalFusion(base, lexical, model.maxLength) };
}

/** The model's own recommender, without lexical fusion. */
function unfused(model: FittedModel): Recommender {
  return model.lexical ? (model.recommender as LexicalFusion).model : model.recommender;
}

/** Fit options with the variant decided. */
type VariantFitOptions = FitOptions & { model: ModelKind };

async function fitModel(split: PreparedSplit, options: VariantFitOptions): Promise<FittedModel> {
  const started = performance.now();
  const kind = options.model;
  if (!(MODEL_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`fit: unknown model '${kind}' (known: ${MODEL_KINDS.join(', ')})`);
  }
  if (kind === 'knn') {
    if (options.initFrom) throw new Error(`fit: knn is not trained; initFrom applies to SASRec models`);
    const maxLength = options.maxLength ?? 64;
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
  const old = options.initFrom ? warmSource(options.initFrom, kind) : null;
  const perturbation = shrinkPerturb(options);
  const config = sasrecConfig({
    ...(old ? { ...architectureOf(old.config), deltaMax: old.config.deltaMax } : {}),
    ...pickConfig(options),
    maxLength: options.maxLength ?? old?.config.maxLength ?? 64,
    numItems: split.numWarm,
    strategy,
  });
  if (strategy === 'content-map') return fitContentMap(split, options, config, started);
  let projection: ProjectionState | null = null;
  let projected: Float32Array | null = null;
  if (strategy !== 'id') {
    const dim = contentWidth(split, options.content, kind);
    if (options.initFrom && !options.refitProjection) {
      projection = keptProjection(options.initFrom, dim);
      projected = applyProjection(projection, options.content!);
      projected.fill(0, 0, config.d);
    } else {
      const result = projectContent(options.content!, dim, split.numWarm, config.d, {
        standardize: options.standardize ?? true,
        seed: config.seed,
      });
      projection = result.state;
      projected = result.vectors;
    }
  }
  const model = new SASRec(config, projected?.subarray(0, (split.numWarm + 1) * config.d), kernels);
  const warm = old
    ? warmStart(model, split.itemIds, old, options.initFrom!.itemIds, options.initFrom!.numWarm, {
        carryRows: carriesRows(options),
        ...perturbation,
      })
    : undefined;
  const training = await train(model, split.train, trainOptionsFor(split, options, config, config.maxLength));
  setBorrowDeltas(model, options.borrowDeltas, split.numWarm);
  // Cold items enter with their content vector and zero (or borrowed) delta, without retraining.
  if (projected && split.numItems > split.numWarm) {
    model.appendItems(projected.subarray((split.numWarm + 1) * config.d), split.numItems - split.numWarm);
  }
  return {
    kind,
    recommender: model,
    itemIds: split.itemIds.slice(0, model.numItems + 1),
    numWarm: split.numWarm,
    maxLength: config.maxLength,
    config: model.config,
    projection,
    encoder: options.encoder ?? null,
    content: null,
    lexical: null,
    training,
    fitSeconds: (performance.now() - started) / 1000,
    warmStart: warm,
  };
}

/** FitOptions.borrowDeltas, checked, on a freshly trained model (before its cold items are appended). */
function setBorrowDeltas(model: SASRec, k: number | undefined, numWarm: number): void {
  if (k === undefined || k === 0) return;
  const { strategy } = model.config;
  if (strategy !== 'content-delta' && strategy !== 'content-map')
    throw new Error(
      `fit: borrowDeltas needs a model with a delta (content-delta, content-map), not '${strategy}'`,
    );
  model.setBorrowDeltas(k, numWarm);
}

/**
 * Turns borrowed deltas on (k > 0) or off (k = 0) on a fitted or loaded content-delta / content-map model: its cold
 * items (rows after numWarm) get the similarity-weighted mean of their k nearest warm items' deltas (or a zero delta
 * again), and so do items appended later. Changes the model in place (save it to keep the setting) and returns it.
 */
export function withBorrowedDeltas(model: FittedModel, k: number): FittedModel {
  const sasrec = model.kind === 'knn' ? null : (unfused(model) as SASRec);
  const strategy = sasrec?.config.strategy;
  if (!sasrec || (strategy !== 'content-delta' && strategy !== 'content-map')) {
    throw new Error(
      `borrowDeltas needs a model with a delta (content-delta, content-map), not '${model.kind}'`,
    );
  }
  sasrec.setBorrowDeltas(k, model.numWarm);
  return model;
}

/** The SASRec of a model to warm-start from; it must be of the kind being fitted. */
function warmSource(initFrom: FittedModel, kind: ModelKind): SASRec {
  if (initFrom.kind !== kind) {
    throw new Error(
      `fit: initFrom is a '${initFrom.kind}' model; a warm start needs the same kind ('${kind}')`,
    );
  }
  return unfused(initFrom) as SASRec;
}

/** FitOptions.initItems with its default: whether a warm start copies the old model's item rows. */
function carriesRows(options: FitOptions): boolean {
  const withDelta = options.model === 'content-delta' || options.model === 'content-map';
  return (options.initItems ?? (withDelta ? 'fresh' : 'old')) === 'old';
}

/** FitOptions.shrink and perturb, checked (a warm start only). */
function shrinkPerturb(options: FitOptions): { shrink?: number; perturb?: number } {
  for (const name of ['shrink', 'perturb'] as const) {
    const value = options[name];
    if (value === undefined) continue;
    if (!options.initFrom) throw new Error(`fit: ${name} applies to a warm start (initFrom)`);
    checkShrinkPerturb(value, `fit: ${name}`);
  }
  return { shrink: options.shrink, perturb: options.perturb };
}

/** The old model's content projection, kept by a warm start; its input width must be the content's. */
function keptProjection(initFrom: FittedModel, dim: number): ProjectionState {
  const projection = initFrom.projection;
  if (!projection) throw new Error(`fit: initFrom has no content projection to keep (use refitProjection)`);
  if (projection.inputDim !== dim) {
    throw new Error(
      `fit: content has ${dim} dims but initFrom's projection takes ${projection.inputDim} (encode the items with ` +
        `initFrom's text encoder, or use refitProjection)`,
    );
  }
  return projection;
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
    warmupSteps: options.warmupSteps,
    lrSchedule: options.lrSchedule,
    lrScales: options.lrScales,
    ema: options.ema,
    replay: options.replay,
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
  options: VariantFitOptions,
  config: SASRecConfig,
  started: number,
): Promise<FittedModel> {
  const h = contentWidth(split, options.content, 'content-map');
  const rows = split.numItems + 1;
  const content = normalizeRows(options.content!, rows, h);
  const d = config.d;
  const mapConfig = { ...config, contentDim: h };
  const model = new SASRec(mapConfig, content.subarray(0, (split.numWarm + 1) * h), kernels);
  const keepMap = options.initFrom !== undefined && !options.refitProjection;
  if (!keepMap) {
    const { weight, bias } = initialContentMap(content, h, split.numWarm, d, {
      standardize: options.standardize ?? true,
      seed: config.seed,
    });
    model.items.initMap(weight, bias);
  }
  const initFrom = options.initFrom;
  const warm = initFrom
    ? warmStart(
        model,
        split.itemIds,
        warmSource(initFrom, 'content-map'),
        initFrom.itemIds,
        initFrom.numWarm,
        { keepMap, carryRows: carriesRows(options), ...shrinkPerturb(options) },
      )
    : undefined;
  model.parametersChanged();
  const training = await train(
    model,
    split.train,
    trainOptionsFor(split, options, mapConfig, config.maxLength),
  );
  setBorrowDeltas(model, options.borrowDeltas, split.numWarm);
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
    warmStart: warm,
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
    'negativesPer',
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
    lexicalChoice: model.lexicalChoice,
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
    lexicalChoice: loaded.manifest.lexical_choice as LexicalChoice | undefined,
  };
}

export type { EvaluateOptions, EvaluationResult } from './eval/evaluate.js';
