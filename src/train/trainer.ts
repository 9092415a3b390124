/**
 * Training loop for SASRec: seeded shuffled epochs, next-item loss at every real position (full softmax, or a
 * sampled loss with lazy item updates: model config `loss`), validation
 * after each epoch, early stopping that restores the best weights, checkpoints, progress lines and a clean stop on
 * Ctrl-C or an AbortSignal.
 *
 * For benchmarks (one timed step on a given batch):
 *   const optimizer = createOptimizer(model, { lr: 1e-3 });
 *   const builder = new BatchBuilder(128, model.config.maxLength);
 *   const batch = builder.fill(sequences, order, 0, 128);   // or build a `Batch` by hand
 *   const loss = trainStep(model, optimizer, batch);         // forward + backward + Adam (+ delta projection)
 * Logits are always computed at non-padding positions only.
 */
import type { Sequences } from '../data/types.js';
import type { ParamGroup } from '../model/embeddings.js';
import type { Batch, SASRec } from '../model/sasrec.js';
import { hash32, Random } from '../util/random.js';
import { saveCheckpoint } from './checkpoint.js';
import { Adam, type AdamOptions } from './optimizer.js';

export interface TrainOptions extends AdamOptions {
  /** Maximum epochs (default 200; early stopping usually ends sooner). */
  epochs?: number;
  batchSize?: number; // 128
  /**
   * Linear learning-rate warmup: step s (1-based) uses lr * min(1, s / warmupSteps); 0 (default) is off. Meant for a
   * warm start, whose fresh Adam moments otherwise take full-size steps from trained weights (docs/retraining.md).
   */
  warmupSteps?: number;
  /**
   * 'cosine': the learning rate falls from lr to 0 along a half cosine over all `epochs` (step s of S uses
   * lr * (1 + cos(pi (s - 1) / S)) / 2, times the warmup factor); for a fixed epoch budget such as a warm start's.
   * Default 'constant'.
   */
  lrSchedule?: 'constant' | 'cosine';
  /**
   * Weight averaging: an exponential moving average of the weights, updated after every step with decay
   * min(ema, (1 + t) / (10 + t)) at the t-th step (the usual ramp, so the average follows the early steps), is what
   * `validate` scores, what the best epoch keeps and what the checkpoint holds; the model ends with the best epoch's
   * average. The training loss is the live weights'. 0 (default) is off; e.g. 0.995 averages over about 200 steps.
   * With a sampled loss the item table's average is lazy (WeightAverage): the same average, at a cost per step of the
   * rows the step touches.
   */
  ema?: number;
  /**
   * Replay (a warm start's fine-tuning, docs/retraining.md): each epoch trains on every sequence s with
   * `always[s] = 1` plus a new seeded sample of `fraction` of the others (e.g. the unchanged sequences an old model has
   * seen), shuffled together; an epoch is then that many sequences. Off by default (every sequence, every epoch).
   */
  replay?: { always: Uint8Array; fraction: number };
  /** Epochs without a validation improvement before stopping (default 5). */
  patience?: number;
  /** Shuffling and dropout seed (default: the model's config seed). */
  seed?: number;
  /**
   * Validation metric after each epoch, higher is better (validation NDCG@10): the best epoch's weights are kept and
   * early stopping waits `patience` epochs for an improvement. Without it the epoch with the lowest training loss
   * plays that role.
   */
  validate?: (model: SASRec) => number | Promise<number>;
  /** Called after every epoch; the default prints `progress.line` to stderr. */
  onProgress?: (progress: EpochProgress) => void;
  /** Saves the best weights here as safetensors whenever they improve. */
  checkpointPath?: string;
  /** Stops cleanly after the current step; the best weights so far are kept. */
  signal?: AbortSignal;
  /** Ctrl-C stops cleanly like the signal (a second Ctrl-C exits). Default true. */
  handleSigint?: boolean;
}

export interface EpochProgress {
  epoch: number; // 1-based
  epochs: number;
  /** Mean cross-entropy over the epoch's real positions. */
  loss: number;
  metric: number | null;
  bestMetric: number | null;
  /** Training loss of the best epoch. */
  bestLoss: number;
  bestEpoch: number;
  patience: number;
  sequencesPerSecond: number;
  /** Wall seconds of this epoch including validation. */
  seconds: number;
  /** Upper bound on the remaining time (all remaining epochs). */
  etaSeconds: number;
  /** The remaining time if early stopping triggers as soon as it can (no further improvement). */
  earliestStopSeconds: number;
  line: string;
}

