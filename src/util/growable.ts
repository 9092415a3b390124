/**
 * Typed arrays that grow by capacity: a table is a view of the first `length` values of a larger buffer, so that
 * appending a row writes into spare room and only now and then moves everything to a buffer GROWTH times larger.
 * Appending one row of width w then costs O(w) amortized (w / (GROWTH - 1) values moved per row, on average),
 * where reallocating the whole table on every append cost O(rows x w). The growth factor is below 2 so that a
 * large catalog (1M items x 128 floats = 512 MB per table) does not hold twice its size in spare room.
 */
export const GROWTH = 1.25;

type Growable = Float32Array | Int32Array | Uint8Array;

/**
 * `view` lengthened to `length` values: a longer view of the same buffer when the buffer has room (the new values
 * are whatever the spare room held: zeros unless it was used before and shrunk, which callers never do), else a
 * copy of `view` at the start of a buffer of max(length, GROWTH x old capacity) values. `view` must start at
 * offset 0 of a buffer that only it uses (one made by `withCapacity` or `new`).
 */
export function extend<T extends Growable>(view: T, length: number): T {
  if (view.byteOffset !== 0) throw new Error('extend: the view must start at the start of its buffer');
  const Ctor = view.constructor as new (buffer: ArrayBufferLike, offset: number, length: number) => T;
  const capacity = view.buffer.byteLength / view.BYTES_PER_ELEMENT;
  if (length <= capacity) return new Ctor(view.buffer, 0, length);
  const grown = withCapacity(view, length, Math.max(length, Math.ceil(capacity * GROWTH)));
  grown.set(view);
  return grown;
}

/** A zeroed view of `length` values (of the same type as `like`) on a buffer of `capacity` values. */
function withCapacity<T extends Growable>(like: T, length: number, capacity: number): T {
  const Ctor = like.constructor as new (buffer: ArrayBufferLike, offset: number, length: number) => T;
  return new Ctor(new ArrayBuffer(capacity * like.BYTES_PER_ELEMENT), 0, length);
}

/**
 * Spare room of a table made at load (`withRoom`), as a fraction of its rows, and at least ROOM_MIN_ROWS rows: the
 * first appends after a load then write into it like any other, where a table made without room was moved whole
 * by the first append (2.8 s at 1M items x d = 128). A fraction below GROWTH - 1 keeps the memory of a loaded model
 * close to its size (+6%); once the room is used the table grows by GROWTH as any other.
 */
export const LOAD_ROOM = 1 / 16;
const ROOM_MIN_ROWS = 64;

interface GrowableConstructor<T> {
  new (length: number): T;
  new (buffer: ArrayBuffer, offset: number, length: number): T;
}

/**
 * A zeroed view of `length` values (rows of `rowWidth` values) on a buffer with spare room for LOAD_ROOM more
 * rows (at least ROOM_MIN_ROWS), for `extend` to lengthen in place.
 */
export function withRoom<T extends Growable>(Ctor: GrowableConstructor<T>, length: number, rowWidth = 1): T {
  const rows = Math.ceil(length / rowWidth);
  const room = Math.max(ROOM_MIN_ROWS, Math.ceil(rows * LOAD_ROOM)) * rowWidth;
  return new Ctor(new Ctor(length + room).buffer as ArrayBuffer, 0, length);
}

/** A copy of `values` in a table with spare room (`withRoom`). */
export function copyWithRoom<T extends Growable>(values: T, rowWidth = 1): T {
  const copy = withRoom(values.constructor as GrowableConstructor<T>, values.length, rowWidth);
  copy.set(values);
  return copy;
}
