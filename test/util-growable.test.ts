/** Tables made with spare room (withRoom, copyWithRoom) lengthen in place with `extend` until the room is used. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { copyWithRoom, extend, LOAD_ROOM, withRoom } from '../src/util/growable.js';

test('withRoom: a zeroed table of the length asked, with room for 1/16 more rows (at least 64)', () => {
  for (const [rows, width] of [
    [10, 8],
    [10_000, 16],
  ]) {
    const table = withRoom(Float32Array, rows * width, width);
    assert.equal(table.length, rows * width);
    assert.ok(table.every((v) => v === 0));
    const roomRows = Math.max(64, Math.ceil(rows * LOAD_ROOM));
    assert.equal(table.buffer.byteLength, (rows + roomRows) * width * 4);
    const grown = extend(table, (rows + roomRows) * width);
    assert.equal(grown.buffer, table.buffer, `${rows} rows: the room is used in place`);
    assert.notEqual(extend(grown, (rows + roomRows + 1) * width).buffer, table.buffer);
  }
});

test('copyWithRoom: the same values, of the same type, in a table with room', () => {
  const values = Int32Array.from({ length: 300 }, (_, i) => i * 7 - 5);
  const copy = copyWithRoom(values, 3);
  assert.ok(copy instanceof Int32Array);
  assert.deepEqual(copy, values);
  assert.ok(copy.buffer.byteLength > values.byteLength);
  const longer = extend(copy, 303);
  assert.equal(longer.buffer, copy.buffer);
  assert.deepEqual(longer.subarray(0, 300), values);
  assert.deepEqual(longer.subarray(300), new Int32Array(3));
});
