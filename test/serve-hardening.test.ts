/**
 * The service as a security boundary (issue 12, items 3 and 6): bearer tokens, the non-loopback refusal, the lock,
 * short writes and log failures, the id rule, error shapes, timeouts and connection caps, foreign logs, compaction
 * and the operational metrics.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { run as serveCommand } from '../src/cli/commands/serve.js';
import { loadArtifact } from '../src/model/artifact.js';
import { isLoopback } from '../src/serve/access.js';
import {
  CatalogLog,
  encodeVector,
  replayLog,
  type CatalogRecord,
  type WriteFunction,
} from '../src/serve/catalog-log.js';
import type { FileCatalogStore } from '../src/serve/catalog-store.js';
import { contentFingerprint, loadContentEncoder } from '../src/serve/content.js';
import { createService, type Service, type ServiceOptions } from '../src/serve/server.js';
import { untrainedFixtureInTemp, type Fixture } from './serve-fixture.js';

const CLI = new URL('../src/cli/cli.ts', import.meta.url).pathname;
const WRITE = 'write-token-0123456789abcdef';
const READ = 'read-token-0123456789abcdef';

let root: string;
let modelDir: string;
let fixture: Fixture;
let logs = 0;

before(async () => ({ root, modelDir, fixture } = await untrainedFixtureInTemp('deltarec-hardening-')));

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A listening service (inline scoring) on its own catalog log unless one is given. */
async function start(options: Partial<ServiceOptions> = {}): Promise<{ service: Service; base: string }> {
  const service = await createService({
    modelDir,
    workers: 0,
    catalogPath: join(root, `catalog-${++logs}.log`),
    ...options,
  });
  const base = await service.app.listen({ port: 0, host: '127.0.0.1' });
  return { service, base };
}

async function call(
  base: string,
  method: string,
  path: string,
  options: { token?: string; body?: unknown } = {},
): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(base + path, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const json = response.headers.get('content-type')?.startsWith('application/json')
    ? ((await response.json()) as Record<string, unknown>)
    : { text: await response.text() };
  return { status: response.status, json, headers: response.headers };
}

function assertErrorShape(json: Record<string, unknown>, status: number): void {
  assert.equal(json.statusCode, status, JSON.stringify(json));
  assert.equal(typeof json.error, 'string');
  assert.equal(typeof json.message, 'string');
}

/** GET /metrics on a connection that is closed afterwards (fetch would keep one open and count in the figures). */
async function metricsText(base: string): Promise<string> {
  const response = await rawRequest(base, `GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
  return response.slice(response.indexOf('\r\n\r\n') + 4);
}

/** Sends raw bytes; resolves with everything the server sent until it closed the connection. */
function rawRequest(base: string, data: string, timeoutMs = 5000): Promise<string> {
  const { hostname: host, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), host);
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within ${timeoutMs} ms; got: ${received}`));
    }, timeoutMs);
    socket.on('data', (chunk) => (received += chunk.toString()));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received);
    });
    socket.write(data);
  });
}

function parseRaw(response: string): { status: number; json: Record<string, unknown> } {
  const status = Number(/^HTTP\/1\.1 (\d+)/.exec(response)?.[1]);
  const body = response.slice(response.indexOf('\r\n\r\n') + 4);
  return { status, json: JSON.parse(body) as Record<string, unknown> };
}

