/**
 * Precomputed content vectors (audio, image, any modality) keyed by item id, from:
 * - `.npy`: a 2-D float32/float64 array (C order), row i belongs to line i of the ids file: `--ids F`, or by
 *   default the sidecar `<name>.ids.txt` next to `<name>.npy` (one id per line);
 * - CSV/TSV: a header row; an id column (item_id, id, or the first column) and either one numeric column per
 *   component, or a single vector column (vector / embedding) holding a JSON array or space-separated numbers;
 * - JSON Lines: `{"item_id": "...", "vector": [...]}` per line (`id` / `embedding` also accepted);
 * - Parquet: an id column and a list column `vector` (or `embedding`).
 * Every row is checked: one dimension for all rows, finite numbers only, no duplicate ids, and (when the catalog's
 * ids are given) no id outside the catalog. Errors name the file and the line or row.
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { parquetReadObjects } from 'hyparquet';
import type { ContentVectors } from './store.js';

export type VectorFormat = 'npy' | 'csv' | 'tsv' | 'jsonl' | 'parquet';

export interface VectorReadOptions {
  format?: VectorFormat;
  /** .npy only: the ids file (default: the sidecar <name>.ids.txt). */
  idsPath?: string;
  /** Id column / key (default: item_id, id, or the first CSV column). */
  idColumn?: string;
  /** Vector column / key holding a whole vector (default: vector, embedding). */
  vectorColumn?: string;
  /** When given, every vector id must be one of these (e.g. the catalog's or the split's item ids). */
  knownIds?: Iterable<string>;
}

const ID_NAMES = ['item_id', 'id', 'itemid', 'item'];
const VECTOR_NAMES = ['vector', 'embedding', 'embeddings'];

export function detectVectorFormat(path: string): VectorFormat {
  const name = path.toLowerCase();
  if (name.endsWith('.npy')) return 'npy';
  if (name.endsWith('.tsv') || name.endsWith('.tab')) return 'tsv';
  if (name.endsWith('.csv')) return 'csv';
  if (name.endsWith('.jsonl') || name.endsWith('.ndjson')) return 'jsonl';
  if (name.endsWith('.parquet')) return 'parquet';
  throw new Error(`${path}: unknown vector file type (expected .npy, .csv, .tsv, .jsonl or .parquet)`);
}

/** Collects rows, checking dimension, finiteness and duplicate ids as they come. */
class VectorCollector {
  readonly ids: string[] = [];
  private readonly lineOf = new Map<string, number>();
  private chunks: Float32Array[] = [];
  private current: Float32Array;
  private used = 0;
  dim = -1;

  constructor(
    private readonly path: string,
    private readonly where: 'line' | 'row',
  ) {
    this.current = new Float32Array(0);
  }

  add(id: string, values: ArrayLike<number>, line: number): void {
    const at = `${this.path}: ${this.where} ${line}`;
    if (id === '') throw new Error(`${at}: empty item id`);
    const previous = this.lineOf.get(id);
    if (previous !== undefined)
      throw new Error(`${at}: duplicate item id '${id}' (first at ${this.where} ${previous})`);
    if (this.dim < 0) {
      if (values.length === 0) throw new Error(`${at}: item '${id}' has an empty vector`);
      this.dim = values.length;
    } else if (values.length !== this.dim) {
      throw new Error(
        `${at}: item '${id}' has ${values.length} values, expected ${this.dim} (the first row's dimension)`,
      );
    }
    for (let j = 0; j < values.length; j++) {
      const v = values[j];
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw new Error(`${at}: item '${id}' component ${j} is ${String(v)} (values must be finite numbers)`);
    }
    this.lineOf.set(id, line);
    this.ids.push(id);
    if (this.used + this.dim > this.current.length) {
      if (this.current.length) this.chunks.push(this.current.subarray(0, this.used));
      this.current = new Float32Array(Math.max(this.dim * 4096, this.dim));
      this.used = 0;
    }
    this.current.set(values, this.used);
    this.used += this.dim;
  }

  finish(knownIds: Iterable<string> | undefined, source: string): ContentVectors {
    if (this.ids.length === 0) throw new Error(`${this.path}: no vectors`);
    this.chunks.push(this.current.subarray(0, this.used));
    const vectors = new Float32Array(this.ids.length * this.dim);
    let offset = 0;
    for (const chunk of this.chunks) {
      vectors.set(chunk, offset);
      offset += chunk.length;
    }
    if (knownIds) {
      const known = knownIds instanceof Set ? (knownIds as Set<string>) : new Set(knownIds);
      const unknown = this.ids.filter((id) => !known.has(id));
      if (unknown.length > 0) {
        const examples = unknown.slice(0, 5).map((id) => `'${id}' (${this.where} ${this.lineOf.get(id)})`);
        throw new Error(
          `${this.path}: ${unknown.length} vector id(s) are not in the catalog, e.g. ${examples.join(', ')}`,
        );
      }
    }
    return { ids: this.ids, dim: this.dim, vectors, encoder: { kind: 'vectors', source } };
  }
}

