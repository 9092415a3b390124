/**
 * The live catalog: item id <-> model row index, and which rows may be recommended.
 *
 * Rows are never rewritten. Adding an item appends a row (content vector, zero delta); updating an item appends a
 * new row and retires the old one; deleting retires the row. Retired rows keep their embedding so that user
 * histories that contain a deleted or updated item still encode. Replaying the same changes in the same order
 * always yields the same row numbers, which is what makes the change log sufficient to restore the state.
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

  /** Adds or updates an item; returns its new row and the retired row (0 when the item is new). */
  put(id: string, fields?: Record<string, string>): { index: number; retired: number } {
    const index = this.rowIds.length;
    this.rowIds.push(id);
    const previous = this.items.get(id);
    const retired = previous ? previous.index : 0;
    if (!previous) this.activeCount++;
    this.items.set(id, { index, fields, added: true });
    this.deleted.delete(id);
    return { index, retired };
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

/** Where catalog changes go: rows to append (content vectors) and rows to retire (runtime.ts applyChange). */
export interface RowSink {
  /** fields: each row's text fields, when it was added from text. */
  append(vector: Float32Array, count: number, fields?: readonly (Record<string, string> | undefined)[]): void;
  retire(row: number): void;
}
