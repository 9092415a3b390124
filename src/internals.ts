// `deltarec/internals`: the building blocks under the public API (src/index.ts), for benchmarks, research code and
// tools that need one layer: the SASRec model, kernels, trainer, metrics, model artifacts, content projection.
// No stability promise: these may change in any release.
export type { Kernels } from './kernels/types.js';
export { kernels, referenceKernels } from './kernels/index.js';
export { alignCatalog } from './data/split.js';
export type { CatalogAlignment } from './data/split.js';
export { loadAmazonBeauty, loadAmazonM2, loadZvuk } from './data/recipes/index.js';
export { Random } from './util/random.js';
export { SASRec, sasrecConfig } from './model/sasrec.js';
export type { Batch, EmbeddingStrategy, SASRecConfig } from './model/sasrec.js';
export { EMBEDDING_STRATEGIES } from './model/embeddings.js';
export { ContentKNN } from './model/knn.js';
export type { ContentKnnOptions, ContentRows } from './model/knn.js';
export { BatchBuilder, createOptimizer, train, trainStep } from './train/trainer.js';
export type { EpochProgress, TrainOptions, TrainResult } from './train/trainer.js';
export { Adam } from './train/optimizer.js';
export type { AdamOptions } from './train/optimizer.js';
export { loadCheckpoint, saveCheckpoint } from './train/checkpoint.js';
export { defaultMode } from './api.js';
export { evaluate as evaluateRecommender, validationNdcg } from './eval/evaluate.js';
export { hitAt, meanStd, MISS, ndcgAt, rankOfTarget, summarizeRanks } from './eval/metrics.js';
export { analyzeCases } from './experiment/analyses.js';
export { prepareData } from './eval/data.js';
export type { DataConfig } from './eval/data.js';
export {
  decodeSafetensors,
  encodeSafetensors,
  loadArtifact,
  loadModel,
  readSafetensors,
  saveModel,
} from './model/artifact.js';
export type {
  LoadedArtifact,
  LoadedModel,
  ModelManifest,
  SaveModelInput,
  TensorAllocator,
} from './model/artifact.js';
export { projectionPart } from './serve/content.js';
export { TfidfVectorizer, tokenize } from './content/tfidf.js';
export {
  applyProjection,
  fitProjection,
  loadProjection,
  projectContent,
  saveProjection,
} from './content/projection.js';
export type { ProjectionOptions, ProjectionState } from './content/projection.js';
export { alignContent, alignSparse } from './content/store.js';
export { randomizedSvd, symmetricEigen } from './content/linalg.js';
export type { CsrMatrix } from './content/sparse.js';
