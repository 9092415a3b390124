/**
 * Item-embedding strategies (PAPER.md "Method" and "Variants compared"). The item matrix E ((numItems + 1) x d,
 * row 0 = padding, always zero) is used both as the input embedding and as the output layer (tied weights).
 *
 * - `id`:             E is learned from scratch (xavier-normal init, seeded). Cannot represent new items.
 * - `content-init`:   E starts as the content vectors and is then fully fine-tuned. New items get their content vector.
 * - `content-delta`:  E = C + D with C frozen (unit-norm content) and D trainable, zero-initialized and projected to
 *                     row norm <= deltaMax after every optimizer step (the paper's method). New items get D = 0.
 * - `content-frozen`: E = C, nothing item-specific is trained.
 * - `content-map`:    E = C_hi W + b + D (beyond the paper, issue 7): C_hi is the frozen high-dimensional content
 *                     ((numItems + 1) x H, e.g. a 512-d warm-fitted SVD; rows are scaled to unit norm on the way
 *                     in, here and in `append`, so raw encoder output can be passed), W (H x d) and b (d) a
 *                     shared learned map (initialized from the paper's PCA projection, see `initMap`), and D the
 *                     bounded per-item delta of content-delta. New items get C_hi W + b with D = 0, so they use the
 *                     map trained on the warm items instead of a fixed projection. Row 0 of E stays zero.
 *
 * The gradient of E (dE) is what the output layer and the input gather produce; for `id`/`content-init` it is the
 * gradient of E itself and for `content-delta` the gradient of D (dE/dD is the identity). For `content-map`,
 * `backward` turns dE into dW = C_hi^T dE and db = sum of dE over rows 1..numItems (dD = dE as for content-delta).
 *
 * Delta dropout (option `deltaDropout` p, content-delta and content-map, off by default): in each training step
 * every item's delta is left out of E with probability p (a seeded per-step row mask), so the model also learns to
 * score items from their content alone, as it must for cold items, which have no delta. Dropped rows get no delta
 * gradient that step.
 */
import { referenceKernels } from '../kernels/reference.js';
import type { Kernels } from '../kernels/types.js';
import { copyWithRoom, extend, withRoom } from '../util/growable.js';
import { hash32, Random } from '../util/random.js';

export type EmbeddingStrategy = 'id' | 'content-init' | 'content-delta' | 'content-frozen' | 'content-map';

export const EMBEDDING_STRATEGIES: readonly EmbeddingStrategy[] = [
  'id',
  'content-init',
  'content-delta',
  'content-frozen',
  'content-map',
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
  /**
   * Lazy (sparse) updates (sampled losses): the step's gradient is only the rows listed here, and only those rows
   * (and their Adam moments) are updated; `grad` above is then unused. See docs/large-catalogs.md.
   */
  sparse?: SparseRows;
}

/** The rows of an item table touched by one training step and their compact gradient (count x rowWidth). */
export interface SparseRows {
  /** Table rows 0..count (distinct, never the padding row). Buffers may be replaced when they grow. */
  rows: Int32Array;
  grad: Float32Array;
  count: number;
}

export function usesContent(strategy: EmbeddingStrategy): boolean {
  return strategy !== 'id';
}

/** Strategies whose trainable table is a bounded delta on top of content. */
function hasDelta(strategy: EmbeddingStrategy): boolean {
  return strategy === 'content-delta' || strategy === 'content-map';
}

/**
 * Another similarity for borrowed deltas (e.g. the sparse TF-IDF cosine): fills out (rows.length x warmItems) with
 * the similarity of each of `rows` to the warm rows 1..warmItems (out[i * warmItems + j - 1] for row j).
 */
export type BorrowSimilarity = (rows: Int32Array, out: Float32Array, warmItems: number) => void;

/**
 * The tensors of a saved model by name (`tensors()` names), to restore the item tables from (SASRec.fromParameters).
 * `own`: the model may keep the arrays themselves as its tables (the caller gives them up); else each is copied once.
 */
