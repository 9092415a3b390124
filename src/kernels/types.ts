/**
 * The numeric kernels the model is written against. Two implementations exist: `reference.ts` (plain TypeScript,
 * the test oracle and the fallback) and `native.ts` (the C++ addon). All matrices are row-major Float32Array;
 * sizes are passed explicitly so callers can hand in views of preallocated buffers.
 */
export interface Kernels {
  readonly name: 'native' | 'typescript';

  /**
   * out (m x n) = op(a) * op(b), or out += op(a) * op(b) when accumulate.
   * op(a) is m x k: a is stored m x k, or k x m when transA. op(b) is k x n: b is stored k x n, or n x k when transB.
   */
  matmul(
    out: Float32Array,
    a: Float32Array,
    b: Float32Array,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    accumulate: boolean,
  ): void;

  /**
   * Fused output layer with full softmax cross-entropy over items 1..numItems-1 (row 0 is padding and excluded).
   * hidden: rows x d; items: numItems x d; targets: rows (each in 1..numItems-1).
   * Loss L = scale * sum_r CE_r. Writes dHidden = dL/dhidden (rows x d); adds dL/ditems into dItems (numItems x d).
   * Returns sum_r CE_r (unscaled). Works in row chunks so scratch memory is chunk x numItems, never rows x numItems.
   */
  softmaxCrossEntropy(
    hidden: Float32Array,
    items: Float32Array,
    targets: Int32Array,
    rows: number,
    d: number,
    numItems: number,
    scale: number,
    dHidden: Float32Array,
    dItems: Float32Array,
  ): number;

  /**
   * Sampled output layer (loss 'sampled' or 'gbce', see docs/large-catalogs.md): k negatives shared by all rows.
   * hidden, positives: rows x d (positives[r] = embedding of targets[r]); negatives: k x d (embeddings of
   * negativeIds). Logits: s+ = hidden[r] . positives[r] + bias and s_j = hidden[r] . negatives[j] + bias -
   * correction[j] (the logQ correction). Negative j is masked for row r (left out of its loss) when
   * negativeIds[j] === targets[r] (an accidental hit).
   * - gbce false (sampled softmax): CE_r = logsumexp(s+, unmasked s_j) - s+ (bias cancels).
   * - gbce true (gSASRec's gBCE): CE_r = beta softplus(-s+) + sum of softplus(s_j) over unmasked j.
   * Loss L = scale * sum_r CE_r. Writes (overwrites) dHidden, dPositives (rows x d), dNegatives (k x d) and
   * dBias[0] = dL/dbias. Returns sum_r CE_r (unscaled). Scratch memory is bounded by a row chunk x k.
   */
  sampledLoss(
    hidden: Float32Array,
    positives: Float32Array,
    negatives: Float32Array,
    targets: Int32Array,
    negativeIds: Int32Array,
    correction: Float32Array,
    rows: number,
    d: number,
    k: number,
    gbce: boolean,
    beta: number,
    bias: number,
    scale: number,
    dHidden: Float32Array,
    dPositives: Float32Array,
    dNegatives: Float32Array,
    dBias: Float32Array,
  ): number;

  /**
   * sampledLoss with its own k negatives per group of rows (negativesPer 'sequence': a group is one sequence's
   * positions): rows groupStarts[g] .. groupStarts[g + 1] - 1 are scored against negatives g k .. g k + k - 1
   * (negatives: groups k x d; negativeIds and correction: groups k), accidental hits masked within the group.
   * groupStarts (groups + 1 entries) starts at 0 and never decreases; rows = groupStarts[groups]. Writes dHidden,
   * dPositives (rows x d), dNegatives (groups k x d) and dBias[0] summed over the groups; returns sum_r CE_r.
   * Equals sampledLoss called once per group.
   */
  sampledLossGrouped(
    hidden: Float32Array,
    positives: Float32Array,
    negatives: Float32Array,
    targets: Int32Array,
    negativeIds: Int32Array,
    correction: Float32Array,
    groupStarts: Int32Array,
    groups: number,
    d: number,
    k: number,
    gbce: boolean,
    beta: number,
    bias: number,
    scale: number,
    dHidden: Float32Array,
    dPositives: Float32Array,
    dNegatives: Float32Array,
    dBias: Float32Array,
  ): number;