/** Reads a vector file into ids + a row-major float32 matrix. */
export async function readVectors(path: string, options: VectorReadOptions = {}): Promise<ContentVectors> {
  const format = options.format ?? detectVectorFormat(path);
  if (format === 'npy') return readNpyVectors(path, options);
  if (format === 'parquet') return readParquetVectors(path, options);
  const text = await readFile(path, 'utf8');
  if (format === 'jsonl') return parseJsonlVectors(path, text, options);
  return parseDelimitedVectors(path, text, format === 'tsv' ? '\t' : ',', options);
}

function pickName(
  names: string[],
  wanted: string | undefined,
  defaults: string[],
  path: string,
  what: string,
): string | null {
  if (wanted !== undefined) {
    if (!names.includes(wanted))
      throw new Error(`${path}: no ${what} column '${wanted}' (columns: ${names.join(', ')})`);
    return wanted;
  }
  const lower = names.map((n) => n.toLowerCase());
  for (const d of defaults) {
    const i = lower.indexOf(d);
    if (i >= 0) return names[i];
  }
  return null;
}

/** A vector cell: a JSON array, or numbers separated by spaces (or commas). */
function parseVectorCell(cell: string, at: string): number[] {
  const text = cell.trim();
  if (text.startsWith('[')) {
    const parsed = parseJsonAllowingNaN(text, `${at}: the vector is not a valid JSON array`);
    if (!Array.isArray(parsed)) throw new Error(`${at}: the vector is not a JSON array`);
    return parsed.map((v) => (typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN));
  }
  return text === '' ? [] : text.split(/[\s,]+/).map(Number);
}

/** JSON.parse, retrying with NaN / Infinity literals (as Python writes them) quoted so they can be reported. */
function parseJsonAllowingNaN(text: string, failure: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    try {
      return JSON.parse(text.replace(/-?\b(NaN|Infinity)\b/g, '"$1"'));
    } catch {
      throw new Error(`${failure} (${(error as Error).message})`, { cause: error });
    }
  }
}

/** Splits one CSV/TSV line into fields (double-quote quoting, "" escapes; records do not span lines). */
function splitLine(line: string, delimiter: string): string[] {
  if (!line.includes('"')) return line.split(delimiter);
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === delimiter) {
      fields.push(field);
      field = '';
    } else field += c;
  }
  fields.push(field);
  return fields;
}

function parseDelimitedVectors(
  path: string,
  text: string,
  delimiter: string,
  options: VectorReadOptions,
): ContentVectors {
  const lines = text.split('\n');
  const header = splitLine(lines[0]?.replace(/\r$/, '') ?? '', delimiter).map((h) => h.trim());
  if (header.length < 2)
    throw new Error(`${path}: line 1: the header needs an id column and vector column(s)`);
  const idName = pickName(header, options.idColumn, ID_NAMES, path, 'id') ?? header[0];
  const idIndex = header.indexOf(idName);
  const vectorName = pickName(header, options.vectorColumn, VECTOR_NAMES, path, 'vector');
  const vectorIndex = vectorName === null ? -1 : header.indexOf(vectorName);
  const numericColumns = header.map((_, i) => i).filter((i) => i !== idIndex);
  const collector = new VectorCollector(path, 'line');
  for (let l = 1; l < lines.length; l++) {
    const line = lines[l].replace(/\r$/, '');
    if (line.trim() === '') continue;
    const fields = splitLine(line, delimiter);
    const at = `${path}: line ${l + 1}`;
    if (fields.length !== header.length)
      throw new Error(`${at}: ${fields.length} fields, the header has ${header.length}`);
    const id = fields[idIndex].trim();
    let values: number[];
    if (vectorIndex >= 0) values = parseVectorCell(fields[vectorIndex], `${at}: field '${vectorName}'`);
    else
      values = numericColumns.map((i) => {
        const cell = fields[i].trim();
        const v = cell === '' ? NaN : Number(cell);
        if (!Number.isFinite(v))
          throw new Error(
            `${at}: field '${header[i]}' of item '${id}' is '${cell}' (values must be finite numbers)`,
          );
        return v;
      });
    collector.add(id, values, l + 1);
  }
  return collector.finish(options.knownIds, path);
}

