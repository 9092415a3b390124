/**
 * The recommendation service (docs/service.md): Fastify routes over a live catalog, a durable change log and a
 * micro-batching scoring engine.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { DELTAREC_VERSION, loadArtifact, type LoadedArtifact } from '../model/artifact.js';
import { installAccessControl, validateTokens, type AccessTokens } from './access.js';
import { CatalogLog, CatalogLogError, encodeVector, type WriteFunction } from './catalog-log.js';
import { LiveCatalog, putItem, recordsForModel, replayChanges } from './catalog.js';
import { ContentError, ItemContentEncoder, contentFingerprint, loadContentEncoder } from './content.js';
import { InlineBackend, ScoringEngine, WorkerBackend, type ScoreBackend } from './engine.js';
import { MAX_ID_LENGTH, MAX_ID_URL_LENGTH, idProblem } from './ids.js';
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
  /** Bearer tokens (access.ts); null or absent: that class of routes is open. */
  tokens?: Partial<AccessTokens>;
  /** Most milliseconds to receive a whole request, headers and body (default 30 s). */
  requestTimeout?: number;
  /** Most idle milliseconds of a connection between requests (default 5 s). */
  keepAliveTimeout?: number;
  /** Most idle milliseconds of a socket within a request (default 30 s). */
  socketTimeout?: number;
  /** Most open connections; later ones are closed at once (default 1024). */
  maxConnections?: number;
  /** close() ends connections still busy after this many milliseconds (default 10 s). */
  shutdownTimeout?: number;
  /** Compact the catalog log once this many records are superseded (default 1024; see catalog-log.ts). */
  compactAfter?: number;
  /** Replaces the catalog log's file write (tests simulate a full disk with it). */
  catalogWrite?: WriteFunction;
  /** Where catalog log failures (always) and internal errors (without `logger`) are reported; default stderr. */
  reportError?: (message: string) => void;
  logger?: boolean;
}

export interface Service {
  app: FastifyInstance;
  /** The served model artifact (manifest, weights, state parts). */
  artifact: LoadedArtifact;
  catalog: LiveCatalog;
  engine: ScoringEngine;
  log: CatalogLog;
  /**
   * Records replayed from the change log at start, whether a torn last line was dropped, and how many items were
   * re-encoded from their logged fields because the log was written for another content pipeline.
   */
  replayed: { records: number; droppedTail: boolean; reencoded: number };
  close(): Promise<void>;
}

const ID = { type: 'string', format: 'item-id' } as const;
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

/** Raw error response on a socket the HTTP parser gave up on, in the same shape as every other error. */
function socketError(socket: Socket, status: number, message: string): void {
  if (socket.writable) {
    const body = JSON.stringify({ statusCode: status, error: STATUS_CODES[status], message });
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/** Messages for the HTTP parser's errors (llhttp codes) a client can cause. */
function describeClientError(code: string | undefined): [number, string] {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, 'the request was not received in time'];
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'the request line and headers are too large'];
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      return [400, 'invalid content-length header (or both content-length and transfer-encoding)'];
    case 'HPE_INVALID_TRANSFER_ENCODING':
    case 'HPE_INVALID_CHUNK_SIZE':
      return [400, 'invalid transfer-encoding header or chunked body'];
    default:
      return [400, `malformed HTTP request (${code ?? 'parse error'})`];
  }
}

