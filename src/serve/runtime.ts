/**
 * Everything the service holds for one loaded model: the artifact, its content encoder, its live catalog and its
 * scoring engine. A model swap builds a new ModelRuntime next to the serving one, replays the catalog changes into
 * it, and switches over in one synchronous step; requests that started on the old runtime finish on it.
 *
 * applyChange is the one rule by which a catalog change reaches a model, for the service (file log or PostgreSQL,
 * at start, live and in a swap) and for the batch commands (deltarec recommend and export, applyLogFile).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { loadArtifact, type LoadedArtifact, type ModelManifest } from '../model/artifact.js';
import { compactRecords, replayLog } from './catalog-log.js';
import { LiveCatalog, putItem, type RowSink } from './catalog.js';
import {
  ChangeRefusedError,
  recordToChange,
  unnamedRecordsModel,
  type ApplyResult,
  type CatalogChange,
} from './catalog-store.js';
import { ContentError, contentFingerprint, loadContentEncoder, type ItemContentEncoder } from './content.js';
import {
  InlineBackend,
  ScoringEngine,
  WorkerBackend,
  type EngineOptions,
  type ScoreBackend,
} from './engine.js';
import { itemVectorWidth, loadScoringModel, modelStrategy } from './models.js';
import type { WorkerOptions } from './worker.js';
import { Scorer } from './scorer.js';

/** What applyChange needs of a model: its live catalog, where new rows go, and how it encodes content. */
export interface ChangeTarget {
  /** First 16 hex digits of the SHA-256 of the manifest (which names every item and the save time). */
  modelId: string;
  strategy: string;
  canAddItems: boolean;
  /** Width of the model-space content vector of an item. */
  width: number;
  /** null only in the batch commands while no change of another model needs it (applyLogFile loads it). */
  content: ItemContentEncoder | null;
  catalog: LiveCatalog;
  rows: RowSink;
  /** Puts recorded for another model that were re-encoded for this one (applyChange). */
  reencoded: number;
}

export interface ModelRuntime extends ChangeTarget {
  artifact: LoadedArtifact;
  content: ItemContentEncoder;
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
  engineOptions: EngineOptions,
): Promise<ModelRuntime> {
  let artifact: LoadedArtifact;
  let backends: ScoreBackend[];
  let restart: EngineOptions['restart'];
  if (workers === 0) {
    const loaded = await loadScoringModel(modelDir);
    artifact = loaded.artifact;
    backends = [new InlineBackend(new Scorer(loaded.model, loaded.numWarm, loaded.fusion))];
  } else {
    // The main thread only needs the artifact: workers load the model themselves.
    artifact = await loadArtifact(modelDir, { weights: false });
    const workerOptions = { scan: engineOptions.scan };
    const started = Array.from({ length: workers }, () => new WorkerBackend(artifact.dir, workerOptions));
    backends = started;
    try {
      await Promise.all(started.map((w) => w.ready));
    } catch (error) {
      await Promise.all(started.map((w) => w.close()));
      throw error;
    }
    restart = workerRestart(artifact.dir, workerOptions);
  }
  const engine = new ScoringEngine(backends, { ...engineOptions, restart });
  try {
    const content = await loadContentEncoder(artifact);
    const target = changeTarget(artifact, engine, content);
    return { ...target, content, artifact: idsFromCatalog(artifact, target.catalog), engine, active: 0 };
  } catch (error) {
    await engine.close();
    throw error;
  }
}

/**
 * Replaces a worker that crashed by a new one on the same directory (the engine replays the changes). A function of
 * its own so that the closure holds the directory, not the loaded artifact (loadRuntime's context).
 */
function workerRestart(dir: string, options: WorkerOptions): () => Promise<WorkerBackend> {
  return async () => {
    const worker = new WorkerBackend(dir, options);
    try {
      await worker.ready;
    } catch (error) {
      await worker.close();
      throw error;
    }
    return worker;
  };
}

/**
 * The artifact as the service keeps it: its manifest's item ids (1M strings at 1M items, about 33 MB of the main
 * thread's heap that every full garbage collection marks) are dropped, since the live catalog holds them in typed
 * arrays, and rebuilt from the catalog (rows 0 .. n-1 keep the artifact's ids) when something reads them.
 */
function idsFromCatalog(artifact: LoadedArtifact, catalog: LiveCatalog): LoadedArtifact {
  const count = artifact.manifest.items.ids.length;
  const items = {} as ModelManifest['items']; // ids first, as in the manifest (JSON.stringify gives the same text)
  Object.defineProperty(items, 'ids', { enumerable: true, get: () => catalog.rowIds(count) });
  items.num_warm = artifact.manifest.items.num_warm;
  return { ...artifact, manifest: { ...artifact.manifest, items } };
}

