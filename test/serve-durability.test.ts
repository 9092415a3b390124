import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CatalogLog, decodeVector, encodeVector, replayLog } from '../src/serve/catalog-log.js';
import { Random } from '../src/util/random.js';
import { buildFixtureModel, startServer } from './serve-fixture.js';

test('SIGKILL during a burst of POST /items loses no acknowledged item', { timeout: 180_000 }, async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-durable-'));
  const modelDir = join(root, 'model');
  let child: ChildProcess | null = null;
  try {
    await buildFixtureModel(modelDir, { epochs: 0 });
    const first = await startServer(['--model', modelDir]);
    child = first.child;
    const acknowledged: string[] = [];
    let attempted = 0;
    let killed = false;
    const exited = new Promise((resolve) => first.child.on('exit', resolve));
    // 16 concurrent writers add items until the server dies under them; the kill comes once 150 are acknowledged.
    const writer = async (w: number) => {
      for (let i = 0; ; i++) {
        const id = `burst-${w}-${i}`;
        const vector = Array.from({ length: 64 }, (_, j) => Math.sin(w * 7 + i * 3 + j));
        const body = i % 3 === 0 ? { id, text: 'bafebe bamu begof' } : { id, vector };
        attempted++;
        let status: number;
        try {
          const response = await fetch(`${first.base}/items`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(body),
          });
          status = response.status;
          await response.arrayBuffer();
        } catch {
          return; // connection reset or refused after the kill: not acknowledged
        }
        assert.equal(status, 201);
        acknowledged.push(id);
        if (acknowledged.length >= 150 && !killed) {
          killed = true;
          first.child.kill('SIGKILL');
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, w) => writer(w)));
    await exited;
    assert.ok(killed, 'the server was killed during the burst');
    assert.ok(acknowledged.length >= 150);

    const second = await startServer(['--model', modelDir]);
    child = second.child;
    const replayed = Number(/(\d+) catalog changes replayed/.exec(second.output())![1]);
    t.diagnostic(
      `acknowledged ${acknowledged.length} of ${attempted} attempted; replayed ${replayed} after SIGKILL`,
    );
    assert.ok(replayed >= acknowledged.length, `replayed ${replayed} < acknowledged ${acknowledged.length}`);
    for (const id of acknowledged) {
      const response = await fetch(`${second.base}/items/${id}`);
      assert.equal(response.status, 200, `acknowledged item ${id} is missing after the restart`);
    }
    // The restored items are recommendable: one added by text ranks for a history of its own kind.
    const ranked = (await (
      await fetch(`${second.base}/recommend`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ items: [acknowledged[0]], k: 1000 }),
      })
    ).json()) as { items: { id: string }[] };
    assert.ok(ranked.items.some((r) => r.id.startsWith('burst-')));
  } finally {
    child?.kill('SIGKILL');
    await rm(root, { recursive: true, force: true });
  }
});

test('the catalog log replays intact records, drops only a torn last line and rejects any corrupt line', async () => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-log-'));
  const path = join(root, 'catalog.log');
  try {
    const vector = Float32Array.of(0.5, -1.25, 3);
    const { log, replay } = await CatalogLog.open(path, { model: 'fingerprint-1' });
    assert.equal(replay.records.length, 0);
    await Promise.all([
      log.append({ op: 'put', id: 'a', vector: encodeVector(vector), t: 1 }),
      log.append({
        op: 'put',
        id: 'b',
        vector: encodeVector(vector),
        fields: { title: 'ünïcode "quoted"' },
        t: 2,
      }),
      log.append({ op: 'delete', id: 'a', t: 3 }),
    ]);
    await log.close();
    const intact = await readFile(path);

    // A write cut short by a crash: a partial last line, without its newline.
    await appendFile(path, '0badc0de {"op":"put","id":"c","vec');
    const reopened = await CatalogLog.open(path, { model: 'fingerprint-1' });
    assert.equal(reopened.replay.header?.model, 'fingerprint-1');
    assert.deepEqual(
      reopened.replay.records.map((r) => [r.op, r.id]),
      [
        ['put', 'a'],
        ['put', 'b'],
        ['delete', 'a'],
      ],
    );
    assert.equal(reopened.replay.droppedTail, true);
    // The torn tail is truncated away, so new records follow intact ones.
    await reopened.log.append({ op: 'delete', id: 'b', t: 5 });
    await reopened.log.close();
    const after = replayLog(await readFile(path), path);
    assert.equal(after.droppedTail, false);
    assert.deepEqual(after.records.at(-1), { op: 'delete', id: 'b', t: 5 });

    // A complete last line (newline and all) that is corrupt is not a torn write: the start stops, naming it.
    await writeFile(path, intact);
    await appendFile(path, '12345678 {"op":"delete","id":"z","t":4}\n');
    await assert.rejects(
      CatalogLog.open(path, { model: 'fingerprint-1' }),
      /catalog\.log:5: corrupt catalog record/,
    );
    assert.deepEqual(
      await readFile(path),
      Buffer.concat([intact, Buffer.from('12345678 {"op":"delete","id":"z","t":4}\n')]),
    );

    const record = replayLog(intact, path).records[1];
    assert.ok(record.op === 'put');
    assert.deepEqual(record.fields, { title: 'ünïcode "quoted"' });
    assert.deepEqual(decodeVector(record.vector, 3, 'test'), vector);

    // A damaged record followed by valid ones: refuse to guess.
    const damaged = Buffer.from(intact);
    damaged[intact.indexOf('\n') + 20] ^= 1;
    await writeFile(path, damaged);
    await assert.rejects(
      CatalogLog.open(path, { model: 'fingerprint-1' }),
      /catalog\.log:2: corrupt catalog record/,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('compaction keeps exactly the live state through hundreds of random changes', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'deltarec-compact-'));
  const path = join(root, 'catalog.log');
  try {
    const random = new Random(5);
    const expected = new Map<string, { fields: string; deleted: boolean }>();
    const { log } = await CatalogLog.open(path, { model: 'm', compactAfter: 16 });
    const vector = encodeVector(Float32Array.of(1, 0));
    let changes = 0;
    for (let burst = 0; burst < 100; burst++) {
      // Concurrent appends (group commits) of random puts and deletes over 25 ids.
      const appends: Promise<void>[] = [];
      for (let i = 0; i < 1 + random.nextInt(8); i++) {
        const id = `id-${random.nextInt(25)}`;
        const state = expected.get(id);
        if (state && !state.deleted && random.nextInt(4) === 0) {
          expected.set(id, { ...state, deleted: true });
          appends.push(log.append({ op: 'delete', id, t: changes++ }));
        } else {
          const fields = { title: `v${changes}` };
          expected.set(id, { fields: fields.title, deleted: false });
          appends.push(log.append({ op: 'put', id, vector, fields, t: changes++ }));
        }
      }
      await Promise.all(appends);
    }
    const { compactions } = log.stats;
    await log.close();
    const replay = replayLog(await readFile(path), path);
    const state = new Map<string, { fields: string; deleted: boolean }>();
    for (const r of replay.records) {
      if (r.op === 'put') state.set(r.id, { fields: r.fields!.title, deleted: false });
      else state.set(r.id, { ...state.get(r.id)!, deleted: true });
    }
    assert.deepEqual(state, expected);
    assert.equal(replay.header?.model, 'm');
    assert.ok(compactions >= 5, `${compactions} compactions`);
    assert.ok(replay.records.length <= 2 * 25 + 2 * 16, `${replay.records.length} records left`);
    t.diagnostic(
      `${changes} changes over 25 ids: ${compactions} compactions, ${replay.records.length} records left`,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
