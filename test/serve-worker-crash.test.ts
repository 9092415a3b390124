/**
 * A scoring worker that crashes is reported (stderr, /health, /metrics), the requests it was scoring get 503, and
 * a new worker takes its place with every catalog change replayed into it, so answers are the same as before.
 */
import assert from 'node:assert/strict';
import { cp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import type { WorkerBackend } from '../src/serve/engine.js';
import { createService } from '../src/serve/server.js';
import { untrainedFixtureInTemp, type Fixture } from './serve-fixture.js';

let root: string;
let modelDir: string;
let fixture: Fixture;

before(async () => ({ root, modelDir, fixture } = await untrainedFixtureInTemp('deltarec-worker-crash-')));

after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('a crashed scoring worker is reported, restarted with the catalog changes, and answers as before', async () => {
  const reported: string[] = [];
  const service = await createService({
    modelDir,
    workers: 1,
    catalogPath: join(root, 'catalog.log'),
    reportError: (message) => reported.push(message),
  });
  try {
    const ids = fixture.split.itemIds;
    const inject = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) =>
      service.app.inject({ method, url, payload });
    assert.equal(
      (await inject('POST', '/items', { id: 'added-1', text: fixture.fields.title[3] })).statusCode,
      201,
    );
    assert.equal((await inject('DELETE', `/items/${ids[2]}`)).statusCode, 200);
    const request = { items: [ids[1], 'added-1'], k: 20, exclude_seen: false };
    const before = await inject('POST', '/recommend', request);
    assert.equal(before.statusCode, 200, before.body);

    // Crash the worker: a message its handler cannot take throws in the worker thread.
    const backend = (service.engine as unknown as { backends: WorkerBackend[] }).backends[0];
    (backend as unknown as { worker: Worker }).worker.postMessage({ type: 'changes', changes: null });

    let health = (await inject('GET', '/health')).json();
    for (let i = 0; i < 400 && health.scoring.worker_restarts < 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      health = (await inject('GET', '/health')).json();
    }
    assert.equal(health.status, 'ok');
    assert.equal(health.scoring.worker_failures, 1);
    assert.equal(health.scoring.worker_restarts, 1);
    assert.match(health.scoring.last_failure, /^scoring worker \d+ crashed: /);
    assert.equal(reported.length, 2, reported.join('\n'));
    assert.match(
      reported[0],
      /^scoring worker \d+ crashed: .*; the requests it was scoring got 503; starting another$/,
    );
    assert.equal(reported[1], 'scoring worker restarted (1 appended rows replayed into it)');

    const after = await inject('POST', '/recommend', request);
    assert.equal(after.statusCode, 200, after.body);
    assert.deepEqual(after.json(), before.json());
    assert.ok(
      !after.json().items.some((item: { id: string }) => item.id === ids[2]),
      'the deleted item stays out',
    );
    const metrics = (await inject('GET', '/metrics')).body;
    assert.match(metrics, /^deltarec_scoring_worker_failures_total 1$/m);
    assert.match(metrics, /^deltarec_scoring_worker_restarts_total 1$/m);
  } finally {
    await service.close();
  }
});

test('a scoring worker that cannot be started again leaves the service failed: /health 503, /recommend 503', async () => {
  const moved = join(root, 'model-moved');
  const copy = join(root, 'model-copy');
  await cp(modelDir, copy, { recursive: true });
  const reported: string[] = [];
  const service = await createService({
    modelDir: copy,
    workers: 1,
    catalogPath: join(root, 'catalog-2.log'),
    reportError: (message) => reported.push(message),
  });
  try {
    await rename(copy, moved); // the new worker cannot load the artifact
    const backend = (service.engine as unknown as { backends: WorkerBackend[] }).backends[0];
    (backend as unknown as { worker: Worker }).worker.postMessage({ type: 'changes', changes: null });
    let health = await service.app.inject({ method: 'GET', url: '/health' });
    for (let i = 0; i < 400 && health.statusCode !== 503; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      health = await service.app.inject({ method: 'GET', url: '/health' });
    }
    assert.equal(health.statusCode, 503);
    assert.equal(health.json().status, 'failed');
    assert.match(
      health.json().message,
      /^scoring worker \d+ crashed: .*, and a new scoring worker failed to start: /,
    );
    assert.equal(reported.length, 2, reported.join('\n'));
    const answer = await service.app.inject({
      method: 'POST',
      url: '/recommend',
      payload: { items: [fixture.split.itemIds[1]] },
    });
    assert.equal(answer.statusCode, 503);
    assert.match(answer.json().message, /^scoring is down: scoring worker \d+ crashed/);
  } finally {
    await service.close();
  }
});
