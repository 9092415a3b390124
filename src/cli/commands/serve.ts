import cluster, { type Worker } from 'node:cluster';
import { createServer, type AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { readCatalog } from '../../data/readers.js';
import { isLoopback, loadToken } from '../../serve/access.js';
import { createService, type Service } from '../../serve/server.js';
import { installExplorer } from '../../serve/ui/explorer.js';
import { floatOption, intOption, onOff, withNegativeNumbers } from '../options.js';

export const summary = 'serve recommendations over HTTP with a live, durable item catalog';

const HELP = `usage: deltarec serve --model DIR [--port N] [--host H] [options]

Serves a model artifact over HTTP (see docs/service.md):
  POST /recommend  {"items": [ids], "k": 10, "exclude": [ids], "include_cold": true, "exclude_seen": true}
  POST /items      {"id": ..., "fields": {...}} | {"id": ..., "text": "..."} | {"id": ..., "vector": [...]}
  GET /items/:id, DELETE /items/:id, GET /health, GET /metrics
  POST /admin/reload {"model": DIR} (optional body): swap in a new model without downtime (also on SIGHUP)

access (docs/service.md#access-control): every non-GET route (POST/DELETE /items, /admin/...) needs the write
token as 'Authorization: Bearer TOKEN'; with a read token, /recommend, GET /items/:id and /metrics need it (or the
write token); /health is always open. Without a write token the service only listens on loopback addresses
(unless --insecure).

options:
  --model DIR        model artifact directory (required; with --ui it may be repeated: the models side by side,
                     the first also at the routes above, each with its own DIR/catalog.log)
  --ui               the explorer page at / (docs/explorer.md): search, histories, top-k per model, add items
  --items FILE       item catalog (CSV/TSV/JSONL/Parquet) whose fields the page shows (title, brand, image, ...)
  --port N           TCP port (default 8080; 0 picks a free port)
  --host H           address to listen on (default 127.0.0.1)
  --catalog FILE|URL durable catalog change log (default DIR/catalog.log), or a PostgreSQL catalog shared by
                     replicas: postgres://USER@HOST:PORT/DB (also the environment variable DELTAREC_CATALOG_URL)
  --replicas N       serve with N processes on the same port (node:cluster; N > 1 needs a PostgreSQL catalog)
  --workers N        scoring worker threads (default 1); 0 scores micro-batches on the event loop
  --max-batch N      most requests scored together (default 64)
  --batch-budget-ms X  estimated compute time one scoring batch may take (default 2): a free worker takes what
                     is queued, up to this budget, never waiting for a batch to fill
  --scan on|off      on the int8 path (catalogs from 1,000 items), workers answer by a shared scan of the catalog
                     that requests join at any time (default on; off: batches, one pass each; docs/latency.md)
  --body-limit N     largest request body in bytes (default 262144)
  --max-k N          largest k (default 1000)
  --max-items N      most history items per request (default 512)
  --kernel-threads N threads of the native kernels (default 1: the event loop keeps a core; the environment
                     variable DELTAREC_THREADS, when set, wins)
  --write-token-file F
                     file holding the write token (else the environment variable DELTAREC_WRITE_TOKEN)
  --read-token-file F
                     file holding the read token (else DELTAREC_READ_TOKEN; neither: reads are open)
  --insecure         allow a non-loopback --host without a write token (a trusted network only)
  --request-timeout MS
                     most time to receive a whole request, headers and body (default 30000)
  --keep-alive-timeout MS
                     most idle time of a connection between requests (default 5000)
  --max-connections N
                     most open connections; more are closed at once (default 1024)
  --shutdown-timeout MS
                     on SIGINT/SIGTERM, connections still busy after this are cut (default 10000)
  --log              log every request (pino JSON lines on stdout)
`;

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: withNegativeNumbers(args),
      options: {
        model: { type: 'string', multiple: true },
        ui: { type: 'boolean' },
        items: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        catalog: { type: 'string' },
        replicas: { type: 'string' },
        workers: { type: 'string' },
        'max-batch': { type: 'string' },
        'batch-budget-ms': { type: 'string' },
        scan: { type: 'string' },
        'body-limit': { type: 'string' },
        'max-k': { type: 'string' },
        'max-items': { type: 'string' },
        'kernel-threads': { type: 'string' },
        'write-token-file': { type: 'string' },
        'read-token-file': { type: 'string' },
        insecure: { type: 'boolean' },
        'request-timeout': { type: 'string' },
        'keep-alive-timeout': { type: 'string' },
        'max-connections': { type: 'string' },
        'shutdown-timeout': { type: 'string' },
        log: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    console.error(`deltarec serve: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const modelDirs = values.model ?? [];
  if (modelDirs.length === 0) {
    console.error(`deltarec serve: --model DIR is required\n\n${HELP}`);
    return 2;
  }
  const host = values.host ?? '127.0.0.1';
  const warn = (message: string) => console.error(`deltarec serve: warning: ${message}`);
  const catalog = values.catalog ?? process.env.DELTAREC_CATALOG_URL;
  const catalogUrl = catalog && /^postgres(ql)?:\/\//.test(catalog) ? catalog : undefined;
  let replicas: number;
  let tokens;
  try {
    replicas = intOption(values.replicas, 'replicas', 1) ?? 1;
    tokens = {
      write: await loadToken(values['write-token-file'], 'DELTAREC_WRITE_TOKEN', warn),
      read: await loadToken(values['read-token-file'], 'DELTAREC_READ_TOKEN', warn),
    };
  } catch (error) {
    console.error(`deltarec serve: ${(error as Error).message}`);
    return 2;
  }
  if (!tokens.write && !isLoopback(host) && !values.insecure) {
    console.error(
      `deltarec serve: refusing to listen on ${host} without a write token: anyone who can reach it could add ` +
        `and delete items. Give --write-token-file FILE (or DELTAREC_WRITE_TOKEN), listen on 127.0.0.1, or ` +
        `pass --insecure if every client on that network is trusted.`,
    );
    return 2;
  }
  if (modelDirs.length > 1 && !values.ui) {
    console.error(
      `deltarec serve: several --model directories are served side by side by the explorer; add --ui`,
    );
    return 2;
  }
  if (modelDirs.length > 1 && catalog) {
    console.error(
      `deltarec serve: --catalog names the log of one model; with several, each uses DIR/catalog.log`,
    );
    return 2;
  }
  if (values.items && !values.ui) {
    console.error(`deltarec serve: --items is the catalog the explorer page shows; add --ui`);
    return 2;
  }
  if (replicas > 1 && cluster.isPrimary) {
    if (!catalogUrl) {
      console.error(
        'deltarec serve: --replicas N > 1 needs a PostgreSQL catalog (--catalog postgres://...): replicas cannot share a log file',
      );
      return 2;
    }
    let port: number;
    try {
      port = intOption(values.port, 'port', 0) ?? 8080;
    } catch (error) {
      console.error(`deltarec serve: ${(error as Error).message}`);
      return 2;
    }
    // Replicas listening on port 0 would each get a port of their own: pick one for all of them.
    if (port === 0) port = await freePort(host);
    cluster.setupPrimary({ args: [...process.argv.slice(2), '--port', String(port)] });
    return runPrimary(replicas);
  }
  if (!tokens.write && !isLoopback(host)) warn(`--insecure: writes on ${host} need no token`);
  const services: Service[] = [];
  let service: Service;
  let port: number;
  try {
    port = intOption(values.port, 'port', 0) ?? 8080;
    // Read by the native kernels when their thread pool starts (at the first large kernel call, after this).
    process.env.DELTAREC_THREADS ??= String(intOption(values['kernel-threads'], 'kernel-threads', 1) ?? 1);
    for (const modelDir of modelDirs) {
      services.push(
        await createService({
          modelDir,
          catalogPath: catalogUrl ? undefined : catalog,
          catalogUrl,
          replicaName: `deltarec-${process.pid}`,
          workers: intOption(values.workers, 'workers', 0) ?? 1,
          maxBatch: intOption(values['max-batch'], 'max-batch', 1) ?? 64,
          batchBudgetMs: floatOption(values['batch-budget-ms'], 'batch-budget-ms', 0.01) ?? 2,
          scan: onOff(values.scan, 'scan') ?? true,
          bodyLimit: intOption(values['body-limit'], 'body-limit', 64) ?? 256 * 1024,
          maxK: intOption(values['max-k'], 'max-k', 1) ?? 1000,
          maxItems: intOption(values['max-items'], 'max-items', 1) ?? 512,
          tokens,
          requestTimeout: intOption(values['request-timeout'], 'request-timeout', 100),
          keepAliveTimeout: intOption(values['keep-alive-timeout'], 'keep-alive-timeout', 1),
          maxConnections: intOption(values['max-connections'], 'max-connections', 1),
          shutdownTimeout: intOption(values['shutdown-timeout'], 'shutdown-timeout', 0),
          logger: values.log ?? false,
        }),
      );
    }
    service = services[0];
    if (values.ui) {
      const catalog = values.items ? await readCatalog(values.items) : null;
      await installExplorer(service.app, { services, catalog });
    }
  } catch (error) {
    await Promise.all(services.map((s) => s.close()));
    console.error(`deltarec serve: ${(error as Error).message}`);
    return 1;
  }
  const { replayed } = service;
  if (replayed.droppedTail)
    console.error('deltarec serve: dropped a torn last line of the catalog log (never acknowledged)');
  if (replayed.reencoded > 0) {
    console.error(
      `deltarec serve: re-encoded ${replayed.reencoded} item(s) recorded for another model from their text ` +
        `fields or raw vectors (runtime.ts applyChange)`,
    );
  }
  // Handlers first: a SIGHUP right after the 'listening' line must find them.
  // Every served model (several with --ui) loads its directory again.
  const reload = async () => {
    let ok = true;
    for (const served of services) {
      try {
        const result = await served.reload();
        console.error(
          `deltarec serve: reloaded model ${result.previous} -> ${result.model}` +
            (result.reencoded ? ` (${result.reencoded} catalog changes of other models re-encoded)` : '') +
            (result.skipped ? ` (${result.skipped} catalog changes it cannot take skipped)` : ''),
        );
      } catch (error) {
        console.error(
          `deltarec serve: reload failed, still serving the previous model: ${(error as Error).message}`,
        );
        ok = false;
      }
    }
    return ok;
  };
  const onHangup = () => void reload();
  process.on('SIGHUP', onHangup);
  const onMessage = (message: { type?: string }) => {
    if (message.type === 'reload') void reload().then((ok) => process.send!({ type: 'reloaded', ok }));
  };
  if (cluster.isWorker) process.on('message', onMessage);
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  let address: string;
  try {
    address = await service.app.listen({ port, host });
  } catch (error) {
    console.error(`deltarec serve: cannot listen on ${host}:${port}: ${(error as Error).message}`);
    await service.close();
    return 1;
  }
  const line = `listening on ${address} (${service.catalog.activeCount} items, ${replayed.records} catalog changes replayed, model ${service.modelId})`;
  // One machine-readable line so scripts (benchmarks, tests) can find the port; replicas tell the primary.
  if (cluster.isWorker) process.send!({ type: 'listening', line });
  else console.log(`deltarec serve: ${line}`);
  if (values.ui) console.log(`deltarec serve: explorer at ${address}/ (${services.length} model(s))`);
  await stopped;
  process.off('SIGHUP', onHangup);
  process.off('message', onMessage);
  // Bounded: in-flight requests finish, connections still busy after --shutdown-timeout are cut.
  await Promise.all(services.map((s) => s.close()));
  return 0;
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The primary of `--replicas N`: forks N replicas of this command (each a full service on the shared port, with
 * its own PostgreSQL connections), restarts one that dies, forwards SIGHUP as a rolling reload (one replica at a
 * time, so the others keep serving), and stops them all on SIGINT/SIGTERM.
 */
async function runPrimary(replicas: number): Promise<number> {
  let stopping = false;
  const fork = () =>
    new Promise<Worker>((resolve, reject) => {
      const worker = cluster.fork();
      const onMessage = (message: { type?: string; line?: string }) => {
        if (message.type !== 'listening') return;
        worker.off('message', onMessage);
        worker.off('exit', onEarlyExit);
        worker.on('exit', (code, signal) => {
          // Exit code 0 is a clean stop (a replica that got SIGINT/SIGTERM itself, e.g. Ctrl-C of the group).
          if (stopping || (code === 0 && !signal)) return;
          console.error(
            `deltarec serve: replica ${worker.process.pid} exited (${signal ?? code}); starting another in 1 s`,
          );
          setTimeout(() => {
            if (!stopping)
              void fork().catch((error: Error) => console.error(`deltarec serve: ${error.message}`));
          }, 1000);
        });
        resolve(worker);
        lines.push(message.line!);
      };
      const onEarlyExit = (code: number) =>
        reject(new Error(`a replica exited with code ${code} before listening`));
      worker.on('message', onMessage);
      worker.once('exit', onEarlyExit);
    });
  const lines: string[] = [];
  try {
    await Promise.all(Array.from({ length: replicas }, fork));
  } catch (error) {
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
    console.error(`deltarec serve: ${(error as Error).message}`);
    return 1;
  }
  let rolling = Promise.resolve();
  const onHangup = () => {
    rolling = rolling.then(async () => {
      for (const worker of Object.values(cluster.workers ?? {})) {
        if (!worker) continue;
        await new Promise<void>((resolve) => {
          const onMessage = (message: { type?: string }) => {
            if (message.type !== 'reloaded') return;
            worker.off('message', onMessage);
            resolve();
          };
          worker.on('message', onMessage);
          worker.once('exit', () => resolve()); // a replica that dies meanwhile does not stall the others
          worker.send({ type: 'reload' });
        });
      }
    });
  };
  process.on('SIGHUP', onHangup);
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  console.log(`deltarec serve: ${lines[0]}, ${replicas} replicas`);
  await stopped;
  stopping = true;
  process.off('SIGHUP', onHangup);
  await Promise.all(
    Object.values(cluster.workers ?? {}).map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (!worker || worker.isDead()) return resolve();
          worker.once('exit', () => resolve());
          worker.process.kill('SIGTERM');
        }),
    ),
  );
  return 0;
}
