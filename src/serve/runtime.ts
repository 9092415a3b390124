/**
 * Everything the service holds for one loaded model: the artifact, its content encoder, its live catalog and its
 * scoring engine. A model swap builds a new ModelRuntime next to the serving one, replays the catalog changes into
 * it, and switches over in one synchronous step; requests that started on the old runtime finish on it.
 */
import { createHash } from 'node:crypto';
import { loadArtifact, type LoadedArtifact } from '../model/artifact.js';
import { LiveCatalog, type RowSink } from './catalog.js';
import type { ApplyResult, CatalogChange } from './catalog-store.js';
import { ContentError, loadContentEncoder, type ItemContentEncoder } from './content.js';
import { InlineBackend, ScoringEngine, WorkerBackend, type ScoreBackend } from './engine.js';
import { itemVectorWidth, loadScoringModel, modelStrategy } from './models.js';
import { Scorer } from './scorer.js';

/** What applyChange needs of a model: its live catalog, where new rows go, and how it encodes content. */
export interface ChangeTarget {
  /** First 16 hex digits of the SHA-256 of the manifest (which names every item and the save time). */
  modelId: string;
  strategy: string;
  canAddItems: boolean;
  /** Width of the model-space content vector of an item. */
  width: number;
  content: ItemContentEncoder;
  catalog: LiveCatalog;
  rows: RowSink;
  /** Items the model was saved with. */
  known: Set<string>;
  /** Catalog changes of other models that could not be carried into this one (see applyChange). */
  notCarried: number;
}

export interface ModelRuntime extends ChangeTarget {
  artifact: LoadedArtifact;
  engine: ScoringEngine;
  /** Requests running on this runtime (a swapped-out runtime closes when they are done). */
  active: number;
}

export function modelId(artifact: LoadedArtifact): string {
  return createHash('sha256').update(JSON.stringify(artifact.manifest)).digest('hex').slice(0, 16);
}

/** Loads a model directory for serving. workers: scoring threads (0 = inline on the event loop). */
export async function loadRuntime(
  modelDir: string,
  workers: number,
  maxBatch: number,
): Promise<ModelRuntime> {
  let artifact: LoadedArtifact;
  let backends: ScoreBackend[];
  if (workers === 0) {
    const loaded = await loadScoringModel(modelDir);
    artifact = loaded.artifact;
    backends = [new InlineBackend(new Scorer(loaded.model, loaded.numWarm, loaded.fusion))];
  } else {
    // The main thread only needs the artifact: workers load the model themselves.
    artifact = await loadArtifact(modelDir);
    const started = Array.from({ length: workers }, () => new WorkerBackend(artifact.dir));
    backends = started;
    try {
      await Promise.all(started.map((w) => w.ready));
    } catch (error) {
      await Promise.all(started.map((w) => w.close()));
      throw error;
    }
  }
  const engine = new ScoringEngine(backends, maxBatch);
  try {
    return { ...(await changeTarget(artifact, engine)), artifact, engine, active: 0 };
  } catch (error) {
    await engine.close();
    throw error;
  }
}

/** A fresh catalog of the artifact's items whose new rows go to `rows` (the engine, or a Scorer in batch mode). */
export async function changeTarget(artifact: LoadedArtifact, rows: RowSink): Promise<ChangeTarget> {
  const strategy = modelStrategy(artifact);
  const { ids, num_warm } = artifact.manifest.items;
  return {
    modelId: modelId(artifact),
    strategy,
    canAddItems: strategy !== 'id',
    width: itemVectorWidth(artifact),
    content: await loadContentEncoder(artifact),
    catalog: new LiveCatalog(ids, num_warm),
    rows,
    known: new Set(ids.slice(1)),
    notCarried: 0,
  };
}

/**
 * Applies one catalog change. A put recorded for this model uses its stored vector. A put recorded for another
 * model (a replica on an older or newer model, or the changes carried over by a swap) is applied only when the
 * item is not in this model (or was deleted since), re-encoded from its fields or raw vector with this model's encoder and projection
 * (vectors of another model's space are never replayed into this one); a put that cannot be re-encoded (a vector
 * stored without its raw form, an id-strategy model, text without known words) is counted in notCarried and
 * reported on stderr. Deletes always apply. Returns whether the id was active before.
 */
export function applyChange(rt: ChangeTarget, change: CatalogChange): ApplyResult {
  const { catalog, rows } = rt;
  if (change.op === 'delete') {
    const retired = catalog.remove(change.id);
    if (retired) rows.retire(retired);
    return { existed: retired > 0 };
  }
  const existed = catalog.get(change.id) !== undefined;
  let vector: Float32Array;
  if (change.model === rt.modelId) {
    if (change.vector?.length !== rt.width) {
      throw new Error(
        `put of ${JSON.stringify(change.id)}: vector has ${change.vector?.length ?? 0} values, expected ${rt.width}`,
      );
    }
    vector = change.vector;
  } else {
    if (existed && rt.known.has(change.id)) return { existed }; // the model has its own row for it
    try {
      if (!rt.canAddItems) throw new ContentError(`strategy '${rt.strategy}' cannot add items`);
      if (change.fields) vector = rt.content.fromFields(change.fields);
      else if (change.raw) vector = rt.content.fromVector(change.raw);
      else throw new ContentError('only its projected vector was recorded, not the raw one');
    } catch (error) {
      if (!(error instanceof ContentError)) throw error;
      rt.notCarried++;
      process.stderr.write(
        `deltarec: catalog version ${change.version}: item ${JSON.stringify(change.id)} (recorded for model ${change.model}) is not carried into model ${rt.modelId}: ${error.message}\n`,
      );
      return { existed };
    }
  }
  const { retired } = catalog.put(change.id, change.fields);
  rows.append(vector, 1, [change.fields]);
  if (retired) rows.retire(retired);
  return { existed: retired > 0 };
}
