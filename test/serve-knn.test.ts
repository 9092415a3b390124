import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TfidfSvdEncoder } from '../src/content/tfidf.js';
import { generateSynthetic } from '../src/data/synthetic.js';
import { saveModel } from '../src/model/artifact.js';
import { ContentKNN } from '../src/model/knn.js';
import { encoderPart } from '../src/serve/content.js';
import { createService } from '../src/serve/server.js';

test('a content-KNN artifact is served like ContentKNN ranks, and new items join it by text', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-knn-'));
  try {
    const { catalog } = generateSynthetic({ users: 50, items: 120, topics: 6, seed: 3 });
    const titles = catalog.fields.title;
    const encoder = TfidfSvdEncoder.fit(
      titles.map((t) => [t]),
      { dim: 24, fields: ['title'], minDf: 1, seed: 2 },
    );
    const dim = encoder.dim;
    const vectors = new Float32Array((titles.length + 1) * dim);
    vectors.set(encoder.encode(titles.map((t) => [t])), dim);
    const itemIds = ['', ...catalog.ids];
    const numItems = titles.length;
    // The layout of the library's save() for knn models.
    await saveModel(join(root, 'knn'), {
      kind: 'knn',
      model: {
        config: { dim, maxLength: 20 },
        numItems,
        parameters: () => [{ name: 'content', shape: [numItems + 1, dim], data: vectors }],
      },
      itemIds,
      numWarm: numItems,
      encoder: encoderPart(encoder),
    });
    const service = await createService({ modelDir: join(root, 'knn'), workers: 1 });
    try {
      const history = [3, 17, 42];
      const knn = new ContentKNN({ vectors, dim }, { maxLength: 20 });
      const scores = new Float32Array(numItems + 1);
      knn.score([Int32Array.from(history)], scores);
      const expected = Array.from(scores.keys())
        .filter((k) => k > 0 && !history.includes(k))
        .sort((a, b) => scores[b] - scores[a] || a - b)
        .slice(0, 10)
        .map((k) => itemIds[k]);
      const response = await service.app.inject({
        method: 'POST',
        url: '/recommend',
        payload: { items: history.map((k) => itemIds[k]), k: 10 },
      });
      assert.equal(response.statusCode, 200, response.body);
      const ranked = response.json().items as { id: string; score: number }[];
      assert.deepEqual(
        ranked.map((r) => r.id),
        expected,
      );

      // An item with the same title as item 5 is a perfect match (cosine 1) for a history of item 5.
      const added = await service.app.inject({
        method: 'POST',
        url: '/items',
        payload: { id: 'twin', text: titles[4] },
      });
      assert.equal(added.statusCode, 201, added.body);
      const twin = await service.app.inject({
        method: 'POST',
        url: '/recommend',
        payload: { items: [itemIds[5]], k: 3 },
      });
      const top = twin.json().items[0] as { id: string; score: number };
      assert.equal(top.id, 'twin');
      assert.ok(Math.abs(top.score - 1) < 1e-5);
    } finally {
      await service.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
