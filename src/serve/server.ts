/**
 * The recommendation service (docs/service.md): Fastify routes over a live catalog, a durable catalog store (the
 * file log, or PostgreSQL shared by replicas) and a micro-batching scoring engine; the model can be swapped while
 * serving (reload).
 */
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { DELTAREC_VERSION, type LoadedArtifact } from '../model/artifact.js';
import { installAccessControl, validateTokens, type AccessTokens } from './access.js';
import { CatalogLogError, compactRecords, type WriteFunction } from './catalog-log.js';
import type { LiveCatalog } from './catalog.js';
import {
  CatalogUnavailableError,
  ChangeRefusedError,
  FileCatalogStore,
  type CatalogChange,
  type CatalogStore,
  type NewChange,
} from './catalog-store.js';
import { ContentError, contentFingerprint } from './content.js';
import { ScoringUnavailableError, type ScoringEngine } from './engine.js';
import { MAX_ID_LENGTH, MAX_ID_URL_LENGTH, idProblem } from './ids.js';
import { Metrics, RECOMMEND_STAGES, type Gauge } from './metrics.js';
import type { PostgresCatalogStore } from './pg-catalog.js';
import { applyChange, loadRuntime, type ModelRuntime } from './runtime.js';

/** Requests handed to another route in process, which counts them in /metrics (markForwarded). */
const forwarded = new WeakSet<object>();

/**
 * Marks a request that a route hands to another route in process (the explorer's /ui/api/models/M/*): that route
 * counts it in /metrics, under its own name, so the forwarding one does not count it again.
 */
export function markForwarded(request: FastifyRequest): void {
  forwarded.add(request.raw);
}

export interface ServiceOptions {
  modelDir: string;
  /** Durable catalog change log; default <modelDir>/catalog.log (of the model the service started with). */
  catalogPath?: string;
  /** PostgreSQL catalog shared by replicas (postgres://...); replaces the file log. */
  catalogUrl?: string;
  /** application_name of the PostgreSQL connections (default 'deltarec'). */
  replicaName?: string;
  /** Scoring worker threads (default 1); 0 scores micro-batches on the event loop (inline). */
  workers?: number;
  /** Most requests scored in one batch. Default 64. */
  maxBatch?: number;
  /** Estimated compute time one scoring batch may take, in milliseconds (see engine.ts). Default 2. */
  batchBudgetMs?: number;
  /** Scoring workers on the int8 path answer by a shared scan (serve/scan.ts). Default true. */
  scan?: boolean;
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
  /**
   * Compact the catalog log once this many records are superseded (default 1024; see catalog-log.ts); with
   * PostgreSQL, compact deltarec_changes after this many changes applied (pg-catalog.ts compact()).
   */
  compactAfter?: number;
  /** PostgreSQL: only changes committed longer ago than this are compacted, ms (default 60 s). */
  compactMarginMs?: number;
  /** Replaces the catalog log's file write (tests simulate a full disk with it). */
  catalogWrite?: WriteFunction;
  /** Where catalog log failures (always) and internal errors (without `logger`) are reported; default stderr. */
  reportError?: (message: string) => void;
  logger?: boolean;
}

export interface Service {
  app: FastifyInstance;
  /** The serving model's artifact, catalog and engine (they change with a reload). */
  readonly artifact: LoadedArtifact;
  readonly catalog: LiveCatalog;
  readonly engine: ScoringEngine;
  readonly modelId: string;
  store: CatalogStore;
  /**
   * Catalog changes replayed at start, whether a torn last line of the file log was dropped, and how many puts
   * recorded for another model were re-encoded for this one (runtime.ts applyChange).
   */
  replayed: { records: number; droppedTail: boolean; reencoded: number };
  /**
   * Loads a model directory (default: the one being served) and switches to it without dropping a request:
   * requests already running finish on the old model, catalog changes are carried over (runtime.ts applyChange).
   */
  reload(modelDir?: string): Promise<ReloadResult>;
  close(): Promise<void>;
}

/** previous, model: model ids; reencoded: changes of other models re-encoded for the new one. */
export interface ReloadResult {
  previous: string;
  model: string;
  reencoded: number;
  /** PostgreSQL: changes of other models the new model cannot take, skipped (each reported on stderr). */
  skipped: number;
}

