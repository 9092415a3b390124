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
 * A worker on the int8 path answers by a shared scan (serve/scan.ts): it takes requests at any time (they join its
 * scan at the next chunk), so the engine sends each request at once, to the scanning worker with the fewest
 * requests in flight, instead of queueing it until a backend is free.
 * Catalog changes (appended rows, retired rows) are queued and sent to every backend, in order, before the
 * next batch, so a change acknowledged before a request is visible to that request.
 */
import { Worker } from 'node:worker_threads';
import { extend } from '../util/growable.js';
import { Scorer, type BatchTimes, type ScoreBatch } from './scorer.js';
import type { WorkerOptions } from './worker.js';

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
 * Catalog changes queued since the last batch: rows to append (count x d content vectors), rows to re-encode in
 * place (an updated item keeps its row; a deleted item added again gets its retired row back, recommendable again),
 * and rows to retire. Applying all appends, then all replacements in order, then all retirements gives the same
 * state as the interleaving they came in, because a replacement takes its row out of the retirements queued before
 * it (ScoringEngine.replace) and retiring only clears a row's flag; so a burst of changes costs one model append.
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

/** A request that was being scored by a worker that crashed (HTTP 503: retry; the worker is restarted). */
export class ScoringUnavailableError extends Error {}

export interface ScoreBackend {
  /** Set when the backend can no longer score (a crashed worker). */
  readonly failure: Error | null;
  /** Resolves with the failure when the backend stops scoring (a crashed worker); absent where it cannot. */
  readonly stopped?: Promise<Error>;
  /** Takes batches while others are being scored (a worker's shared scan): the engine dispatches at once. */
  readonly scans?: boolean;
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
  | { type: 'ready'; scan: boolean }
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
function startWorker(modelDir: string, options: WorkerOptions): Worker {
  const workerData = { modelDir, options };
  if (!import.meta.url.endsWith('.ts')) {
    return new Worker(new URL('./worker.js', import.meta.url), { workerData });
  }
  const tsx = import.meta.resolve('tsx/esm/api');
  const worker = new URL('./worker.ts', import.meta.url).href;
  const bootstrap = `(async () => { (await import(${JSON.stringify(tsx)})).register(); await import(${JSON.stringify(worker)}); })()`;
  return new Worker(bootstrap, { eval: true, workerData });
}

/**
 * Runs src/serve/worker.ts: loads the model artifact itself and scores batches it is sent (options: see
 * WorkerOptions; by default the int8 path and its shared scan from QUANTIZED_MIN_ITEMS items on).
 */
export class WorkerBackend implements ScoreBackend {
  private readonly worker: Worker;
  private readonly pending = new Map<
    number,
    { answer: BackendAnswer; resolve: (ms: number) => void; reject: (e: Error) => void }
  >();
  private nextId = 1;
  failure: Error | null = null;
  /** Set from the worker's ready message: it answers by a shared scan. */
  scans = false;
  readonly ready: Promise<void>;
  readonly stopped: Promise<Error>;
  private onStop: (error: Error) => void = () => {};

