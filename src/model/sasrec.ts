/**
 * SASRec (Kang & McAuley 2018) with the item-embedding strategies of PAPER.md, written llm.c style: one flat
 * parameter buffer with named views, a mirror gradient buffer, activation buffers allocated once per row capacity
 * and reused, and an explicit forward and backward per layer. No autograd.
 *
 * Layout (pmixer's SASRec.pytorch and RecTools' SASRec, which the paper's authors use):
 *   x0  = dropout(E[item] + P[position])          positions count from the end: the most recent item uses row 0
 *   per block:
 *     q   = LN1(x)
 *     r   = q + Attn(q, x, x)                        causal, padding keys masked; Q from LN1(x), K and V from x
 *     f   = LN2(r)
 *     x'  = f + dropout(W2 dropout(act(W1 f + b1)) + b2)
 *   h   = LNf(x_L)                                  only at the rows that are scored
 *   logits = h E^T over items 1..numItems (tied input/output embeddings), full softmax cross-entropy; or a
 *   sampled loss over k negatives per batch (`loss`: sampled softmax, or gBCE with one learned logit offset,
 *   which does not change rankings and is not used at inference). See docs/large-catalogs.md.
 *
 * Decisions (documented differences):
 * - No sqrt(d) scaling of the item embedding (RecTools' default `use_scale_factor = False`): content vectors are
 *   unit norm and xavier-initialized positions have norm about 1 too, so both start on the same scale.
 * - Dropout sits on the embedding, after the FFN activation and on the FFN output. There is no dropout on the
 *   attention probabilities (the attention kernel keeps none; pmixer has one there).
 * - Padding costs nothing: every layer except attention runs on the packed real positions only (as if padding rows
 *   were zeroed by a timeline mask); attention reads Q, K, V spread into the padded batch x T layout, where padding
 *   keys are masked. An empty input (inference only) gets the final layer norm of a zero row.
 * - Layer norm eps 1e-5 (PyTorch's default, as RecTools).
 * - Items in an input the model does not know (index > numItems, e.g. cold items for an `id` model) are dropped
 *   from that input at inference.
 */
import { kernels as defaultKernels } from '../kernels/index.js';
import type { Kernels } from '../kernels/types.js';
import { extend, withRoom } from '../util/growable.js';
import { hash32, Random } from '../util/random.js';
import {
  ItemEmbeddings,
  type EmbeddingStrategy,
  type ParamGroup,
  type SavedTensors,
  type SparseRows,
} from './embeddings.js';
import type { Recommender } from './types.js';

export type { EmbeddingStrategy, ParamGroup } from './embeddings.js';

export interface SASRecConfig {
  /** Scorable item rows 1..numItems at construction (the warm items when training). */
  numItems: number;
  d: number;
  blocks: number;
  heads: number;
  ffWidth: number;
  dropout: number;
  maxLength: number;
  strategy: EmbeddingStrategy;
  /** Row-norm bound of the trainable delta (content-delta, content-map). */
  deltaMax: number;
  /** Width H of the content rows the model stores (content-map only: its map is H x d). */
  contentDim?: number;
  /** Delta dropout: probability that an item's delta is left out in a training step (content-delta, content-map;
   * default 0 = off, the paper's method). See embeddings.ts. */
  deltaDropout?: number;
  /**
   * Borrowed deltas (beyond the paper, issue 15): k > 0 gives every item appended or re-encoded after training the
   * similarity-weighted mean of its k nearest warm items' deltas (ItemEmbeddings.borrowDeltas) instead of a zero
   * delta. Unset or 0: zero delta (the paper). content-delta, content-map.
   */
  borrowDeltas?: number;
  /** Rows 1..warmItems hold trained deltas, the ones borrowed from (set with borrowDeltas). */
  warmItems?: number;
  activation: 'relu' | 'gelu';
  seed: number;
  /**
   * Training loss (docs/large-catalogs.md): 'full' softmax over the catalog (default, the paper's), 'sampled'
   * softmax or 'gbce' (gSASRec) over `negatives` items drawn once per batch (or per sequence, `negativesPer`), with
   * lazy item-table updates.
   */
  loss?: LossKind;
  /** Negatives per batch (or per sequence) for 'sampled' and 'gbce' (default 256). */
  negatives?: number;
  /**
   * Who shares a draw of `negatives` negatives: 'batch' (default; one draw scored by every position of the batch)
   * or 'sequence' (one draw per sequence, shared by its positions): the same logits per step, but batchSize times
   * more distinct negative rows get a gradient (docs/large-catalogs.md).
   */
  negativesPer?: NegativesPer;
  /** Negative sampler: 'uniform' over the trained items (default) or 'popularity' (frequency^samplerPower). */
  sampler?: SamplerKind;
  /** Exponent of the popularity sampler (default 1). */
  samplerPower?: number;
  /** gBCE calibration t in [0, 1] (default 0.75). */
  gbceT?: number;
}

export type LossKind = 'full' | 'sampled' | 'gbce';
export type SamplerKind = 'uniform' | 'popularity';
export type NegativesPer = 'batch' | 'sequence';
export const LOSS_KINDS: readonly LossKind[] = ['full', 'sampled', 'gbce'];
export const SAMPLER_KINDS: readonly SamplerKind[] = ['uniform', 'popularity'];
export const NEGATIVES_PER: readonly NegativesPer[] = ['batch', 'sequence'];

/**
 * gSASRec's gBCE exponent (Petrov and Macdonald, RecSys 2023): beta = alpha (t (1 - 1/alpha) + 1/alpha) with
 * alpha = k / (numItems - 1), the negative sampling rate. Written as 1 - t (1 - alpha), which is the same value
 * without the division by a small alpha. alpha is capped at 1 (k >= numItems - 1 is no sampling: beta = 1).
 */
export function gbceBeta(negatives: number, numItems: number, t: number): number {
  const alpha = numItems > 1 ? Math.min(1, negatives / (numItems - 1)) : 1;
  return 1 - t * (1 - alpha);
}

/** The paper's settings (Beauty: d = 128); ffWidth defaults to d. */
export function sasrecConfig(config: Partial<SASRecConfig> & { numItems: number }): SASRecConfig {
  const d = config.d ?? 128;
  return {
    d,
    blocks: 2,
    heads: 1,
    ffWidth: d,
    dropout: 0.3,
    maxLength: 64,
    strategy: 'content-delta',
    deltaMax: 0.5,
    activation: 'relu',
    seed: 0,
    ...config,
  };
}

/** A training batch: `size` left-padded sequences of length T (row-major size x T). */
export interface Batch {
  size: number;
  T: number;
  /** size x T input items, 0 = padding, real items contiguous at the end of each row. */
  inputs: Int32Array;
  /** size x T next-item targets, 0 exactly where inputs are 0. */
  targets: Int32Array;
  /** Real (non-padding) positions per row. */
  lengths: Int32Array;
}

const LN_EPS = 1e-5;

type Tensor = { name: string; shape: number[]; data: Float32Array };

/** Views of one block's parameters (or gradients) inside a flat buffer. Weights are stored (in x out). */
interface BlockTensors {
  ln1Gamma: Float32Array;
  ln1Beta: Float32Array;
  wq: Float32Array;
  bq: Float32Array;
  wk: Float32Array;
  bk: Float32Array;
  wv: Float32Array;
  bv: Float32Array;
  wo: Float32Array;
  bo: Float32Array;
  ln2Gamma: Float32Array;
  ln2Beta: Float32Array;
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
}

/** Every dense (non-item) tensor of the model as views into one flat Float32Array. */
class DenseTensors {
  readonly flat: Float32Array;
  readonly list: Tensor[] = [];
  readonly positions: Float32Array;
  readonly blocks: BlockTensors[] = [];
  readonly finalGamma: Float32Array;
  readonly finalBeta: Float32Array;
  /** gBCE only: one learned offset added to every logit (see `gbceBeta` and docs/large-catalogs.md). */
  readonly outputBias: Float32Array | null;

