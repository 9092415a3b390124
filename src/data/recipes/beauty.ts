/**
 * Amazon Beauty from the original 2014 review files (McAuley et al.): `reviews_Beauty.json.gz` (JSON lines with
 * reviewerID, asin, overall, unixReviewTime) and `meta_Beauty.json.gz` (one Python dict literal per line, not JSON:
 * asin, title, description, brand, categories). Ratings >= minRating (4, as in the paper) are kept; the item text
 * comes from title, description, brand and categories.
 */
import type { Catalog } from '../types.js';
import { InteractionsBuilder, parsePythonLiteral, readLines, type RecipeResult } from './common.js';

export interface BeautyOptions {
  reviews: string;
  meta: string;
  /** Keep ratings >= minRating (the paper: 4). 0 keeps everything. */
  minRating?: number;
}

export const BEAUTY_TEXT_FIELDS = ['title', 'description', 'brand', 'categories'];

function parseLine(path: string, lineNumber: number, line: string): Record<string, unknown> {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    try {
      return parsePythonLiteral(line) as Record<string, unknown>;
    } catch (error) {
      throw new Error(
        `${path}:${lineNumber}: not a JSON object or Python dict (${(error as Error).message})`,
        { cause: error },
      );
    }
  }
}

function categoriesText(value: unknown): string {
  if (!Array.isArray(value)) return typeof value === 'string' ? value : '';
  const names = new Set<string>();
  for (const path of value) for (const name of Array.isArray(path) ? path : [path]) names.add(String(name));
  return [...names].join('|');
}

export async function loadAmazonBeauty(options: BeautyOptions): Promise<RecipeResult> {
  const minRating = options.minRating ?? 4;
  const builder = new InteractionsBuilder(true);
  let reviews = 0;
  for await (const [lineNumber, line] of readLines(options.reviews)) {
    if (line.trim() === '') continue;
    const row = parseLine(options.reviews, lineNumber, line);
    reviews++;
    const user = row.reviewerID;
    const item = row.asin;
    const rating = Number(row.overall);
    const time = Number(row.unixReviewTime);
    for (const [field, ok] of [
      ['reviewerID', typeof user === 'string' && user !== ''],
      ['asin', typeof item === 'string' && item !== ''],
      ['overall', Number.isFinite(rating)],
      ['unixReviewTime', Number.isFinite(time)],
    ] as const) {
      if (!ok) throw new Error(`${options.reviews}:${lineNumber}: missing or invalid field '${field}'`);
    }
    if (rating < minRating) continue;
    builder.add(user as string, item as string, time, rating);
  }
  if (reviews === 0) throw new Error(`${options.reviews}: empty file`);

  const fields: Record<string, string[]> = { title: [], description: [], brand: [], categories: [] };
  const ids: string[] = [];
  const seen = new Set<string>();
  for await (const [lineNumber, line] of readLines(options.meta)) {
    if (line.trim() === '') continue;
    const row = parseLine(options.meta, lineNumber, line);
    if (typeof row.asin !== 'string') throw new Error(`${options.meta}:${lineNumber}: missing field 'asin'`);
    if (seen.has(row.asin)) throw new Error(`${options.meta}:${lineNumber}: duplicate item id '${row.asin}'`);
    seen.add(row.asin);
    ids.push(row.asin);
    fields.title.push(typeof row.title === 'string' ? row.title : '');
    fields.description.push(typeof row.description === 'string' ? row.description : '');
    fields.brand.push(typeof row.brand === 'string' ? row.brand : '');
    fields.categories.push(categoriesText(row.categories));
  }
  const catalog: Catalog = { ids, fields, source: options.meta };
  return {
    name: 'amazon-beauty',
    interactions: builder.build(options.reviews),
    catalog,
    textFields: BEAUTY_TEXT_FIELDS,
    notes: [
      `${reviews} reviews read, ${builder.length} kept with rating >= ${minRating}`,
      `${ids.length} catalog items`,
    ],
  };
}