export interface TrainResult {
  history: EpochProgress[];
  /** Epoch whose weights the model holds at the end (the best validated one; without validate, the lowest loss). */
  bestEpoch: number;
  bestMetric: number | null;
  stopReason: 'max-epochs' | 'early-stopping' | 'aborted';
  steps: number;
  seconds: number;
  /** Training sequences used (those with at least 2 items). */
  sequences: number;
}

/** Fills left-padded batches from CSR sequences into buffers allocated once (capacity batchSize x maxLength). */
export class BatchBuilder {
  readonly batch: Batch;

  constructor(
    readonly batchSize: number,
    readonly maxLength: number,
  ) {
    this.batch = {
      size: 0,
      T: 0,
      inputs: new Int32Array(batchSize * maxLength),
      targets: new Int32Array(batchSize * maxLength),
      lengths: new Int32Array(batchSize),
    };
  }

  /**
   * Batch of sequences ids[start .. start + count): each truncated to its last maxLength + 1 items, input = all but
   * the last, target = the next item at every position; T = the longest input in the batch.
   */
  fill(sequences: Sequences, ids: ArrayLike<number>, start: number, count: number): Batch {
    if (count > this.batchSize) throw new Error(`BatchBuilder: count ${count} > batchSize ${this.batchSize}`);
    const { offsets, items } = sequences;
    const b = this.batch;
    let T = 1;
    for (let r = 0; r < count; r++) {
      const s = ids[start + r];
      const len = Math.min(offsets[s + 1] - offsets[s], this.maxLength + 1) - 1;
      if (len < 1) throw new Error(`BatchBuilder: sequence ${s} has fewer than 2 items`);
      b.lengths[r] = len;
      if (len > T) T = len;
    }
    b.size = count;
    b.T = T;
    b.inputs.fill(0, 0, count * T);
    b.targets.fill(0, 0, count * T);
    for (let r = 0; r < count; r++) {
      const s = ids[start + r];
      const len = b.lengths[r];
      const from = offsets[s + 1] - len - 1;
      const row = r * T + T - len;
      for (let i = 0; i < len; i++) {
        b.inputs[row + i] = items[from + i];
        b.targets[row + i] = items[from + i + 1];
      }
    }
    return b;
  }
}

/** Adam (projected for content-delta) over the model's trainable groups, re-read each step (appendItems is fine). */
export function createOptimizer(model: SASRec, options: AdamOptions = {}): Adam {
  return new Adam(() => model.paramGroups(), model.kernels, options);
}

/**
 * One training step: forward, backward, optimizer step (with the delta projection). Returns the batch's mean
 * cross-entropy. dropoutSeed defaults to one derived from the optimizer's step count and the model seed;
 * beforeUpdate runs between the backward pass and the optimizer step (the touched rows are known, not yet changed).
 */
export function trainStep(
  model: SASRec,
  optimizer: Adam,
  batch: Batch,
  dropoutSeed?: number,
  beforeUpdate?: () => void,
): number {
  const seed =
    dropoutSeed ?? hash32(Math.imul(model.config.seed, 0x9e3779b1) ^ hash32(optimizer.stepCount + 1));
  const loss = model.forwardBackward(batch, true, seed);
  beforeUpdate?.();
  optimizer.step();
  model.parametersChanged();
  return loss;
}