  constructor(modelDir: string, options: WorkerOptions = {}) {
    this.stopped = new Promise((resolve) => (this.onStop = resolve));
    this.worker = startWorker(modelDir, options);
    const thread = this.worker.threadId; // -1 once the thread is gone
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (message: WorkerReply) => {
        if (message.type === 'ready') {
          this.scans = message.scan;
          resolve();
        } else if (message.type === 'fatal') reject(new Error(message.message));
        else this.settle(message);
      });
      this.worker.on('error', (cause) => {
        const error = new Error(`scoring worker ${thread} crashed: ${cause.message}`, {
          cause,
        });
        this.fail(error);
        reject(error);
      });
      this.worker.on('exit', (code) => {
        const error = new Error(`scoring worker ${thread} exited with code ${code}`);
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
    if (this.failure) return;
    this.failure = error;
    for (const waiter of this.pending.values()) waiter.reject(new ScoringUnavailableError(error.message));
    this.pending.clear();
    this.onStop(error);
  }

  score(batch: ScoreBatch, answer: BackendAnswer): Promise<number> {
    if (this.failure) return Promise.reject(new ScoringUnavailableError(this.failure.message));
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
  /**
   * Estimated compute time per request in milliseconds (moving average over batches), used to size batches; not
   * updated by scanning backends (their requests share passes).
   */
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
  /** Scoring workers on the int8 path answer by a shared scan (serve/scan.ts; read by runtime.ts). Default true. */
  scan?: boolean;
  /** Starts a backend in place of one that stopped (a crashed worker); without it a stopped backend stays down. */
  restart?: () => Promise<ScoreBackend>;
  /** Where a stopped backend and its restart are reported (the service: stderr). */
  report?: (message: string) => void;
}

/** Stopped backends and their restarts, for /health and /metrics. */
export interface BackendHealth {
  /** Backends that stopped (crashed workers) since the start. */
  failures: number;
  restarts: number;
  /** Backends being restarted now. */
  restarting: number;
  lastFailure: string | null;
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
  /** Requests sent to each scanning backend and not answered yet. */
  private readonly inFlight = new Map<ScoreBackend, number>();
  private appended: Float32Array[] = [];
  private appendedCount = 0;
  private appendedFields: (Record<string, string> | undefined)[] = [];
  private replaced: { row: number; vector: Float32Array; fields?: Record<string, string> }[] = [];
  private retired: number[] = [];
  private changesScheduled = false;
  /** Every change sent to the backends, to replay into a restarted one (kept only when backends can restart). */
  private readonly applied = new AppliedChanges();
  // A first guess until the first batch is measured.
  readonly stats: EngineStats = {
    batches: 0,
    requests: 0,
    maxBatch: 0,
    requestCostMs: 0.5,
    singleBatchMs: 0,
  };
  readonly health: BackendHealth = { failures: 0, restarts: 0, restarting: 0, lastFailure: null };
  private readonly maxBatch: number;
  private readonly budgetMs: number;
  private readonly restart: (() => Promise<ScoreBackend>) | null;
  private readonly report: (message: string) => void;
  /** Set when a stopped backend could not be restarted: the service then reports itself failed. */
  private fatal: Error | null = null;
  private closed = false;

  constructor(
    private readonly backends: ScoreBackend[],
    options: EngineOptions = {},
  ) {
    this.idle = [...backends];
    this.maxBatch = options.maxBatch ?? 64;
    this.budgetMs = options.batchBudgetMs ?? 2;
    this.restart = options.restart ?? null;
    this.report = options.report ?? (() => {});
    for (const backend of backends) this.watch(backend);
  }

  /** On a backend's stop: reported, taken out of service, and replaced by a restarted one with every change. */
  private watch(backend: ScoreBackend): void {
    void backend.stopped?.then(async (error) => {
      if (this.closed) return;
      this.health.failures++;
      this.health.lastFailure = error.message;
      const at = this.backends.indexOf(backend);
      if (at >= 0) this.backends.splice(at, 1);
      const idle = this.idle.indexOf(backend);
      if (idle >= 0) this.idle.splice(idle, 1);
      void backend.close();
      if (!this.restart) {
        this.fatal = error;
        this.report(`${error.message}; scoring stopped (no restart)`);
        this.rejectIfNoBackend();
        return;
      }
      this.report(`${error.message}; the requests it was scoring got 503; starting another`);
      this.health.restarting++;
      let next: ScoreBackend;
      try {
        next = await this.restart();
      } catch (restartError) {
        this.health.restarting--;
        this.fatal = new Error(
          `${error.message}, and a new scoring worker failed to start: ${(restartError as Error).message}`,
        );
        this.report(this.fatal.message);
        this.rejectIfNoBackend();
        return;
      }
      this.health.restarting--;
      if (this.closed) return void next.close();
      // Synchronous from here: the replay holds every change flushed so far, later ones reach it with the others.
      this.flushChanges();
      const replay = this.applied.replay();
      if (replay) next.apply(replay);
      this.backends.push(next);
      this.idle.push(next);
      this.watch(next);
      this.health.restarts++;
      this.report(`scoring worker restarted (${this.applied.rows} appended rows replayed into it)`);
      this.pump();
    });
  }

  /** With no backend left and none being restarted, queued requests cannot be answered: they are rejected. */
  private rejectIfNoBackend(): void {
    if (this.backends.length > 0 || this.health.restarting > 0) return;
    const error = new ScoringUnavailableError(`scoring is down: ${this.fatal?.message ?? 'no backend'}`);
    for (const queued of this.queue.splice(0)) queued.reject(error);
  }

  recommend(request: ScoreRequest): Promise<ScoreResponse> {
    if (this.backends.length === 0 && this.health.restarting === 0)
      return Promise.reject(
        new ScoringUnavailableError(`scoring is down: ${this.fatal?.message ?? 'no backend'}`),
      );
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

  /** Queues a row to re-encode in place from a new content vector (a retired one becomes active again). */
  replace(row: number, vector: Float32Array, fields?: Record<string, string>): void {
    this.replaced.push({ row, vector, fields });
    // A row retired earlier in this burst and reused now (a deleted item added again) stays active.
    if (this.retired.includes(row)) this.retired = this.retired.filter((r) => r !== row);
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
    if (this.restart) this.applied.add(changes);
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
    const scanning = this.backends.filter((b) => b.scans && !b.failure);
    if (scanning.length > 0 && this.queue.length > 0) {
      // They join its scan at the next chunk: no reason to wait (see the file comment).
      const load = (b: ScoreBackend) => this.inFlight.get(b) ?? 0;
      const backend = scanning.reduce((a, b) => (load(b) < load(a) ? b : a));
      while (this.queue.length > 0) this.dispatch(backend, this.queue.splice(0, this.maxBatch));
      return;
    }
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
    if (backend.scans) this.inFlight.set(backend, (this.inFlight.get(backend) ?? 0) + group.length);
    let answered = 0;
    const answer: BackendAnswer = (r, indices, scores, times) => {
      answered++;
      if (backend.scans) this.inFlight.set(backend, this.inFlight.get(backend)! - 1);
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
        // A scanning backend's time is a pass shared with other requests, not the batch's cost: no estimate.
        if (backend.scans) return this.pump();
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
        if (backend.scans)
          this.inFlight.set(backend, this.inFlight.get(backend)! - (group.length - answered));
        else if (!backend.failure) this.idle.push(backend); // a stopped one is replaced (watch)
        this.pump();
      },
    );
  }

  /** Set when scoring stopped for good (a backend that could not be restarted): the service is unhealthy. */
  get failure(): Error | null {
    return this.fatal;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.backends.map((b) => b.close()));
  }
}

/**
 * The catalog changes applied so far, kept compact to replay into a restarted backend: every appended row (its
 * vector and fields as appended), the latest vector of every replaced row, and the retired rows. Appending them,
 * then replacing, then retiring gives the same rows as the changes did (a replaced row holds exactly what
 * appending its new vector would have given, serve-replace.test.ts).
 */
class AppliedChanges {
  private vectors = new Float32Array(0);
  private fields: (Record<string, string> | undefined)[] = [];
  rows = 0;
  private readonly replaced = new Map<number, { vector: Float32Array; fields?: Record<string, string> }>();
  private readonly retired = new Set<number>();

