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

/** Writes interactions as CSV: user_id,item_id[,timestamp][,rating], in the given row order. */
export async function writeInteractionsCsv(path: string, data: Interactions): Promise<void> {
  const header = [
    'user_id',
    'item_id',
    ...(data.timestamps ? ['timestamp'] : []),
    ...(data.ratings ? ['rating'] : []),
  ];
  const users = data.userIds.ids.map(csvCell);
  const items = data.itemIds.ids.map(csvCell);
  let row = 0;
  await writeLines(path, header.join(','), () => {
    if (row >= data.users.length) return null;
    let line = `${users[data.users[row]]},${items[data.items[row]]}`;
    if (data.timestamps) line += `,${data.timestamps[row]}`;
    if (data.ratings) line += `,${data.ratings[row]}`;
    row++;
    return line;
  });
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
