/**
 * Item-embedding strategies (PAPER.md "Method" and "Variants compared"). The item matrix E ((numItems + 1) x d,
 * row 0 = padding, always zero) is used both as the input embedding and as the output layer (tied weights).
 *
 * - `id`:             E is learned from scratch (xavier-normal init, seeded). Cannot represent new items.
 * - `content-init`:   E starts as the content vectors and is then fully fine-tuned. New items get their content vector.
 * - `content-delta`:  E = C + D with C frozen (unit-norm content) and D trainable, zero-initialized and projected to
 *                     row norm <= deltaMax after every optimizer step (the paper's method). New items get D = 0.
 * - `content-frozen`: E = C, nothing item-specific is trained.
 *
 * The gradient of E (dE) is what the output layer and the input gather produce; for `id`/`content-init` it is the
 * gradient of E itself and for `content-delta` the gradient of D (dE/dD is the identity).
 */
import { Random } from '../util/random.js';

export type EmbeddingStrategy = 'id' | 'content-init' | 'content-delta' | 'content-frozen';

export const EMBEDDING_STRATEGIES: readonly EmbeddingStrategy[] = [
  'id',
  'content-init',
  'content-delta',
  'content-frozen',
];

/** A trainable tensor and its gradient, as the optimizer sees it. */
export interface ParamGroup {
  name: string;
  param: Float32Array;
  grad: Float32Array;
  /** Row width; rows before firstRow are never updated (the padding row of item tables). */
  rowWidth: number;
  firstRow: number;
  /** Projected update: after each step rows are rescaled to at most this L2 norm (content-delta's delta). */
  maxRowNorm?: number;
}

export function usesContent(strategy: EmbeddingStrategy): boolean {
  return strategy !== 'id';
}

export class ItemEmbeddings {
  readonly strategy: EmbeddingStrategy;
  readonly d: number;
  readonly deltaMax: number;
  /** Scorable items 1..numItems; tables have numItems + 1 rows. */
  numItems: number;
  /** Frozen content C (content-delta, content-frozen); null otherwise. */
  content: Float32Array | null = null;
  /** The trainable table: E itself (id, content-init) or D (content-delta); null for content-frozen. */
  weight: Float32Array | null = null;
  /** The item matrix E used by the model. Same buffer as `weight` (id, content-init) or `content` (frozen). */
  matrix: Float32Array;
  /** dL/dE, allocated on the first training step. */
  grad: Float32Array | null = null;

  constructor(
    strategy: EmbeddingStrategy,
    numItems: number,
    d: number,
    deltaMax: number,
    seed: number,
    content?: Float32Array,
  ) {
    if (!EMBEDDING_STRATEGIES.includes(strategy)) {
      throw new Error(
        `unknown embedding strategy '${strategy}' (expected ${EMBEDDING_STRATEGIES.join(', ')})`,
      );
    }
    this.strategy = strategy;
    this.d = d;
    this.deltaMax = deltaMax;
    this.numItems = numItems;
    const size = (numItems + 1) * d;
    if (usesContent(strategy)) {
      if (!content) throw new Error(`strategy '${strategy}' needs content vectors ((numItems + 1) x d)`);
      checkContent(content, numItems, d, 'content');
    }
    if (strategy === 'content-delta' && !(deltaMax > 0)) {
      throw new Error(`content-delta needs deltaMax > 0 (got ${deltaMax})`);
    }
    switch (strategy) {
      case 'id': {
        // Xavier-normal as pmixer's SASRec and RecTools initialize their embeddings; padding row zero.
        this.weight = new Float32Array(size);
        const rng = new Random(seed ^ 0x1e3d);
        const std = Math.sqrt(2 / (numItems + 1 + d));
        for (let i = d; i < size; i++) this.weight[i] = rng.nextGaussian() * std;
        this.matrix = this.weight;
        break;
      }
      case 'content-init':
        this.weight = Float32Array.from(content!.subarray(0, size));
        this.matrix = this.weight;
        break;
      case 'content-delta':
        this.content = Float32Array.from(content!.subarray(0, size));
        this.weight = new Float32Array(size);
        this.matrix = new Float32Array(size);
        this.refresh();
        break;
      case 'content-frozen':
        this.content = Float32Array.from(content!.subarray(0, size));
        this.matrix = this.content;
        break;
    }
  }

