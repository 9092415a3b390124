/**
 * Latency-aware micro-batching scoring engine. Requests queue up while the backends are busy; a backend that
 * becomes free takes whatever is queued (never waiting for a batch to fill, so there is no batching timer), split
 * evenly over the free backends and capped so that the batch's estimated compute time stays within a budget (the
 * estimate follows the measured compute time per request; the budget is at least twice the measured cost of a
 * batch of one, which a large catalog's pass alone can exceed). A batch is one encoder pass and one pass over the
 * item matrix for all its requests; each request is answered as soon as its own top-k is ready, with where its time went
 * (queue, transfer, encode, score, top-k) for the metrics.
 *
 * Backends: worker threads (the default: the event loop never scores), or inline (scoring runs on the event loop
 * in a setImmediate callback, one batch at a time, so the loop is busy for at most one batch; no thread hand-offs).
 * Catalog changes (appended rows, retired rows) are queued and sent to every backend, in order, before the
 * next batch, so a change acknowledged before a request is visible to that request.
 */
import { Worker } from 'node:worker_threads';
import { Scorer, type BatchTimes, type ScoreBatch } from './scorer.js';

export interface ScoreRequest {
  history: Int32Array; // rows, most recent last
  exclude: Int32Array; // rows never returned
  k: number;
  includeCold: boolean;
  excludeSeen: boolean;
}

/** Where a request's time went, in seconds. */
export interface RequestStages {
  /** From arrival at the engine to the dispatch of its batch. */
  queue: number;
  /** Posting the batch to the scoring worker plus posting the answer back (0 inline). */
  transfer: number;
  /** Its batch's sequence encoding. */
  encode: number;
  /** Its batch's catalog product (and lexical fusion). */
  score: number;
  /** From the end of scoring to its own top-k (the top-k of the requests before it in the batch included). */
  topk: number;
}

export interface ScoreResponse {
  indices: Int32Array;
  scores: Float32Array;
  stages: RequestStages;
}

/** Stage times of one answer, in milliseconds. */
export interface AnswerTimes extends BatchTimes {
  transfer: number;
}

/** Receives request r of a batch as soon as it is ready. */
export type BackendAnswer = (
  r: number,
  indices: Int32Array,
  scores: Float32Array,
  times: AnswerTimes,
) => void;

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
  /**
   * Scores a batch, calling `answer` for each request as soon as it is ready; resolves with the batch's compute
   * time in milliseconds once every request is answered.
   */
  score(batch: ScoreBatch, answer: BackendAnswer): Promise<number>;
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

  score(batch: ScoreBatch, answer: BackendAnswer): Promise<number> {
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        try {
          const started = performance.now();
          this.scorer.scoreEach(batch, (r, indices, scores, times) =>
            answer(r, indices, scores, { ...times, transfer: 0 }),
          );
          resolve(performance.now() - started);
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

/** A message from the scoring worker (worker.ts). Times are absolute (timeOrigin + now), in milliseconds. */
export type WorkerReply =
  | { type: 'ready' }
  | {
      type: 'answer';
      id: number;
      r: number;
      indices: Int32Array;
      scores: Float32Array;
      times: BatchTimes;
      /** The batch's post to the worker, in milliseconds. */
      toWorker: number;
      sentAt: number;
      /** On the batch's last answer: the batch's compute time in the worker (ms); -1 on the others. */
      batchMs: number;
    }
  | { type: 'error'; id: number; message: string }
  | { type: 'fatal'; message: string };

/** A clock that means the same in every thread: milliseconds since the epoch, sub-millisecond resolution. */
export function absoluteNow(): number {
  return performance.timeOrigin + performance.now();
}

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
    { answer: BackendAnswer; resolve: (ms: number) => void; reject: (e: Error) => void }
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
    if (message.type === 'answer') {
      const { times } = message;
      const transfer = message.toWorker + absoluteNow() - message.sentAt;
      waiter.answer(message.r, message.indices, message.scores, { ...times, transfer });
      if (message.batchMs < 0) return;
      this.pending.delete(message.id);
      waiter.resolve(message.batchMs);
      return;
    }
    this.pending.delete(message.id);
    waiter.reject(new Error(message.message));
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }

  score(batch: ScoreBatch, answer: BackendAnswer): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { answer, resolve, reject });
      const transfer = [
        batch.inputOffsets,
        batch.inputItems,
        batch.excludeOffsets,
        batch.excludeItems,
        batch.k,
      ].map((a) => a.buffer as ArrayBuffer);
      this.worker.postMessage({ type: 'score', id, batch, sentAt: absoluteNow() }, transfer);
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
  /** Estimated compute time per request in milliseconds (moving average over batches), used to size batches. */
  requestCostMs: number;
  /**
   * Compute time of a batch of one request in milliseconds (moving average over such batches; 0 before the first):
   * what every batch pays for its pass over the item matrix. A batch may take twice this when that exceeds the
   * budget, else a 1M-item catalog (about 30 ms a pass) would never batch and pay the pass per request.
   */
  singleBatchMs: number;
}