function parseJsonlVectors(path: string, text: string, options: VectorReadOptions): ContentVectors {
  const collector = new VectorCollector(path, 'line');
  const lines = text.split('\n');
  for (let l = 0; l < lines.length; l++) {
    const line = lines[l].trim();
    if (line === '') continue;
    const at = `${path}: line ${l + 1}`;
    const row = parseJsonAllowingNaN(line, `${at}: not valid JSON`) as Record<string, unknown>;
    if (typeof row !== 'object' || row === null || Array.isArray(row))
      throw new Error(`${at}: expected a JSON object`);
    const keys = Object.keys(row);
    const idKey = pickName(keys, options.idColumn, ID_NAMES, path, 'id');
    const vectorKey = pickName(keys, options.vectorColumn, VECTOR_NAMES, path, 'vector');
    if (idKey === null) throw new Error(`${at}: no id key (item_id or id)`);
    if (vectorKey === null || !Array.isArray(row[vectorKey]))
      throw new Error(`${at}: no vector array (key 'vector')`);
    const values = (row[vectorKey] as unknown[]).map((v) =>
      typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN,
    );
    collector.add(String(row[idKey]), values, l + 1);
  }
  return collector.finish(options.knownIds, path);
}

async function readParquetVectors(path: string, options: VectorReadOptions): Promise<ContentVectors> {
  const bytes = await readFile(path);
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file });
  } catch (error) {
    throw new Error(`${path}: not a readable parquet file (${(error as Error).message})`, { cause: error });
  }
  if (rows.length === 0) throw new Error(`${path}: no rows`);
  const names = Object.keys(rows[0]);
  const idKey = pickName(names, options.idColumn, ID_NAMES, path, 'id') ?? names[0];
  const vectorKey = pickName(names, options.vectorColumn, VECTOR_NAMES, path, 'vector');
  if (vectorKey === null)
    throw new Error(`${path}: no list column 'vector' or 'embedding' (columns: ${names.join(', ')})`);
  const collector = new VectorCollector(path, 'row');
  rows.forEach((row, i) => {
    const value = row[vectorKey];
    if (!(Array.isArray(value) || ArrayBuffer.isView(value)))
      throw new Error(`${path}: row ${i + 1}: column '${vectorKey}' is not a list of numbers`);
    collector.add(
      String(row[idKey]),
      Array.from(value as ArrayLike<unknown>, (v) => (typeof v === 'number' ? v : NaN)),
      i + 1,
    );
  });
  return collector.finish(options.knownIds, path);
}

/** The default ids file of a .npy: <dir>/<name>.ids.txt. */
export function npyIdsPath(npyPath: string): string {
  return join(dirname(npyPath), basename(npyPath, extname(npyPath)) + '.ids.txt');
}

async function readNpyVectors(path: string, options: VectorReadOptions): Promise<ContentVectors> {
  const bytes = await readFile(path);
  const { dtype, rows, cols, dataOffset } = parseNpyHeader(bytes, path);
  const idsPath = options.idsPath ?? npyIdsPath(path);
  let idsText: string;
  try {
    idsText = await readFile(idsPath, 'utf8');
  } catch (error) {
    throw new Error(
      `${path}: cannot read its ids file ${idsPath} (one item id per line; pass --ids to name another)`,
      {
        cause: error,
      },
    );
  }
  const ids = idsText.split('\n').map((s) => s.replace(/\r$/, ''));
  if (ids[ids.length - 1] === '') ids.pop();
  if (ids.length !== rows) throw new Error(`${idsPath}: ${ids.length} ids for the ${rows} rows of ${path}`);
  const width = dtype === 'f4' ? 4 : 8;
  const expected = dataOffset + rows * cols * width;
  if (bytes.byteLength < expected)
    throw new Error(`${path}: truncated (${bytes.byteLength} bytes, header implies ${expected})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const collector = new VectorCollector(idsPath, 'line');
  const row = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const at = dataOffset + (i * cols + j) * width;
      row[j] = width === 4 ? view.getFloat32(at, true) : view.getFloat64(at, true);
    }
    collector.add(ids[i], row, i + 1);
  }
  const content = collector.finish(options.knownIds, path);
  return content;
}

/** Parses the .npy header (format versions 1-3): little-endian float32/float64, 2-D, C order. */
export function parseNpyHeader(
  bytes: Uint8Array,
  path: string,
): { dtype: 'f4' | 'f8'; rows: number; cols: number; dataOffset: number } {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new Error(`${path}: not a .npy file`);
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(start, start + headerLength));
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr !== '<f4' && descr !== '<f8' && descr !== '=f4' && descr !== '=f8')
    throw new Error(`${path}: dtype ${descr} is not supported (use float32 or float64, little-endian)`);
  if (fortran !== 'False')
    throw new Error(`${path}: Fortran-order arrays are not supported (save with C order)`);
  const dims = (shape ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (dims.length !== 2) throw new Error(`${path}: expected a 2-D array (items x dim), shape is (${shape})`);
  return {
    dtype: descr.endsWith('f4') ? 'f4' : 'f8',
    rows: dims[0],
    cols: dims[1],
    dataOffset: start + headerLength,
  };
}
