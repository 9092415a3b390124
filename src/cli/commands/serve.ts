import { parseArgs } from 'node:util';
import { createService } from '../../serve/server.js';
import { intOption, withNegativeNumbers } from '../options.js';

export const summary = 'serve recommendations over HTTP with a live, durable item catalog';

const HELP = `usage: deltarec serve --model DIR [--port N] [--host H] [options]

Serves a model artifact over HTTP (see docs/service.md):
  POST /recommend  {"items": [ids], "k": 10, "exclude": [ids], "include_cold": true, "exclude_seen": true}
  POST /items      {"id": ..., "fields": {...}} | {"id": ..., "text": "..."} | {"id": ..., "vector": [...]}
  GET /items/:id, DELETE /items/:id, GET /health, GET /metrics

options:
  --model DIR        model artifact directory (required)
  --port N           TCP port (default 8080; 0 picks a free port)
  --host H           address to listen on (default 127.0.0.1)
  --catalog FILE     durable catalog change log (default DIR/catalog.log)
  --workers N        scoring worker threads (default 1); 0 scores micro-batches on the event loop
  --max-batch N      most requests scored together (default 64)
  --body-limit N     largest request body in bytes (default 262144)
  --max-k N          largest k (default 1000)
  --max-items N      most history items per request (default 512)
  --kernel-threads N threads of the native kernels (default 1: the event loop keeps a core; the environment
                     variable DELTAREC_THREADS, when set, wins)
  --log              log every request (pino JSON lines on stdout)
`;

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: withNegativeNumbers(args),
      options: {
        model: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        catalog: { type: 'string' },
        workers: { type: 'string' },
        'max-batch': { type: 'string' },
        'body-limit': { type: 'string' },
        'max-k': { type: 'string' },
        'max-items': { type: 'string' },
        'kernel-threads': { type: 'string' },
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
  if (!values.model) {
    console.error(`deltarec serve: --model DIR is required\n\n${HELP}`);
    return 2;
  }
  let service;
  let port: number;
  try {
    port = intOption(values.port, 'port', 0) ?? 8080;
    // Read by the native kernels when their thread pool starts (at the first large kernel call, after this).
    process.env.DELTAREC_THREADS ??= String(intOption(values['kernel-threads'], 'kernel-threads', 1) ?? 1);
    service = await createService({
      modelDir: values.model,
      catalogPath: values.catalog,
      workers: intOption(values.workers, 'workers', 0) ?? 1,
      maxBatch: intOption(values['max-batch'], 'max-batch', 1) ?? 64,
      bodyLimit: intOption(values['body-limit'], 'body-limit', 64) ?? 256 * 1024,
      maxK: intOption(values['max-k'], 'max-k', 1) ?? 1000,
      maxItems: intOption(values['max-items'], 'max-items', 1) ?? 512,
      logger: values.log ?? false,
    });
  } catch (error) {
    console.error(`deltarec serve: ${(error as Error).message}`);
    return 1;
  }
  const { replayed, catalog } = service;
  if (replayed.droppedTail)
    console.error('deltarec serve: dropped a torn last record of the catalog log (never acknowledged)');
  const address = await service.app.listen({ port, host: values.host ?? '127.0.0.1' });
  // One machine-readable line so scripts (benchmarks, tests) can find the port.
  console.log(
    `deltarec serve: listening on ${address} (${catalog.activeCount} items, ${replayed.records} catalog changes replayed)`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await service.close();
  return 0;
}
