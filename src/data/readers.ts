/**
 * Readers for interactions and item catalogs: CSV/TSV (plain or .gz), JSON Lines (plain or .gz) and Parquet.
 *
 * Columns are found by name (case-insensitive), either the given one or the first of a list of usual names. User and
 * item ids are strings interned to dense indices in first-appearance order (users 0-based, items 1-based with 0 the
 * padding index); the data lives in typed arrays.
 *
 * Timestamps become unix seconds. Numbers are read by magnitude: |v| >= 1e14 is microseconds, |v| >= 1e11 is
 * milliseconds, anything smaller is seconds (1e11 s is the year 5138, 1e11 ms is 1973, so the ranges cannot be
 * confused for real data). Text that is not a number is read as ISO-8601 (`2014-05-01`, `2014-05-01T12:30:00`,
 * with optional fraction and `Z`/`+hh:mm` zone; no zone means UTC). Parquet TIMESTAMP/DATE columns are exact.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead, parquetSchema } from 'hyparquet';
import { checkFile, CsvScanner, parseNumberBytes, readChunks, scanChunks, scanFile } from './csv.js';
import { DataError } from './errors.js';
import { ByteInterner, FNV_BASIS, FNV_PRIME, makeIdMap } from './intern.js';
import type { Catalog, Interactions } from './types.js';

export type DataFormat = 'csv' | 'tsv' | 'jsonl' | 'parquet';

export interface InteractionReadOptions {
  userCol?: string;
  itemCol?: string;
  /** Omit to use a usual name when present (no timestamps otherwise); name it to require it. */
  timeCol?: string;
  /** Omit to use a usual name when present (no ratings otherwise); name it to require it. */
  ratingCol?: string;
  /** Default: from the file extension. */
  format?: DataFormat;
}

export interface CatalogReadOptions {
  itemCol?: string;
  /** Text fields to keep; default every column except the id. */
  fields?: string[];
  format?: DataFormat;
}

const USER_NAMES = [
  'user_id',
  'userid',
  'user',
  'uid',
  'reviewerid',
  'visitorid',
  'customer_id',
  'session_id',
];
const ITEM_NAMES = [
  'item_id',
  'itemid',
  'item',
  'iid',
  'asin',
  'product_id',
  'movie_id',
  'track_id',
  'parent_asin',
];
const TIME_NAMES = ['timestamp', 'time', 'ts', 'unixreviewtime', 'datetime', 'date', 'event_time'];
const RATING_NAMES = ['rating', 'score', 'stars', 'overall'];

/** Format and compression from the file name (.csv, .tsv, .tab, .jsonl, .ndjson, .json, .parquet; + .gz). */
export function detectFormat(path: string, format?: DataFormat): { format: DataFormat; gzip: boolean } {
  const lower = path.toLowerCase();
  const gzip = lower.endsWith('.gz');
  if (format) return { format, gzip };
  const base = gzip ? lower.slice(0, -3) : lower;
  if (base.endsWith('.csv')) return { format: 'csv', gzip };
  if (base.endsWith('.tsv') || base.endsWith('.tab')) return { format: 'tsv', gzip };
  if (base.endsWith('.jsonl') || base.endsWith('.ndjson') || base.endsWith('.json'))
    return { format: 'jsonl', gzip };
  if (base.endsWith('.parquet') && !gzip) return { format: 'parquet', gzip };
  throw new DataError(
    path,
    'unknown file format (expected .csv, .tsv, .jsonl, .ndjson or .parquet, optionally .gz except parquet)',
  );
}

/** Index of the wanted column in header: the named one (exact, then case-insensitive) or the first usual name. */
function findColumn(header: string[], wanted: string | undefined, usual: string[]): number {
  if (wanted !== undefined) {
    const exact = header.indexOf(wanted);
    if (exact >= 0) return exact;
    return header.findIndex((h) => h.toLowerCase() === wanted.toLowerCase());
  }
  const lower = header.map((h) => h.trim().toLowerCase());
  for (const name of usual) {
    const k = lower.indexOf(name);
    if (k >= 0) return k;
  }
  return -1;
}