export async function train(
  model: SASRec,
  sequences: Sequences,
  options: TrainOptions = {},
): Promise<TrainResult> {
  const epochs = options.epochs ?? 200;
  const batchSize = options.batchSize ?? 128;
  const patience = options.patience ?? 5;
  const seed = options.seed ?? model.config.seed;
  const onProgress = options.onProgress ?? ((p: EpochProgress) => process.stderr.write(p.line + '\n'));
  const warmupSteps = options.warmupSteps ?? 0;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`train: batchSize must be >= 1 (got ${batchSize})`);
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0)
    throw new Error(`train: warmupSteps must be an integer >= 0 (got ${warmupSteps})`);
  const emaDecay = options.ema ?? 0;
  if (!(Number.isFinite(emaDecay) && emaDecay >= 0 && emaDecay < 1))
    throw new Error(`train: ema must be a decay in [0, 1) (got ${emaDecay})`);
  const lrSchedule = options.lrSchedule ?? 'constant';
  if (lrSchedule !== 'constant' && lrSchedule !== 'cosine')
    throw new Error(`train: lrSchedule must be constant or cosine (got '${String(lrSchedule)}')`);

  // Sequences with at least one (input, target) pair.
  const usable: number[] = [];
  for (let s = 0; s + 1 < sequences.offsets.length; s++) {
    if (sequences.offsets[s + 1] - sequences.offsets[s] >= 2) usable.push(s);
  }
  if (usable.length === 0) throw new Error('train: no training sequence has 2 or more items');
  const replay = options.replay;
  if (replay) {
    if (replay.always.length !== sequences.offsets.length - 1)
      throw new Error(
        `train: replay.always has ${replay.always.length} flags for ${sequences.offsets.length - 1} sequences`,
      );
    if (!(replay.fraction >= 0 && replay.fraction <= 1))
      throw new Error(`train: replay.fraction must be in [0, 1] (got ${replay.fraction})`);
  }
  // With replay: the sequences trained every epoch, and the others a sample of which joins each epoch.
  const always = replay ? Int32Array.from(usable.filter((s) => replay.always[s] === 1)) : null;
  const others = replay ? Int32Array.from(usable.filter((s) => replay.always[s] !== 1)) : null;
  const replayed = replay ? Math.round(replay.fraction * others!.length) : 0;
  const order = replay ? new Int32Array(always!.length + replayed) : Int32Array.from(usable);
  if (order.length === 0) throw new Error('train: replay leaves no sequence to train on');
  if (model.config.sampler === 'popularity')
    model.setItemFrequencies(itemFrequencies(sequences, model.numItems));
  const rng = new Random(seed);
  // The replay sample has its own stream, so the shuffles of the epoch order are those of a run without replay.
  const replayRng = new Random(hash32(seed ^ 0x5eed7e91));
  const builder = new BatchBuilder(batchSize, model.config.maxLength);
  const optimizer = createOptimizer(model, options);
  const groups = model.paramGroups();
  const totalSteps = epochs * Math.ceil(order.length / batchSize);
  const stepSeed = () => hash32(Math.imul(seed, 0x9e3779b1) ^ hash32(optimizer.stepCount + 1));
  const average = emaDecay > 0 ? new WeightAverage(groups, emaDecay) : null;
  const beforeUpdate = average ? () => average.beforeStep() : undefined;

  let stopRequested = false;
  const onAbort = () => (stopRequested = true);
  options.signal?.addEventListener('abort', onAbort);
  if (options.signal?.aborted) stopRequested = true;
  let sigints = 0;
  const onSigint = () => {
    sigints++;
    if (sigints > 1) process.exit(130);
    stopRequested = true;
    process.stderr.write('\nstopping after this step (best weights are kept); Ctrl-C again to exit now\n');
  };
  const handleSigint = options.handleSigint ?? true;
  if (handleSigint) process.on('SIGINT', onSigint);

  const history: EpochProgress[] = [];
  let best: Float32Array[] | null = null;
  let bestEpoch = 0;
  let bestMetric: number | null = null;
  let bestScore: number | null = null;
  let bestLoss = Infinity;
  let stopReason: TrainResult['stopReason'] = 'max-epochs';
  const started = performance.now();
  let epochsDone = 0;
  const secondsPerEpoch = () => (performance.now() - started) / 1000 / epochsDone;
  try {
    for (let epoch = 1; epoch <= epochs && !stopRequested; epoch++) {
      const epochStart = performance.now();
      if (replay) replayOrder(always!, others!, replayRng, order);
      rng.shuffle(order);
      let lossSum = 0;
      let positions = 0;
      let done = 0;
      for (let start = 0; start < order.length; start += batchSize) {
        const count = Math.min(batchSize, order.length - start);
        const batch = builder.fill(sequences, order, start, count);
        let real = 0;
        for (let r = 0; r < count; r++) real += batch.lengths[r];
        optimizer.lrScale = lrScale(optimizer.stepCount + 1, warmupSteps, lrSchedule, totalSteps);
        const loss = trainStep(model, optimizer, batch, stepSeed(), beforeUpdate);
        average?.afterStep();
        if (!Number.isFinite(loss))
          throw new Error(`train: loss is ${loss} at epoch ${epoch}, step ${optimizer.stepCount}`);
        lossSum += loss * real;
        positions += real;
        done += count;
        // Let signals and other callbacks run between steps.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (stopRequested) break;
      }
      if (done < order.length) {
        stopReason = 'aborted';
        break;
      }
      const trainSeconds = (performance.now() - epochStart) / 1000;
      const loss = lossSum / positions;
      // With weight averaging, the average is validated, kept and saved; the live weights come back after.
      average?.swap(model);
      let metric: number | null;
      let improved: boolean;
      try {
        // Higher is better: validation NDCG@10, or without validate the negated training loss.
        metric = options.validate ? await options.validate(model) : null;
        const score = metric ?? -loss;
        improved = bestScore === null || score > bestScore;
        if (improved) {
          bestScore = score;
          bestMetric = metric;
          bestEpoch = epoch;
          bestLoss = loss;
          best = groups.map((g) => Float32Array.from(g.param));
        }
        if (improved && options.checkpointPath) {
          await saveCheckpoint(options.checkpointPath, model, {
            epoch: String(epoch),
            metric: String(metric),
          });
        }
      } finally {
        average?.swap(model);
      }
      const seconds = (performance.now() - epochStart) / 1000;
      epochsDone = epoch;
      const progress: EpochProgress = {
        epoch,
        epochs,
        loss,
        metric,
        bestMetric,
        bestLoss,
        bestEpoch,
        patience,
        sequencesPerSecond: order.length / trainSeconds,
        seconds,
        etaSeconds: secondsPerEpoch() * (epochs - epoch),
        earliestStopSeconds: secondsPerEpoch() * Math.max(0, Math.min(epochs, bestEpoch + patience) - epoch),
        line: '',
      };
      progress.line = progressLine(progress);
      history.push(progress);
      onProgress(progress);
      if (epoch - bestEpoch >= patience) {
        stopReason = 'early-stopping';
        break;
      }
    }
    if (stopRequested) stopReason = 'aborted';
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    if (handleSigint) process.off('SIGINT', onSigint);
  }
  if (best) {
    groups.forEach((g, i) => g.param.set(best![i]));
    model.parametersChanged();
  }
  return {
    history,
    bestEpoch,
    bestMetric,
    stopReason,
    steps: optimizer.stepCount,
    seconds: (performance.now() - started) / 1000,
    sequences: order.length,
  };
}

