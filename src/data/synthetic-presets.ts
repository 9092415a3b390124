/**
 * Scale presets of the synthetic generator (synthetic.ts) for large-catalog training (docs/large-catalogs.md):
 *
 * - `zvuk`: shaped like the paper's Zvuk sample: 9,076 users, 131,085 tracks, about 3.2 M plays (mean length about
 *   357) from the music-listening generator (synthetic-music.ts: topics, artists, albums, Zipf popularity, repeats,
 *   album order, per-track successors, new releases), and 128-d "audio" vectors made of topic, artist and album
 *   directions plus noise (musicVectors). About 13% of the test ground truth is cold under the protocol. With
 *   `items` but no `topics`, topics scale with the catalog (one per 512 tracks), so a scaled-down preset keeps the
 *   structure.
 * - `shop`: a 1,000,000-item shop catalog with text fields (title, description, category) and 200,000 users.
 *
 * Files: parquet or CSV. Zvuk parquet uses the Zvuk schema the `zvuk` recipe reads (interactions: user_id, track_id,
 * datetime, play_duration; vectors: track_id, vector), so the recipe runs on generated files as on the real ones.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { Random } from '../util/random.js';
import {
  DEFAULT_SYNTHETIC_OPTIONS,
  generateSynthetic,
  type SyntheticDataset,
  type SyntheticOptions,
} from './synthetic.js';
import {
  DEFAULT_MUSIC_OPTIONS,
  generateMusic,
  musicVectors,
  type MusicDataset,
  type MusicOptions,
} from './synthetic-music.js';
import type { Catalog, Interactions } from './types.js';
import { writeCatalogCsv, writeInteractionsCsv } from './writers.js';

export type PresetName = 'zvuk' | 'shop';
/** The options every generator takes (the `deltarec generate` flags). */
export type CommonOptions = Pick<SyntheticOptions, 'users' | 'items' | 'topics' | 'meanLength' | 'seed'>;
export const PRESETS: { zvuk: Partial<MusicOptions>; shop: Partial<SyntheticOptions> } = {
  zvuk: DEFAULT_MUSIC_OPTIONS,
  shop: { users: 200000, items: 1000000, topics: 2000, meanLength: 10, seed: 0 },
};
/** Tracks per topic of the zvuk preset when `items` is given without `topics`. */
const ZVUK_TRACKS_PER_TOPIC = 512;

/** Dimension of the zvuk preset's track vectors. */
export const ZVUK_VECTOR_DIM = 128;

/**
 * Unit-norm vectors (items x dim) with cluster structure: topic centroid (unit) plus isotropic noise of norm about
 * 1, normalized, so tracks of one topic have cosine about 0.5 and tracks of different topics about 0.
 */
export function topicVectors(itemTopic: Int32Array, topics: number, dim: number, seed: number): Float32Array {
  const rng = new Random(seed ^ 0x2c1b3c6d);
  const centroids = new Float64Array(topics * dim);
  for (let k = 0; k < topics; k++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += (centroids[k * dim + j] = rng.nextGaussian()) ** 2;
    for (let j = 0; j < dim; j++) centroids[k * dim + j] /= Math.sqrt(s);
  }
  const out = new Float32Array(itemTopic.length * dim);
  const row = new Float64Array(dim);
  const noise = 1 / Math.sqrt(dim);
  for (let i = 0; i < itemTopic.length; i++) {
    const c = itemTopic[i] * dim;
    let s = 0;
    for (let j = 0; j < dim; j++) s += (row[j] = centroids[c + j] + noise * rng.nextGaussian()) ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < dim; j++) out[i * dim + j] = row[j] * inv;
  }
  return out;
}

