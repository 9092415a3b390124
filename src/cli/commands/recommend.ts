import { createReadStream, existsSync } from 'node:fs';
import { lstat, open, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { LiveCatalog } from '../../serve/catalog.js';
import { applyLogFile, changeTarget } from '../../serve/runtime.js';
import { packBatch, type ScoreRequest } from '../../serve/engine.js';
import { loadScoringModel } from '../../serve/models.js';
import { Scorer } from '../../serve/scorer.js';
import { FileExistsError, moveIntoPlace, tempSibling } from '../../util/files.js';
import { withNegativeNumbers } from '../options.js';

export const summary = 'batch top-k recommendations for sequences in a JSON Lines file';

const HELP = `usage: deltarec recommend --model DIR --input FILE --out FILE [options]

Scores every line of FILE (JSON Lines) and writes one line of recommendations per input line, in order.
An input line is a list of item ids, most recent last:
  ["B001", "B002"]
or an object with the same fields as the service's POST /recommend, plus "user" or "id", copied to the output; any
other field is an error, as in the service:
  {"user": "u1", "items": ["B001", "B002"], "k": 5, "exclude": ["B003"], "include_cold": true, "exclude_seen": true}
Output line: {"user": "u1", "items": [{"id": "B004", "score": 3.21}, ...]}

options:
  --model DIR        model artifact directory (required)
  --input FILE       sequences, JSON Lines (required)
  --out FILE         recommendations, JSON Lines (required; written to a temporary file, fsynced, then moved into
                     place; an existing FILE is refused unless --force)
  --force            replace an existing --out FILE
  --k N              recommendations per line unless the line sets k (default 10)
  --catalog FILE     catalog change log to apply (default DIR/catalog.log when it exists); --no-catalog skips it
  --no-catalog       score the model's catalog as saved
  --skip-unknown     drop unknown item ids from histories instead of failing (a line left empty gets no items)
  --batch N          lines scored together (default 256)
`;

class InputError extends Error {}

const REQUEST_FIELDS = new Set(['items', 'k', 'exclude', 'include_cold', 'exclude_seen']);
/** Fields copied from an input line to its output line. */
const PASSTHROUGH_FIELDS = new Set(['user', 'id']);

interface ParsedLine {
  request: ScoreRequest | null; // null: nothing left to score (--skip-unknown emptied it)
  passthrough: Record<string, unknown>;
}

function parseLine(
  text: string,
  where: string,
  catalog: LiveCatalog,
  defaultK: number,
  skipUnknown: boolean,
): ParsedLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new InputError(`${where}: not valid JSON (${(error as Error).message})`);
  }
  const object: Record<string, unknown> = Array.isArray(value)
    ? { items: value }
    : typeof value === 'object' && value !== null
      ? (value as Record<string, unknown>)
      : {};
  for (const key of Object.keys(object)) {
    if (!REQUEST_FIELDS.has(key) && !PASSTHROUGH_FIELDS.has(key)) {
      throw new InputError(
        `${where}: unknown field '${key}' (expected ${[...REQUEST_FIELDS].join(', ')}; user or id are copied to the output)`,
      );
    }
  }
  const { items, k = defaultK, exclude = [], include_cold = true, exclude_seen = true } = object;
  if (!Array.isArray(items) || items.length === 0 || items.some((id) => typeof id !== 'string')) {
    throw new InputError(`${where}: field 'items' must be a non-empty list of item id strings`);
  }
  if (!Number.isInteger(k) || (k as number) < 1)
    throw new InputError(`${where}: field 'k' must be a positive integer`);
  if (!Array.isArray(exclude) || exclude.some((id) => typeof id !== 'string')) {
    throw new InputError(`${where}: field 'exclude' must be a list of item id strings`);
  }
  if (typeof include_cold !== 'boolean')
    throw new InputError(`${where}: field 'include_cold' must be true or false`);
  if (typeof exclude_seen !== 'boolean')
    throw new InputError(`${where}: field 'exclude_seen' must be true or false`);
  const history: number[] = [];
  for (const id of items as string[]) {
    const index = catalog.historyIndex(id);
    if (index !== undefined) history.push(index);
    else if (!skipUnknown)
      throw new InputError(`${where}: field 'items': unknown item id ${JSON.stringify(id)}`);
  }
  const excluded: number[] = [];
  for (const id of exclude as string[]) {
    const info = catalog.get(id);
    if (info) excluded.push(info.index);
  }
  const passthrough: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(object)) if (PASSTHROUGH_FIELDS.has(key)) passthrough[key] = v;
  if (history.length === 0) return { request: null, passthrough };
  return {
    request: {
      history: Int32Array.from(history),
      exclude: Int32Array.from(excluded),
      k: k as number,
      includeCold: include_cold,
      excludeSeen: exclude_seen,
    },
    passthrough,
  };
}

/** Why --out is refused: a directory always, an existing file without --force. */
function refusal(out: string, directory: boolean): string {
  return directory
    ? `--out ${out}: refusing to write over a directory; name a file`
    : `--out ${out}: refusing to replace an existing file; choose a new name, or use --force to replace it`;
}

