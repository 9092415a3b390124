/**
 * Batched top-k scoring: user states (batch x d, from the model's encoder) against the whole item matrix in one
 * native call for the whole batch (`scoreTopK`: the matrix, kept in the panel layout of kernels/panels.ts, is
 * streamed once per batch and each request keeps its best candidates as they come; no batch x items score matrix
 * exists). Each request gets its top (k + its exclusions) and drops its excluded items from that list, which is
 * exact. From QUANTIZED_MIN_ITEMS items on (native kernels) the same answer comes from `scoreTopKQuantized`
 * instead: an int8 copy of the matrix (kernels/quantized.ts, a quarter of the bytes) is streamed with a proven
 * error bound per item and only the items that can reach the top k are scored again in fp32, so the result is
 * identical (same items, scores and order); the fp32 panels are then not kept (the rescore reads the model's
 * row-major matrix). With lexical fusion, which standardizes each request's scores over the whole catalog, the
 * full score rows are computed (one matmul against the transposed matrix) and the top-k selected per row: every
 * score is needed, so fused models always take the exact path. Histories are read in
 * place from the batch's packed arrays; every buffer is reused from batch to batch. Used by the service worker,
 * the inline service mode and batch scoring.
 */
import type { CsrMatrix } from '../content/sparse.js';
import { kernels } from '../kernels/index.js';
import { packPanelRows, packPanels, panelLength } from '../kernels/panels.js';
import { growQuantized, quantizedWithRoom, type QuantizedItems } from '../kernels/quantized.js';
import { fuseRow, type FusionWeights, type LexicalIndex } from '../model/fusion.js';
import { extend, withRoom } from '../util/growable.js';

/** The part of SASRec the service needs (see MODEL_API.md). */
export interface ScoringModel {
  readonly numItems: number;
  /** contentDim: width of appended content rows when it differs from d (content-map). */
  readonly config: { d: number; maxLength: number; contentDim?: number };
  /** User states of `count` packed histories (history r is items[offsets[r] .. offsets[r+1]), most recent last). */
  encodePacked(offsets: Int32Array, items: Int32Array, count: number, out: Float32Array): void;
  itemEmbeddings(): Float32Array;
  appendItems(content: Float32Array, count: number): void;
  /** Re-encodes existing rows (rows.length content vectors), as appendItems would have encoded them. */
  replaceItems(rows: Int32Array, content: Float32Array): void;
}

/**
 * Lexical fusion in the service (src/model/fusion.ts): scores are standardized per request over the catalog and
 * weight x TF-IDF cosine is added. New items get their sparse row from their text fields (empty without text).
 */
export interface ServingFusion {
  /** The fusion's weights (fusion.ts; numWarm: the items with trained deltas). */
  readonly weights: FusionWeights;
  readonly index: LexicalIndex;
  /** Sparse rows of new items from their text fields (an item without fields gets an empty row). */
  rowsFor(fields: readonly (Record<string, string> | undefined)[]): CsrMatrix;
}

/** A batch of requests in flat typed arrays (cheap to post to a worker). */
export interface ScoreBatch {
  count: number;
  inputOffsets: Int32Array; // count + 1; request r's history rows inputItems[inputOffsets[r] .. inputOffsets[r+1])
  inputItems: Int32Array;
  excludeOffsets: Int32Array; // count + 1
  excludeItems: Int32Array; // rows never returned for that request
  k: Int32Array; // count
  includeCold: Uint8Array; // count; 0 = only warm rows (1..numWarm)
  excludeSeen: Uint8Array; // count; 1 = the history's rows are never returned
}

/** Results: request r's top rows are indices[resultOffsets[r] .. resultOffsets[r+1]) (fewer than k when the catalog is small). */
export interface ScoreResult {
  resultOffsets: Int32Array;
  indices: Int32Array;
  scores: Float32Array;
}

