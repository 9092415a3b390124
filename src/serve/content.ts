/**
 * Turns a new item's text fields or raw content vector into a model-space content vector (d values, unit norm),
 * exactly as the training items were: the artifact's saved text encoder, then its saved projection.
 */
import { createHash, type Hash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TfidfSvdEncoder } from '../content/tfidf.js';
import {
  applyProjection,
  loadProjection,
  saveProjection,
  type ProjectionState,
} from '../content/projection.js';
import type { ContentPart, LoadedArtifact } from '../model/artifact.js';
import { itemVectorWidth } from './models.js';

export const ENCODER_KIND = 'tfidf-svd';
export const PROJECTION_KIND = 'pca';

/** The built-in text encoder as an artifact part: saveModel(dir, { ..., encoder: encoderPart(encoder) }). */
export function encoderPart(encoder: TfidfSvdEncoder): ContentPart {
  return { kind: ENCODER_KIND, save: (dir) => encoder.save(dir) };
}

/** The content projection (standardize + PCA + L2) as an artifact part. */
export function projectionPart(state: ProjectionState): ContentPart {
  return { kind: PROJECTION_KIND, save: (dir) => saveProjection(dir, state) };
}

/** A raw-vector -> model-space map loaded from the artifact (the content projection). */
export interface VectorProjection {
  readonly inputDim: number;
  readonly outputDim: number;
  apply(raw: Float32Array): Float32Array;
}

export class ContentError extends Error {}

export class ItemContentEncoder {
  constructor(
    readonly d: number,
    private readonly encoder: TfidfSvdEncoder | null,
    private readonly projection: VectorProjection | null,
    /** Identifies the space of the raw vectors fromVector takes (rawSpaceFingerprint). */
    readonly rawSpace: string,
  ) {
    const encoded = encoder ? encoder.dim : null;
    const expected = projection ? projection.inputDim : d;
    if (encoded !== null && encoded !== expected) {
      throw new Error(`text encoder outputs ${encoded} values but the projection/model takes ${expected}`);
    }
    if (projection && projection.outputDim !== d) {
      throw new Error(`projection outputs ${projection.outputDim} values but the model dimension is ${d}`);
    }
  }

  /** Text fields the encoder reads, in order (empty when the artifact has no text encoder). */
  get fields(): string[] {
    if (!this.encoder) return [];
    return this.encoder.info.fields.length > 0 ? this.encoder.info.fields : ['text'];
  }

  /** Length of a raw vector accepted by fromVector. */
  get rawDim(): number {
    return this.projection ? this.projection.inputDim : this.d;
  }

  fromFields(fields: Record<string, string>): Float32Array {
    if (!this.encoder)
      throw new ContentError('this model has no saved text encoder; send a content vector instead');
    const names = this.fields;
    const unknown = Object.keys(fields).filter((f) => !names.includes(f));
    if (unknown.length > 0) {
      throw new ContentError(
        `unknown text field(s) ${unknown.join(', ')}; this model's encoder reads ${names.join(', ')}`,
      );
    }
    const raw = this.encoder.encode([names.map((f) => fields[f] ?? '')]);
    if (norm(raw) === 0)
      throw new ContentError('the text has no words the encoder knows, so it has no content vector');
    return this.fromVector(raw);
  }

  fromVector(raw: Float32Array): Float32Array {
    if (raw.length !== this.rawDim) {
      throw new ContentError(`vector has ${raw.length} values; this model takes ${this.rawDim}`);
    }
    if (norm(raw) === 0) throw new ContentError('vector is all zeros');
    const projected = this.projection ? this.projection.apply(raw) : Float32Array.from(raw);
    const n = norm(projected);
    if (!(n > 0 && Number.isFinite(n))) throw new ContentError('the projected vector is zero or not finite');
    for (let i = 0; i < projected.length; i++) projected[i] /= n;
    return projected;
  }
}

function norm(v: Float32Array): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
}

/** Builds the encoder from an artifact's saved states (kinds it does not know are an error). */
export async function loadContentEncoder(artifact: LoadedArtifact): Promise<ItemContentEncoder> {
  const d = itemVectorWidth(artifact);
  let encoder: TfidfSvdEncoder | null = null;
  if (artifact.encoder) {
    if (artifact.encoder.kind !== ENCODER_KIND) {
      throw new Error(
        `${artifact.dir}: text encoder kind '${artifact.encoder.kind}' cannot run in the service`,
      );
    }
    encoder = await TfidfSvdEncoder.load(artifact.encoder.dir);
  }
  let projection: VectorProjection | null = null;
  if (artifact.projection) {
    if (artifact.projection.kind !== PROJECTION_KIND) {
      throw new Error(`${artifact.dir}: projection kind '${artifact.projection.kind}' is not supported`);
    }
    const state = await loadProjection(artifact.projection.dir);
    projection = {
      inputDim: state.inputDim,
      outputDim: state.outputDim,
      apply: (raw) => applyProjection(state, raw),
    };
  }
  const rawDim = projection ? projection.inputDim : d;
  return new ItemContentEncoder(d, encoder, projection, await rawSpaceFingerprint(artifact, rawDim));
}

/**
 * Identifies the content pipeline whose vectors the catalog log stores: the model kind, the vector width and every
 * byte of the saved encoder and projection states. A model with a refitted encoder or projection gets another one
 * (its logged vectors would land elsewhere in the new space); retraining the weights alone keeps it.
 */
export async function contentFingerprint(artifact: LoadedArtifact): Promise<string> {
  const hash = createHash('sha256');
  hash.update(`${artifact.manifest.model.kind}\n${itemVectorWidth(artifact)}\n`);
  for (const part of [artifact.encoder, artifact.projection]) {
    hash.update(part ? `${part.kind}\n` : 'none\n');
    if (part) await hashTree(hash, part.dir, '');
  }
  return hash.digest('hex').slice(0, 32);
}

/**
 * Identifies the space of the raw vectors a model takes (POST /items {"vector"}: the input of its projection):
 * its width and, when the model has a text encoder, every byte of that encoder's state (raw vectors are its
 * outputs). Two models with the same one take the same raw vectors, so a raw vector recorded for one may be
 * projected by the other; a refitted text encoder gives another one. A model without a text encoder takes
 * external vectors (from the embedding its training content came from): only their width identifies them.
 */
async function rawSpaceFingerprint(artifact: LoadedArtifact, rawDim: number): Promise<string> {
  const hash = createHash('sha256');
  hash.update(`raw ${rawDim}\n`);
  if (artifact.encoder) {
    hash.update(`${artifact.encoder.kind}\n`);
    await hashTree(hash, artifact.encoder.dir, '');
  } else hash.update('external\n');
  return hash.digest('hex').slice(0, 32);
}

async function hashTree(hash: Hash, dir: string, prefix: string): Promise<void> {
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await hashTree(hash, path, `${prefix}${entry.name}/`);
    else if (entry.isFile()) {
      const bytes = await readFile(path);
      hash.update(`${prefix}${entry.name} ${bytes.length}\n`);
      hash.update(bytes);
    }
  }
}
