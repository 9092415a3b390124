// Public library API. Each layer adds its exports here.
export type * from './data/types.js';
export type { Kernels } from './kernels/types.js';