  constructor(c: SASRecConfig) {
    const { d, ffWidth: f, maxLength } = c;
    const specs: [string, number[]][] = [['positions', [maxLength, d]]];
    const blockNames: [keyof BlockTensors, string, number[]][] = [
      ['ln1Gamma', 'ln1.gamma', [d]],
      ['ln1Beta', 'ln1.beta', [d]],
      ['wq', 'attn.wq', [d, d]],
      ['bq', 'attn.bq', [d]],
      ['wk', 'attn.wk', [d, d]],
      ['bk', 'attn.bk', [d]],
      ['wv', 'attn.wv', [d, d]],
      ['bv', 'attn.bv', [d]],
      ['wo', 'attn.wo', [d, d]],
      ['bo', 'attn.bo', [d]],
      ['ln2Gamma', 'ln2.gamma', [d]],
      ['ln2Beta', 'ln2.beta', [d]],
      ['w1', 'ffn.w1', [d, f]],
      ['b1', 'ffn.b1', [f]],
      ['w2', 'ffn.w2', [f, d]],
      ['b2', 'ffn.b2', [d]],
    ];
    for (let l = 0; l < c.blocks; l++)
      for (const [, name, shape] of blockNames) specs.push([`blocks.${l}.${name}`, shape]);
    specs.push(['final_ln.gamma', [d]], ['final_ln.beta', [d]]);
    if (c.loss === 'gbce') specs.push(['output.bias', [1]]);
    let total = 0;
    for (const [, shape] of specs) total += shape.reduce((a, b) => a * b, 1);
    this.flat = new Float32Array(total);
    let offset = 0;
    for (const [name, shape] of specs) {
      const size = shape.reduce((a, b) => a * b, 1);
      this.list.push({ name, shape, data: this.flat.subarray(offset, offset + size) });
      offset += size;
    }
    const byName = new Map(this.list.map((t) => [t.name, t.data]));
    this.positions = byName.get('positions')!;
    for (let l = 0; l < c.blocks; l++) {
      const block = {} as BlockTensors;
      for (const [key, name] of blockNames) block[key] = byName.get(`blocks.${l}.${name}`)!;
      this.blocks.push(block);
    }
    this.finalGamma = byName.get('final_ln.gamma')!;
    this.finalBeta = byName.get('final_ln.beta')!;
    this.outputBias = byName.get('output.bias') ?? null;
  }
}

/** Forward activations of one block, kept for the backward pass. Packed rows (real positions only) unless noted. */
interface BlockActivations {
  ln1Mean: Float32Array;
  ln1Rstd: Float32Array;
  qIn: Float32Array; // LN1(x)
  qPad: Float32Array; // Q, K, V in the padded batch x T layout the attention kernel reads
  kPad: Float32Array;
  vPad: Float32Array;
  att: Float32Array; // attention probabilities, batch x heads x T x T
  attOut: Float32Array;
  r: Float32Array; // qIn + attOut Wo + bo
  ln2Mean: Float32Array;
  ln2Rstd: Float32Array;
  fIn: Float32Array; // LN2(r)
  h1: Float32Array; // fIn W1 + b1 (rows x ff)
  act: Float32Array; // act(h1)
  actDrop: Float32Array;
  actMask: Uint8Array;
  h2: Float32Array; // actDrop W2 + b2
  outMask: Uint8Array;
  out: Float32Array; // block output, with one spare zero row for empty inputs at inference
}

/**
 * Activation buffers, reallocated only to grow. Everything except attention works on packed rows: the real
 * positions of the batch in (sequence, position) order, so padding costs neither time nor memory outside attention.
 * Capacities: `padded` = batch x T positions (attention), `packed` = real positions (at least the batch size, for
 * the head rows at inference).
 */
class Activations {
  readonly padded: number;
  readonly packed: number;
  readonly packedItems: Int32Array; // item of each packed row
  readonly padIndex: Int32Array; // padded row (b * T + t) of each packed row
  readonly posIndex: Int32Array; // positional-embedding row (T - 1 - t) of each packed row
  readonly emb: Float32Array;
  readonly embMask: Uint8Array;
  readonly x0: Float32Array;
  readonly blocks: BlockActivations[] = [];
  readonly proj: Float32Array; // packed Q/K/V before they are spread into the padded layout
  readonly attPad: Float32Array; // padded attention output
  readonly headRows: Int32Array; // packed rows that are scored (all in training, the last of each input at inference)
  readonly headTargets: Int32Array;
  readonly headIn: Float32Array;
  readonly headMean: Float32Array;
  readonly headRstd: Float32Array;
  readonly headOut: Float32Array;

  constructor(c: SASRecConfig, padded: number, packed: number) {
    const { d, ffWidth: f } = c;
    const n = packed * d;
    const nf = packed * f;
    this.padded = padded;
    this.packed = packed;
    this.packedItems = new Int32Array(packed);
    this.padIndex = new Int32Array(packed);
    this.posIndex = new Int32Array(packed);
    this.emb = new Float32Array(n);
    this.embMask = new Uint8Array(n);
    this.x0 = new Float32Array(n);
    for (let l = 0; l < c.blocks; l++) {
      this.blocks.push({
        ln1Mean: new Float32Array(packed),
        ln1Rstd: new Float32Array(packed),
        qIn: new Float32Array(n),
        qPad: new Float32Array(padded * d),
        kPad: new Float32Array(padded * d),
        vPad: new Float32Array(padded * d),
        att: new Float32Array(padded * c.heads * c.maxLength),
        attOut: new Float32Array(n),
        r: new Float32Array(n),
        ln2Mean: new Float32Array(packed),
        ln2Rstd: new Float32Array(packed),
        fIn: new Float32Array(n),
        h1: new Float32Array(nf),
        act: new Float32Array(nf),
        actDrop: new Float32Array(nf),
        actMask: new Uint8Array(nf),
        h2: new Float32Array(n),
        outMask: new Uint8Array(n),
        out: new Float32Array(n + d),
      });
    }
    this.proj = new Float32Array(n);
    this.attPad = new Float32Array(padded * d);
    this.headRows = new Int32Array(packed);
    this.headTargets = new Int32Array(packed);
    this.headIn = new Float32Array(n);
    this.headMean = new Float32Array(packed);
    this.headRstd = new Float32Array(packed);
    this.headOut = new Float32Array(n);
  }
}

/** Activation-gradient scratch for the backward pass, shared by all blocks; allocated only for training. */
class ActivationGrads {
  readonly padded: number;
  readonly packed: number;
  readonly ones: Float32Array; // bias gradients as a matrix product
  readonly dHeadOut: Float32Array;
  readonly dOut: Float32Array;
  readonly dX: Float32Array;
  readonly dR: Float32Array;
  readonly dAttOut: Float32Array;
  readonly dProj: Float32Array;
  readonly dAttPad: Float32Array;
  readonly dQPad: Float32Array;
  readonly dKPad: Float32Array;
  readonly dVPad: Float32Array;
  readonly dH2: Float32Array;
  readonly dActDrop: Float32Array;
  readonly dH1: Float32Array;

  constructor(c: SASRecConfig, padded: number, packed: number) {
    const n = packed * c.d;
    const nf = packed * c.ffWidth;
    this.padded = padded;
    this.packed = packed;
    this.ones = new Float32Array(packed).fill(1);
    this.dHeadOut = new Float32Array(n);
    this.dOut = new Float32Array(n);
    this.dX = new Float32Array(n);
    this.dR = new Float32Array(n);
    this.dAttOut = new Float32Array(n);
    this.dProj = new Float32Array(n);
    this.dAttPad = new Float32Array(padded * c.d);
    this.dQPad = new Float32Array(padded * c.d);
    this.dKPad = new Float32Array(padded * c.d);
    this.dVPad = new Float32Array(padded * c.d);
    this.dH2 = new Float32Array(n);
    this.dActDrop = new Float32Array(nf);
    this.dH1 = new Float32Array(nf);
  }
}

/**
 * Per-step state of the sampled losses: the step's negatives (k, or k per sequence: `groups` draws of k), and the
 * compact item table of the rows the step touches (inputs, targets, negatives), which is all the step reads or
 * writes of the item table.
 */
class SampledStep {
  /** Slot of each item row in the compact table, -1 when not touched (reset after each step's rows). */
  readonly slotOf: Int32Array;
  /** Draws of k negatives this step: 1 (negativesPer 'batch') or the batch's sequences ('sequence'). */
  groups = 1;
  /** Row offsets of the groups in the packed positions (groups + 1 entries; 'sequence' only). */
  groupStarts = new Int32Array(0);
  negatives = new Int32Array(0);
  negativeSlots = new Int32Array(0);
  correction = new Float32Array(0);
  negativeRows = new Float32Array(0);
  dNegatives = new Float32Array(0);
  /** The output bias's gradient when the model has none (sampled softmax: it cancels). */
  readonly dBias = new Float32Array(1);
  /** Touched rows and their compact gradient: the optimizer's view (ParamGroup.sparse), kept across rebuilds. */
  readonly sparse: SparseRows;
  table = new Float32Array(0);
  targetSlots = new Int32Array(0);
  positives = new Float32Array(0);
  dPositives = new Float32Array(0);
  /** Popularity sampler: cumulative weights of items 1..numItems (cdf[i - 1] = sum of weights of 1..i). */
  cdf: Float64Array | null = null;

  constructor(numItems: number, sparse?: SparseRows) {
    this.sparse = sparse ?? { rows: new Int32Array(0), grad: new Float32Array(0), count: 0 };
    this.sparse.count = 0;
    this.slotOf = new Int32Array(numItems + 1).fill(-1);
  }

  /** Sizes the negative buffers for `groups` draws of k (views of length groups k; storage only grows). */
  setNegatives(groups: number, k: number, d: number): void {
    const n = groups * k;
    this.groups = groups;
    if (this.negativeSlots.length < n) {
      this.negativeSlots = new Int32Array(n);
      this.negativeRows = new Float32Array(n * d);
      this.dNegatives = new Float32Array(n * d);
    }
    if (this.negatives.length !== n) {
      this.negatives = new Int32Array(n);
      this.correction = new Float32Array(n);
    }
    if (this.groupStarts.length < groups + 1) this.groupStarts = new Int32Array(groups + 1);
  }