/** Where one batch's time went, in milliseconds (topk: from the end of scoring to this request's top-k). */
export interface BatchTimes {
  encode: number;
  score: number;
  topk: number;
}

/** Receives request r's answer; the arrays are the caller's to keep, `times` is reused for the next request. */
export type AnswerCallback = (
  r: number,
  indices: Int32Array,
  scores: Float32Array,
  times: BatchTimes,
) => void;

/**
 * Catalogs from this many items on are scored with the int8 first pass when the native kernels are loaded (unless
 * the Scorer is told otherwise). It needed 2.4x less CPU per request than the fp32 path at batch 1 and as much at
 * batch 8 on Beauty (12,101 items), 3.4x and 2.8x less at 1M items (bench/scoring.ts, docs/latency.md), and it
 * replaces the fp32 panels (4d bytes per item) by d + 12 bytes; below this size either path takes microseconds.
 * The TypeScript reference of the int8 pass is slower than that of the exact path, so without the addon the exact
 * path is used.
 */
export const QUANTIZED_MIN_ITEMS = 1000;

/** Columns of the transposed item matrix are padded to a multiple of this (every SIMD width of the kernels). */
const COLUMN_ALIGN = 64;
/** Spare columns of the transposed matrix, as a fraction of the rows (refreshItems). */
const COLUMN_SLACK = 1 / 16;

export class Scorer {
  /** The item matrix in panels (scoreTopK); with fusion, transposed instead: d x columns (columns = rows rounded
   * up, zero padded), so that the matmul reads it in place rather than re-packing the n x d matrix on every call. */
  private items = new Float32Array(0);
  private columns = 0;
  /** The int8 copy of the item matrix (scoreTopKQuantized), or null on the exact fp32 path. */
  private quantized: QuantizedItems | null;
  /** Per request of the last batch on the quantized path: how many items were scored exactly (for benchmarks). */
  candidates = new Int32Array(0);
  /** 1 = the row may be returned (row 0, the padding, and retired rows are 0). */
  private active: Uint8Array;
  /** Per request in a batch: rows it may return (0 .. limit - 1). */
  private limits = new Int32Array(0);
  /** Per request in a batch: the length of its list (k plus its exclusions). */
  private widths = new Int32Array(0);
  /** Items excluded from the request being answered (reset after each request). */
  private excluded = new Uint8Array(0);
  private retired: number[] = [];
  private states = new Float32Array(0);
  private scores = new Float32Array(0);
  private topIndices = new Int32Array(0);
  private topScores = new Float32Array(0);
  private lexical = new Float32Array(0);
  private readonly times: BatchTimes = { encode: 0, score: 0, topk: 0 };
  readonly d: number;
  /** Values per appended content row: d, or the full content width for content-map. */
  readonly inputWidth: number;

  /**
   * `quantized`: score with the int8 first pass (same answers; never with fusion); by default with the native
   * kernels from QUANTIZED_MIN_ITEMS items on, decided here once.
   */
  constructor(
    private readonly model: ScoringModel,
    readonly numWarm: number,
    private readonly fusion: ServingFusion | null = null,
    quantized = kernels.name === 'native' && model.numItems >= QUANTIZED_MIN_ITEMS,
  ) {
    if (fusion && fusion.index.numItems !== model.numItems) {
      throw new Error(
        `Scorer: the lexical index has ${fusion.index.numItems} items, the model ${model.numItems}`,
      );
    }
    this.d = model.config.d;
    this.inputWidth = model.config.contentDim ?? model.config.d;
    this.quantized = quantized && !fusion ? quantizedWithRoom(model.numItems + 1, this.d) : null;
    this.refreshItems();
    // Like the model's tables, the per-row tables have spare room: the first append does not move them.
    this.active = withRoom(Uint8Array, model.numItems + 1).fill(1);
    this.active[0] = 0;
    this.excluded = withRoom(Uint8Array, model.numItems + 1);
  }

