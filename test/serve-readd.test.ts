/**
 * Deleting an item and adding it again reuses its row (no growth until a restart compacts the log), with the same
 * answers live and after a restart.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createService } from '../src/serve/server.js';
import { untrainedFixtureInTemp, type Fixture } from './serve-fixture.js';

let root: string;
let modelDir: string;
let fixture: Fixture;

before(async () => ({ root, modelDir, fixture } = await untrainedFixtureInTemp('deltarec-readd-')));

after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('an item deleted and added again gets its row back, live and after a restart', async () => {
  const catalogPath = join(root, 'catalog.log');
  const ids = fixture.split.itemIds;
  const titles = fixture.fields.title;
  const request = { items: [ids[1], ids[2]], k: 1000, exclude_seen: false };
  let service = await createService({ modelDir, workers: 1, catalogPath });
  const inject = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object) =>
    service.app.inject({ method, url, payload });
  let answer;
  try {
    assert.equal((await inject('POST', '/items', { id: 'x', text: titles[3] })).statusCode, 201);
    const rows = (await inject('GET', '/health')).json().rows;
    for (let i = 0; i < 5; i++) {
      assert.equal((await inject('DELETE', '/items/x')).statusCode, 200);
      const gone = (await inject('POST', '/recommend', request)).json().items;
      assert.ok(!gone.some((item: { id: string }) => item.id === 'x'));
      const added = await inject('POST', '/items', { id: 'x', text: titles[4 + i] });
      assert.equal(added.statusCode, 201, added.body);
      assert.equal((await inject('GET', '/health')).json().rows, rows, `cycle ${i} added no row`);
    }
    answer = (await inject('POST', '/recommend', request)).json();
    assert.ok(
      answer.items.some((item: { id: string }) => item.id === 'x'),
      'x is recommendable again',
    );
  } finally {
    await service.close();
  }
  service = await createService({ modelDir, workers: 1, catalogPath });
  try {
    assert.deepEqual((await inject('POST', '/recommend', request)).json(), answer);
  } finally {
    await service.close();
  }
});