/** Writes a generated dataset into dir (which the caller created and owns) as parquet or CSV. */
export async function writeDataset(
  dir: string,
  data: { interactions: Interactions; catalog: Catalog },
  format: 'csv' | 'parquet',
  vectors: Float32Array | null,
): Promise<string[]> {
  const x = data.interactions;
  const files: string[] = [];
  const write = async (name: string, bytes: ArrayBuffer | string) => {
    await writeFile(join(dir, name), typeof bytes === 'string' ? bytes : Buffer.from(bytes));
    files.push(name);
  };
  const dim = vectors ? vectors.length / data.catalog.ids.length : 0;
  if (format === 'csv') {
    await writeInteractionsCsv(join(dir, 'interactions.csv'), x);
    files.push('interactions.csv');
    if (vectors) {
      // One vector column of space-separated numbers (docs/content-format.md).
      const lines = ['item_id,vector'];
      for (let i = 0; i < data.catalog.ids.length; i++) {
        const v = Array.from(vectors.subarray(i * dim, (i + 1) * dim), (f) => f.toPrecision(6));
        lines.push(`${data.catalog.ids[i]},${v.join(' ')}`);
      }
      await write('vectors.csv', lines.join('\n') + '\n');
    } else {
      await writeCatalogCsv(join(dir, 'items.csv'), data.catalog);
      files.push('items.csv');
    }
    return files;
  }
  const n = x.users.length;
  const timestamps = x.timestamps!;
  if (vectors) {
    // The Zvuk schema: integer ids (the generator's index), datetime, play duration over the recipe's 60 s.
    const rng = new Random(0x5eed);
    const trackIds = Array.from({ length: data.catalog.ids.length }, (_, i) => BigInt(i + 1));
    await write(
      'zvuk-interactions.parquet',
      parquetWriteBuffer({
        columnData: [
          { name: 'user_id', data: Array.from(x.users, (u) => BigInt(u + 1)), type: 'INT64' },
          {
            name: 'track_id',
            data: Array.from(x.items, (i) => BigInt(Number(x.itemIds.ids[i].slice(1)))),
            type: 'INT64',
          },
          { name: 'datetime', data: Array.from(timestamps, (t) => new Date(t * 1000)), type: 'TIMESTAMP' },
          {
            name: 'play_duration',
            data: Array.from({ length: n }, () => 61 + rng.nextInt(240)),
            type: 'INT32',
          },
        ],
        rowGroupSize: 262144,
      }),
    );
    await write(
      'zvuk-track-vectors.parquet',
      parquetWriteBuffer({
        columnData: [
          { name: 'track_id', data: trackIds, type: 'INT64' },
          {
            name: 'vector',
            // A JSON list per track (what the writer makes of arrays), 6 significant digits as in vectors.csv.
            data: trackIds.map((_, i) =>
              Array.from(vectors.subarray(i * dim, (i + 1) * dim), (f) => Number(f.toPrecision(6))),
            ),
          },
        ],
        rowGroupSize: 16384,
      }),
    );
    return files;
  }
  await write(
    'interactions.parquet',
    parquetWriteBuffer({
      columnData: [
        { name: 'user_id', data: Array.from(x.users, (u) => x.userIds.ids[u]), type: 'STRING' },
        { name: 'item_id', data: Array.from(x.items, (i) => x.itemIds.ids[i]), type: 'STRING' },
        { name: 'timestamp', data: Array.from(timestamps, (t) => BigInt(t)), type: 'INT64' },
      ],
      rowGroupSize: 262144,
    }),
  );
  const c = data.catalog;
  await write(
    'items.parquet',
    parquetWriteBuffer({
      columnData: [
        { name: 'item_id', data: c.ids, type: 'STRING' },
        ...Object.entries(c.fields).map(([name, values]) => ({
          name,
          data: values,
          type: 'STRING' as const,
        })),
      ],
      rowGroupSize: 131072,
    }),
  );
  return files;
}

/** The dataset of a preset (options override the preset's), with the zvuk preset's vectors. */
export function generatePreset(
  preset: PresetName | null,
  options: Partial<CommonOptions>,
):
  | { data: MusicDataset; vectors: Float32Array; options: MusicOptions }
  | { data: SyntheticDataset; vectors: null; options: SyntheticOptions } {
  if (preset === 'zvuk') {
    const merged: MusicOptions = { ...DEFAULT_MUSIC_OPTIONS, ...options };
    if (options.topics === undefined && options.items !== undefined) {
      merged.topics = Math.max(2, Math.round(options.items / ZVUK_TRACKS_PER_TOPIC));
    }
    const data = generateMusic(merged);
    return { data, vectors: musicVectors(data.truth, ZVUK_VECTOR_DIM, merged.seed), options: merged };
  }
  const full: SyntheticOptions = {
    ...DEFAULT_SYNTHETIC_OPTIONS,
    ...(preset ? PRESETS[preset] : {}),
    ...options,
  };
  return { data: generateSynthetic(full), vectors: null, options: full };
}