  /**
   * Appends rows (content vectors, zero delta), recommendable from the next batch on. `fields`: each row's text
   * fields, used by lexical fusion (rows without them get no lexical score).
   */
  appendItems(
    vectors: Float32Array,
    count: number,
    fields: readonly (Record<string, string> | undefined)[] = [],
  ): void {
    if (count === 0) return;
    if (vectors.length !== count * this.inputWidth)
      throw new Error(`appendItems: expected ${count} x ${this.inputWidth} values`);
    const from = this.model.numItems + 1;
    this.model.appendItems(vectors, count);
    if (this.fusion) {
      this.fusion.index.append(this.fusion.rowsFor(Array.from({ length: count }, (_, i) => fields[i])));
    }
    const rows = this.model.numItems + 1;
    if (!this.fusion) this.packRows(from, rows);
    else if (rows > this.columns) this.refreshItems();
    else this.refreshColumns(from, rows);
    this.active = extend(this.active, rows);
    this.active.fill(1, from);
    this.excluded = extend(this.excluded, rows);
  }

  /**
   * Re-encodes rows in place (an updated item keeps its row), with their text fields for lexical fusion; a retired
   * row (a deleted item added again) becomes recommendable again.
   */
  replaceItems(
    rows: Int32Array,
    vectors: Float32Array,
    fields: readonly (Record<string, string> | undefined)[] = [],
  ): void {
    if (rows.length === 0) return;
    if (vectors.length !== rows.length * this.inputWidth)
      throw new Error(`replaceItems: expected ${rows.length} x ${this.inputWidth} values`);
    this.model.replaceItems(rows, vectors);
    if (this.fusion) {
      this.fusion.index.replace(rows, this.fusion.rowsFor(Array.from(rows, (_, i) => fields[i])));
    }
    if (this.quantized) for (const row of rows) this.quantizeRows(row, row + 1);
    else if (!this.fusion) packPanelRows(this.model.itemEmbeddings(), rows, this.d, this.items);
    for (const row of rows) {
      if (this.fusion) this.refreshColumns(row, row + 1);
      if (!this.active[row]) {
        // A retired row reused (a deleted item added again) is recommendable again.
        this.active[row] = 1;
        this.retired.splice(this.retired.indexOf(row), 1);
      }
    }
  }

  /**
   * Panel layout (scoreTopK, or the int8 panels of scoreTopKQuantized): writes rows from..to into the panels, which
   * grow by capacity (util/growable.ts), so an appended row costs O(d) amortized. Rows before `from` keep their
   * place: a panel's position does not depend on the number of rows.
   */
  private packRows(from: number, to: number): void {
    if (this.quantized) {
      this.quantized = growQuantized(this.quantized, to, this.d);
      return this.quantizeRows(from, to);
    }
    // Made with spare room at the start (from = 0), so that the first append does not move the panels.
    this.items =
      from === 0
        ? withRoom(Float32Array, panelLength(to, this.d), this.d)
        : extend(this.items, panelLength(to, this.d));
    packPanels(this.model.itemEmbeddings(), to, this.d, this.items, from);
  }

  /** The int8 copy of rows from..to (1M items x d = 128: 1.4 s native, 2.2 s TypeScript on the loaded machine). */
  private quantizeRows(from: number, to: number): void {
    const { codes, scales, residuals, norms } = this.quantized!;
    kernels.quantizeItems(codes, scales, residuals, norms, this.model.itemEmbeddings(), from, to, this.d);
  }