export async function run(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: withNegativeNumbers(args),
      options: {
        model: { type: 'string' },
        input: { type: 'string' },
        out: { type: 'string' },
        k: { type: 'string' },
        catalog: { type: 'string' },
        'no-catalog': { type: 'boolean' },
        'skip-unknown': { type: 'boolean' },
        batch: { type: 'string' },
        force: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (error) {
    console.error(`deltarec recommend: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const missing = (['model', 'input', 'out'] as const).filter((name) => !values[name]);
  if (missing.length > 0) {
    console.error(`deltarec recommend: ${missing.map((m) => `--${m}`).join(', ')} required\n\n${HELP}`);
    return 2;
  }
  const defaultK = Number(values.k ?? 10);
  const batchSize = Number(values.batch ?? 256);
  if (!Number.isInteger(defaultK) || defaultK < 1) {
    console.error(`deltarec recommend: --k must be a positive integer (got '${values.k}')`);
    return 2;
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    console.error(`deltarec recommend: --batch must be a positive integer (got '${values.batch}')`);
    return 2;
  }

  const out = resolve(values.out!);
  const force = values.force ?? false;
  // Checked before any work; linking the finished file into place checks again (a file created meanwhile).
  const existing = await lstat(out).catch(() => null);
  if (existing?.isDirectory() || (existing && !force)) {
    console.error(`deltarec recommend: ${refusal(out, existing.isDirectory())}`);
    return 1;
  }
  const temp = tempSibling(out);
  try {
    const loaded = await loadScoringModel(values.model!);
    const scorer = new Scorer(loaded.model, loaded.numWarm, loaded.fusion);
    // The service's catalog rule (runtime.ts applyChange), so that batch and online answers agree.
    const target = changeTarget(
      loaded.artifact,
      {
        append: (v, n, f) => scorer.appendItems(v, n, f),
        replace: (row, v, f) => scorer.replaceItems(Int32Array.of(row), v, [f]),
        retire: (row) => scorer.retire([row]),
      },
      null, // the content encoder is loaded only for changes of another model (applyLogFile)
    );
    const { catalog } = target;
    const logPath = values.catalog ?? join(loaded.artifact.dir, 'catalog.log');
    if (!values['no-catalog'] && (values.catalog || existsSync(logPath))) {
      const changes = await applyLogFile(target, loaded.artifact, logPath);
      console.error(`deltarec recommend: applied ${changes} catalog changes from ${logPath}`);
    }

    const output = await open(temp, 'wx');
    let bytes = 0;
    const lines = createInterface({ input: createReadStream(values.input!), crlfDelay: Infinity });
    let pending: ParsedLine[] = [];
    let lineNumber = 0;
    let scored = 0;
    const started = Date.now();
    const flush = async () => {
      const requests = pending.filter((p) => p.request).map((p) => p.request!);
      const result = requests.length > 0 ? scorer.score(packBatch(requests)) : null;
      let r = 0;
      let text = '';
      for (const p of pending) {
        const items: { id: string; score: number }[] = [];
        if (p.request && result) {
          for (let j = result.resultOffsets[r]; j < result.resultOffsets[r + 1]; j++) {
            items.push({ id: catalog.rowId(result.indices[j]), score: result.scores[j] });
          }
          r++;
        }
        text += JSON.stringify({ ...p.passthrough, items }) + '\n';
      }
      const { bytesWritten } = await output.write(text);
      if (bytesWritten !== Buffer.byteLength(text)) throw new Error(`${temp}: short write`);
      bytes += bytesWritten;
      scored += pending.length;
      pending = [];
      if (scored % (batchSize * 40) === 0) console.error(`deltarec recommend: ${scored} lines`);
    };
    try {
      for await (const line of lines) {
        lineNumber++;
        if (line.trim() === '') continue;
        pending.push(
          parseLine(
            line,
            `${values.input}:${lineNumber}`,
            catalog,
            defaultK,
            values['skip-unknown'] ?? false,
          ),
        );
        if (pending.length >= batchSize) await flush();
      }
      if (pending.length > 0) await flush();
      await output.sync();
      const { size } = await output.stat();
      if (size !== bytes) throw new Error(`${temp}: holds ${size} bytes, expected ${bytes}`);
    } finally {
      await output.close();
    }
    await moveIntoPlace(temp, out, force);
    const seconds = (Date.now() - started) / 1000;
    console.error(`deltarec recommend: wrote ${scored} lines to ${out} in ${seconds.toFixed(1)} s`);
    return 0;
  } catch (error) {
    await rm(temp, { force: true });
    const message =
      error instanceof FileExistsError
        ? refusal(out, false)
        : (error as Error & { code?: string }).code === 'ENOENT'
          ? `cannot read ${(error as Error & { path?: string }).path}`
          : (error as Error).message;
    console.error(`deltarec recommend: ${message}`);
    return 1;
  }
}
