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
