/**
 * The shared scan of a scoring worker on the int8 path (docs/latency.md, "The shared scan"). Instead of scoring
 * batches one after the other, where a request that arrives during a pass over the catalog waits for that pass to
 * end before its own begins, the worker walks the catalog in chunks (SCAN_CHUNK items) round and round, and every
 * request being answered is scored against each chunk as it goes by (one `scanQuantized` call per chunk for all
 * of them, kernels/types.ts): a request joins at the next chunk, carries its own running threshold and exact list,
 * and is answered once it has covered every chunk below its limit once, wrapping around. So a request waits for at
 * most one chunk, never for a pass, and requests that overlap in time share the streaming of the chunks they both
 * cover. The answer is the exact path's whatever the start chunk (the kernel ranks by score, then index).
 *
 * Between chunks the worker returns to its event loop (serve/worker.ts), which admits new requests and catalog
 * changes in message order; a catalog change waits until the requests being scanned are answered and the
 * requests posted after it wait for the change (see worker.ts), so every request sees one catalog state, the one
 * of its turn in the message order, as with batches.
 */
import type { ScoreBatch, Scorer } from './scorer.js';

/**
 * Items per chunk, a multiple of the 64-item panels. Each step costs about 60 us beyond its items (1M items, one
 * thread: a pass in chunks of 16k, 32k and 64k items took 3.1, 1.6 to 2.4 and 0.4 to 0.6 ms more than the one-call
 * pass), and a request waits for the step in progress (about 1 ms at 64k items and a few requests) before joining.
 */
export const SCAN_CHUNK = 65536;

/** Receives a request's answer; times in milliseconds (score: from joining the scan to its last chunk). */
export type ScanAnswer = (
  indices: Int32Array,
  scores: Float32Array,
  times: { encode: number; score: number; topk: number },
) => void;

interface Joined {
  batch: ScoreBatch;
  r: number;
  state: Float32Array;
  limit: number;
  width: number;
  /** Chunks below its limit not covered yet. */
  remaining: number;
  lower: Float32Array;
  lowerCount: number;
  indices: Int32Array;
  scores: Float32Array;
  count: number;
  candidates: number;
  encodeMs: number;
  joined: number;
  answer: ScanAnswer;
}

export class SharedScan {
  private readonly active: Joined[] = [];
  /** The next chunk to scan. */
  private position = 0;
  // Packed arrays of the requests being scanned, reused from step to step.
  private states = new Float32Array(0);
  private limits = new Int32Array(0);
  private offsets = new Int32Array(1);
  private counts = { lowerCount: new Int32Array(0), count: new Int32Array(0), candidates: new Int32Array(0) };
  private lower = new Float32Array(0);
  private indices = new Int32Array(0);
  private scores = new Float32Array(0);

  constructor(
    private readonly scorer: Scorer,
    private readonly chunk = SCAN_CHUNK,
  ) {
    if (!(chunk > 0 && chunk % 64 === 0))
      throw new Error(`SharedScan: chunk must be a positive multiple of 64, got ${chunk}`);
    if (!scorer.quantizedPath) throw new Error('SharedScan: the scorer is not on the int8 path');
  }

  /** Requests being scanned. */
  get size(): number {
    return this.active.length;
  }

  /** Encodes a batch and lets its requests join the scan at the next chunk; `answer(r, ...)` is called per request. */
  join(batch: ScoreBatch, answer: (r: number, ...rest: Parameters<ScanAnswer>) => void): void {
    const started = performance.now();
    const { count } = batch;
    const d = this.scorer.d;
    const states = new Float32Array(count * d);
    const limits = new Int32Array(count);
    const widths = new Int32Array(count);
    this.scorer.prepare(batch, states, limits, widths);
    const joined = performance.now();
    for (let r = 0; r < count; r++) {
      const width = widths[r];
      const request: Joined = {
        batch,
        r,
        state: states.subarray(r * d, r * d + d),
        limit: limits[r],
        width,
        remaining: Math.ceil(Math.max(0, limits[r]) / this.chunk),
        lower: new Float32Array(width),
        lowerCount: 0,
        indices: new Int32Array(width),
        scores: new Float32Array(width),
        count: 0,
        candidates: 0,
        encodeMs: joined - started,
        joined,
        answer: (indices, scores, times) => answer(r, indices, scores, times),
      };
      if (request.remaining === 0 || width === 0) this.finish(request);
      else this.active.push(request);
    }
  }

  /** Scans the next chunk for every request in the scan and answers those that have now covered every chunk. */
  step(): void {
    const requests = this.active;
    if (requests.length === 0) return;
    const rows = requests.length;
    const n = this.scorer.rows;
    const chunks = Math.ceil(n / this.chunk);
    this.position %= chunks;
    const from = this.position * this.chunk;
    const to = Math.min(n, from + this.chunk);
    this.pack(requests);
    this.scorer.scanRange(
      {
        ...this.counts,
        lower: this.lower,
        indices: this.indices,
        scores: this.scores,
        offsets: this.offsets,
      },
      this.states,
      this.limits,
      rows,
      from,
      to,
    );
    this.position = (this.position + 1) % chunks;
    const still: Joined[] = [];
    requests.forEach((request, i) => {
      const o = this.offsets[i];
      request.lower.set(this.lower.subarray(o, o + request.width));
      request.indices.set(this.indices.subarray(o, o + request.width));
      request.scores.set(this.scores.subarray(o, o + request.width));
      request.lowerCount = this.counts.lowerCount[i];
      request.count = this.counts.count[i];
      request.candidates = this.counts.candidates[i];
      if (from < request.limit) request.remaining--;
      if (request.remaining > 0) still.push(request);
      else this.finish(request);
    });
    requests.splice(0, requests.length, ...still);
  }

  /** Gives up every request being scanned (after a failed step; the worker answers them with the error). */
  clear(): void {
    this.active.length = 0;
  }

  private finish(request: Joined): void {
    const scanned = performance.now();
    request.indices.fill(-1, request.count);
    const [indices, scores] = this.scorer.answerFrom(
      request.batch,
      request.r,
      request.indices,
      request.scores,
      0,
      request.width,
    );
    request.answer(indices, scores, {
      encode: request.encodeMs,
      score: scanned - request.joined,
      topk: performance.now() - scanned,
    });
  }

  /** Lays the requests' states, limits and lists out contiguously for the kernel. */
  private pack(requests: readonly Joined[]): void {
    const rows = requests.length;
    const d = this.scorer.d;
    if (this.limits.length < rows) {
      this.states = new Float32Array(rows * 2 * d);
      this.limits = new Int32Array(rows * 2);
      this.offsets = new Int32Array(rows * 2 + 1);
      this.counts = {
        lowerCount: new Int32Array(rows * 2),
        count: new Int32Array(rows * 2),
        candidates: new Int32Array(rows * 2),
      };
    }
    let total = 0;
    requests.forEach((request, i) => {
      this.offsets[i] = total;
      total += request.width;
    });
    this.offsets[rows] = total;
    if (this.lower.length < total) {
      this.lower = new Float32Array(total * 2);
      this.indices = new Int32Array(total * 2);
      this.scores = new Float32Array(total * 2);
    }
    requests.forEach((request, i) => {
      const o = this.offsets[i];
      this.states.set(request.state, i * d);
      this.limits[i] = request.limit;
      this.lower.set(request.lower, o);
      this.indices.set(request.indices, o);
      this.scores.set(request.scores, o);
      this.counts.lowerCount[i] = request.lowerCount;
      this.counts.count[i] = request.count;
      this.counts.candidates[i] = request.candidates;
    });
  }
}
