/**
 * The explorer page (`deltarec serve --ui`, docs/explorer.md): a small page at `/` that searches the catalog, builds a
 * history, shows each model's top-k side by side (titles, scores, cold badge, model vs lexical term of a fused
 * model) and adds items. It talks to the services' own JSON API: `/ui/api/models/M/...` forwards a request unchanged
 * (headers, token included) to model M's routes in process, so every model answers exactly as its API does, on one
 * port. The page's script is the browser TypeScript in ./browser, compiled by `npm run build` (tsconfig.ui.json);
 * from a source checkout it is transpiled at start with the TypeScript compiler.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { STATUS_CODES } from 'node:http';
import type { CsrMatrix } from '../../content/sparse.js';
import type { Catalog } from '../../data/types.js';
import type { LoadedArtifact } from '../../model/artifact.js';
import { LexicalIndex, loadLexicalFusion } from '../../model/fusion.js';
import { loadContentEncoder } from '../content.js';
import { loadServingFusion, modelStrategy } from '../models.js';
import type { ServingFusion } from '../scorer.js';
import { markForwarded, type Service } from '../server.js';
import { EXPLORER_HTML } from './page.js';

export interface ExplorerOptions {
  /** The served models, in the order given on the command line; the first one also answers at the root routes. */
  services: Service[];
  /** Item fields to show (title, brand, image, ...) by id; items added through the API show their own fields. */
  catalog: Catalog | null;
}

const MAX_QUERY = 256;
const MAX_IDS = 1000;
const MAX_HISTORY = 512;
const SEARCH_LIMIT = 50;

interface ModelEntry {
  name: string;
  service: Service;
}

/** What the page shows of the model a service is serving now (ModelEntry.service.artifact: a reload swaps it). */
interface ModelInfo {
  strategy: string;
  /** Text fields the model's encoder reads: what POST /items accepts as `fields`. */
  textFields: string[];
  /** A fused model's weight, saved sparse rows (one per trained item) and encoder for added items' rows. */
  fusion: (ServingFusion & { saved: CsrMatrix; maxLength: number }) | null;
}

/** Loaded once per artifact, so that a reload (a new artifact) is read again. */
const infos = new WeakMap<LoadedArtifact, Promise<ModelInfo>>();

function modelInfo(artifact: LoadedArtifact): Promise<ModelInfo> {
  let info = infos.get(artifact);
  if (!info) {
    info = (async () => ({
      strategy: modelStrategy(artifact),
      textFields: (await loadContentEncoder(artifact)).fields,
      fusion: artifact.lexical
        ? {
            ...(await loadServingFusion(artifact)),
            saved: (await loadLexicalFusion(artifact.lexical.dir)).rows,
            maxLength: Number(artifact.manifest.model.config.maxLength),
          }
        : null,
    }))();
    info.catch(() => infos.delete(artifact)); // a failed read is tried again by the next request
    infos.set(artifact, info);
  }
  return info;
}

function fail(reply: FastifyReply, status: number, message: string) {
  return reply.code(status).send({ statusCode: status, error: STATUS_CODES[status], message });
}

/** The ids of a repeated query parameter (`ids=a&ids=b`), bounded. */
function idList(value: unknown, name: string, max: number): string[] {
  const ids = value === undefined ? [] : Array.isArray(value) ? value : [value];
  if (ids.length > max) throw new Error(`query '${name}' lists ${ids.length} ids; at most ${max}`);
  for (const id of ids) {
    if (typeof id !== 'string' || id.length < 1 || id.length > 256)
      throw new Error(`query '${name}' has an id that is not 1 to 256 characters`);
  }
  return ids as string[];
}

/** The compiled page script beside this module (dist), else the browser source transpiled (source checkout). */
async function explorerScript(): Promise<string> {
  try {
    return await readFile(new URL('./browser/app.js', import.meta.url), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const source = await readFile(new URL('./browser/app.ts', import.meta.url), 'utf8');
  const ts = (await import('typescript')).default; // a devDependency: only a source checkout gets here
  return ts.transpileModule(source, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022 },
  }).outputText;
}