  add(changes: CatalogChanges): void {
    if (changes.count > 0) {
      const from = this.vectors.length;
      this.vectors = extend(this.vectors, from + changes.vectors.length);
      this.vectors.set(changes.vectors, from);
      for (let i = 0; i < changes.count; i++) this.fields.push(changes.fields[i]);
      this.rows += changes.count;
    }
    const width =
      changes.replaceRows.length > 0 ? changes.replaceVectors.length / changes.replaceRows.length : 0;
    changes.replaceRows.forEach((row, i) => {
      this.replaced.set(row, {
        vector: changes.replaceVectors.slice(i * width, (i + 1) * width),
        fields: changes.replaceFields[i],
      });
      this.retired.delete(row); // reused: active again
    });
    for (const row of changes.retire) this.retired.add(row);
  }

  /** All of it as one batch of changes, or null when there were none. */
  replay(): CatalogChanges | null {
    if (this.rows === 0 && this.replaced.size === 0 && this.retired.size === 0) return null;
    const replaced = [...this.replaced];
    return {
      vectors: this.vectors.slice(),
      count: this.rows,
      fields: [...this.fields],
      replaceRows: Int32Array.from(replaced, ([row]) => row),
      replaceVectors: concat(replaced.map(([, r]) => r.vector)),
      replaceFields: replaced.map(([, r]) => r.fields),
      retire: Int32Array.from(this.retired),
    };
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