export interface EngineOptions {
  /** Most requests in one batch. Default 64. */
  maxBatch?: number;
  /**
   * Estimated compute time one batch may take, in milliseconds (at least one request per batch), raised to twice
   * the measured cost of a batch of one when that is more. Default 2.
   */
  batchBudgetMs?: number;
}

interface Queued {
  request: ScoreRequest;
  enqueued: number;
  resolve: (r: ScoreResponse) => void;
  reject: (e: Error) => void;
}

/** Weight of the newest batch in the moving average of the compute time per request. */
const COST_SMOOTHING = 0.2;

export class ScoringEngine {
  private readonly queue: Queued[] = [];
  private readonly idle: ScoreBackend[];
  private appended: Float32Array[] = [];
  private appendedCount = 0;
  private appendedFields: (Record<string, string> | undefined)[] = [];
  private replaced: { row: number; vector: Float32Array; fields?: Record<string, string> }[] = [];
  private retired: number[] = [];
  private changesScheduled = false;
  // A first guess until the first batch is measured.
  readonly stats: EngineStats = {
    batches: 0,
    requests: 0,
    maxBatch: 0,
    requestCostMs: 0.5,
    singleBatchMs: 0,
  };
  private readonly maxBatch: number;
  private readonly budgetMs: number;

  constructor(
    private readonly backends: ScoreBackend[],
    options: EngineOptions = {},
  ) {
    this.idle = [...backends];
    this.maxBatch = options.maxBatch ?? 64;
    this.budgetMs = options.batchBudgetMs ?? 2;
  }

  recommend(request: ScoreRequest): Promise<ScoreResponse> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, enqueued: performance.now(), resolve, reject });
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

  /** Requests the next batch may take: within the time budget by the current cost estimate, at least 1. */
  private batchCap(): number {
    const budget = Math.max(this.budgetMs, 2 * this.stats.singleBatchMs);
    const cap = Math.floor(budget / this.stats.requestCostMs);
    return Math.max(1, Math.min(this.maxBatch, cap));
  }

  private pump(): void {
    this.flushChanges();
    while (this.idle.length > 0 && this.queue.length > 0) {
      const share = Math.ceil(this.queue.length / this.idle.length);
      this.dispatch(this.idle.pop()!, this.queue.splice(0, Math.min(share, this.batchCap())));
    }
  }

  private dispatch(backend: ScoreBackend, group: Queued[]): void {
    this.stats.batches++;
    this.stats.requests += group.length;
    this.stats.maxBatch = Math.max(this.stats.maxBatch, group.length);
    const dispatched = performance.now();
    const answer: BackendAnswer = (r, indices, scores, times) => {
      const queued = group[r];
      queued.resolve({
        indices,
        scores,
        stages: {
          queue: (dispatched - queued.enqueued) / 1000,
          transfer: times.transfer / 1000,
          encode: times.encode / 1000,
          score: times.score / 1000,
          topk: times.topk / 1000,
        },
      });
    };
    backend.score(packBatch(group.map((g) => g.request)), answer).then(
      (ms) => {
        const cost = this.stats.requestCostMs;
        this.stats.requestCostMs = cost + COST_SMOOTHING * (ms / group.length - cost);
        if (group.length === 1) {
          const single = this.stats.singleBatchMs;
          this.stats.singleBatchMs = single === 0 ? ms : single + COST_SMOOTHING * (ms - single);
        }
        this.idle.push(backend);
        this.pump();
      },
      (error: Error) => {
        for (const g of group) g.reject(error); // no effect on the requests already answered
        this.idle.push(backend);
        this.pump();
      },
    );
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