  /**
   * Transposed layout (lexical fusion): lays the whole item matrix out again (at the start, and when appended rows
   * outgrow the spare columns). The matrix has COLUMN_SLACK spare columns from the start, so that appends (the
   * first after a load too) only write their own columns: one appended row costs O(d) amortized (the whole matrix
   * moves once per rows x COLUMN_SLACK appends), and a batch multiplies at most that fraction (plus alignment) of
   * zero columns more than the rows it scores.
   */
  private refreshItems(): void {
    const d = this.d;
    const rows = this.model.numItems + 1;
    if (!this.fusion) return this.packRows(0, rows);
    const spare = Math.ceil(rows * COLUMN_SLACK);
    const columns = Math.ceil((rows + spare) / COLUMN_ALIGN) * COLUMN_ALIGN;
    if (this.items.length !== d * columns) this.items = new Float32Array(d * columns);
    this.columns = columns;
    this.refreshColumns(0, rows);
  }

  /**
   * Copies rows from..to of the item matrix into their columns of the transposed matrix, in blocks of
   * COLUMN_ALIGN rows: each of a block's d output runs is written in one go while its rows stay in cache (at 1M
   * items the first append, which lays the matrix out again, took 2.8 s this way against 9.0 to 9.5 s row by row,
   * bench/append.bench.ts on the shared machine).
   */
  private refreshColumns(from: number, to: number): void {
    const items = this.model.itemEmbeddings();
    const { d, columns } = this;
    const t = this.items;
    for (let block = from; block < to; block += COLUMN_ALIGN) {
      const end = Math.min(to, block + COLUMN_ALIGN);
      for (let j = 0; j < d; j++) {
        const o = j * columns;
        for (let r = block; r < end; r++) t[o + r] = items[r * d + j];
      }
    }
  }

