/** CSV writers for interactions and catalogs (RFC 4180 quoting), written to a temp file and renamed. */
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import type { Catalog, Interactions } from './types.js';

/** A CSV cell, quoted when it contains a comma, quote or line break. */
export function csvCell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Writes lines produced by next() (null = done) to path atomically, in large batches. */
async function writeLines(path: string, header: string, next: () => string | null): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const out = createWriteStream(tmp);
  const done = new Promise<void>((resolve, reject) => {
    out.on('finish', resolve);
    out.on('error', reject);
  });
  try {
    const batch: string[] = [header];
    for (;;) {
      const line = next();
      if (line !== null) batch.push(line);
      if (batch.length >= 65536 || (line === null && batch.length > 0)) {
        if (!out.write(batch.join('\n') + '\n'))
          await new Promise<void>((resolve) => out.once('drain', () => resolve()));
        batch.length = 0;
      }
      if (line === null) break;
    }
    out.end();
    await done;
    await rename(tmp, path);
  } catch (error) {
    out.destroy();
    await rm(tmp, { force: true });
    throw error;
  }
}

/** CSV cells of ids encoded once into one byte arena: cell k is bytes[offsets[k] .. offsets[k + 1]). */
function encodeCells(ids: string[]): { bytes: Buffer; offsets: Int32Array } {
  const cells = ids.map(csvCell);
  const offsets = new Int32Array(cells.length + 1);
  for (let k = 0; k < cells.length; k++) offsets[k + 1] = offsets[k] + Buffer.byteLength(cells[k]);
  return { bytes: Buffer.from(cells.join('')), offsets };
}

/** Writes the decimal text of a number at buf[at..]; returns the new offset. Integers are written digit by digit. */
function writeNumber(buf: Buffer, at: number, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value >= 1e15)
    return at + buf.write(String(value), at, 'latin1');
  let digits = 1;
  for (let v = value; v >= 10; v = Math.floor(v / 10)) digits++;
  let v = value;
  for (let k = at + digits - 1; k >= at; k--) {
    buf[k] = 48 + (v % 10);
    v = Math.floor(v / 10);
  }
  return at + digits;
}

/**
 * Writes interactions as CSV: user_id,item_id[,timestamp][,rating], in the given row order. Rows are written as bytes
 * into large buffers (tens of millions of rows are written in seconds).
 */
export async function writeInteractionsCsv(path: string, data: Interactions): Promise<void> {
  const header = [
    'user_id',
    'item_id',
    ...(data.timestamps ? ['timestamp'] : []),
    ...(data.ratings ? ['rating'] : []),
  ];
  const users = encodeCells(data.userIds.ids);
  const items = encodeCells(data.itemIds.ids);
  const n = data.users.length;
  const CHUNK = 1 << 20;
  let row = 0;
  const copy = (
    cells: { bytes: Buffer; offsets: Int32Array },
    k: number,
    buf: Buffer,
    at: number,
  ): number => {
    const s = cells.offsets[k];
    const e = cells.offsets[k + 1];
    for (let j = s; j < e; j++) buf[at++] = cells.bytes[j];
    return at;
  };
  await writeChunks(path, Buffer.from(header.join(',') + '\n'), () => {
    if (row >= n) return null;
    const buf = Buffer.allocUnsafe(CHUNK);
    let at = 0;
    while (row < n) {
      const u = data.users[row];
      const i = data.items[row];
      const longest = users.offsets[u + 1] - users.offsets[u] + items.offsets[i + 1] - items.offsets[i] + 64;
      if (at + longest > CHUNK) break;
      at = copy(users, u, buf, at);
      buf[at++] = 44;
      at = copy(items, i, buf, at);
      if (data.timestamps) {
        buf[at++] = 44;
        at = writeNumber(buf, at, data.timestamps[row]);
      }
      if (data.ratings) {
        buf[at++] = 44;
        at = writeNumber(buf, at, data.ratings[row]);
      }
      buf[at++] = 10;
      row++;
    }
    if (at === 0) throw new Error(`row ${row + 1} does not fit in a ${CHUNK}-byte buffer`);
    return buf.subarray(0, at);
  });
}

/** Writes the header and then the buffers produced by next() (null = done) to path atomically. */
async function writeChunks(path: string, header: Buffer, next: () => Buffer | null): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const out = createWriteStream(tmp);
  const done = new Promise<void>((resolve, reject) => {
    out.on('finish', resolve);
    out.on('error', reject);
  });
  try {
    out.write(header);
    for (let chunk = next(); chunk !== null; chunk = next()) {
      if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
    }
    out.end();
    await done;
    await rename(tmp, path);
  } catch (error) {
    out.destroy();
    await rm(tmp, { force: true });
    throw error;
  }
}

/** Writes a catalog as CSV: item_id, then its fields. */
export async function writeCatalogCsv(path: string, catalog: Catalog): Promise<void> {
  const names = Object.keys(catalog.fields);
  let row = 0;
  await writeLines(path, ['item_id', ...names].map(csvCell).join(','), () => {
    if (row >= catalog.ids.length) return null;
    const cells = [csvCell(catalog.ids[row])];
    for (const name of names) cells.push(csvCell(catalog.fields[name][row]));
    row++;
    return cells.join(',');
  });
}