test('write routes need the write token, read routes the read token, /health none', async () => {
  const service = await createService({
    modelDir,
    workers: 0,
    catalogPath: join(root, 'auth.log'),
    tokens: { write: WRITE, read: READ },
  });
  // A route registered after the hook (like another stream's POST /admin/reload) is protected without opting in.
  service.app.get('/admin/state', async () => ({ secret: true }));
  const base = await service.app.listen({ port: 0, host: '127.0.0.1' });
  try {
    const item = { id: 'auth-1', text: fixture.fields.title[3] };
    const writes: [string, string, unknown?][] = [
      ['POST', '/items', item],
      ['DELETE', '/items/auth-1'],
      ['PUT', '/items/auth-1', item],
      ['POST', '/admin/reload', {}],
      ['GET', '/admin/state'],
    ];
    const denied: string[] = [];
    for (const [method, path, body] of writes) {
      const none = await call(base, method, path, { body });
      assert.equal(none.status, 401, `${method} ${path} without a token`);
      assertErrorShape(none.json, 401);
      assert.match(String(none.headers.get('www-authenticate')), /^Bearer/);
      for (const token of ['wrong-token-0123456789abcdef', READ]) {
        const wrong = await call(base, method, path, { body, token });
        assert.equal(wrong.status, 403, `${method} ${path} with ${token}`);
        denied.push(JSON.stringify(wrong.json));
      }
      const malformed = await fetch(base + path, { method, headers: { authorization: `Basic ${WRITE}` } });
      assert.equal(malformed.status, 401);
    }
    // A wrong token and the read token on a write route get the very same answer: nothing tells them apart.
    assert.equal(new Set(denied).size, 1, denied.join('\n'));
    assert.doesNotMatch(denied[0], /read|write/);

    assert.equal((await call(base, 'POST', '/items', { body: item, token: WRITE })).status, 201);
    assert.equal((await call(base, 'GET', '/admin/state', { token: WRITE })).status, 200);
    const reloaded = await call(base, 'POST', '/admin/reload', { body: {}, token: WRITE });
    assert.equal(reloaded.status, 200, JSON.stringify(reloaded.json));
    assert.equal(reloaded.json.status, 'reloaded');
    // Percent-encoding the path does not route around the rule; HEAD /health is as open as GET.
    assert.equal((await call(base, 'GET', '/%61dmin/state', { token: READ })).status, 403);
    assert.equal((await fetch(`${base}/health`, { method: 'HEAD' })).status, 200);
    assert.equal((await fetch(`${base}/items/auth-1`, { method: 'HEAD' })).status, 401);
    assert.equal((await call(base, 'PUT', '/items/auth-1', { body: item, token: WRITE })).status, 405);

    const history = { items: [fixture.split.itemIds[1], 'auth-1'], k: 3 };
    assert.equal((await call(base, 'POST', '/recommend', { body: history })).status, 401);
    assert.equal(
      (await call(base, 'POST', '/recommend', { body: history, token: 'x'.repeat(20) })).status,
      403,
    );
    assert.equal((await call(base, 'POST', '/recommend', { body: history, token: READ })).status, 200);
    assert.equal((await call(base, 'POST', '/recommend', { body: history, token: WRITE })).status, 200);
    assert.equal((await call(base, 'GET', '/items/auth-1')).status, 401);
    assert.equal((await call(base, 'GET', '/items/auth-1', { token: READ })).status, 200);
    assert.equal((await call(base, 'GET', '/metrics')).status, 401);
    assert.equal((await call(base, 'GET', '/metrics', { token: READ })).status, 200);
    assert.equal((await call(base, 'GET', '/health')).status, 200);

    assert.equal((await call(base, 'DELETE', '/items/auth-1', { token: READ })).status, 403);
    assert.equal((await call(base, 'DELETE', '/items/auth-1', { token: WRITE })).status, 200);
  } finally {
    await service.close();
  }

  // Only a write token: reads are open, writes are not.
  const writeOnly = await start({ tokens: { write: WRITE } });
  try {
    const body = { items: [fixture.split.itemIds[1]], k: 2 };
    assert.equal((await call(writeOnly.base, 'POST', '/recommend', { body })).status, 200);
    assert.equal((await call(writeOnly.base, 'DELETE', '/items/x')).status, 401);
    assert.equal((await call(writeOnly.base, 'DELETE', '/items/x', { token: WRITE })).status, 404);
  } finally {
    await writeOnly.service.close();
  }
});

test('serve refuses a non-loopback address without a write token and says why', async () => {
  assert.ok(
    isLoopback('127.0.0.1') && isLoopback('::1') && isLoopback('localhost') && isLoopback('127.8.0.1'),
  );
  assert.ok(
    !isLoopback('0.0.0.0') && !isLoopback('::') && !isLoopback('10.0.0.1') && !isLoopback('example.com'),
  );
  const original = console.error;
  let stderr = '';
  console.error = (...parts: unknown[]) => (stderr += parts.join(' ') + '\n');
  try {
    const saved = process.env.DELTAREC_WRITE_TOKEN;
    delete process.env.DELTAREC_WRITE_TOKEN;
    try {
      assert.equal(await serveCommand(['--model', modelDir, '--host', '0.0.0.0', '--port', '0']), 2);
      assert.match(stderr, /refusing to listen on 0\.0\.0\.0 without a write token/);
      assert.match(stderr, /--write-token-file FILE/);
      assert.match(stderr, /--insecure/);
      stderr = '';
      process.env.DELTAREC_WRITE_TOKEN = 'short';
      assert.equal(await serveCommand(['--model', modelDir, '--host', '0.0.0.0']), 2);
      assert.match(stderr, /DELTAREC_WRITE_TOKEN: a token must be 16 to 4096 visible ASCII characters/);
      stderr = '';
      const file = join(root, 'token');
      await writeFile(file, `${WRITE}\n`, { mode: 0o600 });
      process.env.DELTAREC_WRITE_TOKEN = WRITE;
      assert.equal(
        await serveCommand([
          '--model',
          modelDir,
          '--write-token-file',
          file,
          '--read-token-file',
          file,
          '--catalog',
          join(root, 'never.log'),
        ]),
        1,
      );
      assert.match(stderr, /the read and the write token must differ/);
    } finally {
      if (saved === undefined) delete process.env.DELTAREC_WRITE_TOKEN;
      else process.env.DELTAREC_WRITE_TOKEN = saved;
    }
  } finally {
    console.error = original;
  }
});

