/**
 * The recommendation service (docs/service.md): Fastify routes over a live catalog, a durable catalog store (the
 * file log, or PostgreSQL shared by replicas) and a micro-batching scoring engine; the model can be swapped while
 * serving (reload).
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { join } from 'node:path';
import type { LiveCatalog } from './catalog.js';
import {
  CatalogUnavailableError,
  FileCatalogStore,
  type CatalogChange,
  type CatalogStore,
  type NewChange,
} from './catalog-store.js';
import { ContentError } from './content.js';
import type { ScoringEngine } from './engine.js';
import { Metrics } from './metrics.js';
import { applyChange, loadRuntime, type ModelRuntime } from './runtime.js';

export interface ServiceOptions {
  modelDir: string;
  /** Durable catalog change log; default <modelDir>/catalog.log. */
  catalogPath?: string;
  /** PostgreSQL catalog shared by replicas (postgres://...); replaces the file log. */
  catalogUrl?: string;
  /** application_name of the PostgreSQL connections (default 'deltarec'). */
  replicaName?: string;
  /** Scoring worker threads (default 1); 0 scores micro-batches on the event loop (inline). */
  workers?: number;
  /** Most requests scored in one batch. Default 64. */
  maxBatch?: number;
  /** Largest accepted request body in bytes. Default 256 KiB. */
  bodyLimit?: number;
  /** Largest k. Default 1000. */
  maxK?: number;
  /** Most history items in one /recommend request. Default 512. */
  maxItems?: number;
  /** Most ids in one exclude list. Default 1000. */
  maxExclude?: number;
  logger?: boolean;
}

export interface Service {
  app: FastifyInstance;
  /** The serving model's catalog and engine (they change with a reload). */
  readonly catalog: LiveCatalog;
  readonly engine: ScoringEngine;
  readonly modelId: string;
  store: CatalogStore;
  /** Catalog changes replayed at start, and whether a torn last record of the file log was dropped. */
  replayed: { records: number; droppedTail: boolean };
  /**
   * Loads a model directory (default: the one being served) and switches to it without dropping a request:
   * requests already running finish on the old model, catalog changes are carried over (runtime.ts applyChange).
   */
  reload(modelDir?: string): Promise<{ previous: string; model: string; notCarried: number }>;
  close(): Promise<void>;
}

/** A reload refused because another one is running. */
export class ReloadBusyError extends Error {}

const ID = { type: 'string', minLength: 1, maxLength: 256 } as const;
const MAX_TEXT = 16_384;

interface RecommendBody {
  items: string[];
  k: number;
  exclude: string[];
  include_cold: boolean;
  exclude_seen: boolean;
}

interface ItemBody {
  id: string;
  fields?: Record<string, string>;
  text?: string;
  vector?: number[];
}

function badRequest(reply: FastifyReply, status: number, message: string, extra: object = {}) {
  return reply.code(status).send({ statusCode: status, error: STATUS_CODES[status], message, ...extra });
}

/** Ajv's first error as one sentence that names the field. */
function describeValidation(error: FastifyError): string {
  const first = error.validation?.[0];
  if (!first) return error.message;
  const field = `${error.validationContext ?? 'body'}${first.instancePath.replace(/\//g, '.')}`;
  if (first.keyword === 'additionalProperties') {
    return `${field} has an unknown field '${String(first.params.additionalProperty)}'`;
  }
  if (first.keyword === 'required')
    return `${field} lacks the required field '${String(first.params.missingProperty)}'`;
  return `${field} ${first.message ?? 'is invalid'}`;
}

