/**
 * Shared fixtures of the model gradient tests: unit-norm random content, one tiny left-padded batch, and the
 * central finite difference.
 */
import type { Batch } from '../src/model/sasrec.js';
import { Random } from '../src/util/random.js';

export function unitContent(numItems: number, d: number, seed: number): Float32Array {
  const rng = new Random(seed);
  const c = new Float32Array((numItems + 1) * d);
  for (let i = 1; i <= numItems; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) {
      c[i * d + j] = rng.nextGaussian();
      s += c[i * d + j] ** 2;
    }
    for (let j = 0; j < d; j++) c[i * d + j] /= Math.sqrt(s);
  }
  return c;
}

/** Three left-padded rows with 5, 3 and 1 real positions. */
export function tinyBatch(): Batch {
  const T = 5;
  const seqs = [
    [3, 7, 1, 12, 5, 9],
    [4, 4, 20, 2],
    [11, 6],
  ];
  const batch: Batch = {
    size: seqs.length,
    T,
    inputs: new Int32Array(seqs.length * T),
    targets: new Int32Array(seqs.length * T),
    lengths: new Int32Array(seqs.length),
  };
  seqs.forEach((s, b) => {
    const len = s.length - 1;
    batch.lengths[b] = len;
    for (let i = 0; i < len; i++) {
      batch.inputs[b * T + T - len + i] = s[i];
      batch.targets[b * T + T - len + i] = s[i + 1];
    }
  });
  return batch;
}

/**
 * Central finite difference of loss() in param[i]: (loss(p + eps) - loss(p - eps)) / 2 eps, with
 * model.parametersChanged() after every change; param[i] is restored.
 */
export function centralDifference(
  param: Float32Array,
  i: number,
  eps: number,
  model: { parametersChanged(): void },
  loss: () => number,
): number {
  const saved = param[i];
  param[i] = saved + eps;
  model.parametersChanged();
  const plus = loss();
  param[i] = saved - eps;
  model.parametersChanged();
  const minus = loss();
  param[i] = saved;
  model.parametersChanged();
  return (plus - minus) / (2 * eps);
}
