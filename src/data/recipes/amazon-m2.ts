/**
 * Amazon-M2 (KDD Cup 2023): `sessions_train.csv` (prev_items as a numpy-style array string such as
 * "['B09W9FND7K' 'B09JSPLN1M']", next_item, locale) and `products_train.csv` (id, locale, title, brand, desc, ...).
 * One locale (France, 'FR', by default).
 *
 * The sessions have no timestamps, so the recipe makes its own train/test split: a seeded random testShare of the
 * sessions are test sessions (input prev_items, ground truth next_item), the rest are training sessions. Each
 * session is one user. Training sessions get timestamp 1 and test sessions timestamp 2, and the returned
 * splitOptions.quantile puts the protocol's threshold T exactly between them, so prepareSplit applies the rest of
 * the protocol (n-core on training sessions, validation users, cold items) unchanged. Consecutive duplicates are
 * removed here (the protocol's step 3) so that the quantile is exact.
 */
import { Random } from '../../util/random.js';
import type { Catalog } from '../types.js';
import { columnIndices, InteractionsBuilder, readCsvRecords, type RecipeResult } from './common.js';

export interface AmazonM2Options {
  sessions: string;
  products: string;
  locale?: string;
  /** Share of sessions held out as test sessions. */
  testShare?: number;
  seed?: number;
}

export const M2_TEXT_FIELDS = ['title', 'brand', 'color', 'size', 'model', 'material', 'author', 'desc'];

/** Item ids of a numpy array repr: "['a' 'b'\n 'c']" (also accepts commas and double quotes). */
export function parseNumpyStringArray(text: string): string[] {
  const out: string[] = [];
  const re = /'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(m[1] ?? m[2]);
  return out;
}

export async function loadAmazonM2(options: AmazonM2Options): Promise<RecipeResult> {
  const locale = options.locale ?? 'FR';
  const testShare = options.testShare ?? 0.1;
  const rng = new Random(options.seed ?? 0);
  const sessions: string[][] = [];
  let header: number[] | null = null;
  let total = 0;
  for await (const [line, record] of readCsvRecords(options.sessions)) {
    if (!header) {
      header = columnIndices(options.sessions, record, ['prev_items', 'next_item', 'locale']);
      continue;
    }
    total++;
    const [prevCol, nextCol, localeCol] = header;
    if (record[localeCol] !== locale) continue;
    const items = parseNumpyStringArray(record[prevCol] ?? '');
    const next = record[nextCol];
    if (!next) throw new Error(`${options.sessions}:${line}: missing field 'next_item'`);
    if (items.length === 0)
      throw new Error(`${options.sessions}:${line}: field 'prev_items' holds no item ids`);
    items.push(next);
    sessions.push(items.filter((item, i) => i === 0 || item !== items[i - 1]));
  }
  if (!header) throw new Error(`${options.sessions}: empty file`);
  if (sessions.length === 0) throw new Error(`${options.sessions}: no sessions with locale '${locale}'`);

  // Seeded choice of test sessions; training sessions first (timestamp 1), then test sessions (timestamp 2).
  const order = rng.shuffle(Int32Array.from(sessions.keys()));
  const numTest = Math.max(1, Math.round(testShare * sessions.length));
  const isTest = new Uint8Array(sessions.length);
  for (let i = 0; i < numTest; i++) isTest[order[i]] = 1;
  const builder = new InteractionsBuilder(false);
  let trainInteractions = 0;
  for (const phase of [0, 1]) {
    sessions.forEach((items, s) => {
      if (isTest[s] !== phase) return;
      for (const item of items) builder.add(`session${s}`, item, phase + 1);
      if (phase === 0) trainInteractions += items.length;
    });
  }
  const n = builder.length;

  const ids: string[] = [];
  const fields: Record<string, string[]> = Object.fromEntries(M2_TEXT_FIELDS.map((f) => [f, [] as string[]]));
  let productHeader: string[] | null = null;
  let idCol = 0;
  let productLocaleCol = 0;
  const seen = new Set<string>();
  for await (const [line, record] of readCsvRecords(options.products)) {
    if (!productHeader) {
      productHeader = record;
      [idCol, productLocaleCol] = columnIndices(options.products, record, ['id', 'locale']);
      continue;
    }
    if (record[productLocaleCol] !== locale) continue;
    const id = record[idCol];
    if (seen.has(id)) throw new Error(`${options.products}:${line}: duplicate item id '${id}'`);
    seen.add(id);
    ids.push(id);
    for (const f of M2_TEXT_FIELDS) {
      const col = productHeader.indexOf(f);
      fields[f].push(col >= 0 ? (record[col] ?? '') : '');
    }
  }
  if (!productHeader) throw new Error(`${options.products}: empty file`);
  const catalog: Catalog = { ids, fields, source: options.products };
  return {
    name: 'amazon-m2',
    interactions: builder.build(options.sessions),
    catalog,
    textFields: M2_TEXT_FIELDS,
    splitOptions: { quantile: n > 1 ? (trainInteractions - 1) / (n - 1) : 0 },
    notes: [
      `${total} sessions read, ${sessions.length} with locale ${locale}; ${numTest} test sessions (share ${testShare})`,
      `${ids.length} products with locale ${locale}`,
    ],
  };
}
