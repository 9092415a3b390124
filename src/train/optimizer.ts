/**
 * Adam over the model's parameter groups, with the projected variant of PAPER.md for content-delta: after each
 * step every delta row whose norm exceeds deltaMax is rescaled to deltaMax (`kernels.clipRowNorms`). Rows before a
 * group's firstRow (the padding row of item tables) are never touched.
 *
 * Groups with `sparse` rows (the item table under a sampled loss) are updated lazily, as TensorFlow's LazyAdam and
 * PyTorch's SparseAdam do: only the rows the step touched get the Adam update (with the global step's bias
 * correction), their moments decay, and the projection is applied to those rows only. Untouched rows keep their
 * parameters and moments unchanged, where dense Adam would keep moving them with decaying momentum (and decay them
 * under weight decay). Rows touched in every step get exactly the dense update. See docs/large-catalogs.md.
 */
import type { Kernels } from '../kernels/types.js';
import type { ParamGroup } from '../model/embeddings.js';

export interface AdamOptions {
  lr?: number; // 1e-3
  betas?: [number, number]; // [0.9, 0.98] as pmixer's SASRec and RecTools
  eps?: number; // 1e-8
  /** Decoupled (AdamW) weight decay on every group; 0 (off) by default. */
  weightDecay?: number;
  /** Rescale all gradients together to at most this global L2 norm before the step; 0 (off) by default. */
  gradClip?: number;
  /**
   * Per-group factors on lr, by parameter-group name ('dense', 'delta', 'items', 'map.weight', 'map.bias'); a group
   * not named uses lr. 0 freezes a group. Discriminative fine-tuning of a warm start: carried dense weights at a
   * fraction of the rate that fresh item rows learn at (docs/retraining.md).
   */
  lrScales?: Readonly<Record<string, number>>;
}

export class Adam {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly gradClip: number;
  readonly lrScales: Readonly<Record<string, number>>;
  /** Factor on lr for the next steps, set by a schedule (the trainer's warmup); 1 otherwise. */
  lrScale = 1;
  /** Steps taken (1-based inside step()). */
  stepCount = 0;
  private groups: ParamGroup[];
  private readonly m: Float32Array[];
  private readonly v: Float32Array[];

  /**
   * groups: the trainable tensors, or a function returning them (re-read before every step, so a model whose item
   * table grew, e.g. by appendItems, keeps training: the new rows get zero moments, the old rows keep theirs).
   */
  constructor(
    private readonly source: ParamGroup[] | (() => ParamGroup[]),
    private readonly kernels: Kernels,
    options: AdamOptions = {},
  ) {
    const groups = typeof source === 'function' ? source() : source;
    this.groups = groups;
    this.lr = options.lr ?? 1e-3;
    [this.beta1, this.beta2] = options.betas ?? [0.9, 0.98];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    this.gradClip = options.gradClip ?? 0;
    this.lrScales = { ...options.lrScales };
    for (const [name, scale] of Object.entries(this.lrScales)) {
      if (!(Number.isFinite(scale) && scale >= 0))
        throw new Error(`Adam: the lr scale of group '${name}' must be a number >= 0 (got ${scale})`);
      if (!groups.some((g) => g.name === name))
        throw new Error(
          `Adam: lr scale for '${name}', which is not a parameter group (${groups.map((g) => g.name).join(', ')})`,
        );
    }
    if (!(this.lr > 0)) throw new Error(`Adam: lr must be > 0 (got ${this.lr})`);
    if (!(this.beta1 >= 0 && this.beta1 < 1 && this.beta2 >= 0 && this.beta2 < 1)) {
      throw new Error(`Adam: betas must be in [0, 1) (got ${this.beta1}, ${this.beta2})`);
    }
    this.m = groups.map((g) => new Float32Array(g.param.length));
    this.v = groups.map((g) => new Float32Array(g.param.length));
  }

  /** Takes the current tensors; moments of a grown tensor keep their values and get zeros for the new part. */
  private refreshGroups(groups: ParamGroup[]): void {
    if (groups.length !== this.groups.length)
      throw new Error(`Adam: the model now has ${groups.length} parameter groups, not ${this.groups.length}`);
    for (let i = 0; i < groups.length; i++) {
      const n = groups[i].param.length;
      if (n === this.m[i].length) continue;
      if (n < this.m[i].length)
        throw new Error(
          `Adam: parameter group '${groups[i].name}' shrank from ${this.m[i].length} to ${n} values`,
        );
      for (const moments of [this.m, this.v]) {
        const grown = new Float32Array(n);
        grown.set(moments[i]);
        moments[i] = grown;
      }
    }
    this.groups = groups;
  }

  /** Global L2 norm of the gradients (trainable rows only). */
  gradNorm(): number {
    let s = 0;
    for (const g of this.groups) {
      if (g.sparse) {
        const grad = g.sparse.grad;
        for (let i = 0; i < g.sparse.count * g.rowWidth; i++) s += grad[i] * grad[i];
        continue;
      }
      const grad = g.grad;
      for (let i = g.firstRow * g.rowWidth; i < grad.length; i++) s += grad[i] * grad[i];
    }
    return Math.sqrt(s);
  }

  /** One update of every group from its current gradient; returns the gradient norm when clipping, else NaN. */
  step(): number {
    if (typeof this.source === 'function') this.refreshGroups(this.source());
    this.stepCount++;
    let norm = NaN;
    let gradScale = 1;
    if (this.gradClip > 0) {
      norm = this.gradNorm();
      if (norm > this.gradClip) gradScale = this.gradClip / norm;
    }
    for (let i = 0; i < this.groups.length; i++) {
      const g = this.groups[i];
      const lr = this.lr * this.lrScale * (this.lrScales[g.name] ?? 1);
      if (g.sparse) {
        const { rows, grad, count } = g.sparse;
        const n = count * g.rowWidth;
        if (gradScale !== 1) for (let j = 0; j < n; j++) grad[j] *= gradScale;
        this.kernels.sparseAdamStep(
          g.param,
          grad,
          this.m[i],
          this.v[i],
          rows,
          count,
          g.rowWidth,
          lr,
          this.beta1,
          this.beta2,
          this.eps,
          this.stepCount,
          this.weightDecay,
          g.maxRowNorm ?? 0,
        );
        continue;
      }
      const from = g.firstRow * g.rowWidth;
      const n = g.param.length - from;
      const grad = g.grad.subarray(from);
      if (gradScale !== 1) for (let j = 0; j < n; j++) grad[j] *= gradScale;
      this.kernels.adamStep(
        g.param.subarray(from),
        grad,
        this.m[i].subarray(from),
        this.v[i].subarray(from),
        n,
        lr,
        this.beta1,
        this.beta2,
        this.eps,
        this.stepCount,
        this.weightDecay,
      );
      if (g.maxRowNorm !== undefined) {
        this.kernels.clipRowNorms(g.param, g.param.length / g.rowWidth, g.rowWidth, g.maxRowNorm, g.firstRow);
      }
    }
    return norm;
  }
}