  /** Stops returning the given rows. */
  retire(rows: ArrayLike<number>): void {
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      if (row > 0 && row < this.active.length && this.active[row]) {
        this.active[row] = 0;
        this.retired.push(row);
      }
    }
  }

  /** Scores a batch and returns every answer at once (batch scoring, the CLI). */
  score(batch: ScoreBatch): ScoreResult {
    const resultOffsets = new Int32Array(batch.count + 1);
    const answers: { indices: Int32Array; scores: Float32Array }[] = [];
    this.scoreEach(batch, (r, indices, scores) => {
      answers.push({ indices, scores });
      resultOffsets[r + 1] = resultOffsets[r] + indices.length;
    });
    const indices = new Int32Array(resultOffsets[batch.count]);
    const scores = new Float32Array(resultOffsets[batch.count]);
    answers.forEach((a, r) => {
      indices.set(a.indices, resultOffsets[r]);
      scores.set(a.scores, resultOffsets[r]);
    });
    return { resultOffsets, indices, scores };
  }

  /**
   * Scores a batch: one encoder pass and one matmul for all requests, then per request, in order, masking and
   * top-k, and `answer` is called with that request's rows and scores (fewer than k when the catalog is small).
   */
  scoreEach(batch: ScoreBatch, answer: AnswerCallback): void {
    if (this.fusion) this.scoreFused(batch, answer);
    else this.scoreTopK(batch, answer);
  }

  /** Whether batches take the int8 first pass (then the shared scan, serve/scan.ts, can answer them). */
  get quantizedPath(): boolean {
    return this.quantized !== null;
  }

  /** Rows of the item matrix: the items and the padding row 0. */
  get rows(): number {
    return this.model.numItems + 1;
  }

  /**
   * Encodes a batch's histories into states (count x d) and writes each request's limit (it may return rows
   * 0 .. limit - 1) and list width (k plus what its exclusions can take out of the list, so that k rows remain).
   */
  prepare(batch: ScoreBatch, states: Float32Array, limits: Int32Array, widths: Int32Array): void {
    const { count, inputOffsets, excludeOffsets } = batch;
    const n = this.rows;
    this.model.encodePacked(inputOffsets, batch.inputItems, count, states);
    for (let r = 0; r < count; r++) {
      limits[r] = batch.includeCold[r] ? n : Math.min(n, this.numWarm + 1);
      let excluded = excludeOffsets[r + 1] - excludeOffsets[r];
      if (batch.excludeSeen[r]) excluded += inputOffsets[r + 1] - inputOffsets[r];
      widths[r] = Math.min(n, batch.k[r] + excluded);
    }
  }

  /**
   * Request r's answer from its ranked list (entries from .. to - 1 of indices / scores; index -1 ends it): the
   * first k rows it does not exclude.
   */
  answerFrom(
    batch: ScoreBatch,
    r: number,
    indices: Int32Array,
    scores: Float32Array,
    from: number,
    to: number,
  ): [Int32Array, Float32Array] {
    const { inputOffsets, inputItems, excludeOffsets, excludeItems } = batch;
    const excluded = this.excluded;
    for (let j = excludeOffsets[r]; j < excludeOffsets[r + 1]; j++) excluded[excludeItems[j]] = 1;
    if (batch.excludeSeen[r]) {
      for (let j = inputOffsets[r]; j < inputOffsets[r + 1]; j++) excluded[inputItems[j]] = 1;
    }
    const k = batch.k[r];
    const outIndices = new Int32Array(k);
    const outScores = new Float32Array(k);
    let found = 0;
    for (let e = from; e < to && found < k; e++) {
      const item = indices[e];
      if (item < 0) break;
      if (excluded[item]) continue;
      outIndices[found] = item;
      outScores[found++] = scores[e];
    }
    for (let j = excludeOffsets[r]; j < excludeOffsets[r + 1]; j++) excluded[excludeItems[j]] = 0;
    for (let j = inputOffsets[r]; j < inputOffsets[r + 1]; j++) excluded[inputItems[j]] = 0;
    return [outIndices.slice(0, found), outScores.slice(0, found)];
  }

  /**
   * One step of the shared scan (kernels `scanQuantized`, on the int8 path only): items from .. to - 1 for `rows`
   * requests whose states, limits and lists are the given arrays (see the kernel).
   */
  scanRange(
    lists: {
      lower: Float32Array;
      lowerCount: Int32Array;
      indices: Int32Array;
      scores: Float32Array;
      count: Int32Array;
      candidates: Int32Array;
      offsets: Int32Array;
    },
    states: Float32Array,
    limits: Int32Array,
    rows: number,
    from: number,
    to: number,
  ): void {
    if (!this.quantized) throw new Error('scanRange: the scorer is not on the int8 path');
    const { codes, scales, residuals, norms } = this.quantized;
    kernels.scanQuantized(
      lists.lower,
      lists.lowerCount,
      lists.indices,
      lists.scores,
      lists.count,
      lists.candidates,
      lists.offsets,
      states,
      codes,
      scales,
      residuals,
      norms,
      this.model.itemEmbeddings(),
      this.active,
      limits,
      rows,
      this.rows,
      this.d,
      from,
      to,
    );
  }

  /** scoreTopK for the whole batch, then per request its exclusions dropped from its list. */
  private scoreTopK(batch: ScoreBatch, answer: AnswerCallback): void {
    const { count } = batch;
    const d = this.d;
    const n = this.rows;
    const times = this.times;
    const started = performance.now();
    if (this.states.length < count * d) this.states = new Float32Array(count * d);
    if (this.limits.length < count) {
      this.limits = new Int32Array(count);
      this.widths = new Int32Array(count);
    }
    const states = this.states.subarray(0, count * d);
    this.prepare(batch, states, this.limits, this.widths);
    const encoded = performance.now();
    let width = 0;
    for (let r = 0; r < count; r++) width = Math.max(width, this.widths[r]);
    if (this.topIndices.length < count * width) {
      this.topIndices = new Int32Array(count * width);
      this.topScores = new Float32Array(count * width);
    }
    const { topIndices, topScores, quantized } = this;
    if (quantized) {
      if (this.candidates.length !== count) this.candidates = new Int32Array(count);
      const { codes, scales, residuals, norms } = quantized;
      kernels.scoreTopKQuantized(
        topIndices,
        topScores,
        this.candidates,
        states,
        codes,
        scales,
        residuals,
        norms,
        this.model.itemEmbeddings(),
        this.active,
        this.limits,
        count,
        n,
        d,
        width,
      );
    } else {
      kernels.scoreTopK(
        topIndices,
        topScores,
        states,
        this.items,
        this.active,
        this.limits,
        count,
        n,
        d,
        width,
      );
    }
    const scored = performance.now();
    times.encode = encoded - started;
    times.score = scored - encoded;
    for (let r = 0; r < count; r++) {
      const [indices, scores] = this.answerFrom(batch, r, topIndices, topScores, r * width, (r + 1) * width);
      times.topk = performance.now() - scored;
      answer(r, indices, scores, times);
    }
  }

  /** Lexical fusion: full score rows (standardized and fused per request), masking, top-k per request. */
  private scoreFused(batch: ScoreBatch, answer: AnswerCallback): void {
    const { count, inputOffsets, inputItems, excludeOffsets, excludeItems } = batch;
    const d = this.d;
    const n = this.model.numItems + 1;
    const columns = this.columns;
    const times = this.times;
    const started = performance.now();
    if (this.states.length < count * d) this.states = new Float32Array(count * d);
    if (this.scores.length < count * columns)
      this.scores = new Float32Array(Math.ceil(count * columns * 1.25));
    const states = this.states.subarray(0, count * d);
    const scores = this.scores.subarray(0, count * columns);
    this.model.encodePacked(inputOffsets, inputItems, count, states);
    const encoded = performance.now();
    kernels.matmul(scores, states, this.items, count, columns, d, false, false, false);
    this.fuse(batch, scores, columns, n);
    const scored = performance.now();
    times.encode = encoded - started;
    times.score = scored - encoded;

    let maxK = 0;
    for (let r = 0; r < count; r++) maxK = Math.max(maxK, batch.k[r]);
    if (this.topIndices.length < maxK) {
      this.topIndices = new Int32Array(maxK);
      this.topScores = new Float32Array(maxK);
    }
    const retired = this.retired;
    for (let r = 0; r < count; r++) {
      const row = scores.subarray(r * columns, r * columns + n);
      row[0] = -Infinity;
      for (let j = 0; j < retired.length; j++) row[retired[j]] = -Infinity;
      for (let j = excludeOffsets[r]; j < excludeOffsets[r + 1]; j++) row[excludeItems[j]] = -Infinity;
      if (batch.excludeSeen[r]) {
        for (let j = inputOffsets[r]; j < inputOffsets[r + 1]; j++) row[inputItems[j]] = -Infinity;
      }
      const candidates = batch.includeCold[r] ? n : Math.min(n, this.numWarm + 1);
      const k = batch.k[r];
      kernels.topK(this.topIndices, this.topScores, row.subarray(0, candidates), 1, candidates, k);
      let found = 0;
      while (found < k && this.topIndices[found] >= 0) found++;
      times.topk = performance.now() - scored;
      answer(r, this.topIndices.slice(0, found), this.topScores.slice(0, found), times);
    }
  }

  /** Per request: the fusion formula of LexicalFusion over items 1..n-1. */
  private fuse(batch: ScoreBatch, scores: Float32Array, columns: number, n: number): void {
    const { weights, index } = this.fusion!;
    const { inputOffsets, inputItems } = batch;
    const inputs = Array.from({ length: batch.count }, (_, r) =>
      inputItems.subarray(inputOffsets[r], inputOffsets[r + 1]),
    );
    // With spare room, as the scores: the catalog grows by one row at a time.
    if (this.lexical.length < inputs.length * n)
      this.lexical = new Float32Array(Math.ceil(inputs.length * n * 1.25));
    const factor = index.fusionTerm(inputs, this.lexical, weights);
    for (let r = 0; r < inputs.length; r++) fuseRow(scores, r * columns, n, this.lexical, r * n, factor);
  }
}
