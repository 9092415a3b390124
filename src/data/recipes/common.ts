/**
 * Shared pieces of the dataset recipes: an interactions builder over typed arrays, streaming line and CSV readers
 * (plain or .gz, quoted fields may hold newlines), a Python literal parser, and timestamp conversion.
 */
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import type { Catalog, IdMap, Interactions } from '../types.js';

/** What a recipe produces: interactions, and the item content as text (a catalog) or as precomputed vectors. */
export interface RecipeResult {
  name: string;
  interactions: Interactions;
  catalog?: Catalog;
  /** Which catalog fields make the item text, in order. */
  textFields?: string[];
  vectors?: { ids: string[]; dim: number; data: Float32Array };
  /** Options for prepareSplit that this dataset needs (e.g. the quantile that puts T at the recipe's own split). */
  splitOptions?: Record<string, unknown>;
  /** Human-readable notes on what the recipe did (counts of dropped rows, the split used). */
  notes: string[];
}

function newIdMap(withPadding: boolean): IdMap {
  return withPadding ? { ids: [''], index: new Map([['', 0]]) } : { ids: [], index: new Map() };
}

function intern(map: IdMap, id: string): number {
  let i = map.index.get(id);
  if (i === undefined) {
    i = map.ids.length;
    map.ids.push(id);
    map.index.set(id, i);
  }
  return i;
}

/** Appends interactions into growing typed arrays; ids are interned in order of first appearance. */
export class InteractionsBuilder {
  private users = new Int32Array(1024);
  private items = new Int32Array(1024);
  private timestamps = new Float64Array(1024);
  private ratings = new Float32Array(1024);
  private size = 0;
  readonly userIds = newIdMap(false);
  readonly itemIds = newIdMap(true);

  constructor(
    private readonly withRatings: boolean,
    private readonly withTimestamps = true,
  ) {}

  get length(): number {
    return this.size;
  }

  add(user: string, item: string, timestamp: number, rating = 0): void {
    if (this.size === this.users.length) {
      const grow = <T extends Int32Array | Float64Array | Float32Array>(a: T): T => {
        const b = new (a.constructor as { new (n: number): T })(a.length * 2);
        b.set(a);
        return b;
      };
      this.users = grow(this.users);
      this.items = grow(this.items);
      this.timestamps = grow(this.timestamps);
      this.ratings = grow(this.ratings);
    }
    this.users[this.size] = intern(this.userIds, user);
    this.items[this.size] = intern(this.itemIds, item);
    this.timestamps[this.size] = timestamp;
    this.ratings[this.size] = rating;
    this.size++;
  }

  build(source: string): Interactions {
    const n = this.size;
    return {
      users: this.users.slice(0, n),
      items: this.items.slice(0, n),
      timestamps: this.withTimestamps ? this.timestamps.slice(0, n) : null,
      ratings: this.withRatings ? this.ratings.slice(0, n) : null,
      userIds: this.userIds,
      itemIds: this.itemIds,
      source,
    };
  }
}

function openText(path: string): AsyncIterable<string> {
  const raw = createReadStream(path);
  const stream = path.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  stream.setEncoding('utf8');
  return stream as AsyncIterable<string>;
}

/** Lines of a text file (plain or .gz), without line terminators; yields [lineNumber (1-based), line]. */
export async function* readLines(path: string): AsyncGenerator<[number, string]> {
  let rest = '';
  let lineNumber = 0;
  for await (const chunk of openText(path)) {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop() ?? '';
    for (const part of parts) yield [++lineNumber, part.endsWith('\r') ? part.slice(0, -1) : part];
  }
  if (rest.length > 0) yield [lineNumber + 1, rest.endsWith('\r') ? rest.slice(0, -1) : rest];
}

/**
 * Records of a CSV file (plain or .gz; RFC 4180 quoting: "" inside quotes, newlines allowed in quoted fields).
 * Yields [line number where the record starts, fields].
 */