export interface SavedTensors {
  tensors: ReadonlyMap<string, Float32Array>;
  own: boolean;
}

export class ItemEmbeddings {
  readonly strategy: EmbeddingStrategy;
  readonly d: number;
  /** Width of the stored content rows: H for content-map, d otherwise. */
  readonly contentDim: number;
  readonly deltaMax: number;
  /** Probability that an item's delta is left out of E in a training step (0 = off). */
  readonly deltaDropout: number;
  /** Rows whose delta is left out of E in the current training step (1 = dropped); null when none are. */
  private deltaMask: Uint8Array | null = null;
  /** Scorable items 1..numItems; tables have numItems + 1 rows. */
  numItems: number;
  /** Frozen content C (content-delta, content-frozen; (numItems + 1) x H for content-map); null otherwise. */
  content: Float32Array | null = null;
  /** content-map's shared map: weight H x d, bias d, and their gradients. */
  mapWeight: Float32Array | null = null;
  mapBias: Float32Array | null = null;
  mapWeightGrad: Float32Array | null = null;
  mapBiasGrad: Float32Array | null = null;
  /** The trainable table: E itself (id, content-init) or D (content-delta, content-map); null for content-frozen. */
  weight: Float32Array | null = null;
  /** The item matrix E used by the model. Same buffer as `weight` (id, content-init) or `content` (frozen). */
  matrix: Float32Array;
  /** dL/dE, allocated on the first training step. */
  grad: Float32Array | null = null;
  /** gatherRows: which of its rows delta dropout dropped; its gathered content-map rows. */
  private rowDropped = new Uint8Array(0);
  private contentRows = new Float32Array(0);

  constructor(
    strategy: EmbeddingStrategy,
    numItems: number,
    d: number,
    deltaMax: number,
    seed: number,
    content?: Float32Array,
    contentDim?: number,
    deltaDropout = 0,
    saved?: SavedTensors,
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
    if (strategy === 'content-map') {
      if (!(Number.isInteger(contentDim) && contentDim! >= 1)) {
        throw new Error(`content-map needs contentDim (the width H of the content rows), got ${contentDim}`);
      }
      this.contentDim = contentDim!;
    } else this.contentDim = d;
    const width = this.contentDim;
    if (usesContent(strategy)) {
      if (!content)
        throw new Error(`strategy '${strategy}' needs content vectors ((numItems + 1) x ${width})`);
      checkContent(content, numItems, width, 'content');
    }
    if (hasDelta(strategy) && !(deltaMax > 0)) {
      throw new Error(`${strategy} needs deltaMax > 0 (got ${deltaMax})`);
    }
    if (!(deltaDropout >= 0 && deltaDropout < 1)) {
      throw new Error(`deltaDropout must be in [0, 1) (got ${deltaDropout})`);
    }
    if (deltaDropout > 0 && !hasDelta(strategy)) {
      throw new Error(
        `deltaDropout needs a strategy with a delta (content-delta, content-map), not '${strategy}'`,
      );
    }
    this.deltaDropout = deltaDropout;
    // A saved model's tables are taken from its tensors: as saved (content-map's content is not re-normalized) and
    // without the initialization they would overwrite.
    switch (strategy) {
      case 'id': {
        if (saved) {
          this.weight = savedTable(saved, 'items', numItems + 1, d);
          this.matrix = this.weight;
          break;
        }
        // Xavier-normal as pmixer's SASRec and RecTools initialize their embeddings; padding row zero.
        this.weight = new Float32Array(size);
        const rng = new Random(seed ^ 0x1e3d);
        const std = Math.sqrt(2 / (numItems + 1 + d));
        for (let i = d; i < size; i++) this.weight[i] = rng.nextGaussian() * std;
        this.matrix = this.weight;
        break;
      }
      // The tables of the strategies that can append items have spare room (util/growable.ts), so that the first
      // append after a load writes its row like any other instead of moving the whole table.
      case 'content-init':
        this.weight = saved
          ? savedTable(saved, 'items', numItems + 1, d)
          : copyWithRoom(content!.subarray(0, size), d);
        this.matrix = this.weight;
        break;
      case 'content-delta':
        this.content = saved
          ? savedTable(saved, 'content', numItems + 1, d)
          : copyWithRoom(content!.subarray(0, size), d);
        this.weight = saved ? savedTable(saved, 'delta', numItems + 1, d) : withRoom(Float32Array, size, d);
        this.matrix = withRoom(Float32Array, size, d);
        if (!saved) this.refresh(); // a saved model's E is built once, by SASRec.fromParameters
        break;
      case 'content-frozen':
        this.content = saved
          ? savedTable(saved, 'content', numItems + 1, d)
          : copyWithRoom(content!.subarray(0, size), d);
        this.matrix = this.content;
        break;
      case 'content-map': {
        this.content = saved
          ? savedTable(saved, 'content', numItems + 1, width)
          : unitRowsInPlace(copyWithRoom(content!.subarray(0, (numItems + 1) * width), width), width);
        this.weight = saved ? savedTable(saved, 'delta', numItems + 1, d) : withRoom(Float32Array, size, d);
        this.matrix = withRoom(Float32Array, size, d);
        this.mapWeightGrad = new Float32Array(width * d);
        this.mapBiasGrad = new Float32Array(d);
        if (saved) {
          this.mapWeight = savedTensor(saved, 'map.weight', width, d).slice();
          this.mapBias = savedTensor(saved, 'map.bias', 1, d).slice();
          break;
        }
        // Default map: seeded xavier-normal weight, zero bias (fit() starts it at the PCA projection instead).
        this.mapWeight = new Float32Array(width * d);
        this.mapBias = new Float32Array(d);
        const rng = new Random(seed ^ 0x3a9c);
        const std = Math.sqrt(2 / (width + d));
        for (let i = 0; i < this.mapWeight.length; i++) this.mapWeight[i] = rng.nextGaussian() * std;
        break;
      }
    }
  }