/** Registers the page, its script and its read routes on the first service's app. */
export async function installExplorer(app: FastifyInstance, options: ExplorerOptions): Promise<void> {
  const script = await explorerScript();
  const { catalog } = options;
  const names = new Set<string>();
  const models: ModelEntry[] = [];
  for (const service of options.services) {
    let name = basename(service.artifact.dir);
    for (let n = 2; names.has(name); n++) name = `${basename(service.artifact.dir)}-${n}`;
    names.add(name);
    await modelInfo(service.artifact); // fails the start on an unreadable artifact
    models.push({ name, service });
  }
  const catalogRow = new Map<string, number>();
  catalog?.ids.forEach((id, row) => catalogRow.set(id, row));
  const fieldNames = catalog ? Object.keys(catalog.fields) : [];
  const titleField = fieldNames.includes('title') ? 'title' : (fieldNames[0] ?? null);
  const titles = catalog && titleField ? catalog.fields[titleField].map((t) => t.toLowerCase()) : [];

  /** Fields of an item: its own when it was added through the API, else the catalog file's. */
  const fieldsOf = (id: string, model = models[0]): Record<string, string> | null => {
    const added = model.service.catalog.get(id)?.fields;
    if (added) return added;
    const row = catalogRow.get(id);
    if (row === undefined || !catalog) return null;
    return Object.fromEntries(fieldNames.map((f) => [f, catalog.fields[f][row]]));
  };

  // The page and its script hold no data: public, so the page can load and ask for the token. The /ui/api read
  // routes below are GET routes like any other (the read token, where the service has one).
  const open = { config: { access: 'public' as const } };
  app.get('/', open, async (_request, reply) => reply.type('text/html; charset=utf-8').send(EXPLORER_HTML));
  app.get('/ui/app.js', open, async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').send(script),
  );

  // Per request: each model's info is that of the artifact it serves now (a reload swaps it).
  app.get('/ui/api/models', async () => ({
    models: await Promise.all(
      models.map(async (m) => {
        const { artifact, catalog: live } = m.service;
        const info = await modelInfo(artifact);
        return {
          name: m.name,
          kind: artifact.manifest.model.kind,
          strategy: info.strategy,
          items: live.activeCount,
          warm: live.numWarm,
          lexical_weight: info.fusion ? info.fusion.weights.weight : null,
          text_fields: info.textFields,
        };
      }),
    ),
    fields: fieldNames,
    title_field: titleField,
  }));

  // Catalog search by id or title (case-insensitive substring; an exact id first), active items of the first model.
  app.get<{ Querystring: { q?: string; limit?: string } }>('/ui/api/search', async (request, reply) => {
    const primary = models[0].service.catalog; // per request: a model reload replaces the catalog
    const q = (request.query.q ?? '').trim().toLowerCase();
    if (q.length > MAX_QUERY) return fail(reply, 400, `query 'q' is longer than ${MAX_QUERY} characters`);
    const limit = Math.max(1, Math.min(Math.floor(Number(request.query.limit ?? 20)) || 20, SEARCH_LIMIT));
    const found: string[] = [];
    const seen = new Set<string>();
    const consider = (id: string, title: string | undefined) => {
      if (found.length >= limit || seen.has(id) || !primary.get(id)) return;
      if (
        q === '' ||
        id.toLowerCase().includes(q) ||
        (title !== undefined && title.toLowerCase().includes(q))
      ) {
        found.push(id);
        seen.add(id);
      }
    };
    if (primary.get(request.query.q ?? '')) consider(request.query.q!, undefined);
    for (let row = primary.numRows - 1; row > primary.numWarm && found.length < limit; row--) {
      const id = primary.rowId(row); // items added through the API, newest first
      const info = primary.get(id);
      if (info?.added && info.index === row) consider(id, info.fields?.[titleField ?? 'title']);
    }
    if (catalog)
      for (let r = 0; r < catalog.ids.length && found.length < limit; r++)
        consider(catalog.ids[r], titles[r]);
    else
      for (let row = 1; row < primary.numRows && found.length < limit; row++)
        consider(primary.rowId(row), undefined);
    return { items: found.map((id) => ({ id, fields: fieldsOf(id) })) };
  });

  // Item details for one model: fields, cold (not a warm item of the model), added, and with a history and a fused
  // model the lexical term weight x cos(history profile, item) that the service added to the item's score.
  app.get<{ Querystring: { model?: string; ids?: string | string[]; history?: string | string[] } }>(
    '/ui/api/items',
    async (request, reply) => {
      const index = Number(request.query.model ?? 0);
      const model = models[index];
      if (!Number.isInteger(index) || !model) return fail(reply, 404, `no model ${request.query.model}`);
      let ids: string[];
      let history: string[];
      try {
        ids = idList(request.query.ids, 'ids', MAX_IDS);
        history = idList(request.query.history, 'history', MAX_HISTORY);
      } catch (error) {
        return fail(reply, 400, (error as Error).message);
      }
      const { fusion } = await modelInfo(model.service.artifact);
      const lexical = fusion && history.length > 0 ? lexicalTerms(model, fusion, history, ids) : null;
      return {
        items: ids.map((id, i) => {
          const info = model.service.catalog.get(id);
          return {
            id,
            known: info !== undefined,
            cold: info ? !model.service.catalog.isWarm(info.index) : null,
            added: info?.added ?? false,
            fields: fieldsOf(id, model),
            lexical: lexical ? lexical[i] : null,
          };
        }),
      };
    },
  );

  // Model M's own routes, in process: same handlers, same validation, same token checks.
  app.route<{ Params: { model: string; '*': string } }>({
    method: ['GET', 'POST', 'DELETE'],
    ...open, // the model's own route checks the forwarded token (read for /recommend, write for /items)
    url: '/ui/api/models/:model/*',
    handler: async (request, reply) => {
      const model = models[Number(request.params.model)];
      if (!model) return fail(reply, 404, `no model ${request.params.model}`);
      const headers: Record<string, string> = {};
      for (const name of ['authorization', 'content-type']) {
        const value = request.headers[name];
        if (typeof value === 'string') headers[name] = value;
      }
      markForwarded(request); // counted in /metrics by the model's route, not again by this one
      const response = await model.service.app.inject({
        method: request.method as 'GET' | 'POST' | 'DELETE',
        url: `/${request.params['*']}`,
        headers,
        payload: request.body === undefined ? undefined : JSON.stringify(request.body),
      });
      reply.code(response.statusCode);
      for (const name of ['content-type', 'www-authenticate']) {
        const value = response.headers[name];
        if (value !== undefined) reply.header(name, value);
      }
      return reply.send(response.body);
    },
  });

  /**
   * The fused score's lexical term of each id (fusion.ts): weight x cosine of the history's TF-IDF profile with its
   * row, plus coldWeight x that cosine for an item above numWarm, plus lastWeight x cosine with the last history row.
   */
  function lexicalTerms(
    model: ModelEntry,
    fusion: NonNullable<ModelInfo['fusion']>,
    history: string[],
    ids: string[],
  ): (number | null)[] {
    const { catalog: live } = model.service;
    // A small index: row 0 padding, then the history's rows, then the ids' rows (same rows the service scores).
    const wanted = [...history.map((id) => live.historyIndex(id)), ...ids.map((id) => live.get(id)?.index)];
    const rows = wanted.map((index) => (index === undefined ? null : rowOf(model, fusion, index)));
    const cols = fusion.saved.cols;
    const matrix = stack([emptyRows(1, cols), ...rows.map((r) => r ?? emptyRows(1, cols))], cols);
    const input = Int32Array.from(history, (_, i) => i + 1);
    const profile = new Float32Array(matrix.rows);
    const last = new Float32Array(matrix.rows);
    new LexicalIndex(matrix, fusion.maxLength).score([input], profile);
    new LexicalIndex(matrix, 1).score([input], last);
    const { weight, coldWeight = 0, lastWeight = 0, numWarm = 0 } = fusion.weights;
    return ids.map((_, i) => {
      const at = history.length + 1 + i;
      if (!rows[at - 1]) return null;
      const cold = coldWeight > 0 && wanted[at - 1]! > numWarm;
      return (weight + (cold ? coldWeight : 0)) * profile[at] + (lastWeight > 0 ? lastWeight * last[at] : 0);
    });
  }

  function rowOf(model: ModelEntry, fusion: NonNullable<ModelInfo['fusion']>, index: number): CsrMatrix {
    if (index < fusion.saved.rows) return sliceRows(fusion.saved, index);
    const info = model.service.catalog.get(model.service.catalog.rowId(index));
    return fusion.rowsFor([info?.index === index ? info.fields : undefined]);
  }
}

