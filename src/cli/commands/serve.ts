import { parseArgs } from 'node:util';
import { readCatalog } from '../../data/readers.js';
import { isLoopback, loadToken } from '../../serve/access.js';
import { createService, type Service } from '../../serve/server.js';
import { installExplorer } from '../../serve/ui/explorer.js';
import { floatOption, intOption, withNegativeNumbers } from '../options.js';

export const summary = 'serve recommendations over HTTP with a live, durable item catalog';

const HELP = `usage: deltarec serve --model DIR [--port N] [--host H] [options]

Serves a model artifact over HTTP (see docs/service.md):
  POST /recommend  {"items": [ids], "k": 10, "exclude": [ids], "include_cold": true, "exclude_seen": true}
  POST /items      {"id": ..., "fields": {...}} | {"id": ..., "text": "..."} | {"id": ..., "vector": [...]}
  GET /items/:id, DELETE /items/:id, GET /health, GET /metrics

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
  --catalog FILE     durable catalog change log (default DIR/catalog.log)
  --workers N        scoring worker threads (default 1); 0 scores micro-batches on the event loop
  --max-batch N      most requests scored together (default 64)
  --batch-budget-ms X  estimated compute time one scoring batch may take (default 2): a free worker takes what
                     is queued, up to this budget, never waiting for a batch to fill
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
        workers: { type: 'string' },
        'max-batch': { type: 'string' },
        'batch-budget-ms': { type: 'string' },
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
  let tokens;
  try {
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
  if (!tokens.write && !isLoopback(host)) warn(`--insecure: writes on ${host} need no token`);
  if (modelDirs.length > 1 && !values.ui) {
    console.error(
      `deltarec serve: several --model directories are served side by side by the explorer; add --ui`,
    );
    return 2;
  }
  if (modelDirs.length > 1 && values.catalog) {
    console.error(
      `deltarec serve: --catalog names the log of one model; with several, each uses DIR/catalog.log`,
    );
    return 2;
  }
  if (values.items && !values.ui) {
    console.error(`deltarec serve: --items is the catalog the explorer page shows; add --ui`);
    return 2;
  }
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
          catalogPath: values.catalog,
          workers: intOption(values.workers, 'workers', 0) ?? 1,
          maxBatch: intOption(values['max-batch'], 'max-batch', 1) ?? 64,
          batchBudgetMs: floatOption(values['batch-budget-ms'], 'batch-budget-ms', 0.01) ?? 2,
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
  const { replayed, catalog } = service;
  if (replayed.droppedTail)
    console.error('deltarec serve: dropped a torn last line of the catalog log (never acknowledged)');
  if (replayed.reencoded > 0) {
    console.error(
      `deltarec serve: the catalog log was written for another model; re-encoded ${replayed.reencoded} item(s) ` +
        `from their logged fields and rewrote the log for this one`,
    );
  }
  let address: string;
  try {
    address = await service.app.listen({ port, host });
  } catch (error) {
    console.error(`deltarec serve: cannot listen on ${host}:${port}: ${(error as Error).message}`);
    await service.close();
    return 1;
  }
  // One machine-readable line so scripts (benchmarks, tests) can find the port.
  console.log(
    `deltarec serve: listening on ${address} (${catalog.activeCount} items, ${replayed.records} catalog changes replayed)`,
  );
  if (values.ui) console.log(`deltarec serve: explorer at ${address}/ (${services.length} model(s))`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  // Bounded: in-flight requests finish, connections still busy after --shutdown-timeout are cut.
  await Promise.all(services.map((s) => s.close()));
  return 0;
}