  /** content-map: sets the map (weight H x d, bias d), e.g. the paper's projection as a linear map. */
  initMap(weight: Float32Array, bias: Float32Array): void {
    if (this.strategy !== 'content-map') throw new Error(`initMap: strategy '${this.strategy}' has no map`);
    if (weight.length !== this.contentDim * this.d || bias.length !== this.d) {
      throw new Error(
        `initMap: expected weight ${this.contentDim} x ${this.d} and bias ${this.d}, got ${weight.length} and ${bias.length} values`,
      );
    }
    this.mapWeight!.set(weight);
    this.mapBias!.set(bias);
  }

  /**
   * Recomputes E = C + D (content-delta) or E = C_hi W + b + D with row 0 zero (content-map); a no-op for the other
   * strategies, whose E is the stored table. With a dropSeed and deltaDropout > 0 (training), a seeded random set of
   * rows gets no delta; returns whether any row was dropped (E then must be rebuilt before inference).
   */
  refresh(kernels?: Kernels, dropSeed?: number): boolean {
    const mask = this.fillDeltaMask(dropSeed);
    if (this.strategy === 'content-delta') {
      const e = this.matrix;
      const c = this.content!;
      const dl = this.weight!;
      if (!mask) for (let i = 0; i < e.length; i++) e[i] = c[i] + dl[i];
      else {
        const d = this.d;
        for (let r = 0; r <= this.numItems; r++) {
          const o = r * d;
          if (mask[r]) for (let j = 0; j < d; j++) e[o + j] = c[o + j];
          else for (let j = 0; j < d; j++) e[o + j] = c[o + j] + dl[o + j];
        }
      }
    } else if (this.strategy === 'content-map') {
      const { d, contentDim: h } = this;
      const rows = this.numItems + 1;
      const e = this.matrix;
      const dl = this.weight!;
      const bias = this.mapBias!;
      for (let r = 1; r < rows; r++) {
        const o = r * d;
        if (mask?.[r]) e.set(bias, o);
        else for (let j = 0; j < d; j++) e[o + j] = bias[j] + dl[o + j];
      }
      e.fill(0, 0, d);
      (kernels ?? referenceKernels).matmul(
        e.subarray(d),
        this.content!.subarray(h),
        this.mapWeight!,
        rows - 1,
        d,
        h,
        false,
        false,
        true,
      );
    }
    return mask !== null;
  }

