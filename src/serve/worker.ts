/**
 * Scoring worker thread: loads the model artifact, then applies catalog changes and scores batches posted by
 * WorkerBackend (engine.ts), in message order.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { applyChanges, type CatalogChanges } from './engine.js';
import { loadScoringModel } from './models.js';
import { Scorer, type ScoreBatch } from './scorer.js';

type Message =
  { type: 'score'; id: number; batch: ScoreBatch } | { type: 'changes'; changes: CatalogChanges };

const port = parentPort!;
try {
  const loaded = await loadScoringModel((workerData as { modelDir: string }).modelDir);
  const scorer = new Scorer(loaded.model, loaded.numWarm, loaded.fusion);
  port.on('message', (message: Message) => {
    if (message.type === 'changes') {
      applyChanges(scorer, message.changes);
      return;
    }
    try {
      const result = scorer.score(message.batch);
      const transfer = [
        result.resultOffsets.buffer,
        result.indices.buffer,
        result.scores.buffer,
      ] as ArrayBuffer[];
      port.postMessage({ type: 'result', id: message.id, result }, transfer);
    } catch (error) {
      port.postMessage({ type: 'error', id: message.id, message: (error as Error).message });
    }
  });
  port.postMessage({ type: 'ready' });
} catch (error) {
  port.postMessage({ type: 'fatal', message: `scoring worker: ${(error as Error).message}` });
}
