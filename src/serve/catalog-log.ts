/**
 * Durable catalog changes: an append-only log of JSON lines, each `<crc32 hex> <json>\n`. The first line is a
 * header naming the content pipeline (contentFingerprint) of the model that created the log; every record names
 * the model it was recorded for (logs written before records named their model rely on the header: see
 * catalog-store.ts logChanges).
 *
 * `append` resolves only after every byte of the record is written and fdatasync'ed, so an acknowledged change
 * survives a hard kill or power loss. Concurrent appends are group-committed (one write + one fdatasync for
 * everything queued while the previous flush ran). A failed or short write fails the log: nothing more is
 * acknowledged until the service restarts. On open the log is replayed; only a last line without its newline (a
 * write cut short by a crash, never acknowledged) is dropped and truncated away, any corrupt complete line is an
 * error naming the line. Superseded records (earlier puts and deletes of an id: compactRecords)
 * are compacted away once they outnumber the live ones: the log is rewritten to a temporary file and renamed over.
 * A lock file (<log>.lock) keeps a second process from appending to the same log.
 */
import { open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { acquireLock, type Lock } from '../util/lock.js';

// vector (and raw: a raw vector as given): base64 f32 LE. model: the id of the model the change was recorded for
// (runtime.ts modelId); rawSpace: the raw-vector space of raw (content.ts rawSpaceFingerprint).
export type CatalogRecord =
  | {
      op: 'put';
      id: string;
      vector: string;
      raw?: string;
      rawSpace?: string;
      fields?: Record<string, string>;
      model?: string;
      t: number;
    }
  | { op: 'delete'; id: string; model?: string; t: number };

/** First line of a log: the content pipeline of the model that created it. */
export interface CatalogHeader {
  op: 'header';
  format: typeof LOG_FORMAT;
  version: number;
  /** contentFingerprint of the model the log was created for (records without a model of their own are its). */
  model: string;
  t: number;
}

export const LOG_FORMAT = 'deltarec-catalog-log';
const LOG_VERSION = 1;

/** Writes `data` at the end of the file; may write fewer bytes than asked (the caller writes the rest). */
export type WriteFunction = (handle: FileHandle, data: Buffer) => Promise<{ bytesWritten: number }>;

const defaultWrite: WriteFunction = (handle, data) => handle.write(data);

/** A failed write or sync: the log refuses every later append; /health, 500 bodies and stderr name it. */
export class CatalogLogError extends Error {}

export function encodeVector(vector: Float32Array): string {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64');
}

export function decodeVector(text: string, dim: number, where: string): Float32Array {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== dim * 4)
    throw new Error(`${where}: vector has ${bytes.length / 4} values, expected ${dim}`);
  const out = new Float32Array(dim);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

function formatLine(record: CatalogRecord | CatalogHeader): Buffer {
  const json = JSON.stringify(record);
  const checksum = crc32(json).toString(16).padStart(8, '0');
  return Buffer.from(`${checksum} ${json}\n`, 'utf8');
}

/** Parses one line; returns null when the checksum, JSON or record shape is bad. */
function parseLine(line: string): CatalogRecord | CatalogHeader | null {
  if (line.length < 10 || line[8] !== ' ') return null;
  const json = line.slice(9);
  if (crc32(json).toString(16).padStart(8, '0') !== line.slice(0, 8)) return null;
  try {
    const record = JSON.parse(json) as CatalogRecord | CatalogHeader;
    if (record.op === 'header') {
      return record.format === LOG_FORMAT && typeof record.model === 'string' ? record : null;
    }
    if ((record.op !== 'put' && record.op !== 'delete') || typeof record.id !== 'string') return null;
    if (record.op === 'put' && typeof record.vector !== 'string') return null;
    return record;
  } catch {
    return null;
  }
}

export interface ReplayResult {
  /** null for a log written before headers existed (or an empty one). */
  header: CatalogHeader | null;
  records: CatalogRecord[];
  validBytes: number; // length of the intact prefix
  droppedTail: boolean; // a torn last line (no newline) was found
}

/** Reads the records of a log held in memory. */
export function replayLog(bytes: Buffer, source: string): ReplayResult {
  const records: CatalogRecord[] = [];
  let header: CatalogHeader | null = null;
  let start = 0;
  let lineNumber = 0;
  while (start < bytes.length) {
    lineNumber++;
    const end = bytes.indexOf(0x0a, start);
    // Only a last line without its newline is a write cut short (never acknowledged).
    if (end < 0) return { header, records, validBytes: start, droppedTail: true };
    const record = parseLine(bytes.toString('utf8', start, end));
    if (!record) {
      throw new Error(
        `${source}:${lineNumber}: corrupt catalog record (bad checksum or JSON); deltarec never writes such a ` +
          `complete line, so the file was damaged or edited: restore it from a backup`,
      );
    }
    if (record.op === 'header') {
      if (lineNumber !== 1) throw new Error(`${source}:${lineNumber}: a header in the middle of the log`);
      if (record.version !== LOG_VERSION) {
        throw new Error(
          `${source}:1: catalog log version ${record.version}; this deltarec reads version ${LOG_VERSION}`,
        );
      }
      header = record;
    } else records.push(record);
    start = end + 1;
  }
  return { header, records, validBytes: start, droppedTail: false };
}

/**
 * The records that rebuild the same catalog state: per id its last put and its last delete, in log order. A deleted
 * item keeps its last row for histories, so the put before a final delete stays; a delete before the last put stays
 * too, because applying a put recorded for another model depends on it (an item deleted and added again is carried
 * into a model that was trained with it; a mere update is not: runtime.ts applyChange).
 */
export function compactRecords<T extends { op: 'put' | 'delete'; id: string }>(records: readonly T[]): T[] {
  const lastPut = new Map<string, number>();
  const lastDelete = new Map<string, number>();
  records.forEach((r, i) => (r.op === 'put' ? lastPut : lastDelete).set(r.id, i));
  return records.filter((r, i) => (r.op === 'put' ? lastPut.get(r.id) === i : lastDelete.get(r.id) === i));
}

export interface CatalogLogOptions {
  /** contentFingerprint of the serving model, written into the header of a new or rewritten log. */
  model: string;
  /** Replaces the file write (tests simulate a full disk with it). */
  write?: WriteFunction;
  /** Compact once superseded records number at least this many and at least the live ones. Default 1024. */
  compactAfter?: number;
  /** Called once when the log fails (the service reports it on stderr). */
  onFailure?: (error: CatalogLogError) => void;
}

export interface CatalogLogStats {
  appended: number;
  syncs: number;
  syncSeconds: number;
  failures: number;
  compactions: number;
  /** Records in the file (excluding the header). */
  records: number;
  /** Records a compaction would keep. */
  live: number;
}

export class CatalogLog {
  private pending: {
    line: Buffer;
    record: CatalogRecord;
    resolve: () => void;
    reject: (e: Error) => void;
  }[] = [];
  private flushing: Promise<void> | null = null;
  private failed: CatalogLogError | null = null;
  /** Bytes of acknowledged content: the file is truncated back to it after a failed write. */
  private size: number;
  /** Per id: records a compaction keeps (1: its last put or its last delete; 2: both). */
  private readonly kept = new Map<string, number>();
  /** Ids with a put, and ids with a delete, in the log. */
  private readonly putIds = new Set<string>();
  private readonly deletedIds = new Set<string>();
  readonly stats: CatalogLogStats = {
    appended: 0,
    syncs: 0,
    syncSeconds: 0,
    failures: 0,
    compactions: 0,
    records: 0,
    live: 0,
  };

  private constructor(
    private handle: FileHandle,
    readonly path: string,
    private readonly lock: Lock,
    private readonly options: CatalogLogOptions,
    size: number,
  ) {
    this.size = size;
  }

  /**
   * Opens (creating if needed) and locks the log, truncates a torn tail, and returns it with the replayed records.
   * A new log gets a header for `options.model`. An existing one keeps its header (a compaction or `rewrite`
   * writes one for `options.model`: give every record its model first, see catalog-store.ts logChanges).
   */
  static async open(
    path: string,
    options: CatalogLogOptions,
  ): Promise<{ log: CatalogLog; replay: ReplayResult }> {
    const lock = await acquireLock(
      `${path}.lock`,
      `catalog log ${path}`,
      'stop that server first, or give this one another --catalog',
    );
    let handle: FileHandle | null = null;
    try {
      handle = await open(path, 'a+');
      const bytes = await handle.readFile();
      const replay = replayLog(bytes, path);
      if (replay.validBytes < bytes.length) {
        await handle.truncate(replay.validBytes);
        await handle.sync();
      }
      let size = replay.validBytes;
      if (size === 0) {
        const header = formatLine(headerFor(options.model));
        await writeAll(handle, header, options.write ?? defaultWrite);
        await handle.sync();
        await syncDirectory(dirname(path));
        size = header.length;
      }
      const log = new CatalogLog(handle, path, lock, options, size);
      for (const record of replay.records) log.count(record);
      return { log, replay };
    } catch (error) {
      await handle?.close();
      await lock.release();
      throw error;
    }
  }

  /** Set once a write or sync failed. */
  get failure(): CatalogLogError | null {
    return this.failed;
  }

  /** Appends a record; resolves once all of it is on stable storage. */
  append(record: CatalogRecord): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.pending.push({ line: formatLine(record), record, resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  /**
   * Replaces the whole log with a header for the serving model and the given records (compacted), durably: a
   * temporary file is written and fsynced, then renamed over the log. Used right after open to name the model of
   * records written before records named their model.
   */
  async rewrite(records: readonly CatalogRecord[]): Promise<void> {
    if (this.flushing || this.stats.appended > 0)
      throw new Error('CatalogLog.rewrite: only before any append');
    await this.replaceFile(compactRecords(records));
  }

  private count(record: CatalogRecord): void {
    const before = this.kept.get(record.id) ?? 0;
    (record.op === 'put' ? this.putIds : this.deletedIds).add(record.id);
    const after = this.putIds.has(record.id) && this.deletedIds.has(record.id) ? 2 : 1;
    this.kept.set(record.id, after);
    this.stats.live += after - before;
    this.stats.records++;
  }

  private async flush(): Promise<void> {
    const write = this.options.write ?? defaultWrite;
    while (this.pending.length > 0 && !this.failed) {
      const group = this.pending;
      this.pending = [];
      const data = Buffer.concat(group.map((p) => p.line));
      try {
        // 'a+' opens in append mode, so every write lands at the end of the file.
        await writeAll(this.handle, data, write);
        const started = process.hrtime.bigint();
        await this.handle.datasync();
        this.stats.syncSeconds += Number(process.hrtime.bigint() - started) / 1e9;
        this.stats.syncs++;
        this.size += data.length;
      } catch (error) {
        await this.fail(error as Error, group);
        break;
      }
      for (const p of group) {
        this.count(p.record);
        this.stats.appended++;
        p.resolve();
      }
      const compactAfter = this.options.compactAfter ?? 1024;
      const superseded = this.stats.records - this.stats.live;
      if (superseded >= compactAfter && superseded >= this.stats.live) {
        try {
          await this.compact();
        } catch (error) {
          await this.fail(error as Error, []);
        }
      }
    }
    this.flushing = null;
  }

  /** After a failed write the file state is unknown: cut back to the acknowledged bytes, refuse further appends. */
  private async fail(error: Error, group: { reject: (e: Error) => void }[]): Promise<void> {
    const failure = new CatalogLogError(
      `catalog log ${this.path}: write failed (${error.message}); catalog changes are refused until the ` +
        `service is restarted`,
    );
    this.failed = failure;
    this.stats.failures++;
    // Best effort: if this fails too, the next start drops the torn tail (or stops at a corrupt line).
    await this.handle.truncate(this.size).catch(() => {});
    for (const p of [...group, ...this.pending]) p.reject(failure);
    this.pending = [];
    this.options.onFailure?.(failure);
  }

  private async compact(): Promise<void> {
    // By path: a FileHandle's readFile reads from its current position, the end of this append-mode file.
    const replay = replayLog(await readFile(this.path), this.path);
    await this.replaceFile(compactRecords(replay.records));
    this.stats.compactions++;
  }

  private async replaceFile(records: readonly CatalogRecord[]): Promise<void> {
    const temp = `${this.path}.tmp-${process.pid}`;
    const lines = [formatLine(headerFor(this.options.model)), ...records.map(formatLine)];
    const data = Buffer.concat(lines);
    const out = await open(temp, 'w');
    try {
      await writeAll(out, data, this.options.write ?? defaultWrite);
      await out.sync();
      await out.close();
      await rename(temp, this.path);
    } catch (error) {
      await out.close().catch(() => {});
      await rm(temp, { force: true });
      throw error;
    }
    await syncDirectory(dirname(this.path));
    const previous = this.handle;
    this.handle = await open(this.path, 'a+');
    await previous.close();
    this.size = data.length;
    this.kept.clear();
    this.putIds.clear();
    this.deletedIds.clear();
    this.stats.records = 0;
    this.stats.live = 0;
    for (const record of records) this.count(record);
  }

  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
    await this.handle.close();
    await this.lock.release();
  }
}

function headerFor(model: string): CatalogHeader {
  return { op: 'header', format: LOG_FORMAT, version: LOG_VERSION, model, t: Date.now() };
}

/** Writes every byte of data, checking each byte count; a write that makes no progress is an error. */
async function writeAll(handle: FileHandle, data: Buffer, write: WriteFunction): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await write(handle, data.subarray(offset));
    if (!(bytesWritten > 0)) throw new Error(`short write: ${offset} of ${data.length} bytes written`);
    offset += bytesWritten;
  }
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
