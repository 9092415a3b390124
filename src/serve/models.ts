/**
 * The models the service can score, loaded from an artifact: SASRec (kind 'sasrec') and the content-KNN baseline
 * (kind 'knn', dense content vectors), both behind the Scorer's ScoringModel interface.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadArtifact, loadModel, type LoadedArtifact } from '../model/artifact.js';
import { TfidfSvdEncoder } from '../content/tfidf.js';
import { LexicalIndex, loadLexicalFusion } from '../model/fusion.js';
import { extend, withRoom } from '../util/growable.js';
import type { ScoringModel, ServingFusion } from './scorer.js';

/**
 * Content KNN as a ScoringModel: the user state is the normalized mean of the history's unit content vectors and
 * items are unit rows, so the inner product is the cosine similarity of ContentKNN. New items are unit content rows.
 */
export class KnnScoringModel implements ScoringModel {
  readonly config: { d: number; maxLength: number };
  numItems: number;
  private unit: Float32Array;

  /**
   * `own`: the model may normalize `vectors` in place and keep them (the caller gives them up; loadScoringModel
   * does with the table it read, which has spare room); else it normalizes a copy with room.
   */
  constructor(vectors: Float32Array, dim: number, maxLength: number, options: { own?: boolean } = {}) {
    if (vectors.length % dim !== 0 || vectors.length < 2 * dim) {
      throw new Error(`knn: ${vectors.length} values are not (numItems + 1) rows of width ${dim}`);
    }
    this.config = { d: dim, maxLength };
    this.numItems = vectors.length / dim - 1;
    // Spare room: the first append does not move it. `extend` needs the table to start its buffer.
    this.unit =
      options.own && vectors.byteOffset === 0 ? vectors : withRoom(Float32Array, vectors.length, dim);
    this.unit.fill(0, 0, dim); // the padding row
    normalizeRows(vectors, this.unit, 1, this.numItems + 1, dim);
  }

  encodePacked(offsets: Int32Array, items: Int32Array, count: number, out: Float32Array): void {
    const { d, maxLength } = this.config;
    out.fill(0, 0, count * d);
    for (let r = 0; r < count; r++) {
      const o = r * d;
      for (let i = Math.max(offsets[r], offsets[r + 1] - maxLength); i < offsets[r + 1]; i++) {
        const item = items[i];
        if (item < 1 || item > this.numItems) continue;
        for (let j = 0; j < d; j++) out[o + j] += this.unit[item * d + j];
      }
      normalizeRows(out, out, r, r + 1, d);
    }
  }

  itemEmbeddings(): Float32Array {
    return this.unit;
  }

  appendItems(content: Float32Array, count: number): void {
    const d = this.config.d;
    const from = this.numItems + 1;
    this.unit = extend(this.unit, (from + count) * d); // by capacity: O(d) per row amortized
    this.unit.set(content.subarray(0, count * d), from * d);
    normalizeRows(this.unit, this.unit, from, from + count, d);
    this.numItems += count;
  }

  replaceItems(rows: Int32Array, content: Float32Array): void {
    const d = this.config.d;
    rows.forEach((row, i) => {
      this.unit.set(content.subarray(i * d, (i + 1) * d), row * d);
      normalizeRows(this.unit, this.unit, row, row + 1, d);
    });
  }
}

function normalizeRows(src: Float32Array, dst: Float32Array, from: number, to: number, d: number): void {
  for (let r = from; r < to; r++) {
    let norm = 0;
    for (let j = 0; j < d; j++) norm += src[r * d + j] ** 2;
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let j = 0; j < d; j++) dst[r * d + j] = src[r * d + j] * inv;
  }
}

export interface LoadedScoringModel {
  /** The artifact without its tensors (`weights` is emptied once the model holds them). */
  artifact: LoadedArtifact;
  model: ScoringModel;
  numWarm: number;
  /** 'knn' or the SASRec embedding strategy; 'id' models cannot take new items. */
  strategy: string;
  /** Lexical fusion, when the model was saved with it (pass it to the Scorer). */
  fusion: ServingFusion | null;
}

