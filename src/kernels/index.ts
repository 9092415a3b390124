/**
 * Kernel selection. `kernels` is the native addon when it loads and `DELTAREC_NATIVE` is not `0`, otherwise the
 * TypeScript reference (with one warning line on stderr).
 */
import { loadNativeKernels, nativeLoadError } from './native.js';
import { referenceKernels } from './reference.js';
import type { Kernels } from './types.js';

export type { Kernels } from './types.js';
export { referenceKernels, dropoutHash } from './reference.js';
export { loadNativeKernels, loadNativeAddon } from './native.js';
export type { NativeAddon } from './native.js';

function selectKernels(): Kernels {
  if (process.env.DELTAREC_NATIVE === '0') {
    process.stderr.write('deltarec: DELTAREC_NATIVE=0, using the TypeScript kernels (slow)\n');
    return referenceKernels;
  }
  const native = loadNativeKernels();
  if (native) return native;
  process.stderr.write(`deltarec: ${nativeLoadError()}; using the TypeScript kernels (slow)\n`);
  return referenceKernels;
}

/** The active kernel implementation. */
export const kernels: Kernels = selectKernels();
