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
