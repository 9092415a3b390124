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
import { extend, withRoom } from '../util/growable.js';
import { IdTable } from './id-table.js';

export interface ItemInfo {
  index: number; // current row
  fields?: Record<string, string>; // text fields of an item added through the API
  added: boolean; // true for items added or updated after the model was trained
}

/** Per id (IdTable key): what it is now. An id is either active or deleted from the put that brought it on. */
const ACTIVE = 1;
const DELETED = 2;
const ADDED = 4; // added or updated after the model was trained (ItemInfo.added)
const SAVED = 8; // one of the items the model was saved with

/**
 * Held in typed arrays (id-table.ts), with no JS object per item: at 1M items the service's main thread holds 38 MB
 * of array buffers for the catalog, where a Map of objects took about 150 MB of JS heap in 2M objects that every full
 * garbage collection marked (docs/latency.md).
 */
export class LiveCatalog {
  /** Every id the catalog has seen (active or deleted): its key indexes the per-id arrays below. */
  private readonly ids: IdTable;
  /** Per key: the current row of an active id, the last row of a deleted one. */
  private keyRow: Int32Array;
  /** Per key: ACTIVE or DELETED, plus ADDED and SAVED. */
  private keyState: Uint8Array;
  /** Text fields of the active ids that have them (items added through the API), by key. */
  private readonly keyFields = new Map<number, Record<string, string>>();
  /** Row -> key of its id (retired rows keep the id they had). Row 0 is padding (-1). */
  private rowKey: Int32Array;
  activeCount = 0;

  constructor(
    itemIds: readonly string[],
    readonly numWarm: number,
  ) {
    // Views with spare room, so that the first puts after a load do not copy every row.
    this.ids = new IdTable(itemIds.length);
    this.keyRow = withRoom(Int32Array, itemIds.length);
    this.keyState = withRoom(Uint8Array, itemIds.length);
    this.rowKey = withRoom(Int32Array, itemIds.length);
    this.rowKey[0] = -1;
    for (let i = 1; i < itemIds.length; i++) {
      const key = this.ids.add(itemIds[i]);
      this.keyRow[key] = i; // a repeated id: its last row, as a Map set in this order
      this.keyState[key] = ACTIVE | SAVED;
      this.rowKey[i] = key;
    }
    this.keyRow = extend(this.keyRow, this.ids.size);
    this.keyState = extend(this.keyState, this.ids.size);
    this.activeCount = itemIds.length - 1;
  }

  get numRows(): number {
    return this.rowKey.length; // including padding row 0
  }

  /** The id of a row ('' for the padding row 0; a retired row keeps its id). */
  rowId(row: number): string {
    const key = this.rowKey[row];
    return key < 0 ? '' : this.ids.id(key);
  }

  /** The ids of rows 0 .. count - 1 (default: every row), one string per row. */
  rowIds(count = this.numRows): string[] {
    return Array.from({ length: count }, (_, row) => this.rowId(row));
  }

  /** Bytes the catalog holds in array buffers (its text fields aside). */
  get byteSize(): number {
    return (
      this.ids.byteSize +
      this.keyRow.buffer.byteLength +
      this.keyState.buffer.byteLength +
      this.rowKey.buffer.byteLength
    );
  }

  get(id: string): ItemInfo | undefined {
    const key = this.ids.find(id);
    if (key < 0 || !(this.keyState[key] & ACTIVE)) return undefined;
    const info: ItemInfo = { index: this.keyRow[key], added: (this.keyState[key] & ADDED) !== 0 };
    const fields = this.keyFields.get(key);
    if (fields) info.fields = fields;
    return info;
  }

  /** Row for an id in a user history: active items, and deleted items (their last row). */
  historyIndex(id: string): number | undefined {
    const key = this.ids.find(id);
    return key < 0 ? undefined : this.keyRow[key];
  }

  /** Whether the model was saved with this item (active or not now). */
  isSaved(id: string): boolean {
    const key = this.ids.find(id);
    return key >= 0 && (this.keyState[key] & SAVED) !== 0;
  }

  /**
   * Adds or updates an item. Returns its row, whether that row is reused (re-encode it in place) or new (append
   * it), and the retired row (0 when none).
   */
  put(id: string, fields?: Record<string, string>): { index: number; reused: boolean; retired: number } {
    let key = this.ids.find(id);
    const state = key < 0 ? 0 : this.keyState[key];
    const row = key < 0 ? 0 : this.keyRow[key];
    // An active item that is not warm, or a deleted item added again (recommendable again), keeps its row
    // (re-encoded) unless that row is warm.
    if (state !== 0 && !this.isWarm(row)) {
      if (state & DELETED) this.activeCount++;
      this.setActive(key, row, fields);
      return { index: row, reused: true, retired: 0 };
    }
    if (key < 0) {
      key = this.ids.add(id);
      this.keyRow = extend(this.keyRow, this.ids.size);
      this.keyState = extend(this.keyState, this.ids.size);
    }
    const index = this.rowKey.length;
    this.rowKey = extend(this.rowKey, index + 1);
    this.rowKey[index] = key;
    const retired = state & ACTIVE ? row : 0;
    if (!(state & ACTIVE)) this.activeCount++;
    this.setActive(key, index, fields);
    return { index, reused: false, retired };
  }

  /** Stops recommending an item; returns its retired row, or 0 when the id is not active. */
  remove(id: string): number {
    const key = this.ids.find(id);
    if (key < 0 || !(this.keyState[key] & ACTIVE)) return 0;
    this.keyState[key] = DELETED | (this.keyState[key] & SAVED);
    this.keyFields.delete(key);
    this.activeCount--;
    return this.keyRow[key];
  }

  isWarm(index: number): boolean {
    return index >= 1 && index <= this.numWarm;
  }

  private setActive(key: number, row: number, fields: Record<string, string> | undefined): void {
    this.keyRow[key] = row;
    this.keyState[key] = ACTIVE | ADDED | (this.keyState[key] & SAVED);
    if (fields) this.keyFields.set(key, fields);
    else this.keyFields.delete(key);
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