/** Route patterns ('/items/:id') as regular expressions, to tell a wrong method (405) from no route (404). */
function routePattern(url: string): RegExp {
  const escaped = url
    .split('/')
    .map((part) =>
      part.startsWith(':') ? '[^/]+' : part === '*' ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${escaped}$`);
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
  const value = (first as { data?: unknown }).data; // present with ajv's verbose option
  if (first.keyword === 'format' && first.params.format === 'item-id' && typeof value === 'string')
    return `${field} ${idProblem(value) ?? 'is not a valid item id'}`;
  return `${field} ${first.message ?? 'is invalid'}`;
}

export async function createService(options: ServiceOptions): Promise<Service> {
  const workers = options.workers ?? 1;
  const maxK = options.maxK ?? 1000;
  const maxItems = options.maxItems ?? 512;
  const maxExclude = options.maxExclude ?? 1000;
  const bodyLimit = options.bodyLimit ?? 256 * 1024;
  const tokens = { write: options.tokens?.write ?? null, read: options.tokens?.read ?? null };
  validateTokens(tokens);

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

  const reportError =
    options.reportError ?? ((message: string) => process.stderr.write(`deltarec serve: ${message}\n`));
  const logger = options.logger ?? false;

  // Replay the durable change log (locked: a second server on the same log refuses to start).
  const catalogPath = options.catalogPath ?? join(artifact.dir, 'catalog.log');
  let fingerprint: string;
  let opened: Awaited<ReturnType<typeof CatalogLog.open>>;
  try {
    fingerprint = await contentFingerprint(artifact);
    opened = await CatalogLog.open(catalogPath, {
      model: fingerprint,
      write: options.catalogWrite,
      compactAfter: options.compactAfter,
      onFailure: (error) => reportError(error.message),
    });
  } catch (error) {
    await engine.close();
    throw error;
  }
  const { log, replay } = opened;
  let records = replay.records;
  let reencoded = 0;
  try {
    const adopted = await recordsForModel(replay, fingerprint, async () => content, catalogPath);
    if (adopted.rewrite) {
      records = adopted.records;
      reencoded = adopted.reencoded;
      await log.rewrite(records);
    }
    replayChanges(catalog, records, d, engine, catalogPath);
  } catch (error) {
    await log.close();
    await engine.close();
    throw error;
  }

  const metrics = new Metrics();
  const counters = { aborted: 0, timedOut: 0, droppedConnections: 0, openConnections: 0 };
  const cutOff = new WeakSet<Socket>(); // sockets the server closed (timeouts): their requests are not 'aborted'
  const requestTimeout = options.requestTimeout ?? 30_000;
  const routes: { method: string; pattern: RegExp }[] = [];
  const app = Fastify({
    logger,
    bodyLimit,
    requestTimeout,
    keepAliveTimeout: options.keepAliveTimeout ?? 5_000,
    connectionTimeout: options.socketTimeout ?? 30_000,
    // Node checks request timeouts on this interval (default 30 s): a trickling client is cut off within
    // requestTimeout plus at most a second.
    http: { headersTimeout: requestTimeout, connectionsCheckingInterval: Math.min(1000, requestTimeout) },
    routerOptions: { maxParamLength: MAX_ID_URL_LENGTH },
    forceCloseConnections: 'idle',
    ajv: {
      customOptions: {
        coerceTypes: false,
        removeAdditional: false,
        allErrors: false,
        verbose: true, // errors carry the offending value (describeValidation names an id's problem)
        formats: { 'item-id': (id: string) => idProblem(id) === null },
      },
    },
    frameworkErrors: (error, _request, reply) => {
      if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
        return badRequest(
          reply,
          414,
          `a path segment is longer than any item id (at most ${MAX_ID_LENGTH} characters)`,
        );
      }
      if (error.code === 'FST_ERR_BAD_URL')
        return badRequest(reply, 400, 'the URL is not valid percent-encoded UTF-8');
      return badRequest(reply, error.statusCode ?? 400, error.message);
    },
    clientErrorHandler: (error: Error & { code?: string }, socket: Socket) => {
      if (error.code === 'ECONNRESET' || socket.destroyed) return;
      if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        counters.timedOut++;
        cutOff.add(socket);
      }
      const [status, message] = describeClientError(error.code);
      socketError(socket, status, message);
    },
  });

  const server = app.server;
  server.maxConnections = options.maxConnections ?? 1024;
  server.on('drop', () => counters.droppedConnections++);
  server.on('connection', (socket: Socket) => {
    counters.openConnections++;
    socket.once('close', () => counters.openConnections--);
  });
  // A socket idle within a request (connectionTimeout): node destroys it only when nobody listens for 'timeout'.
  server.on('timeout', (socket: Socket) => {
    counters.timedOut++;
    cutOff.add(socket);
    socket.destroy();
  });

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) routes.push({ method, pattern: routePattern(route.url) });
  });
  installAccessControl(app, tokens);
  app.removeContentTypeParser('text/plain'); // JSON only: anything else is 415 with a clear message
  app.addHook('onRequestAbort', (request, done) => {
    if (!cutOff.has(request.raw.socket)) counters.aborted++;
    done();
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.observe(
      request.method,
      request.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
  });
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status =
      error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    let message = error.message;
    if (status === 500) {
      app.log.error(error);
      // The catalog log's failure names its cause (the service is unhealthy until restarted); others stay opaque.
      if (error instanceof CatalogLogError) message = error.message;
      else {
        message = 'internal error';
        if (!logger) reportError(`${request.method} ${request.url}: ${error.stack ?? error.message}`);
      }
    } else if (error.validation) message = `invalid request: ${describeValidation(error)}`;
    else if (status === 415)
      message = `unsupported content-type; send JSON with 'content-type: application/json'`;
    return reply.code(status).send({ statusCode: status, error: STATUS_CODES[status], message });
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    const allowed = [...new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method))];
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      return badRequest(
        reply,
        405,
        `${request.method} is not allowed on ${path} (allowed: ${allowed.join(', ')})`,
      );
    }
    return badRequest(reply, 404, `no route ${request.method} ${path}`);
  });

  // When each /recommend got its answer from the engine: serialization is measured from there to onSend.
  const answeredAt = new WeakMap<object, number>();
  app.post<{ Body: RecommendBody }>(
    '/recommend',
    {
      config: { access: 'read' },
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
      const { created } = putItem(catalog, engine, body.id, vector, fields);
      return reply.code(created ? 201 : 200).send({ id: body.id, status: created ? 'created' : 'updated' });
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
  app.get('/health', { config: { access: 'public' } }, async (_request, reply) => {
    const failure = engine.failure ?? log.failure;
    if (failure) {
      return reply
        .code(503)
        .send({ statusCode: 503, error: STATUS_CODES[503], message: failure.message, status: 'failed' });
    }
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
    const logStats = log.stats;
    return metrics.render([
      {
        name: 'deltarec_build_info',
        help: 'The deltarec and Node.js versions serving (always 1).',
        type: 'gauge',
        values: [[`version="${DELTAREC_VERSION}",node="${process.version}"`, 1]],
      },
      {
        name: 'deltarec_http_open_connections',
        help: 'Open client connections.',
        type: 'gauge',
        values: [['', counters.openConnections]],
      },
      {
        name: 'deltarec_http_dropped_connections_total',
        help: 'Connections closed at once because --max-connections were open.',
        type: 'counter',
        values: [['', counters.droppedConnections]],
      },
      {
        name: 'deltarec_http_aborted_requests_total',
        help: 'Requests whose client went away before the answer.',
        type: 'counter',
        values: [['', counters.aborted]],
      },
      {
        name: 'deltarec_http_timed_out_requests_total',
        help: 'Requests or connections cut off by the request or socket timeout.',
        type: 'counter',
        values: [['', counters.timedOut]],
      },
      {
        name: 'deltarec_catalog_log_failures_total',
        help: 'Failed catalog log writes or syncs (after one the service refuses changes; see /health).',
        type: 'counter',
        values: [['', logStats.failures]],
      },
      {
        name: 'deltarec_catalog_log_fsync_seconds_total',
        help: 'Time spent in fdatasync of the catalog log.',
        type: 'counter',
        values: [['', logStats.syncSeconds]],
      },
      {
        name: 'deltarec_catalog_log_fsyncs_total',
        help: 'fdatasync calls of the catalog log (one per group commit).',
        type: 'counter',
        values: [['', logStats.syncs]],
      },
      {
        name: 'deltarec_catalog_log_records',
        help: 'Records in the catalog log file.',
        type: 'gauge',
        values: [['', logStats.records]],
      },
      {
        name: 'deltarec_catalog_log_compactions_total',
        help: 'Rewrites of the catalog log without superseded records.',
        type: 'counter',
        values: [['', logStats.compactions]],
      },
      ...metrics.processGauges(),
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

  const shutdownTimeout = options.shutdownTimeout ?? 10_000;
  return {
    app,
    artifact,
    catalog,
    engine,
    log,
    replayed: { records: records.length, droppedTail: replay.droppedTail, reencoded },
    async close() {
      // In-flight requests finish; connections still busy after shutdownTimeout are cut.
      const force = setTimeout(() => server.closeAllConnections(), shutdownTimeout);
      try {
        await app.close();
      } finally {
        clearTimeout(force);
        metrics.stop();
        await engine.close();
        await log.close();
      }
    },
  };
}