/** A reload refused because another one is running. */
export class ReloadBusyError extends Error {}

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

  const reportError =
    options.reportError ?? ((message: string) => process.stderr.write(`deltarec serve: ${message}\n`));
  const logger = options.logger ?? false;

  // The model, then every catalog change recorded so far. `history` keeps the changes (compacted like the log) so
  // that a reload can replay them into the next model; every change is applied to the model serving when it arrives.
  const engineOptions = {
    maxBatch: options.maxBatch,
    batchBudgetMs: options.batchBudgetMs,
    scan: options.scan,
    report: reportError, // a crashed scoring worker and its restart
  };
  let current: ModelRuntime = await loadRuntime(options.modelDir, workers, engineOptions);
  let history: CatalogChange[] = [];
  // With PostgreSQL a change the serving model refuses is skipped (pg-catalog.ts) but kept, so that a reload into a
  // model that can take it does; with the file log a refusal fails the start, and the change is not kept.
  const keepsRefused = Boolean(options.catalogUrl);
  const keep = (change: CatalogChange) => {
    history.push(change);
    if (history.length >= 2 * current.catalog.numRows + 1024) history = compactRecords(history);
  };
  const applyToCurrent = (change: CatalogChange) => {
    let result;
    try {
      result = applyChange(current, change);
    } catch (error) {
      if (keepsRefused && error instanceof ChangeRefusedError) keep(change);
      throw error;
    }
    keep(change);
    return result;
  };
  let store: CatalogStore;
  let fileStore: FileCatalogStore | null = null;
  let pgStore: PostgresCatalogStore | null = null;
  let replayed: Service['replayed'];
  try {
    if (options.catalogUrl) {
      // Loaded only when used: the embedded file log needs no database client.
      const { PostgresCatalogStore } = await import('./pg-catalog.js');
      pgStore = new PostgresCatalogStore(options.catalogUrl, {
        applicationName: options.replicaName,
        report: reportError, // changes this model cannot take, skipped
        compactAfter: options.compactAfter,
        compactMarginMs: options.compactMarginMs,
      });
      store = pgStore;
      await store.start(applyToCurrent);
      replayed = { records: store.status().version, droppedTail: false, reencoded: current.reencoded };
    } else {
      // Locked: a second server on the same log refuses to start.
      fileStore = new FileCatalogStore(options.catalogPath ?? join(current.artifact.dir, 'catalog.log'), {
        modelId: current.modelId,
        fingerprint: await contentFingerprint(current.artifact),
        write: options.catalogWrite,
        compactAfter: options.compactAfter,
        onFailure: (error) => reportError(error.message),
      });
      await fileStore.start(applyToCurrent);
      store = fileStore;
      replayed = { ...fileStore.replayed, reencoded: current.reencoded };
    }
  } catch (error) {
    await current.engine.close();
    throw error;
  }
  let modelDir = options.modelDir;
  let reloading = false;
  let reloads = 0;

  async function reload(dir = modelDir): Promise<ReloadResult> {
    if (reloading) throw new ReloadBusyError('a model reload is already running');
    reloading = true;
    try {
      const next = await loadRuntime(dir, workers, engineOptions);
      // Synchronous from here to the switch: no change or request can slip between the replay and the swap.
      const skipped: string[] = [];
      try {
        for (const change of history) {
          try {
            applyChange(next, change);
          } catch (error) {
            // PostgreSQL: skipped, as the replica skips it while following (the file log's refusals fail).
            if (!(keepsRefused && error instanceof ChangeRefusedError)) throw error;
            skipped.push(error.message);
          }
        }
      } catch (error) {
        await next.engine.close();
        throw error;
      }
      for (const message of skipped) reportError(`reload: catalog change skipped: ${message}`);
      const previous = current;
      current = next;
      modelDir = dir;
      reloads++;
      void retire(previous);
      return {
        previous: previous.modelId,
        model: next.modelId,
        reencoded: next.reencoded,
        skipped: skipped.length,
      };
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
      throw error; // a failed file log: 500 naming the cause (error handler)
    }
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
    if (forwarded.has(request.raw)) return;
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
      const rt = current; // a reload meanwhile does not move this request to the other model
      rt.active++;
      try {
        return await recommend(rt, request, reply);
      } finally {
        rt.active--;
      }
    },
  );

  async function recommend(
    rt: ModelRuntime,
    request: FastifyRequest<{ Body: RecommendBody }>,
    reply: FastifyReply,
  ) {
    const { catalog, engine } = rt;
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
    let result;
    try {
      result = await engine.recommend({
        history,
        exclude: Int32Array.from(exclude),
        k: body.k,
        includeCold: body.include_cold,
        excludeSeen: body.exclude_seen,
      });
    } catch (error) {
      // A crashed scoring worker (reported on stderr, restarted): the client may retry.
      if (error instanceof ScoringUnavailableError) return badRequest(reply, 503, error.message);
      throw error;
    }
    answeredAt.set(request, performance.now());
    for (const stage of RECOMMEND_STAGES)
      if (stage !== 'serialize') metrics.observeStage(stage, result.stages[stage]);
    const items = new Array(result.indices.length);
    for (let i = 0; i < items.length; i++)
      items[i] = { id: catalog.rowId(result.indices[i]), score: result.scores[i] };
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
      const change: NewChange = { op: 'put', id: body.id, model: modelId, vector, fields };
      if (raw) Object.assign(change, { raw, rawSpace: content.rawSpace });
      const applied = await write(reply, change);
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
  // Administrative, so the write token guards it (access.ts).
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
  app.get('/health', { config: { access: 'public' } }, async (_request, reply) => {
    const { engine, catalog, artifact, strategy, modelId } = current;
    const catalogStatus = store.status();
    // A failed engine or file log needs a restart: 503. A database that cannot be reached is 'degraded':
    // recommendations are still served from memory, writes get 503 (catalog.message says why).
    const failure = engine.failure ?? fileStore?.log.failure;
    if (failure) {
      return reply.code(503).send({
        statusCode: 503,
        error: STATUS_CODES[503],
        message: failure.message,
        status: 'failed',
        model_id: modelId,
        catalog: catalogStatus,
      });
    }
    const scoring = engine.health;
    return {
      // Degraded: the database cannot be reached (writes get 503), or a crashed scoring worker is being restarted.
      status: catalogStatus.writable && scoring.restarting === 0 ? 'ok' : 'degraded',
      model: artifact.manifest.model.kind,
      model_id: modelId,
      strategy,
      items: catalog.activeCount,
      rows: catalog.numRows - 1,
      catalog: catalogStatus,
      scoring: {
        worker_failures: scoring.failures,
        worker_restarts: scoring.restarts,
        restarting: scoring.restarting,
        last_failure: scoring.lastFailure,
      },
      uptime_s: (Date.now() - started) / 1000,
      pid: process.pid, // tells replicas apart
    };
  });

  app.get('/metrics', async (_request, reply) => {
    const { catalog, engine } = current;
    const catalogStatus = store.status();
    reply.type('text/plain; version=0.0.4');
    const logStats = fileStore?.log.stats;
    // The file log's figures, or PostgreSQL's compactions.
    const compaction = pgStore?.compaction;
    const logGauges: Gauge[] = compaction
      ? [
          {
            name: 'deltarec_catalog_compactions_total',
            help: 'Compactions of deltarec_changes run by this replica.',
            type: 'counter',
            values: [['', compaction.compactions]],
          },
          {
            name: 'deltarec_catalog_compacted_changes_total',
            help: 'Superseded changes deleted from deltarec_changes by the compactions of this replica.',
            type: 'counter',
            values: [['', compaction.deleted]],
          },
        ]
      : !logStats
        ? []
        : [
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
          ];
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
      ...logGauges,
      {
        name: 'deltarec_catalog_version',
        help: 'Last catalog change version applied by this process.',
        type: 'gauge',
        values: [['', catalogStatus.version]],
      },
      {
        name: 'deltarec_catalog_skipped_changes_total',
        help: 'PostgreSQL catalog changes of another model that this one cannot take, skipped (see /health catalog.last_skipped).',
        type: 'counter',
        values: [['', catalogStatus.skipped ?? 0]],
      },
      {
        name: 'deltarec_catalog_writable',
        help: '1 while catalog writes can be recorded (0: database unreachable or log failed).',
        type: 'gauge',
        values: [['', catalogStatus.writable ? 1 : 0]],
      },
      {
        name: 'deltarec_model_reloads_total',
        help: 'Models swapped in since start.',
        type: 'counter',
        values: [['', reloads]],
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
        name: 'deltarec_scoring_worker_failures_total',
        help: 'Scoring workers that crashed (each reported on stderr and restarted; see /health scoring).',
        type: 'counter',
        values: [['', engine.health.failures]],
      },
      {
        name: 'deltarec_scoring_worker_restarts_total',
        help: 'Scoring workers started in place of crashed ones, with the catalog changes replayed into them.',
        type: 'counter',
        values: [['', engine.health.restarts]],
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
    get artifact() {
      return current.artifact;
    },
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
      // In-flight requests finish; connections still busy after shutdownTimeout are cut.
      const force = setTimeout(() => server.closeAllConnections(), shutdownTimeout);
      try {
        await app.close();
      } finally {
        clearTimeout(force);
        metrics.stop();
        await current.engine.close();
        await store.close();
      }
    },
  };
}