/**
 * Exponential moving average of a model's trainable tensors (TrainOptions.ema): after the t-th step
 * average_t = decay_t average_{t-1} + (1 - decay_t) weights_t with decay_t = min(decay, (1 + t) / (10 + t)).
 *
 * Dense groups are averaged in every step. Groups with sparse rows (an item table under a sampled loss, updated by
 * lazy Adam) are averaged lazily, so a step costs its touched rows, never the catalog. While a row's live value w
 * stays the same, average_t - w = decay_t (average_{t-1} - w), so over steps s+1..t the dense average reaches
 * w + (decay_{s+1} ... decay_t) (average_s - w) exactly. Each row stores its average caught up to some step s and
 * L_s, where L is the running float64 sum of log(decay_t) (the product is exp(L_t - L_s)); the formula holds with the
 * row's current w as long as w has not changed in steps s+1..t. So a row is caught up to the previous step just
 * before the optimizer changes it (`beforeStep`: its old w), which also covers the step that changes it (that step's
 * update mixes in the new w), and every row is caught up before the average is read (`swap`). See
 * docs/large-catalogs.md.
 *
 * Per step: trainStep(model, optimizer, batch, seed, () => average.beforeStep()); average.afterStep().
 */
export class WeightAverage {
  private readonly average: Float32Array[];
  /** Per group: L at each row's last catch-up (lazy groups), or null (dense groups). */
  private readonly caughtUp: (Float64Array | null)[];
  private updates = 0;
  /** L: the sum of log(decay_t) over the steps so far. */
  private logDecay = 0;
  /**
   * Rows of lazy groups caught up so far: per step the touched rows, whatever the table's size; every row each time
   * the average is read.
   */
  lazyRowVisits = 0;

  constructor(
    private readonly groups: ParamGroup[],
    private readonly decay: number,
  ) {
    this.average = groups.map((g) => Float32Array.from(g.param));
    this.caughtUp = groups.map((g) => (g.sparse ? new Float64Array(g.param.length / g.rowWidth) : null));
  }

  /** Catches up the rows the coming optimizer step changes (lazy groups), while they still hold their old values. */
  beforeStep(): void {
    this.groups.forEach((g, i) => {
      if (!this.caughtUp[i]) return;
      const { rows, count } = g.sparse!;
      for (let u = 0; u < count; u++) this.catchUp(i, rows[u]);
      this.lazyRowVisits += count;
    });
  }