  /**
   * Recomputes E for rows from..to only (content-delta, content-map; a no-op for the others), without delta
   * dropout: what `refresh` gives those rows, at the cost of those rows.
   */
  refreshRows(from: number, to: number, kernels?: Kernels): void {
    if (to <= from) return;
    const d = this.d;
    const e = this.matrix;
    if (this.strategy === 'content-delta') {
      const c = this.content!;
      const dl = this.weight!;
      for (let i = from * d; i < to * d; i++) e[i] = c[i] + dl[i];
    } else if (this.strategy === 'content-map') {
      const h = this.contentDim;
      const first = Math.max(from, 1); // row 0 stays zero
      const dl = this.weight!;
      const bias = this.mapBias!;
      for (let r = first; r < to; r++) for (let j = 0; j < d; j++) e[r * d + j] = bias[j] + dl[r * d + j];
      if (from === 0) e.fill(0, 0, d);
      (kernels ?? referenceKernels).matmul(
        e.subarray(first * d, to * d),
        this.content!.subarray(first * h, to * h),
        this.mapWeight!,
        to - first,
        d,
        h,
        false,
        false,
        true,
      );
    }
  }

  /** refreshRows for each of `rows`. */
  refreshRowList(rows: ArrayLike<number>, kernels?: Kernels): void {
    for (let i = 0; i < rows.length; i++) this.refreshRows(rows[i], rows[i] + 1, kernels);
  }

  /** The per-step delta-dropout mask (row r dropped with probability deltaDropout), or null when off. */
  private fillDeltaMask(dropSeed: number | undefined): Uint8Array | null {
    if (dropSeed === undefined || this.deltaDropout === 0) {
      this.deltaMask = null;
      return null;
    }
    const rows = this.numItems + 1;
    if (!this.deltaMask || this.deltaMask.length !== rows) this.deltaMask = new Uint8Array(rows);
    const mask = this.deltaMask;
    const threshold = this.deltaDropout * 4294967296;
    const seed = dropMaskSeed(dropSeed);
    mask[0] = 0;
    for (let r = 1; r < rows; r++) mask[r] = deltaDropped(seed, r, threshold) ? 1 : 0;
    return mask;
  }

  /**
   * Rows ids[0..count) of E into out (count x d), computed from the parameters (E itself need not be current):
   * the sampled losses' compact item table. With a dropSeed, delta dropout drops the same rows as `refresh`
   * would; `dropped` records them for `backwardRows`. Cost: count rows (content-map: count x H x d), never the
   * whole catalog.
   */
  gatherRows(ids: Int32Array, count: number, out: Float32Array, kernels: Kernels, dropSeed?: number): void {
    const d = this.d;
    if (this.rowDropped.length < count) this.rowDropped = new Uint8Array(count);
    const dropped = this.rowDropped;
    const dropping = dropSeed !== undefined && this.deltaDropout > 0;
    const seed = dropping ? dropMaskSeed(dropSeed) : 0;
    const threshold = this.deltaDropout * 4294967296;
    for (let u = 0; u < count; u++) dropped[u] = dropping && deltaDropped(seed, ids[u], threshold) ? 1 : 0;
    switch (this.strategy) {
      case 'id':
      case 'content-init':
        kernels.gather(out, this.weight!, ids, count, d);
        break;
      case 'content-frozen':
        kernels.gather(out, this.content!, ids, count, d);
        break;
      case 'content-delta': {
        kernels.gather(out, this.content!, ids, count, d);
        const dl = this.weight!;
        for (let u = 0; u < count; u++) {
          if (dropped[u]) continue;
          const o = ids[u] * d;
          for (let j = 0; j < d; j++) out[u * d + j] += dl[o + j];
        }
        break;
      }
      case 'content-map': {
        const h = this.contentDim;
        const c = this.gatheredContent(ids, count, kernels);
        const dl = this.weight!;
        const bias = this.mapBias!;
        for (let u = 0; u < count; u++) {
          const o = ids[u] * d;
          if (dropped[u]) out.set(bias, u * d);
          else for (let j = 0; j < d; j++) out[u * d + j] = bias[j] + dl[o + j];
        }
        kernels.matmul(out, c, this.mapWeight!, count, d, h, false, false, true);
        break;
      }
    }
  }