test('a second server on the same catalog log refuses to start; a stale lock is taken over', async () => {
  const catalogPath = join(root, 'locked.log');
  const first = await start({ catalogPath });
  try {
    await assert.rejects(
      createService({ modelDir, workers: 0, catalogPath }),
      new RegExp(
        `catalog log .*locked\\.log is in use by process ${process.pid} \\(lock file .*locked\\.log\\.lock\\)`,
      ),
    );
    // The default log of a model directory is locked the same way.
    const a = await createService({ modelDir, workers: 0 });
    try {
      await assert.rejects(createService({ modelDir, workers: 0 }), /catalog\.log is in use by process/);
    } finally {
      await a.close();
    }
  } finally {
    await first.service.close();
  }
  // A lock left by a process that no longer exists is stale.
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('exit', resolve));
  await writeFile(`${catalogPath}.lock`, `${child.pid} ${hostname()}\n`);
  const second = await start({ catalogPath });
  assert.equal((await readFile(`${catalogPath}.lock`, 'utf8')).split(' ')[0], String(process.pid));
  await second.service.close();
  await assert.rejects(readFile(`${catalogPath}.lock`), /ENOENT/, 'close releases the lock');
  // Four processes racing for one stale lock: exactly one takes it over.
  const racePath = join(root, 'race.lock');
  await writeFile(racePath, `${child.pid} ${hostname()}\n`);
  const LOCK = new URL('../src/util/lock.ts', import.meta.url).href;
  // Each racer loads, says 'ready', waits for 'go' (all at once), tries, reports, and holds until stdin ends.
  const script =
    `const { tryLock } = await import(${JSON.stringify(LOCK)});` +
    `const lines = (await import('node:readline')).createInterface({ input: process.stdin });` +
    `console.log('ready');` +
    `lines.once('line', async () => {` +
    `  const lock = await tryLock(${JSON.stringify(racePath)});` +
    `  console.log('heldBy' in lock ? 'lost' : 'won');` +
    `});`;
  const racers = Array.from({ length: 4 }, () => {
    const racer = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
    let out = '';
    const ready = new Promise<void>((resolve) =>
      racer.stdout.on('data', (chunk) => {
        out += chunk;
        if (out.startsWith('ready\n')) resolve();
      }),
    );
    const result = new Promise<string>((resolve) =>
      racer.stdout.on('data', () => {
        const answer = out.split('\n')[1];
        if (answer) resolve(answer);
      }),
    );
    return { racer, ready, result };
  });
  await Promise.all(racers.map((r) => r.ready));
  for (const { racer } of racers) racer.stdin.write('go\n');
  const outcomes = await Promise.all(racers.map((r) => r.result));
  for (const { racer } of racers) racer.stdin.end();
  assert.deepEqual(outcomes.sort(), ['lost', 'lost', 'lost', 'won'], outcomes.join(','));

  // A lock from another host cannot be checked: refused.
  await writeFile(`${catalogPath}.lock`, `1 some-other-host\n`);
  await assert.rejects(
    createService({ modelDir, workers: 0, catalogPath }),
    /in use by process 1 on some-other-host/,
  );
  await rm(`${catalogPath}.lock`);
});

