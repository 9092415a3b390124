/**
 * The live catalog: item id <-> model row index, and which rows may be recommended.
 *
 * Adding an item appends a row (content vector, zero delta). Updating an item that was added (or was cold in the
 * artifact) re-encodes its row in place, so repeated updates do not grow the table; updating a trained (warm) item
 * appends a new row and retires the warm one (its learned delta is dropped, and the warm range stays warm).
 * Deleting retires the row; retired rows keep their embedding so that user histories that contain a deleted item
 * still encode. Replaying the same changes in the same order always yields the same row numbers, which is what
 * makes the change log sufficient to restore the state.
 */
import {
  compactRecords,
  decodeVector,
  encodeVector,
  type CatalogRecord,
  type ReplayResult,
} from './catalog-log.js';
import type { ItemContentEncoder } from './content.js';

export interface ItemInfo {
  index: number; // current row
  fields?: Record<string, string>; // text fields of an item added through the API
  added: boolean; // true for items added or updated after the model was trained
}

export class LiveCatalog {
  /** Row -> item id (retired rows keep the id they had). Row 0 is padding. */
  readonly rowIds: string[];
  /** Active items by id. */
  private readonly items = new Map<string, ItemInfo>();
  /** Ids that were deleted: their last row still encodes in histories. */
  private readonly deleted = new Map<string, number>();
  activeCount = 0;

  constructor(
    itemIds: readonly string[],
    readonly numWarm: number,
  ) {
    this.rowIds = [...itemIds];
    for (let i = 1; i < itemIds.length; i++) {
      this.items.set(itemIds[i], { index: i, added: false });
    }
    this.activeCount = itemIds.length - 1;
  }

  get numRows(): number {
    return this.rowIds.length; // including padding row 0
  }

  get(id: string): ItemInfo | undefined {
    return this.items.get(id);
  }

  /** Row for an id in a user history: active items, and deleted items (their last row). */
  historyIndex(id: string): number | undefined {
    return this.items.get(id)?.index ?? this.deleted.get(id);
  }

  /**
   * Adds or updates an item. Returns its row, whether that row is reused (re-encode it in place) or new (append
   * it), and the retired row (0 when none).
   */
  put(id: string, fields?: Record<string, string>): { index: number; reused: boolean; retired: number } {
    const previous = this.items.get(id);
    if (previous && !this.isWarm(previous.index)) {
      this.items.set(id, { index: previous.index, fields, added: true });
      return { index: previous.index, reused: true, retired: 0 };
    }
    const index = this.rowIds.length;
    this.rowIds.push(id);
    const retired = previous ? previous.index : 0;
    if (!previous) this.activeCount++;
    this.items.set(id, { index, fields, added: true });
    this.deleted.delete(id);
    return { index, reused: false, retired };
  }

  /** Stops recommending an item; returns its retired row, or 0 when the id is not active. */
  remove(id: string): number {
    const info = this.items.get(id);
    if (!info) return 0;
    this.items.delete(id);
    this.deleted.set(id, info.index);
    this.activeCount--;
    return info.index;
  }

  isWarm(index: number): boolean {
    return index >= 1 && index <= this.numWarm;
  }
}

/** Where replayed changes go: rows to append (content vectors), rows to re-encode in place, rows to retire. */
export interface RowSink {
  /** fields: each row's text fields, when it was added from text. */
  append(vector: Float32Array, count: number, fields?: readonly (Record<string, string> | undefined)[]): void;
  replace(row: number, vector: Float32Array, fields?: Record<string, string>): void;
  retire(row: number): void;
}

/** Applies one put to the catalog and the rows (the live service and the replay share it). */
export function putItem(
  catalog: LiveCatalog,
  sink: RowSink,
  id: string,
  vector: Float32Array,
  fields: Record<string, string> | undefined,
): { retired: number; created: boolean } {
  const existed = catalog.get(id) !== undefined;
  const { index, reused, retired } = catalog.put(id, fields);
  if (reused) sink.replace(index, vector, fields);
  else sink.append(vector, 1, [fields]);
  if (retired) sink.retire(retired);
  return { retired, created: !existed };
}

/** Applies logged catalog changes in order (the same path the live service takes for each acknowledged change). */
export function replayChanges(
  catalog: LiveCatalog,
  records: readonly CatalogRecord[],
  d: number,
  sink: RowSink,
  source: string,
): void {
  records.forEach((record, i) => {
    if (record.op === 'put') {
      const vector = decodeVector(record.vector, d, `${source}: record ${i + 1}`);
      putItem(catalog, sink, record.id, vector, record.fields);
    } else {
      const retired = catalog.remove(record.id);
      if (retired) sink.retire(retired);
    }
  });
}

/**
 * The records of a replayed log to apply to a model whose content pipeline has `fingerprint` (contentFingerprint):
 * as logged when the log was written for it; re-encoded from their fields when it was written for another one
 * (`rewrite`: the service then rewrites the log for this model); as logged, with `rewrite`, for a log from before
 * logs had headers (it was written next to the model it served).
 */
export async function recordsForModel(
  replay: ReplayResult,
  fingerprint: string,
  content: () => Promise<ItemContentEncoder>, // loaded only for a foreign log
  source: string,
): Promise<{ records: CatalogRecord[]; rewrite: boolean; reencoded: number }> {
  if (replay.header === null)
    return { records: replay.records, rewrite: replay.records.length > 0, reencoded: 0 };
  if (replay.header.model === fingerprint) return { records: replay.records, rewrite: false, reencoded: 0 };
  const records = reencodeForeignLog(replay.records, await content(), source);
  return { records, rewrite: true, reencoded: records.filter((r) => r.op === 'put').length };
}

/**
 * A log written for another content pipeline holds vectors of another space: re-encode every put from its logged
 * text fields with this model's encoder, or refuse when an item came as a raw vector (or its text no longer
 * encodes). Never replays the old vectors.
 */
function reencodeForeignLog(
  records: readonly CatalogRecord[],
  content: ItemContentEncoder,
  source: string,
): CatalogRecord[] {
  const kept = compactRecords(records); // superseded puts are dropped, not re-encoded
  const vectorOnly = kept.filter((r) => r.op === 'put' && !r.fields).map((r) => r.id);
  if (vectorOnly.length > 0) {
    throw new Error(
      `${source} was written for another model (its content encoder or projection differs), and ` +
        `${vectorOnly.length} item(s) were added as raw vectors (first: ${JSON.stringify(vectorOnly[0])}), which ` +
        `cannot be re-encoded for this one; start with a new --catalog file and add them again`,
    );
  }
  return kept.map((r) => {
    if (r.op !== 'put') return r;
    try {
      return { ...r, vector: encodeVector(content.fromFields(r.fields!)) };
    } catch (error) {
      throw new Error(
        `${source}: item ${JSON.stringify(r.id)} was logged for another model and cannot ` +
          `be re-encoded for this one: ${(error as Error).message}`,
        { cause: error },
      );
    }
  });
}