  /**
   * Backward of `gatherRows` for the same rows: dE (count x d, the compact gradient) is the gradient of the
   * trainable rows, except that rows dropped by delta dropout get none; content-map also gets dW = C[ids]^T dE and
   * db = column sums of dE.
   */
  backwardRows(ids: Int32Array, count: number, dE: Float32Array, kernels: Kernels): void {
    const d = this.d;
    if (this.strategy === 'content-map') {
      const h = this.contentDim;
      const c = this.gatheredContent(ids, count, kernels);
      kernels.matmul(this.mapWeightGrad!, c, dE, h, d, count, true, false, false);
      const db = this.mapBiasGrad!;
      db.fill(0);
      for (let u = 0; u < count; u++) for (let j = 0; j < d; j++) db[j] += dE[u * d + j];
    }
    const dropped = this.rowDropped;
    for (let u = 0; u < count; u++) if (dropped[u]) dE.fill(0, u * d, (u + 1) * d);
  }

  /** content-map: C_hi rows ids[0..count) (count x H), in a buffer reused between calls. */
  private gatheredContent(ids: Int32Array, count: number, kernels: Kernels): Float32Array {
    const h = this.contentDim;
    if (this.contentRows.length < count * h) this.contentRows = new Float32Array(count * h);
    kernels.gather(this.contentRows, this.content!, ids, count, h);
    return this.contentRows;
  }

  /**
   * content-map: from dE (this.grad, filled by the model) computes dW = C_hi^T dE and db = column sums of dE over
   * rows 1..numItems. dD is dE itself (the delta group's gradient is the same buffer), with the rows dropped by
   * delta dropout zeroed. A no-op for the other strategies without delta dropout.
   */
  backward(kernels: Kernels): void {
    const mask = this.deltaMask;
    if (this.strategy === 'content-map') this.mapBackward(kernels);
    if (mask) {
      // Dropped rows did not use their delta this step.
      const dE = this.grad!;
      const d = this.d;
      for (let r = 1; r < mask.length; r++) if (mask[r]) dE.fill(0, r * d, (r + 1) * d);
    }
  }

  private mapBackward(kernels: Kernels): void {
    const { d, contentDim: h } = this;
    const rows = this.numItems + 1;
    const dE = this.grad!;
    kernels.matmul(
      this.mapWeightGrad!,
      this.content!.subarray(h),
      dE.subarray(d),
      h,
      d,
      rows - 1,
      true,
      false,
      false,
    );
    const db = this.mapBiasGrad!;
    db.fill(0);
    for (let r = 1; r < rows; r++) {
      const o = r * d;
      for (let j = 0; j < d; j++) db[j] += dE[o + j];
    }
  }

  /** dL/dE, zeroed. */
  zeroGrad(): Float32Array {
    if (!this.grad || this.grad.length !== this.matrix.length)
      this.grad = new Float32Array(this.matrix.length);
    else this.grad.fill(0);
    return this.grad;
  }