  /** out = (x - mean) * rstd * gamma + beta per row; saves mean and rstd (length rows). */
  layerNormForward(
    out: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    x: Float32Array,
    gamma: Float32Array,
    beta: Float32Array,
    rows: number,
    d: number,
    eps: number,
  ): void;
  /** dx += dL/dx; dGamma += ; dBeta += . */
  layerNormBackward(
    dx: Float32Array,
    dGamma: Float32Array,
    dBeta: Float32Array,
    dOut: Float32Array,
    x: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    gamma: Float32Array,
    rows: number,
    d: number,
  ): void;

  /**
   * Causal multi-head self-attention over left-padded sequences. q, k, v, out: batch x T x d (heads are contiguous
   * d/heads slices of d). Sequence b has real positions T - lengths[b] .. T-1; a real query attends to real keys at
   * or before it; padding queries produce zeros. att (batch x heads x T x T) keeps the softmax probabilities.
   */
  attentionForward(
    out: Float32Array,
    att: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    lengths: Int32Array,
    batch: number,
    T: number,
    heads: number,
    d: number,
  ): void;
  /** Writes dq, dk, dv (overwrites). */
  attentionBackward(
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    dOut: Float32Array,
    att: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    lengths: Int32Array,
    batch: number,
    T: number,
    heads: number,
    d: number,
  ): void;

  reluForward(out: Float32Array, x: Float32Array, n: number): void;
  /** dx += dOut * (x > 0). */
  reluBackward(dx: Float32Array, dOut: Float32Array, x: Float32Array, n: number): void;
  /** GELU, tanh approximation (torch `approximate='tanh'`). */
  geluForward(out: Float32Array, x: Float32Array, n: number): void;
  /** dx += dOut * gelu'(x). */
  geluBackward(dx: Float32Array, dOut: Float32Array, x: Float32Array, n: number): void;

  /**
   * Inverted dropout: out = x * mask / (1 - p). mask[i] is 1 or 0, drawn from a counter-based generator of
   * (seed, i) so that both implementations draw the same mask. seed is used as `seed >>> 0`; p in [0, 1).
   */
  dropoutForward(
    out: Float32Array,
    mask: Uint8Array,
    x: Float32Array,
    n: number,
    p: number,
    seed: number,
  ): void;
  /** dx = dOut * mask / (1 - p) (overwrites). */
  dropoutBackward(dx: Float32Array, dOut: Float32Array, mask: Uint8Array, n: number, p: number): void;

  /** out[r] = table[indices[r]] (rows of width d). */
  gather(out: Float32Array, table: Float32Array, indices: Int32Array, rows: number, d: number): void;
  /** dTable[indices[r]] += dOut[r]. */
  scatterAdd(dTable: Float32Array, dOut: Float32Array, indices: Int32Array, rows: number, d: number): void;

  /** One Adam(W) step on n parameters; step is 1-based. weightDecay is decoupled (AdamW); 0 disables it. */
  adamStep(
    param: Float32Array,
    grad: Float32Array,
    m: Float32Array,
    v: Float32Array,
    n: number,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    step: number,
    weightDecay: number,
  ): void;

  /**
   * Lazy (sparse) Adam(W): the adamStep update of param rows rows[0..count) (row width d) from the compact
   * gradient grad (count x d, row u belongs to table row rows[u]); m and v are full tables like param. With
   * maxNorm > 0 each updated row is then rescaled to L2 norm <= maxNorm (the delta projection). Other rows and
   * their moments are not touched. rows must be distinct.
   */
  sparseAdamStep(
    param: Float32Array,
    grad: Float32Array,
    m: Float32Array,
    v: Float32Array,
    rows: Int32Array,
    count: number,
    d: number,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    step: number,
    weightDecay: number,
    maxNorm: number,
  ): void;

  /** Rescale every row r in [firstRow, rows) whose L2 norm exceeds maxNorm to norm maxNorm. */
  clipRowNorms(x: Float32Array, rows: number, d: number, maxNorm: number, firstRow: number): void;

