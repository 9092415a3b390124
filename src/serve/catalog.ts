/**
 * The live catalog: item id <-> model row index, and which rows may be recommended.
 *
 * Adding an item appends a row (content vector, zero delta). Updating an item that was added (or was cold in the
 * artifact) re-encodes its row in place, so repeated updates do not grow the table; updating a trained (warm) item
 * appends a new row and retires the warm one (its learned delta is dropped, and the warm range stays warm). Adding
 * a deleted item again re-encodes its last row in place and makes it recommendable again (a new row only when that
 * row is warm), so delete and add cycles do not grow the table either.
 * Deleting retires the row; retired rows keep their embedding so that user histories that contain a deleted item
 * still encode. Replaying the same changes in the same order always yields the same row numbers, which is what
 * makes the change log sufficient to restore the state.
 */

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
    // A copy with spare room, so that the first put after a load does not copy every id (74 ms at 1M ids): V8 grows
    // an array's storage by about 1.5x on a push and keeps it when the length is set back.
    this.rowIds = [...itemIds];
    this.rowIds.push('');
    this.rowIds.length = itemIds.length;
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
    // A deleted item added again gets its last row back (re-encoded, recommendable again) unless that row is warm.
    const deletedRow = previous ? undefined : this.deleted.get(id);
    if (deletedRow !== undefined && !this.isWarm(deletedRow)) {
      this.deleted.delete(id);
      this.items.set(id, { index: deletedRow, fields, added: true });
      this.activeCount++;
      return { index: deletedRow, reused: true, retired: 0 };
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

/** Where catalog changes go (runtime.ts applyChange): rows to append, rows to re-encode in place, rows to retire. */
export interface RowSink {
  /** fields: each row's text fields, when it was added from text. */
  append(vector: Float32Array, count: number, fields?: readonly (Record<string, string> | undefined)[]): void;
  replace(row: number, vector: Float32Array, fields?: Record<string, string>): void;
  retire(row: number): void;
}

/** Applies one put to the catalog and the rows (runtime.ts applyChange). */
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