  /** Averages in the step's new weights: every value of dense groups; lazy groups only advance L. */
  afterStep(): void {
    this.updates++;
    const rate = 1 - Math.min(this.decay, (1 + this.updates) / (10 + this.updates));
    this.logDecay += Math.log1p(-rate);
    this.groups.forEach((g, i) => {
      if (this.caughtUp[i]) return;
      const a = this.average[i];
      const p = g.param;
      for (let j = 0; j < a.length; j++) a[j] += rate * (p[j] - a[j]);
    });
  }

  /** Brings row r of lazy group i up to date: average = w + exp(L - L_r) (average - w), in float64. */
  private catchUp(i: number, r: number): void {
    const caughtUp = this.caughtUp[i]!;
    const gap = this.logDecay - caughtUp[r];
    if (gap === 0) return;
    caughtUp[r] = this.logDecay;
    const factor = Math.exp(gap);
    const a = this.average[i];
    const p = this.groups[i].param;
    const width = this.groups[i].rowWidth;
    const end = (r + 1) * width;
    for (let j = r * width; j < end; j++) {
      const w = p[j];
      a[j] = w + factor * (a[j] - w);
    }
  }

  /** Exchanges the model's weights and the average, caught up in full (call twice to restore). */
  swap(model: Pick<SASRec, 'parametersChanged'>): void {
    this.groups.forEach((g, i) => {
      const caughtUp = this.caughtUp[i];
      if (caughtUp) {
        for (let r = 0; r < caughtUp.length; r++) this.catchUp(i, r);
        this.lazyRowVisits += caughtUp.length;
      }
      const a = this.average[i];
      const p = g.param;
      for (let j = 0; j < a.length; j++) {
        const v = p[j];
        p[j] = a[j];
        a[j] = v;
      }
    });
    model.parametersChanged();
  }
}

/**
 * Replay: fills `order` with every id of `always`, then the first order.length - always.length ids of `others` after a
 * seeded shuffle (a new sample each call; the caller shuffles `order`).
 */
export function replayOrder(always: Int32Array, others: Int32Array, rng: Random, order: Int32Array): void {
  rng.shuffle(others);
  order.set(always);
  order.set(others.subarray(0, order.length - always.length), always.length);
}

/** The learning-rate factor of step s (1-based): linear warmup over warmupSteps, times the schedule's decay. */
function lrScale(
  s: number,
  warmupSteps: number,
  schedule: 'constant' | 'cosine',
  totalSteps: number,
): number {
  const warmup = warmupSteps > 0 ? Math.min(1, s / warmupSteps) : 1;
  return schedule === 'cosine' ? (warmup * (1 + Math.cos((Math.PI * (s - 1)) / totalSteps))) / 2 : warmup;
}

/** Occurrences of each item 1..numItems in the training sequences (index 0 and unknown items are not counted). */
export function itemFrequencies(sequences: Sequences, numItems: number): Float64Array {
  const counts = new Float64Array(numItems + 1);
  for (const item of sequences.items) if (item > 0 && item <= numItems) counts[item]++;
  return counts;
}

/** e.g. `epoch 7/200 · loss 6.3312 · val NDCG@10 0.0556 (best 0.0556 @ 6) · 8,000 seq/s · 12 s · stops in >= 4 epochs`. */
function progressLine(p: EpochProgress): string {
  const best =
    p.metric === null
      ? `loss ${p.loss.toFixed(4)} (best ${p.bestLoss.toFixed(4)} @ ${p.bestEpoch})`
      : `loss ${p.loss.toFixed(4)} · val NDCG@10 ${p.metric.toFixed(4)} (best ${p.bestMetric!.toFixed(4)} @ ${p.bestEpoch})`;
  const earliest = Math.min(p.epochs, p.bestEpoch + p.patience) - p.epoch;
  const stop =
    earliest <= 0
      ? 'stops now'
      : `stops in >= ${earliest} epoch${earliest === 1 ? '' : 's'} (${formatDuration(p.earliestStopSeconds)})`;
  return [
    `epoch ${p.epoch}/${p.epochs}`,
    best,
    `${Math.round(p.sequencesPerSecond).toLocaleString('en-US')} seq/s`,
    `${formatDuration(p.seconds)}`,
    stop,
  ].join(' · ');
}

function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)}s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}
