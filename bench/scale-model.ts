/**
 * The model of `npm run bench:serve -- --items N`: a genuine N-item content-delta SASRec, built once and saved like
 * any other model (the service loads it from disk).
 *
 * - Data: the generator's `shop` preset (src/data/synthetic-presets.ts) with N catalog items and TRAIN_USERS users
 *   (the preset has 200,000; a subset keeps the build short), and 128-d topic vectors for every catalog item
 *   (`topicVectors`: cosine about 0.5 within a topic), used as the content.
 * - Training: the protocol's split of those interactions (without its 3-core filter), d = 128, length 64, ONE epoch of the sampled softmax
 *   (k = 256, lazy Adam); validation as usual. A short training: the model is for measuring serving, not quality.
 * - The catalog items nobody interacted with are then appended as cold items (their content through the model's
 *   projection, zero delta), exactly as `POST /items` adds them, so every one of the N items is scored.
 * - Request bodies: the split's test users' histories (last 50 items), k = 10, written next to the model.
 */
import { writeFile } from 'node:fs/promises';
import { fit, save } from '../src/api.js';
import { applyProjection } from '../src/content/projection.js';
import { prepareSplit } from '../src/data/split.js';
import { generatePreset, PRESETS, topicVectors } from '../src/data/synthetic-presets.js';
import type { SASRec } from '../src/model/sasrec.js';

const TRAIN_USERS = 20_000;
const DIM = 128;

export async function buildScaleModel(
  modelDir: string,
  bodiesFile: string,
  items: number,
  log: (message: string) => void,
): Promise<void> {
  const started = Date.now();
  const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
  const { data, options } = generatePreset('shop', { items, users: TRAIN_USERS });
  const catalogIds = data.catalog.ids;
  const vectors = topicVectors(data.truth.itemTopic, options.topics, DIM, options.seed);
  const rowOf = new Map(catalogIds.map((id, row) => [id, row]));
  log(
    `generated ${catalogIds.length.toLocaleString('en-US')} items (${PRESETS.shop.topics} topics), ` +
      `${data.interactions.users.length.toLocaleString('en-US')} interactions of ${TRAIN_USERS} users (${seconds()} s)`,
  );
  // No n-core filter: at 1M items and 20,000 users (about 0.2 interactions per item) the protocol's 3-core filter
  // would leave almost no training item.
  const split = prepareSplit(data.interactions, { nCore: 0 });
  const content = new Float32Array((split.numItems + 1) * DIM);
  for (let k = 1; k <= split.numItems; k++) {
    const row = rowOf.get(split.itemIds[k])!;
    content.set(vectors.subarray(row * DIM, (row + 1) * DIM), k * DIM);
  }
  log(`split: ${split.numWarm} warm + ${split.numItems - split.numWarm} cold items; training 1 epoch`);
  const model = await fit(split, {
    model: 'content-delta',
    content,
    d: DIM,
    maxLength: 64,
    epochs: 1,
    loss: 'sampled',
    negatives: 256,
    handleSigint: false,
    onProgress: (p) => log(p.line),
  });

  // Every catalog item the split does not hold, as a cold item (content through the projection, zero delta).
  const known = new Set(split.itemIds);
  const rest = catalogIds.filter((id) => !known.has(id));
  const raw = new Float32Array(rest.length * DIM);
  rest.forEach((id, i) => {
    const row = rowOf.get(id)!;
    raw.set(vectors.subarray(row * DIM, (row + 1) * DIM), i * DIM);
  });
  (model.recommender as SASRec).appendItems(applyProjection(model.projection!, raw), rest.length);
  const full = { ...model, itemIds: [...model.itemIds, ...rest] };
  await save(full, modelDir);
  log(`model of ${full.itemIds.length - 1} items saved to ${modelDir} (${seconds()} s)`);

  const { inputs } = split.test;
  const bodies: string[] = [];
  for (let u = 0; u + 1 < inputs.offsets.length; u++) {
    const start = Math.max(inputs.offsets[u], inputs.offsets[u + 1] - 50);
    const history = Array.from(inputs.items.subarray(start, inputs.offsets[u + 1]), (k) => split.itemIds[k]);
    if (history.length > 0) bodies.push(JSON.stringify({ items: history, k: 10 }));
  }
  await writeFile(bodiesFile, JSON.stringify(bodies));
}
