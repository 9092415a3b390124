/**
 * Shared by the serve-* tests: a small real SASRec (content-delta) on the synthetic dataset, trained briefly, with
 * the built-in text encoder saved in the artifact so the service can encode new items' text.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectContent } from '../src/content/projection.js';
import { TfidfSvdEncoder } from '../src/content/tfidf.js';
import { alignCatalog, prepareSplit } from '../src/data/split.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import type { PreparedSplit } from '../src/data/types.js';
import { saveModel } from '../src/model/artifact.js';
import { SASRec, sasrecConfig } from '../src/model/sasrec.js';
import { encoderPart, projectionPart } from '../src/serve/content.js';
import { train } from '../src/train/trainer.js';

export interface Fixture {
  split: PreparedSplit;
  /** Text fields per item index (aligned to split.itemIds). */
  fields: Record<string, string[]>;
}

export const FIELDS = ['title'];

/** Text encoder width (raw content vectors have this many values). */
const TEXT_DIM = 64;

/** Builds and saves the fixture model into dir (d: model width, default 32; the text encoder is the same). */
export async function buildFixtureModel(
  dir: string,
  options: { epochs?: number; d?: number } = {},
): Promise<Fixture> {
  const d = options.d ?? 32;
  const { interactions, catalog } = generateSynthetic({
    users: 400,
    items: 240,
    topics: 8,
    seed: 7,
    // Users mostly stay within a topic, so an item whose text is close to a history's items is a likely next item.
    stayProbability: 0.8,
    successorProbability: 0.1,
  });
  const split = prepareSplit(interactions);
  const aligned = alignCatalog(split, catalog, { strict: true });
  const docs = Array.from({ length: split.numWarm }, (_, k) => FIELDS.map((f) => aligned.fields[f][k + 1]));
  // The paper's pipeline: text encoder (TF-IDF + SVD to TEXT_DIM) then projection (standardize, PCA to d, L2), both
  // fitted on warm items and applied unchanged to every other item.
  const encoder = TfidfSvdEncoder.fit(docs, { dim: TEXT_DIM, fields: FIELDS, minDf: 1, seed: 1 });
  const all = Array.from({ length: split.numItems + 1 }, (_, k) => FIELDS.map((f) => aligned.fields[f][k]));
  const raw = encoder.encode(all);
  raw.fill(0, 0, TEXT_DIM);
  const { vectors: content, state: projection } = projectContent(raw, TEXT_DIM, split.numWarm, d);
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
    encoder: encoderPart(encoder),
    projection: projectionPart(projection),
  });
  return { split, fields: aligned.fields };
}

/** A new temporary folder `root` (name starting with prefix) with the untrained fixture model saved in root/model. */
export async function untrainedFixtureInTemp(
  prefix: string,
): Promise<{ root: string; modelDir: string; fixture: Fixture }> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  const modelDir = join(root, 'model');
  return { root, modelDir, fixture: await buildFixtureModel(modelDir, { epochs: 0 }) };
}

const CLI = new URL('../src/cli/cli.ts', import.meta.url).pathname;

/** `deltarec serve --port 0 ARGS` in a child process; resolves with its base URL once it listens. */
export function startServer(
  args: string[],
): Promise<{ child: ChildProcess; base: string; output: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) resolve({ child, base: match[1], output: () => output });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`server exited with ${code} before listening:\n${output}`)));
  });
}