  /** Forgets the previous step's rows (only those entries of slotOf are reset). */
  clear(): void {
    const { rows, count } = this.sparse;
    for (let u = 0; u < count; u++) this.slotOf[rows[u]] = -1;
    this.sparse.count = 0;
  }

  /** Ensures room for `more` further rows of width d. */
  reserve(more: number, d: number): void {
    const need = this.sparse.count + more;
    if (this.sparse.rows.length >= need) return;
    const cap = Math.max(need, 2 * this.sparse.rows.length);
    const rows = new Int32Array(cap);
    rows.set(this.sparse.rows.subarray(0, this.sparse.count));
    this.sparse.rows = rows;
    this.sparse.grad = new Float32Array(cap * d);
    this.table = new Float32Array(cap * d);
  }

  slot(item: number): number {
    let u = this.slotOf[item];
    if (u < 0) {
      u = this.sparse.count++;
      this.slotOf[item] = u;
      this.sparse.rows[u] = item;
    }
    return u;
  }

  /** Buffers for `rows` scored positions. */
  reservePositions(rows: number, d: number): void {
    if (this.targetSlots.length >= rows) return;
    this.targetSlots = new Int32Array(rows);
    this.positives = new Float32Array(rows * d);
    this.dPositives = new Float32Array(rows * d);
  }
}

/** Sequences scored per forward pass at inference. */
const INFERENCE_CHUNK = 128;

/**
 * Inference tables: position rows reversed (row i = position maxLength - 1 - i), the first block's keys and values
 * by position (reversed P Wk + bk, P Wv + bv) and by item (E Wk, E Wv for rows 0..rows-1; null over the budget).
 */
interface InferenceTables {
  rows: number;
  itemK: Float32Array | null;
  itemV: Float32Array | null;
  positions: Float32Array;
  positionK: Float32Array;
  positionV: Float32Array;
}

export class SASRec implements Recommender {
  /**
   * Largest size in bytes of the first block's per-item key/value tables (2 x (numItems + 1) x d floats) that
   * inference builds; beyond it keys and values are computed per position (default 256 MiB: 262,000 items at
   * d = 128).
   */
  static kvTableBytes = 256 * 1024 * 1024;
  readonly config: SASRecConfig;
  readonly kernels: Kernels;
  readonly items: ItemEmbeddings;
  readonly params: DenseTensors;
  /** Gradients of `params`, same layout. */
  readonly grads: DenseTensors;
  private acts: Activations | null = null;
  private actGrads: ActivationGrads | null = null;
  private inferenceInputs = new Int32Array(0);
  private inferenceLengths = new Int32Array(0);
  private packedOffsets = new Int32Array(1);
  private packedItems = new Int32Array(0);
  private attentionScratch = new Float64Array(0);
  private onesColumn = new Float32Array(0);
  /** Inference tables; null until built and after parameter changes. */
  private tables: InferenceTables | null = null;
  /** E must be rebuilt (content-delta) before the next use: set after optimizer steps and weight loads. */
  private itemsStale = false;
  /** Sampled losses: per-step negatives and compact item rows (allocated on the first training step). */
  private sampled: SampledStep | null = null;
  /** Popularity sampler weights per item 1..numItems (setItemFrequencies). */
  private itemFrequencies: Float64Array | null = null;

  /**
   * content: (numItems + 1) x d content vectors (unit-norm rows, row 0 zeros); required by the content-* strategies.
   * kernels: the numeric implementation (defaults to the active one; tests pass `referenceKernels`).
   * saved: the item tables of a saved model (fromParameters); they replace the initial ones.
   */
  constructor(
    config: SASRecConfig,
    content?: Float32Array,
    kernels: Kernels = defaultKernels,
    saved?: SavedTensors,
  ) {
    checkConfig(config);
    this.config = { ...config };
    this.kernels = kernels;
    const c = this.config;
    this.items = new ItemEmbeddings(
      c.strategy,
      c.numItems,
      c.d,
      c.deltaMax,
      c.seed,
      content,
      c.contentDim,
      c.deltaDropout ?? 0,
      saved,
    );
    this.params = new DenseTensors(c);
    this.grads = new DenseTensors(c);
    this.initDense();
  }

  get numItems(): number {
    return this.items.numItems;
  }