function missingColumn(
  file: string,
  role: string,
  wanted: string | undefined,
  usual: string[],
  header: string[],
) {
  const looked = wanted !== undefined ? `'${wanted}'` : `one of ${usual.join(', ')}`;
  return new DataError(
    file,
    `missing ${role} column: looked for ${looked}; the header has ${header.map((h) => `'${h}'`).join(', ')}`,
    1,
    wanted ?? usual[0],
  );
}

interface Columns {
  user: number;
  item: number;
  time: number; // -1 when absent
  rating: number; // -1 when absent
}

function resolveColumns(file: string, header: string[], opts: InteractionReadOptions): Columns {
  const user = findColumn(header, opts.userCol, USER_NAMES);
  if (user < 0) throw missingColumn(file, 'user', opts.userCol, USER_NAMES, header);
  const item = findColumn(header, opts.itemCol, ITEM_NAMES);
  if (item < 0) throw missingColumn(file, 'item', opts.itemCol, ITEM_NAMES, header);
  const time = findColumn(header, opts.timeCol, TIME_NAMES);
  if (time < 0 && opts.timeCol !== undefined)
    throw missingColumn(file, 'time', opts.timeCol, TIME_NAMES, header);
  const rating = findColumn(header, opts.ratingCol, RATING_NAMES);
  if (rating < 0 && opts.ratingCol !== undefined) {
    throw missingColumn(file, 'rating', opts.ratingCol, RATING_NAMES, header);
  }
  return { user, item, time, rating };
}

/** Unix seconds from a number by magnitude (see the module comment). */
export function numberToSeconds(value: number): number {
  const magnitude = Math.abs(value);
  if (magnitude >= 1e14) return value / 1e6;
  if (magnitude >= 1e11) return value / 1e3;
  return value;
}

const ISO_DATE =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i;