  /**
   * The optimizer's view of the trainable tensors: the item table or delta, and content-map's map (none for
   * content-frozen). With `sparse` (sampled losses) the table's gradient is those compact rows and no full-size
   * gradient is allocated.
   */
  paramGroups(sparse?: SparseRows): ParamGroup[] {
    if (!this.weight) return [];
    if (!sparse && !this.grad) this.zeroGrad();
    const delta = hasDelta(this.strategy);
    const groups: ParamGroup[] = [
      {
        name: delta ? 'delta' : 'items',
        param: this.weight,
        grad: sparse ? sparse.grad : this.grad!,
        rowWidth: this.d,
        firstRow: 1,
        maxRowNorm: delta ? this.deltaMax : undefined,
        sparse,
      },
    ];
    if (this.strategy === 'content-map') {
      groups.push(
        {
          name: 'map.weight',
          param: this.mapWeight!,
          grad: this.mapWeightGrad!,
          rowWidth: this.d,
          firstRow: 0,
        },
        { name: 'map.bias', param: this.mapBias!, grad: this.mapBiasGrad!, rowWidth: this.d, firstRow: 0 },
      );
    }
    return groups;
  }

  /**
   * Appends `count` new items (rows numItems+1 .. numItems+count) from their content vectors (count x d; count x H
   * for content-map): their embedding is the content vector (content-map: C_hi W + b) with zero delta. Not possible
   * for `id`.
   */
  append(content: Float32Array, count: number, kernels?: Kernels): void {
    if (this.strategy === 'id') {
      throw new Error(
        "appendItems: the 'id' strategy has no content vectors; new items cannot be represented",
      );
    }
    const d = this.d;
    const width = this.contentDim;
    if (content.length !== count * width) {
      throw new Error(
        `appendItems: content has ${content.length} values, expected count x ${width} = ${count * width}`,
      );
    }
    for (let i = 0; i < content.length; i++) {
      if (!Number.isFinite(content[i]))
        throw new Error(`appendItems: content row ${Math.floor(i / width)} is not finite`);
    }
    // Tables grow by capacity (util/growable.ts): the new rows are written into spare room, and only E's new rows
    // are computed, so appending one item costs O(d) (content-map: O(H d)) amortized, whatever the catalog size.
    const from = this.numItems + 1;
    const rows = from + count;
    switch (this.strategy) {
      case 'content-init':
        this.weight = extend(this.weight!, rows * d);
        this.weight.set(content, from * d);
        this.matrix = this.weight;
        break;
      case 'content-delta':
        this.content = extend(this.content!, rows * d);
        this.content.set(content, from * d);
        this.weight = extend(this.weight!, rows * d); // spare room is zero: a zero delta
        this.matrix = extend(this.matrix, rows * d);
        break;
      case 'content-map':
        this.content = extend(this.content!, rows * width);
        this.content.set(unitRows(content, width), from * width);
        this.weight = extend(this.weight!, rows * d);
        this.matrix = extend(this.matrix, rows * d);
        break;
      case 'content-frozen':
        this.content = extend(this.content!, rows * d);
        this.content.set(content, from * d);
        this.matrix = this.content;
        break;
    }
    this.numItems += count;
    this.grad = null;
    this.refreshRows(from, rows, kernels);
  }

  /**
   * Replaces the content of existing rows (rows.length x d values; x H for content-map) and zeroes their delta:
   * the rows then hold exactly what append would have given them. The service reuses the row of an added item
   * this way when the item is updated, so updates do not grow the table. Not possible for `id`.
   */
  replace(rows: Int32Array, content: Float32Array, kernels?: Kernels): void {
    if (this.strategy === 'id') {
      throw new Error("replaceItems: the 'id' strategy has no content vectors; items cannot be re-encoded");
    }
    const d = this.d;
    const width = this.contentDim;
    if (content.length !== rows.length * width) {
      throw new Error(
        `replaceItems: content has ${content.length} values, expected ${rows.length} x ${width}`,
      );
    }
    for (let i = 0; i < content.length; i++) {
      if (!Number.isFinite(content[i]))
        throw new Error(`replaceItems: content row ${Math.floor(i / width)} is not finite`);
    }
    const stored = this.strategy === 'content-map' ? unitRows(content, width) : content;
    rows.forEach((row, i) => {
      if (!(row >= 1 && row <= this.numItems)) throw new Error(`replaceItems: row ${row} does not exist`);
      const source = stored.subarray(i * width, (i + 1) * width);
      if (this.strategy === 'content-init') this.weight!.set(source, row * d);
      else {
        this.content!.set(source, row * width);
        if (this.weight) this.weight.fill(0, row * d, (row + 1) * d);
      }
    });
    this.refreshRowList(rows, kernels);
  }

