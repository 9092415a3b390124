/**
 * Durable catalog changes: an append-only log of JSON lines, each `<crc32 hex> <json>\n`.
 *
 * `append` resolves only after the record is written and fdatasync'ed, so an acknowledged change survives a hard
 * kill or power loss. Concurrent appends are group-committed (one write + one fdatasync for everything queued while
 * the previous flush ran). On open the log is replayed; a torn or corrupt LAST record (a write cut short by a crash)
 * is dropped and truncated away, while a corrupt record followed by valid ones is an error naming the line.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';

// vector (and raw: a raw vector as given): base64 f32 LE. model: the model id the vector is for (catalog-store.ts).
export type CatalogRecord =
  | {
      op: 'put';
      id: string;
      vector: string;
      raw?: string;
      fields?: Record<string, string>;
      model?: string;
      t: number;
    }
  | { op: 'delete'; id: string; model?: string; t: number };

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

function formatLine(record: CatalogRecord): Buffer {
  const json = JSON.stringify(record);
  const checksum = crc32(json).toString(16).padStart(8, '0');
  return Buffer.from(`${checksum} ${json}\n`, 'utf8');
}

/** Parses one line; returns null when the checksum or JSON is bad. */
function parseLine(line: string): CatalogRecord | null {
  if (line.length < 10 || line[8] !== ' ') return null;
  const json = line.slice(9);
  if (crc32(json).toString(16).padStart(8, '0') !== line.slice(0, 8)) return null;
  try {
    const record = JSON.parse(json) as CatalogRecord;
    if ((record.op !== 'put' && record.op !== 'delete') || typeof record.id !== 'string') return null;
    if (record.op === 'put' && typeof record.vector !== 'string') return null;
    return record;
  } catch {
    return null;
  }
}

export interface ReplayResult {
  records: CatalogRecord[];
  validBytes: number; // length of the intact prefix
  droppedTail: boolean; // a torn last record was found
}

/** Reads the records of a log held in memory. */
export function replayLog(bytes: Buffer, source: string): ReplayResult {
  const records: CatalogRecord[] = [];
  let start = 0;
  let lineNumber = 0;
  while (start < bytes.length) {
    lineNumber++;
    const end = bytes.indexOf(0x0a, start);
    if (end < 0) return { records, validBytes: start, droppedTail: true }; // no newline: the write was cut short
    const record = parseLine(bytes.toString('utf8', start, end));
    if (!record) {
      if (end + 1 >= bytes.length) return { records, validBytes: start, droppedTail: true };
      throw new Error(
        `${source}:${lineNumber}: corrupt catalog record (bad checksum or JSON) before later valid records`,
      );
    }
    records.push(record);
    start = end + 1;
  }
  return { records, validBytes: start, droppedTail: false };
}

export class CatalogLog {
  private pending: { line: Buffer; resolve: () => void; reject: (error: Error) => void }[] = [];
  private flushing = false;
  private failed: Error | null = null;

  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
  ) {}

  /** Opens (creating if needed) the log, truncates a torn tail, and returns it with the replayed records. */
  static async open(path: string): Promise<{ log: CatalogLog; replay: ReplayResult }> {
    const handle = await open(path, 'a+');
    try {
      const bytes = await handle.readFile();
      const replay = replayLog(bytes, path);
      if (replay.validBytes < bytes.length) {
        await handle.truncate(replay.validBytes);
        await handle.sync();
      }
      return { log: new CatalogLog(handle, path), replay };
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /** Appends a record; resolves once it is on stable storage. */
  append(record: CatalogRecord): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.pending.push({ line: formatLine(record), resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.pending.length > 0) {
      const group = this.pending;
      this.pending = [];
      try {
        // 'a+' opens in append mode, so every write lands at the end of the file.
        await this.handle.write(Buffer.concat(group.map((p) => p.line)));
        await this.handle.datasync();
        for (const p of group) p.resolve();
      } catch (error) {
        // After a failed write the file state is unknown: refuse further appends rather than acknowledge them.
        this.failed = new Error(`catalog log ${this.path}: write failed (${(error as Error).message})`);
        for (const p of [...group, ...this.pending]) p.reject(this.failed);
        this.pending = [];
      }
    }
    this.flushing = false;
  }

  async close(): Promise<void> {
    while (this.flushing) await new Promise((r) => setTimeout(r, 1));
    await this.handle.close();
  }
}
