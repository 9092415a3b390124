/**
 * The recommendation service (docs/service.md): Fastify routes over a live catalog, a durable change log and a
 * micro-batching scoring engine.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { join } from 'node:path';
import { loadArtifact, type LoadedArtifact } from '../model/artifact.js';
import { CatalogLog, encodeVector } from './catalog-log.js';
import { LiveCatalog, replayChanges } from './catalog.js';
import { ContentError, ItemContentEncoder, loadContentEncoder } from './content.js';
import { InlineBackend, ScoringEngine, WorkerBackend, type ScoreBackend } from './engine.js';
import { Metrics, RECOMMEND_STAGES } from './metrics.js';
import { itemVectorWidth, loadScoringModel, modelStrategy } from './models.js';
import { Scorer } from './scorer.js';

export interface ServiceOptions {
  modelDir: string;
  /** Durable catalog change log; default <modelDir>/catalog.log. */
  catalogPath?: string;
  /** Scoring worker threads (default 1); 0 scores micro-batches on the event loop (inline). */
  workers?: number;
  /** Most requests scored in one batch. Default 64. */
  maxBatch?: number;
  /** Estimated compute time one scoring batch may take, in milliseconds (see engine.ts). Default 2. */
  batchBudgetMs?: number;
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
  catalog: LiveCatalog;
  engine: ScoringEngine;
  /** Records replayed from the change log at start, and whether a torn last record was dropped. */
  replayed: { records: number; droppedTail: boolean };
  close(): Promise<void>;
}

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

  // Model and content. With workers, the main thread only needs the artifact (workers load the model themselves).
  let artifact: LoadedArtifact;
  let backends: ScoreBackend[];
  if (workers === 0) {
    const loaded = await loadScoringModel(options.modelDir);
    artifact = loaded.artifact;
    backends = [new InlineBackend(new Scorer(loaded.model, loaded.numWarm, loaded.fusion))];
  } else {
    artifact = await loadArtifact(options.modelDir);
    const started = Array.from({ length: workers }, () => new WorkerBackend(artifact.dir));
    backends = started;
    try {
      await Promise.all(started.map((w) => w.ready));
    } catch (error) {
      await Promise.all(started.map((w) => w.close()));
      throw error;
    }
  }
  const { manifest } = artifact;
  const d = itemVectorWidth(artifact);
  const strategy = modelStrategy(artifact);
  const canAddItems = strategy !== 'id';
  const content: ItemContentEncoder = await loadContentEncoder(artifact);
  const engine = new ScoringEngine(backends, {
    maxBatch: options.maxBatch,
    batchBudgetMs: options.batchBudgetMs,
  });
  const catalog = new LiveCatalog(manifest.items.ids, manifest.items.num_warm);

  // Replay the durable change log.
  const catalogPath = options.catalogPath ?? join(artifact.dir, 'catalog.log');
  const { log, replay } = await CatalogLog.open(catalogPath);
  replayChanges(catalog, replay.records, d, engine, catalogPath);

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

  // When each /recommend got its answer from the engine: serialization is measured from there to onSend.
  const answeredAt = new WeakMap<object, number>();
  app.post<{ Body: RecommendBody }>(
    '/recommend',
    {
      onSend: async (request, _reply, payload) => {
        const answered = answeredAt.get(request);
        if (answered !== undefined) metrics.observeStage('serialize', (performance.now() - answered) / 1000);
        return payload;
      },
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
      const body = request.body;
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
      answeredAt.set(request, performance.now());
      for (const stage of RECOMMEND_STAGES)
        if (stage !== 'serialize') metrics.observeStage(stage, result.stages[stage]);
      const items = new Array(result.indices.length);
      for (let i = 0; i < items.length; i++)
        items[i] = { id: catalog.rowIds[result.indices[i]], score: result.scores[i] };
      return { items };
    },
  );

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
      try {
        if (body.vector) vector = content.fromVector(Float32Array.from(body.vector));
        else {
          fields = body.fields ?? { [content.fields[0] ?? 'text']: body.text! };
          vector = content.fromFields(fields);
        }
      } catch (error) {
        if (error instanceof ContentError) return badRequest(reply, 422, error.message);
        throw error;
      }
      await log.append({ op: 'put', id: body.id, vector: encodeVector(vector), fields, t: Date.now() });
      const { retired } = catalog.put(body.id, fields);
      engine.append(vector, 1, [fields]);
      if (retired) engine.retire(retired);
      return reply.code(retired ? 200 : 201).send({ id: body.id, status: retired ? 'updated' : 'created' });
    },
  );

  const idParams = { type: 'object', required: ['id'], properties: { id: ID } } as const;

  app.get<{ Params: { id: string } }>(
    '/items/:id',
    { schema: { params: idParams } },
    async (request, reply) => {
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
      if (!catalog.get(id)) return badRequest(reply, 404, `item ${JSON.stringify(id)} not found`);
      await log.append({ op: 'delete', id, t: Date.now() });
      const retired = catalog.remove(id);
      if (retired) engine.retire(retired);
      return { id, status: 'deleted' };
    },
  );

  const started = Date.now();
  app.get('/health', async (_request, reply) => {
    const failure = engine.failure;
    if (failure) return reply.code(503).send({ status: 'failed', message: failure.message });
    return {
      status: 'ok',
      model: manifest.model.kind,
      strategy,
      items: catalog.activeCount,
      rows: catalog.numRows - 1,
      uptime_s: (Date.now() - started) / 1000,
    };
  });

  app.get('/metrics', async (_request, reply) => {
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
        name: 'deltarec_scoring_request_cost_seconds',
        help: 'Estimated compute time per request (moving average), which sizes batches within the batch budget.',
        type: 'gauge',
        values: [['', engine.stats.requestCostMs / 1000]],
      },
    ]);
  });

  return {
    app,
    catalog,
    engine,
    replayed: { records: replay.records.length, droppedTail: replay.droppedTail },
    async close() {
      await app.close();
      await engine.close();
      await log.close();
    },
  };
}
