/**
 * Lexical fusion (beyond the paper, issue 7): a sequential model's scores plus weighted lexical similarity.
 *
 *   score_i = (s_i - mean(s)) / std(s) + weight * cos(profile, x_i)
 *
 * s: the model's scores for one input over its scorable items (finite entries; an ID model's cold items stay
 * -Infinity). Standardizing them per input puts every model on one scale, so `weight` means "how many standard
 * deviations of the model's score one unit of cosine is worth". x_i: the item's sparse TF-IDF row, the encoder's
 * full-width representation, which ranks cold items far better than any 128-d projection (CONTENT.md); the profile
 * is the normalized sum of the input items' rows (ContentKNN). Cold items need only their text: a new item's row is
 * the fitted vectorizer applied to it.
 *
 * Cold-aware fusion (issue 15, optional terms, default 0): the lexical term becomes
 *
 *   weight * cos(profile, x_i) + lastWeight * cos(x_last, x_i) + [i > numWarm] * coldWeight * cos(profile, x_i)
 *
 * x_last: the last input item's row alone (the next item tends to resemble the last one more than the history's
 * mean); items above numWarm have no trained delta (cold at training time, or added later), so their model score
 * carries less of their own signal and their text counts coldWeight more.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CsrMatrix } from '../content/sparse.js';
import { decodeSafetensors, encodeSafetensors } from './artifact.js';
import { SparseCosineRows } from './knn.js';
import type { Recommender } from './types.js';

export interface LexicalFusionState {
  /** Sparse TF-IDF rows, (numItems + 1) x vocabulary, row 0 the padding row. */
  rows: CsrMatrix;
  /** Weight of the cosine term against the standardized model score (>= 0). */
  weight: number;
  /** Extra weight of the cosine for items above numWarm (no trained delta); default 0. */
  coldWeight?: number;
  /** Weight of the cosine with the last input item's row alone; default 0. */
  lastWeight?: number;
  /** Items 1..numWarm have trained deltas (needed when coldWeight > 0). */
  numWarm?: number;
}

/** A fusion state's weights (everything but the rows). */
export type FusionWeights = Omit<LexicalFusionState, 'rows'>;

/** Checks a fusion state's weights; `where` names the caller in the error. */
export function checkFusionWeights(state: FusionWeights, where: string): void {
  for (const key of ['weight', 'coldWeight', 'lastWeight'] as const) {
    const v = state[key] ?? 0;
    if (!(v >= 0) || !Number.isFinite(v))
      throw new Error(`${where}: ${key} must be a finite number >= 0, got ${v}`);
  }
  if ((state.coldWeight ?? 0) > 0 && !(Number.isInteger(state.numWarm) && state.numWarm! >= 0))
    throw new Error(`${where}: coldWeight needs numWarm (the count of items with trained deltas)`);
}

export class LexicalFusion implements Recommender {
  readonly numItems: number;
  private readonly lexical: LexicalIndex;
  private similarity = new Float32Array(0);

  constructor(
    readonly model: Recommender,
    readonly state: LexicalFusionState,
    maxLength?: number,
  ) {
    checkFusionWeights(state, 'LexicalFusion');
    if (state.rows.rows !== model.numItems + 1) {
      throw new Error(
        `LexicalFusion: ${state.rows.rows} lexical rows for a model of ${model.numItems} items (expected numItems + 1)`,
      );
    }
    this.numItems = model.numItems;
    this.lexical = new LexicalIndex(state.rows, maxLength);
  }

  score(inputs: readonly Int32Array[], out: Float32Array): void {
    const width = this.numItems + 1;
    this.model.score(inputs, out);
    if (this.similarity.length < inputs.length * width)
      this.similarity = new Float32Array(inputs.length * width);
    const similarity = this.similarity;
    const factor = this.lexical.fusionTerm(inputs, similarity, this.state);
    for (let b = 0; b < inputs.length; b++) {
      fuseRow(out, b * width, width, similarity, b * width, factor);
      out[b * width] = -Infinity;
    }
  }
}

/**
 * The fusion formula on one score row (shared by LexicalFusion and the service's Scorer): scores[start + i] for
 * items i = 1 .. width - 1 become (s - mean) / std + weight * similarity[simStart + i], mean and std taken over the
 * finite scores; -Infinity (unscorable) stays -Infinity. similarity is not read when weight is 0.
 */
export function fuseRow(
  scores: Float32Array,
  start: number,
  width: number,
  similarity: Float32Array,
  simStart: number,
  weight: number,
): void {
  let count = 0;
  let sum = 0;
  for (let i = 1; i < width; i++) {
    const v = scores[start + i];
    if (Number.isFinite(v)) {
      count++;
      sum += v;
    }
  }
  const mean = count > 0 ? sum / count : 0;
  let squares = 0;
  for (let i = 1; i < width; i++) {
    const v = scores[start + i];
    if (Number.isFinite(v)) squares += (v - mean) * (v - mean);
  }
  const std = Math.sqrt(squares / Math.max(count, 1));
  const inv = std > 0 ? 1 / std : 1;
  for (let i = 1; i < width; i++) {
    const lexical = weight > 0 ? weight * similarity[simStart + i] : 0;
    scores[start + i] = (scores[start + i] - mean) * inv + lexical;
  }
}

const LEXICAL_FILE = 'lexical.safetensors';