function emptyRows(rows: number, cols: number): CsrMatrix {
  return {
    rows,
    cols,
    indptr: new Int32Array(rows + 1),
    indices: new Int32Array(0),
    values: new Float32Array(0),
  };
}

function sliceRows(m: CsrMatrix, row: number): CsrMatrix {
  const from = m.indptr[row];
  const to = m.indptr[row + 1];
  return {
    rows: 1,
    cols: m.cols,
    indptr: Int32Array.of(0, to - from),
    indices: m.indices.slice(from, to),
    values: m.values.slice(from, to),
  };
}

function stack(parts: CsrMatrix[], cols: number): CsrMatrix {
  const rows = parts.reduce((a, p) => a + p.rows, 0);
  const nnz = parts.reduce((a, p) => a + p.indptr[p.rows] - p.indptr[0], 0);
  const indptr = new Int32Array(rows + 1);
  const indices = new Int32Array(nnz);
  const values = new Float32Array(nnz);
  let r = 0;
  let k = 0;
  for (const p of parts) {
    for (let i = 0; i < p.rows; i++, r++) {
      for (let j = p.indptr[i]; j < p.indptr[i + 1]; j++, k++) {
        indices[k] = p.indices[j];
        values[k] = p.values[j];
      }
      indptr[r + 1] = k;
    }
  }
  return { rows, cols, indptr, indices, values };
}
