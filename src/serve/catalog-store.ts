/**
 * Where the service's catalog changes live: the embedded file log (catalog-log.ts, one process) or PostgreSQL
 * (pg-catalog.ts, shared by replicas). Both give every change a version (1, 2, ... in the order every replica
 * applies them) and deliver changes to the service's `apply` in version order, one at a time and synchronously, so a
 * request never sees half of a change.
 */
import { CatalogLog, encodeVector, type CatalogRecord } from './catalog-log.js';

export interface CatalogChange {
  version: number;
  op: 'put' | 'delete';
  id: string;
  /** Id of the model `vector` was encoded for (see modelId in server.ts). */
  model: string;
  /** put: the content vector in that model's space. */
  vector?: Float32Array;
  /** put from a raw vector: the vector as given, so another model can encode it with its own projection. */
  raw?: Float32Array;
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

/** float32 little-endian bytes as a vector (a copy, aligned). */
export function floatsFromBytes(bytes: Buffer): Float32Array {
  const out = new Float32Array(bytes.length >> 2);
  new Uint8Array(out.buffer).set(bytes.subarray(0, out.length * 4));
  return out;
}

/** A log record as a change; defaultModel: the model of records written before records named their model. */
export function recordToChange(record: CatalogRecord, version: number, defaultModel: string): CatalogChange {
  const change: CatalogChange = {
    version,
    op: record.op,
    id: record.id,
    model: record.model ?? defaultModel,
  };
  if (record.op === 'put') {
    change.vector = floatsFromBytes(Buffer.from(record.vector, 'base64'));
    if (record.raw) change.raw = floatsFromBytes(Buffer.from(record.raw, 'base64'));
    if (record.fields) change.fields = record.fields;
  }
  return change;
}

/** The embedded default: the append-only, fsync'ed log file of one process. */
export class FileCatalogStore implements CatalogStore {
  private log: CatalogLog | null = null;
  private apply: ApplyChange | null = null;
  private version = 0;
  /** Records replayed at start, and whether a torn last record was dropped. */
  replayed = { records: 0, droppedTail: false };

  /** defaultModel: the model of records written before records named their model. */
  constructor(
    readonly path: string,
    private readonly defaultModel: string,
  ) {}

  async start(apply: ApplyChange): Promise<void> {
    const { log, replay } = await CatalogLog.open(this.path);
    this.log = log;
    this.apply = apply;
    this.replayed = { records: replay.records.length, droppedTail: replay.droppedTail };
    try {
      for (const record of replay.records) this.deliver(record);
    } catch (error) {
      await log.close();
      throw new Error(`${this.path}: record ${this.version}: ${(error as Error).message}`, { cause: error });
    }
  }

  private deliver(record: CatalogRecord): ApplyResult {
    return this.apply!(recordToChange(record, ++this.version, this.defaultModel));
  }

  async write(change: NewChange): Promise<ApplyResult> {
    const t = Date.now();
    const record: CatalogRecord =
      change.op === 'put'
        ? {
            op: 'put',
            id: change.id,
            vector: encodeVector(change.vector!),
            fields: change.fields,
            ...(change.raw && { raw: encodeVector(change.raw) }),
            model: change.model,
            t,
          }
        : { op: 'delete', id: change.id, model: change.model, t };
    // Appends resolve in log order, so changes are applied in the order they are logged.
    await this.log!.append(record);
    return this.deliver(record);
  }

  status(): CatalogStoreStatus {
    return { kind: 'file', version: this.version, writable: true };
  }

  async close(): Promise<void> {
    await this.log?.close();
  }
}