/** A fresh catalog of the artifact's items whose new rows go to `rows` (the engine, or a Scorer in batch mode). */
export function changeTarget(
  artifact: LoadedArtifact,
  rows: RowSink,
  content: ItemContentEncoder | null,
): ChangeTarget {
  const strategy = modelStrategy(artifact);
  const { ids, num_warm } = artifact.manifest.items;
  return {
    modelId: modelId(artifact),
    strategy,
    canAddItems: strategy !== 'id',
    width: itemVectorWidth(artifact),
    content,
    catalog: new LiveCatalog(ids, num_warm),
    rows,
    reencoded: 0,
  };
}

/**
 * Applies one catalog change to a model. Deletes always apply. A put recorded for this model uses its stored
 * vector (an update of an added or cold item re-encodes its row in place: catalog.ts putItem). A put recorded for
 * another model (a log or database written while another model served, a replica on an older or newer model, the
 * changes a swap carries over) never replays that model's vector, which lies in another space: it is skipped when
 * this model was trained with the item and the item is active (the model has its own row), and otherwise re-encoded
 * by this model, from its text fields, or from the raw vector it came as when this model takes the same raw vectors
 * (same text encoder, or none, and width: content.ts rawSpaceFingerprint) through this model's projection.
 * A put that cannot be re-encoded so (raw vector of another raw space, text this encoder cannot encode, a model that
 * cannot add items) is refused with a ChangeRefusedError that names the item and why: the start, reload or batch
 * command fails; a PostgreSQL replica skips the change, counted in /health and /metrics and reported on stderr, and
 * keeps following (pg-catalog.ts). Returns whether the id was active before.
 */
export function applyChange(rt: ChangeTarget, change: CatalogChange): ApplyResult {
  const { catalog, rows } = rt;
  if (change.op === 'delete') {
    const retired = catalog.remove(change.id);
    if (retired) rows.retire(retired);
    return { existed: retired > 0 };
  }
  let vector: Float32Array;
  if (change.model === rt.modelId) {
    if (change.vector?.length !== rt.width) {
      throw new Error(
        `put of ${JSON.stringify(change.id)}: vector has ${change.vector?.length ?? 0} values, expected ${rt.width}`,
      );
    }
    vector = change.vector;
  } else {
    if (catalog.isSaved(change.id) && catalog.get(change.id)) return { existed: true };
    vector = reencode(rt, change);
    rt.reencoded++;
  }
  const { created } = putItem(catalog, rows, change.id, vector, change.fields);
  return { existed: !created };
}

/** A put of another model as a vector of this one (applyChange), or an error saying why it cannot be. */
function reencode(rt: ChangeTarget, change: CatalogChange): Float32Array {
  const refuse = (why: string) =>
    new ChangeRefusedError(
      `item ${JSON.stringify(change.id)} was recorded for model ${change.model} and cannot be carried into ` +
        `model ${rt.modelId}: ${why}; its vector of that model is never used here`,
    );
  if (!rt.canAddItems) throw refuse(`strategy '${rt.strategy}' cannot add items`);
  if (!rt.content) throw new Error('applyChange: the content encoder is not loaded');
  try {
    if (change.fields) return rt.content.fromFields(change.fields);
    if (change.raw && change.rawSpace === rt.content.rawSpace) return rt.content.fromVector(change.raw);
  } catch (error) {
    if (error instanceof ContentError) throw refuse(error.message);
    throw error;
  }
  throw refuse(
    change.raw
      ? 'it was added as a raw vector of another raw space (another text encoder or vector width), which this model does not take'
      : 'it was added as a vector recorded without its raw form or text fields',
  );
}

/**
 * deltarec recommend and export: applies a catalog log file to a model by the service's rule (applyChange),
 * loading the content encoder only when a change of another model needs it. Returns the number of changes applied.
 */
export async function applyLogFile(
  rt: ChangeTarget,
  artifact: LoadedArtifact,
  path: string,
): Promise<number> {
  const replay = replayLog(await readFile(path), path);
  const model = replay.records.some((r) => !r.model)
    ? await unnamedRecordsModel(replay.header, rt.modelId, () => contentFingerprint(artifact))
    : rt.modelId;
  // Compacted first, as the service replays a log (FileCatalogStore.start).
  const changes = compactRecords(replay.records).map((record, i) => recordToChange(record, i + 1, model));
  if (changes.some((c) => c.op === 'put' && c.model !== rt.modelId))
    rt.content ??= await loadContentEncoder(artifact);
  for (const change of changes) {
    try {
      applyChange(rt, change);
    } catch (error) {
      throw new Error(`${path}: ${(error as Error).message}`, { cause: error }); // names the item
    }
  }
  return changes.length;
}