/** Unix seconds from ISO-8601 text (UTC unless a zone is given); NaN when the text is not such a date. */
export function isoToSeconds(text: string): number {
  const m = ISO_DATE.exec(text.trim());
  if (!m) return NaN;
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', zone = 'Z'] = m;
  const normalizedZone =
    zone.toUpperCase() === 'Z' ? 'Z' : zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone;
  const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}${frac}${normalizedZone}`);
  return Number.isNaN(ms) ? NaN : ms / 1000;
}

/** Unix seconds from a timestamp text: a number (by magnitude) or ISO-8601. NaN when neither. */
export function textToSeconds(text: string): number {
  const trimmed = text.trim();
  if (trimmed === '') return NaN;
  const value = Number(trimmed);
  if (!Number.isNaN(value)) return numberToSeconds(value);
  return isoToSeconds(trimmed);
}

/** The first n values: a view when little space is wasted (no copy of large columns), else a compact copy. */
function fit<T extends Int32Array | Float64Array | Float32Array>(array: T, n: number): T {
  return (n >= 0.75 * array.length ? array.subarray(0, n) : array.slice(0, n)) as T;
}

/** Typed-array columns that grow by doubling. */
class InteractionColumns {
  size = 0;
  users: Int32Array;
  items: Int32Array;
  timestamps: Float64Array | null;
  ratings: Float32Array | null;

  constructor(capacity: number, hasTime: boolean, hasRating: boolean) {
    this.users = new Int32Array(capacity);
    this.items = new Int32Array(capacity);
    this.timestamps = hasTime ? new Float64Array(capacity) : null;
    this.ratings = hasRating ? new Float32Array(capacity) : null;
  }

  /** Makes room for one more row; returns its index. */
  next(): number {
    if (this.size === this.users.length) {
      const capacity = this.users.length * 2;
      const grow = <T extends Int32Array | Float64Array | Float32Array>(a: T, make: (n: number) => T): T => {
        const b = make(capacity);
        b.set(a);
        return b;
      };
      this.users = grow(this.users, (n) => new Int32Array(n));
      this.items = grow(this.items, (n) => new Int32Array(n));
      if (this.timestamps) this.timestamps = grow(this.timestamps, (n) => new Float64Array(n));
      if (this.ratings) this.ratings = grow(this.ratings, (n) => new Float32Array(n));
    }
    return this.size++;
  }

  finish(userIds: string[], itemIds: string[], source: string): Interactions {
    const n = this.size;
    return {
      users: fit(this.users, n),
      items: fit(this.items, n),
      timestamps: this.timestamps ? fit(this.timestamps, n) : null,
      ratings: this.ratings ? fit(this.ratings, n) : null,
      userIds: makeIdMap(userIds, false),
      itemIds: makeIdMap(itemIds, true),
      source,
    };
  }
}

/** Reads interactions (user, item[, timestamp][, rating]) from CSV/TSV(.gz), JSON Lines(.gz) or Parquet. */
export async function readInteractions(
  path: string,
  opts: InteractionReadOptions = {},
): Promise<Interactions> {
  const { format, gzip } = detectFormat(path, opts.format);
  const size = await checkFile(path);
  if (size === 0) throw new DataError(path, 'empty file');
  if (format === 'parquet') return readInteractionsParquet(path, opts);
  if (format === 'jsonl') return readInteractionsJsonl(path, gzip, opts);
  return readInteractionsDelimited(path, gzip, format === 'tsv' ? 9 : 44, opts, size);
}

async function readInteractionsDelimited(
  path: string,
  gzip: boolean,
  delimiter: number,
  opts: InteractionReadOptions,
  fileBytes: number,
): Promise<Interactions> {
  const scanner = new CsvScanner(delimiter, path);
  const users = new ByteInterner();
  const items = new ByteInterner();
  let columns: Columns | null = null;
  let out: InteractionColumns | null = null;
  const idBytes = (buf: Buffer, k: number, interner: ByteInterner, role: string): number => {
    const s = scanner.starts[k];
    const e = scanner.ends[k];
    if (e === s) throw new DataError(path, `empty ${role} id`, scanner.line, scanner.fieldName(k));
    if (!scanner.escaped[k]) return interner.intern(buf, s, e);
    return interner.internString(scanner.fieldString(buf, k));
  };
  const onRecord = (buf: Buffer): void => {
    if (columns === null || out === null) {
      const header: string[] = [];
      for (let k = 0; k < scanner.nFields; k++) header.push(scanner.fieldString(buf, k).trim());
      if (header[0]?.charCodeAt(0) === 0xfeff) header[0] = header[0].slice(1);
      scanner.header = header;
      columns = resolveColumns(path, header, opts);
      // Rough row count from the file size so that the columns rarely need to grow.
      const capacity = Math.max(1024, Math.min(1 << 27, Math.ceil(((gzip ? 4 : 1) * fileBytes) / 24)));
      out = new InteractionColumns(capacity, columns.time >= 0, columns.rating >= 0);
      return;
    }
    // Every row has the header's fields: a short row and a row with extra fields are both errors.
    if (scanner.nFields !== scanner.header.length) {
      throw new DataError(
        path,
        `expected ${scanner.header.length} fields (as the header), found ${scanner.nFields}`,
        scanner.line,
        scanner.fieldName(Math.min(scanner.nFields, scanner.header.length)),
      );
    }
    const row = out.next();
    out.users[row] = idBytes(buf, columns.user, users, 'user');
    out.items[row] = idBytes(buf, columns.item, items, 'item') + 1;
    if (out.timestamps) {
      const k = columns.time;
      let t = parseNumberBytes(buf, scanner.starts[k], scanner.ends[k]);
      if (Number.isNaN(t)) {
        t = isoToSeconds(scanner.fieldString(buf, k));
        if (Number.isNaN(t)) {
          const text = scanner.fieldString(buf, k);
          throw new DataError(path, `unparsable timestamp '${text}'`, scanner.line, scanner.fieldName(k));
        }
      } else t = numberToSeconds(t);
      out.timestamps[row] = t;
    }
    if (out.ratings) {
      const k = columns.rating;
      const r = parseNumberBytes(buf, scanner.starts[k], scanner.ends[k]);
      if (Number.isNaN(r)) {
        const text = scanner.fieldString(buf, k);
        throw new DataError(path, `unparsable rating '${text}'`, scanner.line, scanner.fieldName(k));
      }
      out.ratings[row] = r;
    }
  };
  // The general path for one record (header, quoted fields, CRs inside lines, anything unusual, errors).
  const slowRecord = (buf: Buffer, pos: number, final: boolean): number => {
    const next = scanner.parseOne(buf, pos, final);
    if (next < 0) return -1;
    const emptyLine =
      scanner.nFields === 1 && scanner.starts[0] === scanner.ends[0] && scanner.starts[0] === pos;
    if (!emptyLine) onRecord(buf);
    scanner.endRecord();
    return next;
  };
  let fast: ((buf: Buffer, pos: number, final: boolean) => number) | null = null;
  await scanChunks(path, gzip, scanner, (buf, final) => {
    let pos = 0;
    while (pos < buf.length) {
      if (fast === null && columns !== null)
        fast = fastInteractionRecord(delimiter, columns, scanner.header.length, out!, users, items);
      let next = fast === null ? SLOW : fast(buf, pos, final);
      if (next === SLOW) next = slowRecord(buf, pos, final);
      else if (next >= 0) scanner.line++;
      if (next < 0) break;
      pos = next;
    }
    return pos;
  });
  if (out === null) throw new DataError(path, 'empty file (no header line)');
  const result = out as InteractionColumns;
  if (result.size === 0) throw new DataError(path, 'no data rows after the header', 2);
  return result.finish(users.strings(), items.strings(), path);
}

const SLOW = -2;
const INCOMPLETE = -1;
const KIND_SKIP = 0;
const KIND_USER = 1;
const KIND_ITEM = 2;
const KIND_TIME = 3;
const KIND_RATING = 4;

/**
 * The fast path for one interaction record: a single pass over the bytes that finds the fields, hashes the item id
 * and accumulates an all-digit timestamp on the way, then stores the row. Returns the offset after the record,
 * INCOMPLETE when the buffer ends first, or SLOW (nothing stored) for anything it does not handle: quotes, a CR not
 * before LF, a timestamp that is not plain digits, an empty id, not the header's number of fields, an unparsable rating. The general
 * path then parses the record (and reports errors with file, line and field).
 */
function fastInteractionRecord(
  delimiter: number,
  columns: Columns,
  fieldCount: number,
  out: InteractionColumns,
  users: ByteInterner,
  items: ByteInterner,
): (buf: Buffer, pos: number, final: boolean) => number {
  const needed = Math.max(columns.user, columns.item, columns.time, columns.rating) + 1;
  const kinds = new Uint8Array(needed);
  kinds[columns.user] = KIND_USER;
  kinds[columns.item] = KIND_ITEM;
  if (columns.time >= 0) kinds[columns.time] = KIND_TIME;
  if (columns.rating >= 0) kinds[columns.rating] = KIND_RATING;
  const d = delimiter;
  return (buf, pos, final) => {
    const end = buf.length;
    let q = pos;
    let f = 0;
    let userStart = 0;
    let userEnd = 0;
    let itemStart = 0;
    let itemEnd = 0;
    let itemHash = 0;
    let time = 0;
    let ratingStart = 0;
    let ratingEnd = 0;
    for (;;) {
      const s = q;
      const kind = f < needed ? kinds[f] : KIND_SKIP;
      if (kind === KIND_ITEM) {
        let h = FNV_BASIS;
        while (q < end) {
          const c = buf[q];
          if (c === d || c === 10 || c === 34 || c === 13) break;
          h = Math.imul(h ^ c, FNV_PRIME);
          q++;
        }
        itemStart = s;
        itemEnd = q;
        itemHash = h;
      } else if (kind === KIND_TIME) {
        let v = 0;
        while (q < end) {
          const c = buf[q] - 48;
          if (c < 0 || c > 9) break;
          v = v * 10 + c;
          q++;
        }
        if (q === s || q - s > 15) return q >= end && !final ? INCOMPLETE : SLOW;
        time = v;
      } else {
        while (q < end) {
          const c = buf[q];
          if (c === d || c === 10 || c === 34 || c === 13) break;
          q++;
        }
        if (kind === KIND_USER) {
          userStart = s;
          userEnd = q;
        } else if (kind === KIND_RATING) {
          ratingStart = s;
          ratingEnd = q;
        }
      }
      f++;
      if (q >= end) {
        if (!final) return INCOMPLETE;
        break;
      }
      const c = buf[q];
      if (c === d) {
        q++;
        continue;
      }
      if (c === 13) {
        if (q + 1 >= end) {
          if (!final) return INCOMPLETE;
          q++;
          break;
        }
        if (buf[q + 1] !== 10) return SLOW;
        q++;
        break;
      }
      if (c === 10) break;
      return SLOW; // a quote, or a timestamp with other characters
    }
    if (f !== fieldCount || userEnd === userStart || itemEnd === itemStart) return SLOW;
    let rating = 0;
    if (out.ratings) {
      rating = parseNumberBytes(buf, ratingStart, ratingEnd);
      if (Number.isNaN(rating)) return SLOW;
    }
    const row = out.next();
    out.users[row] = users.intern(buf, userStart, userEnd);
    out.items[row] = items.internHashed(buf, itemStart, itemEnd, itemHash) + 1;
    if (out.timestamps) out.timestamps[row] = numberToSeconds(time);
    if (out.ratings) out.ratings[row] = rating;
    return q >= end ? end : q + 1;
  };
}

/** Each non-empty line of a (possibly gzipped) text file as a string, with its 1-based line number. */
async function* readLines(path: string, gzip: boolean): AsyncGenerator<[string, number]> {
  let tail: Buffer | null = null;
  let line = 0;
  for await (const chunk of readChunks(path, gzip)) {
    const buf: Buffer = tail ? Buffer.concat([tail, chunk]) : chunk;
    let pos = 0;
    for (;;) {
      const nl = buf.indexOf(10, pos);
      if (nl < 0) break;
      line++;
      const text = buf.toString('utf8', pos, nl).trim();
      if (text !== '') yield [text, line];
      pos = nl + 1;
    }
    tail = pos < buf.length ? buf.subarray(pos) : null;
  }
  if (tail) {
    const text = tail.toString('utf8').trim();
    if (text !== '') yield [text, line + 1];
  }
}

function parseJsonObject(path: string, text: string, line: number): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new DataError(path, `invalid JSON (${(error as Error).message})`, line);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new DataError(path, 'expected one JSON object per line', line);
  }
  return value as Record<string, unknown>;
}

function idValue(path: string, value: unknown, line: number, field: string, role: string): string {
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  const problem =
    value === undefined
      ? 'missing'
      : value === ''
        ? 'empty'
        : `not a string or number (${JSON.stringify(value)})`;
  throw new DataError(path, `${role} id ${problem}`, line, field);
}

function timeValue(path: string, value: unknown, line: number, field: string): number {
  let t = NaN;
  if (typeof value === 'number') t = numberToSeconds(value);
  else if (typeof value === 'bigint') t = numberToSeconds(Number(value));
  else if (typeof value === 'string') t = textToSeconds(value);
  else if (value instanceof Date) t = value.getTime() / 1000;
  if (!Number.isFinite(t))
    throw new DataError(path, `unparsable timestamp ${JSON.stringify(String(value))}`, line, field);
  return t;
}

function ratingValue(path: string, value: unknown, line: number, field: string): number {
  const r =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && value.trim() !== ''
        ? Number(value)
        : NaN;
  if (!Number.isFinite(r))
    throw new DataError(path, `unparsable rating ${JSON.stringify(value)}`, line, field);
  return r;
}

/** Stores one row given as values of the resolved columns. */
function pushRow(
  path: string,
  out: InteractionColumns,
  users: ByteInterner,
  items: ByteInterner,
  names: { user: string; item: string; time: string | null; rating: string | null },
  get: (name: string) => unknown,
  line: number,
): void {
  const row = out.next();
  out.users[row] = users.internString(idValue(path, get(names.user), line, names.user, 'user'));
  out.items[row] = items.internString(idValue(path, get(names.item), line, names.item, 'item')) + 1;
  if (out.timestamps && names.time !== null)
    out.timestamps[row] = timeValue(path, get(names.time), line, names.time);
  if (out.ratings && names.rating !== null)
    out.ratings[row] = ratingValue(path, get(names.rating), line, names.rating);
}

function columnNames(header: string[], columns: Columns) {
  return {
    user: header[columns.user],
    item: header[columns.item],
    time: columns.time >= 0 ? header[columns.time] : null,
    rating: columns.rating >= 0 ? header[columns.rating] : null,
  };
}

async function readInteractionsJsonl(
  path: string,
  gzip: boolean,
  opts: InteractionReadOptions,
): Promise<Interactions> {
  const users = new ByteInterner();
  const items = new ByteInterner();
  let out: InteractionColumns | null = null;
  let names: ReturnType<typeof columnNames> | null = null;
  for await (const [text, line] of readLines(path, gzip)) {
    const row = parseJsonObject(path, text, line);
    if (names === null) {
      const columns = resolveColumns(path, Object.keys(row), opts);
      names = columnNames(Object.keys(row), columns);
      out = new InteractionColumns(1 << 16, names.time !== null, names.rating !== null);
    }
    pushRow(path, out!, users, items, names, (name) => row[name], line);
  }
  if (out === null) throw new DataError(path, 'empty file (no JSON lines)');
  return out.finish(users.strings(), items.strings(), path);
}

/** Column chunks of a parquet file, in row order, as plain arrays of values. */
interface ParquetSource {
  names: string[];
  rows: number;
  read: (columns: string[]) => Promise<Map<string, ArrayLike<unknown>[]>>;
}

async function readParquetColumns(path: string): Promise<ParquetSource> {
  const file = await asyncBufferFromFile(path);
  let metadata;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (error) {
    throw new DataError(path, `not a readable parquet file (${(error as Error).message})`);
  }
  const names = parquetSchema(metadata).children.map((child) => child.element.name);
  const read = async (columns: string[]): Promise<Map<string, ArrayLike<unknown>[]>> => {
    const chunks = new Map<string, { rowStart: number; data: ArrayLike<unknown> }[]>();
    for (const c of columns) chunks.set(c, []);
    await parquetRead({
      file,
      metadata,
      columns,
      onChunk: (chunk) =>
        chunks.get(chunk.columnName)?.push({ rowStart: chunk.rowStart, data: chunk.columnData }),
    });
    const ordered = new Map<string, ArrayLike<unknown>[]>();
    for (const [c, list] of chunks) {
      list.sort((a, b) => a.rowStart - b.rowStart);
      ordered.set(
        c,
        list.map((x) => x.data),
      );
    }
    return ordered;
  };
  return { names, rows: Number(metadata.num_rows), read };
}

/** Iterates the rows of column chunks: calls visit(row, valueOf) with valueOf(column) for that row. */
function forEachParquetRow(
  columns: Map<string, ArrayLike<unknown>[]>,
  visit: (row: number, value: (name: string) => unknown) => void,
): void {
  const names = [...columns.keys()];
  const cursors = names.map(() => ({ chunk: 0, offset: 0 }));
  const lists = names.map((n) => columns.get(n)!);
  const current: unknown[] = new Array(names.length);
  const position = new Map(names.map((n, k) => [n, k]));
  const valueOf = (name: string): unknown => current[position.get(name)!];
  for (let row = 0; ; row++) {
    for (let k = 0; k < names.length; k++) {
      const cursor = cursors[k];
      const list = lists[k];
      while (cursor.chunk < list.length && cursor.offset >= list[cursor.chunk].length) {
        cursor.chunk++;
        cursor.offset = 0;
      }
      if (cursor.chunk >= list.length) return;
      current[k] = list[cursor.chunk][cursor.offset++];
    }
    visit(row, valueOf);
  }
}

async function readInteractionsParquet(path: string, opts: InteractionReadOptions): Promise<Interactions> {
  const { names: header, rows, read } = await readParquetColumns(path);
  const columns = resolveColumns(path, header, opts);
  const names = columnNames(header, columns);
  if (rows === 0) throw new DataError(path, 'no data rows');
  const wanted = [
    names.user,
    names.item,
    ...(names.time ? [names.time] : []),
    ...(names.rating ? [names.rating] : []),
  ];
  const data = await read(wanted);
  const users = new ByteInterner();
  const items = new ByteInterner();
  const out = new InteractionColumns(Math.max(1, rows), names.time !== null, names.rating !== null);
  // Parquet has no lines: errors name the 1-based row as the line.
  forEachParquetRow(data, (row, value) => pushRow(path, out, users, items, names, value, row + 1));
  return out.finish(users.strings(), items.strings(), path);
}

/** Text of a catalog value: arrays are joined with '|', objects as JSON, null/undefined as ''. */
function catalogText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(catalogText).join('|');
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object')
    return JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
  return String(value);
}

/** Collects catalog rows, checking for duplicate and empty ids. */
class CatalogBuilder {
  ids: string[] = [];
  fields: Record<string, string[]> = {};
  private seen = new Map<string, number>();

  constructor(
    readonly path: string,
    readonly idName: string,
    readonly fieldNames: string[],
  ) {
    for (const f of fieldNames) this.fields[f] = [];
  }

  add(id: string, line: number, value: (field: string) => string): void {
    if (id === '') throw new DataError(this.path, 'empty item id', line, this.idName);
    const first = this.seen.get(id);
    if (first !== undefined) {
      throw new DataError(this.path, `duplicate item id '${id}' (first on line ${first})`, line, this.idName);
    }
    this.seen.set(id, line);
    this.ids.push(id);
    for (const f of this.fieldNames) this.fields[f].push(value(f));
  }

  finish(): Catalog {
    if (this.ids.length === 0) throw new DataError(this.path, 'no data rows after the header', 2);
    return { ids: this.ids, fields: this.fields, source: this.path };
  }
}

function resolveCatalogColumns(
  path: string,
  header: string[],
  opts: CatalogReadOptions,
): { id: number; fields: number[] } {
  const id = findColumn(header, opts.itemCol, ITEM_NAMES);
  if (id < 0) throw missingColumn(path, 'item', opts.itemCol, ITEM_NAMES, header);
  if (opts.fields === undefined) return { id, fields: header.map((_, k) => k).filter((k) => k !== id) };
  const fields = opts.fields.map((f) => {
    const k = findColumn(header, f, []);
    if (k < 0) throw missingColumn(path, 'text', f, [], header);
    return k;
  });
  return { id, fields };
}

/** Reads an item catalog (item id + text fields) from CSV/TSV(.gz), JSON Lines(.gz) or Parquet. */
export async function readCatalog(path: string, opts: CatalogReadOptions = {}): Promise<Catalog> {
  const { format, gzip } = detectFormat(path, opts.format);
  const size = await checkFile(path);
  if (size === 0) throw new DataError(path, 'empty file');

  if (format === 'jsonl') {
    let builder: CatalogBuilder | null = null;
    for await (const [text, line] of readLines(path, gzip)) {
      const row = parseJsonObject(path, text, line);
      if (builder === null) {
        const header = Object.keys(row);
        const cols = resolveCatalogColumns(path, header, opts);
        builder = new CatalogBuilder(
          path,
          header[cols.id],
          cols.fields.map((k) => header[k]),
        );
      }
      const b: CatalogBuilder = builder;
      b.add(idValue(path, row[b.idName], line, b.idName, 'item'), line, (f) => catalogText(row[f]));
    }
    if (builder === null) throw new DataError(path, 'empty file (no JSON lines)');
    return builder.finish();
  }

  if (format === 'parquet') {
    const { names: header, read } = await readParquetColumns(path);
    const cols = resolveCatalogColumns(path, header, opts);
    const builder = new CatalogBuilder(
      path,
      header[cols.id],
      cols.fields.map((k) => header[k]),
    );
    const data = await read([builder.idName, ...builder.fieldNames]);
    forEachParquetRow(data, (row, value) =>
      builder.add(idValue(path, value(builder.idName), row + 1, builder.idName, 'item'), row + 1, (f) =>
        catalogText(value(f)),
      ),
    );
    return builder.finish();
  }

  const scanner = new CsvScanner(format === 'tsv' ? 9 : 44, path);
  let builder: CatalogBuilder | null = null;
  let cols: { id: number; fields: number[] } | null = null;
  await scanFile(path, gzip, scanner, (buf) => {
    if (builder === null || cols === null) {
      const header: string[] = [];
      for (let k = 0; k < scanner.nFields; k++) header.push(scanner.fieldString(buf, k).trim());
      if (header[0]?.charCodeAt(0) === 0xfeff) header[0] = header[0].slice(1);
      scanner.header = header;
      cols = resolveCatalogColumns(path, header, opts);
      builder = new CatalogBuilder(
        path,
        header[cols.id],
        cols.fields.map((k) => header[k]),
      );
      return;
    }
    if (scanner.nFields <= cols.id) {
      throw new DataError(
        path,
        `expected ${scanner.header.length} fields, found ${scanner.nFields}`,
        scanner.line,
        builder.idName,
      );
    }
    const values = new Map<string, string>();
    cols.fields.forEach((k, j) =>
      values.set(builder!.fieldNames[j], k < scanner.nFields ? scanner.fieldString(buf, k) : ''),
    );
    builder.add(scanner.fieldString(buf, cols.id), scanner.line, (f) => values.get(f)!);
  });
  if (builder === null) throw new DataError(path, 'empty file (no header line)');
  return (builder as CatalogBuilder).finish();
}
