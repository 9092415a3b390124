/**
 * Zvuk (music streaming): a parquet file of interactions (user_id, track_id, datetime, play_duration in seconds)
 * and a parquet file of audio vectors (track_id, vector: a list of floats). Plays longer than minPlaySeconds (60)
 * are kept; then a seeded sample of `users` (10,000) users among those with a kept play.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetRead } from 'hyparquet';
import { Random } from '../../util/random.js';
import { InteractionsBuilder, toUnixSeconds, type RecipeResult } from './common.js';

export interface ZvukOptions {
  interactions: string;
  vectors: string;
  minPlaySeconds?: number;
  users?: number;
  seed?: number;
  columns?: {
    user?: string;
    item?: string;
    time?: string;
    duration?: string;
    vectorItem?: string;
    vector?: string;
  };
}

/** Calls onRows(rows) for each row group of a parquet file, reading only the named columns (as row arrays). */
async function forEachRowGroup(
  path: string,
  columns: string[],
  onRows: (rows: unknown[][], firstRow: number) => void,
): Promise<void> {
  const file = await asyncBufferFromFile(path);
  const metadata = await parquetMetadataAsync(file);
  const names = new Set(metadata.schema.slice(1).map((s) => s.name));
  for (const c of columns) {
    if (!names.has(c)) throw new Error(`${path}: missing column '${c}' (columns: ${[...names].join(', ')})`);
  }
  let rowStart = 0;
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows);
    let rows: unknown[][] = [];
    await parquetRead({
      file,
      metadata,
      columns,
      rowStart,
      rowEnd,
      rowFormat: 'array',
      onComplete: (r) => (rows = r as unknown[][]),
    });
    onRows(rows, rowStart);
    rowStart = rowEnd;
  }
}

export async function loadZvuk(options: ZvukOptions): Promise<RecipeResult> {
  const minPlay = options.minPlaySeconds ?? 60;
  const wanted = options.users ?? 10000;
  const col = {
    user: 'user_id',
    item: 'track_id',
    time: 'datetime',
    duration: 'play_duration',
    vectorItem: 'track_id',
    vector: 'vector',
    ...options.columns,
  };
  const path = options.interactions;

  // Pass 1: users with at least one kept play; a seeded sample of them (sorted first, so file order does not matter).
  const candidates = new Set<string>();
  let total = 0;
  await forEachRowGroup(path, [col.user, col.duration], (rows) => {
    for (const [user, duration] of rows) {
      total++;
      if (Number(duration) > minPlay) candidates.add(String(user));
    }
  });
  if (total === 0) throw new Error(`${path}: empty file`);
  const sorted = [...candidates].sort();
  new Random(options.seed ?? 0).shuffle(sorted);
  const sample = new Set(sorted.slice(0, wanted));

  // Pass 2: the sampled users' kept plays.
  const builder = new InteractionsBuilder(false);
  await forEachRowGroup(path, [col.user, col.item, col.time, col.duration], (rows, firstRow) => {
    rows.forEach(([user, item, time, duration], r) => {
      if (!(Number(duration) > minPlay) || !sample.has(String(user))) return;
      const t = toUnixSeconds(time);
      if (!Number.isFinite(t))
        throw new Error(`${path}: row ${firstRow + r + 1}: unparsable '${col.time}' ${String(time)}`);
      builder.add(String(user), String(item), t);
    });
  });
  const interactions = builder.build(path);

  // Audio vectors of the tracks that occur in the kept interactions.
  const ids: string[] = [];
  const chunks: Float32Array[] = [];
  let dim = -1;
  const seen = new Set<string>();
  await forEachRowGroup(options.vectors, [col.vectorItem, col.vector], (rows, firstRow) => {
    rows.forEach(([item, vector], r) => {
      const id = String(item);
      const where = `${options.vectors}: row ${firstRow + r + 1} (item '${id}')`;
      if (!Array.isArray(vector) && !ArrayBuffer.isView(vector))
        throw new Error(`${where}: '${col.vector}' is not a list`);
      const values = Float32Array.from(vector as ArrayLike<number>, Number);
      if (dim < 0) dim = values.length;
      if (values.length !== dim)
        throw new Error(`${where}: vector has ${values.length} values, expected ${dim}`);
      if (values.some((v) => !Number.isFinite(v)))
        throw new Error(`${where}: vector holds NaN or infinite values`);
      if (seen.has(id)) throw new Error(`${where}: duplicate item id`);
      seen.add(id);
      if (!interactions.itemIds.index.has(id)) return;
      ids.push(id);
      chunks.push(values);
    });
  });
  const data = new Float32Array(ids.length * Math.max(dim, 0));
  chunks.forEach((v, i) => data.set(v, i * dim));
  return {
    name: 'zvuk',
    interactions,
    vectors: { ids, dim: Math.max(dim, 0), data },
    notes: [
      `${total} plays read; ${candidates.size} users with a play over ${minPlay} s; ${sample.size} sampled`,
      `${builder.length} plays kept; ${ids.length} of ${interactions.itemIds.ids.length - 1} tracks have a vector`,
    ],
  };
}