export async function* readCsvRecords(path: string): AsyncGenerator<[number, string[]]> {
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let afterQuote = false; // the previous character closed a quote (or was the first of a "" pair)
  let line = 1;
  let recordLine = 1;
  let fieldStarted = false;
  for await (const chunk of openText(path)) {
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i];
      if (quoted) {
        if (ch === '"') {
          quoted = false;
          afterQuote = true;
        } else {
          if (ch === '\n') line++;
          field += ch;
        }
        continue;
      }
      if (ch === '"') {
        if (afterQuote) field += '"'; // "" inside a quoted field
        quoted = true;
        afterQuote = false;
        fieldStarted = true;
        continue;
      }
      afterQuote = false;
      if (ch === ',') {
        fields.push(field);
        field = '';
        fieldStarted = true;
      } else if (ch === '\n') {
        line++;
        if (fieldStarted || field.length > 0 || fields.length > 0) {
          fields.push(field.endsWith('\r') ? field.slice(0, -1) : field);
          yield [recordLine, fields];
        }
        fields = [];
        field = '';
        fieldStarted = false;
        recordLine = line;
      } else {
        field += ch;
        fieldStarted = true;
      }
    }
  }
  if (quoted) throw new Error(`${path}:${recordLine}: unterminated quoted field`);
  if (fieldStarted || field.length > 0 || fields.length > 0) {
    fields.push(field.endsWith('\r') ? field.slice(0, -1) : field);
    yield [recordLine, fields];
  }
}

/** Column positions of the wanted names in a CSV header; a clear error when one is missing. */
export function columnIndices(path: string, header: string[], names: string[]): number[] {
  return names.map((name) => {
    const i = header.indexOf(name);
    if (i < 0) throw new Error(`${path}:1: missing column '${name}' (header: ${header.join(', ')})`);
    return i;
  });
}

/**
 * Parses one Python literal (the repr of dicts, lists, tuples, strings, numbers, True/False/None), as found in the
 * original Amazon metadata files, which are not JSON.
 */
export function parsePythonLiteral(text: string): unknown {
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`${what} at character ${i}`);
  };
  const space = (): void => {
    while (i < text.length && ' \t\r\n'.includes(text[i])) i++;
  };
  const value = (): unknown => {
    space();
    const ch = text[i];
    if (ch === '{') {
      i++;
      const out: Record<string, unknown> = {};
      space();
      if (text[i] === '}') return (i++, out);
      while (true) {
        const key = value();
        space();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        out[String(key)] = value();
        space();
        if (text[i] === ',') {
          i++;
          space();
          if (text[i] === '}') return (i++, out);
        } else if (text[i] === '}') return (i++, out);
        else fail("expected ',' or '}'");
      }
    }
    if (ch === '[' || ch === '(') {
      const close = ch === '[' ? ']' : ')';
      i++;
      const out: unknown[] = [];
      space();
      if (text[i] === close) return (i++, out);
      while (true) {
        out.push(value());
        space();
        if (text[i] === ',') {
          i++;
          space();
          if (text[i] === close) return (i++, out);
        } else if (text[i] === close) return (i++, out);
        else fail(`expected ',' or '${close}'`);
      }
    }
    if (ch === "'" || ch === '"') return string();
    if (text.startsWith('True', i)) return ((i += 4), true);
    if (text.startsWith('False', i)) return ((i += 5), false);
    if (text.startsWith('None', i)) return ((i += 4), null);
    const m = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?/.exec(text.slice(i, i + 64));
    if (!m) fail('unexpected character');
    i += m![0].length;
    return Number(m![0]);
  };
  const string = (): string => {
    const quote = text[i++];
    let out = '';
    while (i < text.length) {
      const ch = text[i++];
      if (ch === quote) return out;
      if (ch !== '\\') {
        out += ch;
        continue;
      }
      const e = text[i++];
      if (e === 'n') out += '\n';
      else if (e === 't') out += '\t';
      else if (e === 'r') out += '\r';
      else if (e === 'x' || e === 'u') {
        const digits = e === 'x' ? 2 : 4;
        out += String.fromCharCode(parseInt(text.slice(i, i + digits), 16));
        i += digits;
      } else if (e === '\n') continue;
      else out += e; // \\ \' \" and anything else stand for themselves
    }
    return fail('unterminated string');
  };
  const result = value();
  space();
  if (i !== text.length) fail('trailing characters');
  return result;
}

/** Unix seconds from a number (seconds, or milliseconds when > 1e11), bigint, Date or date string. */
export function toUnixSeconds(value: unknown): number {
  if (value instanceof Date) return value.getTime() / 1000;
  if (typeof value === 'bigint') value = Number(value);
  if (typeof value === 'number') return value > 1e11 ? value / 1000 : value;
  if (typeof value === 'string') {
    const asNumber = Number(value);
    if (value.trim() !== '' && Number.isFinite(asNumber)) return toUnixSeconds(asNumber);
    const t = Date.parse(value);
    if (Number.isFinite(t)) return t / 1000;
  }
  return NaN;
}
