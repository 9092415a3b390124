/**
 * Scoring worker thread: loads the model artifact, then applies catalog changes and scores batches posted by
 * WorkerBackend (engine.ts), in message order. Each request's answer is posted as soon as its top-k is ready; the
 * last one also carries the batch's compute time.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { absoluteNow, applyChanges, type CatalogChanges, type WorkerReply } from './engine.js';
import { loadScoringModel } from './models.js';
import { Scorer, type ScoreBatch } from './scorer.js';

type Message =
  | { type: 'score'; id: number; batch: ScoreBatch; sentAt: number }
  | { type: 'changes'; changes: CatalogChanges };

const port = parentPort!;
try {
  const loaded = await loadScoringModel((workerData as { modelDir: string }).modelDir);
  const scorer = new Scorer(loaded.model, loaded.numWarm, loaded.fusion);
  port.on('message', (message: Message) => {
    if (message.type === 'changes') {
      applyChanges(scorer, message.changes);
      return;
    }
    const { id, batch } = message;
    const received = absoluteNow();
    const toWorker = received - message.sentAt;
    try {
      scorer.scoreEach(batch, (r, indices, scores, times) => {
        const sentAt = absoluteNow();
        const reply: WorkerReply = {
          type: 'answer',
          id,
          r,
          indices,
          scores,
          times,
          toWorker,
          sentAt,
          // The last answer closes the batch (one message less per batch).
          batchMs: r === batch.count - 1 ? sentAt - received : -1,
        };
        port.postMessage(reply, [indices.buffer, scores.buffer] as ArrayBuffer[]);
      });
    } catch (error) {
      port.postMessage({ type: 'error', id, message: (error as Error).message } satisfies WorkerReply);
    }
  });
  port.postMessage({ type: 'ready' });
} catch (error) {
  port.postMessage({ type: 'fatal', message: `scoring worker: ${(error as Error).message}` });
}
