/**
 * Micro-batching scoring engine. Concurrent recommendation requests queue up while a backend is busy and are sent
 * together as one batch (one encoder pass, one batch x d times d x rows matmul), so throughput grows with load
 * without a batching timer adding latency at low load.
 *
 * Backends: worker threads (the default: the event loop never scores), or inline (scoring runs on the event loop
 * in a setImmediate callback, one batch at a time, so the loop is busy for at most one batch; no thread hand-offs).
 * Catalog changes (appended rows, retired rows) are queued and sent to every backend, in order, before the
 * next batch, so a change acknowledged before a request is visible to that request.
 */
import { Worker } from 'node:worker_threads';
import { Scorer, type ScoreBatch, type ScoreResult } from './scorer.js';

export interface ScoreRequest {
  history: Int32Array; // rows, most recent last
  exclude: Int32Array; // rows never returned
  k: number;
  includeCold: boolean;
  excludeSeen: boolean;
}

export interface ScoreResponse {
  indices: Int32Array;
  scores: Float32Array;
}

/**
 * Catalog changes queued since the last batch: rows to append (count x d content vectors), active rows to
 * re-encode in place (an updated item keeps its row), and rows to retire. Applying all appends, then all
 * replacements in order, then all retirements gives the same state as the interleaving they came in (only active
 * rows are replaced, and retiring only clears a row's flag), so a burst of changes costs one model append and one
 * matrix refresh.
 */
export interface CatalogChanges {
  vectors: Float32Array;
  count: number;
  /** Text fields of each appended row, when it was added from text (lexical fusion uses them). */
  fields: (Record<string, string> | undefined)[];
  replaceRows: Int32Array;
  replaceVectors: Float32Array;
  replaceFields: (Record<string, string> | undefined)[];
  retire: Int32Array;
}

export interface ScoreBackend {
  /** Set when the backend can no longer score (a crashed worker). */
  readonly failure: Error | null;
  score(batch: ScoreBatch): Promise<ScoreResult>;
  apply(changes: CatalogChanges): void;
  close(): Promise<void>;
}

/** Packs requests into the flat typed arrays of a ScoreBatch. */
export function packBatch(requests: readonly ScoreRequest[]): ScoreBatch {
  const count = requests.length;
  let inputTotal = 0;
  let excludeTotal = 0;
  for (const r of requests) {
    inputTotal += r.history.length;
    excludeTotal += r.exclude.length;
  }
  const batch: ScoreBatch = {
    count,
    inputOffsets: new Int32Array(count + 1),
    inputItems: new Int32Array(inputTotal),
    excludeOffsets: new Int32Array(count + 1),
    excludeItems: new Int32Array(excludeTotal),
    k: new Int32Array(count),
    includeCold: new Uint8Array(count),
    excludeSeen: new Uint8Array(count),
  };
  for (let i = 0; i < count; i++) {
    const r = requests[i];
    batch.inputItems.set(r.history, batch.inputOffsets[i]);
    batch.inputOffsets[i + 1] = batch.inputOffsets[i] + r.history.length;
    batch.excludeItems.set(r.exclude, batch.excludeOffsets[i]);
    batch.excludeOffsets[i + 1] = batch.excludeOffsets[i] + r.exclude.length;
    batch.k[i] = r.k;
    batch.includeCold[i] = r.includeCold ? 1 : 0;
    batch.excludeSeen[i] = r.excludeSeen ? 1 : 0;
  }
  return batch;
}

export function applyChanges(scorer: Scorer, changes: CatalogChanges): void {
  scorer.appendItems(changes.vectors, changes.count, changes.fields);
  scorer.replaceItems(changes.replaceRows, changes.replaceVectors, changes.replaceFields);
  scorer.retire(changes.retire);
}

/** Scores on the calling thread, deferred with setImmediate so requests parsed meanwhile join the next batch. */
export class InlineBackend implements ScoreBackend {
  readonly failure = null;
  constructor(readonly scorer: Scorer) {}

  score(batch: ScoreBatch): Promise<ScoreResult> {
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        try {
          resolve(this.scorer.score(batch));
        } catch (error) {
          reject(error as Error);
        }
      }),
    );
  }

  apply(changes: CatalogChanges): void {
    applyChanges(this.scorer, changes);
  }

  async close(): Promise<void> {}
}

type WorkerReply =
  | { type: 'ready' }
  | { type: 'result'; id: number; result: ScoreResult }
  | { type: 'error'; id: number; message: string }
  | { type: 'fatal'; message: string };

/**
 * Starts the scoring worker. From the compiled package it is worker.js; when running the TypeScript sources under
 * tsx (development, tests), worker threads do not inherit tsx's loader, so a bootstrap registers it first.
 */
function startWorker(modelDir: string): Worker {
  if (!import.meta.url.endsWith('.ts')) {
    return new Worker(new URL('./worker.js', import.meta.url), { workerData: { modelDir } });
  }
  const tsx = import.meta.resolve('tsx/esm/api');
  const worker = new URL('./worker.ts', import.meta.url).href;
  const bootstrap = `(async () => { (await import(${JSON.stringify(tsx)})).register(); await import(${JSON.stringify(worker)}); })()`;
  return new Worker(bootstrap, { eval: true, workerData: { modelDir } });
}

/** Runs src/serve/worker.ts: loads the model artifact itself and scores batches it is sent. */
export class WorkerBackend implements ScoreBackend {
  private readonly worker: Worker;
  private readonly pending = new Map<
    number,
    { resolve: (r: ScoreResult) => void; reject: (e: Error) => void }
  >();
  private nextId = 1;
  failure: Error | null = null;
  readonly ready: Promise<void>;