/** Writes the fusion state to `dir` (one safetensors file: the CSR arrays, with the weight and width as metadata). */
export async function saveLexicalFusion(dir: string, state: LexicalFusionState): Promise<void> {
  checkFusionWeights(state, 'saveLexicalFusion');
  await mkdir(dir, { recursive: true });
  const { rows } = state;
  const bytes = encodeSafetensors(
    [
      { name: 'indptr', shape: [rows.indptr.length], data: rows.indptr },
      { name: 'indices', shape: [rows.indices.length], data: rows.indices },
      { name: 'values', shape: [rows.values.length], data: rows.values },
    ],
    {
      format: 'deltarec-lexical-fusion',
      weight: String(state.weight),
      cols: String(rows.cols),
      // Written only when set, so a plain fusion state keeps its bytes.
      ...(state.coldWeight ? { coldWeight: String(state.coldWeight), numWarm: String(state.numWarm) } : {}),
      ...(state.lastWeight ? { lastWeight: String(state.lastWeight) } : {}),
    },
  );
  await writeFile(join(dir, LEXICAL_FILE), bytes);
}

export async function loadLexicalFusion(dir: string): Promise<LexicalFusionState> {
  const path = join(dir, LEXICAL_FILE);
  const { tensors, metadata } = decodeSafetensors(await readFile(path), path);
  const get = <T>(name: string, type: new (...args: never[]) => T): T => {
    const t = tensors.get(name)?.data;
    if (!(t instanceof type)) throw new Error(`${path}: tensor '${name}' is missing or has the wrong dtype`);
    return t;
  };
  const indptr = get('indptr', Int32Array);
  const indices = get('indices', Int32Array);
  const values = get('values', Float32Array);
  const weight = Number(metadata.weight);
  const cols = Number(metadata.cols);
  if (!Number.isFinite(weight) || !Number.isInteger(cols) || cols < 0)
    throw new Error(`${path}: metadata needs a numeric 'weight' and an integer 'cols'`);
  const optional = (key: string) => (metadata[key] === undefined ? undefined : Number(metadata[key]));
  const extra = {
    coldWeight: optional('coldWeight'),
    lastWeight: optional('lastWeight'),
    numWarm: optional('numWarm'),
  };
  checkFusionWeights({ weight, ...extra }, path);
  if (indptr.length < 2 || indptr[indptr.length - 1] !== indices.length || indices.length !== values.length)
    throw new Error(`${path}: indptr, indices and values do not form a CSR matrix`);
  for (const c of indices)
    if (c < 0 || c >= cols) throw new Error(`${path}: column index ${c} outside 0..${cols - 1}`);
  const state: LexicalFusionState = {
    rows: { rows: indptr.length - 1, cols, indptr, indices, values },
    weight,
  };
  if (extra.coldWeight !== undefined) {
    state.coldWeight = extra.coldWeight;
    state.numWarm = extra.numWarm;
  }
  if (extra.lastWeight !== undefined) state.lastWeight = extra.lastWeight;
  return state;
}

/**
 * Sparse TF-IDF rows that grow as items are added (the service's live catalog), scored by cosine against input
 * profiles like ContentKNN. Appending or re-encoding a row costs that row's entries (SparseCosineRows).
 */
export class LexicalIndex {
  private readonly rows: SparseCosineRows;
  private last = new Float32Array(0);

  constructor(
    rows: CsrMatrix,
    private readonly maxLength = Number.MAX_SAFE_INTEGER,
  ) {
    this.rows = new SparseCosineRows(rows);
  }

  get numItems(): number {
    return this.rows.numRows - 1;
  }

  /** out (inputs.length x (numItems + 1)) = cosine of each input's profile with every item (-Infinity at 0). */
  score(inputs: readonly Int32Array[], out: Float32Array): void {
    const width = this.rows.numRows;
    if (out.length < inputs.length * width)
      throw new Error(`LexicalIndex.score: out has ${out.length} values, needs ${inputs.length} x ${width}`);
    this.rows.score(inputs, out, this.maxLength);
    for (let b = 0; b < inputs.length; b++) out[b * width] = -Infinity;
  }

  /**
   * out (inputs.length x (numItems + 1)) = the fusion's lexical term of each item (module comment): weight x profile
   * cosine, plus lastWeight x last-item cosine, plus coldWeight x profile cosine for items above numWarm; -Infinity
   * at 0. Returns the factor fuseRow applies to out: 0 when every weight is 0 (out is not written), `weight` for
   * plain fusion (out holds the bare cosines, so plain fusion keeps its exact float arithmetic), else 1.
   */
  fusionTerm(inputs: readonly Int32Array[], out: Float32Array, state: FusionWeights): number {
    const { weight } = state;
    const coldWeight = state.coldWeight ?? 0;
    const lastWeight = state.lastWeight ?? 0;
    if (coldWeight === 0 && lastWeight === 0) {
      if (weight > 0) this.score(inputs, out);
      return weight;
    }
    const width = this.rows.numRows;
    this.score(inputs, out);
    if (lastWeight > 0) {
      if (this.last.length < inputs.length * width) this.last = new Float32Array(inputs.length * width);
      this.rows.score(inputs, this.last, 1);
    }
    const firstCold = coldWeight > 0 ? state.numWarm! + 1 : width;
    for (let b = 0; b < inputs.length; b++) {
      const base = b * width;
      for (let i = 1; i < width; i++) {
        const cosine = out[base + i];
        let term = (i >= firstCold ? weight + coldWeight : weight) * cosine;
        if (lastWeight > 0) term += lastWeight * this.last[base + i];
        out[base + i] = term;
      }
    }
    return 1;
  }

  /** Replaces existing rows (rows[i] gets row i of `replacement`, same vocabulary). */
  replace(rows: Int32Array, replacement: CsrMatrix): void {
    this.rows.replaceRows(rows, replacement);
  }

  /** Appends rows (same vocabulary) after the existing ones. */
  append(added: CsrMatrix): void {
    this.rows.appendRows(added);
  }
}
