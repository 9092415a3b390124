/**
 * Where the service's catalog changes live: the embedded file log (catalog-log.ts, one process) or PostgreSQL
 * (pg-catalog.ts, shared by replicas). Both give every change a version (1, 2, ... in the order every replica
 * applies them) and deliver changes to the service's `apply` in version order, one at a time and synchronously, so a
 * request never sees half of a change. How a change is applied to a model (also one recorded for another model) is
 * runtime.ts applyChange.
 */
import {
  CatalogLog,
  compactRecords,
  encodeVector,
  type CatalogHeader,
  type CatalogLogOptions,
  type CatalogRecord,
} from './catalog-log.js';

export interface CatalogChange {
  version: number;
  op: 'put' | 'delete';
  id: string;
  /** Id of the model the change was recorded for (runtime.ts modelId). */
  model: string;
  /** put: the content vector in that model's space. */
  vector?: Float32Array;
  /** put from a raw vector: the vector as given, so another model with the same raw space can project it. */
  raw?: Float32Array;
  /** The raw-vector space of `raw` (content.ts rawSpaceFingerprint). */
  rawSpace?: string;
  /** put from text: the fields, so another model can encode them with its own encoder. */
  fields?: Record<string, string>;
}

export type NewChange = Omit<CatalogChange, 'version'>;

/** What applying a change did: whether the id was active just before (200 'updated' vs 201 'created'). */
export interface ApplyResult {
  existed: boolean;
}

export type ApplyChange = (change: CatalogChange) => ApplyResult;

export interface CatalogStoreStatus {
  kind: 'file' | 'postgres';
  /** Last version applied by this process. */
  version: number;
  /** False while writes cannot be recorded (database unreachable, log failed); reads are still served. */
  writable: boolean;
  message?: string;
  /** PostgreSQL: changes this model refused and skipped (ChangeRefusedError), and the last one's reason. */
  skipped?: number;
  last_skipped?: string;
}

export interface CatalogStore {
  /** Delivers every change recorded so far, then (PostgreSQL) those other replicas record later, in order. */
  start(apply: ApplyChange): Promise<void>;
  /** Records a change durably; resolves once it (and every change before it) has been applied here. */
  write(change: NewChange): Promise<ApplyResult>;
  status(): CatalogStoreStatus;
  close(): Promise<void>;
}

/** A write that was not recorded because the store cannot be reached (HTTP 503). */
export class CatalogUnavailableError extends Error {}

/**
 * A change this model cannot take (runtime.ts applyChange: a put of another model that cannot be re-encoded here).
 * The file log, a reload and the batch commands fail on it; a PostgreSQL replica skips it, counted (pg-catalog.ts).
 */
export class ChangeRefusedError extends Error {}

/** float32 little-endian bytes as a vector (a copy, aligned). */
export function floatsFromBytes(bytes: Buffer): Float32Array {
  const out = new Float32Array(bytes.length >> 2);
  new Uint8Array(out.buffer).set(bytes.subarray(0, out.length * 4));
  return out;
}

/**
 * The model of log records that name none (written before records named their model): the serving model when the
 * log has no header (it was written next to the model it served) or a header with this model's content fingerprint;
 * otherwise a model this one does not know (`content:FINGERPRINT`), so its vectors are never replayed here.
 */
export async function unnamedRecordsModel(
  header: CatalogHeader | null,
  modelId: string,
  fingerprint: () => Promise<string>, // contentFingerprint of the serving model, computed only when needed
): Promise<string> {
  if (header === null || header.model === (await fingerprint())) return modelId;
  return `content:${header.model}`;
}

/** A log record as a change; `model`: the model of a record that names none (unnamedRecordsModel). */
export function recordToChange(record: CatalogRecord, version: number, model: string): CatalogChange {
  const change: CatalogChange = { version, op: record.op, id: record.id, model: record.model ?? model };
  if (record.op === 'put') {
    change.vector = floatsFromBytes(Buffer.from(record.vector, 'base64'));
    if (record.raw) change.raw = floatsFromBytes(Buffer.from(record.raw, 'base64'));
    if (record.rawSpace) change.rawSpace = record.rawSpace;
    if (record.fields) change.fields = record.fields;
  }
  return change;
}

export interface FileStoreOptions extends Omit<CatalogLogOptions, 'model'> {
  /** The serving model's id (runtime.ts modelId). */
  modelId: string;
  /** Its contentFingerprint (the header of a new log). */
  fingerprint: string;
}

/** The embedded default: the append-only, fsync'ed log file of one process (catalog-log.ts). */
export class FileCatalogStore implements CatalogStore {
  private opened: CatalogLog | null = null;
  private apply: ApplyChange | null = null;
  private version = 0;
  /** Records replayed at start, and whether a torn last line was dropped. */
  replayed = { records: 0, droppedTail: false };

  constructor(
    readonly path: string,
    private readonly options: FileStoreOptions,
  ) {}

  get log(): CatalogLog {
    if (!this.opened) throw new Error('FileCatalogStore: not started');
    return this.opened;
  }

  async start(apply: ApplyChange): Promise<void> {
    const { modelId, fingerprint, ...logOptions } = this.options;
    const { log, replay } = await CatalogLog.open(this.path, { ...logOptions, model: fingerprint });
    this.apply = apply;
    try {
      // Records that name no model get theirs, and the log is rewritten with it, so a compaction (which writes a
      // header for the serving model) cannot attribute them to another one.
      const unnamed = replay.records.some((r) => !r.model);
      const model = unnamed
        ? await unnamedRecordsModel(replay.header, modelId, async () => fingerprint)
        : modelId;
      const records = unnamed ? replay.records.map((r) => (r.model ? r : { ...r, model })) : replay.records;
      // Compacted first (the same final state): a superseded put is not re-encoded, nor refused when it cannot be.
      for (const record of compactRecords(records)) {
        try {
          this.apply(recordToChange(record, ++this.version, model));
        } catch (error) {
          throw new Error(`${this.path}: ${(error as Error).message}`, { cause: error }); // names the item
        }
      }
      if (unnamed) await log.rewrite(records);
    } catch (error) {
      await log.close();
      throw error;
    }
    this.opened = log;
    this.replayed = { records: replay.records.length, droppedTail: replay.droppedTail };
  }

  async write(change: NewChange): Promise<ApplyResult> {
    const t = Date.now();
    const record: CatalogRecord =
      change.op === 'put'
        ? {
            op: 'put',
            id: change.id,
            vector: encodeVector(change.vector!),
            ...(change.fields && { fields: change.fields }),
            ...(change.raw && { raw: encodeVector(change.raw), rawSpace: change.rawSpace }),
            model: change.model,
            t,
          }
        : { op: 'delete', id: change.id, model: change.model, t };
    // Appends resolve in log order, so changes are applied in the order they are logged. A failed log rejects
    // with its CatalogLogError (500 naming the cause, /health 503).
    await this.log.append(record);
    return this.apply!(recordToChange(record, ++this.version, change.model));
  }

  status(): CatalogStoreStatus {
    const failure = this.opened?.failure;
    return {
      kind: 'file',
      version: this.version,
      writable: !failure,
      ...(failure && { message: failure.message }),
    };
  }

  async close(): Promise<void> {
    await this.opened?.close();
  }
}