  /**
   * Top-k per row of scores (rows x n), highest first, ties broken by lower index. Entries equal to -Infinity are
   * never returned; a row with fewer than k finite scores pads outIndices with -1 and outScores with -Infinity.
   */
  topK(
    outIndices: Int32Array,
    outScores: Float32Array,
    scores: Float32Array,
    rows: number,
    n: number,
    k: number,
  ): void;

  /**
   * Exact top-k of a batch of user states against the whole item matrix, without a rows x n score matrix:
   * score(r, j) = states[r] . item j (states rows x d), for items j in 0 .. limits[r] - 1 with active[j] != 0; same
   * order, ties and padding as `topK` (NaN and -Infinity never returned). `items` is the item matrix in panels of
   * PANEL_WIDTH items (`packPanels` in panels.ts): panel p holds items p*64 .. p*64 + 63 as d rows of 64 floats,
   * the last panel zero padded. The native kernel streams the matrix once per call for all rows.
   */
  scoreTopK(
    outIndices: Int32Array,
    outScores: Float32Array,
    states: Float32Array,
    items: Float32Array,
    active: Uint8Array,
    limits: Int32Array,
    rows: number,
    n: number,
    d: number,
    k: number,
  ): void;

  /**
   * Exactly `scoreTopK`'s answer (same items, same fp32 scores, same order), computed with an int8 first pass
   * (kernels/quantized.ts, where the layout and the proof are): codes, scales, residuals and norms are the int8
   * copy of the item matrix made by `quantizeRows` (sized by `growQuantized`: per-row arrays padded to whole panels
   * of 64 items); items is the same matrix row-major (n x d, fp32), from which
   * only the candidates (items whose error bound lets them reach the top k) are scored exactly.
   * outCandidates[r] = the number of items of row r scored exactly.
   */
  scoreTopKQuantized(
    outIndices: Int32Array,
    outScores: Float32Array,
    outCandidates: Int32Array,
    states: Float32Array,
    codes: Uint8Array,
    scales: Float32Array,
    residuals: Float32Array,
    norms: Float32Array,
    items: Float32Array,
    active: Uint8Array,
    limits: Int32Array,
    rows: number,
    n: number,
    d: number,
    k: number,
  ): void;

  /**
   * One step of `scoreTopKQuantized` for requests whose state persists between calls (the scoring worker's shared
   * scan, serve/scan.ts): scores items from .. to - 1 (from a multiple of 64, to <= n) for each row of states.
   * Row r's state is entries offsets[r] .. offsets[r + 1] - 1 (its width k_r) of: lower (its k_r largest lower bounds
   * so far, descending; lowerCount[r] of them), outIndices / outScores (its best exact scores so far, ranked by
   * score descending then index ascending; outCount[r] of them); outCandidates[r] counts the items scored exactly
   * (those of the range whose upper bound reaches the k_r-th lower bound at the end of the call).
   * Start a request with both counts 0; once calls have covered every item below limits[r] once, in any order and
   * any split into ranges, its list is `scoreTopKQuantized`'s answer for k = k_r (kernels/quantized.ts,
   * `scanQuantizedReference`). Arrays are updated in place.
   */
  scanQuantized(
    lower: Float32Array,
    lowerCount: Int32Array,
    outIndices: Int32Array,
    outScores: Float32Array,
    outCount: Int32Array,
    outCandidates: Int32Array,
    offsets: Int32Array,
    states: Float32Array,
    codes: Uint8Array,
    scales: Float32Array,
    residuals: Float32Array,
    norms: Float32Array,
    items: Float32Array,
    active: Uint8Array,
    limits: Int32Array,
    rows: number,
    n: number,
    d: number,
    from: number,
    to: number,
  ): void;

  /**
   * The int8 copy (kernels/quantized.ts) of rows from .. to - 1 of the row-major matrix (width d): codes at least
   * codePanelLength(to, d) bytes, scales, residuals and norms at least `to` floats; other rows are not touched.
   */
  quantizeItems(
    codes: Uint8Array,
    scales: Float32Array,
    residuals: Float32Array,
    norms: Float32Array,
    matrix: Float32Array,
    from: number,
    to: number,
    d: number,
  ): void;
}