  /** Recomputes E = C + D (content-delta; a no-op for the other strategies, whose E is the stored table). */
  refresh(): void {
    if (this.strategy !== 'content-delta') return;
    const e = this.matrix;
    const c = this.content!;
    const dl = this.weight!;
    for (let i = 0; i < e.length; i++) e[i] = c[i] + dl[i];
  }

  /** dL/dE, zeroed. */
  zeroGrad(): Float32Array {
    if (!this.grad || this.grad.length !== this.matrix.length)
      this.grad = new Float32Array(this.matrix.length);
    else this.grad.fill(0);
    return this.grad;
  }

  /** The optimizer's view of the trainable table (null for content-frozen). */
  paramGroup(): ParamGroup | null {
    if (!this.weight) return null;
    if (!this.grad) this.zeroGrad();
    return {
      name: this.strategy === 'content-delta' ? 'delta' : 'items',
      param: this.weight,
      grad: this.grad!,
      rowWidth: this.d,
      firstRow: 1,
      maxRowNorm: this.strategy === 'content-delta' ? this.deltaMax : undefined,
    };
  }

  /**
   * Appends `count` new items (rows numItems+1 .. numItems+count) from their content vectors (count x d): their
   * embedding is the content vector with zero delta. Not possible for `id`.
   */
  append(content: Float32Array, count: number): void {
    if (this.strategy === 'id') {
      throw new Error(
        "appendItems: the 'id' strategy has no content vectors; new items cannot be represented",
      );
    }
    const d = this.d;
    if (content.length !== count * d) {
      throw new Error(`appendItems: content has ${content.length} values, expected count x d = ${count * d}`);
    }
    for (let i = 0; i < content.length; i++) {
      if (!Number.isFinite(content[i]))
        throw new Error(`appendItems: content row ${Math.floor(i / d)} is not finite`);
    }
    const oldSize = (this.numItems + 1) * d;
    const grow = (old: Float32Array, tail: Float32Array | null): Float32Array => {
      const next = new Float32Array(oldSize + count * d);
      next.set(old.subarray(0, oldSize));
      if (tail) next.set(tail, oldSize);
      return next;
    };
    switch (this.strategy) {
      case 'content-init':
        this.weight = grow(this.weight!, content);
        this.matrix = this.weight;
        break;
      case 'content-delta':
        this.content = grow(this.content!, content);
        this.weight = grow(this.weight!, null);
        this.matrix = new Float32Array(oldSize + count * d);
        break;
      case 'content-frozen':
        this.content = grow(this.content!, content);
        this.matrix = this.content;
        break;
    }
    this.numItems += count;
    this.grad = null;
    this.refresh();
  }

  /** Every tensor needed to restore the table (views, not copies). */
  tensors(): { name: string; shape: number[]; data: Float32Array }[] {
    const shape = [this.numItems + 1, this.d];
    switch (this.strategy) {
      case 'id':
      case 'content-init':
        return [{ name: 'items', shape, data: this.weight! }];
      case 'content-delta':
        return [
          { name: 'content', shape, data: this.content! },
          { name: 'delta', shape, data: this.weight! },
        ];
      case 'content-frozen':
        return [{ name: 'content', shape, data: this.content! }];
    }
  }
}

/** Content matrices are (numItems + 1) x d, finite, with a zero padding row. */
function checkContent(content: Float32Array, numItems: number, d: number, what: string): void {
  if (content.length !== (numItems + 1) * d) {
    throw new Error(
      `${what}: ${content.length} values, expected (numItems + 1) x d = ${numItems + 1} x ${d} = ${(numItems + 1) * d}`,
    );
  }
  for (let p = 0; p < d; p++) {
    if (content[p] !== 0) throw new Error(`${what}: row 0 (padding) must be all zeros`);
  }
  for (let i = d; i < content.length; i++) {
    if (!Number.isFinite(content[i])) throw new Error(`${what}: row ${Math.floor(i / d)} is not finite`);
  }
}