/**
 * The artifact's lexical fusion state for the Scorer. New items' sparse rows come from the saved text encoder
 * (the same vectorizer that made the saved rows); without one, new items get empty rows.
 */
export async function loadServingFusion(artifact: LoadedArtifact): Promise<ServingFusion> {
  const state = await loadLexicalFusion(artifact.lexical!.dir);
  const saved = artifact.encoder;
  const encoder = saved?.kind === 'tfidf-svd' ? await TfidfSvdEncoder.load(saved.dir) : null;
  const numItems = artifact.manifest.items.ids.length - 1;
  if (state.rows.rows !== numItems + 1) {
    throw new Error(
      `${artifact.dir}: the lexical part has ${state.rows.rows - 1} rows for ${numItems} items`,
    );
  }
  const maxLength = Number(artifact.manifest.model.config.maxLength);
  const fields = encoder ? (encoder.info.fields.length > 0 ? encoder.info.fields : ['text']) : [];
  const { rows, ...weights } = state;
  return {
    weights,
    index: new LexicalIndex(rows, maxLength),
    rowsFor(items) {
      if (encoder) return encoder.encodeSparse(items.map((f) => fields.map((name) => f?.[name] ?? '')));
      return {
        rows: items.length,
        cols: state.rows.cols,
        indptr: new Int32Array(items.length + 1),
        indices: new Int32Array(0),
        values: new Float32Array(0),
      };
    },
  };
}

/** Loads any servable artifact. */
export async function loadScoringModel(dir: string): Promise<LoadedScoringModel> {
  if ((await peekKind(dir)) === 'knn') {
    const artifact = await loadArtifact(dir);
    const { manifest } = artifact;
    const vectors = artifact.weights.get('content');
    const dim = Number(manifest.model.config.dim);
    if (!vectors) throw new Error(`${artifact.dir}: knn artifact has no 'content' tensor`);
    const maxLength = Number(manifest.model.config.maxLength ?? 64);
    const model = new KnnScoringModel(vectors, dim, maxLength, { own: true });
    artifact.weights.clear(); // the model owns the table (its unit rows now)
    if (model.numItems + 1 !== manifest.items.ids.length) {
      throw new Error(
        `${artifact.dir}: 'items.ids' lists ${manifest.items.ids.length - 1} items but the weights hold ${model.numItems}`,
      );
    }
    return { artifact, model, numWarm: manifest.items.num_warm, strategy: 'knn', fusion: null };
  }
  // Validates the artifact and rejects kinds it does not know. The model takes the tensors as they were read from
  // the file, without a copy (`loaded.weights` comes back empty).
  const loaded = await loadModel(dir);
  const fusion = loaded.lexical ? await loadServingFusion(loaded) : null;
  return {
    artifact: loaded,
    model: loaded.model,
    numWarm: loaded.numWarm,
    strategy: loaded.model.config.strategy,
    fusion,
  };
}

/** The model kind named in the manifest, or null when it cannot be read (loadModel then reports why). */
async function peekKind(dir: string): Promise<string | null> {
  try {
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as {
      model?: { kind?: unknown };
    };
    return typeof manifest.model?.kind === 'string' ? manifest.model.kind : null;
  } catch {
    return null;
  }
}

/** 'knn' for content KNN, else the SASRec embedding strategy. */
export function modelStrategy(artifact: LoadedArtifact): string {
  const { model } = artifact.manifest;
  return model.kind === 'knn' ? 'knn' : String(model.config.strategy);
}

/**
 * Width of the content vector a new item is appended with: SASRec's d (the projected content), the full content
 * width for content-map (the model applies its learned map), or the KNN content width.
 */
export function itemVectorWidth(artifact: LoadedArtifact): number {
  const config = artifact.manifest.model.config;
  if (artifact.manifest.model.kind === 'knn') return Number(config.dim);
  return Number(config.strategy === 'content-map' ? config.contentDim : config.d);
}