  /** Xavier-normal weights and positions (as pmixer/RecTools), zero biases, unit layer-norm gains. */
  private initDense(): void {
    const { d, ffWidth: f, maxLength } = this.config;
    const rng = new Random(hash32(this.config.seed) ^ 0x5a5a);
    const xavier = (w: Float32Array, fanIn: number, fanOut: number) => {
      const std = Math.sqrt(2 / (fanIn + fanOut));
      for (let i = 0; i < w.length; i++) w[i] = rng.nextGaussian() * std;
    };
    const p = this.params;
    xavier(p.positions, maxLength, d);
    for (const b of p.blocks) {
      b.ln1Gamma.fill(1);
      b.ln2Gamma.fill(1);
      xavier(b.wq, d, d);
      xavier(b.wk, d, d);
      xavier(b.wv, d, d);
      xavier(b.wo, d, d);
      xavier(b.w1, d, f);
      xavier(b.w2, f, d);
    }
    p.finalGamma.fill(1);
    // gBCE's logit offset starts at the log-odds of a positive among 1 + k candidates (the prior-probability
    // initialization of rare-class logits, Lin et al. 2017), so the k negatives do not dominate the first steps;
    // Adam would take thousands of steps to move a scalar that far at lr 1e-3.
    if (p.outputBias) p.outputBias[0] = -Math.log(this.config.negatives ?? 256);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Forward

  /** Buffers for `size` sequences of length T with `packed` real positions in all (grown, never shrunk). */
  private activations(size: number, T: number, packed: number): Activations {
    const a = this.acts;
    const padded = size * T;
    const rows = Math.max(packed, size);
    if (!a || a.padded < padded || a.packed < rows) {
      this.acts = new Activations(
        this.config,
        Math.max(padded, a?.padded ?? 0),
        Math.max(rows, a?.packed ?? 0),
      );
    }
    return this.acts!;
  }

  /**
   * Runs the embedding and every block over the real positions of a left-padded size x T batch; returns the number
   * of packed rows. The last block's output is in a.blocks[L-1].out.
   */
  private forwardBody(
    a: Activations,
    inputs: Int32Array,
    lengths: Int32Array,
    size: number,
    T: number,
    training: boolean,
    dropoutSeed: number,
    sampled: SampledStep | null = null,
  ): number {
    const k = this.kernels;
    const { d, ffWidth: f, heads } = this.config;
    const p = this.params;
    const dropout = training ? this.config.dropout : 0;

    const rows = packRows(a, inputs, lengths, size, T);
    // Sampled losses: the items as slots of the compact table of the step's rows.
    if (sampled) for (let r = 0; r < rows; r++) a.packedItems[r] = sampled.slotOf[a.packedItems[r]];
    const n = rows * d;

    // Embedding: items plus positions counted from the end (the most recent item always uses row 0).
    k.gather(a.emb, sampled ? sampled.table : this.items.matrix, a.packedItems, rows, d);
    addPositionRows(a.emb, p.positions, a.posIndex, rows, d);
    this.dropoutForward(a.x0, a.embMask, a.emb, n, dropout, siteSeed(dropoutSeed, 0));

    let x = a.x0;
    for (let l = 0; l < this.config.blocks; l++) {
      const w = p.blocks[l];
      const s = a.blocks[l];
      k.layerNormForward(s.qIn, s.ln1Mean, s.ln1Rstd, x, w.ln1Gamma, w.ln1Beta, rows, d, LN_EPS);
      this.linear(a.proj, s.qIn, w.wq, w.bq, rows, d, d);
      toPadded(s.qPad, a.proj, a, rows, lengths, size, T, d);
      this.linear(a.proj, x, w.wk, w.bk, rows, d, d);
      toPadded(s.kPad, a.proj, a, rows, lengths, size, T, d);
      this.linear(a.proj, x, w.wv, w.bv, rows, d, d);
      toPadded(s.vPad, a.proj, a, rows, lengths, size, T, d);
      k.attentionForward(a.attPad, s.att, s.qPad, s.kPad, s.vPad, lengths, size, T, heads, d);
      k.gather(s.attOut, a.attPad, a.padIndex, rows, d);
      this.linear(s.r, s.attOut, w.wo, w.bo, rows, d, d);
      for (let i = 0; i < n; i++) s.r[i] += s.qIn[i];
      k.layerNormForward(s.fIn, s.ln2Mean, s.ln2Rstd, s.r, w.ln2Gamma, w.ln2Beta, rows, d, LN_EPS);
      this.linear(s.h1, s.fIn, w.w1, w.b1, rows, d, f);
      if (this.config.activation === 'relu') k.reluForward(s.act, s.h1, rows * f);
      else k.geluForward(s.act, s.h1, rows * f);
      this.dropoutForward(s.actDrop, s.actMask, s.act, rows * f, dropout, siteSeed(dropoutSeed, 1 + 2 * l));
      this.linear(s.h2, s.actDrop, w.w2, w.b2, rows, f, d);
      this.dropoutForward(s.out, s.outMask, s.h2, n, dropout, siteSeed(dropoutSeed, 2 + 2 * l));
      for (let i = 0; i < n; i++) s.out[i] += s.fIn[i];
      x = s.out;
    }
    return rows;
  }

  /** Final layer norm over the selected rows (a.headRows[0..count)) of the last block's output into a.headOut. */
  private forwardHead(a: Activations, count: number): void {
    const d = this.config.d;
    const last = a.blocks[this.config.blocks - 1].out;
    this.kernels.gather(a.headIn, last, a.headRows, count, d);
    const p = this.params;
    this.kernels.layerNormForward(
      a.headOut,
      a.headMean,
      a.headRstd,
      a.headIn,
      p.finalGamma,
      p.finalBeta,
      count,
      d,
      LN_EPS,
    );
  }

  /** out (rows x outDim) = x (rows x inDim) W (inDim x outDim) + bias. */
  private linear(
    out: Float32Array,
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array,
    rows: number,
    inDim: number,
    outDim: number,
  ): void {
    for (let r = 0; r < rows; r++) out.set(bias, r * outDim);
    this.kernels.matmul(out, x, w, rows, outDim, inDim, false, false, true);
  }

  private dropoutForward(
    out: Float32Array,
    mask: Uint8Array,
    x: Float32Array,
    n: number,
    p: number,
    seed: number,
  ): void {
    if (p > 0) this.kernels.dropoutForward(out, mask, x, n, p, seed);
    else out.set(x.subarray(0, n));
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Training

  /**
   * Forward and backward over one batch: the mean next-item cross-entropy over all real positions (full softmax
   * over items 1..numItems). Gradients are written (not accumulated) into `grads` and `items.grad`.
   * dropoutSeed selects the dropout masks (the trainer derives it from the seed and step); with training = false
   * no dropout is applied.
   */
  forwardBackward(batch: Batch, training = true, dropoutSeed = 0): number {
    const { size, T, inputs, targets, lengths } = batch;
    const k = this.kernels;
    const { d, ffWidth: f, heads } = this.config;
    const numItems = this.items.numItems;
    checkBatch(batch, numItems, this.config.maxLength);
    const dropSeed = training ? siteSeed(dropoutSeed, 1000) : undefined;
    const sampled = this.config.loss === 'sampled' || this.config.loss === 'gbce';
    let step: SampledStep | null = null;
    if (sampled) {
      step = this.sampledStep(batch, siteSeed(dropoutSeed, 2000));
      this.items.gatherRows(step.sparse.rows, step.sparse.count, step.table, k, dropSeed);
      // E itself is not used (nor kept current) by sampled steps: it is rebuilt before inference.
      this.itemsStale = true;
    } else {
      // A delta-dropout mask leaves E in its training form: rebuild it before inference.
      this.itemsStale = this.items.refresh(k, dropSeed);
    }
    this.tables = null; // a training step changes the parameters
    const dropout = training ? this.config.dropout : 0;
    const a = this.activations(size, T, sumLengths(lengths, size));
    const rows = this.forwardBody(a, inputs, lengths, size, T, training, dropoutSeed, step);
    if (rows === 0) throw new Error('forwardBackward: the batch has no real positions');
    const n = rows * d;
    if (!this.actGrads || this.actGrads.padded < a.padded || this.actGrads.packed < a.packed) {
      this.actGrads = new ActivationGrads(this.config, a.padded, a.packed);
    }
    const ga = this.actGrads;

    // Every real position is scored against its next item.
    for (let r = 0; r < rows; r++) {
      a.headRows[r] = r;
      a.headTargets[r] = targets[a.padIndex[r]];
    }
    this.forwardHead(a, rows);

    const p = this.params;
    const g = this.grads;
    g.flat.fill(0);
    let dE: Float32Array;
    let loss: number;
    if (step) {
      dE = step.sparse.grad;
      dE.fill(0, 0, step.sparse.count * d);
      loss = this.sampledHead(step, a, rows, ga.dHeadOut) / rows;
    } else {
      dE = this.items.zeroGrad();
      loss =
        k.softmaxCrossEntropy(
          a.headOut,
          this.items.matrix,
          a.headTargets,
          rows,
          d,
          numItems + 1,
          1 / rows,
          ga.dHeadOut,
          dE,
        ) / rows;
    }

    // Final layer norm (its rows are the packed rows in order).
    let dOut = ga.dOut;
    let dX = ga.dX;
    dOut.fill(0, 0, n);
    k.layerNormBackward(
      dOut,
      g.finalGamma,
      g.finalBeta,
      ga.dHeadOut,
      a.headIn,
      a.headMean,
      a.headRstd,
      p.finalGamma,
      rows,
      d,
    );

    for (let l = this.config.blocks - 1; l >= 0; l--) {
      const w = p.blocks[l];
      const gw = g.blocks[l];
      const s = a.blocks[l];
      const x = l === 0 ? a.x0 : a.blocks[l - 1].out;
      // out = fIn + dropout(h2)
      this.dropoutBackward(ga.dH2, dOut, s.outMask, n, dropout);
      // h2 = actDrop W2 + b2
      this.linearBackward(ga.dActDrop, gw.w2, gw.b2, ga.dH2, s.actDrop, w.w2, rows, f, d, false);
      // actDrop = dropout(act(h1))
      this.dropoutBackward(ga.dActDrop, ga.dActDrop, s.actMask, rows * f, dropout);
      ga.dH1.fill(0, 0, rows * f);
      if (this.config.activation === 'relu') k.reluBackward(ga.dH1, ga.dActDrop, s.h1, rows * f);
      else k.geluBackward(ga.dH1, ga.dActDrop, s.h1, rows * f);
      // h1 = fIn W1 + b1; dOut becomes dL/dfIn (the residual path plus the FFN path).
      this.linearBackward(dOut, gw.w1, gw.b1, ga.dH1, s.fIn, w.w1, rows, d, f, true);
      // fIn = LN2(r)
      ga.dR.fill(0, 0, n);
      k.layerNormBackward(
        ga.dR,
        gw.ln2Gamma,
        gw.ln2Beta,
        dOut,
        s.r,
        s.ln2Mean,
        s.ln2Rstd,
        w.ln2Gamma,
        rows,
        d,
      );
      // r = qIn + attOut Wo + bo; dR keeps accumulating dL/dqIn.
      this.linearBackward(ga.dAttOut, gw.wo, gw.bo, ga.dR, s.attOut, w.wo, rows, d, d, false);
      toPadded(ga.dAttPad, ga.dAttOut, a, rows, lengths, size, T, d);
      k.attentionBackward(
        ga.dQPad,
        ga.dKPad,
        ga.dVPad,
        ga.dAttPad,
        s.att,
        s.qPad,
        s.kPad,
        s.vPad,
        lengths,
        size,
        T,
        heads,
        d,
      );
      k.gather(ga.dProj, ga.dQPad, a.padIndex, rows, d);
      this.linearBackward(ga.dR, gw.wq, gw.bq, ga.dProj, s.qIn, w.wq, rows, d, d, true);
      k.gather(ga.dProj, ga.dKPad, a.padIndex, rows, d);
      this.linearBackward(dX, gw.wk, gw.bk, ga.dProj, x, w.wk, rows, d, d, false);
      k.gather(ga.dProj, ga.dVPad, a.padIndex, rows, d);
      this.linearBackward(dX, gw.wv, gw.bv, ga.dProj, x, w.wv, rows, d, d, true);
      // qIn = LN1(x)
      k.layerNormBackward(dX, gw.ln1Gamma, gw.ln1Beta, ga.dR, x, s.ln1Mean, s.ln1Rstd, w.ln1Gamma, rows, d);
      const tmp = dOut;
      dOut = dX;
      dX = tmp;
    }

    // x0 = dropout(E[item] + P[position])
    this.dropoutBackward(dOut, dOut, a.embMask, n, dropout);
    for (let r = 0; r < rows; r++) {
      const o = r * d;
      const po = a.posIndex[r] * d;
      for (let j = 0; j < d; j++) g.positions[po + j] += dOut[o + j];
    }
    k.scatterAdd(dE, dOut, a.packedItems, rows, d);
    if (step) this.items.backwardRows(step.sparse.rows, step.sparse.count, dE, k);
    else this.items.backward(k);
    return loss;
  }

  /**
   * Sampled losses: draws the batch's negatives and collects every item row the step touches (inputs, targets,
   * negatives) into the compact table's slots. Cost: the batch and k, never the catalog.
   */
  private sampledStep(batch: Batch, seed: number): SampledStep {
    const c = this.config;
    const numItems = this.items.numItems;
    const k = c.negatives ?? 256;
    this.lazySparseRows();
    const s = this.sampled!;
    s.clear();
    const perSequence = c.negativesPer === 'sequence';
    s.setNegatives(perSequence ? batch.size : 1, k, c.d);
    if (perSequence) {
      // Packed positions are in sequence order (packRows): sequence b's are groupStarts[b] .. groupStarts[b + 1] - 1.
      s.groupStarts[0] = 0;
      for (let b = 0; b < batch.size; b++) s.groupStarts[b + 1] = s.groupStarts[b] + batch.lengths[b];
    }
    this.drawNegatives(s, numItems, seed);
    const n = batch.size * batch.T;
    const drawn = s.negatives.length;
    s.reserve(2 * n + drawn, c.d);
    for (let i = 0; i < n; i++) {
      if (batch.inputs[i] > 0) s.slot(batch.inputs[i]);
      if (batch.targets[i] > 0) s.slot(batch.targets[i]);
    }
    for (let j = 0; j < drawn; j++) s.negativeSlots[j] = s.slot(s.negatives[j]);
    return s;
  }

  /**
   * k negatives per group (with replacement) from items 1..numItems, each with probability q_j per draw (uniform: 1 /
   * numItems; popularity: proportional to frequency^samplerPower), and the logQ correction subtracted from their
   * logits:
   * - sampled softmax: log(k q_j), the log of j's expected count in the sample, so that the sum over the negatives
   *   estimates the sum over the whole catalog and the loss approaches the full softmax as k grows (uniform: the
   *   constant log(k / numItems));
   * - gBCE: log(numItems q_j), the correction relative to the uniform sampler (0 for uniform), because gBCE's beta
   *   is derived for uniform sampling and the logits are compared with 0, not with each other.
   */
  private drawNegatives(s: SampledStep, numItems: number, seed: number): void {
    const rng = new Random(seed);
    // Every group's draw is k independent draws, so the correction is the same per group as for one batch draw.
    const total = s.negatives.length;
    const k = total / s.groups;
    const base = this.config.loss === 'gbce' ? numItems : k;
    if ((this.config.sampler ?? 'uniform') === 'uniform') {
      for (let j = 0; j < total; j++) s.negatives[j] = 1 + rng.nextInt(numItems);
      s.correction.fill(Math.log(base / numItems));
      return;
    }
    if (!s.cdf) {
      const freq = this.itemFrequencies;
      if (!freq || freq.length !== numItems + 1) {
        throw new Error(
          `the popularity sampler needs item frequencies for items 1..${numItems} (setItemFrequencies; train() sets them)`,
        );
      }
      const power = this.config.samplerPower ?? 1;
      s.cdf = new Float64Array(numItems);
      let sum = 0;
      for (let i = 1; i <= numItems; i++) {
        sum += freq[i] > 0 ? Math.pow(freq[i], power) : 0;
        s.cdf[i - 1] = sum;
      }
      if (!(sum > 0)) throw new Error('the popularity sampler needs at least one item with frequency > 0');
    }
    const cdf = s.cdf;
    const weights = cdf[numItems - 1];
    for (let j = 0; j < total; j++) {
      const x = rng.nextFloat() * weights;
      // First i with cdf[i] > x; items of weight 0 are never drawn.
      let lo = 0;
      let hi = numItems - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (cdf[mid] > x) hi = mid;
        else lo = mid + 1;
      }
      const item = lo + 1;
      s.negatives[j] = item;
      const weight = cdf[lo] - (lo > 0 ? cdf[lo - 1] : 0);
      s.correction[j] = Math.log((base * weight) / weights);
    }
  }

  /**
   * The sampled output layer: positives and negatives gathered from the compact table, the kernel's loss, and their
   * gradients scattered into the compact gradient. Writes dHeadOut; returns the summed loss.
   */
  private sampledHead(s: SampledStep, a: Activations, rows: number, dHeadOut: Float32Array): number {
    const k = this.kernels;
    const c = this.config;
    const d = c.d;
    const drawn = s.negatives.length;
    const negatives = drawn / s.groups;
    s.reservePositions(rows, d);
    for (let r = 0; r < rows; r++) s.targetSlots[r] = s.slotOf[a.headTargets[r]];
    k.gather(s.positives, s.table, s.targetSlots, rows, d);
    k.gather(s.negativeRows, s.table, s.negativeSlots, drawn, d);
    const gbce = c.loss === 'gbce';
    const beta = gbce ? gbceBeta(negatives, this.items.numItems, c.gbceT ?? 0.75) : 1;
    const bias = this.params.outputBias;
    const dBias = this.grads.outputBias ?? s.dBias;
    let loss: number;
    if (c.negativesPer === 'sequence') {
      if (s.groupStarts[s.groups] !== rows)
        throw new Error('sampledHead: sequence offsets do not match the positions');
      loss = k.sampledLossGrouped(
        a.headOut,
        s.positives,
        s.negativeRows,
        a.headTargets,
        s.negatives,
        s.correction,
        s.groupStarts,
        s.groups,
        d,
        negatives,
        gbce,
        beta,
        bias ? bias[0] : 0,
        1 / rows,
        dHeadOut,
        s.dPositives,
        s.dNegatives,
        dBias,
      );
    } else {
      loss = k.sampledLoss(
        a.headOut,
        s.positives,
        s.negativeRows,
        a.headTargets,
        s.negatives,
        s.correction,
        rows,
        d,
        negatives,
        gbce,
        beta,
        bias ? bias[0] : 0,
        1 / rows,
        dHeadOut,
        s.dPositives,
        s.dNegatives,
        dBias,
      );
    }
    const dE = s.sparse.grad;
    k.scatterAdd(dE, s.dPositives, s.targetSlots, rows, d);
    k.scatterAdd(dE, s.dNegatives, s.negativeSlots, drawn, d);
    return loss;
  }

  /**
   * Training frequency of every item (index 0 unused, length numItems + 1), for the popularity sampler; train()
   * counts them from the training sequences.
   */
  setItemFrequencies(frequencies: ArrayLike<number>): void {
    if (frequencies.length !== this.items.numItems + 1) {
      throw new Error(
        `setItemFrequencies: ${frequencies.length} values, expected numItems + 1 = ${this.items.numItems + 1}`,
      );
    }
    this.itemFrequencies = Float64Array.from(frequencies);
    if (this.sampled) this.sampled.cdf = null;
  }

  /**
   * Given dY (rows x outDim) of y = x W + b: dW += x^T dY, dB += colsum(dY), and dX = dY W^T (or dX += when
   * accumulate).
   */
  private linearBackward(
    dX: Float32Array,
    dW: Float32Array,
    dB: Float32Array,
    dY: Float32Array,
    x: Float32Array,
    w: Float32Array,
    rows: number,
    inDim: number,
    outDim: number,
    accumulate: boolean,
  ): void {
    const k = this.kernels;
    k.matmul(dW, x, dY, inDim, outDim, rows, true, false, true);
    k.matmul(dB, this.actGrads!.ones, dY, 1, outDim, rows, false, false, true);
    k.matmul(dX, dY, w, rows, inDim, outDim, false, true, accumulate);
  }

  private dropoutBackward(
    dx: Float32Array,
    dOut: Float32Array,
    mask: Uint8Array,
    n: number,
    p: number,
  ): void {
    if (p > 0) this.kernels.dropoutBackward(dx, dOut, mask, n, p);
    else if (dx !== dOut) dx.set(dOut.subarray(0, n));
  }

  /** The optimizer's view: the dense parameters and, unless frozen, the item table (E or the delta D). */
  paramGroups(): ParamGroup[] {
    const groups: ParamGroup[] = [
      {
        name: 'dense',
        param: this.params.flat,
        grad: this.grads.flat,
        rowWidth: this.params.flat.length,
        firstRow: 0,
      },
    ];
    groups.push(...this.items.paramGroups(this.lazySparseRows()));
    return groups;
  }

  /** Sampled losses: the compact rows the optimizer updates lazily (the step state, created here if needed). */
  private lazySparseRows(): SparseRows | undefined {
    const c = this.config;
    if (c.loss !== 'sampled' && c.loss !== 'gbce') return undefined;
    const numItems = this.items.numItems;
    if (!this.sampled || this.sampled.slotOf.length !== numItems + 1) {
      this.sampled = new SampledStep(numItems, this.sampled?.sparse);
    }
    return this.sampled.sparse;
  }

  /** Call after changing parameters in place (optimizer steps, weight restores): E is rebuilt before next use. */
  parametersChanged(): void {
    this.itemsStale = true;
    this.tables = null;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Inference
  //
  // Only what the user state needs is computed: every block but the last runs over all real positions, the last
  // block computes keys and values at all positions but everything else (layer norm, query, attention, output
  // projection, FFN) only at the last position. The first block's keys and values are linear in the input
  // embedding (K from x, not from LN1(x)), so they come from per-item tables E Wk, E Wv and per-position tables
  // P Wk + bk, P Wv + bv, built once (while they fit in SASRec.kvTableBytes) and extended when items are appended.
  // Per position, a forward then costs 12 d^2 multiply-adds instead of 24 d^2 (d = ffWidth, two blocks). Position
  // rows are added to the whole padded batch in one native call, and nothing is allocated per sequence.
  // encodeAllPositions is the plain forward (every layer at every position), the oracle of this path.

  /** User states: the final hidden state at the last position of each input (inputs.length x d), no dropout. */
  encode(inputs: readonly Int32Array[], out: Float32Array): void {
    const { offsets, items } = this.packInputs(inputs);
    this.encodePacked(offsets, items, inputs.length, out);
  }

  /**
   * encode over packed histories, without a per-sequence array: sequence r is items[offsets[r] .. offsets[r+1]),
   * most recent last (longer ones are read from their last maxLength known items).
   */
  encodePacked(offsets: Int32Array, items: Int32Array, count: number, out: Float32Array): void {
    const d = this.config.d;
    if (out.length < count * d) throw new Error(`encode: out has ${out.length} values, need ${count * d}`);
    this.refreshItems();
    for (let start = 0; start < count; start += INFERENCE_CHUNK) {
      const chunk = Math.min(INFERENCE_CHUNK, count - start);
      const a = this.encodeChunk(offsets, items, start, chunk, false);
      out.set(a.headOut.subarray(0, chunk * d), start * d);
    }
  }

  /** encode through the full forward (every layer at every position, no tables): the reference of encode. */
  encodeAllPositions(inputs: readonly Int32Array[], out: Float32Array): void {
    const d = this.config.d;
    const { offsets, items } = this.packInputs(inputs);
    this.refreshItems();
    for (let start = 0; start < inputs.length; start += INFERENCE_CHUNK) {
      const chunk = Math.min(INFERENCE_CHUNK, inputs.length - start);
      const a = this.encodeChunk(offsets, items, start, chunk, true);
      out.set(a.headOut.subarray(0, chunk * d), start * d);
    }
  }

  /** Recommender: scores items 0..numItems for each input; column 0 (padding) is -Infinity. */
  score(inputs: readonly Int32Array[], out: Float32Array): void {
    const d = this.config.d;
    const cols = this.items.numItems + 1;
    if (out.length < inputs.length * cols) {
      throw new Error(
        `score: out has ${out.length} values, need inputs.length x (numItems + 1) = ${inputs.length * cols}`,
      );
    }
    const { offsets, items } = this.packInputs(inputs);
    this.refreshItems();
    for (let start = 0; start < inputs.length; start += INFERENCE_CHUNK) {
      const count = Math.min(INFERENCE_CHUNK, inputs.length - start);
      const a = this.encodeChunk(offsets, items, start, count, false);
      const view = out.subarray(start * cols, (start + count) * cols);
      this.kernels.matmul(view, a.headOut, this.items.matrix, count, cols, d, false, true, false);
      for (let r = 0; r < count; r++) view[r * cols] = -Infinity;
    }
  }

  /** Copies inputs into one reused packed buffer (their last maxLength items are all that is read). */
  private packInputs(inputs: readonly Int32Array[]): { offsets: Int32Array; items: Int32Array } {
    if (this.packedOffsets.length < inputs.length + 1) this.packedOffsets = new Int32Array(inputs.length + 1);
    const offsets = this.packedOffsets;
    let total = 0;
    for (const seq of inputs) total += seq.length;
    if (this.packedItems.length < total) this.packedItems = new Int32Array(total);
    for (let r = 0; r < inputs.length; r++) {
      this.packedItems.set(inputs[r], offsets[r]);
      offsets[r + 1] = offsets[r] + inputs[r].length;
    }
    return { offsets, items: this.packedItems };
  }

  /**
   * Left-pads sequences first..first+count) (their last maxLength known items), runs the network without dropout
   * and leaves the user states in a.headOut. An empty input gets the state of a zero row.
   */
  private encodeChunk(
    offsets: Int32Array,
    items: Int32Array,
    first: number,
    count: number,
    allPositions: boolean,
  ): Activations {
    const { maxLength, d } = this.config;
    const numItems = this.items.numItems;
    if (this.inferenceLengths.length < count) this.inferenceLengths = new Int32Array(count);
    const lengths = this.inferenceLengths;
    let T = 1;
    for (let b = 0; b < count; b++) {
      let known = 0;
      for (let i = offsets[first + b + 1] - 1; i >= offsets[first + b] && known < maxLength; i--) {
        const item = items[i];
        if (!Number.isInteger(item) || item < 0) {
          throw new Error(
            `score: input ${first + b} has invalid item index ${item} at position ${i - offsets[first + b]}`,
          );
        }
        if (item > 0 && item <= numItems) known++;
      }
      lengths[b] = known;
      if (known > T) T = known;
    }
    if (this.inferenceInputs.length < count * T) this.inferenceInputs = new Int32Array(count * T);
    const padded = this.inferenceInputs;
    padded.fill(0, 0, count * T);
    for (let b = 0; b < count; b++) {
      let t = T - 1;
      for (let i = offsets[first + b + 1] - 1; i >= offsets[first + b] && t >= T - lengths[b]; i--) {
        const item = items[i];
        if (item > 0 && item <= numItems) padded[b * T + t--] = item;
      }
    }
    const a = this.activations(count, T, sumLengths(lengths, count));
    if (!allPositions) {
      this.forwardLastPositions(a, padded, lengths, count, T);
      return a;
    }
    const rows = this.forwardBody(a, padded, lengths, count, T, false, 0);
    a.blocks[this.config.blocks - 1].out.fill(0, rows * d, (rows + 1) * d);
    let end = 0;
    for (let b = 0; b < count; b++) {
      end += lengths[b];
      a.headRows[b] = lengths[b] > 0 ? end - 1 : rows;
    }
    this.forwardHead(a, count);
    return a;
  }

  /** Inference forward (see the section comment): the user state of each of the `size` sequences in a.headOut. */
  private forwardLastPositions(
    a: Activations,
    inputs: Int32Array,
    lengths: Int32Array,
    size: number,
    T: number,
  ): void {
    const k = this.kernels;
    const { d, heads, blocks } = this.config;
    const p = this.params;
    const padded = size * T;
    const rows = packRows(a, inputs, lengths, size, T);
    const tables = this.inferenceTables();
    // x0 = E[item] + P[position] in the padded layout (padding rows: E row 0 is zero), then packed.
    const x0Padded = a.blocks[0].qPad; // free until block 0's queries
    k.gather(x0Padded, this.items.matrix, inputs, padded, d);
    this.addPositionBlock(x0Padded, tables.positions, size, T);
    k.gather(a.x0, x0Padded, a.padIndex, rows, d);

    let x = a.x0;
    for (let l = 0; l < blocks; l++) {
      const w = p.blocks[l];
      const s = a.blocks[l];
      // Keys and values at every position, in the padded layout (attention masks the padding rows).
      if (l === 0 && tables.itemK) {
        k.gather(s.kPad, tables.itemK, inputs, padded, d);
        this.addPositionBlock(s.kPad, tables.positionK, size, T);
        k.gather(s.vPad, tables.itemV!, inputs, padded, d);
        this.addPositionBlock(s.vPad, tables.positionV, size, T);
      } else {
        this.linear(a.proj, x, w.wk, w.bk, rows, d, d);
        toPadded(s.kPad, a.proj, a, rows, lengths, size, T, d);
        this.linear(a.proj, x, w.wv, w.bv, rows, d, d);
        toPadded(s.vPad, a.proj, a, rows, lengths, size, T, d);
      }
      if (l === blocks - 1) {
        // Only each sequence's last row from here on (an empty sequence's row is zeroed below).
        let end = 0;
        for (let b = 0; b < size; b++) {
          end += lengths[b];
          a.headRows[b] = lengths[b] > 0 ? end - 1 : 0;
        }
        k.gather(a.headIn, x, a.headRows, size, d);
        k.layerNormForward(s.qIn, s.ln1Mean, s.ln1Rstd, a.headIn, w.ln1Gamma, w.ln1Beta, size, d, LN_EPS);
        this.linear(a.proj, s.qIn, w.wq, w.bq, size, d, d);
        this.lastQueryAttention(s.attOut, a.proj, s.kPad, s.vPad, lengths, size, T);
        this.blockTail(s, w, size);
        for (let b = 0; b < size; b++) if (lengths[b] === 0) s.out.fill(0, b * d, (b + 1) * d);
        k.layerNormForward(
          a.headOut,
          a.headMean,
          a.headRstd,
          s.out,
          p.finalGamma,
          p.finalBeta,
          size,
          d,
          LN_EPS,
        );
        return;
      }
      k.layerNormForward(s.qIn, s.ln1Mean, s.ln1Rstd, x, w.ln1Gamma, w.ln1Beta, rows, d, LN_EPS);
      this.linear(a.proj, s.qIn, w.wq, w.bq, rows, d, d);
      toPadded(s.qPad, a.proj, a, rows, lengths, size, T, d);
      k.attentionForward(a.attPad, s.att, s.qPad, s.kPad, s.vPad, lengths, size, T, heads, d);
      k.gather(s.attOut, a.attPad, a.padIndex, rows, d);
      this.blockTail(s, w, rows);
      x = s.out;
    }
  }

  /**
   * Adds the per-position rows to a padded size x T batch: with positions counted from the end and stored
   * reversed (row i = position maxLength - 1 - i), every sequence needs the same block of the last T rows, so the
   * whole batch is one rank-1 product: out (size x T*d) += ones (size x 1) block (1 x T*d).
   */
  private addPositionBlock(out: Float32Array, reversed: Float32Array, size: number, T: number): void {
    const { d, maxLength } = this.config;
    if (this.onesColumn.length < size) this.onesColumn = new Float32Array(size).fill(1);
    const block = reversed.subarray((maxLength - T) * d, maxLength * d);
    this.kernels.matmul(out, this.onesColumn, block, size, T * d, 1, false, false, true);
  }

  /** The rest of a block after attention, at `rows` rows: r = qIn + attOut Wo + bo, out = LN2(r) + FFN(LN2(r)). */
  private blockTail(s: BlockActivations, w: BlockTensors, rows: number): void {
    const k = this.kernels;
    const { d, ffWidth: f } = this.config;
    this.residualLinear(s.r, s.qIn, s.attOut, w.wo, w.bo, rows, d, d);
    k.layerNormForward(s.fIn, s.ln2Mean, s.ln2Rstd, s.r, w.ln2Gamma, w.ln2Beta, rows, d, LN_EPS);
    this.linear(s.h1, s.fIn, w.w1, w.b1, rows, d, f);
    if (this.config.activation === 'relu') k.reluForward(s.act, s.h1, rows * f);
    else k.geluForward(s.act, s.h1, rows * f);
    this.residualLinear(s.out, s.fIn, s.act, w.w2, w.b2, rows, f, d);
  }

  /**
   * out = residual + x W + bias (rows x outDim), all in native calls: a copy, the bias as a rank-1 product with a
   * column of ones, then the product accumulated.
   */
  private residualLinear(
    out: Float32Array,
    residual: Float32Array,
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array,
    rows: number,
    inDim: number,
    outDim: number,
  ): void {
    if (this.onesColumn.length < rows) this.onesColumn = new Float32Array(rows).fill(1);
    out.set(residual.subarray(0, rows * outDim));
    this.kernels.matmul(out, this.onesColumn, bias, rows, outDim, 1, false, false, true);
    this.kernels.matmul(out, x, w, rows, outDim, inDim, false, false, true);
  }

  /**
   * Causal attention of each sequence's last position only: query row b of q against the keys and values of that
   * sequence's real positions in the padded size x T layout. Same arithmetic as attentionForward at the last query.
   */
  private lastQueryAttention(
    out: Float32Array,
    q: Float32Array,
    keys: Float32Array,
    vals: Float32Array,
    lengths: Int32Array,
    size: number,
    T: number,
  ): void {
    const { d, heads, maxLength } = this.config;
    const dh = d / heads;
    const scale = 1 / Math.sqrt(dh);
    if (this.attentionScratch.length < maxLength + dh)
      this.attentionScratch = new Float64Array(maxLength + dh);
    const weights = this.attentionScratch;
    for (let b = 0; b < size; b++) {
      const len = lengths[b];
      const first = b * T + T - len; // padded row of the sequence's first real position
      for (let h = 0; h < heads; h++) {
        const qo = b * d + h * dh;
        let max = -Infinity;
        for (let j = 0; j < len; j++) {
          const ko = (first + j) * d + h * dh;
          let s = 0;
          for (let p = 0; p < dh; p++) s += q[qo + p] * keys[ko + p];
          s *= scale;
          weights[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j < len; j++) sum += weights[j] = Math.exp(weights[j] - max);
        const acc = maxLength; // accumulator of the weighted values, after the weights
        weights.fill(0, acc, acc + dh);
        for (let j = 0; j < len; j++) {
          const pj = weights[j] / sum;
          const vo = (first + j) * d + h * dh;
          for (let p = 0; p < dh; p++) weights[acc + p] += pj * vals[vo + p];
        }
        for (let p = 0; p < dh; p++) out[qo + p] = weights[acc + p];
      }
    }
  }

  /**
   * The inference tables (see the section comment): reversed position rows always; the first block's per-item key
   * and value tables while they fit in SASRec.kvTableBytes (null beyond: keys and values are then computed per position).
   */
  private inferenceTables(): InferenceTables {
    const { d, maxLength } = this.config;
    const rows = this.items.numItems + 1;
    const w = this.params.blocks[0];
    let t = this.tables;
    if (!t) {
      const positions = new Float32Array(maxLength * d);
      const source = this.params.positions;
      for (let i = 0; i < maxLength; i++)
        positions.set(source.subarray((maxLength - 1 - i) * d, (maxLength - i) * d), i * d);
      t = {
        rows: 0,
        itemK: null,
        itemV: null,
        positions,
        positionK: new Float32Array(maxLength * d),
        positionV: new Float32Array(maxLength * d),
      };
      this.linear(t.positionK, positions, w.wk, w.bk, maxLength, d, d);
      this.linear(t.positionV, positions, w.wv, w.bv, maxLength, d, d);
      this.tables = t;
    }
    if (rows * d * 2 * 4 > SASRec.kvTableBytes) {
      t.itemK = t.itemV = null;
      t.rows = 0;
    } else if (t.rows < rows) {
      // Rows t.rows.. are new (all of them at first, the appended ones later); the tables grow by capacity.
      t.itemK = t.itemK ? extend(t.itemK, rows * d) : withRoom(Float32Array, rows * d, d);
      t.itemV = t.itemV ? extend(t.itemV, rows * d) : withRoom(Float32Array, rows * d, d);
      const e = this.items.matrix.subarray(t.rows * d, rows * d);
      const fresh = rows - t.rows;
      this.kernels.matmul(t.itemK.subarray(t.rows * d), e, w.wk, fresh, d, d, false, false, false);
      this.kernels.matmul(t.itemV.subarray(t.rows * d), e, w.wv, fresh, d, d, false, false, false);
      t.rows = rows;
    }
    return t;
  }

  private refreshItems(): void {
    if (this.itemsStale) {
      this.items.refresh(this.kernels);
      this.itemsStale = false;
      this.tables = null;
    }
  }

  /** (numItems + 1) x d item matrix E (content + delta, or the learned table); row 0 zeros. A live view. */
  itemEmbeddings(): Float32Array {
    this.refreshItems();
    return this.items.matrix;
  }

  /**
   * Appends `count` new (cold) items from their content vectors (count x d; count x contentDim for content-map,
   * which maps them with its trained map) with zero delta. content-* only.
   */
  appendItems(content: Float32Array, count: number): void {
    this.refreshItems();
    const first = this.items.numItems + 1;
    this.items.append(content, count, this.kernels);
    this.config.numItems = this.items.numItems;
    this.borrowFor(Int32Array.from({ length: count }, (_, i) => first + i));
    this.itemsStale = false;
  }

  /** Re-encodes existing rows from new content vectors (zero delta), like appendItems but in place. content-*. */
  replaceItems(rows: Int32Array, content: Float32Array): void {
    this.refreshItems();
    this.items.replace(rows, content, this.kernels);
    this.borrowFor(rows);
    this.itemsStale = false;
    this.refreshTableRows(rows);
  }

  /**
   * Turns borrowed deltas on (k > 0; config.borrowDeltas, saved with the model) with rows 1..warmItems as the ones
   * borrowed from, and gives rows warmItems+1..numItems (the cold items already in the model) their borrowed delta.
   * k = 0 turns it off and zeroes those rows' deltas again (what appendItems gives without borrowing).
   */
  setBorrowDeltas(k: number, warmItems: number): void {
    if (!(Number.isInteger(k) && k >= 0))
      throw new Error(`borrowDeltas: k must be an integer >= 0, got ${k}`);
    if (!(Number.isInteger(warmItems) && warmItems >= 0 && warmItems <= this.numItems)) {
      throw new Error(`borrowDeltas: warmItems ${warmItems} is outside 0..${this.numItems}`);
    }
    this.refreshItems();
    const cold = Int32Array.from({ length: this.numItems - warmItems }, (_, i) => warmItems + 1 + i);
    if (k === 0) {
      delete this.config.borrowDeltas;
      delete this.config.warmItems;
      const { strategy, d } = this.config;
      if (strategy === 'content-delta' || strategy === 'content-map') {
        this.items.weight!.fill(0, (warmItems + 1) * d);
        this.items.refresh(this.kernels);
      }
    } else {
      this.config.borrowDeltas = k;
      this.config.warmItems = warmItems;
      this.borrowFor(cold);
    }
    this.tables = null;
  }

  /** With borrowed deltas on, sets the given rows' deltas from their warm neighbours and rebuilds their rows of E. */
  private borrowFor(rows: Int32Array): void {
    const k = this.config.borrowDeltas ?? 0;
    if (k === 0 || rows.length === 0) return;
    this.items.borrowDeltas(rows, this.config.warmItems ?? 0, k, this.kernels);
    this.items.refreshRowList(rows, this.kernels);
  }

  /** Recomputes the first block's per-item key and value rows of replaced items (the tables are keyed by row). */
  private refreshTableRows(rows: Int32Array): void {
    const t = this.tables;
    if (!t?.itemK || !t.itemV) return;
    const { d } = this.config;
    const w = this.params.blocks[0];
    for (const row of rows) {
      if (row >= t.rows) continue; // not in the tables yet: inferenceTables adds it
      const e = this.items.matrix.subarray(row * d, (row + 1) * d);
      this.kernels.matmul(t.itemK.subarray(row * d, (row + 1) * d), e, w.wk, 1, d, d, false, false, false);
      this.kernels.matmul(t.itemV.subarray(row * d, (row + 1) * d), e, w.wv, 1, d, d, false, false, false);
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Persistence

  /** Every tensor needed to restore the model, including frozen content (live views, not copies). */
  parameters(): Tensor[] {
    return [...this.items.tensors(), ...this.params.list];
  }

  /**
   * Rebuilds a model from `parameters()` tensors; numItems is taken from the item tensors (appended items count).
   * Every tensor is copied into the model once, except with `own: true`: the model then keeps the item tables
   * ('items', 'content', 'delta') themselves as its tables, without a copy, and the caller gives them up (must not
   * use or share them afterwards). loadModel does so with the tables it has just read (1 GB at 1M items, d = 128);
   * it reads them into buffers with spare room (`withRoom`) so the first appended items still write in place.
   */
  static fromParameters(
    config: SASRecConfig,
    tensors: Map<string, Float32Array>,
    kernels: Kernels = defaultKernels,
    options: { own?: boolean } = {},
  ): SASRec {
    const itemName = config.strategy === 'id' || config.strategy === 'content-init' ? 'items' : 'content';
    const itemTable = tensors.get(itemName);
    if (!itemTable)
      throw new Error(`fromParameters: missing tensor '${itemName}' for strategy '${config.strategy}'`);
    const width = config.strategy === 'content-map' ? (config.contentDim ?? 0) : config.d;
    if (!(width >= 1)) throw new Error(`fromParameters: content-map config has no contentDim`);
    if (itemTable.length % width !== 0 || itemTable.length < width) {
      throw new Error(
        `fromParameters: '${itemName}' has ${itemTable.length} values, not a multiple of its row width ${width}`,
      );
    }
    const numItems = itemTable.length / width - 1;
    let model: SASRec;
    try {
      model = new SASRec(
        { ...config, numItems },
        config.strategy === 'id' ? undefined : itemTable,
        kernels,
        { tensors, own: options.own ?? false }, // the item tables (items.tensors()) are taken here
      );
    } catch (error) {
      throw new Error(`fromParameters: ${(error as Error).message}`, { cause: error });
    }
    for (const t of model.params.list) {
      const src = tensors.get(t.name);
      if (!src) throw new Error(`fromParameters: missing tensor '${t.name}'`);
      if (src.length !== t.data.length) {
        throw new Error(
          `fromParameters: tensor '${t.name}' has ${src.length} values, expected ${t.data.length} (shape ${t.shape.join(' x ')})`,
        );
      }
      t.data.set(src);
    }
    model.items.refresh(kernels);
    return model;
  }
}

/** Distinct dropout seeds per site (embedding, and two per block) from one per-step seed. */
function siteSeed(seed: number, site: number): number {
  return hash32((seed ^ Math.imul(site + 1, 0x9e3779b9)) >>> 0);
}

/** Packs the real positions of a left-padded size x T batch (see Activations); returns their number. */
function packRows(a: Activations, inputs: Int32Array, lengths: Int32Array, size: number, T: number): number {
  let rows = 0;
  for (let b = 0; b < size; b++) {
    for (let t = T - lengths[b]; t < T; t++) {
      a.padIndex[rows] = b * T + t;
      a.posIndex[rows] = T - 1 - t;
      a.packedItems[rows] = inputs[b * T + t];
      rows++;
    }
  }
  return rows;
}

/** x[r] += table[rowIndex[r]] for rows of width d. */
function addPositionRows(
  x: Float32Array,
  table: Float32Array,
  rowIndex: Int32Array,
  rows: number,
  d: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    const po = rowIndex[r] * d;
    for (let j = 0; j < d; j++) x[o + j] += table[po + j];
  }
}

function sumLengths(lengths: Int32Array, size: number): number {
  let total = 0;
  for (let b = 0; b < size; b++) total += lengths[b];
  return total;
}

/** Spreads packed rows into the padded size x T layout; padding rows are zeroed. */
function toPadded(
  padded: Float32Array,
  packed: Float32Array,
  a: Activations,
  rows: number,
  lengths: Int32Array,
  size: number,
  T: number,
  d: number,
): void {
  for (let b = 0; b < size; b++) {
    const pad = T - lengths[b];
    if (pad > 0) padded.fill(0, b * T * d, (b * T + pad) * d);
  }
  for (let r = 0; r < rows; r++) padded.set(packed.subarray(r * d, (r + 1) * d), a.padIndex[r] * d);
}

function checkConfig(c: SASRecConfig): void {
  const positiveInts: (keyof SASRecConfig)[] = ['numItems', 'd', 'blocks', 'heads', 'ffWidth', 'maxLength'];
  for (const key of positiveInts) {
    const v = c[key] as number;
    if (!Number.isInteger(v) || v < 1)
      throw new Error(`SASRec config: ${key} must be a positive integer (got ${v})`);
  }
  if (c.d % c.heads !== 0)
    throw new Error(`SASRec config: d = ${c.d} is not divisible by heads = ${c.heads}`);
  if (!(c.dropout >= 0 && c.dropout < 1))
    throw new Error(`SASRec config: dropout must be in [0, 1) (got ${c.dropout})`);
  if (c.activation !== 'relu' && c.activation !== 'gelu') {
    throw new Error(`SASRec config: activation must be 'relu' or 'gelu' (got ${String(c.activation)})`);
  }
  if ((c.strategy === 'content-delta' || c.strategy === 'content-map') && !(c.deltaMax > 0)) {
    throw new Error(`SASRec config: deltaMax must be > 0 for ${c.strategy} (got ${c.deltaMax})`);
  }
  if (c.borrowDeltas !== undefined && c.borrowDeltas !== 0) {
    if (c.strategy !== 'content-delta' && c.strategy !== 'content-map') {
      throw new Error(`SASRec config: borrowDeltas needs content-delta or content-map (got ${c.strategy})`);
    }
    if (!(Number.isInteger(c.borrowDeltas) && c.borrowDeltas >= 1) || !Number.isInteger(c.warmItems)) {
      throw new Error(
        `SASRec config: borrowDeltas must be a positive integer with an integer warmItems (got ${c.borrowDeltas}, ${c.warmItems})`,
      );
    }
  }
  if (c.loss !== undefined && !LOSS_KINDS.includes(c.loss)) {
    throw new Error(`SASRec config: loss must be one of ${LOSS_KINDS.join(', ')} (got '${String(c.loss)}')`);
  }
  if (c.negatives !== undefined && !(Number.isInteger(c.negatives) && c.negatives >= 1)) {
    throw new Error(`SASRec config: negatives must be a positive integer (got ${c.negatives})`);
  }
  if (c.sampler !== undefined && !SAMPLER_KINDS.includes(c.sampler)) {
    throw new Error(
      `SASRec config: sampler must be one of ${SAMPLER_KINDS.join(', ')} (got '${String(c.sampler)}')`,
    );
  }
  if (c.negativesPer !== undefined && !NEGATIVES_PER.includes(c.negativesPer)) {
    throw new Error(
      `SASRec config: negativesPer must be one of ${NEGATIVES_PER.join(', ')} (got '${String(c.negativesPer)}')`,
    );
  }
  if (c.samplerPower !== undefined && !(Number.isFinite(c.samplerPower) && c.samplerPower >= 0)) {
    throw new Error(`SASRec config: samplerPower must be a finite number >= 0 (got ${c.samplerPower})`);
  }
  if (c.gbceT !== undefined && !(c.gbceT >= 0 && c.gbceT <= 1)) {
    throw new Error(`SASRec config: gbceT must be in [0, 1] (got ${c.gbceT})`);
  }
  if (c.strategy === 'content-map' && !(Number.isInteger(c.contentDim) && c.contentDim! >= 1)) {
    throw new Error(`SASRec config: content-map needs contentDim, a positive integer (got ${c.contentDim})`);
  }
}

function checkBatch(batch: Batch, numItems: number, maxLength: number): void {
  const { size, T, inputs, targets, lengths } = batch;
  if (T < 1 || T > maxLength) throw new Error(`batch: T = ${T} must be in 1..maxLength = ${maxLength}`);
  if (inputs.length < size * T || targets.length < size * T || lengths.length < size) {
    throw new Error('batch: inputs/targets must hold size x T values and lengths size values');
  }
  for (let b = 0; b < size; b++) {
    const len = lengths[b];
    if (len < 0 || len > T) throw new Error(`batch: row ${b} length ${len} outside 0..${T}`);
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      const real = t >= T - len;
      const item = inputs[i];
      const target = targets[i];
      if (
        real ? item < 1 || item > numItems || target < 1 || target > numItems : item !== 0 || target !== 0
      ) {
        throw new Error(
          `batch: row ${b} position ${t}: input ${item}, target ${target} (real positions need items in 1..${numItems}, padding needs 0)`,
        );
      }
    }
  }
}
