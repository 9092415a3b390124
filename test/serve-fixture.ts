/**
 * Shared by the serve-* tests: a small real SASRec (content-delta) on the synthetic dataset, trained briefly, with
 * the built-in text encoder saved in the artifact so the service can encode new items' text.
 */
import { TfidfSvdEncoder } from '../src/content/tfidf.js';
import { alignCatalog, prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import type { PreparedSplit } from '../src/data/types.js';
import { saveModel } from '../src/model/artifact.js';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { train } from '../src/train/trainer.js';

export interface Fixture {
  split: PreparedSplit;
  /** Text fields per item index (aligned to split.itemIds). */
  fields: Record<string, string[]>;
}

export const FIELDS = ['title'];

/** Builds and saves the fixture model into dir. */
export async function buildFixtureModel(dir: string, options: { epochs?: number } = {}): Promise<Fixture> {
  const d = 32;
  const { interactions, catalog } = generateSynthetic({ users: 400, items: 240, topics: 8, seed: 7 });
  const split = prepareSplit(interactions);
  const aligned = alignCatalog(split, catalog, { strict: true });
  const docs = Array.from({ length: split.numWarm }, (_, k) => FIELDS.map((f) => aligned.fields[f][k + 1]));
  const encoder = TfidfSvdEncoder.fit(docs, { dim: d, fields: FIELDS, minDf: 1, seed: 1 });
  // Content matrix for every split item (warm and cold), unit rows, row 0 zeros.
  const all = Array.from({ length: split.numItems }, (_, k) => FIELDS.map((f) => aligned.fields[f][k + 1]));
  const encoded = encoder.encode(all);
  const content = new Float32Array((split.numItems + 1) * d);
  for (let k = 0; k < split.numItems; k++) {
    let norm = 0;
    for (let j = 0; j < d; j++) norm += encoded[k * d + j] ** 2;
    norm = Math.sqrt(norm) || 1;
    for (let j = 0; j < d; j++) content[(k + 1) * d + j] = encoded[k * d + j] / norm;
  }
  const model = new SASRec(
    sasrecConfig({ numItems: split.numWarm, d, maxLength: 16, dropout: 0.1, seed: 3 }),
    content.subarray(0, (split.numWarm + 1) * d),
  );
  const epochs = options.epochs ?? 2;
  if (epochs > 0)
    await train(model, split.train, { epochs, batchSize: 64, handleSigint: false, onProgress: () => {} });
  model.appendItems(content.subarray((split.numWarm + 1) * d), split.numItems - split.numWarm);
  await saveModel(dir, {
    model,
    itemIds: split.itemIds,
    numWarm: split.numWarm,
    encoder: { kind: 'tfidf-svd', save: (path) => encoder.save(path) },
  });
  return { split, fields: aligned.fields };
}