test('a short write is completed or fails the log, never acknowledged half-written', async () => {
  const path = join(root, 'short.log');
  const vector = encodeVector(Float32Array.of(1, 2, 3));
  // Writes of at most 7 bytes at a time: every byte count is checked and the rest written.
  const trickle: WriteFunction = (handle, data) => handle.write(data.subarray(0, Math.min(7, data.length)));
  let opened = await CatalogLog.open(path, { model: 'm', write: trickle });
  await Promise.all([
    opened.log.append({ op: 'put', id: 'a', vector, t: 1 }),
    opened.log.append({ op: 'put', id: 'b', vector, t: 2 }),
  ]);
  await opened.log.close();
  assert.deepEqual(
    replayLog(await readFile(path), path).records.map((r) => r.id),
    ['a', 'b'],
  );
  const intact = await readFile(path);

  // A disk that fills up mid-record: half the bytes land, then ENOSPC.
  let calls = 0;
  const full: WriteFunction = async (handle, data) => {
    if (calls++ === 0) return handle.write(data.subarray(0, data.length >> 1));
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  };
  const failures: string[] = [];
  opened = await CatalogLog.open(path, {
    model: 'm',
    write: full,
    onFailure: (e) => failures.push(e.message),
  });
  await assert.rejects(opened.log.append({ op: 'put', id: 'c', vector, t: 3 }), /write failed \(ENOSPC/);
  assert.equal(opened.log.stats.failures, 1);
  assert.equal(failures.length, 1);
  // Nothing is accepted afterwards, and the half-written line was cut away again.
  await assert.rejects(opened.log.append({ op: 'delete', id: 'a', t: 4 }), /write failed/);
  await opened.log.close();
  assert.deepEqual(await readFile(path), intact);

  // A write that makes no progress at all is an error too (not an endless loop).
  opened = await CatalogLog.open(path, { model: 'm', write: async () => ({ bytesWritten: 0 }) });
  await assert.rejects(
    opened.log.append({ op: 'put', id: 'd', vector, t: 5 }),
    /short write: 0 of \d+ bytes/,
  );
  await opened.log.close();
});

test('after a log failure: no acknowledgement, 500 names the cause, /health 503, stderr without --log', async () => {
  const catalogPath = join(root, 'failing.log');
  let fail = false;
  const write: WriteFunction = async (handle, data) => {
    if (fail) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return handle.write(data);
  };
  const reported: string[] = [];
  const { service, base } = await start({
    catalogPath,
    catalogWrite: write,
    reportError: (m) => reported.push(m),
  });
  try {
    const ok = await call(base, 'POST', '/items', { body: { id: 'kept', text: fixture.fields.title[2] } });
    assert.equal(ok.status, 201);
    fail = true;
    const failed = await call(base, 'POST', '/items', {
      body: { id: 'lost', text: fixture.fields.title[4] },
    });
    assert.equal(failed.status, 500);
    assertErrorShape(failed.json, 500);
    assert.match(String(failed.json.message), /catalog log .*failing\.log: write failed \(ENOSPC/);
    assert.equal((await call(base, 'GET', '/items/lost')).status, 404, 'an unsaved change is not applied');
    const deleted = await call(base, 'DELETE', '/items/kept');
    assert.equal(deleted.status, 500);
    assert.equal((await call(base, 'GET', '/items/kept')).status, 200);
    const health = await call(base, 'GET', '/health');
    assert.equal(health.status, 503);
    assertErrorShape(health.json, 503);
    assert.match(String(health.json.message), /write failed \(ENOSPC/);
    assert.equal(reported.length, 1);
    assert.match(reported[0], /failing\.log: write failed \(ENOSPC/);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /^deltarec_catalog_log_failures_total 1$/m);
  } finally {
    await service.close();
  }
  // The restart sees exactly the acknowledged change.
  const again = await start({ catalogPath });
  try {
    assert.equal((await call(again.base, 'GET', '/items/kept')).status, 200);
    assert.equal((await call(again.base, 'GET', '/items/lost')).status, 404);
  } finally {
    await again.service.close();
  }
});

test('one id rule for every route', async () => {
  const { service, base } = await start();
  try {
    const text = fixture.fields.title[5];
    const longest = 'é'.repeat(255) + '😀'; // 256 characters, 257 UTF-16 units, 3,072 bytes percent-encoded
    assert.equal((await call(base, 'POST', '/items', { body: { id: longest, text } })).status, 201);
    const path = `/items/${encodeURIComponent(longest)}`;
    assert.equal((await call(base, 'GET', path)).status, 200);
    assert.equal((await call(base, 'POST', '/recommend', { body: { items: [longest], k: 1 } })).status, 200);
    assert.equal((await call(base, 'DELETE', path)).status, 200);

    const bad: [string, RegExp][] = [
      ['x'.repeat(257), /must have at most 256 characters \(has 257\)/],
      ['', /must not be empty/],
      ['   ', /must not be blank/],
      ['a\u0007b', /must not contain control characters \(U\+0007 at 1\)/],
      ['line\nbreak', /must not contain control characters \(U\+000A at 4\)/],
      ['\ud800x', /must not contain a lone surrogate/],
      ['x\udc00', /must not contain a lone surrogate/],
    ];
    for (const [id, message] of bad) {
      const posted = await call(base, 'POST', '/items', { body: { id, text } });
      assert.equal(posted.status, 400, JSON.stringify(id));
      assert.match(String(posted.json.message), new RegExp(`body\\.id ${message.source}`));
      const recommended = await call(base, 'POST', '/recommend', { body: { items: [id] } });
      assert.equal(recommended.status, 400);
      assert.match(String(recommended.json.message), /body\.items\.0 /);
      if (id !== '' && !/[\ud800-\udfff]/.test(id)) {
        for (const method of ['GET', 'DELETE']) {
          const got = await call(base, method, `/items/${encodeURIComponent(id)}`);
          assert.equal(got.status, 400, `${method} ${JSON.stringify(id)}`);
          assert.match(String(got.json.message), new RegExp(`params\\.id ${message.source}`));
        }
      }
    }
  } finally {
    await service.close();
  }
});

test('every error keeps the {statusCode, error, message} shape', async () => {
  const { service, base } = await start();
  try {
    const wrongMethod = await call(base, 'GET', '/recommend');
    assert.equal(wrongMethod.status, 405);
    assertErrorShape(wrongMethod.json, 405);
    assert.equal(wrongMethod.headers.get('allow'), 'POST');
    const put = await call(base, 'PUT', '/items/x');
    assert.equal(put.status, 405);
    assert.match(String(put.headers.get('allow')), /GET.*DELETE|DELETE.*GET/);
    const missing = await call(base, 'GET', '/nope');
    assert.equal(missing.status, 404);
    assertErrorShape(missing.json, 404);

    const tooLong = await call(base, 'GET', `/items/${'x'.repeat(4000)}`);
    assert.equal(tooLong.status, 414);
    assertErrorShape(tooLong.json, 414);
    const badEncoding = await call(base, 'GET', '/items/%E0%A4%A');
    assert.equal(badEncoding.status, 400);
    assertErrorShape(badEncoding.json, 400);
    assert.match(String(badEncoding.json.message), /not valid percent-encoded UTF-8/);

    const { host } = new URL(base);
    const raw = async (request: string, status: number, message: RegExp) => {
      const response = parseRaw(await rawRequest(base, request));
      assert.equal(response.status, status, request.slice(0, 60));
      assertErrorShape(response.json, status);
      assert.match(String(response.json.message), message);
    };
    const body = '{"items":["x"]}';
    await raw(
      `POST /recommend HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: abc\r\n\r\n${body}`,
      400,
      /invalid content-length/,
    );
    await raw(
      `POST /recommend HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: 3\r\n` +
        `transfer-encoding: chunked\r\n\r\n${body}`,
      400,
      /transfer-encoding/,
    );
    await raw(`GET /${'x'.repeat(20_000)} HTTP/1.1\r\nhost: ${host}\r\n\r\n`, 431, /too large/);
    // A body longer than its content-length: the extra bytes are not a request (node's parser may fail on them
    // before the first answer is written, so there are one or two answers, each a 400 of the same shape).
    const extra = await rawRequest(
      base,
      `POST /items HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}garbage\r\n\r\n`,
    );
    const answers = extra.split(/(?=HTTP\/1\.1 )/);
    assert.ok(answers.length >= 1 && answers.length <= 2, extra);
    for (const answer of answers) {
      assert.equal(parseRaw(answer).status, 400);
      assertErrorShape(parseRaw(answer).json, 400);
    }
  } finally {
    await service.close();
  }
});

test('a client trickling a body is cut off; the connection cap holds; close is bounded', async (t) => {
  const { service, base } = await start({
    requestTimeout: 1000,
    keepAliveTimeout: 300,
    maxConnections: 3,
    shutdownTimeout: 300,
  });
  const { hostname: host, port } = new URL(base);
  const open = (): Promise<Socket> =>
    new Promise((resolve) => {
      const socket = connect(Number(port), host, () => resolve(socket));
      socket.on('error', () => {});
    });
  try {
    // 1 byte per 200 ms of a 100-byte body: the request is not complete within the 1 s request timeout.
    const started = Date.now();
    const trickler = await open();
    trickler.write(
      `POST /items HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n`,
    );
    const drip = setInterval(() => trickler.write(' '), 200);
    let answer = '';
    trickler.on('data', (chunk) => (answer += chunk.toString()));
    await new Promise((resolve) => trickler.on('close', resolve));
    clearInterval(drip);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 900 && elapsed < 3500, `cut off after ${elapsed} ms`);
    t.diagnostic(
      `a body trickled at 5 bytes/s was cut off with 408 after ${elapsed} ms (request timeout 1000 ms)`,
    );
    assert.equal(parseRaw(answer).status, 408);
    assertErrorShape(parseRaw(answer).json, 408);
    const metrics = await metricsText(base);
    assert.match(metrics, /^deltarec_http_timed_out_requests_total 1$/m);

    // An idle keep-alive connection is closed after the keep-alive timeout. The upper bound only has to tell our
    // 300 ms from Node's default of 5 s (a loaded 2-core machine can fire the timer a second or more late).
    const idleStart = Date.now();
    const idle = await rawRequest(base, `GET /health HTTP/1.1\r\nhost: ${host}\r\n\r\n`, 4500);
    const idleFor = Date.now() - idleStart;
    assert.match(idle, /^HTTP\/1\.1 200/);
    assert.ok(idleFor >= 250 && idleFor < 4500, `idle keep-alive connection closed after ${idleFor} ms`);

    // A client that goes away in the middle of its body is counted as aborted.
    const leaver = await open();
    leaver.write(
      `POST /items HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{`,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    leaver.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.match(await metricsText(base), /^deltarec_http_aborted_requests_total 1$/m);

    // Three connections are open; a fourth is closed at once without an answer.
    const held = [await open(), await open(), await open()];
    await new Promise((resolve) => setTimeout(resolve, 50));
    const fourth = await rawRequest(base, `GET /health HTTP/1.1\r\nhost: ${host}\r\n\r\n`, 2000);
    assert.equal(fourth, '');
    for (const socket of held) socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const after = await metricsText(base);
    assert.match(after, /^deltarec_http_dropped_connections_total 1$/m);
    assert.match(after, /^deltarec_http_open_connections [1-9]\d*$/m);
  } finally {
    // A client in the middle of a request does not hold close() beyond shutdownTimeout.
    const busy = await open();
    busy.write(
      `POST /items HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{`,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closing = Date.now();
    await service.close();
    const took = Date.now() - closing;
    assert.ok(took < 2000, `close took ${took} ms`);
    t.diagnostic(`close() with a request in flight took ${took} ms (shutdown timeout 300 ms)`);
  }
});

test(
  'SIGTERM stops `deltarec serve` within the shutdown timeout even with a request in flight',
  { timeout: 60_000 },
  async (t) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        CLI,
        'serve',
        '--model',
        modelDir,
        '--port',
        '0',
        '--workers',
        '0',
        '--catalog',
        join(root, 'sigterm.log'),
        '--shutdown-timeout',
        '500',
        '--request-timeout',
        '60000',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const base = await new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (match) resolve(match[1]);
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('exit', (code) => reject(new Error(`exited with ${code}: ${output}`)));
    });
    const { hostname: host, port } = new URL(base);
    const socket = connect(Number(port), host);
    socket.on('error', () => {});
    socket.write(
      `POST /items HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{`,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const started = Date.now();
    child.kill('SIGTERM');
    const code = await exited;
    const took = Date.now() - started;
    socket.destroy();
    assert.equal(code, 0, output);
    assert.ok(took < 5000, `SIGTERM took ${took} ms`);
    t.diagnostic(`SIGTERM with a request in flight: exit 0 after ${took} ms (--shutdown-timeout 500)`);
  },
);

test('a catalog log written for another model is re-encoded from its fields or raw vector, or refused', async () => {
  const artifact = await loadArtifact(modelDir);
  const fingerprint = await contentFingerprint(artifact);
  const content = await loadContentEncoder(artifact);
  const text = fixture.fields.title[7];
  const wrong = encodeVector(new Float32Array(32).fill(0.25)); // a vector of another projection
  const foreign = async (path: string, records: CatalogRecord[]) => {
    const { log } = await CatalogLog.open(path, { model: 'another-model' });
    for (const r of records) await log.append(r);
    await log.close();
  };
  const ranking = async (service: Service) =>
    (
      (
        await service.app.inject({
          method: 'POST',
          url: '/recommend',
          payload: { items: [fixture.split.itemIds[3], 'f1'], k: 20 },
        })
      ).json() as { items: { id: string; score: number }[] }
    ).items;
  // Records written before records named their model: the header's content fingerprint (another one) is theirs.
  const path = join(root, 'foreign.log');
  await foreign(path, [
    { op: 'put', id: 'f1', vector: wrong, fields: { title: 'old text' }, t: 1 },
    { op: 'put', id: 'f1', vector: wrong, fields: { title: text }, t: 2 },
    { op: 'put', id: 'f2', vector: wrong, fields: { title: text }, t: 3 },
    { op: 'delete', id: 'f2', t: 4 },
  ]);
  const { service } = await start({ catalogPath: path });
  const reference = await start(); // f1 added to this model through the API
  try {
    assert.equal(service.replayed.reencoded, 2, 'the superseded put of f1 is not re-encoded');
    assert.deepEqual((await service.app.inject({ url: '/items/f1' })).json().fields, { title: text });
    const added = await call(reference.base, 'POST', '/items', {
      body: { id: 'f1', fields: { title: text } },
    });
    assert.equal(added.status, 201);
    // Re-encoded from its text, never placed by the logged vector: it ranks as if added to this model.
    const [mine, theirs] = [await ranking(service), await ranking(reference.service)];
    assert.deepEqual(
      mine.map((r) => r.id),
      theirs.map((r) => r.id),
    );
    mine.forEach((r, i) => assert.ok(Math.abs(r.score - theirs[i].score) < 1e-4));
  } finally {
    await service.close();
    await reference.service.close();
  }
  // The log now names the model of every record (compacted); the vectors of the other model stay as logged.
  const rewritten = replayLog(await readFile(path), path);
  assert.equal(rewritten.header?.model, fingerprint);
  assert.deepEqual(
    rewritten.records.map((r) => [r.op, r.id, r.model]),
    [
      ['put', 'f1', 'content:another-model'],
      ['put', 'f2', 'content:another-model'],
      ['delete', 'f2', 'content:another-model'],
    ],
  );
  const again = await start({ catalogPath: path });
  try {
    assert.equal(again.service.replayed.reencoded, 2);
    assert.deepEqual((await again.service.app.inject({ url: '/items/f1' })).json().fields, { title: text });
  } finally {
    await again.service.close();
  }

  // A raw vector is projected by this model only when it takes the same raw vectors (same text encoder, width).
  const raw = encodeVector(Float32Array.from({ length: content.rawDim }, (_, j) => Math.cos(j)));
  const sameSpace = join(root, 'foreign-raw.log');
  await foreign(sameSpace, [
    { op: 'put', id: 'r1', vector: wrong, raw, rawSpace: content.rawSpace, model: 'old-model', t: 1 },
  ]);
  const carried = await start({ catalogPath: sameSpace });
  assert.equal(carried.service.replayed.reencoded, 1);
  assert.ok(carried.service.catalog.get('r1'));
  await carried.service.close();

  // An item that came as a vector this model cannot re-encode: the start is refused, the log left as it was.
  for (const [name, record, why] of [
    [
      'foreign-vectors.log',
      { op: 'put', id: 'v1', vector: wrong, t: 1 },
      /without its raw form or text fields/,
    ],
    [
      'foreign-space.log',
      { op: 'put', id: 'v1', vector: wrong, raw, rawSpace: 'another-space', model: 'old-model', t: 1 },
      /a raw vector of another raw space/,
    ],
  ] as const) {
    const vectors = join(root, name);
    await foreign(vectors, [record, { op: 'put', id: 'v2', vector: wrong, fields: { title: text }, t: 2 }]);
    const before = await readFile(vectors);
    await assert.rejects(createService({ modelDir, workers: 0, catalogPath: vectors }), (error: Error) => {
      assert.match(
        error.message,
        /\.log: item "v1" was recorded for model \S+ and cannot be carried into model/,
      );
      assert.match(error.message, why);
      return true;
    });
    assert.deepEqual(await readFile(vectors), before);
  }
});

test('repeated updates of one id grow neither the item table nor the log', async (t) => {
  const catalogPath = join(root, 'compact.log');
  // Worker scoring here, inline after the restart: both must apply in-place replacements alike.
  const { service, base } = await start({ catalogPath, compactAfter: 8, workers: 1 });
  const titles = fixture.fields.title;
  const history = { items: [fixture.split.itemIds[3], 'hot'], k: 20, exclude_seen: false };
  let answer: unknown;
  try {
    // Written before every compaction: it must survive all of them.
    assert.equal(
      (await call(base, 'POST', '/items', { body: { id: 'early', text: titles[40] } })).status,
      201,
    );
    const rows = service.catalog.numRows;
    for (let i = 0; i < 40; i++) {
      const response = await call(base, 'POST', '/items', {
        body: { id: 'hot', text: titles[1 + (i % 20)] },
      });
      assert.equal(response.status, i === 0 ? 201 : 200);
    }
    assert.equal(service.catalog.numRows, rows + 1, 'one row for the added item, whatever its updates');
    await call(base, 'POST', '/items', { body: { id: 'other', text: titles[30] } });
    assert.equal((await call(base, 'DELETE', '/items/other')).status, 200);
    const { stats } = (service.store as FileCatalogStore).log;
    assert.ok(stats.compactions >= 3, `${stats.compactions} compactions`);
    const lines = (await readFile(catalogPath, 'utf8')).trim().split('\n').length;
    assert.ok(lines <= 1 + 2 * 8 + 4, `${lines} lines after 43 changes`);
    t.diagnostic(
      `43 changes (40 of one id): ${service.catalog.numRows - rows} new rows (hot, other), ${lines} log lines, ` +
        `${stats.compactions} compactions`,
    );
    answer = (await call(base, 'POST', '/recommend', { body: { ...history, items: ['other', 'hot'] } })).json;
  } finally {
    await service.close();
  }
  const again = await start({ catalogPath });
  try {
    assert.deepEqual((await call(again.base, 'GET', '/items/hot')).json.fields, { title: titles[20] });
    assert.deepEqual((await call(again.base, 'GET', '/items/early')).json.fields, { title: titles[40] });
    assert.equal((await call(again.base, 'GET', '/items/other')).status, 404);
    const replayed = await call(again.base, 'POST', '/recommend', {
      body: { ...history, items: ['other', 'hot'] },
    });
    assert.equal(replayed.status, 200, 'a deleted item still reads in a history');
    // The replaced row scores exactly like the row the compacted log appends on replay.
    const ranked = (x: unknown) => (x as { items: { id: string; score: number }[] }).items;
    assert.deepEqual(
      ranked(replayed.json).map((r) => r.id),
      ranked(answer).map((r) => r.id),
    );
    ranked(replayed.json).forEach((r, i) => assert.ok(Math.abs(r.score - ranked(answer)[i].score) < 1e-4));
    assert.ok(ranked(answer).some((r) => r.id === 'hot'));
  } finally {
    await again.service.close();
  }
});

test('metrics add log, connection, process and event-loop figures and the build version', async () => {
  const { service, base } = await start();
  try {
    await call(base, 'POST', '/items', { body: { id: 'm1', text: fixture.fields.title[9] } });
    const text = await (await fetch(`${base}/metrics`)).text();
    for (const pattern of [
      /^deltarec_build_info\{version="\d+\.\d+\.\d+[^"]*",node="v\d+[^"]*"\} 1$/m,
      /^deltarec_http_open_connections [1-9]\d*$/m,
      /^deltarec_http_aborted_requests_total 0$/m,
      /^deltarec_http_timed_out_requests_total 0$/m,
      /^deltarec_catalog_log_failures_total 0$/m,
      /^deltarec_catalog_log_fsyncs_total [1-9]\d*$/m,
      /^deltarec_catalog_log_fsync_seconds_total \d/m,
      /^deltarec_catalog_log_records 1$/m,
      /^process_cpu_seconds_total \d/m,
      /^process_resident_memory_bytes [1-9]\d*$/m,
      /^nodejs_eventloop_delay_seconds\{quantile="0\.99"\} \d/m,
      /^nodejs_eventloop_utilization (0|1|0\.\d+)/m,
    ])
      assert.match(text, pattern);
  } finally {
    await service.close();
  }
});

test('a log whose last line is complete but corrupt stops the service start', async () => {
  const catalogPath = join(root, 'corrupt-tail.log');
  const { service, base } = await start({ catalogPath });
  await call(base, 'POST', '/items', { body: { id: 'c1', text: fixture.fields.title[11] } });
  await service.close();
  await appendFile(catalogPath, '00000000 {"op":"delete","id":"c1","t":1}\n');
  await assert.rejects(
    createService({ modelDir, workers: 0, catalogPath }),
    /corrupt-tail\.log:3: corrupt catalog record/,
  );
});
