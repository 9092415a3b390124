/**
 * The C++ addon (`native/`, built by `npm ci` through node-gyp into `build/Release/deltarec_native.node`).
 * Its functions take exactly the `Kernels` arguments (typed arrays are read in place, views with a byteOffset are
 * fine), check every array is long enough, and throw a RangeError naming the argument otherwise.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Kernels } from './types.js';

/** Extras the addon exposes beyond `Kernels`, for the benchmark. */
export interface NativeAddon extends Omit<Kernels, 'name'> {
  /** Runs an FMA-bound loop on `threads` threads for about `seconds`; returns GFLOP/s. */
  fmaPeak(threads: number, seconds: number): number;
  /** The instruction set chosen at load time: 'avx512', 'avx2' or 'portable'. */
  isa(): string;
  /** Worker threads used by the large kernels (including the calling thread). */
  threads(): number;
}

const KERNEL_NAMES = [
  'matmul',
  'softmaxCrossEntropy',
  'sampledLoss',
  'sampledLossGrouped',
  'layerNormForward',
  'layerNormBackward',
  'attentionForward',
  'attentionBackward',
  'reluForward',
  'reluBackward',
  'geluForward',
  'geluBackward',
  'dropoutForward',
  'dropoutBackward',
  'gather',
  'scatterAdd',
  'adamStep',
  'sparseAdamStep',
  'clipRowNorms',
  'topK',
  'scoreTopK',
  'scoreTopKQuantized',
  'quantizeItems',
  'scanQuantized',
] as const;

let addon: NativeAddon | null | undefined;
let loadError = '';

/** The raw addon, or null when it is not built or fails to load (the reason is in `nativeLoadError()`). */
export function loadNativeAddon(): NativeAddon | null {
  if (addon !== undefined) return addon;
  const require = createRequire(import.meta.url);
  // src/kernels/ in development, dist/src/kernels/ when compiled.
  const candidates = [
    '../../build/Release/deltarec_native.node',
    '../../../build/Release/deltarec_native.node',
  ].map((p) => new URL(p, import.meta.url));
  const file = candidates.find((u) => existsSync(u));
  if (!file) {
    loadError =
      'addon not built (build/Release/deltarec_native.node missing; run `npm ci` or `npm run install`)';
    addon = null;
    return addon;
  }
  try {
    addon = require(fileURLToPath(file)) as NativeAddon;
    for (const name of KERNEL_NAMES) {
      if (typeof addon[name] !== 'function') throw new Error(`addon lacks ${name}`);
    }
  } catch (err) {
    loadError = `addon failed to load: ${(err as Error).message.split('\n')[0]}`;
    addon = null;
  }
  return addon;
}

export function nativeLoadError(): string {
  return loadError;
}

/** The native kernels, or null when the addon is unavailable. */
export function loadNativeKernels(): Kernels | null {
  const a = loadNativeAddon();
  if (!a) return null;
  const k = { name: 'native' } as Record<string, unknown>;
  for (const name of KERNEL_NAMES) k[name] = a[name];
  return k as unknown as Kernels;
}
