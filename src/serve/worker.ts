/**
 * Scoring worker thread: loads the model artifact, then applies catalog changes and scores requests posted by
 * WorkerBackend (engine.ts), in message order. Each request's answer is posted as soon as it is ready; the last
 * one of a batch also carries the batch's compute time.
 *
 * On the int8 path (large catalogs, serve/scorer.ts) requests are answered by the shared scan (serve/scan.ts): the
 * worker scans one chunk of the catalog for every request in the scan, then returns to its event loop, where the
 * messages that arrived meanwhile are taken in order: a batch joins the scan at once; a catalog change is applied
 * as soon as no request is being scanned, and the messages after it wait until then. So a change posted before a
 * request is visible to it, a request posted before a change does not see it, and every request sees one catalog
 * state (a change never lands in the middle of a request's pass). Elsewhere batches are scored one at a time.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { absoluteNow, applyChanges, type CatalogChanges, type WorkerReply } from './engine.js';
import { loadScoringModel } from './models.js';
import { SCAN_CHUNK, SharedScan } from './scan.js';
import { Scorer, type BatchTimes, type ScoreBatch } from './scorer.js';

type Message =
  | { type: 'score'; id: number; batch: ScoreBatch; sentAt: number }
  | { type: 'changes'; changes: CatalogChanges };

/** Options of a worker (WorkerBackend): the int8 path forced on or off, the shared scan off, its chunk size. */
export interface WorkerOptions {
  quantized?: boolean;
  scan?: boolean;
  chunk?: number;
}

const port = parentPort!;
const { modelDir, options = {} } = workerData as { modelDir: string; options?: WorkerOptions };

/** Posts request r's answer of batch `id`; `batchMs` >= 0 closes the batch (its compute time). */
function post(
  id: number,
  r: number,
  indices: Int32Array,
  scores: Float32Array,
  times: BatchTimes,
  toWorker: number,
  batchMs: number,
): void {
  const reply: WorkerReply = {
    type: 'answer',
    id,
    r,
    indices,
    scores,
    times,
    toWorker,
    sentAt: absoluteNow(),
    batchMs,
  };
  port.postMessage(reply, [indices.buffer, scores.buffer] as ArrayBuffer[]);
}

function postError(id: number, error: unknown): void {
  port.postMessage({ type: 'error', id, message: (error as Error).message } satisfies WorkerReply);
}

/**
 * Loads the model and keeps only the scorer. In a function of its own so that the loaded artifact (its manifest
 * lists every item id: a million strings at 1M items) is garbage once it returns; held by the module's frame, it
 * made every full collection of this thread take 60-150 ms instead of 5-10 (the service's latency tail).
 */
async function loadScorer(): Promise<Scorer> {
  const loaded = await loadScoringModel(modelDir);
  return new Scorer(loaded.model, loaded.numWarm, loaded.fusion, options.quantized);
}

try {
  const scorer = await loadScorer();
  const scan =
    scorer.quantizedPath && options.scan !== false
      ? new SharedScan(scorer, options.chunk ?? SCAN_CHUNK)
      : null;
  if (scan) serveByScan(scorer, scan);
  else {
    port.on('message', (message: Message) => {
      if (message.type === 'changes') return applyChanges(scorer, message.changes);
      const { id, batch } = message;
      const received = absoluteNow();
      try {
        scorer.scoreEach(batch, (r, indices, scores, times) => {
          // The last answer closes the batch (one message less per batch).
          post(
            id,
            r,
            indices,
            scores,
            times,
            received - message.sentAt,
            r === batch.count - 1 ? absoluteNow() - received : -1,
          );
        });
      } catch (error) {
        postError(id, error);
      }
    });
  }
  port.postMessage({ type: 'ready', scan: scan !== null });
} catch (error) {
  port.postMessage({ type: 'fatal', message: `scoring worker: ${(error as Error).message}` });
}

/** The message loop of the shared scan (see the file comment). */
function serveByScan(scorer: Scorer, scan: SharedScan): void {
  const inbox: Message[] = [];
  /** Batches with requests still in the scan: answers left to post. */
  const open = new Map<number, number>();
  let scheduled = false;
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(turn);
  };
  const join = (message: Extract<Message, { type: 'score' }>) => {
    const { id, batch } = message;
    const received = absoluteNow();
    const toWorker = received - message.sentAt;
    open.set(id, batch.count);
    try {
      scan.join(batch, (r, indices, scores, times) => {
        const left = open.get(id)! - 1;
        if (left === 0) open.delete(id);
        else open.set(id, left);
        post(id, r, indices, scores, times, toWorker, left === 0 ? absoluteNow() - received : -1);
      });
    } catch (error) {
      // Encoding failed: nothing of this batch joined (answers posted so far stand; the engine rejects the rest).
      open.delete(id);
      postError(id, error);
    }
  };
  function turn(): void {
    scheduled = false;
    while (inbox.length > 0) {
      const message = inbox[0];
      if (message.type === 'changes') {
        if (scan.size > 0) break; // applied once the requests in the scan are answered
        applyChanges(scorer, message.changes);
      } else join(message);
      inbox.shift();
    }
    if (scan.size > 0) {
      try {
        scan.step();
      } catch (error) {
        scan.clear();
        for (const id of open.keys()) postError(id, error);
        open.clear();
      }
    }
    if (scan.size > 0 || inbox.length > 0) schedule();
  }
  port.on('message', (message: Message) => {
    inbox.push(message);
    schedule();
  });
}