  constructor(modelDir: string) {
    this.worker = startWorker(modelDir);
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (message: WorkerReply) => {
        if (message.type === 'ready') resolve();
        else if (message.type === 'fatal') reject(new Error(message.message));
        else this.settle(message);
      });
      this.worker.on('error', (error) => {
        this.fail(error);
        reject(error);
      });
      this.worker.on('exit', (code) => {
        const error = new Error(`scoring worker exited with code ${code}`);
        this.fail(error);
        reject(error);
      });
    });
  }

  private settle(message: Extract<WorkerReply, { id: number }>): void {
    const waiter = this.pending.get(message.id);
    if (!waiter) return;
    this.pending.delete(message.id);
    if (message.type === 'result') waiter.resolve(message.result);
    else waiter.reject(new Error(message.message));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }

  score(batch: ScoreBatch): Promise<ScoreResult> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const transfer = [
        batch.inputOffsets,
        batch.inputItems,
        batch.excludeOffsets,
        batch.excludeItems,
        batch.k,
      ].map((a) => a.buffer as ArrayBuffer);
      this.worker.postMessage({ type: 'score', id, batch }, transfer);
    });
  }

  apply(changes: CatalogChanges): void {
    this.worker.postMessage({ type: 'changes', changes });
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

export interface EngineStats {
  batches: number;
  requests: number;
  maxBatch: number;
}

export class ScoringEngine {
  private readonly queue: {
    request: ScoreRequest;
    resolve: (r: ScoreResponse) => void;
    reject: (e: Error) => void;
  }[] = [];
  private readonly idle: ScoreBackend[];
  private appended: Float32Array[] = [];
  private appendedCount = 0;
  private appendedFields: (Record<string, string> | undefined)[] = [];
  private replaced: { row: number; vector: Float32Array; fields?: Record<string, string> }[] = [];
  private retired: number[] = [];
  private changesScheduled = false;
  readonly stats: EngineStats = { batches: 0, requests: 0, maxBatch: 0 };

  constructor(
    private readonly backends: ScoreBackend[],
    private readonly maxBatch = 64,
  ) {
    this.idle = [...backends];
  }

  recommend(request: ScoreRequest): Promise<ScoreResponse> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      this.pump();
    });
  }

  /** Queues rows to append (count x d content vectors, with each row's text fields when it has them). */
  append(
    vectors: Float32Array,
    count: number,
    fields: readonly (Record<string, string> | undefined)[] = [],
  ): void {
    this.appended.push(vectors);
    for (let i = 0; i < count; i++) this.appendedFields.push(fields[i]);
    this.appendedCount += count;
    this.scheduleChanges();
  }

  /** Queues an active row to re-encode in place from a new content vector. */
  replace(row: number, vector: Float32Array, fields?: Record<string, string>): void {
    this.replaced.push({ row, vector, fields });
    this.scheduleChanges();
  }

  retire(row: number): void {
    this.retired.push(row);
    this.scheduleChanges();
  }

  private scheduleChanges(): void {
    if (this.changesScheduled) return;
    this.changesScheduled = true;
    queueMicrotask(() => this.flushChanges());
  }

  private flushChanges(): void {
    this.changesScheduled = false;
    if (this.appended.length === 0 && this.replaced.length === 0 && this.retired.length === 0) return;
    const changes: CatalogChanges = {
      vectors: concat(this.appended),
      count: this.appendedCount,
      fields: this.appendedFields,
      replaceRows: Int32Array.from(this.replaced, (r) => r.row),
      replaceVectors: concat(this.replaced.map((r) => r.vector)),
      replaceFields: this.replaced.map((r) => r.fields),
      retire: Int32Array.from(this.retired),
    };
    this.appended = [];
    this.appendedCount = 0;
    this.appendedFields = [];
    this.replaced = [];
    this.retired = [];
    for (const backend of this.backends) backend.apply(changes);
  }

  private pump(): void {
    this.flushChanges();
    while (this.idle.length > 0 && this.queue.length > 0) {
      const backend = this.idle.pop()!;
      const group = this.queue.splice(0, this.maxBatch);
      this.stats.batches++;
      this.stats.requests += group.length;
      this.stats.maxBatch = Math.max(this.stats.maxBatch, group.length);
      backend.score(packBatch(group.map((g) => g.request))).then(
        (result) => {
          for (let i = 0; i < group.length; i++) {
            const start = result.resultOffsets[i];
            const end = result.resultOffsets[i + 1];
            group[i].resolve({
              indices: result.indices.subarray(start, end),
              scores: result.scores.subarray(start, end),
            });
          }
          this.idle.push(backend);
          this.pump();
        },
        (error: Error) => {
          for (const g of group) g.reject(error);
          this.idle.push(backend);
          this.pump();
        },
      );
    }
  }

  /** The first backend failure, if any (the service then reports itself unhealthy). */
  get failure(): Error | null {
    return this.backends.find((b) => b.failure)?.failure ?? null;
  }

  async close(): Promise<void> {
    await Promise.all(this.backends.map((b) => b.close()));
  }
}

function concat(parts: readonly Float32Array[]): Float32Array {
  let total = 0;
  for (const v of parts) total += v.length;
  const out = new Float32Array(total);
  let offset = 0;
  for (const v of parts) {
    out.set(v, offset);
    offset += v.length;
  }
  return out;
}
