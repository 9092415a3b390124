/**
 * The explorer's JSON routes in process (no browser): each model's info follows a reload, and a request forwarded
 * to a model's own route (/ui/api/models/M/...) is counted once in /metrics.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadModel, saveModel } from '../src/model/artifact.js';
import { saveLexicalFusion } from '../src/model/fusion.js';
import { createService } from '../src/serve/server.js';
import { installExplorer } from '../src/serve/ui/explorer.js';
import { buildFixtureModel, type Fixture } from './serve-fixture.js';

let root: string;
let textModel: string;
let fusedModel: string;
let fixture: Fixture;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'deltarec-explorer-api-'));
  textModel = join(root, 'text');
  fusedModel = join(root, 'fused');
  fixture = await buildFixtureModel(textModel, { epochs: 0 });
  // The same network saved without a text encoder and with lexical fusion (weight 0.25, empty sparse rows).
  const loaded = await loadModel(textModel);
  const rows = loaded.manifest.items.ids.length;
  await saveModel(fusedModel, {
    model: loaded.model,
    itemIds: loaded.manifest.items.ids,
    numWarm: loaded.numWarm,
    lexical: {
      kind: 'lexical-fusion',
      save: (dir: string) =>
        saveLexicalFusion(dir, {
          weight: 0.25,
          rows: {
            rows,
            cols: 4,
            indptr: new Int32Array(rows + 1),
            indices: new Int32Array(0),
            values: new Float32Array(0),
          },
        }),
    },
  });
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function explorer() {
  const service = await createService({
    modelDir: textModel,
    workers: 0,
    catalogPath: join(root, 'catalog.log'),
  });
  await installExplorer(service.app, { services: [service], catalog: null });
  return service;
}

test('the explorer shows the fusion weight and text fields of the model serving now, after a reload', async () => {
  const service = await explorer();
  try {
    const models = async () => (await service.app.inject({ method: 'GET', url: '/ui/api/models' })).json();
    const first = (await models()).models[0];
    assert.equal(first.lexical_weight, null);
    assert.deepEqual(first.text_fields, ['title']);
    const reloaded = await service.app.inject({
      method: 'POST',
      url: '/admin/reload',
      payload: { model: fusedModel },
    });
    assert.equal(reloaded.statusCode, 200, reloaded.body);
    const second = (await models()).models[0];
    assert.equal(second.lexical_weight, 0.25);
    assert.deepEqual(second.text_fields, []);
    // The lexical term of the fused model is given for items now (0 with empty rows; null without fusion).
    const ids = fixture.split.itemIds;
    const items = await service.app.inject({
      method: 'GET',
      url: `/ui/api/items?ids=${ids[3]}&history=${ids[1]}`,
    });
    assert.equal(items.json().items[0].lexical, 0);
  } finally {
    await service.close();
  }
});

test('a request forwarded to a model route is counted once in /metrics, under that route', async () => {
  const service = await explorer();
  try {
    const ids = fixture.split.itemIds;
    const forwarded = await service.app.inject({
      method: 'POST',
      url: '/ui/api/models/0/recommend',
      payload: { items: [ids[1]] },
    });
    assert.equal(forwarded.statusCode, 200, forwarded.body);
    // A request for no model is answered by the forwarding route itself, and counted there.
    assert.equal(
      (await service.app.inject({ method: 'GET', url: '/ui/api/models/9/health' })).statusCode,
      404,
    );
    const metrics = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(
      metrics,
      /^deltarec_http_requests_total\{method="GET",route="\/ui\/api\/models\/:model\/\*",status="404"\} 1$/m,
    );
    const counted = metrics
      .split('\n')
      .filter((line) => line.startsWith('deltarec_http_requests_total{') && line.includes('method="POST"'));
    assert.deepEqual(counted, [
      'deltarec_http_requests_total{method="POST",route="/recommend",status="200"} 1',
    ]);
    assert.match(metrics, /^deltarec_recommend_stage_seconds_count\{stage="score"\} 1$/m);
  } finally {
    await service.close();
  }
});