export async function createService(options: ServiceOptions): Promise<Service> {
  const workers = options.workers ?? 1;
  const maxK = options.maxK ?? 1000;
  const maxItems = options.maxItems ?? 512;
  const maxExclude = options.maxExclude ?? 1000;
  const bodyLimit = options.bodyLimit ?? 256 * 1024;

  const maxBatch = options.maxBatch ?? 64;

  // The model, then every catalog change recorded so far. `history` keeps the changes so that a reload can replay
  // them into the next model; every change is applied to the model serving at the moment it arrives.
  let current: ModelRuntime = await loadRuntime(options.modelDir, workers, maxBatch);
  const history: CatalogChange[] = [];
  const applyToCurrent = (change: CatalogChange) => {
    history.push(change);
    return applyChange(current, change);
  };
  let store: CatalogStore;
  let replayed: Service['replayed'];
  try {
    if (options.catalogUrl) {
      // Loaded only when used: the embedded file log needs no database client.
      const { PostgresCatalogStore } = await import('./pg-catalog.js');
      store = new PostgresCatalogStore(options.catalogUrl, { applicationName: options.replicaName });
      await store.start(applyToCurrent);
      replayed = { records: history.length, droppedTail: false };
    } else {
      const file = new FileCatalogStore(
        options.catalogPath ?? join(current.artifact.dir, 'catalog.log'),
        current.modelId,
      );
      await file.start(applyToCurrent);
      store = file;
      replayed = file.replayed;
    }
  } catch (error) {
    await current.engine.close();
    throw error;
  }
  let modelDir = options.modelDir;
  let reloading = false;
  let reloads = 0;

  async function reload(dir = modelDir): Promise<{ previous: string; model: string; notCarried: number }> {
    if (reloading) throw new ReloadBusyError('a model reload is already running');
    reloading = true;
    try {
      const next = await loadRuntime(dir, workers, maxBatch);
      // Synchronous from here to the switch: no change or request can slip between the replay and the swap.
      try {
        for (const change of history) applyChange(next, change);
      } catch (error) {
        await next.engine.close();
        throw error;
      }
      const previous = current;
      current = next;
      modelDir = dir;
      reloads++;
      void retire(previous);
      return { previous: previous.modelId, model: next.modelId, notCarried: next.notCarried };
    } finally {
      reloading = false;
    }
  }

  /** Closes a swapped-out runtime once the requests that started on it are answered (at most 60 s). */
  async function retire(old: ModelRuntime): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (old.active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await old.engine.close();
  }

  /** Records a change in the store; the store applies it (to the model serving then) before resolving. */
  async function write(reply: FastifyReply, change: NewChange) {
    try {
      return await store.write(change);
    } catch (error) {
      if (error instanceof CatalogUnavailableError) {
        void badRequest(reply, 503, error.message);
        return null;
      }
      throw error;
    }
  }

  const metrics = new Metrics();
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });

  app.removeContentTypeParser('text/plain'); // JSON only: anything else is 415 with a clear message
  app.addHook('onResponse', async (request, reply) => {
    metrics.observe(
      request.method,
      request.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
  });
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    const status =
      error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    let message = error.message;
    if (status === 500) {
      app.log.error(error);
      message = 'internal error';
    } else if (error.validation) message = `invalid request: ${describeValidation(error)}`;
    else if (status === 415)
      message = `unsupported content-type; send JSON with 'content-type: application/json'`;
    return reply.code(status).send({ statusCode: status, error: STATUS_CODES[status], message });
  });
  app.setNotFoundHandler((request, reply) =>
    badRequest(reply, 404, `no route ${request.method} ${request.url.split('?')[0]}`),
  );

  app.post<{ Body: RecommendBody }>(
    '/recommend',
    {
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['items'],
          properties: {
            items: { type: 'array', items: ID, minItems: 1, maxItems: maxItems },
            k: { type: 'integer', minimum: 1, maximum: maxK, default: 10 },
            exclude: { type: 'array', items: ID, maxItems: maxExclude, default: [] },
            include_cold: { type: 'boolean', default: true },
            exclude_seen: { type: 'boolean', default: true },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              items: {
                type: 'array',
                items: { type: 'object', properties: { id: { type: 'string' }, score: { type: 'number' } } },
              },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const rt = current; // a reload meanwhile does not move this request to the other model
      rt.active++;
      try {
        return await recommend(rt, request.body, reply);
      } finally {
        rt.active--;
      }
    },
  );

  async function recommend(rt: ModelRuntime, body: RecommendBody, reply: FastifyReply) {
    const { catalog, engine } = rt;
    const history = new Int32Array(body.items.length);
    const unknown: string[] = [];
    for (let i = 0; i < body.items.length; i++) {
      const index = catalog.historyIndex(body.items[i]);
      if (index === undefined) unknown.push(body.items[i]);
      else history[i] = index;
    }
    if (unknown.length > 0) {
      const shown = unknown.slice(0, 10).map((id) => JSON.stringify(id));
      return badRequest(
        reply,
        400,
        `unknown item id(s) in 'items': ${shown.join(', ')}${unknown.length > 10 ? ', ...' : ''}`,
        {
          unknown_ids: unknown,
        },
      );
    }
    const exclude: number[] = [];
    for (const id of body.exclude) {
      const info = catalog.get(id); // unknown or deleted ids are never recommended anyway
      if (info) exclude.push(info.index);
    }
    const result = await engine.recommend({
      history,
      exclude: Int32Array.from(exclude),
      k: body.k,
      includeCold: body.include_cold,
      excludeSeen: body.exclude_seen,
    });
    const items = new Array(result.indices.length);
    for (let i = 0; i < items.length; i++)
      items[i] = { id: catalog.rowIds[result.indices[i]], score: result.scores[i] };
    return { items };
  }

  app.post<{ Body: ItemBody }>(
    '/items',
    {
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['id'],
          properties: {
            id: ID,
            fields: {
              type: 'object',
              additionalProperties: { type: 'string', maxLength: MAX_TEXT },
              minProperties: 1,
              maxProperties: 32,
            },
            text: { type: 'string', minLength: 1, maxLength: MAX_TEXT },
            vector: { type: 'array', items: { type: 'number' }, minItems: 1, maxItems: 65_536 },
          },
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const { canAddItems, strategy, content, modelId } = current;
      if (!canAddItems) {
        return badRequest(
          reply,
          409,
          `this model (strategy '${strategy}') has no content embeddings, so it cannot add items`,
        );
      }
      const given = (['fields', 'text', 'vector'] as const).filter((key) => body[key] !== undefined);
      if (given.length !== 1) {
        return badRequest(
          reply,
          400,
          `give exactly one of 'fields', 'text' or 'vector' (got ${given.length === 0 ? 'none' : given.join(', ')})`,
        );
      }
      let vector: Float32Array;
      let fields: Record<string, string> | undefined;
      let raw: Float32Array | undefined;
      try {
        if (body.vector) {
          raw = Float32Array.from(body.vector);
          vector = content.fromVector(raw);
        } else {
          fields = body.fields ?? { [content.fields[0] ?? 'text']: body.text! };
          vector = content.fromFields(fields);
        }
      } catch (error) {
        if (error instanceof ContentError) return badRequest(reply, 422, error.message);
        throw error;
      }
      const applied = await write(reply, { op: 'put', id: body.id, model: modelId, vector, raw, fields });
      if (!applied) return reply;
      const { existed } = applied;
      return reply.code(existed ? 200 : 201).send({ id: body.id, status: existed ? 'updated' : 'created' });
    },
  );

  const idParams = { type: 'object', required: ['id'], properties: { id: ID } } as const;

  app.get<{ Params: { id: string } }>(
    '/items/:id',
    { schema: { params: idParams } },
    async (request, reply) => {
      const { catalog } = current;
      const info = catalog.get(request.params.id);
      if (!info) return badRequest(reply, 404, `item ${JSON.stringify(request.params.id)} not found`);
      return {
        id: request.params.id,
        warm: catalog.isWarm(info.index),
        added: info.added,
        fields: info.fields ?? null,
      };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/items/:id',
    { schema: { params: idParams } },
    async (request, reply) => {
      const id = request.params.id;
      if (!current.catalog.get(id)) return badRequest(reply, 404, `item ${JSON.stringify(id)} not found`);
      const applied = await write(reply, { op: 'delete', id, model: current.modelId });
      if (!applied) return reply;
      return { id, status: 'deleted' };
    },
  );

  // Loads a model directory (default: the one being served) without downtime; body {"model": "DIR"} optional.
  app.post<{ Body: { model?: string } | undefined }>(
    '/admin/reload',
    {
      schema: {
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: { model: { type: 'string', minLength: 1, maxLength: 4096 } },
        },
      },
    },
    async (request, reply) => {
      try {
        return { status: 'reloaded', ...(await reload(request.body?.model ?? modelDir)) };
      } catch (error) {
        if (error instanceof ReloadBusyError) return badRequest(reply, 409, error.message);
        return badRequest(
          reply,
          422,
          `reload failed, still serving model ${current.modelId}: ${(error as Error).message}`,
        );
      }
    },
  );

  const started = Date.now();
  app.get('/health', async (_request, reply) => {
    const { engine, catalog, artifact, strategy, modelId, notCarried } = current;
    const failure = engine.failure;
    if (failure) return reply.code(503).send({ status: 'failed', message: failure.message });
    const catalogStatus = store.status();
    return {
      // degraded: recommendations are served from memory, but catalog writes are refused (catalog.message).
      status: catalogStatus.writable ? 'ok' : 'degraded',
      model: artifact.manifest.model.kind,
      model_id: modelId,
      strategy,
      items: catalog.activeCount,
      rows: catalog.numRows - 1,
      catalog: { ...catalogStatus, not_carried: notCarried },
      uptime_s: (Date.now() - started) / 1000,
      pid: process.pid, // tells replicas apart
    };
  });

  app.get('/metrics', async (_request, reply) => {
    const { catalog, engine } = current;
    const catalogStatus = store.status();
    reply.type('text/plain; version=0.0.4');
    return metrics.render([
      {
        name: 'deltarec_catalog_items',
        help: 'Recommendable items in the catalog.',
        type: 'gauge',
        values: [['', catalog.activeCount]],
      },
      {
        name: 'deltarec_catalog_rows',
        help: 'Item rows of the model (including retired rows).',
        type: 'gauge',
        values: [['', catalog.numRows - 1]],
      },
      {
        name: 'deltarec_scoring_batches_total',
        help: 'Scoring batches run.',
        type: 'counter',
        values: [['', engine.stats.batches]],
      },
      {
        name: 'deltarec_scoring_requests_total',
        help: 'Recommendation requests scored (requests / batches = mean batch size).',
        type: 'counter',
        values: [['', engine.stats.requests]],
      },
      {
        name: 'deltarec_catalog_version',
        help: 'Last catalog change version applied by this process.',
        type: 'gauge',
        values: [['', catalogStatus.version]],
      },
      {
        name: 'deltarec_catalog_writable',
        help: '1 while catalog writes can be recorded (0: database unreachable).',
        type: 'gauge',
        values: [['', catalogStatus.writable ? 1 : 0]],
      },
      {
        name: 'deltarec_model_reloads_total',
        help: 'Models swapped in since start.',
        type: 'counter',
        values: [['', reloads]],
      },
    ]);
  });

  return {
    app,
    get catalog() {
      return current.catalog;
    },
    get engine() {
      return current.engine;
    },
    get modelId() {
      return current.modelId;
    },
    store,
    replayed,
    reload,
    async close() {
      await app.close();
      await current.engine.close();
      await store.close();
    },
  };
}
