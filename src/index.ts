// The public API of `deltarec` (docs/api.md): reading data, the evaluation protocol split, content vectors, fitting,
// recommending, evaluating, saving and serving models, experiments. Semver covers exactly these exports. Building
// blocks below this level (the SASRec layers, kernels, trainer, metrics, artifacts) are in `deltarec/internals`.
export type * from './data/types.js';
export { DataError } from './data/errors.js';
export { readCatalog, readInteractions } from './data/readers.js';
export type { CatalogReadOptions, DataFormat, InteractionReadOptions } from './data/readers.js';
export { DEFAULT_SPLIT_OPTIONS, prepareSplit } from './data/split.js';
export type { SplitOptions } from './data/split.js';
export { loadSplit, saveSplit } from './data/store.js';
export { DEFAULT_SYNTHETIC_OPTIONS, generateSynthetic } from './data/synthetic.js';
export type { SyntheticDataset, SyntheticOptions } from './data/synthetic.js';
export { writeCatalogCsv, writeInteractionsCsv } from './data/writers.js';
export { loadRecipe, RECIPES } from './data/recipes/index.js';
export type { RecipeName, RecipeResult } from './data/recipes/index.js';
export { buildContent, contentWordVectors } from './eval/data.js';
export type { BuiltContent, ContentConfig, ContentSource } from './eval/data.js';
export { TfidfSvdEncoder } from './content/tfidf.js';
export type { Analyzer, TextDocument, TfidfOptions, TfidfSvdInfo, TfidfSvdOptions } from './content/tfidf.js';
export { loadWordVectors } from './content/word-vectors.js';
export type { WordVectorTable } from './content/word-vectors.js';
export { LocalTransformerEncoder } from './content/transformer.js';
export type { TransformerOptions } from './content/transformer.js';
export { readVectors } from './content/vectors.js';
export type { VectorReadOptions } from './content/vectors.js';
export { loadContent, loadContentEncoder, saveContent } from './content/store.js';
export type { ContentVectors, LoadedContent } from './content/store.js';
export { encoderPart } from './serve/content.js';
export type { ContentPart } from './model/artifact.js';
export {
  chooseOnBacktest,
  DEFAULT_AUTO_MODELS,
  DEFAULT_LEXICAL_GRID,
  evaluate,
  fit,
  load,
  MODEL_KINDS,
  recommend,
  save,
  withBorrowedDeltas,
  withLexicalFusion,
} from './api.js';
export type {
  EvaluateOptions,
  EvaluationResult,
  FitOptions,
  FittedModel,
  LexicalChoice,
  ModelKind,
  Recommendation,
  RecommendOptions,
} from './api.js';
export { parseExperimentConfig, readExperimentConfig, runExperiment } from './experiment/experiment.js';
export type {
  ExperimentConfig,
  ExperimentOptions,
  ExperimentOutcome,
  ModelEntry,
} from './experiment/experiment.js';
export { createService } from './serve/server.js';
export type { Service, ServiceOptions } from './serve/server.js';