  /**
   * Borrowed deltas (issue 15, off by default): gives each of `rows` (typically cold items, whose delta is zero) the
   * similarity-weighted mean of the deltas of its k nearest warm rows 1..warmItems by cosine of the stored content
   * rows (the projected content; content-map: the full-width content; `similarityOf` replaces it, e.g. by the
   * sparse TF-IDF cosine), neighbours with cosine <= 0 left out, the row itself never its own neighbour:
   *
   *   D_r = clip_deltaMax( sum_j s_rj D_j / sum_j s_rj ),  j in the k warm rows of largest s_rj = cos(C_r, C_j) > 0
   *
   * A row without a positive neighbour keeps a zero delta. E is not refreshed here (the caller does).
   */
  borrowDeltas(
    rows: ArrayLike<number>,
    warmItems: number,
    k: number,
    kernels: Kernels = referenceKernels,
    similarityOf?: BorrowSimilarity,
  ): void {
    if (!hasDelta(this.strategy)) {
      throw new Error(`borrowDeltas: strategy '${this.strategy}' has no delta (content-delta, content-map)`);
    }
    if (!(Number.isInteger(k) && k >= 1))
      throw new Error(`borrowDeltas: k must be a positive integer, got ${k}`);
    if (!(Number.isInteger(warmItems) && warmItems >= 0 && warmItems <= this.numItems)) {
      throw new Error(`borrowDeltas: warmItems ${warmItems} is outside 0..${this.numItems}`);
    }
    if (rows.length === 0 || warmItems === 0) return;
    const { d, contentDim: h } = this;
    const content = this.content!;
    const delta = this.weight!;
    const norms = rowNorms(content, warmItems + 1, h); // the warm rows' (each target's is computed below)
    const take = Math.min(k + 1, warmItems); // one more: the row itself may be among the warm rows
    const chunk = Math.max(1, Math.min(256, Math.floor(16_777_216 / warmItems))); // similarity <= 64 MiB
    const targets = new Float32Array(chunk * h);
    const similarity = new Float32Array(chunk * warmItems);
    const topIndices = new Int32Array(chunk * take);
    const topScores = new Float32Array(chunk * take);
    const mean = new Float64Array(d);
    const warm = content.subarray(h, (warmItems + 1) * h);
    for (let start = 0; start < rows.length; start += chunk) {
      const count = Math.min(chunk, rows.length - start);
      const chunkRows = Int32Array.from({ length: count }, (_, i) => rows[start + i]);
      for (let i = 0; i < count; i++) {
        const row = chunkRows[i];
        if (!(Number.isInteger(row) && row >= 1 && row <= this.numItems))
          throw new Error(`borrowDeltas: row ${row} does not exist`);
        targets.set(content.subarray(row * h, (row + 1) * h), i * h);
      }
      if (similarityOf) similarityOf(chunkRows, similarity, warmItems);
      else {
        // similarity[i][j - 1] = C_row . C_j / (|C_row| |C_j|)
        kernels.matmul(similarity, targets, warm, count, warmItems, h, false, true, false);
        for (let i = 0; i < count; i++) {
          const o = i * warmItems;
          const rowNorm = rowNorms(targets.subarray(i * h, (i + 1) * h), 1, h)[0];
          for (let j = 0; j < warmItems; j++) {
            const n = rowNorm * norms[j + 1];
            similarity[o + j] = n > 0 ? similarity[o + j] / n : 0;
          }
        }
      }
      for (let i = 0; i < count; i++) {
        const row = chunkRows[i];
        if (row <= warmItems) similarity[i * warmItems + row - 1] = -Infinity;
      }
      kernels.topK(topIndices, topScores, similarity, count, warmItems, take);
      for (let i = 0; i < count; i++) {
        const row = rows[start + i];
        mean.fill(0);
        let total = 0;
        for (let t = 0, used = 0; t < take && used < k; t++) {
          const s = topScores[i * take + t];
          if (!(s > 0)) break;
          const from = (topIndices[i * take + t] + 1) * d;
          for (let j = 0; j < d; j++) mean[j] += s * delta[from + j];
          total += s;
          used++;
        }
        const o = row * d;
        if (total === 0) {
          delta.fill(0, o, o + d);
          continue;
        }
        let squares = 0;
        for (let j = 0; j < d; j++) {
          mean[j] /= total;
          squares += mean[j] * mean[j];
        }
        const norm = Math.sqrt(squares);
        const scale = norm > this.deltaMax ? this.deltaMax / norm : 1;
        for (let j = 0; j < d; j++) delta[o + j] = mean[j] * scale;
      }
    }
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
      case 'content-map':
        return [
          { name: 'content', shape: [this.numItems + 1, this.contentDim], data: this.content! },
          { name: 'delta', shape, data: this.weight! },
          { name: 'map.weight', shape: [this.contentDim, this.d], data: this.mapWeight! },
          { name: 'map.bias', shape: [this.d], data: this.mapBias! },
        ];
    }
  }
}

