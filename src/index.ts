// Public library API. Each layer adds its exports here.
export type * from './data/types.js';
export type { Kernels } from './kernels/types.js';
export { DataError } from './data/errors.js';
export { readCatalog, readInteractions } from './data/readers.js';
export type { CatalogReadOptions, DataFormat, InteractionReadOptions } from './data/readers.js';
export { alignCatalog, DEFAULT_SPLIT_OPTIONS, prepareSplit } from './data/split.js';
export type { CatalogAlignment, SplitOptions } from './data/split.js';
export { loadSplit, saveSplit } from './data/store.js';
export { DEFAULT_SYNTHETIC_OPTIONS, generateSynthetic } from './data/synthetic.js';
export type { SyntheticDataset, SyntheticOptions } from './data/synthetic.js';
export { writeCatalogCsv, writeInteractionsCsv } from './data/writers.js';
export { Random } from './util/random.js';
export { SASRec, sasrecConfig } from './model/sasrec.js';
export type { Batch, EmbeddingStrategy, SASRecConfig } from './model/sasrec.js';
export { EMBEDDING_STRATEGIES } from './model/embeddings.js';
export { BatchBuilder, createOptimizer, train, trainStep } from './train/trainer.js';
export type { EpochProgress, TrainOptions, TrainResult } from './train/trainer.js';
export { Adam } from './train/optimizer.js';
export type { AdamOptions } from './train/optimizer.js';
export { loadCheckpoint, saveCheckpoint } from './train/checkpoint.js';
export { defaultMode, evaluate, fit, load, MODEL_KINDS, recommend, save } from './api.js';
export type { FitOptions, FittedModel, ModelKind, Recommendation, RecommendOptions } from './api.js';
export { evaluate as evaluateRecommender, validationNdcg } from './eval/evaluate.js';
export type { EvaluateOptions, EvaluationResult } from './eval/evaluate.js';
export { MISS, meanStd, ndcgAt, hitAt, rankOfTarget, summarizeRanks } from './eval/metrics.js';
export { analyzeCases } from './eval/analyses.js';
export { buildContent, prepareData } from './eval/data.js';
export type { ContentConfig, DataConfig } from './eval/data.js';
export { parseExperimentConfig, readExperimentConfig, runExperiment } from './eval/experiment.js';
export type { ExperimentConfig, ModelEntry } from './eval/experiment.js';
export { loadAmazonBeauty, loadAmazonM2, loadRecipe, loadZvuk, RECIPES } from './data/recipes/index.js';
export type { RecipeResult } from './data/recipes/index.js';
export {
  decodeSafetensors,
  encodeSafetensors,
  loadArtifact,
  loadModel,
  saveModel,
} from './model/artifact.js';
export type {
  ContentPart,
  LoadedArtifact,
  LoadedModel,
  ModelManifest,
  SaveModelInput,
} from './model/artifact.js';
export { createService } from './serve/server.js';
export type { Service, ServiceOptions } from './serve/server.js';
export { encoderPart, projectionPart } from './serve/content.js';
export { TfidfSvdEncoder, TfidfVectorizer, tokenize } from './content/tfidf.js';
export type { TextDocument, TfidfOptions, TfidfSvdInfo, TfidfSvdOptions } from './content/tfidf.js';
export {
  applyProjection,
  fitProjection,
  loadProjection,
  projectContent,
  saveProjection,
} from './content/projection.js';
export type { ProjectionOptions, ProjectionState } from './content/projection.js';
export { alignContent, alignSparse, loadContent, loadContentEncoder, saveContent } from './content/store.js';
export type { ContentVectors, LoadedContent } from './content/store.js';
export { readVectors } from './content/vectors.js';
export type { VectorReadOptions } from './content/vectors.js';
export { LocalTransformerEncoder } from './content/transformer.js';
export type { TransformerOptions } from './content/transformer.js';
export { writeTinyBertModel } from './content/tiny-bert.js';
export { randomizedSvd, symmetricEigen } from './content/linalg.js';
export type { CsrMatrix } from './content/sparse.js';
export { ContentKNN } from './model/knn.js';
export type { ContentKnnOptions, ContentRows } from './model/knn.js';