/** Tensor `name` of a saved model, checked to hold rows x width values. */
function savedTensor(saved: SavedTensors, name: string, rows: number, width: number): Float32Array {
  const data = saved.tensors.get(name);
  if (!data) throw new Error(`missing tensor '${name}'`);
  if (data.length !== rows * width) {
    throw new Error(
      `tensor '${name}' has ${data.length} values, expected ${rows * width} (shape ${rows} x ${width})`,
    );
  }
  return data;
}

/**
 * Tensor `name` of a saved model as an item table: the array itself when the model may own it and it starts its
 * buffer (as `extend` needs; the loader reads item tables into buffers with spare room), else a copy with room.
 */
function savedTable(saved: SavedTensors, name: string, rows: number, width: number): Float32Array {
  const data = savedTensor(saved, name, rows, width);
  return saved.own && data.byteOffset === 0 ? data : copyWithRoom(data, width);
}

/** L2 norm of each of `rows` rows of width `width`. */
function rowNorms(vectors: Float32Array, rows: number, width: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < width; j++) s += vectors[r * width + j] ** 2;
    out[r] = Math.sqrt(s);
  }
  return out;
}

function dropMaskSeed(dropSeed: number): number {
  return hash32(dropSeed ^ 0x6d2b79f5);
}

/** Whether delta dropout leaves out row r's delta in the step whose mask seed is `seed`. */
function deltaDropped(seed: number, r: number, threshold: number): boolean {
  return hash32((seed + Math.imul(r, 0x9e3779b9)) >>> 0) < threshold;
}

/** A copy with every row scaled to unit L2 norm (all-zero rows stay zero): content-map's stored content. */
function unitRows(vectors: Float32Array, width: number): Float32Array {
  return unitRowsInPlace(Float32Array.from(vectors), width);
}

/** Scales each row of `out` (width values) to unit L2 norm in place (all-zero rows stay zero); returns `out`. */
function unitRowsInPlace(out: Float32Array, width: number): Float32Array {
  for (let o = 0; o < out.length; o += width) {
    let s = 0;
    for (let j = 0; j < width; j++) s += out[o + j] * out[o + j];
    if (s > 0) {
      const inv = 1 / Math.sqrt(s);
      for (let j = 0; j < width; j++) out[o + j] *= inv;
    }
  }
  return out;
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
